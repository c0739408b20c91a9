// Package admin implements AdminService: the follow graph in bulk (a
// department follows a record, offboarding), moving graphs between
// installations, auto-follow rules, rebuilding projections from the log,
// and the state of the pipeline. Every method is for admins only.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"buf.build/go/protovalidate"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// bulkChunk is how many users one step of a bulk change handles; it bounds
// memory however large the set.
const bulkChunk = 1000

// maxRowErrors bounds the rejected rows an import reports one by one.
const maxRowErrors = 1000

// ProfileActivator deactivates profiles (the profile service).
type ProfileActivator interface {
	SetActive(ctx context.Context, userID string, active bool) (*tidingsv1.Profile, error)
}

// Deps are what the AdminService uses.
type Deps struct {
	Log        *eventlog.Log
	RDB        redis.UniversalClient
	Graph      *graph.Writer
	Visibility *visibility.Checker
	Profiles   ProfileActivator
	Settings   *settings.Store
	// Projector is the projections readers use.
	Projector *projection.Projector
	// Generations starts rebuilds and reports them.
	Generations  *generation.Store
	MaxFollowing int64
	Logger       *slog.Logger
}

// Server implements tidingsv1.AdminServiceServer.
type Server struct {
	tidingsv1.UnimplementedAdminServiceServer
	d        Deps
	profiles *profilestore.Store
}

var _ tidingsv1.AdminServiceServer = (*Server)(nil)

// NewServer returns the AdminService.
func NewServer(d Deps) *Server {
	return &Server{d: d, profiles: d.Projector.Stores().Profiles}
}

func caller(ctx context.Context) *tidingsv1.Caller {
	id, _ := auth.FromContext(ctx)
	return id.Caller()
}

// eachUserChunk calls fn with the selected users, bulkChunk at a time.
func (s *Server) eachUserChunk(ctx context.Context, sel *tidingsv1.UserSelector, fn func([]string) error) error {
	if list := sel.GetUsers(); list != nil {
		ids := list.GetUserIds()
		for start := 0; start < len(ids); start += bulkChunk {
			if err := fn(ids[start:min(start+bulkChunk, len(ids))]); err != nil {
				return err
			}
		}
		return nil
	}
	q := profilestore.ListQuery{Department: sel.GetDepartment(), ManagerID: sel.GetManagerId(), Limit: bulkChunk}
	for {
		page, more, err := s.profiles.List(ctx, q)
		if err != nil {
			return err
		}
		ids := make([]string, len(page))
		for i, p := range page {
			ids[i] = p.GetUserId()
		}
		if len(ids) > 0 {
			if err := fn(ids); err != nil {
				return err
			}
			q.After = ids[len(ids)-1]
		}
		if !more || len(ids) == 0 {
			return nil
		}
	}
}

