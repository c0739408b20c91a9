package conversationstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Reactions are an item's reactions as one reader sees them.
type Reactions struct {
	// Counts holds the kinds with at least one reaction, in Kinds order.
	Counts []*tidingsv1.ReactionCount
	// Mine are the reader's own reactions, in Kinds order.
	Mine []tidingsv1.ReactionKind
}

// Summary is what a feed item shows of an activity's conversation.
type Summary struct {
	CommentCount int64
	// Recent are the newest two comments, oldest first.
	Recent []*tidingsv1.Comment
	// LastCommentMs is when it was last commented on (Unix ms; 0 never).
	LastCommentMs int64
	Reactions
}

// BodyField is the field of the body hash that holds the activity
// (activitystore.BodyField).
const BodyField = "pb"

// Entry is an activity's body and the summary of its conversation, as one
// reader sees it.
type Entry struct {
	// Body is the activity as stored (nil when missing or deleted).
	Body *tidingsv1.Activity
	Summary
}

// QueueEntries queues, on pipe, the read of activities with their
// conversations as reader (a user id; "" for none) sees them: one HMGET of
// each activity's body hash, the command that reads the body alone.
func (s *Store) QueueEntries(ctx context.Context, pipe redis.Pipeliner, activityIDs []string, reader string) redisx.Result[[]Entry] {
	cmds := make([]*redis.SliceCmd, len(activityIDs))
	for i, a := range activityIDs {
		fields := []string{BodyField, "n", "c1", "c2", "la", countField(a), ""}
		if reader != "" {
			fields[6] = mineField(a, reader)
		} else {
			fields = fields[:6]
		}
		cmds[i] = pipe.HMGet(ctx, s.bodyKey(a), fields...)
	}
	return func() ([]Entry, error) {
		out := make([]Entry, len(activityIDs))
		for i, cmd := range cmds {
			vals, err := cmd.Result()
			if err != nil {
				return nil, fmt.Errorf("read activity %s: %w", activityIDs[i], err)
			}
			if body, ok := vals[0].(string); ok {
				a := &tidingsv1.Activity{}
				if err := proto.Unmarshal(inPlace(body), a); err != nil {
					return nil, fmt.Errorf("decode activity %s: %w", activityIDs[i], err)
				}
				out[i].Body = a
			}
			sum := &out[i].Summary
			sum.CommentCount = intOf(vals[1])
			for _, v := range []any{vals[3], vals[2]} {
				if str, ok := v.(string); ok {
					c, err := decodeComment(str)
					if err != nil {
						return nil, err
					}
					sum.Recent = append(sum.Recent, c)
				}
			}
			sum.LastCommentMs = intOf(vals[4])
			sum.Counts = countsOf(vals[5])
			if len(vals) > 6 {
				sum.Mine = mineOf(vals[6])
			}
		}
		return out, nil
	}
}

// QueueItemReactions queues, on pipe, the read of the reactions on items
// of one activity (its comments, or itself) as reader sees them, in one
// command.
func (s *Store) QueueItemReactions(ctx context.Context, pipe redis.Pipeliner, activityID string, items []string, reader string) redisx.Result[[]Reactions] {
	if len(items) == 0 {
		return func() ([]Reactions, error) { return nil, nil }
	}
	fields := make([]string, 0, 2*len(items))
	for _, it := range items {
		fields = append(fields, countField(it))
		if reader != "" {
			fields = append(fields, mineField(it, reader))
		}
	}
	cmd := pipe.HMGet(ctx, s.bodyKey(activityID), fields...)
	return func() ([]Reactions, error) {
		vals, err := cmd.Result()
		if err != nil {
			return nil, fmt.Errorf("read reactions on %s: %w", activityID, err)
		}
		step := 1
		if reader != "" {
			step = 2
		}
		out := make([]Reactions, len(items))
		for i := range items {
			out[i].Counts = countsOf(vals[i*step])
			if reader != "" {
				out[i].Mine = mineOf(vals[i*step+1])
			}
		}
		return out, nil
	}
}

func intOf(v any) int64 {
	str, _ := v.(string)
	n, _ := strconv.ParseInt(str, 10, 64)
	return n
}

// countsOf reads a counts field: "<n>,<n>,…" in Kinds order.
func countsOf(v any) []*tidingsv1.ReactionCount {
	str, _ := v.(string)
	if str == "" {
		return nil
	}
	var out []*tidingsv1.ReactionCount
	for i, part := range strings.Split(str, ",") {
		if n, _ := strconv.ParseInt(part, 10, 64); n > 0 && i < len(Kinds) {
			out = append(out, &tidingsv1.ReactionCount{Kind: Kinds[i], Count: n})
		}
	}
	return out
}

// mineOf reads a user's own reactions: one digit a kind, in Kinds order.
func mineOf(v any) []tidingsv1.ReactionKind {
	str, _ := v.(string)
	var out []tidingsv1.ReactionKind
	for i := 0; i < len(str) && i < len(Kinds); i++ {
		if str[i] == '1' {
			out = append(out, Kinds[i])
		}
	}
	return out
}

