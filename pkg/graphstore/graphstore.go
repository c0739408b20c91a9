// Package graphstore is the Redis projection of the FOLLOWS stream: who
// follows what, in both directions.
//
// Each side of the graph has two keys under one hash tag:
//
//	tidings:fing:{<user id>}      sorted set: entity keys the user follows
//	tidings:fingv:{<user id>}     hash: entity key → signed version
//	tidings:fers:{<entity key>}   sorted set: user ids following the entity
//	tidings:fersv:{<entity key>}  hash: user id → signed version
//
// A sorted set holds live edges only, scored by create time in milliseconds
// times 1000 plus a sub-millisecond tiebreak, so lists page newest first
// with a (score, member) cursor and the create time is score/1000. The
// version register orders changes by their place in the log: version =
// stream sequence × 4096 + index in the event, stored positive for a follow
// and negative for an unfollow (the tombstone). A change applies only when
// its version is newer than the register's, so duplicates and out-of-order
// deliveries, on any number of workers, end in the state of the last event
// in the log. Each side is updated by one script under its hash tag; the two
// sides converge independently.
package graphstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/redisx"
)

// MaxChangesPerEvent bounds the changes of one event, so that an index fits
// the version's low bits.
const MaxChangesPerEvent = 1000

const versionShift = 4096

// Version is the log position of one change.
func Version(seq uint64, index int) int64 { return int64(seq)*versionShift + int64(index) }

// Score is the sorted-set score of an edge created at ms by the change with
// version v.
func Score(ms, v int64) float64 { return float64(ms*1000 + v%1000) }

// ScoreTime returns the create time (Unix ms) encoded in a score.
func ScoreTime(score float64) int64 { return int64(score) / 1000 }

func (s *Store) followingKey(userID string) string { return s.ks.Key("fing:{" + userID + "}") }

// FollowingKey is the sorted set of the entities a user follows; it shares
// the hash tag of the user's home timeline, so a timeline script may read
// it.
func (s *Store) FollowingKey(userID string) string    { return s.followingKey(userID) }
func (s *Store) followingVerKey(userID string) string { return s.ks.Key("fingv:{" + userID + "}") }
func (s *Store) followersKey(entityKey string) string { return s.ks.Key("fers:{" + entityKey + "}") }
func (s *Store) followersVerKey(entityKey string) string {
	return s.ks.Key("fersv:{" + entityKey + "}")
}

// applyScript applies changes to one side. ARGV holds groups of four:
// member, version, 1 (follow) or 0 (unfollow), score. It returns how many
// live edges the changes added or removed.
var applyScript = redisx.NewScript(`
local changed = 0
for i = 1, #ARGV, 4 do
  local member = ARGV[i]
  local v = tonumber(ARGV[i+1])
  local cur = tonumber(redis.call('HGET', KEYS[2], member) or '0')
  if math.abs(cur) < v then
    if ARGV[i+2] == '1' then
      redis.call('HSET', KEYS[2], member, v)
      changed = changed + redis.call('ZADD', KEYS[1], 'NX', ARGV[i+3], member)
    else
      redis.call('HSET', KEYS[2], member, -v)
      changed = changed + redis.call('ZREM', KEYS[1], member)
    end
  end
end
return changed
`)

// Change is one edge change at a known log position.
type Change struct {
	UserID    string
	Entity    string // entity key
	Following bool
	Version   int64
	// CreateMs is the follow's create time (Unix ms).
	CreateMs int64
}

// Store reads and writes the graph projection.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace) *Store { return &Store{rdb: rdb, ks: ks} }

// maxArgsPerCall bounds one script call's changes.
const maxArgsPerCall = 500

// Apply projects changes, both sides, in one pipeline.
func (s *Store) Apply(ctx context.Context, changes []Change) error {
	if len(changes) == 0 {
		return nil
	}
	type call struct {
		keys []string
		args []any
	}
	var calls []*call
	open := make(map[string]int)
	add := func(key, verKey, member string, c Change) {
		i, ok := open[key]
		if !ok || len(calls[i].args) >= 4*maxArgsPerCall {
			calls = append(calls, &call{keys: []string{key, verKey}})
			i = len(calls) - 1
			open[key] = i
		}
		follow := "0"
		if c.Following {
			follow = "1"
		}
		calls[i].args = append(calls[i].args, member, c.Version, follow, Score(c.CreateMs, c.Version))
	}
	for _, c := range changes {
		add(s.followingKey(c.UserID), s.followingVerKey(c.UserID), c.Entity, c)
		add(s.followersKey(c.Entity), s.followersVerKey(c.Entity), c.UserID, c)
	}
	scriptCalls := make([]redisx.ScriptCall, len(calls))
	for i, c := range calls {
		scriptCalls[i] = redisx.ScriptCall{Keys: c.keys, Args: c.args}
	}
	if _, err := redisx.RunScripts(ctx, s.rdb, applyScript, scriptCalls); err != nil {
		return fmt.Errorf("apply %d edge changes: %w", len(changes), err)
	}
	return nil
}

