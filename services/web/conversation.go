package web

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tidingshq/tidings/pkg/auth"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// employeeCSRF is the CSRF token that shows an employee the like and
// comment forms of feed items; others ("" ) see none.
func employeeCSRF(sess *session) string {
	if sess.ID.Kind == auth.KindEmployee {
		return sess.CSRF
	}
	return ""
}

// backTo is where a form sends the browser back to: the page it came from
// (a local path), else home.
func backTo(r *http.Request) string {
	return safeNext(r.PostFormValue("back"))
}

// likeForm likes or unlikes an activity from the plain form.
func (s *Server) likeForm(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	c := tidingsv1.NewConversationServiceClient(s.opts.Conn)
	id := r.PathValue("id")
	var err error
	if r.PostFormValue("on") == "true" {
		_, err = c.AddReaction(ctx, &tidingsv1.AddReactionRequest{ActivityId: id, UserId: sess.ID.ID, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE}, s.creds(sess))
	} else {
		_, err = c.RemoveReaction(ctx, &tidingsv1.RemoveReactionRequest{ActivityId: id, UserId: sess.ID.ID, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE}, s.creds(sess))
	}
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, backTo(r), http.StatusSeeOther) //nolint:gosec // G710: backTo passed safeNext (a local path)
}

// commentForm comments on an activity from the plain form.
func (s *Server) commentForm(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	_, err := tidingsv1.NewConversationServiceClient(s.opts.Conn).AddComment(ctx, &tidingsv1.AddCommentRequest{
		ActivityId: r.PathValue("id"), AuthorUserId: sess.ID.ID, Text: strings.TrimSpace(r.PostFormValue("text")),
	}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, backTo(r), http.StatusSeeOther) //nolint:gosec // G710: backTo passed safeNext (a local path)
}

// notificationView is one notification as the page shows it.
type notificationView struct {
	Summary  string
	Preview  string
	Href     string
	TimeISO  string
	TimeText string
	Unread   bool
}

type notificationsData struct {
	Items []notificationView
	CSRF  string
}

// notifications shows the employee's notifications, newest first.
func (s *Server) notifications(w http.ResponseWriter, r *http.Request, sess *session) {
	if sess.ID.Kind != auth.KindEmployee {
		s.fail(w, r, sess, http.StatusNotFound, "Only employees have notifications.")
		return
	}
	ctx, cancel := callCtx(r)
	defer cancel()
	resp, err := tidingsv1.NewNotificationServiceClient(s.opts.Conn).ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: sess.ID.ID, PageSize: 50}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	d := notificationsData{CSRF: sess.CSRF}
	now := time.Now()
	for _, n := range resp.GetNotifications() {
		v := notificationView{Summary: n.GetSummary(), Unread: !n.GetRead()}
		if t := n.GetUpdateTime(); t != nil {
			v.TimeISO, v.TimeText = t.AsTime().UTC().Format(time.RFC3339), timeText(t.AsTime(), now)
		}
		v.Preview = n.GetComment().GetText()
		if v.Preview == "" {
			v.Preview = n.GetActivity().GetText()
		}
		switch {
		case n.GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW && len(n.GetActors()) > 0:
			v.Href = personHref(n.GetActors()[0].GetId())
		case n.GetRecord() != nil:
			v.Href = recordHref(n.GetRecord().GetRef())
		case n.GetActivity() != nil:
			v.Href = personHref(n.GetActivity().GetActor().GetId())
		}
		d.Items = append(d.Items, v)
	}
	s.render(w, http.StatusOK, "notifications", page{Title: "Notifications", Nav: "notifications", Me: sess, Data: d})
}

// markRead marks every notification read.
func (s *Server) markRead(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := callCtx(r)
	defer cancel()
	_, err := tidingsv1.NewNotificationServiceClient(s.opts.Conn).MarkNotificationsRead(ctx, &tidingsv1.MarkNotificationsReadRequest{
		UserId: sess.ID.ID, UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true},
	}, s.creds(sess))
	if err != nil {
		s.apiFail(w, r, sess, err)
		return
	}
	http.Redirect(w, r, "/notifications", http.StatusSeeOther)
}

// unread reads the bell's count for an employee's page (0 when it cannot).
func (s *Server) unread(ctx context.Context, sess *session) int64 {
	if sess.ID.Kind != auth.KindEmployee {
		return 0
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := tidingsv1.NewNotificationServiceClient(s.opts.Conn).GetUnreadCount(ctx, &tidingsv1.GetUnreadCountRequest{UserId: sess.ID.ID}, s.creds(sess))
	if err != nil {
		return 0
	}
	return resp.GetUnreadCount()
}
