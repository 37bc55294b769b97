package libtlshttp

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	libtls "github.com/golibtls/libtls"
)

// connectProxy is an HTTP CONNECT proxy on loopback for the tests. It
// tunnels to loopback addresses only (and to the names in routes, which
// map to loopback addresses), so nothing here reaches another host.
type connectProxy struct {
	ln  net.Listener
	url *url.URL // http://[user:password@]ADDR

	// auth, if set, is the Proxy-Authorization every CONNECT must carry.
	auth string
	// extra is written after the 200 answer (a misbehaving proxy).
	extra string

	mu       sync.Mutex
	routes   map[string]string // HOST:PORT -> loopback address
	requests []*http.Request   // the CONNECT requests received
	conns    []net.Conn
	wg       sync.WaitGroup
}

// newConnectProxy starts a proxy; userinfo, if set, goes into its URL.
// The proxy is closed by close (or when the test ends, if t is not nil).
func newConnectProxy(t testing.TB, userinfo *url.Userinfo) *connectProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &connectProxy{ln: ln, url: &url.URL{Scheme: "http", User: userinfo, Host: ln.Addr().String()}, routes: make(map[string]string)}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *connectProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *connectProxy) route(hostport, addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.routes[hostport] = addr
}

// connects returns the CONNECT requests received so far.
func (p *connectProxy) connects() []*http.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*http.Request(nil), p.requests...)
}

func (p *connectProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

func (p *connectProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.track(c)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			p.handle(c)
		}()
	}
}

func (p *connectProxy) handle(c net.Conn) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.requests = append(p.requests, req)
	target, routed := p.routes[req.Host]
	p.mu.Unlock()
	answer := func(status string, hdr ...string) {
		fmt.Fprintf(c, "HTTP/1.1 %s\r\n", status)
		for _, h := range hdr {
			fmt.Fprintf(c, "%s\r\n", h)
		}
		fmt.Fprint(c, "Content-Length: 0\r\n\r\n")
	}
	if req.Method != http.MethodConnect {
		answer("405 Method Not Allowed")
		return
	}
	if p.auth != "" && req.Header.Get("Proxy-Authorization") != p.auth {
		answer("407 Proxy Authentication Required", `Proxy-Authenticate: Basic realm="test"`)
		return
	}
	if !routed {
		host, _, err := net.SplitHostPort(req.Host)
		if ip := net.ParseIP(host); err != nil || (host != "localhost" && (ip == nil || !ip.IsLoopback())) {
			answer("403 Forbidden")
			return
		}
		target = req.Host
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		answer("502 Bad Gateway")
		return
	}
	p.track(up)
	defer up.Close()
	fmt.Fprint(c, "HTTP/1.1 200 Connection established\r\n\r\n"+p.extra)
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(c, up)
		c.Close()
		close(done)
	}()
	_, _ = io.Copy(up, br) // what the client sent, buffered or not
	up.Close()
	<-done
}

// tls12Server is an httptest server (crypto/tls, TLS 1.2 only, so that its
// sessions resume) answering with factsHandler, trusted by clientConfig.
// Its error log goes to logs; nil checks that it stays empty.
func tls12Server(t *testing.T, h2 bool, logs io.Writer) *httptest.Server {
	t.Helper()
	_, leaf := testPKI(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
	ts.EnableHTTP2 = h2
	ts.TLS = &tls.Config{MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaf.TLS}}
	if logs == nil {
		buf := &lockedBuffer{}
		t.Cleanup(func() { assert.Empty(t, buf.String(), "the server's error log") })
		logs = buf
	}
	ts.Config.ErrorLog = newLogger(logs)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	return ts
}

// localhostURL is the URL of ts with the name localhost, which its
// certificate names.
func localhostURL(t *testing.T, ts *httptest.Server) string {
	t.Helper()
	_, port, err := net.SplitHostPort(ts.Listener.Addr().String())
	require.NoError(t, err)
	return "https://localhost:" + port
}

