package libtls

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/testcert"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Issue 18: client sessions that never make handshakes wait, never cross a
// Config's trust, never confuse two servers.

// helloBarrier holds every ClientHello a crypto/tls server receives until
// want of them wait at once, and records the most that ever waited
// together: handshakes that run one at a time never get past one. A wait
// that times out breaks the barrier for good, so that serialized handshakes
// fail the test quickly instead of waiting once each.
type helloBarrier struct {
	want    int
	timeout time.Duration

	mu      sync.Mutex
	waiting int
	most    int
	open    chan struct{}
	broken  bool
}

func newHelloBarrier(want int) *helloBarrier {
	return &helloBarrier{want: want, timeout: 5 * time.Second, open: make(chan struct{})}
}

func (b *helloBarrier) arrive() {
	b.mu.Lock()
	b.waiting++
	b.most = max(b.most, b.waiting)
	if b.waiting == b.want && !b.broken {
		b.broken = true
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(b.timeout):
		b.mu.Lock()
		if !b.broken {
			b.broken = true
			close(b.open)
		}
		b.mu.Unlock()
	}
	b.mu.Lock()
	b.waiting--
	b.mu.Unlock()
}

func (b *helloBarrier) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.most, b.broken, b.open = 0, false, make(chan struct{})
}

func (b *helloBarrier) mostAtOnce() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most
}

// barrierServer is a TLS 1.2 crypto/tls server (it issues tickets, so
// libtls clients resume on both backends) whose handshakes wait at b.
func barrierServer(t testing.TB, b *helloBarrier) string {
	g := tls12Server(t)
	g.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		b.arrive()
		return nil, nil
	}
	return goServer(t, g, echo).Addr
}

