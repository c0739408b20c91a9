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

// smallFeeds are the thresholds of the completeness tests: a home timeline
// of 50 entries, entities pulled above 20 followers and pushed again below
// 15.
func smallFeeds(c *config.Config) { c.HomeCap, c.HotOn, c.HotOff = 50, 20, 15 }

// newestFirst returns ids reversed: the order a home feed shows them in.
func newestFirst(ids []string) []string {
	out := slices.Clone(ids)
	slices.Reverse(out)
	return out
}

// pagedHome pages a user's home to the end in pages of size.
func pagedHome(t *testing.T, s *stacktest.Stack, user string, size int32) []string {
	t.Helper()
	var out []string
	req := &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: size}
	for {
		resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(t.Context(), req)
		require.NoError(t, err)
		for _, it := range resp.GetItems() {
			out = append(out, it.GetActivity().GetId())
		}
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

// fans creates n users named prefix0.. and returns them.
func fans(t *testing.T, s *stacktest.Stack, prefix string, n int) []string {
	t.Helper()
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%02d", prefix, i))
	}
	s.Users(t, out...)
	return out
}

// bulk follows (or unfollows) an entity for users, in one admin call.
func bulk(t *testing.T, s *stacktest.Stack, users []string, e *tidingsv1.EntityRef, following bool) {
	t.Helper()
	sel := &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: users}}}
	var err error
	if following {
		_, err = s.Admin(t).BulkFollow(t.Context(), &tidingsv1.BulkFollowRequest{Entity: e, Users: sel})
	} else {
		_, err = s.Admin(t).BulkUnfollow(t.Context(), &tidingsv1.BulkUnfollowRequest{Entity: e, Users: sel})
	}
	require.NoError(t, err)
}

// TestDeleteDoesNotEndHistory (path 1): in a full home timeline, a delete
// (or an unfollow that takes items out) leaves the stored timeline shorter
// than its cap; history past it must still be paged.
func TestDeleteDoesNotEndHistory(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: smallFeeds})
	s.StartWorker(t)
	s.Users(t, "author", "other", "reader")
	follow(t, s, "reader", entity.User("author"))
	follow(t, s, "reader", entity.User("other"))
	var posted, others []string
	for i := range 125 {
		posted = append(posted, post(t, s, "author", fmt.Sprintf("post %d", i)).GetId())
		if i%25 == 0 {
			others = append(others, post(t, s, "other", fmt.Sprintf("other %d", i)).GetId())
		}
	}
	s.WaitCaughtUp(t)

	// A delete of an item the stored timeline holds.
	gone := posted[110]
	_, err := s.Activities(t, testenv.Employee("author")).DeleteActivity(t.Context(), &tidingsv1.DeleteActivityRequest{Id: gone})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	posted = slices.DeleteFunc(posted, func(id string) bool { return id == gone })
	require.Len(t, posted, 124)
	got := pagedHome(t, s, "reader", 30)
	require.Equal(t, newestFirst(posted), slices.DeleteFunc(slices.Clone(got), func(id string) bool { return slices.Contains(others, id) }),
		"every post but the deleted one, past the cap")
	require.Len(t, got, 124+len(others))

	// An unfollow that takes items out of the stored timeline.
	_, err = s.Follows(t, testenv.Employee("reader")).Unfollow(t.Context(), &tidingsv1.UnfollowRequest{UserId: "reader", Entity: entity.User("other")})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	require.Equal(t, newestFirst(posted), pagedHome(t, s, "reader", 30), "the unfollow took other's posts, and nothing else")
}

