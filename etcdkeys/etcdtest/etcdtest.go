// Package etcdtest runs an embedded etcd cluster on the loopback interface
// for tests of programs that keep ticket keys in etcd (package etcdkeys):
// its members are etcd servers (go.etcd.io/etcd/server/v3/embed) inside the
// test process, on 127.0.0.1 ports chosen at run time, with their data in a
// directory of the caller's, logging only errors.
package etcdtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// StartTimeout bounds how long Start waits for the members to form a
// cluster and elect a leader.
const StartTimeout = 60 * time.Second

// Cluster is a running embedded etcd cluster. Its methods are safe for
// concurrent use.
type Cluster struct {
	mu      sync.Mutex
	members []*member
}

type member struct {
	name      string
	clientURL string
	cfg       *embed.Config
	etcd      *embed.Etcd // nil while stopped
}

// Start starts an n-member cluster on 127.0.0.1 with its data under dir
// and waits (at most StartTimeout) until every member is ready. Close it
// when done.
func Start(dir string, n int) (*Cluster, error) {
	if n < 1 {
		return nil, fmt.Errorf("etcdtest: %d members", n)
	}
	var err error
	// The ports are chosen free, then released and bound by etcd: another
	// process may take one in between, so try again a few times.
	for try := 0; try < 3; try++ {
		var c *Cluster
		c, err = start(filepath.Join(dir, fmt.Sprintf("try%d", try)), n)
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

func start(dir string, n int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	cfgs := make([]*embed.Config, n)
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i])
		client := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		initial = append(initial, name+"="+peer)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = filepath.Join(dir, name)
		pu, _ := url.Parse(peer)
		cu, _ := url.Parse(client)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.InitialClusterToken = "etcdtest"
		cfg.ClusterState = embed.ClusterStateFlagNew
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(quietLogger())
		cfg.EnableGRPCGateway = false
		cfg.UnsafeNoFsync = true // test data: speed over durability
		cfgs[i] = cfg
		c.members = append(c.members, &member{name: name, clientURL: client, cfg: cfg})
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
	}
	deadline := time.After(StartTimeout)
	for _, m := range c.members {
		if err := waitReady(m, deadline); err != nil {
			c.Close()
			return nil, err
		}
	}
	return c, nil
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
	c, err := Start(t.TempDir(), n)
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
// it is stopped.
func quietLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	cfg.Sampling = nil
	lg, err := cfg.Build(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return closingFilter{c} }))
	if err != nil {
		return zap.NewNop()
	}
	return lg
}

// closingFilter drops the errors of servers being closed: a stopped member
// reports each of its listeners so.
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

// Endpoint returns the client address of member i, HOST:PORT.
func (c *Cluster) Endpoint(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.TrimPrefix(c.members[i].clientURL, "http://")
}

// Client returns a new client for every member's endpoint that logs only
// errors. Close it when done.
func (c *Cluster) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      quietLogger(),
	})
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

// Stop stops member i gracefully (a leader hands its leadership over
// first); the others carry on while they are a majority. Stopping a
// stopped member does nothing.
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.members[i]
	e := m.etcd
	m.etcd = nil
	c.mu.Unlock()
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
	c.mu.Lock()
	m.etcd = e
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
