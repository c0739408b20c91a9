// Package timelines implements TimelineService: reading a user's home feed
// and any entity's own feed, newest first, hydrated with the activities,
// their actors' profiles and their records.
//
// A home read is one round trip for the ids (the stored timeline, the
// user's home sources, the pull ranges and the read mark), one more when
// the user receives a hot entity's posts or pages below the timeline's
// floor (the feeds it merges, all at once), one for the bodies, and one for
// the profiles and records they name (docs/architecture.md, "The home
// feed"). Ids whose bodies are gone (deleted activities) are
// dropped from the page at once and taken out of the timeline. Items the
// reader may not see (pkg/visibility: a record gone or restricted from
// them) are dropped from the page but stay in the timeline, since the
// record may become visible again.
package timelines

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	"github.com/tidingshq/tidings/pkg/vcache"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const (
	defaultPageSize = 50
	// maxReadRounds bounds the reads that refill a page thinned by
	// deleted or hidden items.
	maxReadRounds = 4
)

// Deps are what the timeline service reads.
type Deps struct {
	Timelines  *timelinestore.Store
	Bodies     *activitystore.Store
	Profiles   *profilestore.Store
	Records    *recordstore.Store
	Visibility *visibility.Checker
	// Live delivers the notices Watch streams; Watch is Unavailable
	// without it.
	Live *live.Hub
	// WatchBuffer is how many notices a watcher may fall behind before it
	// is cut off; DefaultWatchBuffer when zero.
	WatchBuffer int
	// Hot lets home reads merge what is not pushed: hot entities' feeds.
	Hot *hot.Store
	// HomeCap is the home timelines' cap, the size of a rebuild.
	HomeCap int
	// InactiveAfter matches the fan-out's: a read after a longer absence
	// rebuilds the home timeline first. Zero turns it off.
	InactiveAfter time.Duration
	// Now is the clock of the inactivity rule and the watch's replays;
	// time.Now when nil.
	Now func() time.Time
}

// DefaultWatchBuffer is how far a watcher may fall behind by default.
const DefaultWatchBuffer = 256

// Server implements tidingsv1.TimelineServiceServer.
type Server struct {
	tidingsv1.UnimplementedTimelineServiceServer
	st Deps
	// bodies and profiles are decoded copies, exact on every read
	// (pkg/vcache): hydration reads their versions and decodes only what
	// changed since.
	bodies   *vcache.Cache[*tidingsv1.Activity]
	profiles *vcache.Cache[*tidingsv1.Profile]
}

// The sizes of the hydration caches: the bodies of a few thousand busy
// home pages, and their authors.
const (
	cachedBodies   = 20000
	cachedProfiles = 10000
)

var _ tidingsv1.TimelineServiceServer = (*Server)(nil)

// NewServer returns the TimelineService.
func NewServer(d Deps) *Server {
	if d.WatchBuffer == 0 {
		d.WatchBuffer = DefaultWatchBuffer
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	bodies, err := vcache.New(cachedBodies, activitystore.BodyField, activitystore.Decode)
	if err != nil {
		panic(err) // only for a size ≤ 0
	}
	profiles, err := vcache.New(cachedProfiles, profilestore.Field, profilestore.Decode)
	if err != nil {
		panic(err)
	}
	return &Server{st: d, bodies: bodies, profiles: profiles}
}

// GetHomeTimeline implements tidingsv1.TimelineServiceServer.
func (s *Server) GetHomeTimeline(ctx context.Context, req *tidingsv1.GetHomeTimelineRequest) (*tidingsv1.GetHomeTimelineResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetUserId()) {
		return nil, apierr.PermissionDenied("an employee may read only their own home timeline")
	}
	scope := "home|" + req.GetUserId()
	items, next, err := s.read(ctx, s.homePager(req.GetUserId(), req.GetPageToken() == ""), s.st.Timelines.HomeKey(req.GetUserId()), scope, req.GetPageToken(), req.GetPageSize(), employee(req.GetUserId()), true)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetHomeTimelineResponse{Items: items, NextPageToken: next}, nil
}

// GetEntityFeed implements tidingsv1.TimelineServiceServer.
func (s *Server) GetEntityFeed(ctx context.Context, req *tidingsv1.GetEntityFeedRequest) (*tidingsv1.GetEntityFeedResponse, error) {
	id, _ := auth.FromContext(ctx)
	if err := s.st.Visibility.Entity(ctx, req.GetEntity(), id); err != nil {
		return nil, err
	}
	key := entity.Key(req.GetEntity())
	items, next, err := s.read(ctx, s.feedPager(s.st.Timelines.FeedKey(key)), s.st.Timelines.FeedKey(key), "feed|"+key, req.GetPageToken(), req.GetPageSize(), id, false)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetEntityFeedResponse{Items: items, NextPageToken: next}, nil
}

