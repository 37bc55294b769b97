package libtls

import (
	"errors"
	"net"
	"syscall"
)

// RecordHeaderError is the error (wrapped in an *Error) of a server
// handshake whose peer's first bytes are not a TLS record: a client
// speaking plain text, such as an HTTP client on the HTTPS port. libtls was
// not given those bytes, so nothing has been written to the peer, and a
// server may answer it in plain text on Conn, as net/http answers plain
// HTTP with "400 Bad Request" (libtlshttp does). As in crypto/tls.
//
// The check peeks at the socket (MSG_PEEK) before libtls reads it, so it
// applies to connections over a socket (TCP, Unix); over other net.Conns
// (net.Pipe, wrapped connections) libtls's own error reports the failure.
type RecordHeaderError struct {
	// Msg says what was wrong.
	Msg string
	// RecordHeader holds the first bytes the peer sent (up to 5).
	RecordHeader [5]byte
	// Conn is the underlying connection, for an answer in plain text. The
	// caller closes it (closing the *Conn closes it too).
	Conn net.Conn
}

func (e *RecordHeaderError) Error() string { return e.Msg }

// looksLikeTLS reports whether b can start a TLS connection: a record of
// one of TLS's content types (change_cipher_spec 20 to heartbeat 24), or
// an SSL 2 compatible ClientHello, whose first byte has the high bit set.
// Everything else (letters of a text protocol, zeros) cannot.
func looksLikeTLS(b byte) bool { return b >= 20 && b <= 24 || b >= 0x80 }

// checkFirstRecord peeks at the first bytes a server connection's peer
// sends and returns a RecordHeaderError if they cannot start a TLS
// connection, before libtls reads them: LibreSSL answers such bytes with a
// protocol_version alert, which a plain-text client shows as garbage, and
// both backends' messages ("wrong version number", "tlsv1 alert protocol
// version") do not say what happened. It waits, within the connection's
// deadlines, for one byte, or for five when the first is not TLS's (as
// crypto/tls reads a whole record header). Over a net.Conn without a socket
// it does nothing.
func (c *Conn) checkFirstRecord() error {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var hdr [5]byte
	var n int
	var peekErr error
	// The callback returns false (wait for readability) only while the
	// socket holds fewer bytes than needed; new bytes make it readable
	// again, so no wakeup is lost.
	err = rc.Read(func(fd uintptr) bool {
		m, _, e := syscall.Recvfrom(int(fd), hdr[:], syscall.MSG_PEEK)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false
		case e != nil:
			peekErr = e
			return true
		}
		n = m
		return m == 0 || looksLikeTLS(hdr[0]) || m == len(hdr)
	})
	if err != nil {
		if c.closed.Load() || errors.Is(err, net.ErrClosed) {
			return closedError("handshake")
		}
		return err // a deadline: libtls would have met it too
	}
	if peekErr != nil || n == 0 || looksLikeTLS(hdr[0]) {
		// Not a socket after all (ENOTSOCK), or the end of the stream:
		// libtls reports it.
		return nil
	}
	return &RecordHeaderError{Msg: "first record does not look like a TLS handshake", RecordHeader: hdr, Conn: c.conn}
}
