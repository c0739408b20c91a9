package admin_test

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

func followerCount(t *testing.T, s *stacktest.Stack, ref *tidingsv1.EntityRef) int64 {
	resp, err := s.Follows(t, testenv.Admin).GetFollowCounts(t.Context(), &tidingsv1.GetFollowCountsRequest{Entity: ref})
	require.NoError(t, err)
	return resp.GetFollowerCount()
}

func TestBulkFollowSelectors(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	ctx := t.Context()
	var staff []*tidingsv1.Profile
	for i := range 30 {
		dept, mgr := "Sales", "boss"
		if i%3 == 0 {
			dept, mgr = "Eng", "cto"
		}
		staff = append(staff, &tidingsv1.Profile{UserId: fmt.Sprintf("e%02d", i), DisplayName: "E", Department: dept, ManagerId: mgr})
	}
	staff = append(staff, &tidingsv1.Profile{UserId: "boss", DisplayName: "Boss"}, &tidingsv1.Profile{UserId: "cto", DisplayName: "CTO"})
	_, err := s.Profiles(t, testenv.Directory).BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: staff})
	require.NoError(t, err)
	_, err = s.Records(t, testenv.App("crm")).UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
		Ref: &tidingsv1.RecordRef{Type: "crm.account", ExternalId: "acme"}, Title: "Acme"}})
	require.NoError(t, err)
	acme := entity.Record("crm.account", "acme")
	admin := s.Admin(t)

	resp, err := admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: acme, Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Department{Department: "Sales"}}})
	require.NoError(t, err)
	require.EqualValues(t, 20, resp.GetChangedCount())
	require.EqualValues(t, 20, followerCount(t, s, acme))

	resp, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: acme, Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_ManagerId{ManagerId: "cto"}}})
	require.NoError(t, err)
	require.EqualValues(t, 10, resp.GetChangedCount())
	resp, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: acme, Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Department{Department: "Sales"}}})
	require.NoError(t, err)
	require.EqualValues(t, 0, resp.GetChangedCount())
	require.EqualValues(t, 20, resp.GetUnchangedCount())

	// Everyone follows the boss; the boss cannot follow themselves.
	resp, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("boss"), Users: &tidingsv1.UserSelector{
		Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: []string{"e01", "e02", "boss"}}}}})
	require.NoError(t, err)
	require.EqualValues(t, 2, resp.GetChangedCount())
	require.EqualValues(t, 1, resp.GetSkippedCount())

	un, err := admin.BulkUnfollow(ctx, &tidingsv1.BulkUnfollowRequest{Entity: acme, Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_ManagerId{ManagerId: "cto"}}})
	require.NoError(t, err)
	require.EqualValues(t, 10, un.GetChangedCount())
	require.EqualValues(t, 20, followerCount(t, s, acme))

	// Ids without profiles are refused, named, and nothing is written
	// (the known users come first and in another chunk of the request).
	known := make([]string, 0, 1500)
	for i := range 1500 {
		known = append(known, fmt.Sprintf("e%02d", i%30))
	}
	ghosts := append(known, "ghost1", "ghost2")
	_, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("cto"), Users: &tidingsv1.UserSelector{
		Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: ghosts}}}})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	require.ErrorContains(t, err, "ghost1, ghost2")
	require.Zero(t, followerCount(t, s, entity.User("cto")), "nothing was followed")
	// A deactivated user is skipped, and cannot be followed.
	_, err = s.Profiles(t, testenv.Directory).DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: "e03"})
	require.NoError(t, err)
	resp, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("cto"), Users: &tidingsv1.UserSelector{
		Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: []string{"e01", "e03"}}}}})
	require.NoError(t, err)
	require.EqualValues(t, 1, resp.GetChangedCount())
	require.EqualValues(t, 1, resp.GetSkippedCount())
	_, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("e03"), Users: &tidingsv1.UserSelector{
		Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: []string{"e01"}}}}})
	testenv.RequireCode(t, err, codes.FailedPrecondition)

	_, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: entity.User("nobody"), Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Department{Department: "Sales"}}})
	testenv.RequireCode(t, err, codes.NotFound)
	_, err = admin.BulkFollow(ctx, &tidingsv1.BulkFollowRequest{Entity: acme})
	testenv.RequireCode(t, err, codes.InvalidArgument)
	_, err = tidingsv1.NewAdminServiceClient(s.Server.Conn(t, testenv.Employee("e01"))).BulkFollow(ctx,
		&tidingsv1.BulkFollowRequest{Entity: acme, Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Department{Department: "Sales"}}})
	testenv.RequireCode(t, err, codes.PermissionDenied)
}

