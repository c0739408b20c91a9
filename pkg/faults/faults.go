// Package faults tells the two kinds of failure apart: transient ones, where
// the infrastructure (Redis, NATS JetStream, the network between them) is
// unreachable, overloaded or changing leaders, and everything else. A
// transient failure says nothing about the work that met it: the same work
// succeeds once the infrastructure is back, so it is retried for as long as
// the outage lasts and reported to callers as Unavailable. Any other failure
// is the work's own (an event that cannot be decoded, a bug), so retrying it
// forever would only stall what comes after it.
//
// The consumers of pkg/eventlog use IsTransient to decide between retrying
// an event in place and, after its last delivery, dead-lettering it;
// pkg/apierr uses it to turn outages into Unavailable rather than Internal.
package faults

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// IsTransient reports whether err comes from infrastructure that is
// unreachable, timing out or failing over, rather than from the work that
// met it. Wrapped errors are looked through.
//
// Transient are: network errors (connection refused or reset, broken
// pipes, i/o timeouts, a connection closed under a command), a context
// deadline (the dependency did not answer in time; a caller's own
// cancellation is not transient), Redis's CLUSTERDOWN, TRYAGAIN, LOADING,
// MASTERDOWN, READONLY (a write that reached a demoted primary during a
// failover), NOREPLICAS, NOSCRIPT (a restarted server lost its scripts),
// OOM, a full client table and authentication failures (a credential
// rotation is an operator's matter, never an event's), an exhausted or
// timed-out connection pool and a closed client; NATS's timeouts, missing
// responders (no stream leader), disconnections and reconnections, missing
// heartbeats, and JetStream API errors with status 503 or that name a
// leader election or an offline stream or consumer.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	return isNetwork(err) || isRedis(err) || isNATS(err)
}

// isNetwork reports failures of the connection itself.
func isNetwork(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) {
		// *net.OpError (dial, read, write), timeouts, DNS failures.
		return true
	}
	for _, target := range []error{
		io.EOF, io.ErrUnexpectedEOF, io.ErrClosedPipe, net.ErrClosed,
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED, syscall.EPIPE,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// redisTransientPrefixes are the Redis error replies that describe the
// server's state, not the command.
var redisTransientPrefixes = []string{
	"CLUSTERDOWN", "TRYAGAIN", "LOADING", "MASTERDOWN", "READONLY", "NOREPLICAS",
	"NOSCRIPT", "OOM", "BUSY", "NOAUTH", "WRONGPASS",
	"ERR max number of clients reached",
	// MOVED and ASK reach the caller only when a slot keeps moving past the
	// client's redirect budget: a resharding or failover under way.
	"MOVED", "ASK",
}

func isRedis(err error) bool {
	if errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) {
		return true
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return false
	}
	msg := rerr.Error()
	for _, p := range redisTransientPrefixes {
		if strings.HasPrefix(msg, p+" ") || msg == p || (strings.HasPrefix(p, "ERR ") && strings.HasPrefix(msg, p)) {
			return true
		}
	}
	return false
}

// natsTransient are the NATS and JetStream client errors of a connection or
// a cluster in trouble.
var natsTransient = []error{
	nats.ErrTimeout, nats.ErrNoResponders, nats.ErrConnectionClosed, nats.ErrConnectionDraining,
	nats.ErrConnectionReconnecting, nats.ErrDisconnected, nats.ErrNoServers, nats.ErrStaleConnection,
	nats.ErrMaxConnectionsExceeded, nats.ErrSlowConsumer,
	jetstream.ErrNoHeartbeat, jetstream.ErrNoStreamResponse, jetstream.ErrConnectionClosed,
	jetstream.ErrServerShutdown, jetstream.ErrConsumerLeadershipChanged, jetstream.ErrAsyncPublishTimeout,
	jetstream.ErrTooManyStalledMsgs, jetstream.ErrJetStreamPublisherClosed,
}

// JetStream API error codes (nats-server's errors.json) of a cluster that
// is electing leaders or has lost a peer, whatever their HTTP-like status.
const (
	codeClusterNotAssigned = 10007 // JetStream cluster not assigned to this server
	codeClusterNotLeader   = 10009 // JetStream cluster can not handle request
	codeStreamOffline      = 10118 // stream is offline
	codeConsumerOffline    = 10119 // consumer is offline
)

func isNATS(err error) bool {
	for _, target := range natsTransient {
		if errors.Is(err, target) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Code == 503 || apiErr.Code == 408 {
			return true
		}
		switch apiErr.ErrorCode {
		case codeClusterNotAssigned, codeClusterNotLeader, codeStreamOffline, codeConsumerOffline:
			return true
		}
	}
	return false
}
