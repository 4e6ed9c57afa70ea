package events

import (
	"fmt"
	"testing"
)

// BenchmarkPublish measures Publish with subscribers that keep up (each
// drained by its own goroutine), the cost a state change adds to the
// request that caused it.
func BenchmarkPublish(b *testing.B) {
	for _, subs := range []int{0, 1, 16, 128} {
		b.Run(fmt.Sprintf("subscribers=%d", subs), func(b *testing.B) {
			bus := NewBus(Options{})
			for range subs {
				s, _, _ := bus.Subscribe(bus.LastID(), 1<<16)
				defer s.Close()
				go func() {
					for range s.C {
					}
				}()
			}
			e := Event{Type: TypeState, Node: "n0001", State: "up", Previous: "booting"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				bus.Publish(e)
			}
		})
	}
}
