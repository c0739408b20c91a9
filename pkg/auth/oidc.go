package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// OIDC verification: tokens issued by an OpenID Connect provider (Entra ID,
// Okta, Keycloak, Dex, ...), signed with the provider's rotating keys.
//
// The provider's discovery document names its JWKS; the keys are fetched
// and cached by github.com/MicahParks/keyfunc (over
// github.com/MicahParks/jwkset), refreshed in the background every
// RefreshInterval and, when a token names a key id the cache lacks, at once
// but at most once every MinRefreshInterval, so a flood of made-up key ids
// cannot make Tidings hammer the provider. Signatures and registered claims
// are checked by github.com/golang-jwt/jwt, the library that already checks
// the HS256 tokens of `tidings dev`; no cryptography is written here.

// OIDCAlgorithms are the signature algorithms accepted by default.
var OIDCAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// allowedOIDCAlgorithms are those that may be configured: asymmetric ones
// only, so a token signed with a public key as an HMAC secret, or with
// "none", is refused whatever the configuration says.
var allowedOIDCAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// OIDCConfig says where tokens come from and how their claims name the
// caller.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL; it must equal the "issuer" of
	// its discovery document and the "iss" of every token. https, or http
	// on a loopback address (tests).
	Issuer string
	// Audience is the required "aud" (the client id Tidings is registered
	// under).
	Audience string
	// Algorithms are the accepted signature algorithms; OIDCAlgorithms when
	// empty.
	Algorithms []string
	// Leeway allows for clock skew on exp, nbf and iat.
	Leeway time.Duration

	// SubjectClaim holds the caller's id (a Tidings user or app id);
	// "sub" when empty.
	SubjectClaim string
	// KindClaim holds the caller's kind ("employee", "app" or "admin");
	// empty to not read one.
	KindClaim string
	// RolesClaim holds extra roles (a list, or a space-separated string);
	// empty to not read any.
	RolesClaim string
	// GroupsClaim holds the caller's groups, mapped by GroupKinds and
	// GroupRoles; empty to not read any.
	GroupsClaim string
	// GroupKinds maps a group to a caller kind.
	GroupKinds map[string]Kind
	// GroupRoles maps a group to a role.
	GroupRoles map[string]string
	// DefaultKind is the kind of a token that names none; empty refuses
	// such tokens.
	DefaultKind Kind

	// RefreshInterval is how often the keys are fetched in the background;
	// an hour when zero.
	RefreshInterval time.Duration
	// MinRefreshInterval bounds fetches caused by unknown key ids; a
	// minute when zero.
	MinRefreshInterval time.Duration
	// HTTPClient fetches the discovery document and the keys; a client
	// with a 10 s timeout when nil.
	HTTPClient *http.Client
	// Logger reports failed background refreshes.
	Logger *slog.Logger
}

// ValidateOIDCIssuer reports whether u may be an issuer URL: https, or http
// on a loopback address.
func ValidateOIDCIssuer(u string) error {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.RawQuery != "" || p.Fragment != "" {
		return fmt.Errorf("oidc issuer %q: want an absolute URL without query or fragment", u)
	}
	switch p.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(p.Hostname()) {
			return nil
		}
	}
	return fmt.Errorf("oidc issuer %q: want https (http only on loopback)", u)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Completed returns the configuration with defaults filled in, or what is
// wrong with it; it reaches no network.
func (c OIDCConfig) Completed() (OIDCConfig, error) {
	err := c.complete()
	return c, err
}

