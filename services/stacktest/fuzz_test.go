package stacktest_test

import (
	"context"
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/grpcserver"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

// fuzzMethod is one method the server serves.
type fuzzMethod struct {
	full         string
	in, out      protoreflect.MessageType
	clientStream bool
	serverStream bool
}

// servedMethods lists every method of every service on the server, in a
// fixed order, so a fuzz input's method index always means the same
// method.
func servedMethods(t testing.TB, srv *grpc.Server) []fuzzMethod {
	t.Helper()
	var out []fuzzMethod
	info := srv.GetServiceInfo()
	names := make([]string, 0, len(info))
	for name := range info {
		names = append(names, name)
	}
	sortStrings(names)
	for _, name := range names {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name))
		require.NoError(t, err, name)
		sd := d.(protoreflect.ServiceDescriptor)
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			in, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
			require.NoError(t, err)
			out2, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
			require.NoError(t, err)
			out = append(out, fuzzMethod{
				full: "/" + name + "/" + string(md.Name()), in: in, out: out2,
				clientStream: md.IsStreamingClient(), serverStream: md.IsStreamingServer(),
			})
		}
	}
	return out
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// hostile are strings a caller may send that mean something to some layer
// below: NATS wildcards and separators, Redis key shapes, path tricks,
// bidirectional overrides, zero-width and combining characters, NUL.
var hostile = []string{
	"", "a", "ana", "crm.opportunity", "tidings:record:{x}", "a.b.>", "*", ">", "..", "../../etc/passwd",
	"\u202egnp.exe", "\u200d\u200b\ufeff", "e\u0301\u0301\u0301", "𝕏🏳️‍🌈", "\x00", "%00", "' OR 1=1 --",
	"javascript:alert(1)", "https://example.com/", "0", "-1", "18446744073709551615", "r:crm.opportunity:1", "u:ana",
}

// gen builds a message from fuzz bytes: each field set or not, strings
// hostile or as long as the rules allow, lists and maps as long as the
// rules allow, numbers at their extremes, enums outside their range,
// timestamps out of range. The result is "valid but hostile": a message a
// client could send.
type gen struct {
	data  []byte
	bytes int // budget of string bytes, to stay within message limits
}

func (g *gen) byte() byte {
	if len(g.data) == 0 {
		return 0
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b
}

func rules(fd protoreflect.FieldDescriptor) *validate.FieldRules {
	r, _ := proto.GetExtension(fd.Options(), validate.E_Field).(*validate.FieldRules)
	return r
}

func (g *gen) fill(m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if oo := fd.ContainingOneof(); oo != nil && !oo.IsSynthetic() && m.WhichOneof(oo) != nil {
			continue
		}
		if g.byte()%3 == 0 {
			continue
		}
		r := rules(fd)
		switch {
		case fd.IsList():
			n := g.count(r.GetRepeated().GetMaxItems())
			l := m.Mutable(fd).List()
			for range n {
				if fd.Message() != nil {
					if depth >= 3 {
						break
					}
					e := l.NewElement()
					g.fill(e.Message(), depth+1)
					l.Append(e)
				} else {
					l.Append(g.scalar(fd, r, true))
				}
			}
		case fd.IsMap():
			n := g.count(r.GetMap().GetMaxPairs())
			mp := m.Mutable(fd).Map()
			for range n {
				k := g.scalar(fd.MapKey(), nil, true).MapKey()
				if fd.MapValue().Message() != nil {
					continue
				}
				mp.Set(k, g.scalar(fd.MapValue(), nil, true))
			}
		case fd.Message() != nil:
			if depth < 3 {
				g.fill(m.Mutable(fd).Message(), depth+1)
			}
		default:
			m.Set(fd, g.scalar(fd, r, false))
		}
	}
}

// count picks how many items a list gets: none, a few, or the most the
// rules allow (up to 10,000).
func (g *gen) count(maxItems uint64) int {
	if maxItems == 0 || maxItems > 10000 {
		maxItems = 10000
	}
	switch g.byte() % 4 {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return int(g.byte()%16) + 2
	}
	return int(maxItems)
}

func (g *gen) scalar(fd protoreflect.FieldDescriptor, r *validate.FieldRules, inList bool) protoreflect.Value {
	b := g.byte()
	switch fd.Kind() {
	case protoreflect.StringKind:
		if b%4 == 0 && !inList && g.bytes < 1<<20 {
			n := int(r.GetString().GetMaxLen())
			if n == 0 || n > 100000 {
				n = 5000
			}
			s := strings.Repeat("ü", n)[:n] // n bytes, cut mid-rune when n is odd…
			if !isValidUTF8(s) {
				s = strings.Repeat("x", n)
			}
			g.bytes += n
			return protoreflect.ValueOfString(s)
		}
		return protoreflect.ValueOfString(hostile[int(b)%len(hostile)])
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(hostile[int(b)%len(hostile)]))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(b%2 == 0)
	case protoreflect.EnumKind:
		switch b % 3 {
		case 0:
			return protoreflect.ValueOfEnum(999)
		case 1:
			return protoreflect.ValueOfEnum(-1)
		}
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(int(g.byte()) % vals.Len()).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([]int32{0, -1, 1, math.MaxInt32, math.MinInt32, 1000, 1001}[int(b)%7])
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([]int64{0, -1, 1, math.MaxInt64, math.MinInt64, 253402300800}[int(b)%6])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32([]uint32{0, 1, math.MaxUint32}[int(b)%3])
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64([]uint64{0, 1, math.MaxUint64}[int(b)%3])
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32([]float32{0, float32(math.NaN()), float32(math.Inf(1))}[int(b)%3])
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64([]float64{0, math.NaN(), math.Inf(-1)}[int(b)%3])
	}
	return fd.Default()
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\ufffd") == s }

