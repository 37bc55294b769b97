package libtlsprom

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// testTimeout bounds every wait of these tests.
const testTimeout = 30 * time.Second

// pki is a throwaway CA and a server certificate for localhost and
// 127.0.0.1.
type pki struct {
	ca   *testcert.CA
	leaf *testcert.Leaf
}

// thePKI makes the tests' PKI once.
var thePKI = sync.OnceValues(func() (p pki, err error) {
	if p.ca, err = testcert.NewCA("libtlsprom test CA"); err == nil {
		p.leaf, err = p.ca.Issue("localhost", "127.0.0.1")
	}
	return p, err
})

func testPKI(t testing.TB) (*testcert.CA, *testcert.Leaf) {
	t.Helper()
	p, err := thePKI()
	require.NoError(t, err)
	return p.ca, p.leaf
}

// serverConfig is a server Config with sessions (which resume where the
// backend's servers do), closed when the test ends.
func serverConfig(t testing.TB) *libtls.Config {
	t.Helper()
	_, leaf := testPKI(t)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetKeypair(leaf.CertPEM, leaf.KeyPEM))
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	return cfg
}

// handshake accepts one TCP connection on loopback with srv, runs the
// server's handshake (with ctx, and deadline if not zero) while client
// does what it does with the address, and returns the server's error.
func handshake(t *testing.T, srv *libtls.Server, ctx context.Context, deadline time.Duration, client func(addr string)) error {
	t.Helper()
	return handshakeWrapped(t, srv, ctx, deadline, nil, client)
}

// readHook is a net.Conn that calls hook before each Read.
type readHook struct {
	net.Conn
	hook func()
}

func (r *readHook) Read(p []byte) (int, error) {
	r.hook()
	return r.Conn.Read(p)
}

// handshakeWrapped is handshake with the accepted connection wrapped by
// wrap (if not nil) before the server takes it.
func handshakeWrapped(t *testing.T, srv *libtls.Server, ctx context.Context, deadline time.Duration, wrap func(net.Conn) net.Conn, client func(addr string)) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			errc <- err
			return
		}
		if wrap != nil {
			raw = wrap(raw)
		}
		c, err := srv.Accept(raw)
		if err != nil {
			raw.Close()
			errc <- err
			return
		}
		defer c.Close()
		if deadline > 0 {
			_ = c.SetDeadline(time.Now().Add(deadline))
		}
		errc <- c.HandshakeContext(ctx)
	}()
	client(ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-time.After(testTimeout):
		t.Fatal("the server's handshake did not end")
		return nil
	}
}

// goClient dials addr with crypto/tls and completes a handshake (or fails
// it, for a client that does not trust the server).
func goClient(cfg *tls.Config) func(addr string) {
	return func(addr string) {
		d := &net.Dialer{Timeout: testTimeout}
		c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
		if err == nil {
			// The server's handshake ends with the client's Finished:
			// read until it closes.
			_ = c.SetReadDeadline(time.Now().Add(testTimeout))
			_, _ = c.Read(make([]byte, 1))
			c.Close()
		}
	}
}

