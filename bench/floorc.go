package bench

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// floorCSource is floor-c, the libnetfilter_queue floor of the benchmark:
// the same consumer as FloorGo, in C.
//
//go:embed floor/floor.c
var floorCSource []byte

// errFloorCMissing marks a floor-c build that failed for want of gcc or
// libnetfilter_queue: the setup is skipped, not failed.
var errFloorCMissing = errors.New("floor-c cannot be built")

// buildFloorC compiles floor-c into dir and returns the binary's path.
// When gcc, the libnetfilter_queue header or the library is missing the
// error wraps errFloorCMissing and says what is missing.
func buildFloorC(ctx context.Context, dir string) (string, error) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		return "", fmt.Errorf("%w: gcc not found (apt-get install gcc libnetfilter-queue-dev)", errFloorCMissing)
	}
	src := filepath.Join(dir, "floor.c")
	bin := filepath.Join(dir, "floor-c")
	if err := os.WriteFile(src, floorCSource, 0o644); err != nil {
		return "", fmt.Errorf("build floor-c: %w", err)
	}
	out, err := exec.CommandContext(ctx, gcc, "-O2", "-Wall", "-o", bin, src, "-lnetfilter_queue").CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if strings.Contains(msg, "libnetfilter_queue.h") || strings.Contains(msg, "-lnetfilter_queue") {
			return "", fmt.Errorf("%w: libnetfilter_queue is missing (apt-get install libnetfilter-queue-dev): %s", errFloorCMissing, firstLine(msg))
		}
		return "", fmt.Errorf("build floor-c: gcc: %w: %s", err, msg)
	}
	return bin, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
