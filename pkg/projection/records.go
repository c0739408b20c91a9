package projection

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// ApplyRecord projects one RECORDS event at stream sequence seq.
func (p *Projector) ApplyRecord(ctx context.Context, seq uint64, ev *tidingsv1.RecordEvent) error {
	if ev.GetRecord().GetRef().GetType() == "" {
		return fmt.Errorf("record event %d has no record", seq)
	}
	return p.st.Records.Apply(ctx, seq, ev)
}

// HandleRecords is the batch handler of the RECORDS stream.
func (p *Projector) HandleRecords(ctx context.Context, ds []eventlog.Delivery) []error {
	return eventlog.OneAtATime(func(ctx context.Context, d eventlog.Delivery) error {
		ev := &tidingsv1.RecordEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			return fmt.Errorf("decode record event %d: %w", d.Sequence, err)
		}
		return p.ApplyRecord(ctx, d.Sequence, ev)
	})(ctx, ds)
}
