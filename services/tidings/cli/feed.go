package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/tidingshq/tidings/pkg/entity"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// parseEntity reads an entity from the command line: a user id, or
// "TYPE/EXTERNAL_ID" for a record (crm.opportunity/006A).
func parseEntity(s string) *tidingsv1.EntityRef {
	if typ, id, ok := strings.Cut(s, "/"); ok && strings.Contains(typ, ".") {
		return entity.Record(typ, id)
	}
	return entity.User(s)
}

func newFollowCmds(c *clientFlags) []*cobra.Command {
	follow := &cobra.Command{Use: "follow USER_ID ENTITY", Short: "Follow a user, or a record as TYPE/ID", Args: cobra.ExactArgs(2)}
	c.bind(follow)
	follow.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewFollowServiceClient(conn).Follow(ctx, &tidingsv1.FollowRequest{UserId: args[0], Entity: parseEntity(args[1])})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	var keep bool
	unfollow := &cobra.Command{Use: "unfollow USER_ID ENTITY", Short: "Stop following a user or record", Args: cobra.ExactArgs(2)}
	c.bind(unfollow)
	unfollow.Flags().BoolVar(&keep, "keep-history", false, "keep its activities in the home timeline")
	unfollow.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewFollowServiceClient(conn).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: args[0], Entity: parseEntity(args[1]), KeepHistory: keep})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	return []*cobra.Command{follow, unfollow}
}

func newPostCmd(c *clientFlags) *cobra.Command {
	var record, key string
	cmd := &cobra.Command{Use: "post USER_ID TEXT", Short: "Post as a user (@user_id mentions; --record TYPE/ID)", Args: cobra.ExactArgs(2)}
	c.bind(cmd)
	cmd.Flags().StringVar(&record, "record", "", "the record the post is about, as TYPE/ID")
	cmd.Flags().StringVar(&key, "idempotency-key", "", "makes a retry return the first post")
	cmd.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		req := &tidingsv1.PostActivityRequest{ActorUserId: args[0], Text: args[1], IdempotencyKey: key}
		if record != "" {
			req.Record = parseEntity(record).GetRecord()
			if req.Record == nil {
				return usageError{fmt.Errorf("--record %q: want TYPE/ID, such as crm.opportunity/006A", record)}
			}
		}
		resp, err := tidingsv1.NewActivityServiceClient(conn).PostActivity(ctx, req)
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp.GetActivity())
	})
	return cmd
}

func newFeedCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "feed", Short: "Read feeds"}
	c.bind(cmd)
	var size int32
	var token string
	var byActivity bool
	home := &cobra.Command{Use: "home USER_ID", Short: "A user's home feed, newest first", Args: cobra.ExactArgs(1)}
	home.Flags().Int32Var(&size, "page-size", 20, "items")
	home.Flags().StringVar(&token, "page-token", "", "continue from this token")
	home.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		req := &tidingsv1.GetHomeTimelineRequest{UserId: args[0], PageSize: size, PageToken: token}
		if byActivity {
			req.Sort = tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY
		}
		resp, err := tidingsv1.NewTimelineServiceClient(conn).GetHomeTimeline(ctx, req)
		if err != nil {
			return err
		}
		return printItems(cmd.OutOrStdout(), resp.GetItems(), resp.GetNextPageToken())
	})
	of := &cobra.Command{Use: "of ENTITY", Short: "An entity's own feed (a user id, or TYPE/ID)", Args: cobra.ExactArgs(1)}
	of.Flags().Int32Var(&size, "page-size", 20, "items")
	of.Flags().StringVar(&token, "page-token", "", "continue from this token")
	of.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewTimelineServiceClient(conn).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: parseEntity(args[0]), PageSize: size, PageToken: token})
		if err != nil {
			return err
		}
		return printItems(cmd.OutOrStdout(), resp.GetItems(), resp.GetNextPageToken())
	})
	var resume string
	home.Flags().BoolVar(&byActivity, "by-activity", false, "latest activity first: a post moves up when it gets a comment")
	watchCmd := &cobra.Command{Use: "watch USER_ID", Short: "Stream a user's home feed live (Ctrl-C to stop)", Args: cobra.ExactArgs(1)}
	watchCmd.Flags().StringVar(&resume, "resume-token", "", "first replay what landed after this item")
	watchCmd.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := c.dial(cmd)
		if err != nil {
			return err
		}
		defer conn.Close()
		stream, err := tidingsv1.NewTimelineServiceClient(conn).Watch(cmd.Context(), &tidingsv1.WatchRequest{UserId: args[0], ResumeToken: resume})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "watching %s's home feed...\n", args[0])
		for {
			resp, err := stream.Recv()
			if err != nil {
				if cmd.Context().Err() != nil {
					return nil
				}
				return err
			}
			if err := printItems(out, []*tidingsv1.FeedItem{resp.GetItem()}, ""); err != nil {
				return err
			}
			fmt.Fprintf(out, "(resume token %s)\n", resp.GetResumeToken())
		}
	}
	cmd.AddCommand(home, of, watchCmd)
	return cmd
}

func printItems(w io.Writer, items []*tidingsv1.FeedItem, next string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tID\tWHO\tWHAT\tTEXT\tCONVERSATION")
	for _, it := range items {
		a := it.GetActivity()
		who := a.GetActor().GetId()
		if p := it.GetActorProfile(); p != nil {
			who = p.GetDisplayName()
		}
		what := a.GetVerb()
		if r := it.GetRecord(); r != nil {
			what += " " + r.GetTitle()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.GetCreateTime().AsTime().Local().Format("Jan 2 15:04:05"), a.GetId(), who, what, a.GetText(), conversationLine(it.GetConversation()))
	}
	if next != "" {
		fmt.Fprintf(tw, "(more: --page-token %s)\n", next)
	}
	return tw.Flush()
}

func newStatusCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "status", Short: "Streams, consumer lag and Redis health (admin)", Args: cobra.NoArgs}
	c.bind(cmd)
	cmd.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, _ []string, conn *grpc.ClientConn) error {
		st, err := tidingsv1.NewAdminServiceClient(conn).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "redis ok: %t\n\nSTREAM\tMESSAGES\tBYTES\tLAST SEQ\n", st.GetRedisOk())
		for _, s := range st.GetStreams() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", s.GetName(), s.GetMessages(), s.GetBytes(), s.GetLastSequence())
		}
		fmt.Fprintln(tw, "\nCONSUMER\tSTREAM\tLAG\tACK PENDING\tREDELIVERED")
		for _, c := range st.GetConsumers() {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", c.GetName(), c.GetStream(), c.GetPending(), c.GetAckPending(), c.GetRedelivered())
		}
		fmt.Fprintf(tw, "\nprojections: generation %d\n", st.GetGeneration())
		if r := st.GetRebuild(); r != nil {
			fmt.Fprintf(tw, "latest rebuild: %s, %s (generation %d → %d)\n", r.GetId(), stateName(r.GetState()), r.GetFromGeneration(), r.GetToGeneration())
		}
		return tw.Flush()
	})
	return cmd
}

// conversationLine sums up an item's conversation: "2 comments, 3 like,
// bookmarked".
func conversationLine(c *tidingsv1.Conversation) string {
	if c == nil {
		return ""
	}
	var parts []string
	if n := c.GetCommentCount(); n > 0 {
		parts = append(parts, fmt.Sprintf("%d comments", n))
	}
	if r := reactionsLine(c.GetReactionCounts()); r != "" {
		parts = append(parts, r)
	}
	if c.GetBookmarked() {
		parts = append(parts, "bookmarked")
	}
	return strings.Join(parts, ", ")
}
