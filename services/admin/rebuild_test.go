package admin_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

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
)

// TestRebuildEqualsLiveState plays a random history through the public API
// with the live worker applying it (waiting for the worker after each step,
// so that it applies the log in order): profiles, records (one restricted),
// follows and unfollows (with and without history), posts with mentions,
// record events, edits (some mentioning someone new), deletes, posts of an
// author whose audience is cut into FANOUT chunks, comments with mentions,
// comment edits and deletes, reactions to posts and comments added and
// taken back, bookmarks, mutes, and notifications marked read (all, or up
// to a token). It then rebuilds every projection with
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
		c.HotOn, c.HotOff = 1000, 900 // no entity turns hot here
		c.InactiveAfter = 0           // reads would differ by wall-clock time
		c.HomeCap, c.Backfill = 40, 5
	}})
	s.StartWorker(t)
	ctx := t.Context()

	var users []string
	for i := range 12 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	var fans []string
	for i := range 120 {
		fans = append(fans, fmt.Sprintf("f%03d", i))
	}
	s.Users(t, append(append([]string{"star"}, users...), fans...)...)
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
	for step := range 260 {
		u := pick(users)
		me := testenv.Employee(u)
		var err error
		switch r := rng.IntN(150); {
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
	live := testenv.Snapshot(t, s.Env.RDB)
	homes := 0
	for k, v := range live {
		if strings.HasPrefix(k, "tidings:home:") && len(v.(string)) > 0 {
			homes++
		}
	}
	require.Greater(t, homes, 100, "the history fills home timelines")
	for _, prefix := range []string{"tidings:cmt:", "tidings:rx:", "tidings:bm:", "tidings:mute:", "tidings:nidx:", "tidings:nmark:", "tidings:bumped"} {
		found := 0
		for k := range live {
			if strings.HasPrefix(k, prefix) {
				found++
			}
		}
		require.Positive(t, found, "the history makes %s keys", prefix)
	}
	rebuilt, err := s.Admin(t).RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{})
	require.NoError(t, err)
	require.Len(t, rebuilt.GetRebuilt(), 6)
	s.WaitCaughtUp(t) // the chunks the replay cut
	testenv.RequireSameSnapshot(t, live, testenv.Snapshot(t, s.Env.RDB), "rebuilt projection")
}
