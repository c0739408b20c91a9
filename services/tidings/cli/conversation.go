package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// reactionKind reads a reaction kind: like, celebrate, support,
// insightful, funny.
func reactionKind(s string) (tidingsv1.ReactionKind, error) {
	v, ok := tidingsv1.ReactionKind_value["REACTION_KIND_"+strings.ToUpper(s)]
	if !ok || v == 0 {
		return 0, usageError{fmt.Errorf("reaction %q: want like, celebrate, support, insightful or funny", s)}
	}
	return tidingsv1.ReactionKind(v), nil
}

func kindWord(k tidingsv1.ReactionKind) string {
	return strings.ToLower(strings.TrimPrefix(k.String(), "REACTION_KIND_"))
}

func newCommentCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "comment", Short: "Comment on activities: add, list, edit, delete"}
	c.bind(cmd)
	var key string
	add := &cobra.Command{Use: "add USER_ID ACTIVITY_ID TEXT", Short: "Comment as a user (@user_id mentions)", Args: cobra.ExactArgs(3)}
	add.Flags().StringVar(&key, "idempotency-key", "", "makes a retry return the first comment")
	add.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewConversationServiceClient(conn).AddComment(ctx, &tidingsv1.AddCommentRequest{
			AuthorUserId: args[0], ActivityId: args[1], Text: args[2], IdempotencyKey: key,
		})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp.GetComment().GetComment())
	})
	var size int32
	var token string
	var newest bool
	list := &cobra.Command{Use: "list ACTIVITY_ID", Short: "An activity's comments, oldest first", Args: cobra.ExactArgs(1)}
	list.Flags().Int32Var(&size, "page-size", 20, "comments")
	list.Flags().StringVar(&token, "page-token", "", "continue from this token")
	list.Flags().BoolVar(&newest, "newest", false, "newest first")
	list.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		req := &tidingsv1.ListCommentsRequest{ActivityId: args[0], PageSize: size, PageToken: token}
		if newest {
			req.Order = tidingsv1.CommentOrder_COMMENT_ORDER_NEWEST_FIRST
		}
		resp, err := tidingsv1.NewConversationServiceClient(conn).ListComments(ctx, req)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%d comments\nWHEN\tID\tWHO\tREACTIONS\tTEXT\n", resp.GetTotalCount())
		for _, v := range resp.GetComments() {
			cm := v.GetComment()
			who := cm.GetAuthorUserId()
			if p := v.GetAuthorProfile(); p.GetDisplayName() != "" {
				who = p.GetDisplayName()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cm.GetCreateTime().AsTime().Local().Format("Jan 2 15:04:05"), cm.GetId(), who, reactionsLine(v.GetReactionCounts()), cm.GetText())
		}
		if resp.GetNextPageToken() != "" {
			fmt.Fprintf(tw, "(more: --page-token %s)\n", resp.GetNextPageToken())
		}
		return tw.Flush()
	})
	edit := &cobra.Command{Use: "edit ACTIVITY_ID COMMENT_ID TEXT", Short: "Replace a comment's text (its author, or an admin)", Args: cobra.ExactArgs(3)}
	edit.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewConversationServiceClient(conn).EditComment(ctx, &tidingsv1.EditCommentRequest{ActivityId: args[0], CommentId: args[1], Text: args[2]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp.GetComment().GetComment())
	})
	del := &cobra.Command{Use: "delete ACTIVITY_ID COMMENT_ID", Short: "Delete a comment", Args: cobra.ExactArgs(2)}
	del.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewConversationServiceClient(conn).DeleteComment(ctx, &tidingsv1.DeleteCommentRequest{ActivityId: args[0], CommentId: args[1]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	cmd.AddCommand(add, list, edit, del)
	return cmd
}

func reactionsLine(counts []*tidingsv1.ReactionCount) string {
	var parts []string
	for _, r := range counts {
		parts = append(parts, fmt.Sprintf("%d %s", r.GetCount(), kindWord(r.GetKind())))
	}
	return strings.Join(parts, ", ")
}

func newReactCmd(c *clientFlags) *cobra.Command {
	var commentID string
	var remove bool
	cmd := &cobra.Command{
		Use:   "react USER_ID ACTIVITY_ID [KIND]",
		Short: "React as a user to an activity or (--comment) a comment: like (default), celebrate, support, insightful, funny",
		Args:  cobra.RangeArgs(2, 3),
	}
	c.bind(cmd)
	cmd.Flags().StringVar(&commentID, "comment", "", "react to this comment of the activity")
	cmd.Flags().BoolVar(&remove, "remove", false, "take the reaction back")
	cmd.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		word := "like"
		if len(args) == 3 {
			word = args[2]
		}
		kind, err := reactionKind(word)
		if err != nil {
			return err
		}
		client := tidingsv1.NewConversationServiceClient(conn)
		if remove {
			resp, err := client.RemoveReaction(ctx, &tidingsv1.RemoveReactionRequest{UserId: args[0], ActivityId: args[1], CommentId: commentID, Kind: kind})
			if err != nil {
				return err
			}
			return printProto(cmd.OutOrStdout(), resp)
		}
		resp, err := client.AddReaction(ctx, &tidingsv1.AddReactionRequest{UserId: args[0], ActivityId: args[1], CommentId: commentID, Kind: kind})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	var size int32
	var token string
	list := &cobra.Command{Use: "list ACTIVITY_ID", Short: "Who reacted, newest first (--comment for a comment's)", Args: cobra.ExactArgs(1)}
	list.Flags().Int32Var(&size, "page-size", 20, "reactions")
	list.Flags().StringVar(&token, "page-token", "", "continue from this token")
	list.Flags().StringVar(&commentID, "comment", "", "a comment of the activity")
	list.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewConversationServiceClient(conn).ListReactions(ctx, &tidingsv1.ListReactionsRequest{ActivityId: args[0], CommentId: commentID, PageSize: size, PageToken: token})
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\nWHEN\tWHO\tKIND\n", reactionsLine(resp.GetCounts()))
		for _, r := range resp.GetReactions() {
			who := r.GetUserId()
			if p := r.GetProfile(); p.GetDisplayName() != "" {
				who = p.GetDisplayName()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.GetCreateTime().AsTime().Local().Format("Jan 2 15:04:05"), who, kindWord(r.GetKind()))
		}
		if resp.GetNextPageToken() != "" {
			fmt.Fprintf(tw, "(more: --page-token %s)\n", resp.GetNextPageToken())
		}
		return tw.Flush()
	})
	cmd.AddCommand(list)
	return cmd
}

func newNotificationsCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "notifications", Short: "A user's notifications: list, unread, read, watch"}
	c.bind(cmd)
	var size int32
	var token string
	list := &cobra.Command{Use: "list USER_ID", Short: "Notifications, newest first", Args: cobra.ExactArgs(1)}
	list.Flags().Int32Var(&size, "page-size", 20, "notifications")
	list.Flags().StringVar(&token, "page-token", "", "continue from this token")
	list.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewNotificationServiceClient(conn).ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: args[0], PageSize: size, PageToken: token})
		if err != nil {
			return err
		}
		return printNotifications(cmd.OutOrStdout(), resp.GetNotifications(), resp.GetNextPageToken())
	})
	unread := &cobra.Command{Use: "unread USER_ID", Short: "How many are unread", Args: cobra.ExactArgs(1)}
	unread.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewNotificationServiceClient(conn).GetUnreadCount(ctx, &tidingsv1.GetUnreadCountRequest{UserId: args[0]})
		if err != nil {
			return err
		}
		more := ""
		if resp.GetMore() {
			more = "+"
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%d%s unread\n", resp.GetUnreadCount(), more)
		return err
	})
	var upTo string
	read := &cobra.Command{Use: "read USER_ID", Short: "Mark all read, or up to a notification (--up-to READ_TOKEN)", Args: cobra.ExactArgs(1)}
	read.Flags().StringVar(&upTo, "up-to", "", "a notification's read token (the TOKEN column of list)")
	read.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		req := &tidingsv1.MarkNotificationsReadRequest{UserId: args[0], UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}}
		if upTo != "" {
			req.UpTo = &tidingsv1.MarkNotificationsReadRequest_ReadToken{ReadToken: upTo}
		}
		resp, err := tidingsv1.NewNotificationServiceClient(conn).MarkNotificationsRead(ctx, req)
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	var resume string
	watch := &cobra.Command{Use: "watch USER_ID", Short: "Stream a user's notifications live (Ctrl-C to stop)", Args: cobra.ExactArgs(1)}
	watch.Flags().StringVar(&resume, "resume-token", "", "first send what changed since this token")
	watch.RunE = func(cmd *cobra.Command, args []string) error {
		conn, err := c.dial(cmd)
		if err != nil {
			return err
		}
		defer conn.Close()
		stream, err := tidingsv1.NewNotificationServiceClient(conn).WatchNotifications(cmd.Context(), &tidingsv1.WatchNotificationsRequest{UserId: args[0], ResumeToken: resume})
		if err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "watching %s's notifications...\n", args[0])
		for {
			resp, err := stream.Recv()
			if err != nil {
				if cmd.Context().Err() != nil {
					return nil
				}
				return err
			}
			if err := printNotifications(out, []*tidingsv1.Notification{resp.GetNotification()}, ""); err != nil {
				return err
			}
			fmt.Fprintf(out, "(resume token %s)\n", resp.GetResumeToken())
		}
	}
	cmd.AddCommand(list, unread, read, watch)
	return cmd
}

