package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Conversations are the figures of comments, reactions and notifications,
// taken on the main organisation after the read figures:
//
//   - comment → notified: a post whose thread has Participants commenters;
//     Watchers of them watch their notifications (WatchNotifications)
//     while Probes more comments are made one at a time, and each
//     watcher's delay from the AddComment's return until its stream
//     delivered the notification naming that comment is a sample. After
//     the last probe every participant's notifications are read back
//     through the API.
//   - home reads with the conversation fields (the FULL view) against the
//     same reads without them (BASIC), saturated, on timelines whose items
//     have comments and reactions, alternating in five rounds (the cost is
//     the median round's ratio of rates), and in the same rounds the
//     latest-activity order (FULL).
//   - reactions on one hot post: Reactors users at once, each adding every
//     kind; the rate they were acknowledged at and the rate the worker
//     applied them at, and the counts read back, which must be exact.
type Conversations struct {
	Participants       int         `json:"thread_participants"`
	ThreadBuildSeconds float64     `json:"thread_build_seconds"`
	Watchers           int         `json:"watchers"`
	Probes             int         `json:"probes"`
	Notified           Percentiles `json:"comment_to_notified"`
	NotifiedVerified   int         `json:"participants_notified_of_last_probe"`
	NotifiedExpected   int         `json:"participants_expected"`

	ReadCallers       int     `json:"read_callers"`
	ItemsWithComments float64 `json:"read_items_with_comments"`
	BasicPerSec       float64 `json:"basic_reads_per_sec"`
	FullPerSec        float64 `json:"full_reads_per_sec"`
	CostRatio         float64 `json:"full_cost_vs_basic"`
	ActivityPerSec    float64 `json:"latest_activity_reads_per_sec"`
	ActivityCostRatio float64 `json:"latest_activity_cost_vs_latest_posts"`
	// ActivityItemsPerRead is how many items a latest-activity read
	// returned (50 asked).
	ActivityItemsPerRead float64 `json:"latest_activity_items_per_read"`
	Reactors             int     `json:"hot_post_reactors"`
	Reactions            int     `json:"hot_post_reactions"`
	AckedPerSec          float64 `json:"reactions_acknowledged_per_sec"`
	AppliedPerSec        float64 `json:"reactions_applied_per_sec"`
	CountsExact          bool    `json:"counts_exact"`
	CountsRead           string  `json:"counts_read"`
	FoldedActors         int64   `json:"author_notification_actors"`
}

// conversationKinds are the reactions each hot-post reactor adds.
var conversationKinds = []tidingsv1.ReactionKind{
	tidingsv1.ReactionKind_REACTION_KIND_LIKE,
	tidingsv1.ReactionKind_REACTION_KIND_CELEBRATE,
	tidingsv1.ReactionKind_REACTION_KIND_SUPPORT,
	tidingsv1.ReactionKind_REACTION_KIND_INSIGHTFUL,
	tidingsv1.ReactionKind_REACTION_KIND_FUNNY,
}

// runConversations takes the conversation figures.
func (r *runner) runConversations(ctx context.Context, c *client, org *Org) (*Conversations, error) {
	sz := r.opts.Sizes
	cv := &Conversations{}
	r.progress("conversations: %d reactors on one hot post", sz.Reactors)
	if err := runHotPost(ctx, c, org, sz.Reactors, cv); err != nil {
		return cv, fmt.Errorf("hot post: %w", err)
	}
	r.progress("conversations: %d reactions acknowledged at %.0f/s, applied at %.0f/s, counts %s", cv.Reactions, cv.AckedPerSec, cv.AppliedPerSec, cv.CountsRead)
	r.progress("conversations: a thread of %d participants", sz.Participants)
	if err := runThread(ctx, c, org, sz.Participants, sz.Probes, cv, r.opts.Seed); err != nil {
		return cv, fmt.Errorf("thread: %w", err)
	}
	r.progress("conversations: built in %.1fs; comment → notified p99 %.1f ms (%d samples), %d of %d participants notified",
		cv.ThreadBuildSeconds, cv.Notified.P99, cv.Notified.Count, cv.NotifiedVerified, cv.NotifiedExpected)
	r.progress("conversations: home reads with and without conversations, %s each", sz.Reads)
	if err := runConversationReads(ctx, c, org, sz.Reads, r.opts.Seed, cv); err != nil {
		return cv, fmt.Errorf("reads: %w", err)
	}
	r.progress("conversations: full %.0f/s, basic %.0f/s (cost %.2f ×), latest activity %.0f/s", cv.FullPerSec, cv.BasicPerSec, cv.CostRatio, cv.ActivityPerSec)
	return cv, nil
}

