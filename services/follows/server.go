// Package follows implements FollowService: who follows what. Employees
// follow and unfollow on their own behalf (admins for anyone); every change
// is appended to the FOLLOWS stream before the call returns, then written
// through to the graph projection.
package follows

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// DefaultMaxFollowing is how many entities one user may follow unless
// configured otherwise.
const DefaultMaxFollowing = 5000

const defaultPageSize = 50

// Server implements tidingsv1.FollowServiceServer.
type Server struct {
	tidingsv1.UnimplementedFollowServiceServer
	graph        *graph.Writer
	store        *graphstore.Store
	visible      *visibility.Checker
	maxFollowing int64
}

var _ tidingsv1.FollowServiceServer = (*Server)(nil)

// Deps are what the FollowService uses.
type Deps struct {
	Graph      *graph.Writer
	Visibility *visibility.Checker
	// MaxFollowing caps the entities one user may follow;
	// DefaultMaxFollowing when zero.
	MaxFollowing int64
}

// NewServer returns the FollowService.
func NewServer(d Deps) *Server {
	if d.MaxFollowing == 0 {
		d.MaxFollowing = DefaultMaxFollowing
	}
	return &Server{graph: d.Graph, store: d.Graph.Store(), visible: d.Visibility, maxFollowing: d.MaxFollowing}
}

func actAs(ctx context.Context, userID string) (auth.Identity, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(userID) {
		return id, apierr.PermissionDenied("an employee may follow and unfollow only as themselves")
	}
	return id, nil
}

