package timelines_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/testenv"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stacktest"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// home returns the activity ids of a user's home timeline, newest first.
func home(t *testing.T, s *stacktest.Stack, user string) []string {
	t.Helper()
	var out []string
	req := &tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 100}
	for {
		resp, err := s.Timelines(t, testenv.Employee(user)).GetHomeTimeline(t.Context(), req)
		require.NoError(t, err)
		for _, it := range resp.GetItems() {
			out = append(out, it.GetActivity().GetId())
		}
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func post(t *testing.T, s *stacktest.Stack, user, text string) *tidingsv1.Activity {
	t.Helper()
	resp, err := s.Activities(t, testenv.Employee(user)).PostActivity(t.Context(), &tidingsv1.PostActivityRequest{ActorUserId: user, Text: text})
	require.NoError(t, err)
	return resp.GetActivity()
}

func follow(t *testing.T, s *stacktest.Stack, user string, ref *tidingsv1.EntityRef) {
	t.Helper()
	_, err := s.Follows(t, testenv.Admin).Follow(t.Context(), &tidingsv1.FollowRequest{UserId: user, Entity: ref})
	require.NoError(t, err)
}

func TestPostReachesFollowersOnly(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy", "dee")
	follow(t, s, "bo", entity.User("ana"))
	follow(t, s, "cy", entity.User("ana"))

	a := post(t, s, "ana", "Closing Acme today, thanks @dee!")
	require.Equal(t, []string{"dee"}, a.GetMentionUserIds())
	s.WaitCaughtUp(t)
	for _, u := range []string{"ana", "bo", "cy", "dee"} {
		require.Equal(t, []string{a.GetId()}, home(t, s, u), "home of %s", u)
	}
	// Hydrated: the actor's profile comes with the item.
	resp, err := s.Timelines(t, testenv.Employee("bo")).GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: "bo"})
	require.NoError(t, err)
	require.Equal(t, "ana", resp.GetItems()[0].GetActorProfile().GetUserId())
	require.True(t, proto.Equal(a, resp.GetItems()[0].GetActivity()))

	s.Users(t, "eve")
	require.Empty(t, home(t, s, "eve"), "not a follower, not mentioned")
	feed, err := s.Timelines(t, testenv.Employee("eve")).GetEntityFeed(t.Context(), &tidingsv1.GetEntityFeedRequest{Entity: entity.User("ana")})
	require.NoError(t, err)
	require.Len(t, feed.GetItems(), 1, "but the author's own feed shows it to anyone")

	_, err = s.Timelines(t, testenv.Employee("eve")).GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: "bo"})
	testenv.RequireCode(t, err, codes.PermissionDenied)
}

func TestUnfollowDeleteAndEdit(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo", "cy")
	follow(t, s, "bo", entity.User("ana"))
	follow(t, s, "cy", entity.User("ana"))
	first := post(t, s, "ana", "first")
	second := post(t, s, "ana", "second @bo")
	s.WaitCaughtUp(t)
	require.Equal(t, []string{second.GetId(), first.GetId()}, home(t, s, "cy"))

	// Unfollow takes the entity's activities out, except what mentions the user.
	_, err := s.Follows(t, testenv.Employee("bo")).Unfollow(t.Context(), &tidingsv1.UnfollowRequest{UserId: "bo", Entity: entity.User("ana")})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	require.Equal(t, []string{second.GetId()}, home(t, s, "bo"))

	// An edit shows everywhere at once.
	_, err = s.Activities(t, testenv.Employee("ana")).EditActivity(t.Context(), &tidingsv1.EditActivityRequest{Id: first.GetId(), Text: "first, edited"})
	require.NoError(t, err)
	got, err := s.Timelines(t, testenv.Employee("cy")).GetHomeTimeline(t.Context(), &tidingsv1.GetHomeTimelineRequest{UserId: "cy"})
	require.NoError(t, err)
	require.Equal(t, "first, edited", got.GetItems()[1].GetActivity().GetText())
	_, err = s.Activities(t, testenv.Employee("cy")).EditActivity(t.Context(), &tidingsv1.EditActivityRequest{Id: first.GetId(), Text: "hijack"})
	testenv.RequireCode(t, err, codes.PermissionDenied)
	_, err = s.Activities(t, testenv.Employee("cy")).DeleteActivity(t.Context(), &tidingsv1.DeleteActivityRequest{Id: first.GetId()})
	testenv.RequireCode(t, err, codes.PermissionDenied)

	// A delete hides the activity from reads at once, then leaves every feed.
	del, err := s.Activities(t, testenv.Employee("ana")).DeleteActivity(t.Context(), &tidingsv1.DeleteActivityRequest{Id: first.GetId()})
	require.NoError(t, err)
	require.True(t, del.GetDeleted())
	require.Equal(t, []string{second.GetId()}, home(t, s, "cy"))
	_, err = s.Activities(t, testenv.Employee("cy")).GetActivity(t.Context(), &tidingsv1.GetActivityRequest{Id: first.GetId()})
	testenv.RequireCode(t, err, codes.NotFound)
	s.WaitCaughtUp(t)
	for _, key := range []string{s.Stores().Timelines.HomeKey("ana"), s.Stores().Timelines.HomeKey("cy"), s.Stores().Timelines.FeedKey("u:ana")} {
		all, err := s.Stores().Timelines.All(t.Context(), key)
		require.NoError(t, err)
		require.NotContains(t, all, mustID(t, first.GetId()), key)
	}
	again, err := s.Activities(t, testenv.Employee("ana")).DeleteActivity(t.Context(), &tidingsv1.DeleteActivityRequest{Id: first.GetId()})
	require.NoError(t, err)
	require.False(t, again.GetDeleted())
}

