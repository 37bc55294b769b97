package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/golibtls/libtls"
)

func printHeader(out io.Writer) {
	fmt.Fprintf(out, "\n%7s %7s %7s %7s %6s | %-29s | %-29s | %s\n", "", "", "", "", "legit", "server", "client (this process)", "server handshake")
	fmt.Fprintf(out, "%7s %7s %7s %7s %6s | %4s %5s %4s %6s %6s | %4s %5s %4s %6s %6s | %s\n",
		"elapsed", "hs/s", "resumed", "fail/s", "fails", "fds", "gorou", "thr", "heap", "rss", "fds", "gorou", "thr", "heap", "rss", "failures by kind (interval)")
}

// printRow prints one sample: rates over the interval since prev.
func printRow(out io.Writer, prev, cur row, t *tally) {
	dt := cur.srv.T - prev.srv.T
	if dt <= 0 {
		dt = 1
	}
	hs := total(cur.srv.Handshakes) - total(prev.srv.Handshakes)
	res := total(cur.srv.Resumed) - total(prev.srv.Resumed)
	fails := delta(cur.srv.HSFailures, prev.srv.HSFailures)
	pct := "-"
	if hs > 0 {
		pct = fmt.Sprintf("%.1f%%", 100*float64(res)/float64(hs))
	}
	var legitFails uint64
	for name, k := range t.snapshot() {
		if isLegit(name) {
			legitFails += total(k.Failures)
		}
	}
	s, c := cur.srv.procStats, cur.cli
	fmt.Fprintf(out, "%7s %7.1f %7s %7.1f %6d | %4d %5d %4d %6s %6s | %4d %5d %4d %6s %6s | %s\n",
		fmtElapsed(cur.elapsed), float64(hs)/dt, pct, float64(total(fails))/dt, legitFails,
		s.FDs, s.Goroutines, s.Threads, short(s.HeapLive), short(s.RSS),
		c.FDs, c.Goroutines, c.Threads, short(c.HeapLive), short(c.RSS), fmtKinds(fails))
}

// short prints a byte count in MiB with one decimal.
func short(b uint64) string { return fmt.Sprintf("%.1fM", float64(b)/(1<<20)) }

func isLegit(kind string) bool {
	for _, k := range legitKinds {
		if k.name == kind {
			return true
		}
	}
	return false
}

type judgeInput struct {
	o              options
	loadTime       time.Duration
	interrupted    bool
	serverGone     bool
	workersStopped bool
	srv            *child
	final          serverReport
	finalErr       error
	srvBase        serverReport
	cliBase        procStats
	cliDrained     procStats
	rows           []row
	tally          map[string]kindStats
	rotations      uint64
	rotErrs        []string
	maxLag         int64
	emergencyKey   uint32
	followErrs     map[string]bool
	serverMsgs     []string
}

