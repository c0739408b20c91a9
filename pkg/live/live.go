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
package live

import (
	"errors"
	"fmt"
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
	// overflowed is set, under hub.mu, when the buffer was full and the
	// watcher was cut off.
	overflowed bool
	closed     bool
}

// C delivers notices; it closes when the watcher is cut off or closed.
func (w *Watcher) C() <-chan ids.ID { return w.ch }

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
	subjects := []string{Subject(userID)}
	for _, e := range hotEntities {
		subjects = append(subjects, EntitySubject(e))
	}
	return h.WatchSubjects(subjects, size)
}

// WatchSubjects starts watching the notices of live subjects (such as
// NotificationSubject's), with a buffer of size notices.
func (h *Hub) WatchSubjects(subjects []string, size int) (*Watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := &Watcher{hub: h, subjects: subjects, ch: make(chan ids.ID, size)}
	added := false
	for _, subject := range subjects {
		ss, ok := h.subs[subject]
		if !ok {
			ss = &subjectSub{watchers: make(map[*Watcher]struct{})}
			sub, err := h.nc.Subscribe(subject, func(m *nats.Msg) { h.dispatch(subject, m.Data) })
			if err != nil {
				h.removeLocked(w)
				return nil, fmt.Errorf("subscribe live %s: %w", subject, err)
			}
			ss.sub = sub
			h.subs[subject] = ss
			added = true
		}
		ss.watchers[w] = struct{}{}
	}
	if added {
		// Make sure the server has the subscriptions before Watch returns,
		// so nothing published after it is missed.
		if err := h.nc.Flush(); err != nil {
			h.removeLocked(w)
			return nil, fmt.Errorf("subscribe live %s: %w", subjects[0], err)
		}
	}
	return w, nil
}

func (h *Hub) dispatch(subject string, data []byte) {
	if len(data) != 8 {
		return
	}
	id := ids.FromBytes(data)
	h.mu.Lock()
	defer h.mu.Unlock()
	ss := h.subs[subject]
	if ss == nil {
		return
	}
	for w := range ss.watchers {
		select {
		case w.ch <- id:
		default:
			w.overflowed = true
			h.removeLocked(w)
		}
	}
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
	for _, subject := range w.subjects {
		ss := h.subs[subject]
		if ss == nil {
			continue
		}
		delete(ss.watchers, w)
		if len(ss.watchers) == 0 {
			_ = ss.sub.Unsubscribe()
			delete(h.subs, subject)
		}
	}
}

// Watching returns how many subjects have watchers in this process.
func (h *Hub) Watching() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
