package stacktest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// requireReason fails unless err has code and an ErrorInfo of reason.
func requireReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	testenv.RequireCode(t, err, code)
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, info.GetReason(), "%v", err)
			return
		}
	}
	t.Fatalf("no ErrorInfo in %v", err)
}

// streamEnd receives from a stream until it ends and hands over the error.
func streamEnd(stream tidingsv1.TimelineService_WatchClient) <-chan error {
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

// waitEnd waits for a stream to end and returns its error.
func waitEnd(t *testing.T, done <-chan error) error {
	t.Helper()
	var err error
	testenv.Eventually(t, 15*time.Second, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	}, "the stream did not end")
	return err
}

// TestOffboardingEnforced checks finding 3 of issue 16: once an employee
// is removed, the tokens they hold do nothing more, their open Watch ends,
// and no one follows them again; an employee the directory does not know
// may read but not write.
func TestOffboardingEnforced(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Accounts: auth.AccountOptions{StreamRecheck: 50 * time.Millisecond}})
	s.Users(t, "ana", "leaver")
	ctx := t.Context()
	leaver := s.Server.Conn(t, testenv.Employee("leaver"))
	acts, follows, timelines := tidingsv1.NewActivityServiceClient(leaver), tidingsv1.NewFollowServiceClient(leaver), tidingsv1.NewTimelineServiceClient(leaver)
	post := func() error {
		_, err := acts.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "leaver", Text: "still here"})
		return err
	}
	require.NoError(t, post())
	_, err := follows.Follow(ctx, &tidingsv1.FollowRequest{UserId: "leaver", Entity: entity.User("ana")})
	require.NoError(t, err)
	watch, err := timelines.Watch(ctx, &tidingsv1.WatchRequest{UserId: "leaver"})
	require.NoError(t, err)
	_, err = watch.Header() // subscribed
	require.NoError(t, err)
	watching := streamEnd(watch)

	_, err = s.Admin(t).RemoveUser(ctx, &tidingsv1.RemoveUserRequest{UserId: "leaver"})
	require.NoError(t, err)
	// Within the account cache's TTL (a second), the token stops working.
	testenv.Eventually(t, 10*time.Second, func() bool { return status.Code(post()) == codes.PermissionDenied }, "the removed user's token still posts")
	requireReason(t, post(), codes.PermissionDenied, auth.ReasonAccountInactive)
	_, err = follows.Follow(ctx, &tidingsv1.FollowRequest{UserId: "leaver", Entity: entity.User("ana")})
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountInactive)
	_, err = timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "leaver"})
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountInactive)
	_, err = tidingsv1.NewProfileServiceClient(leaver).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountInactive)
	again, err := timelines.Watch(ctx, &tidingsv1.WatchRequest{UserId: "leaver"})
	require.NoError(t, err)
	_, err = again.Recv()
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountInactive)
	// The Watch opened before the removal ended too.
	requireReason(t, waitEnd(t, watching), codes.PermissionDenied, auth.ReasonAccountInactive)

	// Others cannot follow the removed user.
	_, err = s.Follows(t, testenv.Employee("ana")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("leaver")})
	testenv.RequireCode(t, err, codes.FailedPrecondition)

	// A ghost (a valid token, no profile) reads but does not write.
	ghost := s.Server.Conn(t, testenv.Employee("ghost"))
	_, err = tidingsv1.NewActivityServiceClient(ghost).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ghost", Text: "boo"})
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountUnknown)
	_, err = tidingsv1.NewFollowServiceClient(ghost).Follow(ctx, &tidingsv1.FollowRequest{UserId: "ghost", Entity: entity.User("ana")})
	requireReason(t, err, codes.PermissionDenied, auth.ReasonAccountUnknown)
	_, err = tidingsv1.NewTimelineServiceClient(ghost).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: entity.User("ana")})
	require.NoError(t, err)
}

// TestWatchEndsWhenTokenExpires checks finding 4 of issue 16: a Watch
// ends with Unauthenticated when its token expires, not before.
func TestWatchEndsWhenTokenExpires(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana")
	tok, err := auth.Mint(testenv.TokenConfig, testenv.Employee("ana"), 2*time.Second, time.Now())
	require.NoError(t, err)
	v, err := auth.NewVerifier(testenv.TokenConfig)
	require.NoError(t, err)
	id, err := v.Verify(tok)
	require.NoError(t, err)
	watch, err := tidingsv1.NewTimelineServiceClient(s.Server.ConnWithToken(t, tok)).Watch(t.Context(), &tidingsv1.WatchRequest{UserId: "ana"})
	require.NoError(t, err)
	_, err = watch.Header()
	require.NoError(t, err)
	err = waitEnd(t, streamEnd(watch))
	requireReason(t, err, codes.Unauthenticated, apierr.ReasonUnauthenticated)
	require.Contains(t, err.Error(), "expired")
	require.False(t, time.Now().Before(id.Expires), "the stream ended before the token expired (%s)", id.Expires)
}
