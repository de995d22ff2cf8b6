package daemon

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/metrics"
	"github.com/nfqguard/nfqguard/pcaplog"
)

// isLoopback reports whether a listener's address is reachable from this
// host only. An unspecified address (":9477", "0.0.0.0", "[::]") is every
// interface, so not.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// override sets *setting to flag when the flag was given; "off" empties it.
func override(setting *string, flag string) {
	switch flag {
	case "":
	case "off":
		*setting = ""
	default:
		*setting = flag
	}
}

// captureOrNil is w as an inspect.Capture, or a nil interface when there is
// no capture (a nil *pcaplog.Writer in an interface would not be nil).
func captureOrNil(w *pcaplog.Writer) inspect.Capture {
	if w == nil {
		return nil
	}
	return w
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write stats: %w", err)
	}
	return nil
}

// logStats and pcapStats adapt the log's and the capture's counters for
// the metrics.
type logStats struct{ l *flowlog.Log }

func (s logStats) LogStats() metrics.LogStats {
	st := s.l.Stats()
	return metrics.LogStats{
		Blocked: st.Blocked, Allowed: st.Allowed, Ends: st.Ends,
		Suppressed: st.Suppressed, SuppressedRecords: st.SuppressedRecords,
		Dropped: st.Dropped, WriteErrors: st.WriteErrors, Reopens: st.Reopens,
	}
}

type pcapStats struct{ w *pcaplog.Writer }

func (s pcapStats) PcapStats() metrics.PcapStats {
	st := s.w.Stats()
	return metrics.PcapStats{Packets: st.Packets, Dropped: st.Dropped, Bytes: st.Bytes, Rotations: st.Rotations, WriteErrors: st.WriteErrors}
}
