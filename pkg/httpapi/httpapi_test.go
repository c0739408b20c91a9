package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/httpapi"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/proto/openapi"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// api serves the JSON door of a fresh stack.
type api struct {
	*stacktest.Stack
	URL string
}

func start(t *testing.T, heartbeat time.Duration) *api {
	t.Helper()
	a := startNoWorker(t, heartbeat)
	a.StartWorker(t)
	return a
}

func startNoWorker(t *testing.T, heartbeat time.Duration) *api {
	t.Helper()
	s := stacktest.Start(t)
	conn, err := grpc.NewClient(s.Server.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	h, err := httpapi.New(httpapi.Options{
		Server: s.Server.GRPC.Server, Conn: conn,
		MaxRecvBytes: 64 << 10, MaxSendBytes: 16 << 20, MaxStreams: 8, Heartbeat: heartbeat,
	})
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &api{Stack: s, URL: ts.URL}
}

// call sends a JSON request as id (nil: no token) and returns the status
// and the decoded body.
func (a *api) call(t *testing.T, id *auth.Identity, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if id != nil {
		req.Header.Set("Authorization", "Bearer "+testenv.Token(t, *id))
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "body: %s", b)
	return resp.StatusCode, out
}

func ptr(id auth.Identity) *auth.Identity { return &id }

func TestReadAndWriteAsJSON(t *testing.T) {
	t.Parallel()
	a := start(t, 0)
	a.Users(t, "ana", "bo")
	ana, bo, crm := ptr(testenv.Employee("ana")), ptr(testenv.Employee("bo")), ptr(testenv.App("crm"))

	code, body := a.call(t, bo, "POST", "/v1/users/bo/following", `{"userId":"ana"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["changed"])

	code, body = a.call(t, ana, "POST", "/v1/activities", `{"actorUserId":"ana","text":"Closing Acme today, thanks @bo","idempotencyKey":"k1"}`)
	require.Equal(t, http.StatusOK, code, body)
	posted := body["activity"].(map[string]any)
	require.Equal(t, []any{"bo"}, posted["mentionUserIds"])

	// A record whose id holds "/" and ":" stays one path segment.
	const rec = "/v1/records/crm.opportunity/006%2FA%3A1"
	code, body = a.call(t, crm, "PUT", rec, `{"title":"Acme — 500 seats","ownerId":"ana"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "006/A:1", body["record"].(map[string]any)["ref"].(map[string]any)["externalId"])
	code, body = a.call(t, bo, "POST", "/v1/users/bo/following", `{"record":{"type":"crm.opportunity","externalId":"006/A:1"}}`)
	require.Equal(t, http.StatusOK, code, body)
	code, body = a.call(t, crm, "POST", rec+"/activities", `{"eventId":"e1","verb":"stage_changed","text":"Stage changed","fieldChanges":[{"field":"Stage","oldValue":"Prospecting","newValue":"Closed Won"}]}`)
	require.Equal(t, http.StatusOK, code, body)
	event := body["activity"].(map[string]any)["id"]

	a.WaitCaughtUp(t)
	code, body = a.call(t, bo, "GET", "/v1/users/bo/home?pageSize=10", "")
	require.Equal(t, http.StatusOK, code, body)
	items := body["items"].([]any)
	require.Len(t, items, 2)
	require.Equal(t, event, items[0].(map[string]any)["activity"].(map[string]any)["id"])
	require.Equal(t, posted["id"], items[1].(map[string]any)["activity"].(map[string]any)["id"])
	require.Equal(t, "ana", items[1].(map[string]any)["actorProfile"].(map[string]any)["userId"])

	code, body = a.call(t, bo, "GET", rec+"/feed", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Len(t, body["items"], 1)
	code, body = a.call(t, bo, "GET", rec+"/followCounts", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "2", body["followerCount"], "int64 is a JSON string, as protojson writes it") // ana (owner) and bo

	code, body = a.call(t, bo, "DELETE", "/v1/users/bo/following/records/crm.opportunity/006%2FA%3A1", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["changed"])
	code, body = a.call(t, bo, "GET", "/v1/profiles:batchGet?userIds=ana&userIds=zed", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, []any{"zed"}, body["missingUserIds"])
}

func TestErrorsAreStatuses(t *testing.T) {
	t.Parallel()
	a := start(t, 0)
	a.Users(t, "ana", "bo")
	bo := ptr(testenv.Employee("bo"))
	for _, tc := range []struct {
		name, method, path, body string
		id                       *auth.Identity
		hdr                      []string
		http, code               int
		reason, message          string
	}{
		{name: "no token", method: "GET", path: "/v1/users/bo/home", http: 401, code: 16, reason: "UNAUTHENTICATED"},
		{name: "bad token", method: "GET", path: "/v1/users/bo/home", hdr: []string{"Authorization", "Bearer nope"}, http: 401, code: 16, reason: "UNAUTHENTICATED"},
		{name: "another's home", method: "GET", path: "/v1/users/ana/home", id: bo, http: 403, code: 7, reason: "PERMISSION_DENIED"},
		{name: "employee writes records", method: "PUT", path: "/v1/records/crm.deal/1", body: `{"title":"x"}`, id: bo, http: 403, code: 7},
		{name: "validation", method: "GET", path: "/v1/users/bo/home?pageSize=1000", id: bo, http: 400, code: 3, message: "page_size"},
		{name: "bad id", method: "GET", path: "/v1/profiles/%20x", id: bo, http: 400, code: 3, message: "user_id"},
		{name: "unknown JSON field", method: "POST", path: "/v1/activities", body: `{"actorUserId":"bo","text":"hi","mood":"happy"}`, id: bo, http: 400, code: 3},
		{name: "unknown query parameter", method: "GET", path: "/v1/users/bo/home?colour=red", id: bo, http: 400, code: 3},
		{name: "not found", method: "GET", path: "/v1/profiles/nobody", id: bo, http: 404, code: 5, reason: "NOT_FOUND"},
		{name: "no such path", method: "GET", path: "/v1/nothing/here", id: bo, http: 404, code: 5},
		{name: "body over max-recv-bytes", method: "POST", path: "/v1/activities", body: `{"actorUserId":"bo","text":"` + strings.Repeat("x", 70<<10) + `"}`, id: bo, http: 413, code: 8},
		{name: "deadline passed on", method: "GET", path: "/v1/users/bo/home", id: bo, hdr: []string{"X-Server-Timeout", "0.000000001"}, http: 504, code: 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := a.call(t, tc.id, tc.method, tc.path, tc.body, tc.hdr...)
			require.Equal(t, tc.http, code, body)
			require.EqualValues(t, tc.code, body["code"], body)
			require.NotEmpty(t, body["message"])
			require.Contains(t, body["message"], tc.message)
			require.NotContains(t, body["message"], "redis")
			if tc.reason != "" {
				details := body["details"].([]any)
				require.NotEmpty(t, details)
				info := details[0].(map[string]any)
				require.Equal(t, "type.googleapis.com/google.rpc.ErrorInfo", info["@type"])
				require.Equal(t, tc.reason, info["reason"])
				require.Equal(t, "tidings.v1", info["domain"])
			}
		})
	}
}

// sse reads server-sent events.
type sse struct {
	resp *http.Response
	r    *bufio.Reader
}

type event struct{ id, name, data string }

func (a *api) watch(ctx context.Context, t *testing.T, user, path string, hdr ...string) *sse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", a.URL+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testenv.Token(t, testenv.Employee(user)))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	return &sse{resp: resp, r: bufio.NewReader(resp.Body)}
}

// next returns the next event, skipping comments unless keepComments.
func (s *sse) next(t *testing.T, keepComments bool) event {
	t.Helper()
	var ev event
	for {
		line, err := s.r.ReadString('\n')
		require.NoError(t, err)
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if ev != (event{}) {
				return ev
			}
		case strings.HasPrefix(line, ":"):
			if keepComments {
				return event{name: "comment", data: strings.TrimSpace(line[1:])}
			}
		case strings.HasPrefix(line, "id: "):
			ev.id = line[4:]
		case strings.HasPrefix(line, "event: "):
			ev.name = line[7:]
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
		}
	}
}

