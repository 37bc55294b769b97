package libtls

import (
	"context"
	"crypto/tls"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The lifecycle defects of the reliability issue, each with the test that
// failed before its fix.

// requireFreedEventually runs the garbage collector until the live C
// contexts and configurations are back to the given counts (finalizers run
// one level of a chain per cycle), or fails.
func requireFreedEventually(t testing.TB, contexts, configs int64) {
	t.Helper()
	for i := 0; i < 200; i++ {
		if liveContexts.Load() <= contexts && liveConfigs.Load() <= configs {
			return
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("C objects leaked: %d contexts (want %d), %d configurations (want %d)",
		liveContexts.Load(), contexts, liveConfigs.Load(), configs)
}

// Defect 1: a client restarted without its unusable stored session after
// its Config was closed. tls_reset dropped the context's reference to the C
// configuration, the last one once the Config was closed, and tls_configure
// then read freed memory (a segfault on LibreSSL, a hang in tls_free on
// LibreTLS). A closed Config stays usable by the connections built from it.
func TestClosedConfigClientRetriesWithoutSession(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	contexts, configs := liveContexts.Load(), liveConfigs.Load()

	cfg, err := NewConfig()
	require.NoError(t, err)
	require.NoError(t, cfg.SetCA(testPKI(t).CA.CertPEM))
	f := sessionFile(t)
	storeSession(t, f, cfg, "localhost", srv.Addr, []byte("this is not a session\n"))
	require.NoError(t, cfg.SetSessionFile(f))

	raw, err := net.Dial("tcp", srv.Addr)
	require.NoError(t, err)
	c, err := Client(bound(raw), cfg, "localhost")
	require.NoError(t, err)
	require.NoError(t, cfg.Close())
	require.Equal(t, configs+1, liveConfigs.Load(), "the client still holds the C configuration")

	require.NoError(t, c.Handshake(), "a full handshake, as with an open Config")
	var sfe *SessionFileError
	require.ErrorAs(t, c.SessionFileError(), &sfe)
	assert.Contains(t, sfe.Error(), "failed to parse session")
	ping(t, c, "after the retry")
	requireSessionStored(t, f)
	require.NoError(t, c.Close())

	// The last user freed the C configuration, exactly once.
	assert.Equal(t, contexts, liveContexts.Load())
	assert.Equal(t, configs, liveConfigs.Load())
	// And nothing can be built from the closed Config.
	_, err = Client(raw, cfg, "localhost")
	require.ErrorIs(t, err, ErrClosed)
}

// The same audit on the server side: a Server built from a Config that is
// closed right away keeps accepting, adds ticket keys of its own (which
// writes the C configuration) and resumes where the backend can; the C
// configuration goes with the Server's last connection.
func TestClosedConfigServerKeepsServing(t *testing.T) {
	contexts, configs := liveContexts.Load(), liveConfigs.Load()
	cfg, err := NewConfig()
	require.NoError(t, err)
	p := testPKI(t)
	require.NoError(t, cfg.SetKeypair(p.Server.CertPEM, p.Server.KeyPEM))
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	require.NoError(t, cfg.Close())

	gcfg := goClientConfig(t)
	gcfg.MaxVersion = tls.VersionTLS12
	gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	for i := range 3 {
		craw, sraw := tcpPair(t)
		s, err := srv.Accept(sraw)
		require.NoError(t, err)
		c := tls.Client(craw, gcfg)
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		if i > 0 {
			assert.Equal(t, Backend().ServerSessionResumption, s.SessionResumed(), "handshake %d", i)
		}
		require.NoError(t, craw.Close())
		_ = s.Close()
	}
	assert.NotEmpty(t, cfg.TicketKeyRevisions(), "the binding added a ticket key to the closed Config")
	require.Equal(t, configs+1, liveConfigs.Load())
	require.NoError(t, srv.Close())
	assert.Equal(t, contexts, liveContexts.Load())
	assert.Equal(t, configs, liveConfigs.Load())
}

// A Server that is never closed is freed by its finalizer once it and its
// connections are unreachable, and with it the Config's C configuration.
func TestUnclosedServerIsFreed(t *testing.T) {
	// What earlier tests left to finalizers goes first.
	for range 3 {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	contexts, configs := liveContexts.Load(), liveConfigs.Load()
	func() {
		cfg, err := NewConfig()
		require.NoError(t, err)
		p := testPKI(t)
		require.NoError(t, cfg.SetKeypair(p.Server.CertPEM, p.Server.KeyPEM))
		for range 10 {
			srv, err := NewServer(cfg)
			require.NoError(t, err)
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			_, err = srv.Accept(b) // a Conn never closed either
			require.NoError(t, err)
		}
		require.GreaterOrEqual(t, liveContexts.Load(), int64(20))
		// The Config is not closed either.
	}()
	requireFreedEventually(t, contexts, configs)
}

// Defect 3: crypto/tls.Dialer bounds the connect and the handshake with
// NetDialer.Timeout and Deadline; so must Dialer. A server that accepts and
// never answers used to hold DialContext(context.Background()) forever.
func TestDialerTimeoutBoundsHandshake(t *testing.T) {
	const wait = 200 * time.Millisecond
	for _, tc := range []struct {
		name string
		nd   *net.Dialer
	}{
		{"Timeout", &net.Dialer{Timeout: wait}},
		{"Deadline", &net.Dialer{Deadline: time.Now().Add(wait)}},
		{"TimeoutAndLaterDeadline", &net.Dialer{Timeout: wait, Deadline: time.Now().Add(time.Hour)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := silentPeer(t)
			d := &Dialer{NetDialer: tc.nd, Config: newClientConfig(t), ServerName: "localhost"}
			done := make(chan error, 1)
			go func() {
				c, err := d.DialContext(context.Background(), "tcp", l.Addr().String())
				if c != nil {
					c.Close()
				}
				done <- err
			}()
			select {
			case err := <-done:
				require.Error(t, err)
				var ne net.Error
				require.ErrorAs(t, err, &ne)
				assert.True(t, ne.Timeout(), "%v", err)
				assert.ErrorIs(t, err, context.DeadlineExceeded)
			case <-time.After(10 * time.Second):
				t.Fatal("DialContext ignored NetDialer's timeout during the handshake")
			}
		})
	}
}

// Defect 4: a handshake, Read or Write that passes its deadline returns an
// error that is a net.Error by type assertion (as crypto/tls's are, and as
// net/http expects), whose Timeout is true, and that still matches
// os.ErrDeadlineExceeded.
func TestTimeoutErrorsAreNetErrors(t *testing.T) {
	const wait = 50 * time.Millisecond
	requireTimeout := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		ne, ok := err.(net.Error)
		require.True(t, ok, "%T is not a net.Error: %v", err, err)
		assert.True(t, ne.Timeout(), "%v", err)
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
	}
	t.Run("Handshake", func(t *testing.T) {
		l := silentPeer(t)
		raw, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		c := newLibtlsClient(t, raw, newClientConfig(t), "localhost")
		require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
		requireTimeout(t, c.Handshake())
	})
	t.Run("Read", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), tls.Server(sraw, goServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
		_, err := c.Read(make([]byte, 1))
		requireTimeout(t, err)
	})
	t.Run("Write", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(wait)))
		_, err := c.Write(make([]byte, 1<<20)) // nobody reads the pipe
		requireTimeout(t, err)
	})
	t.Run("NotATimeout", func(t *testing.T) {
		// Other failures are net.Errors too, with Timeout false.
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		go func() { _, _ = sraw.Write([]byte("HTTP/1.0 400 Bad Request\r\n\r\n")); sraw.Close() }()
		err := c.Handshake()
		ne, ok := err.(net.Error)
		require.True(t, ok, "%T", err)
		assert.False(t, ne.Timeout())
	})
}

