// Package etcdtest runs an embedded etcd cluster on the loopback interface
// for tests of programs that keep ticket keys in etcd (package etcdkeys):
// its members are etcd servers (go.etcd.io/etcd/server/v3/embed) inside the
// test process, on 127.0.0.1 ports chosen at run time, with their data in a
// directory of the caller's, logging only errors.
//
// A cluster can be run as operators run one (Options): clients over TLS
// with client certificates (etcd's --client-cert-auth) and authentication
// enabled, users and roles added with AddUser.
package etcdtest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/crypto/bcrypt"

	"github.com/golibtls/libtls/internal/testcert"
)

// StartTimeout bounds how long Start waits for the members to form a
// cluster and elect a leader.
const StartTimeout = 60 * time.Second

// RootPassword is the password of the user root in a cluster with
// Options.Auth.
const RootPassword = "etcdtest-root"

// Options say how a cluster serves its clients. The zero value is plain
// gRPC without authentication.
type Options struct {
	// TLS serves clients over TLS only (https:// endpoints) with a
	// certificate from a throwaway CA (CAFile) for localhost and
	// 127.0.0.1, and requires every client to present a certificate from
	// that CA (etcd's --client-cert-auth; see CertFiles). Members talk to
	// each other in plain HTTP.
	TLS bool
	// Auth enables authentication (etcdctl auth enable) with the user root
	// (role root, password RootPassword). With TLS, etcd takes the user
	// name from the client certificate's common name when no password is
	// given, as etcd does for operators.
	Auth bool
}

// Cluster is a running embedded etcd cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	opts Options
	dir  string
	ca   *testcert.CA // with TLS

	mu      sync.Mutex
	members []*member
}

type member struct {
	name      string
	clientURL string // the front door's
	frontAddr string // HOST:PORT of the front door
	ownAddr   string // HOST:PORT where the member itself listens for clients
	cfg       *embed.Config
	etcd      *embed.Etcd // nil while stopped
	front     *frontDoor  // nil while stopped
}

// Start starts an n-member cluster on 127.0.0.1 with its data under dir
// and waits (at most StartTimeout) until every member is ready. Close it
// when done.
func Start(dir string, n int) (*Cluster, error) {
	return StartWith(dir, n, Options{})
}

// StartWith is Start with Options.
func StartWith(dir string, n int, opts Options) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdtest: %d members", n)
	}
	var err error
	// The ports are chosen free, then released and bound by etcd: another
	// process may take one in between, so try again a few times.
	for try := 0; try < 3; try++ {
		var c *Cluster
		c, err = start(filepath.Join(dir, fmt.Sprintf("try%d", try)), n, opts)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	return nil, err
}

var errPortTaken = errors.New("etcdtest: port taken")

func start(dir string, n int, opts Options) (*Cluster, error) {
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{opts: opts, dir: dir}
	scheme := "http"
	var tlsInfo transport.TLSInfo
	if opts.TLS {
		scheme = "https"
		if tlsInfo, err = c.serverTLS(); err != nil {
			return nil, err
		}
	}
	cfgs := make([]*embed.Config, n)
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[3*i])
		// Clients reach the member through its front door (see frontDoor).
		own := fmt.Sprintf("127.0.0.1:%d", ports[3*i+1])
		front := fmt.Sprintf("127.0.0.1:%d", ports[3*i+2])
		client := scheme + "://" + front
		initial = append(initial, name+"="+peer)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = filepath.Join(dir, name)
		pu, _ := url.Parse(peer)
		cu, _ := url.Parse(client)
		ou, _ := url.Parse(scheme + "://" + own)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*ou}, []url.URL{*cu}
		cfg.ClientTLSInfo = tlsInfo
		cfg.InitialClusterToken = "etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(quietLogger())
		cfg.EnableGRPCGateway = false
		cfg.UnsafeNoFsync = true              // test data: speed over durability
		cfg.BcryptCost = uint(bcrypt.MinCost) // test passwords: speed over strength
		cfgs[i] = cfg
		c.members = append(c.members, &member{name: name, clientURL: client, frontAddr: front, ownAddr: own, cfg: cfg})
	}
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	for i, cfg := range cfgs {
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Close()
			if strings.Contains(err.Error(), "address already in use") {
				return nil, fmt.Errorf("%w: %v", errPortTaken, err)
			}
			return nil, fmt.Errorf("etcdtest: start member %s: %w", cfg.Name, err)
		}
		c.members[i].etcd = e
		d, err := openFrontDoor(c.members[i].frontAddr, c.members[i].ownAddr)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		c.members[i].front = d
	}
	deadline := time.After(StartTimeout)
	for _, m := range c.members {
		if err := waitReady(m, deadline); err != nil {
			c.Close()
			return nil, err
		}
	}
	if opts.Auth {
		if err := c.enableAuth(); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
}

