//go:build linux

package libtls

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/cmem"
	"github.com/stretchr/testify/require"
)

// The binding frees every C allocation exactly once: a process that runs
// the lifecycles below over and over ends with as much C memory in use as
// after its first rounds. glibc's allocator statistics (mallinfo2) count
// libtls's contexts and configurations, OpenSSL's objects under them and
// the binding's own C buffers; the test runs itself again with a single
// malloc arena so that the allocations of every thread are counted.
//
// valgrind (scripts/check-memory) finds invalid accesses, but its leak
// checker cannot run on a Go program, and LeakSanitizer keeps C blocks
// alive through stale copies of their addresses in Go memory; a growth
// measurement has neither problem.

const (
	envLeakChild = "GOLIBTLS_TEST_LEAK_CHILD"
	// leakSlack is the growth allowed after warm-up: allocator
	// fragmentation and OpenSSL's per-thread state for threads Go starts
	// late. A lost 72-byte struct per connection already exceeds it over
	// leakRounds.
	leakSlack    = 48 << 10
	leakWarmup   = 60
	leakRounds   = 400
	leakEnvCount = "GOLIBTLS_TEST_LEAK_ROUNDS"
)

func TestCHeapDoesNotGrow(t *testing.T) {
	require.True(t, cmem.Supported(), "measuring the C heap needs glibc's mallinfo2 (glibc 2.33 or later)")
	if os.Getenv(envLeakChild) != "" {
		cHeapChild(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCHeapDoesNotGrow$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envLeakChild+"=1", cmem.SingleArenaEnv)
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	require.NoError(t, err)
	require.Contains(t, string(out), "--- PASS: TestCHeapDoesNotGrow")
}

// leakCycle runs every lifecycle once.
type leakCycle struct {
	t           *testing.T
	goServer    *tls.Config
	srvCfg      *Config // sessions on, ticket keys from a rotating set
	srv         *Server
	client      *Config // TLS 1.2 with a session file
	cacheClient *Config // a 2-entry SessionCache over 4 names
	keys        *TicketKeySet
	round       int
}

func newLeakCycle(t *testing.T) *leakCycle {
	lc := &leakCycle{t: t, goServer: tls12Server(t)}
	lc.srvCfg = tkServerConfig(t, time.Hour)
	lc.keys = tkSet(t, 1)
	require.NoError(t, lc.srvCfg.ApplyTicketKeySet(lc.keys))
	var err error
	lc.srv, err = NewServer(lc.srvCfg)
	require.NoError(t, err)
	t.Cleanup(func() { lc.srv.Close() })
	lc.client = tkClientConfig(t)
	lc.cacheClient = newClientConfig(t)
	require.NoError(t, lc.cacheClient.SetProtocols(ProtocolTLSv1_2))
	require.NoError(t, lc.cacheClient.InsecureNoVerifyName())
	cache := NewMemorySessionCache(2)
	t.Cleanup(func() { cache.Close() })
	require.NoError(t, lc.cacheClient.SetSessionCache(cache))
	return lc
}

// pair runs a libtls client of ccfg against s over net.Pipe: handshake,
// echo, close.
func (lc *leakCycle) pair(ccfg *Config, sni string, server func(net.Conn) (net.Conn, error)) {
	t := lc.t
	craw, sraw := net.Pipe()
	defer craw.Close()
	defer sraw.Close()
	c, err := Client(craw, ccfg, sni)
	require.NoError(t, err)
	s, err := server(sraw)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(s, s)
		s.Close()
		done <- err
	}()
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 4))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	<-done
}

// leakScenarios are the lifecycles a round runs; GOLIBTLS_TEST_LEAK_ONLY
// selects one by name, to find which one leaks.
var leakScenarios = []struct {
	name string
	run  func(lc *leakCycle)
}{
	{"sessions", (*leakCycle).sessions},
	{"cache", (*leakCycle).cache},
	{"closed-config", (*leakCycle).closedConfig},
	{"failures", (*leakCycle).failures},
	{"unclosed", (*leakCycle).unclosed},
}

func (lc *leakCycle) run() {
	lc.round++
	only := os.Getenv("GOLIBTLS_TEST_LEAK_ONLY")
	for _, sc := range leakScenarios {
		if only == "" || only == sc.name {
			sc.run(lc)
		}
	}
}

