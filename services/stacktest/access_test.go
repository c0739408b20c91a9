package stacktest_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// updateAccessDoc rewrites the access table of docs/security.md from
// accessTable: go test ./services/stacktest -run TestAccessTable -update-access-doc
var updateAccessDoc = flag.Bool("update-access-doc", false, "rewrite the access table in docs/security.md")

// accessCallers are the kinds of caller the access table has a column for,
// in its order.
var accessCallers = []struct{ key, title string }{
	{"reader", "employee reader"},
	{"nonreader", "employee non-reader"},
	{"removed", "removed employee"},
	{"ghost", "ghost employee"},
	{"ownerapp", "app owning the type"},
	{"otherapp", "other app"},
	{"admin", "admin"},
	{"none", "no token"},
	{"expired", "expired token"},
	{"rotated", "rotated-out key"},
}

// accessTable says, for every RPC of the API, what each caller gets when
// it calls about the restricted record crm.opportunity/secret (owned by
// owner, read by reader), in accessCallers' order: OK; NotFound (the
// record or activity is hidden: it does not exist for the caller);
// Denied (PermissionDenied: not this caller's to do); Unauth
// (Unauthenticated). Each row's calls are built by accessRequests.
var accessTable = map[string]string{
	"ProfileService.UpsertProfile":       "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ProfileService.BatchUpsertProfiles": "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ProfileService.GetProfile":          "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"ProfileService.BatchGetProfiles":    "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"ProfileService.ListProfiles":        "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"ProfileService.UpdateAboutMe":       "OK OK Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ProfileService.DeactivateProfile":   "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ProfileService.ReactivateProfile":   "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",

	"FollowService.Follow":          "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"FollowService.Unfollow":        "OK OK Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"FollowService.ListFollowing":   "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"FollowService.ListFollowers":   "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",
	"FollowService.IsFollowing":     "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"FollowService.GetFollowCounts": "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",

	"RecordService.UpsertRecord":       "Denied Denied Denied Denied OK Denied OK Unauth Unauth Unauth",
	"RecordService.GetRecord":          "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",
	"RecordService.BatchGetRecords":    "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"RecordService.ListRecords":        "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"RecordService.DeleteRecord":       "Denied Denied Denied Denied OK Denied OK Unauth Unauth Unauth",
	"RecordService.PostRecordActivity": "Denied Denied Denied Denied OK Denied OK Unauth Unauth Unauth",

	"ActivityService.PostActivity":       "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.GetActivity":        "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",
	"ActivityService.BatchGetActivities": "OK OK Denied OK OK OK OK Unauth Unauth Unauth",
	"ActivityService.EditActivity":       "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.DeleteActivity":     "OK NotFound Denied Denied OK NotFound OK Unauth Unauth Unauth",

	"TimelineService.GetHomeTimeline": "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",
	"TimelineService.GetEntityFeed":   "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",
	"TimelineService.Watch":           "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",

	"AdminService.BulkFollow":            "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.BulkUnfollow":          "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.ExportGraph":           "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.ImportGraph":           "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.RemoveUser":            "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.GetAutoFollowRules":    "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.UpdateAutoFollowRules": "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.RebuildProjections":    "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.GetSystemStatus":       "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.ListDeadLetters":       "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.ReplayDeadLetters":     "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.ListAuditEvents":       "Denied Denied Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"AdminService.GetRebuild":            "Denied Denied Denied Denied Denied Denied NotFound Unauth Unauth Unauth",

	"ActivityService.BookmarkActivity":   "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.UnbookmarkActivity": "OK OK Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.ListBookmarks":      "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.MuteActivity":       "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ActivityService.UnmuteActivity":     "OK OK Denied Denied Denied Denied OK Unauth Unauth Unauth",

	"ConversationService.AddComment":     "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ConversationService.EditComment":    "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ConversationService.DeleteComment":  "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ConversationService.ListComments":   "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",
	"ConversationService.AddReaction":    "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ConversationService.RemoveReaction": "OK NotFound Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"ConversationService.ListReactions":  "OK NotFound Denied NotFound OK NotFound OK Unauth Unauth Unauth",

	"NotificationService.ListNotifications":     "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",
	"NotificationService.GetUnreadCount":        "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",
	"NotificationService.MarkNotificationsRead": "OK OK Denied Denied Denied Denied OK Unauth Unauth Unauth",
	"NotificationService.WatchNotifications":    "OK OK Denied OK Denied Denied OK Unauth Unauth Unauth",
}

