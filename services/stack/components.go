package stack

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/userstate"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/activities"
	"github.com/tidingshq/tidings/services/admin"
	"github.com/tidingshq/tidings/services/conversations"
	"github.com/tidingshq/tidings/services/follows"
	"github.com/tidingshq/tidings/services/notifications"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/records"
	"github.com/tidingshq/tidings/services/timelines"
)

// Components are the stores and writers a process shares between its
// services and its worker. Constructors are explicit; there are few enough
// parts that wiring them by hand stays readable.
type Components struct {
	deps      *deps
	cfg       config.Config
	logger    *slog.Logger
	overrides Overrides
	projector *projection.Projector
	graph     *graph.Writer
	poster    *activity.Poster
	visible   *visibility.Checker
	hub       *live.Hub
	comments  *conversation.Writer
	state     *userstate.Writer
	views     *conversation.Views
	// keyspace is the generation of the projections the services read and
	// write through (it follows the current one); projectors holds the
	// worker's Projector of each generation it writes.
	keyspace   *redisx.Keyspace
	metrics    *projection.Metrics
	projectors sync.Map // uint64 → *projection.Projector
}

// Overrides adjust how services are built beyond what config.Config says;
// tests use them to reach paths that configuration does not.
type Overrides struct {
	// Timelines, if set, changes the TimelineService's dependencies.
	Timelines func(*timelines.Deps)
	// Now, if set, is the clock of the inactivity rule, in the fan-out and
	// in home reads alike.
	Now func() time.Time
}

// Wire builds the components over open connections; tests use it to serve
// the services exactly as a process does.
func Wire(log *eventlog.Log, rdb redis.UniversalClient, st *settings.Store, gens *generation.Store, cfg config.Config, logger *slog.Logger, o Overrides) *Components {
	c := newComponents(context.Background(), &deps{log: log, js: log.JetStream(), rdb: rdb, settings: st, gens: gens}, cfg, logger, nil, o)
	return c
}

// FollowGenerations keeps the services on the current generation of the
// projections until ctx ends: every process switches as soon as a rebuild
// switches (pkg/generation).
func (c *Components) FollowGenerations(ctx context.Context) error {
	if c.deps.gens == nil {
		return nil
	}
	return c.deps.gens.Watch(ctx, func(st generation.State) {
		if st.Current != c.keyspace.Generation() {
			c.logger.InfoContext(ctx, "the projections' generation changed", "from", c.keyspace.Generation(), "to", st.Current)
			c.keyspace.Switch(st.Current)
		}
	})
}

// ProjectorFor returns the worker's Projector of one generation of the
// projections: its keys fixed to that generation, so that a batch is
// written whole into the generations it was meant for even when readers
// switch meanwhile.
func (c *Components) ProjectorFor(gen uint64) *projection.Projector {
	if p, ok := c.projectors.Load(gen); ok {
		return p.(*projection.Projector)
	}
	p, _ := c.projectors.LoadOrStore(gen, c.newProjector(redisx.NewKeyspace(gen)))
	return p.(*projection.Projector)
}

func (c *Components) newProjector(ks *redisx.Keyspace) *projection.Projector {
	return projection.New(projection.Deps{
		Log: c.deps.log, Stores: projection.NewStoresConfig(c.deps.rdb, ks, hot.Thresholds{On: c.cfg.HotOn, Off: c.cfg.HotOff}, NotificationConfig(c.cfg)),
		Config: ProjectionConfig(c.cfg), Live: live.NewPublisher(c.deps.log.JetStream().Conn()), Metrics: c.metrics, Logger: c.logger,
		Now: c.overrides.Now,
	})
}

// Hub returns the live hub that Watch streams from.
func (c *Components) Hub() *live.Hub { return c.hub }

// Projector returns the projections' apply functions, which the worker
// runs and rebuilds replay through.
func (c *Components) Projector() *projection.Projector { return c.projector }

// ProjectionConfig returns the feed sizes of a configuration.
func ProjectionConfig(cfg config.Config) projection.Config {
	p := projection.DefaultConfig()
	p.HomeCap, p.FeedCap, p.ChunkSize, p.BackfillCount = cfg.HomeCap, cfg.FeedCap, cfg.FanoutChunk, cfg.Backfill
	p.InactiveAfter = cfg.InactiveAfter
	return p
}

