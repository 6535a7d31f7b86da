//go:build !race

package pinblock

const raceEnabled = false
