// Package recordstore is the Redis projection of the RECORDS stream: each
// record as of the newest event applied, and an index of records by type.
//
//	tidings:record:{<type>:<external id>}   hash: seq, pb (Record), del
//	tidings:records:type:{<type>}           sorted set of external ids
//
// As with profiles, an event older than the one applied is ignored. A
// deleted record keeps its hash as a tombstone (seq and del=1, no body), so
// a redelivered older upsert cannot bring it back.
package recordstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Key is the hash of a record: the tidings.v1.Record message is in its
// field Field.
func Key(ref *tidingsv1.RecordRef) string {
	return redisx.Prefix + "record:{" + ref.GetType() + ":" + ref.GetExternalId() + "}"
}

// Field is the field of Key that holds the record.
const Field = "pb"

func typeKey(typ string) string { return redisx.Prefix + "records:type:{" + typ + "}" }

// applyScript stores a record (ARGV[3] == "0") or its tombstone unless a
// newer event was applied. It returns {applied, deleted now}.
var applyScript = redisx.NewScript(`
local cur = redis.call('HMGET', KEYS[1], 'seq', 'del')
if (tonumber(cur[1]) or 0) >= tonumber(ARGV[1]) then
  return {0, cur[2] == '1' and 1 or 0}
end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'del', '1')
  redis.call('HDEL', KEYS[1], 'pb')
  return {1, 1}
end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'pb', ARGV[2], 'del', '0')
return {1, 0}
`)

// Store reads and writes the record projection.
type Store struct {
	rdb redis.UniversalClient
}

// New returns a Store.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// Apply projects one record event at stream sequence seq.
func (s *Store) Apply(ctx context.Context, seq uint64, ev *tidingsv1.RecordEvent) error {
	ref := ev.GetRecord().GetRef()
	data, err := proto.Marshal(ev.GetRecord())
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	del := "0"
	if ev.GetDeleted() {
		del = "1"
	}
	res, err := applyScript.Run(ctx, s.rdb, []string{Key(ref)}, seq, data, del).Int64Slice()
	if err != nil {
		return fmt.Errorf("apply record %s/%s: %w", ref.GetType(), ref.GetExternalId(), err)
	}
	// Whether applied now or earlier, the index follows the stored state.
	if res[1] == 1 {
		err = s.rdb.ZRem(ctx, typeKey(ref.GetType()), ref.GetExternalId()).Err()
	} else {
		err = s.rdb.ZAdd(ctx, typeKey(ref.GetType()), redis.Z{Member: ref.GetExternalId()}).Err()
	}
	if err != nil {
		return fmt.Errorf("index record %s/%s: %w", ref.GetType(), ref.GetExternalId(), err)
	}
	return nil
}

// ErrNotFound means there is no such record (or it was deleted).
var ErrNotFound = errors.New("record not found")

// Get returns one record.
func (s *Store) Get(ctx context.Context, ref *tidingsv1.RecordRef) (*tidingsv1.Record, error) {
	found, err := s.GetMany(ctx, []*tidingsv1.RecordRef{ref})
	if err != nil {
		return nil, err
	}
	if found[0] == nil {
		return nil, ErrNotFound
	}
	return found[0], nil
}

// GetMany returns the records of refs, nil where there is none, in one
// round trip.
func (s *Store) GetMany(ctx context.Context, refs []*tidingsv1.RecordRef) ([]*tidingsv1.Record, error) {
	res := make([]redisx.Result[*tidingsv1.Record], len(refs))
	if err := redisx.Pipeline(ctx, s.rdb, func(pipe redis.Pipeliner) error {
		for i, ref := range refs {
			res[i] = s.QueueGet(ctx, pipe, ref)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	out := make([]*tidingsv1.Record, len(refs))
	for i, r := range res {
		rec, err := r()
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		out[i] = rec
	}
	return out, nil
}

// QueueGet queues Get on pipe; its result is the record, or ErrNotFound.
func (s *Store) QueueGet(ctx context.Context, pipe redis.Pipeliner, ref *tidingsv1.RecordRef) redisx.Result[*tidingsv1.Record] {
	cmd := pipe.HGet(ctx, Key(ref), Field)
	return func() (*tidingsv1.Record, error) {
		data, err := cmd.Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("read record: %w", err)
		}
		r := &tidingsv1.Record{}
		if err := proto.Unmarshal(data, r); err != nil {
			return nil, fmt.Errorf("decode record: %w", err)
		}
		return r, nil
	}
}

// List returns up to limit records of a type after the external id after,
// ordered by external id, keeping those keep accepts, and whether more may
// follow.
func (s *Store) List(ctx context.Context, typ, after string, limit int, keep func(*tidingsv1.Record) bool) ([]*tidingsv1.Record, string, bool, error) {
	var out []*tidingsv1.Record
	last := after
	const maxRounds = 8
	for round := 0; round < maxRounds && len(out) < limit; round++ {
		from := "-"
		if last != "" {
			from = "(" + last
		}
		want := limit - len(out)
		ids, err := s.rdb.ZRangeByLex(ctx, typeKey(typ), &redis.ZRangeBy{Min: from, Max: "+", Count: int64(want + 1)}).Result()
		if err != nil {
			return nil, "", false, fmt.Errorf("list records of %s: %w", typ, err)
		}
		more := len(ids) > want
		if more {
			ids = ids[:want]
		}
		if len(ids) == 0 {
			return out, last, false, nil
		}
		refs := make([]*tidingsv1.RecordRef, len(ids))
		for i, id := range ids {
			refs[i] = &tidingsv1.RecordRef{Type: typ, ExternalId: id}
		}
		recs, err := s.GetMany(ctx, refs)
		if err != nil {
			return nil, "", false, err
		}
		for _, r := range recs {
			if r != nil && (keep == nil || keep(r)) {
				out = append(out, r)
			}
		}
		last = ids[len(ids)-1]
		if !more {
			return out, last, false, nil
		}
	}
	return out, last, true, nil
}

// Wipe deletes the whole projection, before a rebuild.
func (s *Store) Wipe(ctx context.Context) error {
	for _, p := range []string{"record:*", "records:*"} {
		if _, err := redisx.DeleteMatching(ctx, s.rdb, redisx.Prefix+p); err != nil {
			return err
		}
	}
	return nil
}
