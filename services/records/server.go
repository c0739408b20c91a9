// Package records implements RecordService: the business records internal
// apps bring (a CRM opportunity, an incident, a build) and the events they
// post on them. An app writes only records of its own namespace: types whose
// first segment is its app id.
package records

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/settings"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const defaultPageSize = 50

// Server implements tidingsv1.RecordServiceServer.
type Server struct {
	tidingsv1.UnimplementedRecordServiceServer
	log      *eventlog.Log
	proj     *projection.Projector
	records  *recordstore.Store
	profiles *profilestore.Store
	visible  *visibility.Checker
	graph    *graph.Writer
	poster   *activity.Poster
	settings *settings.Store
	logger   *slog.Logger
	now      func() time.Time
}

var _ tidingsv1.RecordServiceServer = (*Server)(nil)

// Deps are what the RecordService uses.
type Deps struct {
	Log        *eventlog.Log
	Projector  *projection.Projector
	Visibility *visibility.Checker
	Graph      *graph.Writer
	Poster     *activity.Poster
	Settings   *settings.Store
	Logger     *slog.Logger
}

// NewServer returns the RecordService.
func NewServer(d Deps) *Server {
	st := d.Projector.Stores()
	return &Server{log: d.Log, proj: d.Projector, records: st.Records, profiles: st.Profiles, visible: d.Visibility,
		graph: d.Graph, poster: d.Poster, settings: d.Settings, logger: d.Logger, now: time.Now}
}

// ownNamespace returns PermissionDenied unless the caller may write records
// of typ: an admin, or the app owning the type's namespace.
func ownNamespace(ctx context.Context, typ string) (auth.Identity, error) {
	id, _ := auth.FromContext(ctx)
	if id.IsAdmin() || (id.Kind == auth.KindApp && id.ID == entity.App(typ)) {
		return id, nil
	}
	return id, apierr.PermissionDenied("app %q may write only records of its own namespace (%q.*), not %q", id.ID, id.ID, typ)
}

