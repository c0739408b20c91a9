package timelines_test

import (
	"testing"

	"github.com/tidingshq/tidings/pkg/fanout"
	"github.com/tidingshq/tidings/services/stacktest"
)

// workerFanout returns a fan-out over the stack's stores, to drive by hand.
func workerFanout(t *testing.T, s *stacktest.Stack) *fanout.Fanout {
	t.Helper()
	return fanout.New(s.Env.Log, s.Components.Projections().FanoutStores(), s.Config.Fanout(), s.Env.Logger)
}
