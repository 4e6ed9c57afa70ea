package power

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/events"
)

// Run publishes one node.power event per node: the state afterwards, or the
// error of a node whose BMC failed or could not be configured.
func TestRunPublishesPowerEvents(t *testing.T) {
	bus := events.NewBus(events.Options{})
	sub, _, _ := bus.Subscribe(bus.LastID(), 16)
	defer sub.Close()
	var running, peak atomic.Int32
	ok := &slowBMC{running: &running, peak: &peak, state: StateOn}
	bad := &slowBMC{running: &running, peak: &peak, fail: errors.New("BMC busy")}
	res := Run(context.Background(), []Target{
		{Node: "n1", BMC: ok}, {Node: "n2", BMC: bad}, {Node: "n3", Err: ErrNoBMC},
	}, ActionOn, Options{Events: bus})
	require.Len(t, res, 3)
	got := map[string]events.Event{}
	for range 3 {
		select {
		case e := <-sub.C:
			got[e.Node] = e
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d power events", len(got))
		}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		assert.Equal(t, events.TypePower, got[n].Type, n)
		assert.Equal(t, "on", got[n].Action, n)
		assert.Equal(t, "power", got[n].Source, n)
	}
	assert.Equal(t, "on", got["n1"].State)
	assert.Empty(t, got["n1"].Error)
	assert.Equal(t, "unknown", got["n2"].State)
	assert.Contains(t, got["n2"].Error, "BMC busy")
	assert.Contains(t, got["n3"].Error, "no BMC configured")
}
