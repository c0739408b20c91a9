package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/services/stack"
)

func newTokenCmd() *cobra.Command {
	var (
		kind, dataDir string
		roles         []string
		ttl           time.Duration
	)
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "token ID",
		Short: "Mint a development token for an employee, app or admin",
		Long: `Mints a signed token. The secret comes from --auth-secret,
--auth-secret-file or TIDINGS_AUTH_SECRET, or else from the data directory
of ` + "`tidings dev`" + `. Production deployments get tokens from their identity
provider instead.

  tidings token ana                          # employee ana
  tidings token hr --kind app --roles directory
  tidings token root --kind admin`,
		Args: cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	fs.StringVar(&kind, "kind", "employee", "employee, app or admin")
	fs.StringSliceVar(&roles, "roles", nil, "roles (apps: directory)")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "lifetime")
	fs.StringVar(&dataDir, "data-dir", ".data", "dev data directory holding the secret")
	fs.StringVar(&cfg.AuthSecret, "auth-secret", "", "HMAC secret")
	fs.StringVar(&cfg.AuthSecretFile, "auth-secret-file", "", "file holding the HMAC secret")
	fs.StringVar(&cfg.AuthIssuer, "auth-issuer", cfg.AuthIssuer, "token issuer")
	fs.StringVar(&cfg.AuthAudience, "auth-audience", cfg.AuthAudience, "token audience")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := config.ApplyEnv(cmd.Flags()); err != nil {
			return usageError{err}
		}
		if cfg.AuthSecret == "" && cfg.AuthSecretFile == "" {
			cfg.AuthSecretFile = filepath.Join(dataDir, stack.SecretFile)
		}
		token, err := mintWith(cfg, kind, args[0], roles, ttl)
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), token)
		return nil
	}
	return cmd
}

func mintWith(cfg config.Config, kind, id string, roles []string, ttl time.Duration) (string, error) {
	k, err := auth.ParseKind(kind)
	if err != nil {
		return "", usageError{err}
	}
	if cfg.AuthSecretFile != "" {
		b, err := os.ReadFile(cfg.AuthSecretFile)
		if err != nil {
			return "", fmt.Errorf("read secret (is `tidings dev` set up in this directory?): %w", err)
		}
		cfg.AuthSecret = strings.TrimSpace(string(b))
	}
	return auth.Mint(auth.TokenConfig{
		Secret: []byte(cfg.AuthSecret), Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience,
	}, auth.Identity{Kind: k, ID: id, Roles: roles}, ttl, time.Now())
}
