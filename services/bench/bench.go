// Package bench measures a Tidings stack against the limits of the machine
// it runs on. It starts its own stacks (`tidings dev` child processes with
// embedded JetStream and a redis-server) or drives one it is pointed at,
// builds a synthetic organisation through the public gRPC API, drives load
// through that API, and reports each figure beside a baseline measured in
// the same run on the same Redis: redis-benchmark's pipelined ZADD rate,
// redis-benchmark driving Tidings' own timeline insert script, a naive
// one-round-trip-per-follower loop, and raw Redis reads.
//
// Nothing in a report is computed from a configured value: deliveries are
// the worker's own count, rates are counted calls over measured time, and
// every fan-out run is read back through the API before it is reported.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"time"
)

// Mode is how much the bench measures.
type Mode string

// The modes.
const (
	// Quick runs every figure on smaller organisations, in about two and a
	// half minutes.
	Quick Mode = "quick"
	// Full runs the figures at the sizes the README reports.
	Full Mode = "full"
)

// ParseMode parses a mode name.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Quick, Full:
		return m, nil
	}
	return "", fmt.Errorf("unknown bench mode %q (want quick or full)", s)
}

// Sizes are the organisation sizes and durations of a run.
type Sizes struct {
	// Users is the size of the main organisation.
	Users int
	// Growth are the sizes of the growth figure; the one equal to Users is
	// the main run.
	Growth []int
	// BigAudience is the follower count of the big-audience post.
	BigAudience int
	// Posts is the number of activities of each fan-out run.
	Posts int
	// Reads is how long each read measurement runs.
	Reads time.Duration
	// Latency is how long the latency figure runs.
	Latency time.Duration
	// Participants is the size of the conversation figure's thread (1,000
	// in full; each of its comments notifies every earlier participant, so
	// building it costs n²/2 notifications, and quick takes 500), Probes how
	// many comments are timed on it, and Reactors how many users react to
	// its hot post at once.
	Participants int
	Probes       int
	Reactors     int
}

// SizesFor returns the sizes of a mode.
func SizesFor(m Mode) Sizes {
	if m == Quick {
		return Sizes{Users: 2000, Growth: []int{1000, 2000, 4000}, BigAudience: 20000, Posts: 4000, Reads: 2 * time.Second, Latency: 6 * time.Second,
			Participants: 500, Probes: 20, Reactors: 1000}
	}
	return Sizes{Users: 10000, Growth: []int{1000, 10000, 100000}, BigAudience: 100000, Posts: 15000, Reads: 5 * time.Second, Latency: 15 * time.Second,
		Participants: 1000, Probes: 50, Reactors: 1000}
}

// Options configure Run.
type Options struct {
	Mode  Mode
	Sizes Sizes
	// Binary is the tidings binary that runs the bench's own stacks.
	Binary string
	// Target, when set, is measured instead: the main figures on one
	// organisation of Sizes.Users. Growth, the fsync variant and the big
	// audience need stacks the bench configures, and are left out.
	Target *Target
	// WorkDir holds the bench's stacks' data; a temporary directory when
	// empty.
	WorkDir string
	// Seed makes the organisation and the load repeatable.
	Seed uint64
	// Log receives progress lines.
	Log io.Writer
	// Only, when not empty, names the parts of an embedded run to take
	// (Parts), for a before-and-after of one figure; all when empty.
	Only []string
}

// Parts are the parts of a run with embedded stacks, as Options.Only names
// them.
var Parts = []string{"main", "always", "growth", "pulled", "big"}

// part reports whether the run takes the named part.
func (r *runner) part(name string) bool {
	return len(r.opts.Only) == 0 || slices.Contains(r.opts.Only, name)
}

// runner carries a run's state.
type runner struct {
	opts  Options
	start time.Time
	rep   *Report
}

func (r *runner) progress(format string, args ...any) {
	if r.opts.Log != nil {
		fmt.Fprintf(r.opts.Log, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
	}
}

// Run measures and returns the report.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Sizes.Users == 0 {
		opts.Sizes = SizesFor(opts.Mode)
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if _, err := findRedisBenchmark(); err != nil {
		return nil, err
	}
	r := &runner{opts: opts, start: time.Now(), rep: newReport(opts)}
	if opts.Target != nil {
		if err := r.runTarget(ctx); err != nil {
			return nil, err
		}
	} else {
		if opts.WorkDir == "" {
			dir, err := os.MkdirTemp("", "tidings-bench-")
			if err != nil {
				return nil, fmt.Errorf("create bench dir: %w", err)
			}
			defer os.RemoveAll(dir)
			opts.WorkDir, r.opts.WorkDir = dir, dir
		}
		if err := r.runEmbedded(ctx); err != nil {
			return nil, err
		}
	}
	r.rep.Seconds = time.Since(r.start).Seconds()
	r.rep.evaluate()
	return r.rep, nil
}

// hotSpec gives a stack of n users thresholds that make the few entities
// followed by more than half the company hot, at every size, so that the
// sizes compare like with like (production's default is 10,000).
func hotSpec(n int) StackSpec {
	return StackSpec{HotOn: int64(n / 2), HotOff: int64(n * 2 / 5)}
}

