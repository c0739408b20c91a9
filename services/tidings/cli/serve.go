package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/services/stack"
)

func newServeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve ROLE",
		Short: "Run one gRPC service, the worker, every service (api), or all of them, against external NATS and Redis",
	}
	for _, role := range stack.AllRoles() {
		cmd.AddCommand(newRoleCmd(string(role), "Run the "+string(role)+" role", []stack.Role{role}))
	}
	// API replicas and workers scale apart: `serve api` is every gRPC
	// service (and its JSON door) without the worker, `serve all` is
	// everything.
	cmd.AddCommand(newRoleCmd("api", "Run every gRPC service in one process, without the worker", slices.Clone(stack.ServiceRoles)))
	cmd.AddCommand(newRoleCmd("all", "Run every service, the worker and the web page in one process", stack.AllRoles()))
	return cmd
}

func newWorkerCmd() *cobra.Command {
	return newRoleCmd("worker", "Run the fan-out worker and projectors (same as `serve worker`)", []stack.Role{stack.RoleWorker})
}

func newRoleCmd(name, short string, roles []stack.Role) *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{Use: name, Short: short, Args: cobra.NoArgs}
	load := serverSetup(cmd, &cfg)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		logger, err := load()
		if err != nil {
			return err
		}
		if err := cfg.Complete(); err != nil {
			return usageError{err}
		}
		return stack.Run(cmd.Context(), stack.Options{Config: cfg, Roles: roles, Logger: logger})
	}
	return cmd
}

func newDevCmd() *cobra.Command {
	cfg := config.Default()
	opts := stack.DevOptions{DataDir: ".data", NATSPort: 7422, RedisPort: 7479, Demo: true}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything in one process on embedded NATS (JetStream) and a redis-server child",
		Long: `Runs every service and the worker in one process, with an embedded NATS
server with JetStream and a redis-server child process, both keeping their
data under --data-dir, so a restart keeps everything.`,
		Args: cobra.NoArgs,
	}
	load := serverSetup(cmd, &cfg)
	cmd.Flags().StringVar(&opts.DataDir, "data-dir", opts.DataDir, "directory for all data")
	cmd.Flags().IntVar(&opts.NATSPort, "nats-port", opts.NATSPort, "embedded NATS port on 127.0.0.1")
	cmd.Flags().IntVar(&opts.RedisPort, "redis-port", opts.RedisPort, "redis-server port on 127.0.0.1")
	cmd.Flags().BoolVar(&opts.SyncAlways, "nats-sync-always", false, "fsync every JetStream write before acknowledging it (sync_interval: always, as in production)")
	cmd.Flags().BoolVar(&opts.Demo, "demo", opts.Demo, "seed a small demo directory (ana, bo, cy, dee, eli) when the directory is empty")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		logger, err := load()
		if err != nil {
			return err
		}
		opts.Config, opts.Logger = cfg, logger
		out := cmd.OutOrStdout()
		opts.OnReady = func(a stack.Addrs) { printDevBanner(out, opts.DataDir, a) }
		return stack.RunDev(cmd.Context(), opts)
	}
	return cmd
}

func printDevBanner(out interface{ Write([]byte) (int, error) }, dataDir string, a stack.Addrs) {
	abs, _ := filepath.Abs(dataDir)
	token, err := devToken(dataDir, "employee", "ana", nil)
	if err != nil {
		token = "(could not mint: " + err.Error() + ")"
	}
	self, _ := os.Executable()
	fmt.Fprintf(out, `
Tidings is running.
  web      http://%s/            (sign in as anyone of the demo directory)
  JSON     http://%s/v1/...      (OpenAPI: http://%s/v1/openapi.json)
  gRPC     %s   (reflection on: grpcurl -plaintext %s list)
  metrics  http://%s/metrics   pprof  http://%s/debug/pprof/   health  http://%s/healthz
  data     %s

A token for the demo employee "ana" (valid 24h):
  export TIDINGS_TOKEN=%s

Try, in another terminal (the CLI uses an admin token from the data dir):
  curl -H "Authorization: Bearer $(%s token bo)" http://%s/v1/users/bo/home
  %s profile get ana
  %s feed home bo

`, a.HTTP, a.HTTP, a.HTTP, a.GRPC, a.GRPC, a.Debug, a.Debug, a.HTTP, abs, token, self, a.HTTP, self, self)
}

// devToken mints a token with the secret of a dev data directory.
func devToken(dataDir, kind, id string, roles []string) (string, error) {
	cfg := config.Default()
	cfg.AuthSecretFile = filepath.Join(dataDir, stack.SecretFile)
	return mintWith(cfg, kind, id, roles, 24*time.Hour)
}
