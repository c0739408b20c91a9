// Package worker runs the durable consumers that keep Redis a projection of
// the event log: one per stream, each calling that stream's apply function
// in pkg/projection. Any number of worker replicas share each durable
// consumer; every apply is idempotent and ordered by log position, so
// replicas may see an event twice or out of order.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// Deps are what the worker uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	// AckWait and MaxDeliver apply to every consumer; zero keeps the
	// defaults of eventlog.ConsumerSpec.
	AckWait    time.Duration
	MaxDeliver int
	Metrics    *eventlog.ConsumerMetrics
	Logger     *slog.Logger
}

// Worker consumes the streams.
type Worker struct {
	d Deps
}

// New returns a Worker.
func New(d Deps) *Worker { return &Worker{d: d} }

// HandlersByConsumer returns each durable consumer's handler by the
// consumer's name: dead letters are re-driven through them.
func (w *Worker) HandlersByConsumer() map[string]eventlog.BatchHandler {
	out := map[string]eventlog.BatchHandler{}
	for _, c := range w.d.Projector.Consumers() {
		out[c.Spec.Durable] = c.Handle
	}
	return out
}

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if err := redisx.LoadScripts(ctx, w.d.Projector.Stores().Timelines.Client()); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range w.d.Projector.Consumers() {
		spec := c.Spec
		if w.d.AckWait > 0 {
			spec.AckWait = w.d.AckWait
		}
		if w.d.MaxDeliver > 0 {
			spec.MaxDeliver = w.d.MaxDeliver
		}
		g.Go(func() error { return w.d.Log.ConsumeBatches(gctx, spec, c.Handle, w.d.Metrics, w.d.Logger) })
	}
	g.Go(func() error { return w.d.Log.ConsumeRedrives(gctx, w.HandlersByConsumer(), w.d.Metrics, w.d.Logger) })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
