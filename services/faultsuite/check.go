package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidingshq/tidings/pkg/auth"
	tidingsv1 "github.com/tidingshq/tidings/proto/tidings/v1"
)

// counts are what a check found, summed over followers.
type counts struct {
	// Lost: acknowledged, not deleted, from a followed author, and not in
	// the follower's home timeline.
	Lost int
	// Duplicated: extra appearances of an item already in the timeline.
	Duplicated int
	// Unexpected: in the timeline but neither acknowledged for this
	// follower nor ambiguous.
	Unexpected int
	// Resurrected: acknowledged as deleted, yet in the timeline.
	Resurrected int
	// Ambiguous: in the timeline, from a call that got no answer; allowed.
	Ambiguous int
}

func (c counts) clean() bool {
	return c.Lost == 0 && c.Duplicated == 0 && c.Unexpected == 0 && c.Resurrected == 0
}

func (c *counts) add(o counts) {
	c.Lost += o.Lost
	c.Duplicated += o.Duplicated
	c.Unexpected += o.Unexpected
	c.Resurrected += o.Resurrected
	c.Ambiguous += o.Ambiguous
}

// item is one item of a timeline as read.
type item struct{ id, text string }

// expectation is what one follower's home timeline must hold.
type expectation struct {
	want           map[string]bool // ids that must be there, once
	deleted        map[string]bool // ids that must not be there
	ambiguousIDs   map[string]bool // ids that may or may not be there
	ambiguousTexts map[string]bool // texts of posts that may or may not exist
}

// expect derives a follower's expectation from the ledger.
func (l *ledger) expect(authors []string) expectation {
	l.mu.Lock()
	defer l.mu.Unlock()
	follows := map[string]bool{}
	for _, a := range authors {
		follows[a] = true
	}
	e := expectation{want: map[string]bool{}, deleted: l.deleted, ambiguousIDs: l.ambiguousIDs, ambiguousTexts: l.ambiguousText}
	for id, p := range l.posts {
		if follows[p.author] && !l.deleted[id] && !l.ambiguousIDs[id] {
			e.want[id] = true
		}
	}
	return e
}

// example is one wrong item, for the report: which and how.
type example struct{ kind, id string }

// tally compares a timeline as read with what it must hold, and returns
// the first wrong item of each kind as an example.
func tally(items []item, e expectation) (counts, []example) {
	var (
		c   counts
		ex  []example
		has = map[string]bool{}
	)
	note := func(kind, id string) {
		if !has[kind] {
			has[kind] = true
			ex = append(ex, example{kind, id})
		}
	}
	seen := map[string]int{}
	for _, it := range items {
		seen[it.id]++
		if seen[it.id] > 1 {
			c.Duplicated++
			note("duplicated", it.id)
			continue
		}
		switch {
		case e.deleted[it.id]:
			c.Resurrected++
			note("resurrected", it.id)
		case e.want[it.id]:
		case e.ambiguousIDs[it.id] || e.ambiguousTexts[it.text]:
			c.Ambiguous++
		default:
			c.Unexpected++
			note("unexpected", it.id)
		}
	}
	for id := range e.want {
		if seen[id] == 0 {
			c.Lost++
			note("lost", id)
		}
	}
	return c, ex
}

// readHome reads a user's whole home timeline through the API, as the user.
func readHome(ctx context.Context, a *api, user string) ([]item, error) {
	var (
		items []item
		token string
	)
	for page := 0; page < 100; page++ {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := tidingsv1.NewTimelineServiceClient(a.conn()).GetHomeTimeline(cctx,
			&tidingsv1.GetHomeTimelineRequest{UserId: user, PageSize: 100, PageToken: token}, a.as(auth.KindEmployee, user))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("read home timeline of %s: %w", user, err)
		}
		for _, it := range resp.GetItems() {
			items = append(items, item{id: it.GetActivity().GetId(), text: it.GetActivity().GetText()})
		}
		token = resp.GetNextPageToken()
		if token == "" {
			return items, nil
		}
	}
	return nil, fmt.Errorf("home timeline of %s: more than 100 pages", user)
}

// check reads every follower's home timeline and tallies it.
func check(ctx context.Context, a *api, o *org, l *ledger) (counts, []example, error) {
	var (
		mu       sync.Mutex
		total    counts
		examples []example
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, f := range o.followers {
		g.Go(func() error {
			items, err := readHome(gctx, a, f)
			if err != nil {
				return err
			}
			c, ex := tally(items, l.expect(o.follows[f]))
			mu.Lock()
			total.add(c)
			for _, e := range ex {
				if !slices.ContainsFunc(examples, func(o example) bool { return o.kind == e.kind }) {
					examples = append(examples, e)
				}
			}
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	return total, examples, err
}
