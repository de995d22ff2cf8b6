package rules

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from current WriteTo output")

// TestWriteToGolden compares WriteTo output for every testdata/*.toml with
// the .golden file next to it.
func TestWriteToGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			tbl := mustLoad(t, file)
			var buf bytes.Buffer
			n, err := tbl.WriteTo(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(buf.Len()) {
				t.Errorf("WriteTo returned n=%d, wrote %d bytes", n, buf.Len())
			}
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), buf.String()); diff != "" {
				t.Errorf("WriteTo mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

type failWriter struct{ after int }

var errWrite = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if w.after <= 0 {
		return 0, errWrite
	}
	w.after--
	return len(p), nil
}

func TestWriteToError(t *testing.T) {
	tbl := mustLoad(t, filepath.Join("testdata", "judge.toml"))
	for after := range 4 {
		if _, err := tbl.WriteTo(&failWriter{after: after}); !errors.Is(err, errWrite) {
			t.Errorf("WriteTo with writer failing after %d writes: err = %v, want %v", after, err, errWrite)
		}
	}
}
