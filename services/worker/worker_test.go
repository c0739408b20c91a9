package worker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/worker"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// startWorker runs a worker until the test ends.
func startWorker(t *testing.T, env *testenv.Env, proj *projection.Projector) {
	t.Helper()
	metrics, err := eventlog.NewConsumerMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	w := worker.New(worker.Deps{Log: env.Log, ProjectorFor: func(uint64) *projection.Projector { return proj }, Metrics: metrics, Logger: env.Logger})
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// consumerCaughtUp reports whether a durable consumer has acknowledged
// everything in its stream.
func consumerCaughtUp(t *testing.T, env *testenv.Env, spec eventlog.ConsumerSpec) bool {
	c, err := env.JS.Consumer(t.Context(), spec.Stream, spec.Durable)
	if err != nil {
		return false
	}
	info, err := c.Info(t.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func TestReplayProfilesEqualsOriginal(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	newProjector := func(e *testenv.Env) *projection.Projector {
		return projection.New(projection.Deps{
			Log: env.Log, Stores: projection.NewStores(e.RDB, redisx.NewKeyspace(0), hot.Thresholds{On: 10000, Off: 8000}),
			Config: projection.DefaultConfig(), Logger: env.Logger,
		})
	}
	proj := newProjector(env)
	// The projector alone builds Redis: the service's write-through goes to
	// a Redis that is not the one under test.
	other := testenv.New(t)
	srv := testenv.Serve(t, func(s *grpcserver.Server) {
		tidingsv1.RegisterProfileServiceServer(s, profiles.NewServer(profiles.Deps{Log: env.Log, Projector: newProjector(other), Logger: env.Logger}))
	})
	startWorker(t, env, proj)

	client := tidingsv1.NewProfileServiceClient(srv.Conn(t, testenv.Directory))
	ctx := t.Context()
	for i := range 60 {
		p := &tidingsv1.Profile{UserId: fmt.Sprintf("u%03d", i), DisplayName: "U", Department: fmt.Sprintf("d%d", i%4), ManagerId: fmt.Sprintf("m%d", i%3)}
		_, err := client.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: p})
		require.NoError(t, err)
	}
	for i := 0; i < 60; i += 7 {
		p := &tidingsv1.Profile{UserId: fmt.Sprintf("u%03d", i), DisplayName: "Moved", Department: "moved", ManagerId: "m9"}
		_, err := client.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: p})
		require.NoError(t, err)
		_, err = client.DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: p.GetUserId()})
		require.NoError(t, err)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return consumerCaughtUp(t, env, projection.ProfilesConsumer) },
		"profiles projector did not catch up")
	before := testenv.Snapshot(t, env.RDB)
	require.Len(t, before, 60+1+5+4, "profiles, the all index, dept and manager indexes")

	require.NoError(t, env.RDB.FlushAll(ctx).Err())
	events := 0
	reached, err := proj.Replay(ctx, nil, nil, func(_ projection.Positions, n int) { events += n })
	require.NoError(t, err)
	require.Equal(t, 60, events, "the stream keeps the last event of each profile")
	require.Equal(t, env.StreamLastSeq(t, eventlog.StreamProfiles), reached[eventlog.StreamProfiles])
	testenv.RequireSameSnapshot(t, before, testenv.Snapshot(t, env.RDB), "rebuilt projection")
}
