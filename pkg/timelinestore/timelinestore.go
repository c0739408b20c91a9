// Package timelinestore keeps feeds in Redis: each user's home timeline,
// inbox and home sources, and each entity's own feed. Timelines, inboxes and
// feeds are strings of 8-byte big-endian activity ids, newest first. That
// costs 8 bytes an entry (a sorted set costs about 22 in its listpack
// encoding and about 120 past it), and a page is one GETRANGE or GET.
//
//	tidings:home:{<user id>}      home timeline: what was pushed to the user
//	tidings:inbox:{<user id>}     items addressed to the user (mentions)
//	tidings:hsrc:{<user id>}      home sources: the floor of the home timeline,
//	                              and the intervals of each entity's feed the
//	                              user receives (Sources)
//	tidings:feed:{<entity key>}   an entity's own feed
//
// (in the first generation; see redisx.Keyspace)
//
// Ids are time-sortable (pkg/ids) and assigned at the source, so a feed is
// ordered by id, never by arrival. Insert and remove are one script each,
// on the keys of one hash tag (a home insert also reads the user's read
// time, under the same tag): the insert keeps the order, skips an id
// already present, and trims to the cap in the same step, so duplicates and
// out-of-order deliveries leave the same feed. Deleted activities are not resurrected by
// a late insert in a way anyone sees: their bodies keep tombstones, and
// reads drop ids whose bodies are gone.
package timelinestore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// HomeKey is the key of a user's home timeline.
func (s *Store) HomeKey(userID string) string { return s.ks.Key("home:{" + userID + "}") }

// FeedKey is the key of an entity's own feed.
func (s *Store) FeedKey(entityKey string) string { return s.ks.Key("feed:{" + entityKey + "}") }

// InboxKey is the key of a user's inbox: the items addressed to the user
// rather than to an entity they follow (mentions), kept apart from the home
// timeline so that history past the timeline's floor still finds them. It
// shares the home timeline's hash tag.
func (s *Store) InboxKey(userID string) string { return s.ks.Key("inbox:{" + userID + "}") }

// SourcesKey is the key of a user's home sources (Sources); it shares the
// home timeline's hash tag.
func (s *Store) SourcesKey(userID string) string { return s.ks.Key("hsrc:{" + userID + "}") }

// HotSourcesKey is the key of a user's hot sources: the set of entities of
// the user's home sources that have pull ranges (pkg/hot), whose feeds a
// home read merges above the floor. It shares the home timeline's hash tag,
// so that a read takes it in its first round trip, and its size is what
// the user follows, not what the company has made hot.
func (s *Store) HotSourcesKey(userID string) string { return s.ks.Key("hhot:{" + userID + "}") }

// SeenKey holds when a user last read their home timeline (Unix seconds);
// it shares the home timeline's hash tag. It is not derived from the log,
// so it lives outside generations (redisx.Keyspace).
func SeenKey(userID string) string { return redisx.Prefix + "seen:{" + userID + "}" }

// InsertSource is the Lua source of the insert: it inserts ARGV[3..]
// (8-byte ids) into the descending packed string KEYS[1], skipping ids
// present, and trims it to ARGV[1] entries. With KEYS[2] (the user's last
// read) older than ARGV[2], the user is inactive and nothing is written:
// their next read rebuilds the timeline. With KEYS[3] (the home sources),
// an insert that leaves an id out for the cap (trimmed, or too old to go
// in) raises the timeline's floor to its oldest entry: the timeline holds
// everything pushed to the user from the floor up, whatever its length. It
// returns how many ids it added, or -1 for an inactive user. The bench
// drives it with redis-benchmark.
const InsertSource = "local A = ARGV\n" + insertBody

