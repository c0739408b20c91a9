package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
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
}

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg TokenConfig) (*Verifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return &Verifier{
		cfg: cfg,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{SigningMethod.Alg()}),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.Leeway),
		),
	}, nil
}

// Verify checks a token and returns the identity it names.
func (v *Verifier) Verify(token string) (Identity, error) {
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
	return Identity{Kind: kind, ID: claims.Subject, Roles: claims.Roles}, nil
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
