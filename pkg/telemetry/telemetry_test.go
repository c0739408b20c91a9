package telemetry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/telemetry"
)

// The public /healthz says whether the process serves, never why: the
// reason names addresses and driver errors, for the debug listener only.
func TestHealthHandlerDetail(t *testing.T) {
	t.Parallel()
	down := func(context.Context) error { return errors.New("redis: dial tcp 10.0.0.5:6379: connection refused") }
	for _, c := range []struct {
		detailed bool
		body     string
	}{
		{false, "not serving\n"},
		{true, "not serving: redis: dial tcp 10.0.0.5:6379: connection refused\n"},
	} {
		rec := httptest.NewRecorder()
		telemetry.HealthHandler(down, c.detailed).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
		require.Equal(t, http.StatusServiceUnavailable, rec.Code)
		require.Equal(t, c.body, rec.Body.String())
	}
	rec := httptest.NewRecorder()
	telemetry.HealthHandler(func(context.Context) error { return nil }, false).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "ok\n", rec.Body.String())
}
