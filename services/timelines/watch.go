package timelines

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// resumeOverlap is how far before a resume token the replay starts. The
// fan-out writes concurrently, so an item can land in a timeline after a
// newer one was already streamed; replaying a few seconds before the token
// catches it. Clients drop ids they already have.
const resumeOverlap = 5 * time.Second

// recentlySent bounds the ids a watch remembers to skip duplicates.
const recentlySent = 4096

// resumeLimit bounds what a resumed watch replays; resumePage is the page
// it reads the home feed in.
const (
	resumeLimit = 1000
	resumePage  = 100
)

// replayFeed is how many of a hot entity's newest ids a watch looks at
// when it starts listening to it.
const replayFeed = 64

// Watch implements tidingsv1.TimelineServiceServer. It subscribes first,
// then replays what landed in the timeline since shortly before the resume
// point, then streams live items. Notices may come out of id order (the
// fan-out is concurrent) and twice (a replayed item is also announced): the
// watch sends each id once, in arrival order. Delivery is at least once
// across reconnects: nothing still in the timeline is lost.
//
// Posts of the hot entities the user receives are not pushed; the watch
// listens to those entities' subjects, and follows what changes while it is
// open: an entity that turns hot (a switch notice), an entity the user
// follows or unfollows (a sources notice). When it starts listening to an
// entity, it replays the entity's pulled posts that it may have missed.
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
	userID := req.GetUserId()
	size := s.st.WatchBuffer
	// Subscribe before reading what the user receives: a switch or a follow
	// from here on arrives as a change.
	subscribed := ids.At(time.Now())
	w, err := s.st.Live.Watch(userID, nil, size)
	if err != nil {
		return fmt.Errorf("subscribe to live updates of %s: %w", req.GetUserId(), err)
	}
	defer w.Close()
	hw := &hotWatch{s: s, w: w, user: userID, listening: map[string]bool{}}
	// What the hot entities posted before the watch listened to them: since
	// the resume point, or since it subscribed.
	since := from
	if since == 0 {
		since = subscribed
	}
	first, err := hw.start(ctx, since)
	if err != nil {
		return err
	}
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
		items, _, err := s.Hydrate(ctx, fresh, employee(userID))
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
	sendOldestFirst := func(list []ids.ID) error {
		slices.SortFunc(list, func(a, b ids.ID) int { return -newestFirst(a, b) })
		for start := 0; start < len(list); start += 50 {
			if err := send(list[start:min(start+50, len(list))]); err != nil {
				return err
			}
		}
		return nil
	}

	if from != 0 {
		// What landed after the resume point, merged as a home read is:
		// pushed items and hot entities' posts alike, at most the newest
		// resumeLimit.
		page := s.homePager(userID, false)
		var before ids.ID
		for n := 0; n < resumeLimit; {
			list, more, err := page(ctx, before, resumePage)
			if err != nil {
				return err
			}
			for _, x := range list {
				if x > from {
					first = append(first, x)
				}
			}
			n += len(list)
			if !more || len(list) == 0 || list[len(list)-1] <= from {
				break
			}
			before = list[len(list)-1]
		}
	}
	if err := sendOldestFirst(first); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case x, ok := <-w.C():
			if !ok {
				return s.watchEnded(w, size)
			}
			if x <= from {
				continue // the client had it before it reconnected
			}
			if err := send([]ids.ID{x}); err != nil {
				return err
			}
		case c, ok := <-w.Changes():
			if !ok {
				return s.watchEnded(w, size)
			}
			missed, err := hw.change(ctx, c)
			if err != nil {
				return err
			}
			if err := sendOldestFirst(missed); err != nil {
				return err
			}
		}
	}
}

// watchEnded is the status of a watch whose watcher closed.
func (s *Server) watchEnded(w *live.Watcher, size int) error {
	if w.Overflowed() {
		return apierr.LimitExceeded("this watcher fell more than %d items behind and was cut off; watch again with the last resume_token", size)
	}
	return apierr.Unavailable("live updates stopped; watch again with the last resume_token")
}

// hotWatch keeps a watcher listening to the hot entities whose posts reach
// the user: those of the user's home sources that are followed (an open
// interval) and pulled now (an open pull range).
type hotWatch struct {
	s         *Server
	w         *live.Watcher
	user      string
	src       timelinestore.Sources
	listening map[string]bool
}

