package etcdkeys_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
	"github.com/golibtls/libtls/internal/testcert"
)

// exampleCluster starts a one-member etcd on loopback for the examples;
// a real fleet connects to its own cluster (clientv3.New with its
// endpoints, TLS and credentials).
func exampleCluster() (*etcdtest.Cluster, *clientv3.Client, func()) {
	dir, err := os.MkdirTemp("", "etcdkeys-example-")
	if err != nil {
		log.Fatal(err)
	}
	c, err := etcdtest.Start(dir, 1)
	if err != nil {
		log.Fatal(err)
	}
	cli, err := c.Client()
	if err != nil {
		log.Fatal(err)
	}
	return c, cli, func() { cli.Close(); c.Close(); os.RemoveAll(dir) }
}

// A Rotator keeps the fleet's ticket keys in etcd. Run one on two or three
// machines: they elect a leader, which rotates the set; the others take
// over when it stops.
func ExampleRotator() {
	_, cli, done := exampleCluster()
	defer done()

	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdkeys.Rotator{
		Client:   cli,
		Key:      "/fleet/ticket-keys",
		Lifetime: 2 * time.Hour, // the servers' SetSessionLifetime
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()

	// The leader creates the set at once; it adds a key every 90 minutes
	// (3/4 of the lifetime) and keeps the newest four.
	for i := 0; i < 1000; i++ {
		resp, err := cli.Get(ctx, "/fleet/ticket-keys")
		if err == nil && len(resp.Kvs) == 1 {
			var set libtls.TicketKeySet
			err := set.UnmarshalText(resp.Kvs[0].Value)
			clear(resp.Kvs[0].Value) // the keys, in hex
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("session ID: %d bytes, keys: %d\n", len(set.SessionID), len(set.Keys))
			set.Zero()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // resigns: another Rotator would take over at once
	fmt.Println(<-stopped)
	// Output:
	// session ID: 32 bytes, keys: 1
	// context canceled
}

// Every server follows the key: the stored set is applied before the
// server is created, then every rotation as etcd reports it.
func ExampleFollow() {
	_, cli, done := exampleCluster()
	defer done()

	// A set in etcd, as a Rotator stores it.
	set, err := libtls.NewTicketKeySet()
	if err != nil {
		log.Fatal(err)
	}
	text, err := set.MarshalText()
	set.Zero()
	if err != nil {
		log.Fatal(err)
	}
	_, err = cli.Put(context.Background(), "/fleet/ticket-keys", string(text))
	clear(text)
	if err != nil {
		log.Fatal(err)
	}

	ca, err := testcert.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue("localhost")
	if err != nil {
		log.Fatal(err)
	}
	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetKeypair(leaf.CertPEM, leaf.KeyPEM); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetSessionLifetime(2 * time.Hour); err != nil {
		log.Fatal(err)
	}

	// Before Listen: libtls copies the session ID into the server.
	f, err := etcdkeys.Follow(cfg, cli, "/fleet/ticket-keys")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close() // before cfg.Close
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	fmt.Println("ticket key revisions:", cfg.TicketKeyRevisions(), "error:", f.Err())
	// Output:
	// ticket key revisions: [1] error: <nil>
}

// With a KEK, the Rotators seal the set they store and the servers unseal
// it: etcd, its backups and the key's history hold no ticket key in clear.
// Every Rotator and server of the key reads the same KEK file (32 random
// bytes, mode 0600).
func ExampleFollowConfig() {
	_, cli, done := exampleCluster()
	defer done()

	dir, err := os.MkdirTemp("", "etcdkeys-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	key := make([]byte, etcdkeys.KEKSize)
	if _, err := rand.Read(key); err != nil {
		log.Fatal(err)
	}
	kekFile := filepath.Join(dir, "kek")
	err = os.WriteFile(kekFile, key, 0o600)
	clear(key)
	if err != nil {
		log.Fatal(err)
	}
	kek, err := etcdkeys.ReadKEKFile(kekFile)
	if err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	r := &etcdkeys.Rotator{Client: cli, Key: "/fleet/ticket-keys", Lifetime: 2 * time.Hour, KEK: kek}
	if err := r.Check(ctx); err != nil { // permissions, and a set it can read
		log.Fatal(err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.Run(ctx) }()
	defer func() { cancel(); <-stopped }()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetSessionLifetime(2 * time.Hour); err != nil {
		log.Fatal(err)
	}
	fc := &etcdkeys.FollowConfig{KEK: kek}
	for i := 0; i < 1000; i++ { // until the Rotator has stored the set
		f, err := fc.Follow(cfg, cli, "/fleet/ticket-keys")
		if err == nil {
			defer f.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, err := cli.Get(ctx, "/fleet/ticket-keys")
	if err != nil {
		log.Fatal(err)
	}
	stored := string(resp.Kvs[0].Value)
	fmt.Println(strings.SplitN(stored, "\n", 2)[0])
	fmt.Println("ticket key revisions:", cfg.TicketKeyRevisions())
	// Output:
	// golibtls-sealed-ticket-keys 1
	// ticket key revisions: [1]
}
