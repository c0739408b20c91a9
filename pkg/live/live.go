// Package live carries "your timeline has a new item" notices from the
// fan-out to the processes serving TimelineService.Watch, over core NATS
// (one subject per user, fire-and-forget). The home timeline stays the
// source of truth: a notice lost on the way is made good when the client
// resumes from its last item.
//
// A Hub shares one subscription per user among that user's watchers in a
// process and hands each notice to every watcher's bounded buffer without
// waiting: a watcher whose buffer is full is cut off (its channel closes
// with Overflowed set), so a slow client never slows the others or the
// fan-out.
//
// Besides items, watchers receive changes (Change): an entity turned hot
// (on SwitchSubject, which every watcher listens to), or the user's home
// sources changed (a follow or an unfollow, on the user's subject with the
// Tidings-Notice header). A watcher that follows what the user follows
// while it is open listens to the subjects of the hot entities it learns of
// this way (Watcher.Listen).
package live

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
)

// SubjectPrefix starts every live subject.
const SubjectPrefix = "tidings.live"

// Subject is the live subject of a user's home timeline.
func Subject(userID string) string { return SubjectPrefix + ".user." + eventlog.Token(userID) }

// EntitySubject is the live subject of a hot entity's posts, which are not
// pushed to each follower (pkg/hot): watchers who follow it listen here.
func EntitySubject(entityKey string) string {
	return SubjectPrefix + ".entity." + eventlog.Token(entityKey)
}

// NotificationSubject is the live subject of a user's notifications.
func NotificationSubject(userID string) string {
	return SubjectPrefix + ".notify." + eventlog.Token(userID)
}

// SwitchSubject carries hot switches: an entity's posts are pulled from
// now on, from the id the notice holds.
const SwitchSubject = SubjectPrefix + ".switch"

// NoticeHeader marks a change notice on a user's subject (its value says
// what changed); item notices carry no headers.
const NoticeHeader = "Tidings-Notice"

// noticeSources is the NoticeHeader value of a change of home sources.
const noticeSources = "sources"

// Change is a change a watcher must act on: with From set, the entity
// Entity turned hot with the post From; with From 0, the user started or
// stopped following Entity.
type Change struct {
	Entity string
	From   ids.ID
}

// Publisher sends notices.
type Publisher struct {
	nc *nats.Conn
}

// NewPublisher returns a Publisher on nc.
func NewPublisher(nc *nats.Conn) *Publisher { return &Publisher{nc: nc} }

// Notify tells each user that id landed in their home timeline.
func (p *Publisher) Notify(users []string, id ids.ID) error {
	b := id.Bytes()
	for _, u := range users {
		if err := p.nc.Publish(Subject(u), b[:]); err != nil {
			return fmt.Errorf("publish live notice: %w", err)
		}
	}
	return nil
}

// NotifyEntity tells the watchers of a hot entity that it posted id.
func (p *Publisher) NotifyEntity(entityKey string, id ids.ID) error {
	b := id.Bytes()
	if err := p.nc.Publish(EntitySubject(entityKey), b[:]); err != nil {
		return fmt.Errorf("publish live notice: %w", err)
	}
	return nil
}

// NotifyItems tells a user that the ids landed in their home timeline, in
// one notice (a follow's backfill).
func (p *Publisher) NotifyItems(userID string, list []ids.ID) error {
	if len(list) == 0 {
		return nil
	}
	data := make([]byte, 0, 8*len(list))
	for _, id := range list {
		b := id.Bytes()
		data = append(data, b[:]...)
	}
	if err := p.nc.Publish(Subject(userID), data); err != nil {
		return fmt.Errorf("publish live notice: %w", err)
	}
	return nil
}

