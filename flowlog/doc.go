// Package flowlog writes the blocked-flow log: the events the engine emits
// (a flow's verdict when it is blocked, or allowed by a rule with
// log = true, and a blocked flow's end) as JSON lines or key=value text.
//
// A [Log] is an [inspect.Sink]. Emit never blocks and, once a rule has been
// seen, never allocates: it only takes a token from the rule's bucket and
// queues the event for a goroutine of its own that formats and writes it,
// so that a slow disk never stalls a queue. A flood of blocked flows on one
// rule is therefore cut down to the rule's rate (Options.Rate, Burst): the
// verdicts over it are not written, and once a second a "suppressed" record
// tells how many were left out. When the queue is full, events are dropped
// and counted instead.
//
// The destination is an io.Writer ([Writer]) or a file ([OpenFile],
// [OpenDest]) that [Log.Reopen] opens again by name after logrotate moved
// it away.
//
// Each line is one [Record]. Its "event" field says what it reports:
//
//   - "blocked", "allowed": a flow's verdict (inspect.EventVerdict);
//   - "end": a blocked flow went away (inspect.EventEnd), with its packets,
//     bytes, start and duration_seconds;
//   - "suppressed": suppressed verdicts of one rule and container were not
//     written because of the rate limit, since the time in "since".
package flowlog
