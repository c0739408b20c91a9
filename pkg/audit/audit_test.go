package audit_test

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/audit"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func TestSummarize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		req  *tidingsv1.BulkFollowRequest
		want string
	}{
		{"list and nested message", &tidingsv1.BulkFollowRequest{
			Entity: &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_UserId{UserId: "ceo"}},
			Users:  &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: []string{"a", "b", "c"}}}},
		}, `users={users={user_ids=[3 items]}} entity={user_id="ceo"}`},
		{"long string cut", &tidingsv1.BulkFollowRequest{
			Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Department{Department: strings.Repeat("é", 100)}},
		}, `users={department="` + strings.Repeat("é", 64) + `…"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, audit.Summarize(tc.req))
		})
	}
	var huge []*tidingsv1.Follow
	for range 50 {
		huge = append(huge, &tidingsv1.Follow{UserId: strings.Repeat("ü", 64)})
	}
	s := audit.Summarize(&tidingsv1.ImportGraphRequest{Follows: huge})
	require.Equal(t, "follows=[50 items]", s)
	s = audit.Summarize(&tidingsv1.Profile{UserId: strings.Repeat("ü", 64), DisplayName: strings.Repeat("ü", 64), Title: strings.Repeat("ü", 64), Department: strings.Repeat("ü", 64)})
	require.LessOrEqual(t, len(s), 512+len("…"))
	require.True(t, utf8.ValidString(s))
	require.Empty(t, audit.Summarize(nil))
}
