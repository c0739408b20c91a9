package stack

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/audit"
	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
)

// TestStartTogetherOnFreshCluster covers finding 5 of issue 14: processes
// started at once on a fresh NATS cluster used to fail `ensure stream
// PROFILES: context deadline exceeded` and exit. Four "processes" (each
// with its own NATS connection, to different servers) run the start-up
// path at once against a 3-node cluster that has just started (no
// JetStream meta leader yet), with R3 streams: the streams, the settings
// bucket and the worker's durable consumers. All must come up.
func TestStartTogetherOnFreshCluster(t *testing.T) {
	cluster := testenv.NATSCluster(t)
	cfg := config.Default()
	cfg.StreamReplicas = 3
	cfg.NATSURL = cluster.ClientURLs()

	const processes = 4
	errs := make([]error, processes)
	var wg sync.WaitGroup
	for i := range processes {
		cfg := cfg
		cfg.NATSURL = cluster.Servers[i%len(cluster.Servers)].ClientURL()
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			d, err := connect(ctx, cfg, testenv.Logger())
			if err != nil {
				errs[i] = fmt.Errorf("process %d: %w", i, err)
				return
			}
			defer d.close()
			if err := audit.EnsureStream(ctx, d.js, cfg.StreamReplicas, cfg.AuditMaxAge); err != nil {
				errs[i] = fmt.Errorf("process %d: %w", i, err)
				return
			}
			for _, spec := range projection.ConsumerSpecs() {
				if _, err := d.log.EnsureConsumer(ctx, spec); err != nil {
					errs[i] = fmt.Errorf("process %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d, err := connect(ctx, cfg, testenv.Logger())
	require.NoError(t, err)
	defer d.close()
	for _, sc := range eventlog.StreamConfigs(eventlog.StreamOptions{}) {
		s, err := d.js.Stream(ctx, sc.Name)
		require.NoError(t, err)
		require.Equal(t, 3, s.CachedInfo().Config.Replicas, "stream %s", sc.Name)
	}
	for _, spec := range projection.ConsumerSpecs() {
		_, err := d.js.Consumer(ctx, spec.Stream, spec.Durable)
		require.NoError(t, err, "consumer %s", spec.Durable)
	}
}
