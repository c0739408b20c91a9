package tlsfiles_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/tlsfiles"
)

// serve accepts TLS connections on loopback with cfg, completing each
// handshake, until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tl := tls.NewListener(ln, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = tl.Close(); <-done })
	return ln.Addr().String()
}

func TestReloadServesTheNewCertificate(t *testing.T) {
	t.Parallel()
	ca := testenv.NewCA(t, "ca")
	dir := t.TempDir()
	first := ca.Server(t)
	certFile, keyFile := first.WriteFiles(t, dir)
	src, err := tlsfiles.New(tlsfiles.Files{CertFile: certFile, KeyFile: keyFile}, testenv.Logger())
	require.NoError(t, err)
	addr := serve(t, src.ServerConfig())
	require.Equal(t, first.Cert.SerialNumber, testenv.ServedCertificate(t, addr, ca.Pool()).SerialNumber)

	changed, err := src.Reload()
	require.NoError(t, err)
	require.False(t, changed, "unchanged files are not reloaded")

	// The files are swapped; the watcher picks them up; new handshakes get
	// the new certificate, with no restart.
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); src.Watch(ctx, 10*time.Millisecond) }()
	t.Cleanup(func() { cancel(); <-done })
	second := ca.Server(t)
	second.WriteFiles(t, dir)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return testenv.ServedCertificate(t, addr, ca.Pool()).SerialNumber.Cmp(second.Cert.SerialNumber) == 0
	}, "the new certificate is served")

	// A broken file keeps the last good certificate.
	require.NoError(t, os.WriteFile(certFile, []byte("not a certificate"), 0o600))
	_, err = src.Reload()
	require.Error(t, err)
	require.Equal(t, second.Cert.SerialNumber, testenv.ServedCertificate(t, addr, ca.Pool()).SerialNumber)
}

func TestClientCertificates(t *testing.T) {
	t.Parallel()
	ca, clients, other := testenv.NewCA(t, "ca"), testenv.NewCA(t, "clients"), testenv.NewCA(t, "other")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t).WriteFiles(t, dir)
	caFile := dir + "/clients.pem"
	require.NoError(t, os.WriteFile(caFile, clients.PEM, 0o600))
	src, err := tlsfiles.New(tlsfiles.Files{CertFile: certFile, KeyFile: keyFile, ClientCAFile: caFile}, testenv.Logger())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	tl := tls.NewListener(ln, src.ServerConfig())
	t.Cleanup(func() { _ = tl.Close() })
	// handshake connects a client presenting cert (always, whatever CAs
	// the server names) and returns the server's view of it.
	handshake := func(cert *testenv.Leaf) (tls.ConnectionState, error) {
		type result struct {
			st  tls.ConnectionState
			err error
		}
		server := make(chan result, 1)
		go func() {
			c, err := tl.Accept()
			if err != nil {
				server <- result{err: err}
				return
			}
			defer func() { _ = c.Close() }()
			tc := c.(*tls.Conn)
			err = tc.Handshake()
			server <- result{tc.ConnectionState(), err}
		}()
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if cert != nil {
			c := cert.TLS(t)
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		}
		conn, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil {
			_ = conn.Close()
		}
		r := <-server
		return r.st, r.err
	}
	st, err := handshake(clients.Client(t, "crm", ""))
	require.NoError(t, err, "a certificate of the client CA is accepted")
	require.Equal(t, "crm", st.VerifiedChains[0][0].Subject.CommonName)
	st, err = handshake(nil)
	require.NoError(t, err, "a client without a certificate connects (and authenticates with a token)")
	require.Empty(t, st.VerifiedChains)
	_, err = handshake(other.Client(t, "crm", ""))
	require.Error(t, err, "a certificate of another CA is refused")
}
