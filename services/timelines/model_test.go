package timelines_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/testenv"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
	"github.com/tidingshq/tidings/services/stack"
	"github.com/tidingshq/tidings/services/stacktest"
)

// feedModel is the reference of what each user's home feed holds
// (docs/architecture.md, "The home feed"): an activity reaches a user who
// wrote it, is mentioned in it, or receives one of its sources (its
// author, its record) in an interval of that source's feed. A follow
// opens an interval from the oldest of the source's newest Backfill
// activities (from the start when it had no more); an unfollow closes it
// after the source's newest activity (keep_history) or drops it. Hot
// switches and absences change nothing in it.
type feedModel struct {
	backfill int
	acts     []*modelAct // in id order
	// kept counts the unfollows that kept a history.
	kept int
	// intervals[user][entity] are the user's intervals of the entity.
	intervals map[string]map[string][]modelInterval
}

type modelAct struct {
	id       ids.ID
	actor    string
	sources  []string
	mentions []string
	deleted  bool
}

type modelInterval struct{ from, to ids.ID } // to 0: open

func newFeedModel(backfill int) *feedModel {
	return &feedModel{backfill: backfill, intervals: map[string]map[string][]modelInterval{}}
}

// feed returns an entity's activities, newest first.
func (m *feedModel) feed(e string) []*modelAct {
	var out []*modelAct
	for i := len(m.acts) - 1; i >= 0; i-- {
		a := m.acts[i]
		if !a.deleted && slices.Contains(a.sources, e) {
			out = append(out, a)
		}
	}
	return out
}

func (m *feedModel) post(a *tidingsv1.Activity) {
	id, err := ids.Parse(a.GetId())
	if err != nil {
		panic(err)
	}
	act := &modelAct{id: id, actor: entity.ActorUser(a), sources: entity.Sources(a), mentions: a.GetMentionUserIds()}
	i, _ := slices.BinarySearchFunc(m.acts, id, func(x *modelAct, id ids.ID) int { return cmpID(x.id, id) })
	m.acts = slices.Insert(m.acts, i, act)
}

func (m *feedModel) remove(id string) {
	for _, a := range m.acts {
		if a.id.String() == id {
			a.deleted = true
		}
	}
}

func (m *feedModel) follow(u, e string) {
	ivs := m.of(u)
	list := ivs[e]
	if len(list) > 0 && list[len(list)-1].to == 0 {
		return
	}
	var from ids.ID
	if f := m.feed(e); len(f) > m.backfill {
		from = f[m.backfill-1].id
	}
	var out []modelInterval
	for _, iv := range list {
		if iv.to >= from {
			from = min(from, iv.from)
			break
		}
		out = append(out, iv)
	}
	ivs[e] = append(out, modelInterval{from: from})
}

func (m *feedModel) unfollow(u, e string, keep bool) {
	ivs := m.of(u)
	list := ivs[e]
	if len(list) == 0 || list[len(list)-1].to != 0 {
		return
	}
	last := list[len(list)-1]
	list = list[:len(list)-1]
	if keep {
		var end ids.ID = 1
		if f := m.feed(e); len(f) > 0 {
			end = f[0].id + 1
		}
		if end > last.from {
			list = append(list, modelInterval{last.from, end})
			m.kept++
		}
	}
	if len(list) == 0 {
		delete(ivs, e)
	} else {
		ivs[e] = list
	}
}

func (m *feedModel) of(u string) map[string][]modelInterval {
	if m.intervals[u] == nil {
		m.intervals[u] = map[string][]modelInterval{}
	}
	return m.intervals[u]
}

// home is what u should see, newest first.
func (m *feedModel) home(u string) []string {
	var out []string
	for i := len(m.acts) - 1; i >= 0; i-- {
		a := m.acts[i]
		if a.deleted {
			continue
		}
		reaches := a.actor == u || slices.Contains(a.mentions, u)
		for _, s := range a.sources {
			for _, iv := range m.intervals[u][s] {
				reaches = reaches || (a.id >= iv.from && (iv.to == 0 || a.id < iv.to))
			}
		}
		if reaches {
			out = append(out, a.id.String())
		}
	}
	return out
}

