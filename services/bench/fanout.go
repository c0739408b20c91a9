package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// FanoutRun is one fan-out throughput measurement. With the target's NATS
// known (the bench's own stacks), it separates the two rates: activities
// are posted through the API with the fan-out consumer paused (the posting
// rate, against JetStream's asynchronous publish ceiling for events of the
// same size on the same server), then the consumer is resumed and timed
// until it has caught up (the worker's drain rate, against Redis's insert
// ceilings on sets as full). Without it, posting and fan-out run together
// and the rate is the burst's, from the first post until the worker has
// caught up. Either way every sampled post is read back through the API.
type FanoutRun struct {
	Users       int    `json:"users"`
	Records     int    `json:"records"`
	Edges       int    `json:"follow_edges"`
	HotEntities int    `json:"hot_entities"`
	Fsync       string `json:"jetstream_fsync"`
	Posts       int    `json:"posts"`
	// Method is "drain" (posted with the worker paused, then drained) or
	// "burst" (posting and fan-out together).
	Method string `json:"method"`
	// Deliveries is the worker's count of entries added to home timelines.
	Deliveries int64 `json:"deliveries"`
	// Seconds is the drain's (or the burst's) duration.
	Seconds float64 `json:"seconds"`
	// FirstDelivery is, for a drain, the seconds from the consumer's
	// resumption until the worker's counter first moved (sampled every
	// 20 ms), and LastDelivery until it last moved: the rest of Seconds
	// is seeing lag 0.
	FirstDelivery    float64 `json:"first_delivery_seconds,omitempty"`
	LastDelivery     float64 `json:"last_delivery_seconds,omitempty"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	PostsPerSec      float64 `json:"posts_per_sec"`
	AvgAudience      float64 `json:"avg_deliveries_per_post"`
	// Publish is JetStream's publish ceiling, measured after a drain.
	Publish *PublishCeiling `json:"publish_ceiling,omitempty"`
	// RatioPostsToPublish is PostsPerSec over Publish.PerSec.
	RatioPostsToPublish float64 `json:"ratio_posts_to_publish_ceiling,omitempty"`
	// Verified is how many posts were read back from every follower's home
	// timeline through the API.
	Verified       int     `json:"verified_posts"`
	Ceiling        Ceiling `json:"ceiling"`
	RatioToCeiling float64 `json:"ratio_to_ceiling"`
	RatioToNaive   float64 `json:"ratio_to_naive"`
	// RatioToInsert compares with redis-benchmark driving Tidings' own
	// insert script.
	RatioToInsert   float64 `json:"ratio_to_insert_script"`
	TimelineEntries float64 `json:"avg_entries_per_timeline"`
}

// posters is how many goroutines post at once.
const posters = 32

// poster makes the bench's activities: seven in ten are employees' posts
// (one in five of those mentions someone they follow), three in ten are
// CRM record events.
type poster struct {
	c     *client
	org   *Org
	run   string
	count atomic.Int64
}

// sent is what one post produced.
type sent struct {
	id    string
	actor int32 // -1 for record events
}

func (p *poster) post(ctx context.Context, rng *rand.Rand, actor int32) (sent, error) {
	n := p.count.Add(1)
	o := p.org
	if actor >= 0 || rng.IntN(10) < 7 {
		if actor < 0 {
			actor = int32(rng.IntN(len(o.Users)))
		}
		text := fmt.Sprintf("Status update %d from %s", n, o.Users[actor])
		if f := o.Following[actor]; len(f) > 0 && rng.IntN(5) == 0 {
			text += " cc @" + o.Users[f[rng.IntN(len(f))]]
		}
		resp, err := p.c.activities.PostActivity(ctx, &tidingsv1.PostActivityRequest{
			ActorUserId: o.Users[actor], Text: text,
		}, p.c.employee(o.Users[actor]))
		if err != nil {
			return sent{}, fmt.Errorf("post as %s: %w", o.Users[actor], err)
		}
		return sent{id: resp.GetActivity().GetId(), actor: actor}, nil
	}
	r := o.Records[rng.IntN(len(o.Records))]
	resp, err := p.c.records.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
		Ref: r.Ref, EventId: fmt.Sprintf("%s-%d", p.run, n), Verb: "stage_changed",
		Text: "Stage changed from Prospecting to Closed Won",
	}, p.c.as(crmApp))
	if err != nil {
		return sent{}, fmt.Errorf("post record event on %s: %w", r.Ref.GetExternalId(), err)
	}
	return sent{id: resp.GetActivity().GetId(), actor: -1}, nil
}

// runFanout posts n activities from 32 goroutines and times the fan-out:
// with the consumer paused during the posts and drained after when the
// target's NATS is known (c.js), as one burst otherwise. It reads back a
// sample, and (withCeiling) measures the ceilings.
func runFanout(ctx context.Context, c *client, org *Org, n int, seed uint64, withCeiling bool) (FanoutRun, error) {
	run := FanoutRun{Users: len(org.Users), Records: len(org.Records), Edges: org.Edges, Posts: n, Method: "burst"}
	if c.js != nil {
		run.Method = "drain"
		if err := c.js.pauseFanout(ctx); err != nil {
			return run, err
		}
		// Whatever happens, the stack's worker runs again after.
		defer func() { _ = c.js.resumeFanout(context.WithoutCancel(ctx)) }()
	}
	before, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return run, err
	}
	start := time.Now()
	userPosts, err := postMany(ctx, c, org, n, seed)
	if err != nil {
		return run, err
	}
	run.PostsPerSec = float64(n) / time.Since(start).Seconds()
	if c.js != nil {
		// A drain figure is only one if nothing was drained before it.
		during, err := c.metric(ctx, deliveriesMetric)
		if err != nil {
			return run, err
		}
		if during != before {
			return run, fmt.Errorf("the fan-out delivered %.0f entries while its consumer was paused", during-before)
		}
		start = time.Now()
		if err := c.js.resumeFanout(ctx); err != nil {
			return run, err
		}
		// A resumed consumer's waiting pulls are served only once a new
		// message arrives (nats-server 2.15.2 signals nothing on an
		// unpause; the worker would wait for its next pull request, up to
		// ten seconds): one more post wakes it.
		p := &poster{c: c, org: org, run: fmt.Sprintf("wake-%d", time.Now().UnixNano())}
		if _, err := p.post(ctx, rand.New(rand.NewPCG(seed, 0)), -1); err != nil {
			return run, err
		}
		n++
	}
	watch := watchDeliveries(ctx, c, start, before)
	run.Seconds, run.Deliveries, err = c.drained(ctx, start, before)
	run.FirstDelivery, run.LastDelivery = watch()
	if err != nil {
		return run, err
	}
	run.DeliveriesPerSec = float64(run.Deliveries) / run.Seconds
	run.AvgAudience = float64(run.Deliveries) / float64(n)
	if run.Verified, err = verifyDelivered(ctx, c, org, userPosts, 20); err != nil {
		return run, err
	}
	mem, err := sampleTimelines(ctx, c.rdb, 2000)
	if err != nil {
		return run, err
	}
	run.TimelineEntries = mem.EntriesPerTimeline
	if !withCeiling {
		return run, nil
	}
	if run.Ceiling, err = measureCeiling(ctx, c.rdb, c.target.RedisAddr, int(mem.EntriesPerTimeline+0.5)); err != nil {
		return run, err
	}
	run.RatioToCeiling = run.DeliveriesPerSec / run.Ceiling.ZaddPerSec
	run.RatioToNaive = run.DeliveriesPerSec / run.Ceiling.NaivePerSec
	run.RatioToInsert = run.DeliveriesPerSec / run.Ceiling.InsertPerSec
	if c.js != nil {
		size, err := c.js.eventSize(ctx)
		if err != nil {
			return run, err
		}
		pc, err := c.js.publishCeiling(ctx, max(20000, 5*n), size)
		if err != nil {
			return run, err
		}
		run.Publish = &pc
		run.RatioPostsToPublish = run.PostsPerSec / pc.PerSec
	}
	return run, nil
}

// watchDeliveries samples the worker's delivery counter every 20 ms from
// start, and its stop function returns the seconds from start until the
// counter first moved from before and until it last moved.
func watchDeliveries(ctx context.Context, c *client, start time.Time, before float64) func() (first, last float64) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var firstAt, lastAt time.Time
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		prev := before
		for {
			if v, err := c.metric(ctx, deliveriesMetric); err == nil && v != prev {
				now := time.Now()
				if firstAt.IsZero() {
					firstAt = now
				}
				lastAt, prev = now, v
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() (float64, float64) {
		cancel()
		wg.Wait()
		if firstAt.IsZero() {
			return 0, 0
		}
		return firstAt.Sub(start).Seconds(), lastAt.Sub(start).Seconds()
	}
}

// postMany posts n activities from 32 goroutines and returns the
// employees' posts among them.
func postMany(ctx context.Context, c *client, org *Org, n int, seed uint64) ([]sent, error) {
	p := &poster{c: c, org: org, run: fmt.Sprintf("fanout-%d", time.Now().UnixNano())}
	var mu sync.Mutex
	var userPosts []sent
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := range posters {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		g.Go(func() error {
			for next.Add(1) <= int64(n) {
				s, err := p.post(gctx, rng, -1)
				if err != nil {
					return err
				}
				if s.actor >= 0 {
					mu.Lock()
					userPosts = append(userPosts, s)
					mu.Unlock()
				}
			}
			return nil
		})
	}
	return userPosts, g.Wait()
}

// verifyDelivered reads the last k of posts back through the API from the
// home timeline of every follower of their author, and fails on any that
// is missing: a fast fan-out that loses items is no figure.
func verifyDelivered(ctx context.Context, c *client, org *Org, posts []sent, k int) (int, error) {
	posts = posts[max(0, len(posts)-k):]
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for _, s := range posts {
		for _, f := range org.Followers[s.actor] {
			g.Go(func() error {
				ok, err := inHome(gctx, c, org.Users[f], s.id)
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("fan-out check: activity %s by %s is missing from the home timeline of %s", s.id, org.Users[s.actor], org.Users[f])
				}
				return nil
			})
		}
	}
	return len(posts), g.Wait()
}

// inHome pages through user's home timeline until it finds id or passes
// it (ids sort by time).
func inHome(ctx context.Context, c *client, user, id string) (bool, error) {
	return inHomeWith(ctx, c, user, id, 100, c.employee(user))
}

func inHomeWith(ctx context.Context, c *client, user, id string, pageSize int32, as grpc.CallOption) (bool, error) {
	token := ""
	for {
		resp, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{
			UserId: user, PageSize: pageSize, PageToken: token,
		}, as)
		if err != nil {
			return false, fmt.Errorf("read home of %s: %w", user, err)
		}
		items := resp.GetItems()
		for _, it := range items {
			if it.GetActivity().GetId() == id {
				return true, nil
			}
		}
		if len(items) == 0 || items[len(items)-1].GetActivity().GetId() < id || resp.GetNextPageToken() == "" {
			return false, nil
		}
		token = resp.GetNextPageToken()
	}
}
