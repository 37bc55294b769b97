package libtls

/*
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>
#include <tls.h>
#include "golibtls.h"

// golibtls_sock is what libtls sees of the socket transport: the socket's
// descriptor, which the callbacks read and write directly (non-blocking, as
// Go keeps its sockets), and what they saw.
struct golibtls_sock {
	int fd;
	int eagain;  // a read found the socket empty since the flags were cleared
	int wblock;  // a write found the socket full since the flags were cleared
	int err;     // errno of the last failed read or write, 0 if none
	int sent;    // bytes have been written
	int reset;   // a write found the connection reset
	struct golibtls_rec rec; // the framing of what libtls has read
};

static ssize_t golibtls_sock_read(struct tls *ctx, void *buf, size_t len, void *arg) {
	struct golibtls_sock *s = arg;
	for (;;) {
		ssize_t n = read(s->fd, buf, len);
		if (n > 0) {
			golibtls_rec_feed(&s->rec, buf, (size_t)n);
			return n;
		}
		if (n == 0) {
			// After a reset the kernel drops what was still unread and
			// reports the reset to the first call only: if a write took
			// it, the end of file that reads see now is a cut, not the
			// peer's end of stream.
			if (s->reset) {
				s->err = ECONNRESET;
				return -1;
			}
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->eagain = 1;
			return TLS_WANT_POLLIN;
		}
		s->err = errno;
		return -1;
	}
}

static ssize_t golibtls_sock_write(struct tls *ctx, const void *buf, size_t len, void *arg) {
	struct golibtls_sock *s = arg;
	for (;;) {
		// send with MSG_NOSIGNAL: a peer that has gone is EPIPE, not a
		// SIGPIPE in the middle of C code.
		ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n >= 0) {
			if (n > 0)
				s->sent = 1;
			return n;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->wblock = 1;
			return TLS_WANT_POLLOUT;
		}
		if (errno == ECONNRESET)
			s->reset = 1;
		s->err = errno;
		return -1;
	}
}

static int golibtls_sock_connect(struct tls *ctx, struct golibtls_sock *s, const char *servername) {
	return tls_connect_cbs(ctx, golibtls_sock_read, golibtls_sock_write, s, servername);
}

static int golibtls_sock_accept(struct tls *srv, struct tls **cctx, struct golibtls_sock *s) {
	return tls_accept_cbs(srv, cctx, golibtls_sock_read, golibtls_sock_write, s);
}
*/
import "C"

import (
	"errors"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// The socket transport serves net.Conns that expose a stream socket: libtls
// reads and writes the descriptor itself through two small callbacks (not
// tls_connect_socket, whose socket BIO would raise SIGPIPE and hide errno
// and the record framing), and a goroutine that must wait parks in Go's
// netpoller through syscall.RawConn. No ciphertext passes through Go, so an
// idle connection costs libtls's memory and a parked goroutine.
//
// Every libtls call is made inside a RawConn Read or Write callback: the
// netpoller forgets readiness before the first callback, so readiness that
// arrives after the call has looked is never lost, and the descriptor
// cannot be closed and reused while C uses it (RawConn holds a reference;
// net.Conn.Close waits for it). The net.Conn's deadlines bound the waits,
// and its Close ends them.
type socketTransport struct {
	raw  syscall.RawConn
	conn net.Conn                // for the addresses of errors
	s    *C.struct_golibtls_sock // C memory; nil once freed

	// The runs of Reads and Writes.
	readRun, writeRun sockRun
}

// maxSpins bounds how often a call is repeated at once, without waiting,
// when libtls asks for I/O the socket does not need: after a non-data
// record (a TLS 1.3 session ticket, a key update) libtls returns
// TLS_WANT_POLLIN while more bytes wait in the socket, and with no new
// readiness to come the netpoller would never wake us.
const maxSpins = 64

func newSocketTransport(conn net.Conn, raw syscall.RawConn) *socketTransport {
	t := &socketTransport{raw: raw, conn: conn}
	t.s = (*C.struct_golibtls_sock)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_golibtls_sock{}))))
	t.s.fd = -1
	_ = raw.Control(func(fd uintptr) { t.s.fd = C.int(fd) })
	return t
}

func (t *socketTransport) connect(ctx *C.struct_tls, servername *C.char) C.int {
	return C.golibtls_sock_connect(ctx, t.s, servername)
}

func (t *socketTransport) accept(srv *C.struct_tls, cctx **C.struct_tls) C.int {
	return C.golibtls_sock_accept(srv, cctx, t.s)
}

func (t *socketTransport) sentAny(c *Conn) bool {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	return t.s != nil && t.s.sent != 0
}

