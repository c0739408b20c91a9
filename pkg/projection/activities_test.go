package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/activitystore"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/graphstore"
	"github.com/tidingshq/tidings/pkg/hot"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/projection"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

const batchUsers = 40

func user(i int) string { return fmt.Sprintf("u%02d", (i+batchUsers)%batchUsers) }

func ref(id string) *tidingsv1.RecordRef {
	return &tidingsv1.RecordRef{Type: "crm.deal", ExternalId: id}
}

// newBatchFanout returns a fan-out on its own Redis holding the test's
// graph and records: each user follows the next three; everyone follows
// u00, which is therefore pulled; "open" and "secret" (restricted to its
// owner u06 and reader u07) are followed by u01 to u10, "gone" (deleted)
// by u01 to u05, and "big" by u10 to u29, an audience larger than a batch
// takes.
func newBatchFanout(t *testing.T, log *eventlog.Log) (*projection.Projector, redis.UniversalClient) {
	t.Helper()
	ctx := t.Context()
	srv := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, redisx.LoadScripts(ctx, rdb))

	var changes []graphstore.Change
	follow := func(u, e string) {
		changes = append(changes, graphstore.Change{UserID: u, Entity: e, Following: true,
			Version: graphstore.Version(1, len(changes)), CreateMs: 1})
	}
	for i := range batchUsers {
		for d := 1; d <= 3; d++ {
			follow(user(i), entity.UserKey(user(i+d)))
		}
		if i != 0 && i > 3 && i < batchUsers-3 {
			follow(user(i), entity.UserKey(user(0)))
		}
	}
	for i := 1; i <= 10; i++ {
		follow(user(i), entity.RecordKey(ref("open")))
		follow(user(i), entity.RecordKey(ref("secret")))
	}
	for i := 1; i <= 5; i++ {
		follow(user(i), entity.RecordKey(ref("gone")))
	}
	for i := 10; i < 30; i++ {
		follow(user(i), entity.RecordKey(ref("big")))
	}
	g := graphstore.New(rdb, redisx.NewKeyspace(0))
	require.NoError(t, g.Apply(ctx, changes))

	records := recordstore.New(rdb, redisx.NewKeyspace(0))
	for seq, r := range []*tidingsv1.Record{
		{Ref: ref("open"), Title: "Open deal", OwnerId: "u05"},
		{Ref: ref("secret"), Title: "Secret deal", OwnerId: "u06", Visibility: tidingsv1.Visibility_VISIBILITY_RESTRICTED, ReaderIds: []string{"u07"}},
		{Ref: ref("big"), Title: "Big deal", OwnerId: "u10"},
		{Ref: ref("gone"), Title: "Lost deal", OwnerId: "u01"},
	} {
		require.NoError(t, records.Apply(ctx, uint64(seq+1), &tidingsv1.RecordEvent{Record: r}))
	}
	require.NoError(t, records.Apply(ctx, 9, &tidingsv1.RecordEvent{Record: &tidingsv1.Record{Ref: ref("gone")}, Deleted: true}))

	cfg := projection.DefaultConfig()
	cfg.WriteBatch = 12
	cfg.InactiveAfter = 0
	f := projection.New(projection.Deps{Log: log, Stores: projection.Stores{
		Graph: g, Records: records, Bodies: activitystore.New(rdb, redisx.NewKeyspace(0)), Timelines: timelinestore.New(rdb, redisx.NewKeyspace(0)),
		Hot: hot.New(rdb, redisx.NewKeyspace(0), hot.Thresholds{On: 30, Off: 20}),
	}, Config: cfg, Logger: testenv.Logger()})
	return f, rdb
}