func TestRemoveUser(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "leaver", "a", "b", "c")
	ctx := t.Context()
	admin := s.Follows(t, testenv.Admin)
	for _, u := range []string{"a", "b", "c"} {
		_, err := admin.Follow(ctx, &tidingsv1.FollowRequest{UserId: "leaver", Entity: entity.User(u)})
		require.NoError(t, err)
		_, err = admin.Follow(ctx, &tidingsv1.FollowRequest{UserId: u, Entity: entity.User("leaver")})
		require.NoError(t, err)
	}
	_, err := admin.Follow(ctx, &tidingsv1.FollowRequest{UserId: "a", Entity: entity.User("b")})
	require.NoError(t, err)

	resp, err := s.Admin(t).RemoveUser(ctx, &tidingsv1.RemoveUserRequest{UserId: "leaver"})
	require.NoError(t, err)
	require.EqualValues(t, 3, resp.GetFollowingRemoved())
	require.EqualValues(t, 3, resp.GetFollowersRemoved())
	require.Zero(t, followerCount(t, s, entity.User("leaver")))
	counts, err := admin.GetFollowCounts(ctx, &tidingsv1.GetFollowCountsRequest{Entity: entity.User("leaver")})
	require.NoError(t, err)
	require.Zero(t, counts.GetFollowingCount())
	require.EqualValues(t, 1, followerCount(t, s, entity.User("b")), "other edges stay")
	p, err := s.Profiles(t, testenv.Admin).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "leaver"})
	require.NoError(t, err)
	require.False(t, p.GetProfile().GetActive())

	// No one follows the leaver again, not even through an admin.
	_, err = s.Follows(t, testenv.Employee("a")).Follow(ctx, &tidingsv1.FollowRequest{UserId: "a", Entity: entity.User("leaver")})
	testenv.RequireCode(t, err, codes.FailedPrecondition)
	require.ErrorContains(t, err, "leaver is deactivated")
	_, err = admin.Follow(ctx, &tidingsv1.FollowRequest{UserId: "leaver", Entity: entity.User("a")})
	testenv.RequireCode(t, err, codes.FailedPrecondition)
}

func TestNewEmployeeFollowsManagerRule(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "mgr")
	ctx := t.Context()
	rules, err := s.Admin(t).GetAutoFollowRules(ctx, &tidingsv1.GetAutoFollowRulesRequest{})
	require.NoError(t, err)
	require.True(t, rules.GetRules().GetOwnerFollowsRecord())
	require.False(t, rules.GetRules().GetNewEmployeeFollowsManager())
	hr := s.Profiles(t, testenv.Directory)
	_, err = hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "early", DisplayName: "E", ManagerId: "mgr"}})
	require.NoError(t, err)
	_, err = s.Admin(t).UpdateAutoFollowRules(ctx, &tidingsv1.UpdateAutoFollowRulesRequest{Rules: &tidingsv1.AutoFollowRules{OwnerFollowsRecord: true, NewEmployeeFollowsManager: true}})
	require.NoError(t, err)
	_, err = hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "late", DisplayName: "L", ManagerId: "mgr"}})
	require.NoError(t, err)
	is, err := s.Follows(t, testenv.Admin).IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "late", Entities: []*tidingsv1.EntityRef{entity.User("mgr")}})
	require.NoError(t, err)
	require.True(t, is.GetFollowing()[0])
	is, err = s.Follows(t, testenv.Admin).IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "early", Entities: []*tidingsv1.EntityRef{entity.User("mgr")}})
	require.NoError(t, err)
	require.False(t, is.GetFollowing()[0])
}

