package profiles_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/profilestore"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/profiles"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

type fixture struct {
	env   *testenv.Env
	srv   *testenv.Server
	store *profilestore.Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := testenv.New(t)
	stores := projection.NewStores(env.RDB, hot.Thresholds{On: 10000, Off: 8000})
	store := stores.Profiles
	proj := projection.New(projection.Deps{Log: env.Log, Stores: stores, Config: projection.DefaultConfig(), Logger: env.Logger})
	srv := testenv.Serve(t, func(s *grpcserver.Server) {
		tidingsv1.RegisterProfileServiceServer(s, profiles.NewServer(profiles.Deps{Log: env.Log, Projector: proj, Logger: env.Logger}))
	})
	return &fixture{env: env, srv: srv, store: store}
}

func (f *fixture) client(t *testing.T, id auth.Identity) tidingsv1.ProfileServiceClient {
	return tidingsv1.NewProfileServiceClient(f.srv.Conn(t, id))
}

func profile(id, dept, mgr string) *tidingsv1.Profile {
	return &tidingsv1.Profile{UserId: id, DisplayName: "Name of " + id, Department: dept, ManagerId: mgr, Title: "Engineer"}
}

func TestUpsertGetAndNoOp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hr := f.client(t, testenv.Directory)
	ctx := t.Context()

	resp, err := hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("ana.lima", "Sales", "bo")})
	require.NoError(t, err)
	require.True(t, resp.GetCreated())
	require.True(t, resp.GetProfile().GetActive())
	require.NotNil(t, resp.GetProfile().GetCreateTime())
	require.Equal(t, uint64(1), f.env.StreamMessages(t, eventlog.StreamProfiles))

	// The same content again appends nothing and reports no creation.
	again, err := hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("ana.lima", "Sales", "bo")})
	require.NoError(t, err)
	require.False(t, again.GetCreated())
	require.True(t, proto.Equal(resp.GetProfile(), again.GetProfile()))
	require.Equal(t, uint64(1), f.env.StreamLastSeq(t, eventlog.StreamProfiles))

	// A change appends one event; create_time stays.
	changed := profile("ana.lima", "Marketing", "bo")
	upd, err := hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: changed})
	require.NoError(t, err)
	require.False(t, upd.GetCreated())
	require.Equal(t, "Marketing", upd.GetProfile().GetDepartment())
	require.True(t, proto.Equal(resp.GetProfile().GetCreateTime(), upd.GetProfile().GetCreateTime()))
	require.Equal(t, uint64(2), f.env.StreamLastSeq(t, eventlog.StreamProfiles))

	// Any employee reads it back at once (write-through).
	got, err := f.client(t, testenv.Employee("zed")).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "ana.lima"})
	require.NoError(t, err)
	require.True(t, proto.Equal(upd.GetProfile(), got.GetProfile()))
}

func TestUpsertKeepsAboutMeAndActive(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	hr := f.client(t, testenv.Directory)
	_, err := hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("bo", "Sales", "")})
	require.NoError(t, err)
	_, err = f.client(t, testenv.Employee("bo")).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "bo", AboutMe: "I sell things"})
	require.NoError(t, err)
	_, err = hr.DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: "bo"})
	require.NoError(t, err)

	in := profile("bo", "Sales", "")
	in.Title = "Director"
	in.AboutMe = "HR may not write this"
	in.Active = true
	resp, err := hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: in})
	require.NoError(t, err)
	require.Equal(t, "Director", resp.GetProfile().GetTitle())
	require.Equal(t, "I sell things", resp.GetProfile().GetAboutMe())
	require.False(t, resp.GetProfile().GetActive())

	react, err := hr.ReactivateProfile(ctx, &tidingsv1.ReactivateProfileRequest{UserId: "bo"})
	require.NoError(t, err)
	require.True(t, react.GetProfile().GetActive())
}