// dialWave dials addr n times at once through cfg and returns how many
// connections resumed.
func dialWave(t *testing.T, addr string, cfg *Config, n int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	resumed := 0
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			c, err := DialContext(ctx, "tcp", addr, cfg)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			if err := c.SessionFileError(); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			if c.SessionResumed() {
				resumed++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return resumed
}

// The handshakes of one Config run in parallel with a session file and with
// a session cache (as without either), and a second wave resumes.
func TestClientHandshakesRunInParallel(t *testing.T) {
	const n = 8
	for _, tc := range []struct {
		name string
		set  func(t *testing.T, cfg *Config)
	}{
		{"no sessions", func(t *testing.T, cfg *Config) {}},
		{"session file", func(t *testing.T, cfg *Config) { require.NoError(t, cfg.SetSessionFile(sessionFile(t))) }},
		{"memory cache", func(t *testing.T, cfg *Config) {
			cache := NewMemorySessionCache(0)
			t.Cleanup(func() { cache.Close() })
			require.NoError(t, cfg.SetSessionCache(cache))
		}},
		{"directory cache", func(t *testing.T, cfg *Config) {
			cache, err := NewDirSessionCache(filepath.Join(t.TempDir(), "sessions"), 0)
			require.NoError(t, err)
			t.Cleanup(func() { cache.Close() })
			require.NoError(t, cfg.SetSessionCache(cache))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newHelloBarrier(n)
			addr := barrierServer(t, b)
			cfg := newClientConfig(t)
			tc.set(t, cfg)

			assert.Zero(t, dialWave(t, addr, cfg, n), "first wave: nothing to resume")
			assert.Equal(t, n, b.mostAtOnce(), "handshakes waiting at the server at once")

			b.reset()
			resumed := dialWave(t, addr, cfg, n)
			assert.Equal(t, n, b.mostAtOnce(), "second wave: handshakes at once")
			if tc.name == "no sessions" {
				assert.Zero(t, resumed)
			} else {
				assert.Equal(t, n, resumed, "the second wave resumes")
			}
		})
	}
}

// sessionPKI is a second CA and client certificates for the trust tests.
type sessionPKI struct {
	other *testcert.CA   // a CA that certified nothing the servers use
	alice *testcert.Leaf // a client certificate from the test CA
	names *testcert.Leaf // a.test
	bees  *testcert.Leaf // b.test
}

func newSessionPKI(t testing.TB) *sessionPKI {
	p := testPKI(t)
	other, err := testcert.NewCA("another CA")
	require.NoError(t, err)
	alice, err := p.CA.Issue("alice")
	require.NoError(t, err)
	a, err := p.CA.Issue("a.test")
	require.NoError(t, err)
	b, err := p.CA.Issue("b.test")
	require.NoError(t, err)
	return &sessionPKI{other: other, alice: alice, names: a, bees: b}
}

// clientCN is the common name of the client certificate the server saw, ""
// for none.
func clientCN(st tls.ConnectionState) string {
	if len(st.PeerCertificates) == 0 {
		return ""
	}
	return st.PeerCertificates[0].Subject.CommonName
}

// A SessionCache shared by Configs never offers one Config's session to a
// Config that trusts differently or presents another client certificate:
// a session made by a Config that trusts the server's CA and presents
// "alice" must not let a Config that trusts another CA connect unverified,
// nor lend it alice's identity. Configs with the same trust share sessions.
func TestSessionCacheKeepsTrustApart(t *testing.T) {
	p, sp := testPKI(t), newSessionPKI(t)
	g := tls12Server(t)
	g.ClientAuth = tls.VerifyClientCertIfGiven
	srv := goServer(t, g, echo)
	cache := NewMemorySessionCache(0)
	defer cache.Close()

	newCfg := func(ca []byte, client *testcert.Leaf) *Config {
		cfg, err := NewConfig()
		require.NoError(t, err)
		t.Cleanup(func() { cfg.Close() })
		require.NoError(t, cfg.SetCA(ca))
		if client != nil {
			require.NoError(t, cfg.SetKeypair(client.CertPEM, client.KeyPEM))
		}
		require.NoError(t, cfg.SetSessionCache(cache))
		return cfg
	}
	dial := func(cfg *Config) (*Conn, tls.ConnectionState, error) {
		c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
		r := srv.next(t)
		if err == nil {
			ping(t, c, "x")
		}
		return c, r.State, err
	}

	alice := newCfg(p.CA.CertPEM, sp.alice)
	c, st, err := dial(alice)
	require.NoError(t, err)
	assert.False(t, c.SessionResumed())
	assert.Equal(t, "alice", clientCN(st))
	c, st, err = dial(alice)
	require.NoError(t, err)
	require.True(t, c.SessionResumed(), "alice resumes her own session")
	assert.Equal(t, "alice", clientCN(st))

	// Another CA: the server's certificate must be verified, and fails.
	untrusting := newCfg(sp.other.CertPEM, nil)
	_, _, err = dial(untrusting)
	require.Error(t, err, "a Config that does not trust the server's CA connected")
	assert.Contains(t, err.Error(), "certificate", "a verification failure")

	// The server's CA, but no client certificate: a full handshake in
	// which the server sees no client certificate.
	anonymous := newCfg(p.CA.CertPEM, nil)
	c, st, err = dial(anonymous)
	require.NoError(t, err)
	assert.False(t, c.SessionResumed(), "alice's session was offered without her certificate")
	assert.Equal(t, "", clientCN(st), "the server saw alice's identity")

	// Not verifying names is a trust of its own too.
	lax := newCfg(p.CA.CertPEM, sp.alice)
	require.NoError(t, lax.InsecureNoVerifyName())
	c, _, err = dial(lax)
	require.NoError(t, err)
	assert.False(t, c.SessionResumed())

	// The same trust and certificate in another Config: sessions are
	// shared, as the cache promises.
	twin := newCfg(p.CA.CertPEM, sp.alice)
	c, st, err = dial(twin)
	require.NoError(t, err)
	assert.True(t, c.SessionResumed(), "a Config with the same trust resumes")
	assert.Equal(t, "alice", clientCN(st))
}

// A session is offered only to the server name and address it came from:
// a Config with one session file that talks to a.test and then b.test at
// the same address makes a full handshake with b.test (libtls alone offers
// a.test's session, and b.test then fails "name `b.test' not present in
// server certificate" until the ticket expires). The file keeps libtls's
// meaning: the latest session wins.
func TestSessionFileKeepsServersApart(t *testing.T) {
	sp := newSessionPKI(t)
	g := tls12Server(t)
	g.Certificates = nil
	g.GetCertificate = func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		switch hi.ServerName {
		case "a.test":
			return &sp.names.TLS, nil
		case "b.test":
			return &sp.bees.TLS, nil
		}
		return nil, fmt.Errorf("no certificate for %q", hi.ServerName)
	}
	srv := goServer(t, g, echo)
	cfg := newClientConfig(t)
	f := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(f))

	dial := func(name string) *Conn {
		t.Helper()
		c, err := dialLibtls(t, srv.Addr, cfg, name)
		require.NoError(t, err, "dial %s", name)
		ping(t, c, "x")
		assert.Equal(t, name, c.ConnectionState().ServerName)
		return c
	}
	assert.False(t, dial("a.test").SessionResumed())
	assert.True(t, dial("a.test").SessionResumed())
	assert.False(t, dial("b.test").SessionResumed(), "a.test's session offered to b.test")
	assert.True(t, dial("b.test").SessionResumed(), "b.test's session was stored")
	assert.True(t, dial("b.test").SessionResumed())
	assert.False(t, dial("a.test").SessionResumed(), "the file holds b.test's session now")
	assert.True(t, dial("a.test").SessionResumed())
}

