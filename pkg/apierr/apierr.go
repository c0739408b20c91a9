// Package apierr turns errors into gRPC statuses at the service boundary.
//
// Services return the typed errors built here for what a caller did wrong
// (not found, not allowed, bad input, over a limit); every status carries an
// errdetails.ErrorInfo with a stable machine-readable reason. An error that
// pkg/faults calls transient (Redis or NATS unreachable, timing out, without
// a leader) becomes Unavailable with the reason UNAVAILABLE and an
// errdetails.RetryInfo saying when to try again. Any other error is an
// internal failure (a bug): its text is logged by the caller of ToStatus
// and never reaches the client.
package apierr

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tidingshq/tidings/pkg/faults"
)

// Domain is the ErrorInfo domain of every Tidings error.
const Domain = "tidings.v1"

// Reasons name the kinds of error in ErrorInfo.reason; clients may branch on them.
const (
	ReasonInvalidArgument    = "INVALID_ARGUMENT"
	ReasonUnknownField       = "UNKNOWN_FIELD"
	ReasonNotFound           = "NOT_FOUND"
	ReasonPermissionDenied   = "PERMISSION_DENIED"
	ReasonUnauthenticated    = "UNAUTHENTICATED"
	ReasonLimitExceeded      = "LIMIT_EXCEEDED"
	ReasonConflict           = "CONFLICT"
	ReasonUnavailable        = "UNAVAILABLE"
	ReasonNotImplemented     = "NOT_IMPLEMENTED"
	ReasonFailedPrecondition = "FAILED_PRECONDITION"
)

// RetryDelay is the delay Unavailable statuses advise callers to wait
// before retrying (in their errdetails.RetryInfo).
const RetryDelay = time.Second

// Error is an error meant for the caller: it maps to one gRPC status.
type Error struct {
	Code     codes.Code
	Reason   string
	Message  string
	Metadata map[string]string
	// RetryDelay, when positive, is sent as an errdetails.RetryInfo: the
	// caller may retry after it.
	RetryDelay time.Duration
}

// Error implements error.
func (e *Error) Error() string { return e.Message }

// GRPCStatus lets status.FromError and status.Code see the status directly.
func (e *Error) GRPCStatus() *status.Status {
	st := status.New(e.Code, e.Message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{
		Reason:   e.Reason,
		Domain:   Domain,
		Metadata: e.Metadata,
	}}
	if e.RetryDelay > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(e.RetryDelay)})
	}
	withInfo, err := st.WithDetails(details...)
	if err != nil {
		return st
	}
	return withInfo
}

func newf(code codes.Code, reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// InvalidArgument reports bad input.
func InvalidArgument(format string, args ...any) *Error {
	return newf(codes.InvalidArgument, ReasonInvalidArgument, format, args...)
}

// NotFound reports that something named by the request does not exist (or
// that the caller may not know it exists).
func NotFound(format string, args ...any) *Error {
	return newf(codes.NotFound, ReasonNotFound, format, args...)
}

// PermissionDenied reports that the caller may not do this.
func PermissionDenied(format string, args ...any) *Error {
	return newf(codes.PermissionDenied, ReasonPermissionDenied, format, args...)
}

// Unauthenticated reports a missing or invalid credential.
func Unauthenticated(format string, args ...any) *Error {
	return newf(codes.Unauthenticated, ReasonUnauthenticated, format, args...)
}

// LimitExceeded reports that a configured limit would be passed.
func LimitExceeded(format string, args ...any) *Error {
	return newf(codes.ResourceExhausted, ReasonLimitExceeded, format, args...)
}

// Aborted reports a conflict with a concurrent change; the caller may retry.
func Aborted(format string, args ...any) *Error {
	return newf(codes.Aborted, ReasonConflict, format, args...)
}

// FailedPrecondition reports that the system is not in a state to do this.
func FailedPrecondition(format string, args ...any) *Error {
	return newf(codes.FailedPrecondition, ReasonFailedPrecondition, format, args...)
}

// Unavailable reports a dependency that cannot be reached; the caller may
// retry after RetryDelay.
func Unavailable(format string, args ...any) *Error {
	e := newf(codes.Unavailable, ReasonUnavailable, format, args...)
	e.RetryDelay = RetryDelay
	return e
}

// ToStatusFor is ToStatus for an error returned by a handler whose call
// context is ctx. A deadline or cancellation met while the caller's own
// context is still live comes from a bound inside the server (a request to
// Redis or JetStream that got no answer in time), so it is an outage, not
// the caller's deadline: it becomes Unavailable.
func ToStatusFor(ctx context.Context, err error) (st *status.Status, internal bool) {
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		var apiErr *Error
		if _, isStatus := status.FromError(err); !isStatus && !errors.As(err, &apiErr) {
			return unavailable().GRPCStatus(), false
		}
	}
	return ToStatus(err)
}

func unavailable() *Error { return Unavailable("a backing service is unavailable; retry later") }

// ToStatus converts any error returned by a handler into the status sent to
// the client. Typed errors and statuses pass through; context errors become
// Canceled or DeadlineExceeded; transient infrastructure failures
// (faults.IsTransient) become Unavailable with retry advice, without their
// text; anything else becomes Internal with a generic message, and internal
// reports true so that the caller logs it.
func ToStatus(err error) (st *status.Status, internal bool) {
	if err == nil {
		return nil, false
	}
	var apiErr *Error
	if errors.As(err, &apiErr) {
		return apiErr.GRPCStatus(), false
	}
	if st, ok := status.FromError(err); ok {
		return st, false
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled"), false
	case faults.IsTransient(err):
		return unavailable().GRPCStatus(), false
	}
	return status.New(codes.Internal, "internal error"), true
}
