//lint:file-ignore SA1019 net/http serves HTTP/2 only over crypto/tls connections, so HTTP/2 over libtls needs x/net's ServeConn, which x/net marks deprecated in favour of net/http's.

// Package libtlshttp serves and dials HTTP/1.1 and HTTP/2 over golibtls
// connections, with the TLS state net/http expects (Request.TLS,
// Response.TLS) and, on the client side, sessions that resume per host.
//
// net/http speaks HTTP/2 and fills Request.TLS for its own crypto/tls
// connections only: over a golibtls listener, http.Server.Serve serves
// HTTP/1.1 alone and has nothing to say about failed handshakes or plain
// HTTP sent to the TLS port, and http.Transport cannot resume libtls
// sessions. Serve and Transport fill those gaps, with HTTP/2 from
// golang.org/x/net/http2.
//
// What resumes depends on the linked libtls (libtls.Backend): real
// LibreSSL resumes TLS 1.2 sessions on both sides; LibreTLS (Debian's
// libtls over OpenSSL) resumes only as a client; nobody resumes TLS 1.3
// through libtls.
package libtlshttp

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	libtls "github.com/golibtls/libtls"
	"golang.org/x/net/http2"
)

// DefaultHandshakeTimeout bounds a TLS handshake when the http.Server sets
// none of ReadHeaderTimeout, ReadTimeout and WriteTimeout. net/http leaves
// such handshakes unbounded; here each waiting handshake holds a libtls
// context, so a silent client must not keep it forever.
const DefaultHandshakeTimeout = 10 * time.Second

