// Package graph writes the follow graph: it appends edge changes to the
// FOLLOWS stream, in events of at most graphstore.MaxChangesPerEvent
// changes, waits for the acks, and writes the projection through. It also
// holds the projector that applies FOLLOWS events in the worker.
package graph

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// BulkSubject carries events that change many followers' edges.
var BulkSubject = eventlog.SubjectFollows + ".bulk"

// Writer appends edge changes and projects them.
type Writer struct {
	log    *eventlog.Log
	store  *graphstore.Store
	logger *slog.Logger
	now    func() time.Time
}

// NewWriter returns a Writer.
func NewWriter(log *eventlog.Log, store *graphstore.Store, logger *slog.Logger) *Writer {
	return &Writer{log: log, store: store, logger: logger, now: time.Now}
}

// Store returns the projection the Writer writes.
func (w *Writer) Store() *graphstore.Store { return w.store }

// Write appends changes on subject (one follower's subject, or BulkSubject)
// and writes them through. msgID, when set, deduplicates a single-event
// write; bulk writes need none, since applying a change twice is harmless.
// Changes without a create time get the current time.
func (w *Writer) Write(ctx context.Context, subject, msgID string, caller *tidingsv1.Caller, changes []*tidingsv1.EdgeChange) error {
	if len(changes) == 0 {
		return nil
	}
	now := timestamppb.New(w.now())
	var appends []eventlog.Append
	for start := 0; start < len(changes); start += graphstore.MaxChangesPerEvent {
		chunk := changes[start:min(start+graphstore.MaxChangesPerEvent, len(changes))]
		for _, c := range chunk {
			if c.GetFollowing() && c.GetCreateTime() == nil {
				c.CreateTime = now
			}
		}
		a := eventlog.Append{Subject: subject, Event: &tidingsv1.FollowEvent{Changes: chunk, Caller: caller, Time: now}}
		if msgID != "" && len(changes) <= graphstore.MaxChangesPerEvent {
			a.MsgID = msgID
		}
		appends = append(appends, a)
	}
	appended, err := w.log.PublishAll(ctx, appends)
	if err != nil {
		return err
	}
	for i, a := range appends {
		ev := a.Event.(*tidingsv1.FollowEvent)
		if err := w.store.Apply(ctx, Changes(appended[i].Sequence, ev)); err != nil {
			w.logger.WarnContext(ctx, "graph write-through failed; the projector will apply it",
				"seq", appended[i].Sequence, "error", err)
		}
	}
	return nil
}

// Changes turns one FOLLOWS event at stream sequence seq into projection
// changes, each with its log position as version.
func Changes(seq uint64, ev *tidingsv1.FollowEvent) []graphstore.Change {
	out := make([]graphstore.Change, 0, len(ev.GetChanges()))
	eventMs := ev.GetTime().AsTime().UnixMilli()
	for i, c := range ev.GetChanges() {
		ms := eventMs
		if c.GetCreateTime() != nil {
			ms = c.GetCreateTime().AsTime().UnixMilli()
		}
		out = append(out, graphstore.Change{
			UserID:    c.GetUserId(),
			Entity:    entity.Key(c.GetEntity()),
			Following: c.GetFollowing(),
			Version:   graphstore.Version(seq, i),
			CreateMs:  ms,
		})
	}
	return out
}

// Projector returns the handler that applies FOLLOWS events to Redis.
func Projector(store *graphstore.Store) eventlog.Handler {
	return func(ctx context.Context, d eventlog.Delivery) error {
		ev := &tidingsv1.FollowEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			return fmt.Errorf("decode follow event %d: %w", d.Sequence, err)
		}
		if len(ev.GetChanges()) > graphstore.MaxChangesPerEvent {
			return fmt.Errorf("follow event %d has %d changes, over %d", d.Sequence, len(ev.GetChanges()), graphstore.MaxChangesPerEvent)
		}
		return store.Apply(ctx, Changes(d.Sequence, ev))
	}
}
