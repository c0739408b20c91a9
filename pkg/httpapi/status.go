package httpapi

import (
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// HTTPStatus returns the HTTP status of a gRPC code: the mapping of
// google.rpc.Code's documentation, which the transcoder uses too.
func HTTPStatus(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return 499 // client closed request
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

// statusJSON is how errors are written: a google.rpc.Status with its
// details, the body the transcoder writes for unary calls.
var statusJSON = protojson.MarshalOptions{EmitUnpopulated: true}

// marshalStatus returns the JSON of st.
func marshalStatus(st *status.Status) []byte {
	b, err := statusJSON.Marshal(st.Proto())
	if err != nil {
		return []byte(`{"code":13,"message":"internal error","details":[]}`)
	}
	return b
}

// WriteError writes err as a google.rpc.Status JSON body with the HTTP
// status of its code. Errors that are not statuses become Internal, their
// text withheld.
func WriteError(w http.ResponseWriter, err error) {
	st, _ := apierr.ToStatus(err)
	writeStatus(w, HTTPStatus(st.Code()), st)
}

func writeStatus(w http.ResponseWriter, httpCode int, st *status.Status) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(httpCode)
	_, _ = w.Write(marshalStatus(st)) //nolint:gosec // G705: a JSON body, sent as application/json with nosniff

}
