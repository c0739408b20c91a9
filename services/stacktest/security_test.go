package stacktest_test

import (
	"strings"
	"testing"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// requireInvalid fails unless err is InvalidArgument naming field, with the
// violations and an ErrorInfo of reason INVALID_ARGUMENT in tidings.v1.
func requireInvalid(t *testing.T, err error, field string) {
	t.Helper()
	testenv.RequireCode(t, err, codes.InvalidArgument)
	st := status.Convert(err)
	require.Contains(t, st.Message(), field)
	var info *errdetails.ErrorInfo
	var violations *validate.Violations
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.ErrorInfo:
			info = d
		case *validate.Violations:
			violations = d
		}
	}
	require.NotNil(t, info, "no ErrorInfo in %v", st.Details())
	require.Equal(t, apierr.ReasonInvalidArgument, info.GetReason())
	require.Equal(t, apierr.Domain, info.GetDomain())
	require.Equal(t, field, info.GetMetadata()["field"])
	require.NotNil(t, violations, "no Violations in %v", st.Details())
	require.NotEmpty(t, violations.GetViolations())
}

var badURLs = []struct{ name, url string }{
	{"javascript", "javascript:alert(document.cookie)"},
	{"javascript upper case", "JaVaScRiPt:alert(1)"},
	{"data", "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="},
	{"vbscript", "vbscript:msgbox(1)"},
	{"file", "file:///etc/passwd"},
	{"relative", "/opp/006A"},
	{"scheme relative", "//evil.example.com/x"},
	{"no host", "https:///path"},
	{"malformed", "http://exa mple.com/"},
	{"bad escape", "https://example.com/%zz"},
	{"leading space", " https://example.com/"},
}

var goodURLs = []string{"https://crm.example.com/opp/006A?tab=1#top", "http://intranet.example/x", "HTTPS://Example.com"}

// TestURLsAreHTTP checks the three URL fields clients render: only
// absolute http and https URLs are stored.
func TestURLsAreHTTP(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana")
	ctx := t.Context()
	acts := s.Activities(t, testenv.Employee("ana"))
	recs := s.Records(t, testenv.App("crm"))
	profs := s.Profiles(t, testenv.Directory)
	post := func(u string) error {
		_, err := acts.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "see", Links: []*tidingsv1.Link{{Url: u}}})
		return err
	}
	record := func(u string) error {
		_, err := recs.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
			Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "006A"}, Title: "Acme", Url: u,
		}})
		return err
	}
	avatar := func(u string) error {
		_, err := profs.UpsertProfile(ctx, &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "bo", DisplayName: "Bo", AvatarUrl: u}})
		return err
	}
	for _, tc := range badURLs {
		t.Run(tc.name, func(t *testing.T) {
			requireInvalid(t, post(tc.url), "links[0].url")
			requireInvalid(t, record(tc.url), "record.url")
			requireInvalid(t, avatar(tc.url), "profile.avatar_url")
		})
	}
	for _, u := range goodURLs {
		require.NoError(t, post(u), u)
		require.NoError(t, record(u), u)
		require.NoError(t, avatar(u), u)
	}
	require.NoError(t, record(""), "a record needs no URL")
	require.NoError(t, avatar(""), "a profile needs no avatar")
	requireInvalid(t, post(""), "links[0].url")
}

// rawCodec sends and receives bytes as they are, to put what no generated
// client would send on the wire.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

// invokeRaw sends body to method as caller and returns the error.
func invokeRaw(t *testing.T, conn *grpc.ClientConn, method string, body []byte) error {
	t.Helper()
	var out []byte
	return conn.Invoke(t.Context(), method, &body, &out, grpc.ForceCodecV2(rawCodec{}))
}

// TestUndecodableRequests checks that bytes that are not the request
// message, and strings that are not UTF-8, get InvalidArgument with the
// ErrorInfo, on unary and streaming methods, and that nothing internal
// reaches the client.
func TestUndecodableRequests(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	conn := s.Server.Conn(t, testenv.Admin)
	badUTF8 := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff\xfe")
	truncated := protowire.AppendTag(nil, 1, protowire.BytesType) // a length is missing
	wrongType := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.Fixed64Type), 1)[:3]
	for _, tc := range []struct {
		name, method string
		body         []byte
	}{
		{"invalid utf-8", tidingsv1.ProfileService_GetProfile_FullMethodName, badUTF8},
		{"truncated", tidingsv1.ProfileService_GetProfile_FullMethodName, truncated},
		{"wrong wire type", tidingsv1.RecordService_GetRecord_FullMethodName, wrongType},
		{"garbage", tidingsv1.AdminService_RebuildProjections_FullMethodName, []byte{0xff, 0xff, 0xff, 0xff, 0xff}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := invokeRaw(t, conn, tc.method, tc.body)
			testenv.RequireCode(t, err, codes.InvalidArgument)
			st := status.Convert(err)
			require.NotContains(t, st.Message(), "proto:")
			require.NotContains(t, st.Message(), "grpc:")
			require.Len(t, st.Details(), 1)
			require.Equal(t, apierr.ReasonInvalidArgument, st.Details()[0].(*errdetails.ErrorInfo).GetReason())
		})
	}
	t.Run("utf-8 in a message sent on a stream", func(t *testing.T) {
		desc := &grpc.StreamDesc{StreamName: "ImportGraph", ClientStreams: true}
		cs, err := conn.NewStream(t.Context(), desc, tidingsv1.AdminService_ImportGraph_FullMethodName, grpc.ForceCodecV2(rawCodec{}))
		require.NoError(t, err)
		// ImportGraphRequest.follows[0].user_id = "\xff"
		follow := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "\xff")
		body := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), follow)
		require.NoError(t, cs.SendMsg(&body))
		require.NoError(t, cs.CloseSend())
		var out []byte
		err = cs.RecvMsg(&out)
		testenv.RequireCode(t, err, codes.InvalidArgument)
		require.Contains(t, status.Convert(err).Message(), "UTF-8")
	})
	t.Run("unauthenticated garbage is refused as unauthenticated", func(t *testing.T) {
		err := invokeRaw(t, s.Server.ConnWithToken(t, ""), tidingsv1.ProfileService_GetProfile_FullMethodName, truncated)
		testenv.RequireCode(t, err, codes.Unauthenticated)
	})
}

// TestNotFoundNamesNoInternalKey checks that GetRecord names a missing
// record as callers write it, not by its internal key.
func TestNotFoundNamesNoInternalKey(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	_, err := s.Records(t, testenv.Employee("ana")).GetRecord(t.Context(), &tidingsv1.GetRecordRequest{
		Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "nope"},
	})
	testenv.RequireCode(t, err, codes.NotFound)
	msg := status.Convert(err).Message()
	require.Contains(t, msg, "crm.opportunity/nope")
	require.False(t, strings.Contains(msg, "r:") || strings.Contains(msg, "tidings:"), "internal key in %q", msg)
}
