package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/rules"
)

// Check is "nfqguard check": it loads the rule file at config as run
// would (a file run would refuse is not a valid one: check answers for
// run) and writes the compiled table to w, with entries resolved through
// Docker as they would be resolved now, Docker's answer, conflicts and
// notes on entries that match nothing, and last "CONFIG: ok". Docker being
// unreachable is reported, not an error: the file is valid, and run would
// keep retrying.
func Check(w io.Writer, config string) error {
	stdout := w
	t, err := LoadRuleFile(config)
	if err != nil {
		return err
	}
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
	fmt.Fprintf(stdout, "%s: ok\n", config)
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
	if _, ok := errors.AsType[*docker.VersionError](err); ok {
		return fmt.Sprintf("docker: refused at %s: %v", sock, strings.TrimPrefix(err.Error(), "docker: ")), t, nil
	}
	if err != nil {
		return fmt.Sprintf("docker: unreachable at %s: %v", sock, strings.TrimPrefix(err.Error(), "docker: ")), t, nil
	}
	resolved, warns = t.Resolve(toRules(cs))
	return fmt.Sprintf("docker: %s (API %s) at %s, %d running containers", v.Version, c.APIVersion(), sock, len(cs)), resolved, warns
}
