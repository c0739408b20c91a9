package auth

import (
	"context"
	"log/slog"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// Authorizer authenticates each call and applies the policy.
type Authorizer struct {
	verifier *Verifier
	policy   Policy
	log      *slog.Logger
}

// NewAuthorizer returns an Authorizer.
func NewAuthorizer(v *Verifier, p Policy, log *slog.Logger) *Authorizer {
	return &Authorizer{verifier: v, policy: p, log: log}
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
	token, err := bearerToken(ctx)
	if err != nil {
		return nil, err
	}
	id, err := a.verifier.Verify(token)
	if err != nil {
		return nil, apierr.Unauthenticated("invalid bearer token")
	}
	if !rule.Allows(id) {
		return nil, apierr.PermissionDenied("%s may not call %s", id.Kind, fullMethod)
	}
	return WithIdentity(ctx, id), nil
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
		return handler(srv, &contextStream{ServerStream: ss, ctx: ctx})
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
