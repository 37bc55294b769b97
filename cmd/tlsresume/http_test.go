package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
)

// TestServeHTTP: serve answers HTTP/2 and HTTP/1.1, answers plain HTTP with
// 400, logs failed handshakes, and prints its counters on SIGUSR1 and when
// it stops; probe with an https:// URL makes a request per connection.
func TestServeHTTP(t *testing.T) {
	b := libtls.Backend()
	p := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, err := startServe(ctx, "127.0.0.1:0", p.certFile, p.keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			sp.stop()
		}
	})

	for _, h2 := range []bool{true, false} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool, ServerName: "localhost"}, ForceAttemptHTTP2: h2}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		resp, err := client.Get("https://" + sp.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := "HTTP/1.1"
		if h2 {
			want = "HTTP/2.0"
		}
		if !strings.Contains(string(body), "tlsresume serve (pid ") || !strings.Contains(string(body), want+", TLSv1.3, ") {
			t.Errorf("response %q, want %s", body, want)
		}
	}

	// Plain HTTP on the TLS port.
	raw, err := net.Dial("tcp", sp.addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	got, _ := io.ReadAll(raw)
	raw.Close()
	if !strings.HasPrefix(string(got), "HTTP/1.0 400 Bad Request") {
		t.Errorf("plain HTTP got %q", got)
	}
	// A client that does not trust the server.
	if c, err := tls.Dial("tcp", sp.addr, &tls.Config{ServerName: "localhost"}); err == nil {
		c.Close()
		t.Error("handshake without the CA succeeded")
	}

	// probe over HTTP, with a URL.
	rep := probeJSON(t, "https://localhost:"+portOf(t, sp.addr)+"/path?q=1", "-cafile", p.caFile, "-servername", "localhost")
	if rep.Mode != "http" || rep.URL == "" {
		t.Errorf("report %+v", rep)
	}
	for _, c := range rep.Connections {
		if c.HTTPStatus != http.StatusOK {
			t.Errorf("connection %+v: want HTTP status 200", c)
		}
	}
	if b.ServerSessionResumption {
		checkProbe(t, rep, 3, "TLSv1.2", true, verdictResumes)
	} else {
		checkProbe(t, rep, 3, "TLSv1.2", false, verdictNoResume)
	}
	code, stdout, _ := runCmd(t, "probe", sp.addr, "-http", "-cafile", p.caFile, "-servername", "localhost", "-n", "2")
	if code != 0 || !strings.Contains(stdout, "a request each") || !strings.Contains(stdout, "HTTP") || !strings.Contains(stdout, " 200") {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}

	// Counters on SIGUSR1.
	if err := sp.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(sp.out.String(), "tlsresume serve: handshakes ") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := sp.out.String()
	for _, want := range []string{
		"tlsresume serve: http: TLS handshake error from 127.0.0.1:", "client sent an HTTP request to an HTTPS server",
		"libtls: handshake: handshake failed: ", "tlsresume serve: handshakes ", "not TLS 1", "TLS 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("serve's stderr lacks %q:\n%s", want, out)
		}
	}
	// And when it stops.
	sp.stop()
	stopped = true
	if n := strings.Count(sp.out.String(), "tlsresume serve: handshakes "); n != 2 {
		t.Errorf("%d counter lines, want 2 (SIGUSR1, exit):\n%s", n, sp.out.String())
	}
}

func portOf(t *testing.T, addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// TestProbeGuidance: the messages that tell the user what happened and
// what to do.
func TestProbeGuidance(t *testing.T) {
	p := newTestPKI(t)

	// A TLS 1.3-only server: the table and -json say the same.
	addr13 := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}, MinVersion: tls.VersionTLS13})
	rep := probeJSON(t, addr13, "-cafile", p.caFile)
	const why = "libtls resumes TLS 1.2 sessions only"
	if rep.Verdict != verdictTLS13Only || !strings.Contains(rep.Note, why) {
		t.Errorf("-json verdict %q, note %q", rep.Verdict, rep.Note)
	}
	code, stdout, _ := runCmd(t, "probe", addr13, "-cafile", p.caFile)
	if code != 0 || !strings.Contains(stdout, "verdict: "+verdictTLS13Only+": "+rep.Note[:len(why)]) {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}

	// Not a TLS port: a plain HTTP server.
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()
	plainAddr := strings.TrimPrefix(plain.URL, "http://")
	code, stdout, stderr := runCmd(t, "probe", plainAddr, "-insecure")
	if code != exitError || stdout != "" {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	oneLine(t, stderr, "tlsresume probe: ", "did not answer with TLS", `"HTTP/1.1 400 Bad Request`, "is this a TLS port?")

	// With -json a failure is still a JSON object.
	code, stdout, stderr = runCmd(t, "probe", plainAddr, "-insecure", "-json")
	var fail probeFailure
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fail); err != nil || code != exitError {
		t.Fatalf("exit %d, -json output %q: %v", code, stdout, err)
	}
	if fail.Target != plainAddr || !strings.Contains(fail.Error, "is this a TLS port?") || fail.Client.Name == "" {
		t.Errorf("failure object %+v", fail)
	}
	oneLine(t, stderr, "is this a TLS port?")

	// A certificate that does not verify names the flags.
	addr := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}, MaxVersion: tls.VersionTLS12})
	code, _, stderr = runCmd(t, "probe", addr)
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	oneLine(t, stderr, "-cafile", "-insecure")
	other := newTestPKI(t)
	code, _, stderr = runCmd(t, "probe", addr, "-cafile", other.caFile)
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	oneLine(t, stderr, "-cafile "+other.caFile, "-insecure")
	// The wrong name, with the right CA.
	code, _, stderr = runCmd(t, "probe", addr, "-cafile", p.caFile, "-servername", "example.com")
	if code != exitError {
		t.Errorf("exit %d", code)
	}
	oneLine(t, stderr, "-cafile", "-insecure")

	// Bad URLs.
	for _, tc := range [][2]string{
		{"http://127.0.0.1:1/", "give an https:// URL or HOST:PORT"},
		{"https:///x", "names no host"},
	} {
		code, _, stderr := runCmd(t, "probe", tc[0])
		if code != exitUsage {
			t.Errorf("%s: exit %d", tc[0], code)
		}
		oneLine(t, stderr, tc[1])
	}
}

// TestNginxKeyFile: a key file in nginx's binary format is named as such.
func TestNginxKeyFile(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	for _, n := range []int{48, 80} {
		key := make([]byte, n)
		_, _ = rand.Read(key)
		key[n-1] = 0 // binary, and not ending with a newline
		path := filepath.Join(dir, "nginx.key")
		if err := os.WriteFile(path, key, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			{"keys", "rotate", "-file", path},
			{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-keys", path},
		} {
			code, _, stderr := runCmd(t, args...)
			if code != exitError {
				t.Errorf("%v: exit %d", args, code)
			}
			oneLine(t, stderr, "nginx ssl_session_ticket_key", "tlsresume keys init")
			if strings.Contains(stderr, "holds") && !strings.Contains(stderr, map[int]string{48: "AES-128", 80: "AES-256"}[n]) {
				t.Errorf("%d bytes: %s", n, stderr)
			}
		}
	}
}