// insertBody is the insert over the arguments A (ARGV, or what a guard
// leaves of it).
const insertBody = `
if KEYS[2] then
  local seen = tonumber(redis.call('GET', KEYS[2]) or '')
  if seen and seen < tonumber(A[2]) then return -1 end
end
local s = redis.call('GET', KEYS[1]) or ''
local cap = tonumber(A[1])
local added = 0
local dropped = false
for i = 3, #A do
  local id = A[i]
  local n = #s / 8
  local lo, hi = 0, n
  if n > 0 and string.sub(s, 1, 8) < id then
    hi = 0
  else
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if string.sub(s, mid * 8 + 1, mid * 8 + 8) > id then lo = mid + 1 else hi = mid end
    end
  end
  if lo >= cap then
    dropped = true
  elseif not (lo < n and string.sub(s, lo * 8 + 1, lo * 8 + 8) == id) then
    if n >= cap then dropped = true end
    s = string.sub(s, 1, lo * 8) .. id .. string.sub(s, lo * 8 + 1, cap * 8 - 8)
    added = added + 1
  end
end
if added > 0 then redis.call('SET', KEYS[1], s) end
if dropped and KEYS[3] then
  local last = math.min(#s / 8, cap)
  local floor = string.sub(s, last * 8 - 7, last * 8)
  local cur = redis.call('HGET', KEYS[3], 'floor')
  if not cur or cur < floor then redis.call('HSET', KEYS[3], 'floor', floor) end
end
return added
`

// guardedInsertScript is the home insert that applies only while the user
// receives ARGV[2..ARGV[1]+1] (entity keys): while the user's following set
// KEYS[4] (same hash tag) holds one of them at that moment, or, for the ids
// inside a history the user kept of one (an interval in the home sources
// KEYS[3]), after an unfollow that kept it. The rest of ARGV is the
// insert's. Writes that arrive late (a chunk of a large fan-out, a
// backfill) so cannot undo a newer unfollow's take-back, nor miss a kept
// history. It returns what the insert returns, or -2 when the user no
// longer receives the ids.
var guardedInsertScript = redisx.NewScript(`
local g = tonumber(ARGV[1])
local follows = false
for i = 2, g + 1 do
  if redis.call('ZSCORE', KEYS[4], ARGV[i]) then follows = true break end
end
local A = {ARGV[g + 2], ARGV[g + 3]}
if follows then
  for i = g + 4, #ARGV do A[#A + 1] = ARGV[i] end
else
  local zero = '\0\0\0\0\0\0\0\0'
  local kept = {}
  for i = 2, g + 1 do
    local r = redis.call('HGET', KEYS[3], ARGV[i])
    if r then kept[#kept + 1] = r end
  end
  for i = g + 4, #ARGV do
    local id = ARGV[i]
    local found = false
    for _, r in ipairs(kept) do
      for j = 0, #r / 16 - 1 do
        local a = string.sub(r, j * 16 + 1, j * 16 + 8)
        local b = string.sub(r, j * 16 + 9, j * 16 + 16)
        if id >= a and (b == zero or id < b) then found = true break end
      end
      if found then break end
    end
    if found then A[#A + 1] = id end
  end
  if #A == 2 then return -2 end
end
` + insertBody)

var insertScript = redisx.NewScript(InsertSource)

// removeScript removes ARGV[1..] (8-byte ids) from KEYS[1]; returns how many.
var removeScript = redisx.NewScript(`
local s = redis.call('GET', KEYS[1])
if not s then return 0 end
local removed = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local lo, hi = 0, #s / 8
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if string.sub(s, mid * 8 + 1, mid * 8 + 8) > id then lo = mid + 1 else hi = mid end
  end
  if lo < #s / 8 and string.sub(s, lo * 8 + 1, lo * 8 + 8) == id then
    s = string.sub(s, 1, lo * 8) .. string.sub(s, lo * 8 + 9)
    removed = removed + 1
  end
end
if removed > 0 then
  if #s == 0 then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], s) end
end
return removed
`)

// pageScript returns the ids of KEYS[1] older than ARGV[1] (8 bytes; all
// when empty), at most ARGV[2] of them, newest first, packed.
var pageScript = redisx.NewScript(`
local s = redis.call('GET', KEYS[1])
if not s then return '' end
local lo, hi = 0, #s / 8
if ARGV[1] ~= '' then
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if string.sub(s, mid * 8 + 1, mid * 8 + 8) >= ARGV[1] then lo = mid + 1 else hi = mid end
  end
end
return string.sub(s, lo * 8 + 1, (lo + tonumber(ARGV[2])) * 8)
`)

// Store reads and writes feeds.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace) *Store { return &Store{rdb: rdb, ks: ks} }

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func idArgs(limit int, activeSince int64, list []ids.ID) []any {
	args := make([]any, 0, len(list)+2)
	if limit > 0 {
		args = append(args, limit, activeSince)
	}
	for _, id := range list {
		b := id.Bytes()
		args = append(args, b[:])
	}
	return args
}

