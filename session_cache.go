package libtls

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// SessionCache keeps a client's sessions per server. libtls keeps one
// session per Config (its session file); a Go client talks to many servers,
// so with a SessionCache set (Config.SetSessionCache) each server gets a
// session file of its own, keyed by the server name and address, and a
// client resumes with each of several servers.
//
// Cost: libtls takes the session file from the Config, so the binding
// switches the Config's session file for each client handshake and runs the
// client handshakes of one Config one at a time (from connect to the end of
// the handshake; reads and writes afterwards are not serialized). Servers
// built from the same Config are not affected.
//
// A SessionCache is safe for concurrent use and may be shared by Configs.
type SessionCache struct {
	dir string // "" keeps sessions in memory

	mu     sync.Mutex
	files  map[string]*os.File
	closed bool
}

// NewMemorySessionCache returns a cache that never touches a disk: each
// server's session lives in an anonymous in-memory file (Linux memfd), the
// regular 0600 file libtls demands.
func NewMemorySessionCache() *SessionCache {
	return &SessionCache{files: make(map[string]*os.File)}
}

// NewDirSessionCache returns a cache that keeps each server's session in a
// file of dir (created with mode 0700 when missing), so sessions survive
// restarts. The session files hold master secrets: dir must be private.
func NewDirSessionCache(dir string) (*SessionCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session cache directory %s: %w: mode %#o lets others in", dir, ErrUnsafeSessionFile, fi.Mode().Perm())
	}
	return &SessionCache{dir: dir, files: make(map[string]*os.File)}, nil
}

// sessionKey names the server a client connection talks to.
func sessionKey(serverName, addr string) string { return serverName + "|" + addr }

// file returns the session file of a server, opening it on first use.
func (s *SessionCache) file(key string) (*os.File, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("session cache: %w", ErrClosed)
	}
	if f := s.files[key]; f != nil {
		return f, nil
	}
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:16]) + ".session"
	var f *os.File
	var err error
	if s.dir == "" {
		f, err = newMemorySessionFile("golibtls-" + name)
	} else {
		f, err = OpenSessionFile(filepath.Join(s.dir, name))
	}
	if err != nil {
		return nil, err
	}
	s.files[key] = f
	return f, nil
}

// Close closes the cache's files. Close the Configs and connections using
// the cache first.
func (s *SessionCache) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	s.files = nil
	return first
}

// Len reports how many servers the cache holds a session file for.
func (s *SessionCache) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// SetSessionCache makes client connections of this Config keep one session
// per server in c (nil turns it off). It takes precedence over
// SetSessionFile/SetSessionFD. See SessionCache for what it costs.
func (cfg *Config) SetSessionCache(c *SessionCache) error {
	// Wait for client handshakes running under the old setting.
	release := cfg.quiesceClientSessions()
	defer release()
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed {
		return errConfigClosed("SetSessionCache")
	}
	cfg.sessionCache = c
	return nil
}
