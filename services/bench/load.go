package bench

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Percentiles are latency quantiles in milliseconds.
type Percentiles struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func (l *latencies) percentiles() Percentiles {
	l.mu.Lock()
	d := slices.Clone(l.d)
	l.mu.Unlock()
	if len(d) == 0 {
		return Percentiles{}
	}
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1
		return ms(d[max(0, min(i, len(d)-1))])
	}
	return Percentiles{Count: len(d), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms(d[len(d)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// closedLoop runs op from workers goroutines back to back for d and
// returns how many calls succeeded per second. The first error stops it.
// Calls run on ctx, not on a context that ends at d, so that no call is cut
// short (a server-side deadline would fail it) when time is up.
func closedLoop(ctx context.Context, workers int, d time.Duration, op func(ctx context.Context, worker int, i int64) error) (float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var n atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	stopAt := start.Add(d)
	for w := range workers {
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(stopAt) {
				if err := op(ctx, w, n.Load()); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
				n.Add(1)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(n.Load()) / time.Since(start).Seconds(), nil
}

// openLoop starts op at a fixed rate for d, whatever the earlier calls are
// doing, and records each call's latency from when it was due (so a stall
// counts against every call it delays). It returns the latencies and the
// rate achieved.
func openLoop(ctx context.Context, rate float64, d time.Duration, maxInFlight int, op func(ctx context.Context, i int64) error) (*latencies, float64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lat := &latencies{}
	interval := time.Duration(float64(time.Second) / rate)
	sem := make(chan struct{}, maxInFlight)
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	var i int64
	for ctx.Err() == nil {
		due := start.Add(time.Duration(i) * interval)
		if due.Sub(start) >= d {
			break
		}
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		}
		wg.Add(1)
		go func(i int64, due time.Time) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := op(ctx, i); err != nil {
				if ctx.Err() == nil {
					once.Do(func() { firstErr = err; cancel() })
				}
				return
			}
			lat.add(time.Since(due))
		}(i, due)
		i++
	}
	issued := float64(i) / time.Since(start).Seconds()
	wg.Wait()
	if firstErr != nil {
		return nil, 0, firstErr
	}
	return lat, issued, nil
}
