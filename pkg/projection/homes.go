package projection

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	"github.com/tidingshq/tidings/pkg/redisx"
)

// homeWrites are the home timeline writes of a batch, by user: ids to
// insert and ids to take out, of home timelines and of inboxes.
type homeWrites struct {
	adds, removes  map[string][]ids.ID
	inbox, unInbox map[string][]ids.ID
}

// direct adds the writes that deliver an activity to the users it is
// addressed to rather than to the followers of an entity (its mentions):
// their home timelines and their inboxes, which keep it for reads past the
// home timeline's floor and for rebuilds. Users visible rejects (nil:
// everyone may see it) get nothing. It returns the users reached. An edit
// that adds mentions delivers to the new ones with it.
func (h *homeWrites) direct(users []string, id ids.ID, visible func(string) bool) []string {
	var to []string
	for _, u := range users {
		if visible == nil || visible(u) {
			to = append(to, u)
		}
	}
	h.add(to, id)
	if h.inbox == nil {
		h.inbox = map[string][]ids.ID{}
	}
	for _, u := range to {
		h.inbox[u] = append(h.inbox[u], id)
	}
	return to
}

// undirect takes an activity back out of the home timelines and inboxes of
// the users it was addressed to.
func (h *homeWrites) undirect(users []string, id ids.ID) {
	h.remove(users, id)
	if h.unInbox == nil {
		h.unInbox = map[string][]ids.ID{}
	}
	for _, u := range users {
		h.unInbox[u] = append(h.unInbox[u], id)
	}
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
		inbox  bool
	}
	writes := make([]write, 0, len(h.adds)+len(h.removes)+len(h.inbox)+len(h.unInbox))
	for u, list := range h.adds {
		writes = append(writes, write{u, list, false, false})
	}
	for u, list := range h.inbox {
		writes = append(writes, write{u, list, false, true})
	}
	for u, list := range h.removes {
		writes = append(writes, write{u, list, true, false})
	}
	for u, list := range h.unInbox {
		writes = append(writes, write{u, list, true, true})
	}
	since := p.activeSince()
	ts := p.st.Timelines
	for lo := 0; lo < len(writes); lo += p.cfg.WriteBatch {
		part := writes[lo:min(lo+p.cfg.WriteBatch, len(writes))]
		added := make([]redisx.Result[int64], len(part))
		err := redisx.Pipeline(ctx, ts.Client(), func(pipe redis.Pipeliner) error {
			for i, w := range part {
				switch {
				case w.remove && w.inbox:
					ts.QueueRemove(ctx, pipe, ts.InboxKey(w.user), w.ids)
				case w.remove:
					ts.QueueRemove(ctx, pipe, ts.HomeKey(w.user), w.ids)
				case w.inbox:
					// Inboxes are written for inactive users too: their
					// rebuild reads them.
					ts.QueueInsert(ctx, pipe, ts.InboxKey(w.user), p.cfg.InboxCap, w.ids)
				default:
					added[i] = ts.QueueInsertHome(ctx, pipe, w.user, p.cfg.HomeCap, since, w.ids)
				}
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
// only while each user receives one of sources (entity keys): follows it,
// or kept a history of it that holds the ids.
type guardedInsert struct {
	users   []string
	ids     []ids.ID
	sources []string
}

// insertIfFollowing writes guarded inserts (timelinestore's
// QueueInsertHomeIfFollowing) in pipelines of up to Config.WriteBatch
// writes, counts the new entries, and returns, for each insert, the users
// who still receive it (their watchers are told, whether or not their
// timelines took it: an inactive user's is rebuilt at their next read).
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
			if v < 0 {
				continue
			}
			n += v
			w := part[i]
			reached[w.insert] = append(reached[w.insert], ins[w.insert].users[w.user])
		}
		p.m.delivered(n)
	}
	return reached, nil
}
