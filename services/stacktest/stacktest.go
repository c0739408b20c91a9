// Package stacktest starts every Tidings service for a test, wired exactly
// as a process wires them, over the real JetStream and redis-server of
// pkg/testenv, and hands out clients that call as any caller.
package stacktest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stack"
	"github.com/tidingshq/tidings/services/worker"
)

// Stack is every service on one test server.
type Stack struct {
	Env         *testenv.Env
	Server      *testenv.Server
	Components  *stack.Components
	Settings    *settings.Store
	Generations *generation.Store
	Config      config.Config
	accounts    *auth.Accounts
}

// Options adjust the configuration.
type Options struct {
	// Configure, if set, changes the default configuration.
	Configure func(*config.Config)
	// Overrides adjust services beyond what configuration says.
	Overrides stack.Overrides
	// Server, if set, changes the gRPC server's options (TLS, audit, rate
	// and stream limits); env is the test's JetStream and Redis.
	Server func(env *testenv.Env, o *grpcserver.Options)
	// Accounts tune the account check of employees (auth.Accounts), on
	// as in a serving process.
	Accounts auth.AccountOptions
}

// Start serves every service for the test.
func Start(t testing.TB, opts ...Options) *Stack {
	t.Helper()
	env := testenv.New(t)
	st, err := settings.Open(t.Context(), env.JS, 1)
	require.NoError(t, err)
	gens, err := generation.Open(t.Context(), env.JS, 1)
	require.NoError(t, err)
	cfg := config.Default()
	var overrides stack.Overrides
	var server func(*grpcserver.Options)
	var accountOpts auth.AccountOptions
	for _, o := range opts {
		if o.Accounts != (auth.AccountOptions{}) {
			accountOpts = o.Accounts
		}
		if o.Configure != nil {
			o.Configure(&cfg)
		}
		if o.Overrides.Timelines != nil {
			overrides.Timelines = o.Overrides.Timelines
		}
		if o.Overrides.Now != nil {
			overrides.Now = o.Overrides.Now
		}
		if o.Server != nil {
			configure := o.Server
			server = func(so *grpcserver.Options) { configure(env, so) }
		}
	}
	c := stack.Wire(env.Log, env.RDB, st, gens, cfg, env.Logger, overrides)
	follow, stopFollowing := context.WithCancel(context.WithoutCancel(t.Context()))
	followed := make(chan error, 1)
	go func() { followed <- c.FollowGenerations(follow) }()
	t.Cleanup(func() {
		stopFollowing()
		require.NoError(t, <-followed)
	})
	accounts, err := auth.NewAccounts(stack.AccountLookup(c.Projector().Stores().Profiles), accountOpts)
	require.NoError(t, err)
	s := &Stack{Env: env, Components: c, Settings: st, Generations: gens, Config: cfg, accounts: accounts}
	s.Server = testenv.ServeWith(t, s.withAccounts(server), func(srv *grpcserver.Server) {
		c.Register(srv, stack.ServiceRoles)
	})
	return s
}

// withAccounts applies configure, then adds the account check to the
// server's authorizer (the one configure may have set).
func (s *Stack) withAccounts(configure func(*grpcserver.Options)) func(*grpcserver.Options) {
	return func(o *grpcserver.Options) {
		if configure != nil {
			configure(o)
		}
		o.Authorizer.WithAccounts(s.accounts)
	}
}

// AnotherServer serves the same services on a second server over the same
// JetStream and Redis, as a second API replica would; configure, if set,
// changes its options.
func (s *Stack) AnotherServer(t testing.TB, configure func(*grpcserver.Options)) *testenv.Server {
	t.Helper()
	return testenv.ServeWith(t, s.withAccounts(configure), func(srv *grpcserver.Server) {
		s.Components.Register(srv, stack.ServiceRoles)
	})
}

// Rebuild rebuilds every projection through AdminService.RebuildProjections
// and waits until the rebuild is done (StartWorker must run a worker).
func (s *Stack) Rebuild(t testing.TB) *tidingsv1.Rebuild {
	t.Helper()
	resp, err := s.Admin(t).RebuildProjections(t.Context(), &tidingsv1.RebuildProjectionsRequest{})
	require.NoError(t, err)
	return s.WaitRebuild(t, resp.GetRebuild().GetId())
}

// WaitRebuild waits until a rebuild is done, and returns it; a failed
// rebuild fails the test.
func (s *Stack) WaitRebuild(t testing.TB, id string) *tidingsv1.Rebuild {
	t.Helper()
	var r *tidingsv1.Rebuild
	testenv.Eventually(t, 2*time.Minute, func() bool {
		got, err := s.Admin(t).GetRebuild(t.Context(), &tidingsv1.GetRebuildRequest{Id: id})
		require.NoError(t, err)
		r = got.GetRebuild()
		require.NotEqual(t, tidingsv1.RebuildState_REBUILD_STATE_FAILED, r.GetState(), "rebuild failed: %s", r.GetError())
		return r.GetState() == tidingsv1.RebuildState_REBUILD_STATE_DONE
	}, "rebuild %s did not finish", id)
	return r
}

