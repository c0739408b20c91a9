package config

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/tidingshq/tidings/pkg/auth"
)

// Security is the part of Config that says who callers are, how they are
// reached, how much they may ask and what is recorded of them. Its fields
// are promoted into Config.
type Security struct {
	// OIDCIssuer, when set, makes tokens of this OpenID Connect provider
	// valid (its discovery document and JWKS are read at start).
	OIDCIssuer string
	// OIDCAudience is the required "aud" of OIDC tokens.
	OIDCAudience string
	// OIDCAlgorithms are the accepted signature algorithms.
	OIDCAlgorithms []string
	// OIDCSubjectClaim holds the caller's id.
	OIDCSubjectClaim string
	// OIDCKindClaim holds the caller's kind; empty reads none.
	OIDCKindClaim string
	// OIDCRolesClaim holds the caller's roles; empty reads none.
	OIDCRolesClaim string
	// OIDCGroupsClaim holds the caller's groups; empty reads none.
	OIDCGroupsClaim string
	// OIDCGroupKinds maps groups to caller kinds.
	OIDCGroupKinds map[string]string
	// OIDCGroupRoles maps groups to roles.
	OIDCGroupRoles map[string]string
	// OIDCDefaultKind is the kind of a token naming none; empty refuses it.
	OIDCDefaultKind string
	// OIDCRefresh is how often the provider's keys are fetched.
	OIDCRefresh time.Duration
	// OIDCMinRefresh bounds the fetches caused by unknown key ids.
	OIDCMinRefresh time.Duration

	// TLSCertFile and TLSKeyFile, when set, serve gRPC and HTTP over TLS.
	TLSCertFile string
	TLSKeyFile  string
	// TLSClientCAFile, when set, asks gRPC clients for a certificate and
	// authenticates a verified one as an app (mutual TLS).
	TLSClientCAFile string
	// TLSClientIDFrom is where a client certificate names its app: uri-san
	// or cn.
	TLSClientIDFrom string
	// TLSClientURIPrefix is the prefix of the URI SAN naming the app.
	TLSClientURIPrefix string
	// TLSClientRoles gives certificate-authenticated apps roles
	// (app=role1;role2).
	TLSClientRoles map[string]string
	// TLSReload is how often the certificate files are checked for change.
	TLSReload time.Duration
	// PlaintextOK allows listening without TLS on non-loopback addresses.
	PlaintextOK bool

	// RateEmployee, RateApp and RateAdmin are each caller's calls a
	// second, shared by every API process through Redis; 0 turns the
	// limit of that kind off.
	RateEmployee float64
	RateApp      float64
	RateAdmin    float64
	// RateBurst is how many seconds' worth of calls may come at once.
	RateBurst float64
	// WatchPerUser and WatchPerProcess bound concurrent Watch and
	// WatchNotifications streams, counted together.
	WatchPerUser    int
	WatchPerProcess int

	// AuditMaxAge is how long the AUDIT stream keeps events.
	AuditMaxAge time.Duration
	// AuditBuffer is how many audit events may wait to be written; more
	// are dropped and counted.
	AuditBuffer int
}

// DefaultSecurity returns the defaults: no OIDC (HS256 tokens), no TLS,
// limits a busy intranet stays well under.
func DefaultSecurity() Security {
	return Security{
		OIDCAlgorithms:   auth.OIDCAlgorithms,
		OIDCSubjectClaim: "sub",
		OIDCKindClaim:    "tidings_kind",
		OIDCRolesClaim:   "tidings_roles",
		OIDCGroupsClaim:  "groups",
		OIDCRefresh:      time.Hour,
		OIDCMinRefresh:   time.Minute,
		TLSClientIDFrom:  auth.CertIDFromURISAN,
		TLSReload:        30 * time.Second,
		RateEmployee:     20,
		RateApp:          200,
		RateAdmin:        50,
		RateBurst:        5,
		WatchPerUser:     5,
		WatchPerProcess:  10000,
		AuditMaxAge:      365 * 24 * time.Hour,
		AuditBuffer:      10000,
	}
}

