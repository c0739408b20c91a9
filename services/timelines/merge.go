package timelines

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
)

// pager returns up to limit ids older than before, newest first, and
// whether more follow.
type pager func(ctx context.Context, before ids.ID, limit int) ([]ids.ID, bool, error)

func (s *Server) feedPager(key string) pager {
	return func(ctx context.Context, before ids.ID, limit int) ([]ids.ID, bool, error) {
		return s.st.Timelines.Page(ctx, key, before, limit)
	}
}

// homeView is what the first round trip of a home read sees: the stored
// timeline, the user's home sources and which of them have pull ranges
// (the user's hot sources).
type homeView struct {
	user   string
	stored []ids.ID
	src    timelinestore.Sources
	hot    map[string]bool
}

// everything is a floor above every id: nothing stored is known complete.
const everything = ids.ID(math.MaxInt64)

// homePager reads a home feed (docs/architecture.md, "The home feed"): the
// stored home timeline, merged in id order with what it does not hold:
//
//   - the pulled posts of hot entities the user receives: the feeds of
//     the user's hot sources (those with pull ranges, pkg/hot) within the
//     intervals of the user's home sources, pushed ids and all (they are
//     the user's too, and the union keeps each id once);
//   - below the timeline's floor, where it no longer holds everything, the
//     feeds of every home source within its intervals, the user's inbox
//     (mentions) and the user's own feed.
//
// With markRead, its first call also records the read, in the same round
// trip, and rebuilds the timeline of a user back from a long absence.
func (s *Server) homePager(userID string, markRead bool) pager {
	return func(ctx context.Context, before ids.ID, limit int) ([]ids.ID, bool, error) {
		v, err := s.readHome(ctx, userID, markRead)
		if err != nil {
			return nil, false, err
		}
		markRead = false
		merged, err := s.merge(ctx, v, before, limit+1)
		if err != nil {
			return nil, false, err
		}
		if len(merged) > limit {
			return merged[:limit], true, nil
		}
		return merged, false, nil
	}
}

// feedRead is one feed page a merge reads, and which of its ids it keeps.
type feedRead struct {
	key    string
	before ids.ID
	keep   func(ids.ID) bool
}

// merge returns up to want ids of a user's home feed older than before
// (all when 0), newest first. It reads at most one round trip: the pages
// of the feeds it merges, all in one pipeline.
//
// A source is paged only where the timeline may lack its ids, one page per
// interval of it, each holding the newest want ids of that interval below
// the cursor, so the first want of the union are the feed's first want:
// the stored timeline holds every pushed id from its floor up, and the
// pages add the pulled ones there and everything below it.
func (s *Server) merge(ctx context.Context, v homeView, before ids.ID, want int) ([]ids.ID, error) {
	start := 0
	if before != 0 {
		start, _ = slices.BinarySearchFunc(v.stored, before, newestFirst)
		if start < len(v.stored) && v.stored[start] == before {
			start++
		}
	}
	stored := v.stored[start:min(start+want, len(v.stored))]
	floor := v.src.Floor
	above := 0
	for _, id := range stored {
		if id >= floor {
			above++
		}
	}
	var reads []feedRead
	// The user's hot sources only, whatever else the company made hot:
	// each read is a page of the interval, a superset of its pulled part.
	for e, iv := range v.src.Entities {
		if v.hot[e] {
			reads = appendIntervals(reads, s.st.Timelines.FeedKey(e), iv, before)
		}
	}
	// Below the floor (the whole feed when the user is back from an
	// absence), when the stored ids above it do not fill the page.
	if floor != 0 && above < want {
		below := floor
		if floor == everything || (before != 0 && before < floor) {
			below = before
		}
		for e, iv := range v.src.Entities {
			reads = appendIntervals(reads, s.st.Timelines.FeedKey(e), iv, below)
		}
		reads = append(reads,
			feedRead{key: s.st.Timelines.InboxKey(v.user), before: below},
			feedRead{key: s.st.Timelines.FeedKey(entity.UserKey(v.user)), before: below})
	}
	merged := slices.Clone(stored)
	if len(reads) > 0 {
		pages, err := s.pageFeeds(ctx, reads, want)
		if err != nil {
			return nil, err
		}
		for i, r := range reads {
			for _, id := range pages[i] {
				if r.keep == nil || r.keep(id) {
					merged = append(merged, id)
				}
			}
		}
	}
	slices.SortFunc(merged, newestFirst)
	merged = slices.Compact(merged)
	return merged[:min(len(merged), want)], nil
}

