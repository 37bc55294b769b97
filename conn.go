package libtls

/*
#include <stdlib.h>
#include <tls.h>
#include "golibtls.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// A Conn drives libtls over one of two transports (transport.go), chosen
// when it is created:
//
//   - the socket transport (transport_socket.go), for connections that
//     expose their socket (*net.TCPConn, *net.UnixConn, other syscall.Conn
//     stream sockets): libtls reads and writes the descriptor itself, and a
//     goroutine that must wait for the network parks in Go's netpoller, never
//     in C. No ciphertext passes through Go.
//   - the callback transport (transport_callback.go), for every other
//     net.Conn (net.Pipe, wrapped or proxied connections): libtls reads and
//     writes Go buffers, and Go moves the bytes between them and the net.Conn.
//
// Either way no OS thread ever blocks inside C waiting for the network:
// 10,000 idle connections cost 10,000 parked goroutines, not threads.

// maxOpBytes bounds the plaintext one cgo call moves through tls_write or
// tls_read (several records at once: a trip through cgo and the scheduler
// per record costs more than it has to), so that a goroutine never stays in
// C long enough to hold up the scheduler for long.
const maxOpBytes = 256 << 10

// maxNonDataRecords bounds the records a peer may send in a row without
// application data once the handshake is over (TLS 1.3 session tickets and
// key updates; crypto/tls allows 16). A Read returns the data that follows
// any number below it; past it, the peer floods the connection, and Reads
// fail. Python's ssl sends as many tickets as its num_tickets says (100 in
// test/peers); LibreSSL itself fails a connection after 100 post-handshake
// messages within an hour, LibreTLS has no bound of its own.
const maxNonDataRecords = 1000

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
	t        transport

	// Lock order: hsMu, writeMu, readMu, the transport's own locks, cMu.
	// cMu guards every C call on ctx and the transport's C state, and is
	// never held during network I/O.
	hsMu    sync.Mutex
	writeMu sync.Mutex // one Write at a time (libtls retries need the same buffer)
	readMu  sync.Mutex // one Read at a time
	cMu     sync.Mutex

	ctx *C.struct_tls // nil once freed

	// A client's stored session: offered is set while the handshake
	// runs if one was offered (see session.go); sessionErr is what went
	// wrong with it.
	offered    bool
	sessionErr error

	// readEnd is how the stream ended, found by a Read that also
	// returned data (guarded by readMu): io.EOF, or an error.
	readEnd error
	// rbuf holds plaintext that a small Read took from libtls beyond
	// what its caller asked for, rbuf[rbufOff:rbufEnd] (guarded by
	// readMu); nil when there is none (see smallRead).
	rbuf             *readBuf
	rbufOff, rbufEnd int
	// rd and wr are Read's and Write's libtls calls (guarded by readMu
	// and writeMu).
	rd readCall
	wr writeCall

	hsDone atomic.Bool // set after hsErr and state are final
	hsErr  error
	state  connState // state.go

	closed  atomic.Bool
	closing chan struct{} // closed by Close: ends waits for session locks

	// closeNotifySent (guarded by writeMu) is set once close_notify has
	// been sent, or tried, by CloseWrite; closeNotifyErr is how it went.
	closeNotifySent bool
	closeNotifyErr  error
	// broken is set when a Read or Write failed (other than a Read's
	// deadline): libtls may hold half a record, or a fatal error, and
	// Close sends no close_notify (LibreTLS's tls_close fails "bad write
	// retry" or "shutdown while in init" there).
	broken atomic.Bool
}

// Client returns a client-side TLS connection over conn
// (tls_client + tls_configure). serverName is sent as SNI and checked
// against the server's certificate; "" sends none (then only a Config with
// InsecureNoVerifyName can verify the server). The handshake runs on the
// first Read or Write, or with Handshake.
//
// If conn exposes its socket (syscall.Conn, as *net.TCPConn and
// *net.UnixConn do), libtls reads and writes the socket directly and conn's
// Read and Write methods are not called; its deadlines and Close work as
// usual.
func Client(conn net.Conn, cfg *Config, serverName string) (*Conn, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, &Error{Op: "configure", Msg: "nil Config", Err: errInvalid}
	}
	// The context is configured when the handshake starts, with a
	// libtls configuration of its own (client_config.go); here it takes
	// one of the binding's references to the Config.
	cfg.mu.RLock()
	if cfg.closed {
		cfg.mu.RUnlock()
		return nil, &Error{Op: "configure", Msg: "config is closed", Err: ErrClosed}
	}
	cfg.ref()
	cfg.mu.RUnlock()
	ctx := newContext(C.tls_client())
	if ctx == nil {
		cfg.unref()
		return nil, &Error{Op: "configure", Msg: "tls_client failed"}
	}
	c := &Conn{conn: conn, cfg: cfg, ctx: ctx, isClient: true, sni: serverName, closing: make(chan struct{})}
	c.t = newTransport(conn)
	runtime.SetFinalizer(c, (*Conn).finalize)
	return c, nil
}

// configureServer applies cfg to a fresh server context (tls_configure).
// On success the context holds a reference to cfg's C configuration
// (cfg.ref), which the caller drops with cfg.unref after freeing the
// context.
//
// A server context copies the session lifetime when it is configured, so
// the Config is locked for writing and what the server was configured with
// is recorded under the same lock (SetSessionLifetime checks it under that
// lock too).
func configureServer(ctx *C.struct_tls, cfg *Config) error {
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed {
		return &Error{Op: "configure", Msg: "config is closed", Err: ErrClosed}
	}
	if C.tls_configure(ctx, cfg.c) != 0 {
		return ctxError(ctx, "configure")
	}
	if cfg.session.lifetime > 0 {
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
	c := &Conn{conn: conn, cfg: srv.cfg, srv: srv, closing: make(chan struct{})}
	c.t = newTransport(conn)
	// The Config's read lock only excludes Config writers: a closed Config
	// still serves the servers built from it. The caller holds it.
	var cctx *C.struct_tls
	if c.t.accept(srv.ctx, &cctx) != 0 {
		err := ctxError(srv.ctx, "accept")
		c.t.free(c)
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
		msg = libtlsMessage(C.GoString(m))
	}
	return &Error{Op: op, Msg: msg}
}

func closedError(op string) error { return &Error{Op: op, Err: ErrClosed} }

// libtlsCall is a call into libtls on the live context; step makes it with
// cMu held. An interface, not a func: Read's and Write's calls and the
// transports' wrappers are structs kept per Conn, so that steady-state
// Reads and Writes allocate no closures.
type libtlsCall interface {
	call(ctx *C.struct_tls) C.ssize_t
}

// callFunc makes a function a libtlsCall, for the calls made once per
// connection (handshake, close_notify).
type callFunc func(ctx *C.struct_tls) C.ssize_t

func (f callFunc) call(ctx *C.struct_tls) C.ssize_t { return f(ctx) }

// step makes one call into libtls, the one place where a Conn's libtls
// calls are made and their results mapped: a non-negative result or
// TLS_WANT_POLLIN/POLLOUT with a nil error, or libtls's error (with the
// transport's I/O error behind it, if any), or ErrClosed once the context
// is freed.
//
// A server's handshake steps read the Config (its ticket keys): they hold
// its read lock too, so that setters wait for them. (A client's run on a
// configuration of their own.) Lock order: Config.mu before cMu.
func (c *Conn) step(kind opKind, op string, call libtlsCall) (C.ssize_t, error) {
	if kind == opHandshake && !c.isClient {
		c.cfg.mu.RLock()
		defer c.cfg.mu.RUnlock()
	}
	c.cMu.Lock()
	defer c.cMu.Unlock()
	if c.ctx == nil {
		return -1, closedError(op)
	}
	rc := call.call(c.ctx)
	if rc < 0 && rc != C.TLS_WANT_POLLIN && rc != C.TLS_WANT_POLLOUT {
		err := ctxError(c.ctx, op).(*Error)
		err.Err = c.t.ioError(op)
		if c.closed.Load() {
			// Close ran under the call (it sent close_notify between
			// two of a Write's calls, or closed the socket): whatever
			// libtls says ("protocol is shutdown"), the Conn is closed.
			return rc, closedError(op)
		}
		return rc, err
	}
	return rc, nil
}

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
	return c.clientHandshake(ctx)
}

// clientHandshake runs a client handshake on a libtls configuration of its
// own from the Config's pool, with the stored session that fits this
// connection offered to the server and the new one stored afterwards
// (client_config.go, session_store.go).
func (c *Conn) clientHandshake(ctx context.Context) error {
	m, err := c.cfg.getClient()
	if err != nil {
		return err
	}
	defer c.cfg.putClient(m)
	if err := c.configureClient(m); err != nil {
		return err
	}
	store, scope := c.cfg.sessionSettings()
	var key sessionKey
	if store != nil {
		addr := ""
		if ra := c.conn.RemoteAddr(); ra != nil && (scope == SessionPerAddress || c.sni == "") {
			addr = ra.String()
		}
		key = sessionKeyFor(c.sni, addr, m.trust)
		if err := c.offerSession(ctx, store, key, m); err != nil {
			return err
		}
	} else if m.sess != nil {
		// Sessions were turned off since this member was made.
		if err := m.offer(nil); err != nil {
			return &Error{Op: "connect", Msg: "session file: " + err.Error(), Err: err}
		}
	}
	err = c.connect()
	if err == nil {
		err = c.handshakeSteps()
	}
	if err != nil && c.canRetryWithoutSession(err) {
		// libtls could not use the stored session (garbage, truncated
		// PEM; on LibreSSL a TLS 1.2 session under a TLS 1.3-only
		// Config fails "no protocols available") and nothing has been
		// sent yet: discard the session and start over, once.
		if err = c.discardSession(store, key, m, err); err == nil {
			if err = c.restart(m); err == nil {
				err = c.handshakeSteps()
			}
		}
	}
	if err == nil && store != nil {
		c.saveSession(store, key, m)
	}
	return err
}

// handshakeSteps drives tls_handshake to completion.
func (c *Conn) handshakeSteps() error {
	_, err := c.t.run(c, opHandshake, "handshake", callFunc(func(ctx *C.struct_tls) C.ssize_t {
		rc := C.tls_handshake(ctx)
		if rc == 0 {
			C.golibtls_in_open(c.t.in())
			c.captureState()
		}
		return C.ssize_t(rc)
	}))
	return err
}

// configureClient configures the client context with the member's
// tls_config (tls_configure). The context keeps its own libtls reference to
// it until it is freed.
func (c *Conn) configureClient(m *clientMember) error {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	if c.ctx == nil {
		return closedError("connect")
	}
	if C.tls_configure(c.ctx, m.c) != 0 {
		return ctxError(c.ctx, "configure")
	}
	return nil
}

// restart resets the client context (tls_reset), configures it again and
// connects anew over the same transport, on which nothing was sent.
func (c *Conn) restart(m *clientMember) error {
	c.cMu.Lock()
	if c.ctx == nil {
		c.cMu.Unlock()
		return closedError("connect")
	}
	C.tls_reset(c.ctx)
	c.t.reset()
	var err error
	if C.tls_configure(c.ctx, m.c) != 0 {
		err = ctxError(c.ctx, "configure")
	}
	c.cMu.Unlock()
	if err != nil {
		return err
	}
	return c.connect()
}

// connect starts the client side (tls_connect_cbs), which also reads the
// member's session file.
func (c *Conn) connect() error {
	var sni *C.char
	if c.sni != "" {
		sni = cstring(c.sni)
		defer C.free(unsafe.Pointer(sni))
	}
	c.cMu.Lock()
	defer c.cMu.Unlock()
	if c.ctx == nil {
		return closedError("connect")
	}
	if c.t.connect(c.ctx, sni) != 0 {
		return ctxError(c.ctx, "connect")
	}
	return nil
}

// --- Read and Write -----------------------------------------------------------

// Read reads application data, running the handshake first if needed. It
// returns io.EOF after the peer's close_notify, or when the stream ends
// between two records without one (as crypto/tls does); a stream that ends
// inside a record is an error wrapping io.ErrUnexpectedEOF.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.rbuf != nil {
		if c.closed.Load() {
			return 0, closedError("read")
		}
		n := copy(p, c.rbuf[c.rbufOff:c.rbufEnd])
		if c.rbufOff += n; c.rbufOff == c.rbufEnd {
			readBufPool.Put(c.rbuf)
			c.rbuf = nil
		}
		return n, nil
	}
	if err := c.readEnd; err != nil {
		// The end of the stream came with the previous Read's data.
		if err != io.EOF {
			c.readEnd = nil // an error is reported once, like the socket's
		}
		return 0, err
	}
	r := &c.rd
	r.t, r.p = c.t, p
	n, err := c.t.run(c, opRead, "read", r)
	end := r.end
	if b := r.buf; b != nil {
		// A small Read: libtls filled a buffer of the pool.
		k := C.ssize_t(copy(p, b[:n]))
		if k < n {
			c.rbuf, c.rbufOff, c.rbufEnd = b, int(k), int(n)
		} else {
			readBufPool.Put(b)
		}
		n, r.buf = k, nil
	}
	r.p, r.end = nil, nil // keep neither the caller's buffer nor the error
	if err == nil {
		err = end // nil, io.EOF or the failure that ended the stream
	}
	if err != nil && err != io.EOF && !errors.Is(err, os.ErrDeadlineExceeded) {
		c.broken.Store(true)
	}
	if n > 0 {
		c.readEnd = err
		return int(n), nil
	}
	return 0, err
}

// readCall is Read's libtls call, kept in the Conn so that steady-state
// Reads allocate nothing (a closure handed to the transport would escape
// to the heap on every call).
type readCall struct {
	t   transport
	p   []byte   // the caller's buffer, during a Read
	buf *readBuf // a small Read's data, when there is some
	end error    // how the stream ended, if it did
}

// A Read of fewer than smallRead bytes reads what libtls has into a
// buffer of readBufSize from readBufPool, and later Reads take the rest
// from there without a call into C: HTTP/2 servers read each frame's
// 9-byte header, then its payload, straight from the connection, and a
// cgo call per Read would cost more than the frame. The buffer is taken
// only while libtls has data for it, and returned once empty, so an idle
// connection holds none.
const (
	smallRead   = 1024
	readBufSize = 16 << 10
)

type readBuf [readBufSize]byte

var readBufPool = sync.Pool{New: func() any { return new(readBuf) }}

// errFlood is a Read's error once the peer has sent more than
// maxNonDataRecords records in a row without data.
var errFlood = &Error{Op: "read", Msg: fmt.Sprintf("too many non-advancing records: more than %d in a row without application data (session tickets, key updates)", maxNonDataRecords)}

// call reads as much as fits into p (several records at most maxOpBytes)
// in one cgo call. It runs under cMu.
func (r *readCall) call(ctx *C.struct_tls) C.ssize_t {
	in := r.t.in()
	var n C.ssize_t
	if len(r.p) < smallRead {
		b := readBufPool.Get().(*readBuf)
		if n = r.t.readMany(ctx, b[:]); n > 0 {
			r.buf = b
		} else {
			readBufPool.Put(b)
		}
	} else {
		n = r.t.readMany(ctx, r.p[:min(len(r.p), maxOpBytes)])
	}
	switch last := in.last; {
	case n == C.GOLIBTLS_FLOOD || last == C.GOLIBTLS_FLOOD:
		r.end = errFlood
		n = max(n, 0)
	case n == 0 || last == 0:
		r.end = io.EOF
		if C.golibtls_in_at_boundary(in) == 0 {
			// The stream ended inside a record: not a close.
			r.end = &Error{Op: "read", Msg: "unexpected EOF inside a TLS record", Err: io.ErrUnexpectedEOF}
		}
	case last < 0:
		// Data, then a failure: report the failure next time (cMu is
		// held, so its text is this call's).
		le := ctxError(ctx, "read").(*Error)
		le.Err = r.t.ioError("read")
		r.end = le
	}
	return n
}

// writeCall is Write's libtls call, kept in the Conn (see readCall).
type writeCall struct {
	t transport
	p []byte // what is left to write, during a Write
}

// call writes p, several records but at most maxOpBytes, in one cgo call.
// It runs under cMu.
func (w *writeCall) call(ctx *C.struct_tls) C.ssize_t {
	return w.t.writeMany(ctx, w.p)
}

// Write writes application data, running the handshake first if needed.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.Handshake(); err != nil {
		return 0, err
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	switch {
	case c.closed.Load():
		// Close may have sent close_notify while this Write waited for
		// writeMu.
		return 0, closedError("write")
	case c.closeNotifySent:
		return 0, errWriteShutdown
	}
	total := 0
	for total < len(p) {
		c.wr.t, c.wr.p = c.t, p[total:]
		n, err := c.t.run(c, opWrite, "write", &c.wr)
		c.wr.p = nil
		if n > 0 {
			total += int(n)
		}
		switch {
		case err != nil:
			c.broken.Store(true)
			return total, err
		case n == 0:
			// tls_write returns 0 once the peer's close_notify has
			// arrived (SSL_ERROR_ZERO_RETURN): nothing more can be sent.
			return total, &Error{Op: "write", Msg: "the peer has closed the TLS connection (close_notify received)"}
		}
	}
	return total, nil
}

// --- Close ------------------------------------------------------------------

// closeNotifyTimeout bounds how long Close waits to send close_notify to a
// peer that does not read, as in crypto/tls.
const closeNotifyTimeout = 5 * time.Second

// Close sends close_notify when the handshake has completed, no Write is
// in progress, CloseWrite has not sent it and no Read or Write has failed
// (other than on a Read's deadline: the stream could carry no clean close
// then), closes the underlying connection (which unblocks pending Reads and
// Writes) and frees the C context. Later calls fail with an error wrapping
// net.ErrClosed.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return closedError("close")
	}
	close(c.closing)
	var alertErr error
	if c.hsDone.Load() && c.hsErr == nil && c.writeMu.TryLock() {
		if !c.closeNotifySent && !c.broken.Load() {
			alertErr = c.closeNotify()
		}
		c.writeMu.Unlock()
	}
	err := c.conn.Close()
	c.free()
	if err == nil {
		err = alertErr
	}
	return err
}

// closeNotify runs tls_close until it has sent close_notify. It does not
// wait for the peer's close_notify (tls_close's TLS_WANT_POLLIN), and
// libtls reads nothing meanwhile: called again after sending close_notify
// (after a TLS_WANT_POLLOUT), LibreSSL's SSL_shutdown reads application
// data and drops it, which after CloseWrite is data the caller has yet to
// Read.
func (c *Conn) closeNotify() error {
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeNotifyTimeout))
	_, err := c.t.run(c, opClose, "close", callFunc(func(ctx *C.struct_tls) C.ssize_t {
		in := c.t.in()
		in.hold = 1
		rc := C.tls_close(ctx)
		in.hold = 0
		return C.ssize_t(rc)
	}))
	return err
}

// errWriteShutdown is a Write's error after CloseWrite.
var errWriteShutdown = &Error{Op: "write", Msg: "the connection is shut down for writing (CloseWrite sent close_notify)"}

// CloseWrite shuts down the writing side of the connection, as crypto/tls's
// Conn.CloseWrite does: it sends close_notify, after which Writes fail,
// while Reads go on until the peer's close_notify or end of stream
// (io.EOF). It must be called after the handshake has completed, and does
// not shut down the underlying connection's write side; Close afterwards
// sends no second close_notify. Like Close it sets a write deadline of 5 s
// on the underlying connection, to bound the wait for a peer that does not
// read.
func (c *Conn) CloseWrite() error {
	if c.closed.Load() {
		return closedError("close")
	}
	if !c.hsDone.Load() || c.hsErr != nil {
		return &Error{Op: "close", Msg: "CloseWrite called before the handshake completed"}
	}
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if !c.closeNotifySent {
		c.closeNotifySent = true
		c.closeNotifyErr = c.closeNotify()
	}
	return c.closeNotifyErr
}

// free releases the C context and the transport's memory exactly once; it
// may be called again.
func (c *Conn) free() {
	c.cMu.Lock()
	freedCtx := c.ctx != nil
	if freedCtx {
		c.keepState() // hook: state.go, the facts ConnInfo has not read yet
		freeContext(c.ctx)
		c.ctx = nil
	}
	c.t.free(c) // idempotent
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

// freed reports whether the C context has been freed.
func (c *Conn) freed() bool {
	c.cMu.Lock()
	defer c.cMu.Unlock()
	return c.ctx == nil
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
