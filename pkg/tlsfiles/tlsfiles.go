// Package tlsfiles serves TLS from certificate files and picks up new ones
// without a restart: a Source re-reads the certificate, its key and the
// client CA bundle on an interval and when told to, and every new
// handshake uses what was read last. A file that fails to read or parse
// leaves the last good certificate in place (and is reported), so a
// half-written rotation never takes a listener down.
package tlsfiles

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
)

// Files names what a Source reads.
type Files struct {
	// CertFile holds the PEM certificate chain, leaf first.
	CertFile string
	// KeyFile holds the PEM private key of the leaf.
	KeyFile string
	// ClientCAFile, when set, holds the PEM CA certificates that client
	// certificates are verified against (mutual TLS).
	ClientCAFile string
}

// loaded is one consistent reading of the files.
type loaded struct {
	cert     *tls.Certificate
	clientCA *x509.CertPool
	digest   [sha256.Size]byte
}

// Source holds the current certificate and client CAs.
type Source struct {
	files   Files
	log     *slog.Logger
	current atomic.Pointer[loaded]
	mu      sync.Mutex // serialises reloads
}

// New reads the files once; it fails when they do not make a certificate.
func New(files Files, log *slog.Logger) (*Source, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are needed")
	}
	s := &Source{files: files, log: log}
	if _, err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again and reports whether what they hold changed.
// On error the previous certificate stays.
func (s *Source) Reload() (changed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	certPEM, err := os.ReadFile(s.files.CertFile)
	if err != nil {
		return false, fmt.Errorf("read tls certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(s.files.KeyFile)
	if err != nil {
		return false, fmt.Errorf("read tls key: %w", err)
	}
	var caPEM []byte
	if s.files.ClientCAFile != "" {
		if caPEM, err = os.ReadFile(s.files.ClientCAFile); err != nil {
			return false, fmt.Errorf("read tls client CA: %w", err)
		}
	}
	h := sha256.New()
	for _, b := range [][]byte{certPEM, keyPEM, caPEM} {
		_, _ = fmt.Fprintf(h, "%d:", len(b))
		_, _ = h.Write(b)
	}
	var digest [sha256.Size]byte
	copy(digest[:], h.Sum(nil))
	if cur := s.current.Load(); cur != nil && bytes.Equal(cur.digest[:], digest[:]) {
		return false, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("parse tls certificate and key: %w", err)
	}
	next := &loaded{cert: &cert, digest: digest}
	if s.files.ClientCAFile != "" {
		next.clientCA = x509.NewCertPool()
		if !next.clientCA.AppendCertsFromPEM(caPEM) {
			return false, fmt.Errorf("tls client CA %s holds no PEM certificate", s.files.ClientCAFile)
		}
	}
	s.current.Store(next)
	return true, nil
}

// Watch reloads the files every interval until ctx ends, logging changes
// and failures.
func (s *Source) Watch(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			changed, err := s.Reload()
			switch {
			case err != nil:
				s.log.ErrorContext(ctx, "tls files not reloaded; serving the previous certificate", "error", err)
			case changed:
				s.log.InfoContext(ctx, "tls files reloaded", "cert", s.files.CertFile)
			}
		}
	}
}

// Certificate returns the current certificate.
func (s *Source) Certificate() *tls.Certificate { return s.current.Load().cert }

// ServerConfig returns a TLS configuration (TLS 1.2 or later) that serves
// the current certificate to every new handshake. With a client CA file,
// clients may present a certificate, which must then verify against the
// current client CAs; clients without one still connect (and authenticate
// with a bearer token).
func (s *Source) ServerConfig() *tls.Config {
	base := &tls.Config{MinVersion: tls.VersionTLS12}
	base.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cur := s.current.Load()
		c := &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cur.cert},
			NextProtos:   []string{"h2", "http/1.1"},
		}
		if cur.clientCA != nil {
			c.ClientCAs = cur.clientCA
			c.ClientAuth = tls.VerifyClientCertIfGiven
		}
		return c, nil
	}
	return base
}

// SelfCredentials returns gRPC client credentials for a process dialing its
// own TLS listener over loopback (the HTTP/JSON door calls the gRPC server
// so): the server is accepted when it presents exactly the certificate this
// Source serves now, whatever names the certificate holds. Only the process
// holding the key can present it, so pinning it authenticates the server
// without a CA.
func (s *Source) SelfCredentials() credentials.TransportCredentials {
	return credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain and names are not checked against a CA: the
		// certificate itself is pinned, in VerifyConnection.
		InsecureSkipVerify: true, //nolint:gosec // pinned to our own certificate in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			cur := s.current.Load().cert
			if len(cs.PeerCertificates) == 0 || len(cur.Certificate) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, cur.Certificate[0]) {
				return errors.New("tls: the server is not presenting this process's own certificate")
			}
			return nil
		},
	})
}
