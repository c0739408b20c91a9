package auth

import (
	"context"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// Offboarding: a valid token is not enough for an employee. The employee
// directory (the profile projection) must still list them as active, so
// that AdminService.RemoveUser or ProfileService.DeactivateProfile ends
// what their tokens can do before the tokens expire:
//
//   - an employee whose profile is deactivated (removed) is refused every
//     call, reads included, with PermissionDenied and the reason
//     ACCOUNT_INACTIVE;
//   - an employee with no profile at all (a "ghost": the identity provider
//     knows them, the directory does not yet) may read but not write, with
//     PermissionDenied and the reason ACCOUNT_UNKNOWN: a new hire may sign
//     in before the HR sync lists them, but nothing is written in the name
//     of a user the directory does not know.
//
// Admins and apps are not employees of the directory: their access is
// revoked at the identity provider (or by removing their certificate).
//
// The check runs on every employee call, so answers are remembered for
// AccountOptions.CacheTTL (a second by default): one HGET per employee per
// second and per process at most. A removal therefore takes effect on each
// API process at most CacheTTL after the profile projection applies it.

// AccountState is what the employee directory says of a user.
type AccountState int

// The states of an account.
const (
	// AccountMissing: the directory has no profile for the user.
	AccountMissing AccountState = iota
	// AccountActive: the profile exists and is active.
	AccountActive
	// AccountInactive: the profile exists and is deactivated (offboarded).
	AccountInactive
)

// Reasons of the PermissionDenied errors of the account check.
const (
	ReasonAccountInactive = "ACCOUNT_INACTIVE"
	ReasonAccountUnknown  = "ACCOUNT_UNKNOWN"
)

// AccountLookup reads the state of a user's account from the directory.
type AccountLookup func(ctx context.Context, userID string) (AccountState, error)

// AccountOptions tune Accounts.
type AccountOptions struct {
	// CacheTTL is how long an answer is remembered; DefaultAccountCacheTTL
	// when zero, no caching when negative.
	CacheTTL time.Duration
	// StreamRecheck is how often an open stream of an employee checks the
	// account again; DefaultStreamRecheck when zero.
	StreamRecheck time.Duration
}

// Defaults of AccountOptions.
const (
	DefaultAccountCacheTTL = time.Second
	DefaultStreamRecheck   = 2 * time.Second
	accountCacheSize       = 65536
)

// Accounts checks employees against the directory.
type Accounts struct {
	lookup  AccountLookup
	ttl     time.Duration
	recheck time.Duration
	cache   *lru.Cache[string, cachedAccount]
	now     func() time.Time
}

type cachedAccount struct {
	state AccountState
	until time.Time
}

// NewAccounts returns Accounts reading through lookup.
func NewAccounts(lookup AccountLookup, o AccountOptions) (*Accounts, error) {
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultAccountCacheTTL
	}
	if o.StreamRecheck <= 0 {
		o.StreamRecheck = DefaultStreamRecheck
	}
	cache, err := lru.New[string, cachedAccount](accountCacheSize)
	if err != nil {
		return nil, fmt.Errorf("account cache: %w", err)
	}
	return &Accounts{lookup: lookup, ttl: o.CacheTTL, recheck: o.StreamRecheck, cache: cache, now: time.Now}, nil
}

// State returns the state of a user's account, remembered for the cache
// TTL.
func (a *Accounts) State(ctx context.Context, userID string) (AccountState, error) {
	now := a.now()
	if c, ok := a.cache.Get(userID); ok && now.Before(c.until) {
		return c.state, nil
	}
	st, err := a.lookup(ctx, userID)
	if err != nil {
		return 0, fmt.Errorf("read account of %s: %w", userID, err)
	}
	if a.ttl > 0 {
		a.cache.Add(userID, cachedAccount{state: st, until: now.Add(a.ttl)})
	}
	return st, nil
}

// Check returns nil when an employee's account allows a call of
// fullMethod, or the error to send.
func (a *Accounts) Check(ctx context.Context, id Identity, fullMethod string) error {
	if id.Kind != KindEmployee {
		return nil
	}
	st, err := a.State(ctx, id.ID)
	if err != nil {
		return apierr.Unavailable("the employee directory cannot be read to check the caller; retry later")
	}
	return accountError(id, st, fullMethod)
}

func accountError(id Identity, st AccountState, fullMethod string) error {
	switch st {
	case AccountActive:
		return nil
	case AccountInactive:
		return &apierr.Error{Code: codes.PermissionDenied, Reason: ReasonAccountInactive,
			Message: fmt.Sprintf("employee %s is deactivated in the directory; their tokens are refused", id.ID)}
	}
	if write, known := IsWrite(fullMethod); write || !known {
		return &apierr.Error{Code: codes.PermissionDenied, Reason: ReasonAccountUnknown,
			Message: fmt.Sprintf("employee %s has no profile in the directory; they may read but not write until the directory lists them", id.ID)}
	}
	return nil
}
