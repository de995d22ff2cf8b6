package daemon

import "github.com/nfqguard/nfqguard/rules"

// keepStartOnly copies into next the settings of running that a running
// engine cannot change (queues, table sizes, the log's and listeners'
// places), and names those that differ, so that the next restart applies
// them. What can change live stays next's: rules, defaults,
// engine.malformed, engine.rejudge_on_reload and inspect.undecided.
func keepStartOnly(running, next *rules.Table) []string {
	var diff []string
	note := func(changed bool, key string) {
		if changed {
			diff = append(diff, key)
		}
	}
	re, ne := running.Engine, next.Engine
	note(re.Queue != ne.Queue, "engine.queue")
	note(re.Workers != ne.Workers, "engine.workers")
	note(re.FailOpen != ne.FailOpen, "engine.fail_open")
	note(re.Mark != ne.Mark, "engine.mark")
	note(re.BypassMark != ne.BypassMark, "engine.bypass_mark")
	note(re.FastPath != ne.FastPath, "engine.fast_path")
	note(re.MaxFlows != ne.MaxFlows, "engine.max_flows")
	note(re.QueueLen != ne.QueueLen, "engine.queue_len")
	malformed, rejudge := ne.Malformed, ne.RejudgeOnReload
	next.Engine = re
	next.Engine.Malformed, next.Engine.RejudgeOnReload = malformed, rejudge

	ri, ni := running.Inspect, next.Inspect
	note(ri.MaxPackets != ni.MaxPackets, "inspect.max_packets")
	note(ri.MaxBytes != ni.MaxBytes, "inspect.max_bytes")
	note(ri.MaxWait != ni.MaxWait, "inspect.max_wait")
	note(ri.MaxHeldFlows != ni.MaxHeldFlows, "inspect.max_held_flows")
	undecided := ni.Undecided
	next.Inspect = ri
	next.Inspect.Undecided = undecided

	note(running.Log != next.Log, "log")
	note(running.Metrics != next.Metrics, "metrics")
	note(running.Status != next.Status, "status")
	note(running.Docker != next.Docker, "docker")
	next.Log, next.Metrics, next.Status, next.Docker = running.Log, running.Metrics, running.Status, running.Docker
	return diff
}
