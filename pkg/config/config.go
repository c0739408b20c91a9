// Package config holds the one Config of a Tidings process: defaults, flags
// with TIDINGS_* environment fallback, and validation before any connection
// opens.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// EnvPrefix prefixes the environment variable of every flag: --redis-addr is
// also TIDINGS_REDIS_ADDR.
const EnvPrefix = "TIDINGS_"

// Config is everything a Tidings process is told.
type Config struct {
	// GRPCAddr is where the gRPC server listens.
	GRPCAddr string
	// HTTPAddr is the employee-facing HTTP listener: the HTTP/JSON API
	// (/v1/), the web page of the web role, and /healthz. Empty turns it off.
	HTTPAddr string
	// DebugAddr is the operators' HTTP listener: /metrics, /debug/pprof and
	// /healthz. Keep it off public networks. Empty turns it off.
	DebugAddr string
	// WebAPIAddr and WebAPIURL are, for a web role that runs without the
	// API services in its process, the API's gRPC address (for rendering
	// pages) and HTTP base URL (for the browser's /v1/ calls, proxied).
	WebAPIAddr string
	WebAPIURL  string
	// WebSecureCookies marks the session cookie Secure even when the
	// request did not come over TLS (TLS ends at a proxy in front).
	WebSecureCookies bool
	// NATSURL is the NATS server (or comma-separated cluster) to use.
	NATSURL string
	// RedisAddrs are the Redis server, or the seeds of a Redis Cluster.
	RedisAddrs []string
	// RedisPassword authenticates to Redis; empty for none.
	RedisPassword string

	// AuthSecret is the HMAC key that signs tokens (at least 32 bytes).
	AuthSecret string
	// AuthSecretFile, when set, is read for AuthSecret.
	AuthSecretFile string
	// AuthIssuer is the required token issuer.
	AuthIssuer string
	// AuthAudience is the required token audience.
	AuthAudience string

	// LogLevel is debug, info, warn or error.
	LogLevel string
	// LogFormat is text or json.
	LogFormat string

	// Reflection turns on gRPC server reflection.
	Reflection bool
	// MaxRecvBytes caps a received message.
	MaxRecvBytes int
	// MaxSendBytes caps a sent message.
	MaxSendBytes int
	// MaxConcurrentStreams caps streams per client connection.
	MaxConcurrentStreams uint32
	// MaxHeaderBytes caps request headers.
	MaxHeaderBytes uint32
	// MaxDeadline caps how long any call may run.
	MaxDeadline time.Duration
	// ShutdownGrace is how long a graceful stop may take before a hard stop.
	ShutdownGrace time.Duration

	// StreamReplicas is the replication factor of the JetStream streams
	// (1 on one server, 3 in production).
	StreamReplicas int
	// DuplicateWindow is how long JetStream remembers message ids; it must
	// outlast publisher retries.
	DuplicateWindow time.Duration

	// MaxFollowing caps how many entities one user may follow.
	MaxFollowing int64
	// HomeCap is the number of entries a home timeline keeps.
	HomeCap int
	// FeedCap is the number of entries an entity feed keeps.
	FeedCap int
	// FanoutChunk is the largest audience one worker writes in one step.
	FanoutChunk int
	// Backfill is how many recent activities a new follow copies in.
	Backfill int
	// AckWait is how long the worker's consumers wait for an ack before
	// redelivering an event to another worker.
	AckWait time.Duration
	// MaxDeliver is how often an event that fails on its own content is
	// tried before it goes to the dead-letter stream. Transient failures
	// (Redis or NATS unavailable) never count: they are retried until the
	// outage ends.
	MaxDeliver int
	// WatchBuffer is how many items a Watch client may fall behind before
	// it is cut off.
	WatchBuffer int
	// HotOn and HotOff are the follower counts above which an entity's
	// activities are pulled at read time, and below which they are pushed
	// again.
	HotOn  int64
	HotOff int64
	// InactiveAfter: users who have not read their home timeline for this
	// long are skipped by the fan-out; their next read rebuilds it.
	InactiveAfter time.Duration
	// NotifyWindow is how long notifications of the same kind about the
	// same thing fold into one item; NotifyCap and NotifyMaxAge bound the
	// items each user keeps.
	NotifyWindow time.Duration
	NotifyCap    int
	NotifyMaxAge time.Duration

	// Security holds identity, transport, limits and audit (security.go).
	Security
	// Tracing says where traces go (tracing.go).
	Tracing
}