// bindFlags registers the security flags.
func (s *Security) bindFlags(fs *pflag.FlagSet) {
	fs.StringVar(&s.OIDCIssuer, "oidc-issuer", s.OIDCIssuer, "OpenID Connect issuer URL whose tokens are accepted (https)")
	fs.StringVar(&s.OIDCAudience, "oidc-audience", s.OIDCAudience, "required audience of OIDC tokens")
	fs.StringSliceVar(&s.OIDCAlgorithms, "oidc-algorithms", s.OIDCAlgorithms, "accepted OIDC signature algorithms")
	fs.StringVar(&s.OIDCSubjectClaim, "oidc-subject-claim", s.OIDCSubjectClaim, "OIDC claim holding the caller's user or app id")
	fs.StringVar(&s.OIDCKindClaim, "oidc-kind-claim", s.OIDCKindClaim, "OIDC claim holding the caller kind (employee, app, admin); empty: none")
	fs.StringVar(&s.OIDCRolesClaim, "oidc-roles-claim", s.OIDCRolesClaim, "OIDC claim holding roles; empty: none")
	fs.StringVar(&s.OIDCGroupsClaim, "oidc-groups-claim", s.OIDCGroupsClaim, "OIDC claim holding groups; empty: none")
	fs.StringToStringVar(&s.OIDCGroupKinds, "oidc-group-kinds", s.OIDCGroupKinds, "OIDC groups that make a caller kind (group=kind,...)")
	fs.StringToStringVar(&s.OIDCGroupRoles, "oidc-group-roles", s.OIDCGroupRoles, "OIDC groups that give a role (group=role,...)")
	fs.StringVar(&s.OIDCDefaultKind, "oidc-default-kind", s.OIDCDefaultKind, "caller kind of an OIDC token naming none (empty: refuse it)")
	fs.DurationVar(&s.OIDCRefresh, "oidc-jwks-refresh", s.OIDCRefresh, "how often the OIDC keys are fetched")
	fs.DurationVar(&s.OIDCMinRefresh, "oidc-jwks-min-refresh", s.OIDCMinRefresh, "at most one fetch of the OIDC keys per this long for unknown key ids")
	fs.StringVar(&s.TLSCertFile, "tls-cert-file", s.TLSCertFile, "PEM certificate (chain) served on the gRPC and HTTP listeners")
	fs.StringVar(&s.TLSKeyFile, "tls-key-file", s.TLSKeyFile, "PEM private key of --tls-cert-file")
	fs.StringVar(&s.TLSClientCAFile, "tls-client-ca-file", s.TLSClientCAFile, "PEM CA certificates of app client certificates (turns on mutual TLS)")
	fs.StringVar(&s.TLSClientIDFrom, "tls-client-id-from", s.TLSClientIDFrom, "where a client certificate names its app: uri-san or cn")
	fs.StringVar(&s.TLSClientURIPrefix, "tls-client-uri-prefix", s.TLSClientURIPrefix, "URI SAN prefix before the app id (e.g. spiffe://corp.example/tidings/app/)")
	fs.StringToStringVar(&s.TLSClientRoles, "tls-client-roles", s.TLSClientRoles, "roles of certificate-authenticated apps (app=role1;role2,...)")
	fs.DurationVar(&s.TLSReload, "tls-reload", s.TLSReload, "how often certificate files are checked for change")
	fs.BoolVar(&s.PlaintextOK, "plaintext-ok", s.PlaintextOK, "allow serving without TLS on non-loopback addresses")
	fs.Float64Var(&s.RateEmployee, "rate-employee", s.RateEmployee, "calls a second per employee, across replicas (0: unlimited)")
	fs.Float64Var(&s.RateApp, "rate-app", s.RateApp, "calls a second per app, across replicas (0: unlimited)")
	fs.Float64Var(&s.RateAdmin, "rate-admin", s.RateAdmin, "calls a second per admin, across replicas (0: unlimited)")
	fs.Float64Var(&s.RateBurst, "rate-burst", s.RateBurst, "seconds' worth of calls a caller may make at once")
	fs.IntVar(&s.WatchPerUser, "watch-per-user", s.WatchPerUser, "concurrent Watch and WatchNotifications streams per user (0: unlimited)")
	fs.IntVar(&s.WatchPerProcess, "watch-per-process", s.WatchPerProcess, "concurrent Watch and WatchNotifications streams per process (0: unlimited)")
	fs.DurationVar(&s.AuditMaxAge, "audit-max-age", s.AuditMaxAge, "how long audit events are kept")
	fs.IntVar(&s.AuditBuffer, "audit-buffer", s.AuditBuffer, "audit events waiting to be written before more are dropped (and counted)")
}

