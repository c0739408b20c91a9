package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Delivery is one event handed to a consumer's handler.
type Delivery struct {
	Subject string
	Data    []byte
	// Sequence is the event's position in its stream.
	Sequence uint64
	// NumDelivered counts deliveries of this event, from 1.
	NumDelivered uint64
	// Progress tells JetStream that long work is still going, so the event
	// is not redelivered to another worker meanwhile. Nil on replays.
	Progress func() error
}

// Handler applies one event. It must be idempotent: an event may come twice
// or after a newer one. An error that pkg/faults calls transient (Redis or
// NATS unreachable, failing over, timing out) makes the consumer keep the
// event and retry it for as long as the outage lasts; any other error makes
// the event be delivered again later, until the consumer's MaxDeliver is
// reached; then it goes to the dead-letter stream.
type Handler func(ctx context.Context, d Delivery) error

// BatchHandler applies a batch of events, each as a Handler would, and
// returns nil when all went well, or else one error per event (nil for
// those that went well): each failed event is retried on its own.
type BatchHandler func(ctx context.Context, ds []Delivery) []error

// ConsumerSpec configures a durable consumer shared by every replica.
type ConsumerSpec struct {
	Stream  string
	Durable string
	// FilterSubjects narrows the stream; empty for all.
	FilterSubjects []string
	// AckWait is how long an unacknowledged event waits before redelivery;
	// well above the handler's p99.
	AckWait time.Duration
	// MaxDeliver bounds the deliveries of an event that keeps failing on its
	// own content: the delivery that fails so and is the MaxDeliver-th sends
	// it to the dead-letter stream. Transient failures never dead-letter.
	MaxDeliver int
	// Backoff is the delay before each redelivery after a failure that is
	// not transient.
	Backoff []time.Duration
	// RetryMin and RetryMax bound the capped exponential back-off between
	// retries of events that met a transient failure; 200ms and 5s when
	// zero.
	RetryMin time.Duration
	RetryMax time.Duration
	// MaxAckPending bounds events in flight across all replicas.
	MaxAckPending int
	// Workers is how many handlers of this replica run at once.
	Workers int
	// Batch is the most events one call of a BatchHandler takes: a handler
	// takes what has arrived, up to Batch, without waiting for more.
	// Zero or one hands events over one at a time.
	Batch int
	// PullExpiry is how long one pull request waits on the server; the
	// client expects a heartbeat every half of it and reconnects the pull
	// when two are missed. 30s when zero; at least 1s.
	PullExpiry time.Duration
	// LagInterval is how often the consumer's pending counts are read into
	// the lag gauges; 15s when zero.
	LagInterval time.Duration
}

func (s ConsumerSpec) withDefaults() ConsumerSpec {
	if s.AckWait == 0 {
		s.AckWait = 30 * time.Second
	}
	if s.MaxDeliver == 0 {
		s.MaxDeliver = 8
	}
	if s.Backoff == nil {
		s.Backoff = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second, 15 * time.Second}
	}
	if s.RetryMin == 0 {
		s.RetryMin = 200 * time.Millisecond
	}
	if s.RetryMax == 0 {
		s.RetryMax = 5 * time.Second
	}
	s.RetryMax = max(s.RetryMax, s.RetryMin)
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 1024
	}
	if s.Workers == 0 {
		s.Workers = 4
	}
	s.Batch = max(s.Batch, 1)
	if s.PullExpiry == 0 {
		s.PullExpiry = 30 * time.Second
	}
	s.PullExpiry = max(s.PullExpiry, time.Second)
	if s.LagInterval == 0 {
		s.LagInterval = 15 * time.Second
	}
	return s
}

// Failure kinds, the "kind" label of tidings_consumer_events_failed_total.
const (
	FailureTransient = "transient"
	FailurePoison    = "poison"
)

// ConsumerMetrics count what consumers do. They are meant for alerts:
// dead letters (any increase), events held in transient retry (above zero
// for minutes), the time since the last event applied while events are
// pending, and the lag.
type ConsumerMetrics struct {
	handled       *prometheus.CounterVec
	failed        *prometheus.CounterVec
	deadLettered  *prometheus.CounterVec
	pullErrors    *prometheus.CounterVec
	inRetry       *prometheus.GaugeVec
	lastApplied   *prometheus.GaugeVec
	pending       *prometheus.GaugeVec
	ackPending    *prometheus.GaugeVec
	redriven      *prometheus.CounterVec
	redriveFailed *prometheus.CounterVec
}

// NewConsumerMetrics registers the consumer metrics on reg.
func NewConsumerMetrics(reg prometheus.Registerer) (*ConsumerMetrics, error) {
	m := newConsumerMetrics()
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register consumer metrics: %w", err)
		}
	}
	return m, nil
}

