package follows_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

func record(app, id string, vis tidingsv1.Visibility, readers ...string) *tidingsv1.Record {
	return &tidingsv1.Record{Ref: &tidingsv1.RecordRef{Type: app + ".opportunity", ExternalId: id}, Title: "Deal " + id, Visibility: vis, ReaderIds: readers}
}

func TestFollowUnfollowAndCounts(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana", "bo", "cy")
	ctx := t.Context()
	_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: record("crm", "d1", tidingsv1.Visibility_VISIBILITY_PUBLIC)})
	require.NoError(t, err)
	ana := s.Follows(t, testenv.Employee("ana"))
	deal := entity.Record("crm.opportunity", "d1")
	before := s.Env.StreamLastSeq(t, eventlog.StreamFollows)

	r, err := ana.Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("bo")})
	require.NoError(t, err)
	require.True(t, r.GetChanged())
	r, err = ana.Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: deal})
	require.NoError(t, err)
	require.True(t, r.GetChanged())
	require.Equal(t, before+2, s.Env.StreamLastSeq(t, eventlog.StreamFollows), "one event per change")

	again, err := ana.Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("bo")})
	require.NoError(t, err)
	require.False(t, again.GetChanged())
	require.Equal(t, before+2, s.Env.StreamLastSeq(t, eventlog.StreamFollows), "a repeated follow appends nothing")

	counts, err := ana.GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: entity.User("ana")})
	require.NoError(t, err)
	require.EqualValues(t, 2, counts.GetFollowingCount())
	counts, err = ana.GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: entity.User("bo")})
	require.NoError(t, err)
	require.EqualValues(t, 1, counts.GetFollowerCount())

	is, err := ana.IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "ana", Entities: []*tidingsv1.EntityRef{deal, entity.User("cy"), entity.User("bo")}})
	require.NoError(t, err)
	require.Equal(t, []bool{true, false, true}, is.GetFollowing())

	followers, err := ana.ListFollowers(ctx, &tidingsv1.ListFollowersRequest{Entity: deal})
	require.NoError(t, err)
	require.Len(t, followers.GetFollows(), 1)
	require.Equal(t, "ana", followers.GetFollows()[0].GetUserId())

	u, err := ana.Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: "ana", Entity: entity.User("bo")})
	require.NoError(t, err)
	require.True(t, u.GetChanged())
	u, err = ana.Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: "ana", Entity: entity.User("bo")})
	require.NoError(t, err)
	require.False(t, u.GetChanged())
	// Follow again after an unfollow: a new event, not a duplicate.
	r, err = ana.Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("bo")})
	require.NoError(t, err)
	require.True(t, r.GetChanged())
	is, err = ana.IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "ana", Entities: []*tidingsv1.EntityRef{entity.User("bo")}})
	require.NoError(t, err)
	require.Equal(t, []bool{true}, is.GetFollowing())
	require.Equal(t, before+4, s.Env.StreamLastSeq(t, eventlog.StreamFollows))
}

func TestFollowErrors(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.MaxFollowing = 3 }})
	s.Users(t, "ana", "bo", "cy", "dee", "eve")
	ctx := t.Context()
	_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: record("crm", "secret", tidingsv1.Visibility_VISIBILITY_RESTRICTED, "bo")})
	require.NoError(t, err)
	ana := s.Follows(t, testenv.Employee("ana"))
	for _, u := range []string{"bo", "cy", "dee"} {
		_, err := ana.Follow(ctx, &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User(u)})
		require.NoError(t, err)
	}
	before := s.Env.StreamLastSeq(t, eventlog.StreamFollows)
	for _, tc := range []struct {
		name string
		req  *tidingsv1.FollowRequest
		code codes.Code
	}{
		{"unknown user", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("nobody")}, codes.NotFound},
		{"unknown record", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.Record("crm.opportunity", "nope")}, codes.NotFound},
		{"restricted record", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.Record("crm.opportunity", "secret")}, codes.NotFound},
		{"self", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("ana")}, codes.InvalidArgument},
		{"as someone else", &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.User("cy")}, codes.PermissionDenied},
		{"over the cap", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.User("eve")}, codes.ResourceExhausted},
		{"no entity", &tidingsv1.FollowRequest{UserId: "ana"}, codes.InvalidArgument},
		{"empty entity", &tidingsv1.FollowRequest{UserId: "ana", Entity: &tidingsv1.EntityRef{}}, codes.InvalidArgument},
		{"bad record type", &tidingsv1.FollowRequest{UserId: "ana", Entity: entity.Record("Opportunity", "1")}, codes.InvalidArgument},
		{"bad user id", &tidingsv1.FollowRequest{UserId: "ana lima", Entity: entity.User("bo")}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ana.Follow(ctx, tc.req)
			testenv.RequireCode(t, err, tc.code)
		})
	}
	_, err = s.Follows(t, testenv.Employee("bo")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "bo", Entity: entity.Record("crm.opportunity", "secret")})
	require.NoError(t, err, "a reader may follow a restricted record")
	_, err = s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: "eve", Entity: entity.User("bo")})
	require.NoError(t, err, "an admin acts for anyone")
	require.Equal(t, before+2, s.Env.StreamLastSeq(t, eventlog.StreamFollows), "rejected follows append nothing")

	_, err = ana.ListFollowing(ctx, &tidingsv1.ListFollowingRequest{UserId: "ana", PageSize: 501})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	_, err = ana.ListFollowing(ctx, &tidingsv1.ListFollowingRequest{UserId: "ana", PageToken: "bogus"})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	_, err = ana.ListFollowers(ctx, &tidingsv1.ListFollowersRequest{Entity: entity.Record("crm.opportunity", "secret")})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = ana.Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: "bo", Entity: entity.User("cy")})
	testenv.RequireCode(t, err, codes.PermissionDenied)
}