// UpsertRecord implements tidingsv1.RecordServiceServer.
func (s *Server) UpsertRecord(ctx context.Context, req *tidingsv1.UpsertRecordRequest) (*tidingsv1.UpsertRecordResponse, error) {
	in := req.GetRecord()
	ref := in.GetRef()
	id, err := ownNamespace(ctx, ref.GetType())
	if err != nil {
		return nil, err
	}
	next := proto.CloneOf(in)
	next.CreateTime, next.UpdateTime = nil, nil
	if next.GetVisibility() == tidingsv1.Visibility_VISIBILITY_UNSPECIFIED {
		next.Visibility = tidingsv1.Visibility_VISIBILITY_PUBLIC
	}
	if next.GetVisibility() == tidingsv1.Visibility_VISIBILITY_PUBLIC {
		next.ReaderIds = nil
	} else {
		slices.Sort(next.ReaderIds)
		next.ReaderIds = slices.Compact(next.ReaderIds)
	}
	var (
		prevOwner string
		wasLive   bool
	)
	res, err := s.update(ctx, ref, func(cur *tidingsv1.RecordEvent, found bool) (*tidingsv1.RecordEvent, bool, error) {
		live := found && !cur.GetDeleted()
		wasLive, prevOwner = live, ""
		if live {
			prevOwner = cur.GetRecord().GetOwnerId()
			if sameRecord(cur.GetRecord(), next) {
				return nil, false, nil
			}
		}
		now := timestamppb.New(s.now())
		r := proto.CloneOf(next)
		r.UpdateTime, r.CreateTime = now, now
		if live {
			r.CreateTime = cur.GetRecord().GetCreateTime()
		}
		return &tidingsv1.RecordEvent{Record: r, Caller: id.Caller(), Time: now}, true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.proj.ApplyRecord(ctx, res.Sequence, res.Event); err != nil {
		s.logger.WarnContext(ctx, "record write-through failed; the projector will apply it", "seq", res.Sequence, "error", err)
	}
	created := res.Changed && !wasLive
	if res.Changed {
		if err := s.autoFollowOwner(ctx, res.Event.GetRecord(), prevOwner); err != nil {
			return nil, err
		}
	}
	return &tidingsv1.UpsertRecordResponse{Record: res.Event.GetRecord(), Created: created}, nil
}

// update changes a record through the RECORDS stream (optimistic
// concurrency on its subject), reporting lost races as Aborted.
func (s *Server) update(ctx context.Context, ref *tidingsv1.RecordRef,
	mutate func(cur *tidingsv1.RecordEvent, found bool) (*tidingsv1.RecordEvent, bool, error),
) (eventlog.StateResult[*tidingsv1.RecordEvent], error) {
	res, err := eventlog.Update(ctx, s.log, eventlog.StateUpdate[*tidingsv1.RecordEvent]{
		Stream:      eventlog.StreamRecords,
		Subject:     eventlog.RecordSubject(ref.GetType(), ref.GetExternalId()),
		New:         func() *tidingsv1.RecordEvent { return &tidingsv1.RecordEvent{} },
		MsgIDPrefix: "record:" + entity.RecordKey(ref),
		Mutate:      mutate,
	})
	if errors.Is(err, eventlog.ErrTooMuchContention) {
		return res, apierr.Aborted("record %s is being changed concurrently; retry", entity.RecordName(ref))
	}
	return res, err
}

func sameRecord(a, b *tidingsv1.Record) bool {
	ca, cb := proto.CloneOf(a), proto.CloneOf(b)
	ca.CreateTime, ca.UpdateTime, cb.CreateTime, cb.UpdateTime = nil, nil, nil, nil
	return proto.Equal(ca, cb)
}

// autoFollowOwner makes a record's new owner follow it, when the rule is on
// and the owner has a profile.
func (s *Server) autoFollowOwner(ctx context.Context, r *tidingsv1.Record, prevOwner string) error {
	owner := r.GetOwnerId()
	if owner == "" || owner == prevOwner {
		return nil
	}
	rules, err := s.settings.AutoFollowRules(ctx)
	if err != nil || !rules.GetOwnerFollowsRecord() {
		return err
	}
	if _, err := s.profiles.Get(ctx, owner); errors.Is(err, profilestore.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	ref := &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_Record{Record: r.GetRef()}}
	if _, found, _, err := s.graph.Store().Edge(ctx, owner, entity.Key(ref)); err != nil || found {
		return err
	}
	system := &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_SYSTEM, Id: "auto-follow"}
	return s.graph.Write(ctx, eventlog.FollowSubject(owner), "", system,
		[]*tidingsv1.EdgeChange{{UserId: owner, Entity: ref, Following: true}})
}

// GetRecord implements tidingsv1.RecordServiceServer.
func (s *Server) GetRecord(ctx context.Context, req *tidingsv1.GetRecordRequest) (*tidingsv1.GetRecordResponse, error) {
	id, _ := auth.FromContext(ctx)
	r, err := s.visible.Record(ctx, req.GetRef(), id)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetRecordResponse{Record: r}, nil
}

// BatchGetRecords implements tidingsv1.RecordServiceServer.
func (s *Server) BatchGetRecords(ctx context.Context, req *tidingsv1.BatchGetRecordsRequest) (*tidingsv1.BatchGetRecordsResponse, error) {
	recs, err := s.records.GetMany(ctx, req.GetRefs())
	if err != nil {
		return nil, err
	}
	id, _ := auth.FromContext(ctx)
	resp := &tidingsv1.BatchGetRecordsResponse{}
	for i, r := range recs {
		if r == nil || !visibility.CanSee(r, id) {
			resp.Missing = append(resp.Missing, req.GetRefs()[i])
			continue
		}
		resp.Records = append(resp.Records, r)
	}
	return resp, nil
}

// ListRecords implements tidingsv1.RecordServiceServer.
func (s *Server) ListRecords(ctx context.Context, req *tidingsv1.ListRecordsRequest) (*tidingsv1.ListRecordsResponse, error) {
	scope := "records|" + req.GetType()
	after, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	size := int(req.GetPageSize())
	if size == 0 {
		size = defaultPageSize
	}
	id, _ := auth.FromContext(ctx)
	recs, last, more, err := s.records.List(ctx, req.GetType(), after, size, func(r *tidingsv1.Record) bool {
		return visibility.CanSee(r, id)
	})
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListRecordsResponse{Records: recs}
	if more {
		resp.NextPageToken = pagetoken.Encode(scope, last)
	}
	return resp, nil
}

// unfollowBatch is how many followers one unfollow event of a deleted
// record removes.
const unfollowBatch = 1000

// DeleteRecord implements tidingsv1.RecordServiceServer.
func (s *Server) DeleteRecord(ctx context.Context, req *tidingsv1.DeleteRecordRequest) (*tidingsv1.DeleteRecordResponse, error) {
	ref := req.GetRef()
	id, err := ownNamespace(ctx, ref.GetType())
	if err != nil {
		return nil, err
	}
	res, err := s.update(ctx, ref, func(cur *tidingsv1.RecordEvent, found bool) (*tidingsv1.RecordEvent, bool, error) {
		if !found || cur.GetDeleted() {
			return nil, false, nil
		}
		now := timestamppb.New(s.now())
		return &tidingsv1.RecordEvent{Record: &tidingsv1.Record{Ref: ref}, Deleted: true, Caller: id.Caller(), Time: now}, true, nil
	})
	if err != nil {
		return nil, err
	}
	if !res.Found {
		return &tidingsv1.DeleteRecordResponse{}, nil
	}
	if err := s.proj.ApplyRecord(ctx, res.Sequence, res.Event); err != nil {
		s.logger.WarnContext(ctx, "record write-through failed; the projector will apply it", "seq", res.Sequence, "error", err)
	}
	// Its follows go with it (also on a repeated delete, to finish one that
	// was interrupted).
	eref := &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_Record{Record: ref}}
	err = s.graph.Store().ScanFollowers(ctx, entity.Key(eref), unfollowBatch, func(edges []graphstore.Edge) error {
		changes := make([]*tidingsv1.EdgeChange, len(edges))
		for i, e := range edges {
			changes[i] = &tidingsv1.EdgeChange{UserId: e.Member, Entity: eref}
		}
		return s.graph.Write(ctx, graph.BulkSubject, "", id.Caller(), changes)
	})
	if err != nil {
		return nil, err
	}
	return &tidingsv1.DeleteRecordResponse{Deleted: res.Changed}, nil
}

// PostRecordActivity implements tidingsv1.RecordServiceServer.
func (s *Server) PostRecordActivity(ctx context.Context, req *tidingsv1.PostRecordActivityRequest) (*tidingsv1.PostRecordActivityResponse, error) {
	ref := req.GetRef()
	id, err := ownNamespace(ctx, ref.GetType())
	if err != nil {
		return nil, err
	}
	if _, err := s.records.Get(ctx, ref); errors.Is(err, recordstore.ErrNotFound) {
		return nil, apierr.NotFound("no record %s", entity.RecordName(ref))
	} else if err != nil {
		return nil, err
	}
	a := &tidingsv1.Activity{
		Actor:        id.Caller(),
		Verb:         req.GetVerb(),
		Record:       ref,
		Text:         req.GetText(),
		FieldChanges: req.GetFieldChanges(),
		Links:        req.GetLinks(),
		Attributes:   req.GetAttributes(),
		OnBehalfOf:   req.GetOnBehalfOf(),
	}
	scope := "rec:" + entity.RecordKey(ref) + ":" + req.GetEventId()
	posted, err := s.poster.Post(ctx, a, scope, id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.PostRecordActivityResponse{Activity: posted}, nil
}
