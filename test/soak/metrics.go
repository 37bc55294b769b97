package main

import (
	"bytes"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
)

// procStats is one sample of a process's resources.
type procStats struct {
	FDs        int    `json:"fds"`        // entries of /proc/self/fd
	Goroutines int    `json:"goroutines"` // runtime.NumGoroutine
	Threads    int    `json:"threads"`    // Threads: of /proc/self/status
	HeapLive   uint64 `json:"heap_live"`  // Go heap marked live by the last GC (/gc/heap/live:bytes)
	HeapAlloc  uint64 `json:"heap_alloc"` // Go heap objects, live and not yet swept (= MemStats.HeapAlloc)
	RSS        uint64 `json:"rss"`        // resident set size, /proc/self/statm
}

var metricNames = []string{"/gc/heap/live:bytes", "/memory/classes/heap/objects:bytes"}

// readProcStats samples the calling process. It never stops the world
// (runtime/metrics, not ReadMemStats) and reads /proc only.
func readProcStats() procStats {
	s := procStats{Goroutines: runtime.NumGoroutine(), FDs: -1, Threads: -1}
	ms := make([]metrics.Sample, len(metricNames))
	for i, n := range metricNames {
		ms[i].Name = n
	}
	metrics.Read(ms)
	if ms[0].Value.Kind() == metrics.KindUint64 {
		s.HeapLive = ms[0].Value.Uint64()
	}
	if ms[1].Value.Kind() == metrics.KindUint64 {
		s.HeapAlloc = ms[1].Value.Uint64()
	}
	// ReadDir's own descriptor is open while it reads: every sample counts
	// it, so the counts compare.
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		s.FDs = len(ents)
	}
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := bytes.Fields(b); len(f) > 1 {
			if pages, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
				s.RSS = pages * uint64(os.Getpagesize())
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range bytes.Split(b, []byte("\n")) {
			if v, ok := bytes.CutPrefix(line, []byte("Threads:")); ok {
				if n, err := strconv.Atoi(string(bytes.TrimSpace(v))); err == nil {
					s.Threads = n
				}
			}
		}
	}
	return s
}