func TestBatchUpsertAndBatchGet(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	hr := f.client(t, testenv.Directory)
	var batch []*tidingsv1.Profile
	for i := range 40 {
		batch = append(batch, profile(fmt.Sprintf("u%02d", i), "Eng", ""))
	}
	resp, err := hr.BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: batch})
	require.NoError(t, err)
	require.EqualValues(t, 40, resp.GetCreatedCount())

	batch[3] = profile("u03", "Sales", "")
	resp, err = hr.BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: batch})
	require.NoError(t, err)
	require.EqualValues(t, 0, resp.GetCreatedCount())
	require.EqualValues(t, 1, resp.GetUpdatedCount())
	require.EqualValues(t, 39, resp.GetUnchangedCount())
	require.Equal(t, uint64(41), f.env.StreamLastSeq(t, eventlog.StreamProfiles))

	got, err := f.client(t, testenv.Employee("u01")).BatchGetProfiles(ctx, &tidingsv1.BatchGetProfilesRequest{UserIds: []string{"u03", "nobody", "u01"}})
	require.NoError(t, err)
	require.Len(t, got.GetProfiles(), 2)
	require.Equal(t, "u03", got.GetProfiles()[0].GetUserId())
	require.Equal(t, "Sales", got.GetProfiles()[0].GetDepartment())
	require.Equal(t, "u01", got.GetProfiles()[1].GetUserId())
	require.Equal(t, []string{"nobody"}, got.GetMissingUserIds())
}

func TestListPagesAndFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	hr := f.client(t, testenv.Directory)
	var batch []*tidingsv1.Profile
	for i := range 25 {
		dept, mgr := "Eng", "boss"
		if i%5 == 0 {
			dept, mgr = "Sales", "other"
		}
		batch = append(batch, profile(fmt.Sprintf("p%02d", i), dept, mgr))
	}
	_, err := hr.BatchUpsertProfiles(ctx, &tidingsv1.BatchUpsertProfilesRequest{Profiles: batch})
	require.NoError(t, err)
	_, err = hr.DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: "p01"})
	require.NoError(t, err)
	// p02 moves from Eng to Sales: its old index entry must not show.
	_, err = hr.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("p02", "Sales", "other")})
	require.NoError(t, err)

	client := f.client(t, testenv.Employee("p00"))
	listAll := func(req *tidingsv1.ListProfilesRequest) []string {
		var ids []string
		for page := 0; ; page++ {
			require.Less(t, page, 50, "paging does not end")
			resp, err := client.ListProfiles(ctx, req)
			require.NoError(t, err)
			require.LessOrEqual(t, len(resp.GetProfiles()), int(req.GetPageSize()))
			for _, p := range resp.GetProfiles() {
				ids = append(ids, p.GetUserId())
			}
			if resp.GetNextPageToken() == "" {
				return ids
			}
			req = proto.CloneOf(req)
			req.PageToken = resp.GetNextPageToken()
		}
	}
	all := listAll(&tidingsv1.ListProfilesRequest{PageSize: 7})
	require.Len(t, all, 24, "inactive p01 left out")
	require.NotContains(t, all, "p01")
	require.IsIncreasing(t, all)

	withInactive := listAll(&tidingsv1.ListProfilesRequest{PageSize: 7, IncludeInactive: true})
	require.Len(t, withInactive, 25)

	sales := listAll(&tidingsv1.ListProfilesRequest{PageSize: 2, Department: "Sales"})
	require.Equal(t, []string{"p00", "p02", "p05", "p10", "p15", "p20"}, sales)
	eng := listAll(&tidingsv1.ListProfilesRequest{PageSize: 50, Department: "Eng"})
	require.NotContains(t, eng, "p02")
	require.Len(t, eng, 18)

	reports := listAll(&tidingsv1.ListProfilesRequest{PageSize: 3, ManagerId: "other"})
	require.Equal(t, sales, reports)
}

func TestUpdateAboutMeOnlyOwn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	_, err := f.client(t, testenv.Directory).UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("cy", "Ops", "")})
	require.NoError(t, err)
	before := f.env.StreamLastSeq(t, eventlog.StreamProfiles)

	_, err = f.client(t, testenv.Employee("dee")).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "cy", AboutMe: "hacked"})
	testenv.RequireCode(t, err, codes.PermissionDenied)
	_, err = f.client(t, testenv.Employee("ghost")).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "ghost", AboutMe: "boo"})
	testenv.RequireCode(t, err, codes.NotFound)
	require.Equal(t, before, f.env.StreamLastSeq(t, eventlog.StreamProfiles), "rejected writes append nothing")

	resp, err := f.client(t, testenv.Employee("cy")).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "cy", AboutMe: "on call"})
	require.NoError(t, err)
	require.Equal(t, "on call", resp.GetProfile().GetAboutMe())
	_, err = f.client(t, testenv.Admin).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "cy", AboutMe: "set by admin"})
	require.NoError(t, err)
	require.Equal(t, before+2, f.env.StreamLastSeq(t, eventlog.StreamProfiles))
}

