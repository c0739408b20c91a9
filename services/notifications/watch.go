package notifications

import (
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// resumeOverlap is how far before a resume token the replay starts: the
// workers write concurrently, so an item can change after a newer one was
// sent. Clients replace items by id.
const resumeOverlap = 5 * time.Second

// watchPage is how many of the newest changed items one notice reads.
const watchPage = 50

// rememberedItems bounds what a watch remembers of the items it sent.
const rememberedItems = 4096

// WatchNotifications implements tidingsv1.NotificationServiceServer. It
// subscribes first, then sends what changed since shortly before the resume
// point, then, on each live notice, the items that changed at or after the
// notice's time. An item is sent again whenever it grows; delivery is at
// least once across reconnects.
func (s *Server) WatchNotifications(req *tidingsv1.WatchNotificationsRequest, stream grpc.ServerStreamingServer[tidingsv1.WatchNotificationsResponse]) error {
	ctx := stream.Context()
	user := req.GetUserId()
	if _, err := own(ctx, user); err != nil {
		return err
	}
	if s.d.Live == nil {
		return apierr.Unavailable("live updates are not configured on this server")
	}
	var from int64
	if tok := req.GetResumeToken(); tok != "" {
		ms, err := strconv.ParseInt(tok, 10, 64)
		if err != nil || ms <= 0 {
			return apierr.InvalidArgument("resume_token is not a token of this stream")
		}
		from = max(ms-resumeOverlap.Milliseconds(), 1)
	}
	w, err := s.d.Live.WatchSubjects([]string{live.NotificationSubject(user)}, s.d.WatchBuffer)
	if err != nil {
		return apierr.Unavailable("live updates: %v", err)
	}
	defer w.Close()
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}

	// What was sent of each item: its time and actor count.
	type sig struct{ ms, count int64 }
	sent := map[string]sig{}
	var order []string
	// send sends the items of the user that changed at or after since,
	// oldest first.
	send := func(since int64) error {
		var changed []notificationstore.Item
		var after notificationstore.Cursor
		for {
			items, more, _, err := s.d.Notifications.Page(ctx, user, notificationstore.Query{After: after, Limit: watchPage, SinceMs: since})
			if err != nil {
				return err
			}
			for _, it := range items {
				if old, ok := sent[it.Name]; !ok || old != (sig{it.Ms, it.Count}) {
					changed = append(changed, it)
				}
			}
			if !more || len(items) == 0 {
				break
			}
			after = notificationstore.CursorOf(items[len(items)-1])
		}
		for lo := len(changed); lo > 0; lo -= watchPage {
			part := changed[max(lo-watchPage, 0):lo]
			ns, err := s.hydrate(ctx, user, part)
			if err != nil {
				return err
			}
			for j := len(ns) - 1; j >= 0; j-- {
				n := ns[j]
				if err := stream.Send(&tidingsv1.WatchNotificationsResponse{Notification: n, ResumeToken: n.GetReadToken()}); err != nil {
					return err
				}
			}
			for _, it := range part {
				if _, ok := sent[it.Name]; !ok {
					order = append(order, it.Name)
				}
				sent[it.Name] = sig{it.Ms, it.Count}
			}
		}
		for len(order) > rememberedItems {
			delete(sent, order[0])
			order = order[1:]
		}
		return nil
	}

	if from != 0 {
		if err := send(from); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case x, ok := <-w.C():
			if !ok {
				if w.Overflowed() {
					return apierr.LimitExceeded("this watcher fell more than %d notices behind and was cut off; watch again with the last resume_token", s.d.WatchBuffer)
				}
				return apierr.Unavailable("live updates stopped; watch again with the last resume_token")
			}
			if err := send(int64(x)); err != nil {
				return err
			}
		}
	}
}
