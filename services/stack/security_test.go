package stack_test

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stack"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// run starts a process with every role on the test's NATS and Redis and
// returns where it listens.
func run(t *testing.T, env *testenv.Env, cfg config.Config) stack.Addrs {
	t.Helper()
	cfg.NATSURL = env.NATS.ClientURL()
	cfg.RedisAddrs = []string{env.Redis.Addr()}
	cfg.GRPCAddr, cfg.HTTPAddr, cfg.DebugAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.AuthSecret = string(testenv.TokenConfig.Secret)
	cfg.AuthIssuer, cfg.AuthAudience = testenv.TokenConfig.Issuer, testenv.TokenConfig.Audience
	require.NoError(t, cfg.Validate())
	ready := make(chan stack.Addrs, 1)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	var runErr error
	go func() {
		defer close(done)
		runErr = stack.Run(ctx, stack.Options{
			Config: cfg, Roles: stack.AllRoles(), Logger: env.Logger, HealthInterval: 50 * time.Millisecond,
			OnReady: func(a stack.Addrs) { ready <- a },
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		require.NoError(t, runErr)
	})
	select {
	case a := <-ready:
		return a
	case <-done:
		t.Fatalf("stack did not start: %v", runErr)
	}
	return stack.Addrs{}
}

// TestTransportSecurity runs a process serving TLS on gRPC and HTTP, with
// client certificates of a CA naming apps by URI SAN, and swaps its
// certificate files while it runs.
func TestTransportSecurity(t *testing.T) {
	env := testenv.New(t)
	ca, clients, other := testenv.NewCA(t, "server-ca"), testenv.NewCA(t, "apps"), testenv.NewCA(t, "other")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir)
	caFile := filepath.Join(dir, "apps.pem")
	require.NoError(t, os.WriteFile(caFile, clients.PEM, 0o600))
	cfg := config.Default()
	cfg.TLSCertFile, cfg.TLSKeyFile, cfg.TLSClientCAFile = certFile, keyFile, caFile
	cfg.TLSClientURIPrefix = "spiffe://corp.example/tidings/app/"
	cfg.TLSClientRoles = map[string]string{"hr": auth.RoleDirectory}
	cfg.TLSReload = 100 * time.Millisecond
	addrs := run(t, env, cfg)
	ctx := t.Context()

	dial := func(cert *testenv.Leaf, token string) *grpc.ClientConn {
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			c := cert.TLS(t)
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
		opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(auth.PerRPCToken(token)))
		}
		conn, err := grpc.NewClient(addrs.GRPC, opts...)
		require.NoError(t, err)
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}
	rec := &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "006A"}, Title: "Acme"}}

	t.Run("a client certificate names an app", func(t *testing.T) {
		crm := dial(clients.Client(t, "ignored", "spiffe://corp.example/tidings/app/crm"), "")
		_, err := tidingsv1.NewRecordServiceClient(crm).UpsertRecord(ctx, rec)
		require.NoError(t, err)
		_, err = tidingsv1.NewRecordServiceClient(crm).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
			Ref: &tidingsv1.RecordRef{Type: "ci.build", ExternalId: "1"}, Title: "Build",
		}})
		testenv.RequireCode(t, err, codes.PermissionDenied) // crm's own namespace only
		hr := dial(clients.Client(t, "ignored", "spiffe://corp.example/tidings/app/hr"), "")
		_, err = tidingsv1.NewProfileServiceClient(hr).UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "ana", DisplayName: "Ana"}})
		require.NoError(t, err, "roles come from the configuration")
	})
	t.Run("a token still works, over TLS", func(t *testing.T) {
		conn := dial(nil, testenv.Token(t, testenv.Employee("ana")))
		_, err := tidingsv1.NewProfileServiceClient(conn).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
		require.NoError(t, err)
		// A token wins over a certificate: an app's proxy calls as the user.
		conn = dial(clients.Client(t, "x", "spiffe://corp.example/tidings/app/crm"), testenv.Token(t, testenv.Employee("ana")))
		_, err = tidingsv1.NewRecordServiceClient(conn).UpsertRecord(ctx, rec)
		testenv.RequireCode(t, err, codes.PermissionDenied)
	})
	t.Run("refused", func(t *testing.T) {
		_, err := tidingsv1.NewRecordServiceClient(dial(clients.Client(t, "crm", "spiffe://elsewhere/app/crm"), "")).UpsertRecord(ctx, rec)
		testenv.RequireCode(t, err, codes.Unauthenticated)
		_, err = tidingsv1.NewRecordServiceClient(dial(other.Client(t, "crm", "spiffe://corp.example/tidings/app/crm"), "")).UpsertRecord(ctx, rec)
		testenv.RequireCode(t, err, codes.Unavailable) // the handshake fails
		plain, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
		require.NoError(t, err)
		defer func() { _ = plain.Close() }()
		_, err = tidingsv1.NewProfileServiceClient(plain).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
		testenv.RequireCode(t, err, codes.Unavailable)
	})
	t.Run("https health and metrics", func(t *testing.T) {
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}}}
		defer client.CloseIdleConnections()
		testenv.Eventually(t, 10*time.Second, func() bool {
			resp, err := client.Get("https://" + addrs.HTTP + "/healthz")
			require.NoError(t, err)
			_ = resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "healthz over https")
	})
	t.Run("certificate reload", func(t *testing.T) {
		next := ca.Server(t)
		next.WriteFiles(t, dir)
		for _, addr := range []string{addrs.GRPC, addrs.HTTP} {
			testenv.Eventually(t, 10*time.Second, func() bool {
				return testenv.ServedCertificate(t, addr, ca.Pool()).SerialNumber.Cmp(next.Cert.SerialNumber) == 0
			}, "%s serves the new certificate", addr)
		}
		conn := dial(nil, testenv.Token(t, testenv.Employee("ana")))
		_, err := tidingsv1.NewProfileServiceClient(conn).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
		require.NoError(t, err)
	})
}

