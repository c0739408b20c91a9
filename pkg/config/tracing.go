package config

import (
	"fmt"
	"net"

	"github.com/spf13/pflag"
)

// Tracing is the part of Config that says where OpenTelemetry traces go.
// Its fields are promoted into Config.
type Tracing struct {
	// OTLPEndpoint is the host:port of an OTLP/gRPC collector (an
	// OpenTelemetry Collector, Tempo, Jaeger). Empty turns tracing off:
	// nothing is recorded or sent.
	OTLPEndpoint string
	// OTLPInsecure sends spans to the collector in plaintext instead of
	// TLS.
	OTLPInsecure bool
	// TraceSampleRatio is the share of new traces recorded, 0..1; calls
	// that arrive with a sampled trace context are always recorded.
	TraceSampleRatio float64
}

// DefaultTracing is tracing off, with a tenth of traces sampled once an
// endpoint is set.
func DefaultTracing() Tracing {
	return Tracing{TraceSampleRatio: 0.1}
}

func (t *Tracing) bindTracingFlags(fs *pflag.FlagSet) {
	fs.StringVar(&t.OTLPEndpoint, "otlp-endpoint", t.OTLPEndpoint, "host:port of an OTLP/gRPC trace collector (empty: tracing off)")
	fs.BoolVar(&t.OTLPInsecure, "otlp-insecure", t.OTLPInsecure, "send traces to the collector in plaintext, not TLS")
	fs.Float64Var(&t.TraceSampleRatio, "trace-sample-ratio", t.TraceSampleRatio, "share of new traces recorded, 0..1 (calls arriving with a sampled trace are always recorded)")
}

func (t *Tracing) validateTracing() []error {
	var errs []error
	if t.OTLPEndpoint != "" {
		if _, _, err := net.SplitHostPort(t.OTLPEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("otlp-endpoint %q: want host:port", t.OTLPEndpoint))
		}
	}
	if t.TraceSampleRatio < 0 || t.TraceSampleRatio > 1 {
		errs = append(errs, fmt.Errorf("trace-sample-ratio %v: want 0..1", t.TraceSampleRatio))
	}
	return errs
}
