// Package projection is where the event log becomes Redis state: the one
// place in Tidings that turns an event into keys. Each stream has one apply
// function, a batch handler that the worker's durable consumers call and
// that a rebuild replays through, so a rebuild is a replay through the live
// code by construction:
//
//	PROFILES    → profiles and their indexes           (pkg/profilestore)
//	RECORDS     → records and the by-type index        (pkg/recordstore)
//	FOLLOWS     → the follow graph, both ways          (pkg/graphstore),
//	              then a new follow's backfill and an unfollow's take-back
//	              in the follower's home timeline
//	ACTIVITIES  → bodies and tombstones                (pkg/activitystore),
//	              then the fan-out: entity feeds, pull ranges of hot
//	              entities (pkg/hot) and home timelines (pkg/timelinestore)
//	FANOUT      → the home timelines of one chunk of a large audience
//	CONVERSATIONS → comments, reactions and the summaries feed items show
//	              (pkg/conversationstore), then notifications
//	USERSTATE   → bookmarks and mutes (pkg/userstatestore), and
//	              notification read marks (pkg/notificationstore)
//
// Notifications (notifications.go) are a projection of FOLLOWS,
// ACTIVITIES, CONVERSATIONS and USERSTATE together: each stream's handler
// writes the notifications its events make.
//
// Services write the state part of their own events through at once
// (ApplyProfile, ApplyRecord, ApplyEdges, ApplyBody, ApplyConversation,
// ApplyUserState), so that a caller
// reads its write; those are the same functions the handlers use, and a
// write-through that fails is repaired when the worker applies the event.
//
// Every apply is idempotent and ordered by the event's position in its
// stream (versions, sequences, tombstones), so events may come twice, late
// or out of order, on any number of workers. The fan-out is one path for
// every activity event: a batch is decoded once and written in three
// pipelines whatever its mix of posts, edits and deletes (see
// HandleActivities); audiences larger than Config.ChunkSize are cut into
// FANOUT chunks that any worker takes.
package projection

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	"github.com/tidingshq/tidings/pkg/userstatestore"
)

// Stores are the Redis projections, one store per kind of state.
type Stores struct {
	Profiles  *profilestore.Store
	Records   *recordstore.Store
	Graph     *graphstore.Store
	Bodies    *activitystore.Store
	Timelines *timelinestore.Store
	// Hot keeps which entities are pulled at read time rather than pushed.
	Hot *hot.Store
	// Conversations keeps comments and reactions.
	Conversations *conversationstore.Store
	// UserState keeps bookmarks and mutes.
	UserState *userstatestore.Store
	// Notifications keeps each user's notifications and read marks.
	Notifications *notificationstore.Store
	// Keyspace names the keys of every store: one generation of the
	// projections.
	Keyspace *redisx.Keyspace
}

// NewStores returns every store over one Redis client and the keys of ks
// (one generation of the projections); th are the follower counts that
// make an entity hot. Notifications fold and are bounded by
// notificationstore.DefaultConfig.
func NewStores(rdb redis.UniversalClient, ks *redisx.Keyspace, th hot.Thresholds) Stores {
	return NewStoresConfig(rdb, ks, th, notificationstore.DefaultConfig())
}

// NewStoresConfig is NewStores with notifications folded and bounded by nc.
func NewStoresConfig(rdb redis.UniversalClient, ks *redisx.Keyspace, th hot.Thresholds, nc notificationstore.Config) Stores {
	us := userstatestore.New(rdb, ks)
	bodies := activitystore.New(rdb, ks)
	return Stores{
		Profiles:      profilestore.New(rdb, ks),
		Records:       recordstore.New(rdb, ks),
		Graph:         graphstore.New(rdb, ks),
		Bodies:        bodies,
		Timelines:     timelinestore.New(rdb, ks),
		Hot:           hot.New(rdb, ks, th),
		Conversations: conversationstore.New(rdb, ks, bodies.BodyKey),
		UserState:     us,
		Notifications: notificationstore.New(rdb, ks, nc, func(u string) string { return us.SetKey(userstatestore.Mute, u) }),
		Keyspace:      ks,
	}
}

// Config sizes the feeds and the work.
type Config struct {
	// HomeCap is the number of entries a home timeline keeps.
	HomeCap int
	// FeedCap is the number of entries an entity feed keeps.
	FeedCap int
	// ChunkSize is the largest audience written by the handler of its
	// event; larger ones are cut into FANOUT chunks of this size.
	ChunkSize int
	// BackfillCount is how many of an entity's newest activities a new
	// follow copies into the follower's home timeline.
	BackfillCount int
	// WriteBatch is how many timelines one pipeline writes, and the most
	// followers of one entity read in one command.
	WriteBatch int
	// InactiveAfter: users who have not read their home timeline for this
	// long are skipped; their next read rebuilds it. Zero pushes to all.
	InactiveAfter time.Duration
	// InboxCap is the number of entries a user's inbox (the items addressed
	// to them: mentions) keeps.
	InboxCap int
}

// DefaultConfig returns the defaults: 800-entry home timelines (as Twitter
// and Mastodon keep) and inboxes, 3,000-entry entity feeds, chunks of 5,000
// users, a backfill of 20, and users inactive after 14 days.
func DefaultConfig() Config {
	return Config{HomeCap: 800, FeedCap: 3000, ChunkSize: 5000, BackfillCount: 20, WriteBatch: 1000, InactiveAfter: 14 * 24 * time.Hour, InboxCap: 800}
}

