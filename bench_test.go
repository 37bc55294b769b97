package libtls

// Benchmarks of golibtls against itself over loopback TCP, with client and
// server in one process (see BENCHMARKS.md; scripts/bench runs them next to
// the C harness in bench/c and the crypto/tls one in bench/gotls, which do
// the same scenarios under the same names).
//
// Every rate comes with the CPU time the process used per op, user + system
// from getrusage (cpu-ns/op and sys-ns/op; BenchmarkBulk also per byte of
// payload, cpu-ns/B and sys-ns/B): both ends together, as they share the
// process. The two-process scenarios (one end in C) are bench/peer's.
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
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/benchenv"
)

const benchServerName = "localhost"

// --- certificates and configs -------------------------------------------------

var (
	benchPKIOnce sync.Once
	benchPKIVal  *benchenv.PKI
	benchPKIErr  error
)

func benchPKI(b testing.TB) *benchenv.PKI {
	b.Helper()
	benchPKIOnce.Do(func() {
		benchPKIVal, benchPKIErr = benchenv.LoadPKI(func() (caPEM, certPEM, keyPEM []byte, err error) {
			tp := testPKI(b)
			return tp.CA.CertPEM, tp.Server.CertPEM, tp.Server.KeyPEM, nil
		})
	})
	if benchPKIErr != nil {
		b.Fatal(benchPKIErr)
	}
	return benchPKIVal
}

var benchCheck = benchenv.Check

// benchServerConfig: the certificate, the protocols and, if lifetime > 0,
// session tickets.
func benchServerConfig(b testing.TB, proto Protocol, lifetime time.Duration) *Config {
	b.Helper()
	p := benchPKI(b)
	cfg, err := NewConfig()
	benchCheck(b, err)
	b.Cleanup(func() { cfg.Close() })
	benchCheck(b, cfg.SetKeypair(p.CertPEM, p.KeyPEM))
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
	benchCheck(b, cfg.SetCA(p.CAPEM))
	benchCheck(b, cfg.SetProtocols(proto))
	if f != nil {
		benchCheck(b, cfg.SetSessionFile(f))
	}
	return cfg
}

func benchGoServerConfig(b testing.TB, version uint16, tickets bool) *tls.Config {
	p := benchPKI(b)
	return &tls.Config{
		Certificates:           []tls.Certificate{p.Cert},
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

// --- handshakes -------------------------------------------------------------

// benchPeer runs the server side of one handshake scenario on an accepted
// connection: handshake, read one byte, write it back, close.
type benchPeer = benchenv.Peer

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

// benchClientOnce is the client side of one handshake scenario: connect
// (Go sets TCP_NODELAY), handshake, write one byte, read it back, close.
func benchClientOnce(addr string, cfg *Config) (bool, error) {
	nc, err := benchenv.Dial(addr)
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
			peer := benchenv.GoPeer(benchGoServerConfig(b, p.goVer, resume))
			benchHandshake(b, peer, benchClientConfig(b, p.proto, resume))
		})
	}
}

func benchHandshake(b *testing.B, peer benchPeer, ccfg *Config) {
	l, addr := benchenv.Listen(b)
	wait := benchenv.Serve(l, peer, false)
	defer wait()
	// One handshake first: it fills the session file, and warms up both.
	benchenv.Handshakes(b, func() (bool, error) { return benchClientOnce(addr, ccfg) }, wait)
}

