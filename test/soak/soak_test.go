package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
)

func TestMain(m *testing.M) {
	// The soak re-executes its own binary as the server: here, the test
	// binary.
	if os.Getenv(envServer) != "" {
		os.Exit(serverMain())
	}
	os.Exit(m.Run())
}

// series makes n samples a second apart: base + perSample*i, with a
// deterministic ±noise.
func series(n int, base, perSample, noise float64) (ts, vs []float64) {
	for i := range n {
		ts = append(ts, float64(i))
		vs = append(vs, base+perSample*float64(i)+noise*math.Sin(float64(i)*1.7))
	}
	return ts, vs
}

func TestSizeFlat(t *testing.T) {
	const mb = 1 << 20
	// Flat with noise, and with a single spike in the last quarter.
	ts, vs := series(48, 30*mb, 0, 0.5*mb)
	g := sizeFlat(ts, vs)
	assert.True(t, g.OK, "flat noisy series: %+v", g)
	vs[45] = 90 * mb
	assert.True(t, sizeFlat(ts, vs).OK, "one spike is not growth")
	// Growing 40 KiB a sample: 1.9 MiB in 48 samples, under 1 MiB + 5%
	// between the quarters' medians — too slow to call a leak here.
	ts, vs = series(48, 30*mb, 40<<10, 0)
	assert.True(t, sizeFlat(ts, vs).OK)
	// Growing 100 KiB a sample (~6 MiB/min at one sample a second).
	ts, vs = series(48, 30*mb, 100<<10, 0.5*mb)
	g = sizeFlat(ts, vs)
	assert.False(t, g.OK, "growing series: %+v", g)
	assert.InDelta(t, 100<<10*60, g.SlopePerMin, 10<<10*60)
	// Growth that stops halfway is still growth between start and end.
	ts, vs = series(48, 30*mb, 0, 0)
	for i := 24; i < 48; i++ {
		vs[i] += 4 * mb
	}
	assert.False(t, sizeFlat(ts, vs).OK, "a step up")
	// A decrease is flat.
	ts, vs = series(48, 60*mb, -200<<10, 0)
	assert.True(t, sizeFlat(ts, vs).OK)
	// Too few samples to judge: not OK.
	ts, vs = series(3, 30*mb, 0, 0)
	assert.False(t, sizeFlat(ts, vs).OK)
}

func TestCountFlat(t *testing.T) {
	m, limit, ok := countFlat([]int{10, 18, 15}, []int{12, 20, 17, 19}, 4)
	assert.True(t, ok)
	assert.Equal(t, 20, m)
	assert.Equal(t, 22, limit)
	_, _, ok = countFlat([]int{10, 18, 15}, []int{12, 20, 23, 19}, 4)
	assert.False(t, ok, "one sample above the limit")
	_, _, ok = countFlat(nil, []int{1}, 4)
	assert.False(t, ok, "no warm-up")
	_, _, ok = countFlat([]int{1}, nil, 4)
	assert.False(t, ok, "no steady state")
}

func TestResumptionProblems(t *testing.T) {
	libressl := libtls.BackendInfo{Name: "LibreSSL", ServerSessionResumption: true, ClientSessionResumption: true}
	libretls := libtls.BackendInfo{Name: "LibreTLS", ClientSessionResumption: true}
	tally := func(resumed map[string]uint64) map[string]kindStats {
		m := map[string]kindStats{}
		for _, k := range legitKinds {
			m[k.name] = kindStats{OK: 100, Resumed: resumed[k.name]}
		}
		return m
	}
	good := tally(map[string]uint64{kSessFile12: 99, kGo12: 99, kCache12: 60})
	_, problems := resumptionProblems(good, libressl)
	assert.Empty(t, problems, "LibreSSL resumes TLS 1.2")
	_, problems = resumptionProblems(good, libretls)
	assert.Len(t, problems, 3, "LibreTLS servers never resume: %v", problems)

	none := tally(nil)
	_, problems = resumptionProblems(none, libretls)
	assert.Empty(t, problems)
	_, problems = resumptionProblems(none, libressl)
	assert.Len(t, problems, 3, "LibreSSL must resume: %v", problems)

	rare := tally(map[string]uint64{kSessFile12: 50, kGo12: 99, kCache12: 60})
	_, problems = resumptionProblems(rare, libressl)
	assert.Len(t, problems, 1, "half is not most: %v", problems)

	tls13 := tally(map[string]uint64{kSessFile12: 99, kGo12: 99, kCache12: 60, kGo13: 1})
	_, problems = resumptionProblems(tls13, libressl)
	assert.Len(t, problems, 1, "TLS 1.3 never resumes: %v", problems)

	few := tally(map[string]uint64{kSessFile12: 5, kGo12: 99, kCache12: 60})
	s := few[kSessFile12]
	s.OK = 5
	few[kSessFile12] = s
	_, problems = resumptionProblems(few, libressl)
	assert.Len(t, problems, 1, "too few to judge: %v", problems)
}

func TestParseFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"-duration", "10m"}, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Second, o.interval)
	assert.Equal(t, 2*time.Minute, o.warmup)
	o, err = parseFlags(nil, &stderr)
	require.NoError(t, err)
	assert.Equal(t, 3*time.Minute, o.duration)
	assert.Equal(t, 3*time.Second, o.interval)
	for _, bad := range [][]string{{"-duration", "0"}, {"-warmup", "5m", "-duration", "1m"}, {"-inject", "nope"}, {"extra"}} {
		_, err := parseFlags(bad, &stderr)
		assert.Error(t, err, "%q", bad)
	}
	assert.Equal(t, 2, run([]string{"-duration", "-1s"}, &stderr, &stderr))
}

func checkNamed(t *testing.T, cs []check, name string) check {
	t.Helper()
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no check %q", name)
	return check{}
}

// short is a soak of a few seconds: long enough for every kind of client
// and peer, a few key rotations and enough samples to judge.
var shortArgs = []string{"-duration", "5s", "-interval", "200ms", "-warmup", "1s", "-handshake-timeout", "1s", "-rotate", "500ms"}

// TestSoak runs the program end to end for a few seconds: every check must
// pass but RSS flatness. A few seconds are all warm-up for RSS (the C
// library's malloc arenas, and under -race the detector's shadow memory,
// grow for tens of seconds), so the RSS checks are judged only by real runs
// (scripts/soak, RELIABILITY.md); TestSoakDetectsLeaks shows that they fail
// on a leak.
func TestSoak(t *testing.T) {
	o, err := parseFlags(shortArgs, os.Stderr)
	require.NoError(t, err)
	var out bytes.Buffer
	res, err := soak(context.Background(), o, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	judged := 0
	for _, c := range res.checks {
		if strings.HasSuffix(c.Name, " RSS flat") {
			t.Logf("not judged in a short run: %v", c)
			continue
		}
		judged++
		assert.True(t, c.OK, "%v", c)
	}
	assert.Greater(t, judged, 15)
	assert.GreaterOrEqual(t, len(res.rows), 15, "samples")
	for _, name := range kindNames() {
		assert.Positive(t, res.tally[name].OK, name)
	}
}

// TestSoakDetectsLeaks makes the server leak a descriptor and 256 KiB per
// handshake: the verdict must fail on exactly those checks.
func TestSoakDetectsLeaks(t *testing.T) {
	o, err := parseFlags(append(shortArgs, "-duration", "3s", "-inject", "leak-fd,leak-mem"), os.Stderr)
	require.NoError(t, err)
	var out bytes.Buffer
	res, err := soak(context.Background(), o, &out)
	t.Log("\n" + out.String())
	require.NoError(t, err)
	assert.False(t, passed(res.checks))
	assert.Contains(t, out.String(), "soak: FAIL")
	for _, name := range []string{"server fds flat", "server fds drained", "server RSS flat", "server Go heap flat"} {
		assert.False(t, checkNamed(t, res.checks, name).OK, name)
	}
	for _, name := range []string{"legit clients never failed", "handshakes accounted for", "client fds drained"} {
		assert.True(t, checkNamed(t, res.checks, name).OK, name)
	}
	assert.True(t, strings.Contains(out.String(), "SELF-TEST"))
}