// Edge is one live edge.
type Edge struct {
	// Member is the entity key (following side) or user id (followers side).
	Member   string
	CreateMs int64
	Score    float64
}

// Cursor is where a page of edges starts: after the edge with this score
// and member. The zero cursor starts at the newest.
type Cursor struct {
	Score  float64
	Member string
}

// IsZero reports whether c starts at the newest.
func (c Cursor) IsZero() bool { return c.Member == "" }

// String encodes the cursor for a page token.
func (c Cursor) String() string {
	return strconv.FormatFloat(c.Score, 'f', -1, 64) + "|" + c.Member
}

// ParseCursor decodes a cursor made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	for i := range len(s) {
		if s[i] == '|' {
			score, err := strconv.ParseFloat(s[:i], 64)
			if err != nil || s[i+1:] == "" {
				break
			}
			return Cursor{Score: score, Member: s[i+1:]}, nil
		}
	}
	return Cursor{}, errors.New("malformed cursor")
}

// Filter reports, for each member of a page (entity keys or user ids),
// whether to keep it; one call may read what it needs for all of them.
type Filter func(ctx context.Context, members []string) ([]bool, error)

// Following pages through the entities a user follows, newest first, keeping
// only those keep accepts (nil keeps all).
func (s *Store) Following(ctx context.Context, userID string, after Cursor, limit int, keep Filter) ([]Edge, bool, error) {
	return s.page(ctx, s.followingKey(userID), after, limit, keep)
}

// Followers pages through the users who follow an entity, newest first.
func (s *Store) Followers(ctx context.Context, entityKey string, after Cursor, limit int) ([]Edge, bool, error) {
	return s.page(ctx, s.followersKey(entityKey), after, limit, nil)
}

// maxPageRounds bounds the reads of one filtered page.
const maxPageRounds = 8

func (s *Store) page(ctx context.Context, key string, after Cursor, limit int, keep Filter) ([]Edge, bool, error) {
	var out []Edge
	cur := after
	for round := 0; round < maxPageRounds && len(out) < limit; round++ {
		top := "+inf"
		if !cur.IsZero() {
			top = strconv.FormatFloat(cur.Score, 'f', -1, 64)
		}
		// Fetch a margin for ties at the cursor's score and for filtering.
		want := int64(limit - len(out) + 1 + 16)
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: top, Min: "-inf", Count: want}).Result()
		if err != nil {
			return nil, false, fmt.Errorf("read %s: %w", key, err)
		}
		// Same score as the cursor: members come in descending order;
		// those not below the cursor's were on earlier pages.
		fresh := zs[:0:0]
		for _, z := range zs {
			if cur.IsZero() || z.Score != cur.Score || z.Member.(string) < cur.Member {
				fresh = append(fresh, z)
			}
		}
		var full bool
		if out, cur, full, err = keepEdges(ctx, fresh, keep, limit, out, cur); err != nil || full {
			return out, full, err
		}
		if int64(len(zs)) < want {
			return out, false, nil
		}
		if len(fresh) == 0 {
			// A run of ties longer than the margin: widen by paging
			// within the score lexicographically.
			return s.pageTies(ctx, key, cur, limit, keep, out)
		}
	}
	return out, len(out) == limit, nil
}

