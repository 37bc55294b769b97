// Command report turns the raw results of scripts/bench (a directory with
// c.txt, golibtls.txt, gotls.txt and proc.SERVER-CLIENT.txt in Go benchmark
// format, and meta.txt) into the tables of BENCHMARKS.md: medians over the
// rounds with the ratios to C, the resumed/full speed-ups, and issue 11's
// targets with PASS or MISS each; and, with -svg, a chart of golibtls ÷ C
// against the targets.
//
//	go run ./bench/report [-svg chart.svg] DIR [DIR...]
//
// With several directories (one run per backend) the text has one section
// per run and the chart one panel per run, side by side.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// --- raw results ------------------------------------------------------------------

type key struct{ group, name, unit string }

// run is one scripts/bench output directory. Groups: "c", "golibtls",
// "gotls" (both ends in one process) and "proc:SERVER-CLIENT" (two
// processes; sides c, go = golibtls, gotls).
type run struct {
	dir   string
	meta  []string
	vals  map[key][]float64
	names map[string][]string // group: scenario names, first seen first
	pairs []string            // the two-process pairs, c-c first
}

var benchLine = regexp.MustCompile(`^Benchmark(\S+?)(-\d+)?$`)

func (r *run) parse(group string, rd io.Reader) error {
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		m := benchLine.FindStringSubmatch(f[0])
		if m == nil {
			continue
		}
		name := m[1]
		if !slices.Contains(r.names[group], name) {
			r.names[group] = append(r.names[group], name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			k := key{group, name, f[i+1]}
			r.vals[k] = append(r.vals[k], v)
		}
	}
	return sc.Err()
}

// pairRank orders the two-process pairs: the reference first, then those
// with golibtls, then the rest.
var pairRank = map[string]int{"c-c": 0, "go-c": 1, "c-go": 2, "go-go": 3, "gotls-c": 4, "c-gotls": 5, "gotls-gotls": 6}

func load(dir string) (*run, error) {
	r := &run{dir: dir, vals: map[key][]float64{}, names: map[string][]string{}}
	if data, err := os.ReadFile(filepath.Join(dir, "meta.txt")); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if l != "" {
				r.meta = append(r.meta, l)
			}
		}
	}
	files := map[string]string{}
	for _, g := range []string{"c", "golibtls", "gotls"} {
		files[g] = filepath.Join(dir, g+".txt")
	}
	procs, _ := filepath.Glob(filepath.Join(dir, "proc.*.txt"))
	for _, p := range procs {
		pair := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), "proc."), ".txt")
		files["proc:"+pair] = p
		r.pairs = append(r.pairs, pair)
	}
	sort.Slice(r.pairs, func(i, j int) bool {
		ri, iok := pairRank[r.pairs[i]]
		rj, jok := pairRank[r.pairs[j]]
		if iok != jok {
			return iok
		}
		if ri != rj {
			return ri < rj
		}
		return r.pairs[i] < r.pairs[j]
	})
	found := 0
	for g, p := range files {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		found++
		err = r.parse(g, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
	}
	if found == 0 {
		return nil, fmt.Errorf("%s: no results (c.txt, golibtls.txt, gotls.txt, proc.*.txt)", dir)
	}
	return r, nil
}

// med is the median of a metric over the rounds.
func (r *run) med(group, name, unit string) (float64, bool) {
	v := slices.Clone(r.vals[key{group, name, unit}])
	if len(v) == 0 {
		return 0, false
	}
	sort.Float64s(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2], true
	}
	return (v[n/2-1] + v[n/2]) / 2, true
}

