// Package benchenv holds the parts of the benchmark harnesses (the root
// package's bench_test.go and bench/gotls) that do not depend on the TLS
// implementation under test: the GOLIBTLS_BENCH_* knobs, loopback sockets,
// the accept loop, process snapshots and the idle-connection child process.
// It must not import the root package, so that bench/gotls stays pure Go.
package benchenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Check fails tb if err is not nil.
func Check(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// --- knobs ---------------------------------------------------------------------

// EnvList parses the environment variable name (def if unset) as a
// comma-separated list of positive counts; "none" is the empty list.
func EnvList(tb testing.TB, name, def string) []int {
	s := os.Getenv(name)
	if s == "" {
		s = def
	}
	out, err := ParseList(s)
	if err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return out
}

// ParseList parses a comma-separated list of positive counts; "none" is the
// empty list.
func ParseList(s string) ([]int, error) {
	var out []int
	if s == "none" {
		return out, nil
	}
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// BulkTotal is GOLIBTLS_BENCH_BULK in bytes (default 1 GiB); it takes the
// suffixes KiB, MiB and GiB.
func BulkTotal(tb testing.TB) int64 {
	s := strings.TrimSpace(os.Getenv("GOLIBTLS_BENCH_BULK"))
	if s == "" {
		return 1 << 30
	}
	n, err := ParseSize(s)
	if err != nil {
		tb.Fatalf("GOLIBTLS_BENCH_BULK: %v", err)
	}
	return n
}

// ParseSize parses a positive byte count with an optional suffix KiB, MiB
// or GiB.
func ParseSize(s string) (int64, error) {
	orig := s
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q", orig)
	}
	return n * mult, nil
}

// PKI is the benchmark PKI: PEM files and their crypto/tls forms.
type PKI struct {
	CAPEM, CertPEM, KeyPEM []byte
	Cert                   tls.Certificate // CertPEM and KeyPEM
	Pool                   *x509.CertPool  // CAPEM
}

// LoadPKI reads GOLIBTLS_BENCH_CERTS/{ca,cert,key}.pem if that is set, or
// else takes the PEM that gen makes.
func LoadPKI(gen func() (caPEM, certPEM, keyPEM []byte, err error)) (*PKI, error) {
	p := &PKI{}
	if dir := os.Getenv("GOLIBTLS_BENCH_CERTS"); dir != "" {
		for _, f := range []struct {
			name string
			dst  *[]byte
		}{{"ca.pem", &p.CAPEM}, {"cert.pem", &p.CertPEM}, {"key.pem", &p.KeyPEM}} {
			var err error
			if *f.dst, err = os.ReadFile(filepath.Join(dir, f.name)); err != nil {
				return nil, err
			}
		}
	} else {
		var err error
		if p.CAPEM, p.CertPEM, p.KeyPEM, err = gen(); err != nil {
			return nil, err
		}
	}
	var err error
	if p.Cert, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		return nil, err
	}
	p.Pool = x509.NewCertPool()
	if !p.Pool.AppendCertsFromPEM(p.CAPEM) {
		return nil, errors.New("no CA certificate in ca.pem")
	}
	return p, nil
}

// --- CPU time --------------------------------------------------------------------

// CPU is the CPU time this process has used so far, all threads together,
// from getrusage(RUSAGE_SELF): user and system.
type CPU struct{ User, Sys time.Duration }

// CPUNow returns the process's CPU time.
func CPUNow() CPU {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return CPU{}
	}
	return CPU{User: time.Duration(ru.Utime.Nano()), Sys: time.Duration(ru.Stime.Nano())}
}

// Sub returns c - d.
func (c CPU) Sub(d CPU) CPU { return CPU{User: c.User - d.User, Sys: c.Sys - d.Sys} }

// Total is user + system time.
func (c CPU) Total() time.Duration { return c.User + c.Sys }

// ReportCPU reports the CPU time the process used since start, per op:
// cpu-ns/op (user+sys) and sys-ns/op, and with bytesPerOp > 0 also per byte
// of payload (cpu-ns/B, sys-ns/B). Call it right after b.StopTimer, with
// start taken right after b.ResetTimer; ops is b.N.
func ReportCPU(b *testing.B, start CPU, bytesPerOp int64) {
	used := CPUNow().Sub(start)
	ops := float64(max(b.N, 1))
	b.ReportMetric(float64(used.Total())/ops, "cpu-ns/op")
	b.ReportMetric(float64(used.Sys)/ops, "sys-ns/op")
	if bytesPerOp > 0 {
		bytes := ops * float64(bytesPerOp)
		b.ReportMetric(float64(used.Total())/bytes, "cpu-ns/B")
		b.ReportMetric(float64(used.Sys)/bytes, "sys-ns/B")
	}
}