// newComponents builds the components; metrics, if set, counts the
// fan-out's deliveries.
func newComponents(ctx context.Context, d *deps, cfg config.Config, logger *slog.Logger, metrics *projection.Metrics, o Overrides) *Components {
	var current uint64
	if d.gens != nil {
		// Where a rebuild has switched readers before this process started.
		if g, err := d.gens.Current(ctx); err == nil {
			current = g
		} else {
			logger.Warn("the projections' current generation is not known yet; reading the first until it is", "error", err)
		}
	}
	c := &Components{deps: d, cfg: cfg, logger: logger, keyspace: redisx.NewKeyspace(current), metrics: metrics, overrides: o}
	proj := c.newProjector(c.keyspace)
	st := proj.Stores()
	c.projector = proj
	c.graph = graph.NewWriter(graph.Deps{Log: d.log, Projector: proj, Logger: logger})
	c.poster = activity.NewPoster(activity.Deps{Log: d.log, Projector: proj, Logger: logger})
	c.visible = visibility.New(st.Profiles, st.Records, st.Bodies)
	c.hub = live.NewHub(d.log.JetStream().Conn())
	c.comments = conversation.NewWriter(conversation.Deps{Log: d.log, Projector: proj, Logger: logger})
	c.state = userstate.NewWriter(userstate.Deps{Log: d.log, Projector: proj, Logger: logger})
	c.views = conversation.NewViews(st.Conversations, st.UserState, st.Bodies)
	return c
}

// NotificationConfig returns how a configuration folds and bounds
// notifications.
func NotificationConfig(cfg config.Config) notificationstore.Config {
	return notificationstore.Config{Window: cfg.NotifyWindow, Cap: cfg.NotifyCap, MaxAge: cfg.NotifyMaxAge}
}

// Register adds the services of roles to srv.
func (c *Components) Register(srv *grpcserver.Server, roles []Role) {
	d := c.deps
	st := c.projector.Stores()
	profileServer := profiles.NewServer(profiles.Deps{
		Log: d.log, Projector: c.projector, Settings: d.settings, Graph: c.graph, Logger: c.logger,
	})
	for _, r := range roles {
		switch r {
		case RoleProfiles:
			tidingsv1.RegisterProfileServiceServer(srv, profileServer)
		case RoleFollows:
			tidingsv1.RegisterFollowServiceServer(srv, follows.NewServer(follows.Deps{
				Graph: c.graph, Visibility: c.visible, MaxFollowing: c.cfg.MaxFollowing,
			}))
		case RoleRecords:
			tidingsv1.RegisterRecordServiceServer(srv, records.NewServer(records.Deps{
				Log: d.log, Projector: c.projector, Visibility: c.visible,
				Graph: c.graph, Poster: c.poster, Settings: d.settings, Logger: c.logger,
			}))
		case RoleActivities:
			tidingsv1.RegisterActivityServiceServer(srv, activities.NewServer(activities.Deps{
				Poster: c.poster, Visibility: c.visible, Conversations: c.views, UserState: c.state, Profiles: st.Profiles,
			}))
		case RoleTimelines:
			td := timelines.Deps{
				Timelines: st.Timelines, Bodies: st.Bodies, Profiles: st.Profiles, Records: st.Records,
				Visibility: c.visible, Live: c.hub, WatchBuffer: c.cfg.WatchBuffer,
				Hot: st.Hot, HomeCap: c.cfg.HomeCap, InactiveAfter: c.cfg.InactiveAfter, Now: c.overrides.Now,
				Conversations: c.views, LastActivity: st.Conversations,
			}
			if c.overrides.Timelines != nil {
				c.overrides.Timelines(&td)
			}
			tidingsv1.RegisterTimelineServiceServer(srv, timelines.NewServer(td))
		case RoleAdmin:
			tidingsv1.RegisterAdminServiceServer(srv, admin.NewServer(admin.Deps{
				Log: d.log, RDB: d.rdb, Graph: c.graph, Visibility: c.visible, Profiles: profileServer,
				Settings: d.settings, Projector: c.projector, Generations: d.gens, MaxFollowing: c.cfg.MaxFollowing, Logger: c.logger,
			}))
		case RoleConversations:
			tidingsv1.RegisterConversationServiceServer(srv, conversations.NewServer(conversations.Deps{
				Writer: c.comments, Profiles: st.Profiles, Visibility: c.visible,
			}))
		case RoleNotifications:
			tidingsv1.RegisterNotificationServiceServer(srv, notifications.NewServer(notifications.Deps{
				Writer: c.state, Notifications: st.Notifications, Conversations: st.Conversations, Bodies: st.Bodies,
				Profiles: st.Profiles, Records: st.Records, UserState: st.UserState, Visibility: c.visible,
				Live: c.hub, WatchBuffer: c.cfg.WatchBuffer,
			}))
		case RoleWorker:
		}
	}
}
