package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/faults"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// DeadLetterSubject is the subject of the dead letters of one consumer.
func DeadLetterSubject(stream, consumer string) string {
	return SubjectDeadLetter + "." + stream + "." + consumer
}

// deadLetter copies an event that exhausted its deliveries to the
// dead-letter stream, with where it came from and why it failed in the
// headers.
func (l *Log) deadLetter(ctx context.Context, spec ConsumerSpec, m jetstream.Msg, d Delivery, cause error) error {
	msg := &nats.Msg{
		Subject: DeadLetterSubject(spec.Stream, spec.Durable),
		Data:    d.Data,
		Header:  nats.Header{},
	}
	if m != nil {
		if typ := m.Headers().Get(HeaderEventType); typ != "" {
			msg.Header.Set(HeaderEventType, typ)
		}
	}
	msg.Header.Set(HeaderDeadStream, spec.Stream)
	msg.Header.Set(HeaderDeadConsumer, spec.Durable)
	msg.Header.Set(HeaderDeadSubject, d.Subject)
	msg.Header.Set(HeaderDeadSequence, strconv.FormatUint(d.Sequence, 10))
	msg.Header.Set(HeaderDeadError, cause.Error())
	msg.Header.Set(HeaderDeadDeliveries, strconv.FormatUint(d.NumDelivered, 10))
	// Dead-letter even while the consumer stops.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := l.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID("dead:"+spec.Stream+":"+spec.Durable+":"+strconv.FormatUint(d.Sequence, 10)))
	if err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}

// DeadLetterFilter picks dead letters: by the stream and durable consumer
// they come from (empty for any), and, when Sequences is not empty, only
// those DEADLETTER sequences.
type DeadLetterFilter struct {
	Stream    string
	Consumer  string
	Sequences []uint64
}

func (f DeadLetterFilter) subject() string {
	stream, consumer := f.Stream, f.Consumer
	if stream == "" {
		stream = "*"
	}
	if consumer == "" {
		consumer = "*"
	}
	return DeadLetterSubject(stream, consumer)
}

// matches reports whether a dead letter of stream and consumer passes the
// stream and consumer of the filter.
func (f DeadLetterFilter) matches(stream, consumer string) bool {
	return (f.Stream == "" || f.Stream == stream) && (f.Consumer == "" || f.Consumer == consumer)
}

// DeadLetter is one message of the DEADLETTER stream.
type DeadLetter struct {
	// Seq is its sequence in DEADLETTER.
	Seq uint64
	// Stream, Consumer, Subject and Sequence say where the event came
	// from: its stream, the consumer that failed it, its subject and its
	// sequence in its stream.
	Stream   string
	Consumer string
	Subject  string
	Sequence uint64
	// Error is why its last delivery failed.
	Error string
	// Time is when it was dead-lettered.
	Time time.Time
	// Deliveries counts its deliveries (0 when not recorded).
	Deliveries uint64
	// EventType is the protobuf type of the event, if recorded.
	EventType string
	// Data is the copy of the event.
	Data []byte
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	seq, _ := strconv.ParseUint(h.Get(HeaderDeadSequence), 10, 64)
	deliveries, _ := strconv.ParseUint(h.Get(HeaderDeadDeliveries), 10, 64)
	return DeadLetter{
		Seq:        m.Sequence,
		Stream:     h.Get(HeaderDeadStream),
		Consumer:   h.Get(HeaderDeadConsumer),
		Subject:    h.Get(HeaderDeadSubject),
		Sequence:   seq,
		Error:      h.Get(HeaderDeadError),
		Time:       m.Time,
		Deliveries: deliveries,
		EventType:  h.Get(HeaderEventType),
		Data:       m.Data,
	}
}

