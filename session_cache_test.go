package libtls

import (
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ticketServer starts a TLS 1.2 server that issues session tickets: golibtls
// where the backend's servers resume (LibreSSL), crypto/tls otherwise.
func ticketServer(t testing.TB) string {
	if Backend().ServerSessionResumption {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.SetProtocols(ProtocolTLSv1_2))
		require.NoError(t, cfg.SetSessionLifetime(time.Hour))
		return libtlsServer(t, cfg, echo).Addr
	}
	return goServer(t, tls12Server(t), echo).Addr
}

// One client Config with a SessionCache resumes with each of three servers
// that have different ticket keys; a single session file would keep only the
// last server's session.
func TestSessionCachePerServer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cache func(t *testing.T) *SessionCache
	}{
		{"memory", func(t *testing.T) *SessionCache { return NewMemorySessionCache(0) }},
		{"dir", func(t *testing.T) *SessionCache {
			c, err := NewDirSessionCache(filepath.Join(t.TempDir(), "sessions"), 0)
			require.NoError(t, err)
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs := []string{ticketServer(t), ticketServer(t), ticketServer(t)}
			cache := tc.cache(t)
			defer cache.Close()
			cfg := newClientConfig(t)
			require.NoError(t, cfg.SetSessionCache(cache))
			for round := range 3 {
				for i, addr := range addrs {
					c := pingDial(t, addr, cfg)
					assert.Equal(t, round > 0, c.SessionResumed(), "round %d server %d", round, i)
				}
			}
			assert.Equal(t, 3, cache.Len())
		})
	}
}

// The directory cache survives a restart: a new cache on the same directory
// resumes.
func TestSessionCacheDirSurvivesRestart(t *testing.T) {
	addr := ticketServer(t)
	dir := filepath.Join(t.TempDir(), "sessions")
	for i := range 2 {
		cache, err := NewDirSessionCache(dir, 0)
		require.NoError(t, err)
		cfg := newClientConfig(t)
		require.NoError(t, cfg.SetSessionCache(cache))
		c := pingDial(t, addr, cfg)
		assert.Equal(t, i == 1, c.SessionResumed())
		require.NoError(t, cfg.Close())
		require.NoError(t, cache.Close())
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	fi, err := os.Stat(filepath.Join(dir, entries[0].Name()))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestSessionCacheConcurrent(t *testing.T) {
	addrs := []string{ticketServer(t), ticketServer(t)}
	cache := NewMemorySessionCache(0)
	defer cache.Close()
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetSessionCache(cache))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				c, err := Dial("tcp", addrs[(w+i)%2], cfg)
				if err == nil {
					_, err = c.Write([]byte{1})
				}
				if err == nil {
					_, err = io.ReadFull(c, make([]byte, 1))
				}
				if c != nil {
					c.Close()
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, 2, cache.Len())
	// Every server's session is stored: the next dial to each resumes.
	for _, a := range addrs {
		assert.True(t, pingDial(t, a, cfg).SessionResumed())
	}
}

func TestNewDirSessionCacheRefusesOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	_, err := NewDirSessionCache(dir, 0)
	require.ErrorIs(t, err, ErrUnsafeSessionFile)
}

func TestSessionCacheClosed(t *testing.T) {
	cache := NewMemorySessionCache(0)
	require.NoError(t, cache.Close())
	require.NoError(t, cache.Close())
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetSessionCache(cache))
	addr := goServer(t, tls12Server(t), echo).Addr
	_, err := Dial("tcp", addr, cfg)
	require.ErrorIs(t, err, net.ErrClosed)
}

func TestOpenSessionFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")

	f, err := OpenSessionFile(path)
	require.NoError(t, err)
	fi, err := f.Stat()
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetSessionFile(f), "libtls accepts what OpenSessionFile makes")
	require.NoError(t, f.Close())

	f, err = OpenSessionFile(path) // existing, good
	require.NoError(t, err)
	f.Close()

	bad := map[string]func(t *testing.T) string{
		"symlink": func(t *testing.T) string {
			p := filepath.Join(dir, "link")
			require.NoError(t, os.Symlink(path, p))
			return p
		},
		"group bits": func(t *testing.T) string {
			p := filepath.Join(dir, "g")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			require.NoError(t, os.Chmod(p, 0o640))
			return p
		},
		"world bits": func(t *testing.T) string {
			p := filepath.Join(dir, "w")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			require.NoError(t, os.Chmod(p, 0o604))
			return p
		},
		"directory": func(t *testing.T) string {
			p := filepath.Join(dir, "d")
			require.NoError(t, os.Mkdir(p, 0o700))
			return p
		},
	}
	if os.Getuid() == 0 {
		bad["other owner"] = func(t *testing.T) string {
			p := filepath.Join(dir, "o")
			require.NoError(t, os.WriteFile(p, nil, 0o600))
			require.NoError(t, os.Chown(p, 65534, 65534))
			return p
		}
	}
	for name, mk := range bad {
		t.Run(name, func(t *testing.T) {
			p := mk(t)
			before, err := os.Lstat(p)
			require.NoError(t, err)
			_, err = OpenSessionFile(p)
			require.Error(t, err)
			if name != "directory" { // opening a directory O_RDWR fails first (EISDIR)
				assert.ErrorIs(t, err, ErrUnsafeSessionFile)
			}
			after, err := os.Lstat(p)
			require.NoError(t, err)
			assert.Equal(t, before.Mode(), after.Mode(), "the file is left as it was")
		})
	}
}
