package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

// metricsURL waits for the "metrics on URL" line a serve process prints
// after "listening on".
func metricsURL(t *testing.T, sp *serveProcess) string {
	t.Helper()
	for i := 0; i < 3000; i++ {
		for _, line := range strings.Split(sp.stdout.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "metrics on "); ok {
				return u
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no metrics URL on stdout: %q", sp.stdout.String())
	return ""
}

// serveMetrics starts "tlsresume serve -metrics" in a child, following
// keys unless it is "", and returns it and its metrics URL.
func serveMetrics(t *testing.T, ctx context.Context, p *testPKI, keys string) (*serveProcess, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-metrics", "127.0.0.1:0"}
	if keys != "" {
		args = append(args, "-keys", keys)
	}
	sp, err := startChild(ctx, exe, args, "listening on ")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.stop)
	return sp, metricsURL(t, sp)
}

// scrape reads the metrics in Prometheus's text format: sample (name and
// labels, as printed) to value.
func scrape(t *testing.T, url string) map[string]string {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	samples := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		samples[line[:i]] = line[i+1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return samples
}

// waitSamples scrapes until every sample in want has its value.
func waitSamples(t *testing.T, url string, want map[string]string) map[string]string {
	t.Helper()
	var got map[string]string
	for i := 0; i < 1000; i++ {
		got = scrape(t, url)
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	t.FailNow()
	return nil
}

// TestServeMetrics: "serve -metrics" serves the handshake counters (a
// full handshake, a plain HTTP client), the key file's revision as it
// rotates and whether the follower is in step, with the Go and process
// metrics, on an address of its own. Without -keys there are no key
// metrics.
func TestServeMetrics(t *testing.T) {
	p := newTestPKI(t)
	keys := filepath.Join(t.TempDir(), "ticket-keys")
	if code, _, stderr := runCmd(t, "keys", "init", "-file", keys); code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, url := serveMetrics(t, ctx, p, keys)
	if strings.Contains(url, sp.addr) {
		t.Fatalf("metrics %s on the TLS address %s", url, sp.addr)
	}

	// One HTTPS request (a full handshake) and plain HTTP on the TLS port.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + sp.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c, err := net.Dial("tcp", sp.addr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(answer), "400 Bad Request") {
		t.Fatalf("plain HTTP got %q", answer)
	}

	got := waitSamples(t, url, map[string]string{
		`golibtls_handshakes_total{kind="full"}`:                  "1",
		`golibtls_handshakes_total{kind="resumed"}`:               "0",
		`golibtls_handshake_failures_total{reason="not_tls"}`:     "1",
		`golibtls_handshake_failures_total{reason="tls"}`:         "0",
		`golibtls_handshake_failures_total{reason="timeout"}`:     "0",
		`golibtls_handshake_failures_total{reason="peer_closed"}`: "0",
		`golibtls_handshake_failures_total{reason="canceled"}`:    "0",
		`golibtls_handshake_failures_total{reason="other"}`:       "0",
		`golibtls_ticket_key_revision`:                            "1",
		`golibtls_ticket_keys_in_step`:                            "1",
	})
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := got[name]; !ok {
			t.Errorf("no %s", name)
		}
	}

	// A rotation reaches the process; a key file it cannot read puts it out
	// of step, keeping the revision it has.
	set, err := libtls.ReadTicketKeyFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Zero()
	set.Rotate(time.Now().Add(2*time.Hour), time.Hour)
	if err := libtls.WriteTicketKeyFile(keys, set); err != nil {
		t.Fatal(err)
	}
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "2", `golibtls_ticket_keys_in_step`: "1"})
	if err := os.Chmod(keys, 0o644); err != nil {
		t.Fatal(err)
	}
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "2", `golibtls_ticket_keys_in_step`: "0"})

	// Without -keys: the handshake counters alone.
	_, url2 := serveMetrics(t, ctx, p, "")
	got = scrape(t, url2)
	if got[`golibtls_handshakes_total{kind="full"}`] != "0" {
		t.Errorf("full handshakes %q, want 0", got[`golibtls_handshakes_total{kind="full"}`])
	}
	for k := range got {
		if strings.HasPrefix(k, "golibtls_ticket_") {
			t.Errorf("%s without -keys", k)
		}
	}
}

