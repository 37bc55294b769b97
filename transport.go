package libtls

/*
#include <tls.h>
#include "golibtls.h"
*/
import "C"

import (
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// opKind is the Conn operation a transport drives; they differ in what
// they may wait for and how they flush.
type opKind uint8

const (
	opHandshake opKind = iota
	opRead
	opWrite
	opClose // close_notify: never waits for the peer's
)

// transport moves a Conn's ciphertext between libtls and the network. It
// keeps no pointer to its Conn (the Conn is passed in where needed): a
// cycle through the Conn would keep its finalizer from ever running. Its
// methods other than run and sentAny are called with the Conn's cMu held
// (or before the Conn is shared).
type transport interface {
	// connect starts a client context over the transport
	// (tls_connect_cbs).
	connect(ctx *C.struct_tls, servername *C.char) C.int
	// accept makes a server connection context over the transport
	// (tls_accept_cbs); the caller serializes calls on srv.
	accept(srv *C.struct_tls, cctx **C.struct_tls) C.int

	// run makes the call (through Conn.step) until it no longer asks for
	// I/O (TLS_WANT_POLLIN/POLLOUT), moving ciphertext and waiting on the
	// network as needed, and returns its last result. A transport error
	// (a deadline, a reset, Close) is returned as the net.Conn reports it;
	// after Close, as ErrClosed. Called without cMu.
	run(c *Conn, kind opKind, op string, call libtlsCall) (C.ssize_t, error)

	// sentAny reports whether any ciphertext has gone out.
	sentAny(c *Conn) bool
	// in is what the read callbacks know of the ciphertext libtls has
	// read (golibtls.h): its record framing, the end of the stream.
	in() *C.struct_golibtls_in
	// readMany and writeMany are Read's and Write's libtls calls,
	// several records in one cgo call (golibtls_read_many and
	// golibtls_write_many), with the transport's own work around them.
	// (A slice, not a pointer: cgo checks the slice, whose bytes hold
	// no pointers, rather than the whole block it points into.)
	readMany(ctx *C.struct_tls, p []byte) C.ssize_t
	writeMany(ctx *C.struct_tls, p []byte) C.ssize_t
	// ioError returns, after libtls failed, the I/O error of the
	// transport's callbacks behind it, or nil.
	ioError(op string) error
	// reset forgets everything buffered or seen, after tls_reset.
	reset()
	// free releases the transport's C memory and buffers; it may be
	// called again.
	free(c *Conn)
}

// Transport selection. GOLIBTLS_TRANSPORT=callback (read once, at start)
// or forceTransport (tests) makes every new Conn use the callback
// transport, so that the whole suite can run over either.
const (
	transportAuto     int32 = iota // the socket transport where the net.Conn has a socket
	transportCallback              // always the callback transport
)

var forceTransport atomic.Int32

func init() {
	if os.Getenv("GOLIBTLS_TRANSPORT") == "callback" {
		forceTransport.Store(transportCallback)
	}
}

// newTransport picks the transport of a new Conn over conn.
func newTransport(conn net.Conn) transport {
	if forceTransport.Load() != transportCallback {
		if raw := streamSocket(conn); raw != nil {
			return newSocketTransport(conn, raw)
		}
	}
	return newCallbackTransport()
}

// streamSocket returns the RawConn of conn's socket if conn exposes a
// stream socket (TCP, a Unix stream socket), else nil.
func streamSocket(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	switch conn.(type) {
	case *net.TCPConn:
		return raw
	}
	// A Unix socket may be a datagram or seqpacket socket; anything else
	// that exposes a descriptor must be a stream socket too.
	stream := false
	_ = raw.Control(func(fd uintptr) {
		typ, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TYPE)
		stream = err == nil && typ == syscall.SOCK_STREAM
	})
	if !stream {
		return nil
	}
	return raw
}

// TransportName reports which transport the Conn runs on: "socket"
// (libtls reads and writes the socket itself) or "callback" (libtls reads
// and writes Go buffers that Go moves to and from the net.Conn).
func (c *Conn) TransportName() string {
	if _, ok := c.t.(*socketTransport); ok {
		return "socket"
	}
	return "callback"
}
