package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/services/stack"
)

// TestClientOverTLS runs a process serving TLS with client certificates,
// and the CLI's client commands against it: with a token over TLS, with a
// client certificate alone, and refused in plaintext.
func TestClientOverTLS(t *testing.T) {
	env := testenv.New(t)
	ca, apps := testenv.NewCA(t, "server-ca"), testenv.NewCA(t, "apps")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir)
	caFile, appsFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "apps.pem")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	require.NoError(t, os.WriteFile(appsFile, apps.PEM, 0o600))
	hrDir := t.TempDir()
	hrCert, hrKey := apps.Client(t, "hr", "").WriteFiles(t, hrDir)

	cfg := config.Default()
	cfg.NATSURL, cfg.RedisAddrs = env.NATS.ClientURL(), []string{env.Redis.Addr()}
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DebugAddr = "127.0.0.1:0", "", ""
	cfg.AuthSecret = string(testenv.TokenConfig.Secret)
	cfg.AuthIssuer, cfg.AuthAudience = testenv.TokenConfig.Issuer, testenv.TokenConfig.Audience
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, keyFile, appsFile
	cfg.TLSClientIDFrom = auth.CertIDFromCN
	cfg.TLSClientRoles = map[string]string{"hr": auth.RoleDirectory}
	require.NoError(t, cfg.Validate())
	ready := make(chan stack.Addrs, 1)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = stack.Run(ctx, stack.Options{Config: cfg, Roles: stack.ServiceRoles, Logger: env.Logger, OnReady: func(a stack.Addrs) { ready <- a }})
	}()
	t.Cleanup(func() { cancel(); <-done; require.NoError(t, runErr) })
	var addr string
	select {
	case a := <-ready:
		addr = a.GRPC
	case <-done:
		t.Fatalf("stack did not start: %v", runErr)
	}

	run := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := Execute(t.Context(), append(args, "--addr", addr, "--data-dir", t.TempDir(), "--timeout", "20s"), &out, &errOut)
		return code, out.String() + errOut.String()
	}
	code, out := run("profile", "upsert", "ana", "--name", "Ana Lima", "--client-cert-file", hrCert, "--client-key-file", hrKey, "--tls-ca-file", caFile)
	require.Equal(t, exitOK, code, "the HR app, named by its certificate: %s", out)
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, out = run("profile", "get", "ana", "--tls-ca-file", caFile, "--token", testenv.Token(t, testenv.Employee("bo")))
		return code == exitOK
	}, "an employee reads over TLS with a token: %s", out)
	require.Contains(t, out, "Ana Lima")
	code, out = run("profile", "get", "ana", "--token", testenv.Token(t, testenv.Employee("bo")))
	require.Equal(t, exitFailure, code, "plaintext to a TLS server: %s", out)
	code, out = run("profile", "get", "ana", "--tls-ca-file", filepath.Join(dir, "missing.pem"), "--token", "x")
	require.NotEqual(t, exitOK, code, out)
}
