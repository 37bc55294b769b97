package libtls

/*
#include <stdlib.h>
#include <string.h>
#include <tls.h>
#include "golibtls.h"

// golibtls_bio is what libtls sees of the callback transport. libtls reads
// ciphertext from in[in_off:in_end] and appends the ciphertext it produces
// to out[out_end:out_cap]; Go moves bytes between these buffers and the
// net.Conn between C calls. The buffers are pinned Go memory.
//
// The callbacks only copy and never block: an empty in buffer is
// TLS_WANT_POLLIN, a full out buffer TLS_WANT_POLLOUT. They never move data
// inside a buffer either, because Go may be filling the free tail of in, or
// writing out's pending bytes to the network, while another goroutine calls
// into C; only Go, under the Conn's locks, resets the offsets.
struct golibtls_bio {
	unsigned char *in;
	size_t in_off, in_end, in_cap;
	int in_eof;
	unsigned char *out;
	size_t out_off, out_end, out_cap;
	struct golibtls_in rec; // what libtls has read
};

static ssize_t golibtls_bio_read(struct tls *ctx, void *buf, size_t len, void *arg) {
	struct golibtls_bio *b = arg;
	size_t avail = b->in_end - b->in_off;
	if (golibtls_in_blocked(&b->rec))
		return TLS_WANT_POLLIN;
	if (avail == 0)
		return b->in_eof ? golibtls_in_end(&b->rec) : TLS_WANT_POLLIN;
	if (len > avail)
		len = avail;
	memcpy(buf, b->in + b->in_off, len);
	golibtls_in_feed(&b->rec, b->in + b->in_off, len);
	b->in_off += len;
	return (ssize_t)len;
}

static ssize_t golibtls_bio_write(struct tls *ctx, const void *buf, size_t len, void *arg) {
	struct golibtls_bio *b = arg;
	size_t space = b->out_cap - b->out_end;
	if (space == 0)
		return TLS_WANT_POLLOUT;
	if (len > space)
		len = space;
	memcpy(b->out + b->out_end, buf, len);
	b->out_end += len;
	return (ssize_t)len;
}

static int golibtls_bio_connect(struct tls *ctx, struct golibtls_bio *b, const char *servername) {
	return tls_connect_cbs(ctx, golibtls_bio_read, golibtls_bio_write, b, servername);
}

static int golibtls_bio_accept(struct tls *srv, struct tls **cctx, struct golibtls_bio *b) {
	return tls_accept_cbs(srv, cctx, golibtls_bio_read, golibtls_bio_write, b);
}
*/
import "C"

import (
	"errors"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// The callback transport serves every net.Conn without a socket of its own
// (net.Pipe, a wrapped or proxied connection): libtls reads and writes the
// buffers of a golibtls_bio, and Go moves the ciphertext between them and
// the net.Conn with its Read and Write methods, so that deadlines and
// cancellation are the net.Conn's own. The price is one copy of the
// ciphertext each way.

const (
	// inBufSize bounds one read from the network. libtls consumes all of it
	// before it asks for more, so it need not hold a whole record.
	inBufSize = 16 << 10
	// outBufSize holds one full TLS record (16 KiB of data plus header and
	// AEAD overhead), so a 16 KiB Write is one record and one network write.
	outBufSize = 16<<10 + 1024
)

// connBufs are a callback transport's in and out buffers, recycled through
// connBufPool: otherwise every handshake allocates and zeroes 33 KiB per
// side. They hold only ciphertext, so they are reused without being
// cleared.
type connBufs struct {
	in  [inBufSize]byte
	out [outBufSize]byte
}

var connBufPool = sync.Pool{New: func() any { return new(connBufs) }}

// callbackTransport is the transport of a Conn over a plain net.Conn. Lock
// order within the Conn's: readMu (the one goroutine appending to in),
// flushMu (the one goroutine writing out's pending bytes), then cMu, which
// guards the bio's offsets.
type callbackTransport struct {
	flushMu sync.Mutex
	bio     *C.struct_golibtls_bio // C memory; nil once freed
	pin     runtime.Pinner
	bufs    *connBufs // the memory of inBuf and outBuf; nil once freed
	inBuf   []byte
	outBuf  []byte
	sent    atomic.Bool // bytes have gone out on the net.Conn
	bgFlush atomic.Bool // a background flush goroutine runs
	// resetErr is a write's "connection reset" error: after a reset the
	// kernel drops what was still unread and reports the reset to the
	// first call only, so an end of file that fill sees afterwards is a
	// cut, not the peer's end of stream.
	resetErr atomic.Pointer[error]

	// The runs of Reads and Writes.
	readRun, writeRun cbRun
}

func newCallbackTransport() *callbackTransport {
	t := &callbackTransport{}
	t.bufs = connBufPool.Get().(*connBufs)
	t.inBuf = t.bufs.in[:]
	t.outBuf = t.bufs.out[:]
	t.bio = (*C.struct_golibtls_bio)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_golibtls_bio{}))))
	// libtls keeps pointers to the buffers between calls, so they are
	// pinned for the transport's life (the cgo rules allow pinned Go
	// memory in C memory).
	t.pin.Pin(t.bufs)
	t.bio.in = (*C.uchar)(unsafe.Pointer(&t.inBuf[0]))
	t.bio.in_cap = C.size_t(len(t.inBuf))
	t.bio.out = (*C.uchar)(unsafe.Pointer(&t.outBuf[0]))
	t.bio.out_cap = C.size_t(len(t.outBuf))
	return t
}

