package projection

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// recordReads are the reads of the records a batch of activities is
// about, each record queued once on a pipeline.
type recordReads map[string]redisx.Result[*tidingsv1.Record]

// queue queues the read of an activity's record, unless it has none or its
// read is queued already.
func (r recordReads) queue(ctx context.Context, pipe redis.Pipeliner, records *recordstore.Store, a *tidingsv1.Activity) {
	if ref := a.GetRecord(); ref != nil {
		if k := entity.RecordKey(ref); r[k] == nil {
			r[k] = records.QueueGet(ctx, pipe, ref)
		}
	}
}

// audience returns who may receive an activity (visibility.Audience: nil
// for everyone), once its pipeline has run.
func (r recordReads) audience(a *tidingsv1.Activity) (func(string) bool, error) {
	ref := a.GetRecord()
	if ref == nil {
		return nil, nil
	}
	rec, err := r[entity.RecordKey(ref)]()
	if errors.Is(err, recordstore.ErrNotFound) {
		return visibility.Audience(nil, false), nil
	}
	if err != nil {
		return nil, err
	}
	return visibility.Audience(rec, true), nil
}

// audiences returns, for each activity (nil ones are skipped), who may
// receive it, reading each record once in one round trip.
func (p *Projector) audiences(ctx context.Context, acts []*tidingsv1.Activity) ([]func(string) bool, error) {
	reads := recordReads{}
	err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		clear(reads)
		for _, a := range acts {
			reads.queue(ctx, pipe, p.st.Records, a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]func(string) bool, len(acts))
	for i, a := range acts {
		if a == nil {
			continue
		}
		if out[i], err = reads.audience(a); err != nil {
			return nil, err
		}
	}
	return out, nil
}
