// Package testenv is the harness of Tidings' integration tests: a real
// in-process NATS server with JetStream and a real redis-server process,
// each on a random loopback port with its own temporary directory, and a
// real gRPC server (with the production interceptors) whose clients carry
// tokens for any caller. Everything is cleaned up when the test ends.
//
// Waiting is done with Eventually, which polls a condition until a
// deadline; tests never sleep to synchronise.
package testenv

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/natsserver"
	"github.com/tidingshq/tidings/pkg/redisserver"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// TokenConfig signs and checks the tokens of tests.
var TokenConfig = auth.TokenConfig{
	Secret:   []byte("tidings-test-secret-0123456789abcdef"),
	Issuer:   "tidings-test",
	Audience: "tidings-test",
	Leeway:   time.Second,
}

// Callers used throughout the tests.
var (
	Admin     = auth.Identity{Kind: auth.KindAdmin, ID: "root"}
	Directory = auth.Identity{Kind: auth.KindApp, ID: "hr", Roles: []string{auth.RoleDirectory}}
)

// Employee returns the identity of an employee.
func Employee(id string) auth.Identity { return auth.Identity{Kind: auth.KindEmployee, ID: id} }

// App returns the identity of an app without roles.
func App(id string) auth.Identity { return auth.Identity{Kind: auth.KindApp, ID: id} }

func init() {
	// go-redis reports dial failures on its own logger; the fault tests
	// cause them on purpose. Keep test output to what tests say.
	if os.Getenv("TIDINGS_TEST_LOG") == "" {
		redis.SetLogger(quietRedisLog{})
	}
}

type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

