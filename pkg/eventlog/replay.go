package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidingshq/tidings/pkg/faults"
)

// replayFetch is how many events a replay reads from a stream at a time.
const replayFetch = 256

// ReplayBatch is the most events of one stream a replay hands over at once.
const ReplayBatch = 64

// Replay hands every event of stream (on filter, if not empty) to h in log
// order, from the first up to the last stored when Replay starts, and
// returns how many it handed over.
func (l *Log) Replay(ctx context.Context, stream string, filter []string, h Handler) (int64, error) {
	counts, err := l.ReplayMerged(ctx, []ReplaySource{{Stream: stream, Filter: filter}}, func(ctx context.Context, _ string, ds []Delivery) error {
		for _, d := range ds {
			if err := h(ctx, d); err != nil {
				return fmt.Errorf("seq %d: %w", d.Sequence, err)
			}
		}
		return nil
	})
	return counts[stream], err
}

// ReplaySource is one stream of a merged replay.
type ReplaySource struct {
	Stream string
	// Filter narrows the stream to subjects; empty for all.
	Filter []string
	// After, when set, starts the replay after this sequence (a replay
	// resumed from a checkpoint).
	After uint64
	// Through, when set, ends the replay at this sequence; otherwise it
	// ends at the last sequence stored when the replay starts.
	Through uint64
}

// ReplayMerged replays several streams as one log: every event of each
// source, from the first up to the last stored when the replay starts, in
// the order the events were stored (by their JetStream timestamps; ties in
// the order of sources). Consecutive events of one stream are handed to h
// together, up to ReplayBatch at a time. It returns how many events of
// each stream it handed over; an error from h ends the replay.
//
// Rebuilds use it so that a projection that reads two streams (home
// timelines follow the FOLLOWS and ACTIVITIES streams) sees their events
// interleaved as the live consumers saw them when they kept up.
func (l *Log) ReplayMerged(ctx context.Context, sources []ReplaySource, h func(ctx context.Context, stream string, ds []Delivery) error) (map[string]int64, error) {
	counts := make(map[string]int64, len(sources))
	cursors := make([]*replayCursor, 0, len(sources))
	defer func() {
		for _, c := range cursors {
			c.close(ctx)
		}
	}()
	for _, src := range sources {
		c, err := l.openReplay(ctx, src)
		if err != nil {
			return counts, err
		}
		if c != nil {
			cursors = append(cursors, c)
		}
	}
	var (
		batch  []Delivery
		stream string
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := h(ctx, stream, batch); err != nil {
			return fmt.Errorf("replay %s: %w", stream, err)
		}
		counts[stream] += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	for {
		// The cursor whose next event was stored first.
		var next *replayCursor
		for _, c := range cursors {
			d, ok, err := c.peek(ctx)
			if err != nil {
				return counts, err
			}
			if ok && (next == nil || d.time.Before(next.head.time)) {
				next = c
			}
		}
		if next == nil {
			return counts, flush()
		}
		if next.src.Stream != stream || len(batch) == ReplayBatch {
			if err := flush(); err != nil {
				return counts, err
			}
			stream = next.src.Stream
		}
		batch = append(batch, next.head.Delivery)
		next.pop()
	}
}

// timedDelivery is a replayed event and when it was stored.
type timedDelivery struct {
	Delivery
	time time.Time
}

// replayCursor reads one stream of a replay through an ephemeral pull
// consumer of its own, up to the last sequence stored when it opened.
//
// Not an ordered consumer: one used with Fetch makes a new consumer for
// every fetch, and a pull sent right after a consumer is made can find no
// responder when the client is connected to another server of a cluster
// than the consumer (its interest has not crossed the routes yet), which
// failed rebuilds on R3 streams with "no responders". This cursor makes
// one consumer, retries a pull that meets a transient failure, and checks
// that the consumer's sequence has no gap (events are not acknowledged, so
// one lost on the way would otherwise go unnoticed).
type replayCursor struct {
	src     ReplaySource
	stream  jetstream.Stream
	cons    jetstream.Consumer
	last    uint64
	cseq    uint64 // the consumer sequence of the last event read
	pending []timedDelivery
	head    timedDelivery
	hasHead bool
	done    bool
	idle    bool
}

// openReplay opens a cursor on a source, or returns nil when its stream is
// empty.
func (l *Log) openReplay(ctx context.Context, src ReplaySource) (*replayCursor, error) {
	s, err := l.js.Stream(ctx, src.Stream)
	if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", src.Stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s info: %w", src.Stream, err)
	}
	last := info.State.LastSeq
	if src.Through > 0 {
		last = min(last, src.Through)
	}
	if info.State.Msgs == 0 || src.After >= last {
		return nil, nil
	}
	cfg := jetstream.ConsumerConfig{
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckNonePolicy,
		FilterSubjects: src.Filter,
		// Deleted when the replay ends; this is for a replay whose process
		// died.
		InactiveThreshold: 5 * time.Minute,
		Replicas:          1,
		MemoryStorage:     true,
	}
	if src.After > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, src.After+1
	}
	cons, err := s.CreateConsumer(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", src.Stream, err)
	}
	return &replayCursor{src: src, stream: s, cons: cons, last: last}, nil
}

