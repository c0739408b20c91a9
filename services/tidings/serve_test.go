package main_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// faultSecret is the signing secret startWorker gives its workers.
const faultSecret = "fault-tests-secret-0123456789abcdef"

// metricsText reads a process's /metrics page.
func metricsText(t *testing.T, debugAddr string) string {
	t.Helper()
	resp, err := http.Get("http://" + debugAddr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "GET /metrics on %s", debugAddr)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestServeAPIAndWorkerScaleApart runs `serve api` and `serve worker` as two
// processes, as API and worker replicas run in production: the API process
// serves every service and runs no consumer, and a post made through it
// reaches a follower's home timeline through the worker process.
func TestServeAPIAndWorkerScaleApart(t *testing.T) {
	e := newFaultEnv(t, false)
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	debugAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := &syncBuffer{}
	cmd := exec.Command(binary, "serve", "api",
		"--nats-url", e.NATS.ClientURL(),
		"--redis-addr", e.redis.Addr(),
		"--auth-secret", faultSecret,
		"--grpc-addr", grpcAddr,
		"--http-addr", httpAddr,
		"--debug-addr", debugAddr,
	)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	api := &devProcess{cmd: cmd, grpcAddr: grpcAddr, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(api.exited)
	}()
	t.Cleanup(func() { api.kill(t) })
	api.waitServing(t, apiServices)

	// The worker's metrics are registered before /metrics serves, so their
	// absence says the API process runs no worker.
	apiMetrics := metricsText(t, debugAddr)
	require.Contains(t, apiMetrics, "go_goroutines", "the API process serves its metrics")
	require.NotContains(t, apiMetrics, "tidings_fanout_deliveries_total", "serve api registered the worker's metrics")
	require.Contains(t, out.String(), "roles=profiles,follows,records,activities,timelines,admin")

	token := func(id auth.Identity) string {
		tok, err := auth.Mint(auth.TokenConfig{Secret: []byte(faultSecret), Issuer: "tidings", Audience: "tidings"}, id, time.Hour, time.Now())
		require.NoError(t, err)
		return tok
	}
	admin := api.conn(t, token(auth.Identity{Kind: auth.KindAdmin, ID: "ops"}))
	for _, u := range []string{"ana", "bo"} {
		_, err := tidingsv1.NewProfileServiceClient(admin).UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{
			Profile: &tidingsv1.Profile{UserId: u, DisplayName: strings.ToUpper(u)},
		})
		require.NoError(t, err)
	}
	bo := api.conn(t, token(testenv.Employee("bo")))
	_, err := tidingsv1.NewFollowServiceClient(bo).Follow(t.Context(), &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	posted, err := tidingsv1.NewActivityServiceClient(api.conn(t, token(testenv.Employee("ana")))).PostActivity(t.Context(),
		&tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "from the API replica"})
	require.NoError(t, err)

	_, err = e.JS.Consumer(t.Context(), projection.ActivitiesConsumer.Stream, projection.ActivitiesConsumer.Durable)
	require.Error(t, err, "no worker has run: the fan-out consumer does not exist yet")

	w := e.startWorker(t)
	timelines := tidingsv1.NewTimelineServiceClient(bo)
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := timelines.GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: "bo"})
		if err != nil {
			return false
		}
		for _, it := range resp.GetItems() {
			if it.GetActivity().GetId() == posted.GetActivity().GetId() {
				return true
			}
		}
		return false
	}, "the worker process did not fan the post out:\n%s", w.out.String())
	require.Contains(t, metricsText(t, w.httpAddr), "tidings_fanout_deliveries_total", "the worker has no fan-out metric")

	// With Redis gone the API process is not ready, but still alive: a
	// liveness probe must not restart replicas for a dependency's outage.
	health := healthpb.NewHealthClient(api.conn(t, ""))
	require.NoError(t, e.redis.Kill())
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}, "serve api still SERVING with Redis down")
	live, err := health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: grpcserver.LivenessService})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, live.GetStatus())
	require.Equal(t, http.StatusOK, httpStatus(t, httpAddr, "/livez"))
	require.Equal(t, http.StatusServiceUnavailable, httpStatus(t, httpAddr, "/healthz"))
}

func httpStatus(t *testing.T, addr, path string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// TestServeWebWithoutNATSOrRedis runs `serve web` alone, with the NATS and
// Redis addresses pointing at ports where nothing listens: the web page
// talks to the API only, so it starts, serves its pages and its metrics,
// and its readiness is the API's gRPC health.
func TestServeWebWithoutNATSOrRedis(t *testing.T) {
	apiHealth := health.NewServer()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, apiHealth)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = gs.Serve(ln) }()
	t.Cleanup(gs.Stop)

	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	debugAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	out := &syncBuffer{}
	cmd := exec.Command(binary, "serve", "web",
		"--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)),
		"--redis-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		"--auth-secret", faultSecret,
		"--web-api-addr", ln.Addr().String(),
		"--web-api-url", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		"--http-addr", httpAddr,
		"--debug-addr", debugAddr,
	)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	web := &devProcess{cmd: cmd, out: out, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(web.exited)
	}()
	t.Cleanup(func() { web.kill(t) })

	get := func(addr, path string) int {
		select {
		case <-web.exited:
			t.Fatalf("serve web exited:\n%s", out.String())
		default:
		}
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return get(httpAddr, "/healthz") == http.StatusOK },
		"serve web not ready with the API SERVING:\n%s", out.String())
	require.Equal(t, http.StatusOK, get(httpAddr, "/signin"), "the sign-in page")
	require.Equal(t, http.StatusOK, get(httpAddr, "/livez"))
	require.Equal(t, http.StatusOK, get(debugAddr, "/healthz"))
	require.Contains(t, metricsText(t, debugAddr), "go_goroutines", "serve web serves its metrics")
	require.Contains(t, out.String(), "roles=web")

	// Readiness follows the API's: not serving when the API is not.
	apiHealth.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	testenv.Eventually(t, 10*time.Second, func() bool { return get(httpAddr, "/healthz") == http.StatusServiceUnavailable },
		"serve web still ready with the API NOT_SERVING")
	require.Equal(t, http.StatusOK, get(httpAddr, "/livez"), "alive whatever the API says")
}