// Default returns the configuration of a single development process.
func Default() Config {
	return Config{
		GRPCAddr:             "127.0.0.1:7400",
		HTTPAddr:             "127.0.0.1:7401",
		DebugAddr:            "127.0.0.1:7402",
		WebAPIAddr:           "127.0.0.1:7400",
		WebAPIURL:            "http://127.0.0.1:7401",
		NATSURL:              "nats://127.0.0.1:4222",
		RedisAddrs:           []string{"127.0.0.1:6379"},
		AuthIssuer:           "tidings",
		AuthAudience:         "tidings",
		LogLevel:             "info",
		LogFormat:            "text",
		Reflection:           true,
		MaxRecvBytes:         4 << 20,
		MaxSendBytes:         16 << 20,
		MaxConcurrentStreams: 1000,
		MaxHeaderBytes:       16 << 10,
		MaxDeadline:          60 * time.Second,
		ShutdownGrace:        10 * time.Second,
		StreamReplicas:       1,
		DuplicateWindow:      10 * time.Minute,
		MaxFollowing:         5000,
		HomeCap:              800,
		FeedCap:              3000,
		FanoutChunk:          5000,
		Backfill:             20,
		AckWait:              30 * time.Second,
		MaxDeliver:           8,
		WatchBuffer:          256,
		HotOn:                10000,
		HotOff:               8000,
		InactiveAfter:        14 * 24 * time.Hour,
		NotifyWindow:         24 * time.Hour,
		NotifyCap:            200,
		NotifyMaxAge:         90 * 24 * time.Hour,
		Security:             DefaultSecurity(),
		Tracing:              DefaultTracing(),
	}
}

// BindFlags registers every field as a flag on fs, with c's values as
// defaults.
func (c *Config) BindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.GRPCAddr, "grpc-addr", c.GRPCAddr, "gRPC listen address")
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "HTTP address of the JSON API, the web page and /healthz (empty: off)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "operators' HTTP address: /metrics, /debug/pprof, /healthz (empty: off; keep off public networks)")
	fs.StringVar(&c.WebAPIAddr, "web-api-addr", c.WebAPIAddr, "web role without the API in process: the API's gRPC address")
	fs.StringVar(&c.WebAPIURL, "web-api-url", c.WebAPIURL, "web role without the API in process: the API's HTTP base URL")
	fs.BoolVar(&c.WebSecureCookies, "web-secure-cookies", c.WebSecureCookies, "mark the web session cookie Secure (TLS ends at a proxy in front)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "NATS server URL(s), comma-separated")
	fs.StringSliceVar(&c.RedisAddrs, "redis-addr", c.RedisAddrs, "Redis address, or Redis Cluster seed addresses")
	fs.StringVar(&c.RedisPassword, "redis-password", c.RedisPassword, "Redis password")
	fs.StringVar(&c.AuthSecret, "auth-secret", c.AuthSecret, "HMAC secret that signs tokens (>= 32 bytes)")
	fs.StringVar(&c.AuthSecretFile, "auth-secret-file", c.AuthSecretFile, "file holding the HMAC secret")
	fs.StringVar(&c.AuthIssuer, "auth-issuer", c.AuthIssuer, "required token issuer")
	fs.StringVar(&c.AuthAudience, "auth-audience", c.AuthAudience, "required token audience")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.BoolVar(&c.Reflection, "reflection", c.Reflection, "serve gRPC reflection")
	fs.IntVar(&c.MaxRecvBytes, "max-recv-bytes", c.MaxRecvBytes, "largest gRPC message received")
	fs.IntVar(&c.MaxSendBytes, "max-send-bytes", c.MaxSendBytes, "largest gRPC message sent")
	fs.Uint32Var(&c.MaxConcurrentStreams, "max-concurrent-streams", c.MaxConcurrentStreams, "gRPC streams per connection")
	fs.Uint32Var(&c.MaxHeaderBytes, "max-header-bytes", c.MaxHeaderBytes, "largest gRPC header list")
	fs.DurationVar(&c.MaxDeadline, "max-deadline", c.MaxDeadline, "longest a call may run")
	fs.DurationVar(&c.ShutdownGrace, "shutdown-grace", c.ShutdownGrace, "graceful shutdown limit")
	fs.IntVar(&c.StreamReplicas, "stream-replicas", c.StreamReplicas, "JetStream stream replicas (3 in production)")
	fs.DurationVar(&c.DuplicateWindow, "duplicate-window", c.DuplicateWindow, "JetStream duplicate window")
	fs.Int64Var(&c.MaxFollowing, "max-following", c.MaxFollowing, "most entities one user may follow")
	fs.IntVar(&c.HomeCap, "home-cap", c.HomeCap, "entries a home timeline keeps")
	fs.IntVar(&c.FeedCap, "feed-cap", c.FeedCap, "entries an entity feed keeps")
	fs.IntVar(&c.FanoutChunk, "fanout-chunk", c.FanoutChunk, "largest audience written in one step; larger ones are chunked")
	fs.IntVar(&c.Backfill, "backfill", c.Backfill, "recent activities a new follow copies into the home timeline")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "worker: redeliver an unacknowledged event after this long")
	fs.IntVar(&c.MaxDeliver, "max-deliver", c.MaxDeliver, "worker: deliveries of an event failing on its own content before it is dead-lettered (outages never count)")
	fs.IntVar(&c.WatchBuffer, "watch-buffer", c.WatchBuffer, "items a Watch client may fall behind before it is cut off")
	fs.Int64Var(&c.HotOn, "hot-on", c.HotOn, "followers above which an entity is pulled at read time, not pushed")
	fs.Int64Var(&c.HotOff, "hot-off", c.HotOff, "followers below which a pulled entity is pushed again")
	fs.DurationVar(&c.InactiveAfter, "inactive-after", c.InactiveAfter, "skip the home timelines of users who have not read them for this long (0: never)")
	fs.DurationVar(&c.NotifyWindow, "notify-window", c.NotifyWindow, "notifications of the same kind about the same thing within this long fold into one")
	fs.IntVar(&c.NotifyCap, "notify-cap", c.NotifyCap, "notifications each user keeps")
	fs.DurationVar(&c.NotifyMaxAge, "notify-max-age", c.NotifyMaxAge, "notifications older than this (before the user's newest) are dropped")
	c.bindFlags(fs)
	c.bindTracingFlags(fs)
}

