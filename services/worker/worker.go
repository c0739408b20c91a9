// Package worker runs the consumers that turn the event log into Redis
// state: the projectors of profiles, records and the follow graph, and the
// fan-out of activities into timelines. Any number of worker replicas share
// each durable consumer.
package worker

import (
	"context"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/services/profiles"
)

// Projections are the stores the worker writes.
type Projections struct {
	Profiles *profilestore.Store
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

// Consumers are the durable consumers the worker runs, by name.
var (
	ProfilesConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamProfiles, Durable: "profiles-projector"}
)

// Run consumes until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		return w.log.Consume(gctx, ProfilesConsumer, profiles.Projector(w.proj.Profiles), w.metrics, w.logger)
	})
	if err := g.Wait(); err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}
