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
// record events, edits, deletes, posts of an author whose audience is
// cut into FANOUT chunks, and that author turning hot and back as a crowd
// follows and leaves (home sources, floors and inboxes included). It then rebuilds every projection with
// AdminService.RebuildProjections and requires every Redis key to hold
// exactly what the live worker wrote: a rebuild is a replay through the
// live code. TIDINGS_HISTORY_SEED picks another history.
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
	for step := range 160 {
		u := pick(users)
		me := testenv.Employee(u)
		var err error
		switch r := rng.IntN(100); {
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
		default:
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
	rebuilt, err := s.Admin(t).RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{})
	require.NoError(t, err)
	require.Len(t, rebuilt.GetRebuilt(), 4)
	s.WaitCaughtUp(t) // the chunks the replay cut
	testenv.RequireSameSnapshot(t, live, testenv.Snapshot(t, s.Env.RDB), "rebuilt projection")
}
