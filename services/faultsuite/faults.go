package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// fault is one fault the suite injects under load. inject breaks something
// and returns when the fault is over (what was stopped is started again,
// except where the fault is that it stays down), with the moment the
// fault struck and a note on what it did.
type fault struct {
	name  string
	about string
	// inject runs while the load goes on.
	inject func(ctx context.Context, s *suite) (struck time.Time, note string, err error)
}

var faults = []fault{
	{"worker-kill", "a worker killed with SIGKILL, restarted 3 s later", workerKill},
	{"worker-pause", "a worker stopped (SIGSTOP) past the ack wait, then continued", workerPause},
	{"nats-leader-kill", "the ACTIVITIES stream leader's NATS node killed, restarted after a new leader is elected", natsLeaderKill},
	{"redis-primary-kill", "a Redis primary killed; its replica takes over; not restarted during the check", redisPrimaryKill},
	{"redis-down", "every Redis node stopped for 65 s, then started with its data", redisDown},
	{"redis-restore-snapshot", "a primary and its replica restarted from a snapshot taken 10 s earlier", redisRestoreSnapshot},
	{"flushall-rebuild", "FLUSHALL on every primary, then AdminService.RebuildProjections", flushallRebuild},
	{"rebuild-killed", "a rebuild whose worker is killed (SIGKILL) half-way: readers stay on the old generation, the rebuild finishes after", rebuildKilled},
}

func workerKill(ctx context.Context, s *suite) (time.Time, string, error) {
	struck := time.Now()
	if err := s.c.kill(ctx, "worker-1"); err != nil {
		return struck, "", err
	}
	if err := sleep(ctx, 3*time.Second); err != nil {
		return struck, "", err
	}
	return struck, "worker-1 killed, restarted", s.c.start(ctx, "worker-1")
}

func workerPause(ctx context.Context, s *suite) (time.Time, string, error) {
	hold := s.c.ackWait() + 5*time.Second
	struck := time.Now()
	if err := s.c.signal("worker-1", syscall.SIGSTOP); err != nil {
		return struck, "", err
	}
	s.paused = "worker-1"
	err := sleep(ctx, hold)
	if cerr := s.c.signal("worker-1", syscall.SIGCONT); cerr != nil {
		return struck, "", cerr
	}
	s.paused = ""
	return struck, fmt.Sprintf("worker-1 stopped %s (ack wait %s)", hold, s.c.ackWait()), err
}

func natsLeaderKill(ctx context.Context, s *suite) (time.Time, string, error) {
	leader, err := s.c.streamLeader(ctx, eventlog.StreamActivities)
	if err != nil {
		return time.Now(), "", err
	}
	struck := time.Now()
	if err := s.c.kill(ctx, leader); err != nil {
		return struck, "", err
	}
	var next string
	err = poll(ctx, 60*time.Second, func() bool {
		l, err := s.c.streamLeader(ctx, eventlog.StreamActivities)
		next = l
		return err == nil && l != leader
	})
	if err != nil {
		return struck, "", fmt.Errorf("no new ACTIVITIES leader after %s was killed: %w", leader, err)
	}
	elected := time.Since(struck).Round(100 * time.Millisecond)
	if err := s.c.start(ctx, leader); err != nil {
		return struck, "", err
	}
	return struck, fmt.Sprintf("leader %s killed, %s elected in %s, %s restarted", leader, next, elected, leader), nil
}

func redisPrimaryKill(ctx context.Context, s *suite) (time.Time, string, error) {
	primary, replica, err := s.c.primaryWithReplica(ctx)
	if err != nil {
		return time.Now(), "", err
	}
	struck := time.Now()
	if err := s.c.kill(ctx, primary); err != nil {
		return struck, "", err
	}
	// Wait for the failover; the killed node stays down until the check
	// is done (the suite's restore starts it again, as a replica).
	err = poll(ctx, 60*time.Second, func() bool {
		rdb := redis.NewClient(&redis.Options{Addr: s.c.redisAddr(replica), MaxRetries: -1})
		defer rdb.Close()
		role, err := rdb.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "master"
	})
	if err != nil {
		return struck, "", fmt.Errorf("replica %s was not promoted: %w", replica, err)
	}
	return struck, fmt.Sprintf("%s killed, %s promoted in %s", primary, replica, time.Since(struck).Round(100*time.Millisecond)), nil
}

