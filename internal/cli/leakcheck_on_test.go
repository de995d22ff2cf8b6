//go:build leakcheck

package cli

const leakCheckBuilt = true
