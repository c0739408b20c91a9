package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// track notes, for one request, whether the body went over its limit.
type track struct {
	tooBig bool
}

// transcodeErrors limits the body to limit bytes and gives the errors of
// transcoding the status they deserve. The transcoder reports a request it
// cannot turn into a message (malformed JSON, a field or query parameter the
// message lacks, a value of the wrong type) as UNKNOWN (HTTP 500). The gRPC
// server never sends UNKNOWN (pkg/grpcserver maps every error it does not
// know to INTERNAL, panics included), so an UNKNOWN here is the request's
// fault: INVALID_ARGUMENT (400), or RESOURCE_EXHAUSTED (413) for a body
// over the limit, as the gRPC server refuses a message over max-recv-bytes.
func transcodeErrors(next http.Handler, limit int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			writeStatus(w, http.StatusRequestEntityTooLarge,
				status.Newf(codes.ResourceExhausted, "the request body of %d bytes is over the limit of %d", r.ContentLength, limit))
			return
		}
		if ct := r.Header.Get("Content-Type"); ct != "" && r.ContentLength != 0 {
			if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
				writeStatus(w, http.StatusUnsupportedMediaType,
					status.Newf(codes.InvalidArgument, "the request body is %q: send application/json", ct))
				return
			}
		}
		t := &track{}
		r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), t: t}
		fw := &fixWriter{ResponseWriter: w, t: t}
		next.ServeHTTP(fw, r)
		fw.finish(limit)
	})
}

type limitedBody struct {
	io.ReadCloser
	t *track
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		b.t.tooBig = true
	}
	return n, err
}

// fixWriter holds back a server error (a short status body), to rewrite it
// in finish when it is UNKNOWN.
type fixWriter struct {
	http.ResponseWriter
	t      *track
	held   bool
	code   int
	body   bytes.Buffer
	header bool
}

func (w *fixWriter) WriteHeader(code int) {
	if w.header {
		return
	}
	w.header = true
	if code >= 500 {
		w.held, w.code = true, code
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *fixWriter) Write(b []byte) (int, error) {
	if !w.header {
		w.WriteHeader(http.StatusOK)
	}
	if w.held {
		return w.body.Write(b)
	}
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher, which the transcoder requires.
func (w *fixWriter) Flush() {
	if !w.held {
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *fixWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *fixWriter) finish(limit int64) {
	if !w.held {
		return
	}
	var st struct {
		Code    codes.Code `json:"code"`
		Message string     `json:"message"`
	}
	if json.Unmarshal(w.body.Bytes(), &st) != nil || st.Code != codes.Unknown {
		w.ResponseWriter.WriteHeader(w.code)
		_, _ = w.ResponseWriter.Write(w.body.Bytes())
		return
	}
	w.Header().Del("Content-Length")
	if w.t.tooBig {
		writeStatus(w.ResponseWriter, http.StatusRequestEntityTooLarge,
			status.Newf(codes.ResourceExhausted, "the request body is over the limit of %d bytes", limit))
		return
	}
	msg := "the request could not be read"
	if st.Message != "" {
		msg += ": " + st.Message
	}
	writeStatus(w.ResponseWriter, http.StatusBadRequest, status.New(codes.InvalidArgument, msg))
}