// Serve accepts connections on ln, a listener made by libtls.Listen or
// libtls.NewListener (its Accept must return *libtls.Conn), and serves HTTP
// on them with srv, as srv.ServeTLS does over crypto/tls:
//
//   - It runs each connection's handshake itself before handing the
//     connection to srv, bounded by the smallest of srv.ReadHeaderTimeout,
//     srv.ReadTimeout and srv.WriteTimeout, as net/http bounds its own
//     (DefaultHandshakeTimeout when none is set). A failed handshake is
//     logged through srv.ErrorLog (the log package's standard logger when
//     nil), as net/http logs them: "http: TLS handshake error from ADDR:
//     MESSAGE", with libtls's message.
//   - A client that sends plain HTTP to the TLS port gets net/http's answer,
//     "HTTP/1.0 400 Bad Request" with "Client sent an HTTP request to an
//     HTTPS server." (for connections over a socket; see
//     libtls.RecordHeaderError).
//   - When ALPN selected "h2" it serves HTTP/2 (golang.org/x/net/http2,
//     configured from srv, including srv.HTTP2 and srv.IdleTimeout),
//     otherwise HTTP/1.1. The listener's Config decides what is offered:
//     cfg.SetALPN("h2", "http/1.1") for both.
//   - Handlers see Request.TLS filled from the connection's
//     libtls.Conn.ConnectionState.
//   - srv.Shutdown and srv.Close work as with ListenAndServeTLS: both close
//     ln and abandon handshakes in progress; Shutdown sends HTTP/2
//     connections a GOAWAY and waits for their streams as for HTTP/1.1
//     requests, Close closes every connection at once. srv.ConnState sees
//     HTTP/2 connections as net/http shows its own.
//
// Serve returns when srv stops (http.ErrServerClosed after Shutdown or
// Close) or when ln fails. It registers a function on srv
// (RegisterOnShutdown) for its HTTP/2 connections. For the HTTP/2
// connections it serves itself, Serve calls srv.BaseContext once more and
// srv.ConnContext a second time per connection, since net/http's own
// contexts cannot reach them.
//
// Counters of the listener's handshakes (completed, resumed, failed by
// kind) are at libtls.ListenerServer(ln).Stats().
func Serve(srv *http.Server, ln net.Listener) error {
	h2s := &http2.Server{}
	// ConfigureServer sets up the graceful shutdown of h2s's connections
	// and takes IdleTimeout from the server it is given. It also edits
	// that server's TLSConfig and TLSNextProto, so it is given a stand-in
	// rather than srv; srv's Shutdown reaches h2s through the stand-in's.
	standIn := &http.Server{IdleTimeout: srv.IdleTimeout, ReadTimeout: srv.ReadTimeout}
	if err := http2.ConfigureServer(standIn, h2s); err != nil {
		return err
	}
	srv.RegisterOnShutdown(func() { _ = standIn.Shutdown(context.Background()) })

	l := &listener{
		ln:    ln,
		srv:   srv,
		h2s:   h2s,
		conns: make(chan net.Conn),
		errc:  make(chan error, 1),
		done:  make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	go l.acceptLoop()
	return srv.Serve(l)
}

// listener is what srv.Serve accepts from: connections whose handshake
// has completed. Its Close, which srv's Shutdown and Close call, closes ln
// and abandons the handshakes in progress.
type listener struct {
	ln    net.Listener
	srv   *http.Server
	h2s   *http2.Server
	conns chan net.Conn
	errc  chan error
	done  chan struct{}
	once  sync.Once

	ctx    context.Context // canceled by Close: ends handshakes
	cancel context.CancelFunc

	baseOnce sync.Once
	baseCtx  context.Context
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *listener) Close() error {
	err := net.ErrClosed
	l.once.Do(func() {
		close(l.done)
		l.cancel()
		err = l.ln.Close()
	})
	return err
}

func (l *listener) Addr() net.Addr { return l.ln.Addr() }

func (l *listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

func (l *listener) logf(format string, args ...any) {
	if l.srv.ErrorLog != nil {
		l.srv.ErrorLog.Printf(format, args...)
	} else {
		log.Printf(format, args...)
	}
}

// acceptLoop accepts from ln until it fails, handing each connection to a
// handshake goroutine, so that a slow handshake never holds up the next.
func (l *listener) acceptLoop() {
	var delay time.Duration // as net/http backs off on temporary errors
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.closed() {
				return
			}
			var le *libtls.Error
			var ne net.Error
			switch {
			case errors.As(err, &le) && !errors.Is(err, net.ErrClosed):
				// libtls could not make this connection's context; the
				// listener closed the connection and goes on.
				l.logf("http: TLS accept error: %v", err)
			case errors.As(err, &ne) && ne.Timeout():
			default:
				select {
				case l.errc <- err:
				case <-l.done:
				}
				return
			}
			if delay == 0 {
				delay = 5 * time.Millisecond
			} else if delay *= 2; delay > time.Second {
				delay = time.Second
			}
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		go l.handshake(c)
	}
}

// handshakeTimeout is net/http's bound on a TLS handshake
// (Server.tlsHandshakeTimeout), with a default.
func handshakeTimeout(srv *http.Server) time.Duration {
	var d time.Duration
	for _, v := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout} {
		if v > 0 && (d == 0 || v < d) {
			d = v
		}
	}
	if d == 0 {
		d = DefaultHandshakeTimeout
	}
	return d
}