// TestTransportProxy: requests go through an HTTP CONNECT proxy, over
// HTTP/2 and HTTP/1.1, with basic authentication from the proxy URL, and
// the CONNECT request is the one net/http's own Transport sends. New
// connections through the proxy resume each server's session: two servers
// behind one proxy keep a session each.
func TestTransportProxy(t *testing.T) {
	require.True(t, libtls.Backend().ClientSessionResumption)
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			proxy := newConnectProxy(t, url.UserPassword("alice", "p@ss:wörd"))
			proxy.auth = "Basic YWxpY2U6cEBzczp3w7ZyZA==" // alice:p@ss:wörd
			s1, s2 := tls12Server(t, h2, nil), tls12Server(t, h2, nil)
			client, tr := libtlsClient(t, func(tr *Transport) {
				tr.Proxy = http.ProxyURL(proxy.url)
				tr.ProxyConnectHeader = http.Header{"X-Tenant": {"blue"}}
				tr.DisableHTTP2 = !h2
			})
			wantProto := map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2]
			for round := range 3 {
				for _, s := range []*httptest.Server{s1, s2} {
					resp, body := do(t, client, http.MethodGet, localhostURL(t, s)+"/via-proxy", nil)
					f := parseFacts(t, body)
					assert.Equal(t, wantProto, f.Proto)
					assert.Equal(t, "localhost", f.SNI)
					assert.Equal(t, round > 0, resp.TLS.DidResume, "round %d, %s", round, s.URL)
					assert.Equal(t, round > 0, f.Resumed)
				}
				tr.CloseIdleConnections()
			}
			connects := proxy.connects()
			require.Len(t, connects, 6, "a tunnel per connection")
			for _, r := range connects {
				assert.Equal(t, http.MethodConnect, r.Method)
				assert.Equal(t, proxy.auth, r.Header.Get("Proxy-Authorization"))
				assert.Equal(t, "blue", r.Header.Get("X-Tenant"))
			}
			assert.Equal(t, localhostURL(t, s1)[len("https://"):], connects[0].Host)

			// net/http's Transport through the same proxy sends the same
			// CONNECT request.
			ca, _ := testPKI(t)
			goTr := &http.Transport{
				Proxy:              http.ProxyURL(proxy.url),
				ProxyConnectHeader: http.Header{"X-Tenant": {"blue"}},
				TLSClientConfig:    &tls.Config{RootCAs: ca.Pool},
			}
			defer goTr.CloseIdleConnections()
			do(t, &http.Client{Transport: goTr, Timeout: testTimeout}, http.MethodGet, localhostURL(t, s1)+"/", nil)
			connects = proxy.connects()
			require.Len(t, connects, 7)
			ours, theirs := connects[0], connects[6]
			assert.Equal(t, theirs.Header, ours.Header)
			assert.Equal(t, theirs.Proto, ours.Proto)
			assert.Equal(t, theirs.RequestURI, ours.RequestURI)
		})
	}
}

// TestTransportProxyLibtlsServer: through the proxy to a golibtls server
// (Serve), on the socket transport and with the server's counters
// showing every connection.
func TestTransportProxyLibtlsServer(t *testing.T) {
	proxy := newConnectProxy(t, nil)
	ts := startServe(t, serverConfig(t, libtls.ProtocolTLSv1_2), http.HandlerFunc(factsHandler), nil)
	client, tr := libtlsClient(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(proxy.url) })
	want := libtls.Backend().ServerSessionResumption
	for i := range 3 {
		resp, body := do(t, client, http.MethodGet, ts.url+"/", nil)
		assert.Equal(t, "HTTP/2.0", parseFacts(t, body).Proto)
		assert.Equal(t, i > 0 && want, resp.TLS.DidResume, "connection %d", i+1)
		tr.CloseIdleConnections()
	}
	assert.Len(t, proxy.connects(), 3)
	assert.Equal(t, int64(3), ts.lsrv.Stats().Handshakes)
}

// envProxy is the proxy named by HTTPS_PROXY for
// TestTransportProxyFromEnvironment. http.ProxyFromEnvironment reads the
// environment once per process, so the proxy lives as long as the process
// (and serves that test however often it runs).
var envProxy struct {
	once sync.Once
	p    *connectProxy
}

