// Package conversations implements ConversationService: comments and
// reactions on activities. Whoever may see an activity may comment on it,
// react to it and read its comments and reactions; to anyone else it does
// not exist (NotFound), as for reading it (pkg/visibility).
package conversations

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const defaultPageSize = 50

// Deps are what the ConversationService uses.
type Deps struct {
	Writer     *conversation.Writer
	Profiles   *profilestore.Store
	Visibility *visibility.Checker
}

// Server implements tidingsv1.ConversationServiceServer.
type Server struct {
	tidingsv1.UnimplementedConversationServiceServer
	d     Deps
	store *conversationstore.Store
}

var _ tidingsv1.ConversationServiceServer = (*Server)(nil)

// NewServer returns the ConversationService.
func NewServer(d Deps) *Server { return &Server{d: d, store: d.Writer.Store()} }

// employee is the identity of a user acting, whoever calls for them.
func employee(userID string) auth.Identity { return auth.Identity{Kind: auth.KindEmployee, ID: userID} }

// reader is the user id whose own reactions a read shows ("" for apps and
// admins).
func reader(id auth.Identity) string {
	if id.Kind == auth.KindEmployee {
		return id.ID
	}
	return ""
}

// AddComment implements tidingsv1.ConversationServiceServer.
func (s *Server) AddComment(ctx context.Context, req *tidingsv1.AddCommentRequest) (*tidingsv1.AddCommentResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetAuthorUserId()) {
		return nil, apierr.PermissionDenied("an employee may comment only as themselves")
	}
	// The author must see the activity, whoever calls for them.
	if _, err := s.d.Visibility.Activity(ctx, req.GetActivityId(), employee(req.GetAuthorUserId())); err != nil {
		return nil, err
	}
	c, err := s.d.Writer.AddComment(ctx, req.GetActivityId(), req.GetAuthorUserId(), req.GetText(), req.GetIdempotencyKey(), id.Caller())
	if err != nil {
		return nil, err
	}
	views, err := s.views(ctx, req.GetActivityId(), []*tidingsv1.Comment{c}, reader(id))
	if err != nil {
		return nil, err
	}
	return &tidingsv1.AddCommentResponse{Comment: views[0]}, nil
}

// comment returns a live comment of an activity the caller may see, and
// NotFound otherwise.
func (s *Server) comment(ctx context.Context, activityID, commentID string, id auth.Identity) (*tidingsv1.Activity, *tidingsv1.Comment, error) {
	a, err := s.d.Visibility.Activity(ctx, activityID, id)
	if err != nil {
		return nil, nil, err
	}
	c, err := s.store.Comment(ctx, activityID, commentID)
	if errors.Is(err, conversationstore.ErrNotFound) || errors.Is(err, conversationstore.ErrDeleted) {
		return a, nil, apierr.NotFound("no comment %s on activity %s", commentID, activityID)
	}
	return a, c, err
}

// EditComment implements tidingsv1.ConversationServiceServer.
func (s *Server) EditComment(ctx context.Context, req *tidingsv1.EditCommentRequest) (*tidingsv1.EditCommentResponse, error) {
	id, _ := auth.FromContext(ctx)
	_, c, err := s.comment(ctx, req.GetActivityId(), req.GetCommentId(), id)
	if err != nil {
		return nil, err
	}
	if !id.IsAdmin() && (id.Kind != auth.KindEmployee || id.ID != c.GetAuthorUserId()) {
		return nil, apierr.PermissionDenied("only the author may edit a comment")
	}
	edited, err := s.d.Writer.EditComment(ctx, c, req.GetText(), id.Caller())
	if err != nil {
		return nil, err
	}
	views, err := s.views(ctx, req.GetActivityId(), []*tidingsv1.Comment{edited}, reader(id))
	if err != nil {
		return nil, err
	}
	return &tidingsv1.EditCommentResponse{Comment: views[0]}, nil
}

