package redisx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/redisx"
)

func TestKeyspaceGenerations(t *testing.T) {
	t.Parallel()
	ks := redisx.NewKeyspace(0)
	require.Equal(t, "tidings:home:{ana}", ks.Key("home:{ana}"), "the first generation keeps the plain prefix")
	ks.Switch(7)
	require.Equal(t, "tidings:g7:home:{ana}", ks.Key("home:{ana}"))
	require.EqualValues(t, 7, ks.Generation())
	require.Equal(t, "tidings:g7:", ks.Prefix())
}
