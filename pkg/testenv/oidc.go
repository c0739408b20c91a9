package testenv

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// Issuer is an OpenID provider served by the test on loopback: a discovery
// document and a JWKS whose keys the test publishes and withdraws.
type Issuer struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    map[string]SigningKey // kid → key, as published
	fetches atomic.Int32
}

// SigningKey is a private key and the algorithm it signs with.
type SigningKey struct {
	Method jwt.SigningMethod
	Priv   crypto.Signer
}

// NewIssuer serves an issuer until the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{keys: map[string]SigningKey{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": is.URL(), "jwks_uri": is.URL() + "/keys"})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		is.fetches.Add(1)
		store := jwkset.NewMemoryStorage()
		is.mu.Lock()
		for kid, k := range is.keys {
			jwk, err := jwkset.NewJWKFromKey(k.Priv.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
				KID: kid, ALG: jwkset.ALG(k.Method.Alg()), USE: jwkset.UseSig,
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

// URL is the issuer URL.
func (is *Issuer) URL() string { return is.srv.URL }

// Fetches counts the JWKS requests served.
func (is *Issuer) Fetches() int { return int(is.fetches.Load()) }

// Publish replaces the published keys.
func (is *Issuer) Publish(keys map[string]SigningKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

// RSAKey makes an RS256 key.
func RSAKey(t testing.TB) SigningKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	return SigningKey{jwt.SigningMethodRS256, k}
}

// ECKey makes an ES256 key.
func ECKey(t testing.TB) SigningKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return SigningKey{jwt.SigningMethodES256, k}
}

// EdKey makes an EdDSA (Ed25519) key.
func EdKey(t testing.TB) SigningKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return SigningKey{jwt.SigningMethodEdDSA, k}
}

// Sign signs claims with key under kid.
func (k SigningKey) Sign(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(k.Method, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(k.Priv)
	require.NoError(t, err)
	return s
}
