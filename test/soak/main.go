// Command soak runs mixed churn against one golibtls server process for a
// while and judges whether it stays healthy: full and resumed handshakes
// (golibtls clients with session files and with a SessionCache, crypto/tls
// clients), garbage peers, peers that vanish or reset mid-handshake, idle
// peers, a ticket key file rewritten every second, all at once. It prints a
// table of handshakes/s, resumption, failures by kind, and the server's and
// its own descriptors, goroutines, Go heap and RSS every sample interval,
// then a summary and a verdict; it exits 1 when the verdict fails.
//
//	scripts/soak                                  # system libtls, 3 minutes
//	LIBTLS_PREFIX=/opt/libressl scripts/soak -duration 10m
//
// The server is this program re-executed (GOLIBTLS_SOAK_SERVER set): a
// libtls.Listen server on 127.0.0.1 with TLS 1.2 and 1.3, a session
// lifetime, and a TicketKeyFollower on the key file the parent rotates. It
// reports samples as JSON lines on stdout and exits when its stdin reaches
// EOF, so it never outlives the parent. See RELIABILITY.md for the verdict
// rules and recorded runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration  time.Duration
	interval  time.Duration
	warmup    time.Duration
	lifetime  time.Duration
	rotate    time.Duration
	poll      time.Duration
	hsTimeout time.Duration
	ioTimeout time.Duration
	seed      uint64
	inject    []string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	var inject string
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&o.duration, "duration", 3*time.Minute, "how long the load runs")
	fs.DurationVar(&o.interval, "interval", 0, "sample interval (default: duration/60, from 1s to 10s)")
	fs.DurationVar(&o.warmup, "warmup", 0, "warm-up excluded from the flatness checks (default: 20% of duration)")
	fs.DurationVar(&o.lifetime, "lifetime", time.Minute, "the server's session lifetime")
	fs.DurationVar(&o.rotate, "rotate", time.Second, "ticket key rotation interval")
	fs.DurationVar(&o.hsTimeout, "handshake-timeout", 3*time.Second, "the server's handshake deadline")
	fs.Uint64Var(&o.seed, "seed", 0, "seed of the load's random choices (0: random)")
	fs.StringVar(&inject, "inject", "", "self-test only: comma-separated leaks for the server (leak-fd, leak-mem)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: soak [flags]\n\nRuns mixed TLS churn against one golibtls server process and judges\nwhether its descriptors and memory stay flat. Flags:\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if o.duration <= 0 {
		return o, fmt.Errorf("-duration must be positive")
	}
	if o.interval <= 0 {
		o.interval = min(max(o.duration/60, time.Second), 10*time.Second)
	}
	if o.warmup <= 0 {
		o.warmup = o.duration / 5
	}
	if o.warmup >= o.duration {
		return o, fmt.Errorf("-warmup %v leaves no steady state in -duration %v", o.warmup, o.duration)
	}
	if o.rotate <= 0 || o.hsTimeout <= 0 {
		return o, fmt.Errorf("-rotate and -handshake-timeout must be positive")
	}
	o.poll = min(100*time.Millisecond, o.rotate/4)
	o.ioTimeout = 10 * time.Second
	for _, s := range strings.Split(inject, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if s != "leak-fd" && s != "leak-mem" {
			return o, fmt.Errorf("-inject: unknown %q", s)
		}
		o.inject = append(o.inject, s)
	}
	return o, nil
}

func main() {
	if os.Getenv(envServer) != "" {
		os.Exit(serverMain())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: 0 when the verdict passes, 1 when it fails or the
// soak could not run, 2 for bad flags.
func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "soak:", err)
		}
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := soak(ctx, o, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "soak:", err)
		return 1
	}
	if !passed(res.checks) {
		return 1
	}
	return 0
}

// fmtElapsed prints seconds as m:ss.
func fmtElapsed(s float64) string {
	d := time.Duration(s * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// fmtKinds prints a count map as "a=1 b=2", sorted by key.
func fmtKinds(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if v != 0 {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return "none"
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}

// delta returns cur-prev per key.
func delta(cur, prev map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range cur {
		if v > prev[k] {
			d[k] = v - prev[k]
		}
	}
	return d
}
