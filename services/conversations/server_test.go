package conversations_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

const (
	like      = tidingsv1.ReactionKind_REACTION_KIND_LIKE
	celebrate = tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE
)

func post(t *testing.T, s *stacktest.Stack, user, text string) *tidingsv1.Activity {
	t.Helper()
	resp, err := s.Activities(t, testenv.Employee(user)).PostActivity(t.Context(), &tidingsv1.PostActivityRequest{ActorUserId: user, Text: text})
	require.NoError(t, err)
	return resp.GetActivity()
}

func comment(t *testing.T, s *stacktest.Stack, user string, a *tidingsv1.Activity, text string) *tidingsv1.Comment {
	t.Helper()
	resp, err := s.Conversations(t, testenv.Employee(user)).AddComment(t.Context(), &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: user, Text: text})
	require.NoError(t, err)
	return resp.GetComment().GetComment()
}

func react(t *testing.T, s *stacktest.Stack, user string, a *tidingsv1.Activity, commentID string, k tidingsv1.ReactionKind) bool {
	t.Helper()
	resp, err := s.Conversations(t, testenv.Employee(user)).AddReaction(t.Context(), &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), CommentId: commentID, UserId: user, Kind: k})
	require.NoError(t, err)
	return resp.GetAdded()
}

func notifications(t *testing.T, s *stacktest.Stack, user string) []*tidingsv1.Notification {
	t.Helper()
	resp, err := s.Notifications(t, testenv.Employee(user)).ListNotifications(t.Context(), &tidingsv1.ListNotificationsRequest{UserId: user, PageSize: 100})
	require.NoError(t, err)
	return resp.GetNotifications()
}

func unread(t *testing.T, s *stacktest.Stack, user string) int64 {
	t.Helper()
	resp, err := s.Notifications(t, testenv.Employee(user)).GetUnreadCount(t.Context(), &tidingsv1.GetUnreadCountRequest{UserId: user})
	require.NoError(t, err)
	return resp.GetUnreadCount()
}

func counts(rs []*tidingsv1.ReactionCount) map[tidingsv1.ReactionKind]int64 {
	out := map[tidingsv1.ReactionKind]int64{}
	for _, r := range rs {
		out[r.GetKind()] = r.GetCount()
	}
	return out
}

