// Package stack assembles a Tidings process: it connects to NATS and Redis,
// ensures the streams, registers the services a process is told to run on
// one gRPC server, starts the worker's consumers, serves /metrics and
// /healthz, and shuts all of it down in order. A process of the web role
// alone connects to neither NATS nor Redis: it talks to the API only.
package stack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/credentials"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/heal"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/telemetry"
	"github.com/tidingshq/tidings/pkg/tlsfiles"
	"github.com/tidingshq/tidings/services/worker"
)

// Role is one part a process can run.
type Role string

// The roles. Each gRPC service can run in its own process; the worker runs
// the consumers that project the log into Redis.
const (
	RoleProfiles   Role = "profiles"
	RoleFollows    Role = "follows"
	RoleRecords    Role = "records"
	RoleActivities Role = "activities"
	RoleTimelines  Role = "timelines"
	RoleAdmin      Role = "admin"
	// RoleConversations serves comments and reactions.
	RoleConversations Role = "conversations"
	// RoleNotifications serves notifications.
	RoleNotifications Role = "notifications"
	RoleWorker        Role = "worker"
	// RoleWeb serves the reference web page on the HTTP listener.
	RoleWeb Role = "web"
)

// ServiceRoles are the roles that serve gRPC.
var ServiceRoles = []Role{RoleProfiles, RoleFollows, RoleRecords, RoleActivities, RoleTimelines, RoleAdmin, RoleConversations, RoleNotifications}

// AllRoles is everything, as `tidings dev` runs it.
func AllRoles() []Role { return append(slices.Clone(ServiceRoles), RoleWorker, RoleWeb) }

// Addrs are where a running process listens.
type Addrs struct {
	GRPC string
	// HTTP serves the JSON API, the web page and /healthz.
	HTTP string
	// Debug serves /metrics, /debug/pprof and /healthz.
	Debug string
}

// Options configure Run.
type Options struct {
	Config config.Config
	Roles  []Role
	Logger *slog.Logger
	// OnReady, if set, is called once the listeners are open.
	OnReady func(Addrs)
	// HealthInterval is how often health is re-checked; 2s when zero.
	HealthInterval time.Duration
	// DevTokens, when set, gives the web page its development sign-in
	// (tidings dev only).
	DevTokens func(kind auth.Kind, id string) (string, error)
}

// startupTimeout bounds how long a process waits for JetStream to accept
// its streams and bucket at start.
const startupTimeout = 2 * time.Minute

// deps are the connections a process holds.
type deps struct {
	nc       *nats.Conn
	js       jetstream.JetStream
	log      *eventlog.Log
	rdb      redis.UniversalClient
	settings *settings.Store
	gens     *generation.Store
}

