package redisx_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/redisserver"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
)

// TestRedisCluster runs what Tidings does to Redis on a real Redis Cluster
// of three primaries, each with a replica.
//
//   - Finding 3 of issue 14: a rebuild's wipe (DeleteMatching over keys in
//     many slots) failed with CROSSSLOT.
//   - Finding 2 of issue 14: after a primary died, the client kept dialling
//     it until go-redis's periodic slot-map reload (60 s) although its
//     replica had taken over within seconds; now the slot map is reloaded
//     on failures, and writes to the dead primary's slots resume soon after
//     the promotion.
//   - Health covers every primary: one of them down makes it fail until its
//     replica has taken over.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cluster, err := redisserver.StartCluster(ctx, redisserver.ClusterOptions{Dir: t.TempDir(), Replicas: 1})
	require.NoError(t, err)
	t.Cleanup(cluster.Kill)
	rdb := redisx.NewClient(cluster.Addrs(), "")
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, redisx.Health(ctx, rdb))

	// The wipe of a rebuild, over keys in every slot range.
	const keys = 3000
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			p.Set(ctx, fmt.Sprintf("tidings:wipe:%d", i), i, 0)
			p.Set(ctx, fmt.Sprintf("other:%d", i), i, 0)
		}
		return nil
	})
	require.NoError(t, err)
	n, err := redisx.DeleteMatching(ctx, rdb, "tidings:wipe:*")
	require.NoError(t, err, "a wipe across slots")
	require.EqualValues(t, keys, n)
	var left, others int
	require.NoError(t, redisx.ScanKeys(ctx, rdb, "tidings:wipe:*", 1000, func(k []string) error { left += len(k); return nil }))
	require.NoError(t, redisx.ScanKeys(ctx, rdb, "other:*", 1000, func(k []string) error { others += len(k); return nil }))
	require.Zero(t, left)
	require.Equal(t, keys, others, "keys outside the pattern stay")

	// One watermark tag per primary, each served by its own.
	cc := rdb.(*redis.ClusterClient)
	tags, err := redisx.ShardTags(ctx, rdb)
	require.NoError(t, err)
	require.Len(t, tags, 3)
	served := map[string]bool{}
	for _, tag := range tags {
		node, err := cc.MasterForKey(ctx, "{"+tag+"}")
		require.NoError(t, err)
		served[node.Options().Addr] = true
	}
	require.Len(t, served, 3, "tags %v land on every primary", tags)

	// A key served by the first primary.
	key := ""
	for i := 0; key == ""; i++ {
		k := fmt.Sprintf("tidings:failover:%d", i)
		slot, err := cc.ClusterKeySlot(ctx, k).Result()
		require.NoError(t, err)
		if slot < 16384/3 {
			key = k
		}
	}
	require.NoError(t, rdb.Set(ctx, key, "before", 0).Err())

	require.NoError(t, cluster.Primaries[0].Kill())
	killed := time.Now()
	require.Error(t, redisx.Health(ctx, rdb), "health fails with a primary down")

	write := func() error {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		return rdb.Set(wctx, key, "after", 0).Err()
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return write() == nil },
		"writes to the dead primary's slots did not resume (last: %v)", write())
	t.Logf("writes to the dead primary's slots resumed %s after the kill", time.Since(killed).Round(time.Millisecond))
	testenv.Eventually(t, 30*time.Second, func() bool { return redisx.Health(ctx, rdb) == nil },
		"health did not recover after the failover")
}
