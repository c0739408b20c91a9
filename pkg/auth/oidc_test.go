package auth_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/testenv"
)

func TestOIDC(t *testing.T) {
	t.Parallel()
	const leeway = 5 * time.Second
	is := testenv.NewIssuer(t)
	keyA, keyEC, keyEd := testenv.RSAKey(t), testenv.ECKey(t), testenv.EdKey(t)
	is.Publish(map[string]testenv.SigningKey{"a": keyA, "ec": keyEC, "ed": keyEd})
	v, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{
		Issuer:             is.URL(),
		Audience:           "tidings",
		KindClaim:          "tidings_kind",
		RolesClaim:         "tidings_roles",
		GroupsClaim:        "groups",
		GroupKinds:         map[string]auth.Kind{"feed-admins": auth.KindAdmin, "apps": auth.KindApp},
		GroupRoles:         map[string]string{"hr-sync": auth.RoleDirectory},
		DefaultKind:        auth.KindEmployee,
		SubjectClaim:       "preferred_username",
		MinRefreshInterval: time.Hour,
		Leeway:             leeway,
	})
	require.NoError(t, err)
	t.Cleanup(v.Close)
	require.Equal(t, 1, is.Fetches(), "the keys are read once at start")

	now := time.Now()
	claims := func(user string, extra jwt.MapClaims) jwt.MapClaims {
		c := jwt.MapClaims{
			"iss": is.URL(), "aud": "tidings", "sub": "opaque-" + user, "preferred_username": user,
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
			key   testenv.SigningKey
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
				got, err := v.Verify(tc.key.Sign(t, tc.kid, claims("ana", tc.extra)))
				require.NoError(t, err)
				require.Equal(t, now.Add(time.Hour).Truncate(time.Second), got.Expires.Add(-leeway), "exp plus the leeway")
				got.Expires = time.Time{}
				require.Equal(t, tc.want, got)
			})
		}
	})

	t.Run("refused", func(t *testing.T) {
		pubDER, err := x509.MarshalPKIXPublicKey(keyA.Priv.Public())
		require.NoError(t, err)
		hsConfused := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("ana", nil))
		hsConfused.Header["kid"] = "a"
		confused, err := hsConfused.SignedString(pubDER)
		require.NoError(t, err)
		none := jwt.NewWithClaims(jwt.SigningMethodNone, claims("ana", nil))
		none.Header["kid"] = "a"
		unsigned, err := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
		require.NoError(t, err)
		wrongKey := testenv.RSAKey(t).Sign(t, "a", claims("ana", nil))
		fetches := is.Fetches()
		for _, tc := range []struct{ name, token string }{
			{"alg none", unsigned},
			{"HS256 with the public key as secret", confused},
			{"signed by another key under a known kid", wrongKey},
			{"wrong issuer", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"iss": "https://evil.example"}))},
			{"wrong audience", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"aud": "other"}))},
			{"expired", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}))},
			{"no expiry", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"exp": nil}))},
			{"unknown kind", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"tidings_kind": "root"}))},
			{"two kinds", keyA.Sign(t, "a", claims("ana", jwt.MapClaims{"tidings_kind": "employee", "groups": []string{"feed-admins"}}))},
			{"subject not an id", keyA.Sign(t, "a", claims("ana bob", nil))},
			{"no subject", keyA.Sign(t, "a", claims("", nil))},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := v.Verify(tc.token)
				require.Error(t, err)
			})
		}
		require.Equal(t, fetches, is.Fetches(), "tokens under known kids cause no fetch")
	})

	t.Run("rotation", func(t *testing.T) {
		old := keyA.Sign(t, "a", claims("bo", nil))
		got, err := v.Verify(old)
		require.NoError(t, err)
		require.Equal(t, "bo", got.ID)

		// The provider rotates: key b is published, key a is withdrawn.
		keyB := testenv.RSAKey(t)
		is.Publish(map[string]testenv.SigningKey{"b": keyB, "ec": keyEC, "ed": keyEd})
		before := is.Fetches()
		got, err = v.Verify(keyB.Sign(t, "b", claims("bo", nil)))
		require.NoError(t, err, "a token under a new kid makes the keys be fetched again")
		require.Equal(t, "bo", got.ID)
		require.Equal(t, before+1, is.Fetches())

		_, err = v.Verify(old)
		require.Error(t, err, "a token of a withdrawn key is refused, even one accepted before")
		_, err = v.Verify(keyA.Sign(t, "a", claims("cy", nil)))
		require.Error(t, err, "a new token of a withdrawn key is refused")

		// Unknown kids do not make the keys be fetched more than once per
		// MinRefreshInterval.
		for range 20 {
			_, err = v.Verify(keyB.Sign(t, "made-up", claims("bo", nil)))
			require.Error(t, err)
		}
		require.Equal(t, before+1, is.Fetches(), "refreshes on unknown kids are rate-limited")
	})
}

func TestOIDCDiscoveryMustMatch(t *testing.T) {
	t.Parallel()
	is := testenv.NewIssuer(t)
	is.Publish(map[string]testenv.SigningKey{"a": testenv.EdKey(t)})
	_, err := auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.URL() + "/other", Audience: "tidings"})
	require.Error(t, err, "discovery at another issuer")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: "http://idp.example.com", Audience: "tidings"})
	require.ErrorContains(t, err, "https")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.URL(), Audience: "tidings", Algorithms: []string{"HS256"}})
	require.ErrorContains(t, err, "HS256")
	_, err = auth.NewOIDCVerifier(t.Context(), auth.OIDCConfig{Issuer: is.URL()})
	require.ErrorContains(t, err, "audience")
}
