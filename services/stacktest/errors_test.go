package stacktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/stacktest"
)

// requireUnavailable fails unless err is Unavailable with the reason
// UNAVAILABLE, retry advice, and no driver text.
func requireUnavailable(t *testing.T, err error) {
	t.Helper()
	testenv.RequireCode(t, err, codes.Unavailable)
	st := status.Convert(err)
	var (
		info  *errdetails.ErrorInfo
		retry *errdetails.RetryInfo
	)
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *errdetails.RetryInfo:
			retry = d
		}
	}
	require.NotNil(t, info, "an ErrorInfo")
	require.Equal(t, apierr.ReasonUnavailable, info.GetReason())
	require.NotNil(t, retry, "a RetryInfo")
	require.Positive(t, retry.GetRetryDelay().AsDuration())
	require.NotContains(t, st.Message(), "127.0.0.1", "no driver text")
}

// TestRedisDownIsUnavailable covers finding 7 of issue 14 for Redis: a
// read while Redis is down used to return Internal.
func TestRedisDownIsUnavailable(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana")
	require.NoError(t, s.Env.Redis.Kill())
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := s.Profiles(t, testenv.Admin).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	requireUnavailable(t, err)
}

// TestNoStreamLeaderIsUnavailable covers finding 7 of issue 14 for NATS: a
// write while the stream has no leader (two of three servers of an R3
// cluster are down) used to return Internal.
func TestNoStreamLeaderIsUnavailable(t *testing.T) {
	t.Parallel()
	cluster := testenv.NATSCluster(t)
	rs := testenv.Redis(t)
	nc, err := nats.Connect(cluster.Servers[0].ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, eventlog.EnsureStreams(ctx, js, eventlog.StreamOptions{Replicas: 3, DuplicateWindow: time.Minute}))
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	log := eventlog.New(js)
	srv := testenv.Serve(t, func(s *grpcserver.Server) {
		proj := projection.New(projection.Deps{Log: log, Stores: projection.NewStores(rdb, redisx.NewKeyspace(0), hot.Thresholds{On: 10000, Off: 8000}),
			Config: projection.DefaultConfig(), Logger: testenv.Logger()})
		tidingsv1.RegisterProfileServiceServer(s, profiles.NewServer(profiles.Deps{Log: log, Projector: proj, Logger: testenv.Logger()}))
	})
	client := tidingsv1.NewProfileServiceClient(srv.Conn(t, testenv.Directory))
	_, err = client.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "ana", DisplayName: "Ana"}})
	require.NoError(t, err)

	for _, s := range cluster.Servers[1:] {
		s.Shutdown()
		s.WaitForShutdown()
	}
	callCtx, callCancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer callCancel()
	start := time.Now()
	_, err = client.UpsertProfile(callCtx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "ana", DisplayName: "Ana L"}})
	t.Logf("after %s: %v", time.Since(start), err)
	requireUnavailable(t, err)
}
