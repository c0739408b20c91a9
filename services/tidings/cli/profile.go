package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func newProfileCmd(c *clientFlags) *cobra.Command {
	cmd := &cobra.Command{Use: "profile", Short: "Read and change employee profiles"}
	c.bind(cmd)
	call := func(run func(ctx context.Context, cmd *cobra.Command, args []string, client tidingsv1.ProfileServiceClient) error) func(*cobra.Command, []string) error {
		return c.call(func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error {
			return run(ctx, cmd, args, tidingsv1.NewProfileServiceClient(conn))
		})
	}

	get := &cobra.Command{Use: "get USER_ID", Short: "Show a profile", Args: cobra.ExactArgs(1)}
	get.RunE = call(func(ctx context.Context, cmd *cobra.Command, args []string, client tidingsv1.ProfileServiceClient) error {
		resp, err := client.GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: args[0]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp.GetProfile())
	})

	var list tidingsv1.ListProfilesRequest
	var all bool
	listCmd := &cobra.Command{Use: "list", Short: "List profiles (all pages with --all)", Args: cobra.NoArgs}
	listCmd.Flags().StringVar(&list.Department, "department", "", "only this department")
	listCmd.Flags().StringVar(&list.ManagerId, "manager", "", "only this manager's direct reports")
	listCmd.Flags().BoolVar(&list.IncludeInactive, "include-inactive", false, "include deactivated profiles")
	listCmd.Flags().Int32Var(&list.PageSize, "page-size", 50, "profiles per page")
	listCmd.Flags().BoolVar(&all, "all", false, "follow every page")
	listCmd.RunE = call(func(_ context.Context, cmd *cobra.Command, _ []string, client tidingsv1.ProfileServiceClient) error {
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER ID\tNAME\tTITLE\tDEPARTMENT\tMANAGER\tACTIVE")
		req := &list
		for {
			ctx, cancel := c.ctx(cmd)
			resp, err := client.ListProfiles(ctx, req)
			cancel()
			if err != nil {
				return err
			}
			for _, p := range resp.GetProfiles() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%t\n", p.GetUserId(), p.GetDisplayName(), p.GetTitle(), p.GetDepartment(), p.GetManagerId(), p.GetActive())
			}
			if !all || resp.GetNextPageToken() == "" {
				if resp.GetNextPageToken() != "" {
					fmt.Fprintf(tw, "(more: --all, or --page-token %s)\n", resp.GetNextPageToken())
				}
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		return tw.Flush()
	})
	listCmd.Flags().StringVar(&list.PageToken, "page-token", "", "continue from this token")

	var p tidingsv1.Profile
	upsert := &cobra.Command{Use: "upsert USER_ID", Short: "Create or update a profile (directory sync)", Args: cobra.ExactArgs(1)}
	upsert.Flags().StringVar(&p.DisplayName, "name", "", "display name (required)")
	upsert.Flags().StringVar(&p.Email, "email", "", "email")
	upsert.Flags().StringVar(&p.Title, "title", "", "job title")
	upsert.Flags().StringVar(&p.Department, "department", "", "department")
	upsert.Flags().StringVar(&p.ManagerId, "manager", "", "manager's user id")
	upsert.Flags().StringVar(&p.Location, "location", "", "location")
	upsert.Flags().StringVar(&p.AvatarUrl, "avatar-url", "", "avatar URL")
	upsert.RunE = call(func(ctx context.Context, cmd *cobra.Command, args []string, client tidingsv1.ProfileServiceClient) error {
		p.UserId = args[0]
		resp, err := client.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &p})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp)
	})

	about := &cobra.Command{Use: "about USER_ID TEXT", Short: "Set a profile's about-me text", Args: cobra.ExactArgs(2)}
	about.RunE = call(func(ctx context.Context, cmd *cobra.Command, args []string, client tidingsv1.ProfileServiceClient) error {
		resp, err := client.UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: args[0], AboutMe: args[1]})
		if err != nil {
			return err
		}
		return printProto(cmd.OutOrStdout(), resp.GetProfile())
	})

	setActive := func(name, short string, active bool) *cobra.Command {
		sc := &cobra.Command{Use: name + " USER_ID", Short: short, Args: cobra.ExactArgs(1)}
		sc.RunE = call(func(ctx context.Context, cmd *cobra.Command, args []string, client tidingsv1.ProfileServiceClient) error {
			var (
				prof *tidingsv1.Profile
				err  error
			)
			if active {
				var r *tidingsv1.ReactivateProfileResponse
				r, err = client.ReactivateProfile(ctx, &tidingsv1.ReactivateProfileRequest{UserId: args[0]})
				prof = r.GetProfile()
			} else {
				var r *tidingsv1.DeactivateProfileResponse
				r, err = client.DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: args[0]})
				prof = r.GetProfile()
			}
			if err != nil {
				return err
			}
			return printProto(cmd.OutOrStdout(), prof)
		})
		return sc
	}

	cmd.AddCommand(get, listCmd, upsert, about,
		setActive("deactivate", "Deactivate a profile", false),
		setActive("reactivate", "Reactivate a profile", true))
	return cmd
}
