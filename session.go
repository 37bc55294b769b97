package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"fmt"
	"math"
	"os"
	"time"
)

// Limits of the server session settings, from tls.h and libtls.
const (
	// MaxSessionIDLength is the longest session ID SetSessionID accepts
	// (TLS_MAX_SESSION_ID_LENGTH).
	MaxSessionIDLength = C.TLS_MAX_SESSION_ID_LENGTH
	// MinSessionLifetime and MaxSessionLifetime bound a non-zero session
	// lifetime (libtls refuses anything outside them).
	MinSessionLifetime = 4 * time.Second
	MaxSessionLifetime = 24 * time.Hour
)

// sessionState is what the binding records of a Config's server-side
// session settings, for the ticket-key machinery (ticket.go).
type sessionState struct {
	lifetime time.Duration
	id       []byte // nil until SetSessionID: libtls's random default
	tickets  ticketState
}

// SetSessionFD sets the file descriptor of a client's session file
// (tls_config_set_session_fd). After every successful handshake libtls
// writes the session to it, and every connect reads it back to resume; -1
// disables. The descriptor must refer to a regular file owned by the real
// user ID with mode exactly 0600; otherwise the call fails with libtls's
// message ("session file has incorrect permissions (644 != 600)", ...).
//
// libtls does not check that the descriptor is writable: a read-only
// descriptor is accepted here and the first handshake then fails ("failed to
// truncate session file"). libtls never dups or closes the descriptor: keep
// it open while the Config and every connection built from it live, or use
// SetSessionFile, which does that for you.
func (cfg *Config) SetSessionFD(fd int) error {
	return cfg.setSessionFD(fd, nil)
}

// SetSessionFile is SetSessionFD for an *os.File; nil disables. The Config
// keeps f reachable (so its finalizer cannot close the descriptor under
// libtls) until the Config and every connection built from it are gone. The
// caller still owns f and closes it after those are closed.
func (cfg *Config) SetSessionFile(f *os.File) error {
	if f == nil {
		return cfg.setSessionFD(-1, nil)
	}
	// Fd puts f into blocking mode, which libtls's pread/pwrite expect.
	fd := f.Fd()
	if fd == ^uintptr(0) {
		// A closed f: int(fd) would be -1, silently disabling sessions.
		return &ConfigError{Op: "tls_config_set_session_fd", Msg: "session file is closed", Err: os.ErrClosed}
	}
	return cfg.setSessionFD(int(fd), f)
}

func (cfg *Config) setSessionFD(fd int, f *os.File) error {
	const op = "tls_config_set_session_fd"
	if fd < -1 || fd > math.MaxInt32 {
		return &ConfigError{Op: op, Msg: fmt.Sprintf("invalid file descriptor %d", fd), Err: errInvalid}
	}
	return cfg.call(op, func(c *C.struct_tls_config) C.int {
		rc := C.tls_config_set_session_fd(c, C.int(fd))
		if rc == 0 {
			cfg.sessionFD, cfg.sessionFile = fd, f
		}
		return rc
	})
}

// SetSessionID sets a server's session ID context
// (tls_config_set_session_id): up to MaxSessionIDLength bytes, zero-padded
// by libtls. A session resumes only on a server with the same ID, so the
// processes of a fleet that share ticket keys must share the ID too. The
// default is 32 random bytes per Config. Server only.
func (cfg *Config) SetSessionID(id []byte) error {
	return cfg.call("tls_config_set_session_id", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(id)
		rc := C.tls_config_set_session_id(c, p, n)
		if rc == 0 {
			cfg.session.id = append([]byte{}, id...)
		}
		return rc
	})
}

