// Package hot decides which activities are pushed into followers' home
// timelines and which are pulled by readers at read time (docs/architecture.md,
// invariant 5). An entity whose follower count rises above On becomes hot:
// from the id of the post that found it so, its activities are not fanned
// out, and readers merge its feed into their home timeline instead. Below
// Off (hysteresis, so an entity near the line does not flap) it is pushed
// again, from the id of the post that found it so.
//
// Each entity's pull ranges [from, to) of activity ids are kept in one
// Redis hash, tidings:pull, as 16-byte pairs (to = 0 while open); at most
// MaxRanges are kept. The fan-out and the readers both decide by the same
// ranges, so a switch in either direction leaves no gap and no duplicate,
// whatever order posts arrive in.
package hot

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// MaxRanges bounds the ranges kept per entity; older ones have long left
// every feed.
const MaxRanges = 8

// Thresholds are the follower counts that switch an entity.
type Thresholds struct {
	// On: above this many followers, an entity is pulled.
	On int64
	// Off: below this many, it is pushed again. Off < On.
	Off int64
}

// decideScript updates an entity's ranges for a post (ARGV[2], 8 bytes)
// by its follower count (ARGV[3]) and thresholds (ARGV[4] on, ARGV[5]
// off), and returns 1 when the post is pulled, 2 when it is pulled and
// opened a range (the entity turned hot with it).
var decideScript = redisx.NewScript(`
local zero = '\0\0\0\0\0\0\0\0'
local r = redis.call('HGET', KEYS[1], ARGV[1]) or ''
local n = #r / 16
local open = n > 0 and string.sub(r, n * 16 - 7, n * 16) == zero
local count = tonumber(ARGV[3])
local id = ARGV[2]
local opened = 0
if not open and count > tonumber(ARGV[4]) then
  local covered = false
  for i = 0, n - 1 do
    if id >= string.sub(r, i * 16 + 1, i * 16 + 8) and id < string.sub(r, i * 16 + 9, i * 16 + 16) then covered = true end
  end
  if not covered and (n == 0 or id >= string.sub(r, n * 16 - 7, n * 16)) then
    r = r .. id .. zero
    if #r / 16 > tonumber(ARGV[6]) then r = string.sub(r, 17) end
    redis.call('HSET', KEYS[1], ARGV[1], r)
    opened = 1
  end
elseif open and count < tonumber(ARGV[5]) and id > string.sub(r, n * 16 - 15, n * 16 - 8) then
  r = string.sub(r, 1, n * 16 - 8) .. id
  redis.call('HSET', KEYS[1], ARGV[1], r)
end
for i = 0, #r / 16 - 1 do
  local from = string.sub(r, i * 16 + 1, i * 16 + 8)
  local to = string.sub(r, i * 16 + 9, i * 16 + 16)
  if id >= from and (to == zero or id < to) then return 1 + opened end
end
return 0
`)

// Store keeps the pull ranges.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
	th  Thresholds
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace, th Thresholds) *Store {
	return &Store{rdb: rdb, ks: ks, th: th}
}

// Key is the hash of pull ranges.
func (s *Store) Key() string { return s.ks.Key("pull") }

// Decide updates an entity's ranges for a post by the entity's follower
// count and reports whether the post is pulled (not pushed to followers).
func (s *Store) Decide(ctx context.Context, entityKey string, id ids.ID, followers int64) (bool, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[bool] {
		return s.QueueDecide(ctx, pipe, entityKey, id, followers)
	})
}

// QueueDecide queues Decide on pipe. Decisions about one entity take
// effect in the order they are queued.
func (s *Store) QueueDecide(ctx context.Context, pipe redis.Pipeliner, entityKey string, id ids.ID, followers int64) redisx.Result[bool] {
	d := s.QueueDecision(ctx, pipe, entityKey, id, followers)
	return func() (bool, error) {
		v, err := d()
		return v.Pulled, err
	}
}

// Decision is what Decide decided for one post.
type Decision struct {
	// Pulled: the post is not pushed to the entity's followers.
	Pulled bool
	// Opened: the post opened a pull range: the entity turned hot with it.
	Opened bool
}

// QueueDecision queues Decide on pipe, and tells also whether the post
// turned the entity hot.
func (s *Store) QueueDecision(ctx context.Context, pipe redis.Pipeliner, entityKey string, id ids.ID, followers int64) redisx.Result[Decision] {
	b := id.Bytes()
	cmd := decideScript.EvalSha(ctx, pipe, []string{s.Key()}, entityKey, b[:], followers, s.th.On, s.th.Off, MaxRanges)
	return func() (Decision, error) {
		v, err := cmd.Int()
		if err != nil {
			return Decision{}, fmt.Errorf("decide push or pull for %s: %w", entityKey, err)
		}
		return Decision{Pulled: v >= 1, Opened: v == 2}, nil
	}
}

// Range is a span of pulled activity ids: From ≤ id < To (To 0: open).
type Range struct{ From, To ids.ID }

// Contains reports whether id is in the range.
func (r Range) Contains(id ids.ID) bool { return id >= r.From && (r.To == 0 || id < r.To) }

// Pulled returns the ranges of every entity that has any.
func (s *Store) Pulled(ctx context.Context) (map[string][]Range, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[map[string][]Range] {
		return s.QueuePulled(ctx, pipe)
	})
}

// QueuePulled queues Pulled on pipe.
func (s *Store) QueuePulled(ctx context.Context, pipe redis.Pipeliner) redisx.Result[map[string][]Range] {
	cmd := pipe.HGetAll(ctx, s.Key())
	return func() (map[string][]Range, error) {
		all, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read pull ranges: %w", err)
		}
		out := make(map[string][]Range, len(all))
		for k, v := range all {
			out[k] = decodeRanges(v)
		}
		return out, nil
	}
}

// QueueRanges queues, on pipe, a read of one entity's ranges (none when it
// was never pulled).
func (s *Store) QueueRanges(ctx context.Context, pipe redis.Pipeliner, entityKey string) redisx.Result[[]Range] {
	cmd := pipe.HGet(ctx, s.Key(), entityKey)
	return func() ([]Range, error) {
		v, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read pull ranges of %s: %w", entityKey, err)
		}
		return decodeRanges(v), nil
	}
}

func decodeRanges(v string) []Range {
	var out []Range
	for i := 0; i+16 <= len(v); i += 16 {
		out = append(out, Range{From: ids.FromBytes([]byte(v[i : i+8])), To: ids.FromBytes([]byte(v[i+8 : i+16]))})
	}
	return out
}

// InRanges reports whether id is in any of the ranges.
func InRanges(rs []Range, id ids.ID) bool {
	for _, r := range rs {
		if r.Contains(id) {
			return true
		}
	}
	return false
}

// Wipe deletes the ranges, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error { return s.rdb.Del(ctx, s.Key()).Err() }
