package worker

import (
	"context"
	"fmt"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
)

// Rebuild wipes one projection and replays its stream from the start,
// returning how many events it applied. Writes that land meanwhile are
// applied by the live consumers as usual; since every apply is idempotent
// and ordered by stream sequence, the result is the projection of the log.
func Rebuild(ctx context.Context, log *eventlog.Log, proj Projections, p tidingsv1.Projection) (int64, error) {
	switch p {
	case tidingsv1.Projection_PROJECTION_PROFILES:
		if err := proj.Profiles.Wipe(ctx); err != nil {
			return 0, fmt.Errorf("rebuild profiles: %w", err)
		}
		return log.Replay(ctx, eventlog.StreamProfiles, nil, profiles.Projector(proj.Profiles))
	default:
		return 0, fmt.Errorf("rebuild %s: %w", p, ErrNotRebuildable)
	}
}

// ErrNotRebuildable means the projection has no rebuild yet.
var ErrNotRebuildable = fmt.Errorf("projection cannot be rebuilt yet")
