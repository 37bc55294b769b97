package etcdkeys

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
	"github.com/golibtls/libtls/internal/testcert"
)

// ioTimeout bounds every dial, handshake and exchange of these tests.
const ioTimeout = 30 * time.Second

// lazyCluster is a one-member cluster for the tests that need no cluster
// of their own, started on first use and closed by TestMain; each test
// uses keys of its own.
type lazyCluster struct {
	opts etcdtest.Options
	once sync.Once
	c    *etcdtest.Cluster
	dir  string
	err  error
}

var (
	// shared serves plain gRPC without authentication.
	shared lazyCluster
	// secure has client-certificate TLS and authentication, as operators
	// run etcd.
	secure = lazyCluster{opts: etcdtest.Options{TLS: true, Auth: true}}
)

func TestMain(m *testing.M) {
	code := m.Run()
	shared.close()
	secure.close()
	os.Exit(code)
}

func (l *lazyCluster) get(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	l.once.Do(func() {
		l.dir, l.err = os.MkdirTemp("", "etcdkeys-test-")
		if l.err == nil {
			l.c, l.err = etcdtest.StartWith(l.dir, 1, l.opts)
		}
	})
	require.NoError(t, l.err)
	return l.c
}

func (l *lazyCluster) close() {
	if l.c != nil {
		l.c.Close()
		os.RemoveAll(l.dir)
	}
}

// sharedCluster returns the shared one-member cluster (plain, no
// authentication).
func sharedCluster(t testing.TB) *etcdtest.Cluster { return shared.get(t) }

// secureCluster returns the shared one-member cluster with
// client-certificate TLS and authentication.
func secureCluster(t testing.TB) *etcdtest.Cluster { return secure.get(t) }

// users numbers the users that tests add.
var users atomic.Int64

// userClient adds to c (with TLS and authentication) a user whose name
// starts with role, holding grants, and returns a client that logs in as
// that user by its certificate; the client is closed when the test ends.
func userClient(t testing.TB, c *etcdtest.Cluster, role string, grants ...etcdtest.Grant) *clientv3.Client {
	t.Helper()
	user := fmt.Sprintf("%s-%d", role, users.Add(1))
	require.NoError(t, c.AddUser(user, "", grants...))
	tc, err := c.TLSConfig(user)
	require.NoError(t, err)
	cli, err := c.NewClient(clientv3.Config{TLS: tc})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// rotatorGrant is what a Rotator of key needs: readwrite on the prefix
// (the set and the election under it).
func rotatorGrant(key string) etcdtest.Grant {
	return etcdtest.Grant{Key: key, Prefix: true, ReadWrite: true}
}

// serverGrant is what a Follower of key needs: read on the key.
func serverGrant(key string) etcdtest.Grant { return etcdtest.Grant{Key: key} }

// newClient returns a client of c, closed when the test ends.
func newClient(t testing.TB, c *etcdtest.Cluster) *clientv3.Client {
	t.Helper()
	cli, err := c.Client()
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	return cli
}

// testKey is a key of the test's own (of this run of it: -count reruns
// tests on the same shared cluster).
func testKey(t testing.TB) string {
	return fmt.Sprintf("/etcdkeys-test/%s-%d", t.Name(), time.Now().UnixNano())
}

// ctxFor is a context bounded by ioTimeout.
func ctxFor(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	t.Cleanup(cancel)
	return ctx
}

// ctxTimeout is a context that ends after d.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); ; {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// putSet stores set under key as a key file's text.
func putSet(t testing.TB, cli *clientv3.Client, key string, set *libtls.TicketKeySet) int64 {
	t.Helper()
	text, err := set.MarshalText()
	require.NoError(t, err)
	defer clear(text)
	resp, err := cli.Put(ctxFor(t), key, string(text))
	require.NoError(t, err)
	return resp.Header.Revision
}

// getSet reads the set under key (nil if absent).
func getSet(t testing.TB, cli *clientv3.Client, key string) *libtls.TicketKeySet {
	t.Helper()
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	if len(resp.Kvs) == 0 {
		return nil
	}
	set, err := parseSet(key, resp.Kvs[0].ModRevision, resp.Kvs[0].Value)
	require.NoError(t, err)
	return set
}

func revsOf(set *libtls.TicketKeySet) []uint32 {
	var r []uint32
	for _, k := range set.Keys {
		r = append(r, k.Rev)
	}
	return r
}

// newest returns the newest revision of set, 0 for nil.
func newest(set *libtls.TicketKeySet) uint32 {
	if set == nil || len(set.Keys) == 0 {
		return 0
	}
	return set.Keys[len(set.Keys)-1].Rev
}

// --- TLS ----------------------------------------------------------------------

// pki is a throwaway CA and a certificate for localhost.
type pki struct {
	ca   *testcert.CA
	leaf *testcert.Leaf
}

var testPKI = sync.OnceValues(func() (*pki, error) {
	ca, err := testcert.NewCA("etcdkeys test CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	return &pki{ca, leaf}, nil
})

// serverConfig is a server Config with a session lifetime.
func serverConfig(t testing.TB, lifetime time.Duration) *libtls.Config {
	t.Helper()
	p, err := testPKI()
	require.NoError(t, err)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetKeypair(p.leaf.CertPEM, p.leaf.KeyPEM))
	require.NoError(t, cfg.SetSessionLifetime(lifetime))
	return cfg
}

// clientConfig is a TLS 1.2 client Config (nobody resumes TLS 1.3) with a
// session file of its own.
func clientConfig(t testing.TB) *libtls.Config {
	t.Helper()
	p, err := testPKI()
	require.NoError(t, err)
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(p.ca.CertPEM))
	require.NoError(t, cfg.SetProtocols(libtls.ProtocolTLSv1_2))
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, cfg.SetSessionFile(f))
	require.NoError(t, cfg.SetSessionScope(libtls.SessionPerServerName)) // one fleet at several addresses
	return cfg
}

