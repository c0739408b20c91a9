// Command faultsuite injects faults into a running local cluster
// (deploy/local-cluster, `make cluster-up`) under a steady stream of posts
// and deletes made through the public gRPC API, then reads every
// follower's home timeline through the API and compares it with what the
// API acknowledged. For each fault it reports lost, duplicated, unexpected
// and resurrected items and the recovery time (from the fault until all of
// it is visible), and it exits non-zero when any count is not zero or a
// fault did not recover.
//
//	go run ./services/faultsuite                      # every fault (make test-cluster)
//	go run ./services/faultsuite --fault worker-kill  # one fault (FAULT=worker-kill make test-cluster)
//	go run ./services/faultsuite --list
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/status"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// options are the suite's flags.
type options struct {
	clusterDir string
	script     string
	faults     string
	rate       int
	warmup     time.Duration
	after      time.Duration
	settle     time.Duration
}

// suite runs faults against one cluster.
type suite struct {
	opts   options
	c      *cluster
	a      *api
	runID  string
	paused string // a process left stopped, to continue on exit
}

// result is one row of the table.
type result struct {
	name       string
	acked      int
	deletes    int
	ambiguous  int
	counts     counts
	recovered  bool
	recovery   time.Duration
	catchUp    time.Duration
	deadLetter int64
	writeErrs  string
	note       string
	examples   []string
	err        error
}

// errNotExercised means a fault could not be brought about as described,
// so its clean counts prove nothing.
var errNotExercised = errors.New("fault not exercised")

func main() {
	var o options
	list := false
	flag.StringVar(&o.clusterDir, "cluster-dir", envOr("CLUSTER_DIR", ".data/cluster"), "the local cluster's directory (cluster.env, run/, logs/)")
	flag.StringVar(&o.script, "script", "deploy/local-cluster/cluster.sh", "the cluster script, to restart processes")
	flag.StringVar(&o.faults, "fault", "", "comma-separated faults to run (default: all); see --list")
	flag.BoolVar(&list, "list", false, "list the faults and exit")
	flag.IntVar(&o.rate, "rate", 30, "calls a second (posts, and a delete every eighth)")
	flag.DurationVar(&o.warmup, "warmup", 5*time.Second, "load before a fault")
	flag.DurationVar(&o.after, "after", 8*time.Second, "load after a fault is over")
	flag.DurationVar(&o.settle, "settle", 60*time.Second, "how long after the load to wait for every timeline to be right")
	flag.Parse()
	if list {
		for _, f := range faults {
			fmt.Printf("%-24s %s\n", f.name, f.about)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, o, os.Stdout)
	stop()
	os.Exit(code)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func run(ctx context.Context, o options, out io.Writer) int {
	chosen, err := choose(o.faults)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 2
	}
	c, err := openCluster(o.clusterDir, o.script)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 2
	}
	a, err := newAPI(c.list("API_GRPC"), c.env["AUTH_SECRET_FILE"])
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultsuite:", err)
		return 2
	}
	defer a.close()
	s := &suite{opts: o, c: c, a: a, runID: strconv.FormatInt(time.Now().Unix()%1_000_000, 36)}
	defer func() {
		if s.paused != "" {
			_ = c.signal(s.paused, syscall.SIGCONT)
		}
	}()
	if bad := c.unhealthy(ctx); len(bad) > 0 {
		fmt.Fprintf(os.Stderr, "faultsuite: not healthy: %s (make cluster-up; make cluster-status)\n", strings.Join(bad, ", "))
		return 2
	}
	started := time.Now()
	fmt.Fprintf(out, "fault suite on %s (run %s, %d calls/s, ack wait %s), %s\n",
		c.dir, s.runID, o.rate, c.ackWait(), started.UTC().Format("2006-01-02 15:04 MST"))
	var results []result
	for _, f := range chosen {
		if ctx.Err() != nil {
			break
		}
		fmt.Fprintf(out, "\n== %s: %s\n", f.name, f.about)
		r := s.runFault(ctx, f, out)
		results = append(results, r)
		printRow(out, r)
	}
	fmt.Fprintf(out, "\nfault suite: %d fault(s) in %s\n\n", len(results), time.Since(started).Round(time.Second))
	printTable(out, results)
	for _, r := range results {
		if r.err != nil || !r.recovered || !r.counts.clean() {
			return 1
		}
	}
	if len(results) < len(chosen) {
		return 1
	}
	return 0
}

func choose(names string) ([]fault, error) {
	if names == "" {
		return faults, nil
	}
	var out []fault
	for _, n := range strings.Split(names, ",") {
		i := slices.IndexFunc(faults, func(f fault) bool { return f.name == strings.TrimSpace(n) })
		if i < 0 {
			return nil, fmt.Errorf("no fault %q (see --list)", n)
		}
		out = append(out, faults[i])
	}
	return out, nil
}