func (t *callbackTransport) connect(ctx *C.struct_tls, servername *C.char) C.int {
	return C.golibtls_bio_connect(ctx, t.bio, servername)
}

func (t *callbackTransport) accept(srv *C.struct_tls, cctx **C.struct_tls) C.int {
	return C.golibtls_bio_accept(srv, cctx, t.bio)
}

func (t *callbackTransport) sentAny(*Conn) bool { return t.sent.Load() }

func (t *callbackTransport) in() *C.struct_golibtls_in { return &t.bio.rec }

func (t *callbackTransport) readMany(ctx *C.struct_tls, p []byte) C.ssize_t {
	return C.golibtls_read_many(ctx, &t.bio.rec, unsafe.Pointer(&p[0]), C.size_t(len(p)), maxNonDataRecords)
}

func (t *callbackTransport) writeMany(ctx *C.struct_tls, p []byte) C.ssize_t {
	return C.golibtls_write_many(ctx, unsafe.Pointer(&p[0]), C.size_t(len(p)), maxOpBytes)
}

// ioError: the callbacks never fail; transport errors surface from fill
// and flush directly.
func (t *callbackTransport) ioError(string) error { return nil }

func (t *callbackTransport) reset() {
	*t.bio = C.struct_golibtls_bio{
		in: t.bio.in, in_cap: t.bio.in_cap,
		out: t.bio.out, out_cap: t.bio.out_cap,
	}
}

// cbRun is a run's libtls call with what it saw of the out buffer: the
// transport keeps one for Reads (and the handshake) and one for Writes
// (and close_notify), so that steady-state Reads and Writes allocate
// nothing.
type cbRun struct {
	t                 *callbackTransport
	inner             libtlsCall
	pending, produced bool
}

// call is the call as Conn.step makes it under cMu; it notes whether the
// out buffer holds bytes, and whether this call queued them.
func (r *cbRun) call(ctx *C.struct_tls) C.ssize_t {
	bio := r.t.bio
	before := bio.out_end
	rc := r.inner.call(ctx)
	r.pending = bio.out_end > bio.out_off
	r.produced = bio.out_end > before
	return rc
}

// run drives call, flushing what libtls produced and reading what it asks
// for. Output is flushed before any wait for the peer, except where the
// peer may itself be blocked writing to us (see below).
func (t *callbackTransport) run(c *Conn, kind opKind, op string, call libtlsCall) (C.ssize_t, error) {
	// A handshake ends before the first Read (both hold hsMu or wait for
	// it), and close_notify is sent under writeMu: two runs serve all.
	r := &t.readRun
	if kind == opWrite || kind == opClose {
		r = &t.writeRun
	}
	r.t, r.inner = t, call
	defer func() { r.inner = nil }()
	for {
		rc, err := c.step(kind, op, r)
		pending, produced := r.pending, r.produced
		if err != nil && errors.Is(err, ErrClosed) {
			return rc, err
		}
		switch {
		case kind == opRead && rc == C.TLS_WANT_POLLOUT:
			// The out buffer is full: wait until it drains.
			if ferr := t.flush(c); ferr != nil {
				return rc, ferr
			}
		case kind == opRead && produced:
			// A reader never waits for the peer to read: the peer may
			// itself be blocked writing to us (both ends of a net.Pipe
			// or a full socket buffer), waiting for this Read. Waiting
			// for flushMu, held by a Write blocked on the network, or
			// flushing synchronously would deadlock both ends. Only the
			// bytes this call queued (a post-handshake message or an
			// alert) are the reader's to send.
			t.flushInBackground(c)
		case kind == opHandshake && rc == 0 && !c.isClient && pending:
			// The server's last words (TLS 1.3 session tickets) go out
			// in the background: a client may already be writing and not
			// read them until its write completes, which over a
			// synchronous transport such as net.Pipe would deadlock two
			// blocking writers.
			t.flushInBackground(c)
		case kind == opClose && pending:
			// A background flush (the server's last flight, a Read's
			// reply) may hold flushMu: close_notify goes out after it.
			// Close has set the write deadline, which bounds both.
			if ferr := t.flush(c); ferr != nil {
				return rc, ferr
			}
		case kind != opRead && pending:
			// Send a flight, a record, or the alert of a failure,
			// before waiting for the peer.
			if ferr := t.flush(c); ferr != nil && err == nil {
				return rc, ferr
			}
		}
		if err != nil || (rc != C.TLS_WANT_POLLIN && rc != C.TLS_WANT_POLLOUT) {
			return rc, err
		}
		if rc == C.TLS_WANT_POLLIN {
			if kind == opClose {
				return rc, nil // the peer's close_notify is not awaited
			}
			if kind != opRead { // a Read holds readMu already
				c.readMu.Lock()
			}
			ferr := t.fill(c)
			if kind != opRead {
				c.readMu.Unlock()
			}
			if ferr != nil {
				return rc, ferr
			}
		}
	}
}

