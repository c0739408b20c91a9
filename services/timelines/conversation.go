package timelines

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// hydrateOpts say how a page is hydrated.
type hydrateOpts struct {
	// home is a home feed: activities the reader muted are left out, and
	// dead ids are taken out of the timeline.
	home bool
	// full gives items their conversations (the FULL view).
	full bool
}

// homeHydration is how a home feed is hydrated in view v.
func homeHydration(v tidingsv1.FeedItemView) hydrateOpts {
	return hydrateOpts{home: true, full: v != tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC}
}

// feedHydration is how an entity feed is hydrated in view v.
func feedHydration(v tidingsv1.FeedItemView) hydrateOpts {
	return hydrateOpts{full: v != tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC}
}

// conversations is what a page's bodies round trip read of conversations.
type conversations struct {
	page conversation.Page
	home bool
}

// hidden reports whether the i-th activity leaves the page: a home feed
// leaves out what its reader muted.
func (c *conversations) hidden(i int) bool {
	return c != nil && c.home && i < len(c.page.Muted) && c.page.Muted[i]
}

// authors are the users whose profiles the conversations show.
func (c *conversations) authors() []string {
	if c == nil {
		return nil
	}
	return c.page.Authors
}

// item returns the i-th activity's conversation, completed with the
// profiles read.
func (c *conversations) item(i int, a *tidingsv1.Activity, profiles map[string]*tidingsv1.Profile) *tidingsv1.Conversation {
	if c == nil || i >= len(c.page.Conversations) {
		return nil
	}
	conv := c.page.Conversations[i]
	conversation.Finish(conv, a, profiles)
	return conv
}

// readBodies reads a page's bodies and, in the same round trip, what the
// page needs of conversations: each activity's conversation (the FULL
// view; read with the body, by the same command), and which of them the
// reader muted (a home feed). That costs two commands a page and no round
// trip of its own.
func (s *Server) readBodies(ctx context.Context, ids []string, reader auth.Identity, o hydrateOpts) ([]*tidingsv1.Activity, *conversations, error) {
	views := s.st.Conversations
	if views == nil || (!o.full && !o.home) {
		acts, err := s.st.Bodies.GetMany(ctx, ids)
		return acts, nil, err
	}
	user := ""
	if reader.Kind == auth.KindEmployee {
		user = reader.ID
	}
	p, err := redisx.Run(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) redisx.Result[conversation.Page] {
		return views.Queue(ctx, pipe, ids, user, o.full)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read feed items: %w", err)
	}
	return p.Bodies, &conversations{page: p, home: o.home}, nil
}