// BulkFollow implements tidingsv1.AdminServiceServer.
func (s *Server) BulkFollow(ctx context.Context, req *tidingsv1.BulkFollowRequest) (*tidingsv1.BulkFollowResponse, error) {
	ref := req.GetEntity()
	// A restricted record is followed only by the users who may see it.
	record, err := s.d.Visibility.Resolve(ctx, ref)
	if err != nil {
		return nil, err
	}
	// An explicit list is checked whole before anything is written: every
	// id must have a profile. (Selections by department or manager list
	// active profiles only.)
	var inactive map[string]bool
	if list := req.GetUsers().GetUsers(); list != nil {
		if inactive, err = s.checkUsers(ctx, list.GetUserIds()); err != nil {
			return nil, err
		}
	}
	key := entity.Key(ref)
	store := s.d.Graph.Store()
	resp := &tidingsv1.BulkFollowResponse{}
	err = s.eachUserChunk(ctx, req.GetUsers(), func(ids []string) error {
		already, err := store.FollowersOf(ctx, key, ids)
		if err != nil {
			return err
		}
		counts, err := store.FollowingCounts(ctx, ids)
		if err != nil {
			return err
		}
		var changes []*tidingsv1.EdgeChange
		for i, u := range ids {
			switch {
			case already[i]:
				resp.UnchangedCount++
			case ref.GetUserId() == u, counts[i] >= s.d.MaxFollowing, inactive[u],
				record != nil && !visibility.UserMaySee(record, u):
				resp.SkippedCount++
			default:
				changes = append(changes, &tidingsv1.EdgeChange{UserId: u, Entity: ref, Following: true})
			}
		}
		resp.ChangedCount += int64(len(changes))
		return s.d.Graph.Write(ctx, graph.BulkSubject, "", caller(ctx), changes)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// maxNamedIDs bounds the ids an error message names.
const maxNamedIDs = 20

// checkUsers returns InvalidArgument naming the ids that have no profile,
// or the set of those whose profile is deactivated.
func (s *Server) checkUsers(ctx context.Context, ids []string) (map[string]bool, error) {
	var missing []string
	inactive := map[string]bool{}
	for start := 0; start < len(ids); start += bulkChunk {
		chunk := ids[start:min(start+bulkChunk, len(ids))]
		found, active, err := s.profiles.ActiveMany(ctx, chunk)
		if err != nil {
			return nil, err
		}
		for i, u := range chunk {
			switch {
			case !found[i]:
				missing = append(missing, u)
			case !active[i]:
				inactive[u] = true
			}
		}
	}
	if len(missing) > 0 {
		named := strings.Join(missing[:min(len(missing), maxNamedIDs)], ", ")
		if len(missing) > maxNamedIDs {
			named += fmt.Sprintf(" and %d more", len(missing)-maxNamedIDs)
		}
		return nil, apierr.InvalidArgument("users.users.user_ids: %d users have no profile: %s; nothing was followed", len(missing), named)
	}
	return inactive, nil
}

// BulkUnfollow implements tidingsv1.AdminServiceServer.
func (s *Server) BulkUnfollow(ctx context.Context, req *tidingsv1.BulkUnfollowRequest) (*tidingsv1.BulkUnfollowResponse, error) {
	ref := req.GetEntity()
	key := entity.Key(ref)
	store := s.d.Graph.Store()
	resp := &tidingsv1.BulkUnfollowResponse{}
	err := s.eachUserChunk(ctx, req.GetUsers(), func(ids []string) error {
		following, err := store.FollowersOf(ctx, key, ids)
		if err != nil {
			return err
		}
		var changes []*tidingsv1.EdgeChange
		for i, u := range ids {
			if !following[i] {
				resp.UnchangedCount++
				continue
			}
			changes = append(changes, &tidingsv1.EdgeChange{UserId: u, Entity: ref})
		}
		resp.ChangedCount += int64(len(changes))
		return s.d.Graph.Write(ctx, graph.BulkSubject, "", caller(ctx), changes)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// ExportGraph implements tidingsv1.AdminServiceServer.
func (s *Server) ExportGraph(req *tidingsv1.ExportGraphRequest, stream grpc.ServerStreamingServer[tidingsv1.ExportGraphResponse]) error {
	ctx := stream.Context()
	size := int(req.GetBatchSize())
	if size == 0 {
		size = 1000
	}
	store := s.d.Graph.Store()
	batch := &tidingsv1.ExportGraphResponse{}
	flush := func() error {
		if len(batch.GetFollows()) == 0 {
			return nil
		}
		if err := stream.Send(batch); err != nil {
			return err
		}
		batch = &tidingsv1.ExportGraphResponse{}
		return nil
	}
	err := store.ScanUsers(ctx, 500, func(users []string) error {
		for _, u := range users {
			err := store.ScanFollowing(ctx, u, size, func(edges []graphstore.Edge) error {
				for _, e := range edges {
					ref, err := entity.Parse(e.Member)
					if err != nil {
						return fmt.Errorf("export follows of %s: %w", u, err)
					}
					batch.Follows = append(batch.Follows, &tidingsv1.Follow{
						UserId: u, Entity: ref, CreateTime: timestamppb.New(time.UnixMilli(e.CreateMs)),
					})
					if len(batch.GetFollows()) >= size {
						if err := flush(); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// maxImportRows bounds the rows of one import: every row is read and
// checked before anything is written, so the accepted edges are held
// (packed, about 35 bytes each: importBuffer) until the stream ends.
const maxImportRows = 5_000_000

// ImportGraph implements tidingsv1.AdminServiceServer. The whole stream is
// read and every row checked (the request's rules, then the state: both
// users have active profiles, the record exists and the user may see it)
// before anything is published, so an import that fails (a stream broken
// off, too many rows, Redis down) writes nothing.
func (s *Server) ImportGraph(stream grpc.ClientStreamingServer[tidingsv1.ImportGraphRequest, tidingsv1.ImportGraphResponse]) error {
	ctx := stream.Context()
	resp := &tidingsv1.ImportGraphResponse{}
	store := s.d.Graph.Store()
	reject := func(row int64, reason string) {
		resp.RejectedCount++
		if len(resp.Errors) < maxRowErrors {
			resp.Errors = append(resp.Errors, &tidingsv1.RowError{Row: row, Reason: reason})
		}
	}
	var accepted importBuffer
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if resp.RowCount+int64(len(req.GetFollows())) > maxImportRows {
			return apierr.LimitExceeded("an import takes at most %d rows; split it (nothing was imported)", maxImportRows)
		}
		var (
			valid []*tidingsv1.Follow
			rows  []int64
		)
		for _, f := range req.GetFollows() {
			resp.RowCount++
			if reason := s.checkEdge(f); reason != "" {
				reject(resp.RowCount, reason)
				continue
			}
			valid = append(valid, f)
			rows = append(rows, resp.RowCount)
		}
		reasons, err := s.d.Visibility.FollowableEach(ctx, valid)
		if err != nil {
			return err
		}
		var (
			fresh []*tidingsv1.Follow
			pairs []graphstore.Pair
		)
		for i, f := range valid {
			if reasons[i] != "" {
				reject(rows[i], reasons[i])
				continue
			}
			fresh = append(fresh, f)
			pairs = append(pairs, graphstore.Pair{UserID: f.GetUserId(), Entity: entity.Key(f.GetEntity())})
		}
		exist, err := store.Exist(ctx, pairs)
		if err != nil {
			return err
		}
		for i, f := range fresh {
			if exist[i] || accepted.added(pairs[i].UserID, pairs[i].Entity) {
				resp.UnchangedCount++
				continue
			}
			var createNs int64
			if ct := f.GetCreateTime(); ct != nil {
				createNs = ct.AsTime().UnixNano()
			}
			accepted.add(pairs[i].UserID, pairs[i].Entity, createNs)
		}
	}
	err := accepted.each(bulkChunk, func(users, keys []string, createNs []int64) error {
		changes := make([]*tidingsv1.EdgeChange, len(users))
		for i, u := range users {
			ref, err := entity.Parse(keys[i])
			if err != nil {
				return fmt.Errorf("import edge of %s: %w", u, err)
			}
			changes[i] = &tidingsv1.EdgeChange{UserId: u, Entity: ref, Following: true}
			if createNs[i] != 0 {
				changes[i].CreateTime = timestamppb.New(time.Unix(0, createNs[i]))
			}
		}
		if err := s.d.Graph.Write(ctx, graph.BulkSubject, "", caller(ctx), changes); err != nil {
			return err
		}
		resp.ImportedCount += int64(len(changes))
		return nil
	})
	if err != nil {
		return err
	}
	return stream.SendAndClose(resp)
}

// checkEdge returns why an imported edge is rejected, or "".
func (s *Server) checkEdge(f *tidingsv1.Follow) string {
	req := &tidingsv1.FollowRequest{UserId: f.GetUserId(), Entity: f.GetEntity()}
	if err := protovalidate.Validate(req); err != nil {
		return err.Error()
	}
	if f.GetEntity().GetUserId() == f.GetUserId() {
		return "a user cannot follow themselves"
	}
	if ct := f.GetCreateTime(); ct != nil && ct.CheckValid() != nil {
		return "create_time is not a valid time"
	}
	return ""
}

// RemoveUser implements tidingsv1.AdminServiceServer.
func (s *Server) RemoveUser(ctx context.Context, req *tidingsv1.RemoveUserRequest) (*tidingsv1.RemoveUserResponse, error) {
	user := req.GetUserId()
	// Deactivate first: from then on the user's tokens are refused
	// (auth.Accounts) and no one may follow them, so no edge comes back
	// while the old ones are removed.
	if _, err := s.d.Profiles.SetActive(ctx, user, false); err != nil && !isNotFound(err) {
		return nil, err
	}
	store := s.d.Graph.Store()
	resp := &tidingsv1.RemoveUserResponse{}
	err := store.ScanFollowing(ctx, user, bulkChunk, func(edges []graphstore.Edge) error {
		changes := make([]*tidingsv1.EdgeChange, 0, len(edges))
		for _, e := range edges {
			ref, err := entity.Parse(e.Member)
			if err != nil {
				return fmt.Errorf("follows of %s: %w", user, err)
			}
			changes = append(changes, &tidingsv1.EdgeChange{UserId: user, Entity: ref})
		}
		resp.FollowingRemoved += int64(len(changes))
		return s.d.Graph.Write(ctx, graph.BulkSubject, "", caller(ctx), changes)
	})
	if err != nil {
		return nil, err
	}
	self := entity.User(user)
	err = store.ScanFollowers(ctx, entity.Key(self), bulkChunk, func(edges []graphstore.Edge) error {
		changes := make([]*tidingsv1.EdgeChange, 0, len(edges))
		for _, e := range edges {
			changes = append(changes, &tidingsv1.EdgeChange{UserId: e.Member, Entity: self})
		}
		resp.FollowersRemoved += int64(len(changes))
		return s.d.Graph.Write(ctx, graph.BulkSubject, "", caller(ctx), changes)
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func isNotFound(err error) bool {
	var e *apierr.Error
	return errors.As(err, &e) && e.Reason == apierr.ReasonNotFound
}

// GetAutoFollowRules implements tidingsv1.AdminServiceServer.
func (s *Server) GetAutoFollowRules(ctx context.Context, _ *tidingsv1.GetAutoFollowRulesRequest) (*tidingsv1.GetAutoFollowRulesResponse, error) {
	rules, err := s.d.Settings.AutoFollowRules(ctx)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetAutoFollowRulesResponse{Rules: rules}, nil
}

// UpdateAutoFollowRules implements tidingsv1.AdminServiceServer.
func (s *Server) UpdateAutoFollowRules(ctx context.Context, req *tidingsv1.UpdateAutoFollowRulesRequest) (*tidingsv1.UpdateAutoFollowRulesResponse, error) {
	if err := s.d.Settings.SetAutoFollowRules(ctx, req.GetRules()); err != nil {
		return nil, err
	}
	return &tidingsv1.UpdateAutoFollowRulesResponse{Rules: req.GetRules()}, nil
}

// RebuildProjections implements tidingsv1.AdminServiceServer: it asks for
// a rebuild, which a worker runs (pkg/generation).
func (s *Server) RebuildProjections(ctx context.Context, _ *tidingsv1.RebuildProjectionsRequest) (*tidingsv1.RebuildProjectionsResponse, error) {
	r, err := s.d.Generations.Start(ctx, time.Now())
	if errors.Is(err, generation.ErrRebuildUnderWay) {
		return nil, apierr.FailedPrecondition("a rebuild is under way; follow it with GetRebuild")
	}
	if err != nil {
		return nil, err
	}
	s.d.Logger.InfoContext(ctx, "rebuild asked for", "rebuild", r.GetId(), "from_generation", r.GetFromGeneration(), "to_generation", r.GetToGeneration())
	return &tidingsv1.RebuildProjectionsResponse{Rebuild: r}, nil
}

// GetRebuild implements tidingsv1.AdminServiceServer.
func (s *Server) GetRebuild(ctx context.Context, req *tidingsv1.GetRebuildRequest) (*tidingsv1.GetRebuildResponse, error) {
	r, err := s.d.Generations.Rebuild(ctx, req.GetId())
	if errors.Is(err, generation.ErrNoRebuild) {
		return nil, apierr.NotFound("no rebuild %s", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetRebuildResponse{Rebuild: r}, nil
}

// GetSystemStatus implements tidingsv1.AdminServiceServer.
func (s *Server) GetSystemStatus(ctx context.Context, _ *tidingsv1.GetSystemStatusRequest) (*tidingsv1.GetSystemStatusResponse, error) {
	resp := &tidingsv1.GetSystemStatusResponse{Time: timestamppb.Now(), RedisOk: redisx.Health(ctx, s.d.RDB) == nil}
	gens, err := s.d.Generations.Read(ctx)
	if err != nil {
		s.d.Logger.WarnContext(ctx, "status: generations not read", "error", err)
		return nil, apierr.Unavailable("the generations of the projections cannot be read; retry")
	}
	resp.Generation, resp.Rebuild = gens.Current, gens.Rebuild
	js := s.d.Log.JetStream()
	for _, cfg := range eventlog.StreamConfigs(eventlog.StreamOptions{}) {
		st, err := js.Stream(ctx, cfg.Name)
		if err != nil {
			return nil, s.unavailable(ctx, "stream "+cfg.Name, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, s.unavailable(ctx, "stream "+cfg.Name, err)
		}
		resp.Streams = append(resp.Streams, &tidingsv1.StreamStatus{
			Name: cfg.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
			FirstSequence: info.State.FirstSeq, LastSequence: info.State.LastSeq,
		})
		consumers := st.ListConsumers(ctx)
		for ci := range consumers.Info() {
			// Only durable consumers: those of replays and rebuilds are
			// ephemeral, and their lag says nothing about the pipeline.
			if ci.Config.Durable == "" {
				continue
			}
			resp.Consumers = append(resp.Consumers, consumerStatus(cfg.Name, ci))
		}
		if err := consumers.Err(); err != nil {
			return nil, s.unavailable(ctx, "consumers of "+cfg.Name, err)
		}
	}
	// Hook: running background rebuilds (issue 14, part B) are to be
	// reported here, beside the durable consumers.
	return resp, nil
}

// unavailable logs why what could not be read, and returns Unavailable
// without the driver's text.
func (s *Server) unavailable(ctx context.Context, what string, err error) error {
	s.d.Logger.WarnContext(ctx, "system status incomplete", "what", what, "error", err)
	return apierr.Unavailable("%s cannot be read now; retry", what)
}

func consumerStatus(stream string, ci *jetstream.ConsumerInfo) *tidingsv1.ConsumerStatus {
	return &tidingsv1.ConsumerStatus{
		Stream: stream, Name: ci.Name, Pending: ci.NumPending,
		AckPending: int64(ci.NumAckPending), Redelivered: int64(ci.NumRedelivered),
	}
}