// The same server name at another address is another server: with a
// SessionCache, and with a session file, a server that would accept the
// session (here it shares the first one's ticket keys) is not offered it;
// with SessionPerServerName (a fleet at several addresses), it is.
func TestSessionKeptToItsAddress(t *testing.T) {
	var keys [32]byte
	copy(keys[:], "shared ticket key for two server")
	newServer := func() string {
		g := tls12Server(t)
		g.SetSessionTicketKeys([][32]byte{keys})
		return goServer(t, g, echo).Addr
	}
	one, two := newServer(), newServer()
	for _, kind := range []string{"file", "cache", "file per server name", "cache per server name"} {
		t.Run(kind, func(t *testing.T) {
			cfg := newClientConfig(t)
			perName := strings.HasSuffix(kind, "per server name")
			if perName {
				require.NoError(t, cfg.SetSessionScope(SessionPerServerName))
			}
			kind = strings.TrimSuffix(kind, " per server name")
			if kind == "file" {
				require.NoError(t, cfg.SetSessionFile(sessionFile(t)))
			} else {
				cache := NewMemorySessionCache(0)
				defer cache.Close()
				require.NoError(t, cfg.SetSessionCache(cache))
			}
			dial := func(addr string) bool {
				c, err := dialLibtls(t, addr, cfg, "localhost")
				require.NoError(t, err)
				ping(t, c, "x")
				return c.SessionResumed()
			}
			require.False(t, dial(one))
			require.True(t, dial(one), "the servers issue tickets")
			if perName {
				assert.True(t, dial(two), "SessionPerServerName: the session of %s resumes at %s", one, two)
			} else {
				assert.False(t, dial(two), "the session of %s was offered to %s", one, two)
			}
		})
	}
}

// In-memory session files fall back to what each system has: with
// memfd_create unavailable (OpenBSD, macOS, old glibc), an unnamed
// O_TMPFILE file, and then an unlinked mkstemp file; each is a regular 0600
// file of the real user, which libtls accepts, and resumption works on it.
func TestAnonymousSessionFileFallback(t *testing.T) {
	defer anonFirst.Store(anonFirst.Load())
	srv := goServer(t, tls12Server(t), echo)
	for _, tc := range []struct {
		first, want anonMethod
	}{
		{anonMemfd, anonMemfd},
		{anonTmpfile, anonTmpfile},
		{anonShm, anonTemp}, // shm_mkstemp is OpenBSD's: ENOSYS here
		{anonTemp, anonTemp},
	} {
		t.Run(tc.first.String(), func(t *testing.T) {
			anonFirst.Store(int32(tc.first))
			f, got, err := newAnonymousFile("golibtls-test")
			require.NoError(t, err)
			defer f.Close()
			assert.Equal(t, tc.want, got)
			fi, err := f.Stat()
			require.NoError(t, err)
			assert.True(t, fi.Mode().IsRegular())
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
			target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
			require.NoError(t, err)
			if tc.want != anonMemfd {
				assert.True(t, strings.HasSuffix(target, " (deleted)"), "%s has a name: %s", tc.want, target)
			}

			// A Config whose pool is made now uses this method.
			anonFirst.Store(int32(tc.first))
			cfg := newClientConfig(t)
			require.NoError(t, cfg.SetSessionFile(sessionFile(t)))
			assert.False(t, pingDial(t, srv.Addr, cfg).SessionResumed())
			assert.True(t, pingDial(t, srv.Addr, cfg).SessionResumed())
		})
	}
	assert.Equal(t, anonFirst.Load(), int32(anonTemp), "the unsupported method is not tried again")
}

