//go:build race

package image

// raceEnabled reports whether the test binary has the race detector, whose
// shadow memory and slowdown would distort memory measurements.
const raceEnabled = true