// Defect 5: a good stored session is kept when the connect fails for a
// reason of its own; only libtls's refusal of the stored session itself may
// discard it.
func TestStoredSessionKeptOnUnrelatedErrors(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	cfg := newClientConfig(t)
	f := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(f))
	pingDial(t, srv.Addr, cfg)
	good, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Contains(t, string(good), "BEGIN SSL SESSION PARAMETERS")

	for _, tc := range []struct {
		name, serverName, want string
	}{
		// verify_name is on, so a client needs a server name.
		{"NoServerName", "", "server name not specified"},
		// Longer than SNI allows (255 bytes).
		{"SNIFailure", strings.Repeat("a", 300) + ".example", "server name indication failure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := net.Dial("tcp", srv.Addr)
			require.NoError(t, err)
			c := newLibtlsClient(t, bound(raw), cfg, tc.serverName)
			err = c.Handshake()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NoError(t, c.SessionFileError(), "nothing was discarded")
			after, err := os.ReadFile(f.Name())
			require.NoError(t, err)
			assert.Equal(t, good, after, "the stored session is kept")
		})
	}
	assert.True(t, pingDial(t, srv.Addr, cfg).SessionResumed(), "and still resumes")
}

// refusesStoredSession decides which libtls messages discard a session.
func TestRefusesStoredSession(t *testing.T) {
	for msg, want := range map[string]bool{
		"failed to parse session":                      true,
		"failed to set session":                        true,
		"server name not specified":                    false,
		"failed to open CA file '/x': No such file":    false,
		"server name indication failure":               false,
		"handshake failed: error:0A000086:certificate": false,
	} {
		assert.Equal(t, want, refusesStoredSession(msg), msg)
	}
	assert.Equal(t, Backend().StoredSessionPinsTLS12, refusesStoredSession("handshake failed: error:14004410:SSL routines:CONNECT_CR_SRVR_HELLO:no protocols available"))
}

