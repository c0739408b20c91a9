// Package notifications implements NotificationService: an employee's
// notifications, folded (pkg/notificationstore), with their unread count,
// read marks and a live stream.
//
// Every read checks again what the fan-out checked when the notification
// was made: a notification about an activity the reader may no longer see
// (a restricted record whose readers changed), about a deleted activity or
// comment, or about an activity the reader muted since, is left out.
package notifications

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/userstate"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const (
	defaultPageSize = 20
	// maxUnread is the most unread notifications GetUnreadCount counts.
	maxUnread = 100
	// maxReadRounds bounds the reads that refill a page thinned by
	// notifications the reader may no longer see.
	maxReadRounds = 4
)

// Deps are what the NotificationService uses.
type Deps struct {
	Writer        *userstate.Writer
	Notifications *notificationstore.Store
	Conversations *conversationstore.Store
	Bodies        *activitystore.Store
	Profiles      *profilestore.Store
	Records       *recordstore.Store
	UserState     *userstatestore.Store
	Visibility    *visibility.Checker
	// Live delivers the notices WatchNotifications streams; it is
	// Unavailable without it.
	Live *live.Hub
	// WatchBuffer is how many notices a watcher may fall behind before it
	// is cut off.
	WatchBuffer int
}

// Server implements tidingsv1.NotificationServiceServer.
type Server struct {
	tidingsv1.UnimplementedNotificationServiceServer
	d Deps
}

var _ tidingsv1.NotificationServiceServer = (*Server)(nil)

// NewServer returns the NotificationService.
func NewServer(d Deps) *Server {
	if d.WatchBuffer == 0 {
		d.WatchBuffer = 256
	}
	return &Server{d: d}
}

func own(ctx context.Context, user string) (auth.Identity, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(user) {
		return id, apierr.PermissionDenied("an employee may read and mark only their own notifications")
	}
	return id, nil
}

// ListNotifications implements tidingsv1.NotificationServiceServer.
func (s *Server) ListNotifications(ctx context.Context, req *tidingsv1.ListNotificationsRequest) (*tidingsv1.ListNotificationsResponse, error) {
	user := req.GetUserId()
	if _, err := own(ctx, user); err != nil {
		return nil, err
	}
	scope := "notifications|" + user
	pos, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	after, err := notificationstore.ParseCursor(pos)
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = defaultPageSize
	}
	resp := &tidingsv1.ListNotificationsResponse{}
	more := true
	for round := 0; round < maxReadRounds && len(resp.Notifications) < limit && more; round++ {
		var items []notificationstore.Item
		items, more, _, err = s.d.Notifications.Page(ctx, user, notificationstore.Query{After: after, Limit: limit - len(resp.Notifications)})
		if err != nil {
			return nil, err
		}
		if len(items) == 0 {
			break
		}
		after = notificationstore.CursorOf(items[len(items)-1])
		got, err := s.hydrate(ctx, user, items)
		if err != nil {
			return nil, err
		}
		resp.Notifications = append(resp.Notifications, got...)
	}
	if more {
		resp.NextPageToken = pagetoken.Encode(scope, after.String())
	}
	return resp, nil
}

// GetUnreadCount implements tidingsv1.NotificationServiceServer.
func (s *Server) GetUnreadCount(ctx context.Context, req *tidingsv1.GetUnreadCountRequest) (*tidingsv1.GetUnreadCountResponse, error) {
	user := req.GetUserId()
	if _, err := own(ctx, user); err != nil {
		return nil, err
	}
	items, more, _, err := s.d.Notifications.Page(ctx, user, notificationstore.Query{Limit: maxUnread, UnreadOnly: true, Actors: 1})
	if err != nil {
		return nil, err
	}
	got, err := s.hydrate(ctx, user, items)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.GetUnreadCountResponse{UnreadCount: int64(len(got)), More: more}, nil
}

// MarkNotificationsRead implements tidingsv1.NotificationServiceServer.
func (s *Server) MarkNotificationsRead(ctx context.Context, req *tidingsv1.MarkNotificationsReadRequest) (*tidingsv1.MarkNotificationsReadResponse, error) {
	user := req.GetUserId()
	id, err := own(ctx, user)
	if err != nil {
		return nil, err
	}
	var upTo int64
	if tok := req.GetReadToken(); tok != "" {
		if upTo, err = strconv.ParseInt(tok, 10, 64); err != nil || upTo <= 0 {
			return nil, apierr.InvalidArgument("read_token is not a notification's read_token")
		}
	}
	marked, err := s.d.Writer.MarkRead(ctx, user, upTo, id.Caller())
	if err != nil {
		return nil, err
	}
	return &tidingsv1.MarkNotificationsReadResponse{Marked: marked}, nil
}

// target is what an item is about, read from its name.
type target struct {
	activity, comment string
	record            *tidingsv1.RecordRef
}

func targetOf(it notificationstore.Item) target {
	switch it.Kind {
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW:
		return target{}
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_RECORD_ACTIVITY:
		t := target{activity: it.Object}
		if ref, err := entity.Parse(it.Target); err == nil {
			t.record = ref.GetRecord()
		}
		return t
	case tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION:
		a, c, _ := strings.Cut(it.Target, "/")
		return target{activity: a, comment: c}
	}
	// Mentions, comments and replies show their newest comment.
	return target{activity: it.Target, comment: it.Object}
}