// batchDeliveries returns a stream of activity events covering each path of
// the fan-out, in delivery order, with the ids of some of them.
func batchDeliveries(t *testing.T) ([]eventlog.Delivery, map[string]string) {
	t.Helper()
	gen := ids.NewGenerator()
	var out []eventlog.Delivery
	named := map[string]string{}
	emp := func(u string) *tidingsv1.Caller {
		return &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: u}
	}
	app := &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_APP, Id: "crm"}
	add := func(seq uint64, ev *tidingsv1.ActivityEvent) {
		data, err := proto.Marshal(ev)
		require.NoError(t, err)
		out = append(out, eventlog.Delivery{Subject: "tidings.activities.x", Data: data, Sequence: seq, NumDelivered: 1})
	}
	seq := uint64(0)
	post := func(name string, a *tidingsv1.Activity, scope string) *tidingsv1.Activity {
		seq++
		a.Id = gen.Next().String()
		named[name] = a.GetId()
		add(seq, &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: a}, IdempotencyScope: scope})
		return a
	}
	post("by u01", &tidingsv1.Activity{Actor: emp("u01"), Verb: "posted", Text: "hello"}, "")
	mention := post("mention", &tidingsv1.Activity{Actor: emp("u02"), Verb: "posted", Text: "hi @u20", MentionUserIds: []string{"u20"}}, "")
	post("hot", &tidingsv1.Activity{Actor: emp("u00"), Verb: "posted", Text: "all hands"}, "")
	post("open", &tidingsv1.Activity{Actor: app, Verb: "updated", Record: ref("open")}, "")
	post("secret", &tidingsv1.Activity{Actor: emp("u06"), Verb: "updated", Record: ref("secret")}, "")
	post("gone", &tidingsv1.Activity{Actor: app, Verb: "updated", Record: ref("gone")}, "")
	post("big", &tidingsv1.Activity{Actor: app, OnBehalfOf: "u11", Verb: "updated", Record: ref("big")}, "")
	deleted := post("deleted", &tidingsv1.Activity{Actor: emp("u03"), Verb: "posted", Text: "oops"}, "")
	seq++
	add(seq, &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_DeletedId{DeletedId: deleted.GetId()}, DeletedActivity: deleted})
	edited := proto.CloneOf(mention)
	edited.Text = "hi @u20, again"
	seq++
	add(seq, &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Edited{Edited: edited}})
	out = append(out, out[1]) // a redelivery
	post("keyed", &tidingsv1.Activity{Actor: emp("u04"), Verb: "posted", Text: "once"}, "u04:key")
	// A deletion handled before its (redelivered) post.
	late := &tidingsv1.Activity{Id: gen.Next().String(), Actor: emp("u05"), Verb: "posted", Text: "late"}
	named["late"] = late.GetId()
	add(seq+2, &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_DeletedId{DeletedId: late.GetId()}, DeletedActivity: late})
	add(seq+1, &tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: late}})
	for i := range 12 {
		seq += 3
		post(fmt.Sprintf("more %d", i), &tidingsv1.Activity{Actor: emp(user(7 * i)), Verb: "posted", Text: "more"}, "")
	}
	return out, named
}

