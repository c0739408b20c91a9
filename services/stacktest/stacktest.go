// Package stacktest starts every Tidings service for a test, wired exactly
// as a process wires them, over the real JetStream and redis-server of
// pkg/testenv, and hands out clients that call as any caller.
package stacktest

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/eventlog"
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
	Env        *testenv.Env
	Server     *testenv.Server
	Components *stack.Components
	Settings   *settings.Store
	Config     config.Config
	accounts   *auth.Accounts
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
		if o.Server != nil {
			configure := o.Server
			server = func(so *grpcserver.Options) { configure(env, so) }
		}
	}
	c := stack.Wire(env.Log, env.RDB, st, cfg, env.Logger, overrides)
	accounts, err := auth.NewAccounts(stack.AccountLookup(c.Projector().Stores().Profiles), accountOpts)
	require.NoError(t, err)
	s := &Stack{Env: env, Components: c, Settings: st, Config: cfg, accounts: accounts}
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

// Rebuild rebuilds every projection, as AdminService.RebuildProjections does.
func (s *Stack) Rebuild(t testing.TB) {
	t.Helper()
	_, err := s.Components.Projector().Rebuild(t.Context(), projection.RebuildOrder)
	require.NoError(t, err)
}

// Stores returns the projections the stack's services read and its worker
// writes.
func (s *Stack) Stores() projection.Stores { return s.Components.Projector().Stores() }

// StartWorker runs the worker until the test ends.
func (s *Stack) StartWorker(t testing.TB) {
	t.Helper()
	metrics, err := eventlog.NewConsumerMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	w := worker.New(worker.Deps{Log: s.Env.Log, Projector: s.Components.Projector(), Metrics: metrics, Logger: s.Env.Logger})
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// CaughtUp reports whether a durable consumer has acknowledged everything.
func (s *Stack) CaughtUp(t testing.TB, spec eventlog.ConsumerSpec) bool {
	c, err := s.Env.JS.Consumer(t.Context(), spec.Stream, spec.Durable)
	if err != nil {
		return false
	}
	info, err := c.Info(t.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
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
