package dockerlab

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// errClosed is returned by what cannot be done once Close has begun.
var errClosed = errors.New("dockerlab: closed")

// Stop stops dockerd as "systemctl stop docker" does: SIGTERM, upon which
// dockerd stops the running containers (each within its stop timeout) and
// its managed containerd, then exits; SIGKILL after 20 s or once ctx is
// done, which is then reported. Everything else stays: the namespaces,
// the state directory with the containers and images, Docker's chains and
// rules in the namespace's firewall, and the processes Command started
// (the engine under test keeps running). It returns once dockerd has
// exited, and an error if dockerd was not running.
func (d *Docker) Stop(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	return d.stop(ctx)
}

// StartAgain starts dockerd again after Stop, as "systemctl start docker"
// does: the same binary, flags, daemon.json, data root, exec root, socket
// and network namespace as Start used, so it finds its containers, images
// and networks again (containers with a restart policy of "always" or
// "unless-stopped" are started again by dockerd itself), and waits until
// its API answers, bounded by Options.StartTimeout and ctx. IP forwarding
// is left as it is (on, as Docker set it): a host's does not change when
// Docker restarts. It is an error to call it while dockerd runs or once
// Close has begun.
func (d *Docker) StartAgain(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	return d.startAgain(ctx)
}

// StartAgainWithFirewall is StartAgain with dockerd's firewall backend
// changed to backend (IPTables or NFTables), as an operator who edits
// "firewall-backend" in daemon.json and starts Docker again: Docker 29
// only. Later StartAgain and Restart keep the new backend.
func (d *Docker) StartAgainWithFirewall(ctx context.Context, backend string) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.engine.kind != Docker29 || (backend != IPTables && backend != NFTables) {
		return fmt.Errorf("dockerlab: firewall backend %q: only Docker 29 has %q and %q", backend, IPTables, NFTables)
	}
	d.mu.Lock()
	p := d.dockerd
	d.mu.Unlock()
	if p != nil && !p.exited() {
		return errors.New("dockerlab: change the firewall backend: dockerd is running (Stop it first)")
	}
	// Written under both locks: startDockerd reads it under lifeMu,
	// FirewallBackend under mu.
	set := func(b string) {
		d.mu.Lock()
		d.engine.firewall = b
		d.mu.Unlock()
	}
	old := d.FirewallBackend()
	set(backend)
	if err := d.startAgain(ctx); err != nil {
		set(old)
		return err
	}
	return nil
}

// Restart is Stop followed by StartAgain, as "systemctl restart docker":
// dockerd is down from the SIGTERM until the new one has taken over its
// socket. It returns once the new dockerd's API answers.
func (d *Docker) Restart(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if err := d.stop(ctx); err != nil {
		return err
	}
	return d.startAgain(ctx)
}

// Running reports whether the dockerd started last is still running: true
// from Start until Stop (or dockerd's own exit), and again once
// StartAgain has started it. It does not ask the API.
func (d *Docker) Running() bool {
	d.mu.Lock()
	p := d.dockerd
	d.mu.Unlock()
	return p != nil && !p.exited()
}

func (d *Docker) stop(ctx context.Context) error {
	d.mu.Lock()
	p, closed := d.dockerd, d.closed
	d.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case p == nil:
		return errors.New("dockerlab: stop: dockerd was never started")
	case p.exited():
		return fmt.Errorf("dockerlab: stop: dockerd is not running (it exited: %v)", cmpErr(p.err, "exit status 0"))
	}
	begin := time.Now()
	if err := terminate(ctx, p); err != nil {
		return fmt.Errorf("%w after %v; log:\n%s", err, time.Since(begin).Round(time.Millisecond), d.logTail())
	}
	return nil
}

func (d *Docker) startAgain(ctx context.Context) error {
	d.mu.Lock()
	p, closed := d.dockerd, d.closed
	d.mu.Unlock()
	switch {
	case closed:
		return errClosed
	case p != nil && !p.exited():
		return errors.New("dockerlab: start again: dockerd is running")
	}
	err := d.startDockerd(ctx)
	if err != nil {
		// One that started but never answered is stopped, so that a
		// failed StartAgain leaves dockerd stopped, as it found it.
		d.mu.Lock()
		p := d.dockerd
		d.mu.Unlock()
		if kerr := terminate(context.Background(), p); kerr != nil {
			err = errors.Join(err, kerr)
		}
	}
	return err
}

// cmpErr returns err's text, or alt when err is nil.
func cmpErr(err error, alt string) string {
	if err == nil {
		return alt
	}
	return err.Error()
}
