//lint:file-ignore SA1019 http.Transport speaks HTTP/2 only over crypto/tls connections, so HTTP/2 over libtls needs x/net's Transport, which x/net marks deprecated in favour of net/http's.

package libtlshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"time"

	libtls "github.com/golibtls/libtls"
	"golang.org/x/net/http2"
)

// DefaultSessionCacheCapacity is how many servers a Transport keeps a
// session for.
const DefaultSessionCacheCapacity = libtls.DefaultSessionCacheCapacity

// Transport is an http.RoundTripper for https URLs whose connections are
// golibtls connections made from one Config. It keeps one TLS session per
// server (a bounded libtls.SessionCache, keyed by server name and address),
// so that a new connection to a server it has talked to resumes the
// session where the server allows it; it speaks HTTP/2 when the server
// selects "h2" by ALPN and HTTP/1.1 otherwise, remembering per server
// which. Response.TLS is filled from the connection's ConnectionState.
//
// A Transport is made by NewTransport; its exported fields may be set
// before its first use. It is safe for concurrent use. Plain http URLs are
// refused.
type Transport struct {
	// Proxy, as in http.Transport, returns the proxy for a request, or nil
	// for none; nil Proxy uses none. http.ProxyFromEnvironment follows
	// HTTPS_PROXY and NO_PROXY as http.DefaultTransport does, and
	// http.ProxyURL names one proxy. The proxy must be an http:// one: the
	// Transport asks it for a tunnel to the server (CONNECT), sending
	// ProxyConnectHeader and, when the proxy URL has a user name, a
	// Proxy-Authorization header with HTTP basic authentication, as
	// net/http does; the TLS handshake with the server runs through the
	// tunnel, so the proxy sees no plain text. Sessions are kept per
	// server, not per proxy.
	Proxy func(*http.Request) (*url.URL, error)
	// ProxyConnectHeader, as in http.Transport, is sent to the proxy with
	// every CONNECT request.
	ProxyConnectHeader http.Header
	// DialContext makes the TCP connection, to the server or to the proxy;
	// nil uses a net.Dialer with a 30-second timeout and keep-alive, as
	// http.DefaultTransport does.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// TLSHandshakeTimeout bounds each TLS handshake; 0 means
	// DefaultHandshakeTimeout.
	TLSHandshakeTimeout time.Duration
	// DisableHTTP2 offers only "http/1.1" by ALPN.
	DisableHTTP2 bool
	// DisableKeepAlives, as in http.Transport, uses each connection for one
	// request only, over HTTP/1.1 and HTTP/2 alike: the connection closes
	// once the response body is read or closed. New connections to a
	// server still resume its session.
	DisableKeepAlives bool
	// MaxIdleConnsPerHost and IdleConnTimeout are those of http.Transport
	// for HTTP/1.1 connections (0: net/http's defaults, 2 and none; here
	// IdleConnTimeout defaults to 90s as in http.DefaultTransport).
	// IdleConnTimeout also closes idle HTTP/2 connections.
	MaxIdleConnsPerHost int
	IdleConnTimeout     time.Duration

	cfg   *libtls.Config
	cache *libtls.SessionCache

	once    sync.Once
	initErr error
	h1      *http.Transport
	h2      *http2.Transport

	mu     sync.Mutex
	protos map[string]string         // server address -> "h2" or "http/1.1", once known
	stash  map[string][]*stashedConn // connections dialed by one protocol's transport for the other's
}

// stashedConn is a connection that negotiated the protocol the other
// transport speaks, waiting for that transport to dial.
type stashedConn struct {
	c     *libtls.Conn
	timer *time.Timer
}

// maxProtos bounds how many servers' protocols a Transport remembers.
const maxProtos = 4096

// stashTimeout is how long a connection waits in the stash.
const stashTimeout = 10 * time.Second

// NewTransport returns a Transport whose connections use cfg, which holds
// what the client needs to verify servers (SetCA, SetCAFile, ...) and any
// client certificate. On first use the Transport sets cfg's ALPN protocols
// ("h2" and "http/1.1", or "http/1.1" alone with DisableHTTP2) and gives
// it a SessionCache of DefaultSessionCacheCapacity servers, replacing any
// session file or cache set before: cfg should serve this Transport only.
// Its connections' handshakes run in parallel, each resuming the session
// of its server (name and address) made under cfg's trust.
//
// Only TLS 1.2 sessions resume through libtls: TLS 1.3 never does (LibreSSL
// has no TLS 1.3 resumption, and LibreTLS saves the session before the
// server's TLS 1.3 ticket arrives; see libtls.Backend). With cfg's default
// protocols a server that speaks TLS 1.3 gets a full handshake on every
// new connection. Where resumption matters more than TLS 1.3 (many short
// connections, DisableKeepAlives), limit cfg to TLS 1.2:
//
//	cfg.SetProtocols(libtls.ProtocolTLSv1_2)
//
// The Transport goes through no proxy unless Proxy is set (for example to
// http.ProxyFromEnvironment).
func NewTransport(cfg *libtls.Config) *Transport {
	return &Transport{cfg: cfg, IdleConnTimeout: 90 * time.Second}
}