// ListDeadLetters returns up to limit dead letters that f picks, from
// DEADLETTER sequence from on, oldest first, and the sequence the next
// page starts at (0 when there is no more).
func (l *Log) ListDeadLetters(ctx context.Context, f DeadLetterFilter, from uint64, limit int) ([]DeadLetter, uint64, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return nil, 0, fmt.Errorf("open stream %s: %w", StreamDeadLetter, err)
	}
	from = max(from, 1)
	var out []DeadLetter
	if len(f.Sequences) > 0 {
		seqs := slices.Clone(f.Sequences)
		slices.Sort(seqs)
		seqs = slices.Compact(seqs)
		for _, seq := range seqs {
			if seq < from {
				continue
			}
			if len(out) == limit {
				return out, seq, nil
			}
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return nil, 0, fmt.Errorf("read dead letter %d: %w", seq, err)
			}
			dl := deadLetterOf(m)
			if f.matches(dl.Stream, dl.Consumer) {
				out = append(out, dl)
			}
		}
		return out, 0, nil
	}
	subject := f.subject()
	for seq := from; ; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, 0, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("read dead letters from %d: %w", seq, err)
		}
		if len(out) == limit {
			return out, m.Sequence, nil
		}
		out = append(out, deadLetterOf(m))
		seq = m.Sequence + 1
	}
}

// RequestRedrive stores a request to re-drive the dead letters f picks, up
// to the last one now in DEADLETTER, for a worker to carry out (see
// ConsumeRedrives). It returns how many dead letters match and the last
// DEADLETTER sequence the request covers.
func (l *Log) RequestRedrive(ctx context.Context, f DeadLetterFilter, by *tidingsv1.Caller) (matched int64, through uint64, err error) {
	bctx, cancel := bounded(ctx)
	defer cancel()
	s, err := l.js.Stream(bctx, StreamDeadLetter)
	if err != nil {
		return 0, 0, fmt.Errorf("open stream %s: %w", StreamDeadLetter, err)
	}
	info, err := s.Info(bctx, jetstream.WithSubjectFilter(f.subject()))
	if err != nil {
		return 0, 0, fmt.Errorf("count dead letters: %w", err)
	}
	through = info.State.LastSeq
	if len(f.Sequences) > 0 {
		dls, _, err := l.ListDeadLetters(ctx, f, 1, len(f.Sequences))
		if err != nil {
			return 0, 0, err
		}
		matched = int64(len(dls))
	} else {
		for _, n := range info.State.Subjects {
			matched += int64(n)
		}
	}
	if matched == 0 {
		return 0, through, nil
	}
	_, err = l.Publish(ctx, Append{
		Subject: SubjectRedrive + ".request",
		Event: &tidingsv1.DeadLetterReplay{
			Stream: f.Stream, Consumer: f.Consumer, Sequences: f.Sequences,
			ThroughSequence: through, RequestedBy: by,
		},
	})
	if err != nil {
		return 0, 0, fmt.Errorf("request re-drive: %w", err)
	}
	return matched, through, nil
}

// RedriveConsumer is the durable consumer of re-drive requests.
var RedriveConsumer = ConsumerSpec{Stream: StreamRedrive, Durable: "deadletter-redrive", Workers: 1, AckWait: 2 * time.Minute}

// ConsumeRedrives runs the consumer of re-drive requests until ctx ends:
// for each request, every dead letter it picks is applied again with
// handlers[its consumer] (the handler the consumer that dead-lettered it
// uses), at its original stream sequence, with the event read from its
// original stream (streams keep their events, limits retention) or, when
// the stream no longer holds it, from the dead letter's copy. A dead
// letter applied is removed from DEADLETTER; one that fails again on its
// content stays (logged and counted); a transient failure holds the
// request and retries it, as any consumer does, resuming where it was.
func (l *Log) ConsumeRedrives(ctx context.Context, handlers map[string]BatchHandler, metrics *ConsumerMetrics, log *slog.Logger) error {
	if metrics == nil {
		metrics = newConsumerMetrics()
	}
	r := &redriver{l: l, handlers: handlers, metrics: metrics, log: log, resume: map[uint64]uint64{}}
	return l.Consume(ctx, RedriveConsumer, r.handle, metrics, log)
}

type redriver struct {
	l        *Log
	handlers map[string]BatchHandler
	metrics  *ConsumerMetrics
	log      *slog.Logger

	mu sync.Mutex
	// resume is where each request in progress goes on after a transient
	// failure, by the request's sequence.
	resume map[uint64]uint64
}