func mustID(t *testing.T, s string) ids.ID {
	id, err := ids.Parse(s)
	require.NoError(t, err)
	return id
}

func TestRecordActivityAndRestrictedRecords(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "olga", "rita", "nick")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	ref := &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: "S1"}
	_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{Ref: ref, Title: "Secret deal", OwnerId: "olga"}})
	require.NoError(t, err)
	follow(t, s, "rita", entity.Record(ref.GetType(), ref.GetExternalId()))
	follow(t, s, "nick", entity.Record(ref.GetType(), ref.GetExternalId()))
	follow(t, s, "nick", entity.User("olga"))
	// The record becomes restricted to olga and rita: nick still follows it.
	_, err = crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{Ref: ref, Title: "Secret deal", OwnerId: "olga",
		Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: []string{"rita"}}})
	require.NoError(t, err)

	ev, err := crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: ref, EventId: "e1", Verb: "stage_changed",
		Text: "Stage changed", OnBehalfOf: "olga",
		FieldChanges: []*tidingsv1.FieldChange{{Field: "Stage", OldValue: "Prospecting", NewValue: "Closed Won"}}})
	require.NoError(t, err)
	s.WaitCaughtUp(t)
	require.Equal(t, []string{ev.GetActivity().GetId()}, home(t, s, "rita"))
	require.Equal(t, []string{ev.GetActivity().GetId()}, home(t, s, "olga"))
	require.Empty(t, home(t, s, "nick"), "a follower without access never gets it, through the record or its owner")

	resp, err := s.Timelines(t, testenv.Employee("rita")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "rita"})
	require.NoError(t, err)
	item := resp.GetItems()[0]
	require.Equal(t, "Secret deal", item.GetRecord().GetTitle())
	require.Equal(t, "olga", item.GetActorProfile().GetUserId())
	require.Equal(t, "Closed Won", item.GetActivity().GetFieldChanges()[0].GetNewValue())

	_, err = s.Timelines(t, testenv.Employee("nick")).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: entity.Record(ref.GetType(), ref.GetExternalId())})
	testenv.RequireCode(t, err, codes.NotFound)
	feed, err := s.Timelines(t, testenv.Employee("nick")).GetEntityFeed(ctx, &tidingsv1.GetEntityFeedRequest{Entity: entity.User("olga")})
	require.NoError(t, err)
	require.Empty(t, feed.GetItems(), "olga's feed hides what nick may not see")
}

