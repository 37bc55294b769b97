package libtlshttp

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	libtls "github.com/golibtls/libtls"
	"github.com/stretchr/testify/require"
)

// curl runs the curl command (Debian's package curl, on OpenSSL, with
// HTTP/2 through nghttp2) against ts with the test CA, the name localhost
// resolved to the loopback address, and args.
func curl(t *testing.T, ts *testServer, args ...string) string {
	t.Helper()
	ca, _ := testPKI(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, ca.CertPEM, 0o600))
	_, port, err := net.SplitHostPort(ts.ln.Addr().String())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	all := append([]string{"-sS", "--max-time", "20", "--cacert", caFile, "--resolve", "localhost:" + port + ":127.0.0.1"}, args...)
	for i, a := range all {
		all[i] = strings.ReplaceAll(a, "PORT", port)
	}
	out, err := exec.CommandContext(ctx, "curl", all...).CombinedOutput()
	require.NoError(t, err, "curl %s: %s", strings.Join(all, " "), out)
	return string(out)
}

// TestServeCurl serves curl over HTTP/2 and HTTP/1.1, answers its plain
// HTTP with 400, and shows that curl's reconnections never resume against
// a libtls server: over TLS 1.3 (curl's default) nothing resumes through
// libtls, and over TLS 1.2 curl on OpenSSL offers no session ticket, the
// only kind of session libtls servers resume.
func TestServeCurl(t *testing.T) {
	_, err := exec.LookPath("curl")
	require.NoError(t, err, "curl is needed (Debian package curl)")
	version, err := exec.Command("curl", "--version").Output()
	require.NoError(t, err)
	require.Contains(t, string(version), "HTTP2", "this curl cannot speak HTTP/2")

	ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), nil)
	for _, tc := range []struct{ flag, proto, version string }{
		{"--http2", "HTTP/2.0", "2"},
		{"--http1.1", "HTTP/1.1", "1.1"},
	} {
		out := curl(t, ts, tc.flag, "-w", "\n%{http_version} %{http_code}", "https://localhost:PORT/curl")
		body, status, ok := strings.Cut(out, "\n")
		require.True(t, ok, out)
		require.Equal(t, tc.version+" 200", status)
		f := parseFacts(t, body)
		require.Equal(t, tc.proto, f.Proto)
		require.Equal(t, "TLS 1.3", f.Version)
		require.Equal(t, "localhost", f.SNI)
	}

	// Plain HTTP on the TLS port.
	out := curl(t, ts, "-w", "%{http_code}", "http://localhost:PORT/")
	require.Equal(t, "Client sent an HTTP request to an HTTPS server.\n400", out)

	// Three connections over TLS 1.2 in one curl process.
	before := ts.lsrv.Stats()
	out = curl(t, ts, "--http1.1", "--tls-max", "1.2", "-H", "Connection: close",
		"-w", "%{num_connects}\n", "-o", "/dev/null", "https://localhost:PORT/1",
		"-o", "/dev/null", "https://localhost:PORT/2", "-o", "/dev/null", "https://localhost:PORT/3")
	require.Equal(t, "1\n1\n1\n", out, "a connection per transfer")
	after := ts.lsrv.Stats()
	require.Equal(t, before.Handshakes+3, after.Handshakes)
	require.Equal(t, before.Resumed, after.Resumed, "curl did not resume (%s)", libtls.Backend())
}
