package libtlshttp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds every wait of a test.
const testTimeout = 30 * time.Second

var (
	pkiOnce sync.Once
	pkiCA   *testcert.CA
	pkiLeaf *testcert.Leaf
	pkiErr  error
)

// testPKI is a throwaway CA and a server certificate for localhost and
// 127.0.0.1.
func testPKI(t testing.TB) (*testcert.CA, *testcert.Leaf) {
	t.Helper()
	pkiOnce.Do(func() {
		if pkiCA, pkiErr = testcert.NewCA("libtlshttp test CA"); pkiErr == nil {
			pkiLeaf, pkiErr = pkiCA.Issue("localhost", "127.0.0.1")
		}
	})
	require.NoError(t, pkiErr)
	return pkiCA, pkiLeaf
}

// serverConfig is a server Config offering h2 and http/1.1, with sessions
// (which resume where the backend's servers do) and the given protocols.
func serverConfig(t testing.TB, protocols libtls.Protocol, alpn ...string) *libtls.Config {
	t.Helper()
	_, leaf := testPKI(t)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetKeypair(leaf.CertPEM, leaf.KeyPEM))
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	if protocols != 0 {
		require.NoError(t, cfg.SetProtocols(protocols))
	}
	if alpn == nil {
		alpn = []string{"h2", "http/1.1"}
	}
	if len(alpn) > 0 && alpn[0] != "" {
		require.NoError(t, cfg.SetALPN(alpn...))
	}
	return cfg
}

// clientConfig is a libtls client Config trusting the test CA.
func clientConfig(t testing.TB) *libtls.Config {
	t.Helper()
	ca, _ := testPKI(t)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(ca.CertPEM))
	return cfg
}

// lockedBuffer collects log lines from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// testServer is an http.Server run by Serve on a golibtls listener.
type testServer struct {
	srv    *http.Server
	ln     net.Listener
	lsrv   *libtls.Server
	url    string
	log    *lockedBuffer
	served chan error
}

// startServe serves handler with Serve on loopback. edit may change the
// http.Server before it starts. Cleanup closes it and checks that Serve
// returned http.ErrServerClosed.
func startServe(t testing.TB, cfg *libtls.Config, handler http.Handler, edit func(*http.Server)) *testServer {
	t.Helper()
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	ts := &testServer{ln: ln, lsrv: libtls.ListenerServer(ln), url: "https://" + ln.Addr().String(), log: &lockedBuffer{}, served: make(chan error, 1)}
	ts.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: testTimeout,
		ErrorLog:          log.New(ts.log, "", 0),
	}
	if edit != nil {
		edit(ts.srv)
	}
	go func() { ts.served <- Serve(ts.srv, ln) }()
	t.Cleanup(func() {
		ts.srv.Close()
		select {
		case err := <-ts.served:
			require.ErrorIs(t, err, http.ErrServerClosed)
		case <-time.After(testTimeout):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

// factsHandler answers every request with facts about it: its protocol,
// TLS facts (net/http's Request.TLS) and the SHA-256 of its body.
func factsHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.TLS == nil {
		http.Error(w, "no Request.TLS", http.StatusInternalServerError)
		return
	}
	fmt.Fprintf(w, "%s %s %s %d %x|%s|%s|resumed=%v|alpn=%s|sni=%s",
		r.Proto, r.Method, r.URL.Path, n, h.Sum(nil),
		tls.VersionName(r.TLS.Version), tls.CipherSuiteName(r.TLS.CipherSuite),
		r.TLS.DidResume, r.TLS.NegotiatedProtocol, r.TLS.ServerName)
}

// facts is factsHandler's answer, parsed.
type facts struct {
	Proto, Method, Path string
	N                   int
	Sum                 string
	Version, Cipher     string
	Resumed             bool
	ALPN, SNI           string
}

func parseFacts(t testing.TB, body string) facts {
	t.Helper()
	var f facts
	parts := strings.Split(body, "|")
	require.Len(t, parts, 6, body)
	_, err := fmt.Sscanf(parts[0], "%s %s %s %d %s", &f.Proto, &f.Method, &f.Path, &f.N, &f.Sum)
	require.NoError(t, err, body)
	f.Version, f.Cipher = parts[1], parts[2]
	f.Resumed = parts[3] == "resumed=true"
	f.ALPN = strings.TrimPrefix(parts[4], "alpn=")
	f.SNI = strings.TrimPrefix(parts[5], "sni=")
	return f
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// get runs one request and returns the response with its body read.
func do(t testing.TB, client *http.Client, method, url string, body []byte) (*http.Response, string) {
	t.Helper()
	resp, b, err := tryDo(client, method, url, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, b)
	return resp, b
}

func tryDo(client *http.Client, method, url string, body []byte) (*http.Response, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	return resp, string(b), nil
}

// goClient is an http.Client over crypto/tls trusting the test CA, with
// HTTP/2 or not, a session cache, and TLS versions up to maxVersion (0:
// crypto/tls's default).
func goClient(t testing.TB, h2 bool, maxVersion uint16) (*http.Client, *http.Transport) {
	t.Helper()
	ca, _ := testPKI(t)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:            ca.Pool,
			ServerName:         "localhost",
			MaxVersion:         maxVersion,
			ClientSessionCache: tls.NewLRUClientSessionCache(16),
		},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}, tr
}

// libtlsClient is an http.Client over a Transport of this package.
func libtlsClient(t testing.TB, edit func(*Transport)) (*http.Client, *Transport) {
	t.Helper()
	tr := NewTransport(clientConfig(t))
	if edit != nil {
		edit(tr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}, tr
}

// isTimeout reports whether err is a timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func newLogger(w io.Writer) *log.Logger { return log.New(w, "", 0) }

// newSilentListener accepts TCP connections on loopback and never answers;
// it returns its address.
func newSilentListener(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	return ln.Addr().String()
}