// keepEdges appends to out the members of zs that keep accepts, up to
// limit, and returns the cursor after the last member it looked at; full
// is true when a member was left over (the page is full and more follow).
func keepEdges(ctx context.Context, zs []redis.Z, keep Filter, limit int, out []Edge, cur Cursor) ([]Edge, Cursor, bool, error) {
	kept := make([]bool, len(zs))
	if keep != nil && len(zs) > 0 {
		members := make([]string, len(zs))
		for i, z := range zs {
			members[i] = z.Member.(string)
		}
		var err error
		if kept, err = keep(ctx, members); err != nil {
			return nil, cur, false, err
		}
	}
	for i, z := range zs {
		member := z.Member.(string)
		if keep != nil && !kept[i] {
			cur = Cursor{Score: z.Score, Member: member}
			continue
		}
		if len(out) == limit {
			return out, cur, true, nil
		}
		cur = Cursor{Score: z.Score, Member: member}
		out = append(out, Edge{Member: member, Score: z.Score, CreateMs: ScoreTime(z.Score)})
	}
	return out, cur, false, nil
}

// pageTies continues a page through a run of edges sharing one score.
func (s *Store) pageTies(ctx context.Context, key string, cur Cursor, limit int, keep Filter, out []Edge) ([]Edge, bool, error) {
	score := strconv.FormatFloat(cur.Score, 'f', -1, 64)
	zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Max: score, Min: score}).Result()
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", key, err)
	}
	fresh := zs[:0:0]
	for _, z := range zs {
		if z.Member.(string) < cur.Member {
			fresh = append(fresh, z)
		}
	}
	out, _, _, err = keepEdges(ctx, fresh, keep, limit, out, cur)
	if err != nil {
		return nil, false, err
	}
	// Edges with lower scores may follow the run.
	return out, true, nil
}

// IsFollowing reports, for each entity key, whether the user follows it.
func (s *Store) IsFollowing(ctx context.Context, userID string, entityKeys []string) ([]bool, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[[]bool] {
		return s.QueueIsFollowing(ctx, pipe, userID, entityKeys)
	})
}

// QueueIsFollowing queues IsFollowing on pipe.
func (s *Store) QueueIsFollowing(ctx context.Context, pipe redis.Pipeliner, userID string, entityKeys []string) redisx.Result[[]bool] {
	cmd := pipe.ZMScore(ctx, s.followingKey(userID), entityKeys...)
	return func() ([]bool, error) {
		scores, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read follows of %s: %w", userID, err)
		}
		out := make([]bool, len(entityKeys))
		for i, sc := range scores {
			out[i] = sc != 0
		}
		return out, nil
	}
}

// FollowersOf reports, for each user, whether they follow the entity.
func (s *Store) FollowersOf(ctx context.Context, entityKey string, userIDs []string) ([]bool, error) {
	scores, err := s.rdb.ZMScore(ctx, s.followersKey(entityKey), userIDs...).Result()
	if err != nil {
		return nil, fmt.Errorf("read followers of %s: %w", entityKey, err)
	}
	out := make([]bool, len(userIDs))
	for i, sc := range scores {
		out[i] = sc != 0
	}
	return out, nil
}

// FollowingCounts returns how many entities each user follows.
func (s *Store) FollowingCounts(ctx context.Context, userIDs []string) ([]int64, error) {
	cmds := make([]*redis.IntCmd, len(userIDs))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, u := range userIDs {
			cmds[i] = pipe.ZCard(ctx, s.followingKey(u))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count follows: %w", err)
	}
	out := make([]int64, len(userIDs))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// FollowerCount returns how many users follow an entity.
func (s *Store) FollowerCount(ctx context.Context, entityKey string) (int64, error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[int64] {
		return s.QueueFollowerCount(ctx, pipe, entityKey)
	})
}

// QueueFollowerCount queues FollowerCount on pipe.
func (s *Store) QueueFollowerCount(ctx context.Context, pipe redis.Pipeliner, entityKey string) redisx.Result[int64] {
	cmd := pipe.ZCard(ctx, s.followersKey(entityKey))
	return func() (int64, error) {
		n, err := cmd.Result()
		if err != nil {
			return 0, fmt.Errorf("count followers of %s: %w", entityKey, err)
		}
		return n, nil
	}
}

// QueueFollowers queues a read of every follower of an entity (user ids,
// in no particular order) on pipe. It reads the whole set at once: use it
// for entities whose follower count was just found small, and
// ScanFollowers for the rest.
func (s *Store) QueueFollowers(ctx context.Context, pipe redis.Pipeliner, entityKey string) redisx.Result[[]string] {
	cmd := pipe.ZRange(ctx, s.followersKey(entityKey), 0, -1)
	return func() ([]string, error) {
		users, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read followers of %s: %w", entityKey, err)
		}
		return users, nil
	}
}

