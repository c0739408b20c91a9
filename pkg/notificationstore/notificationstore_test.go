package notificationstore_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

const (
	reaction = tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION
	follow   = tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW
	hour     = int64(time.Hour / time.Millisecond)
	// t0 is a time in ms, at the start of a window.
	t0 = int64(1_800_000_000_000)
)

type fixture struct {
	rdb   *redis.Client
	store *notificationstore.Store
	flags *userstatestore.Store
}

func newFixture(t *testing.T, cfg notificationstore.Config) *fixture {
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ks := redisx.NewKeyspace(0)
	flags := userstatestore.New(rdb, ks)
	return &fixture{rdb: rdb, flags: flags, store: notificationstore.New(rdb, ks, cfg, func(u string) string { return flags.SetKey(userstatestore.Mute, u) })}
}

func (f *fixture) add(t *testing.T, in notificationstore.Instance) int64 {
	t.Helper()
	n, err := redisx.Run(t.Context(), f.rdb, func(pipe redis.Pipeliner) redisx.Result[int64] { return f.store.QueueAdd(t.Context(), pipe, in) })
	require.NoError(t, err)
	return n
}

func (f *fixture) mark(t *testing.T, user string, ms int64) {
	t.Helper()
	_, err := redisx.Run(t.Context(), f.rdb, func(pipe redis.Pipeliner) redisx.Result[bool] { return f.store.QueueMark(t.Context(), pipe, user, ms) })
	require.NoError(t, err)
}

func (f *fixture) items(t *testing.T, user string) []notificationstore.Item {
	t.Helper()
	items, _, _, err := f.store.Page(t.Context(), user, notificationstore.Query{Limit: 100})
	require.NoError(t, err)
	return items
}

func like(user, actor string, ms int64) notificationstore.Instance {
	return notificationstore.Instance{User: user, Kind: reaction, Target: "POST", Actor: actor, Ms: ms, Object: "LIKE"}
}

func TestFoldsWithinAWindowAndUnfoldsAtReadMarks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notificationstore.Config{Window: 6 * time.Hour, Cap: 100, MaxAge: 90 * 24 * time.Hour})
	// Five likes within the window fold into one item naming the newest.
	for i := range 5 {
		require.EqualValues(t, 1, f.add(t, like("ana", fmt.Sprintf("u%d", i), t0+int64(i)*1000)))
	}
	require.EqualValues(t, 0, f.add(t, like("ana", "u3", t0+3000)), "an instance twice changes nothing")
	items := f.items(t, "ana")
	require.Len(t, items, 1)
	require.EqualValues(t, 5, items[0].Count)
	require.Equal(t, []string{"u4", "u3", "u2"}, items[0].Actors)
	require.Equal(t, t0+4000, items[0].Ms)
	require.False(t, items[0].Read)
	require.Equal(t, "POST", items[0].Target)
	require.Equal(t, reaction, items[0].Kind)

	// A like after the window starts another item.
	f.add(t, like("ana", "late", t0+7*hour))
	require.Len(t, f.items(t, "ana"), 2)

	// Marking read freezes what is read; what follows starts a new item
	// even within the window, and the read item stays as it was.
	f.mark(t, "ana", t0+7*hour)
	f.add(t, like("ana", "u9", t0+7*hour+1000))
	f.add(t, like("ana", "u0", t0+7*hour+2000)) // u0 liked before the mark too
	items = f.items(t, "ana")
	require.Len(t, items, 3)
	require.False(t, items[0].Read)
	require.EqualValues(t, 2, items[0].Count)
	require.Equal(t, []string{"u0", "u9"}, items[0].Actors)
	require.True(t, items[1].Read)
	require.Equal(t, []string{"late"}, items[1].Actors)
	require.True(t, items[2].Read)
	require.EqualValues(t, 5, items[2].Count, "the read item keeps its actors")

	unread, _, _, err := f.store.Page(t.Context(), "ana", notificationstore.Query{Limit: 100, UnreadOnly: true})
	require.NoError(t, err)
	require.Len(t, unread, 1)
}

