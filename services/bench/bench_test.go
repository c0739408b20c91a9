package bench

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/services/stack"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// TestRunAgainstRunningStack drives a small stack (real JetStream, a real
// redis-server, the real services and worker) through every figure the
// main run takes, and checks that each one was measured.
func TestRunAgainstRunningStack(t *testing.T) {
	ns, rs := testenv.NATS(t), testenv.Redis(t)
	cfg := config.Default()
	cfg.NATSURL, cfg.RedisAddrs = ns.ClientURL(), []string{rs.Addr()}
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DebugAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.AuthSecret = "bench-test-secret-of-at-least-32-bytes"
	cfg.HotOn, cfg.HotOff = 100, 80                        // a few hot entities among 300 users
	cfg.RateEmployee, cfg.RateApp, cfg.RateAdmin = 0, 0, 0 // as target.go runs the bench

	ctx, cancel := context.WithCancel(t.Context())
	ready := make(chan stack.Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- stack.Run(ctx, stack.Options{Config: cfg, Roles: stack.AllRoles(), Logger: testenv.Logger(), OnReady: func(a stack.Addrs) { ready <- a }})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	var addrs stack.Addrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("stack did not start: %v", err)
	}
	target := &Target{
		GRPCAddr: addrs.GRPC, MetricsURL: "http://" + addrs.Debug + "/metrics", RedisAddr: rs.Addr(), NATSURL: ns.ClientURL(),
		Secret: cfg.AuthSecret, Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience,
	}
	// The stack reports healthy a moment after it listens.
	c, err := newClient(*target)
	require.NoError(t, err)
	testenv.Eventually(t, 30*time.Second, func() bool { return c.check(t.Context()) == nil }, "stack answers")
	c.close()

	rep, err := Run(t.Context(), Options{
		Mode:   Quick,
		Sizes:  Sizes{Users: 300, Posts: 300, Reads: 300 * time.Millisecond, Latency: time.Second, Participants: 40, Probes: 3, Reactors: 60},
		Target: target,
	})
	require.NoError(t, err)

	require.Len(t, rep.Fanout, 1)
	f := rep.Fanout[0]
	require.Positive(t, f.Deliveries)
	require.Positive(t, f.DeliveriesPerSec)
	require.Equal(t, 20, f.Verified, "posts read back from every follower's timeline")
	require.Positive(t, f.Ceiling.ZaddPerSec)
	require.Positive(t, f.Ceiling.NaivePerSec)
	require.Positive(t, f.Ceiling.InsertPerSec)
	require.Positive(t, f.TimelineEntries)
	require.Equal(t, "drain", f.Method, "posted with the consumer paused, then drained")
	require.Positive(t, f.PostsPerSec)
	require.NotNil(t, f.Publish)
	require.Positive(t, f.Publish.PerSec)
	require.Positive(t, f.Publish.EventBytes)

	require.NotNil(t, rep.Latency)
	require.Positive(t, rep.Latency.Readable.Count)
	require.Equal(t, rep.Latency.Readable.Count, rep.Latency.Watch.Count)
	require.Positive(t, rep.Latency.Rate)

	require.NotNil(t, rep.Reads)
	require.Positive(t, rep.Reads.SaturatedPerSec)
	require.Positive(t, rep.Reads.RawPerSec)
	require.Positive(t, rep.Reads.HalfLoad.Count)

	require.NotNil(t, rep.Memory)
	// Packed 8-byte ids: the per-key overhead is spread over few entries
	// here, but it is nowhere near a sorted set's ~120 bytes an entry.
	require.Greater(t, rep.Memory.BytesPerEntry, 8.0)
	require.Less(t, rep.Memory.BytesPerEntry, 60.0)
	require.Positive(t, rep.Memory.StackRSSMiB)
	require.Positive(t, rep.Memory.RedisRSSMiB)

	cv := rep.Conversations
	require.NotNil(t, cv)
	require.True(t, cv.CountsExact, cv.CountsRead)
	// One item (unless the burst crossed a window boundary of the author who
	// never read: then two).
	require.Positive(t, cv.FoldedActors)
	require.LessOrEqual(t, cv.FoldedActors, int64(60))
	require.Positive(t, cv.AckedPerSec)
	require.Equal(t, 3*cv.Watchers, cv.Notified.Count)
	require.Equal(t, cv.NotifiedExpected, cv.NotifiedVerified)
	require.Positive(t, cv.FullPerSec)
	require.Positive(t, cv.BasicPerSec)
	require.Positive(t, cv.ActivityPerSec)
	require.Positive(t, cv.ItemsWithComments)

	names := make([]string, len(rep.Targets))
	for i, c := range rep.Targets {
		names[i] = c.Name
	}
	require.Contains(t, names, "worker drain vs redis-benchmark ZADD")
	require.Contains(t, names, "posting vs JetStream async publish (fsync target's)")
	require.Contains(t, names, "publish → readable p99")
	require.Contains(t, names, "Redis bytes per timeline entry")
	require.Contains(t, names, "home read with conversation fields vs without")
}

