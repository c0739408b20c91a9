package faults_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/faults"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// TestIsTransientOfPlainErrors classifies errors that need no server.
func TestIsTransientOfPlainErrors(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	decodeErr := proto.Unmarshal([]byte("\xff\xff\xff not protobuf"), &tidingsv1.ActivityEvent{})
	require.Error(t, decodeErr)
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"a caller's cancellation", fmt.Errorf("read: %w", ctx.Err()), false},
		{"a deadline", fmt.Errorf("read: %w", context.DeadlineExceeded), true},
		{"an undecodable event", fmt.Errorf("decode activity: %w", decodeErr), false},
		{"a plain error", errors.New("activity has no actor"), false},
		{"a cross-slot command (a bug)", redis.ErrCrossSlot, false},
		{"a closed redis client", fmt.Errorf("write: %w", redis.ErrClosed), true},
		{"an exhausted pool", redis.ErrPoolTimeout, true},
		{"no responders (no stream leader)", fmt.Errorf("publish: %w", nats.ErrNoResponders), true},
		{"no response from stream", jetstream.ErrNoStreamResponse, true},
		{"a missed heartbeat", fmt.Errorf("pull: %w", jetstream.ErrNoHeartbeat), true},
		{"a nats timeout", nats.ErrTimeout, true},
		{"a connection closed", nats.ErrConnectionClosed, true},
		{"jetstream temporarily unavailable", &jetstream.APIError{Code: 503, ErrorCode: 10008}, true},
		{"no cluster leader", fmt.Errorf("create: %w", &jetstream.APIError{Code: 500, ErrorCode: 10009}), true},
		{"a stream offline", &jetstream.APIError{Code: 500, ErrorCode: 10118}, true},
		{"a wrong last sequence (a conflict, not an outage)", &jetstream.APIError{Code: 400, ErrorCode: 10071}, false},
		{"a missing message", jetstream.ErrMsgNotFound, false},
		{"a missing stream", jetstream.ErrStreamNotFound, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, faults.IsTransient(tc.err), "%v", tc.err)
		})
	}
}

// TestIsTransientOfRealFailures classifies what a real redis-server, a real
// NATS server and a refused connection return.
func TestIsTransientOfRealFailures(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := ln.Addr().String()
	require.NoError(t, ln.Close())
	down := redis.NewClient(&redis.Options{Addr: closed, MaxRetries: -1, DialTimeout: time.Second})
	defer down.Close()
	err = down.Set(ctx, "k", "v", 0).Err()
	require.Error(t, err)
	require.True(t, faults.IsTransient(fmt.Errorf("write timeline: %w", err)), "refused: %v", err)

	// Server replies, as a failing-over or loading Redis sends them.
	srv := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	for reply, want := range map[string]bool{
		"CLUSTERDOWN The cluster is down":                                   true,
		"TRYAGAIN Multiple keys request during rehashing of slot":           true,
		"LOADING Redis is loading the dataset in memory":                    true,
		"MASTERDOWN Link with MASTER is down":                               true,
		"READONLY You can't write against a read only replica.":             true,
		"NOREPLICAS Not enough good replicas to write.":                     true,
		"OOM command not allowed when used memory > 'maxmemory'.":           true,
		"ERR max number of clients reached":                                 true,
		"WRONGTYPE Operation against a key holding the wrong kind of value": false,
		"ERR wrong number of arguments for 'zadd' command":                  false,
	} {
		err := rdb.Eval(ctx, "return redis.error_reply(ARGV[1])", nil, reply).Err()
		require.Error(t, err)
		require.Equal(t, want, faults.IsTransient(fmt.Errorf("apply: %w", err)), "%s", reply)
	}

	// A request nobody answers, on a real NATS server.
	ns := testenv.NATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	_, err = nc.Request("nobody.listens", nil, time.Second)
	require.True(t, faults.IsTransient(err), "%v", err)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.Publish(ctx, "no.stream.here", nil)
	require.True(t, faults.IsTransient(err), "a publish that no stream leader answers: %v", err)
	_, err = js.Stream(ctx, "NOSUCHSTREAM")
	require.False(t, faults.IsTransient(err), "%v", err)
}
