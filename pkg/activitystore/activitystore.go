// Package activitystore is the Redis projection of activity bodies from the
// ACTIVITIES stream. Bodies are stored once; feeds hold ids.
//
//	tidings:act:{<id>}          hash: seq, pb (Activity), del
//	tidings:idem:{<scope>}      string: activity id of an idempotency key
//
// Edits and deletes are ordered by stream sequence like every projection. A
// deleted activity keeps a tombstone (seq, del=1, no body): a redelivered
// post cannot bring it back, and reads drop it at once, before it leaves
// every timeline.
package activitystore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// BodyKey is the hash of an activity: its body, as a tidings.v1.Activity
// message, is in the field BodyField.
func (s *Store) BodyKey(id string) string { return s.ks.Key("act:{" + id + "}") }

// BodyField is the field of BodyKey that holds the body.
const BodyField = "pb"

func (s *Store) idemKey(scope string) string { return s.ks.Key("idem:{" + scope + "}") }

// IdempotencyTTL is how long an idempotency key is remembered in Redis; the
// log's duplicate window covers the first minutes, this the rest.
const IdempotencyTTL = 7 * 24 * time.Hour

// applyScript stores a body (ARGV[3] == "0") or a tombstone unless a newer
// event was applied; a tombstone is final. Returns 1 when applied, 0 when
// a newer event was, -1 when the activity is deleted.
var applyScript = redisx.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'seq', 'del')
if cur[2] == '1' then
  return -1
end
if (tonumber(cur[1]) or 0) >= tonumber(ARGV[1]) then
  return 0
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'del', '1')
  redis.call('HDEL', KEYS[1], 'pb')
  return 1
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'pb', ARGV[2], 'del', '0')
return 1
`)

// Store reads and writes activity bodies.
type Store struct {
	rdb redis.UniversalClient
	ks  *redisx.Keyspace
}

// New returns a Store over the keys of ks.
func New(rdb redis.UniversalClient, ks *redisx.Keyspace) *Store { return &Store{rdb: rdb, ks: ks} }

// Put stores a posted or edited activity at stream sequence seq, and
// reports whether the activity is deleted (then nothing is stored).
func (s *Store) Put(ctx context.Context, seq uint64, a *tidingsv1.Activity) (deleted bool, err error) {
	return redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[bool] {
		return s.QueuePut(ctx, pipe, seq, a)
	})
}

// QueuePut queues Put on pipe; its result (whether the activity is
// deleted) is known once pipe has run. An activity that cannot be encoded
// queues nothing and its result is the error.
func (s *Store) QueuePut(ctx context.Context, pipe redis.Pipeliner, seq uint64, a *tidingsv1.Activity) redisx.Result[bool] {
	data, err := proto.Marshal(a)
	if err != nil {
		return func() (bool, error) { return false, fmt.Errorf("encode activity %s: %w", a.GetId(), err) }
	}
	cmd := applyScript.EvalSha(ctx, pipe, []string{s.BodyKey(a.GetId())}, seq, data, "0")
	return func() (bool, error) {
		res, err := cmd.Int64()
		if err != nil {
			return false, fmt.Errorf("store activity %s: %w", a.GetId(), err)
		}
		return res < 0, nil
	}
}

// Delete leaves a tombstone for an activity deleted at stream sequence seq.
func (s *Store) Delete(ctx context.Context, seq uint64, id string) error {
	_, err := redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[bool] {
		return s.QueueDelete(ctx, pipe, seq, id)
	})
	return err
}

// QueueDelete queues Delete on pipe.
func (s *Store) QueueDelete(ctx context.Context, pipe redis.Pipeliner, seq uint64, id string) redisx.Result[bool] {
	cmd := applyScript.EvalSha(ctx, pipe, []string{s.BodyKey(id)}, seq, "", "1")
	return func() (bool, error) {
		if err := cmd.Err(); err != nil {
			return false, fmt.Errorf("delete activity %s: %w", id, err)
		}
		return true, nil
	}
}

// ErrNotFound means there is no such activity, or it was deleted.
var ErrNotFound = errors.New("activity not found")

// Get returns one activity.
func (s *Store) Get(ctx context.Context, id string) (*tidingsv1.Activity, error) {
	got, err := s.GetMany(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if got[0] == nil {
		return nil, ErrNotFound
	}
	return got[0], nil
}

// GetMany returns the activities of ids, nil for missing or deleted ones, in
// one round trip.
func (s *Store) GetMany(ctx context.Context, ids []string) ([]*tidingsv1.Activity, error) {
	cmds := make([]*redis.StringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HGet(ctx, s.BodyKey(id), BodyField)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read activities: %w", err)
	}
	out := make([]*tidingsv1.Activity, len(ids))
	for i, cmd := range cmds {
		data, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read activity %s: %w", ids[i], err)
		}
		a, err := Decode(ids[i], data)
		if err != nil {
			return nil, err
		}
		out[i] = a
	}
	return out, nil
}

// Decode decodes the body of activity id, as BodyField holds it.
func Decode(id string, data []byte) (*tidingsv1.Activity, error) {
	a := &tidingsv1.Activity{}
	if err := proto.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("decode activity %s: %w", id, err)
	}
	return a, nil
}

// IsDeleted reports whether an activity has a tombstone.
func (s *Store) IsDeleted(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.BodyKey(id), "del").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read activity %s: %w", id, err)
	}
	return v == "1", nil
}

// IdempotentID returns the activity id recorded for an idempotency scope.
func (s *Store) IdempotentID(ctx context.Context, scope string) (string, bool, error) {
	id, err := s.rdb.Get(ctx, s.idemKey(scope)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read idempotency key: %w", err)
	}
	return id, true, nil
}

// QueueRememberIdempotent queues, on pipe, the record of the activity id
// of an idempotency scope, for IdempotencyTTL from at (when the activity
// was posted): a replay writes the same expiry as the first apply did, and
// writes nothing for a key whose time is over. Its result tells whether the
// scope was new.
func (s *Store) QueueRememberIdempotent(ctx context.Context, pipe redis.Pipeliner, scope, id string, at time.Time) redisx.Result[bool] {
	until := at.Add(IdempotencyTTL)
	if !until.After(time.Now()) {
		return func() (bool, error) { return false, nil }
	}
	cmd := pipe.SetArgs(ctx, s.idemKey(scope), id, redis.SetArgs{Mode: "NX", ExpireAt: until})
	return func() (bool, error) {
		err := cmd.Err()
		if errors.Is(err, redis.Nil) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("write idempotency key: %w", err)
		}
		return true, nil
	}
}

// Wipe deletes bodies and idempotency keys, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	for _, p := range []string{"act:*", "idem:*"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, s.ks.Key(p)); err != nil {
			return err
		}
	}
	return nil
}
