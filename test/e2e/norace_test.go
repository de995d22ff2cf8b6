//go:build !race

package e2e

// raceBuild is true when the tests run with -race: the engine binary they
// start is then built with the race detector too.
const raceBuild = false
