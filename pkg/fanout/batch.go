package fanout

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	"github.com/tidingshq/tidings/pkg/activity"
	"github.com/tidingshq/tidings/pkg/entity"
	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/recordstore"
	"github.com/tidingshq/tidings/pkg/redisx"
	"github.com/tidingshq/tidings/pkg/timelinestore"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// HandleActivities is the batch handler of the ACTIVITIES stream: it does
// what HandleActivity does for each event, but the posts with small
// audiences (up to Config.WriteBatch users) share three pipelines, whatever
// their number:
//
//  1. store the bodies, and read the records' visibility and the sources'
//     follower counts;
//  2. decide push or pull for each source, read the followers, and insert
//     the ids into the entity feeds;
//  3. insert the ids into the home timelines, one call per user for all of
//     that user's new ids.
//
// Edits, deletes and posts with larger audiences then take HandleActivity's
// path, one at a time, in log order. It returns one error per event (nil
// when all went well): an error makes that event be delivered again.
func (f *Fanout) HandleActivities(ctx context.Context, ds []eventlog.Delivery) []error {
	errs := make([]error, len(ds))
	var (
		posts []*batchPost
		rest  []int
	)
	for i, d := range ds {
		ev := &tidingsv1.ActivityEvent{}
		if err := proto.Unmarshal(d.Data, ev); err != nil {
			errs[i] = fmt.Errorf("decode activity event %d: %w", d.Sequence, err)
			continue
		}
		a := ev.GetPosted()
		if a == nil {
			rest = append(rest, i)
			continue
		}
		id, err := ids.Parse(a.GetId())
		if err != nil {
			errs[i] = fmt.Errorf("activity %q: %w", a.GetId(), err)
			continue
		}
		posts = append(posts, &batchPost{index: i, seq: d.Sequence, ev: ev, a: a, id: id})
	}
	if len(posts) > 0 {
		large, err := f.distributeBatch(ctx, posts)
		if err != nil {
			for _, p := range posts {
				errs[p.index] = err
			}
		}
		for _, p := range large {
			rest = append(rest, p.index)
		}
	}
	slices.Sort(rest)
	for _, i := range rest {
		errs[i] = f.HandleActivity(ctx, ds[i])
	}
	if slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		return errs
	}
	return nil
}

// batchPost is one posted activity of a batch and what the batch learns
// of it.
type batchPost struct {
	index int
	seq   uint64
	ev    *tidingsv1.ActivityEvent
	a     *tidingsv1.Activity
	id    ids.ID

	deleted redisx.Result[bool]
	srcs    []string
	direct  []string
	visible func(string) bool
	// pulled[i] tells whether srcs[i] is pulled for this post.
	pulled []redisx.Result[bool]
}

