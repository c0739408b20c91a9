// Package conversationstore is the Redis projection of the CONVERSATIONS
// stream: each activity's comments and reactions, and the summary a feed
// item shows. Every key of one activity shares its hash tag, so each event
// is applied by one script in one slot:
//
//	tidings:cmt:{<activity>}             hash: comment id → seq, state, body
//	tidings:cml:{<activity>}             sorted set: live comment ids (score 0:
//	                                     ids sort by time, so the set reads in
//	                                     thread order by lexicographic range)
//	tidings:cmp:{<activity>}             sorted set: who ever commented → the
//	                                     time (ms) of their first comment
//	tidings:rxv:{<activity>}             hash: <item>|<user>|<KIND> → ± seq
//	tidings:rx:{<activity>}<item>|<KIND> sorted set: who reacted → when (ms)
//	tidings:bumped                       sorted set: activity → newest comment
//	                                     time (ms), the newest 100,000
//	tidings:cidem:{<scope>}              string: comment id of an idempotency key
//
// An item is the activity id itself or one of its comments' ids.
//
// The summary lives in the activity's body hash (tidings:act:{<activity>},
// pkg/activitystore), beside the body, under the same hash tag: n (live
// comments), c1 and c2 (the newest two), la (the newest comment's time,
// ms), r:<item> (the item's reactions, "<like>,<celebrate>,…" in Kinds
// order) and m:<item>|<user> (the user's own, one digit a kind). So a page
// of a feed reads each item's body and summary with one HMGET, and the
// scripts that change the conversation write the summary in the same step.
//
// Every apply is idempotent and ordered by log position. A comment keeps
// the stream sequence of the newest event applied to it; a deleted comment
// keeps a tombstone that no later or redelivered event passes, and leaves
// the live set (and so the count) at once. A reaction's version register
// holds the sequence of the newest change, negative for a removal, as the
// follow graph does; counts are the cardinalities of the reaction sets,
// written by the script that changes the set, never incremented blindly, so
// a redelivery or a replay cannot make them drift.
package conversationstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Kinds are the reaction kinds, in the order reads report them.
var Kinds = []tidingsv1.ReactionKind{
	tidingsv1.ReactionKind_REACTION_KIND_LIKE,
	tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE,
	tidingsv1.ReactionKind_REACTION_KIND_SUPPORT,
	tidingsv1.ReactionKind_REACTION_KIND_INSIGHTFUL,
	tidingsv1.ReactionKind_REACTION_KIND_FUNNY,
}

// KindName is the short name of a reaction kind in keys: LIKE, CELEBRATE...
func KindName(k tidingsv1.ReactionKind) string {
	return strings.TrimPrefix(k.String(), "REACTION_KIND_")
}

// BumpedCap is how many activities the recently-commented index keeps.
const BumpedCap = 100000

// IdempotencyTTL is how long a comment's idempotency key is remembered in
// Redis; the log's duplicate window covers the first minutes, this the rest.
const IdempotencyTTL = 7 * 24 * time.Hour

func (s *Store) commentsKey(a string) string     { return s.ks.Key("cmt:{" + a + "}") }
func (s *Store) liveKey(a string) string         { return s.ks.Key("cml:{" + a + "}") }
func (s *Store) participantsKey(a string) string { return s.ks.Key("cmp:{" + a + "}") }
func (s *Store) versionsKey(a string) string     { return s.ks.Key("rxv:{" + a + "}") }
func (s *Store) reactorsKey(a, item string, k tidingsv1.ReactionKind) string {
	return s.ks.Key("rx:{"+a+"}") + item + "|" + KindName(k)
}
func (s *Store) bumpedKey() string           { return s.ks.Key("bumped") }
func (s *Store) idemKey(scope string) string { return s.ks.Key("cidem:{" + scope + "}") }

// countField is the summary field of an item's reaction counts.
func countField(item string) string { return "r:" + item }

// mineField is the summary field of a user's own reactions on an item.
func mineField(item, user string) string { return "m:" + item + "|" + user }