// appendIntervals adds the reads of a feed's ids older than before within
// each interval: one page per interval, from its end down, so that ids
// between the intervals never fill a page in place of those within.
func appendIntervals(reads []feedRead, key string, iv timelinestore.Intervals, before ids.ID) []feedRead {
	for _, r := range iv {
		cursor := before
		if r.To != 0 && (cursor == 0 || r.To < cursor) {
			cursor = r.To
		}
		if r.From != 0 && cursor != 0 && cursor <= r.From {
			continue // nothing of it is older than before
		}
		from := r.From
		reads = append(reads, feedRead{key: key, before: cursor, keep: func(id ids.ID) bool { return id >= from }})
	}
	return reads
}

// pageFeeds reads a page of want ids of each feed below its cursor, in one
// pipeline.
func (s *Server) pageFeeds(ctx context.Context, reads []feedRead, want int) ([][]ids.ID, error) {
	res := make([]redisx.Result[[][]ids.ID], len(reads))
	err := redisx.Pipeline(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		for i, r := range reads {
			res[i] = s.st.Timelines.QueuePageMany(ctx, pipe, []string{r.key}, r.before, want)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read home feeds: %w", err)
	}
	out := make([][]ids.ID, len(reads))
	for i, r := range res {
		pages, err := r()
		if err != nil {
			return nil, err
		}
		out[i] = pages[0]
	}
	return out, nil
}

// intersect returns the parts of a user's intervals of an entity's feed
// that the entity's pull ranges cover: the ids the user receives from it
// that were not pushed.
func intersect(iv timelinestore.Intervals, ranges []hot.Range) timelinestore.Intervals {
	var out timelinestore.Intervals
	for _, a := range iv {
		for _, b := range ranges {
			from := max(a.From, b.From)
			var to ids.ID
			switch {
			case a.To == 0:
				to = b.To
			case b.To == 0:
				to = a.To
			default:
				to = min(a.To, b.To)
			}
			if to == 0 || from < to {
				out = append(out, timelinestore.Interval{From: from, To: to})
			}
		}
	}
	slices.SortFunc(out, func(x, y timelinestore.Interval) int {
		switch {
		case x.From < y.From:
			return -1
		case x.From > y.From:
			return 1
		}
		return 0
	})
	return out
}

// readHome reads a home timeline, the user's home sources and hot sources
// in one round trip (all under the user's hash tag); with markRead, it records the read in the
// same one, and after an absence longer than InactiveAfter, during which
// the fan-out skipped the user, it rebuilds the timeline from the sources
// first, so that the read returns a full page at once.
func (s *Server) readHome(ctx context.Context, userID string, markRead bool) (homeView, error) {
	now := s.st.Now()
	v := homeView{user: userID}
	var (
		home    redisx.Result[[]ids.ID]
		sources redisx.Result[timelinestore.Sources]
		hotSrc  redisx.Result[map[string]bool]
		prev    redisx.Result[int64]
	)
	err := redisx.Pipeline(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		home = s.st.Timelines.QueueAll(ctx, pipe, s.st.Timelines.HomeKey(userID))
		sources = s.st.Timelines.QueueSources(ctx, pipe, userID)
		hotSrc = s.st.Timelines.QueueHotSources(ctx, pipe, userID)
		if markRead {
			prev = s.st.Timelines.QueueMarkRead(ctx, pipe, userID, now.Unix())
		}
		return nil
	})
	if err != nil {
		return v, fmt.Errorf("read home timeline: %w", err)
	}
	if v.stored, err = home(); err != nil {
		return v, err
	}
	if v.src, err = sources(); err != nil {
		return v, err
	}
	if v.hot, err = hotSrc(); err != nil {
		return v, err
	}
	if prev == nil || s.st.InactiveAfter <= 0 || s.st.HomeCap == 0 {
		return v, nil
	}
	last, err := prev()
	if err != nil || last == 0 || last >= now.Add(-s.st.InactiveAfter).Unix() {
		return v, err
	}
	return s.rebuild(ctx, v)
}

// rebuild refills the home timeline of a user back from an absence with
// the newest HomeCap ids of their home feed, read from the sources alone,
// and returns the view of the timeline it made.
func (s *Server) rebuild(ctx context.Context, v homeView) (homeView, error) {
	absent := v
	absent.src.Floor = everything
	recent, err := s.merge(ctx, absent, 0, s.st.HomeCap)
	if err != nil {
		return v, err
	}
	if err := s.st.Timelines.Rebuild(ctx, v.user, s.st.HomeCap, recent); err != nil {
		return v, err
	}
	list, err := s.st.Timelines.All(ctx, s.st.Timelines.HomeKey(v.user))
	if err != nil {
		return v, err
	}
	v.stored = list
	if len(recent) == s.st.HomeCap {
		v.src.Floor = max(v.src.Floor, recent[len(recent)-1])
	}
	return v, nil
}

// newestFirst orders ids newest first.
func newestFirst(a, b ids.ID) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}
