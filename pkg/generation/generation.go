// Package generation keeps which generation of the Redis projections
// readers use, and runs the rebuilds that fill the next one beside it.
//
// Every store names its keys through a redisx.Keyspace: generation 0's
// keys start with "tidings:", generation n's with "tidings:g<n>:". A
// rebuild (AdminService.RebuildProjections) fills generation n+1 from the
// event log while every reader stays on generation n, whole:
//
//  1. PENDING: asked for. Any worker may take it.
//  2. RUNNING: a worker replays the whole log into n+1 (pass 1), then,
//     once every worker has had time to see the rebuild and finish what it
//     held, what was written meanwhile (pass 2). Meanwhile the live workers
//     write every event to both generations, so n+1 misses nothing.
//  3. SWITCHED: the current generation becomes n+1; every process follows
//     at once (it watches the key), and the workers still write n too for a
//     short grace, for a process that lags.
//  4. DONE: generation n is dropped.
//
// The state lives in a JetStream key-value bucket, replicated like the
// streams: Redis losing data never loses it. The worker running a rebuild
// renews a lease with every checkpoint; when it stops, another worker takes
// the rebuild over from its last checkpoint (a replay is idempotent and
// ordered by log position, so redoing a little is harmless).
package generation

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/eventlog"
	"github.com/tidingshq/tidings/pkg/ids"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Bucket is the key-value bucket of the generations.
const Bucket = "tidings-generations"

const (
	keyCurrent = "current"
	keyRebuild = "rebuild"
)

// ErrRebuildUnderWay means a rebuild was asked for while another runs.
var ErrRebuildUnderWay = errors.New("a rebuild is under way")

// ErrNoRebuild means there is no rebuild by that id.
var ErrNoRebuild = errors.New("no such rebuild")

// Store reads and writes the generations' state.
type Store struct {
	kv jetstream.KeyValue
}

// Open creates the bucket if needed and returns a Store. Many processes
// may open it at once on a cluster that is still forming: attempts are
// short and retried (eventlog.EnsureKeyValue) until ctx ends.
func Open(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	kv, err := eventlog.EnsureKeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "Tidings: which generation of the Redis projections readers use, and the rebuild of the next",
		History:     16,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open generations bucket: %w", err)
	}
	return &Store{kv: kv}, nil
}

// Current returns the generation readers use.
func (s *Store) Current(ctx context.Context) (uint64, error) {
	e, err := s.kv.Get(ctx, keyCurrent)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read current generation: %w", err)
	}
	return parseGen(e.Value())
}

func parseGen(b []byte) (uint64, error) {
	g, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("current generation %q: %w", b, err)
	}
	return g, nil
}

// State is what the bucket says: the current generation and the latest
// rebuild (nil when there has been none).
type State struct {
	Current uint64
	Rebuild *tidingsv1.Rebuild
}

// Writes returns the generations the workers write, the current one
// first: during a rebuild also the one it fills, and for a grace after a
// switch also the one it replaced.
func (st State) Writes() []uint64 {
	out := []uint64{st.Current}
	r := st.Rebuild
	switch r.GetState() {
	case tidingsv1.RebuildState_REBUILD_STATE_RUNNING:
		if r.GetToGeneration() != st.Current {
			out = append(out, r.GetToGeneration())
		}
	case tidingsv1.RebuildState_REBUILD_STATE_SWITCHED:
		if r.GetFromGeneration() != st.Current {
			out = append(out, r.GetFromGeneration())
		}
	}
	return out
}

// Read returns the bucket's state.
func (s *Store) Read(ctx context.Context) (State, error) {
	cur, err := s.Current(ctx)
	if err != nil {
		return State{}, err
	}
	r, _, err := s.rebuild(ctx)
	if err != nil && !errors.Is(err, ErrNoRebuild) {
		return State{}, err
	}
	return State{Current: cur, Rebuild: r}, nil
}

// Watch calls fn with the bucket's state now and after every change, until
// ctx ends. A failed watch is retried: the state it reports meanwhile is
// the last one it saw.
func (s *Store) Watch(ctx context.Context, fn func(State)) error {
	for {
		err := s.watchOnce(ctx, fn)
		if ctx.Err() != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		_ = err // a lost watch: watch again
	}
}

func (s *Store) watchOnce(ctx context.Context, fn func(State)) error {
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch generations: %w", err)
	}
	defer func() { _ = w.Stop() }()
	var st State
	initial := true
	for {
		select {
		case <-ctx.Done():
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("generations watch closed")
			}
			if e == nil { // the end of the initial values
				initial = false
				fn(st)
				continue
			}
			switch e.Key() {
			case keyCurrent:
				if g, err := parseGen(e.Value()); err == nil {
					st.Current = g
				}
			case keyRebuild:
				r := &tidingsv1.Rebuild{}
				if e.Operation() == jetstream.KeyValuePut && proto.Unmarshal(e.Value(), r) == nil {
					st.Rebuild = r
				}
			}
			if !initial {
				fn(st)
			}
		}
	}
}

