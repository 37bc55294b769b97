package libtls

/*
#include <stdlib.h>
#include <string.h>
#include <tls.h>

// golibtls_bio is the transport libtls sees. libtls reads ciphertext from
// in[in_off:in_end] and appends the ciphertext it produces to
// out[out_end:out_cap]; Go moves bytes between these buffers and the
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
};

static ssize_t golibtls_read_cb(struct tls *ctx, void *buf, size_t len, void *arg) {
	struct golibtls_bio *b = arg;
	size_t avail = b->in_end - b->in_off;
	if (avail == 0)
		return b->in_eof ? 0 : TLS_WANT_POLLIN;
	if (len > avail)
		len = avail;
	memcpy(buf, b->in + b->in_off, len);
	b->in_off += len;
	return (ssize_t)len;
}

static ssize_t golibtls_write_cb(struct tls *ctx, const void *buf, size_t len, void *arg) {
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

static int golibtls_connect(struct tls *ctx, struct golibtls_bio *b, const char *servername) {
	return tls_connect_cbs(ctx, golibtls_read_cb, golibtls_write_cb, b, servername);
}

static int golibtls_accept(struct tls *srv, struct tls **cctx, struct golibtls_bio *b) {
	return tls_accept_cbs(srv, cctx, golibtls_read_cb, golibtls_write_cb, b);
}
*/
import "C"

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/golibtls/libtls/internal/tlsrecord"
)

// Why callbacks and buffers instead of handing libtls a socket: a Conn works
// over any net.Conn (net.Pipe, a wrapped or proxied connection, a Unix
// socket), deadlines and cancellation are the net.Conn's own, and no OS
// thread ever blocks inside C waiting for the network: a goroutine waiting
// for data parks in the Go netpoller, so 10,000 idle connections cost 10,000
// goroutines, not 10,000 threads. The price is one copy of the ciphertext
// each way between the buffers and OpenSSL's own, which is small next to the
// cipher itself.

const (
	// inBufSize bounds one read from the network. libtls consumes all of it
	// before it asks for more, so it need not hold a whole record.
	inBufSize = 16 << 10
	// outBufSize holds one full TLS record (16 KiB of data plus header and
	// AEAD overhead), so a 16 KiB Write is one record and one network write.
	outBufSize = 16<<10 + 1024
)

// Conn is a TLS connection over a net.Conn, driven by libtls. It implements
// net.Conn. The handshake runs on the first Read or Write, or explicitly with
// Handshake.
//
// Read and Write may be called concurrently from two goroutines; calls into
// the C context are serialized, but no lock on it is held while a goroutine
// waits for the network. Close unblocks pending Reads and Writes.
type Conn struct {
	conn     net.Conn
	cfg      *Config
	srv      *Server // for server connections: keeps the server context alive
	isClient bool
	sni      string // client: the server name to send and verify

	// Lock order: hsMu, writeMu, readMu, flushMu, cMu. cMu guards every C
	// call on ctx and the bio offsets, and is never held during network I/O.
	hsMu    sync.Mutex
	writeMu sync.Mutex // one Write at a time (libtls retries need the same buffer)
	readMu  sync.Mutex // one reader of the network, and one Read, at a time
	flushMu sync.Mutex // one writer of out's pending bytes to the network
	cMu     sync.Mutex

	ctx       *C.struct_tls // nil once freed
	bio       *C.struct_golibtls_bio
	pin       runtime.Pinner
	bufs      *connBufs // the memory of inBuf and outBuf; nil once freed
	inBuf     []byte
	outBuf    []byte
	connected bool // client: tls_connect_cbs has run

	sent bool // guarded by flushMu: bytes have gone out on conn

	// records follows the record framing of the ciphertext read from
	// conn (guarded by readMu), so that an end of the stream inside a
	// record is reported as a truncation: LibreSSL's tls_read returns 0
	// there, as for a clean close.
	records tlsrecord.Tracker

	// Client session file of the running handshake (see session.go).
	sessionFD  int // -1: none
	sessionErr error

	hsDone atomic.Bool // set after hsErr and state are final
	hsErr  error
	state  connState // state.go

	closed  atomic.Bool
	closing chan struct{} // closed by Close: ends waits for session locks
	bgFlush atomic.Bool   // a background flush goroutine runs
}

