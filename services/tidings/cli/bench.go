package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/services/bench"
	"github.com/tidingshq/tidings/services/stack"
)

func newBenchCmd() *cobra.Command {
	var (
		jsonPath, workDir                    string
		users, posts                         int
		addr, metricsURL, redisAddr, dataDir string
		secretFile, issuer, audience         string
		natsURL                              string
		only                                 []string
	)
	cmd := &cobra.Command{
		Use:   "bench [quick|full]",
		Short: "Measure Tidings against the limits of this machine and print the figures",
		Long: `Measures fan-out throughput (against redis-benchmark's ZADD ceiling,
redis-benchmark driving Tidings' own timeline insert, and a naive loop, all
on the same Redis), publish-to-visible latency under load, home
timeline reads (against raw Redis reads), memory, growth with the size of
the organisation, one post to a very large audience, and conversations:
comment → notified on a thread of 1,000 participants, home reads with the
conversation fields against the same reads without them, and reactions on
one hot post from 1,000 users at once.

By default it starts its own stacks (tidings dev child processes on free
loopback ports, removed afterwards) and builds synthetic organisations in
them through the public gRPC API. "full" (the default) takes six to eight
minutes and is what the README reports; "quick" runs every figure on smaller
organisations in about two and a half.

With --addr it drives a running stack instead: the main figures on one
organisation, which it writes into that stack. Use a scratch stack.`,
		Args:      cobra.MaximumNArgs(1),
		ValidArgs: []string{string(bench.Quick), string(bench.Full)},
	}
	fs := cmd.Flags()
	fs.StringVar(&jsonPath, "json", "bench-report.json", "also write the figures as JSON to this file (empty: don't)")
	fs.StringVar(&workDir, "work-dir", "", "where the bench's stacks keep their data (default: a temporary directory)")
	fs.IntVar(&users, "users", 0, "users of the main organisation (default: 10,000 full, 2,000 quick)")
	fs.IntVar(&posts, "posts", 0, "activities of each fan-out run (default: 15,000 full, 4,000 quick)")
	fs.StringVar(&addr, "addr", "", "gRPC address of a running stack to measure instead of starting stacks")
	fs.StringVar(&metricsURL, "metrics-url", "", "with --addr: the worker's /metrics URL (default: http://<addr host>:7402/metrics, the debug address)")
	fs.StringVar(&natsURL, "nats-url", "", "with --addr: the stack's NATS URL, to time the worker's drain apart from posting and measure JetStream's publish ceiling (default: posting and fan-out timed together)")
	fs.StringSliceVar(&only, "only", nil, "take only these parts of a run with the bench's own stacks: "+strings.Join(bench.Parts, ", "))
	fs.StringVar(&redisAddr, "redis-addr", "", "with --addr: the stack's Redis address")
	fs.StringVar(&dataDir, "data-dir", ".data", "with --addr: the `tidings dev` data directory whose signing secret to use")
	fs.StringVar(&secretFile, "auth-secret-file", "", "with --addr: file holding the stack's HMAC signing secret (default: <data-dir>/auth.secret)")
	fs.StringVar(&issuer, "auth-issuer", "tidings", "with --addr: the stack's token issuer")
	fs.StringVar(&audience, "auth-audience", "tidings", "with --addr: the stack's token audience")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := config.ApplyEnv(cmd.Flags()); err != nil {
			return usageError{err}
		}
		mode := bench.Full
		if len(args) == 1 {
			m, err := bench.ParseMode(args[0])
			if err != nil {
				return usageError{err}
			}
			mode = m
		}
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("find the tidings binary: %w", err)
		}
		for _, p := range only {
			if !slices.Contains(bench.Parts, p) {
				return usageError{fmt.Errorf("--only: unknown part %q (want %s)", p, strings.Join(bench.Parts, ", "))}
			}
		}
		opts := bench.Options{Mode: mode, Sizes: bench.SizesFor(mode), Binary: self, WorkDir: workDir, Log: cmd.ErrOrStderr(), Only: only}
		if users > 0 {
			opts.Sizes.Users = users
		}
		if posts > 0 {
			opts.Sizes.Posts = posts
		}
		if addr != "" {
			t, err := benchTarget(addr, metricsURL, redisAddr, dataDir, secretFile, issuer, audience)
			if err != nil {
				return err
			}
			t.NATSURL = natsURL
			opts.Target = t
		}
		rep, err := bench.Run(cmd.Context(), opts)
		if err != nil {
			return err
		}
		if err := rep.WriteTable(cmd.OutOrStdout()); err != nil {
			return err
		}
		if jsonPath != "" {
			b, err := json.MarshalIndent(rep, "", "  ")
			if err != nil {
				return fmt.Errorf("encode report: %w", err)
			}
			if err := os.WriteFile(jsonPath, append(b, '\n'), 0o600); err != nil {
				return fmt.Errorf("write report: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "figures written to %s\n", jsonPath)
		}
		return nil
	}
	return cmd
}

// benchTarget describes a running stack from the flags.
func benchTarget(addr, metricsURL, redisAddr, dataDir, secretFile, issuer, audience string) (*bench.Target, error) {
	if redisAddr == "" {
		return nil, usageError{errors.New("--addr needs --redis-addr: the ceiling and raw baselines run on the stack's own Redis")}
	}
	if metricsURL == "" {
		host, _, _ := strings.Cut(addr, ":")
		metricsURL = "http://" + host + ":7402/metrics"
	}
	if secretFile == "" {
		secretFile = filepath.Join(dataDir, stack.SecretFile)
	}
	secret, err := os.ReadFile(filepath.Clean(secretFile))
	if err != nil {
		return nil, usageError{fmt.Errorf("the bench signs its synthetic callers' tokens with the stack's secret: %w (pass --auth-secret-file)", err)}
	}
	return &bench.Target{
		GRPCAddr: addr, MetricsURL: metricsURL, RedisAddr: redisAddr,
		Secret: strings.TrimSpace(string(secret)), Issuer: issuer, Audience: audience,
	}, nil
}
