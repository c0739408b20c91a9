package stacktest_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/audit"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// auditStack serves the stack with a running audit recorder.
func auditStack(t *testing.T, buffer int, run bool) *stacktest.Stack {
	t.Helper()
	return stacktest.Start(t, stacktest.Options{Server: func(env *testenv.Env, o *grpcserver.Options) {
		require.NoError(t, audit.EnsureStream(t.Context(), env.JS, 1, time.Hour))
		rec, err := audit.NewRecorder(env.JS, buffer, prometheus.NewRegistry(), env.Logger)
		require.NoError(t, err)
		o.Audit = rec
		if run {
			ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
			done := make(chan struct{})
			go func() {
				defer close(done)
				rec.Run(ctx, time.Second)
			}()
			t.Cleanup(func() { cancel(); <-done })
		}
	}})
}

// TestAuditTrail records admin calls and app writes, with who, what, when,
// where from and the outcome, and lists them newest first with filters.
func TestAuditTrail(t *testing.T) {
	t.Parallel()
	s := auditStack(t, 100, true)
	s.Users(t, "ana") // the directory app's write: audited
	ctx := t.Context()
	admin := s.Admin(t)
	start := time.Now()
	_, err := admin.GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err)
	_, err = admin.RemoveUser(ctx, &tidingsv1.RemoveUserRequest{UserId: "bad id!"})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	crm := s.Records(t, testenv.App("crm"))
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
		Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "006A"}, Title: "Acme",
	}})
	require.NoError(t, err)
	_, err = crm.GetRecord(ctx, &tidingsv1.GetRecordRequest{Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "006A"}})
	require.NoError(t, err) // an app's read: not audited
	_, err = s.Activities(t, testenv.Employee("ana")).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "hi"})
	require.NoError(t, err) // an employee's write: not audited

	var all []*tidingsv1.AuditEvent
	testenv.Eventually(t, 10*time.Second, func() bool {
		resp, err := admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{})
		require.NoError(t, err)
		all = resp.GetEvents()
		return len(all) == 4
	}, "four audited calls")
	// Newest first; the listing itself is an admin call recorded after it
	// answers, so it may appear only in later listings.
	methods := []string{}
	for _, e := range all {
		methods = append(methods, e.GetMethod())
	}
	require.Equal(t, []string{
		tidingsv1.RecordService_UpsertRecord_FullMethodName,
		tidingsv1.AdminService_RemoveUser_FullMethodName,
		tidingsv1.AdminService_GetSystemStatus_FullMethodName,
		tidingsv1.ProfileService_BatchUpsertProfiles_FullMethodName,
	}, methods)
	upsert, removal := all[0], all[1]
	require.Equal(t, tidingsv1.CallerKind_CALLER_KIND_APP, upsert.GetCaller().GetKind())
	require.Equal(t, "crm", upsert.GetCaller().GetId())
	require.Equal(t, uint32(codes.OK), upsert.GetCode())
	require.Contains(t, upsert.GetSummary(), `external_id="006A"`)
	require.Contains(t, upsert.GetPeerAddress(), "127.0.0.1:")
	require.NotEmpty(t, upsert.GetRequestId())
	require.False(t, upsert.GetTime().AsTime().Before(start.Add(-time.Second)))
	require.Equal(t, uint32(codes.InvalidArgument), removal.GetCode(), "refused calls are recorded with their code")
	require.Equal(t, "root", removal.GetCaller().GetId())
	for _, e := range all {
		require.NotContains(t, e.GetSummary(), "Bearer")
	}

	// Filters and pages.
	resp, err := admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{CallerId: "crm"})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 1)
	resp, err = admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{Method: "/tidings.v1.AdminService/", PageSize: 1})
	require.NoError(t, err)
	require.Len(t, resp.GetEvents(), 1)
	var pagedMethods []string
	req := &tidingsv1.ListAuditEventsRequest{Method: "/tidings.v1.AdminService/", PageSize: 1, EndTime: timestamppb.Now()}
	for pages := 0; ; pages++ {
		require.Less(t, pages, 20)
		resp, err := admin.ListAuditEvents(ctx, req)
		require.NoError(t, err)
		for _, e := range resp.GetEvents() {
			pagedMethods = append(pagedMethods, e.GetMethod())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Contains(t, pagedMethods, tidingsv1.AdminService_RemoveUser_FullMethodName)
	require.Contains(t, pagedMethods, tidingsv1.AdminService_GetSystemStatus_FullMethodName)
	for _, m := range pagedMethods {
		require.Contains(t, m, "/tidings.v1.AdminService/")
	}
	resp, err = admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{StartTime: timestamppb.New(time.Now().Add(time.Hour))})
	require.NoError(t, err)
	require.Empty(t, resp.GetEvents())
	resp, err = admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{EndTime: timestamppb.New(start.Add(-time.Hour))})
	require.NoError(t, err)
	require.Empty(t, resp.GetEvents())
	_, err = admin.ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{CallerId: "crm", PageToken: req.GetPageToken()})
	testenv.RequireCode(t, err, codes.InvalidArgument)

	_, err = tidingsv1.NewAdminServiceClient(s.Server.Conn(t, testenv.Employee("ana"))).ListAuditEvents(ctx, &tidingsv1.ListAuditEventsRequest{})
	testenv.RequireCode(t, err, codes.PermissionDenied)
}

// TestAuditNeverBlocks fills the recorder's buffer (nothing publishes):
// calls go on, and the drops are counted.
func TestAuditNeverBlocks(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := stacktest.Start(t, stacktest.Options{Server: func(env *testenv.Env, o *grpcserver.Options) {
		rec, err := audit.NewRecorder(env.JS, 1, reg, env.Logger)
		require.NoError(t, err)
		o.Audit = rec
	}})
	admin := s.Admin(t)
	for range 5 {
		_, err := admin.GetAutoFollowRules(t.Context(), &tidingsv1.GetAutoFollowRulesRequest{})
		require.NoError(t, err)
	}
	mfs, err := reg.Gather()
	require.NoError(t, err)
	dropped := 0.0
	for _, mf := range mfs {
		if mf.GetName() == "tidings_audit_events_dropped_total" {
			for _, m := range mf.GetMetric() {
				dropped += m.GetCounter().GetValue()
			}
		}
	}
	require.InDelta(t, 4, dropped, 0.1, "one event fits the buffer, four are dropped and counted")
}
