package live_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		require.True(t, ok, "closed")
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("nothing received")
	}
	var zero T
	return zero
}

// TestWatcherFollowsChanges: a watcher receives items (several in one
// notice too), hot switches and changes of sources, and the posts of the
// entities it listens to from when Listen returns until Unlisten.
func TestWatcherFollowsChanges(t *testing.T) {
	t.Parallel()
	nc := testenv.NATS(t)
	conn, err := nats.Connect(nc.ClientURL())
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	hub, pub := live.NewHub(conn), live.NewPublisher(conn)
	w, err := hub.Watch("ana", nil, 16)
	require.NoError(t, err)
	defer w.Close()
	require.Equal(t, 2, hub.Watching(), "the user's subject and the switches")
	g := ids.NewGenerator()
	a, b, c := g.Next(), g.Next(), g.Next()

	require.NoError(t, pub.NotifyItems("ana", []ids.ID{a, b}))
	require.Equal(t, a, receive(t, w.C()))
	require.Equal(t, b, receive(t, w.C()))

	require.NoError(t, pub.NotifySwitch("u:star", c))
	require.Equal(t, live.Change{Entity: "u:star", From: c}, receive(t, w.Changes()))
	require.NoError(t, pub.NotifySources("ana", "r:crm.deal:d1"))
	require.Equal(t, live.Change{Entity: "r:crm.deal:d1"}, receive(t, w.Changes()))

	require.NoError(t, w.Listen("u:star"))
	require.NoError(t, w.Listen("u:star"), "twice is once")
	require.Equal(t, 3, hub.Watching())
	require.NoError(t, pub.NotifyEntity("u:star", c))
	require.Equal(t, c, receive(t, w.C()))
	w.Unlisten("u:star")
	require.Equal(t, 2, hub.Watching(), "the last listener gone, the subscription goes")

	w.Close()
	_, ok := <-w.Changes()
	require.False(t, ok, "closing closes both channels")
	require.Equal(t, 0, hub.Watching())
	require.ErrorIs(t, w.Listen("u:star"), live.ErrClosed)
}

// TestFullChangeBufferCutsOff: a watcher that does not take its changes is
// cut off like one that does not take its items.
func TestFullChangeBufferCutsOff(t *testing.T) {
	t.Parallel()
	nc := testenv.NATS(t)
	conn, err := nats.Connect(nc.ClientURL())
	require.NoError(t, err)
	t.Cleanup(conn.Close)
	hub, pub := live.NewHub(conn), live.NewPublisher(conn)
	w, err := hub.Watch("bo", nil, 2)
	require.NoError(t, err)
	for range 3 {
		require.NoError(t, pub.NotifySources("bo", "u:ana"))
	}
	testenv.Eventually(t, 10*time.Second, w.Overflowed, "not cut off")
	for range w.Changes() {
	}
	_, ok := <-w.C()
	require.False(t, ok)
}
