package projection

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tidingshq/tidings/pkg/eventlog"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// ErrNotRebuildable means a projection is not one that Rebuild knows.
var ErrNotRebuildable = errors.New("unknown projection")

// RebuildOrder is the order of a full rebuild: the state streams, then the
// graph, the feeds, the conversations and the notifications, which are one
// projection of four streams.
var RebuildOrder = []tidingsv1.Projection{
	tidingsv1.Projection_PROJECTION_PROFILES,
	tidingsv1.Projection_PROJECTION_RECORDS,
	tidingsv1.Projection_PROJECTION_FOLLOWS,
	tidingsv1.Projection_PROJECTION_ACTIVITIES,
	tidingsv1.Projection_PROJECTION_CONVERSATIONS,
	tidingsv1.Projection_PROJECTION_USER_STATE,
}

// feedStreams are the streams replayed together, in log order, as one
// projection: the follow graph, the feeds, the conversations and the
// notifications that all four write.
var feedStreams = []struct {
	stream     string
	projection tidingsv1.Projection
}{
	{eventlog.StreamFollows, tidingsv1.Projection_PROJECTION_FOLLOWS},
	{eventlog.StreamActivities, tidingsv1.Projection_PROJECTION_ACTIVITIES},
	{eventlog.StreamConversations, tidingsv1.Projection_PROJECTION_CONVERSATIONS},
	{eventlog.StreamUserState, tidingsv1.Projection_PROJECTION_USER_STATE},
}

// Rebuild wipes the projections asked for and replays their streams from
// the start through the same handlers the worker runs, and returns how many
// events each replayed. It rebuilds in place: while it runs, readers see
// the projections partly built, and an event the live worker applies
// meanwhile is fanned out over a graph that is only partly rebuilt, so a
// follower may miss it (beyond what a later follow's backfill repairs).
// Run it with the API drained, or after a loss of Redis, until rebuilds
// build a new generation beside the live one (redisx.Keyspace).
//
// PROFILES and RECORDS keep each entity's last event (its whole state);
// they are replayed first, on their own. FOLLOWS, ACTIVITIES,
// CONVERSATIONS and USERSTATE are one projection: home timelines follow
// the first two (a follow backfills, an unfollow takes back, a post reaches
// the followers of its moment), and notifications all four (a new
// follower, a mention, a comment or reaction; a mute silences, a read mark
// starts new items). Asking for any rebuilds all four, replayed as one log
// in the order the events were stored. When the live worker kept up with
// the log, that is the order it applied them in, and the rebuild
// reproduces its state key for key.
func (p *Projector) Rebuild(ctx context.Context, which []tidingsv1.Projection) ([]*tidingsv1.ProjectionRebuild, error) {
	var state []tidingsv1.Projection
	feeds := false
	for _, w := range which {
		switch w {
		case tidingsv1.Projection_PROJECTION_PROFILES, tidingsv1.Projection_PROJECTION_RECORDS:
			if !slices.Contains(state, w) {
				state = append(state, w)
			}
		case tidingsv1.Projection_PROJECTION_FOLLOWS, tidingsv1.Projection_PROJECTION_ACTIVITIES,
			tidingsv1.Projection_PROJECTION_CONVERSATIONS, tidingsv1.Projection_PROJECTION_USER_STATE:
			feeds = true
		default:
			return nil, fmt.Errorf("rebuild %s: %w", w, ErrNotRebuildable)
		}
	}
	slices.Sort(state)
	var out []*tidingsv1.ProjectionRebuild
	for _, w := range state {
		wipe, stream, h := p.st.Profiles.Wipe, eventlog.StreamProfiles, p.HandleProfiles
		if w == tidingsv1.Projection_PROJECTION_RECORDS {
			wipe, stream, h = p.st.Records.Wipe, eventlog.StreamRecords, p.HandleRecords
		}
		counts, err := p.replay(ctx, wipe, map[string]eventlog.BatchHandler{stream: h}, stream)
		if err != nil {
			return out, fmt.Errorf("rebuild %s: %w", w, err)
		}
		out = append(out, &tidingsv1.ProjectionRebuild{Projection: w, EventCount: counts[stream]})
	}
	if feeds {
		handlers := map[string]eventlog.BatchHandler{
			eventlog.StreamFollows:       p.HandleFollows,
			eventlog.StreamActivities:    p.HandleActivities,
			eventlog.StreamConversations: p.HandleConversations,
			eventlog.StreamUserState:     p.HandleUserState,
		}
		streams := make([]string, len(feedStreams))
		for i, f := range feedStreams {
			streams[i] = f.stream
		}
		counts, err := p.replay(ctx, p.wipeFeeds, handlers, streams...)
		if err != nil {
			return out, fmt.Errorf("rebuild the follow graph, the feeds and the conversations: %w", err)
		}
		for _, f := range feedStreams {
			out = append(out, &tidingsv1.ProjectionRebuild{Projection: f.projection, EventCount: counts[f.stream]})
		}
	}
	return out, nil
}

// wipeFeeds deletes the graph, the bodies, the pull ranges, every feed,
// the conversations, the user state and the notifications.
func (p *Projector) wipeFeeds(ctx context.Context) error {
	for _, wipe := range []func(context.Context) error{
		p.st.Graph.Wipe, p.st.Bodies.Wipe, p.st.Hot.Wipe, p.st.Timelines.Wipe,
		p.st.Conversations.Wipe, p.st.UserState.Wipe, p.st.Notifications.Wipe,
	} {
		if err := wipe(ctx); err != nil {
			return err
		}
	}
	return nil
}

// replay wipes, then replays streams merged through their handlers.
func (p *Projector) replay(ctx context.Context, wipe func(context.Context) error, handlers map[string]eventlog.BatchHandler, streams ...string) (map[string]int64, error) {
	if err := wipe(ctx); err != nil {
		return nil, err
	}
	sources := make([]eventlog.ReplaySource, len(streams))
	for i, s := range streams {
		sources[i] = eventlog.ReplaySource{Stream: s}
	}
	return p.log.ReplayMerged(ctx, sources, func(ctx context.Context, stream string, ds []eventlog.Delivery) error {
		for i, err := range handlers[stream](ctx, ds) {
			if err != nil {
				return fmt.Errorf("seq %d: %w", ds[i].Sequence, err)
			}
		}
		return nil
	})
}
