package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidingshq/tidings/pkg/faults"
)

// consumer is one running ConsumeBatches: a pull loop feeding spec.Workers
// workers, and what they share.
type consumer struct {
	l    *Log
	spec ConsumerSpec
	h    BatchHandler
	log  *slog.Logger

	handled      prometheus.Counter
	transient    prometheus.Counter
	poison       prometheus.Counter
	deadLettered prometheus.Counter
	pullErrors   prometheus.Counter
	inRetry      prometheus.Gauge
	lastApplied  prometheus.Gauge
	pending      prometheus.Gauge
	ackPending   prometheus.Gauge

	outage   *outageLog
	pullLogs *outageLog

	mu sync.Mutex
	// stuck counts workers retrying events after a transient failure; when
	// all are, the pull stops until resume is closed.
	stuck  int
	resume chan struct{}
	// stopPull stops the current pull, if any.
	stopPull func()
}

func newConsumer(l *Log, spec ConsumerSpec, h BatchHandler, metrics *ConsumerMetrics, log *slog.Logger) *consumer {
	if metrics == nil {
		metrics = newConsumerMetrics()
	}
	name := spec.Durable
	return &consumer{
		l: l, spec: spec, h: h, log: log.With("consumer", name, "stream", spec.Stream),
		handled:      metrics.handled.WithLabelValues(name),
		transient:    metrics.failed.WithLabelValues(name, FailureTransient),
		poison:       metrics.failed.WithLabelValues(name, FailurePoison),
		deadLettered: metrics.deadLettered.WithLabelValues(name),
		pullErrors:   metrics.pullErrors.WithLabelValues(name),
		inRetry:      metrics.inRetry.WithLabelValues(name),
		lastApplied:  metrics.lastApplied.WithLabelValues(name),
		pending:      metrics.pending.WithLabelValues(name, spec.Stream),
		ackPending:   metrics.ackPending.WithLabelValues(name, spec.Stream),
		outage:       newOutageLog(time.Minute, time.Now),
		pullLogs:     newOutageLog(time.Minute, time.Now),
	}
}

// config is the consumer's JetStream configuration. MaxDeliver is -1
// (unlimited) on the server: the consumer dead-letters by itself, and
// only events that failed on their own content (see ConsumeBatches).
func (c *consumer) config() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        c.spec.Durable,
		FilterSubjects: c.spec.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        c.spec.AckWait,
		MaxDeliver:     -1,
		MaxAckPending:  c.spec.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

func (c *consumer) run(ctx context.Context) {
	msgs := make(chan jetstream.Msg, c.spec.Batch)
	var wg sync.WaitGroup
	for range c.spec.Workers {
		wg.Go(func() { c.work(ctx, msgs) })
	}
	lagDone := make(chan struct{})
	go func() {
		defer close(lagDone)
		c.reportLag(ctx)
	}()
	c.pull(ctx, msgs)
	close(msgs)
	wg.Wait()
	<-lagDone
}

// pull feeds msgs until ctx ends. Any failure to create the consumer or to
// pull from it is logged (one line a minute while it lasts) and the pull is
// set up again after a back-off.
func (c *consumer) pull(ctx context.Context, msgs chan<- jetstream.Msg) {
	bo := newBackoff(c.spec.RetryMin, c.spec.RetryMax)
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if !c.waitResume(ctx) {
			return
		}
		if cons == nil {
			actx, cancel := context.WithTimeout(ctx, attemptTimeout)
			var err error
			cons, err = c.l.js.CreateOrUpdateConsumer(actx, c.spec.Stream, c.config())
			cancel()
			if err != nil {
				cons = nil
				c.pullFailed(ctx, "create consumer", err)
				bo.wait(ctx)
				continue
			}
		}
		iter, err := cons.Messages(
			jetstream.PullMaxMessages(2*c.spec.Workers*c.spec.Batch),
			jetstream.PullExpiry(c.spec.PullExpiry),
		)
		if err != nil {
			cons = nil
			c.pullFailed(ctx, "pull", err)
			bo.wait(ctx)
			continue
		}
		if err := c.feed(ctx, iter, msgs, bo); err != nil {
			// The consumer may have been deleted or its leader moved:
			// create it again before pulling.
			cons = nil
			c.pullFailed(ctx, "pull", err)
			bo.wait(ctx)
		}
	}
}

// feed hands what iter delivers to the workers until ctx ends (then what
// iter has buffered is handed over too), the workers are all stuck on a
// transient failure (then the pull stops and feed returns nil), or the pull
// fails.
func (c *consumer) feed(ctx context.Context, iter jetstream.MessagesContext, msgs chan<- jetstream.Msg, bo *backoff) error {
	defer iter.Stop()
	drainOnEnd := context.AfterFunc(ctx, iter.Drain)
	defer drainOnEnd()
	var paused atomic.Bool
	if !c.setStopPull(func() { paused.Store(true); iter.Stop() }) {
		return nil
	}
	defer c.setStopPull(nil)
	for {
		m, err := iter.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && (ctx.Err() != nil || paused.Load()) {
				return nil
			}
			return err
		}
		if ok, lasted := c.pullLogs.recovered(); ok {
			c.log.Info("consumer: pulling again", "failed_for", lasted.Round(time.Millisecond))
		}
		bo.reset()
		c.handOver(m, msgs)
	}
}

