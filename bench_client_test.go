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
	"testing"

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
