package eventlog_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestConsumeBatches checks that a batch handler gets batches of at most
// the batch size (collect_test.go checks how they are made), and that an
// event that fails is retried on its own while the rest of its batch is
// acknowledged.
func TestConsumeBatches(t *testing.T) {
	env := testenv.New(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	const events, batch = 40, 8
	for i := range events {
		_, err := env.Log.Publish(ctx, eventlog.Append{
			Subject: eventlog.ActivitySubject(fmt.Sprintf("a%02d", i)),
			Event:   &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_DeletedId{DeletedId: fmt.Sprintf("a%02d", i)}},
		})
		require.NoError(t, err)
	}
	spec := eventlog.ConsumerSpec{Stream: eventlog.StreamActivities, Durable: "batch-test", Workers: 1, Batch: batch,
		Backoff: []time.Duration{10 * time.Millisecond}}
	metrics, err := eventlog.NewConsumerMetrics(prometheus.NewRegistry())
	require.NoError(t, err)

	var (
		mu       sync.Mutex
		sizes    []int
		seen     = map[uint64]int{}
		failOnce = uint64(5)
		done     = make(chan struct{})
		finished = done
	)
	handler := func(_ context.Context, ds []eventlog.Delivery) []error {
		mu.Lock()
		defer mu.Unlock()
		sizes = append(sizes, len(ds))
		errs := make([]error, len(ds))
		for i, d := range ds {
			seen[d.Sequence]++
			if d.Sequence == failOnce && d.NumDelivered == 1 {
				errs[i] = errors.New("transient")
			}
		}
		// Done once every event was applied (the failed one on its
		// second delivery); extra deliveries show in the counts below.
		if len(seen) == events && seen[failOnce] >= 2 && done != nil {
			close(done)
			done = nil
		}
		return errs
	}
	errc := make(chan error, 1)
	go func() { errc <- env.Log.ConsumeBatches(ctx, spec, handler, metrics, testenv.Logger()) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("events not all handled: %d of %d seen, deliveries by sequence %v", len(seen), events, seen)
	}
	cancel()
	require.NoError(t, <-errc)

	mu.Lock()
	defer mu.Unlock()
	for _, n := range sizes {
		require.LessOrEqual(t, n, batch)
	}
	for seq := uint64(1); seq <= events; seq++ {
		want := 1
		if seq == failOnce {
			want = 2
		}
		require.Equal(t, want, seen[seq], "deliveries of event %d", seq)
	}
}
