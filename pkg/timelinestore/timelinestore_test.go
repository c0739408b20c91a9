package timelinestore_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
)

func newStore(t *testing.T) *timelinestore.Store {
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return timelinestore.New(rdb)
}

func TestInsertOrdersDedupesAndCaps(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	g := ids.NewGenerator()
	var all []ids.ID
	for range 300 {
		all = append(all, g.Next())
	}
	shuffled := slices.Clone(all)
	rng := rand.New(rand.NewPCG(1, 1))
	rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	key := timelinestore.HomeKey("ana")
	const limit = 100
	// Out of order, one at a time and in batches, and every id twice.
	for i := 0; i < len(shuffled); i += 7 {
		batch := shuffled[i:min(i+7, len(shuffled))]
		_, err := s.Insert(ctx, []string{key}, limit, batch)
		require.NoError(t, err)
		_, err = s.Insert(ctx, []string{key}, limit, batch[:1])
		require.NoError(t, err)
	}
	got, err := s.All(ctx, key)
	require.NoError(t, err)
	want := slices.Clone(all)
	slices.Reverse(want)
	require.Equal(t, want[:limit], got, "the newest ids up to the cap, newest first, once each")
	n, err := s.Client().StrLen(ctx, key).Result()
	require.NoError(t, err)
	require.EqualValues(t, limit*8, n, "8 bytes an entry")

	require.NoError(t, s.Remove(ctx, []string{key}, []ids.ID{want[0], want[50], all[0]}))
	got, err = s.All(ctx, key)
	require.NoError(t, err)
	require.Len(t, got, limit-2)
	require.NotContains(t, got, want[0])
	require.NotContains(t, got, want[50])
}

func TestPageWithCursorStableUnderInserts(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	g := ids.NewGenerator()
	key := timelinestore.FeedKey("u:bo")
	var first []ids.ID
	for range 40 {
		first = append(first, g.Next())
	}
	_, err := s.Insert(ctx, []string{key}, 1000, first)
	require.NoError(t, err)
	var seen []ids.ID
	var before ids.ID
	for {
		page, more, err := s.Page(ctx, key, before, 9)
		require.NoError(t, err)
		seen = append(seen, page...)
		// New items land between pages: they are newer, so paging down
		// neither skips nor repeats.
		_, err = s.Insert(ctx, []string{key}, 1000, []ids.ID{g.Next()})
		require.NoError(t, err)
		if !more {
			break
		}
		before = page[len(page)-1]
	}
	want := slices.Clone(first)
	slices.Reverse(want)
	require.Equal(t, want, seen)
}
