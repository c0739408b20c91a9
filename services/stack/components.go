package stack

import (
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/activitystore"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/activities"
	"github.com/tidingshq/tidings/services/admin"
	"github.com/tidingshq/tidings/services/follows"
	"github.com/tidingshq/tidings/services/profiles"
	"github.com/tidingshq/tidings/services/records"
	"github.com/tidingshq/tidings/services/timelines"
	"github.com/tidingshq/tidings/services/worker"
)

// Components are the stores and writers a process shares between its
// services and its worker. Constructors are explicit; there are few enough
// parts that wiring them by hand stays readable.
type Components struct {
	deps        *deps
	cfg         config.Config
	logger      *slog.Logger
	projections worker.Projections
	graph       *graph.Writer
	poster      *activity.Poster
	entities    *follows.Entities
	hub         *live.Hub
}

// Wire builds the components over open connections; tests use it to serve
// the services exactly as a process does.
func Wire(log *eventlog.Log, rdb redis.UniversalClient, st *settings.Store, cfg config.Config, logger *slog.Logger) *Components {
	return newComponents(&deps{log: log, js: log.JetStream(), rdb: rdb, settings: st}, cfg, logger)
}

// Hub returns the live hub that Watch streams from.
func (c *Components) Hub() *live.Hub { return c.hub }

// Projections returns the stores the worker writes.
func (c *Components) Projections() worker.Projections { return c.projections }

func newComponents(d *deps, cfg config.Config, logger *slog.Logger) *Components {
	proj := worker.Projections{
		Profiles:   profilestore.New(d.rdb),
		Records:    recordstore.New(d.rdb),
		Graph:      graphstore.New(d.rdb),
		Activities: activitystore.New(d.rdb),
		Timelines:  timelinestore.New(d.rdb),
		Live:       live.NewPublisher(d.log.JetStream().Conn()),
		Hot:        hot.New(d.rdb, hot.Thresholds{On: cfg.HotOn, Off: cfg.HotOff}),
	}
	return &Components{
		deps:        d,
		cfg:         cfg,
		logger:      logger,
		projections: proj,
		graph:       graph.NewWriter(d.log, proj.Graph, logger),
		poster:      activity.NewPoster(d.log, proj.Activities, proj.Profiles, logger),
		entities:    &follows.Entities{Profiles: proj.Profiles, Records: proj.Records},
		hub:         live.NewHub(d.log.JetStream().Conn()),
	}
}

// Register adds the services of roles to srv.
func (c *Components) Register(srv *grpcserver.Server, roles []Role) error {
	d := c.deps
	profileServer := profiles.NewServer(d.log, c.projections.Profiles, c.logger)
	profileServer.EnableAutoFollow(d.settings, c.graph)
	for _, r := range roles {
		switch r {
		case RoleProfiles:
			tidingsv1.RegisterProfileServiceServer(srv, profileServer)
		case RoleFollows:
			tidingsv1.RegisterFollowServiceServer(srv, follows.NewServer(c.graph, c.entities, c.cfg.MaxFollowing))
		case RoleRecords:
			tidingsv1.RegisterRecordServiceServer(srv, records.NewServer(records.Deps{
				Log: d.log, Records: c.projections.Records, Profiles: c.projections.Profiles,
				Graph: c.graph, Poster: c.poster, Settings: d.settings, Logger: c.logger,
			}))
		case RoleActivities:
			tidingsv1.RegisterActivityServiceServer(srv, activities.NewServer(c.poster, c.projections.Records))
		case RoleTimelines:
			tidingsv1.RegisterTimelineServiceServer(srv, timelines.NewServer(timelines.Stores{
				Timelines: c.projections.Timelines, Bodies: c.projections.Activities,
				Profiles: c.projections.Profiles, Records: c.projections.Records,
				Live: c.hub, WatchBuffer: c.cfg.WatchBuffer,
				Graph: c.projections.Graph, Hot: c.projections.Hot, HomeCap: c.cfg.HomeCap, InactiveAfter: c.cfg.InactiveAfter,
			}))
		case RoleAdmin:
			adminServer, err := admin.NewServer(admin.Deps{
				Log: d.log, RDB: d.rdb, Graph: c.graph, Entities: c.entities, Profiles: profileServer,
				Settings: d.settings, Projections: c.projections, Fanout: c.cfg.Fanout(), MaxFollowing: c.cfg.MaxFollowing, Logger: c.logger,
			})
			if err != nil {
				return fmt.Errorf("admin service: %w", err)
			}
			tidingsv1.RegisterAdminServiceServer(srv, adminServer)
		case RoleWorker:
		}
	}
	return nil
}