// TestServeMetricsEtcd: with -keys etcd://... the metrics show the
// revision of the set in etcd, and the follower out of step once the set
// is deleted.
func TestServeMetricsEtcd(t *testing.T) {
	const key = "/tlsresume-test/metrics-keys"
	p := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := etcdtest.New(t, 1)
	putSet(t, ctx, c, key, 2)
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	_, url := serveMetrics(t, ctx, p, "etcd://"+c.Endpoint(0)+key)
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "2", `golibtls_ticket_keys_in_step`: "1"})
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "2", `golibtls_ticket_keys_in_step`: "0"})
}

// TestServeMetricsWithoutEtcd: a serve that starts while etcd does not
// answer shows no fleet revision and the follower out of step; when etcd
// answers, the fleet's revision and in step. Its handshake counters cover
// every server it made: the one with keys of its own, from the start, and
// the one with the fleet's session ID, from the set's arrival.
func TestServeMetricsWithoutEtcd(t *testing.T) {
	const key = "/tlsresume-test/metrics-outage"
	p := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := etcdtest.New(t, 1)
	putSet(t, ctx, c, key, 2)
	c.Stop(0)
	sp, url := serveMetrics(t, ctx, p, "etcd://"+c.Endpoint(0)+key)
	client := sessionClient(t, p)
	shake := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := handshake(ctx, client, sp.addr, "localhost", 10*time.Second, nil); err != nil {
				t.Fatalf("handshake %d: %v", i, err)
			}
		}
	}
	// handshakes waits until the server counted n handshakes, full or
	// resumed.
	handshakes := func(n int) {
		t.Helper()
		var full, resumed int
		for range 1000 {
			got := scrape(t, url)
			full, _ = strconv.Atoi(got[`golibtls_handshakes_total{kind="full"}`])
			resumed, _ = strconv.Atoi(got[`golibtls_handshakes_total{kind="resumed"}`])
			if full+resumed == n {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("handshakes: full %d, resumed %d, want %d in all; stderr:\n%s", full, resumed, n, sp.out.String())
	}

	shake(1)
	handshakes(1)
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "0", `golibtls_ticket_keys_in_step`: "0"})

	if err := c.Restart(0); err != nil {
		t.Fatal(err)
	}
	for i := 0; !strings.Contains(sp.out.String(), "the fleet's set is applied; new connections get its session ID"); i++ {
		if i > 3000 {
			t.Fatalf("the server did not take the fleet's set; stderr:\n%s", sp.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitSamples(t, url, map[string]string{`golibtls_ticket_key_revision`: "2", `golibtls_ticket_keys_in_step`: "1"})
	shake(2)
	handshakes(3)
}

// TestServeMetricsErrors: a -metrics value that is not HOST:PORT is a
// usage error; an address in use fails the command, naming -metrics. The
// usage texts show -metrics.
func TestServeMetricsErrors(t *testing.T) {
	p := newTestPKI(t)
	code, _, stderr := runCmd(t, "serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-metrics", "9100")
	if code != exitUsage {
		t.Errorf("exit %d, want %d", code, exitUsage)
	}
	oneLine(t, stderr, "tlsresume serve:", `-metrics: "9100" is not HOST:PORT`)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, stderr = runCmd(t, "serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-metrics", ln.Addr().String())
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "tlsresume serve: -metrics:", "address already in use")

	// The usage texts show -metrics with etcd's options and tlsresume cert.
	for _, args := range [][]string{{"serve", "-h"}, {"-h"}} {
		_, stdout, _ := runCmd(t, args...)
		for _, want := range []string{"-metrics HOST:PORT", "etcd[s]://HOST:PORT/KEY", "tlsresume cert"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("%v does not show %q:\n%s", args, want, stdout)
			}
		}
	}
	if _, stdout, _ := runCmd(t, "serve", "-h"); !strings.Contains(stdout, "-etcd-cacert") || !strings.Contains(stdout, "-kek") {
		t.Errorf("serve -h does not show the etcd options:\n%s", stdout)
	}
}
