// Package gotls runs golibtls's benchmark scenarios with Go's crypto/tls on
// both ends, under the same names and with the same knobs as the root
// package's bench_test.go (see BENCHMARKS.md), as the pure-Go reference for
// scripts/bench.
package gotls

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

	"github.com/golibtls/libtls/internal/testcert"
)

const serverName = "localhost"

type pkiFiles struct {
	caPEM []byte
	cert  tls.Certificate
	pool  *x509.CertPool
}

var (
	pkiOnce sync.Once
	pkiVal  *pkiFiles
	pkiErr  error
)

// loadPKI reads GOLIBTLS_BENCH_CERTS/{ca,cert,key}.pem, or makes a
// throwaway ECDSA P-256 PKI.
func loadPKI(b testing.TB) *pkiFiles {
	b.Helper()
	pkiOnce.Do(func() {
		p := &pkiFiles{}
		var certPEM, keyPEM []byte
		if dir := os.Getenv("GOLIBTLS_BENCH_CERTS"); dir != "" {
			for _, f := range []struct {
				name string
				dst  *[]byte
			}{{"ca.pem", &p.caPEM}, {"cert.pem", &certPEM}, {"key.pem", &keyPEM}} {
				if *f.dst, pkiErr = os.ReadFile(filepath.Join(dir, f.name)); pkiErr != nil {
					return
				}
			}
		} else {
			ca, err := testcert.NewCA("golibtls bench CA")
			if err != nil {
				pkiErr = err
				return
			}
			leaf, err := ca.Issue(serverName, "127.0.0.1")
			if err != nil {
				pkiErr = err
				return
			}
			p.caPEM, certPEM, keyPEM = ca.CertPEM, leaf.CertPEM, leaf.KeyPEM
		}
		if p.cert, pkiErr = tls.X509KeyPair(certPEM, keyPEM); pkiErr != nil {
			return
		}
		p.pool = x509.NewCertPool()
		if !p.pool.AppendCertsFromPEM(p.caPEM) {
			pkiErr = errors.New("no CA certificate in ca.pem")
			return
		}
		pkiVal = p
	})
	if pkiErr != nil {
		b.Fatal(pkiErr)
	}
	return pkiVal
}

func check(b testing.TB, err error) {
	b.Helper()
	if err != nil {
		b.Fatal(err)
	}
}

// version 0 means crypto/tls's defaults (TLS 1.2 and 1.3, so 1.3).
func serverConfig(b testing.TB, version uint16, tickets bool) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{loadPKI(b).cert},
		MinVersion:             version,
		MaxVersion:             version,
		SessionTicketsDisabled: !tickets,
	}
}

func clientConfig(b testing.TB, version uint16, resume bool) *tls.Config {
	cfg := &tls.Config{RootCAs: loadPKI(b).pool, ServerName: serverName, MinVersion: version, MaxVersion: version}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return cfg
}

var protocols = []struct {
	name    string
	version uint16
}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}}

// Sockets as in the C harness: TCP_NODELAY (Go's default), no keep-alive.
var (
	listenConfig = net.ListenConfig{KeepAlive: -1}
	dialer       = net.Dialer{KeepAlive: -1}
)

func listen(b testing.TB) (net.Listener, string) {
	l, err := listenConfig.Listen(context.Background(), "tcp", "127.0.0.1:0")
	check(b, err)
	return l, l.Addr().String()
}