// withUnknownField returns m with a field number the schema does not have.
func withUnknownField[M proto.Message](m M) M {
	raw := protowire.AppendTag(nil, 999, protowire.BytesType)
	raw = protowire.AppendString(raw, "surprise")
	m.ProtoReflect().SetUnknown(raw)
	return m
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	hr := f.client(t, testenv.Directory)
	_, err := hr.UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{Profile: profile("known", "Eng", "")})
	require.NoError(t, err)
	before := f.env.StreamLastSeq(t, eventlog.StreamProfiles)

	nested := &tidingsv1.UpsertProfileRequest{Profile: withUnknownField(profile("x", "Eng", ""))}
	var tooMany []*tidingsv1.Profile
	for i := range 501 {
		tooMany = append(tooMany, profile(fmt.Sprintf("m%d", i), "", ""))
	}
	cases := []struct {
		name   string
		call   func() error
		code   codes.Code
		reason string
	}{
		{"empty user id", func() error {
			_, err := hr.GetProfile(t.Context(), &tidingsv1.GetProfileRequest{UserId: ""})
			return err
		}, codes.InvalidArgument, ""},
		{"oversized user id", func() error {
			_, err := hr.GetProfile(t.Context(), &tidingsv1.GetProfileRequest{UserId: strings.Repeat("a", 65)})
			return err
		}, codes.InvalidArgument, ""},
		{"malformed user id", func() error {
			_, err := hr.GetProfile(t.Context(), &tidingsv1.GetProfileRequest{UserId: "ana lima"})
			return err
		}, codes.InvalidArgument, ""},
		{"braces in user id", func() error {
			_, err := hr.GetProfile(t.Context(), &tidingsv1.GetProfileRequest{UserId: "a{b}"})
			return err
		}, codes.InvalidArgument, ""},
		{"unknown profile", func() error {
			_, err := hr.GetProfile(t.Context(), &tidingsv1.GetProfileRequest{UserId: "nobody"})
			return err
		}, codes.NotFound, "NOT_FOUND"},
		{"unknown top-level field", func() error {
			_, err := hr.GetProfile(t.Context(), withUnknownField(&tidingsv1.GetProfileRequest{UserId: "known"}))
			return err
		}, codes.InvalidArgument, "UNKNOWN_FIELD"},
		{"unknown nested field", func() error {
			_, err := hr.UpsertProfile(t.Context(), nested)
			return err
		}, codes.InvalidArgument, "UNKNOWN_FIELD"},
		{"missing profile", func() error {
			_, err := hr.UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{})
			return err
		}, codes.InvalidArgument, ""},
		{"missing display name", func() error {
			p := profile("y", "", "")
			p.DisplayName = ""
			_, err := hr.UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{Profile: p})
			return err
		}, codes.InvalidArgument, ""},
		{"own manager", func() error {
			_, err := hr.UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{Profile: profile("z", "", "z")})
			return err
		}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"page size negative", func() error {
			_, err := hr.ListProfiles(t.Context(), &tidingsv1.ListProfilesRequest{PageSize: -1})
			return err
		}, codes.InvalidArgument, ""},
		{"page size too large", func() error {
			_, err := hr.ListProfiles(t.Context(), &tidingsv1.ListProfilesRequest{PageSize: 201})
			return err
		}, codes.InvalidArgument, ""},
		{"garbage page token", func() error {
			_, err := hr.ListProfiles(t.Context(), &tidingsv1.ListProfilesRequest{PageToken: "not-a-token"})
			return err
		}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"two filters", func() error {
			_, err := hr.ListProfiles(t.Context(), &tidingsv1.ListProfilesRequest{Department: "a", ManagerId: "b"})
			return err
		}, codes.InvalidArgument, ""},
		{"batch duplicate ids", func() error {
			_, err := hr.BatchUpsertProfiles(t.Context(), &tidingsv1.BatchUpsertProfilesRequest{Profiles: []*tidingsv1.Profile{profile("d", "", ""), profile("d", "", "")}})
			return err
		}, codes.InvalidArgument, "INVALID_ARGUMENT"},
		{"batch too large", func() error {
			_, err := hr.BatchUpsertProfiles(t.Context(), &tidingsv1.BatchUpsertProfilesRequest{Profiles: tooMany})
			return err
		}, codes.InvalidArgument, ""},
		{"batch with one bad profile", func() error {
			_, err := hr.BatchUpsertProfiles(t.Context(), &tidingsv1.BatchUpsertProfilesRequest{Profiles: []*tidingsv1.Profile{profile("ok1", "", ""), profile("bad id", "", "")}})
			return err
		}, codes.InvalidArgument, ""},
		{"batch get empty", func() error {
			_, err := hr.BatchGetProfiles(t.Context(), &tidingsv1.BatchGetProfilesRequest{})
			return err
		}, codes.InvalidArgument, ""},
		{"deactivate unknown", func() error {
			_, err := hr.DeactivateProfile(t.Context(), &tidingsv1.DeactivateProfileRequest{UserId: "nobody"})
			return err
		}, codes.NotFound, "NOT_FOUND"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			testenv.RequireCode(t, err, tc.code)
			if tc.reason != "" {
				require.Equal(t, tc.reason, errorReason(err))
			}
		})
	}
	require.Equal(t, before, f.env.StreamLastSeq(t, eventlog.StreamProfiles), "no rejected call may append an event")
}

