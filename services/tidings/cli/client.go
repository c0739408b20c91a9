package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/services/stack"
)

// clientFlags are the flags of every client command.
type clientFlags struct {
	addr    string
	token   string
	dataDir string
	timeout time.Duration
}

func (c *clientFlags) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7400", "Tidings gRPC address (env TIDINGS_ADDR)")
	fs.StringVar(&c.token, "token", "", "bearer token (env TIDINGS_TOKEN); default: the admin token of `tidings dev` in --data-dir")
	fs.StringVar(&c.dataDir, "data-dir", ".data", "dev data directory, for its CLI token")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "call deadline")
}

// dial connects with the caller's token.
func (c *clientFlags) dial(cmd *cobra.Command) (*grpc.ClientConn, error) {
	if err := config.ApplyEnv(cmd.Flags()); err != nil {
		return nil, usageError{err}
	}
	token := c.token
	if token == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, stack.CLITokenFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, usageError{errors.New("no token: pass --token, set TIDINGS_TOKEN, or run from the directory of `tidings dev`")}
		case err != nil:
			return nil, fmt.Errorf("read cli token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	conn, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.PerRPCToken(token)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	return conn, nil
}

func (c *clientFlags) ctx(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return context.WithTimeout(cmd.Context(), c.timeout)
}

// call makes the RunE of a client command: it dials with the caller's
// token, gives fn a context with the call deadline, and closes the
// connection after.
func (c *clientFlags) call(fn func(ctx context.Context, cmd *cobra.Command, args []string, conn *grpc.ClientConn) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		conn, err := c.dial(cmd)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := c.ctx(cmd)
		defer cancel()
		return fn(ctx, cmd, args, conn)
	}
}

// printProto writes m as indented JSON.
func printProto(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}
