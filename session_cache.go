package libtls

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// DefaultSessionCacheCapacity is the capacity of a SessionCache made with a
// capacity below 1, as for crypto/tls.NewLRUClientSessionCache.
const DefaultSessionCacheCapacity = 64

// SessionCache keeps a client's sessions per server. libtls keeps one
// session per Config (its session file); a Go client talks to many servers,
// so with a SessionCache set (Config.SetSessionCache) each server gets a
// session file of its own, keyed by the server name and address, and a
// client resumes with each of several servers.
//
// The cache holds at most its capacity of servers, each an open file
// descriptor. When a new server would exceed it, the least recently used
// server's session is dropped, as crypto/tls.NewLRUClientSessionCache does:
// its file is closed (and, for a directory cache, removed) once no
// handshake uses it.
//
// Cost: libtls takes the session file from the Config, so the binding
// switches the Config's session file for each client handshake and runs the
// client handshakes of one Config one at a time (from connect to the end of
// the handshake; reads and writes afterwards are not serialized). Servers
// built from the same Config are not affected.
//
// A SessionCache is safe for concurrent use and may be shared by Configs.
type SessionCache struct {
	dir      string // "" keeps sessions in memory
	capacity int

	mu      sync.Mutex
	entries map[string]*list.Element // of *sessionEntry
	lru     list.List                // most recently used first
	closed  bool
}

// sessionEntry is one server's session file. users counts the handshakes
// using it; a dropped entry's file is closed by the last of them.
type sessionEntry struct {
	key     string
	path    string // "" for a memory file
	f       *os.File
	users   int
	dropped bool
}

// NewMemorySessionCache returns a cache that never touches a disk: each
// server's session lives in an anonymous in-memory file (Linux memfd), the
// regular 0600 file libtls demands. It holds at most capacity servers
// (DefaultSessionCacheCapacity if capacity < 1).
func NewMemorySessionCache(capacity int) *SessionCache {
	return newSessionCache("", capacity)
}

// NewDirSessionCache returns a cache that keeps each server's session in a
// file of dir (created with mode 0700 when missing), so sessions survive
// restarts. It holds at most capacity servers (DefaultSessionCacheCapacity
// if capacity < 1); a dropped server's file is removed. The session files
// hold master secrets: dir must be private.
func NewDirSessionCache(dir string, capacity int) (*SessionCache, error) {
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
	return newSessionCache(dir, capacity), nil
}

func newSessionCache(dir string, capacity int) *SessionCache {
	if capacity < 1 {
		capacity = DefaultSessionCacheCapacity
	}
	return &SessionCache{dir: dir, capacity: capacity, entries: make(map[string]*list.Element)}
}

// sessionKey names the server a client connection talks to.
func sessionKey(serverName, addr string) string { return serverName + "|" + addr }

// acquire returns the session file of a server, opening it on first use,
// and marks it used until release is called.
func (s *SessionCache) acquire(key string) (*sessionEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("session cache: %w", ErrClosed)
	}
	if el := s.entries[key]; el != nil {
		s.lru.MoveToFront(el)
		e := el.Value.(*sessionEntry)
		e.users++
		return e, nil
	}
	sum := sha256.Sum256([]byte(key))
	name := hex.EncodeToString(sum[:16]) + ".session"
	e := &sessionEntry{key: key, users: 1}
	var err error
	if s.dir == "" {
		e.f, err = newMemorySessionFile("golibtls-" + name)
	} else {
		e.path = filepath.Join(s.dir, name)
		e.f, err = OpenSessionFile(e.path)
	}
	if err != nil {
		return nil, err
	}
	s.entries[key] = s.lru.PushFront(e)
	for s.lru.Len() > s.capacity {
		s.dropLocked(s.lru.Back().Value.(*sessionEntry))
	}
	return e, nil
}

// release ends a use of e begun by acquire.
func (s *SessionCache) release(e *sessionEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.users--
	if e.dropped && e.users == 0 {
		e.f.Close()
	}
}

// dropLocked removes e from the cache; its file is closed now or, while a
// handshake uses it, by that handshake's release. Called with s.mu held.
func (s *SessionCache) dropLocked(e *sessionEntry) error {
	if el := s.entries[e.key]; el != nil {
		s.lru.Remove(el)
		delete(s.entries, e.key)
	}
	e.dropped = true
	var err error
	if e.path != "" {
		// Removing the name leaves an open descriptor working.
		if rerr := os.Remove(e.path); rerr != nil && !os.IsNotExist(rerr) {
			err = rerr
		}
	}
	if e.users == 0 {
		if cerr := e.f.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// Close closes the cache's files (those in use when their handshakes end);
// a directory cache's files stay on disk for the next run. Close the Configs
// and connections using the cache first.
func (s *SessionCache) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, el := range s.entries {
		e := el.Value.(*sessionEntry)
		e.dropped = true
		if e.users == 0 {
			if err := e.f.Close(); err != nil && first == nil {
				first = err
			}
		}
	}
	s.entries = nil
	s.lru.Init()
	return first
}

// Len reports how many servers the cache holds a session file for.
func (s *SessionCache) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
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
