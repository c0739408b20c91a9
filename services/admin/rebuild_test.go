package admin_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
	"github.com/tidingshq/tidings/services/worker"
)

// TestRebuildEqualsLiveState plays a random history through the public API
// with the live worker applying it (waiting for the worker after each step,
// so that it applies the log in order): profiles, records (one restricted),
// follows and unfollows (with and without history), posts with mentions,
// record events, edits (some mentioning someone new), deletes, posts of an
// author whose audience is cut into FANOUT chunks, and that author turning
// hot and back as a crowd follows and leaves (home sources, floors and
// inboxes included), comments with mentions, comment edits and deletes,
// reactions to posts and comments added and taken back, bookmarks, mutes,
// and notifications marked read (all, or up to a token). It then rebuilds
// every projection with
// AdminService.RebuildProjections and requires every Redis key to hold
// exactly what the live worker wrote, the conversations, notifications and
// their read state included: a rebuild is a replay through the live code.
// TIDINGS_HISTORY_SEED picks another history.
func TestRebuildEqualsLiveState(t *testing.T) {
	t.Parallel()
	seed := uint64(20261130)
	if v := os.Getenv("TIDINGS_HISTORY_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("history seed %d (TIDINGS_HISTORY_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) {
		c.FanoutChunk = 100           // star's 120 followers are chunked
		c.HotOn, c.HotOff = 150, 140  // star, when the crowd follows too
		c.InactiveAfter = 0           // reads would differ by wall-clock time
		c.HomeCap, c.Backfill = 20, 5 // timelines are trimmed
	}})
	s.StartWorker(t)
	ctx := t.Context()

	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	var fans, crowd []string
	for i := range 120 {
		fans = append(fans, fmt.Sprintf("f%03d", i))
	}
	for i := range 40 {
		crowd = append(crowd, fmt.Sprintf("c%03d", i))
	}
	s.Users(t, append(append(append([]string{"star"}, users...), fans...), crowd...)...)
	_, err := s.Admin(t).BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("star"), Users: &tidingsv1.UserSelector{
		Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: fans}}}})
	require.NoError(t, err)

	crm := s.Records(t, testenv.App("crm"))
	deal := func(id string) *tidingsv1.RecordRef { return &tidingsv1.RecordRef{Type: "crm.deal", ExternalId: id} }
	for _, r := range []*tidingsv1.Record{
		{Ref: deal("d1"), Title: "Open deal", OwnerId: "u00"},
		{Ref: deal("d2"), Title: "Secret deal", OwnerId: "u01", Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: []string{"u02", "u03"}},
		{Ref: deal("d3"), Title: "Unowned deal"},
	} {
		_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
		require.NoError(t, err)
	}
	entities := []*tidingsv1.EntityRef{entity.Record("crm.deal", "d1"), entity.Record("crm.deal", "d2"), entity.Record("crm.deal", "d3"), entity.User("star")}
	for _, u := range users {
		entities = append(entities, entity.User(u))
	}

	type post struct {
		id     string
		author auth.Identity
	}
	var posts []post
	type comment struct{ activity, id, author string }
	var comments []comment
	kinds := []tidingsv1.ReactionKind{tidingsv1.ReactionKind_REACTION_KIND_LIKE, tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE}
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	text := func() string {
		if rng.IntN(3) == 0 {
			return fmt.Sprintf("news for @%s", pick(users))
		}
		return fmt.Sprintf("news %d", rng.IntN(1000))
	}
	// expected tells a refusal the history may run into (following a
	// restricted record one may not see, following oneself) from a failure.
	expected := func(err error) bool {
		c := status.Code(err)
		return err == nil || c == codes.NotFound || c == codes.InvalidArgument
	}
	crowded, switches := false, 0
	for step := range 260 {
		u := pick(users)
		me := testenv.Employee(u)
		var err error
		switch r := rng.IntN(150); {
		case r < 4:
			// The crowd follows star (hot: over 160 followers) or leaves
			// (pushed again, and chunked: 120 and the users who follow it).
			sel := &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: crowd}}}
			if crowded {
				_, err = s.Admin(t).BulkUnfollow(ctx, &tidingsv1.BulkUnfollowRequest{Entity: entity.User("star"), Users: sel})
			} else {
				_, err = s.Admin(t).BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("star"), Users: sel})
			}
			require.NoError(t, err)
			crowded = !crowded
			switches++
			s.WaitCaughtUp(t)
			star := testenv.Employee("star")
			for range 2 {
				var resp *tidingsv1.PostActivityResponse
				resp, err = s.Activities(t, star).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "star", Text: text()})
				require.NoError(t, err)
				posts = append(posts, post{resp.GetActivity().GetId(), star})
			}
		case r < 25:
			var resp *tidingsv1.PostActivityResponse
			resp, err = s.Activities(t, me).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: u, Text: text()})
			if err == nil {
				posts = append(posts, post{resp.GetActivity().GetId(), me})
			}
		case r < 30:
			star := testenv.Employee("star")
			var resp *tidingsv1.PostActivityResponse
			resp, err = s.Activities(t, star).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "star", Text: text()})
			if err == nil {
				posts = append(posts, post{resp.GetActivity().GetId(), star})
			}
		case r < 42:
			var resp *tidingsv1.PostRecordActivityResponse
			resp, err = crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
				Ref: deal(fmt.Sprintf("d%d", 1+rng.IntN(3))), Verb: "updated", Text: text(), OnBehalfOf: u, EventId: fmt.Sprintf("e%d", step),
			})
			if err == nil {
				posts = append(posts, post{resp.GetActivity().GetId(), testenv.App("crm")})
			}
		case r < 65:
			_, err = s.Follows(t, me).Follow(ctx, &tidingsv1.FollowRequest{UserId: u, Entity: entities[rng.IntN(len(entities))]})
		case r < 77:
			_, err = s.Follows(t, me).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: u, Entity: entities[rng.IntN(len(entities))], KeepHistory: rng.IntN(2) == 0})
		case r < 85 && len(posts) > 0:
			p := posts[rng.IntN(len(posts))]
			if p.author.Kind == auth.KindEmployee {
				_, err = s.Activities(t, p.author).EditActivity(ctx, &tidingsv1.EditActivityRequest{Id: p.id, Text: text()})
			}
		case r < 93 && len(posts) > 0:
			i := rng.IntN(len(posts))
			_, err = s.Activities(t, posts[i].author).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: posts[i].id})
			posts = slices.Delete(posts, i, i+1)
		case r >= 100 && r < 115 && len(posts) > 0:
			p := posts[rng.IntN(len(posts))]
			var resp *tidingsv1.AddCommentResponse
			resp, err = s.Conversations(t, me).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: p.id, AuthorUserId: u, Text: text()})
			if err == nil {
				comments = append(comments, comment{p.id, resp.GetComment().GetComment().GetId(), u})
			}
		case r >= 115 && r < 119 && len(comments) > 0:
			c := comments[rng.IntN(len(comments))]
			_, err = s.Conversations(t, testenv.Employee(c.author)).EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: c.activity, CommentId: c.id, Text: text()})
		case r >= 119 && r < 122 && len(comments) > 0:
			i := rng.IntN(len(comments))
			_, err = s.Conversations(t, testenv.Employee(comments[i].author)).DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: comments[i].activity, CommentId: comments[i].id})
			comments = slices.Delete(comments, i, i+1)
		case r >= 122 && r < 134 && len(posts) > 0:
			p, cid := posts[rng.IntN(len(posts))].id, ""
			if len(comments) > 0 && rng.IntN(3) == 0 {
				c := comments[rng.IntN(len(comments))]
				p, cid = c.activity, c.id
			}
			k := kinds[rng.IntN(len(kinds))]
			if rng.IntN(4) == 0 {
				_, err = s.Conversations(t, me).RemoveReaction(ctx, &tidingsv1.RemoveReactionRequest{ActivityId: p, CommentId: cid, UserId: u, Kind: k})
			} else {
				_, err = s.Conversations(t, me).AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: p, CommentId: cid, UserId: u, Kind: k})
			}
		case r >= 134 && r < 139 && len(posts) > 0:
			p := posts[rng.IntN(len(posts))].id
			if rng.IntN(3) == 0 {
				_, err = s.Activities(t, me).UnbookmarkActivity(ctx, &tidingsv1.UnbookmarkActivityRequest{UserId: u, ActivityId: p})
			} else {
				_, err = s.Activities(t, me).BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: u, ActivityId: p})
			}
		case r >= 139 && r < 143 && len(posts) > 0:
			p := posts[rng.IntN(len(posts))].id
			if rng.IntN(3) == 0 {
				_, err = s.Activities(t, me).UnmuteActivity(ctx, &tidingsv1.UnmuteActivityRequest{UserId: u, ActivityId: p})
			} else {
				_, err = s.Activities(t, me).MuteActivity(ctx, &tidingsv1.MuteActivityRequest{UserId: u, ActivityId: p})
			}
		case r >= 143:
			req := &tidingsv1.MarkNotificationsReadRequest{UserId: u, UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}}
			if rng.IntN(2) == 0 {
				var list *tidingsv1.ListNotificationsResponse
				list, err = s.Notifications(t, me).ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: u})
				if err == nil && len(list.GetNotifications()) > 1 {
					n := list.GetNotifications()[rng.IntN(len(list.GetNotifications()))]
					req.UpTo = &tidingsv1.MarkNotificationsReadRequest_ReadToken{ReadToken: n.GetReadToken()}
				}
			}
			if err == nil {
				_, err = s.Notifications(t, me).MarkNotificationsRead(ctx, req)
			}
		case r < 100:
			_, err = s.Profiles(t, testenv.Directory).UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{
				UserId: u, DisplayName: fmt.Sprintf("%s (%d)", u, step), Department: pick([]string{"Sales", "Eng", "Ops"}),
			}})
		}
		require.True(t, expected(err), "step %d: %v", step, err)
		s.WaitCaughtUp(t)
	}

	require.Positive(t, s.Env.StreamLastSeq(t, eventlog.StreamFanout), "star's posts were chunked")
	require.GreaterOrEqual(t, switches, 2, "the crowd came and went")
	pulled, err := s.Stores().Hot.Pulled(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, pulled["u:star"], "star was pulled for a while")
	live := testenv.Snapshot(t, s.Env.RDB)
	homes, inboxes, sources, floors, hotSources := 0, 0, 0, 0, 0
	for k, v := range live {
		switch {
		case strings.HasPrefix(k, "tidings:home:") && len(v.(string)) > 0:
			homes++
		case strings.HasPrefix(k, "tidings:inbox:"):
			inboxes++
		case strings.HasPrefix(k, "tidings:hhot:"):
			hotSources++
		case strings.HasPrefix(k, "tidings:hsrc:"):
			sources++
			if _, ok := v.(map[string]string)["floor"]; ok {
				floors++
			}
		}
	}
	require.Greater(t, homes, 100, "the history fills home timelines")
	require.Positive(t, inboxes, "mentions fill inboxes")
	require.Greater(t, sources, 100, "follows fill home sources")
	require.Positive(t, floors, "home timelines were trimmed")
	require.Positive(t, hotSources, "followers of star, pulled for a while, keep it among their hot sources")
	for _, prefix := range []string{"tidings:cmt:", "tidings:rx:", "tidings:bm:", "tidings:mute:", "tidings:nidx:", "tidings:nmark:", "tidings:bumped"} {
		found := 0
		for k := range live {
			if strings.HasPrefix(k, prefix) {
				found++
			}
		}
		require.Positive(t, found, "the history makes %s keys", prefix)
	}
	s.Rebuild(t)
	s.WaitCaughtUp(t) // the chunks the replay cut
	testenv.RequireSameSnapshot(t, live, testenv.Snapshot(t, s.Env.RDB), "rebuilt projection")
}

