package timelinestore

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// The home sources of a user (tidings:hsrc:{<user id>}, a hash) say what
// their home feed is made of beyond what the home timeline stores:
//
//	floor         8 bytes: the timeline holds everything pushed to the user
//	              with an id at or above it (absent: everything)
//	<entity key>  16-byte intervals [from, to) of the entity's feed the user
//	              receives: an open one (to = 0) while they follow it, closed
//	              ones for the histories they kept when they unfollowed it
//
// The fan-out writes the floor with its inserts; the FOLLOWS projection
// writes the intervals, as it backfills and takes back.

// MaxIntervals bounds the intervals kept per entity: a user who followed
// and unfollowed one entity with kept history more often than this keeps
// the newest.
const MaxIntervals = 8

// MaxKept bounds the entities a user keeps history of without following
// them: past it, the history kept longest ago (the smallest end) is
// forgotten.
const MaxKept = 64

// floorField is the field of the floor; entity keys always hold a colon.
const floorField = "floor"

// Interval is a span of an entity's activity ids that reaches a user:
// From ≤ id < To, or From ≤ id while open (To 0).
type Interval struct{ From, To ids.ID }

// Intervals are the spans of one entity's feed that reach a user, oldest
// first, disjoint.
type Intervals []Interval

// Contains reports whether id is in one of the intervals.
func (iv Intervals) Contains(id ids.ID) bool {
	for _, r := range iv {
		if id >= r.From && (r.To == 0 || id < r.To) {
			return true
		}
	}
	return false
}

// Open reports whether the last interval is open: the user follows the
// entity.
func (iv Intervals) Open() bool { return len(iv) > 0 && iv[len(iv)-1].To == 0 }

// Sources are a user's home sources.
type Sources struct {
	// Floor: the home timeline holds everything pushed to the user with an
	// id at or above it (0: everything).
	Floor ids.ID
	// Entities are the intervals of each entity's feed the user receives.
	Entities map[string]Intervals
}

// Reaches reports whether an activity of the given sources (entity keys)
// reaches the user through one of them.
func (s Sources) Reaches(srcs []string, id ids.ID) bool {
	for _, e := range srcs {
		if s.Entities[e].Contains(id) {
			return true
		}
	}
	return false
}

// Sources returns a user's home sources.
func (s *Store) Sources(ctx context.Context, userID string) (Sources, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[Sources] {
		return s.QueueSources(ctx, pipe, userID)
	})
}

// QueueSources queues Sources on pipe.
func (s *Store) QueueSources(ctx context.Context, pipe redis.Pipeliner, userID string) redisx.Result[Sources] {
	cmd := pipe.HGetAll(ctx, s.SourcesKey(userID))
	return func() (Sources, error) {
		all, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return Sources{}, fmt.Errorf("read home sources of %s: %w", userID, err)
		}
		out := Sources{Entities: make(map[string]Intervals, len(all))}
		for k, v := range all {
			if k == floorField {
				if len(v) == 8 {
					out.Floor = ids.FromBytes([]byte(v))
				}
				continue
			}
			out.Entities[k] = decodeIntervals(v)
		}
		return out, nil
	}
}

// QueueIntervals queues, on pipe, a read of the intervals of one entity
// that reach a user.
func (s *Store) QueueIntervals(ctx context.Context, pipe redis.Pipeliner, userID, entityKey string) redisx.Result[Intervals] {
	cmd := pipe.HGet(ctx, s.SourcesKey(userID), entityKey)
	return func() (Intervals, error) {
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read home source %s of %s: %w", entityKey, userID, err)
		}
		return decodeIntervals(v), nil
	}
}

func decodeIntervals(v string) Intervals {
	var out Intervals
	for i := 0; i+16 <= len(v); i += 16 {
		out = append(out, Interval{From: ids.FromBytes([]byte(v[i : i+8])), To: ids.FromBytes([]byte(v[i+8 : i+16]))})
	}
	return out
}

// openScript opens an interval [ARGV[2], ∞) of entity ARGV[1] in the
// sources KEYS[1], unless one is open already (the follow was applied
// before): closed intervals it overlaps or touches join it, and past
// ARGV[3] intervals the oldest goes. With ARGV[4] = 1 (the entity has pull
// ranges) it adds the entity to the hot sources KEYS[2]. It returns 1 when
// it opened an interval.
var openScript = redisx.NewScript(`
local zero = '\0\0\0\0\0\0\0\0'
if ARGV[4] == '1' then redis.call('SADD', KEYS[2], ARGV[1]) end
local r = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local n = #r / 16
if n > 0 and string.sub(r, n * 16 - 7, n * 16) == zero then return 0 end
local from = ARGV[2]
local out = ''
for i = 0, n - 1 do
  local a = string.sub(r, i * 16 + 1, i * 16 + 8)
  local b = string.sub(r, i * 16 + 9, i * 16 + 16)
  if b >= from then
    if a < from then from = a end
    break
  end
  out = out .. a .. b
end
out = out .. from .. zero
while #out / 16 > tonumber(ARGV[3]) do out = string.sub(out, 17) end
redis.call('HSET', KEYS[1], ARGV[1], out)
return 1
`)

