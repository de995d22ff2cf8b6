//go:build race

package main

// raceBuild is true when the tests run with -race: the engine binary they
// start is then built with the race detector too.
const raceBuild = true