// withStack starts a stack, connects, and runs fn; it stops the stack after.
func (r *runner) withStack(ctx context.Context, spec StackSpec, fn func(c *client) error) error {
	e, err := startEmbedded(ctx, r.opts.Binary, r.opts.WorkDir, spec)
	if err != nil {
		return err
	}
	defer e.stop()
	c, err := newClient(e.Target)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.check(ctx); err != nil {
		return err
	}
	return fn(c)
}

func (r *runner) runEmbedded(ctx context.Context) error {
	sz := r.opts.Sizes
	main := hotSpec(sz.Users)
	r.rep.JetStream = "embedded nats-server " + natsVersion() + ", one server, file storage; fsync: nats-server default (sync_interval 2m) unless marked always (sync_interval: always)"
	if r.part("main") {
		r.progress("main run: %d users (fsync default)", sz.Users)
		if err := r.withStack(ctx, main, func(c *client) error {
			return r.mainFigures(ctx, c, main.HotOn)
		}); err != nil {
			return fmt.Errorf("main run: %w", err)
		}
	}
	if r.part("always") {
		if err := r.alwaysFigure(ctx, main); err != nil {
			return err
		}
	}
	if r.part("growth") {
		if err := r.growthFigure(ctx); err != nil {
			return err
		}
	}
	if r.part("pulled") {
		if err := r.pulledFigure(ctx); err != nil {
			return err
		}
	}
	if r.part("big") {
		return r.bigFigure(ctx)
	}
	return nil
}

// alwaysFigure runs the fan-out and posting figures with JetStream fsyncing
// every write.
func (r *runner) alwaysFigure(ctx context.Context, main StackSpec) error {
	sz := r.opts.Sizes
	always := main
	always.SyncAlways = true
	r.progress("fan-out with fsync always: %d users", sz.Users)
	if err := r.withStack(ctx, always, func(c *client) error {
		org := NewOrg(sz.Users, r.opts.Seed)
		if err := org.Build(ctx, c, r.progress); err != nil {
			return err
		}
		run, err := r.fanout(ctx, c, org, always, true)
		r.rep.Fanout = append(r.rep.Fanout, run)
		return err
	}); err != nil {
		return fmt.Errorf("fsync always run: %w", err)
	}
	return nil
}

// growthFigure runs the fan-out and reads at the growth sizes.
func (r *runner) growthFigure(ctx context.Context) error {
	sz := r.opts.Sizes
	for _, n := range sz.Growth {
		if n == sz.Users && r.rep.Reads != nil {
			r.rep.Growth = append(r.rep.Growth, growthRow(r.rep.Fanout[0], *r.rep.Reads))
			continue
		}
		r.progress("growth: %d users", n)
		spec := hotSpec(n)
		if err := r.withStack(ctx, spec, func(c *client) error {
			org := NewOrg(n, r.opts.Seed)
			if err := org.Build(ctx, c, r.progress); err != nil {
				return err
			}
			run, err := r.fanout(ctx, c, org, spec, false)
			if err != nil {
				return err
			}
			reads, err := runReads(ctx, c, org, sz.Reads, r.opts.Seed)
			if err != nil {
				return err
			}
			r.progress("reads: %.0f/s saturated, p99 %.2f ms at half", reads.SaturatedPerSec, reads.HalfLoad.P99)
			r.rep.Growth = append(r.rep.Growth, growthRow(run, reads))
			return nil
		}); err != nil {
			return fmt.Errorf("growth run at %d users: %w", n, err)
		}
	}
	slices.SortFunc(r.rep.Growth, func(a, b Growth) int { return a.Users - b.Users })
	return nil
}

// bigFigure posts once to a very large audience.
func (r *runner) bigFigure(ctx context.Context) error {
	n := r.opts.Sizes.BigAudience
	r.progress("big audience: one post to %d followers", n)
	// Hot threshold above the audience, so that the post is pushed.
	big := StackSpec{HotOn: int64(2 * n), HotOff: int64(n + n/2)}
	if err := r.withStack(ctx, big, func(c *client) error {
		res, err := runBigAudience(ctx, c, n)
		if err != nil {
			return err
		}
		r.progress("big audience: in all %d timelines after %.2fs", res.Verified, res.Seconds)
		r.rep.BigAudience = &res
		return nil
	}); err != nil {
		return fmt.Errorf("big-audience run: %w", err)
	}
	return nil
}

// pulledFigure runs the pulled-read comparison on a stack of its own.
func (r *runner) pulledFigure(ctx context.Context) error {
	r.progress("pulled reads: a home of %d pulled entities against one of %d pushed, %d other hot entities", pulledEntities, pulledEntities, pulledOthers)
	if err := r.withStack(ctx, PulledSpec, func(c *client) error {
		res, err := runPulled(ctx, c, r.opts.Sizes.Reads, r.progress)
		if err != nil {
			return err
		}
		r.progress("pulled reads: %.0f/s pulled, %.0f/s pushed (%.2f×)", res.PulledPerSec, res.PushedPerSec, res.Ratio)
		r.rep.Pulled = &res
		return nil
	}); err != nil {
		return fmt.Errorf("pulled-read run: %w", err)
	}
	return nil
}