// TestRestrictedRecordsStayOutOfTheGraph checks that a caller who may not
// see a restricted record learns nothing of it through the follow graph:
// it is not listed, not counted, and not reported as followed.
func TestRestrictedRecordsStayOutOfTheGraph(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "bo", "dee", "nick")
	ctx := t.Context()
	_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: record("crm", "secret", tidingsv1.Visibility_VISIBILITY_RESTRICTED, "bo", "dee")})
	require.NoError(t, err)
	secret := entity.Record("crm.opportunity", "secret")
	dee := s.Follows(t, testenv.Employee("dee"))
	for _, e := range []*tidingsv1.EntityRef{secret, entity.User("bo")} {
		_, err = dee.Follow(ctx, &tidingsv1.FollowRequest{UserId: "dee", Entity: e})
		require.NoError(t, err)
	}
	for _, tc := range []struct {
		name string
		as   auth.Identity
		sees bool
	}{
		{"the follower", testenv.Employee("dee"), true},
		{"another reader", testenv.Employee("bo"), true},
		{"a non-reader", testenv.Employee("nick"), false},
		{"the owning app", testenv.App("crm"), true},
		{"another app", testenv.App("ci"), false},
		{"an admin", testenv.Admin, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := s.Follows(t, tc.as)
			list, err := c.ListFollowing(ctx, &tidingsv1.ListFollowingRequest{UserId: "dee"})
			require.NoError(t, err)
			var keys []string
			for _, f := range list.GetFollows() {
				keys = append(keys, entity.Key(f.GetEntity()))
			}
			is, err := c.IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "dee", Entities: []*tidingsv1.EntityRef{secret, entity.User("bo")}})
			require.NoError(t, err)
			counts, err := c.GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: entity.User("dee")})
			require.NoError(t, err)
			if tc.sees {
				require.ElementsMatch(t, []string{entity.Key(secret), "u:bo"}, keys)
				require.EqualValues(t, 2, list.GetTotalCount())
				require.Equal(t, []bool{true, true}, is.GetFollowing())
				require.EqualValues(t, 2, counts.GetFollowingCount())
			} else {
				require.Equal(t, []string{"u:bo"}, keys)
				require.EqualValues(t, 1, list.GetTotalCount())
				require.Equal(t, []bool{false, true}, is.GetFollowing())
				require.EqualValues(t, 1, counts.GetFollowingCount())
			}
		})
	}
}

func TestListFollowingPagesNewestFirst(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	var users []string
	for i := range 25 {
		users = append(users, fmt.Sprintf("u%02d", i))
	}
	s.Users(t, append(users, "fan")...)
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	fan := s.Follows(t, testenv.Employee("fan"))
	var order []string
	for i, u := range users {
		_, err := fan.Follow(ctx, &tidingsv1.FollowRequest{UserId: "fan", Entity: entity.User(u)})
		require.NoError(t, err)
		order = append(order, "u:"+u)
		if i%5 == 0 {
			id := fmt.Sprintf("r%d", i)
			_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: record("crm", id, 0)})
			require.NoError(t, err)
			_, err = fan.Follow(ctx, &tidingsv1.FollowRequest{UserId: "fan", Entity: entity.Record("crm.opportunity", id)})
			require.NoError(t, err)
			order = append(order, "r:crm.opportunity:"+id)
		}
	}
	list := func(kind tidingsv1.EntityKind) []string {
		var got []string
		req := &tidingsv1.ListFollowingRequest{UserId: "fan", Kind: kind, PageSize: 4}
		for pages := 0; ; pages++ {
			require.Less(t, pages, 40)
			resp, err := fan.ListFollowing(ctx, req)
			require.NoError(t, err)
			require.EqualValues(t, 30, resp.GetTotalCount())
			for _, f := range resp.GetFollows() {
				got = append(got, entity.Key(f.GetEntity()))
			}
			if resp.GetNextPageToken() == "" {
				return got
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}
	all := list(tidingsv1.EntityKind_ENTITY_KIND_UNSPECIFIED)
	require.Len(t, all, 30)
	// Newest first: follows made in the same millisecond may swap, so
	// compare as sets and check records and users separately.
	require.ElementsMatch(t, order, all)
	records := list(tidingsv1.EntityKind_ENTITY_KIND_RECORD)
	require.Len(t, records, 5)
	require.Len(t, list(tidingsv1.EntityKind_ENTITY_KIND_USER), 25)
}

func TestGraphRebuildEqualsOriginal(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	var users []string
	for i := range 40 {
		users = append(users, fmt.Sprintf("p%02d", i))
	}
	s.Users(t, users...)
	ctx := t.Context()
	admin := s.Follows(t, testenv.Admin)
	for i, u := range users {
		for j := 1; j <= 4; j++ {
			_, err := admin.Follow(ctx, &tidingsv1.FollowRequest{UserId: u, Entity: entity.User(users[(i+j*7)%len(users)])})
			require.NoError(t, err)
		}
		if i%3 == 0 {
			_, err := admin.Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: u, Entity: entity.User(users[(i+7)%len(users)])})
			require.NoError(t, err)
		}
	}
	s.WaitCaughtUp(t)
	before := testenv.Snapshot(t, s.Env.RDB)
	require.NoError(t, s.Env.RDB.FlushAll(ctx).Err())
	s.Rebuild(t)
	testenv.RequireSameSnapshot(t, before, testenv.Snapshot(t, s.Env.RDB), "rebuilt projection")
}
