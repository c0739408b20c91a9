// Package auth knows who is calling and what they may do.
//
// Every RPC carries a bearer token (a JWT) naming the caller: an employee
// (sub = user id), an app (sub = app id), or an admin (sub = user id). The
// Verifier checks the token with a pinned algorithm and required expiry,
// issuer and audience; the Policy maps each gRPC method to the kinds of
// caller allowed to call it, denying every method it does not name. Finer
// rules ("an employee acts only as themselves") are checked in the handlers
// with the helpers in this package.
package auth

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Kind is the kind of caller.
type Kind string

// The kinds of caller.
const (
	KindEmployee Kind = "employee"
	KindApp      Kind = "app"
	KindAdmin    Kind = "admin"
)

// Roles an app may hold.
const (
	// RoleDirectory lets an app sync the employee directory (upsert,
	// deactivate and reactivate profiles).
	RoleDirectory = "directory"
)

// ParseKind parses a kind as written in tokens and on the command line.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(strings.ToLower(s)); k {
	case KindEmployee, KindApp, KindAdmin:
		return k, nil
	}
	return "", fmt.Errorf("unknown caller kind %q (want employee, app or admin)", s)
}

// Identity is an authenticated caller.
type Identity struct {
	Kind  Kind
	ID    string
	Roles []string
	// Expires is when the credential stops being accepted (a token's exp
	// plus the verifier's clock-skew leeway); zero when it does not expire
	// (a client certificate, checked at each handshake). Streams end then.
	Expires time.Time
}

// HasRole reports whether the caller holds role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

// IsAdmin reports whether the caller is an admin.
func (id Identity) IsAdmin() bool { return id.Kind == KindAdmin }

// Caller returns the identity as recorded on change events.
func (id Identity) Caller() *tidingsv1.Caller {
	kind := tidingsv1.CallerKind_CALLER_KIND_UNSPECIFIED
	switch id.Kind {
	case KindEmployee:
		kind = tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE
	case KindApp:
		kind = tidingsv1.CallerKind_CALLER_KIND_APP
	case KindAdmin:
		kind = tidingsv1.CallerKind_CALLER_KIND_ADMIN
	}
	return &tidingsv1.Caller{Kind: kind, Id: id.ID}
}

// String names the caller for logs.
func (id Identity) String() string { return string(id.Kind) + ":" + id.ID }

type identityKey struct{}

// WithIdentity returns a context carrying id.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// FromContext returns the caller of the current RPC. ok is false for public
// methods (health, reflection), which carry no identity.
func FromContext(ctx context.Context) (id Identity, ok bool) {
	id, ok = ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// ActsAsUser reports whether the caller may act on behalf of userID: an
// employee only as themselves, an admin as anyone.
func (id Identity) ActsAsUser(userID string) bool {
	switch id.Kind {
	case KindAdmin:
		return true
	case KindEmployee:
		return id.ID == userID
	}
	return false
}