// Stores returns the projections the stack's services read and its worker
// writes.
func (s *Stack) Stores() projection.Stores { return s.Components.Projector().Stores() }

// StartWorker runs the worker until the test ends.
func (s *Stack) StartWorker(t testing.TB) {
	t.Helper()
	s.RunWorker(t, nil)
}

// RunWorker runs a worker (configure, if set, changes its dependencies)
// until stop is called or the test ends; stop is what a killed worker
// process leaves behind, without the kill.
func (s *Stack) RunWorker(t testing.TB, configure func(*worker.Deps)) (stop func()) {
	t.Helper()
	metrics, err := eventlog.NewConsumerMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	d := worker.Deps{
		Log: s.Env.Log, ProjectorFor: s.Components.ProjectorFor, Generations: s.Generations, Name: t.Name(),
		Metrics: metrics, Logger: s.Env.Logger,
		// One worker, in process: it sees a rebuild at once.
		RebuildSettle: 300 * time.Millisecond, RebuildGrace: 200 * time.Millisecond,
	}
	if configure != nil {
		configure(&d)
	}
	w := worker.New(d)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// CaughtUp reports whether a durable consumer has acknowledged everything.
// A consumer's pending count can lag a publish by a moment, so an
// unfiltered consumer must also have acknowledged the stream's last
// message.
func (s *Stack) CaughtUp(t testing.TB, spec eventlog.ConsumerSpec) bool {
	ctx := t.Context()
	c, err := s.Env.JS.Consumer(ctx, spec.Stream, spec.Durable)
	if err != nil {
		return false
	}
	var last uint64
	if len(spec.FilterSubjects) == 0 {
		stream, err := s.Env.JS.Stream(ctx, spec.Stream)
		if err != nil {
			return false
		}
		si, err := stream.Info(ctx)
		if err != nil {
			return false
		}
		last = si.State.LastSeq
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.AckFloor.Stream >= last
}

// WaitCaughtUp waits until every worker consumer has caught up.
func (s *Stack) WaitCaughtUp(t testing.TB) {
	t.Helper()
	for _, spec := range projection.ConsumerSpecs() {
		testenv.Eventually(t, 60*time.Second, func() bool { return s.CaughtUp(t, spec) }, "consumer %s did not catch up", spec.Durable)
	}
}

// Profiles returns a ProfileService client calling as id.
func (s *Stack) Profiles(t testing.TB, id auth.Identity) tidingsv1.ProfileServiceClient {
	return tidingsv1.NewProfileServiceClient(s.Server.Conn(t, id))
}

// Follows returns a FollowService client calling as id.
func (s *Stack) Follows(t testing.TB, id auth.Identity) tidingsv1.FollowServiceClient {
	return tidingsv1.NewFollowServiceClient(s.Server.Conn(t, id))
}

// Records returns a RecordService client calling as id.
func (s *Stack) Records(t testing.TB, id auth.Identity) tidingsv1.RecordServiceClient {
	return tidingsv1.NewRecordServiceClient(s.Server.Conn(t, id))
}

// Activities returns an ActivityService client calling as id.
func (s *Stack) Activities(t testing.TB, id auth.Identity) tidingsv1.ActivityServiceClient {
	return tidingsv1.NewActivityServiceClient(s.Server.Conn(t, id))
}

// Timelines returns a TimelineService client calling as id.
func (s *Stack) Timelines(t testing.TB, id auth.Identity) tidingsv1.TimelineServiceClient {
	return tidingsv1.NewTimelineServiceClient(s.Server.Conn(t, id))
}

// Conversations returns a ConversationService client calling as id.
func (s *Stack) Conversations(t testing.TB, id auth.Identity) tidingsv1.ConversationServiceClient {
	return tidingsv1.NewConversationServiceClient(s.Server.Conn(t, id))
}

// Notifications returns a NotificationService client calling as id.
func (s *Stack) Notifications(t testing.TB, id auth.Identity) tidingsv1.NotificationServiceClient {
	return tidingsv1.NewNotificationServiceClient(s.Server.Conn(t, id))
}

// Admin returns an AdminService client calling as an admin.
func (s *Stack) Admin(t testing.TB) tidingsv1.AdminServiceClient {
	return tidingsv1.NewAdminServiceClient(s.Server.Conn(t, testenv.Admin))
}

// Users creates profiles for ids (display name = id).
func (s *Stack) Users(t testing.TB, ids ...string) {
	t.Helper()
	var batch []*tidingsv1.Profile
	for _, id := range ids {
		batch = append(batch, &tidingsv1.Profile{UserId: id, DisplayName: id})
	}
	for start := 0; start < len(batch); start += 500 {
		_, err := s.Profiles(t, testenv.Directory).BatchUpsertProfiles(t.Context(),
			&tidingsv1.BatchUpsertProfilesRequest{Profiles: batch[start:min(start+500, len(batch))]})
		require.NoError(t, err)
	}
}
