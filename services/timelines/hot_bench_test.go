package timelines_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/live"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
	"github.com/tidingshq/tidings/services/timelines"
)

// BenchmarkHomeReadHotEntities reads a 50-item hydrated home page for a
// reader with a full pushed timeline who follows 0, 5 or 20 hot entities,
// each with a full feed: the price of pulling instead of pushing.
func BenchmarkHomeReadHotEntities(b *testing.B) {
	for _, n := range []int{0, 5, 20} {
		b.Run(fmt.Sprintf("hot=%d", n), func(b *testing.B) {
			s := stacktest.Start(b)
			ctx := context.Background()
			p := s.Components.Projector().Stores()
			s.Users(b, "reader", "author")
			gen := ids.NewGenerator()
			// A full home timeline of the author's posts, bodies included.
			var homeIDs []ids.ID
			for i := range 800 {
				a, err := s.Activities(b, testenv.Employee("author")).PostActivity(b.Context(), &tidingsv1.PostActivityRequest{ActorUserId: "author", Text: fmt.Sprintf("pushed %d", i)})
				require.NoError(b, err)
				id, err := ids.Parse(a.GetActivity().GetId())
				require.NoError(b, err)
				homeIDs = append(homeIDs, id)
			}
			_, err := p.Timelines.Insert(ctx, []string{timelinestore.HomeKey("reader")}, 800, homeIDs)
			require.NoError(b, err)
			// n hot entities the reader follows, each with 200 posts.
			hs := hot.New(s.Env.RDB, hot.Thresholds{On: 1, Off: 0})
			for h := range n {
				key := entity.UserKey(fmt.Sprintf("hot%02d", h))
				require.NoError(b, p.Graph.Apply(ctx, []graphstore.Change{{UserID: "reader", Entity: key, Following: true, Version: graphstore.Version(uint64(h+1), 0), CreateMs: 1}}))
				var feed []ids.ID
				for i := range 200 {
					id := gen.Next()
					feed = append(feed, id)
					_, err := p.Bodies.Put(ctx, 1, &tidingsv1.Activity{Id: id.String(), Verb: "posted",
						Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: "author"}, Text: fmt.Sprintf("hot %d", i)})
					require.NoError(b, err)
				}
				_, err := hs.Decide(ctx, key, feed[0], 2)
				require.NoError(b, err)
				_, err = p.Timelines.Insert(ctx, []string{timelinestore.FeedKey(key)}, 3000, feed)
				require.NoError(b, err)
			}
			srv := timelines.NewServer(timelines.Deps{Timelines: p.Timelines, Bodies: p.Bodies, Profiles: p.Profiles,
				Records: p.Records, Graph: p.Graph, Hot: hs, HomeCap: 800})
			rctx := auth.WithIdentity(ctx, testenv.Employee("reader"))
			req := &tidingsv1.GetHomeTimelineRequest{UserId: "reader", PageSize: 50}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := srv.GetHomeTimeline(rctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

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