func (lc *leakCycle) libtlsServer(c net.Conn) (net.Conn, error) { return lc.srv.Accept(c) }
func (lc *leakCycle) goTLSServer(c net.Conn) (net.Conn, error) {
	return tls.Server(c, lc.goServer), nil
}

// sessions: full and resumed handshakes, a session file, ticket keys that
// rotate (the binding drops the oldest of libtls's four slots).
func (lc *leakCycle) sessions() {
	lc.pair(lc.client, "localhost", lc.libtlsServer)
	lc.pair(lc.client, "localhost", lc.goTLSServer)
	if lc.round%10 == 0 {
		lc.keys.Rotate(time.Now().Add(time.Hour), time.Hour)
		require.NoError(lc.t, lc.srvCfg.ApplyTicketKeySet(lc.keys))
	}
}

// cache: a SessionCache that drops sessions.
func (lc *leakCycle) cache() {
	lc.pair(lc.cacheClient, fmt.Sprintf("host%d", lc.round%4), lc.goTLSServer)
}

// closedConfig: a client of a Config closed before its handshake,
// retrying without its unusable stored session.
func (lc *leakCycle) closedConfig() {
	t := lc.t
	func() {
		cfg, err := NewConfig()
		require.NoError(t, err)
		require.NoError(t, cfg.SetCA(testPKI(t).CA.CertPEM))
		f := sessionFile(t)
		_, err = f.WriteString("garbage\n")
		require.NoError(t, err)
		require.NoError(t, cfg.SetSessionFile(f))
		craw, sraw := net.Pipe()
		c, err := Client(craw, cfg, "localhost")
		require.NoError(t, err)
		require.NoError(t, cfg.Close())
		go func() { _ = tls.Server(sraw, lc.goServer).Handshake(); sraw.Close() }()
		require.NoError(t, c.Handshake())
		c.Close()
		f.Close()
	}()
}

// failures: a failed handshake (garbage from the peer), and a Conn closed
// before its handshake.
func (lc *leakCycle) failures() {
	t := lc.t
	func() {
		craw, sraw := net.Pipe()
		c, err := Client(craw, lc.client, "localhost")
		require.NoError(t, err)
		go func() { _, _ = io.Copy(io.Discard, sraw) }() // takes the ClientHello
		go func() { _, _ = sraw.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n")); sraw.Close() }()
		require.Error(t, c.Handshake())
		c.Close()
		s, err := lc.srv.Accept(craw)
		require.NoError(t, err)
		s.Close()
	}()
}

// unclosed: a Server and a Config never closed: their finalizers free
// them.
func (lc *leakCycle) unclosed() {
	t := lc.t
	func() {
		cfg, err := NewConfig()
		require.NoError(t, err)
		p := testPKI(t)
		require.NoError(t, cfg.SetKeypair(p.Server.CertPEM, p.Server.KeyPEM))
		require.NoError(t, cfg.SetSessionLifetime(time.Hour))
		srv, err := NewServer(cfg)
		require.NoError(t, err)
		a, b := net.Pipe()
		_, err = srv.Accept(a)
		require.NoError(t, err)
		a.Close()
		b.Close()
	}()
}

// settle lets finalizers free what the last rounds left unreachable and
// returns the C heap in use.
func settle(t *testing.T, contexts, configs int64) uint64 {
	requireFreedEventually(t, contexts, configs)
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	return cmem.InUse()
}

func cHeapChild(t *testing.T) {
	rounds := leakRounds
	if s := os.Getenv(leakEnvCount); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		rounds = n
	}
	lc := newLeakCycle(t)
	// After one round: the client Configs keep an idle client
	// configuration each for reuse (client_config.go).
	lc.run()
	contexts, configs := liveContexts.Load(), liveConfigs.Load()
	for range leakWarmup {
		lc.run()
	}
	before := settle(t, contexts, configs)
	for range rounds {
		lc.run()
	}
	after := settle(t, contexts, configs)
	growth := int64(after) - int64(before)
	t.Logf("%v: C heap in use %d bytes after %d warm-up rounds, %d after %d more (%+d, %.1f bytes a round)",
		Backend(), before, leakWarmup, after, rounds, growth, float64(growth)/float64(rounds))
	require.Less(t, growth, int64(leakSlack), "the C heap grew: a C allocation is not freed")
}
