package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidingshq/tidings/pkg/faults"
)

// attemptTimeout bounds one request to the JetStream API at start-up and
// in the consumer's pull loop. A request sent while a fresh cluster has no
// meta leader yet gets no answer at all; without a bound of its own it
// would wait for the caller's whole deadline.
const attemptTimeout = 5 * time.Second

// JetStream API error codes of a cluster that is still forming, or of a
// race between processes creating the same thing (nats-server's
// errors.json).
const (
	codeNoPeers            = 10005 // no suitable peers for placement (peers still joining)
	codeConsumerCreate     = 10012 // could not create consumer (during elections)
	codeConsumerNameExists = 10013
	codeStreamNameInUse    = 10058 // created concurrently with another configuration
	codeConsumerExists     = 10148
)

// retriableAtStart reports whether a start-up request that failed with err
// is worth trying again: the infrastructure is unavailable, the cluster is
// still forming, or another process is creating the same thing.
func retriableAtStart(err error) bool {
	if faults.IsTransient(err) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeNoPeers, codeConsumerCreate, codeConsumerNameExists, codeStreamNameInUse, codeConsumerExists:
			return true
		}
	}
	return false
}

// RetryStartup runs attempt until it succeeds, fails with an error that is
// not worth retrying at start-up (see retriableAtStart), or ctx ends. Each
// attempt gets at most five seconds; attempts are spaced by a jittered
// back-off from 100ms to 2s, so that processes started together spread
// out. Stream, consumer and key-value bucket creation go through it, so
// that many processes starting at once on a fresh NATS cluster all come
// up. It returns the last attempt's error when ctx ends first.
func RetryStartup(ctx context.Context, attempt func(ctx context.Context) error) error {
	bo := newBackoff(100*time.Millisecond, 2*time.Second)
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := attempt(actx)
		cancel()
		if err == nil {
			return nil
		}
		if !retriableAtStart(err) {
			return err
		}
		if !bo.wait(ctx) {
			return fmt.Errorf("%w (gave up: %w)", err, context.Cause(ctx))
		}
	}
}

// EnsureConsumer creates the durable consumer of spec, or updates it to
// spec, retrying as RetryStartup does.
func (l *Log) EnsureConsumer(ctx context.Context, spec ConsumerSpec) (jetstream.Consumer, error) {
	c := &consumer{spec: spec.withDefaults()}
	var cons jetstream.Consumer
	err := RetryStartup(ctx, func(ctx context.Context) error {
		var err error
		cons, err = l.js.CreateOrUpdateConsumer(ctx, spec.Stream, c.config())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	return cons, nil
}

// EnsureKeyValue creates a key-value bucket, or updates it to cfg, in short
// attempts retried as RetryStartup does: many processes may open it at once
// on a cluster that is still forming.
func EnsureKeyValue(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := RetryStartup(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}
