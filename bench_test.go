package libtls

// Benchmarks of golibtls against itself over loopback TCP, with client and
// server in one process (see BENCHMARKS.md; scripts/bench runs them next to
// the C harness in bench/c and the crypto/tls one in bench/gotls, which do
// the same scenarios under the same names).
//
// Knobs, all environment variables so that scripts/bench can hand the same
// ones to all three harnesses:
//
//	GOLIBTLS_BENCH_CERTS    directory with ca.pem, cert.pem, key.pem (ECDSA
//	                        P-256, for "localhost"); default: a throwaway
//	                        P-256 PKI from internal/testcert
//	GOLIBTLS_BENCH_BULK     bytes per BenchmarkBulk op, e.g. 1GiB (default),
//	                        256MiB, 1048576
//	GOLIBTLS_BENCH_CLIENTS  concurrent clients of BenchmarkScaling/handshakes
//	                        (default 1,2,8,64)
//	GOLIBTLS_BENCH_IDLE     idle connection counts of BenchmarkScaling/idle
//	                        (default 1000; 1000,10000 for the full run;
//	                        none for no idle run)

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

const benchServerName = "localhost"

// --- certificates and configs -------------------------------------------------

type benchPKIFiles struct {
	caPEM, certPEM, keyPEM []byte
	goCert                 tls.Certificate
	pool                   *x509.CertPool
}

var (
	benchPKIOnce sync.Once
	benchPKIVal  *benchPKIFiles
	benchPKIErr  error
)

func benchPKI(b testing.TB) *benchPKIFiles {
	b.Helper()
	benchPKIOnce.Do(func() {
		p := &benchPKIFiles{}
		if dir := os.Getenv("GOLIBTLS_BENCH_CERTS"); dir != "" {
			for _, f := range []struct {
				name string
				dst  *[]byte
			}{{"ca.pem", &p.caPEM}, {"cert.pem", &p.certPEM}, {"key.pem", &p.keyPEM}} {
				if *f.dst, benchPKIErr = os.ReadFile(filepath.Join(dir, f.name)); benchPKIErr != nil {
					return
				}
			}
		} else {
			tp := testPKI(b)
			p.caPEM, p.certPEM, p.keyPEM = tp.CA.CertPEM, tp.Server.CertPEM, tp.Server.KeyPEM
		}
		if p.goCert, benchPKIErr = tls.X509KeyPair(p.certPEM, p.keyPEM); benchPKIErr != nil {
			return
		}
		p.pool = x509.NewCertPool()
		if !p.pool.AppendCertsFromPEM(p.caPEM) {
			benchPKIErr = errors.New("no CA certificate in ca.pem")
			return
		}
		benchPKIVal = p
	})
	if benchPKIErr != nil {
		b.Fatal(benchPKIErr)
	}
	return benchPKIVal
}