func (r *run) metaValue(k string) string {
	for _, l := range r.meta {
		if v, ok := strings.CutPrefix(l, k+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// title is the backend's name, for the chart.
func (r *run) title() string {
	b := r.metaValue("backend")
	if i := strings.Index(b, " ("); i > 0 {
		b = b[:i]
	}
	if b == "" {
		b = filepath.Base(r.dir)
	}
	return b
}

// --- formatting ----------------------------------------------------------------

func num(x float64) string {
	switch a := math.Abs(x); {
	case a >= 100:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case x == 0:
		return "0"
	default:
		return strconv.FormatFloat(x, 'g', 3, 64)
	}
}

func cell(x float64, ok bool) string {
	if !ok {
		return "-"
	}
	return num(x)
}

func ratioCell(a float64, aok bool, b float64, bok bool) string {
	if !aok || !bok || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// side names one end of a two-process pair.
func side(s string) string {
	switch s {
	case "c":
		return "C"
	case "go":
		return "golibtls"
	case "gotls":
		return "crypto/tls"
	}
	return s
}

func pairSides(pair string) (srv, cli string) {
	srv, cli, _ = strings.Cut(pair, "-")
	return srv, cli
}

// pairLabel: "golibtls srv · C cli".
func pairLabel(pair string) string {
	s, c := pairSides(pair)
	return side(s) + " srv · " + side(c) + " cli"
}

// display is how a raw unit shows in the tables: its label and scale.
type display struct {
	label string
	scale float64
}

var displays = map[string]display{
	"cpu-ns/op":     {"cpu-µs/op", 1e-3},
	"srv-cpu-ns/op": {"srv-cpu-µs/op", 1e-3},
	"cli-cpu-ns/op": {"cli-cpu-µs/op", 1e-3},
}

func show(unit string) display {
	if d, ok := displays[unit]; ok {
		return d
	}
	return display{unit, 1}
}

func isBulk(name string) bool { return strings.HasPrefix(name, "Bulk/") }

// rowUnits lists the units of a scenario's rows, in order: the rates, then
// CPU (per byte for bulk), allocations and memory.
func rowUnits(name string, proc bool) []string {
	if proc {
		if isBulk(name) {
			return []string{"MB/s", "cpu-ns/B", "srv-cpu-ns/B", "cli-cpu-ns/B"}
		}
		return []string{"handshakes/s", "resumed/op", "cpu-ns/op", "srv-cpu-ns/op", "cli-cpu-ns/op"}
	}
	if strings.HasPrefix(name, "Scaling/idle/") {
		return []string{"threads", "RSS-B/conn", "heap-B/conn", "stack-B/conn",
			"client-threads", "client-RSS-B/conn", "client-heap-B/conn"}
	}
	cpu := "cpu-ns/op"
	if isBulk(name) {
		cpu = "cpu-ns/B"
	}
	return []string{"handshakes/s", "conns/s", "MB/s", "resumed/op", cpu, "allocs/op"}
}

// noRatio: units whose ratio means nothing.
func noRatio(unit string) bool {
	return unit == "resumed/op" || unit == "allocs/op" || strings.HasSuffix(unit, "threads")
}

// --- tables --------------------------------------------------------------------

func (r *run) scenarios(groups ...string) []string {
	var out []string
	for _, g := range groups {
		for _, n := range r.names[g] {
			if !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

func (r *run) inProcessTable(w io.Writer) {
	names := r.scenarios("golibtls", "c", "gotls")
	if len(names) == 0 {
		return
	}
	fmt.Fprintf(w, "| %-38s | %-18s | %10s | %10s | %10s | %10s | %11s |\n", "scenario", "metric", "C", "golibtls", "crypto/tls", "golibtls/C", "golibtls/go")
	fmt.Fprintf(w, "|%s|%s|%s|%s|%s|%s|%s|\n", strings.Repeat("-", 40), strings.Repeat("-", 20), "-----------:", "-----------:", "-----------:", "-----------:", "------------:")
	for _, n := range names {
		for _, u := range rowUnits(n, false) {
			if u == "resumed/op" && !strings.Contains(n, "resumed") {
				continue // always 0
			}
			c, cok := r.med("c", n, u)
			g, gok := r.med("golibtls", n, u)
			t, tok := r.med("gotls", n, u)
			if !cok && !gok && !tok {
				continue
			}
			d := show(u)
			rc, rt := ratioCell(g, gok, c, cok), ratioCell(g, gok, t, tok)
			if noRatio(u) {
				rc, rt = "-", "-"
			}
			fmt.Fprintf(w, "| %-38s | %-18s | %10s | %10s | %10s | %10s | %11s |\n", n, d.label,
				cell(c*d.scale, cok), cell(g*d.scale, gok), cell(t*d.scale, tok), rc, rt)
		}
	}
}

func (r *run) procTable(w io.Writer) {
	if len(r.pairs) == 0 {
		return
	}
	var groups []string
	for _, p := range r.pairs {
		groups = append(groups, "proc:"+p)
	}
	names := r.scenarios(groups...)
	hdr := fmt.Sprintf("| %-38s | %-16s |", "scenario", "metric")
	sep := "|" + strings.Repeat("-", 40) + "|" + strings.Repeat("-", 18) + "|"
	for _, p := range r.pairs {
		hdr += fmt.Sprintf(" %s |", pairLabel(p))
		sep += strings.Repeat("-", len(pairLabel(p))+1) + ":|"
		if p != "c-c" {
			hdr += " ÷ C·C |"
			sep += "------:|"
		}
	}
	fmt.Fprintln(w, hdr)
	fmt.Fprintln(w, sep)
	for _, n := range names {
		for _, u := range rowUnits(n, true) {
			if u == "resumed/op" && !strings.Contains(n, "resumed") {
				continue
			}
			ref, refok := r.med("proc:c-c", n, u)
			d := show(u)
			line := fmt.Sprintf("| %-38s | %-16s |", n, d.label)
			seen := false
			for _, p := range r.pairs {
				v, ok := r.med("proc:"+p, n, u)
				seen = seen || ok
				line += fmt.Sprintf(" %*s |", len(pairLabel(p)), cell(v*d.scale, ok))
				if p != "c-c" {
					rc := ratioCell(v, ok, ref, refok)
					if noRatio(u) {
						rc = "-"
					}
					line += fmt.Sprintf(" %5s |", rc)
				}
			}
			if seen {
				fmt.Fprintln(w, line)
			}
		}
	}
}

// speedup is resumed ÷ full TLS 1.2 handshakes/s of a group, and the
// resumed/op of its resumed run.
func (r *run) speedup(group string) (s, resumed float64, ok bool) {
	full, fok := r.med(group, "Handshake/full/tls12", "handshakes/s")
	res, rok := r.med(group, "Handshake/resumed/tls12", "handshakes/s")
	resumed, _ = r.med(group, "Handshake/resumed/tls12", "resumed/op")
	if !fok || !rok || full == 0 {
		return 0, 0, false
	}
	return res / full, resumed, true
}

func (r *run) speedupTable(w io.Writer) {
	type row struct{ setup, group, ref string }
	rows := []row{{"one process: C", "c", ""}, {"one process: golibtls", "golibtls", "c"}, {"one process: crypto/tls", "gotls", "c"}}
	for _, p := range r.pairs {
		ref := "proc:c-c"
		if p == "c-c" {
			ref = ""
		}
		rows = append(rows, row{"two processes: " + pairLabel(p), "proc:" + p, ref})
	}
	fmt.Fprintln(w, "| setup | resumed ÷ full | resumed/op | ÷ C's (same setup) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, x := range rows {
		s, res, ok := r.speedup(x.group)
		if !ok {
			continue
		}
		ratio := "-"
		if x.ref != "" {
			if cs, _, cok := r.speedup(x.ref); cok && cs > 0 {
				ratio = fmt.Sprintf("%.2f", s/cs)
			}
		}
		fmt.Fprintf(w, "| %s | %.2f× | %s | %s |\n", x.setup, s, num(res), ratio)
	}
}

// --- targets ---------------------------------------------------------------------

// check is one target on one scenario and setup.
type check struct {
	target  string // what is promised
	scen    string
	setup   string // "one process" or a pair label
	setupID string // "in" or the pair, for the chart
	numbers string // the medians behind it
	value   string // the figure compared with the bound
	bound   string
	result  string // PASS, MISS or n/a
	note    string

	// for the chart; chart == "" leaves it out
	chart  string
	ratio  float64
	limit  float64 // the bound as a ratio; 0: none
	atMost bool
}

func (c *check) decide(pass bool) {
	if pass {
		c.result = "PASS"
	} else {
		c.result = "MISS"
	}
}

// golibtlsPairs are the two-process pairs with golibtls at one end or both.
func (r *run) golibtlsPairs() []string {
	var out []string
	for _, p := range r.pairs {
		s, c := pairSides(p)
		if s == "go" || c == "go" {
			out = append(out, p)
		}
	}
	return out
}

// ratioCheck compares unit of scen between golibtls and C in one process
// (setup "in") or between a pair and C·C.
func (r *run) ratioCheck(target, chart, scen, setupID, unit, refUnit string, limit float64, atMost bool) check {
	g, ref, setup := "golibtls", "c", "one process"
	gName, cName := "golibtls", "C"
	if setupID != "in" {
		g, ref, setup = "proc:"+setupID, "proc:c-c", pairLabel(setupID)
		gName, cName = pairLabel(setupID), "C·C"
	}
	c := check{target: target, scen: scen, setup: setup, setupID: setupID, chart: chart, limit: limit, atMost: atMost}
	if limit > 0 {
		op := "≥"
		if atMost {
			op = "≤"
		}
		c.bound = fmt.Sprintf("%s %.2f", op, limit)
	}
	gv, gok := r.med(g, scen, unit)
	cv, cok := r.med(ref, scen, refUnit)
	d := show(unit)
	c.numbers = fmt.Sprintf("%s %s, %s %s %s", gName, cell(gv*d.scale, gok), cName, cell(cv*show(refUnit).scale, cok), d.label)
	if !gok || !cok || cv == 0 {
		c.value, c.result, c.note = "-", "MISS", "no data"
		c.chart = ""
		return c
	}
	c.ratio = gv / cv
	c.value = fmt.Sprintf("%.2f", c.ratio)
	if limit == 0 {
		c.result = "info"
	} else if atMost {
		c.decide(c.ratio <= limit)
	} else {
		c.decide(c.ratio >= limit)
	}
	return c
}

func pretty(scen string) string {
	s := strings.NewReplacer("Handshake/", "handshake ", "Scaling/handshakes/clients=", "handshakes, clients=",
		"Bulk/", "bulk ", "/tls12", " TLS 1.2", "/tls13", " TLS 1.3", "KiB", " KiB").Replace(scen)
	return s
}

func (r *run) checks() []check {
	var out []check
	setups := append([]string{"in"}, r.golibtlsPairs()...)

	// Handshakes.
	for _, h := range []struct {
		scen  string
		limit float64
	}{
		{"Handshake/full/tls12", 0.97}, {"Handshake/resumed/tls12", 0.97},
		{"Scaling/handshakes/clients=1", 0.97}, {"Scaling/handshakes/clients=8", 0.97},
		{"Handshake/full/tls13", 0.93}, {"Handshake/resumed/tls13", 0.93},
	} {
		target := fmt.Sprintf("handshakes/s ≥ %.2f× C", h.limit)
		for _, s := range setups {
			out = append(out, r.ratioCheck(target, pretty(h.scen)+": handshakes/s", h.scen, s, "handshakes/s", "handshakes/s", h.limit, false))
		}
	}

	// Bulk.
	for _, scen := range []string{"Bulk/16KiB", "Bulk/1KiB"} {
		for _, s := range setups {
			srv, cli := pairSides(s)
			switch {
			case s == "in":
				out = append(out, r.ratioCheck("bulk MB/s ≥ 0.80× C, both ends in Go in one process", pretty(scen)+": MB/s", scen, s, "MB/s", "MB/s", 0.80, false))
			case srv == "c" || cli == "c":
				out = append(out, r.ratioCheck("bulk MB/s ≥ 0.90× C, one end in C", pretty(scen)+": MB/s", scen, s, "MB/s", "MB/s", 0.90, false))
			}
		}
		for _, s := range setups {
			srv, cli := pairSides(s)
			unit := "cpu-ns/B"
			switch {
			case s == "in":
			case srv == "go" && cli == "c":
				unit = "srv-cpu-ns/B" // the golibtls process against C's in the same role
			case srv == "c" && cli == "go":
				unit = "cli-cpu-ns/B"
			}
			c := r.ratioCheck("bulk CPU per byte ≤ 1.15× C's", pretty(scen)+": CPU/byte", scen, s, unit, unit, 1.15, true)
			if unit != "cpu-ns/B" {
				c.note = "the golibtls process against the C one in the same role"
			}
			out = append(out, c)
		}
	}

	// Resumed/full speed-up, TLS 1.2.
	for _, s := range setups {
		g, ref, setup := "golibtls", "c", "one process"
		if s != "in" {
			g, ref, setup = "proc:"+s, "proc:c-c", pairLabel(s)
		}
		c := check{target: "resumed/full TLS 1.2 speed-up ≥ 0.95× C's (LibreSSL)", scen: "Handshake/{resumed,full}/tls12",
			setup: setup, setupID: s, bound: "≥ 0.95", chart: "resumed ÷ full TLS 1.2", limit: 0.95}
		gs, gres, gok := r.speedup(g)
		cs, cres, cok := r.speedup(ref)
		switch {
		case !gok || !cok || cs == 0:
			c.value, c.result, c.note, c.chart = "-", "MISS", "no data", ""
		case cres < 0.5:
			c.numbers = fmt.Sprintf("golibtls %.2f×, C %.2f× (C resumed/op %s)", gs, cs, num(cres))
			c.value, c.result = fmt.Sprintf("%.2f", gs/cs), "n/a"
			c.note = "the C server does not resume on this backend"
		default:
			c.ratio = gs / cs
			c.numbers = fmt.Sprintf("golibtls %.2f× (resumed/op %s), C %.2f× (%s)", gs, num(gres), cs, num(cres))
			c.value = fmt.Sprintf("%.2f", c.ratio)
			c.decide(c.ratio >= 0.95)
		}
		out = append(out, c)
	}

	// Idle connections.
	var idle []string
	for _, n := range r.scenarios("golibtls", "c", "gotls") {
		if strings.HasPrefix(n, "Scaling/idle/conns=") {
			idle = append(idle, n)
		}
	}
	for _, n := range idle {
		g, gok := r.med("golibtls", n, "RSS-B/conn")
		cv, cok := r.med("c", n, "RSS-B/conn")
		t, tok := r.med("gotls", n, "RSS-B/conn")
		c := check{target: "idle server RSS/conn ≤ C's + 6 KiB", scen: n, setup: "one process each", setupID: "in",
			numbers: fmt.Sprintf("golibtls %s B, C %s B", cell(g, gok), cell(cv, cok)), bound: "≤ C + 6144 B",
			chart: "idle server RSS/conn (" + strings.TrimPrefix(n, "Scaling/idle/") + ")", atMost: true}
		if gok && cok {
			c.value = fmt.Sprintf("%+.0f B", g-cv)
			c.decide(g <= cv+6144)
			if cv > 0 {
				c.ratio, c.limit = g/cv, (cv+6144)/cv
			}
		} else {
			c.value, c.result, c.note, c.chart = "-", "MISS", "no data", ""
		}
		out = append(out, c)
		c = check{target: "idle server RSS/conn < crypto/tls's", scen: n, setup: "one process each", setupID: "in",
			numbers: fmt.Sprintf("golibtls %s B, crypto/tls %s B", cell(g, gok), cell(t, tok)), bound: "< 1.00"}
		if gok && tok && t > 0 {
			c.value = fmt.Sprintf("%.2f", g/t)
			c.decide(g < t)
		} else {
			c.value, c.result, c.note = "-", "MISS", "no data"
		}
		out = append(out, c)
	}
	const tenK = "Scaling/idle/conns=10000"
	th, ok := r.med("golibtls", tenK, "threads")
	c := check{target: "10,000 idle connections on < 64 OS threads", scen: tenK, setup: "server process", setupID: "in", bound: "< 64"}
	if ok {
		c.value = num(th)
		ct, _ := r.med("c", tenK, "threads")
		tt, _ := r.med("gotls", tenK, "threads")
		c.numbers = fmt.Sprintf("golibtls %s threads (C %s, crypto/tls %s)", num(th), num(ct), num(tt))
		c.decide(th < 64)
	} else {
		c.value, c.result, c.note = "-", "MISS", "not measured (GOLIBTLS_BENCH_IDLE without 10000?)"
	}
	out = append(out, c)

	// Allocations.
	for _, n := range []string{"ReadWrite/16KiB", "ReadWrite/1KiB"} {
		c := check{target: "steady-state Read/Write: 0 allocs/op", scen: n, setup: "one process", setupID: "in", bound: "= 0"}
		if a, ok := r.med("golibtls", n, "allocs/op"); ok {
			c.value = num(a)
			c.numbers = fmt.Sprintf("golibtls %s allocs/op", num(a))
			c.decide(a == 0)
		} else {
			c.value, c.result, c.note = "-", "MISS", "no data"
		}
		out = append(out, c)
	}
	return out
}

// cpuInfo are the chart's rows of CPU per handshake (no target): golibtls
// against C, and in two processes the golibtls process against the C one
// in the same role.
func (r *run) cpuInfo() []check {
	var out []check
	setups := append([]string{"in"}, r.golibtlsPairs()...)
	for _, scen := range []string{"Handshake/full/tls12", "Handshake/resumed/tls12", "Handshake/full/tls13"} {
		for _, s := range setups {
			srv, cli := pairSides(s)
			unit := "cpu-ns/op"
			switch {
			case srv == "go" && cli == "c":
				unit = "srv-cpu-ns/op"
			case srv == "c" && cli == "go":
				unit = "cli-cpu-ns/op"
			}
			c := r.ratioCheck("", pretty(scen)+": CPU per handshake", scen, s, unit, unit, 0, true)
			if c.chart != "" {
				out = append(out, c)
			}
		}
	}
	return out
}

func (r *run) targetsTable(w io.Writer, checks []check) {
	fmt.Fprintln(w, "| result | target | scenario | setup | value | bound | numbers |")
	fmt.Fprintln(w, "|---|---|---|---|---:|---|---|")
	n := map[string]int{}
	for _, c := range checks {
		n[c.result]++
		numbers := c.numbers
		if c.note != "" {
			if numbers != "" {
				numbers += "; "
			}
			numbers += c.note
		}
		res := c.result
		if res == "MISS" {
			res = "**MISS**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", res, c.target, c.scen, c.setup, c.value, c.bound, numbers)
	}
	fmt.Fprintf(w, "\n%d PASS, %d MISS, %d n/a\n", n["PASS"], n["MISS"], n["n/a"])
}

func (r *run) report(w io.Writer) {
	for _, l := range r.meta {
		fmt.Fprintln(w, l)
	}
	if len(r.meta) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "#### Both ends in one process")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians over the rounds (idle: one run). Ratios are golibtls ÷ the other: above 1 favours golibtls for rates, below 1 for CPU and memory.")
	fmt.Fprintln(w)
	r.inProcessTable(w)
	if len(r.pairs) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "#### Two processes (server · client)")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "cpu is both processes together, srv-cpu and cli-cpu each; ÷ C·C is the ratio to the pair with C at both ends.")
		fmt.Fprintln(w)
		r.procTable(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "#### Resumed ÷ full, TLS 1.2 handshakes/s")
	fmt.Fprintln(w)
	r.speedupTable(w)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "#### Targets (issue 11)")
	fmt.Fprintln(w)
	r.targetsTable(w, r.checks())
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("report: ")
	svg := flag.String("svg", "", "write a chart of golibtls ÷ C against the targets to this file")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: report [-svg chart.svg] DIR [DIR...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var runs []*run
	for i, dir := range flag.Args() {
		r, err := load(dir)
		if err != nil {
			log.Fatal(err)
		}
		if flag.NArg() > 1 {
			if i > 0 {
				fmt.Println()
			}
			fmt.Printf("### %s\n\n", r.title())
		}
		r.report(os.Stdout)
		runs = append(runs, r)
	}
	if *svg != "" {
		if err := os.WriteFile(*svg, chart(runs), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}
