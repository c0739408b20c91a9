package timelines_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// homeSorted pages through a home feed in an order, page by page.
func homeSorted(t *testing.T, s *stacktest.Stack, user string, sort tidingsv1.HomeSort, size int32) [][]string {
	t.Helper()
	var pages [][]string
	req := &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: size, Sort: sort}
	for {
		resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(t.Context(), req)
		require.NoError(t, err)
		var page []string
		for _, it := range resp.GetItems() {
			page = append(page, it.GetActivity().GetId())
		}
		pages = append(pages, page)
		if resp.GetNextPageToken() == "" {
			return pages
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func TestLatestActivityOrderAndMutes(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HomeCap = 12 }})
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy")
	follow(t, s, "bo", entity.User("ana"))
	ctx := t.Context()
	var posts []string // oldest first
	for i := range 16 {
		posts = append(posts, post(t, s, "ana", fmt.Sprintf("post %d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	newestFirst := slices.Clone(posts)
	slices.Reverse(newestFirst)
	flat := func(pages [][]string) []string { return slices.Concat(pages...) }
	require.Equal(t, newestFirst, flat(homeSorted(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS, 5)))

	// A comment moves an older post to the top of the latest-activity
	// order, not of the latest-posts one; paging goes through every item
	// once, past the items the timeline keeps (its cap, 12) in post order.
	_, err := s.Conversations(t, testenv.Employee("cy")).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: posts[8], AuthorUserId: "cy", Text: "this one!"})
	require.NoError(t, err)
	_, err = s.Conversations(t, testenv.Employee("cy")).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: posts[6], AuthorUserId: "cy", Text: "and this"})
	require.NoError(t, err)
	byActivity := flat(homeSorted(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY, 5))
	want := append([]string{posts[6], posts[8]}, slices.DeleteFunc(slices.Clone(newestFirst), func(id string) bool { return id == posts[6] || id == posts[8] })...)
	require.Equal(t, want, byActivity)
	require.Equal(t, newestFirst, flat(homeSorted(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS, 5)))
	_, err = s.Timelines(t, testenv.Employee("bo")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "bo", Sort: tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS,
		PageToken: mustNext(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY)})
	testenv.RequireCode(t, err, codes.InvalidArgument)

	// Muted posts leave the home feed in either order, and pages stay full.
	bo := s.Activities(t, testenv.Employee("bo"))
	for _, id := range []string{posts[15], posts[14], posts[13], posts[6]} {
		_, err := bo.MuteActivity(ctx, &tidingsv1.MuteActivityRequest{UserId: "bo", ActivityId: id})
		require.NoError(t, err)
	}
	for _, sort := range []tidingsv1.HomeSort{tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS, tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY} {
		pages := homeSorted(t, s, "bo", sort, 5)
		require.Len(t, pages[0], 5, "%s: the first page is full", sort)
		all := flat(pages)
		require.Len(t, all, 12, sort.String())
		for _, id := range []string{posts[15], posts[14], posts[13], posts[6]} {
			require.NotContains(t, all, id, sort.String())
		}
	}
	require.Equal(t, posts[8], flat(homeSorted(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY, 5))[0])
	// The author's own feed still shows them, marked muted for bo.
	feed, err := s.Timelines(t, testenv.Employee("bo")).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: entity.User("ana"), PageSize: 1})
	require.NoError(t, err)
	require.Equal(t, posts[15], feed.GetItems()[0].GetActivity().GetId())
	require.True(t, feed.GetItems()[0].GetConversation().GetMuted())
	_, err = bo.UnmuteActivity(ctx, &tidingsv1.UnmuteActivityRequest{UserId: "bo", ActivityId: posts[15]})
	require.NoError(t, err)
	require.Equal(t, posts[15], flat(homeSorted(t, s, "bo", tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS, 5))[0])

	// Bookmarks: newest bookmark first; a deleted activity drops out.
	for _, id := range []string{posts[1], posts[2], posts[3]} {
		_, err := bo.BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: "bo", ActivityId: id})
		require.NoError(t, err)
	}
	again, err := bo.BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: "bo", ActivityId: posts[1]})
	require.NoError(t, err)
	require.False(t, again.GetChanged())
	_, err = s.Activities(t, testenv.Employee("ana")).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: posts[2]})
	require.NoError(t, err)
	var marked []string
	req := &tidingsv1.ListBookmarksRequest{UserId: "bo", PageSize: 1}
	for {
		resp, err := bo.ListBookmarks(ctx, req)
		require.NoError(t, err)
		for _, b := range resp.GetBookmarks() {
			marked = append(marked, b.GetActivity().GetId())
			require.True(t, b.GetConversation().GetBookmarked())
			require.Equal(t, "ana", b.GetActorProfile().GetUserId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Equal(t, []string{posts[3], posts[1]}, marked)
	_, err = bo.UnbookmarkActivity(ctx, &tidingsv1.UnbookmarkActivityRequest{UserId: "bo", ActivityId: posts[3]})
	require.NoError(t, err)
	resp, err := bo.ListBookmarks(ctx, &tidingsv1.ListBookmarksRequest{UserId: "bo"})
	require.NoError(t, err)
	require.Len(t, resp.GetBookmarks(), 1)
}

func mustNext(t *testing.T, s *stacktest.Stack, user string, sort tidingsv1.HomeSort) string {
	t.Helper()
	resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 2, Sort: sort})
	require.NoError(t, err)
	require.NotEmpty(t, resp.GetNextPageToken())
	return resp.GetNextPageToken()
}

func TestWatchSkipsMutedPosts(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo")
	follow(t, s, "bo", entity.User("ana"))
	muted := post(t, s, "ana", "noise")
	s.WaitCaughtUp(t)
	_, err := s.Activities(t, testenv.Employee("bo")).MuteActivity(t.Context(), &tidingsv1.MuteActivityRequest{UserId: "bo", ActivityId: muted.GetId()})
	require.NoError(t, err)
	first := post(t, s, "ana", "signal")
	s.WaitCaughtUp(t)
	// Resuming from before both replays only the one not muted.
	stream, cancel := watch(t, s, "bo", muted.GetId())
	defer cancel()
	got, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, first.GetId(), got.GetItem().GetActivity().GetId())
	require.NotNil(t, got.GetItem().GetConversation())
}