func printNotifications(w io.Writer, ns []*tidingsv1.Notification, next string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\t\tWHAT\tABOUT\tTOKEN")
	for _, n := range ns {
		dot := "•"
		if n.GetRead() {
			dot = ""
		}
		about := n.GetComment().GetText()
		if about == "" {
			about = n.GetActivity().GetText()
		}
		if len(about) > 60 {
			about = about[:57] + "..."
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", n.GetUpdateTime().AsTime().Local().Format("Jan 2 15:04:05"), dot, n.GetSummary(), about, n.GetReadToken())
	}
	if next != "" {
		fmt.Fprintf(tw, "(more: --page-token %s)\n", next)
	}
	return tw.Flush()
}

func newBookmarkCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "bookmark", Short: "A user's bookmarks: add, remove, list"}
	c.bind(cmd)
	add := &cobra.Command{Use: "add USER_ID ACTIVITY_ID", Short: "Bookmark an activity", Args: cobra.ExactArgs(2)}
	add.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewActivityServiceClient(conn).BookmarkActivity(ctx, &tidingsv1.BookmarkActivityRequest{UserId: args[0], ActivityId: args[1]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	remove := &cobra.Command{Use: "remove USER_ID ACTIVITY_ID", Short: "Take an activity out of the bookmarks", Args: cobra.ExactArgs(2)}
	remove.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewActivityServiceClient(conn).UnbookmarkActivity(ctx, &tidingsv1.UnbookmarkActivityRequest{UserId: args[0], ActivityId: args[1]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	var size int32
	var token string
	list := &cobra.Command{Use: "list USER_ID", Short: "Bookmarks, the newest first", Args: cobra.ExactArgs(1)}
	list.Flags().Int32Var(&size, "page-size", 20, "bookmarks")
	list.Flags().StringVar(&token, "page-token", "", "continue from this token")
	list.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		resp, err := tidingsv1.NewActivityServiceClient(conn).ListBookmarks(ctx, &tidingsv1.ListBookmarksRequest{UserId: args[0], PageSize: size, PageToken: token})
		if err != nil {
			return err
		}
		items := make([]*tidingsv1.FeedItem, len(resp.GetBookmarks()))
		for i, b := range resp.GetBookmarks() {
			items[i] = &tidingsv1.FeedItem{Activity: b.GetActivity(), ActorProfile: b.GetActorProfile(), Conversation: b.GetConversation()}
		}
		return printItems(cmd.OutOrStdout(), items, resp.GetNextPageToken())
	})
	cmd.AddCommand(add, remove, list)
	return cmd
}

func newMuteCmd(c *clientFlags) *cobra.Command {
	var undo bool
	cmd := &cobra.Command{Use: "mute USER_ID ACTIVITY_ID", Short: "Mute an activity for a user: it leaves their home feed and stops notifying them", Args: cobra.ExactArgs(2)}
	c.bind(cmd)
	cmd.Flags().BoolVar(&undo, "undo", false, "unmute")
	cmd.RunE = c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
		client := tidingsv1.NewActivityServiceClient(conn)
		if undo {
			resp, err := client.UnmuteActivity(ctx, &tidingsv1.UnmuteActivityRequest{UserId: args[0], ActivityId: args[1]})
			if err != nil {
				return err
			}
			return printProto(cmd.OutOrStdout(), resp)
		}
		resp, err := client.MuteActivity(ctx, &tidingsv1.MuteActivityRequest{UserId: args[0], ActivityId: args[1]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})
	return cmd
}