// Follow implements tidingsv1.FollowServiceServer.
func (s *Server) Follow(ctx context.Context, req *tidingsv1.FollowRequest) (*tidingsv1.FollowResponse, error) {
	id, err := actAs(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	if req.GetEntity().GetUserId() == req.GetUserId() {
		return nil, apierr.InvalidArgument("a user cannot follow themselves")
	}
	if err := s.visible.Followable(ctx, req.GetEntity(), req.GetUserId()); err != nil {
		return nil, err
	}
	key := entity.Key(req.GetEntity())
	store := s.store
	edge, found, version, err := store.Edge(ctx, req.GetUserId(), key)
	if err != nil {
		return nil, err
	}
	if found {
		return &tidingsv1.FollowResponse{Follow: follow(req.GetUserId(), req.GetEntity(), edge.CreateMs)}, nil
	}
	n, err := store.FollowingCount(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	if n >= s.maxFollowing {
		return nil, apierr.LimitExceeded("%s already follows %d entities, the most allowed; unfollow something first", req.GetUserId(), n)
	}
	now := time.Now()
	change := &tidingsv1.EdgeChange{UserId: req.GetUserId(), Entity: req.GetEntity(), Following: true, CreateTime: timestamppb.New(now)}
	if err := s.graph.Write(ctx, eventlog.FollowSubject(req.GetUserId()), edgeMsgID(req.GetUserId(), key, true, version), id.Caller(),
		[]*tidingsv1.EdgeChange{change}); err != nil {
		return nil, err
	}
	return &tidingsv1.FollowResponse{Follow: follow(req.GetUserId(), req.GetEntity(), now.UnixMilli()), Changed: true}, nil
}

// Unfollow implements tidingsv1.FollowServiceServer.
func (s *Server) Unfollow(ctx context.Context, req *tidingsv1.UnfollowRequest) (*tidingsv1.UnfollowResponse, error) {
	id, err := actAs(ctx, req.GetUserId())
	if err != nil {
		return nil, err
	}
	key := entity.Key(req.GetEntity())
	_, found, version, err := s.store.Edge(ctx, req.GetUserId(), key)
	if err != nil {
		return nil, err
	}
	if !found {
		return &tidingsv1.UnfollowResponse{}, nil
	}
	change := &tidingsv1.EdgeChange{UserId: req.GetUserId(), Entity: req.GetEntity(), KeepHistory: req.GetKeepHistory()}
	if err := s.graph.Write(ctx, eventlog.FollowSubject(req.GetUserId()), edgeMsgID(req.GetUserId(), key, false, version), id.Caller(), []*tidingsv1.EdgeChange{change}); err != nil {
		return nil, err
	}
	return &tidingsv1.UnfollowResponse{Changed: true}, nil
}

// edgeMsgID names one change of an edge from its current state, so that
// concurrent identical requests append one event, and a later change of the
// same kind (after the state moved on) is not mistaken for a duplicate.
func edgeMsgID(userID, key string, following bool, version int64) string {
	return "edge:" + userID + ":" + key + ":" + strconv.FormatBool(following) + ":" + strconv.FormatInt(version, 10)
}

func follow(userID string, ref *tidingsv1.EntityRef, createMs int64) *tidingsv1.Follow {
	return &tidingsv1.Follow{UserId: userID, Entity: ref, CreateTime: timestamppb.New(time.UnixMilli(createMs))}
}

func pageSize(n int32) int {
	if n == 0 {
		return defaultPageSize
	}
	return int(n)
}

func decodeCursor(scope, token string) (graphstore.Cursor, error) {
	pos, err := pagetoken.Decode(scope, token)
	if err != nil {
		return graphstore.Cursor{}, apierr.InvalidArgument("page_token is not a token of this query")
	}
	c, err := graphstore.ParseCursor(pos)
	if err != nil {
		return graphstore.Cursor{}, apierr.InvalidArgument("page_token is not a token of this query")
	}
	return c, nil
}

// ListFollowing implements tidingsv1.FollowServiceServer. Records the
// caller may not see are left out, and not counted.
func (s *Server) ListFollowing(ctx context.Context, req *tidingsv1.ListFollowingRequest) (*tidingsv1.ListFollowingResponse, error) {
	scope := fmt.Sprintf("following|%s|%d", req.GetUserId(), req.GetKind())
	cursor, err := decodeCursor(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
	keep := func(ctx context.Context, keys []string) ([]bool, error) {
		seen, err := s.visible.Entities(ctx, keys, id)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			switch req.GetKind() {
			case tidingsv1.EntityKind_ENTITY_KIND_USER:
				seen[i] = seen[i] && entity.IsUser(k)
			case tidingsv1.EntityKind_ENTITY_KIND_RECORD:
				seen[i] = seen[i] && !entity.IsUser(k)
			}
		}
		return seen, nil
	}
	edges, more, err := s.store.Following(ctx, req.GetUserId(), cursor, pageSize(req.GetPageSize()), keep)
	if err != nil {
		return nil, err
	}
	total, err := s.followingCount(ctx, req.GetUserId(), id)
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListFollowingResponse{TotalCount: total}
	for _, e := range edges {
		ref, err := entity.Parse(e.Member)
		if err != nil {
			return nil, fmt.Errorf("follows of %s: %w", req.GetUserId(), err)
		}
		resp.Follows = append(resp.Follows, follow(req.GetUserId(), ref, e.CreateMs))
	}
	if more && len(edges) > 0 {
		last := edges[len(edges)-1]
		resp.NextPageToken = pagetoken.Encode(scope, graphstore.Cursor{Score: last.Score, Member: last.Member}.String())
	}
	return resp, nil
}

// followingCount returns how many entities a user follows that the caller
// may see: all of them for the user and admins; for anyone else, the
// restricted records hidden from them do not count.
func (s *Server) followingCount(ctx context.Context, userID string, id auth.Identity) (int64, error) {
	n, err := s.store.FollowingCount(ctx, userID)
	if err != nil || id.ActsAsUser(userID) {
		return n, err
	}
	var hidden int64
	err = s.store.ScanFollowing(ctx, userID, 1000, func(edges []graphstore.Edge) error {
		keys := make([]string, len(edges))
		for i, e := range edges {
			keys[i] = e.Member
		}
		seen, err := s.visible.Entities(ctx, keys, id)
		for _, ok := range seen {
			if !ok {
				hidden++
			}
		}
		return err
	})
	return n - hidden, err
}

// ListFollowers implements tidingsv1.FollowServiceServer.
func (s *Server) ListFollowers(ctx context.Context, req *tidingsv1.ListFollowersRequest) (*tidingsv1.ListFollowersResponse, error) {
	id, _ := auth.FromContext(ctx)
	if err := s.visible.Entity(ctx, req.GetEntity(), id); err != nil {
		return nil, err
	}
	key := entity.Key(req.GetEntity())
	scope := "followers|" + key
	cursor, err := decodeCursor(scope, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	store := s.store
	edges, more, err := store.Followers(ctx, key, cursor, pageSize(req.GetPageSize()))
	if err != nil {
		return nil, err
	}
	total, err := store.FollowerCount(ctx, key)
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListFollowersResponse{TotalCount: total}
	for _, e := range edges {
		resp.Follows = append(resp.Follows, follow(e.Member, req.GetEntity(), e.CreateMs))
	}
	if more && len(edges) > 0 {
		last := edges[len(edges)-1]
		resp.NextPageToken = pagetoken.Encode(scope, graphstore.Cursor{Score: last.Score, Member: last.Member}.String())
	}
	return resp, nil
}

// IsFollowing implements tidingsv1.FollowServiceServer. A record the caller
// may not see is reported as not followed.
func (s *Server) IsFollowing(ctx context.Context, req *tidingsv1.IsFollowingRequest) (*tidingsv1.IsFollowingResponse, error) {
	keys := make([]string, len(req.GetEntities()))
	for i, e := range req.GetEntities() {
		keys[i] = entity.Key(e)
	}
	got, err := s.store.IsFollowing(ctx, req.GetUserId(), keys)
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
	seen, err := s.visible.Entities(ctx, keys, id)
	if err != nil {
		return nil, err
	}
	for i := range got {
		got[i] = got[i] && seen[i]
	}
	return &tidingsv1.IsFollowingResponse{Following: got}, nil
}

// GetFollowCounts implements tidingsv1.FollowServiceServer.
func (s *Server) GetFollowCounts(ctx context.Context, req *tidingsv1.GetFollowCountsRequest) (*tidingsv1.GetFollowCountsResponse, error) {
	id, _ := auth.FromContext(ctx)
	if err := s.visible.Entity(ctx, req.GetEntity(), id); err != nil {
		return nil, err
	}
	store := s.store
	followers, err := store.FollowerCount(ctx, entity.Key(req.GetEntity()))
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.GetFollowCountsResponse{FollowerCount: followers}
	if u := req.GetEntity().GetUserId(); u != "" {
		if resp.FollowingCount, err = s.followingCount(ctx, u, id); err != nil {
			return nil, err
		}
	}
	return resp, nil
}