// Notifier sends live notices of new home timeline items (pkg/live).
type Notifier interface {
	// Notify tells users that id landed in their home timelines.
	Notify(users []string, id ids.ID) error
	// NotifyEntity tells the watchers of a hot entity that it posted id.
	NotifyEntity(entityKey string, id ids.ID) error
	// NotifyItems tells a user that ids landed in their home timeline (a
	// follow's backfill).
	NotifyItems(userID string, list []ids.ID) error
	// NotifySwitch tells every watcher that an entity turned hot with the
	// post from.
	NotifySwitch(entityKey string, from ids.ID) error
	// NotifySources tells a user's watchers that the user started or
	// stopped following an entity.
	NotifySources(userID, entityKey string) error
	// NotifyNotification tells a user's notification watchers that an item
	// changed whose newest instance is at ms or later.
	NotifyNotification(user string, ms int64) error
}

// Metrics count what the projections write.
type Metrics struct {
	deliveries prometheus.Counter
}

// NewMetrics registers the projection metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{deliveries: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tidings_fanout_deliveries_total",
		Help: "Entries added to home timelines (as counted by Redis; duplicates and skipped inactive users are not counted).",
	})}
	if err := reg.Register(m.deliveries); err != nil {
		return nil, fmt.Errorf("register projection metrics: %w", err)
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

// Deps are what a Projector uses.
type Deps struct {
	// Log publishes the chunks of large fan-outs and is replayed by
	// rebuilds.
	Log    *eventlog.Log
	Stores Stores
	Config Config
	// Live, if set, is told of every home timeline insert.
	Live Notifier
	// Metrics, if set, counts the fan-out's deliveries.
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock of the inactivity rule; time.Now when nil.
	Now func() time.Time
}

// Projector applies events to the projections.
type Projector struct {
	log    *eventlog.Log
	st     Stores
	cfg    Config
	live   Notifier
	m      *Metrics
	logger *slog.Logger
	now    func() time.Time
}

// New returns a Projector.
func New(d Deps) *Projector {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Config.InboxCap == 0 {
		d.Config.InboxCap = d.Config.HomeCap
	}
	return &Projector{log: d.Log, st: d.Stores, cfg: d.Config, live: d.Live, m: d.Metrics, logger: d.Logger, now: d.Now}
}

// Stores returns the projections the Projector writes.
func (p *Projector) Stores() Stores { return p.st }

// Generation returns the generation of the projections the Projector
// writes (its stores' keyspace's).
func (p *Projector) Generation() uint64 { return p.st.Keyspace.Generation() }

// Silent returns a Projector over the same stores that sends no live
// notices and counts no deliveries: what writes the same events into a
// second generation while a rebuild fills it.
func (p *Projector) Silent() *Projector {
	q := *p
	q.live, q.m = nil, nil
	return &q
}

// The durable consumers that apply the streams, shared by every worker
// replica.
var (
	ProfilesConsumer   = eventlog.ConsumerSpec{Stream: eventlog.StreamProfiles, Durable: "profiles-projector"}
	RecordsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamRecords, Durable: "records-projector"}
	FollowsConsumer    = eventlog.ConsumerSpec{Stream: eventlog.StreamFollows, Durable: "follows-projector"}
	ActivitiesConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamActivities, Durable: "fanout", Workers: 4, Batch: 64}
	ChunksConsumer     = eventlog.ConsumerSpec{Stream: eventlog.StreamFanout, Durable: "fanout-chunks", Workers: 2}
	// ConversationsConsumer applies comments and reactions and writes their
	// notifications.
	ConversationsConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamConversations, Durable: "conversations", Workers: 2, Batch: 64}
	// UserStateConsumer applies bookmarks, mutes and read marks.
	UserStateConsumer = eventlog.ConsumerSpec{Stream: eventlog.StreamUserState, Durable: "userstate", Workers: 2, Batch: 64}
)

// Consumer is one durable consumer and the handler it runs.
type Consumer struct {
	Spec   eventlog.ConsumerSpec
	Handle eventlog.BatchHandler
}

// Consumers returns every durable consumer of the worker with its handler.
func (p *Projector) Consumers() []Consumer {
	return []Consumer{
		{ProfilesConsumer, p.HandleProfiles},
		{RecordsConsumer, p.HandleRecords},
		{FollowsConsumer, p.HandleFollows},
		{ActivitiesConsumer, p.HandleActivities},
		{ChunksConsumer, p.HandleChunks},
		{ConversationsConsumer, p.HandleConversations},
		{UserStateConsumer, p.HandleUserState},
	}
}

// ConsumerSpecs lists the durable consumers, for status and tests.
func ConsumerSpecs() []eventlog.ConsumerSpec {
	return []eventlog.ConsumerSpec{ProfilesConsumer, RecordsConsumer, FollowsConsumer, ActivitiesConsumer, ChunksConsumer, ConversationsConsumer, UserStateConsumer}
}

// activeSince is the read time below which a user counts as inactive.
func (p *Projector) activeSince() int64 {
	if p.cfg.InactiveAfter <= 0 {
		return 0
	}
	return p.now().Add(-p.cfg.InactiveAfter).Unix()
}

// Handler returns the batch handler of a durable consumer, by its name.
func (p *Projector) Handler(durable string) eventlog.BatchHandler {
	for _, c := range p.Consumers() {
		if c.Spec.Durable == durable {
			return c.Handle
		}
	}
	return nil
}
