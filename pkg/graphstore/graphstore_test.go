package graphstore_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// TestApplyInAnyOrder applies the same changes in reverse and shuffled
// orders, and the state is always that of the newest version.
func TestApplyInAnyOrder(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	store := graphstore.New(env.RDB)
	ctx := t.Context()
	var changes []graphstore.Change
	for seq := uint64(1); seq <= 30; seq++ {
		changes = append(changes, graphstore.Change{UserID: "u1", Entity: "u:target", Following: seq%2 == 0 || seq == 29, Version: graphstore.Version(seq, 0), CreateMs: int64(seq)})
	}
	for i := len(changes) - 1; i >= 0; i-- {
		require.NoError(t, store.Apply(ctx, changes[i:i+1]))
	}
	testenv.RequireGraph(t, store, map[testenv.Edge]bool{{User: "u1", Entity: "u:target"}: true})

	rng := rand.New(rand.NewPCG(3, 4))
	shuffled := append([]graphstore.Change(nil), changes[:28]...)
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	require.NoError(t, store.Apply(ctx, shuffled))
	testenv.RequireGraph(t, store, map[testenv.Edge]bool{{User: "u1", Entity: "u:target"}: true})

	// A newer unfollow wins; an older follow arriving after it does not undo it.
	require.NoError(t, store.Apply(ctx, []graphstore.Change{{UserID: "u1", Entity: "u:target", Version: graphstore.Version(31, 0)}}))
	require.NoError(t, store.Apply(ctx, changes[28:29]))
	testenv.RequireGraph(t, store, map[testenv.Edge]bool{{User: "u1", Entity: "u:target"}: false})
}

// TestPagingNewestFirst pages through followers with ties in create time.
func TestPagingNewestFirst(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	store := graphstore.New(env.RDB)
	ctx := t.Context()
	var changes []graphstore.Change
	for i := range 2500 {
		// 2,500 follows in 3 distinct milliseconds.
		changes = append(changes, graphstore.Change{UserID: fmt.Sprintf("u%04d", i), Entity: "u:star", Following: true,
			Version: graphstore.Version(uint64(1+i/1000), i%1000), CreateMs: int64(1000 + i/1000)})
	}
	require.NoError(t, store.Apply(ctx, changes))
	n, err := store.FollowerCount(ctx, "u:star")
	require.NoError(t, err)
	require.EqualValues(t, 2500, n)

	seen := map[string]bool{}
	var cursor graphstore.Cursor
	var prev float64
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100)
		page, more, err := store.Followers(ctx, "u:star", cursor, 70)
		require.NoError(t, err)
		for _, e := range page {
			require.False(t, seen[e.Member], "repeated %s", e.Member)
			seen[e.Member] = true
			if prev != 0 {
				require.LessOrEqual(t, e.Score, prev)
			}
			prev = e.Score
		}
		if !more {
			break
		}
		last := page[len(page)-1]
		cursor = graphstore.Cursor{Score: last.Score, Member: last.Member}
	}
	require.Len(t, seen, 2500)
}
