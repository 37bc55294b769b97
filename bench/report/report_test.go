package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func findCheck(t *testing.T, checks []check, target, scen, setupID string) check {
	t.Helper()
	for _, c := range checks {
		if strings.HasPrefix(c.target, target) && c.scen == scen && c.setupID == setupID {
			return c
		}
	}
	t.Fatalf("no check %q %s %s", target, scen, setupID)
	return check{}
}

func TestReport(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"meta.txt": "backend:  LibreSSL 4.3.2 (server resumption: true)\nrun:      3 rounds\n",
		"c.txt": `goos: linux
BenchmarkHandshake/full/tls12-2	 100	 2000000 ns/op	 500 handshakes/s	 0 resumed/op	 1.9e+06 cpu-ns/op	 4e+05 sys-ns/op
BenchmarkHandshake/full/tls12-2	 100	 2000000 ns/op	 520 handshakes/s	 0 resumed/op	 1.9e+06 cpu-ns/op	 4e+05 sys-ns/op
BenchmarkHandshake/full/tls12-2	 100	 2000000 ns/op	 480 handshakes/s	 0 resumed/op	 1.9e+06 cpu-ns/op	 4e+05 sys-ns/op
BenchmarkHandshake/resumed/tls12-2	 100	 300000 ns/op	 3000 handshakes/s	 1 resumed/op	 3e+05 cpu-ns/op	 1e+05 sys-ns/op
BenchmarkBulk/16KiB-2	 2	 700000000 ns/op	 1400 MB/s	 1.2 cpu-ns/B	 0.4 sys-ns/B
BenchmarkScaling/idle/conns=10000-2	 1	 1 ns/op	 1 threads	 8000 RSS-B/conn	 1 client-threads	 24000 client-RSS-B/conn
`,
		"golibtls.txt": `BenchmarkHandshake/full/tls12-2	 100	 2000000 ns/op	 490 handshakes/s	 0 resumed/op	 2.1e+06 cpu-ns/op	 5e+05 sys-ns/op	 3000 B/op	 40 allocs/op
BenchmarkHandshake/resumed/tls12-2	 100	 300000 ns/op	 2700 handshakes/s	 1 resumed/op	 3.3e+05 cpu-ns/op	 1e+05 sys-ns/op
BenchmarkBulk/16KiB-2	 2	 700000000 ns/op	 1000 MB/s	 1.5 cpu-ns/B	 0.5 sys-ns/B	 3 allocs/op
BenchmarkReadWrite/16KiB-2	 1000	 20000 ns/op	 1500 MB/s	 20000 cpu-ns/op	 0 B/op	 0 allocs/op
BenchmarkScaling/idle/conns=10000-2	 1	 1 ns/op	 7 threads	 13000 RSS-B/conn	 7 client-threads	 40000 client-RSS-B/conn
`,
		"gotls.txt": `BenchmarkScaling/idle/conns=10000-2	 1	 1 ns/op	 7 threads	 20000 RSS-B/conn
`,
		"proc.c-c.txt": `BenchmarkBulk/16KiB-2	 2	 1 ns/op	 1000 MB/s	 1.4 cpu-ns/B	 0.7 srv-cpu-ns/B	 0.7 cli-cpu-ns/B
`,
		"proc.go-c.txt": `BenchmarkBulk/16KiB-2	 2	 1 ns/op	 950 MB/s	 1.5 cpu-ns/B	 0.8 srv-cpu-ns/B	 0.7 cli-cpu-ns/B
`,
	})
	r, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := r.med("c", "Handshake/full/tls12", "handshakes/s"); !ok || v != 500 {
		t.Errorf("median handshakes/s = %v, %v; want 500", v, ok)
	}
	if r.title() != "LibreSSL 4.3.2" {
		t.Errorf("title %q", r.title())
	}
	checks := r.checks()
	for _, tc := range []struct {
		target, scen, setup, result string
	}{
		{"handshakes/s ≥ 0.97", "Handshake/full/tls12", "in", "PASS"},        // 490/500
		{"handshakes/s ≥ 0.97", "Handshake/resumed/tls12", "in", "MISS"},     // 0.9
		{"handshakes/s ≥ 0.97", "Handshake/resumed/tls12", "go-c", "MISS"},   // no data
		{"bulk MB/s ≥ 0.80", "Bulk/16KiB", "in", "MISS"},                     // 1000/1400 = 0.71
		{"bulk MB/s ≥ 0.90", "Bulk/16KiB", "go-c", "PASS"},                   // 0.95
		{"bulk CPU per byte", "Bulk/16KiB", "in", "MISS"},                    // 1.25
		{"bulk CPU per byte", "Bulk/16KiB", "go-c", "PASS"},                  // srv 0.8/0.7 = 1.14
		{"resumed/full", "Handshake/{resumed,full}/tls12", "in", "MISS"},     // 5.51/6 = 0.92
		{"idle server RSS/conn ≤", "Scaling/idle/conns=10000", "in", "PASS"}, // +5000
		{"idle server RSS/conn <", "Scaling/idle/conns=10000", "in", "PASS"}, // 13000 < 20000
		{"10,000 idle", "Scaling/idle/conns=10000", "in", "PASS"},            // 7
		{"steady-state", "ReadWrite/16KiB", "in", "PASS"},                    // 0
		{"steady-state", "ReadWrite/1KiB", "in", "MISS"},                     // no data
	} {
		c := findCheck(t, checks, tc.target, tc.scen, tc.setup)
		if c.result != tc.result {
			t.Errorf("%s %s %s: %s (%s; %s), want %s", tc.target, tc.scen, tc.setup, c.result, c.value, c.numbers, tc.result)
		}
	}
	var sb strings.Builder
	r.report(&sb)
	for _, want := range []string{"| Handshake/full/tls12", "cpu-µs/op", "golibtls srv · C cli", "| PASS |", "**MISS**"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	svg := string(chart([]*run{r}))
	if !strings.HasPrefix(svg, "<svg") || !strings.Contains(svg, "LibreSSL 4.3.2") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Errorf("chart: %.200s", svg)
	}
}

func TestSpeedupNotApplicable(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"c.txt": `BenchmarkHandshake/full/tls12-2	 1	 1 ns/op	 800 handshakes/s
BenchmarkHandshake/resumed/tls12-2	 1	 1 ns/op	 700 handshakes/s	 0 resumed/op
`,
		"golibtls.txt": `BenchmarkHandshake/full/tls12-2	 1	 1 ns/op	 600 handshakes/s
BenchmarkHandshake/resumed/tls12-2	 1	 1 ns/op	 590 handshakes/s	 0 resumed/op
`,
	})
	r, err := load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c := findCheck(t, r.checks(), "resumed/full", "Handshake/{resumed,full}/tls12", "in"); c.result != "n/a" {
		t.Errorf("speed-up on a backend whose server does not resume: %s, want n/a", c.result)
	}
}
