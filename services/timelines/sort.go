package timelines

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/pagetoken"
	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// The latest-activity order (HOME_SORT_LATEST_ACTIVITY) moves a post up
// when it gets a comment without writing anything per reader: a comment
// costs one write to a global index of when activities were last
// commented on (conversationstore.QueueBump, the newest 100,000), and a read
// sorts the items its home feed keeps (its cap, HomeCap - 1 merged ids) by
// max(posted, last commented), after one ZMSCORE of those ids in that
// index. Past those items, paging goes on newest post first, from the
// oldest of them. Each page sorts afresh: an item commented on between two
// pages may show on both, or move above where the reader is.

// activityPosition is where a page of the latest-activity order starts:
// after the item with this sort time (ms) and id, or, when posts is set,
// in the newest-post order before id.
type activityPosition struct {
	ms    int64
	id    ids.ID
	posts bool
}

func (p activityPosition) String() string {
	if p.posts {
		return "p:" + p.id.String()
	}
	return "a:" + strconv.FormatInt(p.ms, 10) + ":" + p.id.String()
}

func parseActivityPosition(s string) (activityPosition, error) {
	bad := apierr.InvalidArgument("page_token is not a token of this query")
	kind, rest, ok := strings.Cut(s, ":")
	if !ok {
		return activityPosition{}, bad
	}
	switch kind {
	case "p":
		id, err := ids.Parse(rest)
		if err != nil {
			return activityPosition{}, bad
		}
		return activityPosition{id: id, posts: true}, nil
	case "a":
		msStr, idStr, ok := strings.Cut(rest, ":")
		ms, err1 := strconv.ParseInt(msStr, 10, 64)
		id, err2 := ids.Parse(idStr)
		if !ok || err1 != nil || err2 != nil {
			return activityPosition{}, bad
		}
		return activityPosition{ms: ms, id: id}, nil
	}
	return activityPosition{}, bad
}

// ranked is an id with its sort time.
type ranked struct {
	id ids.ID
	ms int64
}

// before reports whether a comes before b in the order: the later sort
// time first, then the newer id.
func before(a, b ranked) bool {
	if a.ms != b.ms {
		return a.ms > b.ms
	}
	return a.id > b.id
}

// readByActivity reads a page of a home feed in the latest-activity order.
func (s *Server) readByActivity(ctx context.Context, req *tidingsv1.GetHomeTimelineRequest) (*tidingsv1.GetHomeTimelineResponse, error) {
	user := req.GetUserId()
	scope := "home|" + user + "|activity"
	pos, err := pagetoken.Decode(scope, req.GetPageToken())
	if err != nil {
		return nil, apierr.InvalidArgument("page_token is not a token of this query")
	}
	var at activityPosition
	if pos != "" {
		if at, err = parseActivityPosition(pos); err != nil {
			return nil, err
		}
	}
	o := homeHydration(req.GetView())
	reader := employee(user)
	key := s.st.Timelines.HomeKey(user)
	if at.posts {
		// Past the sorted items: the newest-post order, from there.
		postScope := "home|" + user
		items, next, err := s.read(ctx, s.homePager(user, false), key, postScope, pagetoken.Encode(postScope, at.id.String()), req.GetPageSize(), reader, o)
		if err != nil {
			return nil, err
		}
		return &tidingsv1.GetHomeTimelineResponse{Items: items, NextPageToken: s.carry(scope, postScope, next)}, nil
	}
	if s.st.LastActivity == nil {
		return nil, apierr.Unavailable("the latest-activity order is not configured on this server")
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = defaultPageSize
	}
	window := max(s.st.HomeCap-1, 1)
	list, more, err := s.homePager(user, req.GetPageToken() == "")(ctx, 0, window)
	if err != nil {
		return nil, err
	}
	strs := make([]string, len(list))
	for i, id := range list {
		strs[i] = id.String()
	}
	last, err := redisx.Run(ctx, s.st.Timelines.Client(), func(pipe redis.Pipeliner) redisx.Result[[]int64] {
		return s.st.LastActivity.QueueLastActivity(ctx, pipe, strs)
	})
	if err != nil {
		return nil, err
	}
	order := make([]ranked, len(list))
	for i, id := range list {
		order[i] = ranked{id: id, ms: max(id.Time().UnixMilli(), last[i])}
	}
	slices.SortFunc(order, func(a, b ranked) int {
		if before(a, b) {
			return -1
		}
		return 1
	})
	start := 0
	if pos != "" {
		start = len(order)
		cursor := ranked{id: at.id, ms: at.ms}
		for i, r := range order {
			if before(cursor, r) {
				start = i
				break
			}
		}
	}
	resp := &tidingsv1.GetHomeTimelineResponse{}
	next := start
	for round := 0; round < maxReadRounds && len(resp.Items) < limit && next < len(order); round++ {
		part := order[next:min(next+limit-len(resp.Items), len(order))]
		next += len(part)
		batch := make([]ids.ID, len(part))
		for i, r := range part {
			batch[i] = r.id
		}
		got, dead, err := s.hydrate(ctx, batch, reader, o)
		if err != nil {
			return nil, err
		}
		resp.Items = append(resp.Items, got...)
		if len(dead) > 0 {
			if err := s.st.Timelines.Remove(ctx, []string{key}, dead); err != nil {
				return nil, err
			}
		}
	}
	switch {
	case next < len(order):
		r := order[next-1]
		resp.NextPageToken = pagetoken.Encode(scope, activityPosition{ms: r.ms, id: r.id}.String())
	case more:
		// The home feed keeps more than was sorted, or pages past its cap:
		// go on in post order from the oldest sorted item.
		resp.NextPageToken = pagetoken.Encode(scope, activityPosition{id: list[len(list)-1], posts: true}.String())
	}
	return resp, nil
}

// carry turns a next-page token of the newest-post order into one of the
// latest-activity order that goes on in post order.
func (s *Server) carry(scope, postScope, next string) string {
	if next == "" {
		return ""
	}
	pos, err := pagetoken.Decode(postScope, next)
	if err != nil {
		return ""
	}
	id, err := ids.Parse(pos)
	if err != nil {
		return ""
	}
	return pagetoken.Encode(scope, activityPosition{id: id, posts: true}.String())
}