// connBufs are a Conn's in and out buffers, recycled between Conns through
// connBufPool: otherwise every handshake allocates and zeroes 33 KiB per
// side, which costs garbage collection and memory clearing. They hold only
// ciphertext, so they are reused without being cleared.
type connBufs struct {
	in  [inBufSize]byte
	out [outBufSize]byte
}

var connBufPool = sync.Pool{New: func() any { return new(connBufs) }}

func newConn(conn net.Conn, cfg *Config) *Conn {
	c := &Conn{conn: conn, cfg: cfg, sessionFD: -1, closing: make(chan struct{})}
	c.bufs = connBufPool.Get().(*connBufs)
	c.inBuf = c.bufs.in[:]
	c.outBuf = c.bufs.out[:]
	c.bio = (*C.struct_golibtls_bio)(C.calloc(1, C.size_t(unsafe.Sizeof(C.struct_golibtls_bio{}))))
	// libtls keeps pointers to the buffers between calls, so they are
	// pinned for the Conn's life (the cgo rules allow pinned Go memory in C
	// memory).
	c.pin.Pin(c.bufs)
	c.bio.in = (*C.uchar)(unsafe.Pointer(&c.inBuf[0]))
	c.bio.in_cap = C.size_t(len(c.inBuf))
	c.bio.out = (*C.uchar)(unsafe.Pointer(&c.outBuf[0]))
	c.bio.out_cap = C.size_t(len(c.outBuf))
	return c
}

// Client returns a client-side TLS connection over conn
// (tls_client + tls_configure). serverName is sent as SNI and checked
// against the server's certificate; "" sends none (then only a Config with
// InsecureNoVerifyName can verify the server). The handshake runs on the
// first Read or Write, or with Handshake.
func Client(conn net.Conn, cfg *Config, serverName string) (*Conn, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, &Error{Op: "configure", Msg: "nil Config", Err: errInvalid}
	}
	ctx := newContext(C.tls_client())
	if ctx == nil {
		return nil, &Error{Op: "configure", Msg: "tls_client failed"}
	}
	if err := configure(ctx, cfg, false); err != nil {
		freeContext(ctx)
		return nil, err
	}
	c := newConn(conn, cfg)
	c.ctx, c.isClient, c.sni = ctx, true, serverName
	runtime.SetFinalizer(c, (*Conn).finalize)
	return c, nil
}

// configure applies cfg to a fresh context (tls_configure). On success the
// context holds a reference to cfg's C configuration (cfg.ref), which the
// caller drops with cfg.unref after freeing the context.
//
// A server context copies the session lifetime when it is configured, so
// for a server the Config is locked for writing and what the server was
// configured with is recorded under the same lock (SetSessionLifetime
// checks it under that lock too).
func configure(ctx *C.struct_tls, cfg *Config, server bool) error {
	if server {
		cfg.mu.Lock()
		defer cfg.mu.Unlock()
	} else {
		cfg.mu.RLock()
		defer cfg.mu.RUnlock()
	}
	if cfg.closed {
		return &Error{Op: "configure", Msg: "config is closed", Err: ErrClosed}
	}
	if C.tls_configure(ctx, cfg.c) != 0 {
		return ctxError(ctx, "configure")
	}
	if server && cfg.session.lifetime > 0 {
		cfg.session.serving = true
	}
	cfg.ref()
	return nil
}

// liveContexts counts the C contexts (clients, servers and their
// connections) the binding has made and not freed yet; the tests use it to
// find leaks.
var liveContexts atomic.Int64

// liveConfigs counts the C configurations not freed yet.
var liveConfigs atomic.Int64

// newContext counts a context made by tls_client, tls_server or
// tls_accept_cbs (nil is passed through uncounted).
func newContext(ctx *C.struct_tls) *C.struct_tls {
	if ctx != nil {
		liveContexts.Add(1)
	}
	return ctx
}

