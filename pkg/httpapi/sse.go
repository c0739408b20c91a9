package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// ServerStream serves one server-streaming RPC as server-sent events
// (text/event-stream): each response message is one event whose data is the
// message's JSON, and whose id is the message's resume token when the RPC
// has one, so that a client reconnecting with Last-Event-ID (as browsers'
// EventSource do by themselves) resumes where it was. Plugging in another
// server stream takes one value of this type.
type ServerStream struct {
	// Method is the full gRPC method name.
	Method string
	// Pattern is the net/http pattern it is served at, such as
	// "GET /v1/users/{user_id}/home:watch"; its wildcards name fields of the
	// request, and query parameters name more (proto or JSON names, dotted
	// for nested fields).
	Pattern string
	// ResumeField names the request field that takes the Last-Event-ID
	// header (or, for clients that cannot set headers, the last_event_id
	// query parameter); empty when the RPC cannot resume.
	ResumeField string
	// EventIDField names the response field written as each event's id.
	EventIDField string
}

// The SSE events besides the messages themselves.
const (
	// eventError carries a google.rpc.Status when the RPC fails after the
	// stream opened; the server then closes the stream.
	eventError = "error"
	// eventEnd says the RPC finished; the server then closes the stream.
	eventEnd = "end"
	// lastEventIDParam is the query parameter that stands for the
	// Last-Event-ID header.
	lastEventIDParam = "last_event_id"
)

// method is a resolved ServerStream.
type method struct {
	ServerStream
	in, out   protoreflect.MessageType
	wildcards []string
	resume    protoreflect.Name
	eventID   protoreflect.FieldDescriptor
}

func resolve(fullMethod string) (protoreflect.MethodDescriptor, protoreflect.MessageType, protoreflect.MessageType, error) {
	name := strings.ReplaceAll(strings.TrimPrefix(fullMethod, "/"), "/", ".")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("method %s: %w", fullMethod, err)
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, nil, nil, fmt.Errorf("%s is not a method", fullMethod)
	}
	in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("method %s input: %w", fullMethod, err)
	}
	out, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, nil, nil, fmt.Errorf("method %s output: %w", fullMethod, err)
	}
	return md, in, out, nil
}

func (s ServerStream) resolve() (*method, error) {
	md, in, out, err := resolve(s.Method)
	if err != nil {
		return nil, err
	}
	if !md.IsStreamingServer() || md.IsStreamingClient() {
		return nil, fmt.Errorf("%s is not a server stream", s.Method)
	}
	m := &method{ServerStream: s, in: in, out: out, wildcards: wildcards(s.Pattern)}
	if s.ResumeField != "" {
		fd := in.Descriptor().Fields().ByName(protoreflect.Name(s.ResumeField))
		if fd == nil || fd.Kind() != protoreflect.StringKind {
			return nil, fmt.Errorf("%s: no string field %s in the request", s.Method, s.ResumeField)
		}
		m.resume = fd.Name()
	}
	if s.EventIDField != "" {
		m.eventID = out.Descriptor().Fields().ByName(protoreflect.Name(s.EventIDField))
		if m.eventID == nil || m.eventID.Kind() != protoreflect.StringKind {
			return nil, fmt.Errorf("%s: no string field %s in the response", s.Method, s.EventIDField)
		}
	}
	return m, nil
}

// wildcards returns the names of the {wildcards} of a net/http pattern.
func wildcards(pattern string) []string {
	var names []string
	for _, seg := range strings.Split(pattern, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			names = append(names, strings.TrimSuffix(strings.Trim(seg, "{}"), "..."))
		}
	}
	return names
}

// request builds the request message from the path, the query and, for
// a stream that resumes, the Last-Event-ID.
func (m *method) request(r *http.Request) (proto.Message, error) {
	req := m.in.New()
	vals := url.Values{}
	for _, name := range m.wildcards {
		vals.Set(name, r.PathValue(name))
	}
	for k, v := range r.URL.Query() {
		if k == lastEventIDParam && m.resume != "" {
			continue
		}
		vals[k] = v
	}
	if err := setFields(req, vals); err != nil {
		return nil, err
	}
	if m.resume != "" {
		last := r.Header.Get("Last-Event-ID")
		if last == "" {
			last = r.URL.Query().Get(lastEventIDParam)
		}
		if last != "" {
			req.Set(req.Descriptor().Fields().ByName(m.resume), protoreflect.ValueOfString(last))
		}
	}
	return req.Interface(), nil
}

