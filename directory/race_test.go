//go:build race

package directory

// raceEnabled: the race detector slows loading about tenfold, so the load-time bound of
// TestScale100k is only checked without it.
const raceEnabled = true
