package admin_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// deadLetter puts a dead letter in DEADLETTER as a consumer does.
func deadLetter(t *testing.T, s *stacktest.Stack, stream, consumer, subject string, seq uint64, data []byte, why string) {
	t.Helper()
	msg := &nats.Msg{Subject: eventlog.DeadLetterSubject(stream, consumer), Data: data, Header: nats.Header{}}
	msg.Header.Set(eventlog.HeaderDeadStream, stream)
	msg.Header.Set(eventlog.HeaderDeadConsumer, consumer)
	msg.Header.Set(eventlog.HeaderDeadSubject, subject)
	msg.Header.Set(eventlog.HeaderDeadSequence, strconv.FormatUint(seq, 10))
	msg.Header.Set(eventlog.HeaderDeadError, why)
	msg.Header.Set(eventlog.HeaderDeadDeliveries, "8")
	_, err := s.Env.JS.PublishMsg(t.Context(), msg)
	require.NoError(t, err)
}

// TestListAndReplayDeadLetters drives dead letters through the API and the
// real worker (finding 2 of issue 14: dead letters could not be listed or
// re-driven). A post whose fan-out "failed" (its timeline entry removed, a
// dead letter of the fanout consumer pointing at it) comes back in the
// follower's feed after ReplayDeadLetters, and its dead letter goes (so does
// a comment's, of the conversations consumer, whose notification comes
// back); a dead letter that cannot be applied stays.
func TestListAndReplayDeadLetters(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo")
	ctx := t.Context()
	_, err := s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	post, err := s.Activities(t, testenv.Employee("ana")).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "lost and found"})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	id, err := ids.Parse(post.GetActivity().GetId())
	require.NoError(t, err)
	timelines := s.Stores().Timelines
	home := func() []ids.ID {
		got, err := timelines.All(ctx, timelines.HomeKey("bo"))
		require.NoError(t, err)
		return got
	}
	require.Contains(t, home(), id)

	// The fan-out of the post "failed": the entry is not in bo's feed, and
	// a dead letter of the fanout consumer points at the event.
	require.NoError(t, timelines.Remove(ctx, []string{timelines.HomeKey("bo")}, []ids.ID{id}))
	require.NotContains(t, home(), id)
	last, found, err := s.Env.Log.LastOnSubject(ctx, eventlog.StreamActivities, eventlog.ActivitySubject(post.GetActivity().GetId()))
	require.NoError(t, err)
	require.True(t, found)
	deadLetter(t, s, eventlog.StreamActivities, projection.ActivitiesConsumer.Durable, eventlog.ActivitySubject(post.GetActivity().GetId()),
		last.Sequence, last.Data, "redis: something went wrong")
	deadLetter(t, s, eventlog.StreamFollows, projection.FollowsConsumer.Durable, eventlog.FollowSubject("bo"),
		999_999, []byte("\xff\xff not protobuf"), "decode follow event: bad wire type")

	admin := s.Admin(t)
	page, err := admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{PageSize: 1})
	require.NoError(t, err)
	require.Len(t, page.GetDeadLetters(), 1)
	require.NotEmpty(t, page.GetNextPageToken())
	first := page.GetDeadLetters()[0]
	require.Equal(t, eventlog.StreamActivities, first.GetStream())
	require.Equal(t, "fanout", first.GetConsumer())
	require.Equal(t, last.Sequence, first.GetStreamSequence())
	require.EqualValues(t, 8, first.GetDeliveries())
	require.Equal(t, "redis: something went wrong", first.GetError())
	require.WithinDuration(t, time.Now(), first.GetDeadLetterTime().AsTime(), time.Minute)
	page, err = admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{PageSize: 1, PageToken: page.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, page.GetDeadLetters(), 1)
	require.Equal(t, eventlog.StreamFollows, page.GetDeadLetters()[0].GetStream())
	require.Empty(t, page.GetNextPageToken())
	byConsumer, err := admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{Filter: &tidingsv1.DeadLetterFilter{Consumer: "follows-projector"}})
	require.NoError(t, err)
	require.Len(t, byConsumer.GetDeadLetters(), 1)

	// A comment whose notifications "failed": ana's notifications are gone,
	// and a dead letter of the conversations consumer points at the event.
	// The CONVERSATIONS consumer is re-driven like the others.
	postID := post.GetActivity().GetId()
	_, err = s.Conversations(t, testenv.Employee("bo")).AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: postID, AuthorUserId: "bo", Text: "found it"})
	require.NoError(t, err)
	commented := func() bool {
		resp, err := s.Notifications(t, testenv.Employee("ana")).ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: "ana"})
		require.NoError(t, err)
		for _, n := range resp.GetNotifications() {
			if n.GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_COMMENT && n.GetActivityId() == postID {
				return true
			}
		}
		return false
	}
	s.WaitCaughtUp(t)
	require.True(t, commented())
	require.NoError(t, s.Stores().Notifications.Wipe(ctx))
	require.False(t, commented())
	comment, found, err := s.Env.Log.LastOnSubject(ctx, eventlog.StreamConversations, eventlog.ConversationSubject(postID))
	require.NoError(t, err)
	require.True(t, found)
	deadLetter(t, s, eventlog.StreamConversations, projection.ConversationsConsumer.Durable, eventlog.ConversationSubject(postID),
		comment.Sequence, comment.Data, "redis: something went wrong")

	replay, err := admin.ReplayDeadLetters(ctx, &tidingsv1.ReplayDeadLettersRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 3, replay.GetMatchedCount())
	testenv.Eventually(t, 30*time.Second, func() bool {
		left, err := admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{})
		return err == nil && len(left.GetDeadLetters()) == 1 && s.CaughtUp(t, eventlog.RedriveConsumer)
	}, "the re-drive did not run")
	require.Contains(t, home(), id, "the re-driven post is back in the feed")
	require.True(t, commented(), "the re-driven comment notifies again")
	left, err := admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{})
	require.NoError(t, err)
	require.Equal(t, eventlog.StreamFollows, left.GetDeadLetters()[0].GetStream(), "the one that fails again stays")

	// Bad input and callers.
	_, err = admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{PageToken: "nonsense"})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	_, err = admin.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{Filter: &tidingsv1.DeadLetterFilter{Stream: "activities; drop"}})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	_, err = tidingsv1.NewAdminServiceClient(s.Server.Conn(t, testenv.Employee("bo"))).ReplayDeadLetters(ctx, &tidingsv1.ReplayDeadLettersRequest{})
	testenv.RequireCode(t, err, codes.PermissionDenied)
}
