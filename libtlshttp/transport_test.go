package libtlshttp

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/stretchr/testify/require"
)

// goFactsServer is an httptest TLS server (crypto/tls) with HTTP/2 on or
// off and TLS versions up to maxVersion, logging into logs, and a libtls
// client Config that trusts its certificate.
func goFactsServer(t *testing.T, h2 bool, maxVersion uint16, logs io.Writer) (*httptest.Server, *libtls.Config) {
	t.Helper()
	return startGoFactsServer(t, h2, &tls.Config{MaxVersion: maxVersion}, logs)
}

// startGoFactsServer is goFactsServer with the server's whole TLS
// configuration.
func startGoFactsServer(t *testing.T, h2 bool, tc *tls.Config, logs io.Writer) (*httptest.Server, *libtls.Config) {
	t.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
	ts.EnableHTTP2 = h2
	ts.TLS = tc
	ts.Config.ErrorLog = newLogger(logs)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})))
	return ts, cfg
}

// TestTransportHTTPTest drives NewTransport against crypto/tls servers with
// and without HTTP/2: the protocol follows the server, Response.TLS is
// filled, and every new connection to a server resumes its session over
// TLS 1.2, with two servers in turn (one session per host).
func TestTransportHTTPTest(t *testing.T) {
	require.True(t, libtls.Backend().ClientSessionResumption)
	for _, h2 := range []bool{true, false} {
		for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(fmt.Sprintf("h2=%v/%s", h2, tls.VersionName(v)), func(t *testing.T) {
				logs := &lockedBuffer{}
				ts1, cfg := goFactsServer(t, h2, v, logs)
				ts2 := httptest.NewUnstartedServer(http.HandlerFunc(factsHandler))
				ts2.EnableHTTP2 = h2
				ts2.TLS = &tls.Config{MaxVersion: v, Certificates: ts1.TLS.Certificates}
				ts2.Config.ErrorLog = newLogger(logs)
				ts2.StartTLS()
				t.Cleanup(ts2.Close)
				tr := NewTransport(cfg)
				t.Cleanup(tr.CloseIdleConnections)
				client := &http.Client{Transport: tr, Timeout: testTimeout}
				wantProto := "HTTP/1.1"
				if h2 {
					wantProto = "HTTP/2.0"
				}
				body := []byte(strings.Repeat("libtls ", 40000))
				for i := range 6 {
					url := []string{ts1.URL, ts2.URL}[i%2]
					resp, b := do(t, client, http.MethodPost, url+"/x", body)
					f := parseFacts(t, b)
					require.Equal(t, wantProto, resp.Proto)
					require.Equal(t, wantProto, f.Proto)
					require.Equal(t, sum(body), f.Sum)
					require.NotNil(t, resp.TLS)
					require.True(t, resp.TLS.HandshakeComplete)
					require.Equal(t, f.Version, tls.VersionName(resp.TLS.Version))
					require.Equal(t, f.Cipher, tls.CipherSuiteName(resp.TLS.CipherSuite))
					require.Equal(t, f.ALPN, resp.TLS.NegotiatedProtocol)
					require.NotEmpty(t, resp.TLS.PeerCertificates)
					want := i >= 2 && v == tls.VersionTLS12
					require.Equal(t, want, resp.TLS.DidResume, "connection %d", i+1)
					require.Equal(t, want, f.Resumed, "the server agrees")
					tr.CloseIdleConnections()
				}
				require.Empty(t, logs.String(), "the servers saw no error")
			})
		}
	}
}

// TestTransportServe: a Transport against Serve, both golibtls. New
// connections resume where the backend's servers resume.
func TestTransportServe(t *testing.T) {
	b := libtls.Backend()
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			ts := startServe(t, serverConfig(t, libtls.ProtocolTLSv1_2), http.HandlerFunc(factsHandler), nil)
			client, tr := libtlsClient(t, func(tr *Transport) { tr.DisableHTTP2 = !h2 })
			for i := range 4 {
				resp, body := do(t, client, http.MethodGet, ts.url+"/", nil)
				f := parseFacts(t, body)
				if h2 {
					require.Equal(t, "HTTP/2.0", f.Proto)
				} else {
					require.Equal(t, "HTTP/1.1", f.Proto)
				}
				want := i > 0 && b.ServerSessionResumption
				require.Equal(t, want, resp.TLS.DidResume, "connection %d (%s)", i+1, b)
				require.Equal(t, want, f.Resumed)
				require.Equal(t, "TLS 1.2", f.Version)
				tr.CloseIdleConnections()
			}
			st := ts.lsrv.Stats()
			require.Equal(t, int64(4), st.Handshakes)
			if b.ServerSessionResumption {
				require.Equal(t, int64(3), st.Resumed)
				require.Equal(t, 0.75, st.ResumptionRatio())
			} else {
				require.Zero(t, st.Resumed)
			}
		})
	}
}

