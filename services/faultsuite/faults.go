package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	{"rebuild-killed", "RebuildProjections cut short by killing its API process with SIGKILL", rebuildKilled},
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

// rebuild calls RebuildProjections on one API process and describes the
// outcome.
func (s *suite) rebuild(ctx context.Context, apiIndex int) string {
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := tidingsv1.NewAdminServiceClient(s.a.conns[apiIndex]).RebuildProjections(cctx, &tidingsv1.RebuildProjectionsRequest{}, s.a.admin())
	took := time.Since(start).Round(100 * time.Millisecond)
	if err != nil {
		st := status.Convert(err)
		return fmt.Sprintf("rebuild failed after %s: %s: %s", took, st.Code(), st.Message())
	}
	var events int64
	for _, r := range resp.GetRebuilt() {
		events += r.GetEventCount()
	}
	return fmt.Sprintf("rebuild replayed %d events in %s", events, took)
}

func rebuildKilled(ctx context.Context, s *suite) (time.Time, string, error) {
	const victim = "api-2"
	idx := 1
	if len(s.a.conns) < 2 {
		return time.Now(), "", errors.New("rebuild-killed needs two API processes (CLUSTER_APIS=2)")
	}
	logPath := filepath.Join(s.c.dir, "logs", victim+".log")
	offset := fileSize(logPath)
	done := make(chan string, 1)
	go func() { done <- s.rebuild(ctx, idx) }()
	// Kill it in the replay of activities (after the graph is rebuilt), or
	// after 5 s, whichever comes first.
	var note string
	_ = poll(ctx, 5*time.Second, func() bool {
		select {
		case note = <-done:
			return true
		default:
		}
		return logContains(logPath, offset, `"projection":"PROJECTION_FOLLOWS"`)
	})
	if note == "" {
		_ = sleep(ctx, 300*time.Millisecond)
	}
	struck := time.Now()
	if err := s.c.kill(ctx, victim); err != nil {
		return struck, "", err
	}
	endedFirst := note != ""
	if !endedFirst {
		note = <-done
	}
	if err := s.c.start(ctx, victim); err != nil {
		return struck, "", err
	}
	if endedFirst {
		return struck, "api-2 killed, restarted; " + note,
			fmt.Errorf("%w: the rebuild ended before its process was killed (%s)", errNotExercised, note)
	}
	return struck, "api-2 killed during the rebuild (" + note + "), restarted", nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logContains reports whether a log file holds s after offset.
func logContains(path string, offset int64, s string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			return true
		}
	}
	return false
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