// Defect 6a: SetSessionLifetime(0) and NewServer used to check and set in
// separate critical sections: SetSessionLifetime(0) could pass its check
// while NewServer was configuring the server with the old lifetime (which
// enables tickets), and set 0 before NewServer recorded that it serves
// sessions. The server then ran with tickets on a Config whose lifetime
// was 0, and every handshake asking for a ticket failed ("no valid ticket
// key found") once its hand-added key was a second old. Either order is
// fine: SetSessionLifetime first (the server runs without sessions) or
// NewServer first (0 is refused). Never both.
func TestSessionLifetimeZeroRacesNewServer(t *testing.T) {
	const rounds = 100
	type round struct {
		srv    *Server
		setErr error
	}
	results := make([]round, rounds)
	for i := range results {
		cfg := tkServerConfig(t, time.Hour)
		key, err := NewTicketKey()
		require.NoError(t, err)
		require.NoError(t, cfg.AddTicketKey(1, key))
		var srvErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; results[i].srv, srvErr = NewServer(cfg) }()
		go func() {
			defer wg.Done()
			<-start
			// Spread the call over NewServer's tls_configure, which
			// takes a few hundred microseconds (bounded busy wait).
			for t0 := time.Now(); time.Since(t0) < time.Duration(i)*10*time.Microsecond; {
			}
			results[i].setErr = cfg.SetSessionLifetime(0)
		}()
		close(start)
		wg.Wait()
		require.NoError(t, srvErr)
		t.Cleanup(func() { results[i].srv.Close() })
		if err := results[i].setErr; err != nil {
			require.Contains(t, err.Error(), "cannot disable sessions")
		}
	}
	// Keys added by hand are dated in whole seconds: once a second has
	// passed, a lifetime of 0 makes libtls count them as expired.
	time.Sleep(1100 * time.Millisecond)
	gcfg := goClientConfig(t)
	gcfg.MaxVersion = tls.VersionTLS12
	gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(1) // asks for a ticket
	refused := 0
	for i, r := range results {
		craw, sraw := tcpPair(t)
		s, err := r.srv.Accept(sraw)
		require.NoError(t, err)
		cerr, serr := handshakeBoth(tls.Client(craw, gcfg), s)
		require.NoError(t, serr, "round %d: server handshake (SetSessionLifetime(0): %v)", i, r.setErr)
		require.NoError(t, cerr, "round %d", i)
		s.Close()
		if r.setErr != nil {
			refused++
		}
	}
	t.Logf("%d of %d rounds: NewServer first, 0 refused", refused, rounds)
}

