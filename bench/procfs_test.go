package bench

import (
	"strings"
	"testing"
)

func TestParseQueueProc(t *testing.T) {
	in := "    0  12345     0 2 65535     7     3   100000  1\n    1 -4001     2 2 65535     1     0      250  1\n"
	got, err := parseQueueProc(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := QueueCounters{Queues: 2, QueueDropped: 8, UserDropped: 3, IDSequence: 100250}
	if got != want {
		t.Errorf("parseQueueProc = %+v, want %+v", got, want)
	}
	if _, err := parseQueueProc(strings.NewReader("0 1 2\n")); err == nil {
		t.Error("short line accepted")
	}
}

func TestParseStatCPU(t *testing.T) {
	stat := "4242 (floor (c) x) S 1 4242 4242 0 -1 4194560 155 0 0 0 250 130 0 0 20 0 1 0 123 1000 100 18446744073709551615\n"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.8 {
		t.Errorf("parseStatCPU = %v s, want 3.8 s (380 ticks)", got)
	}
}
