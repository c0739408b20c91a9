// Package redisx opens the Redis client every Tidings process uses and holds
// the few helpers the Redis stores share. Every access goes through
// redis.UniversalClient, so the same code runs on one server or on a Redis
// Cluster.
package redisx

import (
	"context"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Prefix starts every key Tidings writes.
const Prefix = "tidings:"

// NewClient returns a client for one server (one address) or a Redis
// Cluster (several seed addresses).
func NewClient(addrs []string, password string) redis.UniversalClient {
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:    addrs,
		Password: password,
		// Fail fast and let the caller (or JetStream redelivery) retry.
		MaxRetries: 2,
	})
}

// DeleteMatching deletes every key matching pattern, on every master of a
// cluster, in batches, and returns how many it deleted.
func DeleteMatching(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	var total int64
	err := ScanKeys(ctx, rdb, pattern, 1000, func(keys []string) error {
		n, err := rdb.Unlink(ctx, keys...).Result()
		total += n
		return err
	})
	if err != nil {
		return total, fmt.Errorf("delete %s: %w", pattern, err)
	}
	return total, nil
}

// ScanKeys calls fn with batches of the keys matching pattern, on every
// master of a cluster, holding one batch in memory at a time. A key may be
// reported twice (SCAN's guarantee), never missed.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string, batch int64, fn func(keys []string) error) error {
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, batch).Iterator()
		buf := make([]string, 0, batch)
		for iter.Next(ctx) {
			buf = append(buf, iter.Val())
			if int64(len(buf)) == batch {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s: %w", pattern, err)
		}
		if len(buf) > 0 {
			return fn(buf)
		}
		return nil
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		// ForEachMaster calls back concurrently: collect the masters, then
		// visit them one by one.
		var (
			mu      sync.Mutex
			masters []*redis.Client
		)
		if err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock()
			masters = append(masters, m)
			mu.Unlock()
			return nil
		}); err != nil {
			return fmt.Errorf("list masters: %w", err)
		}
		for _, m := range masters {
			if err := scan(ctx, m); err != nil {
				return err
			}
		}
		return nil
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", rdb)
}

// ScriptCall is one call of a script: its keys and arguments.
type ScriptCall struct {
	Keys []string
	Args []any
}

// RunScripts runs many calls of one script in one pipeline (one round trip
// per node), as Pipeline does, and returns the calls' results in order.
func RunScripts(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []ScriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	err := Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, pipe, c.Keys, c.Args...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cmds, nil
}
