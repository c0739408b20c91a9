// Package conversation is the one path by which comments and reactions are
// written (ConversationService), and the one place that turns the
// conversation projection into what readers see of it (feed items,
// activity reads, bookmarks).
//
// Writes append to the CONVERSATIONS stream, on the activity's subject,
// and return once JetStream acknowledged; the state part is then written
// through (pkg/projection), so the caller reads their write, and the
// worker applies the same event and writes its notifications. Message ids
// are deterministic: a comment's is its idempotency scope or its new id; a
// reaction's names the register it saw, so a retry is deduplicated by
// JetStream and a later, different change is not.
package conversation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// MaxComments bounds the comments of one activity.
const MaxComments = 10000

// Deps are what a Writer uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	Logger    *slog.Logger
}

// Writer writes comments and reactions.
type Writer struct {
	log      *eventlog.Log
	proj     *projection.Projector
	store    *conversationstore.Store
	profiles *profilestore.Store
	ids      *ids.Generator
	logger   *slog.Logger
}

// NewWriter returns a Writer.
func NewWriter(d Deps) *Writer {
	st := d.Projector.Stores()
	return &Writer{log: d.Log, proj: d.Projector, store: st.Conversations, profiles: st.Profiles, ids: ids.NewGenerator(), logger: d.Logger}
}

// Store returns the conversation projection.
func (w *Writer) Store() *conversationstore.Store { return w.store }

// AddComment appends a comment on activity activityID by author. With a
// non-empty key, a second call by the same author with the same key
// returns the first's comment and appends nothing.
func (w *Writer) AddComment(ctx context.Context, activityID, author, text, key string, caller *tidingsv1.Caller) (*tidingsv1.Comment, error) {
	scope := ""
	if key != "" {
		scope = "comment:" + author + ":" + key
		prior, ok, err := w.prior(ctx, activityID, scope)
		if err != nil || ok {
			return prior, err
		}
	}
	n, err := w.store.Count(ctx, activityID)
	if err != nil {
		return nil, err
	}
	if n >= MaxComments {
		return nil, apierr.LimitExceeded("activity %s has %d comments, the most it may have", activityID, MaxComments)
	}
	mentions, err := activity.ResolveMentions(ctx, w.profiles, text)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		id := w.ids.Next()
		c := &tidingsv1.Comment{
			Id: id.String(), ActivityId: activityID, AuthorUserId: author, Text: text,
			MentionUserIds: mentions, CreateTime: timestamppb.New(id.Time()),
		}
		msgID := "comment:" + c.GetId()
		if scope != "" {
			msgID = scope
		}
		ev := &tidingsv1.ConversationEvent{
			Change: &tidingsv1.ConversationEvent_CommentAdded{CommentAdded: c},
			Caller: caller, Time: c.GetCreateTime(), IdempotencyScope: scope,
		}
		appended, err := w.log.Publish(ctx, eventlog.Append{Subject: eventlog.ConversationSubject(activityID), MsgID: msgID, Event: ev})
		if err != nil {
			return nil, err
		}
		if appended.Duplicate {
			if scope == "" && attempt < 3 {
				// Another process made the same id in the same millisecond:
				// the log kept theirs; take another.
				continue
			}
			// A retry inside the duplicate window: answer with the original.
			return w.original(ctx, appended.Sequence)
		}
		w.writeThrough(ctx, appended.Sequence, ev)
		return c, nil
	}
}

func (w *Writer) prior(ctx context.Context, activityID, scope string) (*tidingsv1.Comment, bool, error) {
	id, ok, err := w.store.IdempotentComment(ctx, scope)
	if err != nil || !ok {
		return nil, false, err
	}
	c, err := w.store.Comment(ctx, activityID, id)
	switch {
	case errors.Is(err, conversationstore.ErrDeleted):
		return nil, true, apierr.FailedPrecondition("this idempotency key was used for comment %s, since deleted", id)
	case errors.Is(err, conversationstore.ErrNotFound):
		return nil, true, apierr.FailedPrecondition("this idempotency key was used for a comment on another activity")
	case err != nil:
		return nil, false, err
	}
	return c, true, nil
}

func (w *Writer) original(ctx context.Context, seq uint64) (*tidingsv1.Comment, error) {
	data, err := w.log.MessageAt(ctx, eventlog.StreamConversations, seq)
	if err != nil {
		return nil, err
	}
	orig := &tidingsv1.ConversationEvent{}
	if err := proto.Unmarshal(data, orig); err != nil {
		return nil, fmt.Errorf("decode conversation event %d: %w", seq, err)
	}
	if orig.GetCommentAdded() == nil {
		return nil, apierr.FailedPrecondition("this idempotency key was used for another change")
	}
	return orig.GetCommentAdded(), nil
}

