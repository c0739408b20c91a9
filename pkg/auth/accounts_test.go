package auth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestAccounts checks what each account state allows, and that answers
// are remembered for the cache TTL and no longer.
func TestAccounts(t *testing.T) {
	states := map[string]AccountState{"ana": AccountActive, "leaver": AccountInactive}
	lookups := 0
	var fail error
	acc, err := NewAccounts(func(_ context.Context, id string) (AccountState, error) {
		lookups++
		return states[id], fail
	}, AccountOptions{CacheTTL: time.Second})
	require.NoError(t, err)
	now := time.Now()
	acc.now = func() time.Time { return now }
	ctx := t.Context()
	post := tidingsv1.ActivityService_PostActivity_FullMethodName
	read := tidingsv1.TimelineService_GetHomeTimeline_FullMethodName
	employee := func(id string) Identity { return Identity{Kind: KindEmployee, ID: id} }

	for _, tc := range []struct {
		name   string
		id     Identity
		method string
		code   codes.Code
		reason string
	}{
		{"active writes", employee("ana"), post, codes.OK, ""},
		{"active reads", employee("ana"), read, codes.OK, ""},
		{"deactivated may not write", employee("leaver"), post, codes.PermissionDenied, ReasonAccountInactive},
		{"deactivated may not read", employee("leaver"), read, codes.PermissionDenied, ReasonAccountInactive},
		{"no profile may not write", employee("ghost"), post, codes.PermissionDenied, ReasonAccountUnknown},
		{"no profile may read", employee("ghost"), read, codes.OK, ""},
		{"an unclassified method counts as a write", employee("ghost"), "/tidings.v1.X/Y", codes.PermissionDenied, ReasonAccountUnknown},
		{"apps are not checked", Identity{Kind: KindApp, ID: "ghost"}, post, codes.OK, ""},
		{"admins are not checked", Identity{Kind: KindAdmin, ID: "leaver"}, post, codes.OK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := acc.Check(ctx, tc.id, tc.method)
			require.Equal(t, tc.code, status.Code(err), "%v", err)
			if tc.reason != "" {
				require.Equal(t, tc.reason, errReason(err))
				require.Contains(t, err.Error(), tc.id.ID)
			}
		})
	}

	// Remembered for the TTL: a removal is seen within it, not before.
	n := lookups
	states["ana"] = AccountInactive
	require.NoError(t, acc.Check(ctx, employee("ana"), post))
	require.Equal(t, n, lookups, "answered from the cache")
	now = now.Add(time.Second)
	require.Equal(t, codes.PermissionDenied, status.Code(acc.Check(ctx, employee("ana"), post)))
	require.Equal(t, n+1, lookups)

	// A directory that cannot be read refuses, without its error text.
	now = now.Add(time.Second)
	fail = errors.New("dial tcp 10.0.0.1:6379: connection refused")
	err = acc.Check(ctx, employee("ana"), post)
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.NotContains(t, err.Error(), "10.0.0.1")
}

func errReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			return info.GetReason()
		}
	}
	return ""
}
