// Package cli holds what nfqguard's two binaries (cmd/nfqguard, the daemon,
// and cmd/nfqguard-lab, the demo and the bench) share on their command
// lines: flag sets that report errors as usage errors, the exit statuses,
// and the goroutine leak check the end-to-end tests turn on.
//
// It knows no command and no setting; each binary's main does.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// ErrUsage marks errors caused by the command line: exit status 2.
var ErrUsage = errors.New("usage")

// Exit statuses of a command.
const (
	ExitError = 1 // the command failed
	ExitUsage = 2 // the command line was wrong (ErrUsage)
	ExitLeak  = 3 // goroutines outlived the command (LeakCheckEnv)
)

// Main runs a binary's commands: run is called with a context cancelled by
// SIGINT or SIGTERM and the process's arguments after its name. Main
// prints the error, if any, as "name: err" and exits with the status it
// calls for. It does not return.
func Main(name string, run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	leaks, err := leakCheck()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(ExitError)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if leakErr := leaks(); leakErr != nil {
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, leakErr)
		os.Exit(ExitLeak)
	}
	switch {
	case err == nil:
	case errors.Is(err, ErrUsage):
		os.Exit(ExitUsage)
	default:
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(ExitError)
	}
}

// NewFlags returns a flag set for "prog name" that reports errors as usage
// errors and writes its messages to stderr.
func NewFlags(prog, name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseFlags parses args; a bad flag, -h, or an argument that is not a
// flag is an error wrapping ErrUsage.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ErrUsage
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return ErrUsage
	}
	return nil
}

// UsageFunc returns a flag set's Usage that prints head, then the flags.
func UsageFunc(fs *flag.FlagSet, head string) func() {
	return func() {
		fmt.Fprint(fs.Output(), head)
		fs.PrintDefaults()
	}
}

// FlagSet reports whether flag name was given on the command line.
func FlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
