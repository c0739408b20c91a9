package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Notifications are a projection of four streams: FOLLOWS (a new
// follower), ACTIVITIES (mentions in posts and edits, activities on a
// record the user owns), CONVERSATIONS (comments, replies, mentions in
// comments, reactions) and USERSTATE (mutes silence an activity; read
// marks start new items). Each stream's handler derives the instances its
// events make, as a function of the event and of what it may read (the
// activity, its record's audience, the thread's earlier participants),
// and writes them through pkg/notificationstore, whose writes are
// idempotent and independent of order.
//
// Nobody is notified of their own action, of an activity they muted, or of
// what they may not see (a restricted record's audience is checked here,
// and again when the notification is read).

// notices collects the notification instances of a batch.
type notices struct {
	list []notificationstore.Instance
}

// add adds an instance for each recipient who is not the actor and who may
// see the activity (visible nil: everyone).
func (n *notices) add(in notificationstore.Instance, recipients []string, visible func(string) bool) {
	for _, u := range recipients {
		if u == "" || u == in.Actor || (visible != nil && !visible(u)) {
			continue
		}
		in.User = u
		n.list = append(n.list, in)
	}
}

// actorOf names who did an activity in notifications: its user, or the app.
func actorOf(a *tidingsv1.Activity) string {
	if u := entity.ActorUser(a); u != "" {
		return u
	}
	return "app:" + a.GetActor().GetId()
}

// notify writes instances in pipelines of Config.WriteBatch and tells the
// users' live watchers (pkg/live) when an item changed.
func (p *Projector) notify(ctx context.Context, list []notificationstore.Instance) error {
	if p.st.Notifications == nil {
		return nil
	}
	changed := map[string]int64{}
	for lo := 0; lo < len(list); lo += p.cfg.WriteBatch {
		part := list[lo:min(lo+p.cfg.WriteBatch, len(list))]
		res := make([]redisx.Result[int64], len(part))
		err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
			for i, in := range part {
				res[i] = p.st.Notifications.QueueAdd(ctx, pipe, in)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write %d notifications: %w", len(part), err)
		}
		for i, r := range res {
			n, err := r()
			if err != nil {
				return err
			}
			if n > 0 {
				changed[part[i].User] = max(changed[part[i].User], part[i].Ms)
			}
		}
	}
	if p.live != nil {
		// Best effort: a watcher that misses one catches up when it resumes.
		for u, ms := range changed {
			if err := p.live.NotifyNotification(u, ms); err != nil {
				p.logger.WarnContext(ctx, "live notification notice not sent", "user", u, "error", err)
				break
			}
		}
	}
	return nil
}

// notifyActivities writes the notifications of a batch's posts and edits
// that reached the fan-out: the users a post mentions (or an edit newly
// mentions), and the owner of the record an activity is about.
func (p *Projector) notifyActivities(ctx context.Context, work []*activityChange) error {
	var acts []*tidingsv1.Activity
	for _, c := range work {
		if c.kind != deleted {
			acts = append(acts, c.a)
		}
	}
	if len(acts) == 0 {
		return nil
	}
	recs, err := p.records(ctx, acts)
	if err != nil {
		return err
	}
	var n notices
	for _, c := range work {
		a := c.a
		var visible func(string) bool
		var rec *tidingsv1.Record
		if ref := a.GetRecord(); ref != nil {
			r, ok := recs[entity.RecordKey(ref)]
			visible = visibility.Audience(r, ok)
			rec = r
		}
		actor := actorOf(a)
		switch c.kind {
		case posted:
			ms := c.id.Time().UnixMilli()
			n.add(notificationstore.Instance{Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION, Target: a.GetId(), Actor: actor, Ms: ms},
				a.GetMentionUserIds(), visible)
			if rec != nil && rec.GetOwnerId() != "" && !slices.Contains(a.GetMentionUserIds(), rec.GetOwnerId()) {
				n.add(notificationstore.Instance{
					Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_RECORD_ACTIVITY, Target: entity.RecordKey(a.GetRecord()),
					Actor: actor, Ms: ms, Object: a.GetId(),
				}, []string{rec.GetOwnerId()}, visible)
			}
		case edited:
			n.add(notificationstore.Instance{
				Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION, Target: a.GetId(), Actor: actor,
				Ms: c.ev.GetTime().AsTime().UnixMilli(), MutedBy: a.GetId(),
			}, c.ev.GetAddedMentionUserIds(), visible)
		}
	}
	return p.notify(ctx, n.list)
}

// records reads the records activities are about, by entity key, in one
// round trip; records that do not exist are absent.
func (p *Projector) records(ctx context.Context, acts []*tidingsv1.Activity) (map[string]*tidingsv1.Record, error) {
	reads := recordReads{}
	err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		clear(reads)
		for _, a := range acts {
			if a != nil {
				reads.queue(ctx, pipe, p.st.Records, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read records: %w", err)
	}
	out := make(map[string]*tidingsv1.Record, len(reads))
	for k, res := range reads {
		r, err := res()
		if errors.Is(err, recordstore.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[k] = r
	}
	return out, nil
}

// notifyFollows writes the notifications of one FOLLOWS event: each user an
// employee newly follows (of their own accord, not by an admin's bulk
// change or an auto-follow rule) is told. Only a change that is still the
// edge's newest notifies, so a redelivered follow after an unfollow does
// not.
func (p *Projector) notifyFollows(ctx context.Context, ev *tidingsv1.FollowEvent, changes []graphstore.Change, current []int64) error {
	caller := ev.GetCaller()
	if caller.GetKind() != tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE {
		return nil
	}
	var n notices
	for i, c := range changes {
		if !c.Following || abs(current[i]) != c.Version || c.UserID != caller.GetId() || !entity.IsUser(c.Entity) {
			continue
		}
		n.add(notificationstore.Instance{Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_FOLLOW, Actor: c.UserID, Ms: c.CreateMs},
			[]string{c.Entity[len("u:"):]}, nil)
	}
	return p.notify(ctx, n.list)
}
