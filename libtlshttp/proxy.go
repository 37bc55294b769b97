package libtlshttp

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// proxyConnectTimeout bounds the dial to a proxy and its answer to CONNECT
// when the request's context has no deadline, as net/http bounds them.
const proxyConnectTimeout = time.Minute

// proxyKey is the context key of a request's proxy decision.
type proxyKey struct{}

// withProxy records in ctx the proxy RoundTrip chose (nil: none) for the
// dial.
func withProxy(ctx context.Context, proxyURL *url.URL) context.Context {
	return context.WithValue(ctx, proxyKey{}, proxyURL)
}

// proxyFrom returns the proxy recorded by withProxy, and whether there was
// a decision.
func proxyFrom(ctx context.Context) (*url.URL, bool) {
	u, ok := ctx.Value(proxyKey{}).(*url.URL)
	return u, ok
}

// proxyFor returns the proxy of req (nil: none), checked.
func (t *Transport) proxyFor(req *http.Request) (*url.URL, error) {
	if t.Proxy == nil {
		return nil, nil
	}
	u, err := t.Proxy(req)
	if err != nil || u == nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("libtlshttp: proxy %s: scheme %q is not supported (http:// proxies are, through CONNECT)", u.Redacted(), u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("libtlshttp: proxy %s names no host", u.Redacted())
	}
	return u, nil
}

// dialTCP makes a TCP connection with DialContext or the default dialer.
func (t *Transport) dialTCP(ctx context.Context, network, addr string) (net.Conn, error) {
	dial := t.DialContext
	if dial == nil {
		dial = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	}
	return dial(ctx, network, addr)
}

// dialTunnel connects to the proxy and asks it for a tunnel to addr
// (CONNECT), as net/http does for https URLs: ProxyConnectHeader, and
// basic authentication from the proxy URL's user info. It returns the
// tunnel, whose RemoteAddr is addr, so that the session cache keeps the
// server's session under the server's address rather than the proxy's.
func (t *Transport) dialTunnel(ctx context.Context, proxyURL *url.URL, addr string) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, proxyConnectTimeout)
		defer cancel()
	}
	port := proxyURL.Port()
	if port == "" {
		port = "80"
	}
	proxyAddr := net.JoinHostPort(proxyURL.Hostname(), port)
	conn, err := t.dialTCP(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, &proxyError{"proxy " + proxyURL.Redacted(), err}
	}
	if err := t.connect(ctx, conn, proxyURL, addr); err != nil {
		conn.Close()
		return nil, &proxyError{"proxy " + proxyURL.Redacted() + ": CONNECT " + addr, err}
	}
	tc := &tunnelConn{Conn: conn, target: tunnelAddr(addr)}
	if sc, ok := conn.(syscall.Conn); ok {
		// libtls then reads and writes the socket itself (the socket
		// transport), as on a direct connection.
		return &tunnelSyscallConn{tunnelConn: tc, sc: sc}, nil
	}
	return tc, nil
}

// connect sends the CONNECT request for addr on conn and reads the
// proxy's answer, within ctx.
func (t *Transport) connect(ctx context.Context, conn net.Conn, proxyURL *url.URL, addr string) error {
	hdr := t.ProxyConnectHeader.Clone()
	if hdr == nil {
		hdr = make(http.Header)
	}
	if u := proxyURL.User; u != nil {
		// As net/http: basic authentication with the URL's user name and
		// password (empty if none).
		password, _ := u.Password()
		hdr.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+password)))
	}
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Opaque: addr},
		Host:   addr,
		Header: hdr,
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	// A canceled context ends the exchange at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	err := exchangeConnect(conn, req)
	if !stop() || (err != nil && ctx.Err() != nil) {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	return conn.SetDeadline(time.Time{})
}

// proxyError is a failure to reach a server through a proxy. It is a
// timeout (net.Error) when its cause is one.
type proxyError struct {
	op  string // "proxy URL" or "proxy URL: CONNECT ADDR"
	err error
}

func (e *proxyError) Error() string { return "libtlshttp: " + e.op + ": " + e.err.Error() }
func (e *proxyError) Unwrap() error { return e.err }

// Timeout reports whether the cause was a timeout, so that net/http's
// url.Error, which asks its direct cause, reports it too.
func (e *proxyError) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

// exchangeConnect writes req and reads the answer: a 200 opens the tunnel.
func exchangeConnect(conn net.Conn, req *http.Request) error {
	if err := req.Write(conn); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return fmt.Errorf("the proxy answered %q", resp.Status)
	}
	if br.Buffered() > 0 {
		// The server speaks only after the client's TLS hello: these bytes
		// came from the proxy, and libtls reads the connection itself.
		return errors.New("the proxy sent data after its answer")
	}
	return nil
}

// tunnelConn is a connection through a proxy to a server.
type tunnelConn struct {
	net.Conn
	target tunnelAddr
}

// RemoteAddr returns the server's address (as the request named it), not
// the proxy's.
func (c *tunnelConn) RemoteAddr() net.Addr { return c.target }

// tunnelSyscallConn is a tunnelConn over a socket.
type tunnelSyscallConn struct {
	*tunnelConn
	sc syscall.Conn
}

func (c *tunnelSyscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// tunnelAddr is a server's address reached through a proxy: HOST:PORT.
type tunnelAddr string

func (a tunnelAddr) Network() string { return "tcp" }
func (a tunnelAddr) String() string  { return string(a) }
