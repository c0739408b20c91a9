// Package graph writes the follow graph: it appends edge changes to the
// FOLLOWS stream, in events of at most graphstore.MaxChangesPerEvent
// changes, with every ack in flight at once, waits for the acks, and writes
// the edges through to the projection (pkg/projection, which the worker
// also applies the events with) so that a caller reads its write.
package graph

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/projection"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// BulkSubject carries events that change many followers' edges.
var BulkSubject = eventlog.SubjectFollows + ".bulk"

// Writer appends edge changes and projects them.
type Writer struct {
	log    *eventlog.Log
	proj   *projection.Projector
	logger *slog.Logger
	now    func() time.Time
}

// Deps are what a Writer uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	Logger    *slog.Logger
}

// NewWriter returns a Writer.
func NewWriter(d Deps) *Writer {
	return &Writer{log: d.Log, proj: d.Projector, logger: d.Logger, now: time.Now}
}

// Store returns the graph projection the Writer writes.
func (w *Writer) Store() *graphstore.Store { return w.proj.Stores().Graph }

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
		if err := w.proj.ApplyEdges(ctx, appended[i].Sequence, ev); err != nil {
			w.logger.WarnContext(ctx, "graph write-through failed; the projector will apply it",
				"seq", appended[i].Sequence, "error", err)
		}
	}
	return nil
}