// validate reports every problem of the security configuration.
func (s *Security) validate(c *Config) []error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	if s.OIDCIssuer != "" {
		oc, err := s.OIDC()
		if err == nil {
			_, err = oc.Completed()
		}
		check(err == nil, "%v", err)
	}
	if s.TLSCertFile != "" || s.TLSKeyFile != "" {
		check(s.TLSCertFile != "" && s.TLSKeyFile != "", "tls-cert-file and tls-key-file go together")
	}
	if s.TLSClientCAFile != "" {
		check(s.TLSCertFile != "", "tls-client-ca-file needs tls-cert-file: mutual TLS is TLS")
		ci := s.CertIdentities()
		err := ci.Validate()
		check(err == nil, "%v", err)
	}
	check(s.TLSReload >= 100*time.Millisecond, "tls-reload must be at least 100ms")
	if s.TLSCertFile == "" && !s.PlaintextOK {
		for _, a := range []struct{ flag, addr string }{{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}, {"debug-addr", c.DebugAddr}} {
			if a.addr == "" {
				continue
			}
			host, _, err := net.SplitHostPort(a.addr)
			ip := net.ParseIP(host)
			check(err != nil || host == "localhost" || (ip != nil && ip.IsLoopback()),
				"%s %s is not loopback: serve TLS (--tls-cert-file, --tls-key-file) or allow plaintext explicitly (--plaintext-ok)", a.flag, a.addr)
		}
	}
	check(s.RateEmployee >= 0 && s.RateApp >= 0 && s.RateAdmin >= 0, "rate limits must not be negative")
	check(s.RateBurst >= 1, "rate-burst must be at least 1 (second)")
	check(s.WatchPerUser >= 0 && s.WatchPerProcess >= 0, "watch limits must not be negative")
	check(s.AuditMaxAge >= time.Hour, "audit-max-age must be at least 1h")
	check(s.AuditBuffer >= 1, "audit-buffer must be positive")
	return errs
}

// OIDC returns the OIDC configuration.
func (s *Security) OIDC() (auth.OIDCConfig, error) {
	kinds := map[string]auth.Kind{}
	for g, k := range s.OIDCGroupKinds {
		kind, err := auth.ParseKind(k)
		if err != nil {
			return auth.OIDCConfig{}, fmt.Errorf("oidc-group-kinds %s: %w", g, err)
		}
		kinds[g] = kind
	}
	var def auth.Kind
	if s.OIDCDefaultKind != "" {
		k, err := auth.ParseKind(s.OIDCDefaultKind)
		if err != nil {
			return auth.OIDCConfig{}, fmt.Errorf("oidc-default-kind: %w", err)
		}
		def = k
	}
	return auth.OIDCConfig{
		Issuer: s.OIDCIssuer, Audience: s.OIDCAudience, Algorithms: s.OIDCAlgorithms, Leeway: 30 * time.Second,
		SubjectClaim: s.OIDCSubjectClaim, KindClaim: s.OIDCKindClaim, RolesClaim: s.OIDCRolesClaim,
		GroupsClaim: s.OIDCGroupsClaim, GroupKinds: kinds, GroupRoles: s.OIDCGroupRoles, DefaultKind: def,
		RefreshInterval: s.OIDCRefresh, MinRefreshInterval: s.OIDCMinRefresh,
	}, nil
}

// CertIdentities returns how client certificates name apps.
func (s *Security) CertIdentities() *auth.CertIdentities {
	roles := map[string][]string{}
	for app, rs := range s.TLSClientRoles {
		for _, r := range strings.Split(rs, ";") {
			if r = strings.TrimSpace(r); r != "" {
				roles[app] = append(roles[app], r)
			}
		}
	}
	return &auth.CertIdentities{From: s.TLSClientIDFrom, URIPrefix: s.TLSClientURIPrefix, Roles: roles}
}

// errNoAuth is reported when no way to check tokens is configured.
var errNoAuth = errors.New("no token verification: set --auth-secret (or --auth-secret-file, " + EnvName("auth-secret") + ") or --oidc-issuer")
