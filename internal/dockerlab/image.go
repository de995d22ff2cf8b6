package dockerlab

import (
	"archive/tar"
	"context"
	_ "embed" // the test server's source
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ImageRef is the reference Image tags the test image with.
const ImageRef = "nfqg-test:1"

//go:embed testserver/main.go
var testserverSource []byte

// Image returns the reference of the test image, building it on the first
// call for this Docker: the testserver program (see its documentation) is
// compiled statically with the go command into the state directory, put
// alone into a tarball as /srv and imported with
// "docker import -c 'ENTRYPOINT [\"/srv\"]'". Containers of the image
// serve TCP echo on 80, 81, 8000 and 9000 and UDP echo on 53 unless told
// otherwise ($TCP_PORTS, $UDP_PORTS, or "serve -tcp … -udp …").
func (d *Docker) Image(ctx context.Context) (string, error) {
	d.imageMu.Lock()
	defer d.imageMu.Unlock()
	d.mu.Lock()
	img := d.image
	d.mu.Unlock()
	if img != "" {
		return img, nil
	}
	dir := filepath.Join(d.dir, "image")
	tarball, err := buildTestserver(ctx, dir)
	if err != nil {
		return "", fmt.Errorf("dockerlab: build test image: %w", err)
	}
	if _, err := d.CLI(ctx, "import", "-c", `ENTRYPOINT ["/srv"]`, tarball, ImageRef); err != nil {
		return "", fmt.Errorf("dockerlab: build test image: %w", err)
	}
	d.mu.Lock()
	d.image = ImageRef
	d.mu.Unlock()
	return ImageRef, nil
}

// buildTestserver compiles the embedded test server in dir and returns the
// path of a tarball holding it as /srv.
func buildTestserver(ctx context.Context, dir string) (string, error) {
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), testserverSource, 0o644); err != nil {
		return "", err
	}
	// A module of its own, standard library only: the build needs neither
	// this repository nor the network.
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module nfqgtestserver\n\ngo 1.22\n"), 0o644); err != nil {
		return "", err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		if _, serr := os.Stat("/usr/local/go/bin/go"); serr != nil {
			return "", fmt.Errorf("go command: %w", err)
		}
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(dir, "srv")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOOS=linux")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w: %s", err, strings.TrimSpace(string(out)))
	}
	tarball := filepath.Join(dir, "image.tar")
	if err := writeTar(tarball, bin, "srv"); err != nil {
		return "", fmt.Errorf("tarball: %w", err)
	}
	return tarball, nil
}

// writeTar writes a tarball at path holding file as name, mode 0755.
func writeTar(path, file, name string) (err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	tw := tar.NewWriter(f)
	hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	return tw.Close()
}
