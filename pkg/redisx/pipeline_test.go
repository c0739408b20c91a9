package redisx_test

import (
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
)

var echoScript = redisx.NewScript(`return ARGV[1]`)

// TestPipelineReloadsScripts checks that a pipeline of script calls works
// on a server that has never seen the script, or has lost it, and that a
// missing key is not an error of the pipeline.
func TestPipelineReloadsScripts(t *testing.T) {
	ctx := t.Context()
	srv := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })

	for _, flush := range []bool{false, true} {
		if flush {
			require.NoError(t, rdb.ScriptFlush(ctx).Err(), "as after a server restart")
		}
		var (
			echo    *redis.Cmd
			missing *redis.StringCmd
			runs    int
		)
		err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
			runs++
			echo = echoScript.EvalSha(ctx, pipe, nil, "hello")
			missing = pipe.Get(ctx, "no such key")
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, runs, "run again once the scripts are loaded")
		got, err := echo.Text()
		require.NoError(t, err)
		require.Equal(t, "hello", got)
		require.ErrorIs(t, missing.Err(), redis.Nil)
	}

	// Once loaded, one run is enough; a failed command is the pipeline's error.
	runs := 0
	err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		runs++
		echoScript.EvalSha(ctx, pipe, nil, "again")
		pipe.Do(ctx, "NO-SUCH-COMMAND")
		return nil
	})
	require.Error(t, err)
	require.Equal(t, 1, runs)

	// fn's own error sends nothing.
	boom := errors.New("boom")
	require.ErrorIs(t, redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		pipe.Set(ctx, "written", "1", 0)
		return boom
	}), boom)
	require.Zero(t, rdb.Exists(ctx, "written").Val())
}
