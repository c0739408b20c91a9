package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// ClientStream serves one client-streaming RPC over HTTP: the body is one
// JSON request message, or newline-delimited JSON messages
// (application/x-ndjson), each sent as one message of the stream; the
// response is the RPC's JSON response. Each message is limited to the
// server's max-recv-bytes; the body as a whole is not, since it is read one
// message at a time.
type ClientStream struct {
	// Method is the full gRPC method name.
	Method string
	// Pattern is the net/http pattern it is served at, such as
	// "POST /v1/admin/graph:import".
	Pattern string
}

type uploadHandler struct {
	method    string
	in, out   protoreflect.MessageType
	conn      grpc.ClientConnInterface
	maxMsg    int
	unmarshal protojson.UnmarshalOptions
	marshal   protojson.MarshalOptions
}

func (s ClientStream) handler(conn grpc.ClientConnInterface, maxMsg int, marshal protojson.MarshalOptions) (*uploadHandler, error) {
	md, in, out, err := resolve(s.Method)
	if err != nil {
		return nil, err
	}
	if !md.IsStreamingClient() || md.IsStreamingServer() {
		return nil, errors.New(s.Method + " is not a client stream")
	}
	return &uploadHandler{method: s.Method, in: in, out: out, conn: conn, maxMsg: maxMsg, marshal: marshal}, nil
}

func (h *uploadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ndjson := false
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		switch {
		case err == nil && mt == "application/x-ndjson":
			ndjson = true
		case err == nil && mt == "application/json":
		default:
			writeStatus(w, http.StatusUnsupportedMediaType, status.New(codes.InvalidArgument, "send application/json or application/x-ndjson"))
			return
		}
	}
	ctx, cancel := context.WithCancel(outgoing(r.Context(), r))
	defer cancel()
	stream, err := h.conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, h.method)
	if err != nil {
		WriteError(w, err)
		return
	}
	send := func(b []byte) error {
		m := h.in.New().Interface()
		if err := h.unmarshal.Unmarshal(b, m); err != nil {
			return apierr.InvalidArgument("request body: %v", err)
		}
		if err := stream.SendMsg(m); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
	var sendErr error
	if ndjson {
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(make([]byte, 0, 64<<10), h.maxMsg)
		for sc.Scan() && sendErr == nil {
			if line := sc.Bytes(); len(bytes.TrimSpace(line)) > 0 {
				sendErr = send(line)
			}
		}
		if err := sc.Err(); err != nil && sendErr == nil {
			if errors.Is(err, bufio.ErrTooLong) {
				sendErr = apierr.LimitExceeded("a line of the body is over %d bytes", h.maxMsg)
			} else {
				sendErr = apierr.InvalidArgument("read body: %v", err)
			}
		}
	} else {
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(h.maxMsg)))
		if err != nil {
			sendErr = apierr.LimitExceeded("the body is over %d bytes", h.maxMsg)
		} else {
			sendErr = send(b)
		}
	}
	if sendErr != nil {
		cancel()
		WriteError(w, sendErr)
		return
	}
	if err := stream.CloseSend(); err != nil {
		WriteError(w, err)
		return
	}
	resp := h.out.New().Interface()
	if err := stream.RecvMsg(resp); err != nil {
		WriteError(w, err)
		return
	}
	b, err := h.marshal.Marshal(resp)
	if err != nil {
		WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}
