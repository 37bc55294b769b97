package etcdtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestCluster: three members on loopback that survive the loss of their
// leader, and a member that rejoins with what it missed.
func TestCluster(t *testing.T) {
	c := New(t, 3)
	eps := c.Endpoints()
	if len(eps) != 3 {
		t.Fatalf("endpoints %v", eps)
	}
	for i, ep := range eps {
		u, err := url.Parse(ep)
		if err != nil || u.Hostname() != "127.0.0.1" || u.Host != c.Endpoint(i) {
			t.Errorf("member %d: endpoint %q (%v), Endpoint %q: want loopback", i, ep, err, c.Endpoint(i))
		}
	}
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}

	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	c.Stop(leader)
	c.Stop(leader) // no-op
	if _, err := cli.Put(ctx, "k", "2"); err != nil {
		t.Fatalf("put with a member stopped: %v", err)
	}
	if l := c.Leader(); l == leader || l < 0 {
		t.Errorf("leader %d after stopping member %d", l, leader)
	}

	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(leader); err != nil {
		t.Fatalf("restarting a running member: %v", err)
	}
	// The restarted member alone, once it has caught up.
	one, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[leader]}, DialTimeout: 5 * time.Second, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	resp, err := one.Get(ctx, "k") // linearizable: waits for the member to catch up
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "2" {
		t.Errorf("restarted member has %v, want k=2", resp.Kvs)
	}
}

// TestStopEndsClientStreams: a member stops as when its process exits,
// whatever its clients have open on it, and their watches go on through
// another member. etcd's graceful stop alone waits up to 7 s for its
// clients' streams (its request timeout), and never returns while a client
// connection has sent nothing yet (cmux waits for its first bytes); here
// Stop ends the member's client connections first.
func TestStopEndsClientStreams(t *testing.T) {
	c := New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	leader := c.Leader()
	if leader < 0 {
		t.Fatal("no leader")
	}
	// The watcher knows only the leader until its streams are open there;
	// then it is given every member, to move to when the leader stops.
	eps := c.Endpoints()
	watcher, err := c.NewClient(clientv3.Config{Endpoints: eps[leader : leader+1]})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	writer, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	// A lease kept alive, as a Rotator's session does, and a watch that
	// requires a leader, as a Follower's does: both streams on the member.
	lease, err := watcher.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := watcher.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ka {
		}
	}()
	wch := watcher.Watch(clientv3.WithRequireLeader(ctx), "k")
	if _, err := writer.Put(ctx, "k", "1"); err != nil {
		t.Fatal(err)
	}
	if wr := <-wch; len(wr.Events) != 1 {
		t.Fatalf("watch before the stop: %v", wr)
	}
	watcher.SetEndpoints(eps...)

	// And a client's connection that is just being made: connected, no
	// byte sent yet.
	raw, err := net.Dial("tcp", c.Endpoint(leader))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	time.Sleep(100 * time.Millisecond)

	start := time.Now()
	stopped := make(chan struct{})
	go func() { defer close(stopped); c.Stop(leader) }()
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return within 10 s with client connections open on the member")
	}
	took := time.Since(start)
	if took >= 5*time.Second {
		t.Errorf("Stop took %v with client connections open on the member: it waited for them", took)
	}
	if _, err := writer.Put(ctx, "k", "2"); err != nil {
		t.Fatalf("put after the stop: %v", err)
	}
	for {
		select {
		case wr, ok := <-wch:
			if !ok {
				t.Fatal("the watch ended")
			}
			for _, ev := range wr.Events {
				if string(ev.Kv.Value) == "2" {
					t.Logf("Stop took %v; the watch saw the next write %v after it", took.Round(time.Millisecond), (time.Since(start) - took).Round(time.Millisecond))
					return
				}
			}
		case <-ctx.Done():
			t.Fatal("the watch never saw the write after the stop")
		}
	}
}

func TestStartErrors(t *testing.T) {
	if _, err := Start(t.TempDir(), 0); err == nil {
		t.Error("0 members: no error")
	}
}