func TestCommentsAndReactions(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy")
	ctx := t.Context()
	a := post(t, s, "ana", "Closing Acme today")
	bo := s.Conversations(t, testenv.Employee("bo"))

	// Comments read oldest first, paged; the newest N preview newest first.
	var made []string
	for i := range 5 {
		made = append(made, comment(t, s, []string{"bo", "cy"}[i%2], a, fmt.Sprintf("comment %d", i)).GetId())
	}
	var got []string
	req := &tidingsv1.ListCommentsRequest{ActivityId: a.GetId(), PageSize: 2}
	for {
		resp, err := s.Conversations(t, testenv.Employee("ana")).ListComments(ctx, req)
		require.NoError(t, err)
		require.EqualValues(t, 5, resp.GetTotalCount())
		for _, c := range resp.GetComments() {
			got = append(got, c.GetComment().GetId())
			require.Equal(t, c.GetComment().GetAuthorUserId(), c.GetAuthorProfile().GetUserId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Equal(t, made, got)
	newest, err := bo.ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId(), PageSize: 2, Order: tidingsv1.CommentOrder_COMMENT_ORDER_NEWEST_FIRST})
	require.NoError(t, err)
	require.Equal(t, made[4], newest.GetComments()[0].GetComment().GetId())
	require.Equal(t, made[3], newest.GetComments()[1].GetComment().GetId())
	_, err = bo.ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId(), PageToken: newest.GetNextPageToken()})
	testenv.RequireCode(t, err, codes.InvalidArgument) // a token of another order

	// An idempotency key makes a retry return the first comment.
	first, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "bo", Text: "once", IdempotencyKey: "k1"})
	require.NoError(t, err)
	again, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "bo", Text: "once", IdempotencyKey: "k1"})
	require.NoError(t, err)
	require.Equal(t, first.GetComment().GetComment().GetId(), again.GetComment().GetComment().GetId())

	// Edit: the author only. Delete: the author, the activity's author or
	// an admin; the count drops at once.
	_, err = s.Conversations(t, testenv.Employee("cy")).EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: a.GetId(), CommentId: made[0], Text: "hijack"})
	testenv.RequireCode(t, err, codes.PermissionDenied)
	edited, err := bo.EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: a.GetId(), CommentId: made[0], Text: "comment 0, edited"})
	require.NoError(t, err)
	require.NotNil(t, edited.GetComment().GetComment().GetEditTime())
	_, err = s.Conversations(t, testenv.Employee("cy")).DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: a.GetId(), CommentId: made[0]})
	testenv.RequireCode(t, err, codes.PermissionDenied)
	del, err := s.Conversations(t, testenv.Employee("ana")).DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: a.GetId(), CommentId: made[0]})
	require.NoError(t, err)
	require.True(t, del.GetDeleted())
	del, err = bo.DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: a.GetId(), CommentId: made[0]})
	require.NoError(t, err)
	require.False(t, del.GetDeleted(), "deleting a deleted comment is a no-op")
	_, err = bo.EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: a.GetId(), CommentId: made[0], Text: "back?"})
	testenv.RequireCode(t, err, codes.NotFound)
	list, err := bo.ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId()})
	require.NoError(t, err)
	require.EqualValues(t, 5, list.GetTotalCount(), "five made, one more with a key, one deleted")
	_, err = s.Conversations(t, testenv.Admin).DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: a.GetId(), CommentId: made[1]})
	require.NoError(t, err)

	// Reactions: one of each kind per user per item, idempotent.
	require.True(t, react(t, s, "bo", a, "", like))
	require.False(t, react(t, s, "bo", a, "", like), "a second like is a no-op")
	require.True(t, react(t, s, "bo", a, "", celebrate))
	require.True(t, react(t, s, "cy", a, "", like))
	require.True(t, react(t, s, "ana", a, made[2], like))
	rm, err := s.Conversations(t, testenv.Employee("cy")).RemoveReaction(ctx, &tidingsv1.RemoveReactionRequest{ActivityId: a.GetId(), UserId: "cy", Kind: like})
	require.NoError(t, err)
	require.True(t, rm.GetRemoved())
	rm, err = s.Conversations(t, testenv.Employee("cy")).RemoveReaction(ctx, &tidingsv1.RemoveReactionRequest{ActivityId: a.GetId(), UserId: "cy", Kind: like})
	require.NoError(t, err)
	require.False(t, rm.GetRemoved())
	require.True(t, react(t, s, "cy", a, "", like))
	rs, err := s.Conversations(t, testenv.Employee("ana")).ListReactions(ctx, &tidingsv1.ListReactionsRequest{ActivityId: a.GetId()})
	require.NoError(t, err)
	require.Equal(t, map[tidingsv1.ReactionKind]int64{like: 2, celebrate: 1}, counts(rs.GetCounts()))
	require.Len(t, rs.GetReactions(), 3)
	require.Equal(t, "cy", rs.GetReactions()[0].GetUserId(), "newest first")
	likes, err := s.Conversations(t, testenv.Employee("ana")).ListReactions(ctx, &tidingsv1.ListReactionsRequest{ActivityId: a.GetId(), Kind: celebrate})
	require.NoError(t, err)
	require.Len(t, likes.GetReactions(), 1)
	require.Equal(t, "bo", likes.GetReactions()[0].GetProfile().GetUserId())

	// Every read of the activity carries its conversation, for the caller.
	s.WaitCaughtUp(t)
	_, err = s.Activities(t, testenv.Employee("bo")).BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: "bo", ActivityId: a.GetId()})
	require.NoError(t, err)
	check := func(c *tidingsv1.Conversation, where string) {
		t.Helper()
		require.EqualValues(t, 4, c.GetCommentCount(), where)
		require.Len(t, c.GetRecentComments(), 2, where)
		last := c.GetRecentComments()[1]
		require.Equal(t, first.GetComment().GetComment().GetId(), last.GetComment().GetId(), "%s: newest last", where)
		require.Equal(t, "bo", last.GetAuthorProfile().GetUserId(), where)
		require.Equal(t, map[tidingsv1.ReactionKind]int64{like: 2, celebrate: 1}, counts(c.GetReactionCounts()), where)
		require.ElementsMatch(t, []tidingsv1.ReactionKind{like, celebrate}, c.GetMyReactions(), where)
		require.True(t, c.GetBookmarked(), where)
		require.False(t, c.GetMuted(), where)
		require.True(t, c.GetLastActivityTime().AsTime().After(a.GetCreateTime().AsTime()), where)
	}
	asBo := testenv.Employee("bo")
	one, err := s.Activities(t, asBo).GetActivity(ctx, &tidingsv1.GetActivityRequest{Id: a.GetId()})
	require.NoError(t, err)
	check(one.GetConversation(), "GetActivity")
	batch, err := s.Activities(t, asBo).BatchGetActivities(ctx, &tidingsv1.BatchGetActivitiesRequest{Ids: []string{a.GetId()}})
	require.NoError(t, err)
	check(batch.GetConversations()[0], "BatchGetActivities")
	feed, err := s.Timelines(t, asBo).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: entity.User("ana")})
	require.NoError(t, err)
	check(feed.GetItems()[0].GetConversation(), "GetEntityFeed")
	home, err := s.Timelines(t, testenv.Employee("ana")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "ana"})
	require.NoError(t, err)
	require.EqualValues(t, 4, home.GetItems()[0].GetConversation().GetCommentCount())
	require.False(t, home.GetItems()[0].GetConversation().GetBookmarked(), "bo's bookmark is bo's")
	basic, err := s.Timelines(t, testenv.Employee("ana")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "ana", View: tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC})
	require.NoError(t, err)
	require.Nil(t, basic.GetItems()[0].GetConversation(), "the basic view")
	commented, err := s.Conversations(t, testenv.Employee("ana")).ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId()})
	require.NoError(t, err)
	for _, c := range commented.GetComments() {
		if c.GetComment().GetId() == made[2] {
			require.Equal(t, map[tidingsv1.ReactionKind]int64{like: 1}, counts(c.GetReactionCounts()))
			require.Equal(t, []tidingsv1.ReactionKind{like}, c.GetMyReactions())
		}
	}
}

