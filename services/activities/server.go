// Package activities implements ActivityService: employees' posts, and
// reading, editing and deleting any activity (apps' record events included).
package activities

import (
	"context"
	"errors"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/userstate"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// VerbPosted is the verb of employees' posts.
const VerbPosted = "posted"

// Server implements tidingsv1.ActivityServiceServer.
type Server struct {
	tidingsv1.UnimplementedActivityServiceServer
	poster *activity.Poster
	vis    *visibility.Checker
	d      Deps
}

var _ tidingsv1.ActivityServiceServer = (*Server)(nil)

// Deps are what the ActivityService uses.
type Deps struct {
	Poster     *activity.Poster
	Visibility *visibility.Checker
	// Conversations reads the conversations activity reads carry.
	Conversations *conversation.Views
	// UserState writes bookmarks and mutes.
	UserState *userstate.Writer
	Profiles  *profilestore.Store
}

// NewServer returns the ActivityService.
func NewServer(d Deps) *Server {
	return &Server{poster: d.Poster, vis: d.Visibility, d: d}
}

// PostActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) PostActivity(ctx context.Context, req *tidingsv1.PostActivityRequest) (*tidingsv1.PostActivityResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetActorUserId()) {
		return nil, apierr.PermissionDenied("an employee may post only as themselves")
	}
	if ref := req.GetRecord(); ref != nil {
		// The author must see the record, whoever calls.
		if _, err := s.vis.Record(ctx, ref, auth.Identity{Kind: auth.KindEmployee, ID: req.GetActorUserId()}); err != nil {
			return nil, err
		}
	}
	a := &tidingsv1.Activity{
		Actor:  &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: req.GetActorUserId()},
		Verb:   VerbPosted,
		Record: req.GetRecord(),
		Text:   req.GetText(),
		Links:  req.GetLinks(),
	}
	scope := ""
	if k := req.GetIdempotencyKey(); k != "" {
		scope = "post:" + req.GetActorUserId() + ":" + k
	}
	posted, err := s.poster.Post(ctx, a, scope, id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.PostActivityResponse{Activity: posted}, nil
}

func (s *Server) canSee(ctx context.Context, a *tidingsv1.Activity) (bool, error) {
	id, _ := auth.FromContext(ctx)
	seen, _, err := s.vis.Activities(ctx, []*tidingsv1.Activity{a}, id)
	if err != nil {
		return false, err
	}
	return seen[0], nil
}

// GetActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) GetActivity(ctx context.Context, req *tidingsv1.GetActivityRequest) (*tidingsv1.GetActivityResponse, error) {
	id, _ := auth.FromContext(ctx)
	a, err := s.vis.Activity(ctx, req.GetId(), id)
	if err != nil {
		return nil, err
	}
	convs, err := s.conversations(ctx, []*tidingsv1.Activity{a}, readerOf(id))
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetActivityResponse{Activity: a, Conversation: convs[0]}, nil
}

// BatchGetActivities implements tidingsv1.ActivityServiceServer.
func (s *Server) BatchGetActivities(ctx context.Context, req *tidingsv1.BatchGetActivitiesRequest) (*tidingsv1.BatchGetActivitiesResponse, error) {
	acts, err := s.poster.Bodies().GetMany(ctx, req.GetIds())
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
	seen, _, err := s.vis.Activities(ctx, acts, id)
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.BatchGetActivitiesResponse{}
	for i, a := range acts {
		if seen[i] {
			resp.Activities = append(resp.Activities, a)
		} else {
			resp.MissingIds = append(resp.MissingIds, req.GetIds()[i])
		}
	}
	if resp.Conversations, err = s.conversations(ctx, resp.Activities, readerOf(id)); err != nil {
		return nil, err
	}
	return resp, nil
}

// EditActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) EditActivity(ctx context.Context, req *tidingsv1.EditActivityRequest) (*tidingsv1.EditActivityResponse, error) {
	id, _ := auth.FromContext(ctx)
	a, err := s.vis.Activity(ctx, req.GetId(), id)
	if err != nil {
		return nil, err
	}
	author := a.GetActor().GetKind() == tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE && a.GetActor().GetId() == id.ID && id.Kind == auth.KindEmployee
	if !author && !id.IsAdmin() {
		return nil, apierr.PermissionDenied("only the author may edit an activity")
	}
	edited, err := s.poster.Edit(ctx, a, req.GetText(), id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.EditActivityResponse{Activity: edited}, nil
}

// DeleteActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) DeleteActivity(ctx context.Context, req *tidingsv1.DeleteActivityRequest) (*tidingsv1.DeleteActivityResponse, error) {
	bodies := s.poster.Bodies()
	a, err := bodies.Get(ctx, req.GetId())
	if errors.Is(err, activitystore.ErrNotFound) {
		deleted, derr := bodies.IsDeleted(ctx, req.GetId())
		if derr != nil {
			return nil, derr
		}
		if deleted {
			return &tidingsv1.DeleteActivityResponse{}, nil
		}
		return nil, apierr.NotFound("no activity %s", req.GetId())
	}
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
	if !mayDelete(id, a) {
		ok, err := s.canSee(ctx, a)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, apierr.NotFound("no activity %s", req.GetId())
		}
		return nil, apierr.PermissionDenied("only the author, the app owning the record, or an admin may delete an activity")
	}
	if err := s.poster.Delete(ctx, a, id.Caller()); err != nil {
		return nil, err
	}
	return &tidingsv1.DeleteActivityResponse{Deleted: true}, nil
}

func mayDelete(id auth.Identity, a *tidingsv1.Activity) bool {
	switch id.Kind {
	case auth.KindAdmin:
		return true
	case auth.KindEmployee:
		return a.GetActor().GetKind() == tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE && a.GetActor().GetId() == id.ID
	case auth.KindApp:
		return a.GetRecord() != nil && entity.App(a.GetRecord().GetType()) == id.ID
	}
	return false
}
