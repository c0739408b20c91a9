package eventlog

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"
)

// MaxConflictRetries bounds the retries of an Update that keeps losing races.
const MaxConflictRetries = 8

// ErrTooMuchContention means an Update lost MaxConflictRetries races in a row.
var ErrTooMuchContention = errors.New("entity is being changed concurrently; retry")

// StateUpdate describes a change to an entity whose stream keeps its whole
// state per subject (PROFILES, RECORDS).
type StateUpdate[E proto.Message] struct {
	Stream  string
	Subject string
	// New returns an empty event to decode into.
	New func() E
	// Mutate returns the next event given the current one (found false when
	// the entity has none), or changed false when there is nothing to
	// append. It must not modify cur.
	Mutate func(cur E, found bool) (next E, changed bool, err error)
	// MsgIDPrefix starts the deterministic message id.
	MsgIDPrefix string
}

// StateResult is what an Update did.
type StateResult[E proto.Message] struct {
	// Event is the entity's state after the update.
	Event E
	// Sequence is the stream sequence of Event.
	Sequence uint64
	// Found is whether the entity existed before.
	Found bool
	// Changed is whether an event was appended.
	Changed bool
}

// Update reads the subject's last event, applies Mutate, and appends the
// result conditionally on that event still being the last (optimistic
// concurrency), retrying on conflict. The message id is derived from the
// expected sequence and the content, so a publish retried after a lost ack
// is deduplicated by JetStream.
func Update[E proto.Message](ctx context.Context, l *Log, u StateUpdate[E]) (StateResult[E], error) {
	for range MaxConflictRetries {
		last, found, err := l.LastOnSubject(ctx, u.Stream, u.Subject)
		if err != nil {
			return StateResult[E]{}, err
		}
		cur := u.New()
		if found {
			if err := proto.Unmarshal(last.Data, cur); err != nil {
				return StateResult[E]{}, fmt.Errorf("decode %s at %d: %w", u.Subject, last.Sequence, err)
			}
		}
		next, changed, err := u.Mutate(cur, found)
		if err != nil {
			return StateResult[E]{}, err
		}
		if !changed {
			return StateResult[E]{Event: cur, Sequence: last.Sequence, Found: found}, nil
		}
		expect := last.Sequence
		appended, err := l.Publish(ctx, Append{
			Subject:              u.Subject,
			MsgID:                u.MsgIDPrefix + ":" + strconv.FormatUint(expect, 10) + ":" + ContentHash(next),
			Event:                next,
			ExpectLastSubjectSeq: &expect,
		})
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return StateResult[E]{}, err
		}
		return StateResult[E]{Event: next, Sequence: appended.Sequence, Found: found, Changed: true}, nil
	}
	return StateResult[E]{}, ErrTooMuchContention
}
