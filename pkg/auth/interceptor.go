package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// TokenVerifier checks a bearer token and returns the caller it names:
// *Verifier (HS256, a shared secret) and *OIDCVerifier (an OpenID Connect
// provider's keys) are the two.
type TokenVerifier interface {
	Verify(token string) (Identity, error)
}

// Verifiers accepts a token that any of its verifiers accepts, trying them
// in order; it lets a deployment move from a shared secret to OIDC.
type Verifiers []TokenVerifier

// Verify implements TokenVerifier.
func (vs Verifiers) Verify(token string) (Identity, error) {
	errs := make([]error, 0, len(vs))
	for _, v := range vs {
		id, err := v.Verify(token)
		if err == nil {
			return id, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return Identity{}, errors.New("no token verifier is configured")
	}
	return Identity{}, errors.Join(errs...)
}

// Authorizer authenticates each call and applies the policy.
type Authorizer struct {
	verifier TokenVerifier
	policy   Policy
	log      *slog.Logger
	// certs, when set, names the caller of a call without a bearer token
	// from its verified client certificate.
	certs *CertIdentities
	// accounts, when set, refuses employees the directory does not list
	// as active.
	accounts *Accounts
}

// NewAuthorizer returns an Authorizer.
func NewAuthorizer(v TokenVerifier, p Policy, log *slog.Logger) *Authorizer {
	return &Authorizer{verifier: v, policy: p, log: log}
}

// WithClientCertificates makes a verified client certificate (mutual TLS)
// authenticate calls that carry no bearer token, as the app c names.
func (a *Authorizer) WithClientCertificates(c *CertIdentities) *Authorizer {
	a.certs = c
	return a
}

// WithAccounts makes every employee call check the employee's account in
// the directory (see Accounts), and open streams check it again every
// StreamRecheck.
func (a *Authorizer) WithAccounts(acc *Accounts) *Authorizer {
	a.accounts = acc
	return a
}

// Authorize returns ctx with the caller's identity, or the error to send.
func (a *Authorizer) Authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	rule, ok := a.policy.Lookup(fullMethod)
	if !ok {
		a.log.ErrorContext(ctx, "method has no authorization rule; denied", "method", fullMethod)
		return nil, apierr.PermissionDenied("%s is not allowed", fullMethod)
	}
	if rule.Public {
		return ctx, nil
	}
	id, err := a.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if !rule.Allows(id) {
		return nil, apierr.PermissionDenied("%s may not call %s", id.Kind, fullMethod)
	}
	if a.accounts != nil {
		if err := a.accounts.Check(ctx, id, fullMethod); err != nil {
			return nil, err
		}
	}
	return WithIdentity(ctx, id), nil
}

// authenticate names the caller: by its bearer token when it sends one,
// else by its verified client certificate when mutual TLS is on.
func (a *Authorizer) authenticate(ctx context.Context) (Identity, error) {
	if a.certs != nil && !hasAuthorization(ctx) {
		if id, ok := a.certs.FromPeer(ctx); ok {
			return id, nil
		}
	}
	token, err := bearerToken(ctx)
	if err != nil {
		return Identity{}, err
	}
	id, err := a.verifier.Verify(token)
	if err != nil {
		return Identity{}, apierr.Unauthenticated("invalid bearer token")
	}
	return id, nil
}

func hasAuthorization(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get("authorization")) > 0
}

func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "", apierr.Unauthenticated("missing bearer token: send the header \"authorization: Bearer <token>\"")
	}
	scheme, token, found := strings.Cut(values[0], " ")
	if !found || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(token) == "" {
		return "", apierr.Unauthenticated("malformed authorization header: want \"Bearer <token>\"")
	}
	return strings.TrimSpace(token), nil
}

// UnaryInterceptor authorizes unary calls.
func (a *Authorizer) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := a.Authorize(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamInterceptor authorizes streaming calls.
func (a *Authorizer) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := a.Authorize(ss.Context(), info.FullMethod)
		if err != nil {
			return err
		}
		id, ok := FromContext(ctx)
		if !ok {
			return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
		}
		g := a.guard(ctx, id, info.FullMethod)
		return g.end(g.ctx, handler(srv, &contextStream{ServerStream: ss, ctx: g.ctx}))
	}
}

type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// PerRPCToken is grpc.PerRPCCredentials carrying a bearer token; clients
// (the CLI, tests) dial with grpc.WithPerRPCCredentials(PerRPCToken(t)).
type PerRPCToken string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t PerRPCToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials. Tokens
// travel over plaintext only on loopback in development; production puts
// TLS in front.
func (t PerRPCToken) RequireTransportSecurity() bool { return false }
