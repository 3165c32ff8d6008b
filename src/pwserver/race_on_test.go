//go:build race

package pwserver

// raceEnabled shrinks the big tests: the race detector makes them ~10×
// slower and bigger.
const raceEnabled = true
