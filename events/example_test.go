package events_test

import (
	"fmt"
	"time"

	"github.com/wwboot/wwboot/events"
)

// A program makes one bus, gives it to what publishes (provision.Options.Events,
// power.Options.Events) and reads it: here, one subscriber.
func ExampleBus() {
	bus := events.NewBus(events.Options{})
	sub, _, _ := bus.Subscribe(bus.LastID(), 16, events.TypeState)
	defer sub.Close()

	bus.Publish(events.Event{Type: events.TypeStage, Node: "n1", Stage: "kernel"}) // filtered out
	bus.Publish(events.Event{Type: events.TypeState, Node: "n1", State: "up", Previous: "booting",
		Time: time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)})

	e := <-sub.C
	fmt.Println(e.ID, e.Type, e.Node, e.Previous, "->", e.State, e.Time.Format(time.RFC3339))
	// Output: 2 node.state n1 booting -> up 2026-11-29T12:00:00Z
}

// A webhook receiver checks the signature over the raw body before it
// trusts the event.
func ExampleVerifySignature() {
	secret := []byte("the contents of the secret file")
	body := []byte(`{"id":7,"type":"node.state","node":"n1","state":"down"}`)
	header := events.Sign(secret, body) // what wwboot sends in X-Wwboot-Signature-256
	fmt.Println(events.VerifySignature(secret, body, header))
	fmt.Println(events.VerifySignature(secret, []byte(`{"forged":true}`), header))
	// Output:
	// true
	// false
}
