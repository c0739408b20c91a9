package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// SigningMethod is the one algorithm tokens are signed with. It is pinned:
// a token naming any other algorithm (including "none") is rejected.
var SigningMethod = jwt.SigningMethodHS256

// MinSecretBytes is the shortest HMAC secret accepted.
const MinSecretBytes = 32

// Claims are the JWT claims of a Tidings token.
type Claims struct {
	jwt.RegisteredClaims
	// Kind is "employee", "app" or "admin".
	Kind string `json:"kind"`
	// Roles are extra grants, such as "directory" for the HR app.
	Roles []string `json:"roles,omitempty"`
}

// TokenConfig holds what tokens are checked against.
type TokenConfig struct {
	// Secret is the HMAC key, at least MinSecretBytes long.
	Secret []byte
	// Issuer is the required "iss".
	Issuer string
	// Audience is the required "aud".
	Audience string
	// Leeway allows for clock skew on exp, nbf and iat.
	Leeway time.Duration
}

func (c TokenConfig) validate() error {
	if len(c.Secret) < MinSecretBytes {
		return fmt.Errorf("auth secret is %d bytes, want at least %d", len(c.Secret), MinSecretBytes)
	}
	if c.Issuer == "" || c.Audience == "" {
		return errors.New("auth issuer and audience must be set")
	}
	return nil
}

// Verifier checks bearer tokens.
type Verifier struct {
	cfg    TokenConfig
	parser *jwt.Parser
	// verified remembers tokens already checked, until they expire: a
	// caller sends the same token with every call, and parsing it is a
	// tenth of a post's CPU.
	verified *lru.Cache[string, verified]
	now      func() time.Time
}

// verified is a token that passed every check.
type verified struct {
	id Identity
	// until is the expiry plus the leeway.
	until time.Time
}

// VerifiedCacheSize bounds the tokens a Verifier remembers.
const VerifiedCacheSize = 65536

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg TokenConfig) (*Verifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cache, err := lru.New[string, verified](VerifiedCacheSize)
	if err != nil {
		return nil, fmt.Errorf("token cache: %w", err)
	}
	v := &Verifier{cfg: cfg, verified: cache, now: time.Now}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{SigningMethod.Alg()}),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Verify checks a token and returns the identity it names. A token seen
// before is not parsed again until it expires: it is the same string under
// the same secret, so it passes the same checks.
func (v *Verifier) Verify(token string) (Identity, error) {
	if c, ok := v.verified.Get(token); ok {
		if v.now().Before(c.until) {
			return c.id, nil
		}
		v.verified.Remove(token)
	}
	var claims Claims
	_, err := v.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		return v.cfg.Secret, nil
	})
	if err != nil {
		return Identity{}, fmt.Errorf("verify token: %w", err)
	}
	kind, err := ParseKind(claims.Kind)
	if err != nil {
		return Identity{}, fmt.Errorf("verify token: %w", err)
	}
	if claims.Subject == "" {
		return Identity{}, errors.New("verify token: no subject")
	}
	until := claims.ExpiresAt.Add(v.cfg.Leeway)
	id := Identity{Kind: kind, ID: claims.Subject, Roles: claims.Roles, Expires: until}
	v.verified.Add(token, verified{id: id, until: until})
	return id, nil
}

// Mint signs a token for id, valid for ttl. It is what `tidings token` and
// the tests use; production deployments get tokens from their identity
// provider.
func Mint(cfg TokenConfig, id Identity, ttl time.Duration, now time.Time) (string, error) {
	if err := cfg.validate(); err != nil {
		return "", err
	}
	if ttl <= 0 {
		return "", errors.New("token lifetime must be positive")
	}
	claims := Claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    cfg.Issuer,
			Subject:   id.ID,
			Audience:  jwt.ClaimStrings{cfg.Audience},
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
		Kind:  string(id.Kind),
		Roles: id.Roles,
	}
	signed, err := jwt.NewWithClaims(SigningMethod, claims).SignedString(cfg.Secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}
