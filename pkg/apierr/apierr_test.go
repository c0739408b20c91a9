package apierr_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tidingshq/tidings/pkg/apierr"
)

func details(st *status.Status) (reason string, retry bool) {
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		case *errdetails.RetryInfo:
			retry = d.GetRetryDelay().AsDuration() > 0
		}
	}
	return reason, retry
}

// TestErrorsByKind covers finding 7 of issue 14: outages are Unavailable
// with retry advice, Internal is kept for bugs, and the caller's own
// deadline stays DeadlineExceeded.
func TestErrorsByKind(t *testing.T) {
	t.Parallel()
	live := t.Context()
	expired, cancel := context.WithCancel(t.Context())
	cancel()
	refused := fmt.Errorf("read profile ana: %w", syscall.ECONNREFUSED)
	for _, tc := range []struct {
		name         string
		ctx          context.Context
		err          error
		code         codes.Code
		reason       string
		retry        bool
		internal     bool
		messageNotIn string
	}{
		{name: "a typed error passes through", ctx: live, err: apierr.NotFound("no profile ana"), code: codes.NotFound, reason: apierr.ReasonNotFound},
		{name: "a typed Unavailable advises a retry", ctx: live, err: apierr.Unavailable("stream PROFILES: down"), code: codes.Unavailable, reason: apierr.ReasonUnavailable, retry: true},
		{name: "Redis refusing is Unavailable", ctx: live, err: refused, code: codes.Unavailable, reason: apierr.ReasonUnavailable, retry: true, messageNotIn: "refused"},
		{name: "a bug is Internal", ctx: live, err: errors.New("nil map"), code: codes.Internal, internal: true},
		{name: "a bound inside the server is Unavailable", ctx: live, err: fmt.Errorf("open stream: %w", context.DeadlineExceeded), code: codes.Unavailable, reason: apierr.ReasonUnavailable, retry: true},
		{name: "the caller's deadline is DeadlineExceeded", ctx: expired, err: fmt.Errorf("open stream: %w", context.DeadlineExceeded), code: codes.DeadlineExceeded},
		{name: "the caller's cancellation is Canceled", ctx: expired, err: context.Canceled, code: codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, internal := apierr.ToStatusFor(tc.ctx, tc.err)
			require.Equal(t, tc.code, st.Code(), st.Message())
			require.Equal(t, tc.internal, internal)
			reason, retry := details(st)
			require.Equal(t, tc.reason, reason)
			require.Equal(t, tc.retry, retry)
			if tc.messageNotIn != "" {
				require.NotContains(t, st.Message(), tc.messageNotIn)
			}
		})
	}
}