func TestImportReportsBadRows(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	ctx := t.Context()
	s.Users(t, "a", "b", "c", "gone")
	_, err := s.Profiles(t, testenv.Directory).DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: "gone"})
	require.NoError(t, err)
	crm := s.Records(t, testenv.App("crm"))
	for _, r := range []*tidingsv1.Record{
		{Ref: &tidingsv1.RecordRef{Type: "crm.account", ExternalId: "acme"}, Title: "Acme"},
		{Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "secret"}, Title: "Secret",
			Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, OwnerId: "b"},
	} {
		_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
		require.NoError(t, err)
	}
	// An import that fails part way writes nothing, though its first
	// batch was good: its second is refused whole (over 5,000 rows).
	stream, err := s.Admin(t).ImportGraph(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&tidingsv1.ImportGraphRequest{Follows: []*tidingsv1.Follow{{UserId: "c", Entity: entity.User("a")}}}))
	tooMany := &tidingsv1.ImportGraphRequest{}
	for range 5001 {
		tooMany.Follows = append(tooMany.Follows, &tidingsv1.Follow{UserId: "c", Entity: entity.User("b")})
	}
	require.NoError(t, stream.Send(tooMany))
	_, err = stream.CloseAndRecv()
	testenv.RequireCode(t, err, codes.InvalidArgument)
	is, err := s.Follows(t, testenv.Admin).IsFollowing(ctx, &tidingsv1.IsFollowingRequest{UserId: "c", Entities: []*tidingsv1.EntityRef{entity.User("a")}})
	require.NoError(t, err)
	require.False(t, is.GetFollowing()[0], "nothing of a failed import is written")

	stream, err = s.Admin(t).ImportGraph(ctx)
	require.NoError(t, err)
	created := timestamppb.New(time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC))
	require.NoError(t, stream.Send(&tidingsv1.ImportGraphRequest{Follows: []*tidingsv1.Follow{
		{UserId: "a", Entity: entity.User("b"), CreateTime: created},
		{UserId: "bad id", Entity: entity.User("b")},
		{UserId: "a", Entity: entity.User("a")},
	}}))
	require.NoError(t, stream.Send(&tidingsv1.ImportGraphRequest{Follows: []*tidingsv1.Follow{
		{UserId: "c", Entity: entity.Record("crm.account", "acme")},
		{UserId: "c"},
		{UserId: "a", Entity: entity.User("b")},
		{UserId: "c", Entity: entity.Record("crm.account", "missing")},
		{UserId: "c", Entity: entity.Record("crm.opportunity", "secret")},
		{UserId: "ghost", Entity: entity.User("a")},
		{UserId: "a", Entity: entity.User("ghost")},
		{UserId: "gone", Entity: entity.User("a")},
		{UserId: "a", Entity: entity.User("gone")},
		{UserId: "b", Entity: entity.Record("crm.opportunity", "secret")},
	}}))
	resp, err := stream.CloseAndRecv()
	require.NoError(t, err)
	require.EqualValues(t, 13, resp.GetRowCount())
	require.EqualValues(t, 2, resp.GetImportedCount())
	// Row 6 repeats row 1; row 13 is the owner, who follows the record
	// already (auto-follow).
	require.EqualValues(t, 2, resp.GetUnchangedCount())
	require.EqualValues(t, 9, resp.GetRejectedCount())
	reasons := map[int64]string{}
	for _, e := range resp.GetErrors() {
		reasons[e.GetRow()] = e.GetReason()
	}
	require.Len(t, reasons, 9)
	for row, want := range map[int64]string{
		2: "user_id", 3: "themselves", 5: "entity",
		7: "no record crm.account/missing", 8: "c may not see restricted record",
		9: "no user ghost", 10: "no user ghost", 11: "user gone is deactivated", 12: "user gone is deactivated",
	} {
		require.Contains(t, reasons[row], want, "row %d", row)
	}

	list, err := s.Follows(t, testenv.Admin).ListFollowing(ctx, &tidingsv1.ListFollowingRequest{UserId: "a"})
	require.NoError(t, err)
	require.Len(t, list.GetFollows(), 1)
	require.True(t, list.GetFollows()[0].GetCreateTime().AsTime().Equal(created.AsTime()), "import keeps create times")
}

