package records_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

func opp(id, owner string) *tidingsv1.Record {
	return &tidingsv1.Record{
		Ref:        &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: id},
		Title:      "Acme " + id,
		Url:        "https://crm.example.com/opp/" + id,
		OwnerId:    owner,
		Attributes: map[string]string{"stage": "Prospecting"},
	}
}

func TestUpsertGetListDelete(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))

	r, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("006A", "")})
	require.NoError(t, err)
	require.True(t, r.GetCreated())
	require.Equal(t, tidingsv1.Visibility_VISIBILITY_PUBLIC, r.GetRecord().GetVisibility())
	seq := s.Env.StreamLastSeq(t, eventlog.StreamRecords)
	again, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("006A", "")})
	require.NoError(t, err)
	require.False(t, again.GetCreated())
	require.Equal(t, seq, s.Env.StreamLastSeq(t, eventlog.StreamRecords), "an identical upsert appends nothing")
	changed := opp("006A", "")
	changed.Attributes["stage"] = "Closed Won"
	upd, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: changed})
	require.NoError(t, err)
	require.False(t, upd.GetCreated())
	require.True(t, proto.Equal(r.GetRecord().GetCreateTime(), upd.GetRecord().GetCreateTime()))

	reader := s.Records(t, testenv.Employee("zed"))
	got, err := reader.GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: changed.GetRef()})
	require.NoError(t, err)
	require.Equal(t, "Closed Won", got.GetRecord().GetAttributes()["stage"])

	for i := range 12 {
		_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp(fmt.Sprintf("L%02d", i), "")})
		require.NoError(t, err)
	}
	var ids []string
	req := &tidingsv1.ListRecordsRequest{Type: "crm.opportunity", PageSize: 5}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 10)
		resp, err := reader.ListRecords(ctx, req)
		require.NoError(t, err)
		for _, r := range resp.GetRecords() {
			ids = append(ids, r.GetRef().GetExternalId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Len(t, ids, 13)
	require.IsIncreasing(t, ids)

	batch, err := reader.BatchGetRecords(ctx, &tidingsv1.BatchGetRecordsRequest{Refs: []*tidingsv1.RecordRef{
		{Type: "crm.opportunity", ExternalId: "L01"}, {Type: "crm.opportunity", ExternalId: "missing"},
	}})
	require.NoError(t, err)
	require.Len(t, batch.GetRecords(), 1)
	require.Len(t, batch.GetMissing(), 1)

	// Deleting takes the record and its follows with it.
	s.Users(t, "fan1", "fan2")
	for _, u := range []string{"fan1", "fan2"} {
		_, err := s.Follows(t, testenv.Employee(u)).Follow(ctx, &tidingsv1.FollowRequest{UserId: u, Entity: entity.Record("crm.opportunity", "006A")})
		require.NoError(t, err)
	}
	del, err := crm.DeleteRecord(ctx, &tidingsv1.DeleteRecordRequest{Ref: changed.GetRef()})
	require.NoError(t, err)
	require.True(t, del.GetDeleted())
	_, err = reader.GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: changed.GetRef()})
	testenv.RequireCode(t, err, codes.NotFound)
	counts, err := s.Follows(t, testenv.Admin).GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: entity.User("fan1")})
	require.NoError(t, err)
	require.Zero(t, counts.GetFollowingCount())
	del, err = crm.DeleteRecord(ctx, &tidingsv1.DeleteRecordRequest{Ref: changed.GetRef()})
	require.NoError(t, err)
	require.False(t, del.GetDeleted())
	_, err = s.Follows(t, testenv.Employee("fan1")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "fan1", Entity: entity.Record("crm.opportunity", "006A")})
	testenv.RequireCode(t, err, codes.NotFound)

	// Registering it again after the delete creates it anew.
	re, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("006A", "")})
	require.NoError(t, err)
	require.True(t, re.GetCreated())
}

func TestRestrictedRecords(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	ctx := t.Context()
	secret := opp("S1", "olga")
	secret.Visibility = tidingsv1.Visibility_VISIBILITY_RESTRICTED
	secret.ReaderIds = []string{"rita", "rita"}
	resp, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: secret})
	require.NoError(t, err)
	require.Equal(t, []string{"rita"}, resp.GetRecord().GetReaderIds(), "readers are deduplicated")
	_, err = s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("P1", "")})
	require.NoError(t, err)

	for _, tc := range []struct {
		who  string
		sees bool
		app  bool
	}{{"olga", true, false}, {"rita", true, false}, {"nick", false, false}, {"crm", true, true}, {"ci", false, true}} {
		t.Run(tc.who, func(t *testing.T) {
			id := testenv.Employee(tc.who)
			if tc.app {
				// Apps see the restricted records of their own namespace
				// only.
				id = testenv.App(tc.who)
			}
			c := s.Records(t, id)
			_, err := c.GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: secret.GetRef()})
			list, lerr := c.ListRecords(ctx, &tidingsv1.ListRecordsRequest{Type: "crm.opportunity"})
			require.NoError(t, lerr)
			if tc.sees {
				require.NoError(t, err)
				require.Len(t, list.GetRecords(), 2)
			} else {
				testenv.RequireCode(t, err, codes.NotFound)
				require.Len(t, list.GetRecords(), 1)
			}
		})
	}
}