func (s *sse) item(t *testing.T) (id, activityID string) {
	t.Helper()
	ev := s.next(t, false)
	require.Empty(t, ev.name, "event %+v", ev)
	var m struct {
		Item struct {
			Activity struct{ ID string }
		}
		ResumeToken string
	}
	require.NoError(t, json.Unmarshal([]byte(ev.data), &m))
	require.Equal(t, m.ResumeToken, ev.id, "the event id is the resume token")
	return ev.id, m.Item.Activity.ID
}

func (a *api) post(t *testing.T, user, text string) string {
	t.Helper()
	code, body := a.call(t, ptr(testenv.Employee(user)), "POST", "/v1/activities", fmt.Sprintf(`{"actorUserId":%q,"text":%q}`, user, text))
	require.Equal(t, http.StatusOK, code, body)
	return body["activity"].(map[string]any)["id"].(string)
}

func TestWatchAsServerSentEvents(t *testing.T) {
	t.Parallel()
	a := start(t, 20*time.Millisecond)
	a.Users(t, "ana", "bo")
	code, body := a.call(t, ptr(testenv.Employee("bo")), "POST", "/v1/users/bo/following", `{"userId":"ana"}`)
	require.Equal(t, http.StatusOK, code, body)

	// The response (and EventSource's open) comes once the stream is
	// subscribed: what is posted after it arrives.
	ctx, cancel := context.WithCancel(t.Context())
	s := a.watch(ctx, t, "bo", "/v1/users/bo/home:watch")
	first := a.post(t, "ana", "live one")
	token, got := s.item(t)
	require.Equal(t, first, got)
	// Idle, the stream gets heartbeat comments.
	require.Equal(t, event{name: "comment", data: "keep-alive"}, s.next(t, true))

	// The client goes: the server's subscription goes with it.
	before := a.Components.Hub().Watching()
	require.Positive(t, before)
	cancel()
	testenv.Eventually(t, 10*time.Second, func() bool { return a.Components.Hub().Watching() < before }, "the stream outlived its client")

	// Resuming with Last-Event-ID replays what landed meanwhile (and may
	// repeat what the client has: at least once, as over gRPC).
	second := a.post(t, "ana", "while away")
	a.WaitCaughtUp(t)
	for _, resume := range []struct{ path, header string }{
		{path: "/v1/users/bo/home:watch", header: token},
		{path: "/v1/users/bo/home:watch?last_event_id=" + token},
	} {
		ctx, cancel := context.WithCancel(t.Context())
		s := a.watch(ctx, t, "bo", resume.path, "Last-Event-ID", resume.header)
		seen := map[string]bool{}
		for !seen[second] {
			_, id := s.item(t)
			require.True(t, id == first || id == second, "unexpected item %s", id)
			seen[id] = true
		}
		cancel()
	}

	// A refused stream is an ordinary JSON error.
	code, body = a.call(t, ptr(testenv.Employee("bo")), "GET", "/v1/users/ana/home:watch", "")
	require.Equal(t, http.StatusForbidden, code, body)
	require.EqualValues(t, 7, body["code"])
}