// BenchmarkPlainTCP is the handshake scenario without TLS: connect, one byte
// each way, close. It is the floor that Go's net package and scheduler set
// under every handshake number (the C harness has the same benchmark).
func BenchmarkPlainTCP(b *testing.B) {
	l, addr := benchenv.Listen(b)
	wait := benchenv.Serve(l, func(nc net.Conn) (bool, error) {
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
	cpu := benchenv.CPUNow()
	for range b.N {
		nc, err := benchenv.Dial(addr)
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
	benchenv.ReportCPU(b, cpu, 0)
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
	l, addr := benchenv.Listen(b)
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
	nc, err := benchenv.Dial(addr)
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
// buffer. MB/s is the throughput, cpu-ns/B the CPU time (both ends) per
// byte.
func BenchmarkBulk(b *testing.B) {
	for _, sz := range []struct {
		name string
		n    int
	}{{"16KiB", 16 << 10}, {"1KiB", 1 << 10}} {
		b.Run(sz.name, func(b *testing.B) {
			total := benchenv.BulkTotal(b)
			client, server := benchPair(b, ProtocolsDefault)
			wbuf := make([]byte, sz.n)
			rbuf := make([]byte, 16<<10)
			b.SetBytes(total)
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchenv.CPUNow()
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
			b.StopTimer()
			benchenv.ReportCPU(b, cpu, total)
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
			cpu := benchenv.CPUNow()
			for range b.N {
				op()
			}
			b.StopTimer()
			benchenv.ReportCPU(b, cpu, 0)
		})
	}
}

// --- scaling ------------------------------------------------------------------

const benchIdleLine = "golibtls-idle-client"

// BenchmarkScaling: handshakes/clients=K runs full handshakes (default
// protocols, so TLS 1.3) from K concurrent clients against a server that
// serves each connection in its own goroutine. idle/conns=N establishes N
// connections whose both ends wait in Read, and reports OS threads and the
// memory per connection: the server ends live in this process, the client
// ends in a child process (this test binary again), so the per-connection
// numbers are those of one endpoint and N may exceed half the descriptor
// limit. threads and client-threads are the two processes' thread counts.
func BenchmarkScaling(b *testing.B) {
	if benchenv.IsIdleClient() {
		benchIdleClient(b)
		return
	}
	for _, k := range benchenv.EnvList(b, "GOLIBTLS_BENCH_CLIENTS", "1,2,8,64") {
		b.Run(fmt.Sprintf("handshakes/clients=%d", k), func(b *testing.B) {
			srv, err := NewServer(benchServerConfig(b, ProtocolsDefault, 0))
			benchCheck(b, err)
			defer srv.Close()
			ccfg := benchClientConfig(b, ProtocolsDefault, false)
			l, addr := benchenv.Listen(b)
			wait := benchenv.Serve(l, benchLibtlsPeer(srv), true)
			defer wait()
			benchenv.ConcurrentHandshakes(b, k, func() (bool, error) { return benchClientOnce(addr, ccfg) }, wait)
		})
	}
	for _, n := range benchenv.EnvList(b, "GOLIBTLS_BENCH_IDLE", "1000") {
		b.Run(fmt.Sprintf("idle/conns=%d", n), func(b *testing.B) { benchIdle(b, n) })
	}
}

func benchIdle(b *testing.B, n int) {
	benchenv.SkipUnlessFiles(b, n)
	srv, err := NewServer(benchServerConfig(b, ProtocolsDefault, 0))
	benchCheck(b, err)
	defer srv.Close()
	l, addr := benchenv.Listen(b)
	defer l.Close()

	before := benchenv.Snapshot()
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

	child := benchenv.StartIdleClient(b, benchIdleLine, addr, n, benchPKI(b).CAPEM)
	defer child.Stop()
	b.ResetTimer()
	for range n {
		benchCheck(b, <-ready)
	}
	client := child.Report(b)
	b.StopTimer()
	benchenv.ReportIdle(b, n, before, benchenv.Snapshot(), client)
}

// benchIdleClient is the child process of benchIdle: it establishes the
// client ends, parks a Read on each, reports, and waits for its stdin to
// close.
func benchIdleClient(b *testing.B) {
	addr, n, caPEM := benchenv.IdleClientArgs(b)
	cfg, err := NewConfig()
	benchCheck(b, err)
	benchCheck(b, cfg.SetCA(caPEM))
	before := benchenv.Snapshot()
	conns := make([]*Conn, 0, n)
	for range n {
		nc, err := benchenv.Dial(addr)
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
	benchenv.IdleClientDone(benchIdleLine, before, benchenv.Snapshot(), conns)
}
