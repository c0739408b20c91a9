package conversationstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

const act = "0000000000ACT"

func newStore(t *testing.T) (*conversationstore.Store, *redis.Client) {
	rs := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	ks := redisx.NewKeyspace(0)
	return conversationstore.New(rdb, ks, activitystore.New(rdb, ks).BodyKey), rdb
}

// event is one conversation change at a log position.
type event struct {
	seq     uint64
	put     *tidingsv1.Comment
	del     string
	react   string
	kind    tidingsv1.ReactionKind
	on      bool
	ms      int64
	comment string
}

func apply(t *testing.T, s *conversationstore.Store, rdb *redis.Client, evs []event) {
	t.Helper()
	ctx := t.Context()
	err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		for _, e := range evs {
			switch {
			case e.put != nil:
				s.QueuePutComment(ctx, pipe, e.seq, e.put)
			case e.del != "":
				s.QueueDeleteComment(ctx, pipe, e.seq, act, e.del)
			default:
				s.QueueReact(ctx, pipe, e.seq, conversationstore.Item{ActivityID: act, CommentID: e.comment}, e.react, e.kind, e.on, e.ms)
			}
		}
		return nil
	})
	require.NoError(t, err)
}

// TestApplyInAnyOrder plays a history of comments (with edits and
// deletions) and reactions in log order, then in random orders with every
// event delivered again, and requires the same keys: counts never drift.
func TestApplyInAnyOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	g := ids.NewGenerator()
	var evs []event
	var comments []*tidingsv1.Comment
	seq := uint64(0)
	for range 200 {
		seq++
		switch r := rng.IntN(10); {
		case r < 3 || len(comments) == 0:
			id := g.Next()
			c := &tidingsv1.Comment{Id: id.String(), ActivityId: act, AuthorUserId: fmt.Sprintf("u%d", rng.IntN(5)), Text: "hi", CreateTime: timestamppb.New(id.Time())}
			comments = append(comments, c)
			evs = append(evs, event{seq: seq, put: c})
		case r < 4:
			c := comments[rng.IntN(len(comments))]
			edited := &tidingsv1.Comment{Id: c.GetId(), ActivityId: act, AuthorUserId: c.GetAuthorUserId(), Text: fmt.Sprintf("edit %d", seq), CreateTime: c.GetCreateTime()}
			evs = append(evs, event{seq: seq, put: edited})
		case r < 5:
			evs = append(evs, event{seq: seq, del: comments[rng.IntN(len(comments))].GetId()})
		default:
			e := event{seq: seq, react: fmt.Sprintf("u%d", rng.IntN(6)), kind: conversationstore.Kinds[rng.IntN(2)], on: rng.IntN(3) > 0, ms: int64(seq)}
			if rng.IntN(3) == 0 {
				e.comment = comments[rng.IntN(len(comments))].GetId()
			}
			evs = append(evs, e)
		}
	}
	s, rdb := newStore(t)
	apply(t, s, rdb, evs)
	want := testenv.Snapshot(t, rdb)
	for round := range 3 {
		s2, rdb2 := newStore(t)
		order := append(append([]event(nil), evs...), evs...)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		apply(t, s2, rdb2, order)
		testenv.RequireSameSnapshot(t, want, testenv.Snapshot(t, rdb2), fmt.Sprintf("order %d", round))
	}

	// The counts are the live sets' sizes.
	ctx := t.Context()
	ids, _, total, err := s.Page(ctx, act, "", 1000, false)
	require.NoError(t, err)
	require.Len(t, ids, int(total))
	entries, err := redisx.Run(ctx, rdb, func(pipe redis.Pipeliner) redisx.Result[[]conversationstore.Entry] {
		return s.QueueEntries(ctx, pipe, []string{act}, "u1")
	})
	require.NoError(t, err)
	sum := entries[0].Summary
	require.Equal(t, total, sum.CommentCount)
	if total >= 2 {
		require.Len(t, sum.Recent, 2)
		require.Equal(t, ids[len(ids)-1], sum.Recent[1].GetId(), "the newest comment last")
	}
	for _, k := range conversationstore.Kinds[:2] {
		n, err := rdb.ZCard(ctx, "tidings:rx:{"+act+"}"+act+"|"+conversationstore.KindName(k)).Result()
		require.NoError(t, err)
		var got int64
		for _, c := range sum.Counts {
			if c.GetKind() == k {
				got = c.GetCount()
			}
		}
		require.Equal(t, n, got, "count of %s", k)
		score, err := rdb.ZScore(ctx, "tidings:rx:{"+act+"}"+act+"|"+conversationstore.KindName(k), "u1").Result()
		require.Equal(t, err == nil && score > 0, slices.Contains(sum.Mine, k), "u1's own %s", k)
	}
}