func TestBadInputAndPermissions(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana", "bo")
	ctx := t.Context()
	a := post(t, s, "ana", "hello")
	bo := s.Conversations(t, testenv.Employee("bo"))
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"comment as someone else", func() error {
			_, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "ana", Text: "x"})
			return err
		}, codes.PermissionDenied},
		{"comment too long", func() error {
			_, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "bo", Text: strings.Repeat("x", 5001)})
			return err
		}, codes.InvalidArgument},
		{"empty comment", func() error {
			_, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "bo"})
			return err
		}, codes.InvalidArgument},
		{"no such activity", func() error {
			_, err := bo.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: "0000000000000", AuthorUserId: "bo", Text: "x"})
			return err
		}, codes.NotFound},
		{"reaction without kind", func() error {
			_, err := bo.AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), UserId: "bo"})
			return err
		}, codes.InvalidArgument},
		{"reaction to no such comment", func() error {
			_, err := bo.AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), CommentId: "0000000000000", UserId: "bo", Kind: like})
			return err
		}, codes.NotFound},
		{"react as someone else", func() error {
			_, err := bo.AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), UserId: "ana", Kind: like})
			return err
		}, codes.PermissionDenied},
		{"page too large", func() error {
			_, err := bo.ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId(), PageSize: 101})
			return err
		}, codes.InvalidArgument},
		{"bad page token", func() error {
			_, err := bo.ListReactions(ctx, &tidingsv1.ListReactionsRequest{ActivityId: a.GetId(), PageToken: "nope"})
			return err
		}, codes.InvalidArgument},
		{"someone else's notifications", func() error {
			_, err := s.Notifications(t, testenv.Employee("bo")).ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: "ana"})
			return err
		}, codes.PermissionDenied},
		{"mark without a point", func() error {
			_, err := s.Notifications(t, testenv.Employee("bo")).MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "bo"})
			return err
		}, codes.InvalidArgument},
		{"bad read token", func() error {
			_, err := s.Notifications(t, testenv.Employee("bo")).MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "bo", UpTo: &tidingsv1.MarkNotificationsReadRequest_ReadToken{ReadToken: "x"}})
			return err
		}, codes.InvalidArgument},
		{"someone else's bookmark", func() error {
			_, err := s.Activities(t, testenv.Employee("bo")).BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: "ana", ActivityId: a.GetId()})
			return err
		}, codes.PermissionDenied},
		{"an app comments", func() error {
			_, err := s.Conversations(t, testenv.App("crm")).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "bo", Text: "x"})
			return err
		}, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) { testenv.RequireCode(t, tc.call(), tc.code) })
	}
}

