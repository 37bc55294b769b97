package libtlshttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/stretchr/testify/require"
)

// TestServeGoClient serves HTTP/2 and HTTP/1.1 to crypto/tls clients over
// TLS 1.2 and 1.3: Request.TLS and Response.TLS agree, bodies arrive
// whole, and new connections resume where the backend's servers resume
// (TLS 1.2 on LibreSSL).
func TestServeGoClient(t *testing.T) {
	b := libtls.Backend()
	for _, h2 := range []bool{true, false} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("h2=%v/%s", h2, tls.VersionName(v)), func(t *testing.T) {
				ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), nil)
				client, tr := goClient(t, h2, v)
				wantProto, wantALPN := "HTTP/1.1", "http/1.1"
				if h2 {
					wantProto, wantALPN = "HTTP/2.0", "h2"
				}
				big := make([]byte, 1<<20+3)
				for i := range big {
					big[i] = byte(i * 7)
				}
				const conns = 4
				for i := range conns {
					resp, body := do(t, client, http.MethodPost, fmt.Sprintf("%s/up/%d", ts.url, i), big)
					f := parseFacts(t, body)
					require.Equal(t, wantProto, resp.Proto)
					require.Equal(t, wantProto, f.Proto)
					require.Equal(t, sum(big), f.Sum)
					require.Equal(t, len(big), f.N)
					require.Equal(t, tls.VersionName(v), f.Version)
					require.Equal(t, tls.VersionName(resp.TLS.Version), f.Version)
					require.Equal(t, tls.CipherSuiteName(resp.TLS.CipherSuite), f.Cipher, "the server's Request.TLS names the client's suite")
					require.Equal(t, wantALPN, f.ALPN)
					require.Equal(t, "localhost", f.SNI)
					want := i > 0 && v == tls.VersionTLS12 && b.ServerSessionResumption
					require.Equal(t, want, f.Resumed, "connection %d (%s)", i+1, b)
					require.Equal(t, want, resp.TLS.DidResume)
					// A few more requests on the same connection.
					for j := range 3 {
						_, body = do(t, client, http.MethodGet, fmt.Sprintf("%s/get/%d/%d", ts.url, i, j), nil)
						require.Equal(t, fmt.Sprintf("/get/%d/%d", i, j), parseFacts(t, body).Path)
					}
					tr.CloseIdleConnections() // the next request makes a new connection
				}
				st := ts.lsrv.Stats()
				require.Equal(t, int64(conns), st.Handshakes, "%v", st)
				require.Zero(t, st.Failed, "%v", st)
				if v == tls.VersionTLS12 && b.ServerSessionResumption {
					require.Equal(t, int64(conns-1), st.Resumed)
				} else {
					require.Zero(t, st.Resumed)
				}
				require.Empty(t, ts.log.String())
			})
		}
	}
}

// TestServePlainHTTP: plain HTTP on the TLS port gets net/http's answer,
// and the failed handshake is logged and counted.
func TestServePlainHTTP(t *testing.T) {
	ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), nil)
	for i := range 2 {
		c, err := net.Dial("tcp", ts.ln.Addr().String())
		require.NoError(t, err)
		_ = c.SetDeadline(time.Now().Add(testTimeout))
		_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n")
		require.NoError(t, err)
		got, err := io.ReadAll(c)
		require.NoError(t, err, "no reset: the server read the request before closing")
		require.Equal(t, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n", string(got))
		line := fmt.Sprintf("http: TLS handshake error from %s: client sent an HTTP request to an HTTPS server\n", c.LocalAddr())
		c.Close()
		waitFor(t, "the log line", func() bool { return strings.Contains(ts.log.String(), line) })
		require.Equal(t, int64(i+1), ts.lsrv.Stats().Failures.NotTLS)
	}
	// The server still serves TLS.
	client, _ := goClient(t, true, 0)
	do(t, client, http.MethodGet, ts.url+"/", nil)
}

// TestServeHandshakeErrors: failed handshakes are logged with the peer's
// address and libtls's message; a silent client is cut off at the
// handshake timeout.
func TestServeHandshakeErrors(t *testing.T) {
	ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), nil)
	addr := ts.ln.Addr().String()

	// A client that does not trust the certificate aborts with an alert.
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "localhost"})
	require.Error(t, err)
	_ = c
	waitFor(t, "the alert's log line", func() bool { return strings.Contains(ts.log.String(), "libtls: handshake:") })
	line := ts.log.String()
	require.Contains(t, line, "http: TLS handshake error from 127.0.0.1:")
	require.Contains(t, line, "libtls: handshake: handshake failed: ")
	require.Equal(t, int64(1), ts.lsrv.Stats().Failures.TLS)

	// A client that says nothing is closed after ReadHeaderTimeout.
	ts = startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), func(s *http.Server) {
		s.ReadHeaderTimeout = 300 * time.Millisecond
	})
	raw, err := net.Dial("tcp", ts.ln.Addr().String())
	require.NoError(t, err)
	defer raw.Close()
	start := time.Now()
	_ = raw.SetDeadline(time.Now().Add(testTimeout))
	n, err := raw.Read(make([]byte, 1))
	require.Zero(t, n)
	require.ErrorIs(t, err, io.EOF)
	require.Less(t, time.Since(start), 5*time.Second)
	waitFor(t, "the timeout's log line", func() bool {
		return strings.Contains(ts.log.String(), raw.LocalAddr().String()+": libtls: handshake: ")
	})
	require.Contains(t, ts.log.String(), "i/o timeout")
	require.Equal(t, int64(1), ts.lsrv.Stats().Failures.Timeout)
}