// TestCollectorCounts: the Collector exports the Server's counters, one
// failure of each kind the tests can cause, and the resumed handshake
// where the backend's servers resume.
func TestCollectorCounts(t *testing.T) {
	ca, _ := testPKI(t)
	srv, err := libtls.NewServer(serverConfig(t))
	require.NoError(t, err)
	defer srv.Close()
	bg := context.Background()

	// Two full handshakes, then one that resumes on LibreSSL.
	sessions := tls.NewLRUClientSessionCache(4)
	tls12 := &tls.Config{RootCAs: ca.Pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, ClientSessionCache: sessions}
	require.NoError(t, handshake(t, srv, bg, 0, goClient(&tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})))
	require.NoError(t, handshake(t, srv, bg, 0, goClient(tls12)))
	require.NoError(t, handshake(t, srv, bg, 0, goClient(tls12)))

	// not_tls: plain HTTP.
	err = handshake(t, srv, bg, 0, func(addr string) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		defer c.Close()
		_, _ = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		_ = c.SetReadDeadline(time.Now().Add(testTimeout))
		_, _ = c.Read(make([]byte, 1))
	})
	var rhe *libtls.RecordHeaderError
	require.ErrorAs(t, err, &rhe)
	// tls: a client that does not trust the server's certificate.
	require.Error(t, handshake(t, srv, bg, 0, goClient(&tls.Config{ServerName: "localhost"})))
	// peer_closed: a client that leaves at once.
	require.Error(t, handshake(t, srv, bg, 0, func(addr string) {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		c.Close()
	}))
	// timeout: a client that says nothing, twice.
	for range 2 {
		var c net.Conn
		require.Error(t, handshake(t, srv, bg, 50*time.Millisecond, func(addr string) {
			c, err = net.Dial("tcp", addr)
			require.NoError(t, err)
		}))
		c.Close()
	}
	// canceled: a handshake whose context is canceled once the server
	// waits for the client's hello (on the callback transport, where Go
	// reads for libtls and the wait can be seen).
	ctx, cancel := context.WithCancel(bg)
	defer cancel()
	reading := make(chan struct{})
	var once sync.Once
	var c net.Conn
	wrap := func(raw net.Conn) net.Conn {
		return &readHook{Conn: raw, hook: func() { once.Do(func() { close(reading) }) }}
	}
	require.ErrorIs(t, handshakeWrapped(t, srv, ctx, 0, wrap, func(addr string) {
		c, err = net.Dial("tcp", addr)
		require.NoError(t, err)
		<-reading
		cancel()
	}), context.Canceled)
	c.Close()

	full, resumed := 3, 0
	if libtls.Backend().ServerSessionResumption {
		full, resumed = 2, 1
	}
	want := countersText(full, resumed, libtls.HandshakeFailures{Timeout: 2, PeerClosed: 1, NotTLS: 1, TLS: 1, Canceled: 1})
	col := NewCollector(srv)
	require.NoError(t, testutil.CollectAndCompare(col, strings.NewReader(want)), "stats: %s", srv.Stats())
	// Through a registry, as a scrape sees it.
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(col))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(want)))
	// After Close the counters stay.
	require.NoError(t, srv.Close())
	require.NoError(t, testutil.CollectAndCompare(col, strings.NewReader(want)))
}

// countersText is the text format of the handshake counters with these
// values, as a scrape shows them.
func countersText(full, resumed int, f libtls.HandshakeFailures) string {
	return fmt.Sprintf(`
# HELP golibtls_handshake_failures_total Failed TLS handshakes of the golibtls server, by reason: timeout, peer_closed, not_tls, tls, canceled, other.
# TYPE golibtls_handshake_failures_total counter
golibtls_handshake_failures_total{reason="canceled"} %d
golibtls_handshake_failures_total{reason="not_tls"} %d
golibtls_handshake_failures_total{reason="other"} %d
golibtls_handshake_failures_total{reason="peer_closed"} %d
golibtls_handshake_failures_total{reason="timeout"} %d
golibtls_handshake_failures_total{reason="tls"} %d
# HELP golibtls_handshakes_total Completed TLS handshakes of the golibtls server, by kind: full, or resumed (a session resumed).
# TYPE golibtls_handshakes_total counter
golibtls_handshakes_total{kind="full"} %d
golibtls_handshakes_total{kind="resumed"} %d
`, f.Canceled, f.NotTLS, f.Other, f.PeerClosed, f.Timeout, f.TLS, full, resumed)
}

