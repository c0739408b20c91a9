package auth_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tidingshq/tidings/pkg/auth"
	_ "github.com/tidingshq/tidings/proto/tidings/v1"
)

// servedMethods lists every method of every service a Tidings server
// registers: the tidings.v1 API, health and reflection.
func servedMethods(t *testing.T) []string {
	t.Helper()
	var methods []string
	protoregistry.GlobalFiles.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		pkg := string(fd.Package())
		if pkg != "tidings.v1" && pkg != "grpc.health.v1" && !strings.HasPrefix(pkg, "grpc.reflection.") {
			return true
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				methods = append(methods, fmt.Sprintf("/%s/%s", sd.FullName(), sd.Methods().Get(j).Name()))
			}
		}
		return true
	})
	return methods
}

func TestEveryMethodHasARule(t *testing.T) {
	t.Parallel()
	policy := auth.DefaultPolicy()
	methods := servedMethods(t)
	require.Greater(t, len(methods), 40, "the walk must find the whole API")
	for _, m := range methods {
		_, ok := policy.Lookup(m)
		require.True(t, ok, "method %s has no authorization rule in auth.DefaultPolicy", m)
	}
	known := map[string]bool{}
	for _, m := range methods {
		known[m] = true
	}
	for m := range policy {
		require.True(t, known[m], "policy names %s, which no service has", m)
	}
}

func TestOnlyInfrastructureIsPublic(t *testing.T) {
	t.Parallel()
	for m, r := range auth.DefaultPolicy() {
		if r.Public {
			require.True(t, strings.HasPrefix(m, "/grpc."), "%s is public", m)
		}
	}
}

func TestRuleAllows(t *testing.T) {
	t.Parallel()
	directory := auth.Identity{Kind: auth.KindApp, ID: "hr", Roles: []string{auth.RoleDirectory}}
	crm := auth.Identity{Kind: auth.KindApp, ID: "crm"}
	ana := auth.Identity{Kind: auth.KindEmployee, ID: "ana"}
	root := auth.Identity{Kind: auth.KindAdmin, ID: "root"}
	rule := auth.Rule{Apps: true, AppRole: auth.RoleDirectory, Admins: true}
	for _, tc := range []struct {
		name string
		id   auth.Identity
		want bool
	}{
		{"app with role", directory, true},
		{"app without role", crm, false},
		{"employee", ana, false},
		{"admin", root, true},
		{"unknown kind", auth.Identity{Kind: "robot", ID: "x"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, rule.Allows(tc.id))
		})
	}
	require.True(t, ana.ActsAsUser("ana"))
	require.False(t, ana.ActsAsUser("bo"))
	require.True(t, root.ActsAsUser("bo"))
	require.False(t, crm.ActsAsUser("crm"))
}

func TestTokens(t *testing.T) {
	t.Parallel()
	cfg := auth.TokenConfig{Secret: []byte("0123456789abcdef0123456789abcdef"), Issuer: "iss", Audience: "aud"}
	v, err := auth.NewVerifier(cfg)
	require.NoError(t, err)
	now := time.Now()
	want := auth.Identity{Kind: auth.KindApp, ID: "hr", Roles: []string{"directory"}}
	tok, err := auth.Mint(cfg, want, time.Minute, now)
	require.NoError(t, err)
	got, err := v.Verify(tok)
	require.NoError(t, err)
	require.Equal(t, now.Add(time.Minute).Truncate(time.Second), got.Expires, "the token's exp, no leeway configured")
	got.Expires = time.Time{}
	require.Equal(t, want, got)

	short := cfg
	short.Secret = []byte("short")
	_, err = auth.NewVerifier(short)
	require.Error(t, err)
	_, err = auth.Mint(cfg, want, 0, now)
	require.Error(t, err)

	// Tampering with the payload breaks the signature.
	parts := strings.Split(tok, ".")
	parts[1] = parts[1][:len(parts[1])-2] + "AA"
	_, err = v.Verify(strings.Join(parts, "."))
	require.Error(t, err)

	badKind, err := auth.Mint(cfg, auth.Identity{Kind: "robot", ID: "x"}, time.Minute, now)
	require.NoError(t, err)
	_, err = v.Verify(badKind)
	require.ErrorContains(t, err, "unknown caller kind")
}

func FuzzVerify(f *testing.F) {
	cfg := auth.TokenConfig{Secret: []byte("0123456789abcdef0123456789abcdef"), Issuer: "iss", Audience: "aud"}
	good, err := auth.Mint(cfg, auth.Identity{Kind: auth.KindEmployee, ID: "ana"}, time.Hour, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	v, err := auth.NewVerifier(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err == nil && (id.ID == "" || id.Kind == "") {
			t.Fatalf("accepted a token without identity: %q", token)
		}
	})
}

func TestEveryMethodIsClassifiedForAudit(t *testing.T) {
	t.Parallel()
	for _, m := range servedMethods(t) {
		if !strings.HasPrefix(m, "/tidings.") {
			continue
		}
		_, known := auth.IsWrite(m)
		require.True(t, known, "method %s is neither a read nor a write in pkg/auth/audited.go", m)
	}
	admin := auth.Identity{Kind: auth.KindAdmin, ID: "root"}
	app := auth.Identity{Kind: auth.KindApp, ID: "crm"}
	ana := auth.Identity{Kind: auth.KindEmployee, ID: "ana"}
	require.True(t, auth.Audited("/tidings.v1.AdminService/ExportGraph", admin))
	require.True(t, auth.Audited("/tidings.v1.RecordService/UpsertRecord", app))
	require.False(t, auth.Audited("/tidings.v1.RecordService/GetRecord", app))
	require.True(t, auth.Audited("/tidings.v1.ActivityService/PostActivity", admin))
	require.False(t, auth.Audited("/tidings.v1.ActivityService/PostActivity", ana))
	require.True(t, auth.Audited("/tidings.v1.NewService/Unclassified", app), "unclassified methods are audited")
}