func redisDown(ctx context.Context, s *suite) (time.Time, string, error) {
	const down = 65 * time.Second
	struck := time.Now()
	var nodes []string
	for i := 1; i <= 6; i++ {
		nodes = append(nodes, fmt.Sprintf("redis-%d", i))
	}
	// Stop all at once (each saves its data on SIGTERM).
	errc := make(chan error, len(nodes))
	for _, n := range nodes {
		go func() { errc <- s.c.stop(ctx, n) }()
	}
	for range nodes {
		if err := <-errc; err != nil {
			return struck, "", err
		}
	}
	if err := sleep(ctx, down-time.Since(struck)); err != nil {
		return struck, "", err
	}
	for _, n := range nodes {
		if err := s.c.start(ctx, n); err != nil {
			return struck, "", err
		}
	}
	return struck, fmt.Sprintf("all 6 Redis nodes down %s", time.Since(struck).Round(time.Second)), nil
}

func redisRestoreSnapshot(ctx context.Context, s *suite) (time.Time, string, error) {
	primary, replica, err := s.c.primaryWithReplica(ctx)
	if err != nil {
		return time.Now(), "", err
	}
	snap, err := s.snapshot(ctx, primary)
	if err != nil {
		return time.Now(), "", err
	}
	const lag = 10 * time.Second
	if err := sleep(ctx, lag); err != nil {
		return time.Now(), "", err
	}
	// Both nodes of the shard go at once, so no failover keeps the newer
	// data; both come back from the older snapshot.
	struck := time.Now()
	for _, n := range []string{primary, replica} {
		if err := s.c.kill(ctx, n); err != nil {
			return struck, "", err
		}
	}
	for _, n := range []string{primary, replica} {
		if err := copyFile(snap, filepath.Join(s.c.dir, "redis", n, "dump.rdb")); err != nil {
			return struck, "", err
		}
	}
	for _, n := range []string{primary, replica} {
		if err := s.c.start(ctx, n); err != nil {
			return struck, "", err
		}
	}
	return struck, fmt.Sprintf("%s and %s restarted from a snapshot %s old", primary, replica, lag), nil
}

// snapshot makes a node save its data and copies the file aside.
func (s *suite) snapshot(ctx context.Context, node string) (string, error) {
	rdb := redis.NewClient(&redis.Options{Addr: s.c.redisAddr(node), MaxRetries: -1})
	defer rdb.Close()
	before, err := rdb.LastSave(ctx).Result()
	if err != nil {
		return "", fmt.Errorf("lastsave %s: %w", node, err)
	}
	// LASTSAVE counts seconds: let one pass so the new save is seen.
	if err := sleep(ctx, 1100*time.Millisecond); err != nil {
		return "", err
	}
	if err := rdb.BgSave(ctx).Err(); err != nil {
		return "", fmt.Errorf("bgsave %s: %w", node, err)
	}
	if err := poll(ctx, 30*time.Second, func() bool {
		t, err := rdb.LastSave(ctx).Result()
		return err == nil && t > before
	}); err != nil {
		return "", fmt.Errorf("bgsave %s did not finish: %w", node, err)
	}
	dst := filepath.Join(s.c.dir, "snapshots", node+".rdb")
	if err := os.MkdirAll(filepath.Dir(dst), 0o750); err != nil {
		return "", err
	}
	return dst, copyFile(filepath.Join(s.c.dir, "redis", node, "dump.rdb"), dst)
}

func flushallRebuild(ctx context.Context, s *suite) (time.Time, string, error) {
	primaries, err := s.c.primaries(ctx)
	if err != nil {
		return time.Now(), "", err
	}
	struck := time.Now()
	for _, addr := range primaries {
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		err := rdb.FlushAll(ctx).Err()
		_ = rdb.Close()
		if err != nil {
			return struck, "", fmt.Errorf("flushall %s: %w", addr, err)
		}
	}
	note := s.rebuild(ctx, 0)
	return struck, "FLUSHALL on " + fmt.Sprint(len(primaries)) + " primaries; " + note, nil
}