// TestFailureReasons: every kind of libtls.HandshakeFailures has a reason,
// named as in its JSON, so that a kind added to the core cannot go
// unexported.
func TestFailureReasons(t *testing.T) {
	var kinds []string
	typ := reflect.TypeOf(libtls.HandshakeFailures{})
	for i := range typ.NumField() {
		name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		kinds = append(kinds, name)
	}
	var reasons []string
	for _, r := range failureReasons {
		reasons = append(reasons, r.reason)
	}
	assert.ElementsMatch(t, kinds, reasons)

	// Each reads its own field.
	f := libtls.HandshakeFailures{}
	v := reflect.ValueOf(&f).Elem()
	for i := range v.NumField() {
		v.Field(i).SetInt(int64(i + 1))
	}
	b, err := json.Marshal(f)
	require.NoError(t, err)
	var byName map[string]int64
	require.NoError(t, json.Unmarshal(b, &byName))
	for _, r := range failureReasons {
		assert.Equal(t, byName[r.reason], r.count(f), r.reason)
	}
}

// TestCollectorListener: a listener from libtls.Listen, through
// ListenerServer; a listener that is not golibtls's is refused when the
// Collector is registered.
func TestCollectorListener(t *testing.T) {
	ca, _ := testPKI(t)
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", serverConfig(t))
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*libtls.Conn).Handshake()
	}()
	goClient(&tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})(ln.Addr().String())
	require.NoError(t, <-done)
	col := NewCollector(libtls.ListenerServer(ln))
	assert.Equal(t, 1.0, testutil.ToFloat64(gather(t, col, "golibtls_handshakes_total", "full")))

	plain, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer plain.Close()
	err = prometheus.NewRegistry().Register(NewCollector(libtls.ListenerServer(plain)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "libtlsprom: nil Server")

	srv, err := libtls.NewServer(serverConfig(t))
	require.NoError(t, err)
	defer srv.Close()
	err = prometheus.NewRegistry().Register(NewCollector(srv, WithTicketKeys(nil, nil)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "WithTicketKeys: nil Config")
}

// gather returns one sample of a collector as a collector of its own, for
// testutil.ToFloat64.
func gather(t *testing.T, c prometheus.Collector, name, label string) prometheus.Collector {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label) {
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sample"}, func() float64 { return v })
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return nil
}

// TestCollectorTicketKeys: with a key file follower the Collector shows
// the fleet's newest revision and whether the follower is in step, as the
// file rotates, breaks and is repaired.
func TestCollectorTicketKeys(t *testing.T) {
	cfg := serverConfig(t)
	path := filepath.Join(t.TempDir(), "keys")
	set, err := libtls.CreateTicketKeyFile(path)
	require.NoError(t, err)
	defer set.Zero()
	f, err := libtls.FollowTicketKeyFile(cfg, path, 10*time.Millisecond)
	require.NoError(t, err)
	defer f.Close()
	srv, err := libtls.NewServer(cfg)
	require.NoError(t, err)
	defer srv.Close()
	col := NewCollector(srv, WithTicketKeys(cfg, f))

	keys := func(rev, inStep int) string {
		return fmt.Sprintf(`
# HELP golibtls_ticket_key_revision Newest fleet ticket key revision applied to the golibtls server's Config (0: none).
# TYPE golibtls_ticket_key_revision gauge
golibtls_ticket_key_revision %d
# HELP golibtls_ticket_keys_in_step 1 if the ticket key follower's last check found the server in step with the fleet's keys, else 0.
# TYPE golibtls_ticket_keys_in_step gauge
golibtls_ticket_keys_in_step %d
`, rev, inStep)
	}
	eventually := func(what, want string) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if err = testutil.CollectAndCompare(col, strings.NewReader(want), "golibtls_ticket_key_revision", "golibtls_ticket_keys_in_step"); err == nil {
				return
			}
		}
		t.Fatalf("%s: %v", what, err)
	}
	eventually("rev 1", keys(1, 1))

	require.True(t, set.Rotate(time.Now().Add(time.Hour), time.Hour))
	require.NoError(t, libtls.WriteTicketKeyFile(path, set))
	eventually("rev 2", keys(2, 1))

	require.NoError(t, os.WriteFile(path+".new", []byte("not a key file\n"), 0o600))
	require.NoError(t, os.Rename(path+".new", path))
	eventually("the broken file", keys(2, 0))

	require.True(t, set.Rotate(time.Now().Add(2*time.Hour), time.Hour))
	require.NoError(t, libtls.WriteTicketKeyFile(path, set))
	eventually("rev 3", keys(3, 1))

	// Without a follower: the revision alone.
	err = testutil.CollectAndCompare(NewCollector(srv, WithTicketKeys(cfg, nil)), strings.NewReader(`
# HELP golibtls_ticket_key_revision Newest fleet ticket key revision applied to the golibtls server's Config (0: none).
# TYPE golibtls_ticket_key_revision gauge
golibtls_ticket_key_revision 3
`), "golibtls_ticket_key_revision", "golibtls_ticket_keys_in_step")
	require.NoError(t, err)
}

