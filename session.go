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