func benchCheck(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// benchServerConfig: the certificate, the protocols and, if lifetime > 0,
// session tickets.
func benchServerConfig(b testing.TB, proto Protocol, lifetime time.Duration) *Config {
	b.Helper()
	p := benchPKI(b)
	cfg, err := NewConfig()
	benchCheck(b, err)
	b.Cleanup(func() { cfg.Close() })
	benchCheck(b, cfg.SetKeypair(p.certPEM, p.keyPEM))
	benchCheck(b, cfg.SetProtocols(proto))
	if lifetime > 0 {
		benchCheck(b, cfg.SetSessionLifetime(lifetime))
	}
	return cfg
}

// benchClientConfig: the CA, the protocols and, with session, a fresh 0600
// session file.
func benchClientConfig(b testing.TB, proto Protocol, session bool) *Config {
	b.Helper()
	p := benchPKI(b)
	var f *os.File
	if session {
		var err error
		f, err = os.OpenFile(filepath.Join(b.TempDir(), "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		benchCheck(b, err)
		b.Cleanup(func() { f.Close() }) // runs after cfg.Close (LIFO)
	}
	cfg, err := NewConfig()
	benchCheck(b, err)
	b.Cleanup(func() { cfg.Close() })
	benchCheck(b, cfg.SetCA(p.caPEM))
	benchCheck(b, cfg.SetProtocols(proto))
	if f != nil {
		benchCheck(b, cfg.SetSessionFile(f))
	}
	return cfg
}

func benchGoServerConfig(b testing.TB, version uint16, tickets bool) *tls.Config {
	p := benchPKI(b)
	return &tls.Config{
		Certificates:           []tls.Certificate{p.goCert},
		MinVersion:             version,
		MaxVersion:             version,
		SessionTicketsDisabled: !tickets,
	}
}

var benchProtocols = []struct {
	name  string
	proto Protocol
	goVer uint16
}{
	{"tls12", ProtocolTLSv1_2, tls.VersionTLS12},
	{"tls13", ProtocolTLSv1_3, tls.VersionTLS13},
}

// The benchmark sockets are set up like the C harness's: TCP_NODELAY (Go's
// default) and no TCP keep-alive (which Go would otherwise switch on with
// four more setsockopt calls per connection).
var (
	benchListenConfig = net.ListenConfig{KeepAlive: -1}
	benchDialer       = net.Dialer{KeepAlive: -1}
)

func benchListen(b testing.TB) (net.Listener, string) {
	b.Helper()
	l, err := benchListenConfig.Listen(context.Background(), "tcp", "127.0.0.1:0")
	benchCheck(b, err)
	return l, l.Addr().String()
}

func benchDial(addr string) (net.Conn, error) { return benchDialer.Dial("tcp", addr) }

// benchEnvList parses a comma-separated list of counts.
func benchEnvList(b testing.TB, name, def string) []int {
	s := os.Getenv(name)
	if s == "" {
		s = def
	}
	var out []int
	if s == "none" {
		return out
	}
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("%s: bad count %q", name, f)
		}
		out = append(out, n)
	}
	return out
}

// benchBulkTotal is GOLIBTLS_BENCH_BULK in bytes (default 1 GiB).
func benchBulkTotal(b testing.TB) int64 {
	s := strings.TrimSpace(os.Getenv("GOLIBTLS_BENCH_BULK"))
	if s == "" {
		return 1 << 30
	}
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
		b.Fatalf("GOLIBTLS_BENCH_BULK: bad size %q", os.Getenv("GOLIBTLS_BENCH_BULK"))
	}
	return n * mult
}

// --- handshakes -------------------------------------------------------------

// benchPeer runs the server side of one handshake scenario on an accepted
// connection: handshake, read one byte, write it back, close.
type benchPeer func(nc net.Conn) (resumed bool, err error)

func benchLibtlsPeer(srv *Server) benchPeer {
	return func(nc net.Conn) (bool, error) {
		c, err := srv.Accept(nc)
		if err != nil {
			nc.Close()
			return false, err
		}
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
		return c.SessionResumed(), nil
	}
}