// NotifyNotification tells a user's notification watchers that an item
// changed whose newest instance is at ms or later. The notice carries ms as
// 8 big-endian bytes, as an id.
func (p *Publisher) NotifyNotification(user string, ms int64) error {
	b := ids.ID(max(ms, 0)).Bytes()
	if err := p.nc.Publish(NotificationSubject(user), b[:]); err != nil {
		return fmt.Errorf("publish live notice: %w", err)
	}
	return nil
}

// NotifySwitch tells every watcher that an entity turned hot with the post
// from: its posts from there on reach its followers through its own
// subject.
func (p *Publisher) NotifySwitch(entityKey string, from ids.ID) error {
	b := from.Bytes()
	if err := p.nc.Publish(SwitchSubject, append(b[:], entityKey...)); err != nil {
		return fmt.Errorf("publish hot switch: %w", err)
	}
	return nil
}

// NotifySources tells a user's watchers that the user started or stopped
// following an entity.
func (p *Publisher) NotifySources(userID, entityKey string) error {
	m := nats.NewMsg(Subject(userID))
	m.Header.Set(NoticeHeader, noticeSources)
	m.Data = []byte(entityKey)
	if err := p.nc.PublishMsg(m); err != nil {
		return fmt.Errorf("publish sources notice: %w", err)
	}
	return nil
}

// Hub fans notices out to the watchers of one process.
type Hub struct {
	nc *nats.Conn

	mu   sync.Mutex
	subs map[string]*subjectSub
}

type subjectSub struct {
	sub      *nats.Subscription
	watchers map[*Watcher]struct{}
}

// NewHub returns a Hub on nc.
func NewHub(nc *nats.Conn) *Hub { return &Hub{nc: nc, subs: make(map[string]*subjectSub)} }

// Watcher receives the notices of one user (and of the hot entities they
// follow).
type Watcher struct {
	hub      *Hub
	subjects []string
	ch       chan ids.ID
	changes  chan Change
	// overflowed is set, under hub.mu, when the buffer was full and the
	// watcher was cut off.
	overflowed bool
	closed     bool
}

// C delivers notices; it closes when the watcher is cut off or closed.
func (w *Watcher) C() <-chan ids.ID { return w.ch }

// Changes delivers changes (hot switches, follows and unfollows); it
// closes with C.
func (w *Watcher) Changes() <-chan Change { return w.changes }

// Overflowed reports whether the watcher was cut off for falling behind.
func (w *Watcher) Overflowed() bool {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	return w.overflowed
}

// ErrClosed means the hub's connection is closed.
var ErrClosed = errors.New("live hub closed")

// Watch starts watching a user's notices, and those of the hot entities
// (keys) they follow, with a buffer of size notices.
func (h *Hub) Watch(userID string, hotEntities []string, size int) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := &Watcher{hub: h, ch: make(chan ids.ID, size), changes: make(chan Change, size)}
	subjects := []string{Subject(userID), SwitchSubject}
	for _, e := range hotEntities {
		subjects = append(subjects, EntitySubject(e))
	}
	if err := h.listenLocked(w, subjects); err != nil {
		h.removeLocked(w)
		return nil, fmt.Errorf("watch %s: %w", userID, err)
	}
	return w, nil
}

// WatchSubjects starts watching the notices of live subjects (such as
// NotificationSubject's), with a buffer of size notices.
func (h *Hub) WatchSubjects(subjects []string, size int) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := &Watcher{hub: h, ch: make(chan ids.ID, size), changes: make(chan Change, size)}
	if err := h.listenLocked(w, subjects); err != nil {
		h.removeLocked(w)
		return nil, fmt.Errorf("watch %s: %w", strings.Join(subjects, " "), err)
	}
	return w, nil
}

// Listen adds the subjects of hot entities (keys) to a watcher: it
// receives their posts from when Listen returns.
func (w *Watcher) Listen(entityKeys ...string) error {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.closed {
		return ErrClosed
	}
	var subjects []string
	for _, e := range entityKeys {
		if s := EntitySubject(e); !slices.Contains(w.subjects, s) {
			subjects = append(subjects, s)
		}
	}
	return h.listenLocked(w, subjects)
}

