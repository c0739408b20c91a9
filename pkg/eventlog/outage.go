package eventlog

import (
	"sync"
	"time"
)

// outageLog decides when a failure that goes on is worth a log line: the
// first failure of an outage, then at most one line every period while it
// lasts, so that an outage of an hour writes sixty lines, not millions.
type outageLog struct {
	mu      sync.Mutex
	every   time.Duration
	now     func() time.Time
	start   time.Time // zero when there is no outage
	lastLog time.Time
	count   int
}

func newOutageLog(every time.Duration, now func() time.Time) *outageLog {
	return &outageLog{every: every, now: now}
}

// failure records one failure. It reports whether to write a log line now,
// how many failures the line covers (this one included), and how long the
// outage has lasted.
func (o *outageLog) failure() (log bool, failures int, lasted time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if o.start.IsZero() {
		o.start = now
	}
	o.count++
	if !o.lastLog.IsZero() && now.Sub(o.lastLog) < o.every {
		return false, 0, 0
	}
	o.lastLog = now
	failures, o.count = o.count, 0
	return true, failures, now.Sub(o.start)
}

// recovered ends the outage. It reports whether there was one, and how
// long it lasted.
func (o *outageLog) recovered() (bool, time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.start.IsZero() {
		return false, 0
	}
	lasted := o.now().Sub(o.start)
	o.start, o.lastLog, o.count = time.Time{}, time.Time{}, 0
	return true, lasted
}
