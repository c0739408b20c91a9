// Package profiles implements ProfileService: the employee directory.
//
// A write reads the profile's last event from the PROFILES stream, appends
// the new whole state conditionally on that event still being the last
// (optimistic concurrency, retried on conflict), waits for JetStream's ack,
// then writes the Redis projection through so the caller reads its own
// write. The worker's projector applies the same events, so a write-through
// that fails is repaired from the log.
package profiles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/settings"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const (
	defaultPageSize = 50
	// batchConcurrency bounds profiles of one batch written at once.
	batchConcurrency = 16
)

// Server implements tidingsv1.ProfileServiceServer.
type Server struct {
	tidingsv1.UnimplementedProfileServiceServer
	log    *eventlog.Log
	proj   *projection.Projector
	store  *profilestore.Store
	logger *slog.Logger
	now    func() time.Time

	// With both set, new employees may follow their manager (when an admin
	// turns the rule on).
	settings *settings.Store
	graph    *graph.Writer
}

var _ tidingsv1.ProfileServiceServer = (*Server)(nil)

// Deps are what the ProfileService uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	// Settings and Graph, when set, apply the "new employee follows their
	// manager" rule.
	Settings *settings.Store
	Graph    *graph.Writer
	Logger   *slog.Logger
}

// NewServer returns the ProfileService.
func NewServer(d Deps) *Server {
	return &Server{log: d.Log, proj: d.Projector, store: d.Projector.Stores().Profiles, logger: d.Logger, now: time.Now,
		settings: d.Settings, graph: d.Graph}
}

// followManager applies the "new employee follows their manager" rule.
func (s *Server) followManager(ctx context.Context, p *tidingsv1.Profile) error {
	mgr := p.GetManagerId()
	if s.settings == nil || s.graph == nil || mgr == "" {
		return nil
	}
	rules, err := s.settings.AutoFollowRules(ctx)
	if err != nil || !rules.GetNewEmployeeFollowsManager() {
		return err
	}
	if _, err := s.store.Get(ctx, mgr); errors.Is(err, profilestore.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	system := &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_SYSTEM, Id: "auto-follow"}
	return s.graph.Write(ctx, eventlog.FollowSubject(p.GetUserId()), "", system,
		[]*tidingsv1.EdgeChange{{UserId: p.GetUserId(), Entity: entity.User(mgr), Following: true}})
}

// outcome is what a change did.
type outcome int

const (
	unchanged outcome = iota
	created
	updated
)

// mutation computes a profile's next state from its current one (nil when it
// has none). It must not modify cur.
type mutation func(cur *tidingsv1.Profile) (*tidingsv1.Profile, error)

// change applies m to a profile through the log.
func (s *Server) change(ctx context.Context, userID string, m mutation) (*tidingsv1.Profile, outcome, error) {
	id, _ := auth.FromContext(ctx)
	res, err := eventlog.Update(ctx, s.log, eventlog.StateUpdate[*tidingsv1.ProfileEvent]{
		Stream:      eventlog.StreamProfiles,
		Subject:     eventlog.ProfileSubject(userID),
		New:         func() *tidingsv1.ProfileEvent { return &tidingsv1.ProfileEvent{} },
		MsgIDPrefix: "profile:" + userID,
		Mutate: func(cur *tidingsv1.ProfileEvent, found bool) (*tidingsv1.ProfileEvent, bool, error) {
			var curProfile *tidingsv1.Profile
			if found {
				curProfile = cur.GetProfile()
			}
			next, err := m(curProfile)
			if err != nil {
				return nil, false, err
			}
			if found && sameContent(curProfile, next) {
				return nil, false, nil
			}
			now := timestamppb.New(s.now())
			next.UpdateTime = now
			next.CreateTime = now
			if found {
				next.CreateTime = curProfile.GetCreateTime()
			}
			return &tidingsv1.ProfileEvent{Profile: next, Caller: id.Caller(), Time: now}, true, nil
		},
	})
	if errors.Is(err, eventlog.ErrTooMuchContention) {
		return nil, 0, apierr.Aborted("profile %s is being changed concurrently; retry", userID)
	}
	if err != nil {
		return nil, 0, err
	}
	// Project at once so the caller reads its write (also for a no-op, in
	// case the projection is behind). Failure is not the caller's: the
	// event is durable and the projector applies it.
	if err := s.proj.ApplyProfile(ctx, res.Sequence, res.Event); err != nil {
		s.logger.WarnContext(ctx, "profile write-through failed; the projector will apply it",
			"user_id", userID, "seq", res.Sequence, "error", err)
	}
	result := unchanged
	switch {
	case res.Changed && res.Found:
		result = updated
	case res.Changed:
		result = created
		if err := s.followManager(ctx, res.Event.GetProfile()); err != nil {
			return nil, 0, err
		}
	}
	return res.Event.GetProfile(), result, nil
}