// rebuild returns the latest rebuild and its revision.
func (s *Store) rebuild(ctx context.Context) (*tidingsv1.Rebuild, uint64, error) {
	e, err := s.kv.Get(ctx, keyRebuild)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, ErrNoRebuild
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read rebuild: %w", err)
	}
	r := &tidingsv1.Rebuild{}
	if err := proto.Unmarshal(e.Value(), r); err != nil {
		return nil, 0, fmt.Errorf("decode rebuild: %w", err)
	}
	return r, e.Revision(), nil
}

// Rebuild returns the rebuild of an id ("latest": the most recent).
func (s *Store) Rebuild(ctx context.Context, id string) (*tidingsv1.Rebuild, error) {
	r, _, err := s.rebuild(ctx)
	if err != nil {
		return nil, err
	}
	if id != "latest" && id != r.GetId() {
		return nil, ErrNoRebuild
	}
	return r, nil
}

// active reports whether a rebuild is under way.
func active(r *tidingsv1.Rebuild) bool {
	switch r.GetState() {
	case tidingsv1.RebuildState_REBUILD_STATE_PENDING, tidingsv1.RebuildState_REBUILD_STATE_RUNNING,
		tidingsv1.RebuildState_REBUILD_STATE_SWITCHED:
		return true
	}
	return false
}

// Start asks for a rebuild into the generation after the current one, and
// returns it (PENDING). ErrRebuildUnderWay when one is.
func (s *Store) Start(ctx context.Context, now time.Time) (*tidingsv1.Rebuild, error) {
	cur, err := s.Current(ctx)
	if err != nil {
		return nil, err
	}
	prev, rev, err := s.rebuild(ctx)
	if err != nil && !errors.Is(err, ErrNoRebuild) {
		return nil, err
	}
	if active(prev) {
		return nil, ErrRebuildUnderWay
	}
	// The next generation is past any a failed rebuild may have begun.
	next := max(cur, prev.GetToGeneration(), prev.GetFromGeneration()) + 1
	r := &tidingsv1.Rebuild{
		Id:             "r" + ids.NewGenerator().Next().String(),
		State:          tidingsv1.RebuildState_REBUILD_STATE_PENDING,
		FromGeneration: cur,
		ToGeneration:   next,
		CreateTime:     timestamppb.New(now),
		UpdateTime:     timestamppb.New(now),
	}
	if _, err := s.put(ctx, r, rev); err != nil {
		if errors.Is(err, errRaced) {
			return nil, ErrRebuildUnderWay
		}
		return nil, err
	}
	return r, nil
}

// errRaced means the rebuild changed since it was read.
var errRaced = errors.New("rebuild changed meanwhile")

// put writes a rebuild conditionally on the revision read (0: none yet),
// and returns its new revision.
func (s *Store) put(ctx context.Context, r *tidingsv1.Rebuild, rev uint64) (uint64, error) {
	data, err := proto.Marshal(r)
	if err != nil {
		return 0, fmt.Errorf("encode rebuild: %w", err)
	}
	var next uint64
	if rev == 0 {
		next, err = s.kv.Create(ctx, keyRebuild, data)
	} else {
		next, err = s.kv.Update(ctx, keyRebuild, data, rev)
	}
	var apiErr *jetstream.APIError
	if errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence) {
		return 0, errRaced
	}
	if err != nil {
		return 0, fmt.Errorf("write rebuild: %w", err)
	}
	return next, nil
}

// setCurrent makes gen the generation readers use.
func (s *Store) setCurrent(ctx context.Context, gen uint64) error {
	if _, err := s.kv.Put(ctx, keyCurrent, []byte(strconv.FormatUint(gen, 10))); err != nil {
		return fmt.Errorf("switch to generation %d: %w", gen, err)
	}
	return nil
}

// keyHealing marks a generation that is being healed: re-applied from the
// log after Redis lost writes (pkg/heal). Its value is the generation and
// the time the healer last said it was still at work.
const keyHealing = "healing"

// healingStale is how long a healing mark holds without being renewed: a
// healer that died leaves no process unhealthy for longer.
const healingStale = time.Minute

// SetHealing marks generation gen as being healed, now; the healer renews
// the mark while it works.
func (s *Store) SetHealing(ctx context.Context, gen uint64, now time.Time) error {
	v := strconv.FormatUint(gen, 10) + " " + strconv.FormatInt(now.Unix(), 10)
	if _, err := s.kv.PutString(ctx, keyHealing, v); err != nil {
		return fmt.Errorf("mark healing: %w", err)
	}
	return nil
}

// ClearHealing removes the healing mark.
func (s *Store) ClearHealing(ctx context.Context) error {
	if err := s.kv.Delete(ctx, keyHealing); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("clear healing mark: %w", err)
	}
	return nil
}

// Healing reports whether generation gen is being healed now (a mark
// renewed within the last minute).
func (s *Store) Healing(ctx context.Context, gen uint64, now time.Time) (bool, error) {
	e, err := s.kv.Get(ctx, keyHealing)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read healing mark: %w", err)
	}
	g, at, ok := strings.Cut(string(e.Value()), " ")
	if !ok || g != strconv.FormatUint(gen, 10) {
		return false, nil
	}
	sec, err := strconv.ParseInt(at, 10, 64)
	if err != nil {
		return false, nil
	}
	return now.Sub(time.Unix(sec, 0)) < healingStale, nil
}