// TestConversationsAsJSON comments and reacts over HTTP and watches the
// author's notifications as server-sent events, resuming with
// Last-Event-ID.
func TestConversationsAsJSON(t *testing.T) {
	t.Parallel()
	a := start(t, 0)
	a.Users(t, "ana", "bo")
	post := a.post(t, "ana", "Closing Acme")
	ctx, cancel := context.WithCancel(t.Context())
	s := a.watch(ctx, t, "ana", "/v1/users/ana/notifications:watch")

	bo := ptr(testenv.Employee("bo"))
	code, body := a.call(t, bo, "POST", "/v1/activities/"+post+"/comments", `{"authorUserId":"bo","text":"Congrats!"}`)
	require.Equal(t, http.StatusOK, code, body)
	ev := s.next(t, false)
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(ev.data), &got))
	n := got["notification"].(map[string]any)
	require.Equal(t, "bo commented on your post", n["summary"])
	require.Equal(t, got["resumeToken"], ev.id)
	cancel()

	code, body = a.call(t, bo, "POST", "/v1/activities/"+post+"/reactions", `{"userId":"bo","kind":"REACTION_KIND_LIKE"}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["added"])
	a.WaitCaughtUp(t)
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	s = a.watch(ctx, t, "ana", "/v1/users/ana/notifications:watch", "Last-Event-ID", ev.id)
	for {
		require.NoError(t, json.Unmarshal([]byte(s.next(t, false).data), &got))
		if got["notification"].(map[string]any)["summary"] == "bo liked your post" {
			break
		}
	}
	code, body = a.call(t, ptr(testenv.Employee("ana")), "GET", "/v1/users/ana/notifications:unreadCount", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "2", body["unreadCount"])
	code, body = a.call(t, ptr(testenv.Employee("ana")), "POST", "/v1/users/ana/notifications:markRead", `{"all":true}`)
	require.Equal(t, http.StatusOK, code, body)
	code, body = a.call(t, ptr(testenv.Employee("ana")), "GET", "/v1/activities/"+post+"/comments", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, "1", body["totalCount"])
	code, body = a.call(t, bo, "GET", "/v1/users/ana/notifications", "")
	require.Equal(t, http.StatusForbidden, code, body)
}

func TestAdminStreams(t *testing.T) {
	t.Parallel()
	a := start(t, 0)
	a.Users(t, "ana", "bo", "cy")
	root := ptr(testenv.Admin)

	// ImportGraph takes newline-delimited batches.
	req, err := http.NewRequestWithContext(t.Context(), "POST", a.URL+"/v1/admin/graph:import", strings.NewReader(
		`{"follows":[{"userId":"bo","entity":{"userId":"ana"}}]}`+"\n"+
			`{"follows":[{"userId":"cy","entity":{"userId":"ana"}},{"userId":"cy","entity":{"userId":"cy"}}]}`+"\n"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+testenv.Token(t, *root))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	var imported map[string]any
	require.NoError(t, json.Unmarshal(b, &imported))
	require.Equal(t, "3", imported["rowCount"])
	require.Equal(t, "2", imported["importedCount"])
	require.Equal(t, "1", imported["rejectedCount"])

	// ExportGraph is a stream of batches, then an end event.
	req, err = http.NewRequestWithContext(t.Context(), "GET", a.URL+"/v1/admin/graph:export?batchSize=1", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testenv.Token(t, *root))
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	s := &sse{resp: resp, r: bufio.NewReader(resp.Body)}
	var edges int
	for ev := s.next(t, false); ev.name != "end"; ev = s.next(t, false) {
		require.Empty(t, ev.name, ev.data)
		require.Contains(t, ev.data, `"follows"`)
		edges++
	}
	require.Equal(t, 2, edges)

	// Only admins.
	code, body := a.call(t, ptr(testenv.Employee("bo")), "GET", "/v1/admin/status", "")
	require.Equal(t, http.StatusForbidden, code, body)
	code, body = a.call(t, root, "GET", "/v1/admin/status", "")
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, true, body["redisOk"])
}

// TestOpenAPIListsEveryRPC fails when an RPC of any tidings.v1 service has
// no operation in the served OpenAPI document (a method without a
// google.api.http annotation, or a stale document).
func TestOpenAPIListsEveryRPC(t *testing.T) {
	t.Parallel()
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(openapi.Document, &doc))
	ops := map[string]bool{}
	for _, methods := range doc.Paths {
		for _, op := range methods {
			ops[op.OperationID] = true
		}
	}
	var rpcs int
	protoregistry.GlobalFiles.RangeFilesByPackage("tidings.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				name := fmt.Sprintf("%s_%s", sd.Name(), sd.Methods().Get(j).Name())
				require.True(t, ops[name], "RPC %s is not in the OpenAPI document", name)
				rpcs++
			}
		}
		return true
	})
	require.Greater(t, rpcs, 35)
	_ = tidingsv1.File_tidings_v1_timeline_proto

	a := startNoWorker(t, 0)
	resp, err := http.Get(a.URL + httpapi.OpenAPIPath)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.True(t, bytes.Equal(openapi.Document, b))
}
