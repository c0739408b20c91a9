package projection

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// queueUserState queues, on pipe, one USERSTATE event at stream sequence
// seq: a bookmark or mute flag (pkg/userstatestore) or a read mark of the
// user's notifications (pkg/notificationstore).
func (p *Projector) queueUserState(ctx context.Context, pipe redis.Pipeliner, seq uint64, ev *tidingsv1.UserStateEvent) (redisx.Result[bool], error) {
	user := ev.GetUserId()
	if user == "" {
		return nil, fmt.Errorf("user state event %d has no user", seq)
	}
	ms := ev.GetTime().AsTime().UnixMilli()
	switch ch := ev.GetChange().(type) {
	case *tidingsv1.UserStateEvent_Bookmark:
		return p.st.UserState.QueueApply(ctx, pipe, userstatestore.Bookmark, user, ch.Bookmark.GetActivityId(), ch.Bookmark.GetOn(), seq, ms), nil
	case *tidingsv1.UserStateEvent_Mute:
		return p.st.UserState.QueueApply(ctx, pipe, userstatestore.Mute, user, ch.Mute.GetActivityId(), ch.Mute.GetOn(), seq, ms), nil
	case *tidingsv1.UserStateEvent_NotificationsRead:
		return p.st.Notifications.QueueMark(ctx, pipe, user, ch.NotificationsRead.GetUpToMs()), nil
	}
	return nil, fmt.Errorf("user state event %d has no change", seq)
}

// ApplyUserState projects one USERSTATE event at stream sequence seq: the
// write-through of a bookmark, mute or read mark, which the worker applies
// again.
func (p *Projector) ApplyUserState(ctx context.Context, seq uint64, ev *tidingsv1.UserStateEvent) error {
	var qerr error
	_, err := redisx.Run(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) redisx.Result[bool] {
		res, err := p.queueUserState(ctx, pipe, seq, ev)
		if err != nil {
			qerr = err
			return func() (bool, error) { return false, err }
		}
		return res
	})
	if qerr != nil {
		return qerr
	}
	return err
}

// HandleUserState is the batch handler of the USERSTATE stream: every
// event of a batch in one pipeline. Each is idempotent and ordered by log
// position (version registers for flags; a set of marks for read marks),
// so events may come twice or out of order.
func (p *Projector) HandleUserState(ctx context.Context, ds []eventlog.Delivery) []error {
	errs := make([]error, len(ds))
	failed := false
	res := make([]redisx.Result[bool], len(ds))
	err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		for i, d := range ds {
			res[i] = nil
			ev := &tidingsv1.UserStateEvent{}
			if err := proto.Unmarshal(d.Data, ev); err != nil {
				errs[i], failed = fmt.Errorf("decode user state event %d: %w", d.Sequence, err), true
				continue
			}
			r, err := p.queueUserState(ctx, pipe, d.Sequence, ev)
			if err != nil {
				errs[i], failed = err, true
				continue
			}
			res[i] = r
		}
		return nil
	})
	for i, r := range res {
		if r == nil {
			continue
		}
		if _, rerr := r(); rerr != nil || err != nil {
			errs[i], failed = fmt.Errorf("apply user state: %w", firstErr(rerr, err)), true
		}
	}
	if failed {
		return errs
	}
	return nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}