// The client settings a Config records are those libtls applies: a Config
// changed between handshakes connects with its new settings, on new
// configurations, and a member made before the change is not reused.
func TestClientSettingsFollowSetters(t *testing.T) {
	p, sp := testPKI(t), newSessionPKI(t)
	srv := goServer(t, tls12Server(t), echo)
	cfg, err := NewConfig()
	require.NoError(t, err)
	defer cfg.Close()
	require.NoError(t, cfg.SetCA(sp.other.CertPEM))
	_, err = dialLibtls(t, srv.Addr, cfg, "localhost")
	require.Error(t, err, "the other CA does not verify the server")

	dir := t.TempDir()
	caFile, _, _, err := p.CA.Files(dir, p.Server)
	require.NoError(t, err)
	require.NoError(t, cfg.SetCAFile(caFile))
	c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
	require.NoError(t, err, "the CA file was applied")
	ping(t, c, "x")

	require.NoError(t, cfg.SetProtocols(ProtocolTLSv1_3))
	_, err = dialLibtls(t, srv.Addr, cfg, "localhost")
	require.Error(t, err, "a TLS 1.3-only client against a TLS 1.2 server")
	require.NoError(t, cfg.SetProtocols(ProtocolTLSv1_2))

	require.NoError(t, cfg.SetCA(sp.other.CertPEM))
	require.NoError(t, cfg.InsecureNoVerifyCert())
	c, err = dialLibtls(t, srv.Addr, cfg, "localhost")
	require.NoError(t, err, "verification off")
	ping(t, c, "x")
	require.NoError(t, cfg.Verify())
	_, err = dialLibtls(t, srv.Addr, cfg, "localhost")
	require.Error(t, err, "verification back on")

	// Client certificates from files.
	g := tls12Server(t)
	g.ClientAuth = tls.RequireAndVerifyClientCert
	mtls := goServer(t, g, echo)
	_, certFile, keyFile, err := p.CA.Files(dir, sp.alice)
	require.NoError(t, err)
	require.NoError(t, cfg.SetCA(p.CA.CertPEM))
	require.NoError(t, cfg.SetKeypairFile(certFile, keyFile))
	c, err = dialLibtls(t, mtls.Addr, cfg, "localhost")
	require.NoError(t, err)
	ping(t, c, "x")
	st := mtls.next(t).State
	require.NotEmpty(t, st.PeerCertificates)
	assert.Equal(t, "alice", st.PeerCertificates[0].Subject.CommonName)
}

// Client handshakes, setters that change the client settings and the
// session store, and Config.Close, all at once: every dial succeeds (or,
// after Close, fails with ErrClosed), a session file the Config has moved
// away from is never written again, and every client configuration is
// freed in the end.
func TestClientSessionsUnderChurn(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	configs := liveConfigs.Load()
	cfg, err := NewConfig()
	require.NoError(t, err)
	p := testPKI(t)
	require.NoError(t, cfg.SetCA(p.CA.CertPEM))
	fileA, fileB := sessionFile(t), sessionFile(t)
	cache := NewMemorySessionCache(0)
	defer cache.Close()

	const duration = 2 * time.Second
	stop := make(chan struct{})
	closed := make(chan struct{})
	var wg sync.WaitGroup
	var dials, resumed, fails atomic.Int64
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				c, err := DialContext(ctx, "tcp", srv.Addr, cfg)
				cancel()
				if err != nil {
					select {
					case <-closed:
						assert.ErrorIs(t, err, ErrClosed)
					default:
						fails.Add(1)
						t.Errorf("dial: %v", err)
					}
					continue
				}
				if c.SessionResumed() {
					resumed.Add(1)
				}
				assert.NoError(t, c.SessionFileError())
				c.Close()
				dials.Add(1)
			}
		}()
	}
	// The setters.
	stopSetters := make(chan struct{})
	var setters sync.WaitGroup
	setters.Add(1)
	go func() {
		defer setters.Done()
		var snapshotA []byte
		for i := 0; ; i++ {
			select {
			case <-stopSetters:
				return
			default:
			}
			switch i % 4 {
			case 0:
				if snapshotA != nil {
					now, err := os.ReadFile(fileA.Name())
					assert.NoError(t, err)
					assert.Equal(t, snapshotA, now, "a session file the Config moved away from was written")
				}
				assert.NoError(t, cfg.SetSessionFile(fileA))
			case 1:
				assert.NoError(t, cfg.SetSessionFile(fileB))
				b, err := os.ReadFile(fileA.Name())
				assert.NoError(t, err)
				snapshotA = b
			case 2:
				assert.NoError(t, cfg.SetSessionCache(cache))
			case 3:
				assert.NoError(t, cfg.SetSessionCache(nil))
				assert.NoError(t, cfg.SetCA(p.CA.CertPEM)) // new client configurations
			}
			time.Sleep(time.Duration(i%5) * time.Millisecond)
		}
	}()
	time.Sleep(duration)
	close(stopSetters)
	setters.Wait()
	// Close while handshakes run, then stop.
	close(closed)
	require.NoError(t, cfg.Close())
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d dials, %d resumed, %d failed", dials.Load(), resumed.Load(), fails.Load())
	assert.Greater(t, dials.Load(), int64(50))
	assert.Positive(t, resumed.Load())
	requireFreedEventually(t, liveContexts.Load(), configs)
}
