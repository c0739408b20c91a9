package httpapi

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// setFields fills scalar fields of msg from values keyed by field path
// ("user_id", "entity.user_id"; proto or JSON names), as the transcoder does
// for path variables and query parameters. A name that is no field of msg
// is refused, as unknown fields are everywhere else.
func setFields(msg protoreflect.Message, values url.Values) error {
	for path, vals := range values {
		for _, v := range vals {
			if err := setField(msg, path, v); err != nil {
				return err
			}
		}
	}
	return nil
}

func setField(msg protoreflect.Message, path, value string) error {
	parts := strings.Split(path, ".")
	for i, part := range parts {
		fields := msg.Descriptor().Fields()
		fd := fields.ByJSONName(part)
		if fd == nil {
			fd = fields.ByName(protoreflect.Name(part))
		}
		if fd == nil || fd.IsMap() {
			e := apierr.InvalidArgument("parameter %q names no field of %s", path, msg.Descriptor().FullName())
			e.Reason = apierr.ReasonUnknownField
			return e
		}
		if i < len(parts)-1 {
			if fd.Message() == nil || fd.IsList() {
				return apierr.InvalidArgument("parameter %q: %s is not a message", path, part)
			}
			msg = msg.Mutable(fd).Message()
			continue
		}
		v, err := scalar(fd, value)
		if err != nil {
			return apierr.InvalidArgument("parameter %q: %v", path, err)
		}
		if fd.IsList() {
			msg.Mutable(fd).List().Append(v)
		} else {
			msg.Set(fd, v)
		}
	}
	return nil
}

func scalar(fd protoreflect.FieldDescriptor, s string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(s)
		return protoreflect.ValueOfBool(b), err
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		n, err := strconv.ParseInt(s, 10, 32)
		return protoreflect.ValueOfInt32(int32(n)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		n, err := strconv.ParseInt(s, 10, 64)
		return protoreflect.ValueOfInt64(n), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		n, err := strconv.ParseUint(s, 10, 32)
		return protoreflect.ValueOfUint32(uint32(n)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		n, err := strconv.ParseUint(s, 10, 64)
		return protoreflect.ValueOfUint64(n), err
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByName(protoreflect.Name(s)); ev != nil {
			return protoreflect.ValueOfEnum(ev.Number()), nil
		}
		n, err := strconv.ParseInt(s, 10, 32)
		if err != nil {
			return protoreflect.Value{}, fmt.Errorf("%q is no value of %s", s, fd.Enum().FullName())
		}
		return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
	}
	return protoreflect.Value{}, fmt.Errorf("fields of kind %s cannot be set from a parameter", fd.Kind())
}