// ApplyEnv sets every flag of fs that was not given on the command line
// from its TIDINGS_* environment variable, if set.
func ApplyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := EnvName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

// EnvName returns the environment variable of a flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Complete reads secrets from files and validates the configuration.
func (c *Config) Complete() error {
	if c.AuthSecretFile != "" {
		b, err := os.ReadFile(c.AuthSecretFile)
		if err != nil {
			return fmt.Errorf("read auth secret: %w", err)
		}
		c.AuthSecret = strings.TrimSpace(string(b))
	}
	return c.Validate()
}

// Validate reports every problem of the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	_, _, err := net.SplitHostPort(c.GRPCAddr)
	check(err == nil, "grpc-addr %q: want host:port", c.GRPCAddr)
	if c.HTTPAddr != "" {
		_, _, err := net.SplitHostPort(c.HTTPAddr)
		check(err == nil, "http-addr %q: want host:port", c.HTTPAddr)
	}
	if c.DebugAddr != "" {
		_, _, err := net.SplitHostPort(c.DebugAddr)
		check(err == nil, "debug-addr %q: want host:port", c.DebugAddr)
		check(c.DebugAddr != c.HTTPAddr || strings.HasSuffix(c.DebugAddr, ":0"), "debug-addr and http-addr must differ")
	}
	check(c.NATSURL != "", "nats-url must be set")
	check(len(c.RedisAddrs) > 0, "redis-addr must be set")
	check(c.AuthSecret != "" || c.OIDCIssuer != "", "%v", errNoAuth)
	check(c.AuthSecret == "" || len(c.AuthSecret) >= 32, "auth-secret must be at least 32 bytes (set --auth-secret, --auth-secret-file or %s)", EnvName("auth-secret"))
	check(c.AuthIssuer != "" && c.AuthAudience != "", "auth-issuer and auth-audience must be set")
	check(c.LogFormat == "text" || c.LogFormat == "json", "log-format %q: want text or json", c.LogFormat)
	check(c.MaxRecvBytes > 0 && c.MaxRecvBytes <= 64<<20, "max-recv-bytes must be 1..64MiB")
	check(c.MaxSendBytes > 0 && c.MaxSendBytes <= 64<<20, "max-send-bytes must be 1..64MiB")
	check(c.MaxConcurrentStreams > 0, "max-concurrent-streams must be positive")
	check(c.MaxHeaderBytes >= 1024, "max-header-bytes must be at least 1024")
	check(c.MaxDeadline > 0, "max-deadline must be positive")
	check(c.ShutdownGrace > 0, "shutdown-grace must be positive")
	check(c.StreamReplicas == 1 || c.StreamReplicas == 3 || c.StreamReplicas == 5, "stream-replicas must be 1, 3 or 5")
	check(c.DuplicateWindow >= time.Minute, "duplicate-window must be at least 1m")
	check(c.MaxFollowing > 0, "max-following must be positive")
	check(c.HomeCap >= 10 && c.HomeCap <= 10000, "home-cap must be 10..10000")
	check(c.FeedCap >= 10 && c.FeedCap <= 100000, "feed-cap must be 10..100000")
	check(c.FanoutChunk >= 100 && c.FanoutChunk <= 50000, "fanout-chunk must be 100..50000")
	check(c.Backfill >= 0 && c.Backfill <= c.HomeCap, "backfill must be 0..home-cap")
	check(c.AckWait >= time.Second, "ack-wait must be at least 1s")
	check(c.MaxDeliver >= 2, "max-deliver must be at least 2")
	check(c.WatchBuffer >= 1 && c.WatchBuffer <= 100000, "watch-buffer must be 1..100000")
	check(c.HotOff > 0 && c.HotOff < c.HotOn, "hot-off must be positive and below hot-on")
	check(c.NotifyWindow >= time.Second, "notify-window must be at least 1s")
	check(c.NotifyCap >= 10 && c.NotifyCap <= 10000, "notify-cap must be 10..10000")
	check(c.NotifyMaxAge >= time.Hour, "notify-max-age must be at least 1h")
	errs = append(errs, c.validate(c)...)
	errs = append(errs, c.validateTracing()...)
	return errors.Join(errs...)
}
