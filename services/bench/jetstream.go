package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/projection"
)

// PublishCeiling is JetStream's own rate for events like the posts', on the
// target's server, measured in the same run as the posting rate it is
// compared with: asynchronous publishes with acknowledgements (many in
// flight, as a batching publisher would keep them) of messages as large as
// the stored activity events, each on a subject of its own with a message
// id and an expected subject sequence of 0, as posts are, into a scratch
// stream with the same storage; the server's fsync setting is the one the
// posts met.
type PublishCeiling struct {
	PerSec     float64 `json:"publish_async_per_sec"`
	EventBytes int     `json:"event_bytes"`
	Messages   int     `json:"messages"`
	InFlight   int     `json:"max_in_flight"`
}

// The publish ceiling's shape.
const (
	publishStream   = "BENCH_PUBLISH"
	publishSubject  = "bench.publish."
	publishInFlight = 4096
)

// jsClient is the bench's own connection to the target's NATS: to stop and
// start the fan-out consumer and to measure the publish ceiling.
type jsClient struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func dialJetStream(url string) (*jsClient, error) {
	nc, err := nats.Connect(url, nats.Name("tidings-bench"))
	if err != nil {
		return nil, fmt.Errorf("connect to nats %s: %w", url, err)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(publishInFlight))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &jsClient{nc: nc, js: js}, nil
}

func (j *jsClient) close() { j.nc.Close() }

// pauseFanout stops the fan-out consumer: the server hands its pulls no
// events until resumeFanout (or an hour, should the bench die meanwhile).
func (j *jsClient) pauseFanout(ctx context.Context) error {
	c := projection.ActivitiesConsumer
	if _, err := j.js.PauseConsumer(ctx, c.Stream, c.Durable, time.Now().Add(time.Hour)); err != nil {
		return fmt.Errorf("pause consumer %s: %w", c.Durable, err)
	}
	return nil
}

func (j *jsClient) resumeFanout(ctx context.Context) error {
	c := projection.ActivitiesConsumer
	if _, err := j.js.ResumeConsumer(ctx, c.Stream, c.Durable); err != nil {
		return fmt.Errorf("resume consumer %s: %w", c.Durable, err)
	}
	return nil
}

// eventSize is the size of the last stored activity event, headers
// included.
func (j *jsClient) eventSize(ctx context.Context) (int, error) {
	s, err := j.js.Stream(ctx, eventlog.StreamActivities)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", eventlog.StreamActivities, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, "tidings.activities.>")
	if err != nil {
		return 0, fmt.Errorf("last activity event: %w", err)
	}
	size := len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			size += len(k) + len(v) + 4
		}
	}
	return size, nil
}

// publishCeiling publishes n messages of size bytes asynchronously into a
// scratch stream and returns the rate of acknowledged publishes.
func (j *jsClient) publishCeiling(ctx context.Context, n, size int) (PublishCeiling, error) {
	pc := PublishCeiling{EventBytes: size, Messages: n, InFlight: publishInFlight}
	s, err := j.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: publishStream, Subjects: []string{publishSubject + ">"}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return pc, fmt.Errorf("create %s: %w", publishStream, err)
	}
	defer func() { _ = j.js.DeleteStream(context.WithoutCancel(ctx), s.CachedInfo().Config.Name) }()
	payload := make([]byte, max(1, size-80)) // the headers below take about 80 bytes
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	futures := make([]jetstream.PubAckFuture, 0, n)
	start := time.Now()
	for i := range n {
		id := strconv.Itoa(i)
		m := nats.NewMsg(publishSubject + id)
		m.Data = payload
		f, err := j.js.PublishMsgAsync(m, jetstream.WithMsgID("bench-"+id), jetstream.WithExpectLastSequencePerSubject(0), jetstream.WithStallWait(time.Minute))
		if err != nil {
			return pc, fmt.Errorf("publish: %w", err)
		}
		futures = append(futures, f)
	}
	select {
	case <-j.js.PublishAsyncComplete():
	case <-ctx.Done():
		return pc, ctx.Err()
	case <-time.After(2 * time.Minute):
		return pc, errors.New("publish ceiling: acks not complete after 2 minutes")
	}
	pc.PerSec = float64(n) / time.Since(start).Seconds()
	for _, f := range futures {
		select {
		case err := <-f.Err():
			return pc, fmt.Errorf("publish ceiling: a publish failed: %w", err)
		default:
		}
	}
	return pc, nil
}
