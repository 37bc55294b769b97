package libtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pingDial dials with cfg, exchanges a byte and closes.
func pingDial(t testing.TB, addr string, cfg *Config) *Conn {
	t.Helper()
	c, err := Dial("tcp", addr, cfg)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
	_, err = c.Write([]byte{1})
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	return c
}

func tls12Server(t testing.TB) *tls.Config {
	g := goServerConfig(t)
	g.MaxVersion = tls.VersionTLS12
	return g
}

// A stored session libtls cannot use must not break the client: the binding
// discards it, completes a full handshake, stores the new session and the
// next connection resumes. A file without the binding's key line is not
// offered at all.
func TestSessionFileRecovery(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	// A session issued by a different server (other ticket keys).
	other := goServer(t, tls12Server(t), echo)
	otherSession := func() []byte {
		cfg := newClientConfig(t)
		f := sessionFile(t)
		require.NoError(t, cfg.SetSessionFile(f))
		pingDial(t, other.Addr, cfg)
		pem, ok := storedSession(t, f)
		require.True(t, ok)
		require.Contains(t, string(pem), "BEGIN SSL SESSION PARAMETERS")
		return pem
	}()

	cases := []struct {
		name      string
		content   []byte
		keyed     bool // stored under the key of the connections below
		discarded bool // the binding had to discard the stored session
	}{
		{"empty", nil, false, false},
		{"garbage", []byte("this is not a session\n"), true, true},
		{"truncated PEM", otherSession[:len(otherSession)/2], true, true},
		{"session of another server", otherSession, true, false},
		{"binary", []byte{0, 1, 2, 3, 0xff}, true, true},
		{"garbage without key line", []byte("this is not a session\n"), false, false},
		{"session without key line", otherSession, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newClientConfig(t)
			f := sessionFile(t)
			if tc.keyed {
				storeSession(t, f, cfg, "127.0.0.1", srv.Addr, tc.content)
			} else {
				require.NoError(t, os.WriteFile(f.Name(), tc.content, 0o600))
			}
			require.NoError(t, cfg.SetSessionFile(f))

			c := pingDial(t, srv.Addr, cfg)
			assert.False(t, c.SessionResumed())
			if tc.discarded {
				var sfe *SessionFileError
				require.ErrorAs(t, c.SessionFileError(), &sfe)
				assert.Equal(t, "discard", sfe.Op)
				assert.Contains(t, sfe.Error(), "failed to parse session")
			} else {
				assert.NoError(t, c.SessionFileError())
			}
			pem, ok := storedSession(t, f)
			assert.True(t, ok, "file rewritten with a key line")
			assert.True(t, strings.HasPrefix(string(pem), "-----BEGIN SSL SESSION PARAMETERS-----"), "file rewritten with a session")

			c = pingDial(t, srv.Addr, cfg)
			assert.True(t, c.SessionResumed(), "the rewritten session resumes")
			assert.NoError(t, c.SessionFileError())
		})
	}
}

// LibreSSL pins a client with a stored TLS 1.2 session to TLS 1.2, so a TLS
// 1.3-only Config fails every connect ("no protocols available") until the
// file is truncated. The binding stores sessions under the Config's
// protocols: a TLS 1.3-only Config sharing the file is not offered the TLS
// 1.2 session at all. A TLS 1.2 session stored under its key anyway (by
// hand) is discarded on LibreSSL and reported; LibreTLS negotiates TLS 1.3
// and ignores it.
func TestSessionFileTLS12UnderTLS13OnlyConfig(t *testing.T) {
	srv := goServer(t, goServerConfig(t), echo)
	f := sessionFile(t)
	cfg12 := newClientConfig(t)
	require.NoError(t, cfg12.SetProtocols(ProtocolTLSv1_2))
	require.NoError(t, cfg12.SetSessionFile(f))
	pingDial(t, srv.Addr, cfg12)
	tls12Session, keyed := storedSession(t, f)
	require.True(t, keyed)

	cfg13 := newClientConfig(t)
	require.NoError(t, cfg13.SetProtocols(ProtocolTLSv1_3))
	require.NoError(t, cfg13.SetSessionFile(f))
	c := pingDial(t, srv.Addr, cfg13)
	assert.Equal(t, "TLSv1.3", c.ConnInfo().Version)
	assert.NoError(t, c.SessionFileError(), "the TLS 1.2 session was not offered")

	storeSession(t, f, cfg13, "127.0.0.1", srv.Addr, tls12Session)
	c = pingDial(t, srv.Addr, cfg13)
	assert.Equal(t, "TLSv1.3", c.ConnInfo().Version)
	if Backend().StoredSessionPinsTLS12 {
		var sfe *SessionFileError
		require.ErrorAs(t, c.SessionFileError(), &sfe)
		assert.Contains(t, sfe.Error(), "no protocols available")
	} else {
		assert.NoError(t, c.SessionFileError())
	}
}

