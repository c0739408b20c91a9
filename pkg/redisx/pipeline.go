package redisx

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Result is the outcome of a command queued on a pipeline, known once the
// pipeline has run.
type Result[T any] func() (T, error)

var (
	scriptsMu sync.Mutex
	scripts   []*redis.Script
)

// NewScript returns a Lua script and registers it, so that LoadScripts
// loads it and Pipeline reloads it after a server restart.
func NewScript(src string) *redis.Script {
	s := redis.NewScript(src)
	scriptsMu.Lock()
	scripts = append(scripts, s)
	scriptsMu.Unlock()
	return s
}

// LoadScripts loads every registered script (on every master of a cluster).
func LoadScripts(ctx context.Context, rdb redis.UniversalClient) error {
	scriptsMu.Lock()
	list := append([]*redis.Script(nil), scripts...)
	scriptsMu.Unlock()
	for _, s := range list {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			return fmt.Errorf("load scripts: %w", err)
		}
	}
	return nil
}

// Pipeline sends the commands fn queues in one pipeline (one round trip per
// node). If the server lacks a script (it restarted), Pipeline loads every
// registered script and calls fn again, so fn must only queue commands and
// keep their results, each run afresh. A missing key (redis.Nil) is no error
// here: the command's own result says so. Otherwise the first failed
// command's error is returned.
func Pipeline(ctx context.Context, rdb redis.UniversalClient, fn func(pipe redis.Pipeliner) error) error {
	for attempt := 0; ; attempt++ {
		pipe := rdb.Pipeline()
		if err := fn(pipe); err != nil {
			pipe.Discard()
			return err
		}
		cmds, _ := pipe.Exec(ctx)
		var first error
		noScript := false
		for _, c := range cmds {
			err := c.Err()
			if err == nil || errors.Is(err, redis.Nil) {
				continue
			}
			if redis.HasErrorPrefix(err, "NOSCRIPT") {
				noScript = true
			}
			if first == nil {
				first = err
			}
		}
		if noScript && attempt == 0 {
			if err := LoadScripts(ctx, rdb); err != nil {
				return err
			}
			continue
		}
		return first
	}
}

// Run sends the one command queue puts on a pipeline (as Pipeline does,
// reloading scripts when needed) and returns its result. It is how a
// store's plain method runs its Queue… form.
func Run[T any](ctx context.Context, rdb redis.UniversalClient, queue func(pipe redis.Pipeliner) Result[T]) (T, error) {
	var res Result[T]
	err := Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		res = queue(pipe)
		return nil
	})
	if v, cmdErr := res(); cmdErr != nil || err == nil {
		// The command's own error says what failed, in the store's words.
		return v, cmdErr
	}
	var zero T
	return zero, err
}