// accessCodes are the codes the table names, by their names in it.
var accessCodes = map[codes.Code]string{
	codes.OK: "OK", codes.NotFound: "NotFound", codes.PermissionDenied: "Denied", codes.Unauthenticated: "Unauth",
}

func codeName(c codes.Code) string {
	if n, ok := accessCodes[c]; ok {
		return n
	}
	return c.String()
}

// accessCaller is who a column calls as: a user id (for the requests) and
// a connection carrying the caller's credentials.
type accessCaller struct {
	user string
	conn *grpc.ClientConn
}

var (
	secret    = &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "secret"}
	secretRef = entity.Record("crm.opportunity", "secret")
)

func restricted(id string) *tidingsv1.Record {
	return &tidingsv1.Record{Ref: &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: id}, Title: "Secret " + id,
		Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, OwnerId: "owner", ReaderIds: []string{"reader"}}
}

// accessRequests builds the request of each RPC for a caller (column):
// minimal valid requests about the restricted record, acting as the
// caller's user. Writes that would change what later calls see (deletes,
// deactivations) act on things of the column's own.
func accessRequests(col string, c accessCaller, act accessFixture) map[string]proto.Message {
	u := c.user
	own := &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: []string{"reader"}}}}
	return map[string]proto.Message{
		"ProfileService.UpsertProfile":       &tidingsv1.UpsertProfileRequest{Profile: &tidingsv1.Profile{UserId: "new-" + col, DisplayName: "New"}},
		"ProfileService.BatchUpsertProfiles": &tidingsv1.BatchUpsertProfilesRequest{Profiles: []*tidingsv1.Profile{{UserId: "batch-" + col, DisplayName: "New"}}},
		"ProfileService.GetProfile":          &tidingsv1.GetProfileRequest{UserId: "owner"},
		"ProfileService.BatchGetProfiles":    &tidingsv1.BatchGetProfilesRequest{UserIds: []string{"owner"}},
		"ProfileService.ListProfiles":        &tidingsv1.ListProfilesRequest{},
		"ProfileService.UpdateAboutMe":       &tidingsv1.UpdateAboutMeRequest{UserId: u, AboutMe: "hi"},
		"ProfileService.DeactivateProfile":   &tidingsv1.DeactivateProfileRequest{UserId: "spare"},
		"ProfileService.ReactivateProfile":   &tidingsv1.ReactivateProfileRequest{UserId: "spare"},

		"FollowService.Follow":          &tidingsv1.FollowRequest{UserId: u, Entity: secretRef},
		"FollowService.Unfollow":        &tidingsv1.UnfollowRequest{UserId: u, Entity: secretRef},
		"FollowService.ListFollowing":   &tidingsv1.ListFollowingRequest{UserId: "owner"},
		"FollowService.ListFollowers":   &tidingsv1.ListFollowersRequest{Entity: secretRef},
		"FollowService.IsFollowing":     &tidingsv1.IsFollowingRequest{UserId: "owner", Entities: []*tidingsv1.EntityRef{secretRef}},
		"FollowService.GetFollowCounts": &tidingsv1.GetFollowCountsRequest{Entity: secretRef},

		"RecordService.UpsertRecord":       &tidingsv1.UpsertRecordRequest{Record: restricted("secret")},
		"RecordService.GetRecord":          &tidingsv1.GetRecordRequest{Ref: secret},
		"RecordService.BatchGetRecords":    &tidingsv1.BatchGetRecordsRequest{Refs: []*tidingsv1.RecordRef{secret}},
		"RecordService.ListRecords":        &tidingsv1.ListRecordsRequest{Type: "crm.opportunity"},
		"RecordService.DeleteRecord":       &tidingsv1.DeleteRecordRequest{Ref: restricted("doomed-" + col).GetRef()},
		"RecordService.PostRecordActivity": &tidingsv1.PostRecordActivityRequest{Ref: secret, EventId: "ev-" + col, Verb: "updated", Text: "stage changed"},

		"ActivityService.PostActivity":       &tidingsv1.PostActivityRequest{ActorUserId: u, Text: "about the deal", Record: secret},
		"ActivityService.GetActivity":        &tidingsv1.GetActivityRequest{Id: act.shared},
		"ActivityService.BatchGetActivities": &tidingsv1.BatchGetActivitiesRequest{Ids: []string{act.shared}},
		"ActivityService.EditActivity":       &tidingsv1.EditActivityRequest{Id: act.shared, Text: "edited"},
		"ActivityService.DeleteActivity":     &tidingsv1.DeleteActivityRequest{Id: act.doomed[col]},

		"TimelineService.GetHomeTimeline": &tidingsv1.GetHomeTimelineRequest{UserId: u},
		"TimelineService.GetEntityFeed":   &tidingsv1.GetEntityFeedRequest{Entity: secretRef},
		"TimelineService.Watch":           &tidingsv1.WatchRequest{UserId: u},

		"AdminService.BulkFollow":            &tidingsv1.BulkFollowRequest{Users: own, Entity: secretRef},
		"AdminService.BulkUnfollow":          &tidingsv1.BulkUnfollowRequest{Users: own, Entity: secretRef},
		"AdminService.ExportGraph":           &tidingsv1.ExportGraphRequest{},
		"AdminService.ImportGraph":           &tidingsv1.ImportGraphRequest{Follows: []*tidingsv1.Follow{{UserId: "reader", Entity: secretRef}}},
		"AdminService.RemoveUser":            &tidingsv1.RemoveUserRequest{UserId: "leaver-" + col},
		"AdminService.GetAutoFollowRules":    &tidingsv1.GetAutoFollowRulesRequest{},
		"AdminService.UpdateAutoFollowRules": &tidingsv1.UpdateAutoFollowRulesRequest{Rules: &tidingsv1.AutoFollowRules{OwnerFollowsRecord: true}},
		"AdminService.RebuildProjections":    &tidingsv1.RebuildProjectionsRequest{Projections: []tidingsv1.Projection{tidingsv1.Projection_PROJECTION_PROFILES}},
		"AdminService.GetSystemStatus":       &tidingsv1.GetSystemStatusRequest{},
		"AdminService.ListDeadLetters":       &tidingsv1.ListDeadLettersRequest{},
		"AdminService.ReplayDeadLetters":     &tidingsv1.ReplayDeadLettersRequest{},
		"AdminService.ListAuditEvents":       &tidingsv1.ListAuditEventsRequest{},
		"AdminService.GetRebuild":            &tidingsv1.GetRebuildRequest{Id: "latest"},

		"ActivityService.BookmarkActivity":   &tidingsv1.BookmarkActivityRequest{UserId: u, ActivityId: act.shared},
		"ActivityService.UnbookmarkActivity": &tidingsv1.UnbookmarkActivityRequest{UserId: u, ActivityId: act.shared},
		"ActivityService.ListBookmarks":      &tidingsv1.ListBookmarksRequest{UserId: u},
		"ActivityService.MuteActivity":       &tidingsv1.MuteActivityRequest{UserId: u, ActivityId: act.shared},
		"ActivityService.UnmuteActivity":     &tidingsv1.UnmuteActivityRequest{UserId: u, ActivityId: act.shared},

		"ConversationService.AddComment":     &tidingsv1.AddCommentRequest{ActivityId: act.shared, AuthorUserId: u, Text: "a comment"},
		"ConversationService.EditComment":    &tidingsv1.EditCommentRequest{ActivityId: act.shared, CommentId: act.comment, Text: "edited"},
		"ConversationService.DeleteComment":  &tidingsv1.DeleteCommentRequest{ActivityId: act.shared, CommentId: act.doomedComments[col]},
		"ConversationService.ListComments":   &tidingsv1.ListCommentsRequest{ActivityId: act.shared},
		"ConversationService.AddReaction":    &tidingsv1.AddReactionRequest{ActivityId: act.shared, UserId: u, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE},
		"ConversationService.RemoveReaction": &tidingsv1.RemoveReactionRequest{ActivityId: act.shared, UserId: u, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE},
		"ConversationService.ListReactions":  &tidingsv1.ListReactionsRequest{ActivityId: act.shared},

		"NotificationService.ListNotifications":     &tidingsv1.ListNotificationsRequest{UserId: u},
		"NotificationService.GetUnreadCount":        &tidingsv1.GetUnreadCountRequest{UserId: u},
		"NotificationService.MarkNotificationsRead": &tidingsv1.MarkNotificationsReadRequest{UserId: u, UpTo: &tidingsv1.MarkNotificationsReadRequest_All{All: true}},
		"NotificationService.WatchNotifications":    &tidingsv1.WatchNotificationsRequest{UserId: u},
	}
}

