// Package activity is the one path by which activities are posted, edited
// and deleted, for employees' posts (ActivityService) and apps' record
// events (RecordService) alike: it assigns time-sortable ids, resolves
// @mentions, makes posts idempotent, appends to the ACTIVITIES stream and
// writes the body through to the projection (pkg/projection, which the
// worker also applies the event with, and fans it out).
package activity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// MaxMentions bounds the users one activity mentions.
const MaxMentions = 50

var mentionPattern = regexp.MustCompile(`(?:^|[^A-Za-z0-9._@-])@([A-Za-z0-9][A-Za-z0-9._@-]{0,63})`)

// Mentions returns the user ids written as @user_id in text, once each, in
// order, at most MaxMentions. A trailing "." (end of a sentence) is not part
// of an id.
func Mentions(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range mentionPattern.FindAllStringSubmatch(text, -1) {
		id := strings.TrimRight(m[1], ".")
		if id == "" || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, id)
		if len(out) == MaxMentions {
			break
		}
	}
	return out
}

// AddedMentions returns the users of after who are not in before, in
// order.
func AddedMentions(before, after []string) []string {
	var out []string
	for _, u := range after {
		if !slices.Contains(before, u) {
			out = append(out, u)
		}
	}
	return out
}

// Poster posts activities.
type Poster struct {
	log      *eventlog.Log
	proj     *projection.Projector
	bodies   *activitystore.Store
	profiles *profilestore.Store
	logger   *slog.Logger
	ids      *ids.Generator
}

// Deps are what a Poster uses.
type Deps struct {
	Log       *eventlog.Log
	Projector *projection.Projector
	Logger    *slog.Logger
}

// NewPoster returns a Poster.
func NewPoster(d Deps) *Poster {
	st := d.Projector.Stores()
	return &Poster{log: d.Log, proj: d.Projector, bodies: st.Bodies, profiles: st.Profiles, logger: d.Logger, ids: ids.NewGenerator()}
}

// Bodies returns the body store.
func (p *Poster) Bodies() *activitystore.Store { return p.bodies }

// Post appends a new activity. a carries what the caller said (actor, verb,
// text, record, links...); Post sets its id, time and mentions. With a
// non-empty scope, a second Post in the same scope returns the first's
// activity and appends nothing.
func (p *Poster) Post(ctx context.Context, a *tidingsv1.Activity, scope string, caller *tidingsv1.Caller) (*tidingsv1.Activity, error) {
	if scope != "" {
		if prior, ok, err := p.prior(ctx, scope); err != nil || ok {
			return prior, err
		}
	}
	a = proto.CloneOf(a)
	mentions, err := p.resolveMentions(ctx, a.GetText())
	if err != nil {
		return nil, err
	}
	a.MentionUserIds = mentions
	var appended eventlog.Appended
	var ev *tidingsv1.ActivityEvent
	for attempt := 0; ; attempt++ {
		id := p.ids.Next()
		a.Id = id.String()
		a.CreateTime = timestamppb.New(id.Time())
		msgID := "post:" + a.GetId()
		if scope != "" {
			msgID = "post:" + scope
		}
		ev = &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: a}, Caller: caller, Time: a.GetCreateTime(), IdempotencyScope: scope}
		// The subject of a new id must be new: an id collision between two
		// processes is caught here and retried with another id.
		var none uint64
		appended, err = p.log.Publish(ctx, eventlog.Append{Subject: eventlog.ActivitySubject(a.GetId()), MsgID: msgID, Event: ev, ExpectLastSubjectSeq: &none})
		if errors.Is(err, eventlog.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if appended.Duplicate {
		// A retry inside the duplicate window: answer with the original.
		data, err := p.log.MessageAt(ctx, eventlog.StreamActivities, appended.Sequence)
		if err != nil {
			return nil, err
		}
		orig := &tidingsv1.ActivityEvent{}
		if err := proto.Unmarshal(data, orig); err != nil {
			return nil, fmt.Errorf("decode activity event %d: %w", appended.Sequence, err)
		}
		return orig.GetPosted(), nil
	}
	p.writeThrough(ctx, appended.Sequence, ev)
	return a, nil
}

func (p *Poster) prior(ctx context.Context, scope string) (*tidingsv1.Activity, bool, error) {
	id, ok, err := p.bodies.IdempotentID(ctx, scope)
	if err != nil || !ok {
		return nil, false, err
	}
	a, err := p.bodies.Get(ctx, id)
	if errors.Is(err, activitystore.ErrNotFound) {
		return nil, true, apierr.FailedPrecondition("this idempotency key was used for activity %s, since deleted", id)
	}
	return a, err == nil, err
}

func (p *Poster) resolveMentions(ctx context.Context, text string) ([]string, error) {
	return ResolveMentions(ctx, p.profiles, text)
}

// ResolveMentions returns the users text mentions (Mentions) who exist in
// the directory.
func ResolveMentions(ctx context.Context, profiles *profilestore.Store, text string) ([]string, error) {
	ids := Mentions(text)
	if len(ids) == 0 {
		return nil, nil
	}
	found, err := profiles.GetMany(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := ids[:0]
	for _, id := range ids {
		if _, ok := found[id]; ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// writeThrough stores the body at once so the poster reads its write; the
// worker applies the same event and fans it out.
func (p *Poster) writeThrough(ctx context.Context, seq uint64, ev *tidingsv1.ActivityEvent) {
	if err := p.proj.ApplyBody(ctx, seq, ev); err != nil {
		p.logger.WarnContext(ctx, "activity write-through failed; the worker will apply it", "seq", seq, "error", err)
	}
}

// Edit replaces an activity's text (and so its mentions) and appends the
// edited activity. No re-fan-out: feeds hold ids, so the edit shows
// everywhere at once. The event names the users the edit newly mentions,
// whom the fan-out delivers the activity to and notifies.
func (p *Poster) Edit(ctx context.Context, a *tidingsv1.Activity, text string, caller *tidingsv1.Caller) (*tidingsv1.Activity, error) {
	next := proto.CloneOf(a)
	next.Text = text
	mentions, err := p.resolveMentions(ctx, text)
	if err != nil {
		return nil, err
	}
	next.MentionUserIds = mentions
	next.EditTime = timestamppb.Now()
	ev := &tidingsv1.ActivityEvent{
		Change: &tidingsv1.ActivityEvent_Edited{Edited: next}, Caller: caller, Time: next.GetEditTime(),
		AddedMentionUserIds: AddedMentions(a.GetMentionUserIds(), mentions),
	}
	appended, err := p.log.Publish(ctx, eventlog.Append{Subject: eventlog.ActivitySubject(a.GetId()), Event: ev})
	if err != nil {
		return nil, err
	}
	p.writeThrough(ctx, appended.Sequence, ev)
	return next, nil
}

// Delete appends the deletion of an activity. The tombstone written through
// hides it from every read at once; the fan-out then takes it out of every
// feed.
func (p *Poster) Delete(ctx context.Context, a *tidingsv1.Activity, caller *tidingsv1.Caller) error {
	ev := &tidingsv1.ActivityEvent{
		Change:          &tidingsv1.ActivityEvent_DeletedId{DeletedId: a.GetId()},
		Caller:          caller,
		Time:            timestamppb.Now(),
		DeletedActivity: a,
	}
	appended, err := p.log.Publish(ctx, eventlog.Append{Subject: eventlog.ActivitySubject(a.GetId()), MsgID: "delete:" + a.GetId(), Event: ev})
	if err != nil {
		return err
	}
	p.writeThrough(ctx, appended.Sequence, ev)
	return nil
}