// sameContent compares profiles ignoring their timestamps.
func sameContent(a, b *tidingsv1.Profile) bool {
	return proto.Equal(withoutTimes(a), withoutTimes(b))
}

func withoutTimes(p *tidingsv1.Profile) *tidingsv1.Profile {
	c := proto.CloneOf(p)
	c.CreateTime, c.UpdateTime = nil, nil
	return c
}

// upsert is the mutation of UpsertProfile.
func upsert(in *tidingsv1.Profile) mutation {
	return func(cur *tidingsv1.Profile) (*tidingsv1.Profile, error) {
		if in.GetManagerId() == in.GetUserId() {
			return nil, apierr.InvalidArgument("profile %s names itself as its manager", in.GetUserId())
		}
		next := proto.CloneOf(in)
		next.CreateTime, next.UpdateTime = nil, nil
		next.Active = true
		next.AboutMe = ""
		if cur != nil {
			next.Active = cur.GetActive()
			next.AboutMe = cur.GetAboutMe()
		}
		return next, nil
	}
}

// UpsertProfile implements tidingsv1.ProfileServiceServer.
func (s *Server) UpsertProfile(ctx context.Context, req *tidingsv1.UpsertProfileRequest) (*tidingsv1.UpsertProfileResponse, error) {
	p, result, err := s.change(ctx, req.GetProfile().GetUserId(), upsert(req.GetProfile()))
	if err != nil {
		return nil, err
	}
	return &tidingsv1.UpsertProfileResponse{Profile: p, Created: result == created}, nil
}