// handshake runs a new connection's handshake and hands it to srv.
func (l *listener) handshake(nc net.Conn) {
	c, ok := nc.(*libtls.Conn)
	if !ok {
		l.logf("http: libtlshttp.Serve: the listener returned a %T, not a *libtls.Conn (use libtls.Listen or libtls.NewListener); closing it", nc)
		nc.Close()
		return
	}
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout(l.srv)))
	if err := c.HandshakeContext(l.ctx); err != nil {
		l.handshakeFailed(c, err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	var conn net.Conn = c
	if c.ConnInfo().NegotiatedProtocol == http2.NextProtoTLS {
		conn = &h2Conn{Conn: c, l: l}
	}
	select {
	case l.conns <- conn:
	case <-l.done:
		c.Close()
	}
}

// The answer net/http gives plain HTTP on its TLS port.
const plainHTTPAnswer = "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"

// rstAvoidanceDelay is how long the plain-HTTP answer waits for the client
// to finish sending, as net/http waits after a response that closes the
// connection: the request was only peeked at, and closing a socket with
// unread bytes resets it, which can make the client lose the answer.
const rstAvoidanceDelay = 500 * time.Millisecond

func (l *listener) handshakeFailed(c *libtls.Conn, err error) {
	defer c.Close()
	if l.closed() && errors.Is(err, context.Canceled) {
		return // abandoned by Shutdown or Close
	}
	reason := err.Error()
	var rhe *libtls.RecordHeaderError
	if errors.As(err, &rhe) && rhe.Conn != nil && looksLikeHTTP(rhe.RecordHeader) {
		_ = rhe.Conn.SetDeadline(time.Now().Add(rstAvoidanceDelay))
		if _, werr := io.WriteString(rhe.Conn, plainHTTPAnswer); werr == nil {
			if cw, ok := rhe.Conn.(interface{ CloseWrite() error }); ok {
				_ = cw.CloseWrite()
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(rhe.Conn, 256<<10))
		}
		reason = "client sent an HTTP request to an HTTPS server"
	}
	l.logf("http: TLS handshake error from %s: %v", c.RemoteAddr(), reason)
}

// looksLikeHTTP reports whether a record header is the start of an HTTP
// request, as net/http decides for crypto/tls's RecordHeaderError.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// serveH2 serves HTTP/2 on c until the connection ends.
func (l *listener) serveH2(c *h2Conn) {
	l.baseOnce.Do(func() {
		l.baseCtx = context.Background()
		if f := l.srv.BaseContext; f != nil {
			l.baseCtx = f(l)
		}
	})
	ctx := l.baseCtx
	if f := l.srv.ConnContext; f != nil {
		ctx = f(ctx, c)
	}
	l.h2s.ServeConn(c, &http2.ServeConnOpts{Context: ctx, BaseConfig: l.srv, Handler: l.srv.Handler})
}

// h2Conn is an HTTP/2 connection as srv sees it. It is handed to srv like
// the HTTP/1.1 ones, so that srv tracks it: Close closes it, Shutdown waits
// for it, ConnState reports it. net/http serves HTTP/2 itself only over
// *tls.Conn, so h2Conn makes srv's connection goroutine run the HTTP/2
// server in its place:
//
//  1. srv reads the first request: h2Conn's first Read returns a line that
//     is not a request. Having read bytes, srv marks the connection
//     StateActive, which Shutdown waits for and Close closes.
//  2. srv writes its "400 Bad Request" answer: h2Conn's first Write
//     serves HTTP/2 on the connection instead, until it ends, and
//     discards the answer. srv then closes the connection (StateClosed).
//
// Until HTTP/2 starts, the deadlines srv sets for reading a request are
// not applied (the HTTP/2 server sets its own); from then on every call
// reaches the connection.
type h2Conn struct {
	*libtls.Conn
	l     *listener
	phase atomic.Int32
	fed   bool // the placeholder line was read; only srv's goroutine reads before HTTP/2
}

const (
	phaseHTTP1 = iota // srv's connection goroutine reads and writes
	phaseH2           // the HTTP/2 server owns the connection
	phaseDone
)

// placeholder is what srv reads as the first request: not a request line,
// so that srv answers "400 Bad Request" (see h2Conn).
const placeholder = "h2\r\n"

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.phase.Load() == phaseH2 {
		return c.Conn.Read(p)
	}
	if !c.fed && c.phase.Load() == phaseHTTP1 && len(p) >= len(placeholder) {
		c.fed = true
		return copy(p, placeholder), nil
	}
	return 0, io.EOF
}

func (c *h2Conn) Write(p []byte) (int, error) {
	switch c.phase.Load() {
	case phaseH2:
		return c.Conn.Write(p)
	case phaseDone:
		return 0, net.ErrClosed
	}
	c.phase.Store(phaseH2)
	c.l.serveH2(c)
	c.phase.Store(phaseDone)
	return len(p), nil
}

func (c *h2Conn) SetDeadline(t time.Time) error {
	if c.phase.Load() != phaseH2 {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *h2Conn) SetReadDeadline(t time.Time) error {
	if c.phase.Load() != phaseH2 {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *h2Conn) SetWriteDeadline(t time.Time) error {
	if c.phase.Load() != phaseH2 {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}
