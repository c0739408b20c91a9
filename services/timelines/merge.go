package timelines

import (
	"context"
	"slices"
	"time"

	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
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
func (s *Server) homePager(userID string) pager {
	return func(ctx context.Context, before ids.ID, limit int) ([]ids.ID, bool, error) {
		home, err := s.st.Timelines.All(ctx, timelinestore.HomeKey(userID))
		if err != nil {
			return nil, false, err
		}
		want := limit + 1
		start := 0
		if before != 0 {
			start, _ = slices.BinarySearchFunc(home, before, newestFirst)
			if start < len(home) && home[start] == before {
				start++
			}
		}
		merged := slices.Clone(home[start:min(start+want, len(home))])

		if s.st.Hot != nil {
			pulled, err := s.pulledFor(ctx, userID, before, want)
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
func (s *Server) pulledFor(ctx context.Context, userID string, before ids.ID, want int) ([]ids.ID, error) {
	ranges, err := s.st.Hot.Pulled(ctx)
	if err != nil || len(ranges) == 0 {
		return nil, err
	}
	keys := make([]string, 0, len(ranges))
	for k := range ranges {
		keys = append(keys, k)
	}
	following, err := s.st.Graph.IsFollowing(ctx, userID, keys)
	if err != nil {
		return nil, err
	}
	var followed, feeds []string
	for i, k := range keys {
		if following[i] {
			followed = append(followed, k)
			feeds = append(feeds, timelinestore.FeedKey(k))
		}
	}
	if len(followed) == 0 {
		return nil, nil
	}
	pages, err := s.st.Timelines.PageMany(ctx, feeds, before, want)
	if err != nil {
		return nil, err
	}
	var out []ids.ID
	for i, page := range pages {
		for _, id := range page {
			if inRanges(ranges[followed[i]], id) {
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

// markRead records a home read; after an absence longer than
// InactiveAfter, during which the fan-out skipped the user, it first
// rebuilds the home timeline from the followed feeds, so the read returns
// a full page at once.
func (s *Server) markRead(ctx context.Context, userID string) error {
	now := time.Now()
	prev, err := s.st.Timelines.MarkRead(ctx, userID, now.Unix())
	if err != nil || s.st.InactiveAfter <= 0 || prev == 0 || prev >= now.Add(-s.st.InactiveAfter).Unix() {
		return err
	}
	if s.st.Graph == nil || s.st.HomeCap == 0 {
		return nil
	}
	recent, err := s.followedFeeds(ctx, userID, 0, s.st.HomeCap)
	if err != nil {
		return err
	}
	slices.SortFunc(recent, newestFirst)
	recent = slices.Compact(recent)
	if len(recent) > s.st.HomeCap {
		recent = recent[:s.st.HomeCap]
	}
	_, err = s.st.Timelines.Insert(ctx, []string{timelinestore.HomeKey(userID)}, s.st.HomeCap, recent)
	return err
}
