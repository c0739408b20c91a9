// Package redisserver runs a real redis-server as a child process: the one
// `tidings dev` keeps its projections in, and the ones tests start on free
// loopback ports.
package redisserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrNotInstalled means no redis-server binary was found.
var ErrNotInstalled = errors.New("redis-server not found on PATH: run `make deps` (installs Debian's redis-server) or install Redis 7")

// Options configure a server.
type Options struct {
	// Dir holds the server's files (append-only file, logs).
	Dir string
	// Port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Persist turns on the append-only file so that a restart keeps the
	// data. Tests leave it off.
	Persist bool
	// Args are extra configuration directives, as "name value" pairs.
	Args []string
}

// Server is a running redis-server.
type Server struct {
	opts Options
	addr string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs *lockedWriter
}

// Start runs redis-server and waits until it answers PING.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNotInstalled
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create redis dir: %w", err)
	}
	s := &Server{opts: opts}
	const attempts = 5
	var lastErr error
	for range attempts {
		port := opts.Port
		if port == 0 {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			port = p
		}
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if lastErr = s.start(ctx); lastErr == nil {
			return s, nil
		}
		if opts.Port != 0 {
			break
		}
	}
	return nil, lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) start(ctx context.Context) error {
	_, port, _ := net.SplitHostPort(s.addr)
	args := []string{
		"--port", port,
		"--bind", "127.0.0.1",
		"--dir", s.opts.Dir,
		"--daemonize", "no",
		"--save", "",
		"--logfile", "",
	}
	if s.opts.Persist {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	} else {
		args = append(args, "--appendonly", "no")
	}
	for i := 0; i+1 < len(s.opts.Args); i += 2 {
		args = append(args, "--"+s.opts.Args[i], s.opts.Args[i+1])
	}
	cmd := exec.Command("redis-server", args...) //nolint:gosec // G204: a fixed binary with the server's own options
	logs := &lockedWriter{}
	cmd.Stdout = logs
	cmd.Stderr = logs
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.logs = cmd, done, logs
	s.mu.Unlock()
	if err := s.waitReady(ctx, done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on %s: %w\n%s", s.addr, err, logs.String())
	}
	return nil
}

// waitReady polls PING until it answers, the process exits, or 15s pass.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}) error {
	client := redis.NewClient(&redis.Options{Addr: s.addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := client.Ping(ctx).Err(); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("exited before answering")
		case <-ctx.Done():
			return fmt.Errorf("not answering PING: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// stopped reports whether the server process has exited.
func (s *Server) stopped() bool {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.addr }

// Dir is the server's directory: its dump.rdb (written by SAVE) and
// append-only files.
func (s *Server) Dir() string { return s.opts.Dir }

// Logs returns what the server printed so far.
func (s *Server) Logs() string {
	s.mu.Lock()
	logs := s.logs
	s.mu.Unlock()
	return logs.String()
}

// Stop shuts the server down (SIGTERM) and waits for it to exit.
func (s *Server) Stop() error { return s.signal(syscall.SIGTERM) }

// Kill kills the server (SIGKILL) and waits for it to exit, as a crash would.
func (s *Server) Kill() error { return s.signal(syscall.SIGKILL) }

func (s *Server) signal(sig os.Signal) error {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal redis-server: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return errors.New("redis-server did not stop in 30s; killed")
	}
}

// Restart starts the server again on the same address and directory after
// Stop or Kill.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start(ctx)
}

type lockedWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	const maxLog = 1 << 20
	if w.buf.Len() > maxLog {
		w.buf.Reset()
	}
	return w.buf.Write(p)
}