func benchGoPeer(cfg *tls.Config) benchPeer {
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

// benchServe accepts on l until it is closed, one connection at a time or
// each in its own goroutine. wait closes l and returns the number of
// resumed server handshakes and the first error.
func benchServe(l net.Listener, peer benchPeer, concurrent bool) (wait func() (int64, error)) {
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

// benchClientOnce is the client side of one handshake scenario: connect
// (Go sets TCP_NODELAY), handshake, write one byte, read it back, close.
func benchClientOnce(addr string, cfg *Config) (bool, error) {
	nc, err := benchDial(addr)
	if err != nil {
		return false, err
	}
	c, err := Client(nc, cfg, benchServerName)
	if err != nil {
		nc.Close()
		return false, err
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return false, err
	}
	var one [1]byte
	if _, err := c.Write(one[:]); err != nil {
		return false, err
	}
	if _, err := io.ReadFull(c, one[:]); err != nil {
		return false, err
	}
	return c.SessionResumed(), nil
}

// BenchmarkHandshake measures sequential handshakes (one op = connect,
// handshake, one byte each way, close on both sides). "resumed" gives the
// server session tickets and the client a session file; resumed/op is the
// fraction of handshakes that did resume (it is 0 where the backend does
// not resume: TLS 1.3 everywhere, and a LibreTLS server). The -goserver
// variants put a crypto/tls server opposite the golibtls client, which is
// how a LibreTLS client gets a resumed number at all.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range []string{"full", "resumed"} {
		for _, p := range benchProtocols {
			b.Run(kind+"/"+p.name, func(b *testing.B) {
				var lifetime time.Duration
				if kind == "resumed" {
					lifetime = time.Hour
				}
				srv, err := NewServer(benchServerConfig(b, p.proto, lifetime))
				benchCheck(b, err)
				defer srv.Close()
				benchHandshake(b, benchLibtlsPeer(srv), benchClientConfig(b, p.proto, kind == "resumed"))
			})
		}
	}
	for _, kind := range []string{"full-goserver", "resumed-goserver"} {
		p := benchProtocols[0] // TLS 1.3 resumes nowhere; TLS 1.2 says it all
		b.Run(kind+"/"+p.name, func(b *testing.B) {
			resume := kind == "resumed-goserver"
			peer := benchGoPeer(benchGoServerConfig(b, p.goVer, resume))
			benchHandshake(b, peer, benchClientConfig(b, p.proto, resume))
		})
	}
}

func benchHandshake(b *testing.B, peer benchPeer, ccfg *Config) {
	l, addr := benchListen(b)
	wait := benchServe(l, peer, false)
	defer wait()
	// One handshake first: it fills the session file, and warms up both.
	if _, err := benchClientOnce(addr, ccfg); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	resumed := 0
	for range b.N {
		r, err := benchClientOnce(addr, ccfg)
		if err != nil {
			b.Fatal(err)
		}
		if r {
			resumed++
		}
	}
	b.StopTimer()
	if _, err := wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
	b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
}

// BenchmarkPlainTCP is the handshake scenario without TLS: connect, one byte
// each way, close. It is the floor that Go's net package and scheduler set
// under every handshake number (the C harness has the same benchmark).
func BenchmarkPlainTCP(b *testing.B) {
	l, addr := benchListen(b)
	wait := benchServe(l, func(nc net.Conn) (bool, error) {
		defer nc.Close()
		var one [1]byte
		if _, err := io.ReadFull(nc, one[:]); err != nil {
			return false, err
		}
		_, err := nc.Write(one[:])
		return false, err
	}, false)
	defer wait()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		nc, err := benchDial(addr)
		if err != nil {
			b.Fatal(err)
		}
		var one [1]byte
		if _, err := nc.Write(one[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(nc, one[:]); err != nil {
			b.Fatal(err)
		}
		nc.Close()
	}
	b.StopTimer()
	if _, err := wait(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

// --- bulk transfer ------------------------------------------------------------

// benchPair is an established golibtls connection over loopback TCP.
func benchPair(b testing.TB, proto Protocol) (client, server *Conn) {
	b.Helper()
	srv, err := NewServer(benchServerConfig(b, proto, 0))
	benchCheck(b, err)
	b.Cleanup(func() { srv.Close() })
	l, addr := benchListen(b)
	defer l.Close()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		c, err := srv.Accept(nc)
		if err != nil {
			nc.Close()
			ch <- res{nil, err}
			return
		}
		ch <- res{c, c.Handshake()}
	}()
	nc, err := benchDial(addr)
	benchCheck(b, err)
	client, err = Client(nc, benchClientConfig(b, proto, false), benchServerName)
	benchCheck(b, err)
	b.Cleanup(func() { client.Close() })
	benchCheck(b, client.Handshake())
	r := <-ch
	if r.c != nil {
		b.Cleanup(func() { r.c.Close() })
	}
	benchCheck(b, r.err)
	return client, r.c
}

// BenchmarkBulk sends GOLIBTLS_BENCH_BULK bytes (1 GiB by default) per op
// from client to server in writes of 16 KiB or 1 KiB over one established
// connection (default protocols, so TLS 1.3); the server reads with a 16 KiB
// buffer. MB/s is the throughput.
func BenchmarkBulk(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16KiB", 16 << 10}, {"1KiB", 1 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			total := benchBulkTotal(b)
			client, server := benchPair(b, ProtocolsDefault)
			wbuf := make([]byte, sz.n)
			rbuf := make([]byte, 16<<10)
			b.SetBytes(total)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				errc := make(chan error, 1)
				go func() {
					var err error
					for sent := int64(0); sent < total && err == nil; {
						n := min(int64(len(wbuf)), total-sent)
						_, err = client.Write(wbuf[:n])
						sent += n
					}
					errc <- err
				}()
				for got := int64(0); got < total; {
					n, err := server.Read(rbuf)
					if err != nil {
						b.Fatal(err)
					}
					got += int64(n)
				}
				benchCheck(b, <-errc)
			}
		})
	}
}