// blockingHandler answers /block only when release is closed, and tells
// started about each such request.
type blockingHandler struct {
	started  chan struct{}
	release  chan struct{}
	canceled chan struct{}
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{started: make(chan struct{}, 16), release: make(chan struct{}), canceled: make(chan struct{}, 16)}
}

func (h *blockingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/block" {
		factsHandler(w, r)
		return
	}
	h.started <- struct{}{}
	select {
	case <-h.release:
		fmt.Fprint(w, "released over ", r.Proto)
	case <-r.Context().Done():
		h.canceled <- struct{}{}
	case <-time.After(testTimeout):
	}
}

// TestServeShutdown: Shutdown waits for a request in progress, HTTP/2 as
// HTTP/1.1, while Serve returns and the listener refuses new
// connections; Close ends such a request at once.
func TestServeShutdown(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		proto := "HTTP/1.1"
		if h2 {
			proto = "HTTP/2.0"
		}
		t.Run("Shutdown/"+proto, func(t *testing.T) {
			h := newBlockingHandler()
			ts := startServe(t, serverConfig(t, 0), h, nil)
			client, _ := goClient(t, h2, 0)
			// A connection that is idle when Shutdown starts.
			do(t, client, http.MethodGet, ts.url+"/idle", nil)
			type result struct {
				body string
				err  error
			}
			res := make(chan result, 1)
			go func() {
				_, body, err := tryDo(client, http.MethodGet, ts.url+"/block", nil)
				res <- result{body, err}
			}()
			<-h.started
			shut := make(chan error, 1)
			go func() { shut <- ts.srv.Shutdown(context.Background()) }()
			select {
			case err := <-ts.served:
				require.ErrorIs(t, err, http.ErrServerClosed)
				ts.served <- err // for the cleanup
			case <-time.After(testTimeout):
				t.Fatal("Serve did not return")
			}
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned %v with a request in progress", err)
			case <-time.After(300 * time.Millisecond):
			}
			_, err := net.DialTimeout("tcp", ts.ln.Addr().String(), time.Second)
			require.Error(t, err, "the listener is closed")
			close(h.release)
			r := <-res
			require.NoError(t, r.err)
			require.Equal(t, "released over "+proto, r.body)
			select {
			case err := <-shut:
				require.NoError(t, err)
			case <-time.After(testTimeout):
				t.Fatal("Shutdown did not return after the request")
			}
		})
		t.Run("Close/"+proto, func(t *testing.T) {
			h := newBlockingHandler()
			ts := startServe(t, serverConfig(t, 0), h, nil)
			client, _ := goClient(t, h2, 0)
			errc := make(chan error, 1)
			go func() {
				_, _, err := tryDo(client, http.MethodGet, ts.url+"/block", nil)
				errc <- err
			}()
			<-h.started
			start := time.Now()
			require.NoError(t, ts.srv.Close())
			select {
			case err := <-errc:
				require.Error(t, err)
			case <-time.After(testTimeout):
				t.Fatal("the request survived Close")
			}
			require.Less(t, time.Since(start), 5*time.Second)
			select {
			case <-h.canceled:
			case <-time.After(testTimeout):
				t.Fatal("the handler's context was not canceled")
			}
		})
	}
}

// TestServeConnState: srv.ConnState sees an HTTP/2 connection from
// StateNew to StateClosed, as the same net.Conn.
func TestServeConnState(t *testing.T) {
	var mu sync.Mutex
	states := map[net.Conn][]http.ConnState{}
	ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), func(s *http.Server) {
		s.ConnState = func(c net.Conn, st http.ConnState) {
			mu.Lock()
			states[c] = append(states[c], st)
			mu.Unlock()
		}
		s.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			_, ok := c.(interface{ ConnInfo() libtls.ConnInfo })
			if !ok {
				panic(fmt.Sprintf("ConnContext got a %T", c))
			}
			return ctx
		}
	})
	client, tr := goClient(t, true, 0)
	for range 3 {
		resp, _ := do(t, client, http.MethodGet, ts.url+"/", nil)
		require.Equal(t, "HTTP/2.0", resp.Proto)
	}
	tr.CloseIdleConnections()
	waitFor(t, "StateClosed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range states {
			if s[len(s)-1] == http.StateClosed {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, states, 1, "one connection")
	for c, s := range states {
		require.Equal(t, http.StateNew, s[0], "%T %v", c, s)
		require.Equal(t, http.StateClosed, s[len(s)-1], "%v", s)
		require.Contains(t, s, http.StateIdle, "the HTTP/2 server reports idle")
		_, ok := c.(interface{ ConnectionState() tls.ConnectionState })
		require.True(t, ok)
	}
}

// TestServeListenerErrors: Serve refuses connections that are not golibtls
// ones, and returns the error of a listener that fails.
func TestServeListenerErrors(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	logs := &lockedBuffer{}
	srv := &http.Server{Handler: http.HandlerFunc(factsHandler), ErrorLog: newLogger(logs)}
	served := make(chan error, 1)
	go func() { served <- Serve(srv, inner) }()
	c, err := net.Dial("tcp", inner.Addr().String())
	require.NoError(t, err)
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, io.EOF, "closed")
	c.Close()
	waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), "not a *libtls.Conn") })
	// The listener fails under Serve.
	inner.Close()
	select {
	case err := <-served:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
	}
	// A server already closed returns at once and closes the listener.
	srv2 := &http.Server{}
	require.NoError(t, srv2.Close())
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", serverConfig(t, 0))
	require.NoError(t, err)
	require.True(t, errors.Is(Serve(srv2, ln), http.ErrServerClosed))
	_, err = net.DialTimeout("tcp", ln.Addr().String(), time.Second)
	require.Error(t, err, "Serve closed the listener")
}