// TestRestrictedRecordConversation: who may not see an activity about a
// restricted record may not comment, react, read its comments or be
// notified about it, and loses notifications made while they could.
func TestRestrictedRecordConversation(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "eve")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	ref := &tidingsv1.RecordRef{Type: "crm.deal", ExternalId: "secret"}
	upsert := func(readers ...string) {
		_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
			Ref: ref, Title: "Secret deal", OwnerId: "ana", Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: readers,
		}})
		require.NoError(t, err)
	}
	upsert("bo", "eve")
	resp, err := s.Activities(t, testenv.Employee("ana")).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "terms agreed", Record: ref})
	require.NoError(t, err)
	a := resp.GetActivity()
	// eve reads the deal, comments and is mentioned.
	comment(t, s, "eve", a, "great")
	comment(t, s, "ana", a, "thanks @eve")
	s.WaitCaughtUp(t)
	require.NotEmpty(t, notifications(t, s, "eve"), "eve was notified while a reader")

	upsert("bo") // eve is no longer a reader
	eve := s.Conversations(t, testenv.Employee("eve"))
	_, err = eve.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "eve", Text: "still here?"})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = eve.AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), UserId: "eve", Kind: like})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = eve.ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId()})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = eve.ListReactions(ctx, &tidingsv1.ListReactionsRequest{ActivityId: a.GetId()})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = s.Activities(t, testenv.Employee("eve")).BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: "eve", ActivityId: a.GetId()})
	testenv.RequireCode(t, err, codes.NotFound)
	// Admins may not comment for her either: the author must see it.
	_, err = s.Conversations(t, testenv.Admin).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: "eve", Text: "x"})
	testenv.RequireCode(t, err, codes.NotFound)
	// The owning app reads the thread.
	thread, err := s.Conversations(t, testenv.App("crm")).ListComments(ctx, &tidingsv1.ListCommentsRequest{ActivityId: a.GetId()})
	require.NoError(t, err)
	require.Len(t, thread.GetComments(), 2)

	// What eve was told is hidden from her now, and nothing new reaches
	// her: neither a reply on the thread she took part in nor a mention.
	require.Empty(t, notifications(t, s, "eve"))
	require.Zero(t, unread(t, s, "eve"))
	comment(t, s, "bo", a, "and @eve, look")
	s.WaitCaughtUp(t)
	upsert("bo", "eve")
	for _, n := range notifications(t, s, "eve") {
		require.Len(t, n.GetActors(), 1, "bo's comment never notified eve: %s", n.GetSummary())
		require.Equal(t, "ana", n.GetActors()[0].GetId())
	}
}