// BenchmarkReadWrite checks that steady-state Read and Write allocate
// nothing: one op is a Write on each side and the matching reads, in one
// goroutine (the loopback socket buffers hold a record).
func BenchmarkReadWrite(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16KiB", 16 << 10}, {"1KiB", 1 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			client, server := benchPair(b, ProtocolsDefault)
			wbuf := make([]byte, sz.n)
			rbuf := make([]byte, sz.n)
			op := func() {
				if _, err := client.Write(wbuf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(server, rbuf); err != nil {
					b.Fatal(err)
				}
				if _, err := server.Write(rbuf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, wbuf); err != nil {
					b.Fatal(err)
				}
			}
			for range 16 { // past the post-handshake messages
				op()
			}
			b.SetBytes(2 * int64(sz.n))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				op()
			}
		})
	}
}

// --- scaling ------------------------------------------------------------------

// benchProc is what /proc/self/status says of threads and resident memory.
type benchProc struct {
	threads int
	rss     int64 // bytes
}

func benchReadProc() benchProc {
	var p benchProc
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return p
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			p.threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			p.rss = kb << 10
		}
	}
	return p
}

// benchMem is a settled snapshot of the process: threads, RSS, Go heap and
// goroutine stacks in use.
type benchMem struct {
	benchProc
	heap, stack int64
}

func benchSnapshot() benchMem {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return benchMem{benchProc: benchReadProc(), heap: int64(ms.HeapInuse), stack: int64(ms.StackInuse)}
}

const (
	benchIdleClientEnv = "GOLIBTLS_BENCH_IDLE_CLIENT" // "addr,n": be the client side
	benchIdleCAEnv     = "GOLIBTLS_BENCH_IDLE_CA"     // the CA, in PEM
	benchIdleLine      = "golibtls-idle-client"
)