func TestBackfillOnFollowAndCap(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.HomeCap = 10; c.Backfill = 3 }})
	s.StartWorker(t)
	s.Users(t, "ana", "bo")
	var posted []string
	for i := range 5 {
		posted = append(posted, post(t, s, "ana", fmt.Sprintf("before %d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	follow(t, s, "bo", entity.User("ana"))
	s.WaitCaughtUp(t)
	require.Equal(t, []string{posted[4], posted[3], posted[2]}, home(t, s, "bo"), "the newest 3 are backfilled")
	for i := range 12 {
		posted = append(posted, post(t, s, "ana", fmt.Sprintf("after %d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	stored, err := s.Stores().Timelines.All(t.Context(), s.Stores().Timelines.HomeKey("bo"))
	require.NoError(t, err)
	require.Len(t, stored, 10, "the stored timeline holds its cap")
	require.Equal(t, mustID(t, posted[len(posted)-1]), stored[0])
	// Paging goes on past the cap, from the followed feeds, with no seam,
	// down to the oldest backfilled post: the two before it never reached
	// bo.
	want := slices.Clone(posted[2:])
	slices.Reverse(want)
	require.Equal(t, want, home(t, s, "bo"))
}

func TestDuplicateAndOutOfOrderDeliveries(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana", "bo")
	follow(t, s, "bo", entity.User("ana"))
	var acts []*tidingsv1.Activity
	for i := range 20 {
		acts = append(acts, post(t, s, "ana", fmt.Sprintf("p%d", i)))
	}
	// No worker yet: feed the fan-out every event twice, newest first.
	f := s.Components.Projector()
	n := s.Env.StreamLastSeq(t, eventlog.StreamActivities)
	for seq := n; seq >= 1; seq-- {
		data, err := s.Env.Log.MessageAt(t.Context(), eventlog.StreamActivities, seq)
		require.NoError(t, err)
		for range 2 {
			require.Nil(t, f.HandleActivities(t.Context(), []eventlog.Delivery{{Data: data, Sequence: seq, NumDelivered: 2}}))
		}
	}
	got := home(t, s, "bo")
	require.Len(t, got, 20)
	for i, a := range acts {
		require.Equal(t, a.GetId(), got[len(got)-1-i], "ordered by id, not by arrival")
	}
}

func TestPagingAcrossConcurrentInserts(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "ana", "bo")
	follow(t, s, "bo", entity.User("ana"))
	var initial []string
	for i := range 30 {
		initial = append(initial, post(t, s, "ana", fmt.Sprintf("p%d", i)).GetId())
	}
	s.WaitCaughtUp(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var postErr error
	poster := s.Activities(t, testenv.Employee("ana"))
	wg.Go(func() {
		for i := 0; postErr == nil; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_, postErr = poster.PostActivity(t.Context(), &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: fmt.Sprintf("new %d", i)})
		}
	})
	var seen []string
	req := &tidingsv1.GetHomeTimelineRequest{UserId: "bo", PageSize: 4}
	client := s.Timelines(t, testenv.Employee("bo"))
	for {
		resp, err := client.GetHomeTimeline(t.Context(), req)
		require.NoError(t, err)
		for _, it := range resp.GetItems() {
			seen = append(seen, it.GetActivity().GetId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	close(stop)
	wg.Wait()
	require.NoError(t, postErr)
	require.IsDecreasing(t, seen, "newest first, no repeats")
	for _, id := range initial {
		require.Contains(t, seen, id, "nothing older is skipped")
	}
}

func TestBigAudienceIsChunked(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t, stacktest.Options{Configure: func(c *config.Config) { c.FanoutChunk = 100 }})
	s.StartWorker(t)
	var fans []string
	for i := range 450 {
		fans = append(fans, fmt.Sprintf("fan%03d", i))
	}
	s.Users(t, append(fans, "star")...)
	_, err := s.Admin(t).BulkFollow(t.Context(), &tidingsv1.BulkFollowRequest{Entity: entity.User("star"),
		Users: &tidingsv1.UserSelector{Selector: &tidingsv1.UserSelector_Users{Users: &tidingsv1.UserList{UserIds: fans}}}})
	require.NoError(t, err)
	a := post(t, s, "star", "hello, all 450 of you")
	s.WaitCaughtUp(t)
	testenv.Eventually(t, 30*time.Second, func() bool { return s.CaughtUp(t, projection.ChunksConsumer) }, "chunks not done")
	ts := s.Stores().Timelines
	for _, f := range fans {
		got, err := ts.All(t.Context(), s.Stores().Timelines.HomeKey(f))
		require.NoError(t, err)
		require.Equal(t, []ids.ID{mustID(t, a.GetId())}, got, f)
	}
}

func TestPostIdempotencyAndBadInput(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "ana")
	ctx := t.Context()
	c := s.Activities(t, testenv.Employee("ana"))
	req := &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "once", IdempotencyKey: "k-1"}
	a, err := c.PostActivity(ctx, req)
	require.NoError(t, err)
	seq := s.Env.StreamLastSeq(t, eventlog.StreamActivities)
	b, err := c.PostActivity(ctx, req)
	require.NoError(t, err)
	require.Equal(t, a.GetActivity().GetId(), b.GetActivity().GetId())
	require.Equal(t, seq, s.Env.StreamLastSeq(t, eventlog.StreamActivities))

	for _, tc := range []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"as someone else", func() error {
			_, err := c.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "bo", Text: "x"})
			return err
		}, codes.PermissionDenied},
		{"empty text", func() error {
			_, err := c.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana"})
			return err
		}, codes.InvalidArgument},
		{"text too long", func() error {
			_, err := c.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: string(make([]byte, 10001))})
			return err
		}, codes.InvalidArgument},
		{"unknown record", func() error {
			_, err := c.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "x", Record: &tidingsv1.RecordRef{Type: "crm.opp", ExternalId: "nope"}})
			return err
		}, codes.NotFound},
		{"bad link", func() error {
			_, err := c.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: "ana", Text: "x", Links: []*tidingsv1.Link{{Url: "not a url"}}})
			return err
		}, codes.InvalidArgument},
		{"malformed id", func() error {
			_, err := c.GetActivity(ctx, &tidingsv1.GetActivityRequest{Id: "short"})
			return err
		}, codes.InvalidArgument},
		{"unknown id", func() error {
			_, err := c.GetActivity(ctx, &tidingsv1.GetActivityRequest{Id: "0000000000000"})
			return err
		}, codes.NotFound},
		{"bad page token", func() error {
			_, err := s.Timelines(t, testenv.Employee("ana")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "ana", PageToken: "zzz"})
			return err
		}, codes.InvalidArgument},
		{"page too large", func() error {
			_, err := s.Timelines(t, testenv.Employee("ana")).GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: "ana", PageSize: 101})
			return err
		}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) { testenv.RequireCode(t, tc.call(), tc.code) })
	}
	require.Equal(t, seq, s.Env.StreamLastSeq(t, eventlog.StreamActivities))
}

