// Package worker runs the consumers that turn the event log into Redis
// state: the projectors of profiles, records and the follow graph, and the
// projection of activities. Any number of worker replicas share each
// durable consumer; every apply is idempotent and ordered by stream
// sequence, so replicas may see an event twice or out of order.
package worker

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/records"
)

// Projections are the stores the worker writes.
type Projections struct {
	Profiles   *profilestore.Store
	Records    *recordstore.Store
	Graph      *graphstore.Store
	Activities *activitystore.Store
}

// Worker consumes the streams.
type Worker struct {
	log     *eventlog.Log
	proj    Projections
	metrics *eventlog.ConsumerMetrics
	logger  *slog.Logger
}

// New returns a Worker.
func New(log *eventlog.Log, proj Projections, metrics *eventlog.ConsumerMetrics, logger *slog.Logger) *Worker {
	return &Worker{log: log, proj: proj, metrics: metrics, logger: logger}
}

// The durable consumers the worker runs.
var (
	ProfilesConsumer   = eventlog.ConsumerSpec{Stream: eventlog.StreamProfiles, Durable: "profiles-projector"}
	RecordsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamRecords, Durable: "records-projector"}
	FollowsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamFollows, Durable: "follows-projector"}
	ActivitiesConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamActivities, Durable: "activities-projector"}
)

// ActivitiesProjector returns the handler that applies ACTIVITIES events.
func ActivitiesProjector(bodies *activitystore.Store) eventlog.Handler {
	return func(ctx context.Context, d eventlog.Delivery) error {
		ev := &tidingsv1.ActivityEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			return fmt.Errorf("decode activity event %d: %w", d.Sequence, err)
		}
		return activity.Apply(ctx, bodies, d.Sequence, ev)
	}
}

func (w *Worker) handlers() map[*eventlog.ConsumerSpec]eventlog.Handler {
	return map[*eventlog.ConsumerSpec]eventlog.Handler{
		&ProfilesConsumer:   profiles.Projector(w.proj.Profiles),
		&RecordsConsumer:    records.Projector(w.proj.Records),
		&FollowsConsumer:    graph.Projector(w.proj.Graph),
		&ActivitiesConsumer: ActivitiesProjector(w.proj.Activities),
	}
}

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for spec, h := range w.handlers() {
		g.Go(func() error { return w.log.Consume(gctx, *spec, h, w.metrics, w.logger) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
