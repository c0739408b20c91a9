package grpcserver

import (
	"context"
	"errors"
	"log/slog"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// validator checks requests against the protovalidate rules of the API.
// A message that breaks a rule gets InvalidArgument carrying both the
// buf.validate.Violations (which fields, which rules) and the ErrorInfo
// (reason INVALID_ARGUMENT, domain tidings.v1) that every Tidings error
// carries.
type validator struct {
	v   protovalidate.Validator
	log *slog.Logger
}

// check validates one message.
func (val validator) check(ctx context.Context, m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	err := val.v.Validate(msg)
	if err == nil {
		return nil
	}
	var verr *protovalidate.ValidationError
	if !errors.As(err, &verr) {
		// A rule that does not compile is a defect of the API, not of the
		// request: log it, send nothing of it.
		val.log.ErrorContext(ctx, "validation rule failed", "message", string(msg.ProtoReflect().Descriptor().FullName()), "error", err)
		return status.Error(codes.Internal, "internal error")
	}
	return ValidationStatus(verr).Err()
}

// ValidationStatus returns the status of a request that breaks the rules in
// verr: InvalidArgument naming the fields, with the violations and an
// ErrorInfo whose metadata names the first field.
func ValidationStatus(verr *protovalidate.ValidationError) *status.Status {
	st := status.New(codes.InvalidArgument, verr.Error())
	md := map[string]string{}
	if len(verr.Violations) > 0 {
		if f := protovalidate.FieldPathString(verr.Violations[0].Proto.GetField()); f != "" {
			md["field"] = f
		}
	}
	withDetails, err := st.WithDetails(verr.ToProto(), &errdetails.ErrorInfo{
		Reason:   apierr.ReasonInvalidArgument,
		Domain:   apierr.Domain,
		Metadata: md,
	})
	if err != nil {
		return st
	}
	return withDetails
}

func (val validator) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := val.check(ctx, req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (val validator) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &validatingStream{ServerStream: ss, val: val})
}

type validatingStream struct {
	grpc.ServerStream
	val validator
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.val.check(s.Context(), m)
}