// handOver gives m to a worker, keeping it in progress while all workers
// are busy.
func (c *consumer) handOver(m jetstream.Msg, msgs chan<- jetstream.Msg) {
	select {
	case msgs <- m:
		return
	default:
	}
	tick := time.NewTicker(c.spec.AckWait / 3)
	defer tick.Stop()
	for {
		select {
		case msgs <- m:
			return
		case <-tick.C:
			_ = m.InProgress()
		}
	}
}

func (c *consumer) pullFailed(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	c.pullErrors.Inc()
	if ok, n, since := c.pullLogs.failure(); ok {
		c.log.Warn("consumer: "+what+" failed; setting the pull up again", "error", err,
			"failures_since_last_log", n, "failing_for", since.Round(time.Millisecond))
	}
}

// setStopPull registers how to stop the current pull, or clears it. It
// reports false, and registers nothing, when the consumer is paused.
func (c *consumer) setStopPull(stop func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if stop != nil && c.stuck >= c.spec.Workers {
		return false
	}
	c.stopPull = stop
	return true
}

// waitResume waits until the consumer is not paused; false if ctx ended.
func (c *consumer) waitResume(ctx context.Context) bool {
	c.mu.Lock()
	if c.stuck < c.spec.Workers {
		c.mu.Unlock()
		return true
	}
	ch := c.resume
	c.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// enterRetry marks a worker as retrying n events; the last worker to get
// stuck stops the pull.
func (c *consumer) enterRetry(n int) {
	c.inRetry.Add(float64(n))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stuck++
	if c.stuck == c.spec.Workers {
		c.resume = make(chan struct{})
		if c.stopPull != nil {
			c.stopPull()
			c.stopPull = nil
		}
	}
}

// leaveRetry marks a worker done retrying; the first to leave a paused
// consumer resumes the pull. It reports whether no worker is retrying any
// more.
func (c *consumer) leaveRetry(n int) bool {
	c.inRetry.Sub(float64(n))
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stuck == c.spec.Workers {
		close(c.resume)
	}
	c.stuck--
	return c.stuck == 0
}

// work handles batches until msgs closes.
func (c *consumer) work(ctx context.Context, msgs <-chan jetstream.Msg) {
	batch := make([]jetstream.Msg, 0, c.spec.Batch)
	for m := range msgs {
		batch = collect(append(batch[:0], m), msgs, c.spec.Batch)
		c.handle(ctx, batch)
	}
}

// pendingEvent is an event being handled and the message that brought it.
type pendingEvent struct {
	m jetstream.Msg
	d Delivery
}

// handle applies a batch and settles each event by its outcome; events
// that met a transient failure are retried in place.
func (c *consumer) handle(ctx context.Context, batch []jetstream.Msg) {
	evs := make([]pendingEvent, 0, len(batch))
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			c.log.Error("event without metadata; terminated", "subject", m.Subject(), "error", err)
			_ = m.Term()
			continue
		}
		evs = append(evs, pendingEvent{m: m, d: Delivery{
			Subject:      m.Subject(),
			Data:         m.Data(),
			Sequence:     meta.Sequence.Stream,
			NumDelivered: meta.NumDelivered,
			Progress:     m.InProgress,
		}})
	}
	if len(evs) == 0 {
		return
	}
	retry, err := c.applyAndSettle(ctx, evs)
	if len(retry) > 0 {
		c.retryTransient(ctx, retry, err)
	}
}

// applyAndSettle applies evs once, acknowledges those applied, settles
// those that failed on their content, and returns those that met a
// transient failure with the first such error.
func (c *consumer) applyAndSettle(ctx context.Context, evs []pendingEvent) ([]pendingEvent, error) {
	ds := make([]Delivery, len(evs))
	for i, ev := range evs {
		ds[i] = ev.d
	}
	errs := c.apply(ctx, ds)
	var (
		retry    []pendingEvent
		firstErr error
		applied  bool
	)
	for i, ev := range evs {
		var err error
		if errs != nil {
			err = errs[i]
		}
		switch {
		case err == nil:
			if ackErr := ev.m.Ack(); ackErr != nil {
				c.log.Warn("ack failed; the event will be redelivered", "seq", ev.d.Sequence, "error", ackErr)
			}
			c.handled.Inc()
			applied = true
		case faults.IsTransient(err):
			c.transient.Inc()
			retry = append(retry, ev)
			if firstErr == nil {
				firstErr = err
			}
		default:
			c.settlePoison(ctx, ev, err)
		}
	}
	if applied {
		c.lastApplied.Set(float64(time.Now().UnixNano()) / 1e9)
	}
	return retry, firstErr
}

