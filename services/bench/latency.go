package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Latency is how long a post takes to become visible while the fan-out
// carries a steady background load: from the Post RPC's return until the
// item is readable in every follower's home timeline, and until every
// follower's Watch stream has delivered it. A figure of 0 means it was
// there before the RPC returned.
type Latency struct {
	// TargetRate is the background the bench aimed for, in deliveries a
	// second; Rate is what the worker's counter says it carried.
	TargetRate float64 `json:"target_background_deliveries_per_sec"`
	Rate       float64 `json:"background_deliveries_per_sec"`
	// Reduced says why the target is below the default, if it is.
	Reduced   string      `json:"reduced,omitempty"`
	Followers int         `json:"probe_followers"`
	Readable  Percentiles `json:"readable"`
	Watch     Percentiles `json:"watch"`
	// PollEvery is the resolution of the readable figure.
	PollEvery string `json:"poll_every"`
}

// DefaultBackgroundRate is the background load the latency figure is taken
// at, unless the machine cannot carry it.
const DefaultBackgroundRate = 50000

const (
	probeEvery = 100 * time.Millisecond
	// Each follower of a probe polls its first 5 items, first after 2 ms,
	// then backing off to every 20 ms: a read costs the stack about a
	// millisecond of CPU, and the polling must not be the load it
	// measures. The back-off bounds the readable figure's resolution.
	pollFirst = 2 * time.Millisecond
	pollMax   = 20 * time.Millisecond
	pollItems = 5
	// A probe that is not visible after this long fails the run: under
	// overload latencies grow, but not to a minute.
	watchLimit = 60 * time.Second
)

// probeActor is a user with a handful of followers, none of them hot.
func probeActor(org *Org) (int32, error) {
	for i, f := range org.Followers {
		if len(f) >= 3 && len(f) <= 6 {
			return int32(i), nil
		}
	}
	return 0, errors.New("no user with 3 to 6 followers to probe with")
}

// arrivals records when each watcher's stream delivered each id.
type arrivals struct {
	mu    sync.Mutex
	seen  map[string][]time.Time
	wake  chan struct{}
	fails []error
}

func (a *arrivals) add(id string, t time.Time) {
	a.mu.Lock()
	a.seen[id] = append(a.seen[id], t)
	close(a.wake)
	a.wake = make(chan struct{})
	a.mu.Unlock()
}

