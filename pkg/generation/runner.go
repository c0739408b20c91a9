package generation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tidingshq/tidings/pkg/projection"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// RunnerDeps are what a Runner uses.
type RunnerDeps struct {
	Store *Store
	// ProjectorFor returns a Projector over one generation's keys.
	ProjectorFor func(gen uint64) *projection.Projector
	// Name names this worker in the rebuild's runner field.
	Name string
	// Settle is how long after a rebuild started the second pass waits, so
	// that every worker has seen the rebuild (and writes both generations)
	// and finished the events it held: the consumers' ack wait and a
	// margin.
	Settle time.Duration
	// Grace is how long the old generation is still written after the
	// switch, for processes that lag, before it is dropped.
	Grace time.Duration
	// Lease is how long a rebuild's worker may go without a checkpoint
	// before another worker takes the rebuild over.
	Lease  time.Duration
	Logger *slog.Logger
}

// Runner runs rebuilds in a worker process: it takes the rebuild asked for
// (or one whose worker stopped), carries it through, and checkpoints it.
type Runner struct {
	d RunnerDeps
	// failures counts the consecutive failed attempts at a rebuild, by id.
	failures map[string]int
}

// NewRunner returns a Runner.
func NewRunner(d RunnerDeps) *Runner {
	if d.Lease == 0 {
		d.Lease = 30 * time.Second
	}
	return &Runner{d: d, failures: map[string]int{}}
}

// maxAttempts is how many times in a row a worker tries a rebuild that
// fails before it gives the rebuild up.
const maxAttempts = 5

// checkpointEvery is how often a running rebuild records its progress and
// renews its lease.
const checkpointEvery = 2 * time.Second

// Run takes and runs rebuilds until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	go func() {
		_ = r.d.Store.Watch(ctx, func(State) {
			select {
			case changed <- struct{}{}:
			default:
			}
		})
	}()
	tick := time.NewTicker(r.d.Lease / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-tick.C:
		}
		if err := r.step(ctx); err != nil && ctx.Err() == nil {
			r.d.Logger.WarnContext(ctx, "rebuild step failed; it will be tried again", "error", err)
		}
	}
}

// step takes the rebuild when it is free and runs it to its next resting
// point.
func (r *Runner) step(ctx context.Context) error {
	rb, rev, err := r.d.Store.rebuild(ctx)
	if errors.Is(err, ErrNoRebuild) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now()
	switch rb.GetState() {
	case tidingsv1.RebuildState_REBUILD_STATE_PENDING:
	case tidingsv1.RebuildState_REBUILD_STATE_RUNNING, tidingsv1.RebuildState_REBUILD_STATE_SWITCHED:
		if now.Sub(rb.GetUpdateTime().AsTime()) < r.d.Lease && rb.GetRunner() != r.d.Name {
			return nil // another worker runs it
		}
	default:
		return nil
	}
	rb = proto.CloneOf(rb)
	if rb.GetState() == tidingsv1.RebuildState_REBUILD_STATE_PENDING {
		rb.State, rb.StartTime, rb.Pass = tidingsv1.RebuildState_REBUILD_STATE_RUNNING, timestamppb.New(now), 1
	}
	rb.Runner, rb.UpdateTime = r.d.Name, timestamppb.New(now)
	rev, err = r.d.Store.put(ctx, rb, rev)
	if errors.Is(err, errRaced) {
		return nil // another worker took it first
	}
	if err != nil {
		return err
	}
	r.d.Logger.InfoContext(ctx, "rebuild taken", "rebuild", rb.GetId(), "state", rb.GetState().String(),
		"from_generation", rb.GetFromGeneration(), "to_generation", rb.GetToGeneration(), "pass", rb.GetPass())
	run := &run{r: r, rb: rb, rev: rev}
	err = run.carry(ctx)
	switch {
	case err == nil:
		delete(r.failures, rb.GetId())
		return nil
	case errors.Is(err, errRaced) || ctx.Err() != nil:
		return nil // taken over, or this process stops: the next owner goes on
	}
	r.failures[rb.GetId()]++
	if r.failures[rb.GetId()] < maxAttempts {
		return fmt.Errorf("rebuild %s (attempt %d of %d): %w", rb.GetId(), r.failures[rb.GetId()], maxAttempts, err)
	}
	return run.fail(ctx, err)
}