// employee is the identity whose visibility filters a user's home feed,
// whoever reads it (the user, or an admin on their behalf).
func employee(userID string) auth.Identity { return auth.Identity{Kind: auth.KindEmployee, ID: userID} }

// read returns one hydrated page of a feed, as reader may see it; repair
// removes dead ids from the feed (home timelines only: entity feeds are
// repaired by the fan-out of the delete).
func (s *Server) read(ctx context.Context, page pager, key, scope, token string, size int32, reader auth.Identity, repair bool) ([]*tidingsv1.FeedItem, string, error) {
	limit := int(size)
	if limit == 0 {
		limit = defaultPageSize
	}
	pos, err := pagetoken.Decode(scope, token)
	if err != nil {
		return nil, "", apierr.InvalidArgument("page_token is not a token of this query")
	}
	var before ids.ID
	if pos != "" {
		if before, err = ids.Parse(pos); err != nil {
			return nil, "", apierr.InvalidArgument("page_token is not a token of this query")
		}
	}
	var items []*tidingsv1.FeedItem
	more := true
	for round := 0; round < maxReadRounds && len(items) < limit && more; round++ {
		var list []ids.ID
		list, more, err = page(ctx, before, limit-len(items))
		if err != nil {
			return nil, "", err
		}
		if len(list) == 0 {
			break
		}
		before = list[len(list)-1]
		got, dead, err := s.Hydrate(ctx, list, reader)
		if err != nil {
			return nil, "", err
		}
		items = append(items, got...)
		if repair && len(dead) > 0 {
			if err := s.st.Timelines.Remove(ctx, []string{key}, dead); err != nil {
				return nil, "", err
			}
		}
	}
	next := ""
	if more {
		next = pagetoken.Encode(scope, before.String())
	}
	return items, next, nil
}

// Hydrate turns ids into feed items in the same order, leaving out those
// whose bodies are gone (returned as dead) and those the reader may not see
// (pkg/visibility).
func (s *Server) Hydrate(ctx context.Context, list []ids.ID, reader auth.Identity) (items []*tidingsv1.FeedItem, dead []ids.ID, err error) {
	rdb := s.st.Timelines.Client()
	keys := make([]string, len(list))
	for i, id := range list {
		keys[i] = s.st.Bodies.BodyKey(id.String())
	}
	var bodies *vcache.Pending[*tidingsv1.Activity]
	if err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		bodies = s.bodies.Queue(ctx, pipe, keys)
		return nil
	}); err != nil {
		return nil, nil, fmt.Errorf("hydrate feed: read bodies: %w", err)
	}
	acts, found, err := bodies.Finish(ctx, rdb)
	if err != nil {
		return nil, nil, fmt.Errorf("hydrate feed: %w", err)
	}
	var userIDs, userKeys []string
	var refs []*tidingsv1.RecordRef
	seenUser, seenRec := map[string]bool{}, map[string]bool{}
	for i, a := range acts {
		if !found[i] {
			dead = append(dead, list[i])
			continue
		}
		if u := entity.ActorUser(a); u != "" && !seenUser[u] {
			seenUser[u] = true
			userIDs = append(userIDs, u)
			userKeys = append(userKeys, s.st.Profiles.Key(u))
		}
		if r := a.GetRecord(); r != nil && !seenRec[entity.RecordKey(r)] {
			seenRec[entity.RecordKey(r)] = true
			refs = append(refs, r)
		}
	}
	var (
		profiles *vcache.Pending[*tidingsv1.Profile]
		records  = make([]redisx.Result[*tidingsv1.Record], len(refs))
	)
	err = redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		profiles = s.profiles.Queue(ctx, pipe, userKeys)
		for i, r := range refs {
			records[i] = s.st.Records.QueueGet(ctx, pipe, r)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("hydrate feed: %w", err)
	}
	profs, hasProfile, err := profiles.Finish(ctx, rdb)
	if err != nil {
		return nil, nil, fmt.Errorf("hydrate feed: %w", err)
	}
	byUser := make(map[string]*tidingsv1.Profile, len(userIDs))
	for i, u := range userIDs {
		if hasProfile[i] {
			byUser[u] = profs[i]
		}
	}
	recByKey := make(map[string]*tidingsv1.Record, len(refs))
	for i, res := range records {
		r, err := res()
		if errors.Is(err, recordstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		recByKey[entity.RecordKey(refs[i])] = r
	}
	items = make([]*tidingsv1.FeedItem, 0, len(acts)-len(dead))
	for i, a := range acts {
		if !found[i] {
			continue
		}
		item := &tidingsv1.FeedItem{Activity: a, ActorProfile: byUser[entity.ActorUser(a)]}
		if r := a.GetRecord(); r != nil {
			rec := recByKey[entity.RecordKey(r)]
			if rec == nil || !visibility.CanSee(rec, reader) {
				continue
			}
			item.Record = rec
		}
		items = append(items, item)
	}
	return items, dead, nil
}
