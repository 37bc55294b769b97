package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"context"
	"net"
	"runtime"
	"sync"
	"time"
)

// Server is a configured libtls server context (tls_server +
// tls_configure). Every connection it accepts is a connection context of
// it, so all of them share one SSL context, its session settings and its
// ticket keys. A Server is safe for concurrent use.
type Server struct {
	cfg *Config

	mu     sync.Mutex
	ctx    *C.struct_tls
	refs   int // 1 for the Server until Close, plus 1 per live Conn
	closed bool

	stats serverStats // stats.go: handshake counters
}

// NewServer configures a server context from cfg, which needs at least a
// certificate and key.
func NewServer(cfg *Config) (*Server, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, &Error{Op: "configure", Msg: "nil Config", Err: errInvalid}
	}
	ctx := newContext(C.tls_server())
	if ctx == nil {
		return nil, &Error{Op: "configure", Msg: "tls_server failed"}
	}
	if err := configureServer(ctx, cfg); err != nil {
		freeContext(ctx)
		return nil, err
	}
	s := &Server{cfg: cfg, ctx: ctx, refs: 1}
	// A backstop for Servers that are never closed: the C context, and the
	// Config's with it, are freed once the Server and every Conn it
	// accepted are unreachable. Programs should call Close.
	runtime.SetFinalizer(s, (*Server).Close)
	return s, nil
}

// Accept wraps an accepted connection in a server-side Conn
// (tls_accept_cbs). The handshake runs on the Conn's first Read or Write,
// or with Handshake. On error conn is left open.
func (s *Server) Accept(conn net.Conn) (*Conn, error) {
	// Lock order: Config.mu (read) before Server.mu.
	s.cfg.mu.RLock()
	defer s.cfg.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, closedError("accept")
	}
	c, err := accept(s, conn)
	if err != nil {
		return nil, err
	}
	s.refs++
	return c, nil
}

// Close releases the server context. Connections already accepted keep
// working; the C context is freed when the last of them is closed. Close is
// idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	runtime.SetFinalizer(s, nil)
	s.release()
	return nil
}

// release drops one reference and frees the context with the last one:
// libtls's connection contexts point into the server context, so it must
// outlive them.
func (s *Server) release() {
	s.mu.Lock()
	s.refs--
	last := s.refs == 0
	if last {
		freeContext(s.ctx)
		s.ctx = nil
	}
	s.mu.Unlock()
	if last {
		s.cfg.unref() // after Server.mu: Config.mu comes first
	}
}

// listener wraps a net.Listener so that Accept returns server-side Conns.
type listener struct {
	net.Listener
	srv *Server
}

// NewListener returns a listener whose Accept wraps each connection of inner
// in a server-side *Conn (returned as net.Conn), with the handshake left to
// the first Read or Write, as crypto/tls does. Closing the listener closes
// inner and releases the server context.
func NewListener(inner net.Listener, cfg *Config) (net.Listener, error) {
	srv, err := NewServer(cfg)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: inner, srv: srv}, nil
}

// Listen creates a TLS listener on network and addr (see net.Listen).
// Unlike net.Listen it leaves TCP keep-alive off on accepted connections
// (two setsockopt calls per connection that nobody asked for); listen with
// a net.ListenConfig and NewListener to have it.
func Listen(network, addr string, cfg *Config) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	inner, err := lc.Listen(context.Background(), network, addr)
	if err != nil {
		return nil, err
	}
	l, err := NewListener(inner, cfg)
	if err != nil {
		inner.Close()
		return nil, err
	}
	return l, nil
}

func (l *listener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c, err := l.srv.Accept(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	l.srv.Close()
	return err
}

// Dial connects to addr on network and runs the client handshake. The
// server name sent and verified is addr's host.
func Dial(network, addr string, cfg *Config) (*Conn, error) {
	return DialContext(context.Background(), network, addr, cfg)
}

// DialContext is Dial with a context bounding both the connect and the
// handshake.
func DialContext(ctx context.Context, network, addr string, cfg *Config) (*Conn, error) {
	return (&Dialer{Config: cfg}).dial(ctx, network, addr)
}

// Dialer dials TLS connections with a net.Dialer underneath, like
// crypto/tls.Dialer. Its DialContext fits http.Transport.DialTLSContext.
type Dialer struct {
	// NetDialer is the dialer of the underlying connection; nil means a
	// net.Dialer with TCP keep-alive off (KeepAlive -1: a zero net.Dialer
	// would turn it on, two setsockopt calls per connection). As with crypto/tls.Dialer, its Timeout and Deadline
	// bound the connect and the handshake together.
	NetDialer *net.Dialer
	// Config is the client configuration. Required.
	Config *Config
	// ServerName overrides the name taken from the address.
	ServerName string
}

// DialContext connects and runs the handshake; it returns a *Conn.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Dial is DialContext with a background context.
func (d *Dialer) Dial(network, addr string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, addr)
}

// noKeepAliveDialer is the net.Dialer of a Dialer without one. It is never
// modified.
var noKeepAliveDialer = net.Dialer{KeepAlive: -1}

func (d *Dialer) dial(ctx context.Context, network, addr string) (*Conn, error) {
	name := d.ServerName
	if name == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		name = host
	}
	nd := d.NetDialer
	if nd == nil {
		nd = &noKeepAliveDialer
	}
	// The net.Dialer would apply Timeout and Deadline to the connect only;
	// a server that accepts and never answers would then hold the
	// handshake forever. Bound both, as crypto/tls.Dialer does.
	timeout := nd.Timeout
	if !nd.Deadline.IsZero() {
		if until := time.Until(nd.Deadline); timeout == 0 || until < timeout {
			timeout = until
		}
	}
	if timeout != 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c, err := Client(conn, d.Config, name)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