// versionField is the version register of one user's reaction of one kind.
func versionField(item, user string, k tidingsv1.ReactionKind) string {
	return item + "|" + user + "|" + KindName(k)
}

// A stored comment is "<seq, 20 digits><L or D><body>": the sequence of the
// newest event applied, live or deleted, and the Comment message (live
// only). Fixed-width sequences compare as strings.
const headerLen = 21

func seqString(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// summarize recomputes the comment part of the summary (KEYS[4], the body
// hash): the count and the newest two comments, from the live set.
const summarize = `
local function summarize()
  redis.call('HSET', KEYS[4], 'n', redis.call('ZCARD', KEYS[2]))
  redis.call('HDEL', KEYS[4], 'c1', 'c2')
  local top = redis.call('ZREVRANGE', KEYS[2], 0, 1)
  for i, id in ipairs(top) do
    local v = redis.call('HGET', KEYS[1], id)
    redis.call('HSET', KEYS[4], 'c' .. i, string.sub(v, 22))
  end
end
`

// putScript stores a comment posted or edited at seq (ARGV[2], 20 digits)
// unless it is deleted or a newer event was applied: ARGV[1] id, ARGV[3]
// body, ARGV[4] author, ARGV[5] create time (ms). Returns 1 when applied, 0
// when a newer event was, -1 when the comment is deleted.
//
// Who commented and when the activity was last commented on count every
// comment ever made, deleted ones too, so that they do not depend on
// whether a deletion was applied before the comment it deletes.
var putScript = redisx.NewScript(summarize + `
redis.call('ZADD', KEYS[3], 'LT', ARGV[5], ARGV[4])
local la = tonumber(redis.call('HGET', KEYS[4], 'la') or '0')
if tonumber(ARGV[5]) > la then redis.call('HSET', KEYS[4], 'la', ARGV[5]) end
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  if string.sub(cur, 21, 21) == 'D' then return -1 end
  if string.sub(cur, 1, 20) >= ARGV[2] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. 'L' .. ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
summarize()
return 1
`)

// deleteScript leaves the tombstone of comment ARGV[1], deleted at seq
// ARGV[2]: final, whatever came before or comes after. Of several
// deletions it keeps the first in the log. Returns 1 when the comment was
// not deleted before.
var deleteScript = redisx.NewScript(summarize + `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 21, 21) == 'D' then
  if string.sub(cur, 1, 20) > ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. 'D') end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. 'D')
redis.call('ZREM', KEYS[2], ARGV[1])
summarize()
return 1
`)

// reactScript applies one reaction change at seq ARGV[4] unless a newer
// change of the same reaction was applied. KEYS: 1 the version registers,
// 2 the body hash (the summary), 3.. the item's reaction set of each kind.
// ARGV: 1 the item, 2 the user, 3 the kind's index (from 1), 4 the seq, 5
// 1 to add and 0 to remove, 6 when (ms), 7.. the kinds' names. It then
// writes the item's counts (the sets' cardinalities) and the user's own
// reactions into the summary. Returns 1 when the set changed.
var reactScript = redisx.NewScript(`
local k = tonumber(ARGV[3])
local vfield = ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[6 + k]
local cur = tonumber(redis.call('HGET', KEYS[1], vfield) or '0')
local v = tonumber(ARGV[4])
if math.abs(cur) >= v then return 0 end
local set = KEYS[2 + k]
local changed
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[1], vfield, v)
  changed = redis.call('ZADD', set, 'CH', ARGV[6], ARGV[2])
else
  redis.call('HSET', KEYS[1], vfield, -v)
  changed = redis.call('ZREM', set, ARGV[2])
end
local counts, mine, any, own = {}, {}, false, false
for i = 3, #KEYS do
  local n = redis.call('ZCARD', KEYS[i])
  counts[#counts + 1] = n
  if n > 0 then any = true end
  local mv = tonumber(redis.call('HGET', KEYS[1], ARGV[1] .. '|' .. ARGV[2] .. '|' .. ARGV[4 + i]) or '0')
  if mv > 0 then
    mine[#mine + 1] = '1'
    own = true
  else
    mine[#mine + 1] = '0'
  end
end
if any then redis.call('HSET', KEYS[2], 'r:' .. ARGV[1], table.concat(counts, ',')) else redis.call('HDEL', KEYS[2], 'r:' .. ARGV[1]) end
local mfield = 'm:' .. ARGV[1] .. '|' .. ARGV[2]
if own then redis.call('HSET', KEYS[2], mfield, table.concat(mine)) else redis.call('HDEL', KEYS[2], mfield) end
return changed
`)

// Store reads and writes conversations.
type Store struct {
	rdb     redis.UniversalClient
	ks      *redisx.Keyspace
	bodyKey func(activityID string) string
}

// New returns a Store over the keys of ks; bodyKey names an activity's body
// hash (pkg/activitystore), which holds the conversation's summary.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace, bodyKey func(activityID string) string) *Store {
	return &Store{rdb: rdb, ks: ks, bodyKey: bodyKey}
}

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) commentKeys(a string) []string {
	return []string{s.commentsKey(a), s.liveKey(a), s.participantsKey(a), s.bodyKey(a)}
}

