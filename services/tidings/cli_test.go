package main_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/testenv"
)

// TestCLIConversationTour runs the README's conversation commands with the
// real binary against `tidings dev`: post, comment, react, the
// notifications (list, unread, read), bookmarks and the home feed by
// latest activity.
func TestCLIConversationTour(t *testing.T) {
	dataDir := t.TempDir()
	dev := startDev(t, dataDir, devPorts{grpc: freePort(t), http: freePort(t), nats: freePort(t), redis: freePort(t)})
	dev.waitServing(t, apiServices)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(binary, append(args, "--addr", dev.grpcAddr, "--data-dir", dataDir)...).CombinedOutput()
		require.NoError(t, err, "tidings %s:\n%s", strings.Join(args, " "), out)
		return string(out)
	}
	run("profile", "upsert", "ana", "--name", "Ana Lima")
	run("profile", "upsert", "bo", "--name", "Bo Chen")
	var posted struct{ ID string }
	require.NoError(t, json.Unmarshal([]byte(run("post", "ana", "Closing the Acme deal today")), &posted))
	require.NotEmpty(t, posted.ID)

	// protojson varies its spacing from build to build on purpose: compare
	// fields, not text.
	var comment struct{ AuthorUserID string }
	require.NoError(t, json.Unmarshal([]byte(run("comment", "add", "bo", posted.ID, "Great work, @ana")), &comment))
	require.Equal(t, "bo", comment.AuthorUserID)
	run("react", "bo", posted.ID, "celebrate")
	require.Contains(t, run("comment", "list", posted.ID), "Great work, @ana")
	require.Contains(t, run("react", "list", posted.ID), "1 celebrate")

	var unread string
	testenv.Eventually(t, 30*time.Second, func() bool {
		unread = run("notifications", "unread", "ana")
		return strings.HasPrefix(unread, "2 unread")
	}, "ana's unread notifications: %s", unread)
	list := run("notifications", "list", "ana")
	require.Contains(t, list, "Bo Chen mentioned you in a comment")
	require.Contains(t, list, "Bo Chen reacted to your post")
	var marked struct{ Marked bool }
	require.NoError(t, json.Unmarshal([]byte(run("notifications", "read", "ana")), &marked))
	require.True(t, marked.Marked)
	require.True(t, strings.HasPrefix(run("notifications", "unread", "ana"), "0 unread"))

	run("bookmark", "add", "bo", posted.ID)
	require.Contains(t, run("bookmark", "list", "bo"), posted.ID)
	home := run("feed", "home", "ana", "--by-activity")
	require.Contains(t, home, fmt.Sprintf("%s  Ana Lima", posted.ID))
	require.Contains(t, home, "1 comments, 1 celebrate")
}
