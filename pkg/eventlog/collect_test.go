package eventlog

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCollectTakesWhatHasArrivedUpToMax(t *testing.T) {
	msgs := make(chan int, 10)
	for i := range 5 {
		msgs <- i
	}
	require.Equal(t, []int{9, 0, 1}, collect([]int{9}, msgs, 3), "up to max")
	require.Equal(t, []int{2, 3, 4}, collect(nil, msgs, 8), "what has arrived, without waiting")
	require.Empty(t, collect(nil, msgs, 8), "nothing arrived")
	msgs <- 5
	close(msgs)
	require.Equal(t, []int{7, 5}, collect([]int{7}, msgs, 8), "a closed channel ends the batch")
}