// server is a libtls server on loopback that completes each handshake,
// answers one byte with one byte and closes.
type server struct {
	name       string
	cfg        *libtls.Config
	addr       string
	handshakes atomic.Int64
	resumed    atomic.Int64

	mu   sync.Mutex
	errs []error
}

func (s *server) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *server) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

func serve(t testing.TB, name string, cfg *libtls.Config) *server {
	t.Helper()
	l, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &server{name: name, cfg: cfg, addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := nc.(*libtls.Conn)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(ioTimeout))
				if err := c.Handshake(); err != nil {
					s.fail(fmt.Errorf("%s: handshake: %w", name, err))
					return
				}
				s.handshakes.Add(1)
				if c.SessionResumed() {
					s.resumed.Add(1)
				}
				b := make([]byte, 1)
				if _, err := c.Read(b); err != nil {
					s.fail(fmt.Errorf("%s: read: %w", name, err))
					return
				}
				if _, err := c.Write(b); err != nil {
					s.fail(fmt.Errorf("%s: write: %w", name, err))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return s
}

// dial connects, completes the handshake, exchanges a byte and reports
// whether the session was resumed.
func dial(addr string, cfg *libtls.Config) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	d := &libtls.Dialer{NetDialer: &net.Dialer{Timeout: ioTimeout}, Config: cfg, ServerName: "localhost"}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	c := nc.(*libtls.Conn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return false, fmt.Errorf("client write: %w", err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return false, fmt.Errorf("client read: %w", err)
	}
	return c.SessionResumed(), nil
}

// --- Logs ---------------------------------------------------------------------

// record is a log record of a Rotator, flattened.
type record struct {
	time  time.Time
	level slog.Level
	msg   string
	attrs map[string]any
}

// logs collects the records of Rotators' Loggers.
type logs struct {
	mu      sync.Mutex
	records []record
}

func (l *logs) logger() *slog.Logger { return slog.New(&logHandler{l: l}) }

func (l *logs) all() []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records)
}

// find returns the records with message msg.
func (l *logs) find(msg string) []record {
	var out []record
	for _, r := range l.all() {
		if r.msg == msg {
			out = append(out, r)
		}
	}
	return out
}

type logHandler struct {
	l     *logs
	attrs []slog.Attr
}

func (h *logHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	rec := record{time: r.Time, level: r.Level, msg: r.Message, attrs: map[string]any{}}
	for _, a := range h.attrs {
		rec.attrs[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.l.mu.Lock()
	defer h.l.mu.Unlock()
	h.l.records = append(h.l.records, rec)
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{l: h.l, attrs: append(slices.Clone(h.attrs), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }
