package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Where a client certificate names its app.
const (
	// CertIDFromURISAN takes the app id from the certificate's URI SAN
	// that starts with a configured prefix (a SPIFFE id such as
	// spiffe://corp.example/tidings/app/crm names the app "crm").
	CertIDFromURISAN = "uri-san"
	// CertIDFromCN takes the app id from the subject's common name.
	CertIDFromCN = "cn"
)

// CertIdentities maps a verified client certificate to an app identity.
// Only certificates that the TLS handshake verified against the configured
// client CA are considered (credentials.TLSInfo's verified chains); a
// certificate names an app, never an employee or an admin.
type CertIdentities struct {
	// From is CertIDFromURISAN or CertIDFromCN.
	From string
	// URIPrefix is the prefix of the URI SAN, for CertIDFromURISAN.
	URIPrefix string
	// Roles gives apps roles, such as "directory" for the HR app.
	Roles map[string][]string
}

// Validate reports a configuration that cannot name anyone.
func (c *CertIdentities) Validate() error {
	switch c.From {
	case CertIDFromURISAN:
		if c.URIPrefix == "" {
			return errors.New("client certificates named by URI SAN need a URI prefix")
		}
	case CertIDFromCN:
	default:
		return fmt.Errorf("client certificate identity %q: want %s or %s", c.From, CertIDFromURISAN, CertIDFromCN)
	}
	return nil
}

// FromPeer returns the app named by the verified client certificate of the
// call, if any.
func (c *CertIdentities) FromPeer(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return Identity{}, false
	}
	id, ok := c.FromCertificate(info.State.VerifiedChains[0][0])
	return id, ok
}

// FromCertificate returns the app a (verified) leaf certificate names.
func (c *CertIdentities) FromCertificate(leaf *x509.Certificate) (Identity, bool) {
	var app string
	switch c.From {
	case CertIDFromURISAN:
		for _, u := range leaf.URIs {
			if s := u.String(); strings.HasPrefix(s, c.URIPrefix) {
				app = strings.TrimPrefix(s, c.URIPrefix)
				break
			}
		}
	case CertIDFromCN:
		app = leaf.Subject.CommonName
	}
	if !validID.MatchString(app) {
		return Identity{}, false
	}
	return Identity{Kind: KindApp, ID: app, Roles: c.Roles[app]}, true
}
