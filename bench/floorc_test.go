package bench

import (
	"errors"
	"os/exec"
	"testing"
)

func TestBuildFloorCWithoutGCC(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := buildFloorC(t.Context(), t.TempDir())
	if !errors.Is(err, errFloorCMissing) {
		t.Errorf("buildFloorC without gcc: err = %v, want errFloorCMissing (setup skipped, not failed)", err)
	}
}

func TestBuildFloorC(t *testing.T) {
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	bin, err := buildFloorC(t.Context(), t.TempDir())
	if errors.Is(err, errFloorCMissing) {
		t.Skipf("libnetfilter_queue not installed: %v", err)
	}
	if err != nil {
		t.Fatalf("buildFloorC: %v", err)
	}
	// With two arguments it prints its usage and exits 2,
	// touching no queue.
	err = exec.Command(bin, "1", "2").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Errorf("floor-c with two arguments: %v, want exit status 2", err)
	}
}