func (c *OIDCConfig) complete() error {
	if err := ValidateOIDCIssuer(c.Issuer); err != nil {
		return err
	}
	if c.Audience == "" {
		return errors.New("oidc audience must be set")
	}
	if len(c.Algorithms) == 0 {
		c.Algorithms = OIDCAlgorithms
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(allowedOIDCAlgorithms, a) {
			return fmt.Errorf("oidc algorithm %q: want one of %s", a, strings.Join(allowedOIDCAlgorithms, ", "))
		}
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = "sub"
	}
	if c.DefaultKind != "" {
		if _, err := ParseKind(string(c.DefaultKind)); err != nil {
			return fmt.Errorf("oidc default kind: %w", err)
		}
	}
	for g, k := range c.GroupKinds {
		if _, err := ParseKind(string(k)); err != nil {
			return fmt.Errorf("oidc group %q: %w", g, err)
		}
	}
	if c.RefreshInterval <= 0 {
		c.RefreshInterval = time.Hour
	}
	if c.MinRefreshInterval <= 0 {
		c.MinRefreshInterval = time.Minute
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Timeout: defaultFetchTimeout}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// defaultFetchTimeout bounds a fetch of the discovery document or the keys
// when the HTTP client sets no timeout of its own.
const defaultFetchTimeout = 10 * time.Second

// fetchTimeout is how long a fetch may take.
func (c *OIDCConfig) fetchTimeout() time.Duration {
	if t := c.HTTPClient.Timeout; t > 0 {
		return t
	}
	return defaultFetchTimeout
}

// discovery is the part of an OpenID Provider's metadata Tidings reads.
type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURI string `json:"jwks_uri"`
}

// OIDCVerifier checks tokens issued by an OpenID Connect provider.
type OIDCVerifier struct {
	cfg    OIDCConfig
	keys   keyfunc.Keyfunc
	parser *jwt.Parser
	// verified remembers tokens already checked, with the key that signed
	// them: a remembered token is accepted only while its key is still
	// published.
	verified *lru.Cache[string, oidcVerified]
	now      func() time.Time
	stop     context.CancelFunc
}

type oidcVerified struct {
	id    Identity
	kid   string
	until time.Time
}

