package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func set(ids ...string) map[string]bool {
	m := map[string]bool{}
	for _, id := range ids {
		m[id] = true
	}
	return m
}

func items(ids ...string) []item {
	out := make([]item, len(ids))
	for i, id := range ids {
		out[i] = item{id: id, text: "text of " + id}
	}
	return out
}

func TestTally(t *testing.T) {
	t.Parallel()
	base := expectation{want: set("a", "b", "c"), deleted: set("d"), ambiguousIDs: set("e"), ambiguousTexts: set("text of f")}
	tests := []struct {
		name  string
		items []item
		want  counts
	}{
		{name: "exactly what was acknowledged", items: items("c", "b", "a")},
		{name: "one missing", items: items("c", "a"), want: counts{Lost: 1}},
		{name: "all missing", items: nil, want: counts{Lost: 3}},
		{name: "one twice", items: items("c", "b", "b", "a"), want: counts{Duplicated: 1}},
		{name: "a deleted one back", items: items("d", "c", "b", "a"), want: counts{Resurrected: 1}},
		{name: "a deleted one back twice", items: items("d", "d", "c", "b", "a"), want: counts{Resurrected: 1, Duplicated: 1}},
		{name: "one from nowhere", items: items("z", "c", "b", "a"), want: counts{Unexpected: 1}},
		{name: "unanswered calls may show", items: items("f", "e", "c", "b", "a"), want: counts{Ambiguous: 2}},
		{name: "unanswered calls may not show", items: items("c", "b", "a")},
		{name: "everything wrong at once", items: items("z", "d", "a", "a"), want: counts{Lost: 2, Duplicated: 1, Unexpected: 1, Resurrected: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, examples := tally(tt.items, base)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.want.Lost+tt.want.Duplicated+tt.want.Unexpected+tt.want.Resurrected == 0, got.clean())
			kinds := map[string]bool{}
			for _, e := range examples {
				require.False(t, kinds[e.kind], "one example of each kind")
				kinds[e.kind] = true
			}
			require.Equal(t, tt.want.Lost > 0, kinds["lost"])
			require.Equal(t, tt.want.Resurrected > 0, kinds["resurrected"])
			require.Equal(t, tt.want.Duplicated > 0, kinds["duplicated"])
			require.Equal(t, tt.want.Unexpected > 0, kinds["unexpected"])
		})
	}
}

func TestExpectFollowsOnlyFollowedAuthorsAndDropsDeletes(t *testing.T) {
	t.Parallel()
	l := newLedger()
	l.posts["1"] = post{id: "1", author: "ana"}
	l.posts["2"] = post{id: "2", author: "bo"}
	l.posts["3"] = post{id: "3", author: "ana"}
	l.posts["4"] = post{id: "4", author: "ana"}
	l.deleted["3"] = true
	l.ambiguousIDs["4"] = true
	e := l.expect([]string{"ana"})
	got := e.want
	require.Equal(t, set("1"), got)
	require.True(t, e.deleted["3"])
}

func TestNewOrgSpreadsFollows(t *testing.T) {
	t.Parallel()
	o := newOrg("p", 12, 24, 3)
	require.Len(t, o.authors, 12)
	require.Len(t, o.followers, 24)
	followers := map[string]int{}
	for _, f := range o.followers {
		require.Len(t, o.follows[f], 3)
		for _, a := range o.follows[f] {
			followers[a]++
		}
	}
	for _, a := range o.authors {
		require.Equal(t, 6, followers[a], "every author has as many followers")
	}
}

func TestChoose(t *testing.T) {
	t.Parallel()
	all, err := choose("")
	require.NoError(t, err)
	require.Len(t, all, len(faults))
	one, err := choose("worker-kill, redis-down")
	require.NoError(t, err)
	require.Equal(t, "worker-kill", one[0].name)
	require.Equal(t, "redis-down", one[1].name)
	_, err = choose("no-such-fault")
	require.ErrorContains(t, err, "no fault")
}
