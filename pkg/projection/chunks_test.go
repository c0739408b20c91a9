package projection_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestChunkAfterUnfollowWritesNothing applies the FANOUT chunks of a post
// after a newer unfollow of its author has taken the author's posts back:
// the chunk must not put the post into the unfollower's home timeline, and
// must still reach everyone who follows, and whoever unfollowed keeping
// the history that holds the post.
func TestChunkAfterUnfollowWritesNothing(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	st := projection.NewStores(env.RDB, redisx.NewKeyspace(0), hot.Thresholds{On: 10000, Off: 8000})
	cfg := projection.DefaultConfig()
	cfg.ChunkSize, cfg.WriteBatch, cfg.InactiveAfter = 2, 1, 0
	p := projection.New(projection.Deps{Log: env.Log, Stores: st, Config: cfg, Logger: env.Logger})

	deliver := func(subject string, ev proto.Message) eventlog.Delivery {
		a, err := env.Log.Publish(ctx, eventlog.Append{Subject: subject, Event: ev})
		require.NoError(t, err)
		b, err := proto.Marshal(ev)
		require.NoError(t, err)
		return eventlog.Delivery{Subject: subject, Data: b, Sequence: a.Sequence, NumDelivered: 1}
	}
	star := entity.User("star")
	for _, f := range []string{"f1", "f2", "f3", "f4"} {
		d := deliver(eventlog.FollowSubject(f), &tidingsv1.FollowEvent{Changes: []*tidingsv1.EdgeChange{{UserId: f, Entity: star, Following: true}}})
		require.Nil(t, p.HandleFollows(ctx, []eventlog.Delivery{d}))
	}
	id := ids.NewGenerator().Next()
	post := deliver(eventlog.ActivitySubject(id.String()), &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: &tidingsv1.Activity{
		Id: id.String(), Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: "star"}, Verb: "posted", Text: "hi"}}})
	require.Nil(t, p.HandleActivities(ctx, []eventlog.Delivery{post})) // cuts FANOUT chunks
	// f1 unfollows (newer in the log than the post) before the chunk
	// consumer got to the chunks.
	un := deliver(eventlog.FollowSubject("f1"), &tidingsv1.FollowEvent{Changes: []*tidingsv1.EdgeChange{{UserId: "f1", Entity: star}}})
	require.Nil(t, p.HandleFollows(ctx, []eventlog.Delivery{un}))
	// f4 unfollows too, keeping the history, which holds the post.
	keep := deliver(eventlog.FollowSubject("f4"), &tidingsv1.FollowEvent{Changes: []*tidingsv1.EdgeChange{{UserId: "f4", Entity: star, KeepHistory: true}}})
	require.Nil(t, p.HandleFollows(ctx, []eventlog.Delivery{keep}))
	// Now the chunks.
	s, err := env.JS.Stream(ctx, eventlog.StreamFanout)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	var ds []eventlog.Delivery
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		ds = append(ds, eventlog.Delivery{Subject: m.Subject, Data: m.Data, Sequence: seq, NumDelivered: 1})
	}
	require.NotEmpty(t, ds, "the post was chunked")
	require.Nil(t, p.HandleChunks(ctx, ds))
	home, err := st.Timelines.All(ctx, st.Timelines.HomeKey("f1"))
	require.NoError(t, err)
	require.NotContains(t, home, id, "f1 unfollowed star (no history kept) after the post, yet the post is in f1's home")
	for _, f := range []string{"f2", "f3", "f4"} {
		home, err := st.Timelines.All(ctx, st.Timelines.HomeKey(f))
		require.NoError(t, err)
		require.Contains(t, home, id, "%s follows star, or kept its history", f)
	}
}
