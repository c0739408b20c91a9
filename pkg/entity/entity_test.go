package entity

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		key  string
	}{
		{"user", "u:ana.lima"},
		{"record", "r:crm.opportunity:006Dn000004Qb3L"},
		{"record id with colons", "r:jira.issue:proj:INC-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ref, err := Parse(tc.key)
			require.NoError(t, err)
			require.Equal(t, tc.key, Key(ref))
		})
	}
	require.True(t, proto.Equal(Record("jira.issue", "proj:INC-1"), must(Parse("r:jira.issue:proj:INC-1"))))
	require.Equal(t, "crm", App("crm.opportunity"))
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, key := range []string{"", "u:", "r:", "r:type", "r::x", "r:type:", "x:ana"} {
		_, err := Parse(key)
		require.ErrorIs(t, err, ErrMalformed, key)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"u:ana", "r:crm.opp:1", "r::", "u:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		ref, err := Parse(key)
		if err != nil {
			return
		}
		if Key(ref) != key {
			t.Fatalf("Parse(%q) keys back as %q", key, Key(ref))
		}
	})
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