// wait returns the latest arrival of id once n streams delivered it.
func (a *arrivals) wait(ctx context.Context, id string, n int) (time.Time, error) {
	timeout := time.After(watchLimit)
	for {
		a.mu.Lock()
		got, wake := a.seen[id], a.wake
		if len(a.fails) > 0 {
			err := a.fails[0]
			a.mu.Unlock()
			return time.Time{}, err
		}
		a.mu.Unlock()
		if len(got) >= n {
			last := got[0]
			for _, t := range got[1:] {
				if t.After(last) {
					last = t
				}
			}
			return last, nil
		}
		select {
		case <-wake:
		case <-timeout:
			return time.Time{}, fmt.Errorf("watch: %d of %d streams delivered %s within %s", len(got), n, id, watchLimit)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// runLatency posts in the background at rate deliveries a second (in
// posts: rate / avgAudience) for d, and meanwhile probes: every 100 ms a
// post by a user with a few followers, each of whom both polls their home
// timeline and watches it.
func runLatency(ctx context.Context, c *client, org *Org, rate, avgAudience float64, d time.Duration, seed uint64) (Latency, error) {
	lat := Latency{TargetRate: rate, PollEvery: fmt.Sprintf("%s, backing off to %s", pollFirst, pollMax)}
	actor, err := probeActor(org)
	if err != nil {
		return lat, err
	}
	followers := org.Followers[actor]
	lat.Followers = len(followers)

	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	arr := &arrivals{seen: map[string][]time.Time{}, wake: make(chan struct{})}
	var watchers sync.WaitGroup
	for _, f := range followers {
		user := org.Users[f]
		stream, err := c.timelines.Watch(wctx, &tidingsv1.WatchRequest{UserId: user}, c.employee(user))
		if err != nil {
			return lat, fmt.Errorf("watch %s: %w", user, err)
		}
		if _, err := stream.Header(); err != nil {
			return lat, fmt.Errorf("watch %s: %w", user, err)
		}
		watchers.Go(func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					if wctx.Err() == nil && !errors.Is(err, io.EOF) {
						arr.mu.Lock()
						arr.fails = append(arr.fails, fmt.Errorf("watch %s: %w", user, err))
						arr.mu.Unlock()
					}
					return
				}
				arr.add(resp.GetItem().GetActivity().GetId(), time.Now())
			}
		})
	}
	defer watchers.Wait()
	defer stopWatch()

	before, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return lat, err
	}
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	p := &poster{c: c, org: org, run: fmt.Sprintf("latency-%d", start.UnixNano())}
	g.Go(func() error {
		rng := rand.New(rand.NewPCG(seed, 1))
		var mu sync.Mutex
		_, _, err := openLoop(gctx, rate/avgAudience, d, 512, func(ctx context.Context, _ int64) error {
			mu.Lock()
			r := rand.New(rand.NewPCG(rng.Uint64(), 0))
			mu.Unlock()
			_, err := p.post(ctx, r, -1)
			return err
		})
		return err
	})
	readable, watched := &latencies{}, &latencies{}
	g.Go(func() error {
		probes, pctx := errgroup.WithContext(gctx)
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		rng := rand.New(rand.NewPCG(seed, 2))
		for time.Since(start) < d {
			select {
			case <-pctx.Done():
				return probes.Wait()
			case <-tick.C:
			}
			r := rand.New(rand.NewPCG(rng.Uint64(), 0))
			probes.Go(func() error { return probe(pctx, c, p, r, org, actor, arr, readable, watched) })
		}
		return probes.Wait()
	})
	if err := g.Wait(); err != nil {
		return lat, err
	}
	elapsed := time.Since(start)
	after, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return lat, err
	}
	lat.Rate = (after - before) / elapsed.Seconds()
	lat.Readable, lat.Watch = readable.percentiles(), watched.percentiles()
	return lat, nil
}

// probe posts as actor and records when every follower can read the post
// and when every follower's Watch stream delivered it.
func probe(ctx context.Context, c *client, p *poster, rng *rand.Rand, org *Org, actor int32, arr *arrivals, readable, watched *latencies) error {
	s, err := p.post(ctx, rng, actor)
	if err != nil {
		return err
	}
	returned := time.Now()
	followers := org.Followers[actor]
	var mu sync.Mutex
	var last time.Time
	g, gctx := errgroup.WithContext(ctx)
	for _, f := range followers {
		user := org.Users[f]
		g.Go(func() error {
			wait := pollFirst
			deadline := returned.Add(watchLimit)
			for {
				ok, err := inHomeWith(gctx, c, user, s.id, pollItems, c.employee(user))
				if err != nil {
					return err
				}
				if ok {
					now := time.Now()
					mu.Lock()
					if now.After(last) {
						last = now
					}
					mu.Unlock()
					return nil
				}
				if time.Now().After(deadline) {
					raw, _ := c.rdb.Get(gctx, timelinestore.HomeKey(user)).Bytes()
					list := timelinestore.Decode(raw)
					in := false
					for _, x := range list {
						in = in || x.String() == s.id
					}
					resp, err := c.timelines.GetHomeTimeline(gctx, &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 20}, c.employee(user))
					var got []string
					for _, it := range resp.GetItems() {
						got = append(got, it.GetActivity().GetId())
					}
					return fmt.Errorf("probe %s not readable by %s after %s (in redis: %v, %d entries, newest %v; api: %v %w)", s.id, user, watchLimit, in, len(list), list[:min(3, len(list))], got[:min(3, len(got))], err)
				}
				select {
				case <-time.After(wait):
					wait = min(2*wait, pollMax)
				case <-gctx.Done():
					return gctx.Err()
				}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	readable.add(max(0, last.Sub(returned)))
	at, err := arr.wait(ctx, s.id, len(followers))
	if err != nil {
		return err
	}
	watched.add(max(0, at.Sub(returned)))
	return nil
}