// Applied is what an apply did: 1 applied, 0 a newer event was applied
// before, -1 the comment is deleted.
type Applied int64

// QueuePutComment queues, on pipe, the store of a comment posted or edited
// at stream sequence seq.
func (s *Store) QueuePutComment(ctx context.Context, pipe redis.Pipeliner, seq uint64, c *tidingsv1.Comment) redisx.Result[Applied] {
	data, err := proto.Marshal(c)
	if err != nil {
		return func() (Applied, error) { return 0, fmt.Errorf("encode comment %s: %w", c.GetId(), err) }
	}
	cmd := putScript.EvalSha(ctx, pipe, s.commentKeys(c.GetActivityId()),
		c.GetId(), seqString(seq), data, c.GetAuthorUserId(), c.GetCreateTime().AsTime().UnixMilli())
	return func() (Applied, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("store comment %s: %w", c.GetId(), err)
		}
		return Applied(n), nil
	}
}

// QueueDeleteComment queues, on pipe, the tombstone of a comment deleted at
// stream sequence seq; its result is 1 when it was not deleted before.
func (s *Store) QueueDeleteComment(ctx context.Context, pipe redis.Pipeliner, seq uint64, activityID, commentID string) redisx.Result[Applied] {
	cmd := deleteScript.EvalSha(ctx, pipe, s.commentKeys(activityID), commentID, seqString(seq))
	return func() (Applied, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("delete comment %s: %w", commentID, err)
		}
		return Applied(n), nil
	}
}

// QueueBump queues, on pipe, the note that an activity was commented on at
// ms, for the latest-activity order, and trims the index to BumpedCap.
func (s *Store) QueueBump(ctx context.Context, pipe redis.Pipeliner, activityID string, ms int64) {
	pipe.ZAddGT(ctx, s.bumpedKey(), redis.Z{Score: float64(ms), Member: activityID})
	pipe.ZRemRangeByRank(ctx, s.bumpedKey(), 0, -BumpedCap-1)
}

// QueueLastActivity queues, on pipe, the read of when each activity was
// last commented on (Unix ms; 0 for those not among the BumpedCap most
// recently commented on).
func (s *Store) QueueLastActivity(ctx context.Context, pipe redis.Pipeliner, activityIDs []string) redisx.Result[[]int64] {
	if len(activityIDs) == 0 {
		return func() ([]int64, error) { return nil, nil }
	}
	cmd := pipe.ZMScore(ctx, s.bumpedKey(), activityIDs...)
	return func() ([]int64, error) {
		scores, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read last activity: %w", err)
		}
		out := make([]int64, len(scores))
		for i, v := range scores {
			out[i] = int64(v)
		}
		return out, nil
	}
}

