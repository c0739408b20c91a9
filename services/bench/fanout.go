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

// FanoutRun is one fan-out throughput measurement: a burst of activities
// posted through the API, timed from the first post until the worker has
// caught up, and the same Redis's ceiling measured right after.
type FanoutRun struct {
	Users       int    `json:"users"`
	Records     int    `json:"records"`
	Edges       int    `json:"follow_edges"`
	HotEntities int    `json:"hot_entities"`
	Fsync       string `json:"jetstream_fsync"`
	Posts       int    `json:"posts"`
	// Deliveries is the worker's count of entries added to home timelines.
	Deliveries       int64   `json:"deliveries"`
	Seconds          float64 `json:"seconds"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	PostsPerSec      float64 `json:"posts_per_sec"`
	AvgAudience      float64 `json:"avg_deliveries_per_post"`
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

// runFanout posts n activities from 32 goroutines, waits until the worker
// has caught up, reads back a sample, and (withCeiling) measures the
// ceiling.
func runFanout(ctx context.Context, c *client, org *Org, n int, seed uint64, withCeiling bool) (FanoutRun, error) {
	run := FanoutRun{Users: len(org.Users), Records: len(org.Records), Edges: org.Edges, Posts: n}
	before, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return run, err
	}
	p := &poster{c: c, org: org, run: fmt.Sprintf("fanout-%d", time.Now().UnixNano())}
	var mu sync.Mutex
	var userPosts []sent
	var next atomic.Int64
	start := time.Now()
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
	if err := g.Wait(); err != nil {
		return run, err
	}
	posted := time.Since(start)
	if run.Seconds, run.Deliveries, err = c.drained(ctx, start, before); err != nil {
		return run, err
	}
	run.DeliveriesPerSec = float64(run.Deliveries) / run.Seconds
	run.PostsPerSec = float64(n) / posted.Seconds()
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
	return run, nil
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
