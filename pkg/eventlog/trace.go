package eventlog

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the log's spans.
const TracerName = "github.com/tidingshq/tidings/pkg/eventlog"

// tracer returns the log's tracer from the global provider, asked at each
// use so that a provider installed later (or replaced) is the one used.
func tracer() trace.Tracer { return otel.Tracer(TracerName) }

// HeaderCarrier carries a trace context in the headers of a NATS message
// (W3C traceparent and tracestate, and baggage), as a
// propagation.TextMapCarrier.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier{}

// Get returns the value of key.
func (c HeaderCarrier) Get(key string) string { return nats.Header(c).Get(key) }

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { nats.Header(c).Set(key, value) }

// Keys lists the keys present.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// SpanContextOf returns the trace context a message's headers carry (an
// invalid one when they carry none).
func SpanContextOf(h nats.Header) trace.SpanContext {
	if len(h) == 0 {
		return trace.SpanContext{}
	}
	return trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), HeaderCarrier(h)))
}

// subjectFamily is the first two tokens of a subject ("tidings.activities"),
// which names its stream without the ids that follow, for span names.
func subjectFamily(subject string) string {
	if i := strings.IndexByte(subject, '.'); i >= 0 {
		if j := strings.IndexByte(subject[i+1:], '.'); j >= 0 {
			return subject[:i+1+j]
		}
	}
	return subject
}

// startPublish starts the span of an append of n events to subject and
// returns the context to inject into their headers.
func startPublish(ctx context.Context, subject string, n int) (context.Context, trace.Span) {
	ctx, span := tracer().Start(ctx, "publish "+subjectFamily(subject), trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", subject),
			attribute.Int("messaging.batch.message_count", n),
		)
	}
	return ctx, span
}

// inject writes ctx's trace context into h.
func inject(ctx context.Context, h nats.Header) {
	otel.GetTextMapPropagator().Inject(ctx, HeaderCarrier(h))
}

// endSpan ends span, marking it failed when err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// startBatch starts the span of one batch handed to a handler. A batch
// mixes events of several traces, so the span links to each event's
// publish span; its parent is the first event whose trace is sampled, and
// every other event with a trace of its own gets a span of the batch in
// that trace too (linked to the batch's span), so that each post's trace
// goes on to the batch that applied it, whichever event came first. The
// returned func ends them all.
func (c *consumer) startBatch(ctx context.Context, evs []pendingEvent) (context.Context, func()) {
	var scs []trace.SpanContext
	parent := -1
	for _, ev := range evs {
		// Messages published before tracing was on carry no context.
		sc := SpanContextOf(ev.m.Headers())
		if !sc.IsValid() {
			continue
		}
		if parent < 0 && sc.IsSampled() {
			parent = len(scs)
		}
		scs = append(scs, sc)
	}
	name := "process " + c.spec.Stream
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	pctx := ctx
	if parent >= 0 {
		pctx = trace.ContextWithRemoteSpanContext(ctx, scs[parent])
	}
	if len(scs) > 0 {
		links := make([]trace.Link, len(scs))
		for i, sc := range scs {
			links[i] = trace.Link{SpanContext: sc}
		}
		opts = append(opts, trace.WithLinks(links...))
	}
	bctx, span := tracer().Start(pctx, name, opts...)
	if !span.IsRecording() {
		return bctx, func() { span.End() }
	}
	span.SetAttributes(
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.destination.name", c.spec.Stream),
		attribute.String("messaging.consumer.group.name", c.spec.Durable),
		attribute.Int("messaging.batch.message_count", len(evs)),
		attribute.Int64("tidings.first_sequence", int64(evs[0].d.Sequence)),
	)
	var others []trace.Span
	batchLink := trace.WithLinks(trace.Link{SpanContext: span.SpanContext()})
	seen := map[trace.TraceID]bool{span.SpanContext().TraceID(): true}
	for _, sc := range scs {
		if seen[sc.TraceID()] {
			continue
		}
		seen[sc.TraceID()] = true
		_, o := tracer().Start(trace.ContextWithRemoteSpanContext(ctx, sc), name,
			trace.WithSpanKind(trace.SpanKindConsumer), batchLink)
		o.SetAttributes(attribute.Int("messaging.batch.message_count", len(evs)))
		others = append(others, o)
	}
	return bctx, func() {
		for _, o := range others {
			o.End()
		}
		span.End()
	}
}
