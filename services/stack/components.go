package stack

import (
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/eventlog"
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
}

// Overrides adjust how services are built beyond what config.Config says;
// tests use them to reach paths that configuration does not.
type Overrides struct {
	// Timelines, if set, changes the TimelineService's dependencies.
	Timelines func(*timelines.Deps)
}

// Wire builds the components over open connections; tests use it to serve
// the services exactly as a process does.
func Wire(log *eventlog.Log, rdb redis.UniversalClient, st *settings.Store, cfg config.Config, logger *slog.Logger, o Overrides) *Components {
	c := newComponents(&deps{log: log, js: log.JetStream(), rdb: rdb, settings: st}, cfg, logger, nil)
	c.overrides = o
	return c
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
func newComponents(d *deps, cfg config.Config, logger *slog.Logger, metrics *projection.Metrics) *Components {
	st := projection.NewStoresConfig(d.rdb, redisx.NewKeyspace(0), hot.Thresholds{On: cfg.HotOn, Off: cfg.HotOff}, NotificationConfig(cfg))
	proj := projection.New(projection.Deps{
		Log: d.log, Stores: st, Config: ProjectionConfig(cfg),
		Live: live.NewPublisher(d.log.JetStream().Conn()), Metrics: metrics, Logger: logger,
	})
	return &Components{
		deps:      d,
		cfg:       cfg,
		logger:    logger,
		projector: proj,
		graph:     graph.NewWriter(graph.Deps{Log: d.log, Projector: proj, Logger: logger}),
		poster:    activity.NewPoster(activity.Deps{Log: d.log, Projector: proj, Logger: logger}),
		visible:   visibility.New(st.Profiles, st.Records, st.Bodies),
		hub:       live.NewHub(d.log.JetStream().Conn()),
		comments:  conversation.NewWriter(conversation.Deps{Log: d.log, Projector: proj, Logger: logger}),
		state:     userstate.NewWriter(userstate.Deps{Log: d.log, Projector: proj, Logger: logger}),
		views:     conversation.NewViews(st.Conversations, st.UserState, st.Bodies),
	}
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
				Graph: st.Graph, Hot: st.Hot, HomeCap: c.cfg.HomeCap, InactiveAfter: c.cfg.InactiveAfter,
				Conversations: c.views, LastActivity: st.Conversations,
			}
			if c.overrides.Timelines != nil {
				c.overrides.Timelines(&td)
			}
			tidingsv1.RegisterTimelineServiceServer(srv, timelines.NewServer(td))
		case RoleAdmin:
			tidingsv1.RegisterAdminServiceServer(srv, admin.NewServer(admin.Deps{
				Log: d.log, RDB: d.rdb, Graph: c.graph, Visibility: c.visible, Profiles: profileServer,
				Settings: d.settings, Projector: c.projector, MaxFollowing: c.cfg.MaxFollowing, Logger: c.logger,
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