// DeleteComment implements tidingsv1.ConversationServiceServer.
func (s *Server) DeleteComment(ctx context.Context, req *tidingsv1.DeleteCommentRequest) (*tidingsv1.DeleteCommentResponse, error) {
	id, _ := auth.FromContext(ctx)
	a, err := s.d.Visibility.Activity(ctx, req.GetActivityId(), id)
	if err != nil {
		return nil, err
	}
	c, err := s.store.Comment(ctx, req.GetActivityId(), req.GetCommentId())
	switch {
	case errors.Is(err, conversationstore.ErrDeleted):
		return &tidingsv1.DeleteCommentResponse{}, nil
	case errors.Is(err, conversationstore.ErrNotFound):
		return nil, apierr.NotFound("no comment %s on activity %s", req.GetCommentId(), req.GetActivityId())
	case err != nil:
		return nil, err
	}
	mine := id.Kind == auth.KindEmployee && (id.ID == c.GetAuthorUserId() || id.ID == entity.ActorUser(a))
	if !mine && !id.IsAdmin() {
		return nil, apierr.PermissionDenied("only the comment's author, the activity's author or an admin may delete a comment")
	}
	if err := s.d.Writer.DeleteComment(ctx, c, id.Caller()); err != nil {
		return nil, err
	}
	return &tidingsv1.DeleteCommentResponse{Deleted: true}, nil
}

// ListComments implements tidingsv1.ConversationServiceServer.
func (s *Server) ListComments(ctx context.Context, req *tidingsv1.ListCommentsRequest) (*tidingsv1.ListCommentsResponse, error) {
	id, _ := auth.FromContext(ctx)
	if _, err := s.d.Visibility.Activity(ctx, req.GetActivityId(), id); err != nil {
		return nil, err
	}
	newest := req.GetOrder() == tidingsv1.CommentOrder_COMMENT_ORDER_NEWEST_FIRST
	scope := "comments|" + req.GetActivityId() + "|" + req.GetOrder().String()
	after, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = defaultPageSize
	}
	ids, more, total, err := s.store.Page(ctx, req.GetActivityId(), after, limit, newest)
	if err != nil {
		return nil, err
	}
	cms, err := redisx.Run(ctx, s.store.Client(), func(pipe redis.Pipeliner) redisx.Result[[]*tidingsv1.Comment] {
		return s.store.QueueComments(ctx, pipe, req.GetActivityId(), ids)
	})
	if err != nil {
		return nil, err
	}
	var live []*tidingsv1.Comment
	for _, c := range cms {
		if c != nil {
			live = append(live, c)
		}
	}
	views, err := s.views(ctx, req.GetActivityId(), live, reader(id))
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListCommentsResponse{Comments: views, TotalCount: total}
	if more && len(ids) > 0 {
		resp.NextPageToken = pagetoken.Encode(scope, ids[len(ids)-1])
	}
	return resp, nil
}

// views hydrates comments: their authors' profiles and their reactions,
// in one round trip.
func (s *Server) views(ctx context.Context, activityID string, cms []*tidingsv1.Comment, me string) ([]*tidingsv1.CommentView, error) {
	var (
		authors  []string
		items    []string
		profiles redisx.Result[map[string]*tidingsv1.Profile]
		rs       redisx.Result[[]conversationstore.Reactions]
	)
	for _, c := range cms {
		authors = append(authors, c.GetAuthorUserId())
		items = append(items, c.GetId())
	}
	err := redisx.Pipeline(ctx, s.store.Client(), func(pipe redis.Pipeliner) error {
		profiles = s.d.Profiles.QueueGetMany(ctx, pipe, authors)
		rs = s.store.QueueItemReactions(ctx, pipe, activityID, items, me)
		return nil
	})
	if err != nil {
		return nil, err
	}
	byUser, err := profiles()
	if err != nil {
		return nil, err
	}
	reactions, err := rs()
	if err != nil {
		return nil, err
	}
	out := make([]*tidingsv1.CommentView, len(cms))
	for i, c := range cms {
		out[i] = &tidingsv1.CommentView{Comment: c, AuthorProfile: byUser[c.GetAuthorUserId()],
			ReactionCounts: reactions[i].Counts, MyReactions: reactions[i].Mine}
	}
	return out, nil
}

