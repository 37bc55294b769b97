package libtls

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// connKey carries the golibtls connection of a request into the handler.
type connKey struct{}

// sha256Handler answers every request with facts about it: the SHA-256 of
// its body, and the TLS facts it can find.
func sha256Handler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if c, ok := r.Context().Value(connKey{}).(*Conn); ok {
		st := c.ConnInfo()
		w.Header().Set("X-Libtls-Version", st.Version)
		w.Header().Set("X-Libtls-Server-Name", st.ServerName)
	}
	if r.TLS != nil {
		w.Header().Set("X-Go-Version", tls.VersionName(r.TLS.Version))
	}
	fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URL.Path, n, h.Sum(nil))
}

// doRequest runs one request and returns the response and its body.
func doRequest(t testing.TB, client *http.Client, method, url string, body []byte) (*http.Response, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	return resp, string(b)
}

func wantBody(method, path string, body []byte) string {
	sum := sha256.Sum256(body)
	return fmt.Sprintf("%s %s %d %s", method, path, len(body), hex.EncodeToString(sum[:]))
}

// TestHTTPServerOverLibtlsListener serves net/http over a golibtls
// listener and calls it with a crypto/tls client.
func TestHTTPServerOverLibtlsListener(t *testing.T) {
	cfg := newServerConfig(t)
	require.NoError(t, cfg.SetALPN("http/1.1"))
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	var newConns atomic.Int32
	srv := &http.Server{
		Handler:           http.HandlerFunc(sha256Handler),
		ReadHeaderTimeout: testTimeout,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				newConns.Add(1)
			}
		},
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		require.ErrorIs(t, <-served, http.ErrServerClosed)
	})

	gcfg := goClientConfig(t) // ServerName "localhost": SNI over an IP URL
	gcfg.NextProtos = []string{"http/1.1"}
	tr := &http.Transport{TLSClientConfig: gcfg, ForceAttemptHTTP2: false}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: testTimeout}
	base := "https://" + l.Addr().String()

	resp, body := doRequest(t, client, http.MethodGet, base+"/hello", nil)
	require.Equal(t, wantBody("GET", "/hello", nil), body)
	require.Equal(t, "TLSv1.3", resp.Header.Get("X-Libtls-Version"))
	require.Equal(t, "localhost", resp.Header.Get("X-Libtls-Server-Name"))
	// http.Server.Serve reads Conn.ConnectionState before the first
	// Read, which runs the handshake: r.TLS is there but says nothing.
	// libtlshttp.Serve runs the handshake first.
	require.Equal(t, "0x0000", resp.Header.Get("X-Go-Version"))
	require.NotNil(t, resp.TLS)
	require.Equal(t, "http/1.1", resp.TLS.NegotiatedProtocol)
	require.Equal(t, uint16(tls.VersionTLS13), resp.TLS.Version)

	// A 1 MiB upload, then sequential requests on the kept-alive
	// connection.
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 31)
	}
	_, body = doRequest(t, client, http.MethodPost, base+"/upload", big)
	require.Equal(t, wantBody("POST", "/upload", big), body)
	for i := range 10 {
		_, body = doRequest(t, client, http.MethodGet, fmt.Sprintf("%s/seq/%d", base, i), nil)
		require.Equal(t, wantBody("GET", fmt.Sprintf("/seq/%d", i), nil), body)
	}
	require.Equal(t, int32(1), newConns.Load(), "one kept-alive connection")

	// Concurrent requests on several connections.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post(fmt.Sprintf("%s/par/%d", base, i), "application/octet-stream", strings.NewReader(string(big[:1000*i])))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err == nil && string(b) != wantBody("POST", fmt.Sprintf("/par/%d", i), big[:1000*i]) {
				err = fmt.Errorf("request %d: got %q", i, b)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// TestHTTPClientOverLibtlsDialer calls an httptest TLS server with an
// http.Client whose transport dials with golibtls.
func TestHTTPClientOverLibtlsDialer(t *testing.T) {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(sha256Handler))
	var newConns atomic.Int32
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			newConns.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)

	cfg, err := NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})))
	require.NoError(t, cfg.SetALPN("http/1.1"))
	d := &Dialer{Config: cfg, NetDialer: &net.Dialer{Timeout: testTimeout}}
	tr := &http.Transport{DialTLSContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: testTimeout}

	// ts.URL is https://127.0.0.1:port: the name verified is the IP
	// address, which the httptest certificate holds.
	require.True(t, strings.HasPrefix(ts.URL, "https://127.0.0.1:"), ts.URL)
	resp, body := doRequest(t, client, http.MethodGet, ts.URL+"/hello", nil)
	require.Equal(t, wantBody("GET", "/hello", nil), body)
	require.Equal(t, "TLS 1.3", resp.Header.Get("X-Go-Version"))

	big := make([]byte, 1<<20+17)
	for i := range big {
		big[i] = byte(i * 13)
	}
	_, body = doRequest(t, client, http.MethodPost, ts.URL+"/upload", big)
	require.Equal(t, wantBody("POST", "/upload", big), body)
	for i := range 5 {
		_, body = doRequest(t, client, http.MethodGet, fmt.Sprintf("%s/seq/%d", ts.URL, i), nil)
		require.Equal(t, wantBody("GET", fmt.Sprintf("/seq/%d", i), nil), body)
	}
	require.Equal(t, int32(1), newConns.Load(), "one kept-alive connection")

	t.Run("WrongCA", func(t *testing.T) {
		d := &Dialer{Config: newClientConfig(t)} // trusts the test CA, not httptest's
		tr := &http.Transport{DialTLSContext: d.DialContext}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: testTimeout}
		_, err := client.Get(ts.URL)
		requireLibtlsError(t, err, "handshake", "certificate verification failed")
	})
}