// Unlisten takes the subjects of entities (keys) off a watcher.
func (w *Watcher) Unlisten(entityKeys ...string) {
	h := w.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.closed {
		return
	}
	for _, e := range entityKeys {
		subject := EntitySubject(e)
		i := slices.Index(w.subjects, subject)
		if i < 0 {
			continue
		}
		w.subjects = slices.Delete(w.subjects, i, i+1)
		h.leaveLocked(w, subject)
	}
}

// listenLocked subscribes w to subjects, sharing the process's
// subscriptions.
func (h *Hub) listenLocked(w *Watcher, subjects []string) error {
	added := false
	for _, subject := range subjects {
		w.subjects = append(w.subjects, subject)
		ss, ok := h.subs[subject]
		if !ok {
			ss = &subjectSub{watchers: make(map[*Watcher]struct{})}
			sub, err := h.nc.Subscribe(subject, func(m *nats.Msg) { h.dispatch(subject, m) })
			if err != nil {
				return fmt.Errorf("subscribe live %s: %w", subject, err)
			}
			ss.sub = sub
			h.subs[subject] = ss
			added = true
		}
		ss.watchers[w] = struct{}{}
	}
	if added {
		// Make sure the server has the subscriptions before returning, so
		// nothing published after it is missed.
		if err := h.nc.Flush(); err != nil {
			return fmt.Errorf("subscribe live: %w", err)
		}
	}
	return nil
}

// dispatch hands a notice to the watchers of its subject: item ids (8 bytes
// each), a hot switch, or a change of sources.
func (h *Hub) dispatch(subject string, m *nats.Msg) {
	var (
		list   []ids.ID
		change *Change
	)
	switch {
	case subject == SwitchSubject:
		if len(m.Data) <= 8 {
			return
		}
		change = &Change{From: ids.FromBytes(m.Data[:8]), Entity: string(m.Data[8:])}
	case m.Header.Get(NoticeHeader) == noticeSources:
		change = &Change{Entity: string(m.Data)}
	default:
		if len(m.Data) == 0 || len(m.Data)%8 != 0 {
			return
		}
		for i := 0; i < len(m.Data); i += 8 {
			list = append(list, ids.FromBytes(m.Data[i:i+8]))
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	ss := h.subs[subject]
	if ss == nil {
		return
	}
	for w := range ss.watchers {
		if !w.offer(list, change) {
			w.overflowed = true
			h.removeLocked(w)
		}
	}
}

// offer puts ids or a change in the watcher's buffers without waiting, and
// reports whether they had room.
func (w *Watcher) offer(list []ids.ID, change *Change) bool {
	if change != nil {
		select {
		case w.changes <- *change:
			return true
		default:
			return false
		}
	}
	for _, id := range list {
		select {
		case w.ch <- id:
		default:
			return false
		}
	}
	return true
}

// Close stops a watcher; its channel closes.
func (w *Watcher) Close() {
	w.hub.mu.Lock()
	defer w.hub.mu.Unlock()
	w.hub.removeLocked(w)
}

func (h *Hub) removeLocked(w *Watcher) {
	if w.closed {
		return
	}
	w.closed = true
	close(w.ch)
	close(w.changes)
	for _, subject := range w.subjects {
		h.leaveLocked(w, subject)
	}
}

// leaveLocked takes w off a subject's watchers, and drops the subscription
// when it was the last.
func (h *Hub) leaveLocked(w *Watcher, subject string) {
	ss := h.subs[subject]
	if ss == nil {
		return
	}
	delete(ss.watchers, w)
	if len(ss.watchers) == 0 {
		_ = ss.sub.Unsubscribe()
		delete(h.subs, subject)
	}
}

// Watching returns how many subjects have watchers in this process.
func (h *Hub) Watching() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