// serverTLS makes the cluster's CA and the members' certificate.
func (c *Cluster) serverTLS() (transport.TLSInfo, error) {
	ca, err := testcert.NewCA("etcdtest CA")
	if err != nil {
		return transport.TLSInfo{}, err
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		return transport.TLSInfo{}, err
	}
	dir := filepath.Join(c.dir, "tls", "server")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return transport.TLSInfo{}, err
	}
	caFile, certFile, keyFile, err := ca.Files(dir, leaf)
	if err != nil {
		return transport.TLSInfo{}, err
	}
	c.ca = ca
	return transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: caFile, ClientCertAuth: true}, nil
}

// asRoot calls f with a client logged in as root.
func (c *Cluster) asRoot(f func(ctx context.Context, cli *clientv3.Client) error) error {
	cli, err := c.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	return f(ctx, cli)
}

// enableAuth adds root and enables authentication.
func (c *Cluster) enableAuth() error {
	return c.asRoot(enableAuth)
}

func enableAuth(ctx context.Context, cli *clientv3.Client) error {
	if _, err := cli.UserAdd(ctx, "root", RootPassword); err != nil {
		return fmt.Errorf("etcdtest: add root: %w", err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("etcdtest: grant root: %w", err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcdtest: enable auth: %w", err)
	}
	return nil
}

func waitReady(m *member, deadline <-chan time.Time) error {
	select {
	case <-m.etcd.Server.ReadyNotify():
		return nil
	case err := <-m.etcd.Err():
		return fmt.Errorf("etcdtest: member %s: %w", m.name, err)
	case <-deadline:
		return fmt.Errorf("etcdtest: member %s was not ready within %v", m.name, StartTimeout)
	}
}

// New starts an n-member cluster with its data in t.TempDir(), fails the
// test if it cannot, and closes it when the test ends.
func New(t testing.TB, n int) *Cluster {
	t.Helper()
	return NewWith(t, n, Options{})
}

// NewWith is New with Options.
func NewWith(t testing.TB, n int, opts Options) *Cluster {
	t.Helper()
	c, err := StartWith(t.TempDir(), n, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("etcdtest: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// quietLogger logs errors only, to stderr, less those a member logs when
// it is stopped. ETCDTEST_LOG=info (or debug, warn) logs more, to see what
// a cluster did in a test that failed.
func quietLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	level := zapcore.ErrorLevel
	if v := os.Getenv("ETCDTEST_LOG"); v != "" {
		if l, err := zapcore.ParseLevel(v); err == nil {
			level = l
		}
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.Sampling = nil
	lg, err := cfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return closingFilter{c} }))
	if err != nil {
		return zap.NewNop()
	}
	return lg
}

// closingFilter drops the errors of servers being closed, which a stopped
// member reports for each of its listeners, and the errors a member logs
// for a client that is refused as it should be (tests of authentication
// make such clients on purpose).
type closingFilter struct{ zapcore.Core }

func (f closingFilter) With(fields []zapcore.Field) zapcore.Core {
	return closingFilter{f.Core.With(fields)}
}

func (f closingFilter) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if f.Enabled(e.Level) {
		return ce.AddCore(e, f)
	}
	return ce
}

func (f closingFilter) Write(e zapcore.Entry, fields []zapcore.Field) error {
	if e.Message == "cannot find a user for permission check" {
		return nil
	}
	for _, fd := range fields {
		if err, ok := fd.Interface.(error); ok && fd.Type == zapcore.ErrorType {
			msg := err.Error()
			if strings.Contains(msg, "server closed") || strings.Contains(msg, "Server closed") || strings.Contains(msg, "use of closed network connection") {
				return nil
			}
		}
	}
	return f.Core.Write(e, fields)
}

// Endpoints returns the client URLs of every member, stopped ones
// included (clients move to the members that answer).
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientURL)
	}
	return eps
}

// Endpoint returns the client address of member i, HOST:PORT (whether
// or not it serves TLS).
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, hostPort, _ := strings.Cut(c.members[i].clientURL, "://")
	return hostPort
}

// Client returns a new client for every member's endpoint, as root (with
// TLS, by a certificate for root; with Auth alone, by RootPassword), that
// logs only errors. Close it when done.
func (c *Cluster) Client() (*clientv3.Client, error) {
	cfg := clientv3.Config{}
	if c.opts.TLS {
		tc, err := c.TLSConfig("root")
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
	} else if c.opts.Auth {
		cfg.Username, cfg.Password = "root", RootPassword
	}
	return c.NewClient(cfg)
}

// NewClient returns a client made from cfg, with every member's endpoint,
// a dial timeout and a logger of errors unless cfg has its own. Close it
// when done.
func (c *Cluster) NewClient(cfg clientv3.Config) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		cfg.Endpoints = c.Endpoints()
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	return clientv3.New(cfg)
}

// CAFile returns the file of the CA that signed the members' certificate
// and that they require client certificates from ("" without TLS).
func (c *Cluster) CAFile() string {
	if c.ca == nil {
		return ""
	}
	return filepath.Join(c.dir, "tls", "server", "ca.pem")
}

