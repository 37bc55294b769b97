package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"syscall"
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
// (tls_config_set_session_fd): a client saves its session there after every
// successful handshake and offers it in the next connect to resume; -1
// disables. The descriptor must refer to a regular file owned by the real
// user ID with mode exactly 0600, as libtls demands (otherwise the call
// fails with libtls's message, "session file has incorrect permissions (644
// != 600)", ...), open for reading and writing.
//
// The file keeps libtls's meaning: one session, the latest written wins,
// in libtls's PEM format. The binding adds a line after the PEM naming what
// the session may be offered to: the server name and address it came from
// and the Config's trust (see SessionCache). A connection to another server
// name, to another address, or by a Config that verifies differently is not
// offered the stored session and makes a full handshake (then its own
// session is stored). A file without that line, written by C libtls or an
// older golibtls, is not offered either.
//
// Each client handshake runs on a libtls configuration of its own with a
// private session file, and the binding copies the session between that
// and this file, under a lock held only for the copy: handshakes through
// one Config run in parallel. To keep one session per server instead of
// one in all, use a SessionCache.
//
// libtls never dups or closes the descriptor, and neither does the binding:
// keep it open while the Config and every connection built from it live,
// or use SetSessionFile, which does that for you. Once SetSessionFD (or
// SetSessionFile, or SetSessionCache) has moved the Config to another
// setting, the binding never uses the old descriptor again, even for
// handshakes still running.
func (cfg *Config) SetSessionFD(fd int) error {
	return cfg.setSessionFD(fd, nil)
}

// SetSessionFile is SetSessionFD for an *os.File; nil disables. The Config
// keeps f reachable (so its finalizer cannot close the descriptor while the
// binding may use it) until the Config and every connection built from it
// are gone. The caller still owns f and closes it after those are closed.
func (cfg *Config) SetSessionFile(f *os.File) error {
	if f == nil {
		return cfg.setSessionFD(-1, nil)
	}
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
	var old *fileSessionStore
	var accessErr error
	err := cfg.call(op, func(c *C.struct_tls_config) C.int {
		// libtls checks the file (its messages, its order); the
		// Config's own tls_config then goes back to no session file:
		// servers never use one, and clients run on configurations of
		// their own.
		if rc := C.tls_config_set_session_fd(c, C.int(fd)); rc != 0 {
			return rc
		}
		C.tls_config_set_session_fd(c, -1)
		var id fileID
		if fd != -1 {
			if accessErr = checkReadWrite(fd); accessErr != nil {
				return 0
			}
			if id, accessErr = fileIDOf(fd); accessErr != nil {
				return 0
			}
		}
		old = cfg.sessionFile
		cfg.sessionFile = nil
		if fd != -1 {
			cfg.sessionFile = &fileSessionStore{f: f, fd: fd, id: id}
		}
		return 0
	})
	if accessErr != nil {
		return &ConfigError{Op: op, Msg: accessErr.Error(), Err: errInvalid}
	}
	if old != nil {
		old.retire()
	}
	return err
}