// freeContext frees a context made through newContext (tls_free).
func freeContext(ctx *C.struct_tls) {
	C.tls_free(ctx)
	liveContexts.Add(-1)
}

// accept makes a connection context of the server context srv over conn
// (tls_accept_cbs). The caller serializes calls on srv.
func accept(srv *Server, conn net.Conn) (*Conn, error) {
	c := newConn(conn, srv.cfg)
	c.srv = srv
	// The read lock only excludes Config writers: a closed Config still
	// serves the servers built from it (the server context holds a C
	// reference). The caller holds it.
	var cctx *C.struct_tls
	rc := C.golibtls_accept(srv.ctx, &cctx, c.bio)
	if rc != 0 {
		err := ctxError(srv.ctx, "accept")
		c.freeBuffers()
		return nil, err
	}
	c.ctx = newContext(cctx)
	runtime.SetFinalizer(c, (*Conn).finalize)
	return c, nil
}

// ctxError builds the Error of a failed call on ctx from tls_error.
func ctxError(ctx *C.struct_tls, op string) error {
	msg := "unknown error"
	if m := C.tls_error(ctx); m != nil {
		msg = C.GoString(m)
	}
	return &Error{Op: op, Msg: msg}
}

func closedError(op string) error { return &Error{Op: op, Err: ErrClosed} }

// --- Handshake --------------------------------------------------------------

// Handshake runs the TLS handshake if it has not run yet. Read and Write
// call it themselves. A failed handshake's error is returned by every later
// call.
func (c *Conn) Handshake() error { return c.HandshakeContext(context.Background()) }

// HandshakeContext is Handshake with a context: if ctx is done before the
// handshake completes, the handshake is abandoned, the underlying
// connection is closed (as crypto/tls does) and ctx's error is returned.
func (c *Conn) HandshakeContext(ctx context.Context) error {
	if c.hsDone.Load() {
		return c.hsErr
	}
	c.hsMu.Lock()
	defer c.hsMu.Unlock()
	if c.hsDone.Load() {
		return c.hsErr
	}
	if c.closed.Load() {
		return closedError("handshake")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() {
			// Unblocks the network I/O of the handshake.
			_ = c.conn.SetDeadline(time.Unix(1, 0))
		})
	}
	err := c.handshake(ctx)
	if stop != nil && !stop() {
		// ctx ended during the handshake and moved the deadline into the
		// past: the connection is unusable whatever the handshake did.
		err = ctx.Err()
		_ = c.conn.Close()
	}
	var te *Error
	if err != nil && !errors.As(err, &te) && !errors.Is(err, ErrClosed) {
		// A transport error (deadline, reset) also ends the handshake: the
		// C context cannot be resumed mid-handshake after it.
		err = &Error{Op: "handshake", Msg: err.Error(), Err: err}
	}
	c.hsErr = err
	c.hsDone.Store(true)
	c.countHandshake(err) // hook: stats.go
	return err
}

func (c *Conn) handshake(ctx context.Context) error {
	if !c.isClient {
		if err := c.checkFirstRecord(); err != nil { // hook: recordheader.go
			return err
		}
		if err := c.cfg.ensureTicketKeys(c); err != nil {
			return err
		}
		return c.handshakeSteps()
	}
	// From connect, which reads the session file, to the end of the
	// handshake, which rewrites it, this connection owns the file.
	release, err := c.lockClientSession(ctx)
	if err != nil {
		return err
	}
	defer release()
	err = c.connect()
	if err == nil {
		err = c.handshakeSteps()
	}
	if err != nil && c.canRetryWithoutSession(err) {
		// libtls could not use the stored session (garbage, truncated
		// PEM; on LibreSSL a TLS 1.2 session under a TLS 1.3-only
		// Config fails "no protocols available") and nothing has been
		// sent yet: discard the session and start over, once.
		if err = c.discardSession(err); err == nil {
			if err = c.restart(); err == nil {
				err = c.handshakeSteps()
			}
		}
	}
	return err
}

