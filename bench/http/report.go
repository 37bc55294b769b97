package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// results are scripts/bench-http's raw results (results.txt), one fact a
// line:
//
//	rate KIND ROUND CONFIG IMPL VALUE CPU-µs [EXTRA]
//	sys KIND CONFIG IMPL SYSCALL PER-OP
//
// KIND is http (CONFIG proto/procs=N, VALUE requests/s, CPU the server's
// per request), newconn (VALUE requests/s, CPU the client's per request,
// EXTRA resumed/req) or handshake (VALUE handshakes/s, CPU the client's per
// handshake, EXTRA resumed/op).
type results struct {
	rates map[key]map[int]rate // by round
	sys   map[key]map[string]float64
}

// key names a measurement: its kind, config and implementation.
type key struct{ kind, config, impl string }

type rate struct{ value, cpu, extra float64 }

// configsOf lists the configs of kind in m: by GOMAXPROCS, then HTTP/2
// before HTTP/1.1.
func configsOf[V any](m map[key]V, kind string) []string {
	var cs []string
	for k := range m {
		if k.kind == kind && !slices.Contains(cs, k.config) {
			cs = append(cs, k.config)
		}
	}
	sort.Slice(cs, func(i, j int) bool {
		pi, pj := cs[i][strings.Index(cs[i], "/")+1:], cs[j][strings.Index(cs[j], "/")+1:]
		return pi < pj || pi == pj && cs[i] > cs[j]
	})
	return cs
}

func readResults(path string) (*results, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &results{rates: map[key]map[int]rate{}, sys: map[key]map[string]float64{}}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		fs := strings.Fields(sc.Text())
		bad := func() error { return fmt.Errorf("%s:%d: cannot read %q", path, line, sc.Text()) }
		switch {
		case len(fs) >= 7 && fs[0] == "rate":
			round, err := strconv.Atoi(fs[2])
			if err != nil {
				return nil, bad()
			}
			var v [3]float64
			for i, s := range fs[5:min(len(fs), 8)] {
				if v[i], err = strconv.ParseFloat(s, 64); err != nil {
					return nil, bad()
				}
			}
			k := key{fs[1], fs[3], fs[4]}
			if r.rates[k] == nil {
				r.rates[k] = map[int]rate{}
			}
			r.rates[k][round] = rate{v[0], v[1], v[2]}
		case len(fs) == 6 && fs[0] == "sys":
			v, err := strconv.ParseFloat(fs[5], 64)
			if err != nil {
				return nil, bad()
			}
			k := key{fs[1], fs[2], fs[3]}
			if r.sys[k] == nil {
				r.sys[k] = map[string]float64{}
			}
			r.sys[k][fs[4]] += v
		case len(fs) == 0:
		default:
			return nil, bad()
		}
	}
	return r, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// column is one implementation's results of a config, by round.
func (r *results) column(kind, config, impl string) map[int]rate {
	return r.rates[key{kind, config, impl}]
}

func values(m map[int]rate, f func(rate) float64) []float64 {
	var out []float64
	for _, v := range m {
		out = append(out, f(v))
	}
	return out
}

// ratio is the median over the rounds that have both of a's value ÷ b's.
func ratio(a, b map[int]rate, f func(rate) float64) (float64, int) {
	var rs []float64
	for round, x := range a {
		if y, ok := b[round]; ok && f(y) > 0 {
			rs = append(rs, f(x)/f(y))
		}
	}
	return median(rs), len(rs)
}

// span is the median and range of m's values, with prec decimals.
func span(m map[int]rate, f func(rate) float64, prec int) string {
	vs := values(m, f)
	if len(vs) == 0 {
		return "–"
	}
	sort.Float64s(vs)
	return fmt.Sprintf("%.*f (%.*f–%.*f)", prec, median(vs), prec, vs[0], prec, vs[len(vs)-1])
}

func reqs(v rate) float64 { return v.value }
func cpu(v rate) float64  { return v.cpu }

// setupCalls are a connection's own system calls, outside the handshake:
// the socket, its connect (Go's net package also asks getsockopt,
// getpeername, getsockname and registers the socket with epoll) and close.
var setupCalls = map[string]bool{
	"socket": true, "connect": true, "setsockopt": true, "getsockopt": true, "getpeername": true,
	"getsockname": true, "epoll_ctl": true, "close": true, "fcntl": true,
}