// run is one worker's hold on a rebuild.
type run struct {
	r   *Runner
	rb  *tidingsv1.Rebuild
	rev uint64
	// passStart and passEvents measure the current pass's rate.
	passStart  time.Time
	passEvents int64
}

// save checkpoints the rebuild (and renews the lease); errRaced when
// another worker took it over.
func (u *run) save(ctx context.Context) error {
	u.rb.UpdateTime = timestamppb.Now()
	rev, err := u.r.d.Store.put(ctx, u.rb, u.rev)
	if err != nil {
		return err
	}
	u.rev = rev
	return nil
}

// carry runs the rebuild from where it is to DONE.
func (u *run) carry(ctx context.Context) error {
	target := u.r.d.ProjectorFor(u.rb.GetToGeneration()).Silent()
	if u.rb.GetState() == tidingsv1.RebuildState_REBUILD_STATE_RUNNING {
		if u.rb.GetPass() == 1 && len(u.rb.GetStreams()) == 0 {
			// A fresh start: nothing of an earlier attempt may remain.
			if err := target.Wipe(ctx); err != nil {
				return err
			}
		}
		for u.rb.GetPass() <= 2 {
			if err := u.pass(ctx, target); err != nil {
				return err
			}
		}
		// The new generation holds the log up to where the replay reached
		// (and the live workers wrote it from there on): its watermarks.
		replayed := projection.Positions{}
		for _, sp := range u.rb.GetStreams() {
			replayed[sp.GetStream()] = sp.GetReplayedSequence()
		}
		if _, err := target.AdvanceWatermarks(ctx, projection.Positions{}, replayed); err != nil {
			return err
		}
		if err := u.r.d.Store.setCurrent(ctx, u.rb.GetToGeneration()); err != nil {
			return err
		}
		u.rb.State = tidingsv1.RebuildState_REBUILD_STATE_SWITCHED
		if err := u.save(ctx); err != nil {
			return err
		}
		u.r.d.Logger.InfoContext(ctx, "rebuild switched readers to the new generation", "rebuild", u.rb.GetId(), "generation", u.rb.GetToGeneration())
	}
	// SWITCHED: the old generation is written for a grace, then dropped.
	if err := u.wait(ctx, u.rb.GetUpdateTime().AsTime().Add(u.r.d.Grace)); err != nil {
		return err
	}
	if err := u.r.d.ProjectorFor(u.rb.GetFromGeneration()).Wipe(ctx); err != nil {
		return err
	}
	u.rb.State, u.rb.FinishTime = tidingsv1.RebuildState_REBUILD_STATE_DONE, timestamppb.Now()
	if err := u.save(ctx); err != nil {
		return err
	}
	u.r.d.Logger.InfoContext(ctx, "rebuild done; the old generation is dropped", "rebuild", u.rb.GetId(), "events", u.rb.GetEventsReplayed())
	return nil
}

