package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/rules"
)

func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	config := fs.String("c", defaultConfig, "rule file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// A file run would refuse is not a valid one: check answers for run.
	t, err := loadRuleFile(*config)
	if err != nil {
		return err
	}
	// Entries resolved through Docker are shown as they would be resolved
	// now. Docker being unreachable is reported, not an error: the file is
	// valid, and run would keep retrying.
	var status string
	var warns []string
	if t.HasDynamic() {
		status, t, warns = resolveOnce(t)
	}
	if _, err := t.WriteTo(stdout); err != nil {
		return err
	}
	if status != "" {
		fmt.Fprintf(stdout, "\n%s\n", status)
	}
	for _, w := range warns {
		fmt.Fprintf(stdout, "warning: %s\n", w)
	}
	byEntry := map[string]rules.Resolution{}
	for _, r := range t.Resolution() {
		byEntry[r.Entry] = r
	}
	for _, name := range t.Unresolved() {
		r := byEntry[name]
		switch {
		case !t.Resolved():
			fmt.Fprintf(stdout, "note: %s is unresolved (%s; Docker unreachable): its rules match nothing until Docker answers\n", name, r.Selector)
		case len(r.Containers) == 0:
			fmt.Fprintf(stdout, "note: %s matches no running container: its rules match nothing\n", name)
		default:
			fmt.Fprintf(stdout, "note: %s matches only containers without an address of their own (host network?) "+
				"or whose addresses other entries keep: its rules match nothing\n", name)
		}
	}
	fmt.Fprintf(stdout, "%s: ok\n", *config)
	return nil
}

// resolveOnce asks Docker for the running containers and resolves t with
// them. It returns a line saying what Docker answered, and t itself when
// Docker is unreachable.
func resolveOnce(t *rules.Table) (status string, resolved *rules.Table, warns []string) {
	sock := dockerSocket(t)
	c := docker.NewClient(sock)
	ctx, cancel := context.WithTimeout(context.Background(), dockerProbeTimeout)
	defer cancel()
	v, err := c.Version(ctx)
	var cs []docker.Container
	if err == nil {
		cs, err = c.Containers(ctx)
	}
	if err != nil {
		return fmt.Sprintf("docker: unreachable at %s: %v", sock, strings.TrimPrefix(err.Error(), "docker: ")), t, nil
	}
	resolved, warns = t.Resolve(toRules(cs))
	return fmt.Sprintf("docker: %s (API %s) at %s, %d running containers", v.Version, v.APIVersion, sock, len(cs)), resolved, warns
}
