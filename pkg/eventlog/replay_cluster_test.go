package eventlog_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestReplayFromAnotherServer replays an R3 stream through a client
// connected to a server that does not lead it. Replays fetched through an
// ordered consumer, which makes a new consumer for every fetch; a fetch
// sent before the new consumer's interest crossed the routes found no
// responder, and RebuildProjections failed on a cluster with "replay
// ACTIVITIES: nats: no responders available for request" (the fault
// suite's flushall-rebuild, once the CROSSSLOT of finding 3 was gone).
func TestReplayFromAnotherServer(t *testing.T) {
	t.Parallel()
	cluster := testenv.NATSCluster(t)
	connect := func(url string) *eventlog.Log {
		nc, err := nats.Connect(url)
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		return eventlog.New(js)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	writer := connect(cluster.Servers[0].ClientURL())
	require.NoError(t, eventlog.EnsureStreams(ctx, writer.JetStream(), eventlog.StreamOptions{Replicas: 3, DuplicateWindow: time.Minute}))
	const events = 3000
	appends := make([]eventlog.Append, events)
	for i := range appends {
		id := fmt.Sprintf("r%05d", i)
		appends[i] = eventlog.Append{Subject: eventlog.ActivitySubject(id),
			Event: &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_DeletedId{DeletedId: id}}}
	}
	for lo := 0; lo < events; lo += 500 {
		_, err := writer.PublishAll(ctx, appends[lo:lo+500])
		require.NoError(t, err)
	}
	s, err := writer.JetStream().Stream(ctx, eventlog.StreamActivities)
	require.NoError(t, err)
	leader := s.CachedInfo().Cluster.Leader
	for _, srv := range cluster.Servers {
		if srv.Name() == leader {
			continue
		}
		n, err := connect(srv.ClientURL()).Replay(ctx, eventlog.StreamActivities, nil, func(context.Context, eventlog.Delivery) error { return nil })
		require.NoError(t, err, "replay through %s (leader %s)", srv.Name(), leader)
		require.EqualValues(t, events, n)
	}
}
