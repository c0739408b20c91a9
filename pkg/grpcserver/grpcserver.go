// Package grpcserver builds the one gRPC server every Tidings process uses,
// so that the interceptor order, the limits and the health and reflection
// services are fixed in a single place.
//
// Interceptors run in this order, outermost first:
//
//	request id → recovery → metrics → logging → deadline cap → auth →
//	audit → rate limit → stream limits →
//	validation (undecodable messages, unknown fields, protovalidate) →
//	error mapping → handler
//
// Audit, rate limit and stream limits are on when their options are set.
//
// The server's codec marks requests that do not decode instead of failing
// (grpc-go would answer Internal); validation answers them InvalidArgument.
package grpcserver

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"log/slog"
	"regexp"
	"runtime/debug"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
)

// Limits are the server's resource limits.
type Limits struct {
	MaxRecvBytes         int
	MaxSendBytes         int
	MaxConcurrentStreams uint32
	MaxHeaderBytes       uint32
	// MaxDeadline caps unary calls; a call without a deadline gets this one.
	MaxDeadline time.Duration
}

// Options configure New.
type Options struct {
	Logger     *slog.Logger
	Registry   prometheus.Registerer
	Authorizer *auth.Authorizer
	Limits     Limits
	Reflection bool

	// TLS, when set, serves TLS (and mutual TLS, as its client settings
	// say); plaintext when nil.
	TLS *tls.Config
	// Audit, when set, records audited calls (auth.Audited).
	Audit Auditor
	// RateLimit, when set, refuses calls of callers over their budget.
	RateLimit RateLimiter
	// Streams bound concurrent long-lived streams.
	Streams StreamLimits
}

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// LivenessService is a health service name that answers SERVING for as long
// as the process serves gRPC, whatever its dependencies do. Liveness probes
// ask for it, readiness probes for "" (Redis answers, the streams exist): an
// outage of Redis or NATS takes replicas out of rotation without restarting
// them.
const LivenessService = "tidings.liveness"

// New builds the server. Register services on it, then call SetServing.
func New(opts Options) (*Server, error) {
	pv, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("build validator: %w", err)
	}
	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets([]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}),
	))
	panics := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tidings_grpc_panics_recovered_total",
		Help: "Panics in gRPC handlers turned into Internal errors.",
	})
	for _, c := range []prometheus.Collector{metrics, panics} {
		if err := opts.Registry.Register(c); err != nil {
			return nil, fmt.Errorf("register grpc metrics: %w", err)
		}
	}
	log := opts.Logger
	recoveryOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		panics.Inc()
		log.ErrorContext(ctx, "panic in handler", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(codeToLevel),
	}
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	errs := errorMapper{log: log}
	validate := validator{v: pv, log: log}

	unary := []grpc.UnaryServerInterceptor{
		requestIDUnary,
		recovery.UnaryServerInterceptor(recoveryOpt),
		metrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(logger, logOpts...),
		deadlineCap(opts.Limits.MaxDeadline),
		opts.Authorizer.UnaryInterceptor(),
	}
	stream := []grpc.StreamServerInterceptor{
		requestIDStream,
		recovery.StreamServerInterceptor(recoveryOpt),
		metrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(logger, logOpts...),
		opts.Authorizer.StreamInterceptor(),
	}
	if opts.Audit != nil {
		a := auditing{rec: opts.Audit}
		unary, stream = append(unary, a.unary), append(stream, a.stream)
	}
	if opts.RateLimit != nil {
		r := rateLimiting{l: opts.RateLimit}
		unary, stream = append(unary, r.unary), append(stream, r.stream)
	}
	if len(opts.Streams.Methods) > 0 {
		sl, err := newStreamLimiter(opts.Streams, opts.Registry)
		if err != nil {
			return nil, err
		}
		stream = append(stream, sl.stream)
	}
	unary = append(unary, rejectUnknownFieldsUnary, validate.unary, errs.unary)
	stream = append(stream, rejectUnknownFieldsStream, validate.stream, errs.stream)

	const streamWorkers = 64
	serverOpts := []grpc.ServerOption{
		// Requests that do not decode get InvalidArgument, not Internal.
		grpc.ForceServerCodecV2(newCodec()),
		grpc.MaxRecvMsgSize(opts.Limits.MaxRecvBytes),
		grpc.MaxSendMsgSize(opts.Limits.MaxSendBytes),
		grpc.MaxConcurrentStreams(opts.Limits.MaxConcurrentStreams),
		// Calls run on reused goroutines whose stacks have already grown
		// (new ones when all are busy): stack growth was about 8 % of the
		// stack's CPU under posting load.
		grpc.NumStreamWorkers(streamWorkers),
		grpc.MaxHeaderListSize(opts.Limits.MaxHeaderBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	}
	if opts.TLS != nil {
		serverOpts = append(serverOpts, grpc.Creds(credentials.NewTLS(opts.TLS)))
	}
	srv := grpc.NewServer(serverOpts...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	if opts.Reflection {
		reflection.Register(srv)
	}
	return &Server{Server: srv, Health: hs}, nil
}

// SetServing sets the overall status and that of every registered service.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.Health.SetServingStatus("", st)
	for name := range s.GetServiceInfo() {
		s.Health.SetServingStatus(name, st)
	}
}