// rebuild starts a rebuild through one API process, waits until it is
// done, and describes the outcome.
func (s *suite) rebuild(ctx context.Context, apiIndex int) string {
	start := time.Now()
	admin := tidingsv1.NewAdminServiceClient(s.a.conns[apiIndex])
	resp, err := admin.RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{}, s.a.admin())
	if err != nil {
		st := status.Convert(err)
		return fmt.Sprintf("rebuild not started: %s: %s", st.Code(), st.Message())
	}
	rb, err := s.waitRebuild(ctx, admin, resp.GetRebuild().GetId(), nil)
	took := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		return fmt.Sprintf("rebuild %s after %s: %v", resp.GetRebuild().GetId(), took, err)
	}
	return fmt.Sprintf("rebuild %s replayed %d events in %s", strings.ToLower(strings.TrimPrefix(rb.GetState().String(), "REBUILD_STATE_")), rb.GetEventsReplayed(), took)
}

// waitRebuild polls a rebuild until it is done or failed (an error), for
// up to 10 minutes; each poll, if set, sees the rebuild as it stands.
func (s *suite) waitRebuild(ctx context.Context, admin tidingsv1.AdminServiceClient, id string, each func(*tidingsv1.Rebuild)) (*tidingsv1.Rebuild, error) {
	var rb *tidingsv1.Rebuild
	var last error
	err := poll(ctx, 10*time.Minute, func() bool {
		resp, err := admin.GetRebuild(ctx, &tidingsv1.GetRebuildRequest{Id: id}, s.a.admin())
		if err != nil {
			last = err
			return false
		}
		rb = resp.GetRebuild()
		if each != nil {
			each(rb)
		}
		st := rb.GetState()
		return st == tidingsv1.RebuildState_REBUILD_STATE_DONE || st == tidingsv1.RebuildState_REBUILD_STATE_FAILED
	})
	if err != nil {
		return rb, fmt.Errorf("not done (%w; last error: %w)", err, last)
	}
	if rb.GetState() == tidingsv1.RebuildState_REBUILD_STATE_FAILED {
		return rb, fmt.Errorf("failed: %s", rb.GetError())
	}
	return rb, nil
}

// rebuildKilled kills the worker running a rebuild half-way (SIGKILL),
// restarts it, and waits for the rebuild to finish (another worker takes
// it over from its last checkpoint, or the restarted one does).
func rebuildKilled(ctx context.Context, s *suite) (time.Time, string, error) {
	admin := tidingsv1.NewAdminServiceClient(s.a.conns[0])
	resp, err := admin.RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{}, s.a.admin())
	if err != nil {
		return time.Now(), "", fmt.Errorf("start rebuild: %w", err)
	}
	id := resp.GetRebuild().GetId()
	// Wait until a worker replays, then find which one by its pid.
	victim := ""
	var running *tidingsv1.Rebuild
	_ = poll(ctx, time.Minute, func() bool {
		r, err := admin.GetRebuild(ctx, &tidingsv1.GetRebuildRequest{Id: id}, s.a.admin())
		if err != nil {
			return false
		}
		running = r.GetRebuild()
		if running.GetState() != tidingsv1.RebuildState_REBUILD_STATE_RUNNING {
			return running.GetState() >= tidingsv1.RebuildState_REBUILD_STATE_SWITCHED
		}
		_, pid, _ := strings.Cut(running.GetRunner(), "/")
		for i := 1; i <= 8; i++ {
			name := fmt.Sprintf("worker-%d", i)
			if p, ok := s.c.pid(name); ok && strconv.Itoa(p) == pid {
				victim = name
				return true
			}
		}
		return false
	})
	struck := time.Now()
	if victim == "" {
		rb, err := s.waitRebuild(ctx, admin, id, nil)
		note := fmt.Sprintf("rebuild %s: %d events", id, rb.GetEventsReplayed())
		if err != nil {
			return struck, note, err
		}
		return struck, note, fmt.Errorf("%w: the rebuild was past its replay before its worker could be killed", errNotExercised)
	}
	replayed := running.GetEventsReplayed()
	if err := s.c.kill(ctx, victim); err != nil {
		return struck, "", err
	}
	if err := s.c.start(ctx, victim); err != nil {
		return struck, "", err
	}
	rb, err := s.waitRebuild(ctx, admin, id, nil)
	note := fmt.Sprintf("%s killed running rebuild %s at %d events replayed, restarted; the rebuild finished with %d events (runner %s)",
		victim, id, replayed, rb.GetEventsReplayed(), rb.GetRunner())
	return struck, note, err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return out.Close()
}

// sleep waits d, or less if ctx ends. A fault's timing is the fault itself
// (how long a node stays down), not synchronisation.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
