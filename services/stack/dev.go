package stack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/natsserver"
	"github.com/tidingshq/tidings/pkg/redisserver"
)

// DevOptions configure RunDev.
type DevOptions struct {
	Options
	// DataDir holds everything: JetStream's store, Redis's append-only file,
	// the signing secret. A restart on the same directory keeps all data.
	DataDir string
	// NATSPort and RedisPort are the embedded servers' ports on 127.0.0.1.
	NATSPort  int
	RedisPort int
	// SyncAlways makes the embedded JetStream fsync every write before it
	// acknowledges it, as production event streams do (docs/architecture.md).
	SyncAlways bool
	// Demo seeds a small demo directory (ana, bo, cy, dee, eli), a few
	// follows, records and posts when the directory is empty.
	Demo bool
}

// Files under the data directory.
const (
	SecretFile   = "auth.secret"
	CLITokenFile = "cli.token"
)

// RunDev runs every role in one process on an embedded NATS server with
// JetStream and a redis-server child process, both keeping their data under
// opts.DataDir.
func RunDev(ctx context.Context, opts DevOptions) error {
	if err := os.MkdirAll(opts.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	secret, err := loadOrCreateSecret(filepath.Join(opts.DataDir, SecretFile))
	if err != nil {
		return err
	}
	ns, err := natsserver.Start(natsserver.Options{
		StoreDir:   filepath.Join(opts.DataDir, "nats"),
		Port:       opts.NATSPort,
		Name:       "tidings-dev",
		SyncAlways: opts.SyncAlways,
	})
	if err != nil {
		return fmt.Errorf("start embedded nats: %w", err)
	}
	defer ns.Shutdown()
	rs, err := redisserver.Start(ctx, redisserver.Options{
		Dir:     filepath.Join(opts.DataDir, "redis"),
		Port:    opts.RedisPort,
		Persist: true,
	})
	if err != nil {
		return fmt.Errorf("start redis: %w", err)
	}
	defer func() { _ = rs.Stop() }()

	cfg := opts.Config
	cfg.NATSURL = ns.ClientURL()
	cfg.RedisAddrs = []string{rs.Addr()}
	cfg.AuthSecret = secret
	if err := cfg.Validate(); err != nil {
		return err
	}
	opts.Config = cfg
	opts.Roles = AllRoles()
	tokenCfg := auth.TokenConfig{Secret: []byte(secret), Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience}
	cliToken, err := auth.Mint(tokenCfg, auth.Identity{Kind: auth.KindAdmin, ID: "dev-admin"}, 30*24*time.Hour, time.Now())
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(opts.DataDir, CLITokenFile), []byte(cliToken+"\n"), 0o600); err != nil {
		return fmt.Errorf("write cli token: %w", err)
	}
	// The web page signs people in with development tokens, as anyone
	// (admins included): only on loopback, where only this machine's user
	// reaches it.
	devTokens := func(kind auth.Kind, id string) (string, error) {
		return auth.Mint(tokenCfg, auth.Identity{Kind: kind, ID: id}, 12*time.Hour, time.Now())
	}
	if isLoopback(cfg.HTTPAddr) {
		opts.DevTokens = devTokens
	} else {
		opts.Logger.Warn("the web page's development sign-in is off: --http-addr is not a loopback address; sign in with a token", "http_addr", cfg.HTTPAddr)
	}
	if opts.Demo {
		ready := opts.OnReady
		opts.OnReady = func(a Addrs) {
			if err := seedDemo(ctx, a.GRPC, cliToken, devTokens); err != nil {
				opts.Logger.Warn("demo directory not seeded", "error", err)
			}
			if ready != nil {
				ready(a)
			}
		}
	}
	opts.Logger.Info("embedded dependencies started", "nats", ns.ClientURL(), "redis", rs.Addr(), "data_dir", opts.DataDir)
	return Run(ctx, opts.Options)
}

// loadOrCreateSecret keeps one signing secret per data directory, so tokens
// outlive restarts.
func loadOrCreateSecret(path string) (string, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < auth.MinSecretBytes {
			return "", fmt.Errorf("%s holds a secret shorter than %d bytes", path, auth.MinSecretBytes)
		}
		return s, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read secret: %w", err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("generate secret: %w", err)
	}
	s := hex.EncodeToString(raw[:])
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write secret: %w", err)
	}
	return s, nil
}

// isLoopback reports whether a listen address (host:port) binds loopback
// only: 127.0.0.0/8, ::1 or localhost (an empty host binds every
// interface).
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