// TestMentionPastTheCap (path 2): a post by someone the reader does not
// follow that mentions them stays in their home after newer posts push it
// past the cap.
func TestMentionPastTheCap(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: smallFeeds})
	s.StartWorker(t)
	s.Users(t, "author", "stranger", "reader")
	follow(t, s, "reader", entity.User("author"))
	var want []string
	for i := range 10 {
		want = append(want, post(t, s, "author", fmt.Sprintf("before %d", i)).GetId())
	}
	want = append(want, post(t, s, "stranger", "hello @reader").GetId())
	for i := range 60 {
		want = append(want, post(t, s, "author", fmt.Sprintf("after %d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	require.Equal(t, newestFirst(want), pagedHome(t, s, "reader", 25))
}

// TestWatchFollowsHotSwitches (path 3): a Watch opened while the author had
// 10 followers receives all 20 of the author's posts, those made while the
// author was hot (21 followers) included.
func TestWatchFollowsHotSwitches(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: smallFeeds})
	s.StartWorker(t)
	s.Users(t, "author", "reader")
	crowd := fans(t, s, "fan", 20)
	follow(t, s, "reader", entity.User("author"))
	bulk(t, s, crowd[:9], entity.User("author"), true)
	s.WaitCaughtUp(t)

	stream, cancel := watch(t, s, "reader", "")
	defer cancel()
	var posted []string
	postSome := func(n int) {
		for i := range n {
			posted = append(posted, post(t, s, "author", fmt.Sprintf("post %d", len(posted)+i)).GetId())
		}
		s.WaitCaughtUp(t)
	}
	postSome(6)                                         // 10 followers: pushed
	bulk(t, s, crowd[9:], entity.User("author"), true)  // 21 followers
	postSome(7)                                         // pulled
	bulk(t, s, crowd[:7], entity.User("author"), false) // 14 followers
	postSome(7)                                         // pushed again

	got := receive(t, stream, posted, 20*time.Second)
	for i, id := range posted {
		require.True(t, got[id], "post %d (%s) not watched", i, id)
	}
	require.Equal(t, newestFirst(posted), pagedHome(t, s, "reader", 50))
}

// receive reads a watch until it has every id of want, or for at most d,
// and returns the ids it received.
func receive(t *testing.T, stream tidingsv1.TimelineService_WatchClient, want []string, d time.Duration) map[string]bool {
	t.Helper()
	ch, done := make(chan string), make(chan struct{})
	defer close(done)
	go func() {
		defer close(ch)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case ch <- resp.GetItem().GetActivity().GetId():
			case <-done:
				return
			}
		}
	}()
	got := map[string]bool{}
	timeout := time.After(d)
	for {
		missing := false
		for _, id := range want {
			missing = missing || !got[id]
		}
		if !missing {
			return got
		}
		select {
		case id, ok := <-ch:
			if !ok {
				return got
			}
			got[id] = true
		case <-timeout:
			return got
		}
	}
}

// TestKeepHistoryKeepsPulledPosts (path 4): Unfollow{keep_history} of an
// author who was hot for a while keeps every post the reader had, those
// pulled while hot included.
func TestKeepHistoryKeepsPulledPosts(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: smallFeeds})
	s.StartWorker(t)
	s.Users(t, "author", "friend", "reader")
	crowd := fans(t, s, "fan", 20)
	follow(t, s, "reader", entity.User("author"))
	follow(t, s, "reader", entity.User("friend"))
	bulk(t, s, crowd[:9], entity.User("author"), true)
	var posted []string
	postSome := func(n int) {
		for i := range n {
			posted = append(posted, post(t, s, "author", fmt.Sprintf("post %d", len(posted)+i)).GetId())
		}
		s.WaitCaughtUp(t)
	}
	postSome(6)
	bulk(t, s, crowd[9:], entity.User("author"), true)
	postSome(7) // pulled
	bulk(t, s, crowd[:7], entity.User("author"), false)
	postSome(7)
	require.Equal(t, newestFirst(posted), pagedHome(t, s, "reader", 50))

	_, err := s.Follows(t, testenv.Employee("reader")).Unfollow(t.Context(), &tidingsv1.UnfollowRequest{UserId: "reader", Entity: entity.User("author"), KeepHistory: true})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	require.Equal(t, newestFirst(posted), pagedHome(t, s, "reader", 50), "the history kept, pulled posts included")
	later := post(t, s, "author", "after the unfollow").GetId()
	friend := post(t, s, "friend", "still followed").GetId()
	s.WaitCaughtUp(t)
	got := pagedHome(t, s, "reader", 50)
	require.NotContains(t, got, later, "nothing new from the unfollowed author")
	require.Equal(t, append([]string{friend}, newestFirst(posted)...), got)
}

// TestInactiveRebuildKeepsMentions (path 5): a user away past the
// inactivity limit is mentioned while away; their rebuilt home has it.
func TestInactiveRebuildKeepsMentions(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: smallFeeds})
	s.StartWorker(t)
	s.Users(t, "author", "stranger", "away")
	follow(t, s, "away", entity.User("author"))
	first := post(t, s, "author", "before").GetId()
	s.WaitCaughtUp(t)
	require.Equal(t, []string{first}, pagedHome(t, s, "away", 10))
	// The last read was 15 days ago (the limit is 14).
	require.NoError(t, s.Env.RDB.Set(t.Context(), timelinestore.SeenKey("away"), time.Now().Add(-15*24*time.Hour).Unix(), 0).Err())
	want := []string{first}
	want = append(want, post(t, s, "author", "while away 1").GetId())
	want = append(want, post(t, s, "stranger", "are you there @away?").GetId())
	want = append(want, post(t, s, "author", "while away 2").GetId())
	s.WaitCaughtUp(t)
	require.Equal(t, newestFirst(want), pagedHome(t, s, "away", 10))
}
