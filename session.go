package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
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
	serving  bool   // a server context was configured with lifetime > 0
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
//
// libtls reads the file in every connect and rewrites it (ftruncate, pwrite,
// no locking) at the end of every client handshake, so the binding runs the
// client handshakes on one session file one at a time, from connect to the
// end of the handshake; reads and writes afterwards run concurrently. Many
// goroutines dialing through one Config therefore queue for the file: use
// a SessionCache, or one Config and file per worker, when handshake
// concurrency matters. A waiting handshake still honours its context,
// deadline and Close. SetSessionFD itself waits for the handshakes running
// on the old file.
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
	// libtls reads the descriptor again at the end of every client
	// handshake: wait for the handshakes running on the old file (and for
	// SessionCache handshakes, which point the C config elsewhere).
	release := cfg.quiesceClientSessions()
	defer release()
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
// silently becomes 1s. Once a server has been built from the Config with
// sessions enabled, the lifetime can change but not go back to 0: libtls
// reads it during that server's handshakes, and 0 would fail every one
// that asks for a ticket.
func (cfg *Config) SetSessionLifetime(d time.Duration) error {
	const op = "tls_config_set_session_lifetime"
	if d%time.Second != 0 {
		return &ConfigError{Op: op, Msg: fmt.Sprintf("session lifetime %v is not a whole number of seconds", d), Err: errInvalid}
	}
	secs := int64(d / time.Second)
	// Out-of-range values are clamped into C's int so that libtls itself
	// reports them ("session lifetime too large/small").
	secs = max(min(secs, math.MaxInt32), math.MinInt32)
	var refused error
	err := cfg.call(op, func(c *C.struct_tls_config) C.int {
		// Checked under the same write lock as NewServer records what it
		// configured (see configure), so neither can slip between the
		// other's check and set.
		if secs == 0 && cfg.session.serving {
			// libtls reads the lifetime during every handshake of a
			// server configured with tickets: with 0 every key counts as
			// expired and every ticket-requesting handshake fails.
			refused = &ConfigError{Op: op, Msg: "cannot disable sessions of a Config that servers with sessions use; build a new Config", Err: errInvalid}
			return 0
		}
		rc := C.tls_config_set_session_lifetime(c, C.int(secs))
		if rc == 0 {
			cfg.session.lifetime = d
			cfg.session.tickets.nextCheck.Store(0)
		}
		return rc
	})
	if refused != nil {
		return refused
	}
	return err
}

// useSessionFD points the C configuration at fd without changing what the
// Config records as its own session file: a SessionCache switches the
// file for each handshake and switches it back afterwards.
func (cfg *Config) useSessionFD(fd int) error {
	return cfg.call("tls_config_set_session_fd", func(c *C.struct_tls_config) C.int {
		return C.tls_config_set_session_fd(c, C.int(fd))
	})
}

// quiesceClientSessions waits until no client handshake of cfg runs on its
// session file or through its SessionCache, and keeps new ones from
// starting until the returned function is called. Lock order: the
// Config's client semaphore, then a session file's, then Config.mu.
func (cfg *Config) quiesceClientSessions() func() {
	_ = cfg.clientSem.acquire(context.Background(), nil)
	cfg.mu.RLock()
	fd := cfg.sessionFD
	cfg.mu.RUnlock()
	if fd == -1 {
		return cfg.clientSem.release
	}
	unlock, err := lockSessionFile(context.Background(), nil, fd)
	if err != nil {
		return cfg.clientSem.release
	}
	return func() { unlock(); cfg.clientSem.release() }
}