// TestNotifications: every kind, never one's own actions, mutes, the
// unread count and marking read.
func TestNotifications(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy", "dee")
	ctx := t.Context()

	a := post(t, s, "ana", "Kick-off with @dee")
	c1 := comment(t, s, "bo", a, "count me in")
	comment(t, s, "ana", a, "great, thanks") // her own post: no notification to her
	comment(t, s, "cy", a, "me too, @dee")
	react(t, s, "dee", a, "", like)
	react(t, s, "ana", a, "", like) // her own post
	react(t, s, "ana", a, c1.GetId(), like)
	_, err := s.Follows(t, testenv.Employee("bo")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	_, err = s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: "cy", Entity: entity.User("ana")})
	require.NoError(t, err) // an admin's follow for cy: no notification
	crm := s.Records(t, testenv.App("crm"))
	deal := &tidingsv1.RecordRef{Type: "crm.deal", ExternalId: "D1"}
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{Ref: deal, Title: "Acme", OwnerId: "ana"}})
	require.NoError(t, err)
	_, err = crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: deal, Verb: "stage_changed", Text: "Won", EventId: "e1"})
	require.NoError(t, err)
	s.WaitCaughtUp(t)

	summaries := func(user string) []string {
		var out []string
		for _, n := range notifications(t, s, user) {
			out = append(out, n.GetSummary())
		}
		return out
	}
	require.ElementsMatch(t, []string{
		"crm posted on Acme",
		"bo followed you",
		"dee liked your post",
		"cy and bo commented on your post",
	}, summaries("ana"))
	require.ElementsMatch(t, []string{
		"ana liked your comment",
		"cy and ana commented on a post you commented on",
	}, summaries("bo"))
	require.ElementsMatch(t, []string{"cy and ana mentioned you"}, summaries("dee"))
	require.Empty(t, summaries("cy"), "cy commented last and was not mentioned")
	for _, n := range notifications(t, s, "dee") {
		require.Equal(t, a.GetId(), n.GetActivity().GetId())
		require.NotNil(t, n.GetComment(), "the newest mention was in a comment")
		require.EqualValues(t, 2, n.GetActorCount())
	}

	// Unread count, and marking read up to a point, then all.
	require.EqualValues(t, 4, unread(t, s, "ana"))
	list := notifications(t, s, "ana")
	ana := s.Notifications(t, testenv.Employee("ana"))
	mark, err := ana.MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "ana", UpTo: &tidingsv1.MarkNotificationsReadRequest_ReadToken{ReadToken: list[2].GetReadToken()}})
	require.NoError(t, err)
	require.True(t, mark.GetMarked())
	require.EqualValues(t, 2, unread(t, s, "ana"))
	mark, err = ana.MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "ana", UpTo: &tidingsv1.MarkNotificationsReadRequest_ReadToken{ReadToken: list[3].GetReadToken()}})
	require.NoError(t, err)
	require.False(t, mark.GetMarked(), "read already")
	_, err = ana.MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "ana", UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}})
	require.NoError(t, err)
	require.Zero(t, unread(t, s, "ana"))
	for _, n := range notifications(t, s, "ana") {
		require.True(t, n.GetRead())
	}

	// A mute: bo mutes the post; a new comment notifies him no more, and it
	// leaves his home feed.
	_, err = s.Activities(t, testenv.Employee("bo")).MuteActivity(ctx, &tidingsv1.MuteActivityRequest{UserId: "bo", ActivityId: a.GetId()})
	require.NoError(t, err)
	require.Empty(t, notifications(t, s, "bo"), "notifications about a muted post are hidden")
	boHome, err := s.Timelines(t, testenv.Employee("bo")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "bo"})
	require.NoError(t, err)
	for _, it := range boHome.GetItems() {
		require.NotEqual(t, a.GetId(), it.GetActivity().GetId(), "a muted post leaves the home feed")
	}
	comment(t, s, "dee", a, "late to the party")
	s.WaitCaughtUp(t)
	_, err = s.Activities(t, testenv.Employee("bo")).UnmuteActivity(ctx, &tidingsv1.UnmuteActivityRequest{UserId: "bo", ActivityId: a.GetId()})
	require.NoError(t, err)
	for _, n := range notifications(t, s, "bo") {
		for _, actor := range n.GetActors() {
			require.NotEqual(t, "dee", actor.GetId(), "dee's comment came while bo muted the post")
		}
	}

	// An edit that mentions someone new delivers the post to them and
	// notifies them; a comment edit likewise.
	b := post(t, s, "cy", "Plans for Q3")
	s.WaitCaughtUp(t)
	_, err = s.Activities(t, testenv.Employee("cy")).EditActivity(ctx, &tidingsv1.EditActivityRequest{Id: b.GetId(), Text: "Plans for Q3, @dee please review"})
	require.NoError(t, err)
	c2 := comment(t, s, "bo", b, "looks good")
	_, err = s.Conversations(t, testenv.Employee("bo")).EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: b.GetId(), CommentId: c2.GetId(), Text: "looks good, @ana"})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	home, err := s.Timelines(t, testenv.Employee("dee")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "dee"})
	require.NoError(t, err)
	require.Equal(t, b.GetId(), home.GetItems()[0].GetActivity().GetId(), "the edit's new mention has it in their home feed")
	var mentioned []string
	for _, n := range append(notifications(t, s, "dee"), notifications(t, s, "ana")...) {
		if n.GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION && n.GetActivityId() == b.GetId() {
			mentioned = append(mentioned, n.GetSummary())
		}
	}
	require.ElementsMatch(t, []string{"cy mentioned you", "bo mentioned you in a comment"}, mentioned)
}

