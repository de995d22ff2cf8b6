package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/daemon"
	"github.com/nfqguard/nfqguard/internal/cli"
	"github.com/nfqguard/nfqguard/rules"
)

// askTimeout bounds a status or reload request; a reload of a large file
// with Docker to ask takes a few seconds at most.
const askTimeout = 30 * time.Second

// socketFlags are the flags status and reload share: where the daemon's
// status socket is.
type socketFlags struct {
	config *string
	socket *string
}

func addSocketFlags(fs *flag.FlagSet) socketFlags {
	return socketFlags{
		config: fs.String("c", daemon.DefaultConfig, "rule file whose [status] socket to use"),
		socket: fs.String("socket", "", "status socket path (overrides -c)"),
	}
}

// path is --socket, else the rule file's [status] socket, else the
// default. A rule file that cannot be read is not an error unless -c named
// it: the daemon may run with the default.
func (f socketFlags) path(explicitConfig bool) (string, error) {
	if *f.socket != "" {
		return *f.socket, nil
	}
	t, err := rules.Load(*f.config)
	switch {
	case err == nil && t.Status.Socket == "":
		return "", fmt.Errorf("%s: [status] socket is off: the daemon has no status socket", *f.config)
	case err == nil:
		return t.Status.Socket, nil
	case !explicitConfig && errors.Is(err, fs.ErrNotExist):
		return rules.DefaultStatusSocket, nil
	}
	return "", err
}

func statusCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("status", stderr)
	sf := addSocketFlags(fl)
	asJSON := fl.Bool("json", false, "print the status as JSON")
	top := fl.Int("top", 10, "how many top blocked flows and rules to show")
	if err := cli.ParseFlags(fl, args); err != nil {
		return err
	}
	path, err := sf.path(cli.FlagSet(fl, "c"))
	if err != nil {
		return err
	}
	resp, err := control.Ask(path, control.Request{Cmd: "status", Top: *top}, askTimeout)
	if err != nil {
		return err
	}
	if !resp.OK || resp.Status == nil {
		return fmt.Errorf("status: %s", resp.Error)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(resp.Status)
	}
	return resp.Status.WriteText(stdout)
}

func reloadCmd(args []string, stdout, stderr io.Writer) error {
	fl := newFlags("reload", stderr)
	sf := addSocketFlags(fl)
	if err := cli.ParseFlags(fl, args); err != nil {
		return err
	}
	path, err := sf.path(cli.FlagSet(fl, "c"))
	if err != nil {
		return err
	}
	resp, err := control.Ask(path, control.Request{Cmd: "reload"}, askTimeout)
	if err != nil {
		return err
	}
	r := resp.Reload
	if !resp.OK || r == nil {
		return fmt.Errorf("reload refused, the rules in force stay: %s", resp.Error)
	}
	fmt.Fprintf(stdout, "reloaded: generation %d\n", r.Generation)
	if len(r.Restart) > 0 {
		fmt.Fprintf(stdout, "changed settings that apply at the next restart: %v\n", r.Restart)
	}
	if r.Returned > 0 {
		fmt.Fprintf(stdout, "fast-path connections sent back to be judged again: %d\n", r.Returned)
	}
	return nil
}
