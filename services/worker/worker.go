// Package worker runs the durable consumers that keep Redis a projection of
// the event log: one per stream, each calling that stream's apply function
// in pkg/projection. Any number of worker replicas share each durable
// consumer; every apply is idempotent and ordered by log position, so
// replicas may see an event twice or out of order.
//
// While a rebuild fills a new generation of the projections (pkg/generation),
// the worker applies every event to both generations, and one of the
// workers runs the rebuild itself. Every worker also keeps the projections'
// watermarks and heals them when Redis loses writes (pkg/heal).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/heal"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// Deps are what the worker uses.
type Deps struct {
	Log *eventlog.Log
	// ProjectorFor returns the Projector of one generation of the
	// projections (its keys fixed to that generation).
	ProjectorFor func(gen uint64) *projection.Projector
	// Generations, when set, says which generations to write and hands
	// rebuilds to this worker; without it the worker writes generation 0.
	Generations *generation.Store
	// Name names this worker when it runs a rebuild.
	Name string
	// AckWait and MaxDeliver apply to every consumer; zero keeps the
	// defaults of eventlog.ConsumerSpec.
	AckWait    time.Duration
	MaxDeliver int
	// RebuildGrace is how long the old generation is still written after
	// a rebuild's switch; 5 s when zero.
	RebuildGrace time.Duration
	// RebuildSettle is how long after a rebuild starts its second pass
	// waits, so every worker writes both generations and has finished what
	// it held; the ack wait and 5 s when zero.
	RebuildSettle time.Duration
	// RebuildLease is how long a rebuild's worker may go without a
	// checkpoint before another worker takes it over; 30 s when zero.
	RebuildLease time.Duration
	// HealInterval is how often the projections' watermarks are checked
	// and raised (pkg/heal); 2 s when zero, never when negative.
	HealInterval time.Duration
	HealMetrics  *heal.Metrics
	Metrics      *eventlog.ConsumerMetrics
	Logger       *slog.Logger
}

// Worker consumes the streams.
type Worker struct {
	d     Deps
	state atomic.Pointer[generation.State]
}

// New returns a Worker.
func New(d Deps) *Worker {
	if d.RebuildGrace == 0 {
		d.RebuildGrace = 5 * time.Second
	}
	w := &Worker{d: d}
	w.state.Store(&generation.State{})
	return w
}

// writes returns the projectors an event is applied to now: the current
// generation's, and a silent one for each other generation being written
// (pkg/generation).
func (w *Worker) writes() []*projection.Projector {
	gens := w.state.Load().Writes()
	out := make([]*projection.Projector, len(gens))
	for i, g := range gens {
		out[i] = w.d.ProjectorFor(g)
		if i > 0 {
			out[i] = out[i].Silent()
		}
	}
	return out
}

// handler returns a consumer's handler: it applies each batch to every
// generation being written. FANOUT chunks carry the generation they write
// and go to that one only (nowhere, when it is no longer written).
func (w *Worker) handler(durable string) eventlog.BatchHandler {
	if durable == projection.ChunksConsumer.Durable {
		return w.handleChunks
	}
	return func(ctx context.Context, ds []eventlog.Delivery) []error {
		var errs []error
		for _, p := range w.writes() {
			errs = mergeErrors(errs, p.Handler(durable)(ctx, ds), len(ds))
		}
		return errs
	}
}

func (w *Worker) handleChunks(ctx context.Context, ds []eventlog.Delivery) []error {
	targets := map[uint64]*projection.Projector{}
	for _, p := range w.writes() {
		targets[p.Generation()] = p
	}
	byGen := map[uint64][]int{}
	for i, d := range ds {
		g := projection.ChunkGeneration(d)
		byGen[g] = append(byGen[g], i)
	}
	var errs []error
	for g, idx := range byGen {
		p := targets[g]
		if p == nil {
			continue // a generation no longer written: nothing to do
		}
		part := make([]eventlog.Delivery, len(idx))
		for j, i := range idx {
			part[j] = ds[i]
		}
		for j, err := range p.HandleChunks(ctx, part) {
			if err != nil {
				if errs == nil {
					errs = make([]error, len(ds))
				}
				errs[idx[j]] = err
			}
		}
	}
	return errs
}

// mergeErrors adds a batch's errors (nil when all went well) to errs.
func mergeErrors(errs, more []error, n int) []error {
	if more == nil {
		return errs
	}
	if errs == nil {
		errs = make([]error, n)
	}
	for i, err := range more {
		errs[i] = errors.Join(errs[i], err)
	}
	return errs
}

// HandlersByConsumer returns each durable consumer's handler by the
// consumer's name: dead letters are re-driven through them.
func (w *Worker) HandlersByConsumer() map[string]eventlog.BatchHandler {
	out := map[string]eventlog.BatchHandler{}
	for _, spec := range projection.ConsumerSpecs() {
		out[spec.Durable] = w.handler(spec.Durable)
	}
	return out
}

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if err := redisx.LoadScripts(ctx, w.d.ProjectorFor(0).Stores().Timelines.Client()); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if gs := w.d.Generations; gs != nil {
		st, err := gs.Read(ctx)
		if err != nil {
			return err
		}
		w.state.Store(&st)
		var once sync.Once
		seen := make(chan struct{})
		g.Go(func() error {
			return gs.Watch(gctx, func(st generation.State) {
				w.state.Store(&st)
				once.Do(func() { close(seen) })
			})
		})
		select {
		case <-seen:
		case <-ctx.Done():
		}
		settle := w.d.RebuildSettle
		if settle == 0 {
			settle = 30*time.Second + 5*time.Second
			if w.d.AckWait > 0 {
				settle = w.d.AckWait + 5*time.Second
			}
		}
		runner := generation.NewRunner(generation.RunnerDeps{
			Store: gs, ProjectorFor: w.d.ProjectorFor, Name: w.d.Name,
			Settle: settle, Grace: w.d.RebuildGrace, Lease: w.d.RebuildLease, Logger: w.d.Logger,
		})
		g.Go(func() error { return runner.Run(gctx) })
	}
	for _, spec := range projection.ConsumerSpecs() {
		if w.d.AckWait > 0 {
			spec.AckWait = w.d.AckWait
		}
		if w.d.MaxDeliver > 0 {
			spec.MaxDeliver = w.d.MaxDeliver
		}
		h := w.handler(spec.Durable)
		g.Go(func() error { return w.d.Log.ConsumeBatches(gctx, spec, h, w.d.Metrics, w.d.Logger) })
	}
	g.Go(func() error { return w.d.Log.ConsumeRedrives(gctx, w.HandlersByConsumer(), w.d.Metrics, w.d.Logger) })
	if w.d.HealInterval >= 0 {
		healer := heal.New(heal.Deps{
			Log: w.d.Log, ProjectorFor: w.d.ProjectorFor, Generations: w.d.Generations,
			Interval: w.d.HealInterval, Metrics: w.d.HealMetrics, Logger: w.d.Logger,
		})
		g.Go(func() error { return healer.Run(gctx) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