// accessFixture holds the activities the table's calls are about.
type accessFixture struct {
	shared string
	doomed map[string]string
	// comment is the reader's comment on shared; doomedComments, one a
	// column, are deleted.
	comment        string
	doomedComments map[string]string
}

// apiMethods lists every method of every tidings service the server
// serves, as "Service.Method", with its descriptor.
func apiMethods(t *testing.T, srv *grpc.Server) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	for name := range srv.GetServiceInfo() {
		if !strings.HasPrefix(name, "tidings.") {
			continue // health and reflection: public by policy (pkg/auth)
		}
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		require.NoError(t, err, name)
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			out[string(sd.Name())+"."+string(md.Name())] = md
		}
	}
	return out
}

// invokeAny calls a method of any shape with one request message and
// returns the status code it ends with. A server stream counts as OK once
// it sends its headers (a Watch streams until the client leaves) or ends
// cleanly.
func invokeAny(ctx context.Context, conn *grpc.ClientConn, md protoreflect.MethodDescriptor, req proto.Message) codes.Code {
	full := "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return codes.Internal
	}
	if !md.IsStreamingClient() && !md.IsStreamingServer() {
		return status.Code(conn.Invoke(ctx, full, req, out.New().Interface()))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: md.IsStreamingClient(), ServerStreams: md.IsStreamingServer()}, full)
	if err != nil {
		return status.Code(err)
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := cs.CloseSend(); err != nil {
		return status.Code(err)
	}
	watch := md.Name() == "Watch" || md.Name() == "WatchNotifications"
	if watch {
		// A refused watch ends at once (its headers come with its
		// status); an open one sends headers and waits for news. Wait a
		// moment for either, then leave.
		if _, err := cs.Header(); err != nil {
			return status.Code(err)
		}
		leave := time.AfterFunc(200*time.Millisecond, cancel)
		defer leave.Stop()
	}
	for {
		err := cs.RecvMsg(out.New().Interface())
		switch {
		case errors.Is(err, io.EOF):
			return codes.OK
		case watch && status.Code(err) == codes.Canceled && ctx.Err() != nil:
			return codes.OK // still open when the client left
		case err != nil:
			return status.Code(err)
		}
	}
}