// BatchUpsertProfiles implements tidingsv1.ProfileServiceServer.
func (s *Server) BatchUpsertProfiles(ctx context.Context, req *tidingsv1.BatchUpsertProfilesRequest) (*tidingsv1.BatchUpsertProfilesResponse, error) {
	seen := make(map[string]int, len(req.GetProfiles()))
	for i, p := range req.GetProfiles() {
		if j, dup := seen[p.GetUserId()]; dup {
			return nil, apierr.InvalidArgument("profiles[%d] and profiles[%d] are both %s", j, i, p.GetUserId())
		}
		seen[p.GetUserId()] = i
		if p.GetManagerId() == p.GetUserId() {
			return nil, apierr.InvalidArgument("profiles[%d]: %s names itself as its manager", i, p.GetUserId())
		}
	}
	results := make([]outcome, len(req.GetProfiles()))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchConcurrency)
	for i, p := range req.GetProfiles() {
		g.Go(func() error {
			_, result, err := s.change(gctx, p.GetUserId(), upsert(p))
			results[i] = result
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	resp := &tidingsv1.BatchUpsertProfilesResponse{}
	for _, r := range results {
		switch r {
		case created:
			resp.CreatedCount++
		case updated:
			resp.UpdatedCount++
		default:
			resp.UnchangedCount++
		}
	}
	return resp, nil
}

// GetProfile implements tidingsv1.ProfileServiceServer.
func (s *Server) GetProfile(ctx context.Context, req *tidingsv1.GetProfileRequest) (*tidingsv1.GetProfileResponse, error) {
	p, err := s.store.Get(ctx, req.GetUserId())
	if errors.Is(err, profilestore.ErrNotFound) {
		return nil, apierr.NotFound("no profile %s", req.GetUserId())
	}
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetProfileResponse{Profile: p}, nil
}

// BatchGetProfiles implements tidingsv1.ProfileServiceServer.
func (s *Server) BatchGetProfiles(ctx context.Context, req *tidingsv1.BatchGetProfilesRequest) (*tidingsv1.BatchGetProfilesResponse, error) {
	found, err := s.store.GetMany(ctx, req.GetUserIds())
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.BatchGetProfilesResponse{}
	for _, id := range req.GetUserIds() {
		if p, ok := found[id]; ok {
			resp.Profiles = append(resp.Profiles, p)
		} else {
			resp.MissingUserIds = append(resp.MissingUserIds, id)
		}
	}
	return resp, nil
}

// ListProfiles implements tidingsv1.ProfileServiceServer.
func (s *Server) ListProfiles(ctx context.Context, req *tidingsv1.ListProfilesRequest) (*tidingsv1.ListProfilesResponse, error) {
	scope := fmt.Sprintf("profiles|d:%s|m:%s|i:%t", req.GetDepartment(), req.GetManagerId(), req.GetIncludeInactive())
	after, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	profiles, more, err := s.store.List(ctx, profilestore.ListQuery{
		Department:      req.GetDepartment(),
		ManagerID:       req.GetManagerId(),
		IncludeInactive: req.GetIncludeInactive(),
		After:           after,
		Limit:           size,
	})
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListProfilesResponse{Profiles: profiles}
	if more && len(profiles) > 0 {
		resp.NextPageToken = pagetoken.Encode(scope, profiles[len(profiles)-1].GetUserId())
	}
	return resp, nil
}

// existing wraps a mutation of a profile that must exist.
func existing(userID string, f func(next *tidingsv1.Profile)) mutation {
	return func(cur *tidingsv1.Profile) (*tidingsv1.Profile, error) {
		if cur == nil {
			return nil, apierr.NotFound("no profile %s", userID)
		}
		next := proto.CloneOf(cur)
		f(next)
		return next, nil
	}
}

// UpdateAboutMe implements tidingsv1.ProfileServiceServer.
func (s *Server) UpdateAboutMe(ctx context.Context, req *tidingsv1.UpdateAboutMeRequest) (*tidingsv1.UpdateAboutMeResponse, error) {
	if id, _ := auth.FromContext(ctx); !id.ActsAsUser(req.GetUserId()) {
		return nil, apierr.PermissionDenied("an employee may change only their own about-me")
	}
	p, _, err := s.change(ctx, req.GetUserId(), existing(req.GetUserId(), func(next *tidingsv1.Profile) {
		next.AboutMe = req.GetAboutMe()
	}))
	if err != nil {
		return nil, err
	}
	return &tidingsv1.UpdateAboutMeResponse{Profile: p}, nil
}

// DeactivateProfile implements tidingsv1.ProfileServiceServer.
func (s *Server) DeactivateProfile(ctx context.Context, req *tidingsv1.DeactivateProfileRequest) (*tidingsv1.DeactivateProfileResponse, error) {
	p, err := s.SetActive(ctx, req.GetUserId(), false)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.DeactivateProfileResponse{Profile: p}, nil
}

// ReactivateProfile implements tidingsv1.ProfileServiceServer.
func (s *Server) ReactivateProfile(ctx context.Context, req *tidingsv1.ReactivateProfileRequest) (*tidingsv1.ReactivateProfileResponse, error) {
	p, err := s.SetActive(ctx, req.GetUserId(), true)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.ReactivateProfileResponse{Profile: p}, nil
}

// SetActive activates or deactivates a profile; offboarding uses it too.
func (s *Server) SetActive(ctx context.Context, userID string, active bool) (*tidingsv1.Profile, error) {
	p, _, err := s.change(ctx, userID, existing(userID, func(next *tidingsv1.Profile) {
		next.Active = active
	}))
	return p, err
}