// Hazard 1: many goroutines dialing through one Config with one session
// file. Each handshake reads the file before its connect and rewrites it at
// its end; the binding copies under the file's lock, and the handshakes run
// in parallel.
func TestSessionFileConcurrentClients(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	cfg := newClientConfig(t)
	f := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(f))
	pingDial(t, srv.Addr, cfg) // a first, full handshake

	const workers = 64
	deadline := time.Now().Add(concurrentClientsDuration)
	var wg sync.WaitGroup
	var ok, resumed, failed atomic.Int64
	errs := make(chan error, workers)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(deadline) && i < 10000; i++ {
				c, err := Dial("tcp", srv.Addr, cfg)
				if err == nil {
					_, err = c.Write([]byte{1})
				}
				if err == nil {
					_, err = io.ReadFull(c, make([]byte, 1))
				}
				if err != nil {
					failed.Add(1)
					select {
					case errs <- err:
					default:
					}
				} else {
					ok.Add(1)
					if c.SessionResumed() {
						resumed.Add(1)
					}
					if err := c.SessionFileError(); err != nil {
						failed.Add(1) // a torn file was read
						select {
						case errs <- err:
						default:
						}
					}
				}
				if c != nil {
					c.Close()
				}
			}
		}()
	}
	// Meanwhile a writer rewrites the file as libtls does (ftruncate,
	// then pwrite), slowly: it widens the window in which an unlocked
	// read would see a torn file ("failed to parse session", which the
	// binding would then have to recover from). It takes the lock the
	// binding holds for its copies.
	var torn atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Now().Before(deadline) {
			unlock, err := lockSessionFile(context.Background(), nil, int(f.Fd()))
			if err != nil {
				panic(err) // cannot fail on an open file without a deadline
			}
			b, err := os.ReadFile(f.Name())
			if err == nil && len(b) > 0 {
				_ = f.Truncate(int64(len(b) / 2))
				time.Sleep(2 * time.Millisecond)
				_, _ = f.WriteAt(b, 0)
				torn.Add(1)
			}
			unlock()
			time.Sleep(time.Millisecond)
		}
	}()
	wg.Wait()
	<-done
	close(errs)
	for err := range errs {
		t.Errorf("dial failed: %v", err)
	}
	t.Logf("%d handshakes, %d resumed, %d failed", ok.Load(), resumed.Load(), failed.Load())
	assert.Zero(t, failed.Load())
	assert.Greater(t, ok.Load(), int64(workers))
	assert.Greater(t, resumed.Load(), ok.Load()*9/10, "most handshakes resume")
	assert.Greater(t, torn.Load(), int64(10), "the torn writer ran")
	pem, keyed := storedSession(t, f)
	assert.True(t, keyed, "a key line follows the session")
	assert.True(t, strings.HasSuffix(string(pem), "-----END SSL SESSION PARAMETERS-----\n"))
}

const concurrentClientsDuration = 10 * time.Second

// A server configured with sessions reads the lifetime during its
// handshakes; setting it back to 0 would fail every ticket-requesting
// handshake, so it is refused, while other lifetimes are accepted.
func TestSessionLifetimeZeroRefusedWhileServing(t *testing.T) {
	cfg := newServerConfig(t)
	require.NoError(t, cfg.SetSessionLifetime(0), "no server yet")
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	defer srv.Close()
	err = cfg.SetSessionLifetime(0)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "tls_config_set_session_lifetime", ce.Op)
	require.Contains(t, ce.Msg, "cannot disable sessions")
	require.NoError(t, cfg.SetSessionLifetime(2*time.Hour))
}

// Only libtls's own refusal of a stored session discards it: a transport
// failure before anything was sent (here, a peer that is already gone)
// leaves a good session in place.
func TestSessionKeptOnTransportFailure(t *testing.T) {
	srv := goServer(t, tls12Server(t), echo)
	cfg := newClientConfig(t)
	f := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(f))
	pingDial(t, srv.Addr, cfg)
	before, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.NotEmpty(t, before)

	a, b := net.Pipe()
	b.Close()
	c, err := Client(a, cfg, "localhost")
	require.NoError(t, err)
	defer c.Close()
	require.Error(t, c.Handshake())
	assert.NoError(t, c.SessionFileError())
	after, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.Equal(t, before, after, "the stored session is kept")
	assert.True(t, pingDial(t, srv.Addr, cfg).SessionResumed())
}

