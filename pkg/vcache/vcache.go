// Package vcache keeps decoded copies of versioned Redis hashes in process,
// exact whatever any process writes. A versioned hash holds its version in
// the field "seq" (the stream sequence of the event it was written at),
// its encoded value in a body field, and, for those that keep tombstones,
// "del" = 1 once deleted: activity bodies and profiles.
//
// A read asks Redis for each hash's version, which is a few bytes, and
// decodes nothing for a hash whose copy (or tombstone) has that version;
// only the others' bodies are read, in one more round trip, and kept. So a
// copy is served only when Redis holds exactly it at the moment of the
// read: an edit, a delete or a profile change applied by any process, on
// any replica, is seen by the next read, with no invalidation to miss.
package vcache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/redisx"
)

// The fields of a versioned hash.
const (
	SeqField = "seq"
	DelField = "del"
)

// Cache holds up to a bound of decoded values of versioned hashes, the
// least recently used going first. Values are shared between readers:
// callers must not modify them.
type Cache[T any] struct {
	lru    *lru.Cache[string, entry[T]]
	field  string
	decode func(key string, data []byte) (T, error)
	hits   atomic.Int64
	misses atomic.Int64
}

type entry[T any] struct {
	seq string
	v   T
	// deleted: the hash is a tombstone at seq.
	deleted bool
}

// New returns a cache of up to size values read from the body field field
// and decoded with decode.
func New[T any](size int, field string, decode func(key string, data []byte) (T, error)) (*Cache[T], error) {
	l, err := lru.New[string, entry[T]](size)
	if err != nil {
		return nil, fmt.Errorf("new cache: %w", err)
	}
	return &Cache[T]{lru: l, field: field, decode: decode}, nil
}

// Stats returns how many values were served from a current copy, and how
// many had their body read.
func (c *Cache[T]) Stats() (hits, misses int64) { return c.hits.Load(), c.misses.Load() }

// Pending is a read queued on a pipeline: the versions of its keys.
type Pending[T any] struct {
	c    *Cache[T]
	keys []string
	cmds []*redis.StringCmd
}

// Queue queues, on pipe, the read of the versions of keys.
func (c *Cache[T]) Queue(ctx context.Context, pipe redis.Pipeliner, keys []string) *Pending[T] {
	p := &Pending[T]{c: c, keys: keys, cmds: make([]*redis.StringCmd, len(keys))}
	for i, k := range keys {
		p.cmds[i] = pipe.HGet(ctx, k, SeqField)
	}
	return p
}

// Finish returns the values of the queued keys, in order, and whether
// each exists (a missing or deleted hash has none). It reads, in one more
// round trip on rdb, the bodies of those whose copy is missing or not of
// the version Redis holds, and keeps them.
func (p *Pending[T]) Finish(ctx context.Context, rdb redis.UniversalClient) ([]T, []bool, error) {
	c := p.c
	out := make([]T, len(p.keys))
	found := make([]bool, len(p.keys))
	var miss []int
	hits := int64(0)
	for i, cmd := range p.cmds {
		seq, err := cmd.Result()
		if errors.Is(err, redis.Nil) {
			continue // no such hash
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read version of %s: %w", p.keys[i], err)
		}
		if e, ok := c.lru.Get(p.keys[i]); ok && e.seq == seq {
			out[i], found[i] = e.v, !e.deleted
			hits++
			continue
		}
		miss = append(miss, i)
	}
	c.hits.Add(hits)
	c.misses.Add(int64(len(miss)))
	if len(miss) == 0 {
		return out, found, nil
	}
	cmds := make([]*redis.SliceCmd, len(miss))
	if err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		for j, i := range miss {
			cmds[j] = pipe.HMGet(ctx, p.keys[i], SeqField, DelField, c.field)
		}
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("read %d bodies: %w", len(miss), err)
	}
	for j, i := range miss {
		vals, err := cmds[j].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, fmt.Errorf("read %s: %w", p.keys[i], err)
		}
		seq, _ := field(vals, 0)
		del, _ := field(vals, 1)
		data, ok := field(vals, 2)
		if seq == "" {
			continue // gone since its version was read
		}
		if del == "1" || !ok {
			c.lru.Add(p.keys[i], entry[T]{seq: seq, deleted: true})
			continue
		}
		v, err := c.decode(p.keys[i], []byte(data))
		if err != nil {
			return nil, nil, err
		}
		// The body and its version come from one command: the copy is
		// of the version it is filed under, however new.
		c.lru.Add(p.keys[i], entry[T]{seq: seq, v: v})
		out[i], found[i] = v, true
	}
	return out, found, nil
}

// field returns the i-th value of an HMGET reply, and whether it exists.
func field(vals []any, i int) (string, bool) {
	if i >= len(vals) || vals[i] == nil {
		return "", false
	}
	s, ok := vals[i].(string)
	return s, ok
}
