package conversation

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Views reads what readers see of conversations: a Conversation per
// activity, and which activities a reader muted.
type Views struct {
	convs  *conversationstore.Store
	state  *userstatestore.Store
	bodies *activitystore.Store
}

// NewViews returns Views over the conversation, user-state and body
// projections.
func NewViews(convs *conversationstore.Store, state *userstatestore.Store, bodies *activitystore.Store) *Views {
	return &Views{convs: convs, state: state, bodies: bodies}
}

// Page is what Views read for a page of activities.
type Page struct {
	// Bodies are the activities, nil for those missing or deleted.
	Bodies []*tidingsv1.Activity
	// Conversations are the activities' conversations, in order (nil
	// without full).
	Conversations []*tidingsv1.Conversation
	// Muted says which activities the reader muted.
	Muted []bool
	// Authors are the authors of the recent comments, to hydrate with
	// Finish.
	Authors []string
}

// Queue queues, on pipe, the reads of a page of activities as reader (a
// user id, or "" for a caller who is no user): their bodies, whether each
// is muted, and with full their conversations. Each activity's
// conversation comes with its body, in the one command that reads it
// (pkg/conversationstore keeps the summary in the body hash), and two
// commands read the reader's mutes and bookmarks for the whole page: the
// conversation fields cost no round trip of their own, and one command a
// page.
func (v *Views) Queue(ctx context.Context, pipe redis.Pipeliner, activityIDs []string, reader string, full bool) redisx.Result[Page] {
	muted := v.state.QueueFlagged(ctx, pipe, userstatestore.Mute, reader, activityIDs)
	if !full {
		bodies := v.bodies.QueueGetMany(ctx, pipe, activityIDs)
		return func() (Page, error) {
			var p Page
			var err error
			if p.Bodies, err = bodies(); err != nil {
				return p, err
			}
			p.Muted, err = muted()
			return p, err
		}
	}
	bookmarked := v.state.QueueFlagged(ctx, pipe, userstatestore.Bookmark, reader, activityIDs)
	entries := v.convs.QueueEntries(ctx, pipe, activityIDs, reader)
	return func() (Page, error) {
		var p Page
		var err error
		if p.Muted, err = muted(); err != nil {
			return p, err
		}
		bm, err := bookmarked()
		if err != nil {
			return p, err
		}
		es, err := entries()
		if err != nil {
			return p, err
		}
		seen := map[string]bool{}
		p.Bodies = make([]*tidingsv1.Activity, len(activityIDs))
		p.Conversations = make([]*tidingsv1.Conversation, len(activityIDs))
		for i, e := range es {
			p.Bodies[i] = e.Body
			p.Conversations[i] = Build(activityIDs[i], e.Summary, bm[i], p.Muted[i])
			for _, c := range e.Recent {
				if a := c.GetAuthorUserId(); !seen[a] {
					seen[a] = true
					p.Authors = append(p.Authors, a)
				}
			}
		}
		return p, nil
	}
}

// Build makes the Conversation of an activity from its summary.
func Build(activityID string, sum conversationstore.Summary, bookmarked, muted bool) *tidingsv1.Conversation {
	c := &tidingsv1.Conversation{
		ActivityId: activityID, CommentCount: sum.CommentCount,
		ReactionCounts: sum.Counts, MyReactions: sum.Mine, Bookmarked: bookmarked, Muted: muted,
	}
	for _, cm := range sum.Recent {
		c.RecentComments = append(c.RecentComments, &tidingsv1.CommentView{Comment: cm})
	}
	if sum.LastCommentMs > 0 {
		c.LastActivityTime = timestamppb.New(time.UnixMilli(sum.LastCommentMs))
	}
	return c
}

// Brief returns the fields of a profile that a comment preview shows: the
// id, the display name, the title and the avatar.
func Brief(p *tidingsv1.Profile) *tidingsv1.Profile {
	if p == nil {
		return nil
	}
	return &tidingsv1.Profile{UserId: p.GetUserId(), DisplayName: p.GetDisplayName(), Title: p.GetTitle(), AvatarUrl: p.GetAvatarUrl()}
}

// Finish completes a conversation with what its activity's read brings:
// the recent comments' authors, and the activity's own time as the latest
// activity when no comment is newer.
func Finish(c *tidingsv1.Conversation, a *tidingsv1.Activity, profiles map[string]*tidingsv1.Profile) {
	if c == nil {
		return
	}
	for _, cv := range c.GetRecentComments() {
		cv.AuthorProfile = Brief(profiles[cv.GetComment().GetAuthorUserId()])
	}
	if t := a.GetCreateTime(); t != nil && (c.LastActivityTime == nil || c.LastActivityTime.AsTime().Before(t.AsTime())) {
		c.LastActivityTime = t
	}
}
