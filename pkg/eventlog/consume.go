package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
// or after a newer one. An error makes the event be delivered again later,
// until the consumer's MaxDeliver is reached; then it goes to the
// dead-letter stream.
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
	// MaxDeliver bounds deliveries of one event.
	MaxDeliver int
	// Backoff is the delay before each redelivery after a failure.
	Backoff []time.Duration
	// MaxAckPending bounds events in flight across all replicas.
	MaxAckPending int
	// Workers is how many handlers of this replica run at once.
	Workers int
	// Batch is the most events one call of a BatchHandler takes: a handler
	// takes what has arrived, up to Batch, without waiting for more.
	// Zero or one hands events over one at a time.
	Batch int
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
	if s.MaxAckPending == 0 {
		s.MaxAckPending = 1024
	}
	if s.Workers == 0 {
		s.Workers = 4
	}
	s.Batch = max(s.Batch, 1)
	return s
}

// ConsumerMetrics count what consumers do.
type ConsumerMetrics struct {
	handled      *prometheus.CounterVec
	failed       *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
}

// NewConsumerMetrics registers the consumer metrics on reg.
func NewConsumerMetrics(reg prometheus.Registerer) (*ConsumerMetrics, error) {
	m := &ConsumerMetrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_handled_total", Help: "Events handled and acknowledged.",
		}, []string{"consumer"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_failed_total", Help: "Handler failures (the event is retried).",
		}, []string{"consumer"}),
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_consumer_events_dead_lettered_total", Help: "Events moved to the dead-letter stream.",
		}, []string{"consumer"}),
	}
	for _, c := range []prometheus.Collector{m.handled, m.failed, m.deadLettered} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register consumer metrics: %w", err)
		}
	}
	return m, nil
}

// Dead-letter headers describe where a dead event came from.
const (
	HeaderDeadStream   = "Tidings-Dead-Stream"
	HeaderDeadConsumer = "Tidings-Dead-Consumer"
	HeaderDeadSubject  = "Tidings-Dead-Subject"
	HeaderDeadSequence = "Tidings-Dead-Sequence"
	HeaderDeadError    = "Tidings-Dead-Error"
)