// checkReadWrite refuses a descriptor not open for both reading and
// writing, which libtls accepts and then fails on ("failed to truncate
// session file") in every handshake.
func checkReadWrite(fd int) error {
	flags, err := fcntlGetfl(fd)
	if err != nil {
		return fmt.Errorf("session file: %w", err)
	}
	switch flags & syscall.O_ACCMODE {
	case syscall.O_RDONLY:
		return errors.New("session file is not open for writing")
	case syscall.O_WRONLY:
		return errors.New("session file is not open for reading")
	}
	return nil
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

// sessionStore returns where the Config's client sessions live, nil if
// nowhere: its SessionCache, else its session file.
func (cfg *Config) sessionStore() sessionStore {
	st, _ := cfg.sessionSettings()
	return st
}

// sessionSettings returns the session store and the session scope.
func (cfg *Config) sessionSettings() (sessionStore, SessionScope) {
	cfg.mu.RLock()
	defer cfg.mu.RUnlock()
	if cfg.sessionCache != nil {
		return cfg.sessionCache, cfg.sessionScope
	}
	if cfg.sessionFile != nil {
		return cfg.sessionFile, cfg.sessionScope
	}
	return nil, cfg.sessionScope
}

// SessionScope says which client connections a stored session is offered
// to. Whatever the scope, a session is offered only under the trust it was
// made under (see SessionCache) and only to its server name.
type SessionScope int

const (
	// SessionPerAddress offers a session only to the server name and
	// the address (the connection's remote address) it came from: the
	// default.
	SessionPerAddress SessionScope = iota
	// SessionPerServerName offers a session to the server name it came
	// from at any address, as crypto/tls's ClientSessionCache does (a
	// connection without a server name still matches its address). Use
	// it for a fleet whose servers, at several addresses, share their
	// ticket keys and session ID (docs/fleet.md): a session made with one
	// of them then resumes with the others.
	SessionPerServerName
)

// SetSessionScope sets which client connections share a stored session
// (SessionPerAddress by default). It applies to the handshakes that start
// after it.
func (cfg *Config) SetSessionScope(s SessionScope) error {
	const op = "SetSessionScope"
	if s != SessionPerAddress && s != SessionPerServerName {
		return &ConfigError{Op: op, Msg: fmt.Sprintf("invalid session scope %d", s), Err: errInvalid}
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed {
		return errConfigClosed(op)
	}
	cfg.sessionScope = s
	return nil
}

// offerSession copies the session stored under key (if any) into the
// member's session file, where tls_connect reads it.
func (c *Conn) offerSession(ctx context.Context, store sessionStore, key sessionKey, m *clientMember) error {
	offered, err := m.offerStored(ctx, c.closing, store, key)
	c.offered = offered
	return err
}

// offerStored is offerSession's work on the member: it reports whether a
// session was offered (it is in m.offered).
func (m *clientMember) offerStored(ctx context.Context, closing <-chan struct{}, store sessionStore, key sessionKey) (bool, error) {
	if err := m.useSessions(); err != nil {
		return false, err
	}
	var err error
	m.offered, err = store.load(ctx, closing, key, m.offered[:0])
	if err != nil {
		var te *Error
		if errors.As(err, &te) || errors.Is(err, ErrClosed) || errors.Is(err, ctx.Err()) {
			return false, err
		}
		return false, &Error{Op: "connect", Msg: "session: " + err.Error(), Err: err}
	}
	if err := m.offer(m.offered); err != nil {
		return false, &Error{Op: "connect", Msg: "session file: " + err.Error(), Err: err}
	}
	return len(m.offered) > 0, nil
}

// saveSession stores what libtls wrote at the end of the handshake. A
// failure does not fail the connection, whose handshake is done; it is
// reported by SessionFileError.
func (c *Conn) saveSession(store sessionStore, key sessionKey, m *clientMember) {
	if err := m.saveTaken(store, key, c.offered); err != nil && c.sessionErr == nil {
		c.sessionErr = &SessionFileError{Op: "save", Err: err}
	}
}

// saveTaken is saveSession's work on the member.
func (m *clientMember) saveTaken(store sessionStore, key sessionKey, offered bool) error {
	pem, err := m.taken()
	if err != nil {
		return err
	}
	if offered && bytes.Equal(pem, m.offered) {
		// libtls wrote back the session it resumed, which the store
		// has (or, if another handshake stored one since, a newer
		// one).
		return nil
	}
	return store.save(key, pem)
}

// canRetryWithoutSession reports whether a client handshake that failed
// with err may be retried without the stored session it offered: libtls
// refused the session itself (see refusesStoredSession; not the transport,
// a deadline, a context, Close, or any other configuration error), this is
// the first failure, and nothing has been sent to the server yet.
func (c *Conn) canRetryWithoutSession(err error) bool {
	var te *Error
	if !errors.As(err, &te) || te.Err != nil || (te.Op != "connect" && te.Op != "handshake") {
		return false
	}
	if !refusesStoredSession(te.Msg) {
		return false
	}
	if !c.offered || c.sessionErr != nil {
		return false
	}
	return !c.t.sentAny(c)
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

// SessionFileError is reported by Conn.SessionFileError when something went
// wrong with a client's stored session.
type SessionFileError struct {
	// Op is "discard" when the binding discarded a stored session that
	// libtls could not use, and "save" when the session of a successful
	// handshake could not be stored.
	Op string
	// Err is the libtls or I/O error behind it.
	Err error
}

func (e *SessionFileError) Error() string {
	if e.Op == "save" {
		return "libtls: could not store the session: " + e.Err.Error()
	}
	return "libtls: discarded unusable stored session: " + e.Err.Error()
}

func (e *SessionFileError) Unwrap() error { return e.Err }

// discardSession forgets the offered session after libtls refused it with
// err, records why, and empties the member's session file.
func (c *Conn) discardSession(store sessionStore, key sessionKey, m *clientMember, err error) error {
	c.sessionErr = &SessionFileError{Op: "discard", Err: err}
	c.offered = false
	if derr := store.discard(key, m.offered); derr != nil {
		return &Error{Op: "connect", Msg: "cannot discard stored session: " + derr.Error(), Err: derr}
	}
	if oerr := m.offer(nil); oerr != nil {
		return &Error{Op: "connect", Msg: "session file: " + oerr.Error(), Err: oerr}
	}
	return nil
}

// SessionFileError reports what went wrong with the client's stored
// session, as a *SessionFileError, or nil when nothing did:
//
//   - Op "discard": the handshake found a stored session libtls could not
//     use ("failed to parse session", or on LibreSSL "no protocols
//     available" for a TLS 1.2 session under a TLS 1.3-only Config). The
//     binding then discarded it from the session file or cache and
//     retried once with a full handshake, whose session was stored.
//     Transport errors, deadlines and cancellation never discard a
//     session.
//   - Op "save": the handshake succeeded but its session could not be
//     stored (an I/O error on the session file or cache directory, a
//     closed SessionCache); the connection is not affected.
func (c *Conn) SessionFileError() error {
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.sessionErr == nil {
		return nil
	}
	return c.sessionErr
}
