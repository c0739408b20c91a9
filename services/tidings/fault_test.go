package main_test

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graph"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/redisserver"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// faultEnv is a JetStream server and a redis-server that worker processes
// (the real binary) and the test share.
type faultEnv struct {
	*testenv.Env
	redis  *redisserver.Server
	graph  *graph.Writer
	poster *activity.Poster
}

func newFaultEnv(t *testing.T, persistRedis bool) *faultEnv {
	t.Helper()
	env := testenv.New(t)
	rs := env.Redis
	if persistRedis {
		var err error
		rs, err = redisserver.Start(t.Context(), redisserver.Options{Dir: t.TempDir(), Persist: true})
		require.NoError(t, err)
		t.Cleanup(func() { _ = rs.Kill() })
		env.RDB = redis.NewClient(&redis.Options{Addr: rs.Addr()})
		t.Cleanup(func() { _ = env.RDB.Close() })
	}
	proj := projection.New(projection.Deps{
		Log: env.Log, Stores: projection.NewStores(env.RDB, hot.Thresholds{On: 10000, Off: 8000}),
		Config: projection.DefaultConfig(), Logger: env.Logger,
	})
	return &faultEnv{
		Env:    env,
		redis:  rs,
		graph:  graph.NewWriter(graph.Deps{Log: env.Log, Projector: proj, Logger: env.Logger}),
		poster: activity.NewPoster(activity.Deps{Log: env.Log, Projector: proj, Logger: env.Logger}),
	}
}

// followers makes n users follow star, in bulk events.
func (e *faultEnv) followers(t *testing.T, star string, n int) []string {
	t.Helper()
	users := make([]string, n)
	changes := make([]*tidingsv1.EdgeChange, n)
	for i := range n {
		users[i] = fmt.Sprintf("f%06d", i)
		changes[i] = &tidingsv1.EdgeChange{UserId: users[i], Entity: entity.User(star), Following: true}
	}
	require.NoError(t, e.graph.Write(t.Context(), graph.BulkSubject, "", nil, changes))
	return users
}

func (e *faultEnv) post(t *testing.T, actor, text string) *tidingsv1.Activity {
	t.Helper()
	a, err := e.poster.Post(t.Context(), &tidingsv1.Activity{
		Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: actor}, Verb: "posted", Text: text,
	}, "", nil)
	require.NoError(t, err)
	return a
}

// workerProcess is a `tidings worker` child process.
type workerProcess struct {
	cmd      *exec.Cmd
	exited   chan struct{}
	httpAddr string
	out      *syncBuffer
}

func (e *faultEnv) startWorker(t *testing.T, extra ...string) *workerProcess {
	t.Helper()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	args := append([]string{"worker",
		"--nats-url", e.NATS.ClientURL(),
		"--redis-addr", e.redis.Addr(),
		"--auth-secret", faultSecret,
		"--http-addr", "",
		"--debug-addr", httpAddr,
		"--ack-wait", "2s",
	}, extra...)
	out := &syncBuffer{}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	w := &workerProcess{cmd: cmd, exited: make(chan struct{}), httpAddr: httpAddr, out: out}
	go func() {
		_ = cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() { w.kill() })
	return w
}

func (w *workerProcess) kill() {
	select {
	case <-w.exited:
	default:
		_ = w.cmd.Process.Signal(syscall.SIGKILL)
		<-w.exited
	}
}

// metric reads a counter summed over its labels from the worker's /metrics
// (on its debug address).
func (w *workerProcess) metric(t *testing.T, name string) float64 {
	resp, err := http.Get("http://" + w.httpAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			sum += v
		}
	}
	return sum
}