// Defect 6c: a SessionCache holds at most its capacity of servers, closes
// the files it drops, and the per-file lock table holds only files in use.
func TestSessionCacheBounded(t *testing.T) {
	const capacity, servers = 3, 7
	for _, kind := range []string{"memory", "dir"} {
		t.Run(kind, func(t *testing.T) {
			var cache *SessionCache
			dir := filepath.Join(t.TempDir(), "sessions")
			if kind == "memory" {
				cache = NewMemorySessionCache(capacity)
			} else {
				var err error
				cache, err = NewDirSessionCache(dir, capacity)
				require.NoError(t, err)
			}
			defer cache.Close()
			cfg := newClientConfig(t)
			require.NoError(t, cfg.SetSessionCache(cache))
			addrs := make([]string, servers)
			for i := range addrs {
				addrs[i] = goServer(t, tls12Server(t), echo).Addr
			}
			for i, addr := range addrs {
				assert.False(t, pingDial(t, addr, cfg).SessionResumed(), "first visit to server %d", i)
				assert.LessOrEqual(t, cache.Len(), capacity)
			}
			assert.Equal(t, capacity, cache.Len())
			if kind == "dir" {
				assert.Equal(t, capacity, openSessionFDs(t), "dropped sessions' files are closed")
			} else {
				assert.Zero(t, openSessionFDs(t), "a memory cache holds no descriptors")
			}
			assert.Zero(t, sessionLockCount(), "no session file is in use")
			if kind == "dir" {
				entries, err := os.ReadDir(dir)
				require.NoError(t, err)
				assert.Len(t, entries, capacity, "dropped sessions' files are removed")
			}
			// The most recent servers resume; the least recent were
			// dropped and get a full handshake (which drops others).
			for i := servers - capacity; i < servers; i++ {
				assert.True(t, pingDial(t, addrs[i], cfg).SessionResumed(), "server %d", i)
			}
			assert.False(t, pingDial(t, addrs[0], cfg).SessionResumed(), "server 0 was dropped")
			assert.Equal(t, capacity, cache.Len())
		})
	}
}

// A file dropped from a directory cache while a session is copied from or
// to it stays open until that copy is over.
func TestSessionCacheDropsFileInUse(t *testing.T) {
	cache, err := NewDirSessionCache(filepath.Join(t.TempDir(), "sessions"), 1)
	require.NoError(t, err)
	defer cache.Close()
	e, err := cache.acquire(sessionKey{1}, true)
	require.NoError(t, err)
	other, err := cache.acquire(sessionKey{2}, true) // drops the first, which is in use
	require.NoError(t, err)
	cache.release(other)
	require.Equal(t, 1, cache.Len())
	_, err = e.f.Stat()
	require.NoError(t, err, "still open while in use")
	cache.release(e)
	_, err = e.f.Stat()
	require.ErrorIs(t, err, os.ErrClosed, "closed by its last user")
}

// openSessionFDs counts the process's open descriptors of directory
// SessionCache files (named *.session).
func openSessionFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && strings.Contains(target, ".session") {
			n++
		}
	}
	return n
}

// Defect 6d: OpenSessionFile refuses a hard link: libtls truncates and
// rewrites the session file, which would destroy the other name's content.
func TestOpenSessionFileRefusesHardLink(t *testing.T) {
	dir := t.TempDir()
	precious := filepath.Join(dir, "precious")
	require.NoError(t, os.WriteFile(precious, []byte("keep me"), 0o600))
	link := filepath.Join(dir, "session")
	require.NoError(t, os.Link(precious, link))
	f, err := OpenSessionFile(link)
	require.ErrorIs(t, err, ErrUnsafeSessionFile)
	require.Nil(t, f)
	assert.Contains(t, err.Error(), "2 hard links")
	b, err := os.ReadFile(precious)
	require.NoError(t, err)
	assert.Equal(t, "keep me", string(b))
}

// CreateTicketKeyFile creates a private key file and never replaces one.
func TestCreateTicketKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keys")
	set, err := CreateTicketKeyFile(path)
	require.NoError(t, err)
	defer set.Zero()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	got, err := ReadTicketKeyFile(path)
	require.NoError(t, err)
	defer got.Zero()
	assert.Equal(t, set.SessionID, got.SessionID)

	again, err := CreateTicketKeyFile(path)
	require.ErrorIs(t, err, fs.ErrExist)
	require.Nil(t, again)
	assert.Contains(t, err.Error(), path)
	still, err := ReadTicketKeyFile(path)
	require.NoError(t, err)
	defer still.Zero()
	assert.Equal(t, set.SessionID, still.SessionID, "the file is unchanged")
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"keys", "keys.lock"}, names, "no temporary file is left behind")
}
