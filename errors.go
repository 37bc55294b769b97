package libtls

import (
	"errors"
	"net"
	"strings"
)

// ErrClosed is returned (wrapped) by every call on a closed Config, Server
// or Conn. It is net.ErrClosed, so errors.Is(err, net.ErrClosed) holds too.
var ErrClosed = net.ErrClosed

// ConfigError is the error of a failing Config call. Op names the libtls
// function (for example "tls_config_set_session_id") and Msg is the text of
// tls_config_error verbatim ("session ID too large"). Errors that the binding
// detects before calling C (a closed Config, ticket key revision 0, a
// fractional session lifetime) use the same type with a message of the
// binding's own; Err then holds a sentinel such as ErrClosed.
type ConfigError struct {
	Op  string
	Msg string
	Err error
}

func (e *ConfigError) Error() string { return "libtls: " + e.Op + ": " + e.Msg }

// Unwrap returns the underlying sentinel, if any.
func (e *ConfigError) Unwrap() error { return e.Err }

// Error is the error of a failing operation on a TLS context (handshake,
// read, write, close). Op names the operation ("handshake", "read",
// "write", "close", "accept", "connect", "configure") and Msg is the text of
// tls_error verbatim.
type Error struct {
	Op  string
	Msg string
	Err error
}

func (e *Error) Error() string {
	if e.Msg == "" && e.Err != nil {
		return "libtls: " + e.Op + ": " + e.Err.Error()
	}
	return "libtls: " + e.Op + ": " + e.Msg
}

// Unwrap returns the underlying error, if any (a transport error, or
// ErrClosed).
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the operation failed because a deadline passed
// or a context's deadline expired (then errors.Is(e,
// os.ErrDeadlineExceeded) or errors.Is(e, context.DeadlineExceeded) holds
// too). It makes *Error a net.Error, as crypto/tls's errors are: net/http
// and others tell timeouts apart with err.(net.Error).Timeout().
func (e *Error) Timeout() bool {
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// Temporary reports the same as Timeout.
//
// Deprecated: as for net.Error, temporary errors are not well-defined.
func (e *Error) Temporary() bool { return e.Timeout() }

var _ net.Error = (*Error)(nil)

// errInvalid is wrapped by ConfigErrors for input the binding refuses itself.
var errInvalid = errors.New("invalid argument")

// libtlsMessage is the text of tls_error or tls_config_error as the binding
// reports it. LibreTLS appends strerror(errno) to its messages even when
// errno is 0, which says nothing (": Success"); that suffix is dropped.
func libtlsMessage(msg string) string {
	return strings.TrimSuffix(msg, ": Success")
}
