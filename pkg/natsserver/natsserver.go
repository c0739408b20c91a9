// Package natsserver runs an embedded NATS server with JetStream in the
// current process: the one `tidings dev` uses, and the ones tests start on
// random loopback ports with their own store directories.
package natsserver

import (
	"errors"
	"fmt"
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
