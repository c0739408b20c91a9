package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/fanout"
	"github.com/tidingshq/tidings/pkg/graph"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/records"
)

// RebuildOrder is the order of a full rebuild: entities before the graph,
// the graph before what is fanned out along it.
var RebuildOrder = []tidingsv1.Projection{
	tidingsv1.Projection_PROJECTION_PROFILES,
	tidingsv1.Projection_PROJECTION_RECORDS,
	tidingsv1.Projection_PROJECTION_FOLLOWS,
	tidingsv1.Projection_PROJECTION_ACTIVITIES,
}

// Rebuild wipes one projection and replays its stream from the start,
// returning how many events it applied. Writes that land meanwhile are
// applied by the live consumers as usual; since every apply is idempotent
// and ordered by stream sequence, the result is the projection of the log.
//
// Rebuilding activities replays every post through the fan-out over the
// graph as it is now, so home timelines come back as if today's follows had
// always held (within each timeline's cap).
func Rebuild(ctx context.Context, log *eventlog.Log, proj Projections, cfg fanout.Config, logger *slog.Logger, p tidingsv1.Projection) (int64, error) {
	var (
		wipe   func(context.Context) error
		stream string
		h      eventlog.Handler
	)
	switch p {
	case tidingsv1.Projection_PROJECTION_PROFILES:
		wipe, stream, h = proj.Profiles.Wipe, eventlog.StreamProfiles, profiles.Projector(proj.Profiles)
	case tidingsv1.Projection_PROJECTION_RECORDS:
		wipe, stream, h = proj.Records.Wipe, eventlog.StreamRecords, records.Projector(proj.Records)
	case tidingsv1.Projection_PROJECTION_FOLLOWS:
		wipe, stream, h = proj.Graph.Wipe, eventlog.StreamFollows, graph.Projector(proj.Graph)
	case tidingsv1.Projection_PROJECTION_ACTIVITIES:
		f := fanout.New(log, proj.FanoutStores(), cfg, logger)
		wipe = func(ctx context.Context) error {
			if err := proj.Activities.Wipe(ctx); err != nil {
				return err
			}
			if proj.Hot != nil {
				if err := proj.Hot.Wipe(ctx); err != nil {
					return err
				}
			}
			return proj.Timelines.Wipe(ctx)
		}
		stream, h = eventlog.StreamActivities, f.HandleActivity
	default:
		return 0, fmt.Errorf("rebuild %s: %w", p, ErrNotRebuildable)
	}
	if err := wipe(ctx); err != nil {
		return 0, fmt.Errorf("rebuild %s: %w", p, err)
	}
	n, err := log.Replay(ctx, stream, nil, h)
	if err != nil {
		return n, fmt.Errorf("rebuild %s: %w", p, err)
	}
	return n, nil
}

// ErrNotRebuildable means the projection is not one the worker knows.
var ErrNotRebuildable = fmt.Errorf("unknown projection")
