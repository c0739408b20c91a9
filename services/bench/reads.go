package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// Reads is the home timeline read figure: GetHomeTimeline of 50 hydrated
// items by random employees, as fast as 32 callers can (saturation), then
// at half that rate for its latency; and in the same run a plain Go client
// doing the same Redis reads as fast as 32 callers can.
type Reads struct {
	Users           int         `json:"users"`
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
	rngs := make([]*rand.Rand, readCallers)
	for i := range rngs {
		rngs[i] = rand.New(rand.NewPCG(seed, uint64(i)))
	}
	read := func(ctx context.Context, rng *rand.Rand) error {
		u := org.Users[rng.IntN(len(org.Users))]
		_, err := c.timelines.GetHomeTimeline(ctx, &tidingsv1.GetHomeTimelineRequest{UserId: u, PageSize: 50}, c.employee(u))
		if err != nil {
			return fmt.Errorf("read home of %s: %w", u, err)
		}
		return nil
	}
	var err error
	if r.SaturatedPerSec, err = closedLoop(ctx, readCallers, d, func(ctx context.Context, w int, _ int64) error {
		return read(ctx, rngs[w])
	}); err != nil {
		return r, err
	}
	if r.RawPerSec, err = closedLoop(ctx, readCallers, d, func(ctx context.Context, w int, _ int64) error {
		return rawHomeRead(ctx, c.rdb, org.Users[rngs[w].IntN(len(org.Users))])
	}); err != nil {
		return r, err
	}
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