type processTB struct{ testing.TB }

func (processTB) Cleanup(func()) {} // lives until the process exits

// TestTransportProxyFromEnvironment: with Proxy http.ProxyFromEnvironment
// the proxy comes from HTTPS_PROXY, including its credentials; the name
// backend.test, which does not resolve, is resolved by the proxy. Loopback
// URLs go direct, as ProxyFromEnvironment decides for them.
func TestTransportProxyFromEnvironment(t *testing.T) {
	envProxy.once.Do(func() {
		envProxy.p = newConnectProxy(processTB{t}, url.UserPassword("env", "secret"))
		envProxy.p.auth = "Basic ZW52OnNlY3JldA==" // env:secret
		for _, k := range []string{"HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"} {
			os.Unsetenv(k)
		}
		os.Setenv("HTTPS_PROXY", envProxy.p.url.String())
	})
	proxy := envProxy.p
	before := len(proxy.connects())

	ca, _ := testPKI(t)
	leaf, err := ca.Issue("backend.test")
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	proxy.route("backend.test:443", ts.Listener.Addr().String())

	client, _ := libtlsClient(t, func(tr *Transport) { tr.Proxy = http.ProxyFromEnvironment })
	_, body := do(t, client, http.MethodGet, "https://backend.test/", nil)
	assert.Equal(t, "backend.test", parseFacts(t, body).SNI)
	connects := proxy.connects()[before:]
	require.Len(t, connects, 1)
	assert.Equal(t, "backend.test:443", connects[0].Host)

	// Loopback: direct.
	direct := tls12Server(t, true, nil)
	do(t, client, http.MethodGet, localhostURL(t, direct)+"/", nil)
	assert.Len(t, proxy.connects()[before:], 1, "no tunnel for a loopback URL")
}

// TestTransportProxyErrors: what goes wrong with proxies comes back as
// an error of the request that names the proxy (without its password).
func TestTransportProxyErrors(t *testing.T) {
	s := tls12Server(t, true, io.Discard) // its handshake errors are this test's
	target := localhostURL(t, s) + "/"
	try := func(t *testing.T, edit func(*Transport)) error {
		client, _ := libtlsClient(t, edit)
		_, _, err := tryDo(client, http.MethodGet, target, nil)
		require.Error(t, err)
		return err
	}

	t.Run("authentication required", func(t *testing.T) {
		proxy := newConnectProxy(t, nil)
		proxy.auth = "Basic c29tZW9uZTplbHNl"
		err := try(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(proxy.url) })
		assert.ErrorContains(t, err, `CONNECT localhost:`)
		assert.ErrorContains(t, err, `the proxy answered "407 Proxy Authentication Required"`)
	})
	t.Run("wrong password, not shown", func(t *testing.T) {
		proxy := newConnectProxy(t, url.UserPassword("alice", "hunter2"))
		proxy.auth = "Basic c29tZW9uZTplbHNl"
		err := try(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(proxy.url) })
		assert.ErrorContains(t, err, "407")
		assert.NotContains(t, err.Error(), "hunter2")
		assert.ErrorContains(t, err, "alice:xxxxx@")
	})
	t.Run("forbidden target", func(t *testing.T) {
		proxy := newConnectProxy(t, nil)
		client, _ := libtlsClient(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(proxy.url) })
		_, _, err := tryDo(client, http.MethodGet, "https://forbidden.test/", nil)
		assert.ErrorContains(t, err, `the proxy answered "403 Forbidden"`)
	})
	t.Run("data after the answer", func(t *testing.T) {
		proxy := newConnectProxy(t, nil)
		proxy.extra = "surprise"
		err := try(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(proxy.url) })
		assert.ErrorContains(t, err, "the proxy sent data after its answer")
	})
	t.Run("unsupported scheme", func(t *testing.T) {
		err := try(t, func(tr *Transport) {
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "socks5", User: url.UserPassword("u", "pw"), Host: "127.0.0.1:1080"})
		})
		assert.ErrorContains(t, err, `scheme "socks5" is not supported`)
		assert.NotContains(t, err.Error(), "pw@")
	})
	t.Run("Proxy fails", func(t *testing.T) {
		err := try(t, func(tr *Transport) {
			tr.Proxy = func(*http.Request) (*url.URL, error) { return nil, fmt.Errorf("no proxy today") }
		})
		assert.ErrorContains(t, err, "no proxy today")
	})
	t.Run("proxy down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		err = try(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr}) })
		assert.ErrorContains(t, err, "libtlshttp: proxy http://"+addr)
		assert.ErrorContains(t, err, "connection refused")
	})
	t.Run("silent proxy", func(t *testing.T) {
		addr := newSilentListener(t)
		client, _ := libtlsClient(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr}) })
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		require.NoError(t, err)
		_, err = client.Do(req)
		require.Error(t, err)
		assert.True(t, isTimeout(err), "%v", err)
	})
}

