package stacktest_test

import (
	"errors"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// benign are values that pass the API's string rules: ids, record types,
// URLs, names.
var benign = []string{"ana", "crm.opportunity", "006A", "https://example.com/x", "Sales", "bo", "x"}

// repair makes a generated message pass validation where it can, so that
// hostile values reach the handlers instead of stopping at validation: a
// field that breaks a rule is first cleared, then (when clearing broke a
// rule such as required or min_len) given each benign value in turn; a list
// element that breaks a rule cuts the list there; a map entry is removed.
// Rules across fields are left broken.
func repair(v protovalidate.Validator, m protoreflect.Message) {
	attempts := map[string]int{}
	for range 16 {
		var verr *protovalidate.ValidationError
		if err := v.Validate(m.Interface()); !errors.As(err, &verr) {
			return
		}
		fixed := false
		for _, viol := range verr.Violations {
			path := viol.Proto.GetField().GetElements()
			if len(path) == 0 {
				continue
			}
			key := protovalidate.FieldPathString(viol.Proto.GetField())
			if fixAt(m, path, attempts[key]) {
				fixed = true
			}
			attempts[key]++
		}
		if !fixed {
			return
		}
	}
}

// fixAt changes the field at path in m, the attempt-th way; it reports
// whether it changed anything.
func fixAt(m protoreflect.Message, path []*validate.FieldPathElement, attempt int) bool {
	el := path[0]
	fd := m.Descriptor().Fields().ByNumber(protoreflect.FieldNumber(el.GetFieldNumber()))
	if fd == nil {
		return false
	}
	rest := path[1:]
	switch {
	case fd.IsList():
		l := m.Mutable(fd).List()
		i, ok := el.GetSubscript().(*validate.FieldPathElement_Index)
		if !ok {
			if attempt > 0 {
				return false
			}
			m.Clear(fd) // a rule on the whole list
			return true
		}
		if int(i.Index) >= l.Len() {
			return false
		}
		if len(rest) > 0 && fd.Message() != nil && attempt < len(benign)+1 {
			return fixAt(l.Get(int(i.Index)).Message(), rest, attempt)
		}
		l.Truncate(int(i.Index))
		return true
	case fd.IsMap():
		mp := m.Mutable(fd).Map()
		if k, ok := el.GetSubscript().(*validate.FieldPathElement_StringKey); ok && fd.MapKey().Kind() == protoreflect.StringKind {
			mp.Clear(protoreflect.ValueOfString(k.StringKey).MapKey())
			return true
		}
		m.Clear(fd)
		return true
	case len(rest) > 0 && fd.Message() != nil:
		return fixAt(m.Mutable(fd).Message(), rest, attempt)
	}
	if attempt == 0 {
		m.Clear(fd)
		return true
	}
	switch {
	case fd.Message() != nil:
		if attempt > 1 {
			return false
		}
		m.Mutable(fd) // a required message: an empty one, fixed field by field next
	case fd.Kind() == protoreflect.StringKind:
		if attempt > len(benign) {
			return false
		}
		m.Set(fd, protoreflect.ValueOfString(benign[attempt-1]))
	case fd.Kind() == protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if attempt >= vals.Len() {
			return false
		}
		m.Set(fd, protoreflect.ValueOfEnum(vals.Get(attempt).Number()))
	case fd.Kind() == protoreflect.Int32Kind:
		m.Set(fd, protoreflect.ValueOfInt32(int32(attempt)))
	case fd.Kind() == protoreflect.Int64Kind:
		m.Set(fd, protoreflect.ValueOfInt64(int64(attempt)))
	default:
		return false
	}
	return true
}
