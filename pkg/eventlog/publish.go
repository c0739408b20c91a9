package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
)

// HeaderEventType names the protobuf message type of an event.
const HeaderEventType = "Tidings-Event"

// ErrConflict means a publish expected a subject's last sequence that is no
// longer the last: a concurrent change won. Re-read and retry.
var ErrConflict = errors.New("concurrent change to the same entity")

// RequestTimeout bounds each JetStream request a service makes for a
// caller (an append, a read of a subject's last event). A stream without a
// leader, or a cluster without a quorum, may never answer; the bound turns
// that into a transient error the caller sees as Unavailable, instead of a
// call that hangs until its own deadline.
const RequestTimeout = 5 * time.Second

// bounded returns ctx bounded by RequestTimeout.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, RequestTimeout)
}

// Log appends events to JetStream and reads them back.
type Log struct {
	js jetstream.JetStream
}

// New returns a Log over js.
func New(js jetstream.JetStream) *Log { return &Log{js: js} }

// JetStream returns the underlying JetStream context.
func (l *Log) JetStream() jetstream.JetStream { return l.js }

// Appended is where an event landed.
type Appended struct {
	Stream string
	// Sequence is the event's position in its stream: projections order
	// changes by it.
	Sequence uint64
	// Duplicate is true when JetStream had this message id already and
	// stored nothing new; Sequence is then the original's.
	Duplicate bool
}

// Append is one event to publish.
type Append struct {
	Subject string
	// MsgID is the deterministic Nats-Msg-Id that makes retries safe.
	MsgID string
	Event proto.Message
	// ExpectLastSubjectSeq, when set, makes the append conditional on the
	// subject's last sequence (optimistic concurrency); a pointer to 0 means
	// the subject must have no event yet. A failed condition is ErrConflict.
	ExpectLastSubjectSeq *uint64
}

// message encodes an append as a JetStream message and its options.
func (a Append) message() (*nats.Msg, []jetstream.PublishOpt, error) {
	data, err := proto.Marshal(a.Event)
	if err != nil {
		return nil, nil, fmt.Errorf("encode %s: %w", a.Event.ProtoReflect().Descriptor().FullName(), err)
	}
	msg := &nats.Msg{Subject: a.Subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(HeaderEventType, string(a.Event.ProtoReflect().Descriptor().FullName()))
	var opts []jetstream.PublishOpt
	if a.MsgID != "" {
		opts = append(opts, jetstream.WithMsgID(a.MsgID))
	}
	if a.ExpectLastSubjectSeq != nil {
		opts = append(opts, jetstream.WithExpectLastSequencePerSubject(*a.ExpectLastSubjectSeq))
	}
	return msg, opts, nil
}

// publishError names a failed append: ErrConflict when its condition on
// the subject's last sequence failed (replicated streams report it with a
// code of their own).
func publishError(subject string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return ErrConflict
	}
	return fmt.Errorf("publish %s: %w", subject, err)
}

// Publish appends one event and waits until JetStream has stored it.
func (l *Log) Publish(ctx context.Context, a Append) (Appended, error) {
	msg, opts, err := a.message()
	if err != nil {
		return Appended{}, err
	}
	rctx, cancel := bounded(ctx)
	defer cancel()
	ack, err := l.js.PublishMsg(rctx, msg, opts...)
	if err != nil {
		return Appended{}, publishError(a.Subject, err)
	}
	return Appended{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// Last is the last event on a subject.
type Last struct {
	Data     []byte
	Sequence uint64
}

// LastOnSubject returns the last event of a subject in stream, or found ==
// false when the subject has none.
func (l *Log) LastOnSubject(ctx context.Context, stream, subject string) (last Last, found bool, err error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return Last{}, false, fmt.Errorf("open stream %s: %w", stream, err)
	}
	raw, err := s.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Last{}, false, nil
	}
	if err != nil {
		return Last{}, false, fmt.Errorf("read last of %s: %w", subject, err)
	}
	return Last{Data: raw.Data, Sequence: raw.Sequence}, true, nil
}

// PublishAll appends events with all their acks in flight at once (the
// durable rate of one-at-a-time publishing is a few thousand a second), and
// returns where each landed, in order. On error some may have been stored:
// callers make their events safe to append again.
func (l *Log) PublishAll(ctx context.Context, appends []Append) ([]Appended, error) {
	futures := make([]jetstream.PubAckFuture, len(appends))
	for i, a := range appends {
		msg, opts, err := a.message()
		if err != nil {
			return nil, err
		}
		f, err := l.js.PublishMsgAsync(msg, opts...)
		if err != nil {
			return nil, publishError(a.Subject, err)
		}
		futures[i] = f
	}
	out := make([]Appended, len(appends))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			out[i] = Appended{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}
		case err := <-f.Err():
			return nil, publishError(appends[i].Subject, err)
		case <-ctx.Done():
			return nil, fmt.Errorf("publish %s: %w", appends[i].Subject, ctx.Err())
		}
	}
	return out, nil
}

// MessageAt returns the data of the event at sequence seq of stream.
func (l *Log) MessageAt(ctx context.Context, stream string, seq uint64) ([]byte, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("read %s seq %d: %w", stream, seq, err)
	}
	return m.Data, nil
}

// ConsumerInfo returns the state of a durable consumer of a stream
// (jetstream.ErrConsumerNotFound when there is none).
func (l *Log) ConsumerInfo(ctx context.Context, stream, durable string) (*jetstream.ConsumerInfo, error) {
	c, err := l.js.Consumer(ctx, stream, durable)
	if err != nil {
		return nil, fmt.Errorf("consumer %s of %s: %w", durable, stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s of %s: %w", durable, stream, err)
	}
	return info, nil
}