// handshakeSteps drives tls_handshake to completion.
func (c *Conn) handshakeSteps() error {
	for {
		c.cfg.mu.RLock() // ticket keys and the session file are read here
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			c.cfg.mu.RUnlock()
			return closedError("handshake")
		}
		rc := C.tls_handshake(c.ctx)
		pending := c.bio.out_end > c.bio.out_off
		var err error
		if rc == 0 {
			c.captureState()
		} else if rc != C.TLS_WANT_POLLIN && rc != C.TLS_WANT_POLLOUT {
			err = ctxError(c.ctx, "handshake")
		}
		c.cMu.Unlock()
		c.cfg.mu.RUnlock()

		if pending {
			if rc == 0 && !c.isClient {
				// The server's last words (TLS 1.3 session tickets) go
				// out in the background: a client may already be writing
				// and not read them until its write completes, which
				// over a synchronous transport such as net.Pipe would
				// deadlock two blocking writers.
				c.flushInBackground()
			} else if ferr := c.flush(); ferr != nil && err == nil {
				// Send a flight, or the alert of a failure, before
				// waiting for the peer.
				return ferr
			}
		}
		switch {
		case err != nil:
			return err
		case rc == 0:
			return nil
		case rc == C.TLS_WANT_POLLIN:
			c.readMu.Lock()
			err = c.fill()
			c.readMu.Unlock()
			if err != nil {
				return err
			}
		}
	}
}

// restart resets the client context (tls_reset), configures it again and
// connects anew over the same transport, on which nothing was sent.
func (c *Conn) restart() error {
	// Lock order: Config before cMu. A closed Config is still usable
	// here: this Conn holds one of the binding's references to it
	// (cfg.users), so tls_reset, which drops the context's libtls
	// reference, never frees the C configuration under tls_configure.
	c.cfg.mu.RLock()
	cc := c.cfg.c
	c.cMu.Lock()
	if c.ctx == nil {
		c.cMu.Unlock()
		c.cfg.mu.RUnlock()
		return closedError("connect")
	}
	C.tls_reset(c.ctx)
	c.bio.in_off, c.bio.in_end, c.bio.in_eof = 0, 0, 0
	c.bio.out_off, c.bio.out_end = 0, 0
	c.connected = false
	var err error
	if C.tls_configure(c.ctx, cc) != 0 {
		err = ctxError(c.ctx, "configure")
	}
	c.cMu.Unlock()
	c.cfg.mu.RUnlock()
	if err != nil {
		return err
	}
	return c.connect()
}

// connect starts the client side (tls_connect_cbs), which also reads the
// Config's session file.
func (c *Conn) connect() error {
	var sni *C.char
	if c.sni != "" {
		sni = cstring(c.sni)
		defer C.free(unsafe.Pointer(sni))
	}
	c.cfg.mu.RLock()
	defer c.cfg.mu.RUnlock()
	c.cMu.Lock()
	defer c.cMu.Unlock()
	if c.ctx == nil {
		return closedError("connect")
	}
	if C.golibtls_connect(c.ctx, c.bio, sni) != 0 {
		return ctxError(c.ctx, "connect")
	}
	c.connected = true
	return nil
}

// --- Moving ciphertext ------------------------------------------------------

