package auth

import (
	"context"
	"errors"
	"time"

	"github.com/tidingshq/tidings/pkg/apierr"
)

// A stream is authorized once, when it opens, but may stay open for hours
// (TimelineService.Watch). Its caller's standing is kept up while it runs:
// the stream ends with Unauthenticated when the caller's credential
// expires (Identity.Expires), and, for an employee, with PermissionDenied
// when the directory stops listing them as active (checked every
// AccountOptions.StreamRecheck). The handler sees its context cancelled and
// returns; the interceptor then sends the reason instead of what the
// handler returned. The handlers need no code of their own for this.

// streamEnded is the cancellation cause a guard sets.
type streamEnded struct{ err error }

func (e streamEnded) Error() string { return e.err.Error() }

// streamGuard ends one stream when its caller's standing lapses.
type streamGuard struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	stop   chan struct{}
	done   chan struct{}
	timer  *time.Timer
	tick   *time.Ticker
}

// guard starts watching a stream's caller; end must be called when the
// handler returns.
func (a *Authorizer) guard(parent context.Context, id Identity, fullMethod string) *streamGuard {
	ctx, cancel := context.WithCancelCause(parent)
	g := &streamGuard{ctx: ctx, cancel: cancel, stop: make(chan struct{}), done: make(chan struct{})}
	var expired, recheck <-chan time.Time
	var timer *time.Timer
	var tick *time.Ticker
	if !id.Expires.IsZero() {
		timer = time.NewTimer(time.Until(id.Expires))
		expired = timer.C
	}
	if a.accounts != nil && id.Kind == KindEmployee {
		tick = time.NewTicker(a.accounts.recheck)
		recheck = tick.C
	}
	g.timer, g.tick = timer, tick
	go a.keep(ctx, g, id, fullMethod, expired, recheck)
	return g
}

// keep ends the stream of g (cancelling ctx) when its caller's standing
// lapses, until g is stopped.
func (a *Authorizer) keep(ctx context.Context, g *streamGuard, id Identity, fullMethod string, expired, recheck <-chan time.Time) {
	defer close(g.done)
	for {
		select {
		case <-g.stop:
			return
		case <-ctx.Done():
			return
		case <-expired:
			g.cancel(streamEnded{apierr.Unauthenticated("the token expired; the stream ended: resume with a fresh token")})
			return
		case <-recheck:
			st, err := a.accounts.State(ctx, id.ID)
			if err != nil {
				// The directory cannot be read now: the caller was
				// checked when the stream opened; try again later.
				continue
			}
			if err := accountError(id, st, fullMethod); err != nil {
				g.cancel(streamEnded{err})
				return
			}
		}
	}
}

// end stops the guard and returns what the stream ends with: the guard's
// reason when it ended the stream, else the handler's err.
func (g *streamGuard) end(ctx context.Context, err error) error {
	close(g.stop)
	<-g.done
	if g.timer != nil {
		g.timer.Stop()
	}
	if g.tick != nil {
		g.tick.Stop()
	}
	var ended streamEnded
	if errors.As(context.Cause(ctx), &ended) {
		err = ended.err
	}
	g.cancel(nil)
	return err
}
