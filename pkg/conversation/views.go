package conversation

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/conversationstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Views reads what readers see of conversations: a Conversation per
// activity, and which activities a reader muted.
type Views struct {
	convs *conversationstore.Store
	state *userstatestore.Store
}

// NewViews returns Views over the conversation and user-state projections.
func NewViews(convs *conversationstore.Store, state *userstatestore.Store) *Views {
	return &Views{convs: convs, state: state}
}

// Page is what Views read for a page of activities.
type Page struct {
	// Conversations are the activities' conversations, in order (nil
	// without Full).
	Conversations []*tidingsv1.Conversation
	// Muted says which activities the reader muted.
	Muted []bool
	// Authors are the authors of the recent comments, to hydrate with
	// SetAuthors.
	Authors []string
}

// Queue queues, on pipe, the reads of a page of activities as reader (a
// user id, or "" for a caller who is no user) sees them: whether each is
// muted, and with full their conversations. That is two commands per
// activity and two per page, in whatever pipeline the caller reads the
// page's bodies with: no round trip of its own.
func (v *Views) Queue(ctx context.Context, pipe redis.Pipeliner, activityIDs []string, reader string, full bool) redisx.Result[Page] {
	muted := v.state.QueueFlagged(ctx, pipe, userstatestore.Mute, reader, activityIDs)
	if !full {
		return func() (Page, error) {
			m, err := muted()
			return Page{Muted: m}, err
		}
	}
	bookmarked := v.state.QueueFlagged(ctx, pipe, userstatestore.Bookmark, reader, activityIDs)
	sums := make([]redisx.Result[conversationstore.Summary], len(activityIDs))
	for i, id := range activityIDs {
		sums[i] = v.convs.QueueSummary(ctx, pipe, id, reader)
	}
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
		seen := map[string]bool{}
		p.Conversations = make([]*tidingsv1.Conversation, len(activityIDs))
		for i, r := range sums {
			sum, err := r()
			if err != nil {
				return p, err
			}
			p.Conversations[i] = Build(activityIDs[i], sum, bm[i], p.Muted[i])
			for _, c := range sum.Recent {
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

// Finish completes a conversation with what its activity's read brings:
// the recent comments' authors, and the activity's own time as the latest
// activity when no comment is newer.
func Finish(c *tidingsv1.Conversation, a *tidingsv1.Activity, profiles map[string]*tidingsv1.Profile) {
	if c == nil {
		return
	}
	for _, cv := range c.GetRecentComments() {
		cv.AuthorProfile = profiles[cv.GetComment().GetAuthorUserId()]
	}
	if t := a.GetCreateTime(); t != nil && (c.LastActivityTime == nil || c.LastActivityTime.AsTime().Before(t.AsTime())) {
		c.LastActivityTime = t
	}
}