func (t *Transport) init() {
	if t.cfg == nil {
		t.initErr = errors.New("libtlshttp: Transport without a Config (use NewTransport)")
		return
	}
	protos := []string{http2.NextProtoTLS, "http/1.1"}
	if t.DisableHTTP2 {
		protos = protos[1:]
	}
	if err := t.cfg.SetALPN(protos...); err != nil {
		t.initErr = err
		return
	}
	t.cache = libtls.NewMemorySessionCache(DefaultSessionCacheCapacity)
	if err := t.cfg.SetSessionCache(t.cache); err != nil {
		t.initErr = err
		return
	}
	t.protos = make(map[string]string)
	t.stash = make(map[string][]*stashedConn)
	t.h1 = &http.Transport{
		DialTLSContext:      t.dialHTTP1,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // no crypto/tls HTTP/2
		MaxIdleConnsPerHost: t.MaxIdleConnsPerHost,
		IdleConnTimeout:     t.IdleConnTimeout,
		DisableKeepAlives:   t.DisableKeepAlives,
		// Proxies are the dial's business (proxy.go): http.Transport
		// would run its own TLS, crypto/tls's, through a tunnel.
	}
	t.h2 = &http2.Transport{
		DialTLSContext:  t.dialHTTP2,
		IdleConnTimeout: t.IdleConnTimeout,
	}
}

// errOtherProtocol is returned by one protocol's dial when the server chose
// the other; RoundTrip then retries with the other transport, which takes
// the connection from the stash.
type errOtherProtocol struct{ proto string }

func (e *errOtherProtocol) Error() string {
	return "libtlshttp: the server chose " + e.proto + " (retried with it)"
}

// RoundTrip sends req and returns its response (http.RoundTripper). The
// request's context bounds the dial, handshake and exchange.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
	if t.initErr != nil {
		closeBody(req)
		return nil, t.initErr
	}
	if req.URL == nil || req.URL.Scheme != "https" {
		closeBody(req)
		return nil, errors.New("libtlshttp: Transport handles https URLs only")
	}
	// The proxy is chosen here, where the request is, and reaches the dial
	// in the request's context, as the HTTP/1.1 and HTTP/2 transports
	// dial with it.
	proxyURL, err := t.proxyFor(req)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	orig := req
	req = req.WithContext(withProxy(req.Context(), proxyURL))
	key := canonicalAddr(req)
	useH1 := t.DisableHTTP2 || t.protocol(key) == "http/1.1"
	// The protocol is decided by the first dial; a request goes to the
	// other transport at most twice (a server that changed its mind).
	for range 3 {
		var resp *http.Response
		var err error
		switch {
		case useH1:
			resp, err = t.roundTripHTTP1(req)
		case t.DisableKeepAlives:
			resp, err = t.roundTripHTTP2Once(req)
		default:
			resp, err = t.h2.RoundTrip(req)
		}
		var other *errOtherProtocol
		if err == nil {
			resp.Request = orig
			return resp, nil
		}
		if !errors.As(err, &other) {
			return nil, err
		}
		useH1 = !useH1
		// Nothing was sent, but net/http closes the body of a request
		// that fails: retry with a new one.
		if req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, berr := req.GetBody()
			if berr != nil {
				return nil, berr
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
	closeBody(req)
	return nil, errors.New("libtlshttp: the server keeps changing its protocol")
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// canonicalAddr is the address a request's connection goes to.
func canonicalAddr(req *http.Request) string {
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(host, port)
}

// roundTripHTTP1 runs req on the HTTP/1.1 transport and fills resp.TLS,
// which net/http leaves nil for connections that are not *tls.Conn.
func (t *Transport) roundTripHTTP1(req *http.Request) (*http.Response, error) {
	var mu sync.Mutex
	var conn net.Conn
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		mu.Lock()
		conn = info.Conn
		mu.Unlock()
	}}
	treq := req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := t.h1.RoundTrip(treq)
	if err != nil {
		return nil, err
	}
	resp.Request = req
	mu.Lock()
	c := conn
	mu.Unlock()
	if cs, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok && resp.TLS == nil {
		st := cs.ConnectionState()
		resp.TLS = &st
	}
	return resp, nil
}

// roundTripHTTP2Once runs req over HTTP/2 on a connection of its own
// (DisableKeepAlives), which closes when the response body is done.
func (t *Transport) roundTripHTTP2Once(req *http.Request) (*http.Response, error) {
	c, err := t.dialHTTP2(req.Context(), "tcp", canonicalAddr(req), nil)
	if err != nil {
		return nil, err
	}
	cc, err := t.h2.NewClientConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		cc.Close()
		return nil, err
	}
	// No other request may use cc; it closes when its one stream ends,
	// and at the latest when the body is closed.
	cc.SetDoNotReuse()
	resp.Body = &singleUseBody{ReadCloser: resp.Body, cc: cc}
	return resp, nil
}

