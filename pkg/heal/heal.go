// Package heal keeps the Redis projections whole when Redis forgets: a
// Redis restarted from an older snapshot, a failover to a replica that
// lagged, a restore from backup or a FLUSHALL all lose writes of events
// that JetStream has long acknowledged, and nothing in the consumers'
// lag shows it.
//
// A Healer, run by every worker, keeps the projections' watermarks
// (projection.Projector.Watermarks): every few seconds it raises them to
// what the durable consumers have acknowledged, in a script that refuses
// when a watermark is below what the Healer itself last wrote there. Then
// Redis went back in time (or was emptied), and the Healer re-applies the
// log from the watermarks Redis still holds up to what is acknowledged,
// through the same handlers the worker runs, into the current generation
// in place. Every apply is idempotent and ordered by log position, so the
// live consumers carry on meanwhile, and re-applying what Redis still holds
// changes nothing. While it heals, the generation bucket holds a mark
// that makes every process's health NOT_SERVING for reads.
//
// A worker also catches up from the watermarks when it starts (what was
// acknowledged after the last watermark, a few seconds' worth), so a
// Redis that lost writes while no worker ran is healed as well.
package heal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/projection"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Deps are what a Healer uses.
type Deps struct {
	Log *eventlog.Log
	// ProjectorFor returns the Projector of one generation.
	ProjectorFor func(gen uint64) *projection.Projector
	// Generations says which generation is current and holds the healing
	// mark; without it the Healer heals generation 0 and marks nothing.
	Generations *generation.Store
	// Interval is how often watermarks are checked and raised; 2 s when
	// zero.
	Interval time.Duration
	Metrics  *Metrics
	Logger   *slog.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Healer keeps the watermarks of the current generation and heals it.
type Healer struct {
	d Deps
	// seen is, by generation, what this Healer last wrote as watermarks.
	seen map[uint64]projection.Positions
}

// New returns a Healer.
func New(d Deps) *Healer {
	if d.Interval == 0 {
		d.Interval = 2 * time.Second
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return &Healer{d: d, seen: map[uint64]projection.Positions{}}
}

// Run checks every Interval until ctx ends. A failed check (Redis or NATS
// away) is logged and tried again at the next tick.
func (h *Healer) Run(ctx context.Context) error {
	tick := time.NewTicker(h.d.Interval)
	defer tick.Stop()
	var lastLog time.Time
	for {
		if err := h.Check(ctx); err != nil && ctx.Err() == nil {
			h.d.Metrics.failed()
			if now := h.d.Now(); now.Sub(lastLog) >= time.Minute {
				lastLog = now
				h.d.Logger.WarnContext(ctx, "heal: watermarks not checked; trying again", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Check raises the current generation's watermarks to what the consumers
// acknowledged, healing first when Redis holds less than that.
func (h *Healer) Check(ctx context.Context) error {
	var st generation.State
	if h.d.Generations != nil {
		var err error
		if st, err = h.d.Generations.Read(ctx); err != nil {
			return err
		}
	}
	if rebuilding(st) {
		// A rebuild makes a whole new generation and drops this one: no
		// heal may write into a generation about to go. Start afresh after.
		clear(h.seen)
		return nil
	}
	gen := st.Current
	p := h.d.ProjectorFor(gen)
	acked, err := h.acknowledged(ctx)
	if err != nil {
		return err
	}
	seen, known := h.seen[gen]
	if !known {
		// The first check of this generation here: what was acknowledged
		// after the watermarks Redis holds may be missing (a worker
		// stopped before it raised them, or Redis lost writes while no
		// worker ran). Catch up.
		if err := h.catchUp(ctx, gen, p, acked, "start"); err != nil {
			return err
		}
		seen = projection.Positions{}
	}
	ok, err := p.AdvanceWatermarks(ctx, seen, acked)
	if err != nil {
		return err
	}
	if !ok {
		h.d.Logger.WarnContext(ctx, "heal: redis holds less than was applied (restarted from an older snapshot, failed over to a lagging replica, or emptied); re-applying the log", "generation", gen)
		if err := h.catchUp(ctx, gen, p, acked, "redis lost writes"); err != nil {
			return err
		}
		if _, err := p.AdvanceWatermarks(ctx, projection.Positions{}, acked); err != nil {
			return err
		}
	}
	h.seen[gen] = acked
	return nil
}

// catchUp re-applies what was acknowledged after the watermarks.
func (h *Healer) catchUp(ctx context.Context, gen uint64, p *projection.Projector, acked projection.Positions, reason string) error {
	from, complete, err := p.Watermarks(ctx)
	if err != nil {
		return err
	}
	lost := reason != "start"
	if !complete {
		// A shard without watermarks: emptied, or never watermarked. Its
		// part of the projections is whatever it is: the whole log again.
		from, lost = projection.Positions{}, true
	}
	behind := false
	for s, a := range acked {
		if from[s] < a {
			behind = true
		}
	}
	if !behind {
		return nil
	}
	if lost {
		reason = "redis lost writes"
		if err := h.mark(ctx, gen); err != nil {
			return err
		}
		defer h.unmark(ctx)
	}
	start := h.d.Now()
	events := 0
	lastCheck := start
	hctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	_, err = p.Silent().Replay(hctx, from, acked, func(_ projection.Positions, n int) {
		events += n
		if h.d.Now().Sub(lastCheck) < time.Second || h.d.Generations == nil {
			return
		}
		lastCheck = h.d.Now()
		if st, err := h.d.Generations.Read(ctx); err == nil && (rebuilding(st) || st.Current != gen) {
			cancel(errRebuildTookOver)
			return
		}
		if lost {
			_ = h.mark(ctx, gen)
		}
	})
	h.d.Metrics.healed(reason, events)
	if errors.Is(context.Cause(hctx), errRebuildTookOver) {
		h.d.Logger.InfoContext(ctx, "heal: stopped, a rebuild makes a new generation", "generation", gen, "events", events)
		return nil
	}
	if err != nil {
		return fmt.Errorf("heal generation %d: %w", gen, err)
	}
	level := slog.LevelDebug
	if lost {
		level = slog.LevelWarn
	}
	h.d.Logger.Log(ctx, level, "heal: projections caught up with the log", "generation", gen, "reason", reason,
		"from", from, "through", acked, "events", events, "took", h.d.Now().Sub(start).Round(time.Millisecond))
	return nil
}

func (h *Healer) mark(ctx context.Context, gen uint64) error {
	h.d.Metrics.setHealing(true)
	if h.d.Generations == nil {
		return nil
	}
	return h.d.Generations.SetHealing(ctx, gen, h.d.Now())
}

func (h *Healer) unmark(ctx context.Context) {
	h.d.Metrics.setHealing(false)
	if h.d.Generations == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := h.d.Generations.ClearHealing(ctx); err != nil {
		h.d.Logger.WarnContext(ctx, "heal: healing mark not cleared (it lapses in a minute)", "error", err)
	}
}

var errRebuildTookOver = errors.New("a rebuild took over")

// rebuilding reports whether a rebuild is under way (asked for, running,
// or switched and about to drop the old generation).
func rebuilding(st generation.State) bool {
	switch st.Rebuild.GetState() {
	case tidingsv1.RebuildState_REBUILD_STATE_PENDING, tidingsv1.RebuildState_REBUILD_STATE_RUNNING,
		tidingsv1.RebuildState_REBUILD_STATE_SWITCHED:
		return true
	}
	return false
}

// acknowledged returns, for each stream the watermarks follow, the last
// sequence below which its durable consumer has acknowledged everything:
// every event up to it has been applied.
func (h *Healer) acknowledged(ctx context.Context) (projection.Positions, error) {
	out := projection.Positions{}
	streams := map[string]bool{}
	for _, s := range projection.WatermarkStreams() {
		streams[s] = true
	}
	for _, spec := range projection.ConsumerSpecs() {
		if !streams[spec.Stream] {
			continue
		}
		info, err := h.d.Log.ConsumerInfo(ctx, spec.Stream, spec.Durable)
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			out[spec.Stream] = 0
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", spec.Durable, err)
		}
		out[spec.Stream] = info.AckFloor.Stream
	}
	return out, nil
}

// Metrics count heals.
type Metrics struct {
	heals   *prometheus.CounterVec
	events  prometheus.Counter
	failure prometheus.Counter
	healing prometheus.Gauge
}

// NewMetrics registers the heal metrics on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		heals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_projection_heals_total",
			Help: "Catch-ups of the projections from their watermarks, by reason: start (a worker starting) or redis lost writes.",
		}, []string{"reason"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_projection_heal_events_total",
			Help: "Events re-applied by heals.",
		}),
		failure: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_projection_watermark_check_failures_total",
			Help: "Watermark checks that failed (Redis or NATS unavailable); each is tried again.",
		}),
		healing: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tidings_projection_healing",
			Help: "1 while this worker re-applies the log after Redis lost writes.",
		}),
	}
	for _, c := range []prometheus.Collector{m.heals, m.events, m.failure, m.healing} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register heal metrics: %w", err)
		}
	}
	return m, nil
}

func (m *Metrics) healed(reason string, events int) {
	if m != nil {
		m.heals.WithLabelValues(reason).Inc()
		m.events.Add(float64(events))
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.failure.Inc()
	}
}

func (m *Metrics) setHealing(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.healing.Set(v)
	}
}
