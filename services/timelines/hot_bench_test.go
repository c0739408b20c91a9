package timelines_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/testenv"
)

// BenchmarkWatchFanout sends one live notice to each of 5,000 watchers in
// one process and waits until every watcher has it: the per-notice cost of
// the hub (NATS delivery and the hand-off to each watcher's buffer).
func BenchmarkWatchFanout(b *testing.B) {
	const watchers = 5000
	env := testenv.New(b)
	hub := live.NewHub(env.NC)
	pub := live.NewPublisher(env.NC)
	users := make([]string, watchers)
	ws := make([]*live.Watcher, watchers)
	for i := range watchers {
		users[i] = fmt.Sprintf("w%04d", i)
		w, err := hub.Watch(users[i], nil, 64)
		require.NoError(b, err)
		ws[i] = w
	}
	defer func() {
		for _, w := range ws {
			w.Close()
		}
	}()
	gen := ids.NewGenerator()
	b.ReportAllocs()
	for b.Loop() {
		id := gen.Next()
		var wg sync.WaitGroup
		for _, w := range ws {
			wg.Go(func() {
				select {
				case <-w.C():
				case <-time.After(10 * time.Second):
					b.Error("a watcher got nothing")
				}
			})
		}
		require.NoError(b, pub.Notify(users, id))
		wg.Wait()
	}
	b.ReportMetric(float64(watchers), "watchers")
}