// outgoing returns ctx carrying the caller's credentials and request id to
// the gRPC server, whose interceptors then treat the call as any other.
func outgoing(ctx context.Context, r *http.Request) context.Context {
	var kv []string
	for _, h := range []string{"Authorization", "X-Request-Id"} {
		if v := r.Header.Get(h); v != "" {
			kv = append(kv, strings.ToLower(h), v)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// sseHandler serves one ServerStream.
type sseHandler struct {
	m         *method
	conn      grpc.ClientConnInterface
	heartbeat time.Duration
	slots     chan struct{}
	marshal   protojson.MarshalOptions
	closing   <-chan struct{}
}

func (h *sseHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	default:
		WriteError(w, status.Error(codes.ResourceExhausted, "too many open event streams; retry later"))
		return
	}
	req, err := h.m.request(r)
	if err != nil {
		WriteError(w, err)
		return
	}
	ctx, cancel := context.WithCancel(outgoing(r.Context(), r))
	defer cancel()
	stream, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, h.m.Method)
	if err != nil {
		WriteError(w, err)
		return
	}
	if err := stream.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		WriteError(w, err)
		return
	}
	if err := stream.CloseSend(); err != nil {
		WriteError(w, err)
		return
	}
	// The stream is open once the server sent its headers (Watch sends them
	// once it is subscribed; other streams with their first message). A call
	// refused before that (bad token, bad request) ends without headers
	// (pkg/grpcserver sends the request id in the trailers then) and is
	// answered as any HTTP error.
	md, err := stream.Header()
	if err != nil {
		WriteError(w, err)
		return
	}
	ended := false
	if md == nil {
		// Ended without headers: refused before it opened, or done with
		// nothing to send.
		err := stream.RecvMsg(h.m.out.New().Interface())
		md = stream.Trailer()
		if !errors.Is(err, io.EOF) {
			for _, id := range md.Get("x-request-id") {
				w.Header().Set("X-Request-Id", id)
			}
			WriteError(w, err)
			return
		}
		ended = true
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{}) // streams outlive any write timeout
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer
	hdr.Set("X-Content-Type-Options", "nosniff")
	for _, id := range md.Get("x-request-id") {
		hdr.Set("X-Request-Id", id)
	}
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	buf.WriteString("retry: 2000\n: open\n\n")

	msgs := make(chan proto.Message)
	done := make(chan error, 1)
	go func() {
		if ended {
			done <- io.EOF
			return
		}
		for {
			m := h.m.out.New().Interface()
			if err := stream.RecvMsg(m); err != nil {
				done <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				done <- ctx.Err()
				return
			}
		}
	}()

	tick := time.NewTicker(h.heartbeat)
	defer tick.Stop()
	for {
		if buf.Len() > 0 {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return // the client went away
			}
			if err := rc.Flush(); err != nil {
				return
			}
			buf.Reset()
		}
		select {
		case <-r.Context().Done():
			return
		case <-h.closing:
			buf.WriteString("event: " + eventError + "\ndata: ")
			buf.Write(marshalStatus(status.New(codes.Unavailable, "the server is shutting down; reconnect")))
			buf.WriteString("\n\n")
			_, _ = w.Write(buf.Bytes())
			_ = rc.Flush()
			return
		case <-tick.C:
			buf.WriteString(": keep-alive\n\n")
		case m := <-msgs:
			h.writeEvent(&buf, m)
		case err := <-done:
			if errors.Is(err, io.EOF) {
				buf.WriteString("event: " + eventEnd + "\ndata: {}\n\n")
			} else if r.Context().Err() == nil {
				st, _ := status.FromError(err)
				buf.WriteString("event: " + eventError + "\ndata: ")
				buf.Write(marshalStatus(st))
				buf.WriteString("\n\n")
			}
			_, _ = w.Write(buf.Bytes())
			_ = rc.Flush()
			return
		}
	}
}

// writeEvent appends one message as an event. JSON has no raw newlines, so
// the data is one line; an id with a line break (none of Tidings' tokens)
// would break the framing and is left out.
func (h *sseHandler) writeEvent(buf *bytes.Buffer, m proto.Message) {
	if h.m.eventID != nil {
		id := m.ProtoReflect().Get(h.m.eventID).String()
		if id != "" && !strings.ContainsAny(id, "\r\n\x00") {
			buf.WriteString("id: " + id + "\n")
		}
	}
	b, err := h.marshal.Marshal(m)
	if err != nil {
		st := status.New(codes.Internal, "internal error")
		buf.WriteString("event: " + eventError + "\ndata: ")
		buf.Write(marshalStatus(st))
		buf.WriteString("\n\n")
		return
	}
	buf.WriteString("data: ")
	buf.Write(b)
	buf.WriteString("\n\n")
}
