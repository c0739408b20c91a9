// Package telemetry builds the logger, the Prometheus registry, the
// operators' HTTP handler (/metrics, /debug/pprof, /healthz) and the HTTP
// servers of a process.
package telemetry

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewLogger returns a structured logger writing to w.
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// HealthFunc reports whether the process can serve; a nil error is healthy.
type HealthFunc func(ctx context.Context) error

// HTTPServer is one HTTP listener of a process.
type HTTPServer struct {
	srv *http.Server
	ln  net.Listener
}

// HealthHandler answers /healthz: 200 "ok" when health passes, 503 when not.
func HealthHandler(health HealthFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := health(ctx); err != nil {
			http.Error(w, "not serving: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// LiveHandler answers /livez: 200 "ok" while the process answers at all,
// whatever its dependencies do (/healthz says whether it can serve).
func LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
}

// DebugHandler serves the operators' pages: Prometheus /metrics, Go's
// /debug/pprof profiles (`go tool pprof http://<debug-addr>/debug/pprof/profile`),
// /healthz and /livez. It belongs on the debug address, never on a listener
// employees reach.
func DebugHandler(reg *prometheus.Registry, health HealthFunc) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /healthz", HealthHandler(health))
	mux.Handle("GET /livez", LiveHandler())
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	return mux
}

// NewHTTPServer listens on addr and will serve h. Requests' headers are
// limited to maxHeaderBytes (http.DefaultMaxHeaderBytes when 0). No write
// timeout is set: event streams stay open.
func NewHTTPServer(addr string, h http.Handler, maxHeaderBytes int) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen http %s: %w", addr, err)
	}
	return &HTTPServer{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 5 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    maxHeaderBytes,
		},
		ln: ln,
	}, nil
}

// UseTLS serves TLS with cfg on the listener; call it before Serve.
func (s *HTTPServer) UseTLS(cfg *tls.Config) { s.ln = tls.NewListener(s.ln, cfg) }

// Addr is the address listened on.
func (s *HTTPServer) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown.
func (s *HTTPServer) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// Shutdown stops the server, waiting for requests in flight until ctx ends.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
}
