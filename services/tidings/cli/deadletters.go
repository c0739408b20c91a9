package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func newDeadLettersCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "deadletters", Short: "List and re-drive events that failed on every delivery (admin)"}
	c.bind(cmd)
	var (
		filter tidingsv1.DeadLetterFilter
		seqs   []uint
		size   int32
		token  string
		all    bool
	)
	addFilter := func(cmd *cobra.Command) {
		cmd.Flags().StringVar(&filter.Stream, "stream", "", "only dead letters from this stream (ACTIVITIES, FOLLOWS, ...)")
		cmd.Flags().StringVar(&filter.Consumer, "consumer", "", "only dead letters of this consumer (fanout, follows-projector, ...)")
		cmd.Flags().UintSliceVar(&seqs, "seq", nil, "only these dead letters, by the SEQ column of list")
	}
	sequences := func() {
		filter.Sequences = nil
		for _, s := range seqs {
			filter.Sequences = append(filter.Sequences, uint64(s))
		}
	}

	list := &cobra.Command{Use: "list", Short: "List dead letters, oldest first", Args: cobra.NoArgs}
	addFilter(list)
	list.Flags().Int32Var(&size, "page-size", 50, "dead letters per page")
	list.Flags().StringVar(&token, "page-token", "", "continue from this token")
	list.Flags().BoolVar(&all, "all", false, "every page")
	list.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, _ []string, conn *grpc.ClientConn) error {
		sequences()
		client := tidingsv1.NewAdminServiceClient(conn)
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tSTREAM\tCONSUMER\tSTREAM SEQ\tSUBJECT\tDELIVERIES\tDEAD SINCE\tERROR")
		for {
			resp, err := client.ListDeadLetters(ctx, &tidingsv1.ListDeadLettersRequest{Filter: &filter, PageSize: size, PageToken: token})
			if err != nil {
				return err
			}
			for _, d := range resp.GetDeadLetters() {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", d.GetSequence(), d.GetStream(), d.GetConsumer(),
					d.GetStreamSequence(), d.GetSubject(), d.GetDeliveries(),
					d.GetDeadLetterTime().AsTime().Local().Format("Jan 2 15:04:05"), d.GetError())
			}
			token = resp.GetNextPageToken()
			if token == "" || !all {
				break
			}
		}
		if token != "" {
			fmt.Fprintf(tw, "(more: --page-token %s, or --all)\n", token)
		}
		return tw.Flush()
	})

	replay := &cobra.Command{
		Use:   "replay",
		Short: "Re-drive dead letters (all, or those the flags pick) through the worker",
		Long: "Re-drive dead letters: the worker applies each again at its original position in the log and\n" +
			"removes it once applied; one that fails again stays. Run `deadletters list` after to see what is left.",
		Args: cobra.NoArgs,
	}
	addFilter(replay)
	replay.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, _ []string, conn *grpc.ClientConn) error {
		sequences()
		resp, err := tidingsv1.NewAdminServiceClient(conn).ReplayDeadLetters(ctx, &tidingsv1.ReplayDeadLettersRequest{Filter: &filter})
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters (through DEADLETTER sequence %d) handed to the worker to re-drive\n",
			resp.GetMatchedCount(), resp.GetThroughSequence())
		return nil
	})
	cmd.AddCommand(list, replay)
	return cmd
}
