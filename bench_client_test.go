package libtls

// Benchmarks of the client side of sessions (issue 18; see BENCHMARKS.md):
// how the handshakes of one Config scale against as many Configs, and what
// the binding sets up for each client connection.
//
//	GOLIBTLS_BENCH_SESSION_CLIENTS  concurrent clients of BenchmarkClientSessions
//	                                (default 2,8)

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/benchenv"
)

// benchSessionConfig is a TLS 1.2 client Config with a session store: a
// session file of its own, or a memory SessionCache.
func benchSessionConfig(b *testing.B, store string) *Config {
	b.Helper()
	cfg := benchClientConfig(b, ProtocolTLSv1_2, store == "file")
	if store == "cache" {
		cache := NewMemorySessionCache(0)
		b.Cleanup(func() { cache.Close() })
		benchCheck(b, cfg.SetSessionCache(cache))
	}
	return cfg
}

// BenchmarkClientSessions: K goroutines make resumed TLS 1.2 handshakes
// against a crypto/tls server (each connection in its own goroutine), all
// through one Config (one-config) or each through a Config of its own
// (configs), with the session in a session file or a SessionCache. One
// Config should reach the rate of K Configs: its handshakes no longer wait
// for each other.
func BenchmarkClientSessions(b *testing.B) {
	for _, store := range []string{"file", "cache"} {
		for _, k := range benchenv.EnvList(b, "GOLIBTLS_BENCH_SESSION_CLIENTS", "2,8") {
			for _, shape := range []string{"one-config", "configs"} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", store, shape, k), func(b *testing.B) {
					l, addr := benchenv.Listen(b)
					wait := benchenv.Serve(l, benchenv.GoPeer(benchGoServerConfig(b, tls.VersionTLS12, true)), true)
					defer wait()
					shared := benchSessionConfig(b, store)
					benchenv.WorkerHandshakes(b, k, func(int) func() (bool, error) {
						cfg := shared
						if shape == "configs" {
							cfg = benchSessionConfig(b, store)
						}
						once := func() (bool, error) { return benchClientOnce(addr, cfg) }
						_, err := once() // stores a session
						benchCheck(b, err)
						return once
					}, wait)
				})
			}
		}
	}
}

// BenchmarkClientSetup measures what the binding does for each client
// connection with sessions, without the network and the TLS handshake:
//
//   - pooled: take a libtls configuration from the Config's pool, find the
//     connection's session key, offer the stored session (copied into the
//     configuration's session file unless it is there already), read back
//     what libtls would have written at the end of a resumed handshake (the
//     same session) and store it (unless it is the one offered), and give
//     the configuration back; with a session file or a memory
//     SessionCache. This is what a resumed connection costs on top of its
//     handshake.
//   - new-config: make a libtls configuration from the Config's settings and
//     free it, which the pool spares (every change of the Config's settings
//     costs one per concurrent handshake).
func BenchmarkClientSetup(b *testing.B) {
	session := benchStoredSession(b)
	for _, store := range []string{"file", "cache"} {
		b.Run("pooled/"+store, func(b *testing.B) {
			cfg := benchSessionConfig(b, store)
			st := cfg.sessionStore()
			key := sessionKeyFor(benchServerName, "127.0.0.1:443", cfg.client.trust)
			benchCheck(b, st.save(key, session))
			b.ReportAllocs()
			b.ResetTimer()
			cpu := benchenv.CPUNow()
			for range b.N {
				m, err := cfg.getClient()
				benchCheck(b, err)
				k := sessionKeyFor(benchServerName, "127.0.0.1:443", m.trust)
				offered, err := m.offerStored(b.Context(), nil, st, k)
				benchCheck(b, err)
				benchCheck(b, m.saveTaken(st, k, offered))
				cfg.putClient(m)
			}
			b.StopTimer()
			benchenv.ReportCPU(b, cpu, 0)
		})
	}
	b.Run("new-config", func(b *testing.B) {
		cfg := benchSessionConfig(b, "cache")
		b.ReportAllocs()
		b.ResetTimer()
		cpu := benchenv.CPUNow()
		for range b.N {
			m, err := cfg.newClientMember()
			benchCheck(b, err)
			m.free()
		}
		b.StopTimer()
		benchenv.ReportCPU(b, cpu, 0)
	})
}

// benchStoredSession is a real TLS 1.2 session, as libtls writes it.
func benchStoredSession(b *testing.B) []byte {
	l, addr := benchenv.Listen(b)
	wait := benchenv.Serve(l, benchenv.GoPeer(benchGoServerConfig(b, tls.VersionTLS12, true)), false)
	defer wait()
	dir := b.TempDir()
	f, err := os.OpenFile(filepath.Join(dir, "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	benchCheck(b, err)
	defer f.Close()
	cfg := benchClientConfig(b, ProtocolTLSv1_2, false)
	benchCheck(b, cfg.SetSessionFile(f))
	_, err = benchClientOnce(addr, cfg)
	benchCheck(b, err)
	raw, err := os.ReadFile(f.Name())
	benchCheck(b, err)
	pem, _, ok := splitSessionFile(raw)
	if !ok {
		b.Fatal("no session stored")
	}
	return pem
}

// BenchmarkClientWave: one op is a wave of 16 concurrent resumed TLS 1.2
// dials through one Config (session file or SessionCache), against a
// crypto/tls server that takes 50 ms to answer each ClientHello (a server
// far away); crypto/tls with an LRU session cache is the reference
// (gotls). Handshakes that wait for each other take 16 × 50 ms a wave,
// parallel ones about 50 ms.
func BenchmarkClientWave(b *testing.B) {
	const n, delay = 16, 50 * time.Millisecond
	g := benchGoServerConfig(b, tls.VersionTLS12, true)
	g.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		time.Sleep(delay)
		return nil, nil
	}
	for _, store := range []string{"file", "cache", "gotls"} {
		b.Run(store, func(b *testing.B) {
			l, addr := benchenv.Listen(b)
			wait := benchenv.Serve(l, benchenv.GoPeer(g), true)
			defer wait()
			var once func() (bool, error)
			if store == "gotls" {
				gc := &tls.Config{RootCAs: benchPKI(b).Pool, ServerName: benchServerName,
					MaxVersion: tls.VersionTLS12, ClientSessionCache: tls.NewLRUClientSessionCache(0)}
				once = func() (bool, error) {
					c, err := tls.Dial("tcp", addr, gc)
					if err != nil {
						return false, err
					}
					defer c.Close()
					return c.ConnectionState().DidResume, nil
				}
			} else {
				cfg := benchSessionConfig(b, store)
				once = func() (bool, error) { return benchClientOnce(addr, cfg) }
			}
			_, err := once()
			benchCheck(b, err)
			var resumed atomic.Int64
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for range n {
					wg.Add(1)
					go func() {
						defer wg.Done()
						r, err := once()
						if err != nil {
							errs <- err
						}
						if r {
							resumed.Add(1)
						}
					}()
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/wave")
			b.ReportMetric(float64(resumed.Load())/float64(n*b.N), "resumed/op")
		})
	}
}