func errorReason(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	expired, err := auth.Mint(testenv.TokenConfig, testenv.Directory, time.Millisecond, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	otherSecret := testenv.TokenConfig
	otherSecret.Secret = []byte("another-secret-another-secret-0123456789")
	forged, err := auth.Mint(otherSecret, testenv.Admin, time.Hour, time.Now())
	require.NoError(t, err)
	otherAudience := testenv.TokenConfig
	otherAudience.Audience = "someone-else"
	wrongAud, err := auth.Mint(otherAudience, testenv.Admin, time.Hour, time.Now())
	require.NoError(t, err)
	// An unsigned token ("alg": "none") naming an admin.
	unsigned := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJ0aWRpbmdzLXRlc3QiLCJzdWIiOiJyb290IiwiYXVkIjpbInRpZGluZ3MtdGVzdCJdLCJleHAiOjQxMDI0NDQ4MDAsImtpbmQiOiJhZG1pbiJ9."

	upsert := func(conn grpc.ClientConnInterface) error {
		_, err := tidingsv1.NewProfileServiceClient(conn).UpsertProfile(t.Context(), &tidingsv1.UpsertProfileRequest{Profile: profile("victim", "", "")})
		return err
	}
	for _, tc := range []struct {
		name string
		conn grpc.ClientConnInterface
		code codes.Code
	}{
		{"no token", f.srv.ConnWithToken(t, ""), codes.Unauthenticated},
		{"garbage token", f.srv.ConnWithToken(t, "garbage"), codes.Unauthenticated},
		{"expired token", f.srv.ConnWithToken(t, expired), codes.Unauthenticated},
		{"wrong signing key", f.srv.ConnWithToken(t, forged), codes.Unauthenticated},
		{"wrong audience", f.srv.ConnWithToken(t, wrongAud), codes.Unauthenticated},
		{"alg none", f.srv.ConnWithToken(t, unsigned), codes.Unauthenticated},
		{"employee may not sync the directory", f.srv.Conn(t, testenv.Employee("victim")), codes.PermissionDenied},
		{"app without directory role", f.srv.Conn(t, testenv.App("crm")), codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testenv.RequireCode(t, upsert(tc.conn), tc.code)
		})
	}
	require.Equal(t, uint64(0), f.env.StreamMessages(t, eventlog.StreamProfiles))
	require.NoError(t, upsert(f.srv.Conn(t, testenv.Admin)), "admins may upsert")
	require.NoError(t, upsert(f.srv.Conn(t, testenv.Directory)), "the directory app may upsert")
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := t.Context()
	_, err := f.client(t, testenv.Directory).UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: profile("race", "Eng", "")})
	require.NoError(t, err)
	// The HR sync changes the title while the employee edits their about-me
	// and an admin deactivates: every change must survive.
	errs := make(chan error, 3)
	go func() {
		p := profile("race", "Eng", "")
		p.Title = "Staff Engineer"
		_, err := f.client(t, testenv.Directory).UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: p})
		errs <- err
	}()
	go func() {
		_, err := f.client(t, testenv.Employee("race")).UpdateAboutMe(ctx, &tidingsv1.UpdateAboutMeRequest{UserId: "race", AboutMe: "hello"})
		errs <- err
	}()
	go func() {
		_, err := f.client(t, testenv.Admin).DeactivateProfile(ctx, &tidingsv1.DeactivateProfileRequest{UserId: "race"})
		errs <- err
	}()
	for range 3 {
		require.NoError(t, <-errs)
	}
	got, err := f.store.Get(ctx, "race")
	require.NoError(t, err)
	require.Equal(t, "Staff Engineer", got.GetTitle())
	require.Equal(t, "hello", got.GetAboutMe())
	require.False(t, got.GetActive())
}
