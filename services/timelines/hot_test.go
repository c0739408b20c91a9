package timelines_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// TestHotEntitySwitchesBothWays follows an entity across the hot threshold
// and back: while hot its posts are not pushed, yet every follower's home
// read shows every post once, in order, across both switches.
func TestHotEntitySwitchesBothWays(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HotOn, c.HotOff = 6, 4 }})
	s.StartWorker(t)
	var fans []string
	for i := range 8 {
		fans = append(fans, fmt.Sprintf("fan%d", i))
	}
	s.Users(t, append(fans, "star", "quiet", "reader")...)
	follow(t, s, "reader", entity.User("star"))
	follow(t, s, "reader", entity.User("quiet"))
	ctx := t.Context()
	var posted []string
	postBoth := func(n int) {
		for i := range n {
			posted = append(posted, post(t, s, "star", fmt.Sprintf("star %d", len(posted)+i)).GetId())
			posted = append(posted, post(t, s, "quiet", fmt.Sprintf("quiet %d", len(posted)+i)).GetId())
		}
	}
	postBoth(3) // star has 1 follower: pushed
	s.WaitCaughtUp(t)
	for _, f := range fans {
		follow(t, s, f, entity.User("star"))
	}
	postBoth(3) // 9 followers > 6: pulled
	s.WaitCaughtUp(t)
	stored, err := s.Stores().Timelines.All(ctx, s.Stores().Timelines.HomeKey("reader"))
	require.NoError(t, err)
	require.Len(t, stored, 3+3+3, "while hot, star's posts are not pushed")

	for _, f := range fans[:6] {
		_, err := s.Follows(t, testenv.Admin).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: f, Entity: entity.User("star")})
		require.NoError(t, err)
	}
	postBoth(3) // 3 followers < 4: pushed again
	s.WaitCaughtUp(t)

	want := slices.Clone(posted)
	slices.Reverse(want)
	require.Equal(t, want, home(t, s, "reader"), "every post once, newest first, across both switches")
	// fan7 followed before star turned hot: the backfill brought star's
	// first posts, the merge the hot ones, the push the later ones.
	var starPosts []string
	for i := len(posted) - 2; i >= 0; i -= 2 {
		starPosts = append(starPosts, posted[i])
	}
	require.Equal(t, starPosts, home(t, s, "fan7"))
}

// TestMergeManyHotAndNormal reads a home timeline merging several hot
// entities with normal ones, paging through it in small pages; a hot
// entity the reader does not follow stays out.
func TestMergeManyHotAndNormal(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HotOn, c.HotOff = 2, 1 }})
	s.StartWorker(t)
	s.Users(t, "h1", "h2", "h3", "h4", "n1", "n2", "reader", "x", "y")
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		follow(t, s, "x", entity.User(h))
		follow(t, s, "y", entity.User(h))
		if h != "h4" {
			follow(t, s, "reader", entity.User(h))
		} else {
			follow(t, s, "n2", entity.User(h))
		}
	}
	follow(t, s, "reader", entity.User("n1"))
	follow(t, s, "reader", entity.User("n2"))
	var posted []string
	for i := range 36 {
		author := []string{"h1", "n1", "h2", "n2", "h3", "h4"}[i%6]
		id := post(t, s, author, fmt.Sprintf("%s %d", author, i)).GetId()
		if author != "h4" {
			posted = append(posted, id)
		}
	}
	s.WaitCaughtUp(t)
	var got []string
	req := &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 4}
	for {
		resp, err := s.Timelines(t, testenv.Employee("reader")).GetHomeTimeline(t.Context(), req)
		require.NoError(t, err)
		for _, it := range resp.GetItems() {
			got = append(got, it.GetActivity().GetId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	want := slices.Clone(posted)
	slices.Reverse(want)
	require.Equal(t, want, got)
}

// TestInactiveUserIsSkippedAndRebuilt: a user whose last read is older than
// the inactivity limit gets no pushes; their next read rebuilds the
// timeline and its first page is full at once.
func TestInactiveUserIsSkippedAndRebuilt(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy", "away")
	for _, a := range []string{"ana", "bo", "cy"} {
		follow(t, s, "away", entity.User(a))
	}
	ctx := t.Context()
	require.Empty(t, home(t, s, "away"))
	// The last read was 15 days ago (the default limit is 14).
	require.NoError(t, s.Env.RDB.Set(ctx, timelinestore.SeenKey("away"), time.Now().Add(-15*24*time.Hour).Unix(), 0).Err())
	var posted []string
	for i := range 9 {
		posted = append(posted, post(t, s, []string{"ana", "bo", "cy"}[i%3], fmt.Sprintf("while away %d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	stored, err := s.Stores().Timelines.All(ctx, s.Stores().Timelines.HomeKey("away"))
	require.NoError(t, err)
	require.Empty(t, stored, "the fan-out skipped the inactive user")

	resp, err := s.Timelines(t, testenv.Employee("away")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "away", PageSize: 5})
	require.NoError(t, err)
	require.Len(t, resp.GetItems(), 5, "a full first page at once")
	require.Equal(t, posted[8], resp.GetItems()[0].GetActivity().GetId())
	stored, err = s.Stores().Timelines.All(ctx, s.Stores().Timelines.HomeKey("away"))
	require.NoError(t, err)
	require.Len(t, stored, 9, "the timeline was rebuilt")

	next := post(t, s, "ana", "back now")
	s.WaitCaughtUp(t)
	require.Equal(t, next.GetId(), home(t, s, "away")[0], "active again: pushed")
}

// TestHotSourcesAreTheReadersOwn checks the set a home read takes its hot
// entities from (timelinestore.HotSourcesKey): it holds the hot entities
// the reader receives, whether they turned hot after the follow or before
// it, none of the others the company has, and loses one when the reader
// stops receiving it (not when a history of it is kept).
func TestHotSourcesAreTheReadersOwn(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HotOn, c.HotOff = 2, 1 }})
	s.StartWorker(t)
	s.Users(t, "h1", "h2", "h3", "h4", "x", "y", "z", "reader", "bystander")
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		for _, f := range []string{"x", "y", "z"} {
			follow(t, s, f, entity.User(h))
		}
	}
	follow(t, s, "reader", entity.User("h1")) // before h1 turns hot
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		post(t, s, h, h+" turns hot")
	}
	s.WaitCaughtUp(t)
	follow(t, s, "reader", entity.User("h2")) // after h2 turned hot
	follow(t, s, "reader", entity.User("h3"))
	s.WaitCaughtUp(t)
	ctx := t.Context()
	hotSources := func(user string) []string {
		list, err := s.Env.RDB.SMembers(ctx, s.Stores().Timelines.HotSourcesKey(user)).Result()
		require.NoError(t, err)
		slices.Sort(list)
		return list
	}
	require.Equal(t, []string{"u:h1", "u:h2", "u:h3"}, hotSources("reader"))
	require.Empty(t, hotSources("bystander"), "a reader following no hot entity reads none")
	require.Equal(t, []string{"u:h1", "u:h2", "u:h3", "u:h4"}, hotSources("x"))

	_, err := s.Follows(t, testenv.Employee("reader")).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: "reader", Entity: entity.User("h2")})
	require.NoError(t, err)
	_, err = s.Follows(t, testenv.Employee("reader")).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: "reader", Entity: entity.User("h3"), KeepHistory: true})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	require.Equal(t, []string{"u:h1", "u:h3"}, hotSources("reader"), "h2 dropped, h3's kept history still read")
	require.Len(t, home(t, s, "reader"), 2, "h1's post and h3's (h2's taken back)")
}
