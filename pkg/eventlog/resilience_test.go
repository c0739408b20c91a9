package eventlog_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/redisserver"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// metric sums a metric's samples whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	samples:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue samples
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func publishActivities(t *testing.T, log *eventlog.Log, prefix string, n int) {
	t.Helper()
	for i := range n {
		id := fmt.Sprintf("%s%03d", prefix, i)
		_, err := log.Publish(t.Context(), eventlog.Append{
			Subject: eventlog.ActivitySubject(id),
			Event:   &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_DeletedId{DeletedId: id}},
		})
		require.NoError(t, err)
	}
}

func caughtUp(t *testing.T, js jetstream.JetStream, stream, durable string) bool {
	c, err := js.Consumer(t.Context(), stream, durable)
	if err != nil {
		return false
	}
	info, err := c.Info(t.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// TestRedisOutageLongerThanRetryBudget covers finding 2 of issue 14: Redis
// down for longer than the old retry budget (here MaxDeliver 3 with 10ms
// back-off, a few tens of milliseconds) used to dead-letter every good
// event that arrived meanwhile. The test stops the redis-server, keeps
// publishing until events have been tried far more often than MaxDeliver
// (and for longer than AckWait, so the in-progress keep-alive is needed),
// restarts Redis on the same port and data directory, and requires every
// event applied and nothing dead-lettered but the one event that fails on
// its own (its handler panics).
func TestRedisOutageLongerThanRetryBudget(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	srv, err := redisserver.Start(t.Context(), redisserver.Options{Dir: t.TempDir(), Persist: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Kill() })
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })

	const poison = "tidings.activities.POISON"
	var (
		mu       sync.Mutex
		attempts = map[uint64]int{}
	)
	handler := func(ctx context.Context, d eventlog.Delivery) error {
		mu.Lock()
		attempts[d.Sequence]++
		mu.Unlock()
		if d.Subject == poison {
			panic("an event no handler can apply")
		}
		return rdb.SAdd(ctx, "applied", d.Sequence).Err()
	}
	mostAttempts := func() int {
		mu.Lock()
		defer mu.Unlock()
		most := 0
		for _, n := range attempts {
			most = max(most, n)
		}
		return most
	}
	spec := eventlog.ConsumerSpec{
		Stream: eventlog.StreamActivities, Durable: "outage-test",
		MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond},
		RetryMin: 10 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		AckWait: time.Second, Workers: 2, LagInterval: 50 * time.Millisecond,
	}
	reg := prometheus.NewRegistry()
	metrics, err := eventlog.NewConsumerMetrics(reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- env.Log.Consume(ctx, spec, handler, metrics, env.Logger) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	applied := func() int64 { return rdb.SCard(t.Context(), "applied").Val() }

	publishActivities(t, env.Log, "before", 20)
	testenv.Eventually(t, 30*time.Second, func() bool { return applied() == 20 }, "events before the outage not applied")
	require.NoError(t, rdb.Do(t.Context(), "BGREWRITEAOF").Err())
	testenv.Eventually(t, 30*time.Second, func() bool {
		info, err := rdb.Info(t.Context(), "persistence").Result()
		return err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0")
	}, "AOF rewrite did not finish")

	require.NoError(t, srv.Stop())
	publishActivities(t, env.Log, "during", 20)
	// Far past the old budget: some event tried 4 × MaxDeliver times, and
	// the outage longer than AckWait.
	start := time.Now()
	testenv.Eventually(t, 60*time.Second, func() bool {
		return (mostAttempts() >= 12 && time.Since(start) > 2*spec.AckWait) || env.StreamMessages(t, eventlog.StreamDeadLetter) > 0
	}, "events were not retried while Redis was down")
	require.Zero(t, env.StreamMessages(t, eventlog.StreamDeadLetter), "a good event was dead-lettered during the outage")
	require.Positive(t, metric(t, reg, "tidings_consumer_events_in_transient_retry", nil), "held events are counted")
	require.Positive(t, metric(t, reg, "tidings_consumer_events_failed_total", map[string]string{"kind": eventlog.FailureTransient}))

	require.NoError(t, srv.Restart(t.Context()))
	_, err = env.JS.Publish(t.Context(), poison, []byte("poison"))
	require.NoError(t, err)
	publishActivities(t, env.Log, "after", 20)
	testenv.Eventually(t, 60*time.Second, func() bool {
		return applied() == 60 && caughtUp(t, env.JS, spec.Stream, spec.Durable)
	}, "not every event applied after Redis came back (applied %d)", applied())

	require.Equal(t, uint64(1), env.StreamMessages(t, eventlog.StreamDeadLetter), "only the poison event is dead-lettered")
	dead, err := env.JS.Stream(t.Context(), eventlog.StreamDeadLetter)
	require.NoError(t, err)
	msg, err := dead.GetMsg(t.Context(), 1)
	require.NoError(t, err)
	require.Equal(t, poison, msg.Header.Get(eventlog.HeaderDeadSubject))
	require.Contains(t, msg.Header.Get(eventlog.HeaderDeadError), "panicked")
	require.Equal(t, "3", msg.Header.Get(eventlog.HeaderDeadDeliveries))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return metric(t, reg, "tidings_consumer_events_in_transient_retry", nil) == 0
	}, "events still held in retry")
	require.InDelta(t, 1, metric(t, reg, "tidings_consumer_events_dead_lettered_total", nil), 0)
	require.Positive(t, metric(t, reg, "tidings_consumer_last_applied_timestamp_seconds", nil))
	testenv.Eventually(t, 10*time.Second, func() bool {
		return metric(t, reg, "tidings_consumer_pending_events", nil) == 0 && metric(t, reg, "tidings_consumer_ack_pending_events", nil) == 0
	}, "the lag gauges are not exported")
}