// FollowingCount returns how many entities a user follows.
func (s *Store) FollowingCount(ctx context.Context, userID string) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.followingKey(userID)).Result()
	if err != nil {
		return 0, fmt.Errorf("count follows of %s: %w", userID, err)
	}
	return n, nil
}

// ScanFollowers calls fn with batches of up to batch followers of an entity
// (user id and create ms), in no particular order, holding one batch in
// memory at a time.
func (s *Store) ScanFollowers(ctx context.Context, entityKey string, batch int, fn func([]Edge) error) error {
	return s.scanSet(ctx, s.followersKey(entityKey), batch, fn)
}

// ScanFollowing is ScanFollowers for the entities a user follows.
func (s *Store) ScanFollowing(ctx context.Context, userID string, batch int, fn func([]Edge) error) error {
	return s.scanSet(ctx, s.followingKey(userID), batch, fn)
}

func (s *Store) scanSet(ctx context.Context, key string, batch int, fn func([]Edge) error) error {
	var cursor uint64
	buf := make([]Edge, 0, batch)
	for {
		kv, next, err := s.rdb.ZScan(ctx, key, cursor, "", int64(batch)).Result()
		if err != nil {
			return fmt.Errorf("scan %s: %w", key, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			score, err := strconv.ParseFloat(kv[i+1], 64)
			if err != nil {
				return fmt.Errorf("scan %s: bad score %q", key, kv[i+1])
			}
			buf = append(buf, Edge{Member: kv[i], Score: score, CreateMs: ScoreTime(score)})
			if len(buf) >= batch {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	if len(buf) > 0 {
		return fn(buf)
	}
	return nil
}

// ScanUsers calls fn with the ids of users who follow anything, in batches,
// in no particular order; exports walk the graph with it.
func (s *Store) ScanUsers(ctx context.Context, batch int, fn func(userIDs []string) error) error {
	prefix := s.ks.Key("fing:{")
	return redisx.ScanKeys(ctx, s.rdb, prefix+"*", int64(batch), func(keys []string) error {
		ids := make([]string, 0, len(keys))
		for _, k := range keys {
			ids = append(ids, k[len(prefix):len(k)-1])
		}
		return fn(ids)
	})
}

// Wipe deletes the whole graph projection, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	for _, p := range []string{"fing:*", "fingv:*", "fers:*", "fersv:*"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
			return err
		}
	}
	return nil
}

// Edge returns the live edge from a user to an entity, if any, and the
// edge's version register (0 when it never changed; negative after an
// unfollow), which names the edge's state for deduplication.
func (s *Store) Edge(ctx context.Context, userID, entityKey string) (Edge, bool, int64, error) {
	var scoreCmd *redis.FloatCmd
	var verCmd *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		scoreCmd = pipe.ZScore(ctx, s.followingKey(userID), entityKey)
		verCmd = pipe.HGet(ctx, s.followingVerKey(userID), entityKey)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Edge{}, false, 0, fmt.Errorf("read follow %s → %s: %w", userID, entityKey, err)
	}
	version, _ := verCmd.Int64()
	score, err := scoreCmd.Result()
	if errors.Is(err, redis.Nil) {
		return Edge{}, false, version, nil
	}
	return Edge{Member: entityKey, Score: score, CreateMs: ScoreTime(score)}, true, version, nil
}

// Pair names one edge.
type Pair struct {
	UserID string
	Entity string // entity key
}

// Exist reports, for each pair, whether the edge is live, in one round trip.
func (s *Store) Exist(ctx context.Context, pairs []Pair) ([]bool, error) {
	cmds := make([]*redis.FloatCmd, len(pairs))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range pairs {
			cmds[i] = pipe.ZScore(ctx, s.followingKey(p.UserID), p.Entity)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read edges: %w", err)
	}
	out := make([]bool, len(pairs))
	for i, c := range cmds {
		out[i] = c.Err() == nil
	}
	return out, nil
}

// Versions returns the version registers of edges (0 where an edge never
// changed; negative after an unfollow), in one round trip.
func (s *Store) Versions(ctx context.Context, pairs []Pair) ([]int64, error) {
	cmds := make([]*redis.StringCmd, len(pairs))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, p := range pairs {
			cmds[i] = pipe.HGet(ctx, s.followingVerKey(p.UserID), p.Entity)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read edge versions: %w", err)
	}
	out := make([]int64, len(pairs))
	for i, c := range cmds {
		out[i], _ = c.Int64()
	}
	return out, nil
}