func (r *runner) runTarget(ctx context.Context) error {
	t := *r.opts.Target
	c, err := newClient(t)
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.check(ctx); err != nil {
		return err
	}
	r.rep.JetStream = "as the target runs it"
	return r.mainFigures(ctx, c, 0)
}

// mainFigures builds the main organisation and takes the fan-out, latency,
// read and memory figures on it. hotOn is the stack's hot threshold, 0 when
// unknown.
func (r *runner) mainFigures(ctx context.Context, c *client, hotOn int64) error {
	sz := r.opts.Sizes
	org := NewOrg(sz.Users, r.opts.Seed)
	if err := org.Build(ctx, c, r.progress); err != nil {
		return err
	}
	rss := startRSSSampler(ctx, c)
	spec := StackSpec{HotOn: hotOn}
	run, err := r.fanout(ctx, c, org, spec, true)
	if err != nil {
		return err
	}
	r.rep.Fanout = append(r.rep.Fanout, run)

	rate, reduced := float64(DefaultBackgroundRate), ""
	// The drain's rate is what the worker does with nothing else to do;
	// the background is half of it (the definition of half the
	// machine), and the probes' reads and watches take their share too.
	if limit := 0.5 * run.DeliveriesPerSec; limit < rate {
		rate = limit
		reduced = fmt.Sprintf("this machine's worker carried %.0f deliveries/s (%s); the background is half that", run.DeliveriesPerSec, run.Method)
	}
	r.progress("latency: background %.0f deliveries/s for %s", rate, sz.Latency)
	lat, err := runLatency(ctx, c, org, rate, run.AvgAudience, sz.Latency, r.opts.Seed)
	if err != nil {
		return err
	}
	lat.Reduced = reduced
	r.rep.Latency = &lat
	r.progress("latency: readable p99 %.1f ms, watch p99 %.1f ms at %.0f deliveries/s", lat.Readable.P99, lat.Watch.P99, lat.Rate)

	// What the background left behind is not the reads' load.
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return err
	}
	r.progress("reads: %s each at saturation, raw, half load", sz.Reads)
	reads, err := runReads(ctx, c, org, sz.Reads, r.opts.Seed)
	if err != nil {
		return err
	}
	r.rep.Reads = &reads
	r.progress("reads: %.0f/s saturated (raw %.0f/s), p99 %.2f ms at half", reads.SaturatedPerSec, reads.RawPerSec, reads.HalfLoad.P99)

	mem, err := sampleTimelines(ctx, c.rdb, 2000)
	if err != nil {
		return err
	}
	mem.StackRSSMiB, mem.RedisRSSMiB = rss.stop()
	r.rep.Memory = &mem

	if sz.Participants > 0 {
		conv, err := r.runConversations(ctx, c, org)
		if err != nil {
			return fmt.Errorf("conversations: %w", err)
		}
		r.rep.Conversations = conv
	}
	return nil
}

// fanout runs a fan-out measurement and logs it.
func (r *runner) fanout(ctx context.Context, c *client, org *Org, spec StackSpec, withCeiling bool) (FanoutRun, error) {
	run, err := runFanout(ctx, c, org, r.opts.Sizes.Posts, r.opts.Seed, withCeiling)
	run.Fsync = spec.fsyncName()
	if r.opts.Target != nil {
		run.Fsync = "target's"
	}
	if spec.HotOn > 0 {
		run.HotEntities = org.HotEntities(spec.HotOn)
	}
	if err != nil {
		return run, err
	}
	r.progress("fan-out (%s): %d posts at %.0f/s, %d deliveries in %.2fs = %.0f/s (first delivery after %.2fs, last after %.2fs)", run.Method, run.Posts, run.PostsPerSec, run.Deliveries, run.Seconds, run.DeliveriesPerSec, run.FirstDelivery, run.LastDelivery)
	if withCeiling {
		r.progress("ceiling: redis-benchmark %.0f ZADD/s, naive loop %.0f/s", run.Ceiling.ZaddPerSec, run.Ceiling.NaivePerSec)
	}
	return run, nil
}

// rssSampler records the largest resident set sizes of the stack process
// and of Redis while load runs.
type rssSampler struct {
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	stack, redis float64
}

func startRSSSampler(ctx context.Context, c *client) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{cancel: cancel}
	s.wg.Go(func() {
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			if v, err := c.metric(ctx, rssMetric); err == nil {
				s.stack = max(s.stack, v)
			}
			if v, err := redisRSS(ctx, c.rdb); err == nil {
				s.redis = max(s.redis, v)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return s
}

// stop returns the maxima in MiB.
func (s *rssSampler) stop() (stack, redis float64) {
	s.cancel()
	s.wg.Wait()
	return s.stack / (1 << 20), s.redis / (1 << 20)
}
