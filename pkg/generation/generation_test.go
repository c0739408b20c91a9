package generation_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/generation"
	"github.com/tidingshq/tidings/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// The healing mark makes processes unhealthy while a heal runs, and lapses
// when its healer stops renewing it.
func TestHealingMark(t *testing.T) {
	t.Parallel()
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	gens, err := generation.Open(t.Context(), js, 1)
	require.NoError(t, err)
	ctx, now := t.Context(), time.Now()

	healing, err := gens.Healing(ctx, 0, now)
	require.NoError(t, err)
	require.False(t, healing, "no mark")

	require.NoError(t, gens.SetHealing(ctx, 0, now))
	for _, c := range []struct {
		gen  uint64
		at   time.Time
		want bool
	}{
		{0, now, true},
		{0, now.Add(50 * time.Second), true},
		{0, now.Add(2 * time.Minute), false}, // the healer stopped renewing it
		{1, now, false},                      // another generation
	} {
		healing, err := gens.Healing(ctx, c.gen, c.at)
		require.NoError(t, err)
		require.Equal(t, c.want, healing, "generation %d at %s", c.gen, c.at.Sub(now))
	}
	require.NoError(t, gens.ClearHealing(ctx))
	healing, err = gens.Healing(ctx, 0, now)
	require.NoError(t, err)
	require.False(t, healing, "cleared")
	require.NoError(t, gens.ClearHealing(ctx), "clearing twice is fine")
}
