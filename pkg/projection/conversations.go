package projection

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/notificationstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/visibility"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// convKind is what a CONVERSATIONS event does.
type convKind int

const (
	commentAdded convKind = iota
	commentEdited
	commentDeleted
	reactionAdded
	reactionRemoved
)

// convChange is one CONVERSATIONS event, decoded.
type convChange struct {
	index    int
	seq      uint64
	ev       *tidingsv1.ConversationEvent
	kind     convKind
	activity string
	comment  *tidingsv1.Comment
	reaction *tidingsv1.ReactionChange
}

func newConvChange(seq uint64, ev *tidingsv1.ConversationEvent) (*convChange, error) {
	c := &convChange{seq: seq, ev: ev}
	switch ch := ev.GetChange().(type) {
	case *tidingsv1.ConversationEvent_CommentAdded:
		c.kind, c.comment = commentAdded, ch.CommentAdded
	case *tidingsv1.ConversationEvent_CommentEdited:
		c.kind, c.comment = commentEdited, ch.CommentEdited
	case *tidingsv1.ConversationEvent_CommentDeleted:
		c.kind, c.comment = commentDeleted, ch.CommentDeleted
	case *tidingsv1.ConversationEvent_ReactionAdded:
		c.kind, c.reaction = reactionAdded, ch.ReactionAdded
	case *tidingsv1.ConversationEvent_ReactionRemoved:
		c.kind, c.reaction = reactionRemoved, ch.ReactionRemoved
	default:
		return nil, fmt.Errorf("conversation event %d has no change", seq)
	}
	if c.comment != nil {
		c.activity = c.comment.GetActivityId()
		if c.comment.GetId() == "" {
			return nil, fmt.Errorf("conversation event %d: comment without id", seq)
		}
	} else {
		c.activity = c.reaction.GetActivityId()
		if c.reaction.GetUserId() == "" || c.reaction.GetKind() == tidingsv1.ReactionKind_REACTION_KIND_UNSPECIFIED {
			return nil, fmt.Errorf("conversation event %d: reaction without user or kind", seq)
		}
	}
	if c.activity == "" {
		return nil, fmt.Errorf("conversation event %d: no activity", seq)
	}
	return c, nil
}

// item is what a reaction is on.
func (c *convChange) item() conversationstore.Item {
	return conversationstore.Item{ActivityID: c.activity, CommentID: c.reaction.GetCommentId()}
}

// ms is when the change was made (Unix ms): a comment's create time for a
// new comment, the event's time otherwise.
func (c *convChange) ms() int64 {
	if c.kind == commentAdded {
		return c.comment.GetCreateTime().AsTime().UnixMilli()
	}
	return c.ev.GetTime().AsTime().UnixMilli()
}

// queue queues the state part of the change: the comment, its tombstone or
// the reaction, and for a new comment the latest-activity index and its
// idempotency key.
func (p *Projector) queueConversation(ctx context.Context, pipe redis.Pipeliner, c *convChange) redisx.Result[int64] {
	cs := p.st.Conversations
	switch c.kind {
	case commentAdded, commentEdited:
		res := cs.QueuePutComment(ctx, pipe, c.seq, c.comment)
		if c.kind == commentAdded {
			cs.QueueBump(ctx, pipe, c.activity, c.ms())
			if scope := c.ev.GetIdempotencyScope(); scope != "" {
				cs.QueueRememberIdempotent(ctx, pipe, scope, c.comment.GetId())
			}
		}
		return func() (int64, error) {
			n, err := res()
			return int64(n), err
		}
	case commentDeleted:
		res := cs.QueueDeleteComment(ctx, pipe, c.seq, c.activity, c.comment.GetId())
		return func() (int64, error) {
			n, err := res()
			return int64(n), err
		}
	}
	return cs.QueueReact(ctx, pipe, c.seq, c.item(), c.reaction.GetUserId(), c.reaction.GetKind(), c.kind == reactionAdded, c.ms())
}

// ApplyConversation projects the state part of one CONVERSATIONS event at
// stream sequence seq (the comment, its tombstone or the reaction) and
// nothing else: what the write-through of a comment or reaction needs.
// The worker applies the same event and writes its notifications.
func (p *Projector) ApplyConversation(ctx context.Context, seq uint64, ev *tidingsv1.ConversationEvent) error {
	c, err := newConvChange(seq, ev)
	if err != nil {
		return err
	}
	_, err = redisx.Run(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) redisx.Result[int64] {
		return p.queueConversation(ctx, pipe, c)
	})
	return err
}

// HandleConversations is the batch handler of the CONVERSATIONS stream. A
// batch takes one pipeline for the state of every event together with the
// activities they are about (and the comments reacted to), one for those
// activities' records, a read of each new comment's earlier participants,
// and the notifications (see notifyConversations).
//
// It returns nil when every event was applied, or one error per event: an
// undecodable event fails alone; any other error fails the whole batch,
// whose events are retried (every write is idempotent).
func (p *Projector) HandleConversations(ctx context.Context, ds []eventlog.Delivery) []error {
	errs := make([]error, len(ds))
	failed := false
	var batch []*convChange
	for i, d := range ds {
		ev := &tidingsv1.ConversationEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			errs[i], failed = fmt.Errorf("decode conversation event %d: %w", d.Sequence, err), true
			continue
		}
		c, err := newConvChange(d.Sequence, ev)
		if err != nil {
			errs[i], failed = err, true
			continue
		}
		c.index = i
		batch = append(batch, c)
	}
	if len(batch) > 0 {
		if err := p.applyConversations(ctx, batch); err != nil {
			for _, c := range batch {
				errs[c.index] = err
			}
			failed = true
		}
	}
	if failed {
		return errs
	}
	return nil
}

