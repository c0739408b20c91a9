package eventlog

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Replay hands every event of stream (on filter, if not empty) to h in log
// order, from the first up to the last stored when Replay starts, and
// returns how many it handed over. Rebuilds use it. The ephemeral consumer
// it reads through is deleted when it returns, so that no consumer of a
// finished replay lingers (and shows lag) until the server expires it.
func (l *Log) Replay(ctx context.Context, stream string, filter []string, h Handler) (int64, error) {
	s, err := l.js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("open stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s info: %w", stream, err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return 0, nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: filter,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", stream, err)
	}
	defer l.deleteOrdered(context.WithoutCancel(ctx), stream, cons)
	var (
		n    int64
		idle bool
	)
	for {
		var batch jetstream.MessageBatch
		if idle {
			batch, err = cons.Fetch(256, jetstream.FetchMaxWait(100*time.Millisecond))
		} else {
			batch, err = cons.FetchNoWait(256)
		}
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		// Drain the whole batch even after the end is reached, so that no
		// fetch is left running.
		got, done := 0, false
		var herr error
		for m := range batch.Messages() {
			got++
			if done || herr != nil {
				continue
			}
			meta, err := m.Metadata()
			if err != nil {
				herr = err
				continue
			}
			seq := meta.Sequence.Stream
			if seq > last {
				done = true
				continue
			}
			if err := h(ctx, Delivery{Subject: m.Subject(), Data: m.Data(), Sequence: seq, NumDelivered: 1}); err != nil {
				herr = fmt.Errorf("seq %d: %w", seq, err)
				continue
			}
			n++
			done = seq == last
		}
		if herr != nil {
			return n, fmt.Errorf("replay %s: %w", stream, herr)
		}
		if err := batch.Error(); err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		if done {
			return n, nil
		}
		idle = got == 0
		if idle {
			// Nothing more on the filter (the last message may be on
			// another subject)?
			info, err := cons.Info(ctx)
			if err != nil {
				return n, fmt.Errorf("replay %s: %w", stream, err)
			}
			if info.NumPending == 0 {
				return n, nil
			}
		}
	}
}

// deleteOrdered deletes the server-side consumer an ordered consumer is
// reading through (it makes a new one, and deletes the old, whenever it
// resets).
func (l *Log) deleteOrdered(ctx context.Context, stream string, cons jetstream.Consumer) {
	info := cons.CachedInfo()
	if info == nil || info.Name == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	_ = l.js.DeleteConsumer(ctx, stream, info.Name)
}
