package projection

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TracerName is the instrumentation scope of the projections' spans.
const TracerName = "github.com/tidingshq/tidings/pkg/projection"

// The spans of the fan-out, children of the consumer's batch span
// (pkg/eventlog), in the order a batch of ACTIVITIES runs them.
const (
	// SpanStoreBodies is the first pipeline: bodies, tombstones,
	// visibility and follower counts.
	SpanStoreBodies = "projection.store_bodies"
	// SpanWriteFeeds is the second: push-or-pull decisions, followers of
	// small sources, entity feeds.
	SpanWriteFeeds = "projection.write_feeds"
	// SpanChunk cuts a large audience into FANOUT chunks and publishes
	// them (each publish a child span).
	SpanChunk = "projection.chunk"
	// SpanWriteHomes writes home timelines and inboxes.
	SpanWriteHomes = "projection.write_homes"
	// SpanWriteHomesIfFollowing writes guarded home inserts (FANOUT
	// chunks, backfills).
	SpanWriteHomesIfFollowing = "projection.write_homes_if_following"
)

// startSpan starts a span of the projections under ctx's span.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	return otel.Tracer(TracerName).Start(ctx, name)
}

// endSpan sets attributes on span, marks it failed when err is not nil,
// and ends it.
func endSpan(span trace.Span, err error, attrs ...attribute.KeyValue) {
	if span.IsRecording() {
		span.SetAttributes(attrs...)
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
	}
	span.End()
}
