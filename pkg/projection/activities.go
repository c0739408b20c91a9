package projection

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// changeKind is what an ACTIVITIES event does.
type changeKind int

const (
	posted changeKind = iota
	edited
	deleted
)

// activityChange is one ACTIVITIES event of a batch, decoded once, and what
// the batch learns of it on its way through the pipelines.
type activityChange struct {
	index int
	seq   uint64
	ev    *tidingsv1.ActivityEvent
	kind  changeKind
	// a is the activity as posted or edited, or as it was when deleted.
	a  *tidingsv1.Activity
	id ids.ID

	// stored says, once the first pipeline ran, whether the activity is
	// deleted (by this event or an earlier one).
	stored redisx.Result[bool]
	// srcs are the entities whose feeds hold the activity and whose
	// followers receive it; counts their follower counts.
	srcs   []string
	counts []int64
	// ranges are a deletion's sources' pull ranges; decisions a post's
	// push-or-pull decisions; pulled what they say.
	ranges    []redisx.Result[[]hot.Range]
	decisions []redisx.Result[hot.Decision]
	pulled    []bool
	// opened says which sources turned hot with this post.
	opened []bool
	// visible filters a restricted record's audience (nil: everyone).
	visible func(string) bool
}

// decodeActivityChange decodes one ACTIVITIES event.
func decodeActivityChange(d eventlog.Delivery) (*activityChange, error) {
	ev := &tidingsv1.ActivityEvent{}
	if err := proto.Unmarshal(d.Data, ev); err != nil {
		return nil, fmt.Errorf("decode activity event %d: %w", d.Sequence, err)
	}
	return newActivityChange(d.Sequence, ev)
}

// newActivityChange reads what an ACTIVITIES event at stream sequence seq
// does.
func newActivityChange(seq uint64, ev *tidingsv1.ActivityEvent) (*activityChange, error) {
	c := &activityChange{seq: seq, ev: ev}
	switch ch := ev.GetChange().(type) {
	case *tidingsv1.ActivityEvent_Posted:
		c.kind, c.a = posted, ch.Posted
	case *tidingsv1.ActivityEvent_Edited:
		c.kind, c.a = edited, ch.Edited
	case *tidingsv1.ActivityEvent_DeletedId:
		c.kind, c.a = deleted, ev.GetDeletedActivity()
		if c.a.GetId() != ch.DeletedId {
			// Without the activity as it was, the tombstone is all there
			// is to write: reads drop the id wherever it is.
			c.a = &tidingsv1.Activity{Id: ch.DeletedId}
		}
	default:
		return nil, fmt.Errorf("activity event %d has no change", seq)
	}
	id, err := ids.Parse(c.a.GetId())
	if err != nil {
		return nil, fmt.Errorf("activity event %d: activity %q: %w", seq, c.a.GetId(), err)
	}
	c.id = id
	return c, nil
}

// mentionsAdded reports whether an edit mentions users the text before it
// did not: it then reaches them as a post reaches its mentions.
func (c *activityChange) mentionsAdded() bool {
	return c.kind == edited && len(c.ev.GetAddedMentionUserIds()) > 0
}

// queueBody queues, on pipe, the body part of an activity event: the body
// (or its tombstone) and a post's idempotency key. Its result says whether
// the activity is deleted.
func (p *Projector) queueBody(ctx context.Context, pipe redis.Pipeliner, c *activityChange) redisx.Result[bool] {
	if c.kind == deleted {
		return p.st.Bodies.QueueDelete(ctx, pipe, c.seq, c.a.GetId())
	}
	res := p.st.Bodies.QueuePut(ctx, pipe, c.seq, c.a)
	if scope := c.ev.GetIdempotencyScope(); scope != "" && c.kind == posted {
		p.st.Bodies.QueueRememberIdempotent(ctx, pipe, scope, c.a.GetId(), c.a.GetCreateTime().AsTime())
	}
	return res
}

// ApplyBody projects the body part of one ACTIVITIES event at stream
// sequence seq (the body or its tombstone, and a post's idempotency key),
// and nothing else: what the write-through of a post, edit or deletion
// needs.
func (p *Projector) ApplyBody(ctx context.Context, seq uint64, ev *tidingsv1.ActivityEvent) error {
	c, err := newActivityChange(seq, ev)
	if err != nil {
		return err
	}
	_, err = redisx.Run(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) redisx.Result[bool] {
		return p.queueBody(ctx, pipe, c)
	})
	return err
}