// distributeBatch writes posts with small audiences and returns those with
// larger ones, whose bodies it has stored, for HandleActivity.
func (f *Fanout) distributeBatch(ctx context.Context, posts []*batchPost) (large []*batchPost, err error) {
	rdb := f.st.Timelines.Client()

	// 1. Bodies, records, follower counts.
	records := map[string]redisx.Result[*tidingsv1.Record]{}
	counts := map[string]redisx.Result[int64]{}
	err = redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		clear(records)
		clear(counts)
		for _, p := range posts {
			p.deleted = f.st.Bodies.QueuePut(ctx, pipe, p.seq, p.a)
			if scope := p.ev.GetIdempotencyScope(); scope != "" {
				f.st.Bodies.QueueRememberIdempotent(ctx, pipe, scope, p.a.GetId())
			}
			if r := p.a.GetRecord(); r != nil {
				if k := entity.RecordKey(r); records[k] == nil {
					records[k] = f.st.Records.QueueGet(ctx, pipe, r)
				}
			}
			p.srcs = sources(p.a)
			for _, s := range p.srcs {
				if counts[s] == nil {
					counts[s] = f.st.Graph.QueueFollowerCount(ctx, pipe, s)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store %d activities: %w", len(posts), err)
	}
	small := posts[:0:0]
	for _, p := range posts {
		deleted, err := p.deleted()
		if err != nil {
			return nil, err
		}
		if deleted {
			continue // a late post of a deleted activity writes nothing
		}
		audience := 0
		for _, s := range p.srcs {
			n, err := counts[s]()
			if err != nil {
				return nil, err
			}
			audience += int(n)
		}
		p.direct = slices.Clone(p.a.GetMentionUserIds())
		if u := activity.ActorUser(p.a); u != "" {
			p.direct = append(p.direct, u)
		}
		if audience+len(p.direct) > f.cfg.WriteBatch {
			large = append(large, p)
			continue
		}
		if r := p.a.GetRecord(); r != nil {
			rec, err := records[entity.RecordKey(r)]()
			switch {
			case errors.Is(err, recordstore.ErrNotFound):
				// A deleted record's activities reach no one new.
				p.visible = func(string) bool { return false }
			case err != nil:
				return nil, err
			case rec.GetVisibility() == tidingsv1.Visibility_VISIBILITY_RESTRICTED:
				p.visible = func(u string) bool { return recordstore.UserMaySee(rec, u) }
			}
		}
		small = append(small, p)
	}
	if len(small) == 0 {
		return large, nil
	}

	// 2. Push or pull, followers, entity feeds.
	followers := map[string]redisx.Result[[]string]{}
	feedIDs := map[string][]ids.ID{}
	for _, p := range small {
		for _, s := range p.srcs {
			k := timelinestore.FeedKey(s)
			feedIDs[k] = append(feedIDs[k], p.id)
		}
	}
	err = redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
		clear(followers)
		for _, p := range small {
			p.pulled = make([]redisx.Result[bool], len(p.srcs))
			for i, s := range p.srcs {
				if f.st.Hot != nil {
					n, _ := counts[s]() // read without error in step 1
					p.pulled[i] = f.st.Hot.QueueDecide(ctx, pipe, s, p.id, n)
				}
				// Read before the decision is known: a pulled source's
				// followers (few, or its post would not be here) go unused.
				if followers[s] == nil {
					followers[s] = f.st.Graph.QueueFollowers(ctx, pipe, s)
				}
			}
		}
		// The entity feeds' counts are not needed; a failed insert fails
		// the pipeline.
		for k, list := range feedIDs {
			f.st.Timelines.QueueInsert(ctx, pipe, k, f.cfg.FeedCap, list)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("fan out %d activities: %w", len(small), err)
	}

	// 3. Home timelines: each user's new ids in one call.
	homeIDs := map[string][]ids.ID{}
	notices := make([][]string, len(small))
	for j, p := range small {
		audience := slices.Clone(p.direct)
		for i, s := range p.srcs {
			if p.pulled[i] != nil {
				pulled, err := p.pulled[i]()
				if err != nil {
					return nil, err
				}
				if pulled {
					if f.st.Live != nil {
						if err := f.st.Live.NotifyEntity(s, p.id); err != nil {
							f.logger.WarnContext(ctx, "live notice not sent", "entity", s, "error", err)
						}
					}
					continue
				}
			}
			users, err := followers[s]()
			if err != nil {
				return nil, err
			}
			audience = append(audience, users...)
		}
		slices.Sort(audience)
		audience = slices.Compact(audience)
		to := audience[:0]
		for _, u := range audience {
			if p.visible == nil || p.visible(u) {
				to = append(to, u)
				homeIDs[u] = append(homeIDs[u], p.id)
			}
		}
		notices[j] = to
	}
	if err := f.insertHomes(ctx, rdb, homeIDs); err != nil {
		return nil, err
	}
	if f.st.Live != nil {
		// Best effort: a lost notice is made good on resume.
		for j, p := range small {
			if err := f.st.Live.Notify(notices[j], p.id); err != nil {
				f.logger.WarnContext(ctx, "live notices not sent", "activity", p.id.String(), "error", err)
			}
		}
	}
	return large, nil
}

// insertHomes inserts each user's ids into their home timeline, in
// pipelines of up to Config.WriteBatch users.
func (f *Fanout) insertHomes(ctx context.Context, rdb redis.UniversalClient, homeIDs map[string][]ids.ID) error {
	users := make([]string, 0, len(homeIDs))
	for u := range homeIDs {
		users = append(users, u)
	}
	since := f.activeSince()
	for lo := 0; lo < len(users); lo += f.cfg.WriteBatch {
		part := users[lo:min(lo+f.cfg.WriteBatch, len(users))]
		res := make([]redisx.Result[int64], len(part))
		err := redisx.Pipeline(ctx, rdb, func(pipe redis.Pipeliner) error {
			for i, u := range part {
				res[i] = f.st.Timelines.QueueInsertHome(ctx, pipe, u, f.cfg.HomeCap, since, homeIDs[u])
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("insert into %d home timelines: %w", len(part), err)
		}
		var added int64
		for _, r := range res {
			n, err := r()
			if err != nil {
				return err
			}
			added += n
		}
		f.st.Metrics.delivered(added)
	}
	return nil
}
