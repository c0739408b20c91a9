package redisserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Dir holds each node's files, in a directory per node.
	Dir string
	// Primaries is the number of primaries, which share the 16,384 slots;
	// 3 when zero (the fewest with which a cluster elects a new primary
	// after losing one).
	Primaries int
	// Replicas is the number of replicas of each primary; none when zero.
	Replicas int
	// NodeTimeout is how long a node may be unreachable before it is
	// considered failed (cluster-node-timeout); 1s when zero, production
	// uses 5 to 15 s.
	NodeTimeout time.Duration
}

// Cluster is a Redis Cluster of redis-server child processes on loopback.
type Cluster struct {
	// Primaries are the primaries as created, in slot order; after a
	// failover one of them may be a replica.
	Primaries []*Server
	// Replicas[i] are the replicas created for Primaries[i].
	Replicas [][]*Server

	busPorts map[*Server]int
}

const clusterSlots = 16384

// StartCluster starts a Redis Cluster on loopback: the primaries share the
// slots evenly, each has its replicas, and StartCluster returns once every
// node reports cluster_state:ok and every replica is in sync.
func StartCluster(ctx context.Context, opts ClusterOptions) (*Cluster, error) {
	if opts.Primaries == 0 {
		opts.Primaries = 3
	}
	if opts.NodeTimeout == 0 {
		opts.NodeTimeout = time.Second
	}
	c := &Cluster{Replicas: make([][]*Server, opts.Primaries), busPorts: map[*Server]int{}}
	start := func(name string) (*Server, error) {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		s, err := Start(ctx, Options{
			Dir:  filepath.Join(opts.Dir, name),
			Port: port,
			Args: []string{
				"cluster-enabled", "yes",
				"cluster-config-file", "nodes.conf",
				"cluster-node-timeout", strconv.FormatInt(opts.NodeTimeout.Milliseconds(), 10),
				"cluster-port", strconv.Itoa(bus),
				// A replica takes over however long it was cut off.
				"cluster-replica-validity-factor", "0",
			},
		})
		if err != nil {
			return nil, err
		}
		c.busPorts[s] = bus
		return s, nil
	}
	for i := range opts.Primaries {
		s, err := start(fmt.Sprintf("primary-%d", i))
		if err != nil {
			c.Kill()
			return nil, err
		}
		c.Primaries = append(c.Primaries, s)
		for j := range opts.Replicas {
			r, err := start(fmt.Sprintf("replica-%d-%d", i, j))
			if err != nil {
				c.Kill()
				return nil, err
			}
			c.Replicas[i] = append(c.Replicas[i], r)
		}
	}
	if err := c.create(ctx, opts); err != nil {
		c.Kill()
		return nil, err
	}
	return c, nil
}

// create introduces the nodes to each other, assigns the slots and makes
// the replicas replicate, as `redis-cli --cluster create` does.
func (c *Cluster) create(ctx context.Context, opts ClusterOptions) error {
	nodes := c.Nodes()
	clients := make(map[*Server]*redis.Client, len(nodes))
	for _, s := range nodes {
		clients[s] = redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	}
	defer func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}()
	first := clients[nodes[0]]
	for _, s := range nodes[1:] {
		host, port, _ := net.SplitHostPort(s.Addr())
		if err := first.Do(ctx, "CLUSTER", "MEET", host, port, c.busPorts[s]).Err(); err != nil {
			return fmt.Errorf("cluster meet %s: %w", s.Addr(), err)
		}
	}
	per := clusterSlots / len(c.Primaries)
	for i, s := range c.Primaries {
		lo, hi := i*per, (i+1)*per-1
		if i == len(c.Primaries)-1 {
			hi = clusterSlots - 1
		}
		if err := clients[s].ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			return fmt.Errorf("assign slots %d-%d to %s: %w", lo, hi, s.Addr(), err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// A replica can follow its primary once it knows the primary's id.
	for i, p := range c.Primaries {
		id, err := clients[p].ClusterMyID(ctx).Result()
		if err != nil {
			return fmt.Errorf("node id of %s: %w", p.Addr(), err)
		}
		for _, r := range c.Replicas[i] {
			err := poll(ctx, func() error {
				actx, cancel := context.WithTimeout(ctx, 2*time.Second)
				defer cancel()
				return clients[r].ClusterReplicate(actx, id).Err()
			})
			if err != nil {
				return fmt.Errorf("%s replicate %s: %w", r.Addr(), p.Addr(), err)
			}
		}
	}
	return c.WaitOK(ctx)
}

// WaitOK waits until every running node reports cluster_state:ok, knows
// every other node, and every replica is in sync with its primary.
func (c *Cluster) WaitOK(ctx context.Context) error {
	for _, s := range c.Nodes() {
		if s.stopped() {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		err := poll(ctx, func() error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return errors.New("cluster_state is not ok")
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return errors.New("replica not in sync")
			}
			return nil
		})
		_ = cl.Close()
		if err != nil {
			return fmt.Errorf("redis cluster node %s: %w", s.Addr(), err)
		}
	}
	return nil
}

// poll calls fn every 20ms until it succeeds or ctx ends.
func poll(ctx context.Context, fn func() error) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// Nodes returns every node, primaries first.
func (c *Cluster) Nodes() []*Server {
	nodes := append([]*Server(nil), c.Primaries...)
	for _, rs := range c.Replicas {
		nodes = append(nodes, rs...)
	}
	return nodes
}

// Addrs returns the addresses of the primaries, the seeds a client is given.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Primaries))
	for i, s := range c.Primaries {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Kill kills every node.
func (c *Cluster) Kill() {
	for _, s := range c.Nodes() {
		_ = s.Kill()
	}
}
