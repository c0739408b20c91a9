package cli_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/services/stacktest"
	"github.com/tidingshq/tidings/services/tidings/cli"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// TestDeadLettersCommands runs `tidings deadletters list` and `replay`
// against a served stack with its worker.
func TestDeadLettersCommands(t *testing.T) {
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana")
	s.WaitCaughtUp(t)
	last, found, err := s.Env.Log.LastOnSubject(t.Context(), eventlog.StreamProfiles, eventlog.ProfileSubject("ana"))
	require.NoError(t, err)
	require.True(t, found)
	msg := &nats.Msg{Subject: eventlog.DeadLetterSubject(eventlog.StreamProfiles, "profiles-projector"), Data: last.Data, Header: nats.Header{}}
	msg.Header.Set(eventlog.HeaderDeadStream, eventlog.StreamProfiles)
	msg.Header.Set(eventlog.HeaderDeadConsumer, "profiles-projector")
	msg.Header.Set(eventlog.HeaderDeadSubject, eventlog.ProfileSubject("ana"))
	msg.Header.Set(eventlog.HeaderDeadSequence, "1")
	msg.Header.Set(eventlog.HeaderDeadError, "index went missing")
	_, err = s.Env.JS.PublishMsg(t.Context(), msg)
	require.NoError(t, err)

	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		args = append(args, "--addr", s.Server.Addr, "--token", testenv.Token(t, testenv.Admin))
		code := cli.Execute(t.Context(), args, &out, &errOut)
		require.Zero(t, code, "tidings %s: %s", strings.Join(args, " "), errOut.String())
		return out.String()
	}
	listed := run("deadletters", "list", "--stream", "PROFILES")
	require.Contains(t, listed, "profiles-projector")
	require.Contains(t, listed, "index went missing")
	require.Contains(t, run("deadletters", "replay", "--consumer", "profiles-projector"), "1 dead letters")
	testenv.Eventually(t, 30*time.Second, func() bool {
		return !strings.Contains(run("deadletters", "list"), "profiles-projector")
	}, "the dead letter was not re-driven")
}