// TestAccessTable is issue 16's acceptance test: every RPC of the API,
// called by every kind of caller about a restricted record, answers as
// the access table says; the table covers every RPC the server serves,
// and docs/security.md shows the same table.
func TestAccessTable(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	// Tokens of an OpenID provider are accepted beside the test's HS256
	// ones, so that a token of a key the provider withdrew can be tried.
	is := testenv.NewIssuer(t)
	oldKey, newKey := testenv.RSAKey(t), testenv.RSAKey(t)
	is.Publish(map[string]testenv.SigningKey{"old": oldKey})
	oidc, err := auth.NewOIDCVerifier(ctx, auth.OIDCConfig{Issuer: is.URL(), Audience: "tidings", DefaultKind: auth.KindEmployee, MinRefreshInterval: time.Hour})
	require.NoError(t, err)
	t.Cleanup(oidc.Close)
	hs, err := auth.NewVerifier(testenv.TokenConfig)
	require.NoError(t, err)
	s := stacktest.Start(t, stacktest.Options{Server: func(_ *testenv.Env, o *grpcserver.Options) {
		o.Authorizer = auth.NewAuthorizer(auth.Verifiers{hs, oidc}, auth.DefaultPolicy(), o.Logger)
	}})
	oidcToken := func(key testenv.SigningKey, kid, sub string) string {
		now := time.Now()
		return key.Sign(t, kid, jwt.MapClaims{"iss": is.URL(), "aud": "tidings", "sub": sub, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
	}

	// The world: the restricted record, its owner and reader, a
	// non-reader, a user to be removed, spares for the writes.
	users := []string{"owner", "reader", "nonreader", "removed", "spare"}
	for _, c := range accessCallers {
		users = append(users, "leaver-"+c.key)
	}
	s.Users(t, users...)
	crm := s.Records(t, testenv.App("crm"))
	recs := []*tidingsv1.Record{restricted("secret")}
	for _, c := range accessCallers {
		recs = append(recs, restricted("doomed-"+c.key))
	}
	for _, r := range recs {
		_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: r})
		require.NoError(t, err)
	}
	acts := s.Activities(t, testenv.Employee("reader"))
	postAbout := func(text string) string {
		a, err := acts.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "reader", Text: text, Record: secret})
		require.NoError(t, err)
		return a.GetActivity().GetId()
	}
	fixture := accessFixture{shared: postAbout("the deal"), doomed: map[string]string{}, doomedComments: map[string]string{}}
	for _, c := range accessCallers {
		fixture.doomed[c.key] = postAbout("doomed " + c.key)
	}
	comments := tidingsv1.NewConversationServiceClient(s.Server.Conn(t, testenv.Employee("reader")))
	commentOn := func(text string) string {
		c, err := comments.AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: fixture.shared, AuthorUserId: "reader", Text: text})
		require.NoError(t, err)
		return c.GetComment().GetComment().GetId()
	}
	fixture.comment = commentOn("a reader's comment")
	for _, c := range accessCallers {
		fixture.doomedComments[c.key] = commentOn("doomed " + c.key)
	}

	// The callers.
	rotated := oidcToken(oldKey, "old", "reader")
	require.NoError(t, invokeErr(ctx, s.Server.ConnWithToken(t, rotated)), "the old key's token works before the rotation")
	is.Publish(map[string]testenv.SigningKey{"new": newKey})
	require.NoError(t, invokeErr(ctx, s.Server.ConnWithToken(t, oidcToken(newKey, "new", "reader"))), "a token of the new key makes the keys be read again")
	expired, err := auth.Mint(testenv.TokenConfig, testenv.Employee("reader"), time.Minute, time.Now().Add(-time.Hour))
	require.NoError(t, err)
	callers := map[string]accessCaller{
		"reader":    {"reader", s.Server.Conn(t, testenv.Employee("reader"))},
		"nonreader": {"nonreader", s.Server.Conn(t, testenv.Employee("nonreader"))},
		"removed":   {"removed", s.Server.Conn(t, testenv.Employee("removed"))},
		"ghost":     {"ghost", s.Server.Conn(t, testenv.Employee("ghost"))},
		"ownerapp":  {"reader", s.Server.Conn(t, testenv.App("crm"))},
		"otherapp":  {"reader", s.Server.Conn(t, testenv.App("ci"))},
		"admin":     {"reader", s.Server.Conn(t, testenv.Admin)},
		"none":      {"reader", s.Server.ConnWithToken(t, "")},
		"expired":   {"reader", s.Server.ConnWithToken(t, expired)},
		"rotated":   {"reader", s.Server.ConnWithToken(t, rotated)},
	}
	_, err = s.Admin(t).RemoveUser(ctx, &tidingsv1.RemoveUserRequest{UserId: "removed"})
	require.NoError(t, err)
	testenv.Eventually(t, 10*time.Second, func() bool {
		return status.Code(invokeErr(ctx, callers["removed"].conn)) == codes.PermissionDenied
	}, "the removed user is still let in")

	// Every RPC has a row, every row an RPC.
	methods := apiMethods(t, s.Server.GRPC.Server)
	var names []string
	for name := range methods {
		names = append(names, name)
		require.Contains(t, accessTable, name, "%s has no row in accessTable (and docs/security.md): say who may call it", name)
	}
	for name := range accessTable {
		require.Contains(t, methods, name, "accessTable has a row for %s, which the server does not serve", name)
	}
	slices.Sort(names)

	// The calls, caller by caller (the admin last: its writes, such as a
	// rebuild, come after everyone else's reads).
	got := map[string][]string{}
	for _, c := range accessCallers {
		reqs := accessRequests(c.key, callers[c.key], fixture)
		for _, name := range names {
			req, ok := reqs[name]
			require.True(t, ok, "accessRequests has no request for %s", name)
			code := invokeAny(ctx, callers[c.key].conn, methods[name], req)
			got[name] = append(got[name], codeName(code))
		}
	}
	var wrong []string
	for _, name := range names {
		if row := strings.Join(got[name], " "); row != accessTable[name] {
			wrong = append(wrong, fmt.Sprintf("%q: %q, (want %q)", name, row, accessTable[name]))
		}
	}
	require.Empty(t, wrong, "rows that differ from accessTable (columns: %s)", columnKeys())

	// The doc shows the same table.
	doc := filepath.Join("..", "..", "docs", "security.md")
	raw, err := os.ReadFile(doc)
	require.NoError(t, err)
	want := renderAccessTable(names)
	updated, err := replaceBetween(string(raw), accessBegin, accessEnd, want)
	require.NoError(t, err)
	if *updateAccessDoc {
		require.NoError(t, os.WriteFile(doc, []byte(updated), 0o600)) //nolint:gosec // doc is a constant path in the repository
		return
	}
	require.Equal(t, string(raw), updated, "docs/security.md's access table differs from accessTable: run go test ./services/stacktest -run TestAccessTable -update-access-doc")
}

