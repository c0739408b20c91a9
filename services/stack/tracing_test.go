package stack_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/telemetry"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// collector is an in-process OTLP/gRPC trace receiver: what an
// OpenTelemetry Collector, Tempo or Jaeger would be in production.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// trace returns the spans received of trace id, by name.
func (c *collector) trace(id []byte) map[string][]*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string][]*tracepb.Span{}
	for _, s := range c.spans {
		if bytes.Equal(s.GetTraceId(), id) {
			out[s.GetName()] = append(out[s.GetName()], s)
		}
	}
	return out
}

func startCollector(t *testing.T) (*collector, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &collector{}
	srv := grpc.NewServer()
	collectortrace.RegisterTraceServiceServer(srv, c)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return c, ln.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for the logger's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestTraceOfAPost is issue 15's acceptance for tracing: a process
// configured with a collector's address exports one trace per post that
// holds the PostActivity call, the append to the log, the worker's batch
// and the home timeline writes, and its log lines carry the trace id.
func TestTraceOfAPost(t *testing.T) {
	col, addr := startCollector(t)
	env := testenv.New(t)
	logs := &syncBuffer{}
	logger, err := telemetry.NewLogger(logs, "debug", "text")
	require.NoError(t, err)
	env.Logger = logger
	cfg := config.Default()
	cfg.OTLPEndpoint, cfg.OTLPInsecure, cfg.TraceSampleRatio = addr, true, 1
	addrs := run(t, env, cfg)
	ctx := t.Context()

	conn := func(id auth.Identity) *grpc.ClientConn {
		c, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.PerRPCToken(testenv.Token(t, id))))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	_, err = tidingsv1.NewProfileServiceClient(conn(testenv.Directory)).BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{
		Profiles: []*tidingsv1.Profile{{UserId: "ana", DisplayName: "Ana"}, {UserId: "bo", DisplayName: "Bo"}},
	})
	require.NoError(t, err)
	_, err = tidingsv1.NewFollowServiceClient(conn(testenv.Admin)).Follow(ctx, &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	posted, err := tidingsv1.NewActivityServiceClient(conn(testenv.Employee("ana"))).PostActivity(ctx,
		&tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "Closing Acme today"})
	require.NoError(t, err)
	id := posted.GetActivity().GetId()
	bo := tidingsv1.NewTimelineServiceClient(conn(testenv.Employee("bo")))
	testenv.Eventually(t, 20*time.Second, func() bool {
		resp, err := bo.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "bo"})
		require.NoError(t, err)
		for _, it := range resp.GetItems() {
			if it.GetActivity().GetId() == id {
				return true
			}
		}
		return false
	}, "the post reaches bo's home timeline")

	// The RPC's span starts the trace; find it, then wait for the rest
	// (the batch span processor sends every 2s).
	const rpc = "tidings.v1.ActivityService/PostActivity"
	var traceID []byte
	testenv.Eventually(t, 20*time.Second, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, s := range col.spans {
			if s.GetName() == rpc && s.GetKind() == tracepb.Span_SPAN_KIND_SERVER {
				traceID = s.GetTraceId()
				return true
			}
		}
		return false
	}, "the collector receives the PostActivity span")
	var spans map[string][]*tracepb.Span
	testenv.Eventually(t, 20*time.Second, func() bool {
		spans = col.trace(traceID)
		return len(spans["process ACTIVITIES"]) > 0 && len(spans[projection.SpanWriteHomes]) > 0
	}, "the trace reaches the worker's home timeline writes")

	one := func(name string) *tracepb.Span {
		require.Len(t, spans[name], 1, "spans named %q in the trace (have %v)", name, names(spans))
		return spans[name][0]
	}
	call, publish, batch, homes := one(rpc), one("publish tidings.activities"), one("process ACTIVITIES"), one(projection.SpanWriteHomes)
	require.Equal(t, call.GetSpanId(), publish.GetParentSpanId(), "the append is a child of the RPC")
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, publish.GetKind())
	require.Equal(t, publish.GetSpanId(), batch.GetParentSpanId(), "the worker's batch continues from the append")
	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, batch.GetKind())
	require.NotEmpty(t, batch.GetLinks(), "the batch links to the events it applied")
	require.Equal(t, publish.GetSpanId(), batch.GetLinks()[0].GetSpanId())
	require.Equal(t, batch.GetSpanId(), homes.GetParentSpanId(), "the home timeline writes are the batch's")
	require.GreaterOrEqual(t, homes.GetStartTimeUnixNano(), publish.GetStartTimeUnixNano())
	for _, name := range []string{projection.SpanStoreBodies, projection.SpanWriteFeeds} {
		require.Equal(t, batch.GetSpanId(), one(name).GetParentSpanId(), name)
	}

	// The RPC's log line carries the trace id (and its span id).
	want := "trace_id=" + hex.EncodeToString(traceID)
	testenv.Eventually(t, 10*time.Second, func() bool {
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, want) && strings.Contains(line, "PostActivity") &&
				strings.Contains(line, "span_id="+hex.EncodeToString(call.GetSpanId())) {
				return true
			}
		}
		return false
	}, "a log line of the call with %s", want)
}

func names(spans map[string][]*tracepb.Span) []string {
	var out []string
	for n := range spans {
		out = append(out, n)
	}
	return out
}