// HandleActivities is the batch handler of the ACTIVITIES stream, and the
// one path of the fan-out: posts, edits and deletions alike, whatever
// their audience, take three pipelines per batch, whatever its size:
//
//  1. store the bodies and tombstones, and read the records' visibility,
//     the sources' follower counts and a deletion's pull ranges;
//  2. decide push or pull for each post's sources (pkg/hot), read the
//     followers of the pushed ones, and write the entity feeds;
//  3. write the home timelines, one call per user for all of that user's
//     ids (deletions take ids out).
//
// Sources with more followers than Config.WriteBatch (or Config.ChunkSize,
// if smaller) are scanned between the second and the third; when those
// make an audience above Config.ChunkSize, their followers are cut into
// FANOUT chunks that any worker takes (HandleChunks). A post is not
// written when the activity is deleted, by an earlier event or later in
// the same batch. Edits store the new body only (feeds hold ids), and
// deliver the activity to the users they newly mention. Every change's
// notifications are written last (notifyActivities).
//
// It returns nil when every event was applied, or one error per event: an
// undecodable event fails alone; any other error fails the whole batch,
// whose events are retried (every write is idempotent).
func (p *Projector) HandleActivities(ctx context.Context, ds []eventlog.Delivery) []error {
	errs := make([]error, len(ds))
	failed := false
	batch := make([]*activityChange, 0, len(ds))
	for i, d := range ds {
		c, err := decodeActivityChange(d)
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		c.index = i
		batch = append(batch, c)
	}
	if len(batch) > 0 {
		if err := p.fanOut(ctx, batch, progressOf(ds)); err != nil {
			for _, c := range batch {
				errs[c.index] = err
			}
			failed = true
		}
	}
	if failed {
		return errs
	}
	return nil
}

// progressOf returns a func that tells JetStream that every event of a
// batch is still being worked on.
func progressOf(ds []eventlog.Delivery) func() {
	return func() {
		for _, d := range ds {
			if d.Progress != nil {
				_ = d.Progress()
			}
		}
	}
}

// fanOut writes a batch of activity changes: see HandleActivities.
func (p *Projector) fanOut(ctx context.Context, batch []*activityChange, progress func()) error {
	work, err := p.storeBodies(ctx, batch)
	if err != nil || len(work) == 0 {
		return err
	}
	followers, err := p.writeFeeds(ctx, work)
	if err != nil {
		return err
	}
	homes := &homeWrites{}
	notices := make([][]string, len(work))
	for j, c := range work {
		if notices[j], err = p.audience(ctx, c, followers, homes, progress); err != nil {
			return err
		}
	}
	if err := p.writeHomes(ctx, homes); err != nil {
		return err
	}
	if err := p.notifyActivities(ctx, work); err != nil {
		return err
	}
	if p.live != nil {
		// Best effort: a lost notice is made good when a watcher resumes.
		for j, c := range work {
			if c.kind != deleted && len(notices[j]) > 0 {
				if err := p.live.Notify(notices[j], c.id); err != nil {
					p.logger.WarnContext(ctx, "live notices not sent", "activity", c.id.String(), "error", err)
				}
			}
		}
	}
	return nil
}