func cmpID(a, b ids.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// watchLog collects what a Watch open for the whole test receives.
type watchLog struct {
	mu  sync.Mutex
	got map[string]bool
	err error
}

func (l *watchLog) missing(want []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, id := range want {
		if !l.got[id] {
			out = append(out, id)
		}
	}
	return out
}

// TestHomeFeedMatchesModel plays a random history of follows, unfollows
// (with and without keep_history), posts, mentions, record events,
// deletes, hot switches both ways and absences past the inactivity limit
// (on an injected clock), with a home cap of 50, entities hot above 20
// followers and pushed again below 15, and checks after every step that
// paging each user's home to the end returns exactly what the model says,
// in order, and that a Watch open throughout received every item of it.
// TIDINGS_FEED_SEED picks another history.
func TestHomeFeedMatchesModel(t *testing.T) {
	t.Parallel()
	seed := uint64(20261201)
	if v := os.Getenv("TIDINGS_FEED_SEED"); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err)
	}
	t.Logf("history seed %d (TIDINGS_FEED_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	const (
		backfill      = 4
		inactiveAfter = time.Hour
		steps         = 140
	)
	var skew atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	s := stacktest.Start(t, stacktest.Options{
		Configure: func(c *config.Config) {
			smallFeeds(c)
			c.Backfill, c.InactiveAfter = backfill, inactiveAfter
		},
		Overrides: stack.Overrides{Now: now},
	})
	s.StartWorker(t)
	ctx := t.Context()
	users := []string{"u0", "u1", "u2", "u3", "u4"}
	s.Users(t, users...)
	crowd := fans(t, s, "fan", 22)
	crm := s.Records(t, testenv.App("crm"))
	deal := &tidingsv1.RecordRef{Type: "crm.deal", ExternalId: "d1"}
	_, err := crm.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{Ref: deal, Title: "A deal"}})
	require.NoError(t, err)
	entities := []*tidingsv1.EntityRef{entity.Record("crm.deal", "d1")}
	for _, u := range users {
		entities = append(entities, entity.User(u))
	}

	m := newFeedModel(backfill)
	logs := map[string]*watchLog{}
	for _, u := range users {
		stream, cancel := watch(t, s, u, "")
		t.Cleanup(cancel)
		l := &watchLog{got: map[string]bool{}}
		logs[u] = l
		go func() {
			for {
				resp, err := stream.Recv()
				l.mu.Lock()
				if err != nil {
					l.err = err
					l.mu.Unlock()
					return
				}
				l.got[resp.GetItem().GetActivity().GetId()] = true
				l.mu.Unlock()
			}
		}()
	}

	var history []string
	pick := func(list []string) string { return list[rng.IntN(len(list))] }
	text := func(author string) string {
		switch rng.IntN(4) {
		case 0:
			return fmt.Sprintf("news for @%s", pick(users))
		case 1:
			return fmt.Sprintf("news for @%s and @%s", pick(users), pick(crowd))
		}
		return fmt.Sprintf("news %d from %s", rng.IntN(1000), author)
	}
	postBy := func(u string) {
		resp, err := s.Activities(t, testenv.Employee(u)).PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: u, Text: text(u)})
		require.NoError(t, err)
		m.post(resp.GetActivity())
	}
	type owned struct{ id, author string }
	var deletable []owned
	crowded := map[string]bool{}
	for step := range steps {
		u := pick(users)
		var what string
		switch r := rng.IntN(100); {
		case r < 24:
			what = "post: by " + u
			postBy(u)
			last := m.acts[len(m.acts)-1]
			deletable = append(deletable, owned{last.id.String(), u})
		case r < 30:
			what = "record: event for " + u
			resp, err := crm.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
				Ref: deal, Verb: "updated", Text: text(u), OnBehalfOf: u, EventId: fmt.Sprintf("e%d", step)})
			require.NoError(t, err)
			m.post(resp.GetActivity())
		case r < 36:
			what = "burst: by " + u
			for range 10 {
				postBy(u)
			}
		case r < 54:
			e := entities[rng.IntN(len(entities))]
			if entity.Key(e) == entity.UserKey(u) {
				continue
			}
			what = fmt.Sprintf("follow: %s follows %s", u, entity.Key(e))
			follow(t, s, u, e)
			s.WaitCaughtUp(t) // the backfill reads the feed as the model does
			m.follow(u, entity.Key(e))
		case r < 66:
			// Mostly what the user follows.
			e := entities[rng.IntN(len(entities))]
			var followed []string
			for k, iv := range m.intervals[u] {
				if iv[len(iv)-1].to == 0 {
					followed = append(followed, k)
				}
			}
			slices.Sort(followed)
			if len(followed) > 0 && rng.IntN(4) > 0 {
				e, err = entity.Parse(pick(followed))
				require.NoError(t, err)
			}
			keep := rng.IntN(2) == 0
			what = fmt.Sprintf("unfollow: %s unfollows %s (keep %v)", u, entity.Key(e), keep)
			_, err := s.Follows(t, testenv.Employee(u)).Unfollow(ctx, &tidingsv1.UnfollowRequest{UserId: u, Entity: e, KeepHistory: keep})
			require.NoError(t, err)
			s.WaitCaughtUp(t)
			m.unfollow(u, entity.Key(e), keep)
		case r < 74 && len(deletable) > 0:
			i := rng.IntN(len(deletable))
			d := deletable[i]
			deletable = slices.Delete(deletable, i, i+1)
			what = "delete: " + d.id
			_, err := s.Activities(t, testenv.Employee(d.author)).DeleteActivity(ctx, &tidingsv1.DeleteActivityRequest{Id: d.id})
			require.NoError(t, err)
			m.remove(d.id)
		case r < 84:
			// The crowd follows an author (hot from its next post on), or
			// leaves one (pushed again from its next post on).
			e := entity.User(pick(users))
			k := entity.Key(e)
			what = fmt.Sprintf("crowd: follows %s (%v)", k, !crowded[k])
			bulk(t, s, crowd, e, !crowded[k])
			crowded[k] = !crowded[k]
			s.WaitCaughtUp(t)
			for range 3 {
				postBy(strings.TrimPrefix(k, "u:"))
			}
		case r < 90:
			// Everyone is away past the limit: the fan-out skips them, and
			// the next read rebuilds each home.
			what = "absence:"
			skew.Add(int64(inactiveAfter + time.Minute))
			for range 6 {
				postBy(pick(users))
			}
		default:
			what = "quiet: " + u
		}
		history = append(history, fmt.Sprintf("%d: %s", step, what))
		s.WaitCaughtUp(t)
		for _, v := range users {
			want := m.home(v)
			got := pagedHome(t, s, v, 9)
			if !slices.Equal(want, got) {
				t.Fatalf("step %d (%s): home of %s differs from the model\nmissing %v\nextra %v\n%s\nhistory:\n%s",
					step, what, v, diff(want, got), diff(got, want), explain(t, s, m, v), strings.Join(history, "\n"))
			}
		}
		for _, v := range users {
			want := m.home(v)
			testenv.Eventually(t, 10*time.Second, func() bool { return len(logs[v].missing(want)) == 0 },
				"step %d (%s): the watch of %s misses %v (err %v)\nhistory:\n%s", step, what, v, logs[v].missing(want), logs[v].err, strings.Join(history, "\n"))
		}
	}
	// The history went where it should: past the cap, through hot
	// switches both ways, kept histories and absences.
	longest, floors := 0, 0
	for _, v := range users {
		longest = max(longest, len(m.home(v)))
		src, err := s.Stores().Timelines.Sources(ctx, v)
		require.NoError(t, err)
		if src.Floor != 0 {
			floors++
		}
	}
	pulled, err := s.Stores().Hot.Pulled(ctx)
	require.NoError(t, err)
	closed := 0
	for _, rs := range pulled {
		for _, r := range rs {
			if r.To != 0 {
				closed++
			}
		}
	}
	kinds := map[string]int{}
	for _, h := range history {
		_, what, _ := strings.Cut(h, ": ")
		kind, _, _ := strings.Cut(what, ":")
		kinds[kind]++
	}
	t.Logf("steps %v; longest home %d; %d floors set; %d kept histories; %d entities pulled, %d ranges closed", kinds, longest, floors, m.kept, len(pulled), closed)
	require.Greater(t, longest, 50, "the history reaches past the cap")
	require.Positive(t, floors, "timelines were trimmed")
	require.Positive(t, m.kept, "histories were kept")
	require.Positive(t, closed, "entities turned hot and back")
	require.Positive(t, kinds["absence"], "users were away")
}