// fill reads once from the network into the in buffer. libtls asked for more
// (TLS_WANT_POLLIN), so it has consumed everything buffered and the buffer
// can start over. The caller holds readMu, which makes it the only goroutine
// that appends to in.
func (t *callbackTransport) fill(c *Conn) error {
	c.cMu.Lock()
	if c.ctx == nil {
		c.cMu.Unlock()
		return closedError("read")
	}
	b := t.bio
	if b.in_off != b.in_end {
		// Unconsumed input (another goroutine's C call has not run yet).
		c.cMu.Unlock()
		return nil
	}
	if b.in_eof != 0 {
		c.cMu.Unlock()
		return io.ErrUnexpectedEOF
	}
	b.in_off, b.in_end = 0, 0
	c.cMu.Unlock()

	n, err := c.conn.Read(t.inBuf)
	if errors.Is(err, io.EOF) {
		if rerr := t.resetErr.Load(); rerr != nil {
			err = *rerr
		}
	}

	c.cMu.Lock()
	if c.ctx != nil {
		b.in_end = C.size_t(n)
		if errors.Is(err, io.EOF) {
			// libtls sees end of file and decides whether it was clean.
			b.in_eof = 1
			err = nil
		}
	} else if err == nil {
		err = closedError("read")
	}
	c.cMu.Unlock()
	if err != nil && c.closed.Load() {
		return closedError("read")
	}
	return err
}

// flush writes out's pending bytes to the network. libtls only appends at
// out_end, so the bytes before it can be written without holding cMu.
func (t *callbackTransport) flush(c *Conn) error {
	t.flushMu.Lock()
	defer t.flushMu.Unlock()
	return t.flushLocked(c)
}

// flushInBackground starts a goroutine that flushes, unless one runs. The
// caller has queued its bytes under cMu before the call; a running flusher
// re-checks for bytes after it clears its flag, so none are stranded.
func (t *callbackTransport) flushInBackground(c *Conn) {
	if !t.bgFlush.CompareAndSwap(false, true) {
		return
	}
	go func() {
		for {
			err := t.flush(c)
			t.bgFlush.Store(false)
			// A failed write surfaces on the next Read or Write, which hit
			// the same transport error.
			if err != nil || !t.outPending(c) || !t.bgFlush.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

func (t *callbackTransport) outPending(c *Conn) bool {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	return c.ctx != nil && t.bio.out_end > t.bio.out_off
}

// flushLocked is flush for a caller that holds flushMu.
func (t *callbackTransport) flushLocked(c *Conn) error {
	for {
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			return closedError("write")
		}
		off, end := int(t.bio.out_off), int(t.bio.out_end)
		c.cMu.Unlock()
		if off == end {
			return nil
		}
		n, err := c.conn.Write(t.outBuf[off:end])
		if n > 0 {
			t.sent.Store(true)
		}
		c.cMu.Lock()
		if c.ctx != nil {
			t.bio.out_off += C.size_t(n)
			if t.bio.out_off == t.bio.out_end {
				t.bio.out_off, t.bio.out_end = 0, 0
			}
		}
		c.cMu.Unlock()
		if err != nil {
			if c.closed.Load() {
				return closedError("write")
			}
			if errors.Is(err, syscall.ECONNRESET) {
				reset := err // a copy: storing &err would move err to the heap on every write
				t.resetErr.Store(&reset)
			}
			return err
		}
	}
}

// free releases the bio and the buffers (cMu held).
func (t *callbackTransport) free(c *Conn) {
	if t.bio != nil {
		C.free(unsafe.Pointer(t.bio))
		t.bio = nil
		t.pin.Unpin()
	}
	// The buffers go back to the pool only if no goroutine can still use
	// them. fill and flushLocked touch them outside cMu, but only while
	// holding readMu or flushMu, and only after they have seen a live ctx
	// under cMu (it is nil from now on). A goroutine inside one of those
	// sections (a Read that the net.Conn's Close has not unblocked yet)
	// leaves the buffers to the garbage collector.
	if t.bufs != nil {
		if c.readMu.TryLock() {
			if t.flushMu.TryLock() {
				connBufPool.Put(t.bufs)
				t.flushMu.Unlock()
			}
			c.readMu.Unlock()
		}
		t.bufs = nil
	}
}
