package stack

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/httpapi"
	"github.com/tidingshq/tidings/pkg/telemetry"
	"github.com/tidingshq/tidings/services/web"
)

// front is what the employee-facing HTTP listener serves.
type front struct {
	handler http.Handler
	// close ends the open event streams before a graceful shutdown.
	close func()
	// health is what /healthz reports: the process's own dependencies, or,
	// for a web role alone, the API's gRPC health.
	health telemetry.HealthFunc
}

// frontHandler builds the HTTP listener's handler: /healthz, the JSON API
// of the services this process runs (in process, through the gRPC server's
// interceptors), and the web page when the process has the web role. A web
// role without the services in its process renders from the API's gRPC
// address and proxies the browser's /v1/ calls to the API's HTTP address;
// given no health (a process without NATS and Redis), it reports the API's.
// The returned func releases what it opened.
func frontHandler(_ context.Context, opts Options, srv *grpcserver.Server, grpcAddr string, self credentials.TransportCredentials, health telemetry.HealthFunc) (*front, func(), error) {
	cfg := opts.Config
	f := &front{close: func() {}, health: health}
	var closers []func()
	release := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", telemetry.HealthHandler(func(ctx context.Context) error { return f.health(ctx) }))
	mux.Handle("GET /livez", telemetry.LiveHandler())
	f.handler = mux

	var api http.Handler
	var conn grpc.ClientConnInterface
	if srv != nil {
		// Streams go through a client of the process's own server.
		if self == nil {
			self = insecure.NewCredentials()
		}
		cc, err := grpc.NewClient(loopback(grpcAddr), grpc.WithTransportCredentials(self))
		if err != nil {
			return nil, release, fmt.Errorf("dial own grpc server: %w", err)
		}
		closers = append(closers, func() { _ = cc.Close() })
		h, err := httpapi.New(httpapi.Options{
			Server: srv.Server, Conn: cc,
			MaxRecvBytes: cfg.MaxRecvBytes, MaxSendBytes: cfg.MaxSendBytes,
			MaxStreams: int(cfg.MaxConcurrentStreams), Logger: opts.Logger,
		})
		if err != nil {
			release()
			return nil, func() {}, err
		}
		api, conn, f.close = h, cc, h.Close
	}
	if !hasAny(opts.Roles, RoleWeb) {
		if api != nil {
			mux.Handle("/v1/", api)
		}
		return f, release, nil
	}
	if conn == nil {
		cc, err := grpc.NewClient(cfg.WebAPIAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			release()
			return nil, func() {}, fmt.Errorf("dial api %s: %w", cfg.WebAPIAddr, err)
		}
		closers = append(closers, func() { _ = cc.Close() })
		conn = cc
		if f.health == nil {
			f.health = apiHealth(cc, cfg.WebAPIAddr)
		}
		u, err := url.Parse(cfg.WebAPIURL)
		if err != nil || u.Host == "" {
			release()
			return nil, func() {}, fmt.Errorf("web-api-url %q: want http(s)://host:port", cfg.WebAPIURL)
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		proxy.FlushInterval = -1 // event streams flush at once
		api = proxy
	}
	var csrfKey []byte
	if cfg.AuthSecret != "" {
		// Replicas of the web role share the secret, so they share the key.
		m := hmac.New(sha256.New, []byte(cfg.AuthSecret))
		m.Write([]byte("tidings web csrf key"))
		csrfKey = m.Sum(nil)
	}
	ws, err := web.New(web.Options{
		Conn: conn, API: api, DevTokens: opts.DevTokens, CSRFKey: csrfKey,
		SecureCookies: cfg.WebSecureCookies, Logger: opts.Logger,
	})
	if err != nil {
		release()
		return nil, func() {}, err
	}
	mux.Handle("/", ws)
	return f, release, nil
}

// apiHealth reports whether the API at addr answers SERVING to the gRPC
// health check (service "": its Redis and streams are there).
func apiHealth(cc grpc.ClientConnInterface, addr string) telemetry.HealthFunc {
	client := healthpb.NewHealthClient(cc)
	return func(ctx context.Context) error {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("api %s: %w", addr, err)
		}
		if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("api %s: %s", addr, st)
		}
		return nil
	}
}

// loopback turns a listen address into one to dial: an unspecified host
// (0.0.0.0, ::) becomes 127.0.0.1.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