// Insert adds the ids to every feed in keys, each trimmed to limit, in one
// pipeline. It returns how many (feed, id) pairs were new.
func (s *Store) Insert(ctx context.Context, keys []string, limit int, list []ids.ID) (int64, error) {
	calls := make([][]string, len(keys))
	for i, k := range keys {
		calls[i] = []string{k}
	}
	return s.insert(ctx, calls, limit, 0, list)
}

// InsertHomes adds the ids to the home timelines of users, skipping those
// who have not read their timeline since activeSince (Unix seconds; 0 for
// no such check).
func (s *Store) InsertHomes(ctx context.Context, users []string, limit int, activeSince int64, list []ids.ID) (int64, error) {
	calls := make([][]string, len(users))
	for i, u := range users {
		calls[i] = s.homeKeys(u)
	}
	return s.insert(ctx, calls, limit, activeSince, list)
}

// insert runs the insert of list on each call's keys, in one pipeline.
func (s *Store) insert(ctx context.Context, calls [][]string, limit int, activeSince int64, list []ids.ID) (int64, error) {
	if len(calls) == 0 || len(list) == 0 {
		return 0, nil
	}
	args := idArgs(limit, activeSince, list)
	res := make([]redisx.Result[int64], len(calls))
	if err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		for i, keys := range calls {
			res[i] = queueInsert(ctx, pipe, keys, args)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("insert into %d feeds: %w", len(calls), err)
	}
	var added int64
	for _, r := range res {
		n, _ := r()
		added += n
	}
	return added, nil
}

// QueueInsert queues, on pipe, the insert of the ids into one feed,
// trimmed to limit; its result is how many ids were new.
func (s *Store) QueueInsert(ctx context.Context, pipe redis.Pipeliner, key string, limit int, list []ids.ID) redisx.Result[int64] {
	return queueInsert(ctx, pipe, []string{key}, idArgs(limit, 0, list))
}

// QueueInsertHome queues InsertHomes for one user on pipe; its result is
// how many ids were new (0 for a user inactive since activeSince).
func (s *Store) QueueInsertHome(ctx context.Context, pipe redis.Pipeliner, userID string, limit int, activeSince int64, list []ids.ID) redisx.Result[int64] {
	return queueInsert(ctx, pipe, s.homeKeys(userID), idArgs(limit, activeSince, list))
}

// QueueInsertHomeIfFollowing is QueueInsertHome for a write that is due
// only while the user receives one of sources (entity keys): it reads the
// user's following set (followingKey, pkg/graphstore) and home sources in
// the same script, so it cannot land after a newer unfollow took the
// entity's items back; ids inside a history the user kept still land. Its
// result is how many ids were new (0 for a user inactive since
// activeSince), or -1 when the user receives none of them.
func (s *Store) QueueInsertHomeIfFollowing(ctx context.Context, pipe redis.Pipeliner, userID, followingKey string, sources []string, limit int, activeSince int64, list []ids.ID) redisx.Result[int64] {
	args := make([]any, 0, 1+len(sources)+2+len(list))
	args = append(args, len(sources))
	for _, src := range sources {
		args = append(args, src)
	}
	args = append(args, idArgs(limit, activeSince, list)...)
	keys := append(s.homeKeys(userID), followingKey)
	cmd := guardedInsertScript.EvalSha(ctx, pipe, keys, args...)
	return func() (int64, error) {
		n, err := cmd.Int64()
		switch {
		case err != nil:
			return 0, fmt.Errorf("insert into %s: %w", keys[0], err)
		case n == -2:
			return -1, nil
		}
		return max(n, 0), nil
	}
}

// homeKeys are the keys of a home insert: the timeline, the read time and
// the sources, which keep the floor.
func (s *Store) homeKeys(userID string) []string {
	return []string{s.HomeKey(userID), SeenKey(userID), s.SourcesKey(userID)}
}

func queueInsert(ctx context.Context, pipe redis.Pipeliner, keys []string, args []any) redisx.Result[int64] {
	cmd := insertScript.EvalSha(ctx, pipe, keys, args...)
	return func() (int64, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("insert into %s: %w", keys[0], err)
		}
		return max(n, 0), nil
	}
}

// MarkRead records that a user read their home timeline at now (Unix
// seconds) and returns when they had read it before (0: never).
func (s *Store) MarkRead(ctx context.Context, userID string, now int64) (int64, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[int64] {
		return s.QueueMarkRead(ctx, pipe, userID, now)
	})
}

