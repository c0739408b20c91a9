package projection_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestFollowsOutOfOrderAndDuplicateDeliveries appends quick follow/unfollow
// sequences on a few edges, then projects them with three consumers sharing
// one durable consumer, where handlers fail a third of first deliveries (so
// those come again later, after newer events) and apply every event twice.
// Every edge must end as the last event in the log says.
func TestFollowsOutOfOrderAndDuplicateDeliveries(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	stores := projection.NewStores(env.RDB, hot.Thresholds{On: 10000, Off: 8000})
	store := stores.Graph
	p := projection.New(projection.Deps{Log: env.Log, Stores: stores, Config: projection.DefaultConfig(), Logger: env.Logger})
	ctx := t.Context()

	edges := []testenv.Edge{{User: "ana", Entity: "u:bo"}, {User: "ana", Entity: "r:crm.opportunity:1"}, {User: "bo", Entity: "u:ana"}, {User: "cy", Entity: "r:crm.opportunity:1"}, {User: "dee", Entity: "u:ana"}}
	want := map[testenv.Edge]bool{}
	rng := rand.New(rand.NewPCG(1, 2))
	var events int
	for round := range 40 {
		e := edges[rng.IntN(len(edges))]
		follow := round%3 != 1
		ref, err := entity.Parse(e.Entity)
		require.NoError(t, err)
		_, err = env.Log.Publish(ctx, eventlog.Append{
			Subject: eventlog.FollowSubject(e.User),
			Event: &tidingsv1.FollowEvent{Changes: []*tidingsv1.EdgeChange{
				{UserId: e.User, Entity: ref, Following: follow},
			}},
		})
		require.NoError(t, err)
		want[e] = follow
		events++
	}

	var failed atomic.Int64
	project := func(ctx context.Context, d eventlog.Delivery) error {
		if errs := p.HandleFollows(ctx, []eventlog.Delivery{d}); errs != nil {
			return errs[0]
		}
		return nil
	}
	flaky := func(ctx context.Context, d eventlog.Delivery) error {
		if d.NumDelivered == 1 && d.Sequence%3 == 0 {
			failed.Add(1)
			return errors.New("injected failure")
		}
		if err := project(ctx, d); err != nil {
			return err
		}
		return project(ctx, d) // a duplicate delivery
	}
	spec := eventlog.ConsumerSpec{
		Stream: eventlog.StreamFollows, Durable: "graph-order-test",
		Backoff: []time.Duration{50 * time.Millisecond}, Workers: 3, AckWait: 5 * time.Second,
	}
	metrics, err := eventlog.NewConsumerMetrics(prometheus.NewRegistry())
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			require.NoError(t, env.Log.Consume(runCtx, spec, flaky, metrics, env.Logger))
		})
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		c, err := env.JS.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "consumers did not finish")
	cancel()
	wg.Wait()
	require.Positive(t, failed.Load(), "some deliveries must have been retried")

	testenv.RequireGraph(t, store, want)
}