// Logger returns a logger for tests: quiet unless TIDINGS_TEST_LOG is set.
func Logger() *slog.Logger {
	if os.Getenv("TIDINGS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// NATS starts an in-process JetStream server for the test.
func NATS(t testing.TB) *server.Server {
	t.Helper()
	s, err := natsserver.Start(natsserver.Options{StoreDir: t.TempDir(), Port: -1})
	require.NoError(t, err)
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// NATSCluster starts a fresh 3-node JetStream cluster for the test (see
// natsserver.StartCluster: its meta leader may not be elected yet when
// this returns).
func NATSCluster(t testing.TB) *natsserver.Cluster {
	t.Helper()
	c, err := natsserver.StartCluster(natsserver.ClusterOptions{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(c.Shutdown)
	return c
}

// Redis starts a redis-server process for the test.
func Redis(t testing.TB) *redisserver.Server {
	t.Helper()
	s, err := redisserver.Start(t.Context(), redisserver.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Kill() })
	return s
}

// Env is a NATS server and a Redis server with clients connected to both
// and the streams created.
type Env struct {
	NATS   *server.Server
	Redis  *redisserver.Server
	NC     *nats.Conn
	JS     jetstream.JetStream
	Log    *eventlog.Log
	RDB    redis.UniversalClient
	Logger *slog.Logger
}

// New starts an Env for the test.
func New(t testing.TB) *Env {
	t.Helper()
	e := &Env{NATS: NATS(t), Redis: Redis(t), Logger: Logger()}
	nc, err := nats.Connect(e.NATS.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, eventlog.EnsureStreams(ctx, js, eventlog.StreamOptions{Replicas: 1, DuplicateWindow: 2 * time.Minute}))
	rdb := redis.NewClient(&redis.Options{Addr: e.Redis.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	e.NC, e.JS, e.Log, e.RDB = nc, js, eventlog.New(js), rdb
	return e
}

// StreamMessages returns how many messages a stream holds.
func (e *Env) StreamMessages(t testing.TB, stream string) uint64 {
	t.Helper()
	s, err := e.JS.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.Msgs
}

// StreamLastSeq returns the last sequence of a stream.
func (e *Env) StreamLastSeq(t testing.TB, stream string) uint64 {
	t.Helper()
	s, err := e.JS.Stream(t.Context(), stream)
	require.NoError(t, err)
	info, err := s.Info(t.Context())
	require.NoError(t, err)
	return info.State.LastSeq
}

// Server is a gRPC server started for a test.
type Server struct {
	Addr string
	// GRPC is the server itself, for handlers that serve it in process
	// (the HTTP/JSON transcoder).
	GRPC *grpcserver.Server
}

// Serve starts a gRPC server with the production interceptors and policy,
// lets register add services, and returns it once it accepts calls.
func Serve(t testing.TB, register func(s *grpcserver.Server)) *Server {
	t.Helper()
	return ServeWith(t, nil, register)
}

// ServeWith is Serve with configure, when set, changing the server's
// options (TLS, audit, rate and stream limits) before it is built.
func ServeWith(t testing.TB, configure func(*grpcserver.Options), register func(s *grpcserver.Server)) *Server {
	t.Helper()
	verifier, err := auth.NewVerifier(TokenConfig)
	require.NoError(t, err)
	logger := Logger()
	opts := grpcserver.Options{
		Logger:     logger,
		Registry:   prometheus.NewRegistry(),
		Authorizer: auth.NewAuthorizer(verifier, auth.DefaultPolicy(), logger),
		Reflection: true,
		Limits: grpcserver.Limits{
			MaxRecvBytes:         4 << 20,
			MaxSendBytes:         16 << 20,
			MaxConcurrentStreams: 1000,
			MaxHeaderBytes:       16 << 10,
			MaxDeadline:          30 * time.Second,
		},
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := grpcserver.New(opts)
	require.NoError(t, err)
	register(srv)
	srv.SetServing(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return &Server{Addr: ln.Addr().String(), GRPC: srv}
}

// Token mints a token for id, valid for an hour.
func Token(t testing.TB, id auth.Identity) string {
	t.Helper()
	tok, err := auth.Mint(TokenConfig, id, time.Hour, time.Now())
	require.NoError(t, err)
	return tok
}

// Conn returns a client connection that calls as id.
func (s *Server) Conn(t testing.TB, id auth.Identity) *grpc.ClientConn {
	t.Helper()
	return s.ConnWithToken(t, Token(t, id))
}

// ConnWithToken returns a client connection sending token ("" for none).
func (s *Server) ConnWithToken(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPCToken(token)))
	}
	conn, err := grpc.NewClient(s.Addr, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Eventually polls cond every 5ms until it returns true, failing the test
// with msg when timeout passes first.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", timeout, fmt.Sprintf(msg, args...))
		}
		<-tick.C
	}
}

// Snapshot returns every Tidings key of Redis with its value in a
// comparable form (strings, hashes, sets and sorted sets with scores), to
// compare a projection before and after a rebuild. Keys are named as in the
// first generation of the projections (a rebuild fills the next one,
// "tidings:g<n>:..."); two generations side by side fail the test. The
// projections' watermarks, which say how far the log was applied rather
// than what it projects, are left out.
func Snapshot(t testing.TB, rdb redis.UniversalClient) map[string]any {
	t.Helper()
	ctx := t.Context()
	keys, err := rdb.Keys(ctx, "tidings:*").Result()
	require.NoError(t, err)
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		typ, err := rdb.Type(ctx, k).Result()
		require.NoError(t, err)
		var v any
		switch typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "set":
			var m []string
			m, err = rdb.SMembers(ctx, k).Result()
			set := map[string]bool{}
			for _, x := range m {
				set[x] = true
			}
			v = set
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		default:
			t.Fatalf("snapshot: key %s has unexpected type %s", k, typ)
		}
		require.NoError(t, err)
		name := generationFree(k)
		if strings.HasPrefix(name, redisx.Prefix+"applied:{") {
			continue // watermarks: how far the log was applied, not what it projects
		}
		_, twice := out[name]
		require.False(t, twice, "snapshot: %s is in two generations", name)
		out[name] = v
	}
	return out
}

// generationFree names a key as in the first generation.
func generationFree(key string) string {
	rest, ok := strings.CutPrefix(key, redisx.Prefix+"g")
	if !ok {
		return key
	}
	gen, name, ok := strings.Cut(rest, ":")
	if !ok || gen == "" || strings.Trim(gen, "0123456789") != "" {
		return key
	}
	return redisx.Prefix + name
}

// Edge names one follow edge: a user and an entity key.
type Edge struct{ User, Entity string }

// RequireGraph fails unless each edge is live (true) or not (false) on both
// sides of the graph projection.
func RequireGraph(t testing.TB, store *graphstore.Store, want map[Edge]bool) {
	t.Helper()
	ctx := t.Context()
	for e, following := range want {
		got, err := store.IsFollowing(ctx, e.User, []string{e.Entity})
		require.NoError(t, err)
		require.Equal(t, following, got[0], "following side of %v", e)
		back, err := store.FollowersOf(ctx, e.Entity, []string{e.User})
		require.NoError(t, err)
		require.Equal(t, following, back[0], "followers side of %v", e)
	}
}

// RequireSameSnapshot fails unless two snapshots (see Snapshot) hold the
// same keys with the same values, naming the keys that differ (at most 20)
// rather than printing both whole.
func RequireSameSnapshot(t testing.TB, want, got map[string]any, msg string) {
	t.Helper()
	var diff []string
	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, inWant := want[k]
		g, inGot := got[k]
		switch {
		case !inGot:
			diff = append(diff, fmt.Sprintf("%s: missing (want %.120v)", k, w))
		case !inWant:
			diff = append(diff, fmt.Sprintf("%s: unexpected (got %.120v)", k, g))
		case !reflect.DeepEqual(w, g):
			diff = append(diff, fmt.Sprintf("%s: want %.120v, got %.120v", k, w, g))
		}
	}
	if len(diff) > 0 {
		t.Fatalf("%s: %d of %d keys differ:\n%s", msg, len(diff), len(keys), strings.Join(diff[:min(len(diff), 20)], "\n"))
	}
}

// VerifyNoLeaks runs a package's tests and fails if goroutines outlive them,
// allowing for the process-wide goroutines of the in-process NATS server.
// Call it from TestMain.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*Server).processPings"),
	)
}

// RequireCode fails unless err is a gRPC status with code want and a
// message.
func RequireCode(t testing.TB, err error, want codes.Code) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, want, st.Code(), "message: %s", st.Message())
	require.NotEmpty(t, st.Message())
}