// writeThrough applies the state part at once so the caller reads its
// write; the worker applies the same event and notifies.
func (w *Writer) writeThrough(ctx context.Context, seq uint64, ev *tidingsv1.ConversationEvent) {
	if err := w.proj.ApplyConversation(ctx, seq, ev); err != nil {
		w.logger.WarnContext(ctx, "conversation write-through failed; the worker will apply it", "seq", seq, "error", err)
	}
}

// EditComment replaces a comment's text (and mentions). The event names the
// users the edit newly mentions, whom the worker notifies.
func (w *Writer) EditComment(ctx context.Context, c *tidingsv1.Comment, text string, caller *tidingsv1.Caller) (*tidingsv1.Comment, error) {
	mentions, err := activity.ResolveMentions(ctx, w.profiles, text)
	if err != nil {
		return nil, err
	}
	next := proto.CloneOf(c)
	next.Text, next.MentionUserIds, next.EditTime = text, mentions, timestamppb.Now()
	seq, err := w.store.CommentSeq(ctx, c.GetActivityId(), c.GetId())
	if err != nil {
		return nil, err
	}
	ev := &tidingsv1.ConversationEvent{
		Change: &tidingsv1.ConversationEvent_CommentEdited{CommentEdited: next}, Caller: caller, Time: next.GetEditTime(),
		AddedMentionUserIds: activity.AddedMentions(c.GetMentionUserIds(), mentions),
	}
	msgID := "cedit:" + c.GetId() + ":" + strconv.FormatUint(seq, 10) + ":" + eventlog.ContentHash(next)
	appended, err := w.log.Publish(ctx, eventlog.Append{Subject: eventlog.ConversationSubject(c.GetActivityId()), MsgID: msgID, Event: ev})
	if err != nil {
		return nil, err
	}
	w.writeThrough(ctx, appended.Sequence, ev)
	return next, nil
}

// DeleteComment appends the deletion of a comment: it leaves the count at
// once (written through) and never comes back.
func (w *Writer) DeleteComment(ctx context.Context, c *tidingsv1.Comment, caller *tidingsv1.Caller) error {
	ev := &tidingsv1.ConversationEvent{Change: &tidingsv1.ConversationEvent_CommentDeleted{CommentDeleted: c}, Caller: caller, Time: timestamppb.Now()}
	appended, err := w.log.Publish(ctx, eventlog.Append{Subject: eventlog.ConversationSubject(c.GetActivityId()), MsgID: "cdelete:" + c.GetId(), Event: ev})
	if err != nil {
		return err
	}
	w.writeThrough(ctx, appended.Sequence, ev)
	return nil
}

// React adds (on) or removes a user's reaction of one kind on an item, and
// reports whether that changed anything: adding a reaction the user has,
// or removing one they do not, appends nothing.
func (w *Writer) React(ctx context.Context, it conversationstore.Item, user string, kind tidingsv1.ReactionKind, on bool, caller *tidingsv1.Caller) (bool, error) {
	v, err := w.store.ReactionVersion(ctx, it, user, kind)
	if err != nil {
		return false, err
	}
	if (v > 0) == on {
		return false, nil
	}
	ch := &tidingsv1.ReactionChange{ActivityId: it.ActivityID, CommentId: it.CommentID, UserId: user, Kind: kind}
	ev := &tidingsv1.ConversationEvent{Caller: caller, Time: timestamppb.Now()}
	if on {
		ev.Change = &tidingsv1.ConversationEvent_ReactionAdded{ReactionAdded: ch}
	} else {
		ev.Change = &tidingsv1.ConversationEvent_ReactionRemoved{ReactionRemoved: ch}
	}
	// The id names the register seen: a retry of this change is one event;
	// the next change (seeing this one's register) is another.
	msgID := "react:" + it.ID() + ":" + user + ":" + conversationstore.KindName(kind) + ":" + strconv.FormatBool(on) + ":" + strconv.FormatInt(v, 10)
	appended, err := w.log.Publish(ctx, eventlog.Append{Subject: eventlog.ConversationSubject(it.ActivityID), MsgID: msgID, Event: ev})
	if err != nil {
		return false, err
	}
	if !appended.Duplicate {
		w.writeThrough(ctx, appended.Sequence, ev)
	}
	return true, nil
}