func (t *socketTransport) atRecordBoundary() bool {
	return C.golibtls_rec_at_boundary(&t.s.rec) != 0
}

func (t *socketTransport) ioError(op string) error {
	errno := syscall.Errno(t.s.err)
	if errno == 0 {
		return nil
	}
	t.s.err = 0
	name := "read"
	if op == "write" || op == "close" {
		name = "write"
	}
	return t.opError(op, os.NewSyscallError(name, errno))
}

// opError wraps a transport error as the net package reports its own.
func (t *socketTransport) opError(op string, err error) error {
	la := t.conn.LocalAddr()
	return &net.OpError{Op: op, Net: la.Network(), Source: la, Addr: t.conn.RemoteAddr(), Err: err}
}

func (t *socketTransport) reset() {
	fd, reset := t.s.fd, t.s.reset
	*t.s = C.struct_golibtls_sock{fd: fd, reset: reset}
}

// sockRun is one run's state: the socket transport keeps one for Reads
// (and the handshake) and one for Writes (and close_notify), with their
// RawConn callback bound once, so that steady-state Reads and Writes
// allocate nothing. It points to the Conn only during a run (the
// transport keeps none at rest).
type sockRun struct {
	t     *socketTransport
	c     *Conn
	kind  opKind
	op    string
	inner libtlsCall

	rc    C.ssize_t
	err   error
	done  bool
	again bool
	spin  int
	// The readiness the next wait is for.
	want C.ssize_t

	onReady func(uintptr) bool // r.ready, bound on first use
}

// call is the call as Conn.step makes it under cMu: it also records
// whether libtls asked for I/O the socket did not refuse.
func (r *sockRun) call(ctx *C.struct_tls) C.ssize_t {
	s := r.t.s
	s.eagain, s.wblock = 0, 0
	rc := r.inner.call(ctx)
	r.again = r.spin < maxSpins &&
		((rc == C.TLS_WANT_POLLIN && s.eagain == 0) || (rc == C.TLS_WANT_POLLOUT && s.wblock == 0))
	return rc
}

// ready is the RawConn callback: it makes the call until libtls has to wait
// for the socket, and reports whether the run can stop waiting in this
// direction.
func (r *sockRun) ready(uintptr) bool {
	for r.spin = 0; ; r.spin++ {
		r.rc, r.err = r.c.step(r.kind, r.op, r)
		if r.err == nil && r.again {
			continue
		}
		rc := r.rc
		if r.err != nil || (rc != C.TLS_WANT_POLLIN && rc != C.TLS_WANT_POLLOUT) ||
			(r.kind == opClose && rc == C.TLS_WANT_POLLIN) { // the peer's close_notify is not awaited
			r.done = true
			return true
		}
		if rc == r.want {
			return false // wait in this RawConn call, then call again
		}
		r.want = rc
		return true // wait for the other direction
	}
}

// run makes the call inside a RawConn callback, waits for readability or
// writability as libtls asks, and repeats.
func (t *socketTransport) run(c *Conn, kind opKind, op string, call libtlsCall) (C.ssize_t, error) {
	// A handshake ends before the first Read (both hold hsMu or wait for
	// it), and close_notify is sent under writeMu: two runs serve all.
	r := &t.readRun
	if kind == opWrite || kind == opClose {
		r = &t.writeRun
	}
	if r.onReady == nil {
		r.t = t
		r.onReady = r.ready
	}
	r.c, r.kind, r.op, r.inner = c, kind, op, call
	r.rc, r.err, r.done = 0, nil, false
	// Writes start in a RawConn Write, so that an expired read deadline
	// cannot fail them, and the rest in a RawConn Read.
	r.want = C.TLS_WANT_POLLIN
	if kind == opWrite || kind == opClose {
		r.want = C.TLS_WANT_POLLOUT
	}
	rc, err := t.wait(r)
	r.c, r.inner, r.err = nil, nil, nil
	return rc, err
}

func (t *socketTransport) wait(r *sockRun) (C.ssize_t, error) {
	for !r.done {
		var werr error
		if r.want == C.TLS_WANT_POLLIN {
			werr = t.raw.Read(r.onReady)
		} else {
			werr = t.raw.Write(r.onReady)
		}
		if werr != nil && !r.done {
			if r.c.closed.Load() || errors.Is(werr, net.ErrClosed) {
				return -1, closedError(r.op)
			}
			dir := "read"
			if r.want == C.TLS_WANT_POLLOUT {
				dir = "write"
			}
			return -1, t.opError(dir, werr)
		}
	}
	return r.rc, r.err
}

func (t *socketTransport) free(*Conn) {
	if t.s != nil {
		C.free(unsafe.Pointer(t.s))
		t.s = nil
	}
}