// Consume runs a durable pull consumer until ctx ends, handing each event to
// h with up to spec.Workers in flight, acknowledging it after h succeeds.
// When ctx ends it stops pulling, lets handlers in flight finish and
// returns nil.
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
func (l *Log) ConsumeBatches(ctx context.Context, spec ConsumerSpec, h BatchHandler, metrics *ConsumerMetrics, log *slog.Logger) error {
	spec = spec.withDefaults()
	cons, err := l.js.CreateOrUpdateConsumer(ctx, spec.Stream, jetstream.ConsumerConfig{
		Durable:        spec.Durable,
		FilterSubjects: spec.FilterSubjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        spec.AckWait,
		MaxDeliver:     spec.MaxDeliver,
		MaxAckPending:  spec.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("create consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	iter, err := cons.Messages(jetstream.PullMaxMessages(2 * spec.Workers * spec.Batch))
	if err != nil {
		return fmt.Errorf("pull from %s: %w", spec.Durable, err)
	}
	msgs := make(chan jetstream.Msg, spec.Batch)
	var wg sync.WaitGroup
	handleCtx := context.WithoutCancel(ctx)
	for range spec.Workers {
		wg.Go(func() {
			batch := make([]jetstream.Msg, 0, spec.Batch)
			for m := range msgs {
				batch = collect(append(batch[:0], m), msgs, spec.Batch)
				l.handle(handleCtx, spec, batch, h, metrics, log)
			}
		})
	}
	stop := context.AfterFunc(ctx, iter.Drain)
	defer stop()
	var runErr error
	for {
		m, err := iter.Next()
		if err != nil {
			if !errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				runErr = fmt.Errorf("pull from %s: %w", spec.Durable, err)
			}
			break
		}
		msgs <- m
	}
	close(msgs)
	wg.Wait()
	iter.Stop()
	return runErr
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

// handle hands a batch to h and settles each event by its outcome.
func (l *Log) handle(ctx context.Context, spec ConsumerSpec, batch []jetstream.Msg, h BatchHandler, metrics *ConsumerMetrics, log *slog.Logger) {
	ds := make([]Delivery, 0, len(batch))
	ms := make([]jetstream.Msg, 0, len(batch))
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			log.Error("event without metadata; terminated", "consumer", spec.Durable, "subject", m.Subject(), "error", err)
			_ = m.Term()
			continue
		}
		ds = append(ds, Delivery{
			Subject:      m.Subject(),
			Data:         m.Data(),
			Sequence:     meta.Sequence.Stream,
			NumDelivered: meta.NumDelivered,
			Progress:     m.InProgress,
		})
		ms = append(ms, m)
	}
	if len(ds) == 0 {
		return
	}
	hctx, cancel := context.WithTimeout(ctx, spec.AckWait)
	errs := h(hctx, ds)
	cancel()
	if errs != nil && len(errs) != len(ds) {
		// A handler bug: retry the whole batch rather than guess.
		bad := fmt.Errorf("batch handler returned %d results for %d events", len(errs), len(ds))
		errs = make([]error, len(ds))
		for i := range errs {
			errs[i] = bad
		}
	}
	for i, m := range ms {
		var err error
		if errs != nil {
			err = errs[i]
		}
		l.settle(ctx, spec, m, ds[i], err, metrics, log)
	}
}

// settle acknowledges an event its handler applied; otherwise it asks for
// a redelivery after a back-off, or after the last delivery moves it to
// the dead-letter stream.
func (l *Log) settle(ctx context.Context, spec ConsumerSpec, m jetstream.Msg, d Delivery, err error, metrics *ConsumerMetrics, log *slog.Logger) {
	if err == nil {
		if ackErr := m.Ack(); ackErr != nil {
			log.Warn("ack failed; the event will be redelivered", "consumer", spec.Durable, "seq", d.Sequence, "error", ackErr)
		}
		metrics.handled.WithLabelValues(spec.Durable).Inc()
		return
	}
	metrics.failed.WithLabelValues(spec.Durable).Inc()
	if d.NumDelivered < uint64(spec.MaxDeliver) {
		delay := spec.Backoff[min(int(d.NumDelivered)-1, len(spec.Backoff)-1)]
		log.Warn("event failed; will retry", "consumer", spec.Durable, "seq", d.Sequence,
			"delivery", d.NumDelivered, "retry_in", delay, "error", err)
		_ = m.NakWithDelay(delay)
		return
	}
	if dlErr := l.deadLetter(ctx, spec, d, err); dlErr != nil {
		log.Error("dead-lettering failed; will retry", "consumer", spec.Durable, "seq", d.Sequence, "error", dlErr)
		_ = m.NakWithDelay(spec.Backoff[len(spec.Backoff)-1])
		return
	}
	metrics.deadLettered.WithLabelValues(spec.Durable).Inc()
	log.Error("event dead-lettered after its last delivery", "consumer", spec.Durable, "stream", spec.Stream,
		"subject", d.Subject, "seq", d.Sequence, "deliveries", d.NumDelivered, "error", err)
	_ = m.Term()
}

func (l *Log) deadLetter(ctx context.Context, spec ConsumerSpec, d Delivery, cause error) error {
	msg := &nats.Msg{
		Subject: SubjectDeadLetter + "." + spec.Stream + "." + spec.Durable,
		Data:    d.Data,
		Header:  nats.Header{},
	}
	msg.Header.Set(HeaderDeadStream, spec.Stream)
	msg.Header.Set(HeaderDeadConsumer, spec.Durable)
	msg.Header.Set(HeaderDeadSubject, d.Subject)
	msg.Header.Set(HeaderDeadSequence, strconv.FormatUint(d.Sequence, 10))
	msg.Header.Set(HeaderDeadError, cause.Error())
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := l.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID("dead:"+spec.Stream+":"+spec.Durable+":"+strconv.FormatUint(d.Sequence, 10)))
	if err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}
