package auth_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
)

// issuer is an OpenID provider served by the test on loopback: a discovery
// document and a JWKS whose keys the test rotates.
type issuer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]signingKey // kid → key, as published
	fetches atomic.Int32          // JWKS requests served
}

type signingKey struct {
	method jwt.SigningMethod
	priv   crypto.Signer
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	is := &issuer{keys: map[string]signingKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.url(), "jwks_uri": is.url() + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		store := jwkset.NewMemoryStorage()
		is.mu.Lock()
		for kid, k := range is.keys {
			jwk, err := jwkset.NewJWKFromKey(k.priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
				KID: kid, ALG: jwkset.ALG(k.method.Alg()), USE: jwkset.UseSig,
			}})
			if err == nil {
				err = store.KeyWrite(r.Context(), jwk)
			}
			if err != nil {
				is.mu.Unlock()
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		is.mu.Unlock()
		raw, err := store.JSONPublic(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write(raw)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) url() string { return is.srv.URL }

// publish replaces the published keys.
func (is *issuer) publish(keys map[string]signingKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

func rsaKey(t *testing.T) signingKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return signingKey{jwt.SigningMethodRS256, k}
}

func ecKey(t *testing.T) signingKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return signingKey{jwt.SigningMethodES256, k}
}

func edKey(t *testing.T) signingKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return signingKey{jwt.SigningMethodEdDSA, k}
}

// sign signs claims with key under kid.
func sign(t *testing.T, key signingKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(key.method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key.priv)
	require.NoError(t, err)
	return s
}

func TestOIDC(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	keyA, keyEC, keyEd := rsaKey(t), ecKey(t), edKey(t)
	is.publish(map[string]signingKey{"a": keyA, "ec": keyEC, "ed": keyEd})
	v, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{
		Issuer:             is.url(),
		Audience:           "tidings",
		KindClaim:          "tidings_kind",
		RolesClaim:         "tidings_roles",
		GroupsClaim:        "groups",
		GroupKinds:         map[string]auth.Kind{"feed-admins": auth.KindAdmin, "apps": auth.KindApp},
		GroupRoles:         map[string]string{"hr-sync": auth.RoleDirectory},
		DefaultKind:        auth.KindEmployee,
		SubjectClaim:       "preferred_username",
		MinRefreshInterval: time.Hour,
	})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	require.EqualValues(t, 1, is.fetches.Load(), "the keys are read once at start")

	now := time.Now()
	claims := func(user string, extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": is.url(), "aud": "tidings", "sub": "opaque-" + user, "preferred_username": user,
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
		for k, x := range extra {
			c[k] = x
		}
		return c
	}

	t.Run("algorithms and claim mapping", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			key   signingKey
			kid   string
			extra jwt.MapClaims
			want  auth.Identity
		}{
			{"RS256, default kind", keyA, "a", nil, auth.Identity{Kind: auth.KindEmployee, ID: "ana"}},
			{"ES256, kind claim", keyEC, "ec", jwt.MapClaims{"tidings_kind": "admin"}, auth.Identity{Kind: auth.KindAdmin, ID: "ana"}},
			{"EdDSA, group to kind and role", keyEd, "ed", jwt.MapClaims{"groups": []string{"apps", "hr-sync", "other"}}, auth.Identity{Kind: auth.KindApp, ID: "ana", Roles: []string{auth.RoleDirectory}}},
			{"roles claim as a string", keyA, "a", jwt.MapClaims{"tidings_kind": "app", "tidings_roles": "directory"}, auth.Identity{Kind: auth.KindApp, ID: "ana", Roles: []string{auth.RoleDirectory}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got, err := v.Verify(sign(t, tc.key, tc.kid, claims("ana", tc.extra)))
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		pubDER, err := x509.MarshalPKIXPublicKey(keyA.priv.Public())
		require.NoError(t, err)
		hsConfused := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("ana", nil))
		hsConfused.Header["kid"] = "a"
		confused, err := hsConfused.SignedString(pubDER)
		require.NoError(t, err)
		none := jwt.NewWithClaims(jwt.SigningMethodNone, claims("ana", nil))
		none.Header["kid"] = "a"
		unsigned, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		wrongKey := sign(t, rsaKey(t), "a", claims("ana", nil))
		fetches := is.fetches.Load()
		for _, tc := range []struct{ name, token string }{
			{"alg none", unsigned},
			{"HS256 with the public key as secret", confused},
			{"signed by another key under a known kid", wrongKey},
			{"wrong issuer", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"iss": "https://evil.example"}))},
			{"wrong audience", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"aud": "other"}))},
			{"expired", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}))},
			{"no expiry", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"exp": nil}))},
			{"unknown kind", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"tidings_kind": "root"}))},
			{"two kinds", sign(t, keyA, "a", claims("ana", jwt.MapClaims{"tidings_kind": "employee", "groups": []string{"feed-admins"}}))},
			{"subject not an id", sign(t, keyA, "a", claims("ana bob", nil))},
			{"no subject", sign(t, keyA, "a", claims("", nil))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := v.Verify(tc.token)
				require.Error(t, err)
			})
		}
		require.Equal(t, fetches, is.fetches.Load(), "tokens under known kids cause no fetch")
	})

	t.Run("rotation", func(t *testing.T) {
		old := sign(t, keyA, "a", claims("bo", nil))
		got, err := v.Verify(old)
		require.NoError(t, err)
		require.Equal(t, "bo", got.ID)

		// The provider rotates: key b is published, key a is withdrawn.
		keyB := rsaKey(t)
		is.publish(map[string]signingKey{"b": keyB, "ec": keyEC, "ed": keyEd})
		before := is.fetches.Load()
		got, err = v.Verify(sign(t, keyB, "b", claims("bo", nil)))
		require.NoError(t, err, "a token under a new kid makes the keys be fetched again")
		require.Equal(t, "bo", got.ID)
		require.Equal(t, before+1, is.fetches.Load())

		_, err = v.Verify(old)
		require.Error(t, err, "a token of a withdrawn key is refused, even one accepted before")
		_, err = v.Verify(sign(t, keyA, "a", claims("cy", nil)))
		require.Error(t, err, "a new token of a withdrawn key is refused")

		// Unknown kids do not make the keys be fetched more than once per
		// MinRefreshInterval.
		for range 20 {
			_, err = v.Verify(sign(t, keyB, "made-up", claims("bo", nil)))
			require.Error(t, err)
		}
		require.Equal(t, before+1, is.fetches.Load(), "refreshes on unknown kids are rate-limited")
	})
}

func TestOIDCDiscoveryMustMatch(t *testing.T) {
	t.Parallel()
	is := newIssuer(t)
	is.publish(map[string]signingKey{"a": edKey(t)})
	_, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.url() + "/other", Audience: "tidings"})
	require.Error(t, err, "discovery at another issuer")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: "http://idp.example.com", Audience: "tidings"})
	require.ErrorContains(t, err, "https")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.url(), Audience: "tidings", Algorithms: []string{"HS256"}})
	require.ErrorContains(t, err, "HS256")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.url()})
	require.ErrorContains(t, err, "audience")
}