// diff returns the ids of a missing from b.
func diff(a, b []string) []string {
	var out []string
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

// explain describes a user's home sources, stored timeline and the pull
// ranges, and the model's intervals, for a failure message.
func explain(t *testing.T, s *stacktest.Stack, m *feedModel, u string) string {
	ctx := t.Context()
	src, err := s.Stores().Timelines.Sources(ctx, u)
	require.NoError(t, err)
	stored, err := s.Stores().Timelines.All(ctx, s.Stores().Timelines.HomeKey(u))
	require.NoError(t, err)
	pulled, err := s.Stores().Hot.Pulled(ctx)
	require.NoError(t, err)
	seen, _ := s.Env.RDB.Get(ctx, timelinestore.SeenKey(u)).Result()
	var b strings.Builder
	fmt.Fprintf(&b, "floor %s, %d stored, newest %v, oldest %v, seen %s\n", src.Floor, len(stored), stored[:min(len(stored), 3)], stored[max(len(stored)-1, 0):], seen)
	for e, iv := range src.Entities {
		fmt.Fprintf(&b, "source %s %v (model %v) pulled %v\n", e, iv, m.intervals[u][e], pulled[e])
	}
	for _, a := range m.acts[max(len(m.acts)-5, 0):] {
		fmt.Fprintf(&b, "act %s by %s sources %v mentions %v deleted %v\n", a.id, a.actor, a.sources, a.mentions, a.deleted)
	}
	return b.String()
}