func (p *Projector) applyConversations(ctx context.Context, batch []*convChange) error {
	var actIDs []string
	for _, c := range batch {
		if !slices.Contains(actIDs, c.activity) {
			actIDs = append(actIDs, c.activity)
		}
	}
	var (
		bodies   redisx.Result[[]*tidingsv1.Activity]
		applied  = make([]redisx.Result[int64], len(batch))
		reactedC = make([]redisx.Result[[]*tidingsv1.Comment], len(batch))
	)
	err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		for i, c := range batch {
			applied[i] = p.queueConversation(ctx, pipe, c)
			if c.kind == reactionAdded && c.reaction.GetCommentId() != "" {
				reactedC[i] = p.st.Conversations.QueueComments(ctx, pipe, c.activity, []string{c.reaction.GetCommentId()})
			}
		}
		bodies = p.st.Bodies.QueueGetMany(ctx, pipe, actIDs)
		return nil
	})
	if err != nil {
		return fmt.Errorf("apply %d conversation events: %w", len(batch), err)
	}
	for _, r := range applied {
		if _, err := r(); err != nil {
			return err
		}
	}
	acts, err := bodies()
	if err != nil {
		return err
	}
	byID := make(map[string]*tidingsv1.Activity, len(acts))
	for i, a := range acts {
		if a != nil {
			byID[actIDs[i]] = a
		}
	}
	return p.notifyConversations(ctx, batch, byID, reactedC)
}

// notifyConversations writes the notifications of a batch of conversation
// events about the activities acts (deleted ones absent: their events
// notify no one). A new comment notifies the users it mentions, the
// activity's author (COMMENT) and everyone who commented on the activity
// before it (REPLY), each once, in that order of precedence; an edit
// notifies the users it newly mentions; a reaction notifies the author of
// what it is on. Removals and deletions notify no one.
func (p *Projector) notifyConversations(ctx context.Context, batch []*convChange, acts map[string]*tidingsv1.Activity, reactedC []redisx.Result[[]*tidingsv1.Comment]) error {
	var list []*tidingsv1.Activity
	for _, a := range acts {
		list = append(list, a)
	}
	recs, err := p.records(ctx, list)
	if err != nil {
		return err
	}
	audience := func(a *tidingsv1.Activity) func(string) bool {
		ref := a.GetRecord()
		if ref == nil {
			return nil
		}
		r, ok := recs[entity.RecordKey(ref)]
		return visibility.Audience(r, ok)
	}
	var n notices
	for i, c := range batch {
		a := acts[c.activity]
		if a == nil {
			continue
		}
		visible := audience(a)
		switch c.kind {
		case commentAdded:
			cm := c.comment
			base := notificationstore.Instance{Target: c.activity, Actor: cm.GetAuthorUserId(), Ms: c.ms(), Object: cm.GetId(), MutedBy: c.activity}
			done := map[string]bool{cm.GetAuthorUserId(): true}
			once := func(users []string) []string {
				var out []string
				for _, u := range users {
					if !done[u] {
						done[u] = true
						out = append(out, u)
					}
				}
				return out
			}
			base.Kind = tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION
			n.add(base, once(cm.GetMentionUserIds()), visible)
			base.Kind = tidingsv1.NotificationKind_NOTIFICATION_KIND_COMMENT
			n.add(base, once([]string{entity.ActorUser(a)}), visible)
			base.Kind = tidingsv1.NotificationKind_NOTIFICATION_KIND_REPLY
			err := p.st.Conversations.Participants(ctx, c.activity, c.ms(), p.cfg.WriteBatch, func(users []string) error {
				n.add(base, once(users), visible)
				// Write a long thread's replies as they are read, so that
				// memory holds one batch of them.
				if len(n.list) >= p.cfg.WriteBatch {
					if err := p.notify(ctx, n.list); err != nil {
						return err
					}
					n.list = n.list[:0]
				}
				return nil
			})
			if err != nil {
				return err
			}
		case commentEdited:
			n.add(notificationstore.Instance{
				Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_MENTION, Target: c.activity,
				Actor: c.comment.GetAuthorUserId(), Ms: c.ms(), Object: c.comment.GetId(), MutedBy: c.activity,
			}, c.ev.GetAddedMentionUserIds(), visible)
		case reactionAdded:
			target, author := c.activity, entity.ActorUser(a)
			if cid := c.reaction.GetCommentId(); cid != "" {
				cms, err := reactedC[i]()
				if err != nil {
					return err
				}
				if cms[0] == nil {
					continue // a comment deleted, or never made
				}
				target, author = c.activity+"/"+cid, cms[0].GetAuthorUserId()
			}
			n.add(notificationstore.Instance{
				Kind: tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION, Target: target, Actor: c.reaction.GetUserId(),
				Ms: c.ms(), Object: conversationstore.KindName(c.reaction.GetKind()), MutedBy: c.activity,
			}, []string{author}, visible)
		case commentDeleted, reactionRemoved:
		}
	}
	return p.notify(ctx, n.list)
}
