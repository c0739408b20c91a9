package eventlog

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterSubject is the subject of the dead letters of one consumer.
func DeadLetterSubject(stream, consumer string) string {
	return SubjectDeadLetter + "." + stream + "." + consumer
}

// deadLetter copies an event that exhausted its deliveries to the
// dead-letter stream, with where it came from and why it failed in the
// headers.
func (l *Log) deadLetter(spec ConsumerSpec, m jetstream.Msg, d Delivery, cause error) error {
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
	pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := l.js.PublishMsg(pctx, msg,
		jetstream.WithMsgID("dead:"+spec.Stream+":"+spec.Durable+":"+strconv.FormatUint(d.Sequence, 10)))
	if err != nil {
		return fmt.Errorf("publish dead letter: %w", err)
	}
	return nil
}