// TestFoldsUnderConcurrentReactions: 50 users react at once; the author
// sees one item naming the latest and counting all 50, exactly; marking it
// read freezes it, and what follows starts a new item.
func TestFoldsUnderConcurrentReactions(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	var users []string
	for i := range 50 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	s.Users(t, append([]string{"ana", "bo"}, users...)...)
	ctx := t.Context()
	// A first notification, read: the fold's window starts there.
	_, err := s.Follows(t, testenv.Employee("bo")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	_, err = s.Notifications(t, testenv.Employee("ana")).MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "ana", UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}})
	require.NoError(t, err)

	a := post(t, s, "ana", "We won Acme!")
	all := func(kind tidingsv1.ReactionKind, who []string) {
		var wg sync.WaitGroup
		errs := make(chan error, len(who))
		for _, u := range who {
			wg.Go(func() {
				_, err := s.Conversations(t, testenv.Employee(u)).AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), UserId: u, Kind: kind})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		s.WaitCaughtUp(t)
	}
	all(like, users)
	reactions := func() []*tidingsv1.Notification {
		var out []*tidingsv1.Notification
		for _, n := range notifications(t, s, "ana") {
			if n.GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION {
				out = append(out, n)
			}
		}
		return out
	}
	got := reactions()
	require.Len(t, got, 1, "50 reactions fold into one item")
	require.EqualValues(t, 50, got[0].GetActorCount())
	require.Len(t, got[0].GetActors(), 3)
	require.Len(t, got[0].GetActorProfiles(), 3)
	require.True(t, strings.HasSuffix(got[0].GetSummary(), " and 49 others reacted to your post"), got[0].GetSummary())
	require.False(t, got[0].GetRead())
	require.EqualValues(t, 1, unread(t, s, "ana"))
	one, err := s.Activities(t, testenv.Employee("ana")).GetActivity(ctx, &tidingsv1.GetActivityRequest{Id: a.GetId()})
	require.NoError(t, err)
	require.Equal(t, map[tidingsv1.ReactionKind]int64{like: 50}, counts(one.GetConversation().GetReactionCounts()))

	// Read: the item stays as it was; ten more start a new one.
	_, err = s.Notifications(t, testenv.Employee("ana")).MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{UserId: "ana", UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}})
	require.NoError(t, err)
	all(celebrate, users[:10])
	got = reactions()
	require.Len(t, got, 2)
	require.EqualValues(t, 10, got[0].GetActorCount())
	require.False(t, got[0].GetRead())
	require.EqualValues(t, 50, got[1].GetActorCount())
	require.True(t, got[1].GetRead())
	require.EqualValues(t, 1, unread(t, s, "ana"))
}

func TestWatchNotificationsResumesWithoutLoss(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy", "dee")
	a := post(t, s, "ana", "watch this")
	s.WaitCaughtUp(t)

	watch := func(resume string) (tidingsv1.NotificationService_WatchNotificationsClient, context.CancelFunc) {
		ctx, cancel := context.WithCancel(t.Context())
		stream, err := s.Notifications(t, testenv.Employee("ana")).WatchNotifications(ctx, &tidingsv1.WatchNotificationsRequest{UserId: "ana", ResumeToken: resume})
		require.NoError(t, err)
		_, err = stream.Header() // subscribed
		require.NoError(t, err)
		return stream, cancel
	}
	stream, cancel := watch("")
	comment(t, s, "bo", a, "first")
	got, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, tidingsv1.NotificationKind_NOTIFICATION_KIND_COMMENT, got.GetNotification().GetKind())
	require.EqualValues(t, 1, got.GetNotification().GetActorCount())
	token := got.GetResumeToken()
	cancel()

	// While ana is away: another comment (the item grows) and a reaction (a
	// new item). Resuming sends both; then the stream goes on live.
	comment(t, s, "cy", a, "second")
	react(t, s, "dee", a, "", like)
	s.WaitCaughtUp(t)
	again, cancel2 := watch(token)
	defer cancel2()
	latest := map[tidingsv1.NotificationKind]*tidingsv1.Notification{}
	for len(latest) < 2 || latest[tidingsv1.NotificationKind_NOTIFICATION_KIND_COMMENT].GetActorCount() < 2 {
		got, err := again.Recv()
		require.NoError(t, err)
		latest[got.GetNotification().GetKind()] = got.GetNotification()
	}
	require.EqualValues(t, 1, latest[tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION].GetActorCount())
	react(t, s, "bo", a, "", like)
	for {
		got, err := again.Recv()
		require.NoError(t, err)
		if got.GetNotification().GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION && got.GetNotification().GetActorCount() == 2 {
			break
		}
	}

	_, err = s.Notifications(t, testenv.Employee("bo")).WatchNotifications(t.Context(), &tidingsv1.WatchNotificationsRequest{UserId: "ana"})
	if err == nil {
		var stream tidingsv1.NotificationService_WatchNotificationsClient
		stream, err = s.Notifications(t, testenv.Employee("bo")).WatchNotifications(t.Context(), &tidingsv1.WatchNotificationsRequest{UserId: "ana"})
		require.NoError(t, err)
		_, err = stream.Recv()
	}
	testenv.RequireCode(t, err, codes.PermissionDenied)
}
