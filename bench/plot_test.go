package bench

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWritePlot(t *testing.T) {
	r := fixedReport()
	// Enough samples for a curve, spread over two decades.
	for i := range r.Setups {
		for j := range r.Setups[i].Reps {
			rr := r.Setups[i].Reps[j].RR
			for k := range 5000 {
				rr.Samples = append(rr.Samples, int64(20000+k*(i+1)*40))
			}
		}
	}
	path := filepath.Join(t.TempDir(), "cdf.png")
	if err := r.WritePlot(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 400 || b.Dy() < 200 {
		t.Errorf("plot is %v, want a readable size", b)
	}
}

func TestWritePlotNoSamples(t *testing.T) {
	r := &Report{Setups: []SetupResult{{Name: SetupKernel}}}
	if r.hasSamples() {
		t.Fatal("hasSamples without samples")
	}
	if err := r.WritePlot(filepath.Join(t.TempDir(), "cdf.png")); err == nil {
		t.Error("WritePlot without samples succeeded")
	}
}

func TestLogTicks(t *testing.T) {
	var labels []string
	for _, tk := range (logTicks{}).Ticks(15, 3000) {
		if tk.Label != "" {
			labels = append(labels, tk.Label)
		}
	}
	want := "20 50 100 200 500 1000 2000"
	if got := strings.Join(labels, " "); got != want {
		t.Errorf("labels = %q, want %q", got, want)
	}
}
