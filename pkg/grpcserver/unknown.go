package grpcserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// maxUnknownDepth bounds the walk of nested messages.
const maxUnknownDepth = 32

// UnknownField returns the path of the first field of m that this server
// does not know (a field number the schema lacks), or "" when there is none.
// Unknown fields are refused rather than silently dropped: a client that
// sends one expects it to mean something.
func UnknownField(m protoreflect.Message) string {
	return unknownField(m, "", 0)
}

func unknownField(m protoreflect.Message, path string, depth int) string {
	if depth > maxUnknownDepth {
		return ""
	}
	name := path
	if name == "" {
		name = string(m.Descriptor().Name())
	}
	if len(m.GetUnknown()) > 0 {
		return name
	}
	found := ""
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		child := name + "." + string(fd.Name())
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && found == ""; i++ {
				found = unknownField(l.Get(i).Message(), child, depth+1)
			}
		case fd.IsMap():
			if fd.MapValue().Message() == nil {
				return true
			}
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				found = unknownField(mv.Message(), child, depth+1)
				return found == ""
			})
		default:
			found = unknownField(v.Message(), child, depth+1)
		}
		return found == ""
	})
	return found
}

type protoMessage interface{ ProtoReflect() protoreflect.Message }

func checkUnknown(req any) error {
	if m, ok := req.(protoMessage); ok {
		if err := undecodable(m.ProtoReflect()); err != nil {
			return err
		}
		if path := UnknownField(m.ProtoReflect()); path != "" {
			e := apierr.InvalidArgument("%s has a field this server does not know", path)
			e.Reason = apierr.ReasonUnknownField
			return e
		}
	}
	return nil
}

func rejectUnknownFieldsUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := checkUnknown(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func rejectUnknownFieldsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &unknownCheckingStream{ServerStream: ss})
}

type unknownCheckingStream struct{ grpc.ServerStream }

func (s *unknownCheckingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return checkUnknown(m)
}