// --- sockets ---------------------------------------------------------------------

// The benchmark sockets are set up like the C harness's: TCP_NODELAY (Go's
// default) and no TCP keep-alive (which Go would otherwise switch on with
// four more setsockopt calls per connection).
var (
	listenConfig = net.ListenConfig{KeepAlive: -1}
	dialer       = net.Dialer{KeepAlive: -1}
)

// Listen opens a loopback TCP listener and returns it with its address.
func Listen(tb testing.TB) (net.Listener, string) {
	tb.Helper()
	l, err := ListenLoopback()
	Check(tb, err)
	return l, l.Addr().String()
}

// ListenLoopback opens a TCP listener on a free loopback port, without
// keep-alive on the accepted connections.
func ListenLoopback() (net.Listener, error) {
	return listenConfig.Listen(context.Background(), "tcp", "127.0.0.1:0")
}

// Dial connects to addr over TCP, without keep-alive.
func Dial(addr string) (net.Conn, error) { return dialer.Dial("tcp", addr) }

// --- handshakes ------------------------------------------------------------------

// Peer runs the server side of one handshake scenario on an accepted
// connection: handshake, read one byte, write it back, close.
type Peer func(nc net.Conn) (resumed bool, err error)

// GoPeer is the crypto/tls server Peer.
func GoPeer(cfg *tls.Config) Peer {
	return func(nc net.Conn) (bool, error) {
		c := tls.Server(nc, cfg)
		defer c.Close()
		var one [1]byte
		if err := c.Handshake(); err != nil {
			return false, err
		}
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return false, err
		}
		if _, err := c.Write(one[:]); err != nil {
			return false, err
		}
		return c.ConnectionState().DidResume, nil
	}
}

// Serve accepts on l until it is closed, one connection at a time or each
// in its own goroutine. wait closes l and returns the number of resumed
// server handshakes and the first error.
func Serve(l net.Listener, peer Peer, concurrent bool) (wait func() (int64, error)) {
	var (
		resumed atomic.Int64
		wg      sync.WaitGroup
		errMu   sync.Mutex
		first   error
	)
	handle := func(nc net.Conn) {
		r, err := peer(nc)
		if r {
			resumed.Add(1)
		}
		if err != nil {
			errMu.Lock()
			if first == nil {
				first = err
			}
			errMu.Unlock()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			if concurrent {
				wg.Add(1)
				go func() { defer wg.Done(); handle(nc) }()
			} else {
				handle(nc)
			}
		}
	}()
	return func() (int64, error) {
		l.Close()
		<-done
		wg.Wait()
		errMu.Lock()
		defer errMu.Unlock()
		return resumed.Load(), first
	}
}

// Handshakes runs once (a client handshake, reporting whether it resumed)
// once untimed and then b.N times, checks wait, and reports handshakes/s,
// resumed/op and the CPU time per handshake (ReportCPU: both ends, as they
// share the process).
func Handshakes(b *testing.B, once func() (bool, error), wait func() (int64, error)) {
	if _, err := once(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := CPUNow()
	resumed := 0
	for range b.N {
		r, err := once()
		if err != nil {
			b.Fatal(err)
		}
		if r {
			resumed++
		}
	}
	b.StopTimer()
	ReportCPU(b, cpu, 0)
	if _, err := wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
}

// ConcurrentHandshakes runs once b.N times in all from k goroutines, checks
// wait, and reports handshakes/s and the CPU time per handshake.
func ConcurrentHandshakes(b *testing.B, k int, once func() (bool, error), wait func() (int64, error)) {
	WorkerHandshakes(b, k, func(int) func() (bool, error) { return once }, wait)
}

// WorkerHandshakes is ConcurrentHandshakes with a handshake function per
// goroutine (worker 0 to k-1), made before the timer starts; it also
// reports resumed/op.
func WorkerHandshakes(b *testing.B, k int, worker func(w int) func() (bool, error), wait func() (int64, error)) {
	onces := make([]func() (bool, error), k)
	for w := range onces {
		onces[w] = worker(w)
	}
	var next, resumed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, k)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := CPUNow()
	for _, once := range onces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				r, err := once()
				if err != nil {
					errc <- err
					return
				}
				if r {
					resumed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	ReportCPU(b, cpu, 0)
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
	if _, err := wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(resumed.Load())/float64(b.N), "resumed/op")
}