// Item names what a reaction is on: an activity, or one of its comments.
type Item struct {
	ActivityID string
	// CommentID is empty for the activity itself.
	CommentID string
}

// ID is the item's id in keys: the comment's id, or the activity's.
func (it Item) ID() string {
	if it.CommentID != "" {
		return it.CommentID
	}
	return it.ActivityID
}

// QueueReact queues, on pipe, one reaction change at stream sequence seq,
// made at ms; its result is 1 when the set of reactions changed.
func (s *Store) QueueReact(ctx context.Context, pipe redis.Pipeliner, seq uint64, it Item, user string, k tidingsv1.ReactionKind, on bool, ms int64) redisx.Result[int64] {
	a := it.ActivityID
	add := "0"
	if on {
		add = "1"
	}
	ki := slices.Index(Kinds, k)
	if ki < 0 {
		return func() (int64, error) { return 0, fmt.Errorf("apply reaction on %s: unknown kind %s", it.ID(), k) }
	}
	keys := []string{s.versionsKey(a), s.bodyKey(a)}
	args := []any{it.ID(), user, ki + 1, seq, add, ms}
	for _, kk := range Kinds {
		keys = append(keys, s.reactorsKey(a, it.ID(), kk))
		args = append(args, KindName(kk))
	}
	cmd := reactScript.EvalSha(ctx, pipe, keys, args...)
	return func() (int64, error) {
		n, err := cmd.Int64()
		if err != nil {
			return 0, fmt.Errorf("apply reaction on %s: %w", it.ID(), err)
		}
		return n, nil
	}
}

// ReactionVersion returns the version register of one user's reaction of
// one kind on an item: the stream sequence of the newest change applied,
// negative for a removal, 0 for none.
func (s *Store) ReactionVersion(ctx context.Context, it Item, user string, k tidingsv1.ReactionKind) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.versionsKey(it.ActivityID), versionField(it.ID(), user, k)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read reaction of %s on %s: %w", user, it.ID(), err)
	}
	return v, nil
}

// QueueRememberIdempotent queues, on pipe, the comment id of an
// idempotency scope.
func (s *Store) QueueRememberIdempotent(ctx context.Context, pipe redis.Pipeliner, scope, commentID string) {
	pipe.SetNX(ctx, s.idemKey(scope), commentID, IdempotencyTTL)
}

// IdempotentComment returns the comment id recorded for a scope.
func (s *Store) IdempotentComment(ctx context.Context, scope string) (string, bool, error) {
	id, err := s.rdb.Get(ctx, s.idemKey(scope)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read idempotency key: %w", err)
	}
	return id, true, nil
}

// ErrNotFound means there is no such comment.
var ErrNotFound = errors.New("comment not found")

// ErrDeleted means the comment was deleted.
var ErrDeleted = errors.New("comment deleted")

// Comment returns one comment: ErrNotFound when there is none, ErrDeleted
// when it was deleted.
func (s *Store) Comment(ctx context.Context, activityID, commentID string) (*tidingsv1.Comment, error) {
	v, err := s.rdb.HGet(ctx, s.commentsKey(activityID), commentID).Result()
	if errors.Is(err, redis.Nil) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read comment %s: %w", commentID, err)
	}
	c, deleted, err := decodeStored(v)
	if deleted {
		return nil, ErrDeleted
	}
	return c, err
}

// CommentSeq returns the stream sequence of the newest event applied to a
// comment (0 when none).
func (s *Store) CommentSeq(ctx context.Context, activityID, commentID string) (uint64, error) {
	v, err := s.rdb.HGet(ctx, s.commentsKey(activityID), commentID).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil || len(v) < headerLen {
		return 0, fmt.Errorf("read comment %s: %w", commentID, err)
	}
	return strconv.ParseUint(v[:20], 10, 64)
}

func decodeStored(v string) (*tidingsv1.Comment, bool, error) {
	if len(v) < headerLen {
		return nil, false, errors.New("malformed stored comment")
	}
	if v[20] == 'D' {
		return nil, true, nil
	}
	c, err := decodeComment(v[headerLen:])
	return c, false, err
}

