package projection

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// HandleChunks is the batch handler of the FANOUT work queue: each chunk
// writes one activity into (or takes it out of) the home timelines of part
// of a large audience. An activity deleted since its chunk was cut is not
// written, and a restricted record's activity reaches only its readers.
func (p *Projector) HandleChunks(ctx context.Context, ds []eventlog.Delivery) []error {
	errs := make([]error, len(ds))
	failed := false
	type chunk struct {
		index int
		id    ids.ID
		c     *tidingsv1.FanoutChunk
	}
	var (
		chunks []chunk
		insert []string // activity ids of the inserts, to read their bodies
	)
	for i, d := range ds {
		c := &tidingsv1.FanoutChunk{}
		if err := proto.Unmarshal(d.Data, c); err != nil {
			errs[i], failed = fmt.Errorf("decode fan-out chunk %d: %w", d.Sequence, err), true
			continue
		}
		id, err := ids.Parse(c.GetActivityId())
		if err != nil {
			errs[i], failed = fmt.Errorf("fan-out chunk %d: %w", d.Sequence, err), true
			continue
		}
		chunks = append(chunks, chunk{i, id, c})
		if !c.GetRemove() {
			insert = append(insert, c.GetActivityId())
		}
	}
	fail := func(err error) []error {
		for _, c := range chunks {
			errs[c.index] = err
		}
		return errs
	}
	acts, err := p.st.Bodies.GetMany(ctx, insert)
	if err != nil {
		return fail(err)
	}
	audiences, err := p.audiences(ctx, acts)
	if err != nil {
		return fail(err)
	}
	// Removals go to everyone in the chunk; inserts only to those who
	// still follow a source of the activity when the write lands, so a
	// chunk applied after a newer unfollow writes nothing for that user.
	homes := &homeWrites{}
	var inserts []guardedInsert
	j := 0
	for _, c := range chunks {
		users := c.c.GetUserIds()
		if c.c.GetRemove() {
			homes.remove(users, c.id)
			continue
		}
		a, visible := acts[j], audiences[j]
		j++
		if a == nil {
			continue // deleted since: nothing to write
		}
		to := users
		if visible != nil {
			to = nil
			for _, u := range users {
				if visible(u) {
					to = append(to, u)
				}
			}
		}
		inserts = append(inserts, guardedInsert{to, []ids.ID{c.id}, entity.Sources(a)})
	}
	if err := p.writeHomes(ctx, homes); err != nil {
		return fail(err)
	}
	notices, err := p.insertIfFollowing(ctx, inserts)
	if err != nil {
		return fail(err)
	}
	if p.live != nil {
		for i, users := range notices {
			if err := p.live.Notify(users, inserts[i].ids[0]); err != nil {
				p.logger.WarnContext(ctx, "live notices not sent", "activity", inserts[i].ids[0].String(), "error", err)
			}
		}
	}
	if failed {
		return errs
	}
	return nil
}

// ChunkGeneration returns the generation of the projections a FANOUT
// chunk writes (0 for one that does not decode: its handler reports it).
func ChunkGeneration(d eventlog.Delivery) uint64 {
	c := &tidingsv1.FanoutChunk{}
	if err := proto.Unmarshal(d.Data, c); err != nil {
		return 0
	}
	return c.GetGeneration()
}
