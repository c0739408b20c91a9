package vcache_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/vcache"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

func decode(_ string, data []byte) (string, error) { return "decoded " + string(data), nil }

func read(t *testing.T, c *vcache.Cache[string], rdb redis.UniversalClient, keys ...string) ([]string, []bool) {
	t.Helper()
	ctx := context.Background()
	var p *vcache.Pending[string]
	require.NoError(t, redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		p = c.Queue(ctx, pipe, keys)
		return nil
	}))
	vals, found, err := p.Finish(ctx, rdb)
	require.NoError(t, err)
	return vals, found
}

// TestCopiesAreExactAcrossProcesses reads through two caches, as two API
// replicas would, while a third party edits and deletes: neither ever
// serves a value Redis no longer holds.
func TestCopiesAreExactAcrossProcesses(t *testing.T) {
	t.Parallel()
	rdb := redisx.NewClient([]string{testenv.Redis(t).Addr()}, "")
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	a, err := vcache.New(16, "pb", decode)
	require.NoError(t, err)
	b, err := vcache.New(16, "pb", decode)
	require.NoError(t, err)
	require.NoError(t, rdb.HSet(ctx, "act:{1}", "seq", "5", "pb", "first", "del", "0").Err())
	require.NoError(t, rdb.HSet(ctx, "act:{2}", "seq", "6", "pb", "second").Err())

	for _, c := range []*vcache.Cache[string]{a, b} {
		vals, found := read(t, c, rdb, "act:{1}", "act:{2}", "act:{none}")
		require.Equal(t, []string{"decoded first", "decoded second", ""}, vals)
		require.Equal(t, []bool{true, true, false}, found)
	}
	read(t, a, rdb, "act:{1}", "act:{2}")
	hits, misses := a.Stats()
	require.Equal(t, int64(2), hits, "unchanged versions are served from the copies")
	require.Equal(t, int64(2), misses)

	// An edit by someone else: a newer version.
	require.NoError(t, rdb.HSet(ctx, "act:{1}", "seq", "9", "pb", "edited").Err())
	for _, c := range []*vcache.Cache[string]{a, b} {
		vals, _ := read(t, c, rdb, "act:{1}")
		require.Equal(t, []string{"decoded edited"}, vals)
	}
	// A delete: a tombstone, no body.
	require.NoError(t, rdb.HSet(ctx, "act:{1}", "seq", "12", "del", "1").Err())
	require.NoError(t, rdb.HDel(ctx, "act:{1}", "pb").Err())
	require.NoError(t, rdb.Del(ctx, "act:{2}").Err())
	for _, c := range []*vcache.Cache[string]{a, b} {
		_, found := read(t, c, rdb, "act:{1}", "act:{2}")
		require.Equal(t, []bool{false, false}, found, "deleted and gone")
	}
}
