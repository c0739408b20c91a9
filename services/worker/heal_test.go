package worker_test

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/heal"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
	"github.com/tidingshq/tidings/services/worker"
)

// Finding 1 of issue 14: Redis restarted from an older snapshot (what a
// failover to a lagging replica, a restore or an OS crash does) lost
// acknowledged posts from timelines and brought deleted ones back, while
// every health signal stayed green. The worker notices that the
// watermarks went backwards and re-applies the log by itself.
func TestRedisRestoredFromOlderSnapshotHealsItself(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	reg := prometheus.NewRegistry()
	metrics, err := heal.NewMetrics(reg)
	require.NoError(t, err)
	runWorker := func() (stop func()) {
		return s.RunWorker(t, func(d *worker.Deps) {
			d.HealInterval, d.HealMetrics = 50*time.Millisecond, metrics
		})
	}
	stop := runWorker()
	ctx := t.Context()
	followers := []string{"f0", "f1", "f2", "f3", "f4", "f5"}
	s.Users(t, append([]string{"ann", "bob"}, followers...)...)
	for _, f := range followers {
		for _, author := range []string{"ann", "bob"} {
			_, err := s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: f, Entity: entity.User(author)})
			require.NoError(t, err)
		}
	}
	var posts []string
	post := func(n int) {
		for i := range n {
			author := []string{"ann", "bob"}[i%2]
			resp, err := s.Activities(t, testenv.Employee(author)).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: author, Text: fmt.Sprintf("post %d", len(posts))})
			require.NoError(t, err)
			posts = append(posts, resp.GetActivity().GetId())
		}
	}
	del := func(i int) {
		author := []string{"ann", "bob"}[i%2]
		_, err := s.Activities(t, testenv.Employee(author)).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: posts[i]})
		require.NoError(t, err)
	}
	settled := func() {
		t.Helper()
		s.WaitCaughtUp(t)
		waitWatermarks(t, s)
	}
	older := filepath.Join(t.TempDir(), "older.rdb")
	restoreOlder := func() {
		t.Helper()
		require.NoError(t, s.Env.Redis.Kill())
		copyFile(t, older, filepath.Join(s.Env.Redis.Dir(), "dump.rdb"))
		require.NoError(t, s.Env.Redis.Restart(ctx))
	}

	post(20)
	del(1)
	settled()
	// The snapshot Redis will come back from.
	require.NoError(t, s.Env.RDB.Save(ctx).Err())
	copyFile(t, filepath.Join(s.Env.Redis.Dir(), "dump.rdb"), older)

	// Acknowledged after the snapshot: posts, and deletes of posts the
	// snapshot still holds.
	post(20)
	del(2)
	del(25)
	settled()
	before := projected(t, s)
	home := homeIDs(t, s, "f0")
	require.Len(t, home, 40-3)

	// Redis comes back from the snapshot while no worker runs: what was
	// acknowledged since is gone, and a deleted post is back.
	stop()
	restoreOlder()
	require.Len(t, homeIDs(t, s, "f0"), 20-1, "redis came back from the older snapshot")
	require.Contains(t, homeIDs(t, s, "f0"), posts[2], "a deleted post came back")
	// A worker that starts catches up from the watermarks Redis holds.
	runWorker()
	testenv.Eventually(t, time.Minute, func() bool { return len(homeIDs(t, s, "f0")) == len(home) },
		"the home timeline did not come back whole")
	require.Equal(t, home, homeIDs(t, s, "f0"), "nothing lost, nothing resurrected")
	settled()
	testenv.RequireSameSnapshot(t, before, projected(t, s), "healed projection")

	// Redis comes back from the snapshot under a running worker: the
	// watermarks went backwards, and the worker heals without any operator
	// action.
	restoreOlder()
	testenv.Eventually(t, time.Minute, func() bool { return lostWritesHealed(t, reg) > 0 },
		"the worker did not notice that redis lost writes")
	testenv.Eventually(t, time.Minute, func() bool { return len(homeIDs(t, s, "f0")) == len(home) },
		"the home timeline did not come back whole")
	require.Equal(t, home, homeIDs(t, s, "f0"), "nothing lost, nothing resurrected")
	settled()
	testenv.RequireSameSnapshot(t, before, projected(t, s), "healed projection")

	// And it goes on: later writes land.
	post(2)
	settled()
	require.Len(t, homeIDs(t, s, "f0"), len(home)+2)
}

// projected is a snapshot of the projections, without the read marks
// (when each user last read, which the log does not hold).
func projected(t *testing.T, s *stacktest.Stack) map[string]any {
	t.Helper()
	snap := testenv.Snapshot(t, s.Env.RDB)
	for k := range snap {
		if strings.HasPrefix(k, "tidings:seen:") {
			delete(snap, k)
		}
	}
	return snap
}

// lostWritesHealed returns how many heals after lost writes reg counted.
func lostWritesHealed(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "tidings_projection_heals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == "redis lost writes" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitWatermarks waits until the watermarks hold what the consumers have
// acknowledged.
func waitWatermarks(t *testing.T, s *stacktest.Stack) {
	t.Helper()
	p := s.Components.Projector()
	testenv.Eventually(t, 30*time.Second, func() bool {
		wm, complete, err := p.Watermarks(t.Context())
		if err != nil || !complete {
			return false
		}
		for _, spec := range projection.ConsumerSpecs() {
			c, err := s.Env.JS.Consumer(t.Context(), spec.Stream, spec.Durable)
			if err != nil {
				return false
			}
			info, err := c.Info(t.Context())
			if err != nil {
				return false
			}
			if _, followed := wm[spec.Stream]; followed && wm[spec.Stream] < info.AckFloor.Stream {
				return false
			}
		}
		return true
	}, "the watermarks did not reach what was acknowledged")
}

func homeIDs(t *testing.T, s *stacktest.Stack, user string) []string {
	t.Helper()
	resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 100})
	require.NoError(t, err)
	var out []string
	for _, it := range resp.GetItems() {
		out = append(out, it.GetActivity().GetId())
	}
	return out
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from) //nolint:gosec // G304: the test's own files
	require.NoError(t, err)
	defer src.Close()
	dst, err := os.Create(to) //nolint:gosec // G304: the test's own files
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, dst.Close())
}