// invokeErr makes a cheap call that every active employee may make.
func invokeErr(ctx context.Context, conn *grpc.ClientConn) error {
	_, err := tidingsv1.NewProfileServiceClient(conn).GetProfile(ctx, &tidingsv1.GetProfileRequest{UserId: "owner"})
	return err
}

func columnKeys() string {
	keys := make([]string, len(accessCallers))
	for i, c := range accessCallers {
		keys[i] = c.key
	}
	return strings.Join(keys, " ")
}

const (
	accessBegin = "<!-- access table: generated from services/stacktest/access_test.go; do not edit -->"
	accessEnd   = "<!-- end of access table -->"
)

// renderAccessTable writes accessTable as a Markdown table.
func renderAccessTable(names []string) string {
	var b strings.Builder
	b.WriteString("| RPC |")
	for _, c := range accessCallers {
		b.WriteString(" " + c.title + " |")
	}
	b.WriteString("\n|---|")
	for range accessCallers {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for _, name := range names {
		fmt.Fprintf(&b, "| %s |", name)
		for _, cell := range strings.Fields(accessTable[name]) {
			b.WriteString(" " + cell + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// replaceBetween replaces what lies between the lines begin and end.
func replaceBetween(doc, begin, end, with string) (string, error) {
	i := strings.Index(doc, begin+"\n")
	j := strings.Index(doc, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("markers %q and %q not found in order", begin, end)
	}
	return doc[:i+len(begin)+1] + with + doc[j:], nil
}