// TestRebuildKeepsReadersWholeAndSurvivesItsWorker runs a rebuild whose
// worker stops half-way (after its first pass, while it waits for the live
// workers to settle) and checks that: readers stay on the complete old
// generation meanwhile; a post made during the rebuild is in the new
// generation too; another worker takes the rebuild over from its
// checkpoint and finishes it; and readers then see the new generation,
// with nothing lost, and the old generation gone.
func TestRebuildKeepsReadersWholeAndSurvivesItsWorker(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	stopA := s.RunWorker(t, func(d *worker.Deps) { d.Name, d.RebuildSettle = "worker-a", time.Hour })
	ctx := t.Context()
	var fans []string
	for i := range 12 {
		fans = append(fans, fmt.Sprintf("fan%02d", i))
	}
	s.Users(t, append([]string{"star"}, fans...)...)
	for _, f := range fans {
		_, err := s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: f, Entity: entity.User("star")})
		require.NoError(t, err)
	}
	star := s.Activities(t, testenv.Employee("star"))
	var want []string
	for i := range 30 {
		resp, err := star.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "star", Text: fmt.Sprintf("post %d", i)})
		require.NoError(t, err)
		want = append([]string{resp.GetActivity().GetId()}, want...)
	}
	s.WaitCaughtUp(t)
	homeIDs := func(user string) []string {
		resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 100})
		require.NoError(t, err)
		var out []string
		for _, it := range resp.GetItems() {
			out = append(out, it.GetActivity().GetId())
		}
		return out
	}
	for _, f := range fans {
		require.Equal(t, want, homeIDs(f))
	}

	started, err := s.Admin(t).RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{})
	require.NoError(t, err)
	id := started.GetRebuild().GetId()
	_, err = s.Admin(t).RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{})
	testenv.RequireCode(t, err, codes.FailedPrecondition)
	testenv.Eventually(t, time.Minute, func() bool {
		r, err := s.Admin(t).GetRebuild(ctx, &tidingsv1.GetRebuildRequest{Id: "latest"})
		require.NoError(t, err)
		return r.GetRebuild().GetPass() == 2 && r.GetRebuild().GetState() == tidingsv1.RebuildState_REBUILD_STATE_RUNNING
	}, "the first pass did not end")

	// Readers stay on the complete old generation.
	status, err := s.Admin(t).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err)
	require.Zero(t, status.GetGeneration())
	for _, f := range fans {
		require.Equal(t, want, homeIDs(f), "%s reads the old generation whole during the rebuild", f)
	}
	// A post during the rebuild reaches both generations.
	during, err := star.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "star", Text: "during the rebuild"})
	require.NoError(t, err)
	want = append([]string{during.GetActivity().GetId()}, want...)
	s.WaitCaughtUp(t)

	// The rebuild's worker stops; another takes the rebuild over once the
	// first one's lease has run out.
	stopA()
	s.RunWorker(t, func(d *worker.Deps) { d.Name, d.RebuildLease = "worker-b", time.Second })
	done := s.WaitRebuild(t, id)
	require.Equal(t, "worker-b", done.GetRunner())
	require.EqualValues(t, 1, done.GetToGeneration())
	require.Positive(t, done.GetEventsReplayed())

	testenv.Eventually(t, 10*time.Second, func() bool {
		st, err := s.Admin(t).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
		require.NoError(t, err)
		return st.GetGeneration() == 1
	}, "readers did not move to the new generation")
	for _, f := range fans {
		require.Equal(t, want, homeIDs(f), "%s reads everything from the new generation", f)
	}
	keys, err := s.Env.RDB.Keys(ctx, "tidings:home:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "the old generation is dropped")
}