func TestRunFailsClearlyOnAWrongSecret(t *testing.T) {
	_, err := Run(t.Context(), Options{Mode: Quick, Target: &Target{
		GRPCAddr: "127.0.0.1:1", MetricsURL: "http://127.0.0.1:1/metrics", RedisAddr: "127.0.0.1:1", Secret: "short",
	}})
	require.ErrorContains(t, err, "secret")
}

func TestNewOrgShape(t *testing.T) {
	o := NewOrg(2000, 7)
	require.Equal(t, o, NewOrg(2000, 7), "the same organisation for a seed")
	edges := 0
	for i, fs := range o.Following {
		require.GreaterOrEqual(t, len(fs), minFollowing/2, "user %d follows too few", i)
		require.LessOrEqual(t, len(fs), maxFollowing)
		require.NotContains(t, fs, int32(i), "no one follows themselves")
		sorted := slices.Clone(fs)
		slices.Sort(sorted)
		require.Len(t, slices.Compact(sorted), len(fs), "no duplicate follows")
		edges += len(fs)
	}
	for _, r := range o.Records {
		edges += len(r.Followers)
		require.Contains(t, r.Followers, r.Owner)
	}
	require.Equal(t, o.Edges, edges)
	// Power law: a few are followed by most, the median by a handful.
	counts := make([]int, len(o.Followers))
	for i, f := range o.Followers {
		counts[i] = len(f)
	}
	slices.Sort(counts)
	require.Greater(t, counts[len(counts)-1], len(o.Users)/2)
	require.Less(t, counts[len(counts)/2], 30)
	require.Positive(t, o.HotEntities(int64(len(o.Users)/2)))
}

func TestPulledOrgShape(t *testing.T) {
	o, pulled, pushed, others := pulledOrg()
	require.Len(t, o.Following[0], len(pulled))
	require.Len(t, o.Following[1], len(pushed))
	for _, e := range append(slices.Clone(pulled), others...) {
		require.Greater(t, int64(len(o.Followers[e])), PulledSpec.HotOn, "entity %d is hot", e)
	}
	for _, e := range pushed {
		require.Less(t, int64(len(o.Followers[e])), PulledSpec.HotOff, "entity %d is pushed", e)
	}
	require.Equal(t, len(pulled)+len(others), o.HotEntities(PulledSpec.HotOn))
}

func TestParseBenchmarkCSV(t *testing.T) {
	out := "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n" +
		"\"ZADD tidings:bench:tl:{__rand_int__} __rand_int__ __rand_int__\",\"123456.79\",\"5.1\",\"0.2\",\"4.9\",\"8.0\",\"9.1\",\"12.3\"\n"
	v, err := parseBenchmarkCSV(out)
	require.NoError(t, err)
	require.InDelta(t, 123456.79, v, 0.001)
	_, err = parseBenchmarkCSV("ERROR: connection refused\n")
	require.Error(t, err)
}

func TestPercentiles(t *testing.T) {
	l := &latencies{}
	for i := 100; i >= 1; i-- {
		l.add(time.Duration(i) * time.Millisecond)
	}
	p := l.percentiles()
	require.Equal(t, Percentiles{Count: 100, P50: 50, P95: 95, P99: 99, Max: 100}, p)
	require.Equal(t, Percentiles{}, (&latencies{}).percentiles())
}

func TestClosedLoopStopsAtFirstError(t *testing.T) {
	boom := errors.New("boom")
	_, err := closedLoop(t.Context(), 4, time.Minute, func(_ context.Context, _ int, i int64) error {
		if i >= 10 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
}

func TestCount(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567"} {
		require.Equal(t, want, count(n))
	}
}