// NewOIDCVerifier reads the provider's discovery document and keys. It
// fails when either cannot be had or the issuer does not match. Close
// stops the background refresh.
func NewOIDCVerifier(ctx context.Context, cfg OIDCConfig) (*OIDCVerifier, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	disc, err := fetchDiscovery(ctx, cfg.HTTPClient, cfg.Issuer)
	if err != nil {
		return nil, err
	}
	jwksURL, err := url.Parse(disc.JWKSURI)
	if err != nil || (jwksURL.Scheme != "https" && (jwksURL.Scheme != "http" || !isLoopback(jwksURL.Hostname()))) {
		return nil, fmt.Errorf("oidc discovery of %s: jwks_uri %q is not https", cfg.Issuer, disc.JWKSURI)
	}
	kctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	fail := false
	keys, err := keyfunc.NewDefaultOverrideCtx(kctx, []string{disc.JWKSURI}, keyfunc.Override{
		Client:                    cfg.HTTPClient,
		HTTPTimeout:               cfg.fetchTimeout(),
		NoErrorReturnFirstHTTPReq: &fail,
		RefreshInterval:           cfg.RefreshInterval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(cfg.MinRefreshInterval), 1),
		// A token with an unknown key id waits at most this long for the
		// limiter and the fetch together: when the limiter has no refresh
		// to give for longer, the token is refused at once.
		RateLimitWaitMax: cfg.fetchTimeout(),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				cfg.Logger.WarnContext(ctx, "refresh oidc keys", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		stop()
		return nil, fmt.Errorf("read oidc keys of %s: %w", cfg.Issuer, err)
	}
	cache, err := lru.New[string, oidcVerified](VerifiedCacheSize)
	if err != nil {
		stop()
		return nil, fmt.Errorf("token cache: %w", err)
	}
	v := &OIDCVerifier{cfg: cfg, keys: keys, verified: cache, now: time.Now, stop: stop}
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Close stops the background refresh of the keys.
func (v *OIDCVerifier) Close() { v.stop() }

func fetchDiscovery(ctx context.Context, client *http.Client, issuer string) (discovery, error) {
	u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return discovery{}, fmt.Errorf("oidc discovery %s: %w", u, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return discovery{}, fmt.Errorf("oidc discovery %s: %w", u, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return discovery{}, fmt.Errorf("oidc discovery %s: HTTP %d", u, resp.StatusCode)
	}
	var d discovery
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&d); err != nil {
		return discovery{}, fmt.Errorf("oidc discovery %s: %w", u, err)
	}
	// OpenID Connect Discovery 1.0, section 4.3: the issuer must be
	// exactly the one asked for.
	if d.Issuer != issuer {
		return discovery{}, fmt.Errorf("oidc discovery %s: issuer %q is not %q", u, d.Issuer, issuer)
	}
	if d.JWKSURI == "" {
		return discovery{}, fmt.Errorf("oidc discovery %s: no jwks_uri", u)
	}
	return d, nil
}

// validID is what Tidings accepts as a user or app id.
var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Verify checks a token and returns the identity its claims map to.
func (v *OIDCVerifier) Verify(token string) (Identity, error) {
	ctx, cancel := context.WithTimeout(context.Background(), v.cfg.fetchTimeout())
	defer cancel()
	if c, ok := v.verified.Get(token); ok {
		if v.now().Before(c.until) {
			if _, err := v.keys.Storage().KeyRead(ctx, c.kid); err == nil {
				return c.id, nil
			}
		}
		v.verified.Remove(token)
	}
	claims := jwt.MapClaims{}
	tok, err := v.parser.ParseWithClaims(token, claims, v.keys.KeyfuncCtx(ctx))
	if err != nil {
		return Identity{}, fmt.Errorf("verify oidc token: %w", err)
	}
	id, err := v.identity(claims)
	if err != nil {
		return Identity{}, fmt.Errorf("verify oidc token: %w", err)
	}
	// The parser requires an expiry.
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		return Identity{}, errors.New("verify oidc token: no expiry")
	}
	id.Expires = exp.Add(v.cfg.Leeway)
	if kid, _ := tok.Header["kid"].(string); kid != "" {
		v.verified.Add(token, oidcVerified{id: id, kid: kid, until: id.Expires})
	}
	return id, nil
}

// identity maps verified claims to a caller.
func (v *OIDCVerifier) identity(claims jwt.MapClaims) (Identity, error) {
	sub, _ := claims[v.cfg.SubjectClaim].(string)
	if !validID.MatchString(sub) {
		return Identity{}, fmt.Errorf("claim %q is not a valid caller id", v.cfg.SubjectClaim)
	}
	kinds := map[Kind]bool{}
	if v.cfg.KindClaim != "" {
		if raw, ok := claims[v.cfg.KindClaim]; ok {
			s, _ := raw.(string)
			k, err := ParseKind(s)
			if err != nil {
				return Identity{}, fmt.Errorf("claim %q: %w", v.cfg.KindClaim, err)
			}
			kinds[k] = true
		}
	}
	var roles []string
	if v.cfg.RolesClaim != "" {
		roles = append(roles, stringList(claims[v.cfg.RolesClaim])...)
	}
	if v.cfg.GroupsClaim != "" {
		for _, g := range stringList(claims[v.cfg.GroupsClaim]) {
			if k, ok := v.cfg.GroupKinds[g]; ok {
				kinds[k] = true
			}
			if r, ok := v.cfg.GroupRoles[g]; ok {
				roles = append(roles, r)
			}
		}
	}
	var kind Kind
	switch len(kinds) {
	case 0:
		if v.cfg.DefaultKind == "" {
			return Identity{}, errors.New("the token names no caller kind")
		}
		kind = v.cfg.DefaultKind
	case 1:
		for k := range kinds {
			kind = k
		}
	default:
		return Identity{}, errors.New("the token names more than one caller kind")
	}
	slices.Sort(roles)
	return Identity{Kind: kind, ID: sub, Roles: slices.Compact(roles)}, nil
}

// stringList reads a claim that is a list of strings or one
// space-separated string.
func stringList(raw any) []string {
	switch x := raw.(type) {
	case string:
		return strings.Fields(x)
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
