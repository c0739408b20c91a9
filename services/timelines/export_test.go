package timelines

// SetSpeculativeFeeds sets how many hot feeds a read pages before it knows
// which of them the user follows, and returns a func that restores it. Only
// tests that do not run in parallel may call it.
func SetSpeculativeFeeds(n int) (restore func()) {
	old := speculativeFeeds
	speculativeFeeds = n
	return func() { speculativeFeeds = old }
}