// QueueMarkRead queues MarkRead on pipe.
func (s *Store) QueueMarkRead(ctx context.Context, pipe redis.Pipeliner, userID string, now int64) redisx.Result[int64] {
	cmd := pipe.SetArgs(ctx, SeenKey(userID), now, redis.SetArgs{Get: true})
	return func() (int64, error) {
		prev, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("mark %s read: %w", userID, err)
		}
		t, _ := strconv.ParseInt(prev, 10, 64)
		return t, nil
	}
}

// Remove deletes the ids from every feed in keys, in one pipeline.
func (s *Store) Remove(ctx context.Context, keys []string, list []ids.ID) error {
	if len(keys) == 0 || len(list) == 0 {
		return nil
	}
	err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		for _, k := range keys {
			s.QueueRemove(ctx, pipe, k, list)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove from %d feeds: %w", len(keys), err)
	}
	return nil
}

// QueueRemove queues, on pipe, the removal of the ids from one feed; its
// result is how many were there.
func (s *Store) QueueRemove(ctx context.Context, pipe redis.Pipeliner, key string, list []ids.ID) redisx.Result[int64] {
	cmd := removeScript.EvalSha(ctx, pipe, []string{key}, idArgs(0, 0, list)...)
	return func() (int64, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("remove from %s: %w", key, err)
		}
		return n, nil
	}
}

// Page returns up to limit ids of a feed older than before (all when before
// is 0), newest first, and whether more follow. A feed holds at most its cap,
// so one GET reads it whole; the page is cut here.
func (s *Store) Page(ctx context.Context, key string, before ids.ID, limit int) ([]ids.ID, bool, error) {
	data, err := s.rdb.Get(ctx, key).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("read feed %s: %w", key, err)
	}
	all := Decode(data)
	start := 0
	if before != 0 {
		start = sort.Search(len(all), func(i int) bool { return all[i] < before })
	}
	end := min(start+limit, len(all))
	return all[start:end], end < len(all), nil
}

// PageMany returns, for each feed, up to limit ids older than before (all
// when 0), newest first, in one pipeline; the cutting is done in Redis, so
// a read of many feeds moves only what it needs.
func (s *Store) PageMany(ctx context.Context, keys []string, before ids.ID, limit int) ([][]ids.ID, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[[][]ids.ID] {
		return s.QueuePageMany(ctx, pipe, keys, before, limit)
	})
}

// QueuePageMany queues PageMany on pipe.
func (s *Store) QueuePageMany(ctx context.Context, pipe redis.Pipeliner, keys []string, before ids.ID, limit int) redisx.Result[[][]ids.ID] {
	var cursor []byte
	if before != 0 {
		b := before.Bytes()
		cursor = b[:]
	}
	cmds := make([]*redis.Cmd, len(keys))
	for i, k := range keys {
		cmds[i] = pageScript.EvalSha(ctx, pipe, []string{k}, cursor, limit)
	}
	return func() ([][]ids.ID, error) {
		out := make([][]ids.ID, len(keys))
		for i, c := range cmds {
			data, err := c.Text()
			if err != nil {
				return nil, fmt.Errorf("page feed %s: %w", keys[i], err)
			}
			out[i] = Decode([]byte(data))
		}
		return out, nil
	}
}

// All returns every id of a feed, newest first.
func (s *Store) All(ctx context.Context, key string) ([]ids.ID, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[[]ids.ID] {
		return s.QueueAll(ctx, pipe, key)
	})
}

// QueueAll queues All on pipe.
func (s *Store) QueueAll(ctx context.Context, pipe redis.Pipeliner, key string) redisx.Result[[]ids.ID] {
	cmd := pipe.Get(ctx, key)
	return func() ([]ids.ID, error) {
		data, err := cmd.Bytes()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read feed %s: %w", key, err)
		}
		return Decode(data), nil
	}
}

// Decode reads a packed feed.
func Decode(data []byte) []ids.ID {
	out := make([]ids.ID, len(data)/8)
	for i := range out {
		out[i] = ids.FromBytes(data[i*8 : i*8+8])
	}
	return out
}

// Wipe deletes every feed, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	// Read times are not derived from the log: they stay.
	for _, p := range []string{"home:*", "feed:*", "inbox:*", "hsrc:*", "hhot:*"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
			return err
		}
	}
	return nil
}
