// Package ratelimit limits how often each caller may call, across every API
// process: the budgets live in Redis and are kept with GCRA by
// github.com/go-redis/redis_rate (one script call per RPC, timed by Redis's
// own clock, so replicas share one budget without agreeing on time).
//
// Employees, apps and admins have separate budgets. A call over budget is
// refused with ResourceExhausted carrying an ErrorInfo (LIMIT_EXCEEDED) and
// a RetryInfo saying when to try again. When Redis cannot answer, the call
// goes ahead (the limit protects the service from floods; it is not an
// access rule) and the failure is counted.
package ratelimit

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/tidingshq/tidings/pkg/apierr"
	"github.com/tidingshq/tidings/pkg/auth"
)

// Budgets are the calls a second each kind of caller may make; zero means
// no limit for that kind.
type Budgets struct {
	Employee float64
	App      float64
	Admin    float64
	// Burst is how many seconds' worth of calls may come at once (at
	// least one call).
	Burst float64
}

// Limiter checks each call against its caller's budget.
type Limiter struct {
	rl      *redis_rate.Limiter
	limits  map[auth.Kind]redis_rate.Limit
	refused *prometheus.CounterVec
	errors  prometheus.Counter
	log     *slog.Logger
}

// New returns a Limiter keeping its budgets in rdb, registering its metrics
// on reg.
func New(rdb redis.UniversalClient, b Budgets, reg prometheus.Registerer, log *slog.Logger) (*Limiter, error) {
	l := &Limiter{
		rl:     redis_rate.NewLimiter(rdb),
		limits: map[auth.Kind]redis_rate.Limit{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidings_rate_limited_total",
			Help: "Calls refused because their caller was over its rate budget, by caller kind.",
		}, []string{"kind"}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tidings_rate_limit_errors_total",
			Help: "Calls let through unchecked because the rate budgets in Redis could not be read.",
		}),
		log: log,
	}
	for kind, perSecond := range map[auth.Kind]float64{auth.KindEmployee: b.Employee, auth.KindApp: b.App, auth.KindAdmin: b.Admin} {
		if perSecond > 0 {
			l.limits[kind] = limit(perSecond, b.Burst)
		}
	}
	for _, c := range []prometheus.Collector{l.refused, l.errors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register rate limit metrics: %w", err)
		}
	}
	return l, nil
}

// limit turns calls a second into a GCRA limit: whole rates per second,
// fractional ones per minute.
func limit(perSecond, burstSeconds float64) redis_rate.Limit {
	burst := max(1, int(math.Ceil(perSecond*max(burstSeconds, 1))))
	if perSecond == math.Trunc(perSecond) {
		return redis_rate.Limit{Rate: int(perSecond), Period: time.Second, Burst: burst}
	}
	return redis_rate.Limit{Rate: max(1, int(math.Round(perSecond*60))), Period: time.Minute, Burst: burst}
}

// Key is the Redis key (after redis_rate's "rate:" prefix) of a caller's
// budget.
func Key(id auth.Identity) string { return "tidings:{" + string(id.Kind) + ":" + id.ID + "}" }

// Allow returns nil when id may call now, else the ResourceExhausted error
// to send.
func (l *Limiter) Allow(ctx context.Context, id auth.Identity) error {
	lim, ok := l.limits[id.Kind]
	if !ok {
		return nil
	}
	res, err := l.rl.Allow(ctx, Key(id), lim)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.errors.Inc()
		l.log.WarnContext(ctx, "rate limit unchecked: budgets unreadable", "caller", id.String(), "error", err)
		return nil
	}
	if res.Allowed > 0 {
		return nil
	}
	l.refused.WithLabelValues(string(id.Kind)).Inc()
	return Exhausted(fmt.Sprintf("%s %s is over its budget of %s; retry after %s", id.Kind, id.ID, lim, res.RetryAfter.Round(time.Millisecond)), res.RetryAfter)
}

// Exhausted returns a ResourceExhausted error with an ErrorInfo
// (LIMIT_EXCEEDED) and a RetryInfo of retryAfter.
func Exhausted(msg string, retryAfter time.Duration) error {
	st := status.New(codes.ResourceExhausted, msg)
	withDetails, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: apierr.ReasonLimitExceeded, Domain: apierr.Domain},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(max(retryAfter, time.Millisecond))},
	)
	if err != nil {
		return st.Err()
	}
	return withDetails.Err()
}
