// Package fanout writes activities into feeds. For each ACTIVITIES event it
// stores the body once, then writes the id into the entity feeds of the
// actor and the record and into the home timeline of everyone in the
// audience: the followers of the actor and of the record, the mentioned
// users and the actor, each once, leaving out those who may not see a
// restricted record. Audiences above Config.ChunkSize are cut into FANOUT
// chunks that any worker picks up. For FOLLOWS events it backfills a new
// follow's recent activities and takes an unfollowed entity's activities
// back out.
//
// Every write is idempotent and ordered by activity id, so the worker may
// see events twice or out of order.
package fanout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Config sizes the feeds and the work.
type Config struct {
	// HomeCap is the number of entries a home timeline keeps.
	HomeCap int
	// FeedCap is the number of entries an entity feed keeps.
	FeedCap int
	// ChunkSize is the largest audience written in one step; larger ones
	// are cut into chunks of this size for any worker to take.
	ChunkSize int
	// BackfillCount is how many of an entity's newest activities a new
	// follow copies into the follower's home timeline.
	BackfillCount int
	// WriteBatch is how many timelines one pipeline writes.
	WriteBatch int
	// InactiveAfter: users who have not read their home timeline for this
	// long are skipped; their next read rebuilds it. Zero pushes to all.
	InactiveAfter time.Duration
}

// DefaultConfig returns the defaults: 800-entry home timelines (as Twitter
// and Mastodon keep), 3,000-entry entity feeds, chunks of 5,000 users, a
// backfill of 20.
func DefaultConfig() Config {
	return Config{HomeCap: 800, FeedCap: 3000, ChunkSize: 5000, BackfillCount: 20, WriteBatch: 1000, InactiveAfter: 14 * 24 * time.Hour}
}

// Stores are what the fan-out reads and writes.
type Stores struct {
	Graph     *graphstore.Store
	Records   *recordstore.Store
	Bodies    *activitystore.Store
	Timelines *timelinestore.Store
	// Live, if set, is told of every home timeline insert (pkg/live).
	Live Notifier
	// Hot, if set, decides which sources are pulled at read time rather
	// than pushed (pkg/hot).
	Hot *hot.Store
	// Metrics, if set, counts what the fan-out writes.
	Metrics *Metrics
}

// Metrics count the fan-out's work.
type Metrics struct {
	deliveries prometheus.Counter
}

// NewMetrics registers the fan-out metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{deliveries: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tidings_fanout_deliveries_total",
		Help: "Entries added to home timelines (as counted by Redis; duplicates and skipped inactive users are not counted).",
	})}
	if err := reg.Register(m.deliveries); err != nil {
		return nil, fmt.Errorf("register fan-out metrics: %w", err)
	}
	return m, nil
}

// delivered counts n new home timeline entries; a nil Metrics counts
// nothing.
func (m *Metrics) delivered(n int64) {
	if m != nil {
		m.deliveries.Add(float64(n))
	}
}

// Notifier sends live notices of new home timeline items.
type Notifier interface {
	// Notify tells users that id landed in their home timelines.
	Notify(users []string, id ids.ID) error
	// NotifyEntity tells the watchers of a hot entity that it posted id.
	NotifyEntity(entityKey string, id ids.ID) error
}

// Fanout writes feeds.
type Fanout struct {
	log    *eventlog.Log
	st     Stores
	cfg    Config
	logger *slog.Logger
}

// New returns a Fanout.
func New(log *eventlog.Log, st Stores, cfg Config, logger *slog.Logger) *Fanout {
	return &Fanout{log: log, st: st, cfg: cfg, logger: logger}
}

// HandleActivity is the handler of the ACTIVITIES stream.
func (f *Fanout) HandleActivity(ctx context.Context, d eventlog.Delivery) error {
	ev := &tidingsv1.ActivityEvent{}
	if err := proto.Unmarshal(d.Data, ev); err != nil {
		return fmt.Errorf("decode activity event %d: %w", d.Sequence, err)
	}
	deleted, err := activity.Apply(ctx, f.st.Bodies, d.Sequence, ev)
	if err != nil {
		return err
	}
	switch c := ev.GetChange().(type) {
	case *tidingsv1.ActivityEvent_Posted:
		if deleted {
			return nil // a late post of a deleted activity writes nothing
		}
		return f.distribute(ctx, c.Posted, false, d.Progress)
	case *tidingsv1.ActivityEvent_DeletedId:
		if a := ev.GetDeletedActivity(); a.GetId() == c.DeletedId {
			return f.distribute(ctx, a, true, d.Progress)
		}
	}
	return nil
}

