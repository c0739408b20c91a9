package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Pulled compares two home reads of 50 hydrated items on one stack: a user
// following Entities entities whose posts are pulled (hot), and a user
// following as many whose posts are pushed. Besides those, the stack holds
// Others hot entities the first user does not follow, so that a read whose
// cost grew with the hot entities of the system, not the reader's, shows.
type Pulled struct {
	Entities     int     `json:"entities_followed"`
	Others       int     `json:"other_hot_entities"`
	PostsEach    int     `json:"posts_per_entity"`
	PulledPerSec float64 `json:"pulled_reads_per_sec"`
	PushedPerSec float64 `json:"pushed_reads_per_sec"`
	Ratio        float64 `json:"ratio"`
	PulledItems  int     `json:"pulled_items_per_read"`
	PushedItems  int     `json:"pushed_items_per_read"`
}

// The pulled-read figure's shape: hot at more than 20 followers.
const (
	pulledEntities  = 200
	pulledOthers    = 300
	pulledFans      = 25
	pulledPostsEach = 3
)

// PulledSpec is the stack the pulled-read figure runs on.
var PulledSpec = StackSpec{HotOn: 20, HotOff: 15}

// pulledOrg is the organisation of the pulled-read figure: user 0 follows
// the pulled entities, user 1 the pushed ones, and pulledFans fans follow
// the pulled entities and the other hot ones, which makes them hot.
func pulledOrg() (o *Org, pulled, pushed, others []int32) {
	n := 2 + pulledFans + 2*pulledEntities + pulledOthers
	o = &Org{Users: make([]string, n), Following: make([][]int32, n), Followers: make([][]int32, n)}
	for i := range o.Users {
		o.Users[i] = fmt.Sprintf("p%06d", i)
	}
	next := int32(2 + pulledFans)
	take := func(k int) []int32 {
		out := make([]int32, k)
		for i := range out {
			out[i] = next
			next++
		}
		return out
	}
	pulled, pushed, others = take(pulledEntities), take(pulledEntities), take(pulledOthers)
	follow := func(u int32, es []int32) {
		for _, e := range es {
			o.Following[u] = append(o.Following[u], e)
			o.Followers[e] = append(o.Followers[e], u)
			o.Edges++
		}
	}
	follow(0, pulled)
	follow(1, pushed)
	for f := range int32(pulledFans) {
		follow(2+f, pulled)
		follow(2+f, others)
	}
	return o, pulled, pushed, others
}

// runPulled builds the pulled-read organisation on c (a stack with
// PulledSpec's thresholds), posts pulledPostsEach activities by every
// entity, and reads both users' homes for d each.
func runPulled(ctx context.Context, c *client, d time.Duration, progress func(string, ...any)) (Pulled, error) {
	o, pulled, pushed, others := pulledOrg()
	res := Pulled{Entities: len(pulled), Others: len(others), PostsEach: pulledPostsEach}
	if err := o.Build(ctx, c, progress); err != nil {
		return res, err
	}
	p := &poster{c: c, org: o, run: "pulled"}
	authors := append(append(append([]int32{}, pulled...), pushed...), others...)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(posters)
	for round := range pulledPostsEach {
		for i, a := range authors {
			g.Go(func() error {
				_, err := p.post(gctx, rand.New(rand.NewPCG(uint64(round), uint64(i))), a)
				return err
			})
		}
		// Rounds in order, so that the first post of each entity (the one
		// that finds it hot) is behind it.
		if err := g.Wait(); err != nil {
			return res, err
		}
		g, gctx = errgroup.WithContext(ctx)
		g.SetLimit(posters)
	}
	if _, err := c.waitCaughtUp(ctx, 5*time.Minute); err != nil {
		return res, err
	}
	read := func(user string, items *atomic.Int64) func(ctx context.Context, _ int, _ int64) error {
		return func(ctx context.Context, _ int, _ int64) error {
			resp, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 50}, c.employee(user))
			if err != nil {
				return fmt.Errorf("read home of %s: %w", user, err)
			}
			items.Store(int64(len(resp.GetItems()))) // the same for every read of a user
			return nil
		}
	}
	var pulledN, pushedN atomic.Int64
	var err error
	if res.PushedPerSec, err = closedLoop(ctx, readCallers, d, read(o.Users[1], &pushedN)); err != nil {
		return res, err
	}
	if res.PulledPerSec, err = closedLoop(ctx, readCallers, d, read(o.Users[0], &pulledN)); err != nil {
		return res, err
	}
	res.PulledItems, res.PushedItems = int(pulledN.Load()), int(pushedN.Load())
	if res.PulledItems != 50 || res.PushedItems != 50 {
		return res, fmt.Errorf("pulled reads: %d items read through pulls and %d pushed, want 50 each", res.PulledItems, res.PushedItems)
	}
	res.Ratio = res.PulledPerSec / res.PushedPerSec
	return res, nil
}