func envList(b testing.TB, name, def string) []int {
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

func bulkTotal(b testing.TB) int64 {
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

// --- handshakes ---------------------------------------------------------------

func serveOne(nc net.Conn, cfg *tls.Config) (bool, error) {
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

// serve accepts until l is closed; wait closes it and returns the first
// error.
func serve(l net.Listener, cfg *tls.Config, concurrent bool) (wait func() error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	handle := func(nc net.Conn) {
		if _, err := serveOne(nc, cfg); err != nil {
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
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
	return func() error {
		l.Close()
		<-done
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return first
	}
}

func clientOnce(addr string, cfg *tls.Config) (bool, error) {
	nc, err := dialer.Dial("tcp", addr)
	if err != nil {
		return false, err
	}
	c := tls.Client(nc, cfg)
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
	return c.ConnectionState().DidResume, nil
}

// BenchmarkHandshake: as in the root package. crypto/tls resumes TLS 1.3
// sessions too (PSK), which libtls does not.
func BenchmarkHandshake(b *testing.B) {
	for _, kind := range []string{"full", "resumed"} {
		for _, p := range protocols {
			b.Run(kind+"/"+p.name, func(b *testing.B) {
				resume := kind == "resumed"
				l, addr := listen(b)
				wait := serve(l, serverConfig(b, p.version, resume), false)
				defer wait()
				ccfg := clientConfig(b, p.version, resume)
				if _, err := clientOnce(addr, ccfg); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				resumed := 0
				for range b.N {
					r, err := clientOnce(addr, ccfg)
					if err != nil {
						b.Fatal(err)
					}
					if r {
						resumed++
					}
				}
				b.StopTimer()
				check(b, wait())
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
				b.ReportMetric(float64(resumed)/float64(b.N), "resumed/op")
			})
		}
	}
}

// BenchmarkPlainTCP: connect, one byte each way, close, without TLS.
func BenchmarkPlainTCP(b *testing.B) {
	l, addr := listen(b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			var one [1]byte
			if _, err := io.ReadFull(nc, one[:]); err == nil {
				nc.Write(one[:])
			}
			nc.Close()
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		nc, err := dialer.Dial("tcp", addr)
		check(b, err)
		var one [1]byte
		_, err = nc.Write(one[:])
		check(b, err)
		_, err = io.ReadFull(nc, one[:])
		check(b, err)
		nc.Close()
	}
	b.StopTimer()
	l.Close()
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

// --- bulk -----------------------------------------------------------------------

func pair(b testing.TB) (client, server *tls.Conn) {
	b.Helper()
	l, addr := listen(b)
	defer l.Close()
	type res struct {
		c   *tls.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			ch <- res{nil, err}
			return
		}
		c := tls.Server(nc, serverConfig(b, 0, false))
		ch <- res{c, c.Handshake()}
	}()
	nc, err := dialer.Dial("tcp", addr)
	check(b, err)
	client = tls.Client(nc, clientConfig(b, 0, false))
	b.Cleanup(func() { client.Close() })
	check(b, client.Handshake())
	r := <-ch
	if r.c != nil {
		b.Cleanup(func() { r.c.Close() })
	}
	check(b, r.err)
	return client, r.c
}

func BenchmarkBulk(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16KiB", 16 << 10}, {"1KiB", 1 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			total := bulkTotal(b)
			client, server := pair(b)
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
				check(b, <-errc)
			}
		})
	}
}

func BenchmarkReadWrite(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16KiB", 16 << 10}, {"1KiB", 1 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			client, server := pair(b)
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
			for range 16 {
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

type snapshot struct {
	threads          int
	rss, heap, stack int64
}

func snap() snapshot {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := snapshot{heap: int64(ms.HeapInuse), stack: int64(ms.StackInuse)}
	data, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			s.threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			s.rss = kb << 10
		}
	}
	return s
}

const (
	idleClientEnv = "GOLIBTLS_BENCH_IDLE_CLIENT"
	idleCAEnv     = "GOLIBTLS_BENCH_IDLE_CA"
	idleLine      = "gotls-idle-client"
)

func BenchmarkScaling(b *testing.B) {
	if os.Getenv(idleClientEnv) != "" {
		idleClient(b)
		return
	}
	for _, k := range envList(b, "GOLIBTLS_BENCH_CLIENTS", "1,2,8,64") {
		b.Run(fmt.Sprintf("handshakes/clients=%d", k), func(b *testing.B) {
			l, addr := listen(b)
			wait := serve(l, serverConfig(b, 0, false), true)
			defer wait()
			ccfg := clientConfig(b, 0, false)
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
						if _, err := clientOnce(addr, ccfg); err != nil {
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
			check(b, wait())
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
		})
	}
	for _, n := range envList(b, "GOLIBTLS_BENCH_IDLE", "1000") {
		b.Run(fmt.Sprintf("idle/conns=%d", n), func(b *testing.B) { idle(b, n) })
	}
}

func idle(b *testing.B, n int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(n)+64 {
		b.Skipf("RLIMIT_NOFILE %d is too low for %d connections", lim.Cur, n)
	}
	l, addr := listen(b)
	defer l.Close()
	scfg := serverConfig(b, 0, false)
	before := snap()
	var (
		mu    sync.Mutex
		conns []*tls.Conn
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
			c := tls.Server(nc, scfg)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				err := c.Handshake()
				ready <- err
				if err == nil {
					var one [1]byte
					c.Read(one[:])
				}
			}()
		}
	}()
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^BenchmarkScaling$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", idleClientEnv, addr, n),
		idleCAEnv+"="+string(loadPKI(b).caPEM))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	check(b, err)
	stdout, err := cmd.StdoutPipe()
	check(b, err)
	check(b, cmd.Start())
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	b.ResetTimer()
	for range n {
		check(b, <-ready)
	}
	var client snapshot
	sc := bufio.NewScanner(stdout)
	found := false
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), idleLine+" threads=%d heap=%d stack=%d rss=%d",
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
	after := snap()
	per := func(v int64) float64 { return float64(v) / float64(n) }
	b.ReportMetric(float64(after.threads), "threads")
	b.ReportMetric(per(after.heap-before.heap), "heap-B/conn")
	b.ReportMetric(per(after.stack-before.stack), "stack-B/conn")
	b.ReportMetric(per(after.rss-before.rss), "RSS-B/conn")
	b.ReportMetric(float64(client.threads), "client-threads")
	b.ReportMetric(per(client.heap), "client-heap-B/conn")
	b.ReportMetric(per(client.rss), "client-RSS-B/conn")
}

func idleClient(b *testing.B) {
	spec := strings.Split(os.Getenv(idleClientEnv), ",")
	if len(spec) != 2 {
		b.Fatalf("%s: want addr,n", idleClientEnv)
	}
	n, err := strconv.Atoi(spec[1])
	check(b, err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(os.Getenv(idleCAEnv)))
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	before := snap()
	conns := make([]*tls.Conn, 0, n)
	for range n {
		nc, err := dialer.Dial("tcp", spec[0])
		check(b, err)
		c := tls.Client(nc, cfg)
		check(b, c.Handshake())
		conns = append(conns, c)
		go func() {
			var one [1]byte
			c.Read(one[:])
		}()
	}
	after := snap()
	fmt.Printf("%s threads=%d heap=%d stack=%d rss=%d\n", idleLine, after.threads,
		after.heap-before.heap, after.stack-before.stack, after.rss-before.rss)
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(conns)
	os.Exit(0)
}