// codeToLevel logs client mistakes quietly and server faults loudly.
func codeToLevel(code codes.Code) logging.Level {
	switch code {
	case codes.OK, codes.NotFound, codes.AlreadyExists, codes.Canceled:
		return logging.LevelDebug
	case codes.InvalidArgument, codes.Unauthenticated, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.ResourceExhausted, codes.Aborted:
		return logging.LevelInfo
	case codes.DeadlineExceeded, codes.Unavailable:
		return logging.LevelWarn
	}
	return logging.LevelError
}

// requestIDHeader carries the request id both ways.
const requestIDHeader = "x-request-id"

var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID returns the request id of the call: the client's, when it sent
// a valid one, or a new one.
func requestID(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(requestIDHeader); len(v) > 0 && validRequestID.MatchString(v[0]) {
		return v[0]
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type requestIDKey struct{}

// RequestID returns the request id of the call ctx belongs to.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id := requestID(ctx)
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, id))
	ctx = context.WithValue(ctx, requestIDKey{}, id)
	return handler(logging.InjectFields(ctx, logging.Fields{"request_id", id}), req)
}

// requestIDStream sends the request id with the stream's headers when the
// handler sends any, and in the trailers otherwise. A stream refused at once
// (bad token, bad request) thus ends without headers (a trailers-only
// response), which tells clients such as the server-sent-events adapter of
// pkg/httpapi that it never opened.
func requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	id := requestID(ss.Context())
	ctx := context.WithValue(ss.Context(), requestIDKey{}, id)
	s := &ctxStream{ServerStream: ss, ctx: logging.InjectFields(ctx, logging.Fields{"request_id", id}), id: id}
	err := handler(srv, s)
	if !s.headerSet.Load() {
		ss.SetTrailer(metadata.Pairs(requestIDHeader, id))
	}
	return err
}

type ctxStream struct {
	grpc.ServerStream
	ctx       context.Context
	id        string
	headerSet atomic.Bool
}

func (s *ctxStream) Context() context.Context { return s.ctx }

// withID adds the request id to the headers about to be sent.
func (s *ctxStream) withID() {
	if !s.headerSet.Swap(true) {
		_ = s.SetHeader(metadata.Pairs(requestIDHeader, s.id))
	}
}

func (s *ctxStream) SendHeader(md metadata.MD) error {
	s.withID()
	return s.ServerStream.SendHeader(md)
}

func (s *ctxStream) SendMsg(m any) error {
	s.withID()
	return s.ServerStream.SendMsg(m)
}

// deadlineCap gives every unary call a deadline no later than max from now.
func deadlineCap(maxDeadline time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > maxDeadline {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, maxDeadline)
			defer cancel()
		}
		return handler(ctx, req)
	}
}

// errorMapper converts handler errors to statuses once, logging the text of
// internal errors and of outages (Unavailable), which never reaches the
// client.
type errorMapper struct{ log *slog.Logger }

func (m errorMapper) mapErr(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	st, internal := apierr.ToStatusFor(ctx, err)
	switch {
	case internal:
		m.log.ErrorContext(ctx, "internal error", "method", method, "error", err)
	case st.Code() == codes.Unavailable:
		m.log.WarnContext(ctx, "unavailable", "method", method, "error", err)
	}
	return st.Err()
}

func (m errorMapper) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, m.mapErr(ctx, info.FullMethod, err)
	}
	return resp, nil
}

func (m errorMapper) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return m.mapErr(ss.Context(), info.FullMethod, handler(srv, ss))
}