// judge prints the summary and returns the verdict's checks.
func judge(in judgeInput, out io.Writer) []check {
	var cs []check
	add := func(name string, ok bool, format string, args ...any) {
		cs = append(cs, check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	b := libtls.Backend()
	o := in.o
	secs := in.loadTime.Seconds()

	// --- Clients -------------------------------------------------------------
	fmt.Fprintf(out, "== summary: %v of load on %v\n\n", in.loadTime.Round(time.Second), b)
	fmt.Fprintf(out, "%-18s %10s %9s %7s %8s  %s\n", "client kind", "handshakes", "per s", "resumed", "", "failures")
	var legitOK, legitResumed, legitFailed, legitPostHS, legitHSFailed uint64
	for _, k := range legitKinds {
		s := in.tally[k.name]
		legitOK += s.OK
		legitResumed += s.Resumed
		for key, n := range s.Failures {
			legitFailed += n
			if strings.HasPrefix(key, "handshake/") {
				legitHSFailed += n
			} else {
				legitPostHS += n // the server's handshake completed
			}
		}
		fmt.Fprintf(out, "%-18s %10d %9.1f %7d %7.1f%%  %s\n", k.name, s.OK, float64(s.OK)/secs, s.Resumed, pctOf(s.Resumed, s.OK), fmtKinds(s.Failures))
	}
	fmt.Fprintf(out, "%-18s %10d %9.1f %7d %7.1f%%  %d\n\n", "all legit clients", legitOK, float64(legitOK)/secs, legitResumed, pctOf(legitResumed, legitOK), legitFailed)
	fmt.Fprintf(out, "%-18s %10s %9s  %s\n", "bad peer kind", "peers", "per s", "how they ended (failures: the server kept one open, or did not answer)")
	var badConnected, badFailed uint64
	for _, name := range badKinds {
		s := in.tally[name]
		badConnected += s.Connected
		badFailed += total(s.Failures)
		extra := ""
		if name == bIdleWait && s.OK > 0 {
			extra = fmt.Sprintf("; closed by the server after %v to %v", s.MinWait.Round(time.Millisecond), s.MaxWait.Round(time.Millisecond))
		}
		failures := ""
		if len(s.Failures) > 0 {
			failures = "; FAILURES " + fmtKinds(s.Failures)
		}
		fmt.Fprintf(out, "%-18s %10d %9.1f  %s%s%s\n", name, s.Attempts, float64(s.Attempts)/secs, fmtKinds(s.Outcomes), extra, failures)
	}
	for _, name := range append(kindNames(), badKinds...) {
		ex := in.tally[name].Examples
		keys := make([]string, 0, len(ex))
		for k := range ex {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(out, "  e.g. %s %s: %s\n", name, k, ex[k])
		}
	}

	// --- Server --------------------------------------------------------------
	f := in.final
	fmt.Fprintf(out, "\nserver: accepted %d; handshakes %d (%s), %.1f/s; resumed %d (%s)\n",
		f.Accepted, total(f.Handshakes), fmtKinds(f.Handshakes), float64(total(f.Handshakes))/secs, total(f.Resumed), fmtKinds(f.Resumed))
	fmt.Fprintf(out, "server: failed handshakes %d: %s\n", total(f.HSFailures), fmtKinds(f.HSFailures))
	fmt.Fprintf(out, "server: errors after the handshake: %s; accept errors: %d; connections open at the end: %d\n", fmtKinds(f.EchoErrors), f.AcceptErrors, f.Active)
	exKeys := make([]string, 0, len(f.Examples))
	for k := range f.Examples {
		exKeys = append(exKeys, k)
	}
	slices.Sort(exKeys)
	for _, k := range exKeys {
		fmt.Fprintf(out, "  e.g. %s: %s\n", k, f.Examples[k])
	}
	fmt.Fprintf(out, "key file: %d rotations (one per %v), newest rev %d; the server's newest key lagged at most %d behind\n",
		in.rotations, o.rotate, f.NewestRev, in.maxLag)

	// --- Resources -------------------------------------------------------------
	var warm, steady []row
	for _, r := range in.rows {
		if r.elapsed < o.warmup.Seconds() {
			warm = append(warm, r)
		} else {
			steady = append(steady, r)
		}
	}
	fmt.Fprintf(out, "\nresources: %d samples, %d in the warm-up (first %v), %d in the steady state\n", len(in.rows), len(warm), o.warmup, len(steady))
	fmt.Fprintf(out, "%-20s %9s %9s %9s %9s %23s %9s\n", "", "baseline", "warm max", "steady 1st", "last", "steady min/median/max", "drained")
	type series struct {
		name  string
		get   func(r row) float64
		base  float64
		drain float64
		size  bool
	}
	ss := []series{
		{"server fds", func(r row) float64 { return float64(r.srv.FDs) }, float64(in.srvBase.FDs), float64(f.FDs), false},
		{"server goroutines", func(r row) float64 { return float64(r.srv.Goroutines) }, float64(in.srvBase.Goroutines), float64(f.Goroutines), false},
		{"server threads", func(r row) float64 { return float64(r.srv.Threads) }, float64(in.srvBase.Threads), float64(f.Threads), false},
		{"server Go heap live", func(r row) float64 { return float64(r.srv.HeapLive) }, float64(in.srvBase.HeapLive), float64(f.HeapLive), true},
		{"server RSS", func(r row) float64 { return float64(r.srv.RSS) }, float64(in.srvBase.RSS), float64(f.RSS), true},
		{"client fds", func(r row) float64 { return float64(r.cli.FDs) }, float64(in.cliBase.FDs), float64(in.cliDrained.FDs), false},
		{"client goroutines", func(r row) float64 { return float64(r.cli.Goroutines) }, float64(in.cliBase.Goroutines), float64(in.cliDrained.Goroutines), false},
		{"client threads", func(r row) float64 { return float64(r.cli.Threads) }, float64(in.cliBase.Threads), float64(in.cliDrained.Threads), false},
		{"client Go heap live", func(r row) float64 { return float64(r.cli.HeapLive) }, float64(in.cliBase.HeapLive), float64(in.cliDrained.HeapLive), true},
		{"client RSS", func(r row) float64 { return float64(r.cli.RSS) }, float64(in.cliBase.RSS), float64(in.cliDrained.RSS), true},
	}
	val := func(v float64, size bool) string {
		if size {
			return fmt.Sprintf("%.1fM", v/(1<<20))
		}
		return fmt.Sprintf("%.0f", v)
	}
	for _, s := range ss {
		w, st := pick(warm, s.get), pick(steady, s.get)
		if len(w) == 0 || len(st) == 0 {
			fmt.Fprintf(out, "%-20s %9s  (not enough samples)\n", s.name, val(s.base, s.size))
			continue
		}
		mm := fmt.Sprintf("%s/%s/%s", val(slices.Min(st), s.size), val(median(st), s.size), val(slices.Max(st), s.size))
		fmt.Fprintf(out, "%-20s %9s %9s %9s %9s %23s %9s\n", s.name, val(s.base, s.size), val(slices.Max(w), s.size),
			val(st[0], s.size), val(st[len(st)-1], s.size), mm, val(s.drain, s.size))
	}

	// --- Verdict ---------------------------------------------------------------
	add("ran the whole duration", !in.interrupted && !in.serverGone && in.loadTime >= o.duration-time.Second,
		"%v of %v%s", in.loadTime.Round(time.Second), o.duration, map[bool]string{true: " (interrupted or the server died)"}[in.interrupted || in.serverGone])
	stderr := in.srv.stderr.String()
	srvOK := in.finalErr == nil && in.srv.waitErr == nil && len(in.serverMsgs) == 0 &&
		!strings.Contains(stderr, "DATA RACE") && !strings.Contains(stderr, "panic")
	detail := "exit 0, drained, final report, nothing on stderr"
	if !srvOK {
		detail = fmt.Sprintf("final report: %v; exit: %v; reports: %q; stderr:\n%s", in.finalErr, in.srv.waitErr, in.serverMsgs, stderr)
	} else if stderr != "" {
		detail = "exit 0; stderr: " + strings.TrimSpace(stderr)
	}
	add("server process", srvOK, "%s", detail)
	add("clients stopped in time", in.workersStopped, "every client operation ended within its timeout after the load stopped")
	add("legit clients never failed", legitFailed == 0, "%d failures in %d handshakes", legitFailed, legitOK+legitFailed)
	add("bad peers ended by the server", badFailed == 0, "%d bad peers, %d failures (kept open past the handshake timeout, or no answer to a ClientHello)", badConnected, badFailed)
	var missing []string
	for _, name := range kindNames() {
		if in.tally[name].OK == 0 {
			missing = append(missing, name)
		}
	}
	for _, name := range badKinds {
		if in.tally[name].Attempts == 0 {
			missing = append(missing, name)
		}
	}
	add("every client kind ran", len(missing) == 0, "missing: %v", missing)

	srvHS, srvRes, srvFail := total(f.Handshakes), total(f.Resumed), total(f.HSFailures)
	wantHS := legitOK + legitPostHS
	add("handshakes accounted for", in.finalErr == nil && srvHS == wantHS && srvRes == legitResumed && srvFail == badConnected+legitHSFailed && f.Accepted == srvHS+srvFail,
		"server: %d ok, %d resumed, %d failed of %d accepted; clients: %d ok, %d resumed; bad peers %d",
		srvHS, srvRes, srvFail, f.Accepted, wantHS, legitResumed, badConnected+legitHSFailed)
	add("server errors", in.finalErr == nil && total(f.EchoErrors) == 0 && f.AcceptErrors == 0 && f.Active == 0,
		"errors after the handshake: %s; accept errors: %d; connections left: %d", fmtKinds(f.EchoErrors), f.AcceptErrors, f.Active)

	// Resumption as Backend says.
	summary, resumeBad := resumptionProblems(in.tally, b)
	add("resumption as Backend() says", len(resumeBad) == 0, "server resumes TLS 1.2: %v; %s%s",
		b.ServerSessionResumption, strings.Join(summary, ", "), prefixed("; ", strings.Join(resumeBad, "; ")))

	var follow []string
	for e := range in.followErrs {
		follow = append(follow, e)
	}
	slices.Sort(follow)
	wantRot := uint64(in.loadTime/o.rotate) * 9 / 10
	add("key rotation", len(in.rotErrs) == 0 && len(follow) == 0 && in.rotations >= wantRot && in.maxLag <= 3 && in.emergencyKey == 0,
		"%d rotations (>= %d), errors %v, follower errors %v, lag <= %d (<= 3), emergency key %#x",
		in.rotations, wantRot, in.rotErrs, follow, in.maxLag, in.emergencyKey)
	idle := in.tally[bIdleWait]
	add("server's handshake timeout", idle.OK > 0 && idle.MinWait >= o.hsTimeout*9/10 && idle.MaxWait <= o.hsTimeout+5*time.Second,
		"%d silent peers closed after %v to %v (timeout %v)", idle.OK, idle.MinWait.Round(time.Millisecond), idle.MaxWait.Round(time.Millisecond), o.hsTimeout)

	// Flatness.
	slackFDs := workerCount() + 4
	slackG := 2*workerCount() + 8
	countCheck := func(name string, get func(r row) float64, slack int) {
		m, limit, ok := countFlat(ints(pick(warm, get)), ints(pick(steady, get)), slack)
		add(name+" flat", ok, "steady max %d <= warm-up max + %d = %d (%d warm-up, %d steady samples)", m, slack, limit, len(warm), len(steady))
	}
	drainCheck := func(name string, base, drained, slack int) {
		add(name+" drained", drained <= base+slack, "after the load %d <= %d before it (+%d)", drained, base, slack)
	}
	sizeCheck := func(name string, get func(r row) float64, informational bool) {
		g := sizeFlat(times(steady), pick(steady, get))
		c := check{Name: name + " flat", OK: g.OK, Info: informational, Detail: fmt.Sprintf(
			"last-quarter median %s <= first-quarter median %s x %.2f + 1 MiB = %s (%d steady samples; slope %+.2f MiB/min)",
			mib(g.Last), mib(g.First), 1+growthRel, mib(g.Limit), g.N, g.SlopePerMin/(1<<20))}
		if g.N < minSteadySamples {
			c.Detail = fmt.Sprintf("%d steady samples, need %d", g.N, minSteadySamples)
		}
		cs = append(cs, c)
	}
	countCheck("server fds", ss[0].get, slackFDs)
	drainCheck("server fds", in.srvBase.FDs, f.FDs, 0)
	countCheck("server goroutines", ss[1].get, slackG)
	drainCheck("server goroutines", in.srvBase.Goroutines, f.Goroutines, 2)
	sizeCheck("server RSS", ss[4].get, false)
	sizeCheck("server Go heap", ss[3].get, false)
	countCheck("client fds", ss[5].get, slackFDs)
	drainCheck("client fds", in.cliBase.FDs, in.cliDrained.FDs, 0)
	countCheck("client goroutines", ss[6].get, slackG)
	drainCheck("client goroutines", in.cliBase.Goroutines, in.cliDrained.Goroutines, 2)
	sizeCheck("client RSS", ss[9].get, false)
	sizeCheck("client Go heap", ss[8].get, false)

	fmt.Fprintf(out, "\n== verdict\n")
	for _, c := range cs {
		fmt.Fprintln(out, c)
	}
	if passed(cs) {
		fmt.Fprintf(out, "\nsoak: PASS\n")
	} else {
		fmt.Fprintf(out, "\nsoak: FAIL\n")
	}
	return cs
}

// resumptionProblems compares each client kind's resumption with what
// backend b allows; it returns a summary per kind and the problems.
func resumptionProblems(tally map[string]kindStats, b libtls.BackendInfo) (summary, problems []string) {
	for _, k := range legitKinds {
		s := tally[k.name]
		want, minFrac := expectedResumption(k.name, b)
		frac := float64(s.Resumed) / float64(max(s.OK, 1))
		summary = append(summary, fmt.Sprintf("%s %.0f%%", k.name, 100*frac))
		switch {
		case !want && s.Resumed != 0:
			problems = append(problems, fmt.Sprintf("%s resumed %d times, expected never", k.name, s.Resumed))
		case want && s.OK < 10:
			problems = append(problems, fmt.Sprintf("%s: only %d handshakes, too few to judge", k.name, s.OK))
		case want && frac < minFrac:
			problems = append(problems, fmt.Sprintf("%s resumed %.1f%%, expected >= %.0f%%", k.name, 100*frac, 100*minFrac))
		}
	}
	return summary, problems
}

// expectedResumption says whether a client kind should resume on backend
// b, and how often at least.
func expectedResumption(kind string, b libtls.BackendInfo) (bool, float64) {
	switch kind {
	case kSessFile12, kGo12:
		// Every handshake but a worker's first, and one after a key
		// rotation that outran the client (a ticket older than four
		// rotations), resumes.
		return b.ServerSessionResumption, 0.8
	case kCache12:
		// Six names through a cache of four: a name evicted since its last
		// use gets a full handshake (about a third of them, uniformly).
		return b.ServerSessionResumption, 0.4
	case kSessFile13, kGo13:
		return b.TLS13Resumption && b.ServerSessionResumption, 0.5
	}
	return false, 0 // no session at all
}

func kindNames() []string {
	var ns []string
	for _, k := range legitKinds {
		ns = append(ns, k.name)
	}
	return ns
}

func pctOf(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func pick(rs []row, get func(r row) float64) []float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = get(r)
	}
	return vs
}

func times(rs []row) []float64 {
	ts := make([]float64, len(rs))
	for i, r := range rs {
		ts[i] = r.elapsed
	}
	return ts
}

func ints(vs []float64) []int {
	out := make([]int, len(vs))
	for i, v := range vs {
		out[i] = int(v)
	}
	return out
}
