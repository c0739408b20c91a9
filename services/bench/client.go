package bench

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tidingshq/tidings/pkg/auth"
	"github.com/tidingshq/tidings/pkg/redisx"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// The callers the bench acts as, besides its synthetic employees.
var (
	adminCaller = auth.Identity{Kind: auth.KindAdmin, ID: "bench"}
	hrApp       = auth.Identity{Kind: auth.KindApp, ID: "hr", Roles: []string{auth.RoleDirectory}}
	crmApp      = auth.Identity{Kind: auth.KindApp, ID: "crm"}
	commsApp    = auth.Identity{Kind: auth.KindApp, ID: "comms"}
)

// client calls a target through its public gRPC API as any caller, and
// reads its Redis and /metrics for the figures that are not the API's.
type client struct {
	target Target
	conn   *grpc.ClientConn
	rdb    redis.UniversalClient
	http   *http.Client
	tokens auth.TokenConfig
	mu     sync.Mutex
	creds  map[string]grpc.CallOption
	// js is the bench's own NATS connection, when the target names its
	// NATS; nil otherwise.
	js *jsClient

	profiles   tidingsv1.ProfileServiceClient
	records    tidingsv1.RecordServiceClient
	activities tidingsv1.ActivityServiceClient
	timelines  tidingsv1.TimelineServiceClient
	admin      tidingsv1.AdminServiceClient
}

func newClient(t Target) (*client, error) {
	conn, err := grpc.NewClient(t.GRPCAddr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)),
	)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", t.GRPCAddr, err)
	}
	var js *jsClient
	if t.NATSURL != "" {
		if js, err = dialJetStream(t.NATSURL); err != nil {
			_ = conn.Close()
			return nil, err
		}
	}
	return &client{
		js:         js,
		target:     t,
		conn:       conn,
		rdb:        redisx.NewClient([]string{t.RedisAddr}, ""),
		http:       &http.Client{Timeout: 5 * time.Second},
		tokens:     auth.TokenConfig{Secret: []byte(t.Secret), Issuer: t.Issuer, Audience: t.Audience},
		creds:      map[string]grpc.CallOption{},
		profiles:   tidingsv1.NewProfileServiceClient(conn),
		records:    tidingsv1.NewRecordServiceClient(conn),
		activities: tidingsv1.NewActivityServiceClient(conn),
		timelines:  tidingsv1.NewTimelineServiceClient(conn),
		admin:      tidingsv1.NewAdminServiceClient(conn),
	}, nil
}

func (c *client) close() {
	if c.js != nil {
		c.js.close()
	}
	_ = c.conn.Close()
	_ = c.rdb.Close()
}

// as returns the call option that authenticates as id; tokens are minted
// once per caller and live for a day.
func (c *client) as(id auth.Identity) grpc.CallOption {
	key := string(id.Kind) + "/" + id.ID
	c.mu.Lock()
	defer c.mu.Unlock()
	if o, ok := c.creds[key]; ok {
		return o
	}
	tok, err := auth.Mint(c.tokens, id, 24*time.Hour, time.Now())
	if err != nil {
		// The config was checked by the first mint (the admin's); a
		// failure here is a programming error.
		panic(fmt.Sprintf("mint token for %s: %v", key, err))
	}
	o := grpc.PerRPCCredentials(auth.PerRPCToken(tok))
	c.creds[key] = o
	return o
}

// employee authenticates as a synthetic employee.
func (c *client) employee(user string) grpc.CallOption {
	return c.as(auth.Identity{Kind: auth.KindEmployee, ID: user})
}

// check mints the admin token, which proves the secret is usable, and
// asks for the system status, which proves the target answers.
func (c *client) check(ctx context.Context) error {
	if _, err := auth.Mint(c.tokens, adminCaller, time.Hour, time.Now()); err != nil {
		return fmt.Errorf("mint tokens with the target's secret: %w", err)
	}
	if _, err := c.admin.GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{}, c.as(adminCaller)); err != nil {
		return fmt.Errorf("target %s does not answer GetSystemStatus: %w", c.target.GRPCAddr, err)
	}
	if err := c.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("target redis %s: %w", c.target.RedisAddr, err)
	}
	if _, err := c.metric(ctx, deliveriesMetric); err != nil {
		return err
	}
	return nil
}

// waitCaughtUp polls the system status until every durable consumer has
// nothing pending and nothing unacknowledged, and returns when it saw so.
func (c *client) waitCaughtUp(ctx context.Context, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		st, err := c.admin.GetSystemStatus(ctx, &tidingsv1.GetSystemStatusRequest{}, c.as(adminCaller))
		if err != nil {
			return time.Time{}, fmt.Errorf("system status: %w", err)
		}
		now := time.Now()
		behind, left := "", uint64(0)
		for _, cs := range st.GetConsumers() {
			if cs.GetPending() > 0 || cs.GetAckPending() > 0 {
				behind = fmt.Sprintf("%s/%s: %d pending, %d unacknowledged", cs.GetStream(), cs.GetName(), cs.GetPending(), cs.GetAckPending())
				left += cs.GetPending() + uint64(cs.GetAckPending())
			}
		}
		if behind == "" {
			return now, nil
		}
		if now.After(deadline) {
			return time.Time{}, fmt.Errorf("worker not caught up after %s (%s)", limit, behind)
		}
		// A status costs the stack a JetStream API call per consumer:
		// poll often only near the end, where the resolution matters.
		wait := 10 * time.Millisecond
		if left > 1000 {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(wait):
		}
	}
}

// drained waits until the worker has caught up with what was posted since
// start, and returns the seconds from start until then and the deliveries
// the worker counted since its counter read before.
func (c *client) drained(ctx context.Context, start time.Time, before float64) (seconds float64, deliveries int64, err error) {
	end, err := c.waitCaughtUp(ctx, 10*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	after, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return 0, 0, err
	}
	return end.Sub(start).Seconds(), int64(after - before), nil
}

// The metrics the bench reads from the target's /metrics.
const (
	deliveriesMetric = "tidings_fanout_deliveries_total"
	rssMetric        = "process_resident_memory_bytes"
)

// metric reads one unlabelled counter or gauge from the target's /metrics.
func (c *client) metric(ctx context.Context, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.target.MetricsURL, nil)
	if err != nil {
		return 0, fmt.Errorf("metrics request: %w", err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", c.target.MetricsURL, err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", c.target.MetricsURL, err)
	}
	f, ok := fams[name]
	if !ok || len(f.GetMetric()) == 0 {
		return 0, fmt.Errorf("%s has no %s: is the worker running there, and is it this version of Tidings?", c.target.MetricsURL, name)
	}
	m := f.GetMetric()[0]
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue(), nil
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue(), nil
	}
	return 0, fmt.Errorf("%s: %s is neither a counter nor a gauge", c.target.MetricsURL, name)
}