// TestTransportFallback: against a server that offers only http/1.1 the
// first dial (for HTTP/2) hands its connection to HTTP/1.1, and a request
// with a body goes through; later requests go to HTTP/1.1 directly.
func TestTransportFallback(t *testing.T) {
	ts := startServe(t, serverConfig(t, 0, "http/1.1"), http.HandlerFunc(factsHandler), nil)
	client, tr := libtlsClient(t, nil)
	body := []byte("a body to send twice, if need be")
	for range 3 {
		resp, b := do(t, client, http.MethodPut, ts.url+"/put", body)
		require.Equal(t, "HTTP/1.1", resp.Proto)
		require.Equal(t, sum(body), parseFacts(t, b).Sum)
	}
	require.Equal(t, int64(1), ts.lsrv.Stats().Handshakes, "the first connection was reused, not redialed")
	require.Equal(t, "http/1.1", tr.protocol(canonicalAddrOf(t, ts.url)))

	// A server with no ALPN at all.
	ts2 := startServe(t, serverConfig(t, 0, ""), http.HandlerFunc(factsHandler), nil)
	resp, b := do(t, client, http.MethodGet, ts2.url+"/", nil)
	require.Equal(t, "HTTP/1.1", resp.Proto)
	require.Equal(t, "", parseFacts(t, b).ALPN)
}

func canonicalAddrOf(t *testing.T, url string) string {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	return canonicalAddr(req)
}

// TestTransportContext: a request's context ends it, over HTTP/2 and
// HTTP/1.1, and bounds the handshake with a server that never answers.
func TestTransportContext(t *testing.T) {
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			h := newBlockingHandler()
			ts := startServe(t, serverConfig(t, 0), h, nil)
			client, _ := libtlsClient(t, func(tr *Transport) { tr.DisableHTTP2 = !h2 })
			ctx, cancel := context.WithCancel(context.Background())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, ts.url+"/block", nil)
			require.NoError(t, err)
			go func() { <-h.started; cancel() }()
			start := time.Now()
			_, err = client.Do(req)
			require.ErrorIs(t, err, context.Canceled)
			require.Less(t, time.Since(start), 5*time.Second)
			select {
			case <-h.canceled:
			case <-time.After(testTimeout):
				t.Fatal("the server's handler was not canceled")
			}
		})
	}
	t.Run("SilentServer", func(t *testing.T) {
		ln := newSilentListener(t)
		client, tr := libtlsClient(t, func(tr *Transport) { tr.TLSHandshakeTimeout = 200 * time.Millisecond })
		_, _, err := tryDo(client, http.MethodGet, "https://"+ln+"/", nil)
		require.Error(t, err)
		require.True(t, isTimeout(err), "%v", err)
		_ = tr
	})
}

// TestTransportErrors: a certificate that does not verify and URLs the
// Transport does not handle.
func TestTransportErrors(t *testing.T) {
	ts, _ := goFactsServer(t, true, 0, io.Discard) // its handshake errors are this test's
	client, _ := libtlsClient(t, nil)              // trusts the test CA, not httptest's
	_, _, err := tryDo(client, http.MethodGet, ts.URL, nil)
	require.ErrorContains(t, err, "certificate verification failed")
	var le *libtls.Error
	require.True(t, errors.As(err, &le), "%T", err)

	_, _, err = tryDo(client, http.MethodGet, "http://127.0.0.1:1/", nil)
	require.ErrorContains(t, err, "https URLs only")

	tr := &Transport{}
	_, err = tr.RoundTrip(httptest.NewRequest(http.MethodGet, "https://127.0.0.1:1/", nil))
	require.ErrorContains(t, err, "NewTransport")
	tr.CloseIdleConnections()
}