// singleUseBody closes its HTTP/2 connection with the response body.
type singleUseBody struct {
	io.ReadCloser
	cc *http2.ClientConn
}

func (b *singleUseBody) Close() error {
	err := b.ReadCloser.Close()
	b.cc.Close()
	return err
}

// CloseIdleConnections closes the idle connections of both protocols.
func (t *Transport) CloseIdleConnections() {
	t.once.Do(t.init)
	if t.initErr != nil {
		return
	}
	t.h1.CloseIdleConnections()
	t.h2.CloseIdleConnections()
	t.mu.Lock()
	stash := t.stash
	t.stash = make(map[string][]*stashedConn)
	t.mu.Unlock()
	for _, conns := range stash {
		for _, s := range conns {
			s.timer.Stop()
			s.c.Close()
		}
	}
}

func (t *Transport) protocol(addr string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.protos[addr]
}

func (t *Transport) setProtocol(addr, proto string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.protos[addr]; !ok && len(t.protos) >= maxProtos {
		for k := range t.protos { // forget one: it is learnt again by a dial
			delete(t.protos, k)
			break
		}
	}
	t.protos[addr] = proto
}

// stashKey names a stashed connection: its address and protocol.
func stashKey(addr, proto string) string { return proto + " " + addr }

func (t *Transport) putStash(addr, proto string, c *libtls.Conn) {
	key := stashKey(addr, proto)
	s := &stashedConn{c: c}
	t.mu.Lock()
	defer t.mu.Unlock()
	s.timer = time.AfterFunc(stashTimeout, func() {
		t.mu.Lock()
		conns := t.stash[key]
		for i, x := range conns {
			if x == s {
				t.stash[key] = append(conns[:i:i], conns[i+1:]...)
				if len(t.stash[key]) == 0 {
					delete(t.stash, key)
				}
				t.mu.Unlock()
				c.Close()
				return
			}
		}
		t.mu.Unlock()
	})
	t.stash[key] = append(t.stash[key], s)
}

func (t *Transport) takeStash(addr, proto string) *libtls.Conn {
	key := stashKey(addr, proto)
	t.mu.Lock()
	defer t.mu.Unlock()
	conns := t.stash[key]
	if len(conns) == 0 {
		return nil
	}
	s := conns[len(conns)-1]
	if len(conns) == 1 {
		delete(t.stash, key)
	} else {
		t.stash[key] = conns[:len(conns)-1]
	}
	if !s.timer.Stop() {
		return nil // its timer is closing it
	}
	return s.c
}

// dial connects to addr, directly or through the request's proxy, and runs
// the TLS handshake, bounded by ctx and TLSHandshakeTimeout. The name sent
// and verified is addr's host.
func (t *Transport) dial(ctx context.Context, network, addr string) (*libtls.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	proxyURL, ok := proxyFrom(ctx)
	if !ok {
		// Not a dial for RoundTrip (nothing else dials): decide for the
		// address alone rather than bypass a proxy.
		if proxyURL, err = t.proxyFor(&http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "https", Host: addr}, Header: make(http.Header)}); err != nil {
			return nil, err
		}
	}
	var raw net.Conn
	if proxyURL != nil {
		raw, err = t.dialTunnel(ctx, proxyURL, addr)
	} else {
		raw, err = t.dialTCP(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	c, err := libtls.Client(raw, t.cfg, host)
	if err != nil {
		raw.Close()
		return nil, err
	}
	timeout := t.TLSHandshakeTimeout
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialHTTP1 is the HTTP/1.1 transport's DialTLSContext.
func (t *Transport) dialHTTP1(ctx context.Context, network, addr string) (net.Conn, error) {
	if c := t.takeStash(addr, "http/1.1"); c != nil {
		return c, nil
	}
	c, err := t.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if c.ConnInfo().NegotiatedProtocol == http2.NextProtoTLS {
		t.setProtocol(addr, http2.NextProtoTLS)
		t.putStash(addr, http2.NextProtoTLS, c)
		return nil, &errOtherProtocol{"HTTP/2"}
	}
	t.setProtocol(addr, "http/1.1")
	return c, nil
}

// dialHTTP2 is the HTTP/2 transport's DialTLSContext.
func (t *Transport) dialHTTP2(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
	if c := t.takeStash(addr, http2.NextProtoTLS); c != nil {
		return c, nil
	}
	c, err := t.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	if c.ConnInfo().NegotiatedProtocol != http2.NextProtoTLS {
		t.setProtocol(addr, "http/1.1")
		t.putStash(addr, "http/1.1", c)
		return nil, &errOtherProtocol{"HTTP/1.1"}
	}
	t.setProtocol(addr, http2.NextProtoTLS)
	return c, nil
}