// --- scaling ---------------------------------------------------------------------

// Mem is a snapshot of the process: OS threads and resident memory (from
// /proc/self/status), Go heap and goroutine stacks in use, in bytes.
type Mem struct {
	Threads          int
	RSS, Heap, Stack int64
}

// Snapshot collects garbage twice and then takes a Mem.
func Snapshot() Mem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := Mem{Heap: int64(ms.HeapInuse), Stack: int64(ms.StackInuse)}
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return m
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			m.Threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			m.RSS = kb << 10
		}
	}
	return m
}

// SkipUnlessFiles skips tb if RLIMIT_NOFILE is too low for n connections.
func SkipUnlessFiles(tb testing.TB, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+64 {
		tb.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
}

const (
	idleClientEnv = "GOLIBTLS_BENCH_IDLE_CLIENT" // "addr,n": be the client side
	idleCAEnv     = "GOLIBTLS_BENCH_IDLE_CA"     // the CA, in PEM
)

// IsIdleClient reports whether this process is the child that
// StartIdleClient started.
func IsIdleClient() bool { return os.Getenv(idleClientEnv) != "" }

// IdleChild is the child process of an idle/conns=N benchmark.
type IdleChild struct {
	line   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
}

// StartIdleClient runs this test binary again as BenchmarkScaling's idle
// client: it is to connect n times to addr trusting caPEM and report on a
// line that starts with line.
func StartIdleClient(tb testing.TB, line, addr string, n int, caPEM []byte) *IdleChild {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScaling$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("%s=%s,%d", idleClientEnv, addr, n),
		idleCAEnv+"="+string(caPEM))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	Check(tb, err)
	stdout, err := cmd.StdoutPipe()
	Check(tb, err)
	Check(tb, cmd.Start())
	return &IdleChild{line: line, cmd: cmd, stdin: stdin, stdout: stdout}
}

// Report waits for the child's report (the growth of its Mem while it
// connected) and then drains the rest of its output.
func (c *IdleChild) Report(tb testing.TB) Mem {
	var m Mem
	sc := bufio.NewScanner(c.stdout)
	found := false
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), c.line+" threads=%d heap=%d stack=%d rss=%d",
			&m.Threads, &m.Heap, &m.Stack, &m.RSS); err == nil {
			found = true
			break
		}
	}
	if !found {
		tb.Fatal("the client process did not report")
	}
	go io.Copy(io.Discard, c.stdout)
	return m
}

// Stop closes the child's stdin, which ends it, and waits for it.
func (c *IdleChild) Stop() {
	c.stdin.Close()
	c.cmd.Wait()
}

// ReportIdle reports the metrics of idle/conns=n: this process's threads
// and growth per connection from before to after, and the child's.
func ReportIdle(b *testing.B, n int, before, after, client Mem) {
	per := func(v int64) float64 { return float64(v) / float64(n) }
	b.ReportMetric(float64(after.Threads), "threads")
	b.ReportMetric(per(after.Heap-before.Heap), "heap-B/conn")
	b.ReportMetric(per(after.Stack-before.Stack), "stack-B/conn")
	b.ReportMetric(per(after.RSS-before.RSS), "RSS-B/conn")
	b.ReportMetric(float64(client.Threads), "client-threads")
	b.ReportMetric(per(client.Heap), "client-heap-B/conn")
	b.ReportMetric(per(client.RSS), "client-RSS-B/conn")
}

// IdleClientArgs is, in the idle client, the address to connect to, the
// number of connections and the CA in PEM.
func IdleClientArgs(tb testing.TB) (addr string, n int, caPEM []byte) {
	spec := strings.Split(os.Getenv(idleClientEnv), ",")
	if len(spec) != 2 {
		tb.Fatalf("%s: want addr,n", idleClientEnv)
	}
	n, err := strconv.Atoi(spec[1])
	Check(tb, err)
	return spec[0], n, []byte(os.Getenv(idleCAEnv))
}

// IdleClientDone ends the idle client: it prints the report line, waits
// for stdin to close while keeping conns alive, and exits.
func IdleClientDone(line string, before, after Mem, conns any) {
	fmt.Printf("%s threads=%d heap=%d stack=%d rss=%d\n", line, after.Threads,
		after.Heap-before.Heap, after.Stack-before.Stack, after.RSS-before.RSS)
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns)
	os.Exit(0)
}
