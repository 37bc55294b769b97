package main

import (
	"fmt"
	"slices"
)

// The verdict's definition of "flat", applied to the samples taken after the
// warm-up and before the load stops (the steady state):
//
//   - a count (descriptors, goroutines) is flat when no steady-state sample
//     exceeds the largest warm-up sample by more than a slack that covers
//     the connections the load can hold open at once;
//   - a size (RSS, Go heap) is flat when the median of the last quarter of
//     the steady-state samples is at most the median of its first quarter
//     times (1 + growthRel) plus growthAbs. Medians of quarters ignore
//     single spikes (a GC cycle, a burst of connections) and compare the
//     start of the steady state with its end; a leak shows as a last
//     quarter above the first.
//
// After the load stops and every connection is closed (drained), the counts
// must be back at their value before the load (the baseline), within a
// small slack: a descriptor or goroutine per connection that is never
// released shows there exactly.
const (
	growthRel = 0.05
	growthAbs = 1 << 20 // 1 MiB
	// minSteadySamples is the fewest steady-state samples a size check
	// accepts (one per quarter).
	minSteadySamples = 4
)

// growth is the result of the size rule on one series.
type growth struct {
	N           int     // steady-state samples
	First, Last float64 // medians of the first and last quarter
	Limit       float64 // First*(1+growthRel)+growthAbs
	SlopePerMin float64 // least-squares slope, units per minute (reported, not judged)
	OK          bool
}

// sizeFlat applies the size rule to values sampled at times ts (seconds).
// With fewer than minSteadySamples samples it is not OK: a run too short to
// judge does not pass.
func sizeFlat(ts, vs []float64) growth {
	g := growth{N: len(vs)}
	if len(vs) < minSteadySamples || len(ts) != len(vs) {
		return g
	}
	q := len(vs) / 4
	g.First = median(vs[:q])
	g.Last = median(vs[len(vs)-q:])
	g.Limit = g.First*(1+growthRel) + growthAbs
	g.SlopePerMin = slope(ts, vs) * 60
	g.OK = g.Last <= g.Limit
	return g
}

// countFlat applies the count rule: every steady-state value at most
// max(warm-up values) + slack. It returns the steady-state maximum and the
// limit. With no warm-up or no steady-state sample it is not OK.
func countFlat(warm, steady []int, slack int) (maxSteady, limit int, ok bool) {
	if len(warm) == 0 || len(steady) == 0 {
		return 0, 0, false
	}
	limit = slices.Max(warm) + slack
	maxSteady = slices.Max(steady)
	return maxSteady, limit, maxSteady <= limit
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// slope is the least-squares slope of vs over ts (units per second).
func slope(ts, vs []float64) float64 {
	n := float64(len(ts))
	if n < 2 {
		return 0
	}
	var mt, mv float64
	for i := range ts {
		mt += ts[i]
		mv += vs[i]
	}
	mt /= n
	mv /= n
	var num, den float64
	for i := range ts {
		num += (ts[i] - mt) * (vs[i] - mv)
		den += (ts[i] - mt) * (ts[i] - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// check is one line of the verdict.
type check struct {
	Name   string
	OK     bool
	Info   bool // reported only; does not fail the run
	Detail string
}

func (c check) String() string {
	mark := "PASS"
	switch {
	case c.Info && c.OK:
		mark = "info"
	case c.Info:
		mark = "INFO"
	case !c.OK:
		mark = "FAIL"
	}
	return fmt.Sprintf("%-4s  %-34s %s", mark, c.Name, c.Detail)
}

// passed reports whether no non-informational check failed.
func passed(cs []check) bool {
	for _, c := range cs {
		if !c.OK && !c.Info {
			return false
		}
	}
	return true
}

// mib formats a byte count in MiB.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