// TestOIDCProcess runs a process that accepts tokens of a local OpenID
// provider besides the shared secret, with groups mapped to caller kinds
// by flags.
func TestOIDCProcess(t *testing.T) {
	env := testenv.New(t)
	is := testenv.NewIssuer(t)
	key := testenv.ECKey(t)
	is.Publish(map[string]testenv.SigningKey{"k1": key})
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	cfg := config.Default()
	cfg.BindFlags(fs)
	require.NoError(t, fs.Parse([]string{
		"--oidc-issuer", is.URL(), "--oidc-audience", "tidings-api",
		"--oidc-subject-claim", "preferred_username",
		"--oidc-group-kinds", "feed-admins=admin,integrations=app", "--oidc-default-kind", "employee",
	}))
	addrs := run(t, env, cfg)
	ctx := t.Context()
	token := func(user string, groups ...string) string {
		now := time.Now()
		return key.Sign(t, "k1", jwt.MapClaims{
			"iss": is.URL(), "aud": "tidings-api", "sub": "00u" + user, "preferred_username": user,
			"groups": groups, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		})
	}
	conn := func(tok string) *grpc.ClientConn {
		c, err := grpc.NewClient(addrs.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.PerRPCToken(tok)))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	_, err := tidingsv1.NewAdminServiceClient(conn(token("root", "feed-admins"))).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err, "a member of feed-admins is an admin")
	_, err = tidingsv1.NewAdminServiceClient(conn(token("ana", "sales"))).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	testenv.RequireCode(t, err, codes.PermissionDenied) // an employee
	_, err = tidingsv1.NewProfileServiceClient(conn(token("ana"))).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	testenv.RequireCode(t, err, codes.NotFound) // authenticated; ana has no profile yet
	_, err = tidingsv1.NewProfileServiceClient(conn(testenv.Token(t, testenv.Employee("ana")))).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	testenv.RequireCode(t, err, codes.NotFound) // the shared secret's tokens still work
	_, err = tidingsv1.NewProfileServiceClient(conn(testenv.EdKey(t).Sign(t, "k1", jwt.MapClaims{"iss": is.URL()}))).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana"})
	testenv.RequireCode(t, err, codes.Unauthenticated)
}
