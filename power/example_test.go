package power_test

import (
	"context"
	"fmt"

	"github.com/wwboot/wwboot/power"
)

// pdu is an embedder's own BMC: here a power strip that only knows on/off.
type pdu struct{ on bool }

func (p *pdu) On(context.Context) error    { p.on = true; return nil }
func (p *pdu) Off(context.Context) error   { p.on = false; return nil }
func (p *pdu) Cycle(context.Context) error { p.on = true; return nil }
func (p *pdu) Reset(context.Context) error { return fmt.Errorf("a power strip cannot reset") }
func (p *pdu) Status(context.Context) (power.State, error) {
	if p.on {
		return power.StateOn, nil
	}
	return power.StateOff, nil
}

func ExampleRun() {
	targets := []power.Target{
		{Node: "n1", BMC: &pdu{}},
		{Node: "n2", BMC: &pdu{on: true}},
		{Node: "n3"}, // no BMC configured
	}
	for _, r := range power.Run(context.Background(), targets, power.ActionStatus, power.Options{Concurrency: 2}) {
		if r.Err != nil {
			fmt.Println(r.Node, r.State, r.Err)
			continue
		}
		fmt.Println(r.Node, r.State)
	}
	// Output:
	// n1 off
	// n2 on
	// n3 unknown no BMC configured
}
