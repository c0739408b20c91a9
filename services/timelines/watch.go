package timelines

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/ids"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// resumeOverlap is how far before a resume token the replay starts. The
// fan-out writes concurrently, so an item can land in a timeline after a
// newer one was already streamed; replaying a few seconds before the token
// catches it. Clients drop ids they already have.
const resumeOverlap = 5 * time.Second

// recentlySent bounds the ids a watch remembers to skip duplicates.
const recentlySent = 4096

// Watch implements tidingsv1.TimelineServiceServer. It subscribes first,
// then replays what landed in the timeline since shortly before the resume
// point, then streams live items. Notices may come out of id order (the
// fan-out is concurrent) and twice (a replayed item is also announced): the
// watch sends each id once, in arrival order. Delivery is at least once
// across reconnects: nothing still in the timeline is lost.
func (s *Server) Watch(req *tidingsv1.WatchRequest, stream grpc.ServerStreamingServer[tidingsv1.WatchResponse]) error {
	ctx := stream.Context()
	id, _ := auth.FromContext(ctx)
	if !id.ActsAsUser(req.GetUserId()) {
		return apierr.PermissionDenied("an employee may watch only their own home timeline")
	}
	if s.st.Live == nil {
		return apierr.Unavailable("live updates are not configured on this server")
	}
	var from ids.ID
	if tok := req.GetResumeToken(); tok != "" {
		resume, err := ids.Parse(tok)
		if err != nil {
			return apierr.InvalidArgument("resume_token is not a token of this stream")
		}
		from = resume.Before(resumeOverlap)
	}
	size := s.st.WatchBuffer
	hotFollowed, err := s.hotFollowed(ctx, req.GetUserId())
	if err != nil {
		return err
	}
	w, err := s.st.Live.Watch(req.GetUserId(), hotFollowed, size)
	if err != nil {
		return fmt.Errorf("subscribe to live updates of %s: %w", req.GetUserId(), err)
	}
	defer w.Close()
	// The headers tell the client it is subscribed: what lands from now on
	// reaches it.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}

	sent := make(map[ids.ID]struct{}, 64)
	var order []ids.ID
	send := func(list []ids.ID) error {
		fresh := list[:0:0]
		for _, x := range list {
			if _, dup := sent[x]; !dup {
				fresh = append(fresh, x)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		items, _, err := s.Hydrate(ctx, fresh, employee(req.GetUserId()))
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := stream.Send(&tidingsv1.WatchResponse{Item: it, ResumeToken: it.GetActivity().GetId()}); err != nil {
				return err
			}
		}
		for _, x := range fresh {
			sent[x] = struct{}{}
			order = append(order, x)
		}
		for len(order) > recentlySent {
			delete(sent, order[0])
			order = order[1:]
		}
		return nil
	}

	if from != 0 {
		// What landed after the resume point, merged as a home read is:
		// pushed items and hot entities' posts alike.
		all, _, err := s.homePager(req.GetUserId(), false)(ctx, 0, max(s.st.HomeCap, 1000))
		if err != nil {
			return err
		}
		var missed []ids.ID
		for _, x := range all {
			if x > from {
				missed = append(missed, x)
			}
		}
		slices.Reverse(missed) // oldest first
		for start := 0; start < len(missed); start += 50 {
			if err := send(missed[start:min(start+50, len(missed))]); err != nil {
				return err
			}
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case x, ok := <-w.C():
			if !ok {
				if w.Overflowed() {
					return apierr.LimitExceeded("this watcher fell more than %d items behind and was cut off; watch again with the last resume_token", size)
				}
				return apierr.Unavailable("live updates stopped; watch again with the last resume_token")
			}
			if x <= from {
				continue // the client had it before it reconnected
			}
			if err := send([]ids.ID{x}); err != nil {
				return err
			}
		}
	}
}

// hotFollowed returns the hot entities (pkg/hot) the user follows, whose
// posts reach the user's watch through the entities' own live subjects.
func (s *Server) hotFollowed(ctx context.Context, userID string) ([]string, error) {
	if s.st.Hot == nil || s.st.Graph == nil {
		return nil, nil
	}
	ranges, err := s.st.Hot.Pulled(ctx)
	if err != nil || len(ranges) == 0 {
		return nil, err
	}
	var open []string
	for k, rs := range ranges {
		if len(rs) > 0 && rs[len(rs)-1].To == 0 {
			open = append(open, k)
		}
	}
	if len(open) == 0 {
		return nil, nil
	}
	following, err := s.st.Graph.IsFollowing(ctx, userID, open)
	if err != nil {
		return nil, err
	}
	var out []string
	for i, k := range open {
		if following[i] {
			out = append(out, k)
		}
	}
	return out, nil
}
