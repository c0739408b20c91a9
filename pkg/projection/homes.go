package projection

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// homeWrites are the home timeline writes of a batch, by user: ids to
// insert and ids to take out.
type homeWrites struct {
	adds, removes map[string][]ids.ID
}

func (h *homeWrites) add(users []string, id ids.ID) {
	if h.adds == nil {
		h.adds = map[string][]ids.ID{}
	}
	for _, u := range users {
		h.adds[u] = append(h.adds[u], id)
	}
}

func (h *homeWrites) remove(users []string, id ids.ID) {
	if h.removes == nil {
		h.removes = map[string][]ids.ID{}
	}
	for _, u := range users {
		h.removes[u] = append(h.removes[u], id)
	}
}

// writeHomes writes every user's ids in one call per user (inserts first,
// then removals), in pipelines of up to Config.WriteBatch users, and
// counts the new entries.
func (p *Projector) writeHomes(ctx context.Context, h *homeWrites) error {
	type write struct {
		user   string
		ids    []ids.ID
		remove bool
	}
	writes := make([]write, 0, len(h.adds)+len(h.removes))
	for u, list := range h.adds {
		writes = append(writes, write{u, list, false})
	}
	for u, list := range h.removes {
		writes = append(writes, write{u, list, true})
	}
	since := p.activeSince()
	for lo := 0; lo < len(writes); lo += p.cfg.WriteBatch {
		part := writes[lo:min(lo+p.cfg.WriteBatch, len(writes))]
		added := make([]redisx.Result[int64], len(part))
		err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
			for i, w := range part {
				if w.remove {
					p.st.Timelines.QueueRemove(ctx, pipe, p.st.Timelines.HomeKey(w.user), w.ids)
					continue
				}
				added[i] = p.st.Timelines.QueueInsertHome(ctx, pipe, w.user, p.cfg.HomeCap, since, w.ids)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write %d home timelines: %w", len(part), err)
		}
		var n int64
		for _, r := range added {
			if r != nil {
				v, _ := r()
				n += v
			}
		}
		p.m.delivered(n)
	}
	return nil
}

// guardedInsert is the write of ids into users' home timelines that is due
// only while each user follows one of sources (entity keys).
type guardedInsert struct {
	users   []string
	ids     []ids.ID
	sources []string
}

// insertIfFollowing writes guarded inserts (timelinestore's
// QueueInsertHomeIfFollowing) in pipelines of up to Config.WriteBatch
// writes, counts the new entries, and returns, for each insert, the users
// whose timelines took it.
func (p *Projector) insertIfFollowing(ctx context.Context, ins []guardedInsert) ([][]string, error) {
	type write struct {
		insert, user int
	}
	var writes []write
	for i, in := range ins {
		if len(in.ids) == 0 {
			continue
		}
		for u := range in.users {
			writes = append(writes, write{i, u})
		}
	}
	reached := make([][]string, len(ins))
	since := p.activeSince()
	for lo := 0; lo < len(writes); lo += p.cfg.WriteBatch {
		part := writes[lo:min(lo+p.cfg.WriteBatch, len(writes))]
		added := make([]redisx.Result[int64], len(part))
		err := redisx.Pipeline(ctx, p.st.Timelines.Client(), func(pipe redis.Pipeliner) error {
			for i, w := range part {
				in := ins[w.insert]
				u := in.users[w.user]
				added[i] = p.st.Timelines.QueueInsertHomeIfFollowing(ctx, pipe, u, p.st.Graph.FollowingKey(u), in.sources,
					p.cfg.HomeCap, since, in.ids)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("write %d home timelines: %w", len(part), err)
		}
		var n int64
		for i, r := range added {
			v, err := r()
			if err != nil {
				return nil, err
			}
			n += v
			if v > 0 {
				w := part[i]
				reached[w.insert] = append(reached[w.insert], ins[w.insert].users[w.user])
			}
		}
		p.m.delivered(n)
	}
	return reached, nil
}
