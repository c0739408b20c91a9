package stacktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/ratelimit"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stack"
	"github.com/tidingshq/tidings/services/stacktest"
)

// TestRateLimitsAreSharedAcrossReplicas runs two API servers on one Redis:
// a caller's budget is spent on either, and each kind of caller has its
// own.
func TestRateLimitsAreSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	// 6 calls a minute with a burst of 3: nothing refills during the test.
	budgets := ratelimit.Budgets{Employee: 0.1, Admin: 0.1, Burst: 30}
	limit := func(env *testenv.Env, o *grpcserver.Options) {
		l, err := ratelimit.New(env.RDB, budgets, prometheus.NewRegistry(), env.Logger)
		require.NoError(t, err)
		o.RateLimit = l
	}
	s := stacktest.Start(t, stacktest.Options{Server: limit})
	second := s.AnotherServer(t, func(o *grpcserver.Options) { limit(s.Env, o) })
	s.Users(t, "ana", "bo")
	ctx := t.Context()
	replicas := []tidingsv1.ProfileServiceClient{
		s.Profiles(t, testenv.Employee("ana")),
		tidingsv1.NewProfileServiceClient(second.Conn(t, testenv.Employee("ana"))),
	}
	ok, refused := 0, 0
	for i := range 8 {
		_, err := replicas[i%2].GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "bo"})
		if err == nil {
			ok++
			continue
		}
		refused++
		testenv.RequireCode(t, err, codes.ResourceExhausted)
		var retry *errdetails.RetryInfo
		var info *errdetails.ErrorInfo
		for _, d := range status.Convert(err).Details() {
			switch d := d.(type) {
			case *errdetails.RetryInfo:
				retry = d
			case *errdetails.ErrorInfo:
				info = d
			}
		}
		require.NotNil(t, retry, "no RetryInfo")
		require.Greater(t, retry.GetRetryDelay().AsDuration(), time.Second, "the next call is seconds away at 6 a minute")
		require.Equal(t, apierr.ReasonLimitExceeded, info.GetReason())
	}
	require.Equal(t, 3, ok, "both replicas spend one budget of 3")
	require.Equal(t, 5, refused)

	_, err := s.Profiles(t, testenv.Employee("bo")).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	require.NoError(t, err, "another employee has a budget of their own")
	_, err = tidingsv1.NewAdminServiceClient(second.Conn(t, testenv.Admin)).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err, "admins have a budget of their own")
	_, err = s.Records(t, testenv.App("crm")).GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "x"}})
	testenv.RequireCode(t, err, codes.NotFound) // apps are not limited in this configuration
}

// TestWatchLimits bounds concurrent Watch and WatchNotifications streams
// per user and per process, counted together.
func TestWatchLimits(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := stacktest.Start(t, stacktest.Options{Server: func(_ *testenv.Env, o *grpcserver.Options) {
		o.Registry = reg
		o.Streams = grpcserver.StreamLimits{
			Methods: stack.LimitedStreams, PerCaller: 2, PerProcess: 3,
		}
	}})
	s.Users(t, "ana", "bo", "cy")
	open := func() int {
		n, err := testutil.GatherAndCount(reg, "tidings_grpc_limited_streams_open")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "tidings_grpc_limited_streams_open" {
				return int(mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
		return -1
	}
	// watch opens a Watch and returns once the server has taken or
	// refused its slot: the headers come after either (with the status
	// when refused). The gauge of open streams tells which.
	type serverStream interface {
		Header() (metadata.MD, error)
		RecvMsg(any) error
	}
	start := func(openStream func(ctx context.Context) (serverStream, error)) (context.CancelFunc, error) {
		before := open()
		ctx, cancel := context.WithCancel(t.Context())
		stream, err := openStream(ctx)
		require.NoError(t, err)
		_, err = stream.Header()
		require.NoError(t, err)
		if open() > before {
			return cancel, nil
		}
		err = stream.RecvMsg(&tidingsv1.WatchResponse{})
		cancel()
		return func() {}, err
	}
	watch := func(user string) (context.CancelFunc, error) {
		return start(func(ctx context.Context) (serverStream, error) {
			return s.Timelines(t, testenv.Employee(user)).Watch(ctx, &tidingsv1.WatchRequest{UserId: user})
		})
	}
	watchNotifications := func(user string) (context.CancelFunc, error) {
		return start(func(ctx context.Context) (serverStream, error) {
			return s.Notifications(t, testenv.Employee(user)).WatchNotifications(ctx, &tidingsv1.WatchNotificationsRequest{UserId: user})
		})
	}
	cancelA1, err := watch("ana")
	require.NoError(t, err)
	defer cancelA1()
	cancelA2, err := watchNotifications("ana")
	require.NoError(t, err)
	_, err = watch("ana")
	testenv.RequireCode(t, err, codes.ResourceExhausted)
	require.Contains(t, status.Convert(err).Message(), "employee:ana")
	_, err = watchNotifications("ana") // counted with ana's Watch streams
	testenv.RequireCode(t, err, codes.ResourceExhausted)
	cancelB, err := watch("bo")
	require.NoError(t, err)
	defer cancelB()
	_, err = watch("cy")
	testenv.RequireCode(t, err, codes.ResourceExhausted)
	require.Contains(t, status.Convert(err).Message(), "this server")

	cancelA2()
	testenv.Eventually(t, 10*time.Second, func() bool { return open() == 2 }, "a closed stream frees its slot")
	cancelC, err := watch("cy")
	require.NoError(t, err)
	cancelC()
}