// runFault runs one fault: a healthy topology, the fault's own users, load,
// the fault, more load, then checks until every timeline is right or the
// settle time is over, then the topology made whole again.
func (s *suite) runFault(ctx context.Context, f fault, out io.Writer) result {
	r := result{name: f.name}
	logf := func(format string, args ...any) {
		fmt.Fprintf(out, "   %s  %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	if err := s.c.restore(ctx, 2*time.Minute); err != nil {
		r.err = fmt.Errorf("before the fault: %w", err)
		return r
	}
	prefix := fmt.Sprintf("fs%s-%s", s.runID, short(f.name))
	o := newOrg(prefix, 12, 24, 3)
	if err := o.create(ctx, s.a); err != nil {
		r.err = err
		return r
	}
	deadBefore, _ := s.deadLetters(ctx)
	l := newLedger()
	ld := startLoad(ctx, o, s.a, l, prefix, s.opts.rate)
	logf("load started: %d authors, %d followers", len(o.authors), len(o.followers))
	if err := sleep(ctx, s.opts.warmup); err != nil {
		ld.stop()
		r.err = err
		return r
	}
	struck, note, err := f.inject(ctx, s)
	r.note = note
	logf("fault: %s", note)
	if err != nil {
		r.err = err
		logf("fault failed: %v", err)
	}
	_ = sleep(ctx, s.opts.after)
	ld.stop()
	stopped := time.Now()
	l.mu.Lock()
	r.acked, r.deletes, r.ambiguous = len(l.posts), len(l.deleted), len(l.ambiguousText)+len(l.ambiguousIDs)
	l.mu.Unlock()
	r.writeErrs = l.postErrs.String()
	logf("load stopped: %d posts and %d deletes acknowledged, %d calls without an answer, failed attempts: %s",
		r.acked, r.deletes, r.ambiguous, orNone(r.writeErrs))

	// Check until clean or the settle time is over.
	deadline := time.Now().Add(s.opts.settle)
	var (
		lastErr  error
		examples []example
	)
	for {
		c, ex, err := check(ctx, s.a, o, l)
		if err == nil {
			r.counts, examples, lastErr = c, ex, nil
			if c.clean() {
				r.recovered, r.recovery, r.catchUp = true, time.Since(struck), time.Since(stopped)
				break
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		_ = sleep(ctx, time.Second)
	}
	if lastErr != nil {
		logf("last check failed: %v", lastErr)
		if r.err == nil && !r.recovered {
			r.err = lastErr
		}
	}
	if !r.recovered {
		r.examples = s.describe(ctx, examples)
		for _, e := range r.examples {
			logf("example: %s", e)
		}
	}
	if deadAfter, err := s.deadLetters(ctx); err == nil {
		r.deadLetter = deadAfter - deadBefore
	}
	if err := s.c.restore(ctx, 2*time.Minute); err != nil {
		logf("restore after the fault: %v", err)
	}
	return r
}

// describe says, for each example, whether the API still has the
// activity's body (GetActivity as an admin): a lost item whose body is there
// lost only its timeline entry; a resurrected one whose body is there lost
// its tombstone.
func (s *suite) describe(ctx context.Context, examples []example) []string {
	var out []string
	for _, e := range examples {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := tidingsv1.NewActivityServiceClient(s.a.conn()).GetActivity(cctx, &tidingsv1.GetActivityRequest{Id: e.id}, s.a.admin())
		cancel()
		out = append(out, fmt.Sprintf("%s %s (GetActivity: %s)", e.kind, e.id, status.Code(err)))
	}
	return out
}

// deadLetters counts the DEADLETTER stream's messages.
func (s *suite) deadLetters(ctx context.Context) (int64, error) {
	var n int64
	err := retry(ctx, 20*time.Second, &errCounts{}, func(ctx context.Context) error {
		st, err := tidingsv1.NewAdminServiceClient(s.a.conn()).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{}, s.a.admin())
		if err != nil {
			return err
		}
		for _, str := range st.GetStreams() {
			if str.GetName() == "DEADLETTER" {
				n = int64(str.GetMessages())
				return nil
			}
		}
		return errors.New("no DEADLETTER stream in the status")
	})
	return n, err
}

func short(name string) string {
	var b strings.Builder
	for _, part := range strings.Split(name, "-") {
		b.WriteString(part[:min(3, len(part))])
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func recoveryText(r result) string {
	switch {
	case errors.Is(r.err, errNotExercised):
		return "not exercised"
	case r.err != nil && !r.recovered:
		return "error"
	case !r.recovered:
		return "not recovered"
	}
	return r.recovery.Round(100*time.Millisecond).String() + " (" + r.catchUp.Round(100*time.Millisecond).String() + ")"
}

func printRow(out io.Writer, r result) {
	fmt.Fprintf(out, "   => lost %d, duplicated %d, unexpected %d, resurrected %d; recovery %s; dead-lettered %d",
		r.counts.Lost, r.counts.Duplicated, r.counts.Unexpected, r.counts.Resurrected, recoveryText(r), r.deadLetter)
	if r.err != nil {
		fmt.Fprintf(out, "; error: %v", r.err)
	}
	fmt.Fprintln(out)
}

func printTable(out io.Writer, results []result) {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FAULT\tACKED POSTS\tDELETES\tLOST\tDUPLICATED\tUNEXPECTED\tRESURRECTED\tRECOVERY (AFTER LOAD)\tDEAD-LETTERED\tNO ANSWER")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\n", r.name, r.acked, r.deletes,
			r.counts.Lost, r.counts.Duplicated, r.counts.Unexpected, r.counts.Resurrected, recoveryText(r), r.deadLetter, r.ambiguous)
	}
	_ = tw.Flush()
	fmt.Fprintln(out, "\nRECOVERY: from the fault until every acknowledged post is visible and no deleted one is, in every")
	fmt.Fprintln(out, "follower's home timeline read through the API; the load goes on until --after past the fault, and")
	fmt.Fprintln(out, "the time in brackets is from the end of the load. NO ANSWER: calls that got no answer (allowed either way).")
	fmt.Fprintln(out)
	for _, r := range results {
		fmt.Fprintf(out, "%s: %s\n", r.name, r.note)
		if r.err != nil {
			fmt.Fprintf(out, "    error: %v\n", r.err)
		}
		for _, e := range r.examples {
			fmt.Fprintf(out, "    example: %s\n", e)
		}
	}
}
