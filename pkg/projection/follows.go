package projection

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// edgeChanges turns one FOLLOWS event at stream sequence seq into graph
// changes, each versioned by its log position.
func edgeChanges(seq uint64, ev *tidingsv1.FollowEvent) ([]graphstore.Change, error) {
	if n := len(ev.GetChanges()); n > graphstore.MaxChangesPerEvent {
		return nil, fmt.Errorf("follow event %d has %d changes, over %d", seq, n, graphstore.MaxChangesPerEvent)
	}
	out := make([]graphstore.Change, 0, len(ev.GetChanges()))
	eventMs := ev.GetTime().AsTime().UnixMilli()
	for i, c := range ev.GetChanges() {
		ms := eventMs
		if c.GetCreateTime() != nil {
			ms = c.GetCreateTime().AsTime().UnixMilli()
		}
		out = append(out, graphstore.Change{
			UserID:    c.GetUserId(),
			Entity:    entity.Key(c.GetEntity()),
			Following: c.GetFollowing(),
			Version:   graphstore.Version(seq, i),
			CreateMs:  ms,
		})
	}
	return out, nil
}

// ApplyEdges projects the edge changes of one FOLLOWS event at stream
// sequence seq onto the graph (both sides), and nothing else: what the
// write-through of a follow needs.
func (p *Projector) ApplyEdges(ctx context.Context, seq uint64, ev *tidingsv1.FollowEvent) error {
	changes, err := edgeChanges(seq, ev)
	if err != nil {
		return err
	}
	return p.st.Graph.Apply(ctx, changes)
}

// HandleFollows is the batch handler of the FOLLOWS stream. Events are
// applied one at a time, in order, since each reads the graph the one
// before it wrote: it projects the graph, notifies users of their new
// followers, then backfills new follows and takes unfollowed entities'
// activities back out of home timelines, and records either in the user's
// home sources (timelinestore.Sources): a follow opens an interval of the
// entity's feed from the oldest id it backfilled (everything when the feed
// held no more), an unfollow closes it after the feed's newest id
// (keep_history) or drops it. Only a change that is still the edge's newest
// acts, so a late follow does not backfill after a newer unfollow.
func (p *Projector) HandleFollows(ctx context.Context, ds []eventlog.Delivery) []error {
	return eventlog.OneAtATime(p.applyFollowEvent)(ctx, ds)
}

func (p *Projector) applyFollowEvent(ctx context.Context, d eventlog.Delivery) error {
	ev := &tidingsv1.FollowEvent{}
	if err := proto.Unmarshal(d.Data, ev); err != nil {
		return fmt.Errorf("decode follow event %d: %w", d.Sequence, err)
	}
	changes, err := edgeChanges(d.Sequence, ev)
	if err != nil {
		return err
	}
	if err := p.st.Graph.Apply(ctx, changes); err != nil {
		return err
	}
	pairs := make([]graphstore.Pair, len(changes))
	for i, c := range changes {
		pairs[i] = graphstore.Pair{UserID: c.UserID, Entity: c.Entity}
	}
	current, err := p.st.Graph.Versions(ctx, pairs)
	if err != nil {
		return err
	}
	if err := p.notifyFollows(ctx, ev, changes, current); err != nil {
		return err
	}
	// A bulk event follows one entity for many users: read its backfill
	// once, and write it to everyone who sees the same list in one step.
	// The writes are due only while the follow holds: one that lands after
	// a newer unfollow's take-back writes nothing.
	backfills := map[string]*backfill{}
	sameList := map[string][]string{}
	var opened []timelinestore.Open
	var inserts []guardedInsert
	for i, c := range changes {
		if abs(current[i]) != c.Version {
			continue
		}
		if !c.Following {
			if err := p.unfollowed(ctx, c, ev.GetChanges()[i].GetKeepHistory()); err != nil {
				return err
			}
			continue
		}
		b, ok := backfills[c.Entity]
		if !ok {
			if b, err = p.newBackfill(ctx, c.Entity); err != nil {
				return err
			}
			backfills[c.Entity] = b
		}
		opened = append(opened, timelinestore.Open{UserID: c.UserID, Entity: c.Entity, From: b.from})
		if b.public() {
			sameList[c.Entity] = append(sameList[c.Entity], c.UserID)
			continue
		}
		inserts = append(inserts, guardedInsert{[]string{c.UserID}, b.visibleTo(c.UserID), []string{c.Entity}})
	}
	for e, users := range sameList {
		inserts = append(inserts, guardedInsert{users, backfills[e].ids, []string{e}})
	}
	reached, err := p.insertIfFollowing(ctx, inserts)
	if err != nil {
		return err
	}
	for i, users := range reached {
		for _, u := range users {
			p.notifyItems(ctx, u, inserts[i].ids)
		}
	}
	if err := p.markHotOpens(ctx, opened); err != nil {
		return err
	}
	// The sources open once the backfill is in: a read between the two
	// sees the follow's items or none of them.
	if err := p.st.Timelines.OpenSources(ctx, opened); err != nil {
		return err
	}
	for _, c := range opened {
		p.notifySources(ctx, c.UserID, c.Entity)
	}
	return nil
}