func TestDeletedCommentLeavesAtOnceAndStaysGone(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	ctx := t.Context()
	id := ids.NewGenerator().Next()
	c := &tidingsv1.Comment{Id: id.String(), ActivityId: act, AuthorUserId: "ana", Text: "first", CreateTime: timestamppb.New(id.Time())}
	apply(t, s, rdb, []event{{seq: 5, put: c}, {seq: 9, del: c.GetId()}, {seq: 5, put: c}, {seq: 12, put: c}})
	n, err := s.Count(ctx, act)
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = s.Comment(ctx, act, c.GetId())
	require.ErrorIs(t, err, conversationstore.ErrDeleted)
	entries, err := redisx.Run(ctx, rdb, func(pipe redis.Pipeliner) redisx.Result[[]conversationstore.Entry] {
		return s.QueueEntries(ctx, pipe, []string{act}, "")
	})
	require.NoError(t, err)
	sum := entries[0].Summary
	require.Zero(t, sum.CommentCount)
	require.Empty(t, sum.Recent)
	require.Equal(t, id.Time().UnixMilli(), sum.LastCommentMs, "the post stays where the comment moved it")
}

func TestReactorsPageNewestFirstThroughTies(t *testing.T) {
	t.Parallel()
	s, rdb := newStore(t)
	var evs []event
	// 150 likes and 40 celebrations, many in the same millisecond.
	for i := range 150 {
		evs = append(evs, event{seq: uint64(i + 1), react: fmt.Sprintf("l%03d", i), kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE, on: true, ms: int64(1000 + i/100)})
	}
	for i := range 40 {
		evs = append(evs, event{seq: uint64(200 + i), react: fmt.Sprintf("c%03d", i), kind: tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE, on: true, ms: 1001})
	}
	apply(t, s, rdb, evs)
	it := conversationstore.Item{ActivityID: act}
	for _, kinds := range [][]tidingsv1.ReactionKind{nil, {tidingsv1.ReactionKind_REACTION_KIND_LIKE}} {
		seen := map[string]bool{}
		var after conversationstore.ReactorCursor
		last := int64(1 << 62)
		for {
			page, more, err := s.Reactors(t.Context(), it, kinds, after, 7)
			require.NoError(t, err)
			for _, r := range page {
				require.False(t, seen[r.UserID+r.Kind.String()], "%s twice", r.UserID)
				seen[r.UserID+r.Kind.String()] = true
				require.LessOrEqual(t, r.Ms, last)
				last = r.Ms
			}
			if !more {
				break
			}
			after = conversationstore.CursorOf(page[len(page)-1])
			parsed, err := conversationstore.ParseReactorCursor(after.String())
			require.NoError(t, err)
			require.Equal(t, after, parsed)
		}
		want := 190
		if kinds != nil {
			want = 150
		}
		require.Len(t, seen, want)
	}
	counts, err := s.ReactionCounts(t.Context(), it)
	require.NoError(t, err)
	require.Equal(t, []*tidingsv1.ReactionCount{
		{Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE, Count: 150},
		{Kind: tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE, Count: 40},
	}, counts)
}
