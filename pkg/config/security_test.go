package config_test

import (
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/config"
)

// TestSecurityValidation sets environment variables, so it runs alone.
func TestSecurityValidation(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // "" for valid
	}{
		{"defaults with a secret", []string{"--auth-secret", secret}, nil, ""},
		{"no way to check tokens", nil, nil, "no token verification"},
		{"oidc alone", []string{"--oidc-issuer", "https://idp.example.com", "--oidc-audience", "tidings"}, nil, ""},
		{"oidc from the environment", nil, map[string]string{"TIDINGS_OIDC_ISSUER": "https://idp.example.com", "TIDINGS_OIDC_AUDIENCE": "tidings"}, ""},
		{"oidc over http", []string{"--oidc-issuer", "http://idp.example.com", "--oidc-audience", "tidings"}, nil, "https"},
		{"oidc without audience", []string{"--oidc-issuer", "https://idp.example.com"}, nil, "audience"},
		{"oidc with HS256", []string{"--oidc-issuer", "https://idp.example.com", "--oidc-audience", "a", "--oidc-algorithms", "HS256"}, nil, "HS256"},
		{"oidc group to an unknown kind", []string{"--auth-secret", secret, "--oidc-issuer", "https://idp.example.com", "--oidc-audience", "a", "--oidc-group-kinds", "g=root"}, nil, "root"},
		{"plaintext beyond loopback", []string{"--auth-secret", secret, "--grpc-addr", "0.0.0.0:7400"}, nil, "not loopback"},
		{"plaintext beyond loopback, allowed", []string{"--auth-secret", secret, "--grpc-addr", "0.0.0.0:7400", "--plaintext-ok"}, nil, ""},
		{"tls beyond loopback", []string{"--auth-secret", secret, "--grpc-addr", "0.0.0.0:7400", "--http-addr", "0.0.0.0:7401", "--tls-cert-file", "c", "--tls-key-file", "k"}, nil, ""},
		{"cert without key", []string{"--auth-secret", secret, "--tls-cert-file", "c"}, nil, "go together"},
		{"mtls without tls", []string{"--auth-secret", secret, "--tls-client-ca-file", "ca", "--tls-client-uri-prefix", "spiffe://x/"}, nil, "needs tls-cert-file"},
		{"mtls by uri without prefix", []string{"--auth-secret", secret, "--tls-cert-file", "c", "--tls-key-file", "k", "--tls-client-ca-file", "ca"}, nil, "URI prefix"},
		{"mtls by cn", []string{"--auth-secret", secret, "--tls-cert-file", "c", "--tls-key-file", "k", "--tls-client-ca-file", "ca", "--tls-client-id-from", "cn"}, nil, ""},
		{"negative rate", []string{"--auth-secret", secret, "--rate-app", "-1"}, nil, "negative"},
		{"short audit", []string{"--auth-secret", secret, "--audit-max-age", "1m"}, nil, "audit-max-age"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			cfg := config.Default()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			cfg.BindFlags(fs)
			require.NoError(t, fs.Parse(tc.args))
			require.NoError(t, config.ApplyEnv(fs))
			err := cfg.Validate()
			if tc.want == "" {
				require.NoError(t, err)
			} else {
				require.ErrorContains(t, err, tc.want)
			}
		})
	}
}