// inPlace returns the bytes of s without copying them, for proto.Unmarshal,
// which copies what it keeps and never writes its input: a page decodes
// its bodies and comments from Redis replies without a copy of each.
func inPlace(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s)) //nolint:gosec // G103: read-only view, see above
}

func decodeComment(data string) (*tidingsv1.Comment, error) {
	c := &tidingsv1.Comment{}
	if err := proto.Unmarshal(inPlace(data), c); err != nil {
		return nil, fmt.Errorf("decode comment: %w", err)
	}
	return c, nil
}

// QueueComments queues, on pipe, the read of comments of one activity; its
// result holds nil for those missing or deleted.
func (s *Store) QueueComments(ctx context.Context, pipe redis.Pipeliner, activityID string, ids []string) redisx.Result[[]*tidingsv1.Comment] {
	if len(ids) == 0 {
		return func() ([]*tidingsv1.Comment, error) { return nil, nil }
	}
	cmd := pipe.HMGet(ctx, s.commentsKey(activityID), ids...)
	return func() ([]*tidingsv1.Comment, error) {
		vals, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read comments of %s: %w", activityID, err)
		}
		out := make([]*tidingsv1.Comment, len(ids))
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue
			}
			c, _, err := decodeStored(str)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	}
}

// Page returns up to limit live comment ids of an activity after the
// comment id after ("" for the first page), oldest first (or newest first,
// before it), whether more follow, and how many live comments there are,
// in one round trip.
func (s *Store) Page(ctx context.Context, activityID, after string, limit int, newest bool) ([]string, bool, int64, error) {
	var (
		page  *redis.StringSliceCmd
		total *redis.IntCmd
	)
	key := s.liveKey(activityID)
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		if newest {
			top := "+"
			if after != "" {
				top = "(" + after
			}
			page = pipe.ZRevRangeByLex(ctx, key, &redis.ZRangeBy{Max: top, Min: "-", Count: int64(limit + 1)})
		} else {
			bottom := "-"
			if after != "" {
				bottom = "(" + after
			}
			page = pipe.ZRangeByLex(ctx, key, &redis.ZRangeBy{Min: bottom, Max: "+", Count: int64(limit + 1)})
		}
		total = pipe.ZCard(ctx, key)
		return nil
	})
	if err != nil {
		return nil, false, 0, fmt.Errorf("page comments of %s: %w", activityID, err)
	}
	ids := page.Val()
	more := len(ids) > limit
	if more {
		ids = ids[:limit]
	}
	return ids, more, total.Val(), nil
}

// Count returns how many live comments an activity has.
func (s *Store) Count(ctx context.Context, activityID string) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.liveKey(activityID)).Result()
	if err != nil {
		return 0, fmt.Errorf("count comments of %s: %w", activityID, err)
	}
	return n, nil
}

// Participants calls fn with batches of the users who commented on an
// activity before ms (their first comment), at most batch at a time.
func (s *Store) Participants(ctx context.Context, activityID string, beforeMs int64, batch int, fn func(users []string) error) error {
	key := s.participantsKey(activityID)
	for offset := int64(0); ; offset += int64(batch) {
		users, err := s.rdb.ZRangeByScore(ctx, key, &redis.ZRangeBy{
			Min: "-inf", Max: "(" + strconv.FormatInt(beforeMs, 10), Offset: offset, Count: int64(batch),
		}).Result()
		if err != nil {
			return fmt.Errorf("read participants of %s: %w", activityID, err)
		}
		if len(users) > 0 {
			if err := fn(users); err != nil {
				return err
			}
		}
		if len(users) < batch {
			return nil
		}
	}
}

// Wipe deletes every conversation key, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	// The summaries go with the bodies (activitystore.Store.Wipe).
	for _, p := range []string{"cmt:*", "cml:*", "cmp:*", "rxv:*", "rx:*", "cidem:*", "bumped"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
			return err
		}
	}
	return nil
}
