package timelines_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func watch(t *testing.T, s *stacktest.Stack, user, resume string) (tidingsv1.TimelineService_WatchClient, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	before := s.Components.Hub().Watching()
	stream, err := s.Timelines(t, testenv.Employee(user)).Watch(ctx, &tidingsv1.WatchRequest{UserId: user, ResumeToken: resume})
	require.NoError(t, err)
	if resume == "" {
		// The server subscribes before it replays or streams anything.
		testenv.Eventually(t, 10*time.Second, func() bool { return s.Components.Hub().Watching() > before }, "watch not subscribed")
	}
	return stream, cancel
}

func TestWatchDeliversAndResumes(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo")
	follow(t, s, "bo", entity.User("ana"))

	stream, cancel := watch(t, s, "bo", "")
	first := post(t, s, "ana", "live one")
	got, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, first.GetId(), got.GetItem().GetActivity().GetId())
	require.Equal(t, "ana", got.GetItem().GetActorProfile().GetUserId())
	token := got.GetResumeToken()
	cancel()

	// While bo is away, two more land; resuming replays them in order (with
	// the few seconds before the token again: first comes back, and the
	// client drops it), then goes on live.
	second := post(t, s, "ana", "while away 1")
	third := post(t, s, "ana", "while away 2")
	s.WaitCaughtUp(t)
	again, cancel2 := watch(t, s, "bo", token)
	defer cancel2()
	for _, want := range []*tidingsv1.Activity{first, second, third} {
		got, err := again.Recv()
		require.NoError(t, err)
		require.Equal(t, want.GetId(), got.GetItem().GetActivity().GetId())
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return s.Components.Hub().Watching() > 0 }, "not subscribed")
	fourth := post(t, s, "ana", "live again")
	got, err = again.Recv()
	require.NoError(t, err)
	require.Equal(t, fourth.GetId(), got.GetItem().GetActivity().GetId())

	_, err = s.Timelines(t, testenv.Employee("ana")).Watch(t.Context(), &tidingsv1.WatchRequest{UserId: "bo"})
	if err == nil {
		_, err = mustStream(t, s, "ana", "bo").Recv()
	}
	testenv.RequireCode(t, err, codes.PermissionDenied)
}

func mustStream(t *testing.T, s *stacktest.Stack, caller, user string) tidingsv1.TimelineService_WatchClient {
	stream, err := s.Timelines(t, testenv.Employee(caller)).Watch(t.Context(), &tidingsv1.WatchRequest{UserId: user})
	require.NoError(t, err)
	return stream
}

func TestStalledWatcherIsCutOffOthersKeepReceiving(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.WatchBuffer = 4 }})
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy")
	follow(t, s, "bo", entity.User("ana"))
	follow(t, s, "cy", entity.User("ana"))
	stalled, cancelStalled := watch(t, s, "bo", "")
	defer cancelStalled()
	reader, cancelReader := watch(t, s, "cy", "")
	defer cancelReader()

	const n = 60
	big := strings.Repeat("x", 8000)
	done := make(chan []string, 1)
	go func() {
		var ids []string
		for len(ids) < n {
			got, err := reader.Recv()
			if err != nil {
				break
			}
			ids = append(ids, got.GetItem().GetActivity().GetId())
		}
		done <- ids
	}()
	var posted []string
	for i := range n {
		posted = append(posted, post(t, s, "ana", fmt.Sprintf("%d %s", i, big)).GetId())
	}
	select {
	case got := <-done:
		require.ElementsMatch(t, posted, got, "the reading watcher gets everything, once each")
	case <-time.After(60 * time.Second):
		t.Fatal("the reading watcher was held up")
	}
	// The stalled one was cut off: after what it had buffered, it ends
	// with ResourceExhausted, and its token resumes it without loss.
	have := map[string]bool{}
	var newest string
	var err error
	for {
		var got *tidingsv1.WatchResponse
		got, err = stalled.Recv()
		if err != nil {
			break
		}
		have[got.GetItem().GetActivity().GetId()] = true
		newest = max(newest, got.GetResumeToken())
	}
	testenv.RequireCode(t, err, codes.ResourceExhausted)
	require.NotEmpty(t, newest)
	require.Less(t, len(have), n, "the stalled watcher was cut off before the end")
	// Resuming from the newest token received loses nothing.
	resumed, cancel := watch(t, s, "bo", newest)
	defer cancel()
	for len(have) < n {
		got, err := resumed.Recv()
		require.NoError(t, err)
		have[got.GetItem().GetActivity().GetId()] = true
	}
	for _, p := range posted {
		require.True(t, have[p], "%s lost across the cut-off", p)
	}
}

// TestWatchGetsHotEntityPosts: a hot entity's posts are not pushed to its
// followers, yet a watching follower receives them live.
func TestWatchGetsHotEntityPosts(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HotOn, c.HotOff = 2, 1 }})
	s.StartWorker(t)
	s.Users(t, "star", "x", "y", "reader")
	for _, u := range []string{"x", "y", "reader"} {
		follow(t, s, u, entity.User("star"))
	}
	first := post(t, s, "star", "now hot") // 3 followers > 2: pulled
	s.WaitCaughtUp(t)
	stream, cancel := watch(t, s, "reader", "")
	defer cancel()
	second := post(t, s, "star", "live while hot")
	got, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, second.GetId(), got.GetItem().GetActivity().GetId())
	require.Equal(t, []string{second.GetId(), first.GetId()}, home(t, s, "reader"))
}
