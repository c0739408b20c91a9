package timelinestore_test

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
)

func newStore(t *testing.T) *timelinestore.Store {
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return timelinestore.New(rdb, redisx.NewKeyspace(0))
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
	key := s.HomeKey("ana")
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
	key := s.FeedKey("u:bo")
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

// TestHomeFloor checks that a home timeline records how far down it is
// complete: an insert that leaves an id out for the cap raises the floor to
// the oldest entry, whatever happens to the timeline's length afterwards.
func TestHomeFloor(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	g := ids.NewGenerator()
	var all []ids.ID
	for range 12 {
		all = append(all, g.Next())
	}
	floor := func() ids.ID {
		src, err := s.Sources(ctx, "ana")
		require.NoError(t, err)
		return src.Floor
	}
	const limit = 5
	_, err := s.InsertHomes(ctx, []string{"ana"}, limit, 0, all[2:7])
	require.NoError(t, err)
	require.Zero(t, floor(), "full, nothing left out: complete")
	_, err = s.InsertHomes(ctx, []string{"ana"}, limit, 0, all[1:2])
	require.NoError(t, err)
	require.Equal(t, all[2], floor(), "an id left out of a full timeline: complete from its oldest entry")
	_, err = s.InsertHomes(ctx, []string{"ana"}, limit, 0, all[7:8])
	require.NoError(t, err)
	require.Equal(t, all[3], floor(), "a trim raises the floor to the oldest entry")

	// A removal shortens the timeline and keeps the floor; ids below the
	// floor may still go in.
	require.NoError(t, s.Remove(ctx, []string{s.HomeKey("ana")}, all[3:6]))
	_, err = s.InsertHomes(ctx, []string{"ana"}, limit, 0, all[0:1])
	require.NoError(t, err)
	got, err := s.All(ctx, s.HomeKey("ana"))
	require.NoError(t, err)
	require.Equal(t, []ids.ID{all[7], all[6], all[0]}, got)
	require.Equal(t, all[3], floor(), "a removal leaves the floor")
	_, err = s.InsertHomes(ctx, []string{"ana"}, limit, 0, all[8:12])
	require.NoError(t, err)
	require.Equal(t, all[7], floor(), "it only rises")

	// A rebuild of a full list makes it complete down to its last id only.
	require.NoError(t, s.Rebuild(ctx, "bo", 3, []ids.ID{all[11], all[10], all[9]}))
	src, err := s.Sources(ctx, "bo")
	require.NoError(t, err)
	require.Equal(t, all[9], src.Floor)

	// Feeds and inboxes keep no floor.
	_, err = s.Insert(ctx, []string{s.FeedKey("u:ana"), s.InboxKey("cy")}, 2, all)
	require.NoError(t, err)
	require.Zero(t, s.Client().Exists(ctx, s.SourcesKey("cy")).Val())
}

// TestSourceIntervals follows, unfollows with and without kept history and
// follows again, and checks the intervals and their caps.
func TestSourceIntervals(t *testing.T) {
	t.Parallel()
	s := newStore(t)
	ctx := t.Context()
	iv := func(user, e string) timelinestore.Intervals {
		src, err := s.Sources(ctx, user)
		require.NoError(t, err)
		return src.Entities[e]
	}
	open := func(user, e string, from ids.ID) {
		require.NoError(t, s.OpenSources(ctx, []timelinestore.Open{{UserID: user, Entity: e, From: from}}))
	}
	open("ana", "u:bo", 100)
	open("ana", "u:bo", 150) // applied again: the first stays
	require.Equal(t, timelinestore.Intervals{{From: 100}}, iv("ana", "u:bo"))
	require.True(t, iv("ana", "u:bo").Open())
	require.True(t, iv("ana", "u:bo").Contains(100))
	require.False(t, iv("ana", "u:bo").Contains(99))

	require.NoError(t, s.CloseSource(ctx, "ana", "u:bo", true, 200))
	require.NoError(t, s.CloseSource(ctx, "ana", "u:bo", true, 300)) // not open: nothing
	require.Equal(t, timelinestore.Intervals{{From: 100, To: 200}}, iv("ana", "u:bo"))
	open("ana", "u:bo", 400)
	require.Equal(t, timelinestore.Intervals{{From: 100, To: 200}, {From: 400}}, iv("ana", "u:bo"))
	require.False(t, iv("ana", "u:bo").Contains(300), "not followed in between")
	require.NoError(t, s.CloseSource(ctx, "ana", "u:bo", false, 0))
	require.Equal(t, timelinestore.Intervals{{From: 100, To: 200}}, iv("ana", "u:bo"), "an unfollow without history keeps what was kept")
	open("ana", "u:bo", 150)
	require.Equal(t, timelinestore.Intervals{{From: 100}}, iv("ana", "u:bo"), "a follow that reaches back joins the kept history")
	require.NoError(t, s.CloseSource(ctx, "ana", "u:bo", false, 0))
	require.Empty(t, iv("ana", "u:bo"))
	require.Zero(t, s.Client().Exists(ctx, s.SourcesKey("ana")).Val())

	// At most MaxIntervals per entity: the oldest goes.
	for i := range timelinestore.MaxIntervals + 2 {
		open("bo", "u:cy", ids.ID(1000*(i+1)))
		require.NoError(t, s.CloseSource(ctx, "bo", "u:cy", true, ids.ID(1000*(i+1)+10)))
	}
	got := iv("bo", "u:cy")
	require.Len(t, got, timelinestore.MaxIntervals)
	require.Equal(t, ids.ID(3000), got[0].From)

	// At most MaxKept entities kept without a follow: the history that ends
	// first is forgotten; followed entities and the floor do not count.
	open("cy", "u:followed", 1)
	_, err := s.InsertHomes(ctx, []string{"cy"}, 1, 0, []ids.ID{5, 6})
	require.NoError(t, err)
	for i := range timelinestore.MaxKept + 1 {
		e := "u:" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		open("cy", e, 10)
		require.NoError(t, s.CloseSource(ctx, "cy", e, true, ids.ID(100+i)))
	}
	src, err := s.Sources(ctx, "cy")
	require.NoError(t, err)
	require.Len(t, src.Entities, timelinestore.MaxKept+1, "the kept ones and the followed one")
	require.NotContains(t, src.Entities, "u:Aa", "the one that ended first")
	require.Contains(t, src.Entities, "u:followed")
	require.Equal(t, ids.ID(6), src.Floor)
	require.True(t, src.Reaches([]string{"u:x", "u:Ba"}, 50))
	require.False(t, src.Reaches([]string{"u:Ba"}, 500))
}
