package libtls

/*
#include <errno.h>
#include <poll.h>
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
	int moved;   // a read or write moved bytes since the flags were cleared
	int err;     // errno of the last failed read or write, 0 if none
	int sent;    // bytes have been written
	int reset;   // a write found the connection reset
	struct golibtls_in rec; // what libtls has read
};

static ssize_t golibtls_sock_read(struct tls *ctx, void *buf, size_t len, void *arg) {
	struct golibtls_sock *s = arg;
	if (golibtls_in_blocked(&s->rec)) {
		s->eagain = 1; // as good as an empty socket: do not call again at once
		return TLS_WANT_POLLIN;
	}
	for (;;) {
		ssize_t n = read(s->fd, buf, len);
		if (n > 0) {
			golibtls_in_feed(&s->rec, buf, (size_t)n);
			s->moved = 1;
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
			return golibtls_in_end(&s->rec);
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
				s->sent = s->moved = 1;
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

// golibtls_sock_ready reports whether the socket is readable (want_in) or
// writable, or has an error or hangup pending, without waiting.
static int golibtls_sock_ready(int fd, int want_in) {
	struct pollfd p = { .fd = fd, .events = want_in ? POLLIN : POLLOUT };
	int n;
	do {
		n = poll(&p, 1, 0);
	} while (n < 0 && errno == EINTR);
	return n != 0;
}
*/
import "C"

import (
	"errors"
	"io"
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
	fd   C.int                   // the socket's descriptor (RawConn keeps it open during a run)
	s    *C.struct_golibtls_sock // C memory; nil once freed

	// The runs of Reads and Writes.
	readRun, writeRun sockRun
}

// After a record that carries no data (a TLS 1.3 session ticket, a key
// update) libtls returns TLS_WANT_POLLIN without reading the next record,
// which may already wait in the socket (libtls clears SSL_MODE_AUTO_RETRY).
// The netpoller reports new readiness only, so waiting then could wait for
// bytes that are already there, forever. A run therefore waits only after
// the socket itself refused to move bytes (EAGAIN), and otherwise calls
// again at once: each such call consumes at least one record, and a Read
// stops at data, when the socket runs dry, or after maxNonDataRecords
// (conn.go).
const (
	// yieldEvery: a run that keeps consuming records leaves its RawConn
	// callback after this many calls and comes straight back, so that its
	// deadline and Close are checked meanwhile.
	yieldEvery = 64
	// maxSpins bounds the calls in a row that ask for I/O without their
	// callbacks having moved a byte or met a full or empty socket. libtls
	// is not known to do that; if it did, the run waits if the socket is
	// really not ready, and fails otherwise, rather than spin.
	maxSpins = 64
)

func newSocketTransport(conn net.Conn, raw syscall.RawConn) *socketTransport {
	t := &socketTransport{raw: raw, conn: conn, fd: -1}
	_ = raw.Control(func(fd uintptr) { t.fd = C.int(fd) })
	t.s = (*C.struct_golibtls_sock)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_golibtls_sock{}))))
	t.s.fd = t.fd
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

func (t *socketTransport) in() *C.struct_golibtls_in { return &t.s.rec }

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
	again bool // libtls asked for I/O that the socket did not refuse
	moved bool // and its callbacks moved bytes meanwhile
	ended bool // the stream has ended (golibtls_in kept it from libtls)
	// The readiness the next wait is for.
	want C.ssize_t

	onReady func(uintptr) bool // r.ready, bound on first use
}

// call is the call as Conn.step makes it under cMu: it also records
// whether libtls asked for I/O the socket did not refuse.
func (r *sockRun) call(ctx *C.struct_tls) C.ssize_t {
	s := r.t.s
	s.eagain, s.wblock, s.moved = 0, 0, 0
	rc := r.inner.call(ctx)
	r.again = (rc == C.TLS_WANT_POLLIN && s.eagain == 0) || (rc == C.TLS_WANT_POLLOUT && s.wblock == 0)
	r.moved = s.moved != 0
	r.ended = s.rec.eof != 0
	return rc
}

// ready is the RawConn callback: it makes the call until libtls has to wait
// for the socket, and reports whether the run can stop waiting in this
// direction.
func (r *sockRun) ready(uintptr) bool {
	idle := 0
	for calls := 1; ; calls++ {
		r.rc, r.err = r.c.step(r.kind, r.op, r)
		rc := r.rc
		if r.err == nil && r.again {
			// Not a wait: call again (see yieldEvery).
			if r.moved {
				idle = 0
			} else {
				idle++
			}
			if idle < maxSpins {
				if calls%yieldEvery == 0 {
					return true // r.want unchanged: RawConn calls again at once
				}
				continue
			}
			if C.golibtls_sock_ready(r.t.fd, boolInt(rc == C.TLS_WANT_POLLIN)) != 0 {
				r.err = &Error{Op: r.op, Msg: "libtls keeps asking for I/O that it does not attempt"}
				r.done = true
				return true
			}
			// The socket is not ready: its next readiness is new.
		}
		if r.err == nil && rc == C.TLS_WANT_POLLIN && r.ended && r.kind != opClose {
			// The stream has ended, and libtls wants more than a Read
			// would (a write in a renegotiation).
			r.err = &Error{Op: r.op, Msg: "unexpected EOF", Err: io.ErrUnexpectedEOF}
		}
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

func boolInt(b bool) C.int {
	if b {
		return 1
	}
	return 0
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
			// RawConn's error is a *net.OpError of its own ("raw-read"):
			// report its cause as the net package reports a Read's.
			var oe *net.OpError
			if errors.As(werr, &oe) {
				werr = oe.Err
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