// hydrate turns items into notifications as user may see them now, in
// two round trips: the activities, comments, mutes, actors' profiles and
// named records; then the activities' records, to check them.
func (s *Server) hydrate(ctx context.Context, user string, items []notificationstore.Item) ([]*tidingsv1.Notification, error) {
	if len(items) == 0 {
		return nil, nil
	}
	targets := make([]target, len(items))
	var actIDs, actors []string
	seenAct, seenActor := map[string]bool{}, map[string]bool{}
	comments := map[string][]string{}
	var recRefs []*tidingsv1.RecordRef
	for i, it := range items {
		t := targetOf(it)
		targets[i] = t
		if t.activity != "" && !seenAct[t.activity] {
			seenAct[t.activity] = true
			actIDs = append(actIDs, t.activity)
		}
		if t.comment != "" {
			comments[t.activity] = append(comments[t.activity], t.comment)
		}
		if t.record != nil {
			recRefs = append(recRefs, t.record)
		}
		for _, a := range it.Actors {
			if !seenActor[a] && !strings.HasPrefix(a, "app:") {
				seenActor[a] = true
				actors = append(actors, a)
			}
		}
	}
	var (
		bodies   redisx.Result[[]*tidingsv1.Activity]
		muted    redisx.Result[[]bool]
		profiles redisx.Result[map[string]*tidingsv1.Profile]
		cms      = map[string]redisx.Result[[]*tidingsv1.Comment]{}
		recs     = make([]redisx.Result[*tidingsv1.Record], len(recRefs))
	)
	err := redisx.Pipeline(ctx, s.d.Conversations.Client(), func(pipe redis.Pipeliner) error {
		bodies = s.d.Bodies.QueueGetMany(ctx, pipe, actIDs)
		muted = s.d.UserState.QueueFlagged(ctx, pipe, userstatestore.Mute, user, actIDs)
		profiles = s.d.Profiles.QueueGetMany(ctx, pipe, actors)
		for a, ids := range comments {
			cms[a] = s.d.Conversations.QueueComments(ctx, pipe, a, ids)
		}
		for i, r := range recRefs {
			recs[i] = s.d.Records.QueueGet(ctx, pipe, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hydrate notifications: %w", err)
	}
	acts, err := bodies()
	if err != nil {
		return nil, err
	}
	mutes, err := muted()
	if err != nil {
		return nil, err
	}
	byUser, err := profiles()
	if err != nil {
		return nil, err
	}
	reader := auth.Identity{Kind: auth.KindEmployee, ID: user}
	visible, records, err := s.d.Visibility.Activities(ctx, acts, reader)
	if err != nil {
		return nil, err
	}
	act := map[string]*tidingsv1.Activity{}
	for i, a := range acts {
		if a != nil && visible[i] && !mutes[i] {
			act[actIDs[i]] = a
		}
	}
	comment := map[string]*tidingsv1.Comment{}
	for a, res := range cms {
		list, err := res()
		if err != nil {
			return nil, err
		}
		for _, c := range list {
			if c != nil {
				comment[a+"/"+c.GetId()] = c
			}
		}
	}
	named := map[string]*tidingsv1.Record{}
	for i, res := range recs {
		r, err := res()
		if errors.Is(err, recordstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		named[entity.RecordKey(recRefs[i])] = r
	}
	var out []*tidingsv1.Notification
	for i, it := range items {
		t := targets[i]
		n := &tidingsv1.Notification{
			Id: it.ID(), Kind: it.Kind, ActorCount: it.Count, ActivityId: t.activity, CommentId: t.comment,
			UpdateTime: timestamppb.New(time.UnixMilli(it.Ms)), Read: it.Read, ReadToken: strconv.FormatInt(it.Ms, 10),
		}
		for _, a := range it.Actors {
			n.Actors = append(n.Actors, callerOf(a))
			if p := byUser[a]; p != nil {
				n.ActorProfiles = append(n.ActorProfiles, p)
			}
		}
		switch {
		case it.Kind == tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW:
		case t.record != nil:
			// About a record the user owns: the record must still be there
			// and visible; its activity, when still there, is the preview.
			rec := named[entity.RecordKey(t.record)]
			if rec == nil || !visibility.CanSee(rec, reader) {
				continue
			}
			n.Record = rec
			if a := act[t.activity]; a != nil {
				n.Activity = a
			} else {
				n.ActivityId = ""
			}
		default:
			a := act[t.activity]
			if a == nil {
				continue // deleted, hidden from the user, or muted
			}
			n.Activity = a
			if r := a.GetRecord(); r != nil {
				n.Record = records[entity.RecordKey(r)]
			}
			if t.comment != "" {
				n.Comment = comment[t.activity+"/"+t.comment]
				if n.Comment == nil && it.Kind == tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION {
					continue // the comment reacted to was deleted
				}
			}
		}
		n.Summary = summary(it, n)
		out = append(out, n)
	}
	return out, nil
}

// callerOf reads an actor as items store it: a user id, or "app:<id>".
func callerOf(actor string) *tidingsv1.Caller {
	if app, ok := strings.CutPrefix(actor, "app:"); ok {
		return &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_APP, Id: app}
	}
	return &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: actor}
}
