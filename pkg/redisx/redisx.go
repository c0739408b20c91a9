// Package redisx opens the Redis client every Tidings process uses and holds
// the few helpers the Redis stores share. Every access goes through
// redis.UniversalClient, so the same code runs on one server or on a Redis
// Cluster.
package redisx

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/faults"
)

// Prefix starts every key Tidings writes.
const Prefix = "tidings:"

// Timeouts of the Redis clients. A command against a node that has
// vanished fails in seconds, so that the caller (or the consumer's
// transient retry) goes on, rather than waiting on a dead peer.
const (
	dialTimeout  = 2 * time.Second
	ioTimeout    = 3 * time.Second
	dialAttempts = 2
)

// ClusterRefreshInterval bounds how old a Redis Cluster client's slot map
// may get while commands succeed. go-redis refreshes it at once on MOVED
// and READONLY replies, but a primary that died answers nothing, so
// without a refresh the client keeps dialling it until the next periodic
// reload (60 s by default), long after its replica took over. NewClient
// also refreshes the map whenever a command meets a transient failure
// (see reloadOnFailure), so a failover costs the cluster's own detection
// time plus about one round trip.
const ClusterRefreshInterval = 5 * time.Second

// NewClient returns a client for one server (one address) or a Redis
// Cluster (several seed addresses).
//
// On a cluster, commands go to primaries only (ReadOnly off: reading
// replicas would show timelines and graphs that lag behind the log); up to
// 8 MOVED/ASK redirects or retries of CLUSTERDOWN and TRYAGAIN are
// followed within one command (a slot migration or a failover under way);
// the slot map is reloaded every ClusterRefreshInterval and on any
// transient failure.
func NewClient(addrs []string, password string) redis.UniversalClient {
	if len(addrs) > 1 {
		c := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:                      addrs,
			Password:                   password,
			MaxRedirects:               8,
			DialTimeout:                dialTimeout,
			DialerRetries:              dialAttempts,
			ReadTimeout:                ioTimeout,
			WriteTimeout:               ioTimeout,
			ClusterStateReloadInterval: ClusterRefreshInterval,
		})
		c.AddHook(reloadOnFailure{c})
		return c
	}
	return redis.NewClient(&redis.Options{
		Addr:     addrs[0],
		Password: password,
		// Fail fast and let the caller (or JetStream redelivery) retry.
		MaxRetries:    2,
		DialTimeout:   dialTimeout,
		DialerRetries: dialAttempts,
	})
}

// reloadOnFailure asks a cluster client to reload its slot map whenever a
// command or pipeline meets a transient failure: a node that refuses
// connections, times out or answers CLUSTERDOWN may no longer serve its
// slots. Reloads run in the background and are coalesced by go-redis.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && faults.IsTransient(err) {
			h.c.ReloadState(ctx)
		}
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if cerr := cmd.Err(); cerr != nil && faults.IsTransient(cerr) {
				h.c.ReloadState(ctx)
				break
			}
		}
		return err
	}
}

// Health reports whether Redis can serve: the server answers PING, or, on
// a cluster, every primary answers PING and reports cluster_state:ok (every
// slot served). A cluster with one primary down is unhealthy until its
// replica has taken over.
func Health(ctx context.Context, rdb redis.UniversalClient) error {
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("ping redis: %w", err)
		}
		return nil
	}
	err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		addr := m.Options().Addr
		if err := m.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("ping redis primary %s: %w", addr, err)
		}
		info, err := m.ClusterInfo(ctx).Result()
		if err != nil {
			return fmt.Errorf("cluster info of %s: %w", addr, err)
		}
		if !strings.Contains(info, "cluster_state:ok") {
			return fmt.Errorf("redis primary %s: cluster state is not ok", addr)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis cluster: %w", err)
	}
	return nil
}

