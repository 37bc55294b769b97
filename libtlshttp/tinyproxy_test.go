package libtlshttp

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	libtls "github.com/golibtls/libtls"
)

// startTinyproxy runs tinyproxy (Debian's package tinyproxy) on loopback,
// requiring basic authentication as user:password, and returns its
// address. It stops when the test ends.
func startTinyproxy(t *testing.T, user, password string) string {
	t.Helper()
	bin, err := exec.LookPath("tinyproxy")
	require.NoError(t, err, "tinyproxy is needed (Debian package tinyproxy; scripts/test installs it)")
	dir := t.TempDir()
	// tinyproxy takes a port number, not 0: take a free one, and try
	// again should another process take it first.
	for attempt := 0; attempt < 3; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		ln.Close()
		_, port, _ := net.SplitHostPort(addr)
		conf := filepath.Join(dir, "tinyproxy.conf")
		require.NoError(t, os.WriteFile(conf, []byte(fmt.Sprintf(`Port %s
Listen 127.0.0.1
Timeout 30
MaxClients 20
Allow 127.0.0.1
BasicAuth %s %s
DisableViaHeader Yes
LogLevel Info
`, port, user, password)), 0o600))
		out := &lockedBuffer{}
		ctx, cancel := context.WithCancel(context.Background())
		cmd := exec.CommandContext(ctx, bin, "-d", "-c", conf)
		cmd.Stdout, cmd.Stderr = out, out
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		stop := func() { cancel(); <-exited }
		for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			select {
			case <-exited:
			default:
				c, err := net.Dial("tcp", addr)
				if err != nil {
					continue
				}
				c.Close()
				t.Cleanup(func() {
					stop()
					if t.Failed() {
						t.Logf("tinyproxy's log:\n%s", out)
					}
				})
				return addr
			}
			break
		}
		stop()
		t.Logf("tinyproxy did not start on %s (attempt %d):\n%s", addr, attempt+1, out)
	}
	t.Fatal("tinyproxy did not start")
	return ""
}

// TestTransportTinyproxy: through tinyproxy, a proxy nobody here wrote,
// with basic authentication, to a crypto/tls server and to a golibtls
// one, over HTTP/2 and HTTP/1.1; new connections resume their sessions
// through it. Without the credentials tinyproxy refuses the tunnel.
func TestTransportTinyproxy(t *testing.T) {
	addr := startTinyproxy(t, "alice", "s3cret")
	proxyURL := &url.URL{Scheme: "http", User: url.UserPassword("alice", "s3cret"), Host: addr}
	goSrv := localhostURL(t, tls12Server(t, true, nil))
	libtlsSrv := startServe(t, serverConfig(t, libtls.ProtocolTLSv1_2), http.HandlerFunc(factsHandler), nil)
	for _, c := range []struct {
		name    string
		url     string
		resumes bool
	}{
		{"crypto/tls server", goSrv, libtls.Backend().ClientSessionResumption},
		{"golibtls server", libtlsSrv.url, libtls.Backend().ServerSessionResumption},
	} {
		for _, h2 := range []bool{true, false} {
			t.Run(c.name+"/h2="+strconv.FormatBool(h2), func(t *testing.T) {
				client, tr := libtlsClient(t, func(tr *Transport) {
					tr.Proxy = http.ProxyURL(proxyURL)
					tr.DisableHTTP2 = !h2
				})
				for i := range 3 {
					resp, body := do(t, client, http.MethodGet, c.url+"/", nil)
					assert.Equal(t, map[bool]string{true: "HTTP/2.0", false: "HTTP/1.1"}[h2], parseFacts(t, body).Proto)
					assert.Equal(t, c.resumes && i > 0, resp.TLS.DidResume, "connection %d", i+1)
					tr.CloseIdleConnections()
				}
			})
		}
	}

	client, _ := libtlsClient(t, func(tr *Transport) { tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr}) })
	_, _, err := tryDo(client, http.MethodGet, goSrv+"/", nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "407")
}
