// Package cli is the command line of the tidings binary: server commands
// (serve, worker, dev), token minting, and client commands that call the
// gRPC API so nobody needs grpcurl for a first look.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/telemetry"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks errors in how a command was called.
type usageError struct{ error }

// Execute runs the command line and returns the process exit code.
func Execute(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if st, ok := status.FromError(err); ok && st.Code() != 0 && !errors.As(err, new(usageError)) {
		fmt.Fprintf(stderr, "error: %s: %s\n", st.Code(), st.Message())
		return exitFailure
	}
	fmt.Fprintf(stderr, "error: %v\n", err)
	if errors.As(err, new(usageError)) {
		return exitUsage
	}
	return exitFailure
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "tidings",
		Short:         "Tidings: the enterprise activity feed",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	client := &clientFlags{}
	root.AddCommand(
		newServeCmd(),
		newWorkerCmd(),
		newDevCmd(),
		newTokenCmd(),
		newProfileCmd(client),
		newPostCmd(client),
		newFeedCmd(client),
		newStatusCmd(client),
		newRebuildCmd(client),
		newDeadLettersCmd(client),
		newBenchCmd(),
		newCommentCmd(client),
		newReactCmd(client),
		newNotificationsCmd(client),
		newBookmarkCmd(client),
		newMuteCmd(client),
	)
	root.AddCommand(newFollowCmds(client)...)
	return root
}

// serverSetup binds a server's config flags and returns a loader that
// applies the environment, validates, and builds the logger.
func serverSetup(cmd *cobra.Command, cfg *config.Config) func() (*slog.Logger, error) {
	cfg.BindFlags(cmd.Flags())
	return func() (*slog.Logger, error) {
		if err := config.ApplyEnv(cmd.Flags()); err != nil {
			return nil, usageError{err}
		}
		logger, err := telemetry.NewLogger(cmd.ErrOrStderr(), cfg.LogLevel, cfg.LogFormat)
		if err != nil {
			return nil, usageError{err}
		}
		return logger, nil
	}
}
