package projection_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const benchFollowers = 10_000

// benchFanout returns a fan-out over real Redis and JetStream, with
// benchFollowers users following "star".
func benchFanout(b *testing.B) (*projection.Projector, *testenv.Env) {
	env := testenv.New(b)
	g := graphstore.New(env.RDB, redisx.NewKeyspace(0))
	changes := make([]graphstore.Change, benchFollowers)
	for i := range changes {
		changes[i] = graphstore.Change{UserID: fmt.Sprintf("u%05d", i), Entity: "u:star", Following: true,
			Version: graphstore.Version(uint64(1+i/1000), i%1000), CreateMs: 1}
	}
	require.NoError(b, g.Apply(b.Context(), changes))
	cfg := projection.DefaultConfig()
	cfg.ChunkSize = 2 * benchFollowers // one step: measure the write path itself
	f := projection.New(projection.Deps{Log: env.Log, Stores: projection.Stores{
		Graph: g, Records: recordstore.New(env.RDB, redisx.NewKeyspace(0)), Bodies: activitystore.New(env.RDB, redisx.NewKeyspace(0)), Timelines: timelinestore.New(env.RDB, redisx.NewKeyspace(0)),
	}, Config: cfg, Logger: env.Logger})
	require.NoError(b, redisx.LoadScripts(b.Context(), env.RDB))
	return f, env
}

func postedEvent(b *testing.B, gen *ids.Generator) []byte {
	id := gen.Next()
	data, err := proto.Marshal(&tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: &tidingsv1.Activity{
		Id: id.String(), Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: "star"}, Verb: "posted", Text: "benchmark post",
	}}})
	require.NoError(b, err)
	return data
}

// BenchmarkFanoutWrite measures one activity fanned out to 10,000 home
// timelines (plus the actor's feed and body), as the worker does it.
// Timelines fill up to their cap of 800 as the benchmark runs.
func BenchmarkFanoutWrite(b *testing.B) {
	f, _ := benchFanout(b)
	gen := ids.NewGenerator()
	ctx := context.Background()
	b.ReportAllocs()
	seq := uint64(0)
	for b.Loop() {
		seq++
		require.Nil(b, f.HandleActivities(ctx, []eventlog.Delivery{{Data: postedEvent(b, gen), Sequence: seq, NumDelivered: 1}}))
	}
	b.ReportMetric(float64(seq*benchFollowers)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkBaselinePipelinedZAdd is the same work as plain pipelined ZADDs
// of one id into 10,000 sorted-set timelines, in batches of 1,000: close to
// what Redis itself can take, measured in the same run.
func BenchmarkBaselinePipelinedZAdd(b *testing.B) {
	_, env := benchFanout(b)
	ctx := context.Background()
	gen := ids.NewGenerator()
	keys := make([]string, benchFollowers)
	for i := range keys {
		keys[i] = fmt.Sprintf("bench:z:{u%05d}", i)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		id := gen.Next()
		for start := 0; start < len(keys); start += 1000 {
			_, err := env.RDB.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys[start : start+1000] {
					p.ZAdd(ctx, k, redis.Z{Score: float64(id >> 22), Member: id.String()})
				}
				return nil
			})
			require.NoError(b, err)
		}
		n++
	}
	b.ReportMetric(float64(n*benchFollowers)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkBaselineNaiveZAdd is the naive fan-out: one ZADD round trip per
// follower from a plain loop (1,000 followers an iteration, to keep it short).
func BenchmarkBaselineNaiveZAdd(b *testing.B) {
	_, env := benchFanout(b)
	ctx := context.Background()
	gen := ids.NewGenerator()
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		id := gen.Next()
		for i := range 1000 {
			require.NoError(b, env.RDB.ZAdd(ctx, fmt.Sprintf("bench:n:{u%05d}", i), redis.Z{Score: float64(id >> 22), Member: id.String()}).Err())
		}
		n++
	}
	b.ReportMetric(float64(n*1000)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkSmallAudiences compares two ways of taking the ACTIVITIES
// stream, on the same Redis in the same run: 16 handlers taking one
// activity at a time (batches of one, as the worker did before batches),
// and 4 handlers taking batches of 64 (the worker now), both through
// HandleActivities. Each iteration fans out
// 256 posts by 2,000 users who each have 15 followers.
func BenchmarkSmallAudiences(b *testing.B) {
	const users, followers, posts = 2000, 15, 256
	env := testenv.New(b)
	g := graphstore.New(env.RDB, redisx.NewKeyspace(0))
	var changes []graphstore.Change
	for i := range users {
		for d := 1; d <= followers; d++ {
			changes = append(changes, graphstore.Change{UserID: fmt.Sprintf("u%04d", (i+d)%users), Entity: "u:" + fmt.Sprintf("u%04d", i),
				Following: true, Version: graphstore.Version(1, len(changes)), CreateMs: 1})
		}
	}
	for lo := 0; lo < len(changes); lo += graphstore.MaxChangesPerEvent {
		require.NoError(b, g.Apply(b.Context(), changes[lo:min(lo+graphstore.MaxChangesPerEvent, len(changes))]))
	}
	require.NoError(b, redisx.LoadScripts(b.Context(), env.RDB))
	cfg := projection.DefaultConfig()
	cfg.InactiveAfter = 0
	f := projection.New(projection.Deps{Log: env.Log, Stores: projection.Stores{
		Graph: g, Records: recordstore.New(env.RDB, redisx.NewKeyspace(0)), Bodies: activitystore.New(env.RDB, redisx.NewKeyspace(0)), Timelines: timelinestore.New(env.RDB, redisx.NewKeyspace(0)),
	}, Config: cfg, Logger: env.Logger})
	gen := ids.NewGenerator()
	seq := uint64(0)
	deliveries := func() []eventlog.Delivery {
		out := make([]eventlog.Delivery, posts)
		for i := range out {
			id := gen.Next()
			data, err := proto.Marshal(&tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: &tidingsv1.Activity{
				Id: id.String(), Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: fmt.Sprintf("u%04d", int(seq)%users)},
				Verb: "posted", Text: "benchmark post",
			}}})
			require.NoError(b, err)
			seq++
			out[i] = eventlog.Delivery{Data: data, Sequence: seq, NumDelivered: 1}
		}
		return out
	}
	run := func(b *testing.B, handlers, batch int) {
		ctx := context.Background()
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			b.StopTimer()
			ds := deliveries()
			b.StartTimer()
			work := make(chan []eventlog.Delivery, posts)
			for lo := 0; lo < len(ds); lo += batch {
				work <- ds[lo:min(lo+batch, len(ds))]
			}
			close(work)
			var wg sync.WaitGroup
			for range handlers {
				wg.Go(func() {
					for part := range work {
						if errs := f.HandleActivities(ctx, part); errs != nil {
							b.Error(errs)
						}
					}
				})
			}
			wg.Wait()
			n += posts
		}
		b.ReportMetric(float64(n*(followers+1))/b.Elapsed().Seconds(), "deliveries/s")
	}
	b.Run("16 handlers of one", func(b *testing.B) { run(b, 16, 1) })
	b.Run("4 handlers of 64", func(b *testing.B) { run(b, 4, 64) })
}