// ReactionCounts returns an item's reactions by kind.
func (s *Store) ReactionCounts(ctx context.Context, it Item) ([]*tidingsv1.ReactionCount, error) {
	rs, err := redisx.Run(ctx, s.rdb, func(pipe redis.Pipeliner) redisx.Result[[]Reactions] {
		return s.QueueItemReactions(ctx, pipe, it.ActivityID, []string{it.ID()}, "")
	})
	if err != nil {
		return nil, err
	}
	return rs[0].Counts, nil
}

// Reactor is one user's reaction, as a listing returns it.
type Reactor struct {
	UserID string
	Kind   tidingsv1.ReactionKind
	Ms     int64
}

// ReactorCursor is where a page of reactions starts: after this reaction,
// in the order newest first, then kind (last in Kinds first), then user id
// (descending). The zero cursor starts at the newest.
type ReactorCursor struct {
	Ms     int64
	Kind   int
	UserID string
}

// IsZero reports whether c starts at the newest.
func (c ReactorCursor) IsZero() bool { return c.UserID == "" }

// String encodes the cursor for a page token.
func (c ReactorCursor) String() string {
	return strconv.FormatInt(c.Ms, 10) + "|" + strconv.Itoa(c.Kind) + "|" + c.UserID
}

// ParseReactorCursor decodes a cursor made by ReactorCursor.String.
func ParseReactorCursor(s string) (ReactorCursor, error) {
	if s == "" {
		return ReactorCursor{}, nil
	}
	parts := strings.SplitN(s, "|", 3)
	if len(parts) != 3 || parts[2] == "" {
		return ReactorCursor{}, fmt.Errorf("malformed reactions cursor")
	}
	ms, err1 := strconv.ParseInt(parts[0], 10, 64)
	k, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil || k < 0 || k >= len(Kinds) {
		return ReactorCursor{}, fmt.Errorf("malformed reactions cursor")
	}
	return ReactorCursor{Ms: ms, Kind: k, UserID: parts[2]}, nil
}

// before reports whether r comes after the cursor c in listing order.
func (c ReactorCursor) before(r Reactor, kindIndex int) bool {
	if c.IsZero() {
		return true
	}
	if r.Ms != c.Ms {
		return r.Ms < c.Ms
	}
	if kindIndex != c.Kind {
		return kindIndex < c.Kind
	}
	return r.UserID < c.UserID
}

// Reactors returns up to limit reactions on an item after the cursor, of
// the kinds given (every kind when empty), newest first, and whether more
// follow: one read of each kind's set in one round trip (more for a run of
// reactions made in the same millisecond that outlasts the margin read).
func (s *Store) Reactors(ctx context.Context, it Item, kinds []tidingsv1.ReactionKind, after ReactorCursor, limit int) ([]Reactor, bool, error) {
	if len(kinds) == 0 {
		kinds = Kinds
	}
	top := "+inf"
	if !after.IsZero() {
		top = strconv.FormatInt(after.Ms, 10)
	}
	// Read a margin beyond the page for entries at the cursor's own time,
	// which were on earlier pages.
	for want := int64(limit + 1 + 64); ; want *= 4 {
		cmds := make([]*redis.ZSliceCmd, len(kinds))
		_, err := s.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range kinds {
				cmds[i] = pipe.ZRevRangeByScoreWithScores(ctx, s.reactorsKey(it.ActivityID, it.ID(), k), &redis.ZRangeBy{Max: top, Min: "-inf", Count: want})
			}
			return nil
		})
		if err != nil {
			return nil, false, fmt.Errorf("list reactions on %s: %w", it.ID(), err)
		}
		var all []Reactor
		complete := true
		for i, k := range kinds {
			zs := cmds[i].Val()
			ki := slices.Index(Kinds, k)
			kept := 0
			for _, z := range zs {
				r := Reactor{UserID: z.Member.(string), Kind: k, Ms: int64(z.Score)}
				if after.before(r, ki) {
					all = append(all, r)
					kept++
				}
			}
			// A kind read to its margin with fewer than a page kept (a run
			// of reactions in the cursor's millisecond) may hold more that
			// belong on this page.
			if int64(len(zs)) == want && kept <= limit {
				complete = false
			}
		}
		slices.SortFunc(all, func(a, b Reactor) int {
			switch {
			case a.Ms != b.Ms:
				return cmpDesc(a.Ms, b.Ms)
			case a.Kind != b.Kind:
				return cmpDesc(int64(slices.Index(Kinds, a.Kind)), int64(slices.Index(Kinds, b.Kind)))
			}
			return strings.Compare(b.UserID, a.UserID)
		})
		if !complete {
			continue
		}
		if len(all) > limit {
			return all[:limit], true, nil
		}
		return all, false, nil
	}
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// CursorOf returns the cursor just after r.
func CursorOf(r Reactor) ReactorCursor {
	return ReactorCursor{Ms: r.Ms, Kind: slices.Index(Kinds, r.Kind), UserID: r.UserID}
}