// TestTransportDisableKeepAlives: each request gets a connection of its
// own, over HTTP/2 and HTTP/1.1, closed after its response; the later
// ones resume the session (TLS 1.2). Without the option one connection
// serves all.
func TestTransportDisableKeepAlives(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		for _, disable := range []bool{true, false} {
			t.Run(fmt.Sprintf("h2=%v/DisableKeepAlives=%v", h2, disable), func(t *testing.T) {
				var mu sync.Mutex
				states := map[http.ConnState]int{}
				_, leaf := testPKI(t)
				ts := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
				ts.EnableHTTP2 = h2
				ts.TLS = &tls.Config{MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{leaf.TLS}}
				logs := &lockedBuffer{}
				ts.Config.ErrorLog = newLogger(logs)
				t.Cleanup(func() { assert.Empty(t, logs.String(), "the server's error log") })
				ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
					mu.Lock()
					states[s]++
					mu.Unlock()
				}
				ts.StartTLS()
				t.Cleanup(ts.Close)
				count := func(s http.ConnState) int {
					mu.Lock()
					defer mu.Unlock()
					return states[s]
				}
				client, _ := libtlsClient(t, func(tr *Transport) {
					tr.DisableHTTP2 = !h2
					tr.DisableKeepAlives = disable
				})
				const n = 3
				for i := range n {
					resp, body := do(t, client, http.MethodGet, localhostURL(t, ts)+"/", nil)
					f := parseFacts(t, body)
					assert.Equal(t, map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2], f.Proto)
					assert.Equal(t, disable && i > 0, resp.TLS.DidResume, "request %d", i+1)
				}
				if disable {
					assert.Equal(t, n, count(http.StateNew))
					waitFor(t, "the server to see every connection closed", func() bool { return count(http.StateClosed) == n })
				} else {
					assert.Equal(t, 1, count(http.StateNew))
					assert.Zero(t, count(http.StateClosed))
				}
			})
		}
	}
}

// TestTransportTLS12Resumes: what NewTransport's documentation advises.
// Against a server that speaks TLS 1.3 a default Config never resumes; one
// limited to TLS 1.2 does.
func TestTransportTLS12Resumes(t *testing.T) {
	_, leaf := testPKI(t)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLS}} // TLS 1.2 and 1.3
	ts.StartTLS()
	t.Cleanup(ts.Close)
	for _, tls12 := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls1.2=%v", tls12), func(t *testing.T) {
			client, tr := libtlsClient(t, func(tr *Transport) {
				if tls12 {
					require.NoError(t, tr.cfg.SetProtocols(libtls.ProtocolTLSv1_2))
				}
			})
			for i := range 3 {
				resp, body := do(t, client, http.MethodGet, localhostURL(t, ts)+"/", nil)
				f := parseFacts(t, body)
				assert.Equal(t, map[bool]string{false: "TLS 1.3", true: "TLS 1.2"}[tls12], f.Version)
				assert.Equal(t, tls12 && i > 0, resp.TLS.DidResume, "connection %d", i+1)
				tr.CloseIdleConnections()
			}
		})
	}
}