func (r *redriver) handle(ctx context.Context, d Delivery) error {
	req := &tidingsv1.DeadLetterReplay{}
	if err := proto.Unmarshal(d.Data, req); err != nil {
		return fmt.Errorf("decode re-drive request: %w", err)
	}
	f := DeadLetterFilter{Stream: req.GetStream(), Consumer: req.GetConsumer(), Sequences: req.GetSequences()}
	r.mu.Lock()
	from := r.resume[d.Sequence]
	r.mu.Unlock()
	var applied, failed int
	for {
		page, next, err := r.l.ListDeadLetters(ctx, f, from, 100)
		if err != nil {
			return err
		}
		for _, dl := range page {
			if dl.Seq > req.GetThroughSequence() {
				next = 0
				break
			}
			ok, err := r.redriveOne(ctx, dl)
			if err != nil {
				return err
			}
			if ok {
				applied++
			} else {
				failed++
			}
			r.mu.Lock()
			r.resume[d.Sequence] = dl.Seq + 1
			r.mu.Unlock()
		}
		if d.Progress != nil {
			_ = d.Progress()
		}
		if next == 0 {
			break
		}
		from = next
	}
	r.mu.Lock()
	delete(r.resume, d.Sequence)
	r.mu.Unlock()
	r.log.Info("dead letters re-driven", "stream", f.Stream, "consumer", f.Consumer, "applied", applied, "failed_again", failed,
		"requested_by", req.GetRequestedBy().GetId())
	return nil
}

// redriveOne applies one dead letter again and removes it. It reports
// whether it was applied; an error is transient (the request is retried).
func (r *redriver) redriveOne(ctx context.Context, dl DeadLetter) (bool, error) {
	h, ok := r.handlers[dl.Consumer]
	if !ok {
		r.metrics.redriveFailed.WithLabelValues(dl.Consumer).Inc()
		r.log.Warn("dead letter of a consumer this worker does not run; left", "seq", dl.Seq, "consumer", dl.Consumer)
		return false, nil
	}
	data := dl.Data
	orig, err := r.l.rawMessageAt(ctx, dl.Stream, dl.Sequence)
	switch {
	case err == nil && orig.Subject == dl.Subject:
		data = orig.Data
	case err != nil && faults.IsTransient(err):
		return false, err
	}
	if err := applyOne(ctx, h, Delivery{Subject: dl.Subject, Data: data, Sequence: dl.Sequence, NumDelivered: 1}); err != nil {
		if faults.IsTransient(err) {
			return false, err
		}
		r.metrics.redriveFailed.WithLabelValues(dl.Consumer).Inc()
		r.log.Warn("re-driven dead letter failed again; it stays", "seq", dl.Seq, "stream", dl.Stream,
			"consumer", dl.Consumer, "subject", dl.Subject, "stream_seq", dl.Sequence, "error", err)
		return false, nil
	}
	bctx, cancel := bounded(ctx)
	defer cancel()
	if err := r.l.deleteDeadLetter(bctx, dl.Seq); err != nil {
		return false, err
	}
	r.metrics.redriven.WithLabelValues(dl.Consumer).Inc()
	return true, nil
}

// applyOne hands one delivery to a batch handler; a panic is an error.
func applyOne(ctx context.Context, h BatchHandler, d Delivery) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	errs := h(ctx, []Delivery{d})
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// rawMessageAt returns the message at sequence seq of stream.
func (l *Log) rawMessageAt(ctx context.Context, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("read %s seq %d: %w", stream, seq, err)
	}
	return m, nil
}

// deleteDeadLetter removes a dead letter; one already gone is no error.
func (l *Log) deleteDeadLetter(ctx context.Context, seq uint64) error {
	s, err := l.js.Stream(ctx, StreamDeadLetter)
	if err != nil {
		return fmt.Errorf("open stream %s: %w", StreamDeadLetter, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove dead letter %d: %w", seq, err)
	}
	return nil
}
