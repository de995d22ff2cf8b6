package main

import (
	"fmt"
	"io"

	"github.com/nfqguard/nfqguard/rules"
)

func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	config := fs.String("c", defaultConfig, "rule file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	t, err := rules.Load(*config)
	if err != nil {
		return err
	}
	if _, err := t.WriteTo(stdout); err != nil {
		return err
	}
	for _, name := range t.Unresolved() {
		fmt.Fprintf(stdout, "note: container %q has no ips: its rules match nothing\n", name)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *config)
	return nil
}
