package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Reads is the home timeline read figure: GetHomeTimeline of 50 hydrated
// items by random employees, as fast as 32 callers can (saturation), then
// at half that rate for its latency; and in the same run a plain Go client
// doing the same Redis reads as fast as 32 callers can. The readers are
// employees whose home timeline holds at least 50 entries (or, when too
// few do, the fullest), so that both sides read as many items.
type Reads struct {
	Users           int         `json:"users"`
	Readers         int         `json:"readers"`
	ItemsPerRead    float64     `json:"items_per_read"`
	RawItemsPerRead float64     `json:"raw_items_per_read"`
	Callers         int         `json:"callers"`
	SaturatedPerSec float64     `json:"saturated_reads_per_sec"`
	RawPerSec       float64     `json:"raw_redis_reads_per_sec"`
	Ratio           float64     `json:"ratio_to_raw"`
	HalfLoadPerSec  float64     `json:"half_load_reads_per_sec"`
	HalfLoad        Percentiles `json:"half_load_latency"`
}

const readCallers = 32

// runReads measures reads for d each: saturation, the raw baseline, and
// latency at half saturation.
func runReads(ctx context.Context, c *client, org *Org, d time.Duration, seed uint64) (Reads, error) {
	r := Reads{Users: len(org.Users), Callers: readCallers}
	readers, err := fullest(ctx, c, org, 50, 100)
	if err != nil {
		return r, err
	}
	r.Readers = len(readers)
	var items, rawItems, reads, rawReads atomic.Int64
	rngs := make([]*rand.Rand, readCallers)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	read := func(ctx context.Context, rng *rand.Rand) error {
		u := readers[rng.IntN(len(readers))]
		resp, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: u, PageSize: 50}, c.employee(u))
		if err != nil {
			return fmt.Errorf("read home of %s: %w", u, err)
		}
		items.Add(int64(len(resp.GetItems())))
		reads.Add(1)
		return nil
	}
	if r.SaturatedPerSec, err = closedLoop(ctx, readCallers, d, func(ctx context.Context, w int, _ int64) error {
		return read(ctx, rngs[w])
	}); err != nil {
		return r, err
	}
	if r.RawPerSec, err = closedLoop(ctx, readCallers, d, func(ctx context.Context, w int, _ int64) error {
		n, err := rawHomeRead(ctx, c.rdb, readers[rngs[w].IntN(len(readers))])
		rawItems.Add(int64(n))
		rawReads.Add(1)
		return err
	}); err != nil {
		return r, err
	}
	r.ItemsPerRead = float64(items.Load()) / float64(max(1, reads.Load()))
	r.RawItemsPerRead = float64(rawItems.Load()) / float64(max(1, rawReads.Load()))
	r.Ratio = r.SaturatedPerSec / r.RawPerSec
	half, issued, err := openLoop(ctx, r.SaturatedPerSec/2, d, 4*readCallers, func(ctx context.Context, i int64) error {
		return read(ctx, rand.New(rand.NewPCG(seed, uint64(i))))
	})
	if err != nil {
		return r, err
	}
	r.HalfLoadPerSec, r.HalfLoad = issued, half.percentiles()
	return r, nil
}

// fullest returns the users whose home timeline holds at least want
// entries, or the atLeast fullest when fewer do.
func fullest(ctx context.Context, c *client, org *Org, want, atLeast int) ([]string, error) {
	type user struct {
		id      string
		entries int64
	}
	all := make([]user, 0, len(org.Users))
	for lo := 0; lo < len(org.Users); lo += 1000 {
		part := org.Users[lo:min(lo+1000, len(org.Users))]
		cmds := make([]*redis.IntCmd, len(part))
		if _, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, u := range part {
				cmds[i] = p.StrLen(ctx, keys.Timelines.HomeKey(u))
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("measure timelines: %w", err)
		}
		for i, u := range part {
			all = append(all, user{u, cmds[i].Val() / 8})
		}
	}
	slices.SortFunc(all, func(a, b user) int { return int(b.entries - a.entries) })
	n := 0
	for n < len(all) && all[n].entries >= int64(want) {
		n++
	}
	n = min(len(all), max(n, atLeast))
	out := make([]string, n)
	for i := range out {
		out[i] = all[i].id
	}
	return out, nil
}
