package ids

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestStringOrderIsNumericOrder(t *testing.T) {
	t.Parallel()
	g := NewGenerator()
	prev := g.Next()
	for range 100_000 {
		id := g.Next()
		require.Greater(t, id, prev)
		require.Greater(t, id.String(), prev.String())
		b1, b2 := prev.Bytes(), id.Bytes()
		require.Greater(t, string(b2[:]), string(b1[:]))
		prev = id
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	g := NewGenerator()
	for range 1000 {
		id := g.Next()
		got, err := Parse(id.String())
		require.NoError(t, err)
		require.Equal(t, id, got)
		b := id.Bytes()
		require.Equal(t, id, FromBytes(b[:]))
	}
	require.WithinDuration(t, time.Now(), g.Next().Time(), time.Second)
}

func TestClockStepsBack(t *testing.T) {
	t.Parallel()
	now := time.Now()
	g := &Generator{now: func() time.Time { return now }}
	a := g.Next()
	now = now.Add(-time.Hour)
	require.Greater(t, g.Next(), a)
}

func TestConcurrentUnique(t *testing.T) {
	t.Parallel()
	g := NewGenerator()
	var mu sync.Mutex
	seen := map[ID]bool{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 5000 {
				id := g.Next()
				mu.Lock()
				require.False(t, seen[id])
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "0123", "0123456789ABCD", "0123456789ABU", "Z123456789ABC", "8000000000000"} {
		_, err := Parse(s)
		require.ErrorIs(t, err, ErrMalformed, s)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("0000000000000")
	f.Add(NewGenerator().Next().String())
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(id.String())
		if err != nil || again != id {
			t.Fatalf("%q parses to %d, which does not round-trip", s, id)
		}
	})
}