// fill reads once from the network into the in buffer. libtls asked for more
// (TLS_WANT_POLLIN), so it has consumed everything buffered and the buffer
// can start over. The caller holds readMu, which makes it the only goroutine
// that appends to in.
func (c *Conn) fill() error {
	c.cMu.Lock()
	if c.ctx == nil {
		c.cMu.Unlock()
		return closedError("read")
	}
	b := c.bio
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

	n, err := c.conn.Read(c.inBuf)
	c.records.Feed(c.inBuf[:n])

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
func (c *Conn) flush() error {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	return c.flushLocked()
}

// flushInBackground starts a goroutine that flushes, unless one runs. The
// caller has queued its bytes under cMu before the call; a running flusher
// re-checks for bytes after it clears its flag, so none are stranded.
func (c *Conn) flushInBackground() {
	if !c.bgFlush.CompareAndSwap(false, true) {
		return
	}
	go func() {
		for {
			err := c.flush()
			c.bgFlush.Store(false)
			// A failed write surfaces on the next Read or Write, which hit
			// the same transport error.
			if err != nil || !c.outPending() || !c.bgFlush.CompareAndSwap(false, true) {
				return
			}
		}
	}()
}

func (c *Conn) outPending() bool {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	return c.ctx != nil && c.bio.out_end > c.bio.out_off
}

// flushLocked is flush for a caller that holds flushMu.
func (c *Conn) flushLocked() error {
	for {
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			return closedError("write")
		}
		off, end := int(c.bio.out_off), int(c.bio.out_end)
		c.cMu.Unlock()
		if off == end {
			return nil
		}
		n, err := c.conn.Write(c.outBuf[off:end])
		if n > 0 && !c.sent {
			c.sent = true
		}
		c.cMu.Lock()
		if c.ctx != nil {
			c.bio.out_off += C.size_t(n)
			if c.bio.out_off == c.bio.out_end {
				c.bio.out_off, c.bio.out_end = 0, 0
			}
		}
		c.cMu.Unlock()
		if err != nil {
			if c.closed.Load() {
				return closedError("write")
			}
			return err
		}
	}
}

// --- Read and Write -----------------------------------------------------------

// Read reads application data, running the handshake first if needed. It
// returns io.EOF after the peer's close_notify.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			return 0, closedError("read")
		}
		before := c.bio.out_end
		n := C.tls_read(c.ctx, unsafe.Pointer(&p[0]), C.size_t(len(p)))
		// Only the bytes this call queued (a post-handshake message or an
		// alert) are the reader's to send. Bytes queued before it belong
		// to a Write or a background flush that is sending them.
		produced := c.bio.out_end > before
		var err error
		if n < 0 && n != C.TLS_WANT_POLLIN && n != C.TLS_WANT_POLLOUT {
			err = ctxError(c.ctx, "read")
		}
		c.cMu.Unlock()

		if n == C.TLS_WANT_POLLOUT {
			// The out buffer is full: wait until it drains.
			if ferr := c.flush(); ferr != nil {
				return 0, ferr
			}
		} else if produced {
			// A reader never waits for the peer to read: the peer may
			// itself be blocked writing to us (both ends of a net.Pipe or
			// a full socket buffer), waiting for this Read. Waiting for
			// flushMu, held by a Write blocked on the network, or
			// flushing synchronously would deadlock both ends.
			c.flushInBackground()
		}
		switch {
		case n > 0:
			return int(n), nil
		case n == 0:
			if !c.records.AtBoundary() {
				// The stream ended inside a record: not a close.
				return 0, &Error{Op: "read", Msg: "unexpected EOF inside a TLS record", Err: io.ErrUnexpectedEOF}
			}
			return 0, io.EOF
		case err != nil:
			return 0, err
		case n == C.TLS_WANT_POLLIN:
			if err := c.fill(); err != nil {
				return 0, err
			}
		}
	}
}

// Write writes application data, running the handshake first if needed.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	total := 0
	for total < len(p) {
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			return total, closedError("write")
		}
		n := C.tls_write(c.ctx, unsafe.Pointer(&p[total]), C.size_t(len(p)-total))
		pending := c.bio.out_end > c.bio.out_off
		var err error
		if n < 0 && n != C.TLS_WANT_POLLIN && n != C.TLS_WANT_POLLOUT {
			err = ctxError(c.ctx, "write")
		}
		c.cMu.Unlock()

		if n > 0 {
			total += int(n)
		}
		if pending {
			if ferr := c.flush(); ferr != nil {
				return total, ferr
			}
		}
		switch {
		case err != nil:
			return total, err
		case n == 0:
			// libtls never reports 0 bytes written for a non-empty
			// buffer; do not spin if it ever does.
			return total, io.ErrShortWrite
		case n == C.TLS_WANT_POLLIN:
			c.readMu.Lock()
			err = c.fill()
			c.readMu.Unlock()
			if err != nil {
				return total, err
			}
		}
	}
	return total, nil
}

