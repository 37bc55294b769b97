package libtls

/*
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <tls.h>
#include "golibtls.h"

// GOLIBTLS_SOCKBUF is the size of a read-ahead or write buffer: more than
// the largest TLS record (16 KiB of data, 2 KiB of expansion at most, the
// header), so that one read takes a whole record.
#define GOLIBTLS_SOCKBUF (20 * 1024)

// GOLIBTLS_DIRECT_READ: when libtls asks for at least this many bytes and
// nothing is read ahead (the rest of a large record's body), it reads the
// socket straight into libtls's buffer.
#define GOLIBTLS_DIRECT_READ 4096

// GOLIBTLS_DIRECT_WRITE: a record at least this large, with nothing
// waiting before it, is sent at once rather than copied (bulk transfer:
// one record is one send anyway).
#define GOLIBTLS_DIRECT_WRITE 4096

// GOLIBTLS_SENDERR is a call's result when libtls's call went through but
// its output could not be sent, and every later call's (the socket failed;
// werr says how).
#define GOLIBTLS_SENDERR (-101)

// A few free buffers are kept for reuse, process-wide, so that reading
// ahead and coalescing writes do not cost a malloc and a free per record;
// a connection holds a buffer only while it holds bytes.
#define GOLIBTLS_SPARES 4
static unsigned char *golibtls_spares[GOLIBTLS_SPARES];

static unsigned char *golibtls_buf_get(void) {
	for (int i = 0; i < GOLIBTLS_SPARES; i++) {
		unsigned char *b = __atomic_exchange_n(&golibtls_spares[i], NULL, __ATOMIC_ACQ_REL);
		if (b != NULL)
			return b;
	}
	return malloc(GOLIBTLS_SOCKBUF);
}

static void golibtls_buf_put(unsigned char *b) {
	for (int i = 0; i < GOLIBTLS_SPARES; i++) {
		unsigned char *none = NULL;
		if (__atomic_compare_exchange_n(&golibtls_spares[i], &none, b, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
	free(b);
}

// golibtls_sock is what libtls sees of the socket transport: the socket's
// descriptor, which the callbacks read and write directly (non-blocking, as
// Go keeps its sockets), what they saw, and the bytes read ahead of libtls
// or written by it and not sent yet. Each buffer exists only while it
// holds bytes.
//
// It is part of every connection's memory (idle ones too), so its fields
// are small; the buffers are GOLIBTLS_SOCKBUF at most.
struct golibtls_sock {
	int fd;
	int err;     // errno of the last failed read or write, 0 if none
	int werr;    // errno of output that could not be sent, 0 if none
	unsigned char eagain;  // a read found the socket empty since the flags were cleared
	unsigned char wblock;  // a write found the socket full since the flags were cleared
	unsigned char moved;   // a read or write moved bytes since the flags were cleared
	unsigned char sent;    // bytes have been written
	unsigned char reset;   // a write found the connection reset
	struct golibtls_in rec; // what libtls has read; rec.ahead: bytes in rbuf
	unsigned char *rbuf;    // read ahead: rbuf[roff:roff+rec.ahead]
	unsigned char *wbuf;    // written by libtls, not sent yet: wbuf[woff:woff+wlen]
	uint32_t roff, woff, wlen;
};

// golibtls_sock_got handles a read's result n (of the socket or, for
// n > 0, of the buffer) as a read callback returns it.
static ssize_t golibtls_sock_got(struct golibtls_sock *s, void *buf, ssize_t n, int errnum) {
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
	if (errnum == EAGAIN || errnum == EWOULDBLOCK) {
		s->eagain = 1;
		return TLS_WANT_POLLIN;
	}
	s->err = errnum;
	return -1;
}

static ssize_t golibtls_sock_read(struct tls *ctx, void *buf, size_t len, void *arg) {
	struct golibtls_sock *s = arg;
	if (golibtls_in_blocked(&s->rec)) {
		s->eagain = 1; // as good as an empty socket: do not call again at once
		return TLS_WANT_POLLIN;
	}
	if (s->rec.ahead > 0) {
		size_t n = len < s->rec.ahead ? len : s->rec.ahead;
		// (n <= GOLIBTLS_SOCKBUF: the 32-bit counts hold it.)
		memcpy(buf, s->rbuf + s->roff, n);
		s->roff += n;
		s->rec.ahead -= n;
		if (s->rec.ahead == 0) {
			golibtls_buf_put(s->rbuf);
			s->rbuf = NULL;
			s->roff = 0;
		}
		return golibtls_sock_got(s, buf, (ssize_t)n, 0);
	}
	// libtls reads a record's header, then its body: one read takes
	// both, and whatever else has arrived, into a buffer of its own.
	unsigned char *ra = NULL;
	if (len < GOLIBTLS_DIRECT_READ)
		ra = golibtls_buf_get();
	for (;;) {
		ssize_t n;
		if (ra != NULL) {
			struct iovec iov[2] = {{buf, len}, {ra, GOLIBTLS_SOCKBUF}};
			n = readv(s->fd, iov, 2);
		} else
			n = read(s->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		int errnum = n < 0 ? errno : 0;
		if (ra != NULL) {
			if (n > (ssize_t)len) {
				s->rbuf = ra;
				s->roff = 0;
				s->rec.ahead = (uint32_t)((size_t)n - len);
				n = (ssize_t)len;
			} else
				golibtls_buf_put(ra);
		}
		return golibtls_sock_got(s, buf, n, errnum);
	}
}

// golibtls_sock_send sends what len bytes at buf it can: it returns how
// many (0 when the socket is full: wblock), or -1 (err).
static ssize_t golibtls_sock_send(struct golibtls_sock *s, const void *buf, size_t len) {
	for (;;) {
		// send with MSG_NOSIGNAL: a peer that has gone is EPIPE, not a
		// SIGPIPE in the middle of C code.
		ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL);
		if (n > 0) {
			s->sent = s->moved = 1;
			return n;
		}
		if (n == 0)
			return 0;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			s->wblock = 1;
			return 0;
		}
		if (errno == ECONNRESET)
			s->reset = 1;
		s->err = errno;
		return -1;
	}
}

// golibtls_sock_flush sends the buffered output: 0 when it is all gone
// (the buffer is released), 1 when the socket is full (wblock), -1 when
// the socket failed (err; the output is dropped).
static int golibtls_sock_flush(struct golibtls_sock *s) {
	int rc = 0;
	while (s->wlen > 0) {
		ssize_t n = golibtls_sock_send(s, s->wbuf + s->woff, s->wlen);
		if (n == 0)
			return 1;
		if (n < 0) {
			s->wlen = 0;
			rc = -1;
			break;
		}
		s->woff += (size_t)n;
		s->wlen -= (size_t)n;
	}
	if (s->wbuf != NULL) {
		golibtls_buf_put(s->wbuf);
		s->wbuf = NULL;
	}
	s->woff = 0;
	return rc;
}

// golibtls_sock_write takes what libtls writes into the output buffer,
// which the transport sends when the libtls call returns (several records
// of a call leave in one send); a large record with nothing before it
// goes out at once.
static ssize_t golibtls_sock_write(struct tls *ctx, const void *buf, size_t len, void *arg) {
	struct golibtls_sock *s = arg;
	if (s->wlen > 0 && s->woff + s->wlen + len > GOLIBTLS_SOCKBUF) {
		int rc = golibtls_sock_flush(s);
		if (rc < 0)
			return -1;
		if (rc > 0)
			return TLS_WANT_POLLOUT;
	}
	if (s->wlen == 0 && len >= GOLIBTLS_DIRECT_WRITE) {
		ssize_t n = golibtls_sock_send(s, buf, len);
		return n == 0 ? TLS_WANT_POLLOUT : n;
	}
	if (s->wbuf == NULL && (s->wbuf = golibtls_buf_get()) == NULL) {
		s->err = ENOMEM;
		return -1;
	}
	if (len > GOLIBTLS_SOCKBUF - s->woff - s->wlen)
		len = GOLIBTLS_SOCKBUF - s->woff - s->wlen;
	memcpy(s->wbuf + s->woff + s->wlen, buf, len);
	s->wlen += len;
	s->moved = 1;
	return (ssize_t)len;
}

// golibtls_sock_done ends a libtls call: its buffered output is sent. A
// call whose output could not be sent because the socket failed returns
// GOLIBTLS_SENDERR, unless it failed itself or it is a Read's data (rc >
// 0 and data set), which is returned, the error coming next time.
static ssize_t golibtls_sock_done(struct golibtls_sock *s, ssize_t rc, int data) {
	if (s->wlen > 0 && golibtls_sock_flush(s) < 0) {
		s->werr = s->err;
		if (!(data && rc > 0) && (rc >= 0 || rc == TLS_WANT_POLLIN || rc == TLS_WANT_POLLOUT))
			return GOLIBTLS_SENDERR;
	}
	return rc;
}

// The Read and Write calls of the socket transport: golibtls.h's loops,
// with their output sent before they return, in the same call from Go.
static ssize_t golibtls_sock_read_many(struct tls *ctx, struct golibtls_sock *s, void *buf, size_t len,
    unsigned max_nondata) {
	return golibtls_sock_done(s, golibtls_read_many(ctx, &s->rec, buf, len, max_nondata), 1);
}

static ssize_t golibtls_sock_write_many(struct tls *ctx, struct golibtls_sock *s, const void *buf, size_t len, size_t max) {
	return golibtls_sock_done(s, golibtls_write_many(ctx, buf, len, max), 0);
}

static int golibtls_sock_connect(struct tls *ctx, struct golibtls_sock *s, const char *servername) {
	return tls_connect_cbs(ctx, golibtls_sock_read, golibtls_sock_write, s, servername);
}

static int golibtls_sock_accept(struct tls *srv, struct tls **cctx, struct golibtls_sock *s) {
	return tls_accept_cbs(srv, cctx, golibtls_sock_read, golibtls_sock_write, s);
}

// golibtls_sock_release drops the buffers (tls_reset, free).
static void golibtls_sock_release(struct golibtls_sock *s) {
	if (s->rbuf != NULL)
		golibtls_buf_put(s->rbuf);
	if (s->wbuf != NULL)
		golibtls_buf_put(s->wbuf);
	s->rbuf = s->wbuf = NULL;
	s->roff = s->woff = s->wlen = 0;
	s->rec.ahead = 0;
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
// libssl reads a record's header and its body with two reads, and hands
// each record it writes to the callback on its own. So the read callback
// reads ahead: one readv fills libtls's request and a buffer with whatever
// else has arrived, which later calls take first; and the write callback
// collects what libtls writes during one call, sent when the call returns
// (golibtls_sock_done), in the same cgo call for Reads and Writes. Both
// buffers come from a few process-wide spares and go back as soon as they
// are empty: an idle connection holds neither. Bytes read ahead count as a
// readable socket: a run never waits in the netpoller while there are any.
// Output that a full socket refused waits for the next call, which sends
// it first; a handshake, Write or close_notify does not return before its
// output has left (the run waits for the socket instead).
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
	t.s.rec.dry = 1
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

func (t *socketTransport) readMany(ctx *C.struct_tls, p []byte) C.ssize_t {
	return C.golibtls_sock_read_many(ctx, t.s, unsafe.Pointer(&p[0]), C.size_t(len(p)), maxNonDataRecords)
}

func (t *socketTransport) writeMany(ctx *C.struct_tls, p []byte) C.ssize_t {
	return C.golibtls_sock_write_many(ctx, t.s, unsafe.Pointer(&p[0]), C.size_t(len(p)), maxOpBytes)
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
	C.golibtls_sock_release(t.s)
	fd, reset := t.s.fd, t.s.reset
	*t.s = C.struct_golibtls_sock{fd: fd, reset: reset}
	t.s.rec.dry = 1
}

// sockRun is one run's state: the socket transport keeps one for Reads
// (and the handshake) and one for Writes (and close_notify), with their
// RawConn callback bound once, so that steady-state Reads and Writes
// allocate nothing. It points to the Conn only during a run (the
// transport keeps none at rest).
//
// Its fields are laid out so that the transport, with two runs, stays in
// the 256-byte size class: it is part of every idle connection's memory.
type sockRun struct {
	t     *socketTransport
	c     *Conn
	op    string
	inner libtlsCall

	rc     C.ssize_t
	heldRC C.ssize_t // a result kept until the call's output has left (held)
	err    error

	onReady func(uintptr) bool // r.ready, bound on first use

	kind  opKind
	done  bool
	again bool // libtls asked for I/O that the socket did not refuse
	moved bool // and its callbacks moved bytes meanwhile
	ended bool // the stream has ended (golibtls_in kept it from libtls)
	held  bool
	// wantIn: the next wait is for readability, else writability.
	wantIn bool
	// sendErrno is the errno of output that could not be sent, 0 if
	// none.
	sendErrno int32
}

// call is the call as Conn.step makes it under cMu: it sends what an
// earlier call left first, keeps the call's result until its output has
// left, and records whether libtls asked for I/O the socket did not
// refuse.
func (r *sockRun) call(ctx *C.struct_tls) C.ssize_t {
	s := r.t.s
	s.eagain, s.wblock, s.moved = 0, 0, 0
	rc := C.ssize_t(C.TLS_WANT_POLLOUT)
	if s.werr != 0 {
		rc = C.GOLIBTLS_SENDERR // the socket failed under earlier output
	} else if s.wlen > 0 {
		// Output that the socket refused before goes first.
		rc = C.golibtls_sock_done(s, rc, 0)
	}
	switch {
	case rc == C.GOLIBTLS_SENDERR || s.wlen > 0:
	case r.held:
		r.held, rc = false, r.heldRC
	default:
		rc = r.inner.call(ctx)
		if s.wlen > 0 && s.wblock == 0 {
			// A handshake or close_notify step: send what it wrote.
			rc = C.golibtls_sock_done(s, rc, 0)
		}
	}
	if rc == C.GOLIBTLS_SENDERR {
		r.sendErrno = int32(s.werr)
		s.err = 0
		rc = -1
	}
	if s.wlen > 0 && rc >= 0 && !(r.kind == opRead && rc > 0) {
		// The socket is full. A handshake, Write or close_notify is not
		// over until its output has left: keep the result and wait
		// for the socket. (A Read returns the data it has; the next
		// call of either run sends the rest first.)
		r.held, r.heldRC = true, rc
		rc = C.TLS_WANT_POLLOUT
	} else if s.wlen > 0 && rc == C.TLS_WANT_POLLIN {
		rc = C.TLS_WANT_POLLOUT // send before waiting for the peer
	}
	// Bytes read ahead are a readable socket: never wait for more then.
	r.again = (rc == C.TLS_WANT_POLLIN && (s.eagain == 0 || s.rec.ahead > 0)) || (rc == C.TLS_WANT_POLLOUT && s.wblock == 0)
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
		if r.sendErrno != 0 {
			if r.err != nil && !errors.Is(r.err, ErrClosed) {
				errno := syscall.Errno(r.sendErrno)
				r.err = &Error{Op: r.op, Msg: "write failed: " + errno.Error(), Err: r.t.opError("write", os.NewSyscallError("write", errno))}
			}
			r.sendErrno = 0
		}
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
					return true // r.wantIn unchanged: RawConn calls again at once
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
		if r.wantIn == (rc == C.TLS_WANT_POLLIN) {
			return false // wait in this RawConn call, then call again
		}
		r.wantIn = rc == C.TLS_WANT_POLLIN
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
	r.rc, r.err, r.done, r.held = 0, nil, false, false
	// Writes start in a RawConn Write, so that an expired read deadline
	// cannot fail them, and the rest in a RawConn Read.
	r.wantIn = kind != opWrite && kind != opClose
	rc, err := t.wait(r)
	r.c, r.inner, r.err = nil, nil, nil
	return rc, err
}

func (t *socketTransport) wait(r *sockRun) (C.ssize_t, error) {
	for !r.done {
		var werr error
		if r.wantIn {
			werr = t.raw.Read(r.onReady)
		} else {
			werr = t.raw.Write(r.onReady)
		}
		if werr != nil && !r.done {
			if r.c.closed.Load() || errors.Is(werr, net.ErrClosed) {
				return -1, closedError(r.op)
			}
			dir := "read"
			if !r.wantIn {
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
		C.golibtls_sock_release(t.s)
		C.free(unsafe.Pointer(t.s))
		t.s = nil
	}
}

// socketBuffers reports what a Conn's socket transport holds (for tests):
// the bytes read ahead of libtls and the output not sent yet, and whether
// their buffers exist. ok is false on the callback transport or once the
// transport is freed.
func (c *Conn) socketBuffers() (ahead, pending int, rbuf, wbuf, ok bool) {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	t, isSock := c.t.(*socketTransport)
	if !isSock || t.s == nil {
		return 0, 0, false, false, false
	}
	return int(t.s.rec.ahead), int(t.s.wlen), t.s.rbuf != nil, t.s.wbuf != nil, true
}