// A client waiting for a session file that another handshake holds still
// honours its context.
func TestSessionLockWaitHonoursContext(t *testing.T) {
	cfg := newClientConfig(t)
	f := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(f))
	unlock, err := lockSessionFile(context.Background(), nil, int(f.Fd())) // another handshake holds it
	require.NoError(t, err)
	defer unlock()

	a, b := net.Pipe()
	defer b.Close()
	c, err := Client(a, cfg, "localhost")
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = c.HandshakeContext(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 5*time.Second)
}

// After a SessionCache is turned off, libtls no longer points at the
// cache's files: a later dial writes the Config's own session file (here:
// none), never a cache file.
func TestSessionCacheOffRestoresSessionFile(t *testing.T) {
	addr := goServer(t, tls12Server(t), echo).Addr
	cfg := newClientConfig(t)
	own := sessionFile(t)
	require.NoError(t, cfg.SetSessionFile(own))
	dir := t.TempDir() + "/cache"
	cache, err := NewDirSessionCache(dir, 0)
	require.NoError(t, err)
	require.NoError(t, cfg.SetSessionCache(cache))
	pingDial(t, addr, cfg)
	fi, err := own.Stat()
	require.NoError(t, err)
	require.Zero(t, fi.Size(), "the cache's file was used, not the Config's")

	require.NoError(t, cfg.SetSessionCache(nil))
	require.NoError(t, cache.Close())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	cacheFile := dir + "/" + entries[0].Name()
	cached, err := os.ReadFile(cacheFile)
	require.NoError(t, err)

	c := pingDial(t, addr, cfg)
	assert.False(t, c.SessionResumed(), "the Config's own file was empty")
	fi, err = own.Stat()
	require.NoError(t, err)
	assert.NotZero(t, fi.Size(), "libtls wrote the Config's own file")
	again, err := os.ReadFile(cacheFile)
	require.NoError(t, err)
	assert.Equal(t, cached, again, "the cache file is left alone")
}

// A session file store rewrites the file with one pwrite, and truncates it
// only when the new session is shorter than what the file held when the
// store last read or wrote it (one system call less per handshake: a
// server's sessions are usually as long as each other). Should another
// process have lengthened the file meanwhile, its tail stays after the
// key line, where neither the store nor libtls reads.
func TestFileSessionStoreTruncates(t *testing.T) {
	f := sessionFile(t)
	id, err := fileIDOf(int(f.Fd()))
	require.NoError(t, err)
	s := &fileSessionStore{f: f, fd: int(f.Fd()), id: id}
	var k1, k2 sessionKey
	k1[0], k2[0] = 1, 2
	pemOf := func(n int) []byte {
		return append(append([]byte("-----BEGIN SSL SESSION PARAMETERS-----\n"), bytes.Repeat([]byte("A"), n)...), "\n"+string(pemEnd)...)
	}
	size := func() int64 {
		st, err := f.Stat()
		require.NoError(t, err)
		return st.Size()
	}
	long, short := pemOf(300), pemOf(100)
	require.NoError(t, s.save(k1, long))
	got, err := s.load(context.Background(), nil, k1, nil)
	require.NoError(t, err)
	require.Equal(t, long, got)
	full := size()

	require.NoError(t, s.save(k1, short))
	require.Less(t, size(), full, "a shorter session truncates the file")
	got, err = s.load(context.Background(), nil, k1, nil)
	require.NoError(t, err)
	require.Equal(t, short, got)

	// Another process lengthens the file behind the store's back.
	_, err = f.WriteAt(bytes.Repeat([]byte("x"), 2000), 0)
	require.NoError(t, err)
	require.NoError(t, s.save(k2, short))
	require.Equal(t, int64(2000), size(), "the tail stays")
	got, err = s.load(context.Background(), nil, k2, nil)
	require.NoError(t, err)
	require.Equal(t, short, got, "the session before the tail is read")
	got, err = s.load(context.Background(), nil, k1, nil)
	require.NoError(t, err)
	require.Empty(t, got, "another key's session is not offered")
	require.NoError(t, s.save(k2, short))
	require.Less(t, size(), int64(2000), "the next save, knowing the length, truncates")
}