// closeScript closes the open interval of entity ARGV[1] in the sources
// KEYS[1] at ARGV[2] (8 bytes), or drops it when ARGV[2] is empty or not
// past its start. When that leaves the user more than ARGV[3] entities they
// keep history of without following them, the one whose history ends
// earliest is forgotten. An entity that leaves the sources leaves the hot
// sources KEYS[2] too. It returns 1 when an interval was open.
var closeScript = redisx.NewScript(`
local zero = '\0\0\0\0\0\0\0\0'
local r = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local n = #r / 16
if n == 0 or string.sub(r, n * 16 - 7, n * 16) ~= zero then return 0 end
local from = string.sub(r, n * 16 - 15, n * 16 - 8)
r = string.sub(r, 1, n * 16 - 16)
if ARGV[2] ~= '' and ARGV[2] > from then r = r .. from .. ARGV[2] end
if #r == 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('SREM', KEYS[2], ARGV[1])
  return 1
end
redis.call('HSET', KEYS[1], ARGV[1], r)
local all = redis.call('HGETALL', KEYS[1])
local kept = {}
for i = 1, #all, 2 do
  local v = all[i + 1]
  if all[i] ~= 'floor' and #v >= 16 and string.sub(v, #v - 7) ~= zero then
    kept[#kept + 1] = {all[i], string.sub(v, #v - 7)}
  end
end
local max = tonumber(ARGV[3])
if #kept > max then
  table.sort(kept, function(x, y) return x[2] < y[2] end)
  for i = 1, #kept - max do
    redis.call('HDEL', KEYS[1], kept[i][1])
    redis.call('SREM', KEYS[2], kept[i][1])
  end
end
return 1
`)

// AddHotSource records, for an entity that just turned hot, that it is a
// hot source of each of users (its followers), in one pipeline.
func (s *Store) AddHotSource(ctx context.Context, users []string, entityKey string) error {
	if len(users) == 0 {
		return nil
	}
	if err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		for _, u := range users {
			pipe.SAdd(ctx, s.HotSourcesKey(u), entityKey)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("add hot source %s to %d users: %w", entityKey, len(users), err)
	}
	return nil
}

// QueueHotSources queues a read of a user's hot sources.
func (s *Store) QueueHotSources(ctx context.Context, pipe redis.Pipeliner, userID string) redisx.Result[map[string]bool] {
	cmd := pipe.SMembers(ctx, s.HotSourcesKey(userID))
	return func() (map[string]bool, error) {
		list, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read hot sources of %s: %w", userID, err)
		}
		out := make(map[string]bool, len(list))
		for _, e := range list {
			out[e] = true
		}
		return out, nil
	}
}

// Open is a follow to record in a user's home sources: the entity's ids at
// or above From reach the user. Hot says the entity has pull ranges (read
// after the follow edge was written, so that either this or the hot
// switch's AddHotSource sees the other).
type Open struct {
	UserID, Entity string
	From           ids.ID
	Hot            bool
}

// OpenSources records follows in one pipeline, each unless recorded before.
func (s *Store) OpenSources(ctx context.Context, opens []Open) error {
	if len(opens) == 0 {
		return nil
	}
	if err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		for _, o := range opens {
			b := o.From.Bytes()
			hot := "0"
			if o.Hot {
				hot = "1"
			}
			openScript.EvalSha(ctx, pipe, []string{s.SourcesKey(o.UserID), s.HotSourcesKey(o.UserID)}, o.Entity, b[:], MaxIntervals, hot)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("open %d home sources: %w", len(opens), err)
	}
	return nil
}

// CloseSource records that a user stopped following an entity: with keep,
// the ids below to that reached them go on reaching them (a kept history);
// without, none of what the open interval held does.
func (s *Store) CloseSource(ctx context.Context, userID, entityKey string, keep bool, to ids.ID) error {
	var end []byte
	if keep {
		b := to.Bytes()
		end = b[:]
	}
	if err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		closeScript.EvalSha(ctx, pipe, []string{s.SourcesKey(userID), s.HotSourcesKey(userID)}, entityKey, end, MaxKept)
		return nil
	}); err != nil {
		return fmt.Errorf("close home source %s of %s: %w", entityKey, userID, err)
	}
	return nil
}

// Newest returns the newest id of a feed (0 when empty).
func (s *Store) Newest(ctx context.Context, key string) (ids.ID, error) {
	data, err := s.rdb.GetRange(ctx, key, 0, 7).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("read feed %s: %w", key, err)
	}
	if len(data) < 8 {
		return 0, nil
	}
	return ids.FromBytes(data), nil
}

// After returns the id just above id, the end of an interval that holds id.
func After(id ids.ID) ids.ID {
	if id == math.MaxInt64 {
		return id
	}
	return id + 1
}

// raiseFloorScript raises the floor of the sources KEYS[1] to ARGV[1].
var raiseFloorScript = redisx.NewScript(`
local cur = redis.call('HGET', KEYS[1], 'floor')
if not cur or cur < ARGV[1] then redis.call('HSET', KEYS[1], 'floor', ARGV[1]) end
return 0
`)

// Rebuild inserts the newest ids of a user's home feed, read from its
// sources, into their home timeline (capped at limit), when the fan-out
// skipped them for a while: when list is full (limit ids), the timeline is
// complete down to its last id only, and the floor rises to it.
func (s *Store) Rebuild(ctx context.Context, userID string, limit int, list []ids.ID) error {
	if len(list) == 0 {
		return nil
	}
	err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		queueInsert(ctx, pipe, s.homeKeys(userID), idArgs(limit, 0, list))
		if len(list) >= limit {
			b := list[len(list)-1].Bytes()
			raiseFloorScript.EvalSha(ctx, pipe, []string{s.SourcesKey(userID)}, b[:])
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild home timeline of %s: %w", userID, err)
	}
	return nil
}