// fuzzCallers are who the fuzzer calls as: an admin passes every rule, the
// others reach the handlers' own checks.
var fuzzCallers = []auth.Identity{testenv.Admin, testenv.Employee("ana"), testenv.App("crm"), testenv.Directory}

// FuzzServer sends arbitrary bytes, and arbitrary valid-but-hostile
// messages, to every method of every service of a real server, as every
// kind of caller. No call may return Internal or Unknown (a recovered
// panic is Internal), and the server must go on answering.
func FuzzServer(f *testing.F) {
	reg := prometheus.NewRegistry()
	s := stacktest.Start(f, stacktest.Options{Server: func(_ *testenv.Env, o *grpcserver.Options) {
		o.Registry = reg
		// Count open watches (no limit), to tell an open one from a refused one.
		o.Streams = grpcserver.StreamLimits{Methods: []string{tidingsv1.TimelineService_Watch_FullMethodName}}
	}})
	s.Users(f, "ana", "bo")
	methods := servedMethods(f, s.Server.GRPC.Server)
	openWatches := func(t testing.TB) float64 {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() == "tidings_grpc_limited_streams_open" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return 0
	}
	conns := make([]*grpc.ClientConn, len(fuzzCallers))
	for i, id := range fuzzCallers {
		conns[i] = s.Server.Conn(f, id)
	}
	for i := range methods {
		f.Add(uint16(i), byte(0), []byte{})                                // raw: empty
		f.Add(uint16(i), byte(0), []byte{0x0a, 0x02, 0xff, 0xfe})          // raw: invalid UTF-8 in field 1
		f.Add(uint16(i), byte(1), []byte{1, 1, 3, 3, 3, 3, 7, 1, 1, 1})    // generated, as an admin
		f.Add(uint16(i), byte(2), []byte{1, 1, 3, 3, 3, 3, 7, 1, 1, 1})    // repaired, as an admin
		f.Add(uint16(i), byte(6), []byte{2, 0, 1, 2, 3, 4, 5, 6, 7, 8})    // repaired, as an employee
		f.Add(uint16(i), byte(10), []byte{5, 4, 3, 2, 1, 0, 9, 8, 7, 6})   // repaired, as an app
		f.Add(uint16(i), byte(2), []byte{1, 3, 1, 3, 1, 3, 1, 3, 1, 3, 1}) // repaired, the longest lists and strings
	}
	validator, err := protovalidate.New()
	require.NoError(f, err)
	// mode: bits 0-1 pick the request (0 raw bytes, 1 generated, 2-3
	// generated then repaired to pass validation), bits 2-3 the caller.
	f.Fuzz(func(t *testing.T, method uint16, mode byte, data []byte) {
		m := methods[int(method)%len(methods)]
		conn := conns[int(mode>>2)%len(conns)]
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var req any
		if mode&3 == 0 {
			raw := append([]byte(nil), data...)
			req = &raw
		} else {
			msg := m.in.New()
			(&gen{data: data}).fill(msg, 0)
			if mode&3 != 1 {
				repair(validator, msg)
			}
			req = msg.Interface()
		}
		code := call(ctx, conn, m, req, func() bool { return openWatches(t) > 0 })
		testenv.Eventually(t, 10*time.Second, func() bool { return openWatches(t) == 0 }, "a watch the fuzzer left is still open")
		if code == codes.Internal || code == codes.Unknown {
			t.Fatalf("%s answered %s to %T %v", m.full, code, req, req)
		}
	})
}

// call sends req to m and returns the status code the call ended with.
// watchOpen tells whether a Watch holds its slot: it does once it has sent
// its headers, and no longer when it was refused.
func call(ctx context.Context, conn *grpc.ClientConn, m fuzzMethod, req any, watchOpen func() bool) codes.Code {
	var opts []grpc.CallOption
	newOut := func() any { return m.out.New().Interface() }
	if raw, ok := req.(*[]byte); ok {
		opts = append(opts, grpc.ForceCodecV2(rawCodec{}))
		_ = raw
		newOut = func() any { return new([]byte) }
	}
	if !m.clientStream && !m.serverStream {
		return status.Code(conn.Invoke(ctx, m.full, req, newOut(), opts...))
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: m.clientStream, ServerStreams: m.serverStream}, m.full, opts...)
	if err != nil {
		return status.Code(err)
	}
	if err := cs.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return status.Code(err)
	}
	if err := cs.CloseSend(); err != nil {
		return status.Code(err)
	}
	if m.full == tidingsv1.TimelineService_Watch_FullMethodName {
		// A watch streams until the client leaves: once it is open, the
		// fuzzer leaves.
		if _, err := cs.Header(); err == nil && watchOpen() {
			return codes.OK
		}
	}
	for range 1000 {
		if err := cs.RecvMsg(newOut()); err != nil {
			if errors.Is(err, io.EOF) {
				return codes.OK
			}
			return status.Code(err)
		}
		if m.full == "/grpc.health.v1.Health/Watch" {
			return codes.OK
		}
	}
	return codes.OK
}
