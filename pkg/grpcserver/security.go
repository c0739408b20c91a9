package grpcserver

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/audit"
	"github.com/tidingshq/tidings/pkg/auth"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// The interceptors that run after auth, when their caller is known:
//
//	audit → rate limit → stream limits → validation …
//
// Audit is outermost of the three so that calls refused for being over a
// limit or for bad input are recorded too, with their status code.

// RateLimiter decides whether a caller may call now (pkg/ratelimit). Allow
// returns nil, or the error to send.
type RateLimiter interface {
	Allow(ctx context.Context, id auth.Identity) error
}

// StreamLimits bound concurrent long-lived streams.
type StreamLimits struct {
	// Methods are the full names of the streaming methods counted (Watch).
	Methods []string
	// PerCaller bounds the streams one caller holds on this process; 0 is
	// no bound.
	PerCaller int
	// PerProcess bounds the streams of all callers on this process; 0 is
	// no bound.
	PerProcess int
}

// Auditor records audited calls (pkg/audit).
type Auditor interface {
	Record(e *tidingsv1.AuditEvent)
}

// auditing records calls that auth.Audited selects, after they finish.
type auditing struct{ rec Auditor }

func (a auditing) event(ctx context.Context, method string, id auth.Identity, summary string, start time.Time, err error) *tidingsv1.AuditEvent {
	e := &tidingsv1.AuditEvent{
		Time:      timestamppb.New(start),
		Caller:    id.Caller(),
		Method:    method,
		Summary:   summary,
		Code:      uint32(status.Code(err)),
		Duration:  durationpb.New(time.Since(start)),
		RequestId: RequestID(ctx),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		e.PeerAddress = p.Addr.String()
	}
	return e
}

func (a auditing) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	id, ok := auth.FromContext(ctx)
	if !ok || !auth.Audited(info.FullMethod, id) {
		return handler(ctx, req)
	}
	start := time.Now()
	resp, err := handler(ctx, req)
	var summary string
	if m, ok := req.(proto.Message); ok {
		summary = audit.Summarize(m)
	}
	a.rec.Record(a.event(ctx, info.FullMethod, id, summary, start, err))
	return resp, err
}

func (a auditing) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	id, ok := auth.FromContext(ctx)
	if !ok || !auth.Audited(info.FullMethod, id) {
		return handler(srv, ss)
	}
	start := time.Now()
	cs := &countingStream{ServerStream: ss}
	err := handler(srv, cs)
	summary := cs.first
	if info.IsClientStream {
		summary = cs.first + " (" + strconv.Itoa(cs.n) + " messages)"
	}
	a.rec.Record(a.event(ctx, info.FullMethod, id, summary, start, err))
	return err
}

// countingStream remembers the summary of the first message received and
// counts them all.
type countingStream struct {
	grpc.ServerStream
	first string
	n     int
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		if s.n == 0 {
			if pm, ok := m.(proto.Message); ok {
				s.first = audit.Summarize(pm)
			}
		}
		s.n++
	}
	return err
}

// rateLimiting refuses calls of callers over their budget.
type rateLimiting struct{ l RateLimiter }

func (r rateLimiting) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if id, ok := auth.FromContext(ctx); ok {
		if err := r.l.Allow(ctx, id); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

func (r rateLimiting) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if id, ok := auth.FromContext(ss.Context()); ok {
		if err := r.l.Allow(ss.Context(), id); err != nil {
			return err
		}
	}
	return handler(srv, ss)
}

// streamLimiter counts the open streams of the limited methods.
type streamLimiter struct {
	limits   StreamLimits
	methods  map[string]bool
	open     prometheus.Gauge
	refused  prometheus.Counter
	mu       sync.Mutex
	total    int
	byCaller map[string]int
}

func newStreamLimiter(l StreamLimits, reg prometheus.Registerer) (*streamLimiter, error) {
	s := &streamLimiter{
		limits: l, methods: map[string]bool{}, byCaller: map[string]int{},
		open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tidings_grpc_limited_streams_open",
			Help: "Open streams of the methods whose concurrency is limited (Watch).",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_grpc_limited_streams_refused_total",
			Help: "Streams refused because a caller or the process held its limit.",
		}),
	}
	for _, m := range l.Methods {
		s.methods[m] = true
	}
	for _, c := range []prometheus.Collector{s.open, s.refused} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register stream limit metrics: %w", err)
		}
	}
	return s, nil
}

// acquire takes a slot for caller, or says which limit is full.
func (s *streamLimiter) acquire(caller string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limits.PerProcess > 0 && s.total >= s.limits.PerProcess {
		s.refused.Inc()
		return apierr.LimitExceeded("this server holds its limit of %d streams; retry later or elsewhere", s.limits.PerProcess)
	}
	if s.limits.PerCaller > 0 && s.byCaller[caller] >= s.limits.PerCaller {
		s.refused.Inc()
		return apierr.LimitExceeded("%s holds its limit of %d open streams; close one first", caller, s.limits.PerCaller)
	}
	s.total++
	s.byCaller[caller]++
	s.open.Inc()
	return nil
}

func (s *streamLimiter) release(caller string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	s.open.Dec()
	if s.byCaller[caller]--; s.byCaller[caller] <= 0 {
		delete(s.byCaller, caller)
	}
}

func (s *streamLimiter) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !s.methods[info.FullMethod] {
		return handler(srv, ss)
	}
	id, _ := auth.FromContext(ss.Context())
	caller := id.String()
	if err := s.acquire(caller); err != nil {
		return err
	}
	defer s.release(caller)
	return handler(srv, ss)
}
