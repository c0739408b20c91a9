package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"google.golang.org/grpc/credentials"
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
	// TLS to the server: on with tls, or with a CA file or a client
	// certificate.
	tls            bool
	caFile         string
	clientCertFile string
	clientKeyFile  string
}

func (c *clientFlags) bind(cmd *cobra.Command) {
	fs := cmd.PersistentFlags()
	fs.StringVar(&c.addr, "addr", "127.0.0.1:7400", "Tidings gRPC address (env TIDINGS_ADDR)")
	fs.StringVar(&c.token, "token", "", "bearer token (env TIDINGS_TOKEN); default: the admin token of `tidings dev` in --data-dir")
	fs.StringVar(&c.dataDir, "data-dir", ".data", "dev data directory, for its CLI token")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "call deadline")
	fs.BoolVar(&c.tls, "tls", false, "connect with TLS, trusting the system's CAs (env TIDINGS_TLS)")
	fs.StringVar(&c.caFile, "tls-ca-file", "", "connect with TLS, trusting the CA certificates in this PEM file (env TIDINGS_TLS_CA_FILE)")
	fs.StringVar(&c.clientCertFile, "client-cert-file", "", "client certificate for mutual TLS; authenticates an app without a token (env TIDINGS_CLIENT_CERT_FILE)")
	fs.StringVar(&c.clientKeyFile, "client-key-file", "", "private key of --client-cert-file (env TIDINGS_CLIENT_KEY_FILE)")
}

// transport returns the transport credentials the flags ask for.
func (c *clientFlags) transport() (credentials.TransportCredentials, error) {
	if !c.tls && c.caFile == "" && c.clientCertFile == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.caFile != "" {
		pem, err := os.ReadFile(c.caFile)
		if err != nil {
			return nil, fmt.Errorf("read tls CA file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usageError{fmt.Errorf("%s holds no PEM certificate", c.caFile)}
		}
	}
	if c.clientCertFile != "" || c.clientKeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.clientCertFile, c.clientKeyFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("client certificate: %w", err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

// dial connects with the caller's token.
func (c *clientFlags) dial(cmd *cobra.Command) (*grpc.ClientConn, error) {
	if err := config.ApplyEnv(cmd.Flags()); err != nil {
		return nil, usageError{err}
	}
	creds, err := c.transport()
	if err != nil {
		return nil, err
	}
	token := c.token
	if token == "" && c.clientCertFile == "" {
		b, err := os.ReadFile(filepath.Join(c.dataDir, stack.CLITokenFile))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, usageError{errors.New("no token: pass --token, set TIDINGS_TOKEN, or run from the directory of `tidings dev`")}
		case err != nil:
			return nil, fmt.Errorf("read cli token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPCToken(token)))
	}
	conn, err := grpc.NewClient(c.addr, opts...)
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
