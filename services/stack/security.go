package stack

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/audit"
	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/ratelimit"
	"github.com/tidingshq/tidings/pkg/tlsfiles"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// LimitedStreams are the long-lived server streams whose concurrency
// --watch-per-user and --watch-per-process bound, counted together.
var LimitedStreams = []string{
	tidingsv1.TimelineService_Watch_FullMethodName,
	tidingsv1.NotificationService_WatchNotifications_FullMethodName,
}

// security is what a serving process checks callers with: token
// verifiers, TLS, client certificates, rate limits, stream limits and the
// audit recorder, built from the configuration.
type security struct {
	verifier auth.TokenVerifier
	certs    *auth.CertIdentities
	tls      *tlsfiles.Source
	rate     *ratelimit.Limiter
	audit    *audit.Recorder
	streams  grpcserver.StreamLimits
	close    []func()
}

// newSecurity builds the security of a serving process. It reads the OIDC
// provider's keys and the certificate files, and creates the AUDIT stream.
func newSecurity(ctx context.Context, cfg config.Config, d *deps, reg prometheus.Registerer, logger *slog.Logger) (*security, error) {
	s := &security{}
	var verifiers auth.Verifiers
	if cfg.AuthSecret != "" {
		v, err := auth.NewVerifier(auth.TokenConfig{
			Secret: []byte(cfg.AuthSecret), Issuer: cfg.AuthIssuer, Audience: cfg.AuthAudience, Leeway: 30 * time.Second,
		})
		if err != nil {
			return nil, err
		}
		verifiers = append(verifiers, v)
	}
	if cfg.OIDCIssuer != "" {
		oc, err := cfg.OIDC()
		if err != nil {
			return nil, err
		}
		oc.Logger = logger
		v, err := auth.NewOIDCVerifier(ctx, oc)
		if err != nil {
			return nil, err
		}
		s.close = append(s.close, v.Close)
		verifiers = append(verifiers, v)
	}
	s.verifier = verifiers
	if len(verifiers) == 1 {
		s.verifier = verifiers[0]
	}
	if cfg.TLSCertFile != "" {
		src, err := tlsfiles.New(tlsfiles.Files{CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, ClientCAFile: cfg.TLSClientCAFile}, logger)
		if err != nil {
			return nil, err
		}
		s.tls = src
		if cfg.TLSClientCAFile != "" {
			s.certs = cfg.CertIdentities()
		}
	}
	if cfg.RateEmployee > 0 || cfg.RateApp > 0 || cfg.RateAdmin > 0 {
		rl, err := ratelimit.New(d.rdb, ratelimit.Budgets{
			Employee: cfg.RateEmployee, App: cfg.RateApp, Admin: cfg.RateAdmin, Burst: cfg.RateBurst,
		}, reg, logger)
		if err != nil {
			return nil, err
		}
		s.rate = rl
	}
	s.streams = grpcserver.StreamLimits{
		Methods:    LimitedStreams,
		PerCaller:  cfg.WatchPerUser,
		PerProcess: cfg.WatchPerProcess,
	}
	actx, cancel := context.WithTimeout(ctx, startupTimeout)
	defer cancel()
	if err := audit.EnsureStream(actx, d.js, cfg.StreamReplicas, cfg.AuditMaxAge); err != nil {
		return nil, err
	}
	rec, err := audit.NewRecorder(d.js, cfg.AuditBuffer, reg, logger)
	if err != nil {
		return nil, err
	}
	s.audit = rec
	return s, nil
}

// Accounts returns the account check of employees (auth.Accounts) over
// the profile projection of c, with the default cache and stream recheck
// intervals.
func (c *Components) Accounts() (*auth.Accounts, error) {
	return auth.NewAccounts(AccountLookup(c.projector.Stores().Profiles), auth.AccountOptions{})
}

// AccountLookup reads an employee's account state from the profile
// projection.
func AccountLookup(profiles *profilestore.Store) auth.AccountLookup {
	return func(ctx context.Context, userID string) (auth.AccountState, error) {
		found, active, err := profiles.Active(ctx, userID)
		switch {
		case err != nil:
			return 0, err
		case !found:
			return auth.AccountMissing, nil
		case active:
			return auth.AccountActive, nil
		}
		return auth.AccountInactive, nil
	}
}

// serverOptions sets the security parts of the gRPC server's options.
func (s *security) serverOptions(o *grpcserver.Options, accounts *auth.Accounts, logger *slog.Logger) {
	a := auth.NewAuthorizer(s.verifier, auth.DefaultPolicy(), logger).WithAccounts(accounts)
	if s.certs != nil {
		a.WithClientCertificates(s.certs)
	}
	o.Authorizer = a
	if s.tls != nil {
		o.TLS = s.tls.ServerConfig()
	}
	if s.rate != nil {
		o.RateLimit = s.rate
	}
	o.Audit = s.audit
	o.Streams = s.streams
}

// run starts the background work: certificate reloads and the audit
// recorder, until ctx ends.
func (s *security) run(ctx context.Context, g *errgroup.Group, cfg config.Config) {
	if s.tls != nil {
		g.Go(func() error {
			s.tls.Watch(ctx, cfg.TLSReload)
			return nil
		})
	}
	g.Go(func() error {
		s.audit.Run(ctx, cfg.ShutdownGrace)
		return nil
	})
}

func (s *security) shutdown() {
	for _, c := range s.close {
		c()
	}
}
