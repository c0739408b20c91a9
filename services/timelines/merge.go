package timelines

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/graphstore"
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

// homePager reads a home timeline merged, in id order, with what the user
// does not have pushed:
//
//   - the feeds of hot entities the user follows, within their pull
//     ranges (pkg/hot), so a switch between push and pull shows no gap and
//     no duplicate;
//   - past the oldest entry of a full timeline (its cap), the feeds of
//     every entity the user follows, so paging goes on past the cap.
//
// With markRead, its first call also records the read, in the same round
// trip, and rebuilds the timeline of a user back from a long absence.
func (s *Server) homePager(userID string, markRead bool) pager {
	return func(ctx context.Context, before ids.ID, limit int) ([]ids.ID, bool, error) {
		home, ranges, err := s.readHome(ctx, userID, markRead)
		if err != nil {
			return nil, false, err
		}
		markRead = false
		want := limit + 1
		start := 0
		if before != 0 {
			start, _ = slices.BinarySearchFunc(home, before, newestFirst)
			if start < len(home) && home[start] == before {
				start++
			}
		}
		merged := slices.Clone(home[start:min(start+want, len(home))])

		if len(ranges) > 0 {
			pulled, err := s.pulledFor(ctx, userID, ranges, before, want)
			if err != nil {
				return nil, false, err
			}
			merged = append(merged, pulled...)
		}
		// Past the cap: the home timeline ran out but was full.
		if s.st.HomeCap > 0 && len(home) >= s.st.HomeCap && start+want > len(home) {
			floor := home[len(home)-1]
			from := before
			if from == 0 || floor < from {
				from = floor
			}
			past, err := s.followedFeeds(ctx, userID, from, want)
			if err != nil {
				return nil, false, err
			}
			merged = append(merged, past...)
		}
		slices.SortFunc(merged, newestFirst)
		merged = slices.Compact(merged)
		if len(merged) > limit {
			return merged[:limit], true, nil
		}
		return merged, false, nil
	}
}

// readHome reads a home timeline and the pull ranges in one round trip;
// with markRead, it records the read in the same one, and after an absence
// longer than InactiveAfter, during which the fan-out skipped the user, it
// rebuilds the timeline from the followed feeds first, so the read returns
// a full page at once.
func (s *Server) readHome(ctx context.Context, userID string, markRead bool) ([]ids.ID, map[string][]hot.Range, error) {
	now := time.Now()
	var (
		home   redisx.Result[[]ids.ID]
		ranges redisx.Result[map[string][]hot.Range]
		prev   redisx.Result[int64]
	)
	err := redisx.Pipeline(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		home = s.st.Timelines.QueueAll(ctx, pipe, timelinestore.HomeKey(userID))
		if s.st.Hot != nil {
			ranges = s.st.Hot.QueuePulled(ctx, pipe)
		}
		if markRead {
			prev = s.st.Timelines.QueueMarkRead(ctx, pipe, userID, now.Unix())
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read home timeline: %w", err)
	}
	list, err := home()
	if err != nil {
		return nil, nil, err
	}
	var pulled map[string][]hot.Range
	if ranges != nil {
		if pulled, err = ranges(); err != nil {
			return nil, nil, err
		}
	}
	if prev == nil {
		return list, pulled, nil
	}
	last, err := prev()
	if err != nil || s.st.InactiveAfter <= 0 || last == 0 || last >= now.Add(-s.st.InactiveAfter).Unix() {
		return list, pulled, err
	}
	if s.st.Graph == nil || s.st.HomeCap == 0 {
		return list, pulled, nil
	}
	recent, err := s.followedFeeds(ctx, userID, 0, s.st.HomeCap)
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(recent, newestFirst)
	recent = slices.Compact(recent)
	if len(recent) > s.st.HomeCap {
		recent = recent[:s.st.HomeCap]
	}
	key := timelinestore.HomeKey(userID)
	if _, err := s.st.Timelines.Insert(ctx, []string{key}, s.st.HomeCap, recent); err != nil {
		return nil, nil, err
	}
	list, err = s.st.Timelines.All(ctx, key)
	return list, pulled, err
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

// pulledFor returns ids older than before from the hot feeds the user
// follows, within their pull ranges.
func (s *Server) pulledFor(ctx context.Context, userID string, ranges map[string][]hot.Range, before ids.ID, want int) ([]ids.ID, error) {
	keys := make([]string, 0, len(ranges))
	for k := range ranges {
		keys = append(keys, k)
	}
	feeds := make([]string, len(keys))
	for i, k := range keys {
		feeds[i] = timelinestore.FeedKey(k)
	}
	var (
		following redisx.Result[[]bool]
		pages     redisx.Result[[][]ids.ID]
	)
	err := redisx.Pipeline(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
		following = s.st.Graph.QueueIsFollowing(ctx, pipe, userID, keys)
		if len(keys) <= s.st.SpeculativeFeeds {
			pages = s.st.Timelines.QueuePageMany(ctx, pipe, feeds, before, want)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read hot feeds: %w", err)
	}
	follows, err := following()
	if err != nil {
		return nil, err
	}
	var followed []int
	for i := range keys {
		if follows[i] {
			followed = append(followed, i)
		}
	}
	if len(followed) == 0 {
		return nil, nil
	}
	// got[j] is the page of keys[followed[j]].
	var got [][]ids.ID
	if pages != nil {
		all, err := pages()
		if err != nil {
			return nil, err
		}
		for _, i := range followed {
			got = append(got, all[i])
		}
	} else {
		some := make([]string, len(followed))
		for j, i := range followed {
			some[j] = feeds[i]
		}
		if got, err = s.st.Timelines.PageMany(ctx, some, before, want); err != nil {
			return nil, err
		}
	}
	var out []ids.ID
	for j, i := range followed {
		for _, id := range got[j] {
			if inRanges(ranges[keys[i]], id) {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

func inRanges(rs []hot.Range, id ids.ID) bool {
	for _, r := range rs {
		if r.Contains(id) {
			return true
		}
	}
	return false
}

// followedFeeds returns ids older than before from the feeds of every
// entity the user follows (at most the follow limit), want per feed.
func (s *Server) followedFeeds(ctx context.Context, userID string, before ids.ID, want int) ([]ids.ID, error) {
	var feeds []string
	err := s.st.Graph.ScanFollowing(ctx, userID, 1000, func(edges []graphstore.Edge) error {
		for _, e := range edges {
			feeds = append(feeds, timelinestore.FeedKey(e.Member))
		}
		return nil
	})
	if err != nil || len(feeds) == 0 {
		return nil, err
	}
	pages, err := s.st.Timelines.PageMany(ctx, feeds, before, want)
	if err != nil {
		return nil, err
	}
	var out []ids.ID
	for _, p := range pages {
		out = append(out, p...)
	}
	return out, nil
}
