package activities

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/conversation"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/userstatestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const defaultPageSize = 50

// readerOf is the user whose own state (reactions, bookmark, mute) a read
// shows: the caller when an employee, no one for apps and admins.
func readerOf(id auth.Identity) string {
	if id.Kind == auth.KindEmployee {
		return id.ID
	}
	return ""
}

// conversations reads the conversations of activities as reader sees them:
// one round trip for the summaries, one for the comment authors' profiles.
func (s *Server) conversations(ctx context.Context, acts []*tidingsv1.Activity, reader string) ([]*tidingsv1.Conversation, error) {
	if len(acts) == 0 || s.d.Conversations == nil {
		return nil, nil
	}
	ids := make([]string, len(acts))
	for i, a := range acts {
		ids[i] = a.GetId()
	}
	page, err := redisx.Run(ctx, s.poster.Bodies().Client(), func(pipe redis.Pipeliner) redisx.Result[conversation.Page] {
		return s.d.Conversations.Queue(ctx, pipe, ids, reader, true)
	})
	if err != nil {
		return nil, err
	}
	profiles, err := s.d.Profiles.GetMany(ctx, page.Authors)
	if err != nil {
		return nil, err
	}
	for i, a := range acts {
		conversation.Finish(page.Conversations[i], a, profiles)
	}
	return page.Conversations, nil
}

// flag sets or clears a bookmark or mute of the user on an activity the
// user may see.
func (s *Server) flag(ctx context.Context, f userstatestore.Flag, user, activityID string, on bool) (bool, error) {
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(user) {
		return false, apierr.PermissionDenied("an employee may change only their own bookmarks and mutes")
	}
	if on {
		if _, err := s.vis.Activity(ctx, activityID, auth.Identity{Kind: auth.KindEmployee, ID: user}); err != nil {
			return false, err
		}
	}
	return s.d.UserState.SetFlag(ctx, f, user, activityID, on, id.Caller())
}

// BookmarkActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) BookmarkActivity(ctx context.Context, req *tidingsv1.BookmarkActivityRequest) (*tidingsv1.BookmarkActivityResponse, error) {
	changed, err := s.flag(ctx, userstatestore.Bookmark, req.GetUserId(), req.GetActivityId(), true)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.BookmarkActivityResponse{Changed: changed}, nil
}

// UnbookmarkActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) UnbookmarkActivity(ctx context.Context, req *tidingsv1.UnbookmarkActivityRequest) (*tidingsv1.UnbookmarkActivityResponse, error) {
	changed, err := s.flag(ctx, userstatestore.Bookmark, req.GetUserId(), req.GetActivityId(), false)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.UnbookmarkActivityResponse{Changed: changed}, nil
}

// MuteActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) MuteActivity(ctx context.Context, req *tidingsv1.MuteActivityRequest) (*tidingsv1.MuteActivityResponse, error) {
	changed, err := s.flag(ctx, userstatestore.Mute, req.GetUserId(), req.GetActivityId(), true)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.MuteActivityResponse{Changed: changed}, nil
}

// UnmuteActivity implements tidingsv1.ActivityServiceServer.
func (s *Server) UnmuteActivity(ctx context.Context, req *tidingsv1.UnmuteActivityRequest) (*tidingsv1.UnmuteActivityResponse, error) {
	changed, err := s.flag(ctx, userstatestore.Mute, req.GetUserId(), req.GetActivityId(), false)
	if err != nil {
		return nil, err
	}
	return &tidingsv1.UnmuteActivityResponse{Changed: changed}, nil
}

// ListBookmarks implements tidingsv1.ActivityServiceServer.
func (s *Server) ListBookmarks(ctx context.Context, req *tidingsv1.ListBookmarksRequest) (*tidingsv1.ListBookmarksResponse, error) {
	id, _ := auth.FromContext(ctx)
	user := req.GetUserId()
	if !id.ActsAsUser(user) {
		return nil, apierr.PermissionDenied("an employee may list only their own bookmarks")
	}
	scope := "bookmarks|" + user
	after, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = defaultPageSize
	}
	flags := s.d.UserState.Flags()
	reader := auth.Identity{Kind: auth.KindEmployee, ID: user}
	resp := &tidingsv1.ListBookmarksResponse{}
	more := true
	// Bookmarks of activities deleted or hidden since are left out; a few
	// rounds refill the page.
	for round := 0; round < 4 && len(resp.Bookmarks) < limit && more; round++ {
		var page []userstatestore.Flagged
		page, more, err = flags.Page(ctx, userstatestore.Bookmark, user, after, limit-len(resp.Bookmarks))
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			break
		}
		after = page[len(page)-1].String()
		ids := make([]string, len(page))
		for i, f := range page {
			ids[i] = f.ActivityID
		}
		acts, err := s.poster.Bodies().GetMany(ctx, ids)
		if err != nil {
			return nil, err
		}
		seen, _, err := s.vis.Activities(ctx, acts, reader)
		if err != nil {
			return nil, err
		}
		var shown []*tidingsv1.Activity
		var when []int64
		for i, a := range acts {
			if seen[i] {
				shown = append(shown, a)
				when = append(when, page[i].Ms)
			}
		}
		convs, err := s.conversations(ctx, shown, user)
		if err != nil {
			return nil, err
		}
		var actors []string
		for _, a := range shown {
			if u := entity.ActorUser(a); u != "" {
				actors = append(actors, u)
			}
		}
		profiles, err := s.d.Profiles.GetMany(ctx, actors)
		if err != nil {
			return nil, err
		}
		for i, a := range shown {
			resp.Bookmarks = append(resp.Bookmarks, &tidingsv1.Bookmark{
				Activity: a, ActorProfile: profiles[entity.ActorUser(a)], Conversation: convs[i],
				CreateTime: timestamppb.New(msTime(when[i])),
			})
		}
	}
	if more {
		resp.NextPageToken = pagetoken.Encode(scope, after)
	}
	return resp, nil
}

func msTime(ms int64) time.Time { return time.UnixMilli(ms) }
