package libtls

import (
	"bytes"
	"container/list"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// DefaultSessionCacheCapacity is the capacity of a SessionCache made with a
// capacity below 1, as for crypto/tls.NewLRUClientSessionCache.
const DefaultSessionCacheCapacity = 64

// SessionCache keeps a client's sessions, one per server, for any number
// of Configs; it works like crypto/tls's ClientSessionCache. libtls keeps one
// session per configuration (its session file); with a SessionCache set
// (Config.SetSessionCache) a client resumes with each of the servers it
// talks to.
//
// A session is stored under the server name, the server's address and the
// Config's trust: everything that decides whether the session may be
// resumed (the CA certificates, CA path and CRL, the verify and insecure
// settings, the client certificate, the protocols and ciphers). A session
// made by one Config is therefore offered to another Config sharing the
// cache only when both would verify the server alike and present the same
// client certificate, and never to another server name or address.
//
// The cache holds at most its capacity of sessions. When a new one would
// exceed it, the least recently used is dropped, as
// crypto/tls.NewLRUClientSessionCache does (a directory cache removes its
// file).
//
// Sessions stay in libtls's format: the binding copies a session into the
// handshake's own libtls session file before the handshake and back after
// it, so the client handshakes of a Config run in parallel.
//
// A SessionCache is safe for concurrent use and may be shared by Configs.
type SessionCache struct {
	dir      string // "" keeps sessions in memory
	capacity int

	mu      sync.Mutex
	entries map[sessionKey]*list.Element // of *sessionEntry
	lru     list.List                    // most recently used first
	closed  bool
}

// sessionEntry is one server's session: bytes in memory, or a file of a
// directory cache. mu guards the session while it is copied; users counts
// the copies in progress, and a dropped entry's file is closed by the last
// of them.
type sessionEntry struct {
	key     sessionKey
	mu      sync.Mutex
	pem     []byte   // memory cache; zeroed when replaced or dropped
	path    string   // directory cache
	f       *os.File // directory cache
	users   int      // guarded by SessionCache.mu
	dropped bool     // guarded by SessionCache.mu
}

// NewMemorySessionCache returns a cache that keeps sessions in memory
// (zeroed when dropped) and never touches a disk. It holds at most
// capacity sessions (DefaultSessionCacheCapacity if capacity < 1).
func NewMemorySessionCache(capacity int) *SessionCache {
	return newSessionCache("", capacity)
}

// NewDirSessionCache returns a cache that keeps each session in a file of
// dir (created with mode 0700 when missing), named after the session's key,
// so sessions survive restarts. It holds at most capacity sessions
// (DefaultSessionCacheCapacity if capacity < 1), each an open descriptor; a
// dropped session's file is removed. The session files hold master
// secrets: dir must be private.
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
	return &SessionCache{dir: dir, capacity: capacity, entries: make(map[sessionKey]*list.Element)}
}

// errCacheClosed is the error of a closed cache.
var errCacheClosed = fmt.Errorf("session cache: %w", ErrClosed)

// acquire returns the entry of key, marked in use until release, or nil
// when there is none and create is false. A directory cache finds a
// session a previous run stored.
func (s *SessionCache) acquire(key sessionKey, create bool) (*sessionEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errCacheClosed
	}
	if el := s.entries[key]; el != nil {
		s.lru.MoveToFront(el)
		e := el.Value.(*sessionEntry)
		e.users++
		return e, nil
	}
	e := &sessionEntry{key: key, users: 1}
	if s.dir != "" {
		e.path = filepath.Join(s.dir, hex.EncodeToString(key[:16])+".session")
		var err error
		if create {
			e.f, err = OpenSessionFile(e.path)
		} else {
			e.f, err = os.OpenFile(e.path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
			if err == nil {
				if cerr := checkSessionFile(e.f); cerr != nil {
					e.f.Close()
					err = fmt.Errorf("session file %s: %w", e.path, cerr)
				}
			}
		}
		if errors.Is(err, fs.ErrNotExist) && !create {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
	} else if !create {
		return nil, nil
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
		e.close()
	}
}

// close frees what the entry holds; called once no copy is in progress.
func (e *sessionEntry) close() error {
	clear(e.pem)
	e.pem = nil
	if e.f != nil {
		return e.f.Close()
	}
	return nil
}

// dropLocked removes e from the cache; its session is freed now or, while
// a copy is in progress, by that copy's release. Called with s.mu held.
func (s *SessionCache) dropLocked(e *sessionEntry) error {
	if el := s.entries[e.key]; el != nil && el.Value == e {
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
		if cerr := e.close(); err == nil {
			err = cerr
		}
	}
	return err
}

func (s *SessionCache) load(ctx context.Context, closing <-chan struct{}, key sessionKey, dst []byte) ([]byte, error) {
	e, err := s.acquire(key, false)
	if e == nil {
		return dst, err
	}
	defer s.release(e)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return append(dst, e.pem...), nil
	}
	start := len(dst)
	b, err := preadAll(int(e.f.Fd()), dst)
	if err != nil {
		clear(b[start:])
		return b[:start], err
	}
	return b, nil
}

func (s *SessionCache) save(key sessionKey, pem []byte) error {
	if len(pem) == 0 {
		return s.discard(key, nil)
	}
	e, err := s.acquire(key, true)
	if err != nil {
		return err
	}
	defer s.release(e)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		if cap(e.pem) >= len(pem) {
			clear(e.pem)
			e.pem = append(e.pem[:0], pem...)
		} else {
			clear(e.pem)
			e.pem = append([]byte(nil), pem...)
		}
		return nil
	}
	fd := int(e.f.Fd())
	if err := pwriteAll(fd, pem); err != nil {
		return err
	}
	return ftruncate(fd, int64(len(pem)))
}

// discard drops the session under key if it is pem (any session if pem
// is nil).
func (s *SessionCache) discard(key sessionKey, pem []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	el := s.entries[key]
	if el == nil {
		return nil
	}
	e := el.Value.(*sessionEntry)
	if pem != nil {
		e.mu.Lock()
		var cur []byte
		if e.f == nil {
			cur = e.pem
		} else {
			cur, _ = preadAll(int(e.f.Fd()), nil)
			defer clear(cur)
		}
		same := bytes.Equal(cur, pem)
		e.mu.Unlock()
		if !same {
			return nil
		}
	}
	return s.dropLocked(e)
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
			if err := e.close(); err != nil && first == nil {
				first = err
			}
		}
	}
	s.entries = nil
	s.lru.Init()
	return first
}

// Len reports how many sessions the cache holds.
func (s *SessionCache) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// SetSessionCache makes client connections of this Config keep one session
// per server in c (nil turns it off). It takes precedence over
// SetSessionFile/SetSessionFD. Handshakes already running finish with the
// setting they started with.
func (cfg *Config) SetSessionCache(c *SessionCache) error {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed {
		return errConfigClosed("SetSessionCache")
	}
	cfg.sessionCache = c
	return nil
}