// TestBackfillLeavesOutRestricted: a new follow backfills the entity's
// recent activities, except those about records the follower may not see.
func TestBackfillLeavesOutRestricted(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.StartWorker(t)
	s.Users(t, "olga", "rita", "nick")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	secret := restrictedRecord(t, s, "S9", "rita")
	hidden, err := crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: secret, EventId: "e1", Verb: "stage_changed", OnBehalfOf: "olga"})
	require.NoError(t, err)
	open := post(t, s, "olga", "public news")
	s.WaitCaughtUp(t)

	follow(t, s, "rita", entity.User("olga"))
	follow(t, s, "nick", entity.User("olga"))
	s.WaitCaughtUp(t)
	ts := s.Stores().Timelines
	rita, err := ts.All(ctx, s.Stores().Timelines.HomeKey("rita"))
	require.NoError(t, err)
	require.Equal(t, []ids.ID{mustID(t, open.GetId()), mustID(t, hidden.GetActivity().GetId())}, rita)
	nick, err := ts.All(ctx, s.Stores().Timelines.HomeKey("nick"))
	require.NoError(t, err)
	require.Equal(t, []ids.ID{mustID(t, open.GetId())}, nick)
}

// TestBatchGetActivities returns what the caller may see, in order, and
// lists the rest (unknown, deleted, about a record hidden from the caller)
// as missing.
func TestBatchGetActivities(t *testing.T) {
	t.Parallel()
	s := stacktest.Start(t)
	s.Users(t, "olga", "rita", "nick")
	ctx := t.Context()
	crm := s.Records(t, testenv.App("crm"))
	secret := restrictedRecord(t, s, "B1", "rita")
	hidden, err := crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{Ref: secret, EventId: "e1", Verb: "stage_changed"})
	require.NoError(t, err)
	open := post(t, s, "olga", "public")
	gone := post(t, s, "olga", "deleted soon")
	_, err = s.Activities(t, testenv.Employee("olga")).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: gone.GetId()})
	require.NoError(t, err)
	ask := []string{hidden.GetActivity().GetId(), open.GetId(), gone.GetId(), "0000000000000"}

	for _, tc := range []struct {
		who     string
		found   []string
		missing []string
	}{
		{"rita", []string{hidden.GetActivity().GetId(), open.GetId()}, []string{gone.GetId(), "0000000000000"}},
		{"nick", []string{open.GetId()}, []string{hidden.GetActivity().GetId(), gone.GetId(), "0000000000000"}},
	} {
		t.Run(tc.who, func(t *testing.T) {
			resp, err := s.Activities(t, testenv.Employee(tc.who)).BatchGetActivities(ctx, &tidingsv1.BatchGetActivitiesRequest{Ids: ask})
			require.NoError(t, err)
			var found []string
			for _, a := range resp.GetActivities() {
				found = append(found, a.GetId())
			}
			require.Equal(t, tc.found, found)
			require.Equal(t, tc.missing, resp.GetMissingIds())
		})
	}
}

// restrictedRecord registers a crm.opportunity only readers may see.
func restrictedRecord(t *testing.T, s *stacktest.Stack, id string, readers ...string) *tidingsv1.RecordRef {
	t.Helper()
	ref := &tidingsv1.RecordRef{Type: "crm.opportunity", ExternalId: id}
	_, err := s.Records(t, testenv.App("crm")).UpsertRecord(t.Context(), &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
		Ref: ref, Title: "Secret " + id, Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: readers}})
	require.NoError(t, err)
	return ref
}
