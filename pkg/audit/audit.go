// Package audit keeps the audit trail: every AdminService call and every
// write by an app or an admin (auth.Audited) becomes an AuditEvent in the
// AUDIT JetStream stream, kept for a configured time, and admins list it
// with AdminService.ListAuditEvents.
//
// Recording never slows or fails a call: the interceptor hands the event to
// a bounded buffer and returns; one goroutine publishes from the buffer.
// When the buffer is full, or JetStream refuses an event after retries, the
// event is dropped and tidings_audit_events_dropped_total counts it, with
// the reason.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Stream is the name of the audit stream; Subject prefixes its subjects,
// "tidings.audit.<caller kind>.<caller id, base64url>".
const (
	Stream  = "AUDIT"
	Subject = "tidings.audit"
)

// StreamConfig returns the AUDIT stream's configuration: file storage,
// limits retention, events older than maxAge dropped.
func StreamConfig(replicas int, maxAge time.Duration) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "Audit trail: admin calls and app and admin writes",
		Subjects:    []string{Subject + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		MaxAge:      maxAge,
		Discard:     jetstream.DiscardOld,
		AllowDirect: true,
	}
}

// EnsureStream creates or updates the AUDIT stream, as
// eventlog.EnsureStreams does the others: short attempts retried while the
// cluster forms or other processes create it too, until ctx ends.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int, maxAge time.Duration) error {
	cfg := StreamConfig(replicas, maxAge)
	err := eventlog.RetryStartup(ctx, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, cfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			_, err = js.UpdateStream(ctx, cfg)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("ensure stream %s: %w", Stream, err)
	}
	return nil
}

// subject returns the subject of an event of caller.
func subject(c *tidingsv1.Caller) string {
	kind := strings.ToLower(strings.TrimPrefix(c.GetKind().String(), "CALLER_KIND_"))
	return Subject + "." + kind + "." + eventlog.Token(c.GetId())
}

// Recorder publishes audit events in the background.
type Recorder struct {
	js      jetstream.JetStream
	events  chan *tidingsv1.AuditEvent
	dropped *prometheus.CounterVec
	written prometheus.Counter
	log     *slog.Logger
}

// NewRecorder returns a Recorder holding at most buffer events waiting to
// be written. Run publishes them.
func NewRecorder(js jetstream.JetStream, buffer int, reg prometheus.Registerer, log *slog.Logger) (*Recorder, error) {
	r := &Recorder{
		js:     js,
		events: make(chan *tidingsv1.AuditEvent, buffer),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_audit_events_dropped_total",
			Help: "Audit events not recorded, by reason (buffer_full: the recorder fell behind; publish_failed: JetStream refused them).",
		}, []string{"reason"}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_audit_events_written_total",
			Help: "Audit events stored in the AUDIT stream.",
		}),
		log: log,
	}
	for _, c := range []prometheus.Collector{r.dropped, r.written} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register audit metrics: %w", err)
		}
	}
	return r, nil
}

// Record queues e without waiting; a full buffer drops it and counts it.
func (r *Recorder) Record(e *tidingsv1.AuditEvent) {
	select {
	case r.events <- e:
	default:
		r.dropped.WithLabelValues("buffer_full").Inc()
	}
}

// Run publishes queued events until ctx ends, then publishes what is
// still queued for up to drain.
func (r *Recorder) Run(ctx context.Context, drain time.Duration) {
	for {
		select {
		case e := <-r.events:
			r.publish(ctx, e)
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
			defer cancel()
			for {
				select {
				case e := <-r.events:
					r.publish(dctx, e)
				default:
					return
				}
			}
		}
	}
}

func (r *Recorder) publish(ctx context.Context, e *tidingsv1.AuditEvent) {
	data, err := proto.Marshal(e)
	if err != nil {
		r.dropped.WithLabelValues("publish_failed").Inc()
		return
	}
	for attempt := range 3 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err = r.js.Publish(pctx, subject(e.GetCaller()), data)
		cancel()
		if err == nil {
			r.written.Inc()
			return
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 100 * time.Millisecond):
		}
	}
	r.dropped.WithLabelValues("publish_failed").Inc()
	r.log.WarnContext(ctx, "audit event not recorded", "method", e.GetMethod(), "caller", e.GetCaller().GetId(), "error", err)
}

// Summary limits.
const (
	maxSummary      = 512
	maxSummaryValue = 64
	maxSummaryDepth = 3
)

// Summarize describes a request for the audit trail: scalar fields (strings
// cut to 64 characters), nested messages to three levels, and the length of
// lists and maps, at most 512 characters.
func Summarize(m proto.Message) string {
	if m == nil {
		return ""
	}
	var b strings.Builder
	summarize(&b, m.ProtoReflect(), 0)
	s := b.String()
	if len(s) > maxSummary {
		cut := maxSummary
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func summarize(b *strings.Builder, m protoreflect.Message, depth int) {
	first := true
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.Has(fd) {
			continue
		}
		if b.Len() > maxSummary {
			return
		}
		v := m.Get(fd)
		if !first {
			b.WriteByte(' ')
		}
		first = false
		b.WriteString(string(fd.Name()))
		b.WriteByte('=')
		switch {
		case fd.IsList():
			b.WriteString("[" + strconv.Itoa(v.List().Len()) + " items]")
		case fd.IsMap():
			b.WriteString("{" + strconv.Itoa(v.Map().Len()) + " entries}")
		case fd.Message() != nil:
			if depth+1 >= maxSummaryDepth {
				b.WriteString("{…}")
			} else {
				b.WriteByte('{')
				summarize(b, v.Message(), depth+1)
				b.WriteByte('}')
			}
		default:
			b.WriteString(scalar(fd, v))
		}
	}
}

func scalar(fd protoreflect.FieldDescriptor, v protoreflect.Value) string {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s := v.String()
		if utf8.RuneCountInString(s) > maxSummaryValue {
			s = string([]rune(s)[:maxSummaryValue]) + "…"
		}
		return strconv.Quote(s)
	case protoreflect.BytesKind:
		return "<" + strconv.Itoa(len(v.Bytes())) + " bytes>"
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return string(ev.Name())
		}
		return strconv.Itoa(int(v.Enum()))
	}
	return v.String()
}

// maxScan bounds the events one List call reads, so a filter that matches
// little cannot make one call read the whole stream.
const maxScan = 20000

// errBadToken is returned for a page token that is not a sequence.
var errBadToken = errors.New("page token is not one of this listing")
