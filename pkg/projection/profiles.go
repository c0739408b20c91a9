package projection

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// ApplyProfile projects one PROFILES event at stream sequence seq.
func (p *Projector) ApplyProfile(ctx context.Context, seq uint64, ev *tidingsv1.ProfileEvent) error {
	if ev.GetProfile().GetUserId() == "" {
		return fmt.Errorf("profile event %d has no user id", seq)
	}
	return p.st.Profiles.Apply(ctx, seq, ev.GetProfile())
}

// HandleProfiles is the batch handler of the PROFILES stream.
func (p *Projector) HandleProfiles(ctx context.Context, ds []eventlog.Delivery) []error {
	return eventlog.OneAtATime(func(ctx context.Context, d eventlog.Delivery) error {
		ev := &tidingsv1.ProfileEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			return fmt.Errorf("decode profile event %d: %w", d.Sequence, err)
		}
		return p.ApplyProfile(ctx, d.Sequence, ev)
	})(ctx, ds)
}
