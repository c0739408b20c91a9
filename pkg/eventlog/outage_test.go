package eventlog

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestOutageLogOncePerMinute checks, on an injected clock, that a failure
// that goes on is logged when it starts and then at most once a minute, and
// that its end is reported once (finding 2: a line per minute, not per
// retry).
func TestOutageLogOncePerMinute(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := newOutageLog(time.Minute, func() time.Time { return now })

	ok, _ := o.recovered()
	require.False(t, ok, "no outage yet")

	log, n, lasted := o.failure()
	require.True(t, log, "the first failure is logged")
	require.Equal(t, 1, n)
	require.Zero(t, lasted)
	for range 100 {
		now = now.Add(500 * time.Millisecond)
		log, _, _ = o.failure()
		require.False(t, log, "not again within the minute")
	}
	now = now.Add(10 * time.Second)
	log, n, lasted = o.failure()
	require.True(t, log, "a minute after the last line")
	require.Equal(t, 101, n, "the line covers every failure since the last")
	require.Equal(t, 60*time.Second, lasted)

	now = now.Add(5 * time.Second)
	ok, lasted = o.recovered()
	require.True(t, ok)
	require.Equal(t, 65*time.Second, lasted)
	ok, _ = o.recovered()
	require.False(t, ok, "reported once")

	log, n, _ = o.failure()
	require.True(t, log, "a new outage is logged at once")
	require.Equal(t, 1, n)
}