// TestFleetRevision: the keys the binding makes for itself (a server
// without fleet keys makes one at its first handshake) are not the
// fleet's.
func TestFleetRevision(t *testing.T) {
	ca, _ := testPKI(t)
	cfg := serverConfig(t)
	srv, err := libtls.NewServer(cfg)
	require.NoError(t, err)
	defer srv.Close()
	require.NoError(t, handshake(t, srv, context.Background(), 0, goClient(&tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})))
	revs := cfg.TicketKeyRevisions()
	require.Len(t, revs, 1)
	require.GreaterOrEqual(t, revs[0], libtls.LocalTicketKeyRevBase)
	assert.Zero(t, fleetRevision(cfg))

	key, err := libtls.NewTicketKey()
	require.NoError(t, err)
	require.NoError(t, cfg.AddTicketKey(7, key))
	assert.Equal(t, uint32(7), fleetRevision(cfg))
}

// TestSeveralServers: two servers' Collectors in one registry, told apart
// by a label, as the package documentation advises.
func TestSeveralServers(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	for _, name := range []string{"public", "internal"} {
		srv, err := libtls.NewServer(serverConfig(t))
		require.NoError(t, err)
		defer srv.Close()
		require.NoError(t, prometheus.WrapRegistererWith(prometheus.Labels{"server": name}, reg).Register(NewCollector(srv)))
	}
	n, err := testutil.GatherAndCount(reg, "golibtls_handshakes_total")
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	// Without the label the second is refused.
	reg = prometheus.NewRegistry()
	srv, err := libtls.NewServer(serverConfig(t))
	require.NoError(t, err)
	defer srv.Close()
	require.NoError(t, reg.Register(NewCollector(srv)))
	assert.Error(t, reg.Register(NewCollector(srv)))
}

// statsFunc is a StatsSource of its own, as a listener that sums the
// counters of several Servers is.
type statsFunc func() libtls.ServerStats

func (f statsFunc) Stats() libtls.ServerStats { return f() }

// TestCollectorStatsSource: a StatsSource other than a Server is read at
// each scrape, every counter in its place; a nil one is refused when the
// Collector is registered.
func TestCollectorStatsSource(t *testing.T) {
	var mu sync.Mutex
	st := libtls.ServerStats{Handshakes: 7, Resumed: 3, Failed: 21,
		Failures: libtls.HandshakeFailures{Timeout: 1, PeerClosed: 2, NotTLS: 3, TLS: 4, Canceled: 5, Other: 6}}
	col := NewCollector(statsFunc(func() libtls.ServerStats {
		mu.Lock()
		defer mu.Unlock()
		return st
	}))
	want := countersText(4, 3, st.Failures) // every reason a value of its own
	require.NoError(t, testutil.CollectAndCompare(col, strings.NewReader(want)))
	mu.Lock()
	st.Handshakes, st.Resumed = 12, 5
	mu.Unlock()
	assert.Equal(t, 7.0, testutil.ToFloat64(gather(t, col, "golibtls_handshakes_total", "full")))

	err := prometheus.NewRegistry().Register(NewCollector(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "libtlsprom: nil Server")
}