func newConsumerMetrics() *ConsumerMetrics {
	consumer := []string{"consumer"}
	return &ConsumerMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_handled_total", Help: "Events handled and acknowledged.",
		}, consumer),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_failed_total",
			Help: "Handler failures, by kind: transient (infrastructure; the event is kept and retried) or poison (the event's own; redelivered, then dead-lettered).",
		}, []string{"consumer", "kind"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_dead_lettered_total", Help: "Events moved to the dead-letter stream.",
		}, consumer),
		pullErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_pull_errors_total",
			Help: "Failures to create the consumer or pull from it (missed heartbeats, lost connections); the pull is set up again.",
		}, consumer),
		inRetry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_consumer_events_in_transient_retry",
			Help: "Events held by this process and retried because of a transient failure (Redis or NATS unavailable).",
		}, consumer),
		lastApplied: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_consumer_last_applied_timestamp_seconds",
			Help: "Unix time of the last event this process applied; time() minus it is the seconds since.",
		}, consumer),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_consumer_pending_events",
			Help: "Events of the stream not yet delivered to the consumer (its lag), read periodically.",
		}, []string{"consumer", "stream"}),
		ackPending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tidings_consumer_ack_pending_events",
			Help: "Events delivered to the consumer and not yet acknowledged, read periodically.",
		}, []string{"consumer", "stream"}),
		redriven: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_deadletters_redriven_total",
			Help: "Dead letters applied again by a re-drive and removed from the dead-letter stream.",
		}, consumer),
		redriveFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_deadletters_redrive_failed_total",
			Help: "Dead letters whose re-drive failed again on their content; they stay in the dead-letter stream.",
		}, consumer),
	}
}

func (m *ConsumerMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.handled, m.failed, m.deadLettered, m.pullErrors, m.inRetry,
		m.lastApplied, m.pending, m.ackPending, m.redriven, m.redriveFailed}
}

// Dead-letter headers describe where a dead event came from.
const (
	HeaderDeadStream     = "Tidings-Dead-Stream"
	HeaderDeadConsumer   = "Tidings-Dead-Consumer"
	HeaderDeadSubject    = "Tidings-Dead-Subject"
	HeaderDeadSequence   = "Tidings-Dead-Sequence"
	HeaderDeadError      = "Tidings-Dead-Error"
	HeaderDeadDeliveries = "Tidings-Dead-Deliveries"
)

// Consume runs a durable pull consumer until ctx ends, handing each event to
// h with up to spec.Workers in flight, acknowledging it after h succeeds.
// Failures to reach NATS (at start or while pulling, such as missed
// heartbeats) are logged and the pull is set up again with back-off; only
// the end of ctx stops it. When ctx ends it stops pulling, lets handlers
// in flight finish and returns nil.
func (l *Log) Consume(ctx context.Context, spec ConsumerSpec, h Handler, metrics *ConsumerMetrics, log *slog.Logger) error {
	spec.Batch = 1
	return l.ConsumeBatches(ctx, spec, OneAtATime(h), metrics, log)
}

// OneAtATime makes a BatchHandler of a Handler, which it calls for each
// event of a batch in turn.
func OneAtATime(h Handler) BatchHandler {
	return func(ctx context.Context, ds []Delivery) []error {
		var errs []error
		for i, d := range ds {
			if err := h(ctx, d); err != nil {
				if errs == nil {
					errs = make([]error, len(ds))
				}
				errs[i] = err
			}
		}
		return errs
	}
}

// ConsumeBatches is Consume for a BatchHandler: each of spec.Workers takes
// an event, and with it whatever more has arrived, up to spec.Batch, and
// acknowledges each event after h reports it done.
//
// How failures are settled:
//
//   - Transient failures (pkg/faults) never count toward MaxDeliver and
//     never dead-letter. The worker keeps the failed events and retries them
//     in place with capped exponential back-off (RetryMin to RetryMax,
//     jittered) for as long as the failure lasts, telling JetStream every
//     third of AckWait that they are in progress so that they are neither
//     redelivered nor counted again. When every worker of the consumer is
//     holding such events, the consumer also stops pulling, so that no
//     more events wait in the client's buffer while the infrastructure is
//     down (those that were buffered go back to JetStream after AckWait and
//     come again, once); it pulls again as soon as one retry succeeds. A
//     gauge counts the events held, and one log line a minute says the
//     outage goes on.
//   - Other failures (the event's own: it cannot be decoded, the handler
//     panicked) are redelivered after Backoff, and on the MaxDeliver-th
//     delivery the event goes to DEADLETTER with the reason in its
//     headers. The server-side MaxDeliver is unlimited, so that JetStream
//     never drops an event on its own: the consumer alone decides, and only
//     on a failure of this kind.
func (l *Log) ConsumeBatches(ctx context.Context, spec ConsumerSpec, h BatchHandler, metrics *ConsumerMetrics, log *slog.Logger) error {
	newConsumer(l, spec.withDefaults(), h, metrics, log).run(ctx)
	return nil
}

// collect adds to batch what has already arrived on msgs, up to limit
// events in all, without waiting for more.
func collect[T any](batch []T, msgs <-chan T, limit int) []T {
	for len(batch) < limit {
		select {
		case m, ok := <-msgs:
			if !ok {
				return batch
			}
			batch = append(batch, m)
		default:
			return batch
		}
	}
	return batch
}
