// Package userstatestore is the Redis projection of the bookmarks and mutes
// of the USERSTATE stream. Each flag (bookmark, mute) of a user keeps two
// keys under the user's hash tag:
//
//	tidings:bmv:{<user>}    hash: activity → ± seq (version register)
//	tidings:bm:{<user>}     sorted set: bookmarked activities → when (ms)
//	tidings:mutev:{<user>}  hash: activity → ± seq
//	tidings:mute:{<user>}   sorted set: muted activities → when (ms)
//
// As for follow edges, the register holds the stream sequence of the newest
// change, negative when it cleared the flag, and a change applies only when
// newer: redeliveries and out-of-order deliveries end in the state of the
// last event in the log. Notification read marks, the third kind of user
// state, belong to the notifications (pkg/notificationstore).
package userstatestore

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/redisx"
)

// Flag is one per-user flag on activities.
type Flag string

// The flags.
const (
	Bookmark Flag = "bm"
	Mute     Flag = "mute"
)

// MaxPerUser bounds the activities one user may flag of each kind.
const MaxPerUser = 10000

func (s *Store) setKey(f Flag, user string) string { return s.ks.Key(string(f) + ":{" + user + "}") }
func (s *Store) versionKey(f Flag, user string) string {
	return s.ks.Key(string(f) + "v:{" + user + "}")
}

// SetKey is the sorted set of a user's flagged activities (for scripts of
// other stores that read it under the user's hash tag).
func (s *Store) SetKey(f Flag, user string) string { return s.setKey(f, user) }

// applyScript sets (ARGV[3] == '1') or clears flag ARGV[1] at seq ARGV[2]
// unless a newer change was applied; ARGV[4] is when (ms). Returns 1 when
// the set changed.
var applyScript = redisx.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local v = tonumber(ARGV[2])
if math.abs(cur) >= v then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], v)
  return redis.call('ZADD', KEYS[2], 'CH', ARGV[4], ARGV[1])
end
redis.call('HSET', KEYS[1], ARGV[1], -v)
return redis.call('ZREM', KEYS[2], ARGV[1])
`)

// Store reads and writes the flags.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace) *Store { return &Store{rdb: rdb, ks: ks} }

// QueueApply queues, on pipe, a flag change of a user on an activity at
// stream sequence seq, made at ms.
func (s *Store) QueueApply(ctx context.Context, pipe redis.Pipeliner, f Flag, user, activityID string, on bool, seq uint64, ms int64) redisx.Result[bool] {
	set := "0"
	if on {
		set = "1"
	}
	cmd := applyScript.EvalSha(ctx, pipe, []string{s.versionKey(f, user), s.setKey(f, user)}, activityID, seq, set, ms)
	return func() (bool, error) {
		n, err := cmd.Int64()
		if err != nil {
			return false, fmt.Errorf("apply %s of %s: %w", f, user, err)
		}
		return n > 0, nil
	}
}

// Version returns the version register of a flag: the stream sequence of
// the newest change, negative when it cleared the flag, 0 for none.
func (s *Store) Version(ctx context.Context, f Flag, user, activityID string) (int64, error) {
	v, err := s.rdb.HGet(ctx, s.versionKey(f, user), activityID).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s of %s: %w", f, user, err)
	}
	return v, nil
}

// Count returns how many activities a user flagged.
func (s *Store) Count(ctx context.Context, f Flag, user string) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.setKey(f, user)).Result()
	if err != nil {
		return 0, fmt.Errorf("count %s of %s: %w", f, user, err)
	}
	return n, nil
}

// QueueFlagged queues, on pipe, whether a user flagged each activity.
func (s *Store) QueueFlagged(ctx context.Context, pipe redis.Pipeliner, f Flag, user string, activityIDs []string) redisx.Result[[]bool] {
	if len(activityIDs) == 0 || user == "" {
		n := len(activityIDs)
		return func() ([]bool, error) { return make([]bool, n), nil }
	}
	cmd := pipe.ZMScore(ctx, s.setKey(f, user), activityIDs...)
	return func() ([]bool, error) {
		// ZMSCORE answers nil for absent members, which go-redis reads as 0;
		// a flag's score is its time, never 0.
		scores, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read %s of %s: %w", f, user, err)
		}
		out := make([]bool, len(scores))
		for i, v := range scores {
			out[i] = v != 0
		}
		return out, nil
	}
}

// Flagged is one flagged activity.
type Flagged struct {
	ActivityID string
	Ms         int64
}

// Page returns up to limit of a user's flagged activities, newest first,
// after the cursor (Flagged.String; "" for the first page), and whether
// more follow.
func (s *Store) Page(ctx context.Context, f Flag, user, after string, limit int) ([]Flagged, bool, error) {
	top := "+inf"
	var cur Flagged
	if after != "" {
		var err error
		if cur, err = parseFlagged(after); err != nil {
			return nil, false, err
		}
		top = strconv.FormatInt(cur.Ms, 10)
	}
	for want := int64(limit + 1 + 16); ; want *= 4 {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.setKey(f, user), &redis.ZRangeBy{Max: top, Min: "-inf", Count: want}).Result()
		if err != nil {
			return nil, false, fmt.Errorf("list %s of %s: %w", f, user, err)
		}
		var out []Flagged
		for _, z := range zs {
			fl := Flagged{ActivityID: z.Member.(string), Ms: int64(z.Score)}
			// Ties in score come in descending member order: those not
			// below the cursor's were on earlier pages.
			if after != "" && fl.Ms == cur.Ms && fl.ActivityID >= cur.ActivityID {
				continue
			}
			out = append(out, fl)
		}
		if len(out) > limit {
			return out[:limit], true, nil
		}
		if int64(len(zs)) < want {
			return out, false, nil
		}
	}
}

// String encodes where a page after f starts.
func (f Flagged) String() string { return strconv.FormatInt(f.Ms, 10) + "|" + f.ActivityID }

func parseFlagged(s string) (Flagged, error) {
	for i := range len(s) {
		if s[i] == '|' {
			ms, err := strconv.ParseInt(s[:i], 10, 64)
			if err != nil || s[i+1:] == "" {
				break
			}
			return Flagged{Ms: ms, ActivityID: s[i+1:]}, nil
		}
	}
	return Flagged{}, errors.New("malformed cursor")
}

// Wipe deletes every flag, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	for _, f := range []Flag{Bookmark, Mute} {
		for _, p := range []string{string(f) + ":*", string(f) + "v:*"} {
			if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
				return err
			}
		}
	}
	return nil
}