// item checks that the user may see the activity (and that the comment,
// if any, is live) and returns what the reaction is on.
func (s *Server) item(ctx context.Context, activityID, commentID string, id auth.Identity) (conversationstore.Item, error) {
	it := conversationstore.Item{ActivityID: activityID, CommentID: commentID}
	if commentID != "" {
		_, _, err := s.comment(ctx, activityID, commentID, id)
		return it, err
	}
	_, err := s.d.Visibility.Activity(ctx, activityID, id)
	return it, err
}

// AddReaction implements tidingsv1.ConversationServiceServer.
func (s *Server) AddReaction(ctx context.Context, req *tidingsv1.AddReactionRequest) (*tidingsv1.AddReactionResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetUserId()) {
		return nil, apierr.PermissionDenied("an employee may react only as themselves")
	}
	it, err := s.item(ctx, req.GetActivityId(), req.GetCommentId(), employee(req.GetUserId()))
	if err != nil {
		return nil, err
	}
	added, err := s.d.Writer.React(ctx, it, req.GetUserId(), req.GetKind(), true, id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.AddReactionResponse{Added: added}, nil
}

// RemoveReaction implements tidingsv1.ConversationServiceServer.
func (s *Server) RemoveReaction(ctx context.Context, req *tidingsv1.RemoveReactionRequest) (*tidingsv1.RemoveReactionResponse, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetUserId()) {
		return nil, apierr.PermissionDenied("an employee may react only as themselves")
	}
	// A reaction may be taken back from a comment since deleted: only the
	// activity must still be visible.
	if _, err := s.d.Visibility.Activity(ctx, req.GetActivityId(), employee(req.GetUserId())); err != nil {
		return nil, err
	}
	it := conversationstore.Item{ActivityID: req.GetActivityId(), CommentID: req.GetCommentId()}
	removed, err := s.d.Writer.React(ctx, it, req.GetUserId(), req.GetKind(), false, id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.RemoveReactionResponse{Removed: removed}, nil
}

// ListReactions implements tidingsv1.ConversationServiceServer.
func (s *Server) ListReactions(ctx context.Context, req *tidingsv1.ListReactionsRequest) (*tidingsv1.ListReactionsResponse, error) {
	id, _ := auth.FromContext(ctx)
	it, err := s.item(ctx, req.GetActivityId(), req.GetCommentId(), id)
	if err != nil {
		return nil, err
	}
	scope := "reactions|" + it.ID() + "|" + req.GetKind().String()
	pos, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	after, err := conversationstore.ParseReactorCursor(pos)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = defaultPageSize
	}
	var kinds []tidingsv1.ReactionKind
	if k := req.GetKind(); k != tidingsv1.ReactionKind_REACTION_KIND_UNSPECIFIED {
		kinds = []tidingsv1.ReactionKind{k}
	}
	page, more, err := s.store.Reactors(ctx, it, kinds, after, limit)
	if err != nil {
		return nil, err
	}
	users := make([]string, len(page))
	for i, r := range page {
		users[i] = r.UserID
	}
	profiles, err := s.d.Profiles.GetMany(ctx, users)
	if err != nil {
		return nil, err
	}
	counts, err := s.store.ReactionCounts(ctx, it)
	if err != nil {
		return nil, err
	}
	resp := &tidingsv1.ListReactionsResponse{Counts: counts}
	for _, r := range page {
		resp.Reactions = append(resp.Reactions, &tidingsv1.Reaction{
			UserId: r.UserID, Profile: profiles[r.UserID], Kind: r.Kind, CreateTime: msTime(r.Ms),
		})
	}
	if more && len(page) > 0 {
		resp.NextPageToken = pagetoken.Encode(scope, conversationstore.CursorOf(page[len(page)-1]).String())
	}
	return resp, nil
}

func msTime(ms int64) *timestamppb.Timestamp { return timestamppb.New(time.UnixMilli(ms)) }
