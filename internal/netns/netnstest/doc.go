// Package netnstest holds what the test helpers of both rigs (netlabtest,
// dockerlabtest) share: the check that the process may create network
// namespaces, with the binaries a rig needs, and the opening of a rig for
// one test.
//
// It does not build anything itself; without root it skips, or fails
// under CI=true.
package netnstest
