package etcdtest

import (
	"context"
	"net/url"
	"testing"
	"time"

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

func TestStartErrors(t *testing.T) {
	if _, err := Start(t.TempDir(), 0); err == nil {
		t.Error("0 members: no error")
	}
}