func (e *faultEnv) caughtUp(t *testing.T, spec eventlog.ConsumerSpec) bool {
	c, err := e.JS.Consumer(t.Context(), spec.Stream, spec.Durable)
	if err != nil {
		return false
	}
	info, err := c.Info(t.Context())
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func (e *faultEnv) waitFanout(t *testing.T, timeout time.Duration) {
	t.Helper()
	for _, spec := range []eventlog.ConsumerSpec{projection.ActivitiesConsumer, projection.ChunksConsumer} {
		testenv.Eventually(t, timeout, func() bool { return e.caughtUp(t, spec) }, "consumer %s did not catch up", spec.Durable)
	}
}

// occurrences counts, per user, how often id is in their home timeline.
func (e *faultEnv) occurrences(t *testing.T, users []string, id string) map[int][]string {
	t.Helper()
	want, err := ids.Parse(id)
	require.NoError(t, err)
	byCount := map[int][]string{}
	for start := 0; start < len(users); start += 1000 {
		batch := users[start:min(start+1000, len(users))]
		cmds := make([]*redis.StringCmd, len(batch))
		_, err := e.RDB.Pipelined(t.Context(), func(p redis.Pipeliner) error {
			for i, u := range batch {
				cmds[i] = p.Get(t.Context(), timelinestore.HomeKey(u))
			}
			return nil
		})
		require.True(t, err == nil || errors.Is(err, redis.Nil), "read timelines: %v", err)
		for i, c := range cmds {
			data, _ := c.Bytes()
			n := 0
			for _, got := range timelinestore.Decode(data) {
				if got == want {
					n++
				}
			}
			byCount[n] = append(byCount[n], batch[i])
		}
	}
	return byCount
}

// TestWorkerKilledMidFanout kills a worker with SIGKILL in the middle of a
// 50,000-follower fan-out; a second worker finishes it, and every follower
// has the activity exactly once.
func TestWorkerKilledMidFanout(t *testing.T) {
	e := newFaultEnv(t, false)
	users := e.followers(t, "star", 50_000)
	first := e.startWorker(t, "--fanout-chunk", "500", "--hot-on", "100000", "--hot-off", "90000")
	a := e.post(t, "star", "to fifty thousand")

	// Wait until some chunks are done, then kill the worker mid-way.
	testenv.Eventually(t, 60*time.Second, func() bool {
		return first.metric(t, `tidings_consumer_events_handled_total{consumer="fanout-chunks"}`) >= 5
	}, "the first worker handled no chunk:\n%s", first.out.String())
	first.kill()
	partial := e.occurrences(t, users, a.GetId())
	t.Logf("at the kill: %d followers have it, %d do not", len(partial[1]), len(partial[0]))
	require.NotEmpty(t, partial[0], "the kill must land mid-fan-out")

	e.startWorker(t, "--fanout-chunk", "500", "--hot-on", "100000", "--hot-off", "90000")
	e.waitFanout(t, 120*time.Second)
	done := e.occurrences(t, users, a.GetId())
	require.Len(t, done[1], len(users), "every follower has it exactly once (missing: %d, twice: %d)", len(done[0]), len(done[2]))
}

// TestRedisRestartDuringFanout stops Redis while a fan-out is under way and
// starts it again; once it is back nothing is lost.
func TestRedisRestartDuringFanout(t *testing.T) {
	e := newFaultEnv(t, true)
	users := e.followers(t, "star", 5_000)
	w := e.startWorker(t, "--fanout-chunk", "500")
	// Make sure the graph reached disk before the stop (AOF, fsync every second).
	require.NoError(t, e.RDB.Do(t.Context(), "BGREWRITEAOF").Err())
	testenv.Eventually(t, 30*time.Second, func() bool {
		info, err := e.RDB.Info(t.Context(), "persistence").Result()
		return err == nil && strings.Contains(info, "aof_rewrite_in_progress:0") && strings.Contains(info, "aof_rewrite_scheduled:0")
	}, "AOF rewrite did not finish")

	require.NoError(t, e.redis.Stop())
	a := e.post(t, "star", "while redis is down")
	testenv.Eventually(t, 30*time.Second, func() bool {
		return w.metric(t, "tidings_consumer_events_failed_total") >= 1
	}, "the worker never failed against the stopped redis:\n%s", w.out.String())
	require.NoError(t, e.redis.Restart(t.Context()))

	e.waitFanout(t, 120*time.Second)
	done := e.occurrences(t, users, a.GetId())
	require.Len(t, done[1], len(users), "missing: %d", len(done[0]))
}

// TestPoisonEventIsDeadLettered puts one undecodable event among a thousand
// posts: every post is delivered, and the poison event lands in the
// dead-letter stream without blocking the rest.
func TestPoisonEventIsDeadLettered(t *testing.T) {
	e := newFaultEnv(t, false)
	e.followers(t, "writer", 1)
	var posted []*tidingsv1.Activity
	for i := range 1000 {
		if i == 300 {
			_, err := e.JS.PublishMsg(t.Context(), &nats.Msg{Subject: eventlog.ActivitySubject("POISON"), Data: []byte("\xff\xff\xff not protobuf")})
			require.NoError(t, err)
		}
		posted = append(posted, e.post(t, "writer", fmt.Sprintf("post %d", i)))
	}
	w := e.startWorker(t, "--max-deliver", "3", "--home-cap", "2000")
	e.waitFanout(t, 120*time.Second)

	got, err := timelinestore.New(e.RDB).All(t.Context(), timelinestore.HomeKey("f000000"))
	require.NoError(t, err)
	require.Len(t, got, len(posted), "every post delivered")
	require.InDelta(t, 1, w.metric(t, "tidings_consumer_events_dead_lettered_total"), 0)

	dead, err := e.JS.Stream(t.Context(), eventlog.StreamDeadLetter)
	require.NoError(t, err)
	msg, err := dead.GetLastMsgForSubject(t.Context(), eventlog.SubjectDeadLetter+".>")
	require.NoError(t, err)
	require.Equal(t, eventlog.ActivitySubject("POISON"), msg.Header.Get(eventlog.HeaderDeadSubject))
	require.Contains(t, msg.Header.Get(eventlog.HeaderDeadError), "decode")
}