// lockClientSession finds the session file of a client handshake and locks
// it (and, with a SessionCache, the Config's client handshakes) until the
// returned function is called. Waiting ends with ctx or Close.
func (c *Conn) lockClientSession(ctx context.Context) (func(), error) {
	cfg := c.cfg
	// The settings may change while this waits: re-check them once the
	// locks are held, and start over (a bounded number of times).
	for range 8 {
		cfg.mu.RLock()
		cache, fd := cfg.sessionCache, cfg.sessionFD
		cfg.mu.RUnlock()
		if cache == nil && fd == -1 {
			return func() {}, nil
		}
		if err := cfg.clientSem.acquire(ctx, c.closing); err != nil {
			return nil, err
		}
		var entry *sessionEntry
		releaseEntry := func() {}
		if cache != nil {
			addr := ""
			if ra := c.conn.RemoteAddr(); ra != nil {
				addr = ra.String()
			}
			var err error
			entry, err = cache.acquire(sessionKey(c.sni, addr))
			if err != nil {
				cfg.clientSem.release()
				return nil, &Error{Op: "connect", Msg: "session cache: " + err.Error(), Err: err}
			}
			// The file stays open until this handshake is over, even if
			// the cache drops it meanwhile.
			releaseEntry = func() { cache.release(entry) }
			fd = int(entry.f.Fd())
		}
		unlock, err := lockSessionFile(ctx, c.closing, fd)
		if err != nil {
			releaseEntry()
			cfg.clientSem.release()
			var pe *os.PathError
			if errors.As(err, &pe) {
				// A bad descriptor: libtls reports it at connect.
				return func() {}, nil
			}
			return nil, err
		}
		cfg.mu.RLock()
		changed := cfg.sessionCache != cache || (cache == nil && cfg.sessionFD != fd)
		cfg.mu.RUnlock()
		if changed {
			unlock()
			releaseEntry()
			cfg.clientSem.release()
			continue
		}
		if cache == nil {
			// Plain session file: handshakes on other files need not
			// wait for this one.
			cfg.clientSem.release()
			c.sessionFD = fd
			return unlock, nil
		}
		if err := cfg.useSessionFD(fd); err != nil {
			unlock()
			releaseEntry()
			cfg.clientSem.release()
			return nil, err
		}
		c.sessionFD = fd
		return func() {
			// Back to the Config's own session file (or none), so that
			// libtls never writes to a cache file it no longer owns.
			cfg.mu.RLock()
			own := cfg.sessionFD
			cfg.mu.RUnlock()
			_ = cfg.useSessionFD(own)
			c.sessionFD = -1
			unlock()
			releaseEntry()
			cfg.clientSem.release()
		}, nil
	}
	return nil, &Error{Op: "connect", Msg: "session settings kept changing"}
}

// canRetryWithoutSession reports whether a client handshake that failed
// with err may be retried after discarding the stored session: libtls
// refused the stored session itself (see refusesStoredSession; not the
// transport, a deadline, a context, Close, or any other configuration
// error), there is a stored session, this is the first failure, and
// nothing has been sent to the server yet.
func (c *Conn) canRetryWithoutSession(err error) bool {
	var te *Error
	if !errors.As(err, &te) || te.Err != nil || (te.Op != "connect" && te.Op != "handshake") {
		return false
	}
	if !refusesStoredSession(te.Msg) {
		return false
	}
	if c.sessionFD == -1 || c.sessionErr != nil {
		return false
	}
	return !c.t.sentAny(c) && sessionFileSize(c.sessionFD) > 0
}

// refusesStoredSession reports whether msg, libtls's text for a failed
// connect or handshake, is libtls refusing the stored session itself:
// "failed to parse session" (not PEM, truncated), "failed to set session"
// (SSL_set_session refused it) and, on LibreSSL, "no protocols available",
// which a stored TLS 1.2 session causes under a TLS 1.3-only Config. Only
// these may discard a stored session: every other failure ("server name
// not specified", a CA that cannot be loaded, an SNI failure) would fail
// the same way without it, and the session is still good.
func refusesStoredSession(msg string) bool {
	return strings.Contains(msg, "failed to parse session") ||
		strings.Contains(msg, "failed to set session") ||
		(Backend().StoredSessionPinsTLS12 && strings.Contains(msg, "no protocols available"))
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
// Config). The binding then truncated the session file and retried once
// with a full handshake (after which libtls wrote the new session); the
// returned *SessionFileError holds the original error. nil when nothing
// happened. Transport errors, deadlines and cancellation never discard a
// session.
func (c *Conn) SessionFileError() error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.sessionErr == nil {
		return nil
	}
	return c.sessionErr
}