// sources are the entities whose followers are in an activity's audience.
func sources(a *tidingsv1.Activity) []string {
	var out []string
	if u := activity.ActorUser(a); u != "" {
		out = append(out, entity.UserKey(u))
	}
	if r := a.GetRecord(); r != nil {
		out = append(out, entity.RecordKey(r))
	}
	return out
}

// distribute inserts (or removes) an activity in its entity feeds and its
// audience's home timelines.
func (f *Fanout) distribute(ctx context.Context, a *tidingsv1.Activity, remove bool, progress func() error) error {
	id, err := ids.Parse(a.GetId())
	if err != nil {
		return fmt.Errorf("activity %q: %w", a.GetId(), err)
	}
	srcs := sources(a)
	feeds := make([]string, len(srcs))
	for i, s := range srcs {
		feeds[i] = timelinestore.FeedKey(s)
	}
	if err := f.write(ctx, feeds, f.cfg.FeedCap, id, remove); err != nil {
		return err
	}
	visible, err := f.visibility(ctx, a)
	if err != nil {
		return err
	}
	direct := slices.Clone(a.GetMentionUserIds())
	if u := activity.ActorUser(a); u != "" {
		direct = append(direct, u)
	}
	// Followers of a hot source read its feed instead of receiving a copy.
	var pulledNow map[string][]hot.Range
	if remove && f.st.Hot != nil {
		if pulledNow, err = f.st.Hot.Pulled(ctx); err != nil {
			return err
		}
	}
	var total int64
	pushSrcs := srcs[:0:0]
	for _, s := range srcs {
		n, err := f.st.Graph.FollowerCount(ctx, s)
		if err != nil {
			return err
		}
		pulled := false
		switch {
		case f.st.Hot != nil && !remove:
			if pulled, err = f.st.Hot.Decide(ctx, s, id, n); err != nil {
				return err
			}
		case remove:
			for _, r := range pulledNow[s] {
				pulled = pulled || r.Contains(id)
			}
		}
		if !pulled {
			pushSrcs = append(pushSrcs, s)
			total += n
		} else if f.st.Live != nil {
			if err := f.st.Live.NotifyEntity(s, id); err != nil {
				f.logger.WarnContext(ctx, "live notice not sent", "entity", s, "error", err)
			}
		}
	}
	srcs = pushSrcs
	if total+int64(len(direct)) <= int64(f.cfg.ChunkSize) {
		audience := direct
		for _, s := range srcs {
			err := f.st.Graph.ScanFollowers(ctx, s, f.cfg.ChunkSize, func(edges []graphstore.Edge) error {
				for _, e := range edges {
					audience = append(audience, e.Member)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		slices.Sort(audience)
		return f.writeHomes(ctx, slices.Compact(audience), visible, id, remove)
	}
	// A large audience: the direct part now, the followers in chunks that
	// any worker takes. A user following both sources gets two inserts of
	// one id, which the timeline ignores.
	if err := f.writeHomes(ctx, direct, visible, id, remove); err != nil {
		return err
	}
	var chunks int
	for _, s := range srcs {
		err := f.st.Graph.ScanFollowers(ctx, s, f.cfg.ChunkSize, func(edges []graphstore.Edge) error {
			users := make([]string, len(edges))
			for i, e := range edges {
				users[i] = e.Member
			}
			chunks++
			if progress != nil {
				_ = progress()
			}
			_, err := f.log.Publish(ctx, eventlog.Append{
				Subject: eventlog.FanoutSubject(a.GetId()),
				Event:   &tidingsv1.FanoutChunk{ActivityId: a.GetId(), UserIds: users, Remove: remove},
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("chunk fan-out of %s: %w", a.GetId(), err)
		}
	}
	f.logger.DebugContext(ctx, "large fan-out chunked", "activity", a.GetId(), "audience", total, "chunks", chunks)
	return nil
}

// HandleChunk is the handler of the FANOUT work queue.
func (f *Fanout) HandleChunk(ctx context.Context, d eventlog.Delivery) error {
	c := &tidingsv1.FanoutChunk{}
	if err := proto.Unmarshal(d.Data, c); err != nil {
		return fmt.Errorf("decode fan-out chunk %d: %w", d.Sequence, err)
	}
	id, err := ids.Parse(c.GetActivityId())
	if err != nil {
		return fmt.Errorf("fan-out chunk %d: %w", d.Sequence, err)
	}
	if c.GetRemove() {
		return f.writeHomes(ctx, c.GetUserIds(), nil, id, true)
	}
	a, err := f.st.Bodies.Get(ctx, c.GetActivityId())
	if errors.Is(err, activitystore.ErrNotFound) {
		return nil // deleted since: nothing to write
	}
	if err != nil {
		return err
	}
	visible, err := f.visibility(ctx, a)
	if err != nil {
		return err
	}
	return f.writeHomes(ctx, c.GetUserIds(), visible, id, false)
}

// visibility returns the filter of a restricted record's readers, or nil
// when everyone may see the activity.
func (f *Fanout) visibility(ctx context.Context, a *tidingsv1.Activity) (func(string) bool, error) {
	ref := a.GetRecord()
	if ref == nil {
		return nil, nil
	}
	rec, err := f.st.Records.Get(ctx, ref)
	if errors.Is(err, recordstore.ErrNotFound) {
		// A deleted record's activities reach no one new.
		return func(string) bool { return false }, nil
	}
	if err != nil {
		return nil, err
	}
	if rec.GetVisibility() != tidingsv1.Visibility_VISIBILITY_RESTRICTED {
		return nil, nil
	}
	return func(u string) bool { return recordstore.UserMaySee(rec, u) }, nil
}

func (f *Fanout) writeHomes(ctx context.Context, users []string, visible func(string) bool, id ids.ID, remove bool) error {
	batch := min(len(users), f.cfg.WriteBatch)
	keys := make([]string, 0, batch)
	to := make([]string, 0, batch)
	for i, u := range users {
		if remove || visible == nil || visible(u) {
			keys = append(keys, timelinestore.HomeKey(u))
			to = append(to, u)
		}
		if len(keys) == f.cfg.WriteBatch || (i == len(users)-1 && len(keys) > 0) {
			var err error
			if remove {
				err = f.st.Timelines.Remove(ctx, keys, []ids.ID{id})
			} else {
				var added int64
				added, err = f.st.Timelines.InsertHomes(ctx, to, f.cfg.HomeCap, f.activeSince(), []ids.ID{id})
				f.st.Metrics.delivered(added)
			}
			if err != nil {
				return err
			}
			if !remove && f.st.Live != nil {
				// Best effort: a lost notice is made good on resume.
				if err := f.st.Live.Notify(to, id); err != nil {
					f.logger.WarnContext(ctx, "live notices not sent", "activity", id.String(), "error", err)
				}
			}
			keys, to = keys[:0], to[:0]
		}
	}
	return nil
}

// activeSince is the read time below which a user counts as inactive.
func (f *Fanout) activeSince() int64 {
	if f.cfg.InactiveAfter <= 0 {
		return 0
	}
	return time.Now().Add(-f.cfg.InactiveAfter).Unix()
}

func (f *Fanout) write(ctx context.Context, keys []string, cap int, id ids.ID, remove bool) error {
	if remove {
		return f.st.Timelines.Remove(ctx, keys, []ids.ID{id})
	}
	_, err := f.st.Timelines.Insert(ctx, keys, cap, []ids.ID{id})
	return err
}

// HandleFollows is the handler of the FOLLOWS stream: it projects the
// graph, then backfills new follows and cleans up unfollows. Only a change
// that is still the edge's newest acts, so a late follow does not backfill
// after a newer unfollow.
func (f *Fanout) HandleFollows(ctx context.Context, d eventlog.Delivery) error {
	ev := &tidingsv1.FollowEvent{}
	if err := proto.Unmarshal(d.Data, ev); err != nil {
		return fmt.Errorf("decode follow event %d: %w", d.Sequence, err)
	}
	if len(ev.GetChanges()) > graphstore.MaxChangesPerEvent {
		return fmt.Errorf("follow event %d has %d changes, over %d", d.Sequence, len(ev.GetChanges()), graphstore.MaxChangesPerEvent)
	}
	changes := graph.Changes(d.Sequence, ev)
	if err := f.st.Graph.Apply(ctx, changes); err != nil {
		return err
	}
	pairs := make([]graphstore.Pair, len(changes))
	for i, c := range changes {
		pairs[i] = graphstore.Pair{UserID: c.UserID, Entity: c.Entity}
	}
	current, err := f.st.Graph.Versions(ctx, pairs)
	if err != nil {
		return err
	}
	// A bulk event follows one entity for many users: read its backfill
	// once, and write it to everyone who sees the same list in one step.
	backfills := map[string]*backfill{}
	sameList := map[string][]string{}
	for i, c := range changes {
		if abs(current[i]) != c.Version {
			continue
		}
		if !c.Following {
			if !ev.GetChanges()[i].GetKeepHistory() {
				if err := f.takeBack(ctx, c.UserID, c.Entity); err != nil {
					return err
				}
			}
			continue
		}
		b, ok := backfills[c.Entity]
		if !ok {
			if b, err = f.newBackfill(ctx, c.Entity); err != nil {
				return err
			}
			backfills[c.Entity] = b
		}
		if b.public() {
			sameList[c.Entity] = append(sameList[c.Entity], c.UserID)
			continue
		}
		if _, err := f.st.Timelines.InsertHomes(ctx, []string{c.UserID}, f.cfg.HomeCap, f.activeSince(), b.visibleTo(c.UserID)); err != nil {
			return err
		}
	}
	for e, users := range sameList {
		if _, err := f.st.Timelines.InsertHomes(ctx, users, f.cfg.HomeCap, f.activeSince(), backfills[e].ids); err != nil {
			return err
		}
	}
	return nil
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
}

// newBackfill reads an entity's backfill: its feed's newest ids, their
// bodies, and the visibility of each record they are about (once each).
func (f *Fanout) newBackfill(ctx context.Context, entityKey string) (*backfill, error) {
	b := &backfill{}
	if f.cfg.BackfillCount == 0 {
		return b, nil
	}
	recent, _, err := f.st.Timelines.Page(ctx, timelinestore.FeedKey(entityKey), 0, f.cfg.BackfillCount)
	if err != nil || len(recent) == 0 {
		return b, err
	}
	acts, err := f.st.Bodies.GetMany(ctx, idStrings(recent))
	if err != nil {
		return nil, err
	}
	byRecord := map[string]func(string) bool{}
	for i, a := range acts {
		if a == nil {
			continue // deleted
		}
		var visible func(string) bool
		if r := a.GetRecord(); r != nil {
			key := entity.RecordKey(r)
			v, seen := byRecord[key]
			if !seen {
				if v, err = f.visibility(ctx, a); err != nil {
					return nil, err
				}
				byRecord[key] = v
			}
			visible = v
		}
		b.ids = append(b.ids, recent[i])
		b.visible = append(b.visible, visible)
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
// keeping those that are there for another reason: the user still follows
// the activity's other source, wrote it, or is mentioned in it.
func (f *Fanout) takeBack(ctx context.Context, userID, entityKey string) error {
	home, err := f.st.Timelines.All(ctx, timelinestore.HomeKey(userID))
	if err != nil || len(home) == 0 {
		return err
	}
	feed, err := f.st.Timelines.All(ctx, timelinestore.FeedKey(entityKey))
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
	acts, err := f.st.Bodies.GetMany(ctx, idStrings(candidates))
	if err != nil {
		return err
	}
	var drop []ids.ID
	for i, a := range acts {
		if a == nil {
			drop = append(drop, candidates[i])
			continue
		}
		stay, err := f.stillReaches(ctx, a, userID, entityKey)
		if err != nil {
			return err
		}
		if !stay {
			drop = append(drop, candidates[i])
		}
	}
	return f.st.Timelines.Remove(ctx, []string{timelinestore.HomeKey(userID)}, drop)
}

func (f *Fanout) stillReaches(ctx context.Context, a *tidingsv1.Activity, userID, gone string) (bool, error) {
	if activity.ActorUser(a) == userID || slices.Contains(a.GetMentionUserIds(), userID) {
		return true, nil
	}
	var others []string
	for _, s := range sources(a) {
		if s != gone {
			others = append(others, s)
		}
	}
	if len(others) == 0 {
		return false, nil
	}
	follows, err := f.st.Graph.IsFollowing(ctx, userID, others)
	if err != nil {
		return false, err
	}
	return slices.Contains(follows, true), nil
}

func idStrings(list []ids.ID) []string {
	out := make([]string, len(list))
	for i, id := range list {
		out[i] = id.String()
	}
	return out
}