// storeBodies runs the first pipeline and returns the changes that go on
// to the feeds: posts of activities not deleted, and deletions.
func (p *Projector) storeBodies(ctx context.Context, batch []*activityChange) (work []*activityChange, err error) {
	ctx, span := startSpan(ctx, SpanStoreBodies)
	defer func() {
		endSpan(span, err, attribute.Int("tidings.changes", len(batch)), attribute.Int("tidings.fanned_out", len(work)))
	}()
	counts := map[string]redisx.Result[int64]{}
	records := recordReads{}
	err = redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		clear(counts)
		clear(records)
		for _, c := range batch {
			c.stored = p.queueBody(ctx, pipe, c)
			if c.kind == edited {
				if c.mentionsAdded() {
					// Only its record's audience is needed (see audience).
					records.queue(ctx, pipe, p.st.Records, c.a)
				}
				continue
			}
			c.srcs = entity.Sources(c.a)
			records.queue(ctx, pipe, p.st.Records, c.a)
			c.ranges = make([]redisx.Result[[]hot.Range], len(c.srcs))
			for i, s := range c.srcs {
				if counts[s] == nil {
					counts[s] = p.st.Graph.QueueFollowerCount(ctx, pipe, s)
				}
				if c.kind == deleted && p.st.Hot != nil {
					c.ranges[i] = p.st.Hot.QueueRanges(ctx, pipe, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store %d activity changes: %w", len(batch), err)
	}
	deletedHere := map[ids.ID]bool{}
	for _, c := range batch {
		if c.kind == deleted {
			deletedHere[c.id] = true
		}
	}
	for _, c := range batch {
		isDeleted, err := c.stored()
		if err != nil {
			return nil, err
		}
		switch {
		case c.kind == edited && (!c.mentionsAdded() || isDeleted || deletedHere[c.id]):
			continue
		case c.kind == posted && (isDeleted || deletedHere[c.id]):
			continue // a post of a deleted activity writes nothing
		case c.kind == posted, c.kind == edited:
			if c.visible, err = records.audience(c.a); err != nil {
				return nil, err
			}
		}
		c.counts = make([]int64, len(c.srcs))
		c.pulled = make([]bool, len(c.srcs))
		for i, s := range c.srcs {
			if c.counts[i], err = counts[s](); err != nil {
				return nil, err
			}
			if c.ranges[i] != nil {
				rs, err := c.ranges[i]()
				if err != nil {
					return nil, err
				}
				c.pulled[i] = hot.InRanges(rs, c.id)
			}
		}
		work = append(work, c)
	}
	return work, nil
}

// writeFeeds runs the second pipeline: push-or-pull decisions, the
// followers of small pushed sources, and the entity feeds. It returns the
// followers read, by source.
func (p *Projector) writeFeeds(ctx context.Context, work []*activityChange) (_ map[string]redisx.Result[[]string], err error) {
	ctx, span := startSpan(ctx, SpanWriteFeeds)
	defer func() { endSpan(span, err, attribute.Int("tidings.changes", len(work))) }()
	adds, removes := map[string][]ids.ID{}, map[string][]ids.ID{}
	for _, c := range work {
		for _, s := range c.srcs {
			k := p.st.Timelines.FeedKey(s)
			if c.kind == deleted {
				removes[k] = append(removes[k], c.id)
			} else {
				adds[k] = append(adds[k], c.id)
			}
		}
	}
	followers := map[string]redisx.Result[[]string]{}
	err = redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		clear(followers)
		for _, c := range work {
			c.decisions = make([]redisx.Result[hot.Decision], len(c.srcs))
			for i, s := range c.srcs {
				if c.kind == posted && p.st.Hot != nil {
					c.decisions[i] = p.st.Hot.QueueDecision(ctx, pipe, s, c.id, c.counts[i])
				}
				// Read before a post's decision is known: the followers of
				// a source found pulled (few, or it would be scanned) go
				// unused.
				if !c.pulled[i] && c.counts[i] <= p.smallSource() && followers[s] == nil {
					followers[s] = p.st.Graph.QueueFollowers(ctx, pipe, s)
				}
			}
		}
		for k, list := range adds {
			p.st.Timelines.QueueInsert(ctx, pipe, k, p.cfg.FeedCap, list)
		}
		for k, list := range removes {
			p.st.Timelines.QueueRemove(ctx, pipe, k, list)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("write entity feeds of %d activity changes: %w", len(work), err)
	}
	for _, c := range work {
		c.opened = make([]bool, len(c.srcs))
		for i := range c.srcs {
			if c.decisions[i] == nil {
				continue
			}
			d, err := c.decisions[i]()
			if err != nil {
				return nil, err
			}
			c.pulled[i], c.opened[i] = d.Pulled, d.Opened
		}
	}
	return followers, nil
}

// audience adds a change's home timeline writes to homes and returns the
// users a post reached. Its audience is the followers of its pushed
// sources, its mentioned users and its actor, each once, less those who
// may not see it; a post of a pulled source reaches that source's
// followers through their reads instead. Mentioned users get it in their
// inboxes too (homeWrites.direct); an edit reaches the users it newly
// mentions, as direct recipients, and no one else.
func (p *Projector) audience(ctx context.Context, c *activityChange, followers map[string]redisx.Result[[]string], homes *homeWrites, progress func()) ([]string, error) {
	mentions := c.a.GetMentionUserIds()
	var users []string
	if c.kind == edited {
		// An edit reaches the users it newly mentions, and only them.
		mentions = c.ev.GetAddedMentionUserIds()
	} else if u := entity.ActorUser(c.a); u != "" {
		users = append(users, u)
	}
	var scan []string
	var scanned int64
	for i, s := range c.srcs {
		switch {
		case c.pulled[i]:
			if c.opened[i] {
				if err := p.addHotSources(ctx, s); err != nil {
					return nil, err
				}
			}
			if c.kind == posted && p.live != nil {
				if c.opened[i] {
					if err := p.live.NotifySwitch(s, c.id); err != nil {
						p.logger.WarnContext(ctx, "hot switch notice not sent", "entity", s, "error", err)
					}
				}
				if err := p.live.NotifyEntity(s, c.id); err != nil {
					p.logger.WarnContext(ctx, "live notice not sent", "entity", s, "error", err)
				}
			}
		case followers[s] != nil:
			list, err := followers[s]()
			if err != nil {
				return nil, err
			}
			users = append(users, list...)
		default:
			scan = append(scan, s)
			scanned += c.counts[i]
		}
	}
	if scanned+int64(len(users)+len(mentions)) > int64(p.cfg.ChunkSize) {
		if err := p.chunk(ctx, c, scan, progress); err != nil {
			return nil, err
		}
		scan = nil
	}
	for _, s := range scan {
		err := p.st.Graph.ScanFollowers(ctx, s, p.cfg.WriteBatch, func(edges []graphstore.Edge) error {
			for _, e := range edges {
				users = append(users, e.Member)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.Sort(users)
	users = slices.Compact(users)
	// Mentioned users are written once, as direct recipients.
	users = slices.DeleteFunc(users, func(u string) bool { return slices.Contains(mentions, u) })
	if c.kind == deleted {
		homes.remove(users, c.id)
		homes.undirect(mentions, c.id)
		return nil, nil
	}
	to := users[:0]
	for _, u := range users {
		if c.visible == nil || c.visible(u) {
			to = append(to, u)
		}
	}
	homes.add(to, c.id)
	return append(to, homes.direct(mentions, c.id, c.visible)...), nil
}

// smallSource is the most followers a source may have to be read in the
// second pipeline; larger ones are scanned, or chunked.
func (p *Projector) smallSource() int64 { return int64(min(p.cfg.WriteBatch, p.cfg.ChunkSize)) }

// chunk publishes the followers of sources as FANOUT chunks of
// Config.ChunkSize users, for any worker to write. A user in two chunks
// gets two writes of one id, which the timeline ignores.
func (p *Projector) chunk(ctx context.Context, c *activityChange, srcs []string, progress func()) (err error) {
	chunks := 0
	ctx, span := startSpan(ctx, SpanChunk)
	defer func() {
		endSpan(span, err, attribute.String("tidings.activity", c.a.GetId()), attribute.Int("tidings.chunks", chunks))
	}()
	for _, s := range srcs {
		err := p.st.Graph.ScanFollowers(ctx, s, p.cfg.ChunkSize, func(edges []graphstore.Edge) error {
			users := make([]string, len(edges))
			for i, e := range edges {
				users[i] = e.Member
			}
			chunks++
			progress()
			_, err := p.log.Publish(ctx, eventlog.Append{
				Subject: eventlog.FanoutSubject(c.a.GetId()),
				Event: &tidingsv1.FanoutChunk{ActivityId: c.a.GetId(), UserIds: users, Remove: c.kind == deleted,
					Generation: p.Generation()},
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("chunk the fan-out of %s: %w", c.a.GetId(), err)
		}
	}
	p.logger.DebugContext(ctx, "large fan-out chunked", "activity", c.a.GetId(), "chunks", chunks)
	return nil
}

// addHotSources adds an entity that just turned hot to the hot sources of
// each of its followers (timelinestore.HotSourcesKey), a batch at a time.
// It reads the followers after the switch wrote the entity's pull ranges:
// a follow writes its edge, then reads the ranges (follows.go,
// markHotOpens), so whichever comes second sees the other.
func (p *Projector) addHotSources(ctx context.Context, entityKey string) error {
	return p.st.Graph.ScanFollowers(ctx, entityKey, p.cfg.WriteBatch, func(edges []graphstore.Edge) error {
		users := make([]string, len(edges))
		for i, e := range edges {
			users[i] = e.Member
		}
		return p.st.Timelines.AddHotSource(ctx, users, entityKey)
	})
}