// apply runs the handler on ds, bounded by AckWait. A panic fails the
// whole batch on its content.
func (c *consumer) apply(ctx context.Context, ds []Delivery) (errs []error) {
	// Handlers finish what they started even when the consumer is asked
	// to stop.
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.spec.AckWait)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("handler panicked; its batch failed", "panic", p, "stack", string(debug.Stack()))
			errs = sameError(len(ds), fmt.Errorf("handler panicked: %v", p))
		}
	}()
	errs = c.h(hctx, ds)
	if errs != nil && len(errs) != len(ds) {
		// A handler bug: retry the whole batch rather than guess.
		errs = sameError(len(ds), fmt.Errorf("batch handler returned %d results for %d events", len(errs), len(ds)))
	}
	return errs
}

func sameError(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// retryTransient retries evs, which met a transient failure, until each is
// applied or fails on its content, or ctx ends (then they are handed back
// to JetStream for another replica).
func (c *consumer) retryTransient(ctx context.Context, evs []pendingEvent, err error) {
	c.enterRetry(len(evs))
	held := len(evs)
	defer func() {
		if last := c.leaveRetry(held); last && ctx.Err() == nil {
			if ok, lasted := c.outage.recovered(); ok {
				c.log.Info("consumer: transient failures are over; events are applied again", "outage", lasted.Round(time.Millisecond))
			}
		}
	}()

	// Keep the held events in progress, so that JetStream neither
	// redelivers them nor counts a delivery, however long the outage.
	var (
		mu      sync.Mutex
		current = evs
	)
	for _, ev := range evs {
		_ = ev.m.InProgress()
	}
	stopKeepAlive := make(chan struct{})
	keepAliveDone := make(chan struct{})
	go func() {
		defer close(keepAliveDone)
		tick := time.NewTicker(c.spec.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-stopKeepAlive:
				return
			case <-tick.C:
				mu.Lock()
				for _, ev := range current {
					_ = ev.m.InProgress()
				}
				mu.Unlock()
			}
		}
	}()
	defer func() {
		close(stopKeepAlive)
		<-keepAliveDone
	}()

	bo := newBackoff(c.spec.RetryMin, c.spec.RetryMax)
	for {
		c.logOutage(err)
		if !bo.wait(ctx) {
			for _, ev := range current {
				_ = ev.m.Nak()
			}
			return
		}
		retry, retryErr := c.applyAndSettle(ctx, current)
		if n := len(current) - len(retry); n > 0 {
			c.inRetry.Sub(float64(n))
			held -= n
		}
		mu.Lock()
		current = retry
		mu.Unlock()
		if len(retry) == 0 {
			return
		}
		err = retryErr
	}
}

// logOutage records a transient failure and logs it at most once a minute.
func (c *consumer) logOutage(err error) {
	if ok, n, since := c.outage.failure(); ok {
		c.log.Warn("consumer: transient failure; events are held and retried until it ends",
			"error", err, "failures_since_last_log", n, "failing_for", since.Round(time.Millisecond))
	}
}

// settlePoison asks for a redelivery of an event that failed on its
// content, after a back-off, or after its last delivery moves it to the
// dead-letter stream.
func (c *consumer) settlePoison(ctx context.Context, ev pendingEvent, err error) {
	c.poison.Inc()
	d := ev.d
	if d.NumDelivered < uint64(c.spec.MaxDeliver) {
		delay := c.spec.Backoff[min(int(d.NumDelivered)-1, len(c.spec.Backoff)-1)]
		c.log.Warn("event failed; will retry", "seq", d.Sequence, "delivery", d.NumDelivered, "retry_in", delay, "error", err)
		_ = ev.m.NakWithDelay(delay)
		return
	}
	if dlErr := c.l.deadLetter(ctx, c.spec, ev.m, d, err); dlErr != nil {
		c.log.Error("dead-lettering failed; will retry", "seq", d.Sequence, "error", dlErr)
		_ = ev.m.NakWithDelay(c.spec.Backoff[len(c.spec.Backoff)-1])
		return
	}
	c.deadLettered.Inc()
	c.log.Error("event dead-lettered after its last delivery", "subject", d.Subject, "seq", d.Sequence,
		"deliveries", d.NumDelivered, "error", err)
	_ = ev.m.Term()
}

// reportLag reads the consumer's pending counts into the lag gauges every
// LagInterval until ctx ends.
func (c *consumer) reportLag(ctx context.Context) {
	tick := time.NewTicker(c.spec.LagInterval)
	defer tick.Stop()
	for {
		actx, cancel := context.WithTimeout(ctx, min(c.spec.LagInterval, attemptTimeout))
		cons, err := c.l.js.Consumer(actx, c.spec.Stream, c.spec.Durable)
		cancel()
		if err == nil {
			info := cons.CachedInfo()
			c.pending.Set(float64(info.NumPending))
			c.ackPending.Set(float64(info.NumAckPending))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// backoff is a capped exponential back-off with jitter.
type backoff struct {
	min, max, next time.Duration
}

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{min: lo, max: hi, next: lo} }

func (b *backoff) reset() { b.next = b.min }

// wait sleeps for the next delay (between half of it and all of it), or
// until ctx ends; it reports false if ctx ended.
func (b *backoff) wait(ctx context.Context) bool {
	d := b.next/2 + rand.N(b.next/2+1) //nolint:gosec // jitter, not a secret

	b.next = min(2*b.next, b.max)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
