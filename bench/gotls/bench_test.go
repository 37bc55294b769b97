// Package gotls runs golibtls's benchmark scenarios with Go's crypto/tls on
// both ends, under the same names and with the same knobs as the root
// package's bench_test.go (see BENCHMARKS.md), as the pure-Go reference for
// scripts/bench.
package gotls

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/golibtls/libtls/internal/benchenv"
	"github.com/golibtls/libtls/internal/testcert"
)

const serverName = "localhost"

var (
	pkiOnce sync.Once
	pkiVal  *benchenv.PKI
	pkiErr  error
)

// loadPKI reads GOLIBTLS_BENCH_CERTS/{ca,cert,key}.pem, or makes a
// throwaway ECDSA P-256 PKI.
func loadPKI(b testing.TB) *benchenv.PKI {
	b.Helper()
	pkiOnce.Do(func() {
		pkiVal, pkiErr = benchenv.LoadPKI(func() (caPEM, certPEM, keyPEM []byte, err error) {
			ca, err := testcert.NewCA("golibtls bench CA")
			if err != nil {
				return nil, nil, nil, err
			}
			leaf, err := ca.Issue(serverName, "127.0.0.1")
			if err != nil {
				return nil, nil, nil, err
			}
			return ca.CertPEM, leaf.CertPEM, leaf.KeyPEM, nil
		})
	})
	if pkiErr != nil {
		b.Fatal(pkiErr)
	}
	return pkiVal
}

var check = benchenv.Check

// version 0 means crypto/tls's defaults (TLS 1.2 and 1.3, so 1.3).
func serverConfig(b testing.TB, version uint16, tickets bool) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{loadPKI(b).Cert},
		MinVersion:             version,
		MaxVersion:             version,
		SessionTicketsDisabled: !tickets,
	}
}

func clientConfig(b testing.TB, version uint16, resume bool) *tls.Config {
	cfg := &tls.Config{RootCAs: loadPKI(b).Pool, ServerName: serverName, MinVersion: version, MaxVersion: version}
	if resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return cfg
}

var protocols = []struct {
	name    string
	version uint16
}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}}

// --- handshakes ---------------------------------------------------------------

// serve accepts on l with a crypto/tls server until wait closes l (see
// benchenv.Serve).
func serve(l net.Listener, cfg *tls.Config, concurrent bool) (wait func() (int64, error)) {
	return benchenv.Serve(l, benchenv.GoPeer(cfg), concurrent)
}

func clientOnce(addr string, cfg *tls.Config) (bool, error) {
	nc, err := benchenv.Dial(addr)
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
				l, addr := benchenv.Listen(b)
				wait := serve(l, serverConfig(b, p.version, resume), false)
				defer wait()
				ccfg := clientConfig(b, p.version, resume)
				benchenv.Handshakes(b, func() (bool, error) { return clientOnce(addr, ccfg) }, wait)
			})
		}
	}
}

// BenchmarkPlainTCP: connect, one byte each way, close, without TLS.
func BenchmarkPlainTCP(b *testing.B) {
	l, addr := benchenv.Listen(b)
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
	cpu := benchenv.CPUNow()
	for range b.N {
		nc, err := benchenv.Dial(addr)
		check(b, err)
		var one [1]byte
		_, err = nc.Write(one[:])
		check(b, err)
		_, err = io.ReadFull(nc, one[:])
		check(b, err)
		nc.Close()
	}
	b.StopTimer()
	benchenv.ReportCPU(b, cpu, 0)
	l.Close()
	<-done
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}

// --- bulk -----------------------------------------------------------------------

func pair(b testing.TB) (client, server *tls.Conn) {
	b.Helper()
	l, addr := benchenv.Listen(b)
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
	nc, err := benchenv.Dial(addr)
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
			total := benchenv.BulkTotal(b)
			client, server := pair(b)
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
				check(b, <-errc)
			}
			b.StopTimer()
			benchenv.ReportCPU(b, cpu, total)
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

const idleLine = "gotls-idle-client"

func BenchmarkScaling(b *testing.B) {
	if benchenv.IsIdleClient() {
		idleClient(b)
		return
	}
	for _, k := range benchenv.EnvList(b, "GOLIBTLS_BENCH_CLIENTS", "1,2,8,64") {
		b.Run(fmt.Sprintf("handshakes/clients=%d", k), func(b *testing.B) {
			l, addr := benchenv.Listen(b)
			wait := serve(l, serverConfig(b, 0, false), true)
			defer wait()
			ccfg := clientConfig(b, 0, false)
			benchenv.ConcurrentHandshakes(b, k, func() (bool, error) { return clientOnce(addr, ccfg) }, wait)
		})
	}
	for _, n := range benchenv.EnvList(b, "GOLIBTLS_BENCH_IDLE", "1000") {
		b.Run(fmt.Sprintf("idle/conns=%d", n), func(b *testing.B) { idle(b, n) })
	}
}

func idle(b *testing.B, n int) {
	benchenv.SkipUnlessFiles(b, n)
	l, addr := benchenv.Listen(b)
	defer l.Close()
	scfg := serverConfig(b, 0, false)
	before := benchenv.Snapshot()
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
	child := benchenv.StartIdleClient(b, idleLine, addr, n, loadPKI(b).CAPEM)
	defer child.Stop()
	b.ResetTimer()
	for range n {
		check(b, <-ready)
	}
	client := child.Report(b)
	b.StopTimer()
	benchenv.ReportIdle(b, n, before, benchenv.Snapshot(), client)
}

func idleClient(b *testing.B) {
	addr, n, caPEM := benchenv.IdleClientArgs(b)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName}
	before := benchenv.Snapshot()
	conns := make([]*tls.Conn, 0, n)
	for range n {
		nc, err := benchenv.Dial(addr)
		check(b, err)
		c := tls.Client(nc, cfg)
		check(b, c.Handshake())
		conns = append(conns, c)
		go func() {
			var one [1]byte
			c.Read(one[:])
		}()
	}
	benchenv.IdleClientDone(idleLine, before, benchenv.Snapshot(), conns)
}
