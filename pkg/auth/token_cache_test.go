package auth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestVerifiedTokensExpire checks that a remembered token stops working
// when it expires, like a parsed one.
func TestVerifiedTokensExpire(t *testing.T) {
	cfg := TokenConfig{Secret: []byte("0123456789abcdef0123456789abcdef"), Issuer: "iss", Audience: "aud", Leeway: time.Second}
	v, err := NewVerifier(cfg)
	require.NoError(t, err)
	now := time.Now()
	v.now = func() time.Time { return now }
	want := Identity{Kind: KindEmployee, ID: "ana"}
	tok, err := Mint(cfg, want, time.Minute, now)
	require.NoError(t, err)

	want.Expires = now.Add(time.Minute).Truncate(time.Second).Add(cfg.Leeway)
	for range 2 { // parsed, then remembered
		got, err := v.Verify(tok)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	require.Equal(t, 1, v.verified.Len())

	now = now.Add(time.Minute + 2*time.Second)
	_, err = v.Verify(tok)
	require.ErrorContains(t, err, "expired")
	require.Zero(t, v.verified.Len(), "an expired token is forgotten")

	// A token signed with another secret is never remembered.
	other := cfg
	other.Secret = []byte("another-secret-of-thirty-two-byte")
	forged, err := Mint(other, want, time.Hour, now)
	require.NoError(t, err)
	_, err = v.Verify(forged)
	require.Error(t, err)
	require.Zero(t, v.verified.Len())
}
