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
	del := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		batch := make([]string, 0, 1000)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			n, err := c.Unlink(ctx, batch...).Result()
			total += n
			batch = batch[:0]
			return err
		}
		for iter.Next(ctx) {
			batch = append(batch, iter.Val())
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		// ForEachMaster calls back concurrently: collect the masters, then
		// visit them one by one.
		var (
			mu      sync.Mutex
			masters []*redis.Client
		)
		err = c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock()
			masters = append(masters, m)
			mu.Unlock()
			return nil
		})
		for _, m := range masters {
			if err != nil {
				break
			}
			err = del(ctx, m)
		}
	case *redis.Client:
		err = del(ctx, c)
	default:
		err = fmt.Errorf("unsupported redis client %T", rdb)
	}
	if err != nil {
		return total, fmt.Errorf("delete %s: %w", pattern, err)
	}
	return total, nil
}