// DeleteMatching deletes every key matching pattern, on every primary of a
// cluster, in batches, and returns how many it deleted. Keys are unlinked
// one command each, pipelined (one round trip per node and batch): a
// command with several keys fails on a cluster when they live in
// different slots (CROSSSLOT), which keys matched by a pattern do.
func DeleteMatching(ctx context.Context, rdb redis.UniversalClient, pattern string) (int64, error) {
	var total int64
	err := ScanKeys(ctx, rdb, pattern, 1000, func(keys []string) error {
		cmds := make([]*redis.IntCmd, len(keys))
		_, err := rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, k := range keys {
				cmds[i] = pipe.Unlink(ctx, k)
			}
			return nil
		})
		for _, c := range cmds {
			total += c.Val()
		}
		return err
	})
	if err != nil {
		return total, fmt.Errorf("delete %s: %w", pattern, err)
	}
	return total, nil
}

// ScanKeys calls fn with batches of the keys matching pattern, on every
// master of a cluster, holding one batch in memory at a time. A key may be
// reported twice (SCAN's guarantee), never missed.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string, batch int64, fn func(keys []string) error) error {
	scan := func(ctx context.Context, c *redis.Client) error {
		iter := c.Scan(ctx, 0, pattern, batch).Iterator()
		buf := make([]string, 0, batch)
		for iter.Next(ctx) {
			buf = append(buf, iter.Val())
			if int64(len(buf)) == batch {
				if err := fn(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if err := iter.Err(); err != nil {
			return fmt.Errorf("scan %s: %w", pattern, err)
		}
		if len(buf) > 0 {
			return fn(buf)
		}
		return nil
	}
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		// ForEachMaster calls back concurrently: collect the masters, then
		// visit them one by one.
		var (
			mu      sync.Mutex
			masters []*redis.Client
		)
		if err := c.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
			mu.Lock()
			masters = append(masters, m)
			mu.Unlock()
			return nil
		}); err != nil {
			return fmt.Errorf("list masters: %w", err)
		}
		for _, m := range masters {
			if err := scan(ctx, m); err != nil {
				return err
			}
		}
		return nil
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("unsupported redis client %T", rdb)
}

// ScriptCall is one call of a script: its keys and arguments.
type ScriptCall struct {
	Keys []string
	Args []any
}

// RunScripts runs many calls of one script in one pipeline (one round trip
// per node), as Pipeline does, and returns the calls' results in order.
func RunScripts(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, calls []ScriptCall) ([]*redis.Cmd, error) {
	cmds := make([]*redis.Cmd, len(calls))
	err := Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		for i, c := range calls {
			cmds[i] = script.EvalSha(ctx, pipe, c.Keys, c.Args...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cmds, nil
}

// ShardTags returns one hash tag (without braces) per primary of a Redis
// Cluster, each hashing to a slot that primary serves, so that a key
// written under every tag lands on every shard. A single server has one
// shard and the tag "shard". Keys that must say something about each
// shard (the projections' watermarks) are written once per tag.
func ShardTags(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	c, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return []string{"shard"}, nil
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil {
		return nil, fmt.Errorf("cluster shards: %w", err)
	}
	// A shard is named by its primary; its slots say which tags land there.
	owner := func(slot int64) string {
		for _, sh := range shards {
			for _, r := range sh.Slots {
				if r.Start <= slot && slot <= r.End {
					return primaryOf(sh)
				}
			}
		}
		return ""
	}
	masters := map[string]bool{}
	for _, sh := range shards {
		if p := primaryOf(sh); p != "" && len(sh.Slots) > 0 {
			masters[p] = true
		}
	}
	var tags []string
	found := map[string]bool{}
	// Tags hash uniformly: a few candidates a primary find them all.
	for i := 0; len(found) < len(masters) && i < 64*len(masters); i++ {
		tag := "shard" + strconv.Itoa(i)
		slot, err := c.ClusterKeySlot(ctx, tag).Result()
		if err != nil {
			return nil, fmt.Errorf("cluster keyslot: %w", err)
		}
		if m := owner(slot); m != "" && !found[m] {
			found[m] = true
			tags = append(tags, tag)
		}
	}
	if len(found) < len(masters) {
		return nil, fmt.Errorf("no hash tag found for %d of %d redis primaries", len(masters)-len(found), len(masters))
	}
	return tags, nil
}

// primaryOf returns the id of a cluster shard's primary, or "" when it has
// none.
func primaryOf(sh redis.ClusterShard) string {
	for _, n := range sh.Nodes {
		if n.Role == "master" {
			return n.ID
		}
	}
	return ""
}
