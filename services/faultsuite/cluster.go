package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// cluster is the running local cluster, as deploy/local-cluster/cluster.sh
// recorded it in its directory: settings in cluster.env, one pid file per
// process under run/, logs under logs/.
type cluster struct {
	dir    string
	script string
	env    map[string]string
	http   *http.Client
	base   int
}

func openCluster(dir, script string) (*cluster, error) {
	f, err := os.Open(filepath.Join(dir, "cluster.env"))
	if err != nil {
		return nil, fmt.Errorf("read the cluster's settings (is it up? make cluster-up): %w", err)
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			env[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read cluster.env: %w", err)
	}
	for _, k := range []string{"CLUSTER_BASE_PORT", "NATS_URLS", "REDIS_ADDRS", "API_GRPC", "API_HTTP", "WORKER_HTTP", "AUTH_SECRET_FILE", "CLUSTER_ACK_WAIT"} {
		if env[k] == "" {
			return nil, fmt.Errorf("cluster.env has no %s", k)
		}
	}
	base, err := strconv.Atoi(env["CLUSTER_BASE_PORT"])
	if err != nil {
		return nil, fmt.Errorf("CLUSTER_BASE_PORT: %w", err)
	}
	return &cluster{dir: dir, script: script, env: env, http: &http.Client{Timeout: 3 * time.Second}, base: base}, nil
}

func (c *cluster) list(key string) []string { return strings.Split(c.env[key], ",") }

func (c *cluster) ackWait() time.Duration {
	d, err := time.ParseDuration(c.env["CLUSTER_ACK_WAIT"])
	if err != nil {
		return 30 * time.Second
	}
	return d
}

// names are every process of the topology.
func (c *cluster) names() []string {
	n := []string{"nats-1", "nats-2", "nats-3"}
	for i := 1; i <= 6; i++ {
		n = append(n, fmt.Sprintf("redis-%d", i))
	}
	for i := range c.list("WORKER_HTTP") {
		n = append(n, fmt.Sprintf("worker-%d", i+1))
	}
	for i := range c.list("API_GRPC") {
		n = append(n, fmt.Sprintf("api-%d", i+1))
	}
	return n
}

// pid returns the recorded pid of a process if it is alive.
func (c *cluster) pid(name string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(c.dir, "run", name+".pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// zombie reports whether a process has exited but was not yet reaped.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] == 'Z'
}

// signal sends sig to a process of the cluster.
func (c *cluster) signal(name string, sig syscall.Signal) error {
	pid, ok := c.pid(name)
	if !ok {
		return fmt.Errorf("%s is not running", name)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s to %s (%d): %w", sig, name, pid, err)
	}
	return nil
}

// kill sends SIGKILL and waits until the process is gone.
func (c *cluster) kill(ctx context.Context, name string) error {
	if err := c.signal(name, syscall.SIGKILL); err != nil {
		return err
	}
	return poll(ctx, 30*time.Second, func() bool { _, alive := c.pid(name); return !alive })
}

// scriptCmd runs a subcommand of the cluster script with the cluster's
// settings, so it computes the same ports.
func (c *cluster) scriptCmd(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, c.script, args...)
	cmd.Env = append(os.Environ(),
		"CLUSTER_DIR="+c.dir,
		"CLUSTER_BASE_PORT="+c.env["CLUSTER_BASE_PORT"],
		"CLUSTER_WORKERS="+c.env["CLUSTER_WORKERS"],
		"CLUSTER_APIS="+c.env["CLUSTER_APIS"],
		"CLUSTER_ACK_WAIT="+c.env["CLUSTER_ACK_WAIT"],
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", c.script, strings.Join(args, " "), err, out)
	}
	return nil
}

// start starts a process that is not running, through the cluster script.
func (c *cluster) start(ctx context.Context, name string) error {
	return c.scriptCmd(ctx, "start", name)
}

// stop stops a process gracefully, through the cluster script.
func (c *cluster) stop(ctx context.Context, name string) error {
	return c.scriptCmd(ctx, "stop", name)
}

func (c *cluster) port(name string) int {
	i, _ := strconv.Atoi(name[strings.LastIndexByte(name, '-')+1:])
	switch {
	case strings.HasPrefix(name, "nats-"):
		return c.base + 20 + i // monitoring
	case strings.HasPrefix(name, "redis-"):
		return c.base + 30 + i
	case strings.HasPrefix(name, "api-"):
		return c.base + 60 + i // HTTP
	case strings.HasPrefix(name, "worker-"):
		return c.base + 70 + i
	}
	return 0
}

func (c *cluster) redisAddr(name string) string { return fmt.Sprintf("127.0.0.1:%d", c.port(name)) }

func (c *cluster) redisName(addr string) string {
	_, p, _ := strings.Cut(addr, ":")
	port, _ := strconv.Atoi(p)
	return fmt.Sprintf("redis-%d", port-c.base-30)
}

// healthy reports whether one process answers as healthy.
func (c *cluster) healthy(ctx context.Context, name string) bool {
	if _, ok := c.pid(name); !ok {
		return false
	}
	if strings.HasPrefix(name, "redis-") {
		rdb := redis.NewClient(&redis.Options{Addr: c.redisAddr(name), MaxRetries: -1})
		defer rdb.Close()
		info, err := rdb.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/healthz", c.port(name)), nil)
	if err != nil {
		return false
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

// unhealthy returns the processes that are not running and healthy.
func (c *cluster) unhealthy(ctx context.Context) []string {
	var bad []string
	for _, n := range c.names() {
		if !c.healthy(ctx, n) {
			bad = append(bad, n)
		}
	}
	return bad
}

// restore starts whatever is not running and waits until every process
// is healthy: each fault starts from the whole topology.
func (c *cluster) restore(ctx context.Context, limit time.Duration) error {
	for _, n := range c.names() {
		if _, ok := c.pid(n); !ok {
			if err := c.start(ctx, n); err != nil {
				return err
			}
		}
	}
	var bad []string
	err := poll(ctx, limit, func() bool { bad = c.unhealthy(ctx); return len(bad) == 0 })
	if err != nil {
		return fmt.Errorf("not healthy after %s: %s", limit, strings.Join(bad, ", "))
	}
	return nil
}

// redisNode is one line of CLUSTER NODES.
type redisNode struct {
	id, addr, master string
	primary, failed  bool
}

// redisNodes asks any reachable node for the cluster's view of itself.
func (c *cluster) redisNodes(ctx context.Context) ([]redisNode, error) {
	var lastErr error
	for _, addr := range c.list("REDIS_ADDRS") {
		rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		out, err := rdb.ClusterNodes(ctx).Result()
		_ = rdb.Close()
		if err != nil {
			lastErr = err
			continue
		}
		var nodes []redisNode
		for line := range strings.Lines(out) {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			nodes = append(nodes, redisNode{
				id: f[0], addr: addr, master: f[3],
				primary: strings.Contains(f[2], "master"),
				failed:  strings.Contains(f[2], "fail"),
			})
		}
		return nodes, nil
	}
	return nil, fmt.Errorf("no redis node answers CLUSTER NODES: %w", lastErr)
}

// primaryWithReplica returns a healthy primary and its replica, by name.
func (c *cluster) primaryWithReplica(ctx context.Context) (primary, replica string, err error) {
	nodes, err := c.redisNodes(ctx)
	if err != nil {
		return "", "", err
	}
	for _, p := range nodes {
		if !p.primary || p.failed {
			continue
		}
		for _, r := range nodes {
			if r.master == p.id && !r.failed {
				return c.redisName(p.addr), c.redisName(r.addr), nil
			}
		}
	}
	return "", "", errors.New("no healthy primary with a replica")
}

// primaries returns the addresses of the primaries that are up.
func (c *cluster) primaries(ctx context.Context) ([]string, error) {
	nodes, err := c.redisNodes(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range nodes {
		if n.primary && !n.failed {
			out = append(out, n.addr)
		}
	}
	return out, nil
}

// streamLeader returns the NATS process that leads a stream, asked through
// the JetStream API.
func (c *cluster) streamLeader(ctx context.Context, stream string) (string, error) {
	nc, err := nats.Connect(c.env["NATS_URLS"], nats.Name("tidings-faultsuite"))
	if err != nil {
		return "", fmt.Errorf("connect nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return "", err
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("stream %s info: %w", stream, err)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "", fmt.Errorf("stream %s has no leader", stream)
	}
	if info.Config.Replicas != 3 {
		return "", fmt.Errorf("stream %s has %d replicas, want 3", stream, info.Config.Replicas)
	}
	// The servers are named n1..n3 (cluster.sh), the processes nats-1..3.
	return "nats-" + strings.TrimPrefix(info.Cluster.Leader, "n"), nil
}

// poll calls cond every 250ms until it holds or limit passes.
func poll(ctx context.Context, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not so after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