func (c *client) conversations() tidingsv1.ConversationServiceClient {
	return tidingsv1.NewConversationServiceClient(c.conn)
}

func (c *client) notifications() tidingsv1.NotificationServiceClient {
	return tidingsv1.NewNotificationServiceClient(c.conn)
}

func (c *client) postAs(ctx context.Context, user, text string) (*tidingsv1.Activity, error) {
	resp, err := c.activities.PostActivity(ctx, &tidingsv1.PostActivityRequest{ActorUserId: user, Text: text}, c.employee(user))
	if err != nil {
		return nil, fmt.Errorf("post as %s: %w", user, err)
	}
	return resp.GetActivity(), nil
}

func runHotPost(ctx context.Context, c *client, org *Org, reactors int, cv *Conversations) error {
	if len(org.Users) <= reactors {
		return fmt.Errorf("%d users cannot give %d reactors", len(org.Users), reactors)
	}
	author := org.Users[len(org.Users)-1]
	a, err := c.postAs(ctx, author, "A hot post: we won the Acme deal")
	if err != nil {
		return err
	}
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return err
	}
	cv.Reactors, cv.Reactions = reactors, reactors*len(conversationKinds)
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	for _, u := range org.Users[:reactors] {
		g.Go(func() error {
			for _, k := range conversationKinds {
				if _, err := c.conversations().AddReaction(gctx, &tidingsv1.AddReactionRequest{ActivityId: a.GetId(), UserId: u, Kind: k}, c.employee(u)); err != nil {
					return fmt.Errorf("react as %s: %w", u, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	cv.AckedPerSec = float64(cv.Reactions) / time.Since(start).Seconds()
	end, err := c.waitCaughtUp(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	cv.AppliedPerSec = float64(cv.Reactions) / end.Sub(start).Seconds()
	one, err := c.activities.GetActivity(ctx, &tidingsv1.GetActivityRequest{Id: a.GetId()}, c.employee(author))
	if err != nil {
		return err
	}
	got := map[tidingsv1.ReactionKind]int64{}
	for _, rc := range one.GetConversation().GetReactionCounts() {
		got[rc.GetKind()] = rc.GetCount()
	}
	cv.CountsExact = len(got) == len(conversationKinds)
	for _, k := range conversationKinds {
		if got[k] != int64(reactors) {
			cv.CountsExact = false
		}
	}
	cv.CountsRead = fmt.Sprintf("%d of each of %d kinds", got[conversationKinds[0]], len(conversationKinds))
	if !cv.CountsExact {
		cv.CountsRead = fmt.Sprintf("%v, want %d of each", got, reactors)
	}
	list, err := c.notifications().ListNotifications(ctx, &tidingsv1.ListNotificationsRequest{UserId: author, PageSize: 5}, c.employee(author))
	if err != nil {
		return err
	}
	for _, n := range list.GetNotifications() {
		if n.GetKind() == tidingsv1.NotificationKind_NOTIFICATION_KIND_REACTION && n.GetActivityId() == a.GetId() {
			cv.FoldedActors = n.GetActorCount()
			break
		}
	}
	return nil
}

// watchArrivals records when watchers' streams delivered the notification
// of each comment.
type watchArrivals struct {
	mu   sync.Mutex
	at   map[string][]time.Time
	wake chan struct{}
	err  error
}

func (w *watchArrivals) add(commentID string, t time.Time) {
	w.mu.Lock()
	w.at[commentID] = append(w.at[commentID], t)
	close(w.wake)
	w.wake = make(chan struct{})
	w.mu.Unlock()
}

// wait returns the arrivals of a comment once n watchers delivered it.
func (w *watchArrivals) wait(ctx context.Context, commentID string, n int) ([]time.Time, error) {
	timeout := time.After(watchLimit)
	for {
		w.mu.Lock()
		got, wake, err := w.at[commentID], w.wake, w.err
		w.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-wake:
		case <-timeout:
			return nil, fmt.Errorf("%d of %d watchers were notified of comment %s within %s", len(got), n, commentID, watchLimit)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func runThread(ctx context.Context, c *client, org *Org, participants, probes int, cv *Conversations, seed uint64) error {
	if len(org.Users) <= participants+1 {
		return fmt.Errorf("%d users cannot give %d participants", len(org.Users), participants)
	}
	author := org.Users[len(org.Users)-2]
	a, err := c.postAs(ctx, author, "What should we do for the offsite?")
	if err != nil {
		return err
	}
	users := org.Users[:participants]
	cv.Participants = participants
	start := time.Now()
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range posters {
		g.Go(func() error {
			for i := next.Add(1) - 1; i < int64(len(users)); i = next.Add(1) - 1 {
				u := users[i]
				_, err := c.conversations().AddComment(gctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: u, Text: "count me in"}, c.employee(u))
				if err != nil {
					return fmt.Errorf("comment as %s: %w", u, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	end, err := c.waitCaughtUp(ctx, 10*time.Minute)
	if err != nil {
		return err
	}
	cv.ThreadBuildSeconds = end.Sub(start).Seconds()

	// Watchers: the first participants; probes: the others, in turn.
	cv.Watchers = min(16, participants/2)
	watchers := users[:cv.Watchers]
	commenters := users[cv.Watchers:]
	arrivals := &watchArrivals{at: map[string][]time.Time{}, wake: make(chan struct{})}
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, u := range watchers {
		stream, err := c.notifications().WatchNotifications(wctx, &tidingsv1.WatchNotificationsRequest{UserId: u}, c.employee(u))
		if err != nil {
			return fmt.Errorf("watch notifications of %s: %w", u, err)
		}
		if _, err := stream.Header(); err != nil {
			return fmt.Errorf("watch notifications of %s: %w", u, err)
		}
		wg.Go(func() {
			for {
				resp, err := stream.Recv()
				if err != nil {
					if wctx.Err() == nil {
						arrivals.mu.Lock()
						arrivals.err = fmt.Errorf("watch of %s: %w", u, err)
						arrivals.mu.Unlock()
					}
					return
				}
				if n := resp.GetNotification(); n.GetActivityId() == a.GetId() && n.GetCommentId() != "" {
					arrivals.add(n.GetCommentId(), time.Now())
				}
			}
		})
	}
	notified := &latencies{}
	rng := rand.New(rand.NewPCG(seed, 99))
	var last string
	var lastAuthor string
	for p := range probes {
		u := commenters[rng.IntN(len(commenters))]
		resp, err := c.conversations().AddComment(ctx, &tidingsv1.AddCommentRequest{ActivityId: a.GetId(), AuthorUserId: u, Text: fmt.Sprintf("probe %d", p)}, c.employee(u))
		if err != nil {
			return fmt.Errorf("probe comment: %w", err)
		}
		done := time.Now()
		last, lastAuthor = resp.GetComment().GetComment().GetId(), u
		got, err := arrivals.wait(ctx, last, len(watchers))
		if err != nil {
			return err
		}
		for _, t := range got {
			notified.add(max(t.Sub(done), 0))
		}
		select {
		case <-time.After(probeEvery):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	stop()
	cv.Probes, cv.Notified = probes, notified.percentiles()

	// Every participant but the last commenter, and the author, were told
	// of the last comment.
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return err
	}
	expect := append([]string{author}, users...)
	var ok atomic.Int64
	var idx atomic.Int64
	g, gctx = errgroup.WithContext(ctx)
	for range readCallers {
		g.Go(func() error {
			for i := idx.Add(1) - 1; i < int64(len(expect)); i = idx.Add(1) - 1 {
				u := expect[i]
				if u == lastAuthor {
					continue
				}
				list, err := c.notifications().ListNotifications(gctx, &tidingsv1.ListNotificationsRequest{UserId: u, PageSize: 3}, c.employee(u))
				if err != nil {
					return err
				}
				for _, n := range list.GetNotifications() {
					if n.GetCommentId() == last {
						ok.Add(1)
						break
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	cv.NotifiedVerified, cv.NotifiedExpected = int(ok.Load()), len(expect)-1
	return nil
}

func runConversationReads(ctx context.Context, c *client, org *Org, d time.Duration, seed uint64, cv *Conversations) error {
	readers, err := fullest(ctx, c, org, 50, 100)
	if err != nil {
		return err
	}
	// Give half of what the readers see comments (one to three) and
	// reactions (none to four), as a busy company's feed has.
	seen := map[string]bool{}
	var ids []string
	for _, u := range readers[:min(len(readers), 40)] {
		resp, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: u, PageSize: 50, View: tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC}, c.employee(u))
		if err != nil {
			return err
		}
		for _, it := range resp.GetItems() {
			if id := it.GetActivity().GetId(); !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	var idx atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := range posters {
		rng := rand.New(rand.NewPCG(seed, 1000+uint64(w)))
		g.Go(func() error {
			for i := idx.Add(1) - 1; i < int64(len(ids)); i = idx.Add(1) - 1 {
				if rng.IntN(2) == 0 {
					continue
				}
				for range 1 + rng.IntN(3) {
					u := org.Users[rng.IntN(len(org.Users))]
					if _, err := c.conversations().AddComment(gctx, &tidingsv1.AddCommentRequest{ActivityId: ids[i], AuthorUserId: u, Text: "+1"}, c.employee(u)); err != nil && !hidden(err) {
						return err
					}
				}
				for range rng.IntN(5) {
					u := org.Users[rng.IntN(len(org.Users))]
					if _, err := c.conversations().AddReaction(gctx, &tidingsv1.AddReactionRequest{ActivityId: ids[i], UserId: u, Kind: tidingsv1.ReactionKind_REACTION_KIND_LIKE}, c.employee(u)); err != nil && !hidden(err) {
						return err
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return err
	}
	cv.ReadCallers = readCallers
	var items, commented, activityItems, activityReads atomic.Int64
	read := func(view tidingsv1.FeedItemView, sort tidingsv1.HomeSort) func(ctx context.Context, w int, i int64) error {
		return func(ctx context.Context, w int, i int64) error {
			u := readers[(int(i)*31+w)%len(readers)]
			resp, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: u, PageSize: 50, View: view, Sort: sort}, c.employee(u))
			if err != nil {
				return fmt.Errorf("read home of %s: %w", u, err)
			}
			if sort == tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY {
				activityItems.Add(int64(len(resp.GetItems())))
				activityReads.Add(1)
			}
			if view == tidingsv1.FeedItemView_FEED_ITEM_VIEW_FULL && sort != tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY {
				for _, it := range resp.GetItems() {
					items.Add(1)
					if it.GetConversation().GetCommentCount() > 0 {
						commented.Add(1)
					}
				}
			}
			return nil
		}
	}
	// Alternate the two views in short rounds, so that drift on a shared
	// machine weighs on both alike, and take the median round's ratio.
	const rounds = 5
	var basic, full, activity float64
	ratios := make([]float64, 0, rounds)
	activityRatios := make([]float64, 0, rounds)
	for range rounds {
		b, err := closedLoop(ctx, readCallers, d/rounds, read(tidingsv1.FeedItemView_FEED_ITEM_VIEW_BASIC, tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS))
		if err != nil {
			return err
		}
		f, err := closedLoop(ctx, readCallers, d/rounds, read(tidingsv1.FeedItemView_FEED_ITEM_VIEW_FULL, tidingsv1.HomeSort_HOME_SORT_LATEST_POSTS))
		if err != nil {
			return err
		}
		a, err := closedLoop(ctx, readCallers, d/rounds/2, read(tidingsv1.FeedItemView_FEED_ITEM_VIEW_FULL, tidingsv1.HomeSort_HOME_SORT_LATEST_ACTIVITY))
		if err != nil {
			return err
		}
		basic, full, activity = basic+b/rounds, full+f/rounds, activity+a/rounds
		ratios = append(ratios, b/f)
		activityRatios = append(activityRatios, f/a)
	}
	slices.Sort(ratios)
	slices.Sort(activityRatios)
	cv.BasicPerSec, cv.FullPerSec, cv.CostRatio = basic, full, ratios[rounds/2]
	cv.ActivityPerSec, cv.ActivityCostRatio = activity, activityRatios[rounds/2]
	cv.ItemsWithComments = float64(commented.Load()) / float64(max(1, items.Load()))
	cv.ActivityItemsPerRead = float64(activityItems.Load()) / float64(max(1, activityReads.Load()))
	return nil
}

// hidden reports an activity a random commenter may not see (a restricted
// record's event), which the seeding skips.
func hidden(err error) bool { return status.Code(err) == codes.NotFound }