// TestConsumerSurvivesHeartbeatLoss covers finding 6 of issue 14: a pull
// that misses its heartbeats (here the network between the consumer and
// NATS goes silent) used to end the consumer, and with it the process. Now
// the pull is set up again and consumption goes on.
func TestConsumerSurvivesHeartbeatLoss(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	proxy := testenv.NewProxy(t, env.NATS.Addr().String())
	nc, err := nats.Connect("nats://"+proxy.Addr(), nats.MaxReconnects(-1))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	log := eventlog.New(js)

	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
	)
	handler := func(_ context.Context, d eventlog.Delivery) error {
		mu.Lock()
		seen[d.Sequence] = true
		mu.Unlock()
		return nil
	}
	handled := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	spec := eventlog.ConsumerSpec{
		Stream: eventlog.StreamActivities, Durable: "heartbeat-test", PullExpiry: time.Second,
		RetryMin: 10 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
	reg := prometheus.NewRegistry()
	metrics, err := eventlog.NewConsumerMetrics(reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- log.Consume(ctx, spec, handler, metrics, env.Logger) }()

	publishActivities(t, env.Log, "a", 5)
	testenv.Eventually(t, 30*time.Second, func() bool { return handled() == 5 }, "events not handled")

	proxy.Freeze()
	var ended error
	testenv.Eventually(t, 30*time.Second, func() bool {
		select {
		case ended = <-done:
			if ended == nil {
				ended = fmt.Errorf("returned nil before its context ended")
			}
			return true
		default:
		}
		return metric(t, reg, "tidings_consumer_pull_errors_total", nil) >= 1
	}, "no heartbeat was missed")
	require.False(t, ended != nil || metric(t, reg, "tidings_consumer_pull_errors_total", nil) == 0,
		"the consumer ended when its heartbeats stopped: %v", ended)
	proxy.Thaw()

	publishActivities(t, env.Log, "b", 5)
	testenv.Eventually(t, 30*time.Second, func() bool { return handled() == 10 }, "events after the heartbeat loss not handled")
	cancel()
	require.NoError(t, <-done)
}

// TestReplayLeavesNoConsumer covers finding 8 of issue 14: a replay's
// ordered consumer used to stay on the server for five minutes after the
// replay, showing growing lag in the status.
func TestReplayLeavesNoConsumer(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	publishActivities(t, env.Log, "r", 30)
	var n int
	got, err := env.Log.Replay(t.Context(), eventlog.StreamActivities, nil, func(context.Context, eventlog.Delivery) error {
		n++
		return nil
	})
	require.NoError(t, err)
	require.EqualValues(t, 30, got)
	require.Equal(t, 30, n)

	s, err := env.JS.Stream(t.Context(), eventlog.StreamActivities)
	require.NoError(t, err)
	var names []string
	for name := range s.ConsumerNames(t.Context()).Name() {
		names = append(names, name)
	}
	require.Empty(t, names, "the replay's consumer is gone")
}
