//go:build !race

package pwserver

const raceEnabled = false