// TestOrderDoesNotMatter applies histories of instances and marks in log
// order and in other orders with duplicates, as concurrent workers and
// redeliveries would, and requires the same keys.
func TestOrderDoesNotMatter(t *testing.T) {
	t.Parallel()
	type op struct {
		in   *notificationstore.Instance
		mark int64
	}
	history := func(seed uint64, actors int) []op {
		rng := rand.New(rand.NewPCG(seed, 12))
		var ops []op
		ms := t0
		for i := range 300 {
			ms += int64(rng.IntN(20)) * 60_000
			if i%37 == 36 {
				ops = append(ops, op{mark: ms})
				continue
			}
			actor := fmt.Sprintf("u%d", i) // each instance its own actor
			if actors > 0 {
				actor = fmt.Sprintf("u%d", rng.IntN(actors))
			}
			in := notificationstore.Instance{
				User: "ana", Kind: tidingsv1.NotificationKind(1 + rng.IntN(4)), Target: fmt.Sprintf("P%d", rng.IntN(4)),
				Actor: actor, Ms: ms, Object: fmt.Sprintf("o%d", i),
			}
			ops = append(ops, op{in: &in})
		}
		return ops
	}
	run := func(order []op) map[string]any {
		f := newFixture(t, notificationstore.Config{Window: 2 * time.Hour, Cap: 1000, MaxAge: 90 * 24 * time.Hour})
		for _, o := range order {
			if o.in != nil {
				f.add(t, *o.in)
			} else {
				f.mark(t, "ana", o.mark)
			}
		}
		return testenv.Snapshot(t, f.rdb)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	withoutObjects := func(m map[string]any) map[string]any {
		for k := range m {
			if strings.Contains(k, ":nobj:") {
				delete(m, k)
			}
		}
		return m
	}

	t.Run("marks overtaken by instances", func(t *testing.T) {
		// Instances and marks swap places (a mark applied after instances
		// newer than itself, or before older ones); each actor acts once,
		// so the late mark's re-filing is exact but for the objects of
		// items it leaves behind.
		ops := history(7, 0)
		want := withoutObjects(run(ops))
		for round := range 3 {
			shuffled := append([]op(nil), ops...)
			for i := range shuffled {
				j := min(i+rng.IntN(6), len(shuffled)-1)
				shuffled[i], shuffled[j] = shuffled[j], shuffled[i]
			}
			shuffled = append(shuffled, ops[rng.IntN(len(ops))], ops[rng.IntN(len(ops))])
			testenv.RequireSameSnapshot(t, want, withoutObjects(run(shuffled)), fmt.Sprintf("order %d", round))
		}
	})
	t.Run("instances in any order between marks", func(t *testing.T) {
		// Actors act many times; instances come in any order and twice,
		// marks where the log has them.
		ops := history(8, 6)
		want := run(ops)
		for round := range 3 {
			shuffled := append([]op(nil), ops...)
			lo := 0
			for i := 0; i <= len(shuffled); i++ {
				if i == len(shuffled) || shuffled[i].in == nil {
					seg := shuffled[lo:i]
					rng.Shuffle(len(seg), func(a, b int) { seg[a], seg[b] = seg[b], seg[a] })
					lo = i + 1
				}
			}
			var twice []op
			for _, o := range shuffled {
				twice = append(twice, o)
				if o.in != nil && rng.IntN(4) == 0 {
					twice = append(twice, o)
				}
			}
			testenv.RequireSameSnapshot(t, want, run(twice), fmt.Sprintf("order %d", round))
		}
	})
}

func TestBoundsAndMutes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notificationstore.Config{Window: time.Minute, Cap: 10, MaxAge: 48 * time.Hour})
	ctx := t.Context()
	for i := range 25 {
		f.add(t, notificationstore.Instance{User: "bo", Kind: follow, Actor: fmt.Sprintf("u%d", i), Ms: t0 + int64(i)*hour})
	}
	items := f.items(t, "bo")
	require.Len(t, items, 10, "the cap")
	require.Equal(t, t0+24*hour, items[0].Ms)
	keys, err := f.rdb.Keys(ctx, "tidings:nmem:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 10, "dropped items leave no keys")

	// Older than the newest by more than the age: not kept.
	require.EqualValues(t, -1, f.add(t, notificationstore.Instance{User: "bo", Kind: follow, Actor: "old", Ms: t0 - 25*hour}))
	f.add(t, notificationstore.Instance{User: "bo", Kind: follow, Actor: "new", Ms: t0 + 80*hour})
	items = f.items(t, "bo")
	for _, it := range items {
		require.GreaterOrEqual(t, it.Ms, t0+32*hour, "items older than 48 h before the newest are gone")
	}

	// A muted activity notifies no one of it.
	_, err = redisx.Run(ctx, f.rdb, func(pipe redis.Pipeliner) redisx.Result[bool] {
		return f.flags.QueueApply(ctx, pipe, userstatestore.Mute, "cy", "POST", true, 1, t0)
	})
	require.NoError(t, err)
	in := like("cy", "u1", t0)
	in.MutedBy = "POST"
	require.EqualValues(t, -1, f.add(t, in))
	require.Empty(t, f.items(t, "cy"))
}

func TestPagingWithTies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, notificationstore.DefaultConfig())
	// Twelve items at the same millisecond, and some others.
	for i := range 12 {
		f.add(t, notificationstore.Instance{User: "dee", Kind: reaction, Target: fmt.Sprintf("P%02d", i), Actor: "x", Ms: t0})
	}
	for i := range 5 {
		f.add(t, notificationstore.Instance{User: "dee", Kind: reaction, Target: fmt.Sprintf("Q%d", i), Actor: "x", Ms: t0 + int64(i+1)})
	}
	var all []string
	var after notificationstore.Cursor
	for {
		items, more, _, err := f.store.Page(t.Context(), "dee", notificationstore.Query{After: after, Limit: 4})
		require.NoError(t, err)
		for _, it := range items {
			all = append(all, it.Target)
		}
		if !more {
			break
		}
		after = notificationstore.CursorOf(items[len(items)-1])
		cur, err := notificationstore.ParseCursor(after.String())
		require.NoError(t, err)
		require.Equal(t, after, cur)
	}
	require.Len(t, all, 17)
	seen := map[string]bool{}
	for _, a := range all {
		require.False(t, seen[a], "%s twice", a)
		seen[a] = true
	}
	require.Equal(t, "Q4", all[0])
}