// --- Close ------------------------------------------------------------------

// closeNotifyTimeout bounds how long Close waits to send close_notify to a
// peer that does not read, as in crypto/tls.
const closeNotifyTimeout = 5 * time.Second

// Close sends close_notify when the handshake has completed and no Write is
// in progress, closes the underlying connection (which unblocks pending
// Reads and Writes) and frees the C context. Later calls fail with an error
// wrapping net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return closedError("close")
	}
	close(c.closing)
	var alertErr error
	if c.hsDone.Load() && c.hsErr == nil && c.writeMu.TryLock() {
		alertErr = c.closeNotify()
		c.writeMu.Unlock()
	}
	err := c.conn.Close()
	c.free()
	if err == nil {
		err = alertErr
	}
	return err
}

// closeNotify runs tls_close until it has queued close_notify and flushes
// it. It does not wait for the peer's close_notify.
func (c *Conn) closeNotify() error {
	// A flush blocked on a peer that does not read would hold Close up.
	if !c.flushMu.TryLock() {
		return nil
	}
	defer c.flushMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
	for range 4 { // tls_close needs at most one WANT_POLLOUT round per flush
		c.cMu.Lock()
		if c.ctx == nil {
			c.cMu.Unlock()
			return nil
		}
		rc := C.tls_close(c.ctx)
		var err error
		if rc == -1 {
			err = ctxError(c.ctx, "close")
		}
		c.cMu.Unlock()
		if ferr := c.flushLocked(); ferr != nil {
			return ferr
		}
		if rc != C.TLS_WANT_POLLOUT {
			// 0, TLS_WANT_POLLIN (waiting for the peer's close_notify,
			// which Close does not do), or an error.
			return err
		}
	}
	return nil
}

// free releases the C context and the buffers exactly once.
func (c *Conn) free() {
	c.cMu.Lock()
	if c.ctx == nil && c.bio == nil {
		c.cMu.Unlock()
		return
	}
	freedCtx := c.ctx != nil
	if freedCtx {
		c.keepState() // hook: state.go, the facts ConnInfo has not read yet
		freeContext(c.ctx)
		c.ctx = nil
	}
	c.freeBuffersLocked()
	runtime.SetFinalizer(c, nil)
	c.cMu.Unlock()
	// After cMu: Config.mu and Server.mu come before cMu.
	if freedCtx {
		if c.srv != nil {
			c.srv.release()
		} else {
			c.cfg.unref()
		}
	}
}

func (c *Conn) freeBuffers() {
	c.cMu.Lock()
	c.freeBuffersLocked()
	c.cMu.Unlock()
}

func (c *Conn) freeBuffersLocked() {
	if c.bio != nil {
		C.free(unsafe.Pointer(c.bio))
		c.bio = nil
		c.pin.Unpin()
	}
	// The buffers go back to the pool only if no goroutine can still use
	// them. fill and flushLocked touch them outside cMu, but only while
	// holding readMu or flushMu, and only after they have seen a live ctx
	// under cMu (it is nil from now on). A goroutine inside one of those
	// sections (a Read that the net.Conn's Close has not unblocked yet)
	// leaves the buffers to the garbage collector.
	if c.bufs != nil {
		if c.readMu.TryLock() {
			if c.flushMu.TryLock() {
				connBufPool.Put(c.bufs)
				c.flushMu.Unlock()
			}
			c.readMu.Unlock()
		}
		c.bufs = nil
	}
}

// finalize is a backstop for Conns that were never closed.
func (c *Conn) finalize() {
	c.closed.Store(true)
	c.free()
}

// --- net.Conn plumbing ------------------------------------------------------

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines of the underlying
// connection; an expired deadline surfaces as os.ErrDeadlineExceeded. A
// Read that timed out can be retried after the deadline is moved.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying connection's write deadline. After a
// Write times out the TLS stream may be corrupt; Close the Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// NetConn returns the underlying connection. Reading from or writing to it
// directly corrupts the TLS stream.
func (c *Conn) NetConn() net.Conn { return c.conn }