// markHotOpens sets Hot on the opens of entities that have pull ranges, so
// that they join the users' hot sources. It reads the ranges after the
// follow edges were written: a hot switch writes the ranges, then reads the
// followers (activities.go, addHotSources), so whichever comes second sees
// the other, and no follower of a hot entity is left without it.
func (p *Projector) markHotOpens(ctx context.Context, opened []timelinestore.Open) error {
	if len(opened) == 0 || p.st.Hot == nil {
		return nil
	}
	ranges := map[string]redisx.Result[[]hot.Range]{}
	if err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		for _, o := range opened {
			if ranges[o.Entity] == nil {
				ranges[o.Entity] = p.st.Hot.QueueRanges(ctx, pipe, o.Entity)
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("read pull ranges of %d followed entities: %w", len(ranges), err)
	}
	for i, o := range opened {
		rs, err := ranges[o.Entity]()
		if err != nil {
			return err
		}
		opened[i].Hot = len(rs) > 0
	}
	return nil
}

// unfollowed records an unfollow in the user's home sources: with keep, the
// entity's ids up to its feed's newest go on reaching the user (a kept
// history); without, its activities leave the home timeline, but for those
// that reach the user another way.
func (p *Projector) unfollowed(ctx context.Context, c graphstore.Change, keep bool) error {
	var end ids.ID
	if keep {
		newest, err := p.st.Timelines.Newest(ctx, p.st.Timelines.FeedKey(c.Entity))
		if err != nil {
			return err
		}
		end = timelinestore.After(newest)
	}
	if err := p.st.Timelines.CloseSource(ctx, c.UserID, c.Entity, keep, end); err != nil {
		return err
	}
	if !keep {
		if err := p.takeBack(ctx, c.UserID, c.Entity); err != nil {
			return err
		}
	}
	p.notifySources(ctx, c.UserID, c.Entity)
	return nil
}

// notifyItems tells a user's watchers of backfilled ids; best effort, as
// every live notice.
func (p *Projector) notifyItems(ctx context.Context, userID string, list []ids.ID) {
	if p.live == nil || len(list) == 0 {
		return
	}
	if err := p.live.NotifyItems(userID, list); err != nil {
		p.logger.WarnContext(ctx, "live notice not sent", "user", userID, "error", err)
	}
}

// notifySources tells a user's watchers that the user's home sources
// changed.
func (p *Projector) notifySources(ctx context.Context, userID, entityKey string) {
	if p.live == nil {
		return
	}
	if err := p.live.NotifySources(userID, entityKey); err != nil {
		p.logger.WarnContext(ctx, "live notice not sent", "user", userID, "error", err)
	}
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// backfill is an entity's newest activities, which a new follower's home
// timeline receives, less what the follower may not see.
type backfill struct {
	ids []ids.ID
	// visible holds, per id, the filter of a restricted record (nil:
	// everyone may see it).
	visible []func(string) bool
	// from is where the follow's interval of the entity's feed starts: the
	// oldest id read, or 0 when the feed held no more.
	from ids.ID
}

// newBackfill reads an entity's backfill: its feed's newest ids, their
// bodies, and the audience of each record they are about.
func (p *Projector) newBackfill(ctx context.Context, entityKey string) (*backfill, error) {
	b := &backfill{}
	key := p.st.Timelines.FeedKey(entityKey)
	if p.cfg.BackfillCount == 0 {
		newest, err := p.st.Timelines.Newest(ctx, key)
		if newest != 0 {
			b.from = timelinestore.After(newest)
		}
		return b, err
	}
	recent, more, err := p.st.Timelines.Page(ctx, key, 0, p.cfg.BackfillCount)
	if err != nil || len(recent) == 0 {
		return b, err
	}
	if more {
		b.from = recent[len(recent)-1]
	}
	acts, err := p.st.Bodies.GetMany(ctx, idStrings(recent))
	if err != nil {
		return nil, err
	}
	audiences, err := p.audiences(ctx, acts)
	if err != nil {
		return nil, err
	}
	for i, a := range acts {
		if a == nil {
			continue // deleted
		}
		b.ids = append(b.ids, recent[i])
		b.visible = append(b.visible, audiences[i])
	}
	return b, nil
}

// public reports whether every follower gets the same list.
func (b *backfill) public() bool {
	for _, v := range b.visible {
		if v != nil {
			return false
		}
	}
	return true
}

// visibleTo returns the ids a user may see.
func (b *backfill) visibleTo(userID string) []ids.ID {
	var out []ids.ID
	for i, id := range b.ids {
		if b.visible[i] == nil || b.visible[i](userID) {
			out = append(out, id)
		}
	}
	return out
}

// takeBack removes an unfollowed entity's activities from a home timeline,
// keeping those that are there for another reason: the user wrote it, is
// mentioned in it, or receives it through one of its sources still (the
// other source, followed; a history of either kept from before).
func (p *Projector) takeBack(ctx context.Context, userID, entityKey string) error {
	home, err := p.st.Timelines.All(ctx, p.st.Timelines.HomeKey(userID))
	if err != nil || len(home) == 0 {
		return err
	}
	feed, err := p.st.Timelines.All(ctx, p.st.Timelines.FeedKey(entityKey))
	if err != nil {
		return err
	}
	inFeed := make(map[ids.ID]bool, len(feed))
	for _, id := range feed {
		inFeed[id] = true
	}
	var candidates []ids.ID
	for _, id := range home {
		if inFeed[id] {
			candidates = append(candidates, id)
		}
	}
	if len(candidates) == 0 {
		return nil
	}
	acts, err := p.st.Bodies.GetMany(ctx, idStrings(candidates))
	if err != nil {
		return err
	}
	// The sources as the unfollow left them: the entity's open interval is
	// gone, its kept histories and the other sources stay.
	src, err := p.st.Timelines.Sources(ctx, userID)
	if err != nil {
		return err
	}
	var drop []ids.ID
	for i, a := range acts {
		if a == nil || !stillReaches(a, candidates[i], userID, src) {
			drop = append(drop, candidates[i])
		}
	}
	return p.st.Timelines.Remove(ctx, []string{p.st.Timelines.HomeKey(userID)}, drop)
}

// stillReaches reports whether an activity reaches a user whose sources are
// src: as its author, by a mention, or through an interval of one of its
// sources.
func stillReaches(a *tidingsv1.Activity, id ids.ID, userID string, src timelinestore.Sources) bool {
	return entity.ActorUser(a) == userID || slices.Contains(a.GetMentionUserIds(), userID) ||
		src.Reaches(entity.Sources(a), id)
}

func idStrings(list []ids.ID) []string {
	out := make([]string, len(list))
	for i, id := range list {
		out[i] = id.String()
	}
	return out
}
