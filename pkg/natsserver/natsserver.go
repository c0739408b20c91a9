// Package natsserver runs an embedded NATS server with JetStream in the
// current process: the one `tidings dev` uses, and the ones tests start on
// random loopback ports with their own store directories.
package natsserver

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure an embedded server.
type Options struct {
	// StoreDir holds JetStream's files.
	StoreDir string
	// Port on 127.0.0.1; -1 picks a random one.
	Port int
	// SyncAlways fsyncs every write before acknowledging it, as production
	// event streams do; off, JetStream syncs lazily (the default).
	SyncAlways bool
	// Name is the server name; one is made up when empty.
	Name string
}

// Start starts the server and waits until it accepts connections.
func Start(opts Options) (*server.Server, error) {
	if opts.StoreDir == "" {
		return nil, errors.New("nats store directory must be set")
	}
	if opts.Port == 0 {
		opts.Port = -1
	}
	so := &server.Options{
		ServerName: opts.Name,
		Host:       "127.0.0.1",
		Port:       opts.Port,
		JetStream:  true,
		StoreDir:   opts.StoreDir,
		SyncAlways: opts.SyncAlways,
		NoSigs:     true,
		NoLog:      true,
		// The default 1MiB is far above what Tidings events need; keep it.
		MaxPayload: 1 << 20,
	}
	s, err := server.NewServer(so)
	if err != nil {
		return nil, fmt.Errorf("configure nats server: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		return nil, errors.New("nats server not ready after 15s")
	}
	return s, nil
}

// ClusterOptions configure StartCluster.
type ClusterOptions struct {
	// Dir holds each server's JetStream store, in a directory per server.
	Dir string
	// Size is the number of servers; 3 when zero.
	Size int
	// Name names the cluster and, with a number, its servers; "tidings"
	// when empty.
	Name string
	// SyncAlways is as in Options.
	SyncAlways bool
}

// Cluster is a cluster of embedded JetStream servers on loopback, routed to
// each other: what production runs as three processes on three machines
// (JetStream R3), in one process for tests.
type Cluster struct {
	Servers []*server.Server
}

// StartCluster starts a cluster of JetStream servers on random loopback
// ports and returns once every server accepts client connections. The
// servers find each other through routes to every member (as a static
// production configuration lists them); JetStream elects its meta leader
// on its own, so a cluster that has just started may not yet answer
// JetStream requests, as a fresh production cluster does not.
func StartCluster(opts ClusterOptions) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("nats cluster directory must be set")
	}
	if opts.Size == 0 {
		opts.Size = 3
	}
	if opts.Name == "" {
		opts.Name = "tidings"
	}
	ports := make([]int, opts.Size)
	routes := make([]string, opts.Size)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
		routes[i] = fmt.Sprintf("nats-route://127.0.0.1:%d", p)
	}
	c := &Cluster{}
	for i := range opts.Size {
		name := fmt.Sprintf("%s-%d", opts.Name, i+1)
		so := &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   filepath.Join(opts.Dir, name),
			SyncAlways: opts.SyncAlways,
			NoSigs:     true,
			NoLog:      true,
			MaxPayload: 1 << 20,
			Cluster:    server.ClusterOpts{Name: opts.Name, Host: "127.0.0.1", Port: ports[i]},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(so)
		if err != nil {
			c.Shutdown()
			return nil, fmt.Errorf("configure nats server %s: %w", name, err)
		}
		go s.Start()
		c.Servers = append(c.Servers, s)
	}
	for _, s := range c.Servers {
		if !s.ReadyForConnections(15 * time.Second) {
			c.Shutdown()
			return nil, fmt.Errorf("nats server %s not ready after 15s", s.Name())
		}
	}
	return c, nil
}

// ClientURLs returns every server's client URL, comma-separated, as
// --nats-url takes them.
func (c *Cluster) ClientURLs() string {
	urls := make([]string, len(c.Servers))
	for i, s := range c.Servers {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Shutdown stops every server and waits for them to exit.
func (c *Cluster) Shutdown() {
	for _, s := range c.Servers {
		s.Shutdown()
	}
	for _, s := range c.Servers {
		s.WaitForShutdown()
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
