// Package httpapi is Tidings' JSON door: every RPC of tidings.v1 as
// HTTP+JSON, at the paths of the proto's google.api.http annotations.
//
// Unary calls are transcoded by connectrpc's Vanguard into gRPC and handed
// to the process's own grpc.Server (its ServeHTTP), in process: every
// interceptor (request id, recovery, metrics, logging, deadline cap, auth,
// validation, error mapping, and any added later) runs for JSON callers
// exactly as for gRPC ones. Server streams are served as server-sent events
// (ServerStream) and client streams as JSON or newline-delimited JSON
// (ClientStream), both through a gRPC client of the same server, so again
// through the same interceptors. Errors are a google.rpc.Status JSON body
// with the HTTP status of the gRPC code. The OpenAPI document generated from
// the same annotations is served at /v1/openapi.json.
package httpapi

import (
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tidingshq/tidings/proto/openapi"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// OpenAPIPath is where the OpenAPI document is served.
const OpenAPIPath = "/v1/openapi.json"

// Streams are the streaming RPCs of tidings.v1 and where they are served.
// Their paths are those of their google.api.http annotations.
var (
	ServerStreams = []ServerStream{
		{
			Method:       tidingsv1.TimelineService_Watch_FullMethodName,
			Pattern:      "GET /v1/users/{user_id}/home:watch",
			ResumeField:  "resume_token",
			EventIDField: "resume_token",
		},
		{
			Method:       tidingsv1.NotificationService_WatchNotifications_FullMethodName,
			Pattern:      "GET /v1/users/{user_id}/notifications:watch",
			ResumeField:  "resume_token",
			EventIDField: "resume_token",
		},
		{
			Method:  tidingsv1.AdminService_ExportGraph_FullMethodName,
			Pattern: "GET /v1/admin/graph:export",
		},
	}
	ClientStreams = []ClientStream{
		{Method: tidingsv1.AdminService_ImportGraph_FullMethodName, Pattern: "POST /v1/admin/graph:import"},
	}
)

// Options configure New.
type Options struct {
	// Server is the process's gRPC server, with every service registered.
	Server *grpc.Server
	// Conn is a client of that same server, for the streaming RPCs.
	Conn grpc.ClientConnInterface
	// MaxRecvBytes limits a request body (or one message of a streamed
	// body), as the gRPC server limits a received message.
	MaxRecvBytes int
	// MaxSendBytes limits a response, as the gRPC server limits a sent
	// message.
	MaxSendBytes int
	// MaxStreams limits the event streams open at once; past it a stream is
	// refused with RESOURCE_EXHAUSTED (HTTP 429).
	MaxStreams int
	// Heartbeat is how often an idle event stream gets a comment, so that
	// proxies keep the connection; 15 s when zero.
	Heartbeat time.Duration
	Logger    *slog.Logger
}

// marshal is how responses are written: every field, unset ones too, with
// JSON (lowerCamelCase) names, as the OpenAPI document names them.
var marshal = protojson.MarshalOptions{EmitUnpopulated: true}

// Handler serves the API under /v1/.
type Handler struct {
	mux     *http.ServeMux
	closing chan struct{}
	once    sync.Once
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Close ends the open event streams (each gets an UNAVAILABLE error event,
// and EventSource clients reconnect elsewhere), so that a graceful shutdown
// need not wait for clients that never leave.
func (h *Handler) Close() { h.once.Do(func() { close(h.closing) }) }

// New returns the handler of /v1/: the transcoded API, its streams and the
// OpenAPI document. Only the services registered on opts.Server are served.
func New(opts Options) (*Handler, error) {
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.MaxStreams <= 0 {
		opts.MaxStreams = 1000
	}
	buffer := max(opts.MaxRecvBytes, opts.MaxSendBytes)
	notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, status.Newf(codes.NotFound, "no API method at %s %s", r.Method, r.URL.Path))
	})
	// The transcoder hands every call to the gRPC server's ServeHTTP, as
	// vanguardgrpc.NewTranscoder does: in process, through every
	// interceptor.
	var services []*vanguard.Service
	for name := range opts.Server.GetServiceInfo() {
		services = append(services, vanguard.NewService(name, opts.Server))
	}
	transcoder, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(func(res vanguard.TypeResolver) vanguard.Codec {
			return &vanguard.JSONCodec{
				MarshalOptions: protojson.MarshalOptions{Resolver: res, EmitUnpopulated: true},
				// Unknown fields are refused, as the gRPC server refuses them.
				UnmarshalOptions: protojson.UnmarshalOptions{Resolver: res},
			}
		}),
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(uint32(buffer)),
		),
		vanguard.WithUnknownHandler(notFound),
	)
	if err != nil {
		return nil, fmt.Errorf("build transcoder: %w", err)
	}
	serviceInfo := opts.Server.GetServiceInfo()
	served := func(fullMethod string) bool {
		svc, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
		_, ok := serviceInfo[svc]
		return ok
	}

	mux := http.NewServeMux()
	mux.Handle("/v1/", transcodeErrors(escapedPath(transcoder), int64(opts.MaxRecvBytes)))
	mux.HandleFunc("GET "+OpenAPIPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapi.Document)
	})
	h := &Handler{mux: mux, closing: make(chan struct{})}
	slots := make(chan struct{}, opts.MaxStreams)
	for _, s := range ServerStreams {
		if !served(s.Method) {
			continue
		}
		m, err := s.resolve()
		if err != nil {
			return nil, err
		}
		mux.Handle(s.Pattern, &sseHandler{m: m, conn: opts.Conn, heartbeat: opts.Heartbeat, slots: slots, marshal: marshal, closing: h.closing})
	}
	for _, s := range ClientStreams {
		if !served(s.Method) {
			continue
		}
		up, err := s.handler(opts.Conn, opts.MaxRecvBytes, marshal)
		if err != nil {
			return nil, err
		}
		mux.Handle(s.Pattern, up)
	}
	return h, nil
}

// escapedPath hands the transcoder the path as sent, still escaped: it
// splits the path into segments and unescapes each variable itself, so a
// record id holding "/" or ":" (sent as %2F, %3A) stays one segment.
func escapedPath(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.RawPath != "" {
			r2 := *r
			u := *r.URL
			u.Path, u.RawPath = r.URL.RawPath, ""
			r2.URL = &u
			r = &r2
		}
		next.ServeHTTP(w, r)
	})
}
