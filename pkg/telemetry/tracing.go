package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracingOptions configure SetupTracing.
type TracingOptions struct {
	// Endpoint is the host:port of an OTLP/gRPC collector. Empty turns
	// tracing off: the global tracer provider stays OpenTelemetry's no-op
	// one, and nothing is recorded or sent.
	Endpoint string
	// Insecure sends spans in plaintext; otherwise over TLS, verified with
	// the system's roots (or OTEL_EXPORTER_OTLP_CERTIFICATE).
	Insecure bool
	// SampleRatio is the share of new traces recorded, 0..1. A call that
	// arrives with a sampled trace context is recorded whatever the ratio
	// (parent-based sampling), so a caller's trace is never cut in half.
	SampleRatio float64
	// ServiceName names the process in traces (service.name); the
	// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES environment variables
	// override and add to it.
	ServiceName string
	// Role is the process's role (service.namespace stays "tidings").
	Role string
}

// Tracing is the tracing of a process: Shutdown flushes the spans not yet
// sent and stops the exporter.
type Tracing struct {
	provider *sdktrace.TracerProvider
}

// Enabled reports whether spans are recorded and exported.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Shutdown sends the spans still buffered and stops exporting, waiting
// until ctx ends at most, and puts the no-op provider back in place of its
// own. It does nothing when tracing is off.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if otel.GetTracerProvider() == trace.TracerProvider(t.provider) {
		otel.SetTracerProvider(noop.NewTracerProvider())
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut tracing down: %w", err)
	}
	return nil
}

// SetupTracing installs, when opts.Endpoint is set, a tracer provider that
// batches spans to an OTLP/gRPC collector, and the W3C trace-context and
// baggage propagators, as OpenTelemetry's globals (what otelgrpc, pkg/eventlog
// and pkg/projection use). The exporter also honours the standard
// OTEL_EXPORTER_OTLP_* variables for what the options do not set (headers,
// certificate, compression, timeout). Without an endpoint it installs
// nothing and returns a Tracing whose Shutdown does nothing.
func SetupTracing(ctx context.Context, opts TracingOptions) (*Tracing, error) {
	if opts.Endpoint == "" {
		return &Tracing{}, nil
	}
	if opts.SampleRatio < 0 || opts.SampleRatio > 1 {
		return nil, fmt.Errorf("trace sample ratio %v: want 0..1", opts.SampleRatio)
	}
	expOpts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(opts.Endpoint)}
	if opts.Insecure {
		expOpts = append(expOpts, otlptracegrpc.WithInsecure())
	}
	// The exporter connects lazily and retries in the background: a
	// collector that is down costs spans, never the process's start.
	exp, err := otlptracegrpc.New(ctx, expOpts...)
	if err != nil {
		return nil, fmt.Errorf("build otlp exporter for %s: %w", opts.Endpoint, err)
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", opts.ServiceName),
			attribute.String("service.namespace", "tidings"),
			attribute.String("service.version", version()),
			attribute.String("tidings.role", opts.Role),
		),
		resource.WithFromEnv(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("describe the process for traces: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(2*time.Second)),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(opts.SampleRatio))),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return &Tracing{provider: tp}, nil
}

// version is the module version the binary was built from.
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "unknown"
}

// TraceHandler wraps a slog.Handler and adds to each record logged with a
// context that carries a span the trace_id and span_id of that span, so a
// log line leads to its trace and back.
type TraceHandler struct {
	slog.Handler
}

// Handle adds the trace and span ids of ctx's span, if any, to r.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the handler with attrs.
func (h TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the wrapper around the handler with a group.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}
