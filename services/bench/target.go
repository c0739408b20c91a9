package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tidingshq/tidings/services/stack"
)

// Target is a running Tidings stack the bench drives: its gRPC address,
// its /metrics page (the fan-out's delivery counter and process memory are
// read from it), its Redis (for the ceiling and raw baselines measured on
// the same server), and the secret that signs tokens, so that the bench can
// act as its synthetic employees and apps.
type Target struct {
	GRPCAddr   string
	MetricsURL string
	RedisAddr  string
	// NATSURL, when set, lets the bench stop and start the fan-out consumer
	// (to time the worker's drain apart from posting) and measure
	// JetStream's publish ceiling on the same server.
	NATSURL  string
	Secret   string
	Issuer   string
	Audience string
}

// StackSpec configures a stack the bench starts itself.
type StackSpec struct {
	// SyncAlways fsyncs every JetStream write before acknowledging it.
	SyncAlways bool
	// HotOn and HotOff are the stack's hot-entity thresholds.
	HotOn, HotOff int64
}

// fsyncName names the JetStream fsync policy a stack ran with.
func (s StackSpec) fsyncName() string {
	if s.SyncAlways {
		return "always"
	}
	return "default"
}

// embedded is a `tidings dev` child process on free loopback ports with its
// own data directory: the services, the worker and NATS in one process, and
// its redis-server child.
type embedded struct {
	Target
	cmd  *exec.Cmd
	dir  string
	done chan error
}

// startEmbedded starts `<bin> dev` and waits until its gRPC health check
// reports SERVING.
func startEmbedded(ctx context.Context, bin, parent string, spec StackSpec) (*embedded, error) {
	dir, err := os.MkdirTemp(parent, "stack-")
	if err != nil {
		return nil, fmt.Errorf("create stack dir: %w", err)
	}
	ports, err := freePorts(5)
	if err != nil {
		return nil, err
	}
	grpcAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[1]))
	debugAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[4]))
	args := []string{"dev",
		"--data-dir", dir,
		"--grpc-addr", grpcAddr,
		"--http-addr", httpAddr,
		"--debug-addr", debugAddr,
		"--demo=false",
		"--nats-port", strconv.Itoa(ports[2]),
		"--redis-port", strconv.Itoa(ports[3]),
		"--log-level", "warn",
		"--hot-on", strconv.FormatInt(spec.HotOn, 10),
		"--hot-off", strconv.FormatInt(spec.HotOff, 10),
		// The load comes from a few callers at rates no person makes:
		// per-caller rate limits would measure the limiter's refusals.
		"--rate-employee", "0", "--rate-app", "0", "--rate-admin", "0",
	}
	if spec.SyncAlways {
		args = append(args, "--nats-sync-always")
	}
	logf, err := os.Create(filepath.Join(dir, "stack.log"))
	if err != nil {
		return nil, fmt.Errorf("create stack log: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	// The stack dies with the bench, whatever ends the bench.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s dev: %w", bin, err)
	}
	e := &embedded{cmd: cmd, dir: dir, done: make(chan error, 1)}
	go func() { e.done <- cmd.Wait() }()
	e.GRPCAddr, e.MetricsURL = grpcAddr, "http://"+debugAddr+"/metrics"
	e.RedisAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[3]))
	e.NATSURL = "nats://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[2]))
	e.Issuer, e.Audience = "tidings", "tidings"
	if err := e.waitServing(ctx, 60*time.Second); err != nil {
		e.stop()
		return nil, fmt.Errorf("%w (log: %s)", err, filepath.Join(dir, "stack.log"))
	}
	secret, err := os.ReadFile(filepath.Join(dir, stack.SecretFile))
	if err != nil {
		e.stop()
		return nil, fmt.Errorf("read stack secret: %w", err)
	}
	e.Secret = strings.TrimSpace(string(secret))
	return e, nil
}

// cleanEnv keeps TIDINGS_* settings of the caller's environment away from
// the child, whose flags say everything.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TIDINGS_") {
			env = append(env, kv)
		}
	}
	return env
}

func (e *embedded) waitServing(ctx context.Context, limit time.Duration) error {
	conn, err := grpc.NewClient(e.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial stack: %w", err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(limit)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		select {
		case err := <-e.done:
			return fmt.Errorf("stack exited before serving: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stack not serving after %s", limit)
		}
	}
}

// stop ends the stack gracefully (SIGTERM), hard after 30 s, and removes
// its data.
func (e *embedded) stop() {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-e.done:
		_ = err // it exits as asked; its log says how
	case <-time.After(30 * time.Second):
		_ = e.cmd.Process.Kill()
		err := <-e.done
		_ = err
	}
	_ = os.RemoveAll(e.dir)
}

// freePorts reserves n loopback ports by binding them all at once, then
// releases them for the child to bind.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			_ = l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("reserve a port: %w", err)
		}
		lns = append(lns, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}
