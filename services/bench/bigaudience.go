package bench

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tidingshq/tidings/pkg/ids"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// BigAudience is one post to a record that n users follow, on a stack
// whose hot threshold is above n, so that the post is pushed into every
// timeline: the time from the Post call until the worker has caught up,
// after which every timeline is checked.
type BigAudience struct {
	Followers        int     `json:"followers"`
	Seconds          float64 `json:"seconds"`
	Deliveries       int64   `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Verified         int     `json:"verified_timelines"`
}

var announcements = &tidingsv1.RecordRef{Type: "comms.announcement", ExternalId: "all-hands"}

func runBigAudience(ctx context.Context, c *client, n int) (BigAudience, error) {
	res := BigAudience{Followers: n}
	if _, err := c.records.UpsertRecord(ctx, &tidingsv1.UpsertRecordRequest{Record: &tidingsv1.Record{
		Ref: announcements, Title: "Company announcements", Visibility: tidingsv1.Visibility_VISIBILITY_PUBLIC,
	}}, c.as(commsApp)); err != nil {
		return res, fmt.Errorf("create the announcements record: %w", err)
	}
	users := make([]string, n)
	follows := make([]*tidingsv1.Follow, n)
	for i := range users {
		users[i] = fmt.Sprintf("u%06d", i)
		follows[i] = &tidingsv1.Follow{UserId: users[i], Entity: &tidingsv1.EntityRef{Entity: &tidingsv1.EntityRef_Record{Record: announcements}}}
	}
	if err := importFollows(ctx, c, follows); err != nil {
		return res, err
	}
	if _, err := c.waitCaughtUp(ctx, 10*time.Minute); err != nil {
		return res, err
	}
	before, err := c.metric(ctx, deliveriesMetric)
	if err != nil {
		return res, err
	}
	start := time.Now()
	resp, err := c.records.PostRecordActivity(ctx, &tidingsv1.PostRecordActivityRequest{
		Ref: announcements, EventId: fmt.Sprintf("all-hands-%d", start.UnixNano()), Verb: "posted",
		Text: "All-hands at 3pm in the atrium",
	}, c.as(commsApp))
	if err != nil {
		return res, fmt.Errorf("post the announcement: %w", err)
	}
	if res.Seconds, res.Deliveries, err = c.drained(ctx, start, before); err != nil {
		return res, err
	}
	res.DeliveriesPerSec = float64(res.Deliveries) / res.Seconds
	id, err := ids.Parse(resp.GetActivity().GetId())
	if err != nil {
		return res, fmt.Errorf("announcement id: %w", err)
	}
	if res.Verified, err = countHolding(ctx, c.rdb, users, id); err != nil {
		return res, err
	}
	if res.Verified != n {
		return res, fmt.Errorf("big audience: the post is in %d of %d home timelines", res.Verified, n)
	}
	return res, nil
}

// countHolding counts the users whose home timeline starts with id.
func countHolding(ctx context.Context, rdb redis.UniversalClient, users []string, id ids.ID) (int, error) {
	want := id.Bytes()
	n := 0
	for lo := 0; lo < len(users); lo += 1000 {
		part := users[lo:min(lo+1000, len(users))]
		cmds := make([]*redis.StringCmd, len(part))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, u := range part {
				cmds[i] = p.GetRange(ctx, keys.Timelines.HomeKey(u), 0, 7)
			}
			return nil
		}); err != nil {
			return 0, fmt.Errorf("check timelines: %w", err)
		}
		for _, c := range cmds {
			if bytes.Equal([]byte(c.Val()), want[:]) {
				n++
			}
		}
	}
	return n, nil
}