// runtimeCalls are the process's own: threads, signals, memory, sleeps (Go's
// scheduler and sysmon; the C harness's timer thread). strace, which stops
// every call, changes how many of these there are.
var runtimeCalls = map[string]bool{
	"futex": true, "nanosleep": true, "clock_nanosleep": true, "sched_yield": true, "rt_sigprocmask": true,
	"rt_sigaction": true, "rt_sigreturn": true, "sigaltstack": true, "mmap": true, "munmap": true,
	"mprotect": true, "madvise": true, "clone": true, "clone3": true, "gettid": true,
	"tgkill": true, "set_robust_list": true, "rseq": true, "brk": true, "sched_getaffinity": true,
	"prlimit64": true, "arch_prctl": true, "execve": true, "uname": true, "readlinkat": true, "openat": true,
	"getrlimit": true, "exit_group": true, "pipe2": true, "eventfd2": true, "epoll_create1": true,
}

// sysTotals splits one measurement's calls per op into the handshake's
// (I/O, the netpoller's waits, randomness, the session file), the
// connection's set-up and the runtime's.
func sysTotals(m map[string]float64) (all, hs, setup, rt float64) {
	for name, v := range m {
		all += v
		switch {
		case setupCalls[name]:
			setup += v
		case runtimeCalls[name]:
			rt += v
		default:
			hs += v
		}
	}
	return
}

