package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// newRebuildCmd is `tidings rebuild start|status`.
func newRebuildCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild the Redis projections from the event log, beside the live ones (admin)",
		Long: `A rebuild fills a new generation of the Redis projections from the event
log while readers keep the current one, then switches every process to it
and drops the old one. It runs in a worker process and survives the caller
and the worker: another worker resumes it from its last checkpoint.`,
	}
	start := &cobra.Command{Use: "start", Short: "Start a rebuild and print its id", Args: cobra.NoArgs}
	c.bind(start)
	var wait bool
	start.Flags().BoolVar(&wait, "wait", false, "wait until it is done, printing its progress")
	start.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, _ []string, conn *grpc.ClientConn) error {
		admin := tidingsv1.NewAdminServiceClient(conn)
		resp, err := admin.RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{})
		if err != nil {
			return err
		}
		printRebuild(cmd.OutOrStdout(), resp.GetRebuild())
		if !wait {
			return nil
		}
		return followRebuild(cmd, admin, resp.GetRebuild().GetId())
	})
	status := &cobra.Command{Use: "status [id]", Short: "Show a rebuild (the latest by default)", Args: cobra.MaximumNArgs(1)}
	c.bind(status)
	var follow bool
	status.Flags().BoolVar(&follow, "follow", false, "keep printing its progress until it is done")
	status.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		id := "latest"
		if len(args) == 1 {
			id = args[0]
		}
		admin := tidingsv1.NewAdminServiceClient(conn)
		resp, err := admin.GetRebuild(ctx, &tidingsv1.GetRebuildRequest{Id: id})
		if err != nil {
			return err
		}
		printRebuild(cmd.OutOrStdout(), resp.GetRebuild())
		if !follow {
			return nil
		}
		return followRebuild(cmd, admin, resp.GetRebuild().GetId())
	})
	cmd.AddCommand(start, status)
	return cmd
}

// followRebuild prints a rebuild's progress every two seconds until it
// ends (or the command is interrupted).
func followRebuild(cmd *cobra.Command, admin tidingsv1.AdminServiceClient, id string) error {
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-cmd.Context().Done():
			return nil
		case <-tick.C:
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
		resp, err := admin.GetRebuild(ctx, &tidingsv1.GetRebuildRequest{Id: id})
		cancel()
		if err != nil {
			return err
		}
		r := resp.GetRebuild()
		fmt.Fprintf(cmd.OutOrStdout(), "%s  %s  pass %d  %d events  %.0f/s  eta %s\n", time.Now().Format(time.TimeOnly),
			stateName(r.GetState()), r.GetPass(), r.GetEventsReplayed(), r.GetEventsPerSecond(), r.GetEta().AsDuration().Round(time.Second))
		switch r.GetState() {
		case tidingsv1.RebuildState_REBUILD_STATE_DONE:
			return nil
		case tidingsv1.RebuildState_REBUILD_STATE_FAILED:
			return fmt.Errorf("rebuild %s failed: %s", r.GetId(), r.GetError())
		}
	}
}

func stateName(s tidingsv1.RebuildState) string {
	if n, ok := map[tidingsv1.RebuildState]string{
		tidingsv1.RebuildState_REBUILD_STATE_PENDING:  "pending",
		tidingsv1.RebuildState_REBUILD_STATE_RUNNING:  "running",
		tidingsv1.RebuildState_REBUILD_STATE_SWITCHED: "switched",
		tidingsv1.RebuildState_REBUILD_STATE_DONE:     "done",
		tidingsv1.RebuildState_REBUILD_STATE_FAILED:   "failed",
	}[s]; ok {
		return n
	}
	return "unknown"
}

// printRebuild writes a rebuild as a small table.
func printRebuild(w io.Writer, r *tidingsv1.Rebuild) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "rebuild\t%s\nstate\t%s\ngenerations\t%d → %d\n", r.GetId(), stateName(r.GetState()), r.GetFromGeneration(), r.GetToGeneration())
	if r.GetRunner() != "" {
		fmt.Fprintf(tw, "worker\t%s\npass\t%d\n", r.GetRunner(), r.GetPass())
	}
	if r.GetEventsReplayed() > 0 {
		fmt.Fprintf(tw, "replayed\t%d events (%.0f/s, eta %s)\n", r.GetEventsReplayed(), r.GetEventsPerSecond(), r.GetEta().AsDuration().Round(time.Second))
	}
	if r.GetError() != "" {
		fmt.Fprintf(tw, "error\t%s\n", r.GetError())
	}
	if len(r.GetStreams()) > 0 {
		fmt.Fprintln(tw, "\nSTREAM\tREPLAYED TO\tPASS ENDS AT")
		for _, s := range r.GetStreams() {
			fmt.Fprintf(tw, "%s\t%d\t%d\n", s.GetStream(), s.GetReplayedSequence(), s.GetTargetSequence())
		}
	}
	_ = tw.Flush()
}
