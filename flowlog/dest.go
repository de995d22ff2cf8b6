package flowlog

import (
	"fmt"
	"io"
	"os"
)

// Dest is where a Log writes: an io.Writer (see Writer), or a file that
// Log.Reopen opens again by its path (see OpenFile). The zero Dest discards
// what is written.
type Dest struct {
	w    io.Writer
	file *os.File // the open file of a path destination, owned by the Log
	path string   // "" for a plain writer
}

// Writer returns a Dest writing to w, such as os.Stdout. The Log does not
// close w, and Reopen does nothing for it.
func Writer(w io.Writer) Dest { return Dest{w: w} }

// OpenFile opens path for appending, creating it with mode 0640, and
// returns a Dest whose Reopen opens path again (creating it) so that the
// log follows logrotate. The Log it is given to closes the file; a Dest
// that is not given to New should be closed with Close.
func OpenFile(path string) (Dest, error) {
	f, err := openAppend(path)
	if err != nil {
		return Dest{}, fmt.Errorf("open blocked-flow log: %w", err)
	}
	return Dest{w: f, file: f, path: path}, nil
}

// OpenDest returns the Dest that the log section's "blocked" setting
// (rules.LogConfig.Blocked) names: stdout for "", "stdout" or "-", stderr
// for "stderr", and otherwise the file at that path (OpenFile).
func OpenDest(name string, stdout, stderr io.Writer) (Dest, error) {
	switch name {
	case "", "stdout", "-":
		return Writer(stdout), nil
	case "stderr":
		return Writer(stderr), nil
	}
	return OpenFile(name)
}

// Path returns the file path of a Dest from OpenFile, "" for a writer.
func (d Dest) Path() string { return d.path }

// Close closes the file of a Dest from OpenFile that was not given to New.
// It does nothing for a writer.
func (d Dest) Close() error {
	if d.file == nil {
		return nil
	}
	return d.file.Close()
}

func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
}