func connect(ctx context.Context, cfg config.Config, logger *slog.Logger) (*deps, error) {
	nc, err := nats.Connect(cfg.NATSURL,
		nats.Name("tidings"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats disconnected", "error", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { logger.Info("nats reconnected") }),
	)
	if err != nil {
		return nil, fmt.Errorf("connect nats %s: %w", cfg.NATSURL, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open jetstream: %w", err)
	}
	// Streams and the settings bucket are created (or updated) by every
	// process at start, in short retried attempts, so that processes
	// started together on a fresh cluster all come up; a cluster that has
	// not formed within startupTimeout fails the start.
	sctx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	if err := eventlog.EnsureStreams(sctx, js, eventlog.StreamOptions{
		Replicas:        cfg.StreamReplicas,
		DuplicateWindow: cfg.DuplicateWindow,
	}); err != nil {
		nc.Close()
		return nil, err
	}
	st, err := settings.Open(sctx, js, cfg.StreamReplicas)
	if err != nil {
		nc.Close()
		return nil, err
	}
	gens, err := generation.Open(sctx, js, cfg.StreamReplicas)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &deps{nc: nc, js: js, log: eventlog.New(js), rdb: redisx.NewClient(cfg.RedisAddrs, cfg.RedisPassword), settings: st, gens: gens}, nil
}

func (d *deps) close() {
	_ = d.nc.Drain()
	_ = d.rdb.Close()
}

// health reports whether Redis answers (every primary of a cluster),
// every stream exists and the projections are not being healed (pkg/heal).
func (d *deps) health(ctx context.Context) error {
	if err := redisx.Health(ctx, d.rdb); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if err := eventlog.CheckStreams(ctx, d.js); err != nil {
		return err
	}
	if d.gens == nil {
		return nil
	}
	cur, err := d.gens.Current(ctx)
	if err != nil {
		return err
	}
	healing, err := d.gens.Healing(ctx, cur, time.Now())
	if err != nil {
		return err
	}
	if healing {
		return errors.New("the projections are being re-applied from the log after Redis lost writes; reads may miss recent items")
	}
	return nil
}

// Run runs the roles until ctx ends, then shuts down gracefully.
func Run(ctx context.Context, opts Options) error {
	cfg, logger := opts.Config, opts.Logger
	if len(opts.Roles) == 0 {
		return errors.New("no role to run")
	}
	tracing, err := telemetry.SetupTracing(ctx, telemetry.TracingOptions{
		Endpoint: cfg.OTLPEndpoint, Insecure: cfg.OTLPInsecure, SampleRatio: cfg.TraceSampleRatio,
		ServiceName: "tidings", Role: joinRoles(opts.Roles),
	})
	if err != nil {
		return err
	}
	defer func() {
		// Last, once everything has stopped: flush the spans of the drain.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
		defer cancel()
		if err := tracing.Shutdown(sctx); err != nil {
			logger.Warn("traces not flushed", "error", err)
		}
	}()
	// The services and the worker use NATS and Redis; the web role alone
	// renders from the API (--web-api-addr) and never touches them, so its
	// health is the API's (frontHandler).
	var (
		d      *deps
		health telemetry.HealthFunc
	)
	if hasAny(opts.Roles, append(slices.Clone(ServiceRoles), RoleWorker)...) {
		if d, err = connect(ctx, cfg, logger); err != nil {
			return err
		}
		defer d.close()
		health = d.health
	}

	reg := telemetry.NewRegistry()
	var c *Components
	if d != nil {
		var deliveries *projection.Metrics
		if slices.Contains(opts.Roles, RoleWorker) {
			if deliveries, err = projection.NewMetrics(reg); err != nil {
				return err
			}
		}
		c = newComponents(ctx, d, cfg, logger, deliveries, Overrides{})
	}

	g, gctx := errgroup.WithContext(ctx)
	var addrs Addrs
	if c != nil {
		// Every process that reads or writes the projections follows their
		// generation (pkg/generation); a web process alone has none.
		g.Go(func() error { return c.FollowGenerations(gctx) })
	}

	var srv *grpcserver.Server
	var sec *security
	if hasAny(opts.Roles, ServiceRoles...) {
		sec, err = newSecurity(ctx, cfg, d, reg, logger)
		if err != nil {
			return err
		}
		defer sec.shutdown()
		sopts := grpcserver.Options{
			Logger:     logger,
			Registry:   reg,
			Reflection: cfg.Reflection,
			Tracing:    tracing.Enabled(),
			Limits: grpcserver.Limits{
				MaxRecvBytes:         cfg.MaxRecvBytes,
				MaxSendBytes:         cfg.MaxSendBytes,
				MaxConcurrentStreams: cfg.MaxConcurrentStreams,
				MaxHeaderBytes:       cfg.MaxHeaderBytes,
				MaxDeadline:          cfg.MaxDeadline,
			},
		}
		accounts, err := c.Accounts()
		if err != nil {
			return err
		}
		sec.serverOptions(&sopts, accounts, logger)
		srv, err = grpcserver.New(sopts) //nolint:contextcheck // the stream interceptor works in each stream's own context (ss.Context()), not in Run's
		if err != nil {
			return err
		}
		sec.run(gctx, g, cfg)
		c.Register(srv, opts.Roles)
		ln, err := net.Listen("tcp", cfg.GRPCAddr)
		if err != nil {
			return fmt.Errorf("listen grpc %s: %w", cfg.GRPCAddr, err)
		}
		addrs.GRPC = ln.Addr().String()
		g.Go(func() error {
			if err := srv.Serve(ln); err != nil {
				return fmt.Errorf("serve grpc: %w", err)
			}
			return nil
		})
	}

	if slices.Contains(opts.Roles, RoleWorker) {
		metrics, err := eventlog.NewConsumerMetrics(reg)
		if err != nil {
			return err
		}
		healMetrics, err := heal.NewMetrics(reg)
		if err != nil {
			return err
		}
		w := worker.New(worker.Deps{
			Log: d.log, ProjectorFor: c.ProjectorFor, Generations: d.gens, Name: workerName(),
			AckWait: cfg.AckWait, MaxDeliver: cfg.MaxDeliver, Metrics: metrics, HealMetrics: healMetrics, Logger: logger,
		})
		g.Go(func() error { return w.Run(gctx) })
	}

	// The HTTP and debug listeners serve TLS when the gRPC listener does,
	// from the same certificate files.
	var httpTLS *tls.Config
	var selfCreds credentials.TransportCredentials
	switch {
	case sec != nil && sec.tls != nil:
		httpTLS, selfCreds = sec.tls.ServerConfig(), sec.tls.SelfCredentials()
	case cfg.TLSCertFile != "":
		src, err := tlsfiles.New(tlsfiles.Files{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile}, logger)
		if err != nil {
			return err
		}
		httpTLS = src.ServerConfig()
		g.Go(func() error { src.Watch(gctx, cfg.TLSReload); return nil })
	}
	front, closeFront, err := frontHandler(ctx, opts, srv, addrs.GRPC, selfCreds, health)
	if err != nil {
		return err
	}
	defer closeFront()
	for _, l := range []struct {
		addr string
		h    http.Handler
		out  *string
		stop func()
	}{
		{cfg.HTTPAddr, front.handler, &addrs.HTTP, front.close},
		{cfg.DebugAddr, telemetry.DebugHandler(reg, front.health), &addrs.Debug, func() {}},
	} {
		if l.addr == "" {
			continue
		}
		hs, err := telemetry.NewHTTPServer(l.addr, l.h, int(cfg.MaxHeaderBytes))
		if err != nil {
			return err
		}
		if httpTLS != nil {
			hs.UseTLS(httpTLS)
		}
		*l.out = hs.Addr()
		g.Go(hs.Serve)
		g.Go(func() error {
			<-gctx.Done()
			l.stop()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownGrace)
			defer cancel()
			return hs.Shutdown(sctx)
		})
	}

	if srv != nil {
		interval := opts.HealthInterval
		if interval == 0 {
			interval = 2 * time.Second
		}
		g.Go(func() error {
			watchHealth(gctx, srv, d, interval, logger)
			stopGRPC(srv, cfg.ShutdownGrace, logger)
			return nil
		})
	}

	logger.Info("tidings started", "roles", joinRoles(opts.Roles), "grpc", addrs.GRPC, "http", addrs.HTTP, "debug", addrs.Debug)
	if opts.OnReady != nil {
		opts.OnReady(addrs)
	}
	err = g.Wait()
	logger.Info("tidings stopped")
	return err
}

// watchHealth keeps the health service truthful until ctx ends, then marks
// the server NOT_SERVING so balancers stop sending traffic before the drain.
func watchHealth(ctx context.Context, srv *grpcserver.Server, d *deps, interval time.Duration, logger *slog.Logger) {
	serving := false
	check := func() {
		cctx, cancel := context.WithTimeout(ctx, interval)
		err := d.health(cctx)
		cancel()
		if ok := err == nil; ok != serving {
			serving = ok
			srv.SetServing(ok)
			if ok {
				logger.Info("health: serving")
			} else if ctx.Err() == nil {
				logger.Warn("health: not serving", "error", err)
			}
		}
	}
	check()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			srv.SetServing(false)
			return
		case <-tick.C:
			check()
		}
	}
}

// stopGRPC drains calls in flight for up to grace, then stops hard.
func stopGRPC(srv *grpcserver.Server, grace time.Duration, logger *slog.Logger) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(grace):
		logger.Warn("graceful stop timed out; stopping", "grace", grace)
		srv.Stop()
		<-done
	}
}

func hasAny(roles []Role, want ...Role) bool {
	for _, r := range want {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

func joinRoles(roles []Role) string {
	s := make([]string, len(roles))
	for i, r := range roles {
		s[i] = string(r)
	}
	return strings.Join(s, ",")
}

// workerName names this process when it runs a rebuild: host and pid.
func workerName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d", host, os.Getpid())
}
