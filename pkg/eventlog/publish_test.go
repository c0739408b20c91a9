package eventlog_test

import (
	"context"

	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// TestPublishAllKeepsConditions checks that appends published together
// keep their condition on the subject's last sequence, as one at a time.
func TestPublishAllKeepsConditions(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	none := uint64(0)
	ev := &tidingsv1.FollowEvent{}
	first, err := env.Log.PublishAll(ctx, []eventlog.Append{{Subject: eventlog.FollowSubject("ana"), Event: ev, ExpectLastSubjectSeq: &none}})
	require.NoError(t, err)
	_, err = env.Log.PublishAll(ctx, []eventlog.Append{{Subject: eventlog.FollowSubject("ana"), Event: ev, ExpectLastSubjectSeq: &none}})
	require.ErrorIs(t, err, eventlog.ErrConflict, "the subject is no longer new")
	_, err = env.Log.Publish(ctx, eventlog.Append{Subject: eventlog.FollowSubject("ana"), Event: ev, ExpectLastSubjectSeq: &none})
	require.ErrorIs(t, err, eventlog.ErrConflict)
	last := first[0].Sequence
	_, err = env.Log.PublishAll(ctx, []eventlog.Append{{Subject: eventlog.FollowSubject("ana"), Event: ev, ExpectLastSubjectSeq: &last}})
	require.NoError(t, err)
}

// TestReplayMergedInterleavesStreams checks that a merged replay hands
// over every event of each stream once, in the order they were stored
// across streams, and leaves no consumer behind.
func TestReplayMergedInterleavesStreams(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	var want []string
	for i := range 30 {
		subject := eventlog.FollowSubject("ana")
		if i%3 == 0 {
			subject = eventlog.ActivitySubject("x")
		}
		a, err := env.Log.Publish(ctx, eventlog.Append{Subject: subject, Event: &tidingsv1.FollowEvent{}})
		require.NoError(t, err)
		want = append(want, a.Stream)
	}
	var got []string
	counts, err := env.Log.ReplayMerged(ctx, []eventlog.ReplaySource{{Stream: eventlog.StreamFollows}, {Stream: eventlog.StreamActivities}, {Stream: eventlog.StreamProfiles}},
		func(_ context.Context, stream string, ds []eventlog.Delivery) error {
			for range ds {
				got = append(got, stream)
			}
			return nil
		})
	require.NoError(t, err)
	require.Equal(t, want, got)
	require.EqualValues(t, 20, counts[eventlog.StreamFollows])
	require.EqualValues(t, 10, counts[eventlog.StreamActivities])
	for _, stream := range []string{eventlog.StreamFollows, eventlog.StreamActivities} {
		s, err := env.JS.Stream(ctx, stream)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Zero(t, info.State.Consumers, "the replay's consumers are gone")
	}
}