// CertFiles writes a client certificate for user (its common name) signed
// by the cluster's CA, and its key, into a directory of their own (mode
// 0600), and returns their paths. Without TLS it fails.
func (c *Cluster) CertFiles(user string) (certFile, keyFile string, err error) {
	if c.ca == nil {
		return "", "", errors.New("etcdtest: client certificates need Options.TLS")
	}
	leaf, err := c.ca.Issue(user)
	if err != nil {
		return "", "", err
	}
	dir, err := os.MkdirTemp(filepath.Join(c.dir, "tls"), "client-")
	if err != nil {
		return "", "", err
	}
	_, certFile, keyFile, err = c.ca.Files(dir, leaf)
	return certFile, keyFile, err
}

// TLSConfig returns a client TLS configuration that trusts the cluster's
// CA and presents a certificate for user ("": none). Without TLS it fails.
func (c *Cluster) TLSConfig(user string) (*tls.Config, error) {
	if c.ca == nil {
		return nil, errors.New("etcdtest: TLS configurations need Options.TLS")
	}
	cfg := &tls.Config{RootCAs: c.ca.Pool, MinVersion: tls.VersionTLS12}
	if user != "" {
		leaf, err := c.ca.Issue(user)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{leaf.TLS}
	}
	return cfg, nil
}

// Grant is a permission of a user added by AddUser: read, or read and
// write, on Key or on every key that starts with it.
type Grant struct {
	Key       string
	Prefix    bool
	ReadWrite bool
}

// AddUser adds user, with password ("" for a user that logs in by its
// client certificate only) and a role of the same name that holds grants.
func (c *Cluster) AddUser(user, password string, grants ...Grant) error {
	return c.asRoot(func(ctx context.Context, cli *clientv3.Client) error {
		return addUser(ctx, cli, user, password, grants)
	})
}

func addUser(ctx context.Context, cli *clientv3.Client, user, password string, grants []Grant) error {
	if _, err := cli.UserAddWithOptions(ctx, user, password, &clientv3.UserAddOptions{NoPassword: password == ""}); err != nil {
		return fmt.Errorf("etcdtest: add user %s: %w", user, err)
	}
	if _, err := cli.RoleAdd(ctx, user); err != nil {
		return fmt.Errorf("etcdtest: add role %s: %w", user, err)
	}
	for _, g := range grants {
		end := ""
		if g.Prefix {
			end = clientv3.GetPrefixRangeEnd(g.Key)
		}
		perm := clientv3.PermissionType(clientv3.PermRead)
		if g.ReadWrite {
			perm = clientv3.PermissionType(clientv3.PermReadWrite)
		}
		if _, err := cli.RoleGrantPermission(ctx, user, g.Key, end, perm); err != nil {
			return fmt.Errorf("etcdtest: grant role %s: %w", user, err)
		}
	}
	if _, err := cli.UserGrantRole(ctx, user, user); err != nil {
		return fmt.Errorf("etcdtest: grant %s its role: %w", user, err)
	}
	return nil
}

// Leader returns the index of the member that is the raft leader, or -1
// when no running member is.
func (c *Cluster) Leader() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, m := range c.members {
		if m.etcd != nil && m.etcd.Server.Leader() == m.etcd.Server.MemberID() {
			return i
		}
	}
	return -1
}

// Stop stops member i; the others carry on while they are a majority. Its
// clients' connections end at once, as when an etcd process exits, and a
// leader hands its leadership over, as etcd does when it is stopped
// gracefully. Stopping a stopped member does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.members[i]
	e, d := m.etcd, m.front
	m.etcd, m.front = nil, nil
	c.mu.Unlock()
	if d != nil {
		d.close()
	}
	if e != nil {
		e.Close()
	}
}

// Restart starts stopped member i again, on its old ports and data, and
// waits (at most StartTimeout) until it has rejoined the cluster.
// Restarting a running member does nothing.
func (c *Cluster) Restart(i int) error {
	c.mu.Lock()
	m := c.members[i]
	running := m.etcd != nil
	c.mu.Unlock()
	if running {
		return nil
	}
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("etcdtest: restart member %s: %w", m.name, err)
	}
	if err := waitReady(&member{name: m.name, etcd: e}, time.After(StartTimeout)); err != nil {
		e.Close()
		return err
	}
	d, err := openFrontDoor(m.frontAddr, m.ownAddr)
	if err != nil {
		e.Close()
		return fmt.Errorf("etcdtest: restart member %s: %w", m.name, err)
	}
	c.mu.Lock()
	m.etcd, m.front = e, d
	c.mu.Unlock()
	return nil
}

// Close stops every member.
func (c *Cluster) Close() {
	c.mu.Lock()
	n := len(c.members)
	c.mu.Unlock()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); c.Stop(i) }()
	}
	wg.Wait()
}