// TestClusterTLSAuth: a cluster run as operators run one: clients over TLS
// with certificates from the cluster's CA, authentication enabled, users
// by certificate or by password, and roles.
func TestClusterTLSAuth(t *testing.T) {
	c := NewWith(t, 1, Options{TLS: true, Auth: true})
	if ep := c.Endpoints()[0]; !strings.HasPrefix(ep, "https://127.0.0.1:") || !strings.HasSuffix(ep, c.Endpoint(0)) {
		t.Errorf("endpoint %q (Endpoint %q): want https on loopback", ep, c.Endpoint(0))
	}
	root, ctx := rootPut(t, c)
	st, err := root.AuthStatus(ctx)
	if err != nil || !st.Enabled {
		t.Fatalf("auth status %v, %v: want enabled", st, err)
	}
	if err := c.AddUser("reader", "", Grant{Key: "/k"}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddUser("writer", "secret", Grant{Key: "/k", Prefix: true, ReadWrite: true}); err != nil {
		t.Fatal(err)
	}

	client := func(user string, cfg clientv3.Config) *clientv3.Client {
		t.Helper()
		tc, err := c.TLSConfig(user)
		if err != nil {
			t.Fatal(err)
		}
		cfg.TLS = tc
		cli, err := c.NewClient(cfg)
		if err != nil {
			t.Fatalf("client %q: %v", user, err)
		}
		t.Cleanup(func() { cli.Close() })
		return cli
	}
	// The user is the certificate's common name...
	reader := client("reader", clientv3.Config{})
	if _, err := reader.Get(ctx, "/k"); err != nil {
		t.Errorf("reader get: %v", err)
	}
	if _, err := reader.Put(ctx, "/k", "2"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("reader put: %v, want permission denied", err)
	}
	// ... unless a password logs in as another.
	writer := client("reader", clientv3.Config{Username: "writer", Password: "secret"})
	if _, err := writer.Put(ctx, "/k/x", "2"); err != nil {
		t.Errorf("writer put: %v", err)
	}
	if _, err := writer.Put(ctx, "/other", "2"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("writer put outside its prefix: %v, want permission denied", err)
	}
	// A certificate whose name is no user.
	nobody := client("nobody", clientv3.Config{})
	if _, err := nobody.Get(ctx, "/k"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Errorf("nobody get: %v, want permission denied", err)
	}
	// No certificate: the TLS handshake fails, and the client waits.
	none := client("", clientv3.Config{})
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if _, err := none.Get(sctx, "/k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("no client certificate: %v, want a timeout", err)
	}

	certFile, keyFile, err := c.CertFiles("reader")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{c.CAFile(), certFile, keyFile} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want mode 0600", f, fi.Mode(), err)
		}
	}
	tc, err := (transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: c.CAFile()}).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	fromFiles, err := c.NewClient(clientv3.Config{TLS: tc})
	if err != nil {
		t.Fatal(err)
	}
	defer fromFiles.Close()
	if _, err := fromFiles.Get(ctx, "/k"); err != nil {
		t.Errorf("reader from files: %v", err)
	}
}

// TestClusterAuthOnly: authentication without TLS, by password.
func TestClusterAuthOnly(t *testing.T) {
	c := NewWith(t, 1, Options{Auth: true})
	if _, _, err := c.CertFiles("x"); err == nil {
		t.Error("CertFiles without TLS: no error")
	}
	_, ctx := rootPut(t, c)
	anon, err := c.NewClient(clientv3.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Get(ctx, "/k"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Errorf("no user: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	if _, err := c.NewClient(clientv3.Config{Username: "root", Password: "wrong"}); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Errorf("wrong password: %v, want %v", err, rpctypes.ErrAuthFailed)
	}
}

// rootPut returns a root client of c, which has just put a key, and a
// context for the test.
func rootPut(t *testing.T, c *Cluster) (*clientv3.Client, context.Context) {
	t.Helper()
	root, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { root.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	if _, err := root.Put(ctx, "/k", "1"); err != nil {
		t.Fatalf("root: %v", err)
	}
	return root, ctx
}