func TestNamespacesAndPermissions(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	ctx := t.Context()
	_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("X", "")})
	require.NoError(t, err)
	before := s.Env.StreamLastSeq(t, eventlog.StreamRecords)
	ref := &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "X"}
	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"other app upserts", func() error {
			_, err := s.Records(t, testenv.App("jira")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("Y", "")})
			return err
		}, codes.PermissionDenied},
		{"other app deletes", func() error {
			_, err := s.Records(t, testenv.App("jira")).DeleteRecord(ctx, &tidingsv1.DeleteRecordRequest{Ref: ref})
			return err
		}, codes.PermissionDenied},
		{"other app posts an event", func() error {
			_, err := s.Records(t, testenv.App("jira")).PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: ref, EventId: "e1", Verb: "hacked"})
			return err
		}, codes.PermissionDenied},
		{"employee upserts", func() error {
			_, err := s.Records(t, testenv.Employee("ana")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("Z", "")})
			return err
		}, codes.PermissionDenied},
		{"bad type", func() error {
			r := opp("Z", "")
			r.Ref.Type = "Opportunity"
			_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
			return err
		}, codes.InvalidArgument},
		{"external id with a space", func() error {
			_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("a b", "")})
			return err
		}, codes.InvalidArgument},
		{"external id too long", func() error {
			_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp(strings.Repeat("x", 129), "")})
			return err
		}, codes.InvalidArgument},
		{"no title", func() error {
			r := opp("T", "")
			r.Title = ""
			_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
			return err
		}, codes.InvalidArgument},
		{"too many readers", func() error {
			r := opp("T", "")
			for i := range 1001 {
				r.ReaderIds = append(r.ReaderIds, fmt.Sprintf("r%d", i))
			}
			_, err := s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
			return err
		}, codes.InvalidArgument},
		{"event on a missing record", func() error {
			_, err := s.Records(t, testenv.App("crm")).PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
				Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "nope"}, EventId: "e1", Verb: "stage_changed"})
			return err
		}, codes.NotFound},
		{"event without id", func() error {
			_, err := s.Records(t, testenv.App("crm")).PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: ref, Verb: "stage_changed"})
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.RequireCode(t, tc.call(), tc.code)
		})
	}
	require.Equal(t, before, s.Env.StreamLastSeq(t, eventlog.StreamRecords))
	_, err = s.Records(t, testenv.Admin).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("ByAdmin", "")})
	require.NoError(t, err, "admins write any namespace")
}

func TestOwnerAutoFollows(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "olga", "oleg")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	follows := s.Follows(t, testenv.Admin)
	isFollowing := func(user, id string) bool {
		resp, err := follows.IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: user, Entities: []*tidingsv1.EntityRef{entity.Record("crm.opportunity", id)}})
		require.NoError(t, err)
		return resp.GetFollowing()[0]
	}
	_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("A1", "olga")})
	require.NoError(t, err)
	require.True(t, isFollowing("olga", "A1"), "the owner follows a new record (default rule)")
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("A1", "oleg")})
	require.NoError(t, err)
	require.True(t, isFollowing("oleg", "A1"), "a new owner follows too")

	_, err = s.Admin(t).UpdateAutoFollowRules(ctx, &tidingsv1.UpdateAutoFollowRulesRequest{Rules: &tidingsv1.AutoFollowRules{}})
	require.NoError(t, err)
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("A2", "olga")})
	require.NoError(t, err)
	require.False(t, isFollowing("olga", "A2"), "rule off")
}

func TestPostRecordActivityIsIdempotent(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "olga")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("D1", "")})
	require.NoError(t, err)
	req := &tidingsv1.PostRecordActivityRequest{
		Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "D1"}, EventId: "evt-1", Verb: "stage_changed",
		Text:         "Stage changed, congrats @olga and @nobody.",
		FieldChanges: []*tidingsv1.FieldChange{{Field: "Stage", OldValue: "Prospecting", NewValue: "Closed Won"}},
		OnBehalfOf:   "olga",
	}
	first, err := crm.PostRecordActivity(ctx, req)
	require.NoError(t, err)
	a := first.GetActivity()
	require.NotEmpty(t, a.GetId())
	require.Equal(t, tidingsv1.CallerKind_CALLER_KIND_APP, a.GetActor().GetKind())
	require.Equal(t, "crm", a.GetActor().GetId())
	require.Equal(t, []string{"olga"}, a.GetMentionUserIds(), "only existing users are mentioned")
	require.Len(t, a.GetFieldChanges(), 1)
	seq := s.Env.StreamLastSeq(t, eventlog.StreamActivities)

	again, err := crm.PostRecordActivity(ctx, req)
	require.NoError(t, err)
	require.True(t, proto.Equal(a, again.GetActivity()), "a retry returns the first activity")
	require.Equal(t, seq, s.Env.StreamLastSeq(t, eventlog.StreamActivities), "and appends nothing")

	// With Redis wiped, the log's duplicate window still recognises the retry.
	require.NoError(t, s.Env.RDB.FlushAll(ctx).Err())
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: opp("D1", "")})
	require.NoError(t, err)
	seq = s.Env.StreamLastSeq(t, eventlog.StreamActivities)
	afterWipe, err := crm.PostRecordActivity(ctx, req)
	require.NoError(t, err)
	require.Equal(t, a.GetId(), afterWipe.GetActivity().GetId())
	require.Equal(t, seq, s.Env.StreamLastSeq(t, eventlog.StreamActivities))

	req.EventId = "evt-2"
	other, err := crm.PostRecordActivity(ctx, req)
	require.NoError(t, err)
	require.NotEqual(t, a.GetId(), other.GetActivity().GetId())
	require.Greater(t, other.GetActivity().GetId(), a.GetId(), "ids sort by time")
}