// peek returns the cursor's next event without taking it; ok is false at
// the end.
func (c *replayCursor) peek(ctx context.Context) (timedDelivery, bool, error) {
	for !c.hasHead {
		if len(c.pending) > 0 {
			c.head, c.pending, c.hasHead = c.pending[0], c.pending[1:], true
			break
		}
		if c.done {
			return timedDelivery{}, false, nil
		}
		if err := c.fetch(ctx); err != nil {
			return timedDelivery{}, false, fmt.Errorf("replay %s: %w", c.src.Stream, err)
		}
	}
	return c.head, true, nil
}

func (c *replayCursor) pop() { c.hasHead = false }

// fetch reads the next events of the stream into pending, and notes when
// the last one of the replay was read. A pull that meets a transient
// failure (no responder yet, a timeout) is tried again, a few times.
func (c *replayCursor) fetch(ctx context.Context) error {
	bo := newBackoff(20*time.Millisecond, time.Second)
	for attempt := 1; ; attempt++ {
		got, err := c.fetchOnce()
		if err != nil && (!faults.IsTransient(err) || attempt == 8) {
			return err
		}
		if err == nil || got > 0 {
			// What a failed pull brought is kept; the next pull goes on
			// from there (the consumer's sequence shows any gap).
			c.idle = got == 0
			break
		}
		if !bo.wait(ctx) {
			return fmt.Errorf("%w (retrying: %w)", ctx.Err(), err)
		}
	}
	if c.idle && !c.done {
		// Nothing more on the filter (the last message may be on another
		// subject)?
		info, err := c.cons.Info(ctx)
		if err != nil {
			return err
		}
		c.done = info.NumPending == 0
	}
	return nil
}

// fetchOnce sends one pull and reads what it brings into pending.
func (c *replayCursor) fetchOnce() (int, error) {
	var (
		batch jetstream.MessageBatch
		err   error
	)
	if c.idle {
		batch, err = c.cons.Fetch(replayFetch, jetstream.FetchMaxWait(100*time.Millisecond))
	} else {
		batch, err = c.cons.FetchNoWait(replayFetch)
	}
	if err != nil {
		return 0, err
	}
	// Drain the whole batch even past the end, so that no fetch is left
	// running.
	got := 0
	var merr error
	for m := range batch.Messages() {
		got++
		if c.done || merr != nil {
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			merr = err
			continue
		}
		if meta.Sequence.Consumer != c.cseq+1 {
			merr = fmt.Errorf("events missing between consumer sequences %d and %d", c.cseq, meta.Sequence.Consumer)
			continue
		}
		c.cseq = meta.Sequence.Consumer
		seq := meta.Sequence.Stream
		if seq > c.last {
			c.done = true
			continue
		}
		c.pending = append(c.pending, timedDelivery{
			Delivery: Delivery{Subject: m.Subject(), Data: m.Data(), Sequence: seq, NumDelivered: 1},
			time:     meta.Timestamp,
		})
		c.done = seq == c.last
	}
	if merr != nil {
		return got, merr
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
		return got, err
	}
	return got, nil
}

// close deletes the cursor's consumer, so that no replay consumer is left
// behind in the stream's status.
func (c *replayCursor) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if info := c.cons.CachedInfo(); info != nil {
		_ = c.stream.DeleteConsumer(ctx, info.Name)
	}
}