// TestHandleActivitiesMatchesOneAtATime checks that handling events in
// batches of any size leaves Redis exactly as handling them one at a time
// (batches of one) does, and that this state is the expected one.
func TestHandleActivitiesMatchesOneAtATime(t *testing.T) {
	ctx := context.Background()
	env := testenv.New(t)
	deliveries, named := batchDeliveries(t)

	one, oneRDB := newBatchFanout(t, env.Log)
	for _, d := range deliveries {
		require.Nil(t, one.HandleActivities(ctx, []eventlog.Delivery{d}), "seq %d", d.Sequence)
	}
	want := testenv.Snapshot(t, oneRDB)

	home := func(u string) map[string]bool {
		data, err := oneRDB.Get(ctx, one.Stores().Timelines.HomeKey(u)).Bytes()
		require.NoError(t, err)
		out := map[string]bool{}
		for _, id := range timelinestore.Decode(data) {
			out[id.String()] = true
		}
		return out
	}
	require.True(t, home("u00")[named["by u01"]], "a follower gets a post")
	require.True(t, home("u20")[named["mention"]], "a mentioned user gets the post")
	require.True(t, home("u00")[named["hot"]], "the author of a pulled post gets it")
	require.False(t, home("u10")[named["hot"]], "a pulled post is not pushed")
	require.True(t, home("u07")[named["secret"]], "a reader of a restricted record gets its activity")
	require.False(t, home("u08")[named["secret"]], "a non-reader does not")
	require.False(t, home("u01")[named["gone"]], "a deleted record's activity reaches no one")
	require.True(t, home("u29")[named["big"]], "an audience above the batch's is written")
	require.False(t, home("u00")[named["deleted"]] || home("u39")[named["deleted"]], "a deleted post is taken out")
	require.False(t, home("u04")[named["late"]], "a post after its deletion writes nothing")

	for _, size := range []int{1, 4, len(deliveries)} {
		t.Run(fmt.Sprintf("batches of %d", size), func(t *testing.T) {
			batched, rdb := newBatchFanout(t, env.Log)
			for lo := 0; lo < len(deliveries); lo += size {
				errs := batched.HandleActivities(ctx, deliveries[lo:min(lo+size, len(deliveries))])
				require.Nil(t, errs)
			}
			testenv.RequireSameSnapshot(t, want, testenv.Snapshot(t, rdb), "batched fan-out")
		})
	}
}

// TestHandleActivitiesReportsBadEvents checks that an undecodable event
// fails alone and the rest of its batch is written.
func TestHandleActivitiesReportsBadEvents(t *testing.T) {
	env := testenv.New(t)
	deliveries, named := batchDeliveries(t)
	f, rdb := newBatchFanout(t, env.Log)
	batch := []eventlog.Delivery{deliveries[0], {Subject: "tidings.activities.x", Data: []byte{0xff, 0xff}, Sequence: 99, NumDelivered: 1}}
	errs := f.HandleActivities(t.Context(), batch)
	require.Len(t, errs, 2)
	require.NoError(t, errs[0])
	require.ErrorContains(t, errs[1], "decode activity event 99")
	data, err := rdb.Get(t.Context(), f.Stores().Timelines.HomeKey("u00")).Bytes()
	require.NoError(t, err)
	id, err := ids.Parse(named["by u01"])
	require.NoError(t, err)
	require.Contains(t, timelinestore.Decode(data), id)
}

// TestIdempotencyKeysExpireFromThePost checks that a post's idempotency key
// lives IdempotencyTTL from when the post was made, not from when it was
// applied: a replay neither brings back a key whose time is over nor
// extends one.
func TestIdempotencyKeysExpireFromThePost(t *testing.T) {
	t.Parallel()
	env := testenv.New(t)
	ctx := t.Context()
	p, rdb := newBatchFanout(t, env.Log)
	gen := ids.NewGenerator()
	post := func(seq uint64, scope string, age time.Duration) {
		a := &tidingsv1.Activity{Id: gen.Next().String(), Actor: &tidingsv1.Caller{Kind: tidingsv1.CallerKind_CALLER_KIND_EMPLOYEE, Id: "u01"},
			Verb: "posted", Text: "keyed", CreateTime: timestamppb.New(time.Now().Add(-age))}
		data, err := proto.Marshal(&tidingsv1.ActivityEvent{Change: &tidingsv1.ActivityEvent_Posted{Posted: a}, IdempotencyScope: scope})
		require.NoError(t, err)
		require.Nil(t, p.HandleActivities(ctx, []eventlog.Delivery{{Data: data, Sequence: seq, NumDelivered: 1}}))
	}
	post(1, "old", activitystore.IdempotencyTTL+time.Hour)
	post(2, "recent", activitystore.IdempotencyTTL-time.Hour)
	keys, err := rdb.Keys(ctx, "tidings:idem:*").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"tidings:idem:{recent}"}, keys, "a key whose time is over is not written")
	ttl, err := rdb.TTL(ctx, keys[0]).Result()
	require.NoError(t, err)
	require.LessOrEqual(t, ttl, time.Hour, "the key lives from the post, not from the apply")
	require.Positive(t, ttl)
}