func TestStatusAndRebuild(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "a", "b")
	ctx := t.Context()
	_, err := s.Follows(t, testenv.Admin).Follow(ctx, &tidingsv1.FollowRequest{UserId: "a", Entity: entity.User("b")})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	status, err := s.Admin(t).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err)
	require.True(t, status.GetRedisOk())
	require.Len(t, status.GetStreams(), 9)
	var names []string
	for _, c := range status.GetConsumers() {
		names = append(names, c.GetName())
		require.Zero(t, c.GetPending())
	}
	require.Subset(t, names, []string{"profiles-projector", "follows-projector", "records-projector", "fanout", "fanout-chunks", "conversations", "userstate"})

	before := testenv.Snapshot(t, s.Env.RDB)
	require.NoError(t, s.Env.RDB.FlushAll(ctx).Err())
	rebuilt := s.Rebuild(t)
	require.EqualValues(t, 1, rebuilt.GetToGeneration())
	testenv.RequireSameSnapshot(t, before, testenv.Snapshot(t, s.Env.RDB), "rebuilt projection")
	status, err = s.Admin(t).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err)
	require.EqualValues(t, 1, status.GetGeneration(), "readers moved to the rebuilt generation")
	require.Equal(t, rebuilt.GetId(), status.GetRebuild().GetId())

	// Finding 8 of issue 14: the status lists durable consumers only, not
	// the consumers of the replays (which are deleted when a replay ends)
	// nor any other short-lived one.
	acts, err := s.Env.JS.Stream(ctx, eventlog.StreamActivities)
	require.NoError(t, err)
	_, err = acts.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	require.NoError(t, err)
	_, err = acts.CreateConsumer(ctx, jetstream.ConsumerConfig{InactiveThreshold: time.Minute})
	require.NoError(t, err)
	status, err = s.Admin(t).GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{})
	require.NoError(t, err)
	durable := map[string]bool{eventlog.RedriveConsumer.Durable: true}
	for _, spec := range projection.ConsumerSpecs() {
		durable[spec.Durable] = true
	}
	for _, c := range status.GetConsumers() {
		require.True(t, durable[c.GetName()], "consumer %s of %s is not durable", c.GetName(), c.GetStream())
	}

	_, err = s.Admin(t).RebuildProjections(ctx, &tidingsv1.RebuildProjectionsRequest{Projections: []tidingsv1.Projection{0}})
	testenv.RequireCode(t, err, codes.InvalidArgument)
}