// start reads the user's sources and the pull ranges of their hot sources
// (the entities of the sources that have any: what the user follows, not
// what the company made hot), listens to the hot entities the user
// follows, and returns their pulled posts since since, which may have
// been published before it listened.
func (h *hotWatch) start(ctx context.Context, since ids.ID) ([]ids.ID, error) {
	st := h.s.st
	var (
		sources redisx.Result[timelinestore.Sources]
		hotSrc  redisx.Result[map[string]bool]
	)
	err := redisx.Pipeline(ctx, st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		sources = st.Timelines.QueueSources(ctx, pipe, h.user)
		hotSrc = st.Timelines.QueueHotSources(ctx, pipe, h.user)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read home sources: %w", err)
	}
	if h.src, err = sources(); err != nil {
		return nil, err
	}
	hotSet, err := hotSrc()
	if err != nil {
		return nil, err
	}
	pull := map[string][]hot.Range{}
	if st.Hot != nil && len(hotSet) > 0 {
		ranges := map[string]redisx.Result[[]hot.Range]{}
		if err := redisx.Pipeline(ctx, st.Timelines.Client(), func(pipe redis.Pipeliner) error {
			for e := range hotSet {
				if h.src.Entities[e].Open() {
					ranges[e] = st.Hot.QueueRanges(ctx, pipe, e)
				}
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("read pull ranges: %w", err)
		}
		for e, r := range ranges {
			if pull[e], err = r(); err != nil {
				return nil, err
			}
		}
	}
	var reads []feedRead
	for e, iv := range h.src.Entities {
		if !iv.Open() || !openRange(pull[e]) {
			continue
		}
		if err := h.listen(e); err != nil {
			return nil, err
		}
		for _, r := range appendIntervals(nil, st.Timelines.FeedKey(e), intersect(iv, pull[e]), 0) {
			reads = append(reads, feedRead{key: r.key, before: r.before, keep: func(id ids.ID) bool { return id >= since && r.keep(id) }})
		}
	}
	return h.replay(ctx, reads)
}

// change acts on a change and returns the ids of posts the watch may have
// missed: an entity the user follows turned hot (its posts from the
// switch on), or the user followed or unfollowed an entity (a hot one's
// newest pulled posts).
func (h *hotWatch) change(ctx context.Context, c live.Change) ([]ids.ID, error) {
	st := h.s.st
	if c.From != 0 {
		iv := h.src.Entities[c.Entity]
		if !iv.Open() {
			return nil, nil
		}
		if err := h.listen(c.Entity); err != nil {
			return nil, err
		}
		return h.replay(ctx, []feedRead{{key: st.Timelines.FeedKey(c.Entity), keep: func(id ids.ID) bool { return id >= c.From && iv.Contains(id) }}})
	}
	var (
		intervals redisx.Result[timelinestore.Intervals]
		ranges    redisx.Result[[]hot.Range]
	)
	err := redisx.Pipeline(ctx, st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		intervals = st.Timelines.QueueIntervals(ctx, pipe, h.user, c.Entity)
		if st.Hot != nil {
			ranges = st.Hot.QueueRanges(ctx, pipe, c.Entity)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read home source %s: %w", c.Entity, err)
	}
	iv, err := intervals()
	if err != nil {
		return nil, err
	}
	var rs []hot.Range
	if ranges != nil {
		if rs, err = ranges(); err != nil {
			return nil, err
		}
	}
	if len(iv) == 0 {
		delete(h.src.Entities, c.Entity)
	} else {
		h.src.Entities[c.Entity] = iv
	}
	if !iv.Open() {
		if h.listening[c.Entity] {
			h.w.Unlisten(c.Entity)
			delete(h.listening, c.Entity)
		}
		return nil, nil
	}
	if !openRange(rs) {
		return nil, nil
	}
	if err := h.listen(c.Entity); err != nil {
		return nil, err
	}
	return h.replay(ctx, appendIntervals(nil, st.Timelines.FeedKey(c.Entity), intersect(iv, rs), 0))
}

// listen starts listening to an entity's posts, once.
func (h *hotWatch) listen(entityKey string) error {
	if h.listening[entityKey] {
		return nil
	}
	if err := h.w.Listen(entityKey); err != nil {
		return apierr.Unavailable("live updates: %v", err)
	}
	h.listening[entityKey] = true
	return nil
}

// replay reads the newest replayFeed ids of feeds and returns those kept.
func (h *hotWatch) replay(ctx context.Context, reads []feedRead) ([]ids.ID, error) {
	if len(reads) == 0 {
		return nil, nil
	}
	pages, err := h.s.pageFeeds(ctx, reads, replayFeed)
	if err != nil {
		return nil, err
	}
	var out []ids.ID
	for i, r := range reads {
		for _, id := range pages[i] {
			if r.keep(id) {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// openRange reports whether an entity is pulled now.
func openRange(rs []hot.Range) bool { return len(rs) > 0 && rs[len(rs)-1].To == 0 }
