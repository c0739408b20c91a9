// Package worker runs the consumers that turn the event log into Redis
// state: the projectors of profiles, records and the follow graph, and the
// fan-out of activities into feeds (pkg/fanout). Any number of worker replicas share each
// durable consumer; every apply is idempotent and ordered by stream
// sequence, so replicas may see an event twice or out of order.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/fanout"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/records"
)

// Projections are the stores the worker writes.
type Projections struct {
	Profiles   *profilestore.Store
	Records    *recordstore.Store
	Graph      *graphstore.Store
	Activities *activitystore.Store
	Timelines  *timelinestore.Store
	// Live, if set, receives live notices of home timeline inserts.
	Live fanout.Notifier
	// Hot keeps which entities are pulled rather than pushed.
	Hot *hot.Store
}

// FanoutStores returns the stores the fan-out uses.
func (p Projections) FanoutStores() fanout.Stores {
	return fanout.Stores{Graph: p.Graph, Records: p.Records, Bodies: p.Activities, Timelines: p.Timelines, Live: p.Live, Hot: p.Hot}
}

// Worker consumes the streams.
type Worker struct {
	log     *eventlog.Log
	proj    Projections
	opts    Options
	fanout  *fanout.Fanout
	metrics *eventlog.ConsumerMetrics
	logger  *slog.Logger
}

// Options tune the worker.
type Options struct {
	Fanout fanout.Config
	// AckWait and MaxDeliver apply to every consumer; zero keeps the
	// defaults of eventlog.ConsumerSpec.
	AckWait    time.Duration
	MaxDeliver int
	// FanoutMetrics, if set, counts the fan-out's deliveries.
	FanoutMetrics *fanout.Metrics
}

// New returns a Worker.
func New(log *eventlog.Log, proj Projections, opts Options, metrics *eventlog.ConsumerMetrics, logger *slog.Logger) *Worker {
	st := proj.FanoutStores()
	st.Metrics = opts.FanoutMetrics
	return &Worker{log: log, proj: proj, opts: opts, fanout: fanout.New(log, st, opts.Fanout, logger), metrics: metrics, logger: logger}
}

// The durable consumers the worker runs.
var (
	ProfilesConsumer   = eventlog.ConsumerSpec{Stream: eventlog.StreamProfiles, Durable: "profiles-projector"}
	RecordsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamRecords, Durable: "records-projector"}
	FollowsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamFollows, Durable: "follows-projector"}
	ActivitiesConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamActivities, Durable: "fanout", Workers: 4, Batch: 64}
	FanoutConsumer     = eventlog.ConsumerSpec{Stream: eventlog.StreamFanout, Durable: "fanout-chunks", Workers: 2}
)

// Consumers lists every durable consumer of the worker.
var Consumers = []*eventlog.ConsumerSpec{&ProfilesConsumer, &RecordsConsumer, &FollowsConsumer, &ActivitiesConsumer, &FanoutConsumer}

func (w *Worker) handlers() map[*eventlog.ConsumerSpec]eventlog.BatchHandler {
	return map[*eventlog.ConsumerSpec]eventlog.BatchHandler{
		&ProfilesConsumer:   eventlog.OneAtATime(profiles.Projector(w.proj.Profiles)),
		&RecordsConsumer:    eventlog.OneAtATime(records.Projector(w.proj.Records)),
		&FollowsConsumer:    eventlog.OneAtATime(w.fanout.HandleFollows),
		&ActivitiesConsumer: w.fanout.HandleActivities,
		&FanoutConsumer:     eventlog.OneAtATime(w.fanout.HandleChunk),
	}
}

// HandlersByConsumer returns each durable consumer's handler by the
// consumer's name: dead letters are re-driven through them.
func (w *Worker) HandlersByConsumer() map[string]eventlog.BatchHandler {
	out := map[string]eventlog.BatchHandler{}
	for spec, h := range w.handlers() {
		out[spec.Durable] = h
	}
	return out
}

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	if err := redisx.LoadScripts(ctx, w.proj.Timelines.Client()); err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	for spec, h := range w.handlers() {
		s := *spec
		if w.opts.AckWait > 0 {
			s.AckWait = w.opts.AckWait
		}
		if w.opts.MaxDeliver > 0 {
			s.MaxDeliver = w.opts.MaxDeliver
		}
		g.Go(func() error { return w.log.ConsumeBatches(gctx, s, h, w.metrics, w.logger) })
	}
	g.Go(func() error { return w.log.ConsumeRedrives(gctx, w.HandlersByConsumer(), w.metrics, w.logger) })
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
