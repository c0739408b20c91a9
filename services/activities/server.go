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
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/recordstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// VerbPosted is the verb of employees' posts.
const VerbPosted = "posted"

// Server implements tidingsv1.ActivityServiceServer.
type Server struct {
	tidingsv1.UnimplementedActivityServiceServer
	poster  *activity.Poster
	records *recordstore.Store
}

var _ tidingsv1.ActivityServiceServer = (*Server)(nil)

// NewServer returns the ActivityService.
func NewServer(poster *activity.Poster, records *recordstore.Store) *Server {
	return &Server{poster: poster, records: records}
}

// PostActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) PostActivity(ctx context.Context, req *tidingsv1.PostActivityRequest) (*tidingsv1.PostActivityResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetActorUserId()) {
		return nil, apierr.PermissionDenied("an employee may post only as themselves")
	}
	if ref := req.GetRecord(); ref != nil {
		rec, err := s.records.Get(ctx, ref)
		if errors.Is(err, recordstore.ErrNotFound) || (err == nil && !recordstore.UserMaySee(rec, req.GetActorUserId())) {
			return nil, apierr.NotFound("no record %s", entity.RecordKey(ref))
		}
		if err != nil {
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

// visible returns NotFound unless the activity exists and the caller may
// see it.
func (s *Server) visible(ctx context.Context, activityID string) (*tidingsv1.Activity, error) {
	a, err := s.poster.Bodies().Get(ctx, activityID)
	if errors.Is(err, activitystore.ErrNotFound) {
		return nil, apierr.NotFound("no activity %s", activityID)
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.canSee(ctx, a)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierr.NotFound("no activity %s", activityID)
	}
	return a, nil
}

func (s *Server) canSee(ctx context.Context, a *tidingsv1.Activity) (bool, error) {
	ref := a.GetRecord()
	if ref == nil {
		return true, nil
	}
	rec, err := s.records.Get(ctx, ref)
	if errors.Is(err, recordstore.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	id, _ := auth.FromContext(ctx)
	return recordstore.CanSee(rec, id), nil
}

// GetActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) GetActivity(ctx context.Context, req *tidingsv1.GetActivityRequest) (*tidingsv1.GetActivityResponse, error) {
	a, err := s.visible(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetActivityResponse{Activity: a}, nil
}

// BatchGetActivities implements tidingsv1.ActivityServiceServer.
func (s *Server) BatchGetActivities(ctx context.Context, req *tidingsv1.BatchGetActivitiesRequest) (*tidingsv1.BatchGetActivitiesResponse, error) {
	acts, err := s.poster.Bodies().GetMany(ctx, req.GetIds())
	if err != nil {
		return nil, err
	}
	// The records the activities are about, in one read.
	var refs []*tidingsv1.RecordRef
	for _, a := range acts {
		if r := a.GetRecord(); r != nil {
			refs = append(refs, r)
		}
	}
	records := map[string]*tidingsv1.Record{}
	if len(refs) > 0 {
		recs, err := s.records.GetMany(ctx, refs)
		if err != nil {
			return nil, err
		}
		for i, r := range recs {
			if r != nil {
				records[entity.RecordKey(refs[i])] = r
			}
		}
	}
	id, _ := auth.FromContext(ctx)
	resp := &tidingsv1.BatchGetActivitiesResponse{}
	for i, a := range acts {
		ok := a != nil
		if r := a.GetRecord(); ok && r != nil {
			rec := records[entity.RecordKey(r)]
			ok = rec != nil && recordstore.CanSee(rec, id)
		}
		if ok {
			resp.Activities = append(resp.Activities, a)
		} else {
			resp.MissingIds = append(resp.MissingIds, req.GetIds()[i])
		}
	}
	return resp, nil
}

// EditActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) EditActivity(ctx context.Context, req *tidingsv1.EditActivityRequest) (*tidingsv1.EditActivityResponse, error) {
	a, err := s.visible(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
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
