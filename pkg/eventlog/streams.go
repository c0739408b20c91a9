// Package eventlog is the durable log of Tidings: the JetStream streams every
// change is appended to, the publisher that waits for JetStream's ack before
// a write returns OK, and the consumers that project the log into Redis.
//
// Streams use file storage and limits retention (never work-queue), so a log
// can be replayed to rebuild Redis. State streams (PROFILES, RECORDS) keep
// the last event per subject, which is log compaction: each event there is
// an entity's whole state. FOLLOWS, ACTIVITIES, CONVERSATIONS and USERSTATE
// keep every event.
package eventlog

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamProfiles   = "PROFILES"
	StreamRecords    = "RECORDS"
	StreamFollows    = "FOLLOWS"
	StreamActivities = "ACTIVITIES"
	StreamDeadLetter = "DEADLETTER"
	StreamFanout     = "FANOUT"
	StreamRedrive    = "REDRIVE"
	// StreamConversations holds comments and reactions, one subject per
	// activity.
	StreamConversations = "CONVERSATIONS"
	// StreamUserState holds bookmarks, mutes and notification read marks,
	// one subject per user.
	StreamUserState = "USERSTATE"
)

// Subject prefixes, one per stream.
const (
	SubjectProfiles   = "tidings.profiles"
	SubjectRecords    = "tidings.records"
	SubjectFollows    = "tidings.follows"
	SubjectActivities = "tidings.activities"
	SubjectDeadLetter = "tidings.deadletter"
	SubjectFanout     = "tidings.fanout"
	SubjectRedrive    = "tidings.redrive"
	// SubjectConversations prefixes the CONVERSATIONS stream's subjects.
	SubjectConversations = "tidings.conversations"
	// SubjectUserState prefixes the USERSTATE stream's subjects.
	SubjectUserState = "tidings.userstate"
)

// Token encodes an id as one subject token. Ids may hold ".", which NATS
// reads as a token separator, so they are base64url-encoded (reversibly,
// without padding): the token holds only letters, digits, "-" and "_".
func Token(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// ProfileSubject is the subject of a profile's events.
func ProfileSubject(userID string) string { return SubjectProfiles + "." + Token(userID) }

// RecordSubject is the subject of a record's events.
func RecordSubject(recordType, externalID string) string {
	return SubjectRecords + "." + Token(recordType) + "." + Token(externalID)
}

// FollowSubject is the subject of one follower's edge changes.
func FollowSubject(userID string) string { return SubjectFollows + "." + Token(userID) }

// ActivitySubject is the subject of an activity's events.
func ActivitySubject(activityID string) string { return SubjectActivities + "." + activityID }

// FanoutSubject is the subject of an activity's fan-out chunks.
func FanoutSubject(activityID string) string { return SubjectFanout + "." + activityID }

// ConversationSubject is the subject of an activity's comments and
// reactions.
func ConversationSubject(activityID string) string { return SubjectConversations + "." + activityID }

// UserStateSubject is the subject of a user's bookmarks, mutes and read
// marks.
func UserStateSubject(userID string) string { return SubjectUserState + "." + Token(userID) }

// StreamOptions are the settings shared by every stream.
type StreamOptions struct {
	// Replicas is 1 on one server and 3 in production.
	Replicas int
	// DuplicateWindow is how long message ids are remembered.
	DuplicateWindow time.Duration
}

// StreamConfigs returns the configuration of every stream.
func StreamConfigs(opts StreamOptions) []jetstream.StreamConfig {
	base := func(name, subject, desc string) jetstream.StreamConfig {
		return jetstream.StreamConfig{
			Name:        name,
			Description: desc,
			Subjects:    []string{subject + ".>"},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    opts.Replicas,
			Duplicates:  opts.DuplicateWindow,
			Discard:     jetstream.DiscardOld,
			AllowDirect: true,
		}
	}
	profiles := base(StreamProfiles, SubjectProfiles, "Profile state, last event per user")
	profiles.MaxMsgsPerSubject = 1
	records := base(StreamRecords, SubjectRecords, "Record state, last event per record")
	records.MaxMsgsPerSubject = 1
	follows := base(StreamFollows, SubjectFollows, "Follow graph changes, every event")
	activities := base(StreamActivities, SubjectActivities, "Activity posts, edits and deletes, every event")
	dead := base(StreamDeadLetter, SubjectDeadLetter, "Events that exhausted their deliveries")
	dead.MaxAge = 30 * 24 * time.Hour
	// FANOUT is derived work, not a log of record: chunks of large fan-outs,
	// each removed once a worker has done it.
	fanout := base(StreamFanout, SubjectFanout, "Chunks of large fan-outs, shared by workers")
	fanout.Retention = jetstream.WorkQueuePolicy
	fanout.MaxAge = 24 * time.Hour
	conversations := base(StreamConversations, SubjectConversations, "Comments and reactions, every event")
	userState := base(StreamUserState, SubjectUserState, "Bookmarks, mutes and notification read marks, every event")
	// REDRIVE holds requests to re-drive dead letters until a worker has
	// done them.
	redrive := base(StreamRedrive, SubjectRedrive, "Requests to re-drive dead letters, shared by workers")
	redrive.Retention = jetstream.WorkQueuePolicy
	redrive.MaxAge = 7 * 24 * time.Hour
	return []jetstream.StreamConfig{profiles, records, follows, activities, dead, fanout, redrive, conversations, userState}
}

// EnsureStreams creates every stream, or updates it to the configuration.
// Many processes may call it at once, on a cluster that is still forming:
// each stream is created, and updated when it exists with another
// configuration, in short attempts retried with jittered back-off
// (RetryStartup) until ctx ends.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, opts StreamOptions) error {
	for _, cfg := range StreamConfigs(opts) {
		err := RetryStartup(ctx, func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				_, err = js.UpdateStream(ctx, cfg)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// CheckStreams reports an error unless every stream exists.
func CheckStreams(ctx context.Context, js jetstream.JetStream) error {
	var errs []error
	for _, cfg := range StreamConfigs(StreamOptions{}) {
		if _, err := js.Stream(ctx, cfg.Name); err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", cfg.Name, err))
		}
	}
	return errors.Join(errs...)
}
