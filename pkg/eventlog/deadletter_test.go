package eventlog_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
)

// TestRedriveAppliesAtTheOriginalSequence covers the re-drive of dead
// letters (finding 2 of issue 14: there was no way to re-drive them). An
// event dead-lettered by a broken handler is re-driven once the handler is
// fixed: the same handler gets it with its original stream sequence and
// the data of the original stream (nothing is published again on it), and
// the dead letter is removed. When the stream no longer holds the event,
// the dead letter's copy is used. A dead letter that fails again stays.
func TestRedriveAppliesAtTheOriginalSequence(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	var (
		broken atomic.Bool
		mu     sync.Mutex
		got    []eventlog.Delivery
	)
	broken.Store(true)
	handler := func(_ context.Context, d eventlog.Delivery) error {
		if d.Subject == eventlog.ActivitySubject("bad002") && broken.Load() {
			return errors.New("cannot apply bad002")
		}
		mu.Lock()
		got = append(got, d)
		mu.Unlock()
		return nil
	}
	spec := eventlog.ConsumerSpec{Stream: eventlog.StreamActivities, Durable: "redrive-test", MaxDeliver: 2,
		Backoff: []time.Duration{10 * time.Millisecond}}
	reg := prometheus.NewRegistry()
	metrics, err := eventlog.NewConsumerMetrics(reg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	wg.Go(func() { require.NoError(t, env.Log.Consume(ctx, spec, handler, metrics, env.Logger)) })
	handlers := map[string]eventlog.BatchHandler{spec.Durable: eventlog.OneAtATime(handler)}
	wg.Go(func() { require.NoError(t, env.Log.ConsumeRedrives(ctx, handlers, metrics, env.Logger)) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	publishActivities(t, env.Log, "bad", 4) // bad002 is sequence 3
	testenv.Eventually(t, 30*time.Second, func() bool {
		return env.StreamMessages(t, eventlog.StreamDeadLetter) == 1 && caughtUp(t, env.JS, spec.Stream, spec.Durable)
	}, "bad002 was not dead-lettered")
	dls, next, err := env.Log.ListDeadLetters(t.Context(), eventlog.DeadLetterFilter{Consumer: spec.Durable}, 1, 10)
	require.NoError(t, err)
	require.Zero(t, next)
	require.Len(t, dls, 1)
	dl := dls[0]
	require.Equal(t, eventlog.StreamActivities, dl.Stream)
	require.Equal(t, eventlog.ActivitySubject("bad002"), dl.Subject)
	require.EqualValues(t, 3, dl.Sequence)
	require.EqualValues(t, 2, dl.Deliveries)
	require.Equal(t, "tidings.v1.ActivityEvent", dl.EventType)
	require.Contains(t, dl.Error, "cannot apply")
	none, _, err := env.Log.ListDeadLetters(t.Context(), eventlog.DeadLetterFilter{Consumer: "someone-else"}, 1, 10)
	require.NoError(t, err)
	require.Empty(t, none, "the filter applies")
	lastSeq := env.StreamLastSeq(t, eventlog.StreamActivities)

	// Still broken: the re-drive fails again and the dead letter stays.
	matched, through, err := env.Log.RequestRedrive(t.Context(), eventlog.DeadLetterFilter{}, nil)
	require.NoError(t, err)
	require.EqualValues(t, 1, matched)
	require.Equal(t, dl.Seq, through)
	testenv.Eventually(t, 30*time.Second, func() bool {
		return metric(t, reg, "tidings_deadletters_redrive_failed_total", nil) == 1
	}, "the re-drive did not run")
	require.EqualValues(t, 1, env.StreamMessages(t, eventlog.StreamDeadLetter), "a dead letter that fails again stays")

	// Fixed: re-driven at its original sequence, from the original stream.
	broken.Store(false)
	mu.Lock()
	got = nil
	mu.Unlock()
	_, _, err = env.Log.RequestRedrive(t.Context(), eventlog.DeadLetterFilter{Stream: eventlog.StreamActivities, Sequences: []uint64{dl.Seq}}, nil)
	require.NoError(t, err)
	testenv.Eventually(t, 30*time.Second, func() bool { return env.StreamMessages(t, eventlog.StreamDeadLetter) == 0 },
		"the dead letter was not removed")
	mu.Lock()
	require.Len(t, got, 1)
	require.EqualValues(t, 3, got[0].Sequence, "applied at its original sequence")
	require.Equal(t, dl.Subject, got[0].Subject)
	require.Equal(t, dl.Data, got[0].Data)
	mu.Unlock()
	require.Equal(t, lastSeq, env.StreamLastSeq(t, eventlog.StreamActivities), "nothing published again on the original stream")
	require.InDelta(t, 1, metric(t, reg, "tidings_deadletters_redriven_total", nil), 0)

	// The original gone: the dead letter's copy is used, at the original
	// sequence still.
	broken.Store(true)
	publishActivities(t, env.Log, "bad", 3) // bad002 again, sequence 7
	testenv.Eventually(t, 30*time.Second, func() bool {
		return env.StreamMessages(t, eventlog.StreamDeadLetter) == 1 && caughtUp(t, env.JS, spec.Stream, spec.Durable)
	}, "bad002 was not dead-lettered again")
	acts, err := env.JS.Stream(t.Context(), eventlog.StreamActivities)
	require.NoError(t, err)
	require.NoError(t, acts.DeleteMsg(t.Context(), 7))
	broken.Store(false)
	mu.Lock()
	got = nil
	mu.Unlock()
	_, _, err = env.Log.RequestRedrive(t.Context(), eventlog.DeadLetterFilter{}, nil)
	require.NoError(t, err)
	testenv.Eventually(t, 30*time.Second, func() bool { return env.StreamMessages(t, eventlog.StreamDeadLetter) == 0 },
		"the dead letter was not removed")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	require.EqualValues(t, 7, got[0].Sequence)
	require.NotEmpty(t, got[0].Data)
}