// BenchmarkScaling: handshakes/clients=K runs full handshakes (default
// protocols, so TLS 1.3) from K concurrent clients against a server that
// serves each connection in its own goroutine. idle/conns=N establishes N
// connections whose both ends wait in Read, and reports OS threads and the
// memory per connection: the server ends live in this process, the client
// ends in a child process (this test binary again), so the per-connection
// numbers are those of one endpoint and N may exceed half the descriptor
// limit. threads and client-threads are the two processes' thread counts.
func BenchmarkScaling(b *testing.B) {
	if os.Getenv(benchIdleClientEnv) != "" {
		benchIdleClient(b)
		return
	}
	for _, k := range benchEnvList(b, "GOLIBTLS_BENCH_CLIENTS", "1,2,8,64") {
		b.Run(fmt.Sprintf("handshakes/clients=%d", k), func(b *testing.B) {
			srv, err := NewServer(benchServerConfig(b, ProtocolsDefault, 0))
			benchCheck(b, err)
			defer srv.Close()
			ccfg := benchClientConfig(b, ProtocolsDefault, false)
			l, addr := benchListen(b)
			wait := benchServe(l, benchLibtlsPeer(srv), true)
			defer wait()
			var next atomic.Int64
			var wg sync.WaitGroup
			errc := make(chan error, k)
			b.ReportAllocs()
			b.ResetTimer()
			for range k {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) {
						if _, err := benchClientOnce(addr, ccfg); err != nil {
							errc <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			select {
			case err := <-errc:
				b.Fatal(err)
			default:
			}
			if _, err := wait(); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
	for _, n := range benchEnvList(b, "GOLIBTLS_BENCH_IDLE", "1000") {
		b.Run(fmt.Sprintf("idle/conns=%d", n), func(b *testing.B) { benchIdle(b, n) })
	}
}

func benchIdle(b *testing.B, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+64 {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
	srv, err := NewServer(benchServerConfig(b, ProtocolsDefault, 0))
	benchCheck(b, err)
	defer srv.Close()
	l, addr := benchListen(b)
	defer l.Close()

	before := benchSnapshot()
	var (
		mu    sync.Mutex
		conns []*Conn
	)
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	ready := make(chan error, n)
	go func() {
		for range n {
			nc, err := l.Accept()
			if err != nil {
				ready <- err
				return
			}
			c, err := srv.Accept(nc)
			if err != nil {
				nc.Close()
				ready <- err
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				err := c.Handshake()
				ready <- err
				if err == nil {
					var one [1]byte
					c.Read(one[:]) // idle until the client goes away
				}
			}()
		}
	}()

	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScaling$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("%s=%s,%d", benchIdleClientEnv, addr, n),
		benchIdleCAEnv+"="+string(benchPKI(b).caPEM))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	benchCheck(b, err)
	stdout, err := cmd.StdoutPipe()
	benchCheck(b, err)
	benchCheck(b, cmd.Start())
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	b.ResetTimer()
	for range n {
		benchCheck(b, <-ready)
	}
	var client struct {
		threads          int
		heap, stack, rss int64
	}
	sc := bufio.NewScanner(stdout)
	found := false
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), benchIdleLine+" threads=%d heap=%d stack=%d rss=%d",
			&client.threads, &client.heap, &client.stack, &client.rss); err == nil {
			found = true
			break
		}
	}
	if !found {
		b.Fatal("the client process did not report")
	}
	go io.Copy(io.Discard, stdout)
	b.StopTimer()
	after := benchSnapshot()
	per := func(v int64) float64 { return float64(v) / float64(n) }
	b.ReportMetric(float64(after.threads), "threads")
	b.ReportMetric(per(after.heap-before.heap), "heap-B/conn")
	b.ReportMetric(per(after.stack-before.stack), "stack-B/conn")
	b.ReportMetric(per(after.rss-before.rss), "RSS-B/conn")
	b.ReportMetric(float64(client.threads), "client-threads")
	b.ReportMetric(per(client.heap), "client-heap-B/conn")
	b.ReportMetric(per(client.rss), "client-RSS-B/conn")
}

// benchIdleClient is the child process of benchIdle: it establishes the
// client ends, parks a Read on each, reports, and waits for its stdin to
// close.
func benchIdleClient(b *testing.B) {
	spec := strings.Split(os.Getenv(benchIdleClientEnv), ",")
	if len(spec) != 2 {
		b.Fatalf("%s: want addr,n", benchIdleClientEnv)
	}
	addr := spec[0]
	n, err := strconv.Atoi(spec[1])
	benchCheck(b, err)
	cfg, err := NewConfig()
	benchCheck(b, err)
	benchCheck(b, cfg.SetCA([]byte(os.Getenv(benchIdleCAEnv))))
	before := benchSnapshot()
	conns := make([]*Conn, 0, n)
	for range n {
		nc, err := benchDial(addr)
		benchCheck(b, err)
		c, err := Client(nc, cfg, benchServerName)
		benchCheck(b, err)
		benchCheck(b, c.Handshake())
		conns = append(conns, c)
		go func() {
			var one [1]byte
			c.Read(one[:])
		}()
	}
	after := benchSnapshot()
	fmt.Printf("%s threads=%d heap=%d stack=%d rss=%d\n", benchIdleLine, after.threads,
		after.heap-before.heap, after.stack-before.stack, after.rss-before.rss)
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns)
	os.Exit(0)
}
