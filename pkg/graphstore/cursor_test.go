package graphstore

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCursorRoundTrip(t *testing.T) {
	t.Parallel()
	for _, c := range []Cursor{{Score: 1735689600000123, Member: "u:ana"}, {Score: 0.5, Member: "r:crm.opp:a|b"}} {
		got, err := ParseCursor(c.String())
		require.NoError(t, err)
		require.Equal(t, c, got)
	}
	for _, bad := range []string{"x", "1|", "|u:a", "nan!|x"} {
		_, err := ParseCursor(bad)
		require.Error(t, err, bad)
	}
}

// FuzzParseCursor: page tokens are only checksummed, not signed, so a
// client can hand any cursor text to ParseCursor.
func FuzzParseCursor(f *testing.F) {
	f.Add("1735689600000123|u:ana")
	f.Add("|")
	f.Add("1e308|r:x:y")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		if c.IsZero() != (s == "") {
			t.Fatalf("%q parsed to %+v: only the empty text is the first page", s, c)
		}
	})
}