// pass replays the log into the target generation: pass 1 the whole log,
// pass 2 what arrived since pass 1 began, once every worker writes both
// generations. A pass's end (each stream's tail when it began) is recorded
// before it replays, so a worker taking it over goes on to the same end.
func (u *run) pass(ctx context.Context, target *projection.Projector) error {
	if u.rb.GetPass() == 2 {
		if err := u.wait(ctx, u.rb.GetStartTime().AsTime().Add(u.r.d.Settle)); err != nil {
			return err
		}
	}
	if !u.targetsSet() {
		tails, err := target.Tails(ctx)
		if err != nil {
			return err
		}
		byStream := map[string]*tidingsv1.StreamProgress{}
		for _, sp := range u.rb.GetStreams() {
			byStream[sp.GetStream()] = sp
		}
		u.rb.Streams, u.rb.EventsTotal = nil, 0
		for _, s := range projection.ReplayStreams() {
			sp := byStream[s]
			if sp == nil {
				sp = &tidingsv1.StreamProgress{Stream: s}
			}
			sp.TargetSequence = max(tails[s], sp.GetReplayedSequence())
			u.rb.Streams = append(u.rb.Streams, sp)
			u.rb.EventsTotal += int64(sp.GetTargetSequence() - sp.GetReplayedSequence())
		}
		if err := u.save(ctx); err != nil {
			return err
		}
	}
	from, through := projection.Positions{}, projection.Positions{}
	for _, sp := range u.rb.GetStreams() {
		from[sp.GetStream()], through[sp.GetStream()] = sp.GetReplayedSequence(), sp.GetTargetSequence()
	}
	u.passStart, u.passEvents = time.Now(), 0
	last := time.Now()
	var saveErr error
	reached, err := target.Replay(ctx, from, through, func(at projection.Positions, n int) {
		u.passEvents += int64(n)
		u.rb.EventsReplayed += int64(n)
		if time.Since(last) < checkpointEvery || saveErr != nil {
			return
		}
		last = time.Now()
		u.progress(at)
		saveErr = u.save(ctx)
	})
	if saveErr != nil {
		return saveErr
	}
	if err != nil {
		return fmt.Errorf("rebuild %s, pass %d: %w", u.rb.GetId(), u.rb.GetPass(), err)
	}
	u.progress(reached)
	u.r.d.Logger.InfoContext(ctx, "rebuild pass done", "rebuild", u.rb.GetId(), "pass", u.rb.GetPass(), "events", u.passEvents)
	u.rb.Pass++
	for _, sp := range u.rb.GetStreams() {
		sp.TargetSequence = 0
	}
	u.rb.EventsTotal = 0
	return u.save(ctx)
}

// targetsSet reports whether the current pass's end is recorded.
func (u *run) targetsSet() bool {
	for _, sp := range u.rb.GetStreams() {
		if sp.GetTargetSequence() > 0 {
			return true
		}
	}
	return false
}

// progress records positions and the rate.
func (u *run) progress(at projection.Positions) {
	for _, sp := range u.rb.GetStreams() {
		if p, ok := at[sp.GetStream()]; ok {
			sp.ReplayedSequence = p
		}
	}
	if d := time.Since(u.passStart).Seconds(); d > 0 {
		rate := float64(u.passEvents) / d
		u.rb.EventsPerSecond = rate
		if left := u.rb.GetEventsTotal() - u.passEvents; rate > 0 && left > 0 {
			u.rb.Eta = durationpb.New(time.Duration(float64(left) / rate * float64(time.Second)))
		} else {
			u.rb.Eta = durationpb.New(0)
		}
	}
}

// wait waits until t, renewing the lease meanwhile.
func (u *run) wait(ctx context.Context, t time.Time) error {
	for {
		d := time.Until(t)
		if d <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(min(d, checkpointEvery)):
		}
		if err := u.save(ctx); err != nil {
			return err
		}
	}
}

// fail gives the rebuild up: readers stay on the old generation, and what
// was written of the new one is dropped.
func (u *run) fail(ctx context.Context, cause error) error {
	u.r.d.Logger.ErrorContext(ctx, "rebuild failed; readers stay on the old generation", "rebuild", u.rb.GetId(), "error", cause)
	if u.rb.GetState() == tidingsv1.RebuildState_REBUILD_STATE_SWITCHED {
		return cause // readers already moved: only dropping the old one remains, retried
	}
	u.rb.State, u.rb.Error, u.rb.FinishTime = tidingsv1.RebuildState_REBUILD_STATE_FAILED, cause.Error(), timestamppb.Now()
	if err := u.save(ctx); err != nil {
		return errors.Join(cause, err)
	}
	if err := u.r.d.ProjectorFor(u.rb.GetToGeneration()).Wipe(ctx); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}
