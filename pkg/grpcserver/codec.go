package grpcserver

import (
	"strings"

	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// grpc-go turns any error of a codec's Unmarshal into Internal, before any
// interceptor runs. A request that does not decode is the caller's mistake,
// so the server's codec never fails to decode a protobuf message: it resets
// the message and leaves a mark in its unknown fields (a field number no
// Tidings message uses, holding why), and the interceptor that refuses
// unknown fields turns the mark into InvalidArgument. A client that sends
// the mark itself gets the same InvalidArgument, as it would for any
// unknown field.

// undecodableField is the field number of the mark: the largest valid one.
const undecodableField protowire.Number = protowire.MaxValidNumber

// Why a message did not decode.
const (
	undecodableUTF8 = "utf8"
	undecodableWire = "wire"
)

// codec is the proto codec with decoding failures marked, not returned.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(encproto.Name)} }

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	why := undecodableWire
	if strings.Contains(err.Error(), "UTF-8") {
		why = undecodableUTF8
	}
	proto.Reset(m)
	mark := protowire.AppendTag(nil, undecodableField, protowire.BytesType)
	mark = protowire.AppendString(mark, why)
	m.ProtoReflect().SetUnknown(mark)
	return nil
}

// undecodable returns the InvalidArgument error of a marked message, or nil.
func undecodable(m protoreflect.Message) error {
	raw := m.GetUnknown()
	num, typ, n := protowire.ConsumeTag(raw)
	if n < 0 || num != undecodableField || typ != protowire.BytesType {
		return nil
	}
	why, k := protowire.ConsumeString(raw[n:])
	if k < 0 || n+k != len(raw) {
		return nil
	}
	name := m.Descriptor().FullName()
	if why == undecodableUTF8 {
		return apierr.InvalidArgument("the %s could not be decoded: a string field is not valid UTF-8", name)
	}
	return apierr.InvalidArgument("the %s could not be decoded: it is not valid protobuf wire data", name)
}
