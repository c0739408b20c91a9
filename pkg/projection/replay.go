package projection

import (
	"context"
	"fmt"
	"maps"

	"github.com/tidingshq/tidings/pkg/eventlog"
)

// Positions are how far each stream has been applied: the last sequence
// of each, by stream name.
type Positions map[string]uint64

// replayPhases are the streams a replay reads, phase after phase; the
// streams of one phase are replayed as one log, merged in the order their
// events were stored. PROFILES and RECORDS keep each entity's last event
// (its whole state), so each is replayed on its own first. FOLLOWS,
// ACTIVITIES, CONVERSATIONS and USERSTATE are one projection: home
// timelines follow the first two (a follow backfills, an unfollow takes
// back, a post reaches the followers of its moment); conversations read
// the bodies (a comment on a deleted activity writes nothing, a bump
// moves a live item); notifications read all four (a new follower, a
// mention, a comment or reaction to notify its activity's followers and
// author; a mute silences, a read mark starts new items). So they are
// replayed merged, in the order the live worker applied them when it kept
// up.
var replayPhases = [][]string{
	{eventlog.StreamProfiles},
	{eventlog.StreamRecords},
	{eventlog.StreamFollows, eventlog.StreamActivities, eventlog.StreamConversations, eventlog.StreamUserState},
}

// ReplayStreams lists every stream a replay reads.
func ReplayStreams() []string {
	var out []string
	for _, phase := range replayPhases {
		out = append(out, phase...)
	}
	return out
}

// Tails returns the last sequence of every stream a replay reads.
func (p *Projector) Tails(ctx context.Context) (Positions, error) {
	out := Positions{}
	for _, name := range ReplayStreams() {
		s, err := p.log.JetStream().Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("open stream %s: %w", name, err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream %s info: %w", name, err)
		}
		out[name] = info.State.LastSeq
	}
	return out, nil
}

// Replay applies, through the same handlers the worker runs, every event
// after from and up to through (by stream; a stream missing from through
// replays to its last event when reached), phase after phase (see
// replayPhases), and returns how far it got. After each batch it calls
// progress, if set, with the positions reached and how many events the
// batch held. Every apply is idempotent and ordered by log position, so a
// replay resumed from its last positions, or run over a projection that
// already holds some of the events, ends in the projection of the log.
func (p *Projector) Replay(ctx context.Context, from, through Positions, progress func(reached Positions, events int)) (Positions, error) {
	handlers := map[string]eventlog.BatchHandler{
		eventlog.StreamProfiles:      p.HandleProfiles,
		eventlog.StreamRecords:       p.HandleRecords,
		eventlog.StreamFollows:       p.HandleFollows,
		eventlog.StreamActivities:    p.HandleActivities,
		eventlog.StreamConversations: p.HandleConversations,
		eventlog.StreamUserState:     p.HandleUserState,
	}
	reached := maps.Clone(from)
	if reached == nil {
		reached = Positions{}
	}
	for _, phase := range replayPhases {
		sources := make([]eventlog.ReplaySource, len(phase))
		for i, s := range phase {
			sources[i] = eventlog.ReplaySource{Stream: s, After: from[s], Through: through[s]}
		}
		_, err := p.log.ReplayMerged(ctx, sources, func(ctx context.Context, stream string, ds []eventlog.Delivery) error {
			for i, err := range handlers[stream](ctx, ds) {
				if err != nil {
					return fmt.Errorf("seq %d: %w", ds[i].Sequence, err)
				}
			}
			reached[stream] = ds[len(ds)-1].Sequence
			if progress != nil {
				progress(maps.Clone(reached), len(ds))
			}
			return nil
		})
		if err != nil {
			return reached, err
		}
	}
	return reached, nil
}

// Wipe deletes every key of the Projector's generation of the projections
// (timeline read marks, which are not of the log, stay; notification read
// marks, of USERSTATE, go).
func (p *Projector) Wipe(ctx context.Context) error {
	for _, wipe := range []func(context.Context) error{
		p.st.Profiles.Wipe, p.st.Records.Wipe, p.st.Graph.Wipe, p.st.Bodies.Wipe, p.st.Hot.Wipe, p.st.Timelines.Wipe,
		p.st.Conversations.Wipe, p.st.UserState.Wipe, p.st.Notifications.Wipe,
	} {
		if err := wipe(ctx); err != nil {
			return fmt.Errorf("wipe generation %d: %w", p.Generation(), err)
		}
	}
	return p.wipeWatermarks(ctx)
}
