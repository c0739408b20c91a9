package conversationstore

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

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

// summaryFields are the fields of the summary hash a read asks for: the
// comment part, then the activity's count of each kind.
func summaryFields(activityID string) []string {
	out := []string{"n", "c1", "c2", "la"}
	for _, k := range Kinds {
		out = append(out, countField(activityID, k))
	}
	return out
}

// mineFields are the version registers of reader's reactions on item.
func mineFields(item, reader string) []string {
	out := make([]string, len(Kinds))
	for i, k := range Kinds {
		out[i] = versionField(item, reader, k)
	}
	return out
}

// QueueSummary queues, on pipe, the read of an activity's summary as
// reader (a user id; "" for none) sees it: two commands, whatever the
// activity holds.
func (s *Store) QueueSummary(ctx context.Context, pipe redis.Pipeliner, activityID, reader string) redisx.Result[Summary] {
	sum := pipe.HMGet(ctx, s.summaryKey(activityID), summaryFields(activityID)...)
	var mine *redis.SliceCmd
	if reader != "" {
		mine = pipe.HMGet(ctx, s.versionsKey(activityID), mineFields(activityID, reader)...)
	}
	return func() (Summary, error) {
		var out Summary
		vals, err := sum.Result()
		if err != nil {
			return out, fmt.Errorf("read conversation of %s: %w", activityID, err)
		}
		out.CommentCount = intOf(vals[0])
		for _, v := range []any{vals[2], vals[1]} {
			if str, ok := v.(string); ok {
				c, err := decodeComment(str)
				if err != nil {
					return out, err
				}
				out.Recent = append(out.Recent, c)
			}
		}
		out.LastCommentMs = intOf(vals[3])
		out.Counts = counts(vals[4:])
		if mine != nil {
			if out.Mine, err = minesOf(mine); err != nil {
				return out, err
			}
		}
		return out, nil
	}
}

// QueueItemReactions queues, on pipe, the read of the reactions on several
// comments of one activity as reader sees them, in two commands.
func (s *Store) QueueItemReactions(ctx context.Context, pipe redis.Pipeliner, activityID string, items []string, reader string) redisx.Result[[]Reactions] {
	if len(items) == 0 {
		return func() ([]Reactions, error) { return nil, nil }
	}
	var fields, mineF []string
	for _, it := range items {
		for _, k := range Kinds {
			fields = append(fields, countField(it, k))
		}
		if reader != "" {
			mineF = append(mineF, mineFields(it, reader)...)
		}
	}
	cnt := pipe.HMGet(ctx, s.summaryKey(activityID), fields...)
	var mine *redis.SliceCmd
	if reader != "" {
		mine = pipe.HMGet(ctx, s.versionsKey(activityID), mineF...)
	}
	return func() ([]Reactions, error) {
		vals, err := cnt.Result()
		if err != nil {
			return nil, fmt.Errorf("read reactions on %s: %w", activityID, err)
		}
		var mv []any
		if mine != nil {
			if mv, err = mine.Result(); err != nil {
				return nil, fmt.Errorf("read reactions on %s: %w", activityID, err)
			}
		}
		n := len(Kinds)
		out := make([]Reactions, len(items))
		for i := range items {
			out[i].Counts = counts(vals[i*n : i*n+n])
			if mv != nil {
				out[i].Mine = mineOf(mv[i*n : i*n+n])
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

func counts(vals []any) []*tidingsv1.ReactionCount {
	var out []*tidingsv1.ReactionCount
	for i, v := range vals {
		if n := intOf(v); n > 0 {
			out = append(out, &tidingsv1.ReactionCount{Kind: Kinds[i], Count: n})
		}
	}
	return out
}

func minesOf(cmd *redis.SliceCmd) ([]tidingsv1.ReactionKind, error) {
	vals, err := cmd.Result()
	if err != nil {
		return nil, fmt.Errorf("read own reactions: %w", err)
	}
	return mineOf(vals), nil
}

func mineOf(vals []any) []tidingsv1.ReactionKind {
	var out []tidingsv1.ReactionKind
	for i, v := range vals {
		if intOf(v) > 0 {
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
