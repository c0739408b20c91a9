// Package userstate is the one path by which a user's own state is written:
// bookmarks and mutes (ActivityService) and notification read marks
// (NotificationService). Each change is an event on the user's subject of
// the USERSTATE stream, acknowledged before the call returns and written
// through to the projection (pkg/projection), which the worker applies
// again. A change that would change nothing (bookmarking a bookmarked
// activity, marking read what is read) appends nothing.
package userstate

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Deps are what a Writer uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	Logger    *slog.Logger
}

// Writer writes user state.
type Writer struct {
	log    *eventlog.Log
	proj   *projection.Projector
	flags  *userstatestore.Store
	notes  *notificationstore.Store
	logger *slog.Logger
}

// NewWriter returns a Writer.
func NewWriter(d Deps) *Writer {
	st := d.Projector.Stores()
	return &Writer{log: d.Log, proj: d.Projector, flags: st.UserState, notes: st.Notifications, logger: d.Logger}
}

// Flags returns the bookmark and mute projection.
func (w *Writer) Flags() *userstatestore.Store { return w.flags }

// Notifications returns the notification projection.
func (w *Writer) Notifications() *notificationstore.Store { return w.notes }

func (w *Writer) append(ctx context.Context, user, msgID string, ev *tidingsv1.UserStateEvent) error {
	ev.UserId = user
	appended, err := w.log.Publish(ctx, eventlog.Append{Subject: eventlog.UserStateSubject(user), MsgID: msgID, Event: ev})
	if err != nil {
		return err
	}
	if !appended.Duplicate {
		if err := w.proj.ApplyUserState(ctx, appended.Sequence, ev); err != nil {
			w.logger.WarnContext(ctx, "user state write-through failed; the worker will apply it", "seq", appended.Sequence, "error", err)
		}
	}
	return nil
}

// SetFlag bookmarks or mutes (on) an activity for a user, or undoes it, and
// reports whether that changed anything. At most
// userstatestore.MaxPerUser activities of each flag.
func (w *Writer) SetFlag(ctx context.Context, f userstatestore.Flag, user, activityID string, on bool, caller *tidingsv1.Caller) (bool, error) {
	v, err := w.flags.Version(ctx, f, user, activityID)
	if err != nil {
		return false, err
	}
	if (v > 0) == on {
		return false, nil
	}
	if on {
		n, err := w.flags.Count(ctx, f, user)
		if err != nil {
			return false, err
		}
		if n >= userstatestore.MaxPerUser {
			return false, apierr.LimitExceeded("%s has %d %s activities, the most one may have", user, n, flagWord(f))
		}
	}
	flag := &tidingsv1.ActivityFlag{ActivityId: activityID, On: on}
	ev := &tidingsv1.UserStateEvent{Caller: caller, Time: timestamppb.Now()}
	if f == userstatestore.Bookmark {
		ev.Change = &tidingsv1.UserStateEvent_Bookmark{Bookmark: flag}
	} else {
		ev.Change = &tidingsv1.UserStateEvent_Mute{Mute: flag}
	}
	// The id names the register seen: a retry is one event, the next
	// change another.
	msgID := string(f) + ":" + user + ":" + activityID + ":" + strconv.FormatBool(on) + ":" + strconv.FormatInt(v, 10)
	return true, w.append(ctx, user, msgID, ev)
}

func flagWord(f userstatestore.Flag) string {
	if f == userstatestore.Bookmark {
		return "bookmarked"
	}
	return "muted"
}

// MarkRead marks a user's notifications read up to and including those at
// upToMs (Unix ms), or all of them when upToMs is 0, and reports whether
// that marked anything: a point at or before the last mark is read already.
func (w *Writer) MarkRead(ctx context.Context, user string, upToMs int64, caller *tidingsv1.Caller) (bool, error) {
	newest, mark, err := w.notes.Newest(ctx, user)
	if err != nil {
		return false, err
	}
	// Nothing is marked read before it exists: up to the newest at most.
	if upToMs == 0 || upToMs > newest {
		upToMs = newest
	}
	if upToMs <= mark || upToMs <= 0 {
		return false, nil
	}
	ev := &tidingsv1.UserStateEvent{
		Change: &tidingsv1.UserStateEvent_NotificationsRead{NotificationsRead: &tidingsv1.NotificationsRead{UpToMs: upToMs}},
		Caller: caller, Time: timestamppb.New(time.Now()),
	}
	return true, w.append(ctx, user, "read:"+user+":"+strconv.FormatInt(upToMs, 10), ev)
}