// topCalls lists the calls of m that happen at least 0.05 times per op,
// most frequent first.
func topCalls(m map[string]float64) string {
	type kv struct {
		k string
		v float64
	}
	var l []kv
	for k, v := range m {
		if v >= 0.05 {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var b strings.Builder
	for i, x := range l {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.2f", x.k, x.v)
	}
	return b.String()
}

// section starts a section of the report with a table of columns.
func section(w io.Writer, title, intro string, columns ...string) {
	fmt.Fprintf(w, "\n## %s\n\n", title)
	if intro != "" {
		fmt.Fprintf(w, "%s\n\n", intro)
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(columns, " | "), strings.Repeat("---|", len(columns)))
}

func passMiss(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func report(w io.Writer, dir string) error {
	r, err := readResults(filepath.Join(dir, "results.txt"))
	if err != nil {
		return err
	}
	meta, _ := os.ReadFile(filepath.Join(dir, "meta.txt"))
	libressl := strings.Contains(string(meta), "LibreSSL")
	fmt.Fprintln(w, "# HTTP benchmarks (issue 20)")
	fmt.Fprintln(w)
	for _, l := range strings.Split(strings.TrimSpace(string(meta)), "\n") {
		fmt.Fprintf(w, "    %s\n", l)
	}
	var targets []string
	target := func(ok bool, format string, args ...any) {
		targets = append(targets, fmt.Sprintf("- %s: %s", passMiss(ok), fmt.Sprintf(format, args...)))
	}

	section(w, "Servers under h2load", "Medians of the rounds (min–max); ratios are the median of each round's ratio.",
		"load, server GOMAXPROCS", "golibtls req/s", "crypto/tls req/s", "golibtls ÷ crypto/tls", "server CPU µs/req, golibtls",
		"crypto/tls", "tlsresume serve ÷ golibtls", "crypto/tls + x/net HTTP/2 ÷ crypto/tls")
	for _, c := range configsOf(r.rates, "http") {
		lib, gol := r.column("http", c, "golibtls"), r.column("http", c, "gotls")
		q, n := ratio(lib, gol, reqs)
		tr, _ := ratio(r.column("http", c, "tlsresume"), lib, reqs)
		xn, nx := ratio(r.column("http", c, "gotls-xnet"), gol, reqs)
		xs := "–"
		if nx > 0 {
			xs = fmt.Sprintf("%.2f", xn)
		}
		fmt.Fprintf(w, "| %s | %s | %s | **%.2f** | %s | %s | %.2f | %s |\n", c, span(lib, reqs, 0), span(gol, reqs, 0), q,
			span(lib, cpu, 1), span(gol, cpu, 1), tr, xs)
		name := strings.Replace(strings.Replace(c, "h2", "HTTP/2 (-m 10)", 1), "h1", "HTTP/1.1 keep-alive", 1)
		target(n > 0 && q >= 1.0, "%s: golibtls ÷ crypto/tls req/s %.2f (≥ 1.00; %d rounds)", name, q, n)
	}

	section(w, "System calls per request (strace -c -f)",
		"I/O: reads, writes and the netpoller's waits; the rest are the runtime's (sysmon's sleeps, wake-ups), whose number strace changes.",
		"load, server GOMAXPROCS", "server", "all", "I/O", "the calls")
	for _, c := range configsOf(r.sys, "http") {
		lib, gol := r.sys[key{"http", c, "golibtls"}], r.sys[key{"http", c, "gotls"}]
		la, lio, _, _ := sysTotals(lib)
		ga, gio, _, _ := sysTotals(gol)
		fmt.Fprintf(w, "| %s | golibtls | %.2f | %.2f | %s |\n", c, la, lio, topCalls(lib))
		fmt.Fprintf(w, "| %s | crypto/tls | %.2f | %.2f | %s |\n", c, ga, gio, topCalls(gol))
		target(lib != nil && gol != nil && la <= ga, "%s: system calls per request, golibtls %.2f ≤ crypto/tls %.2f (I/O: %.2f and %.2f)", c, la, ga, lio, gio)
	}

	section(w, "A new resumed TLS 1.2 connection per request (client)",
		"Against net/http over crypto/tls (TLS 1.2 only, HTTP/1.1); `Request.Close` on every request.",
		"client", "req/s", "client CPU µs/req", "resumed", "÷ net/http (LRU cache)")
	nlib, ngo := r.column("newconn", "resumed-tls12", "golibtls"), r.column("newconn", "resumed-tls12", "gotls")
	nq, nn := ratio(nlib, ngo, reqs)
	fmt.Fprintf(w, "| libtlshttp.Transport | %s | %s | %s | **%.2f** |\n", span(nlib, reqs, 0), span(nlib, cpu, 1), span(nlib, func(v rate) float64 { return v.extra }, 1), nq)
	fmt.Fprintf(w, "| net/http, tls.NewLRUClientSessionCache | %s | %s | %s | 1 |\n", span(ngo, reqs, 0), span(ngo, cpu, 1), span(ngo, func(v rate) float64 { return v.extra }, 1))
	if libressl {
		target(nn > 0 && nq >= 0.9, "libtlshttp.Transport, a new resumed connection per request: %.2f× net/http's req/s (≥ 0.90 on LibreSSL; %d rounds)", nq, nn)
	} else {
		targets = append(targets, fmt.Sprintf("- n/a: libtlshttp.Transport, a new resumed connection per request: %.2f× net/http's req/s (the 0.90 target is LibreSSL's; C libtls's own cost below)", nq))
	}

	section(w, "The client of a resumed TLS 1.2 handshake",
		"bench/peer's Handshake/resumed/tls12 (connect, handshake, one byte each way, close_notify, close) against a crypto/tls server in another process.",
		"client", "handshakes/s", "client CPU µs/handshake", "CPU ÷ C libtls's", "system calls: all", "handshake",
		"connection set-up", "runtime", "the calls")
	cCol := r.column("handshake", "resumed-tls12", "c")
	cSys := r.sys[key{"handshake", "resumed-tls12", "c"}]
	_, cHS, _, _ := sysTotals(cSys)
	for _, impl := range []struct{ name, label string }{
		{"c", "C libtls (bench/c)"}, {"golibtls", "golibtls, session file"},
		{"golibtls-cache", "golibtls, SessionCache"}, {"gotls", "crypto/tls, LRU cache"},
	} {
		col := r.column("handshake", "resumed-tls12", impl.name)
		cq, _ := ratio(col, cCol, cpu)
		m := r.sys[key{"handshake", "resumed-tls12", impl.name}]
		all, hs, setup, rt := sysTotals(m)
		fmt.Fprintf(w, "| %s | %s | %s | %.2f | %.1f | %.1f | %.1f | %.1f | %s |\n", impl.label, span(col, reqs, 0), span(col, cpu, 0), cq, all, hs, setup, rt, topCalls(m))
		if strings.HasPrefix(impl.name, "golibtls") && m != nil && cSys != nil {
			target(hs < cHS, "%s: system calls of a resumed TLS 1.2 handshake %.1f < C libtls's %.1f (from connect to close, without the connection's set-up and the runtime's)", impl.label, hs, cHS)
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Targets")
	fmt.Fprintln(w)
	for _, t := range targets {
		fmt.Fprintln(w, t)
	}
	return nil
}