// SetSessionLifetime sets how long a server's sessions (session tickets)
// stay valid (tls_config_set_session_lifetime). 0, the default, disables
// sessions: no tickets are issued and nothing resumes. Otherwise libtls
// accepts MinSessionLifetime (4s) to MaxSessionLifetime (24h).
//
// libtls counts whole seconds. A duration that is not a whole number of
// seconds is refused with an error rather than truncated, so 1500ms never
// silently becomes 1s.
func (cfg *Config) SetSessionLifetime(d time.Duration) error {
	const op = "tls_config_set_session_lifetime"
	if d%time.Second != 0 {
		return &ConfigError{Op: op, Msg: fmt.Sprintf("session lifetime %v is not a whole number of seconds", d), Err: errInvalid}
	}
	secs := int64(d / time.Second)
	// Out-of-range values are clamped into C's int so that libtls itself
	// reports them ("session lifetime too large/small").
	secs = max(min(secs, math.MaxInt32), math.MinInt32)
	return cfg.call(op, func(c *C.struct_tls_config) C.int {
		rc := C.tls_config_set_session_lifetime(c, C.int(secs))
		if rc == 0 {
			cfg.session.lifetime = d
			cfg.session.tickets.nextCheck.Store(0)
		}
		return rc
	})
}

// useSessionFD points the C configuration at fd without changing what the
// Config records as its own session file: a SessionCache switches the
// file per handshake, under clientMu.
func (cfg *Config) useSessionFD(fd int) error {
	return cfg.call("tls_config_set_session_fd", func(c *C.struct_tls_config) C.int {
		return C.tls_config_set_session_fd(c, C.int(fd))
	})
}

// lockClientSession finds the session file of a client handshake and locks
// it (and, with a SessionCache, the Config's client handshakes) until the
// returned function is called.
func (c *Conn) lockClientSession() (func(), error) {
	cfg := c.cfg
	cfg.mu.RLock()
	cache, fd := cfg.sessionCache, cfg.sessionFD
	cfg.mu.RUnlock()
	if cache != nil {
		f, err := cache.file(sessionKey(c.sni, c.conn.RemoteAddr().String()))
		if err != nil {
			return nil, &Error{Op: "connect", Msg: "session cache: " + err.Error(), Err: err}
		}
		fd := int(f.Fd())
		lk, err := sessionLock(fd)
		if err != nil {
			return nil, &Error{Op: "connect", Msg: "session cache: " + err.Error(), Err: err}
		}
		cfg.clientMu.Lock()
		lk.Lock()
		if err := cfg.useSessionFD(fd); err != nil {
			lk.Unlock()
			cfg.clientMu.Unlock()
			return nil, err
		}
		c.sessionFD, c.sessionKeep = fd, f
		return func() { lk.Unlock(); cfg.clientMu.Unlock() }, nil
	}
	if fd == -1 {
		return func() {}, nil
	}
	lk, err := sessionLock(fd)
	if err != nil {
		// A bad descriptor: libtls reports it at connect.
		return func() {}, nil
	}
	lk.Lock()
	c.sessionFD = fd
	return lk.Unlock, nil
}

// canRetryWithoutSession reports whether a failed client handshake may be
// retried after discarding the stored session: there is one, this is the
// first failure, and nothing has been sent to the server.
func (c *Conn) canRetryWithoutSession() bool {
	if c.sessionFD == -1 || c.sessionErr != nil {
		return false
	}
	c.flushMu.Lock()
	sent := c.sent
	c.flushMu.Unlock()
	return !sent && sessionFileSize(c.sessionFD) > 0
}

// SessionFileError is reported by Conn.SessionFileError when the binding
// discarded a stored session that libtls could not use.
type SessionFileError struct {
	// Err is the libtls error the stored session caused.
	Err error
}

func (e *SessionFileError) Error() string {
	return "libtls: discarded unusable stored session: " + e.Err.Error()
}

func (e *SessionFileError) Unwrap() error { return e.Err }

// discardSession truncates the session file after err and records why.
func (c *Conn) discardSession(err error) error {
	c.sessionErr = &SessionFileError{Err: err}
	if terr := truncateSessionFile(c.sessionFD); terr != nil {
		return &Error{Op: "connect", Msg: "cannot discard stored session: " + terr.Error(), Err: terr}
	}
	return nil
}

// SessionFileError reports whether the client handshake found a stored
// session libtls could not use ("failed to parse session", or on LibreSSL
// "no protocols available" for a TLS 1.2 session under a TLS 1.3-only
// Config). The binding then truncated the session file and completed a
// full handshake, and libtls wrote the new session; the returned
// *SessionFileError holds the original error. nil when nothing happened.
func (c *Conn) SessionFileError() error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.sessionErr == nil {
		return nil
	}
	return c.sessionErr
}