// TestImportExportLargeGraph moves a graph of 100,000 users and 2,000,000
// edges in and out through the API, checks the export equals the import
// (as it streams, holding one user's edges at a time), and reports the peak
// Go heap of the process during each phase. Under the race detector, which
// slows it tenfold, it runs on 5,000 users; `make test` runs it again at
// full size without the race detector.
func TestImportExportLargeGraph(t *testing.T) {
	users, perUser := 100_000, 20
	if testing.Short() || raceEnabled {
		users = 5_000
	}
	s := stacktest.Start(t)
	ctx := t.Context()
	// An import follows only users and records that exist.
	ids := make([]string, users)
	for u := range users {
		ids[u] = fmt.Sprintf("user%06d", u)
	}
	s.Users(t, ids...)
	crm := s.Records(t, testenv.App("crm"))
	var g errgroup.Group
	g.SetLimit(8)
	for a := range 2000 {
		g.Go(func() error {
			_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
				Ref: &tidingsv1.RecordRef{Type: "crm.account", ExternalId: fmt.Sprintf("acct%d", a)}, Title: "Account"}})
			return err
		})
	}
	require.NoError(t, g.Wait())
	targets := func(u int) []string {
		out := make([]string, 0, perUser)
		for j := range perUser {
			if j%5 == 0 {
				out = append(out, fmt.Sprintf("r:crm.account:acct%d", (u+j)%2000))
				continue
			}
			// Deterministic, skewed targets.
			target := (u*7919 + j*104729) % users
			if target == u {
				target = (target + 1) % users
			}
			out = append(out, fmt.Sprintf("u:user%06d", target))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	userID := func(u int) string { return fmt.Sprintf("user%06d", u) }

	start := time.Now()
	importPeak := peakHeap(t, func() {
		stream, err := s.Admin(t).ImportGraph(ctx)
		require.NoError(t, err)
		batch := &tidingsv1.ImportGraphRequest{}
		created := timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
		for u := range users {
			for j := range perUser {
				target := targets(u)[j%len(targets(u))]
				if j >= len(targets(u)) {
					target = targets(u)[0] // a duplicate row: counted unchanged
				}
				ref, err := entity.Parse(target)
				require.NoError(t, err)
				batch.Follows = append(batch.Follows, &tidingsv1.Follow{UserId: userID(u), Entity: ref, CreateTime: created})
				if len(batch.Follows) == 5000 {
					require.NoError(t, stream.Send(batch))
					batch = &tidingsv1.ImportGraphRequest{}
				}
			}
		}
		if len(batch.Follows) > 0 {
			require.NoError(t, stream.Send(batch))
		}
		resp, err := stream.CloseAndRecv()
		require.NoError(t, err)
		require.EqualValues(t, users*perUser, resp.GetRowCount())
		require.Zero(t, resp.GetRejectedCount())
		require.EqualValues(t, users*perUser, resp.GetImportedCount()+resp.GetUnchangedCount())
	})
	imported := time.Since(start)

	start = time.Now()
	var edges int
	exportPeak := peakHeap(t, func() {
		export, err := s.Admin(t).ExportGraph(ctx, &tidingsv1.ExportGraphRequest{BatchSize: 5000})
		require.NoError(t, err)
		seen := make([]bool, users)
		var cur string
		var have []string
		check := func() {
			if cur == "" {
				return
			}
			var u int
			_, err := fmt.Sscanf(cur, "user%06d", &u)
			require.NoError(t, err)
			require.False(t, seen[u], "%s exported in two runs", cur)
			seen[u] = true
			slices.Sort(have)
			require.Equal(t, targets(u), have, "edges of %s", cur)
		}
		for {
			page, err := export.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err)
			for _, f := range page.GetFollows() {
				if f.GetUserId() != cur {
					check()
					cur, have = f.GetUserId(), have[:0]
				}
				have = append(have, entity.Key(f.GetEntity()))
				edges++
			}
		}
		check()
		for u, ok := range seen {
			require.True(t, ok, "%s missing from the export", userID(u))
		}
	})
	exported := time.Since(start)
	t.Logf("graph of %d users, %d rows, %d distinct edges: import %s (peak Go heap %.0f MiB), export %s (peak Go heap %.0f MiB)",
		users, users*perUser, edges, imported.Round(time.Millisecond), float64(importPeak)/(1<<20),
		exported.Round(time.Millisecond), float64(exportPeak)/(1<<20))
	// The export is bounded: Redis holds the graph; the process holds a few
	// batches. The import checks every row before it writes any (no half
	// import), so it holds the accepted edges, packed (about 35 bytes an
	// edge, with their de-duplication): it grows with the import, 468 MiB at
	// 2,000,000 rows on 2026-11-30. Spilling them to disk would bound it
	// again (issue 16's closing note).
	require.Less(t, importPeak, uint64(768<<20))
	require.Less(t, exportPeak, uint64(256<<20))
}

// peakHeap runs f and returns the largest HeapInuse sampled meanwhile.
func peakHeap(t *testing.T, f func()) uint64 {
	t.Helper()
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	return peak.Load()
}
