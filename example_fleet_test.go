package libtls_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// The rotator's side of a fleet: one process keeps the key file, adding a
// key every 3/4 of the session lifetime and keeping the newest four. In a
// daemon, run a TicketKeyRotator instead of calling RotateTicketKeyFile.
func ExampleTicketKeySet() {
	dir, err := os.MkdirTemp("", "fleet")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ticket-keys")
	const lifetime = time.Hour // the servers' SetSessionLifetime

	// The first run creates the file: a random session ID and key rev 1.
	set, changed, err := libtls.RotateTicketKeyFile(path, lifetime)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("created:", changed, fleetRevisions(set))
	set.Zero()

	// Nothing is due yet.
	set, changed, err = libtls.RotateTicketKeyFile(path, lifetime)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rotated:", changed, fleetRevisions(set))

	// Five rotations later (a clock moved by hand): the newest four remain.
	now := set.Keys[0].Created
	for range 5 {
		now = now.Add(lifetime)
		set.Rotate(now, lifetime)
	}
	fmt.Println("five rotations later:", fleetRevisions(set))
	if err := libtls.WriteTicketKeyFile(path, set); err != nil {
		log.Fatal(err)
	}
	set.Zero()

	fi, err := os.Stat(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("mode:", fi.Mode())
	// Output:
	// created: true [1]
	// rotated: false [1]
	// five rotations later: [3 4 5 6]
	// mode: -rw-------
}

func fleetRevisions(set *libtls.TicketKeySet) []uint32 {
	var revs []uint32
	for _, k := range set.Keys {
		revs = append(revs, k.Rev)
	}
	return revs
}

// Every server process of a fleet follows the key file, so that all of them
// share the session ID and ticket keys and resume each other's TLS 1.2
// sessions. That works on LibreSSL; on LibreTLS the keys are applied the
// same way but servers never resume (Backend().ServerSessionResumption).
func ExampleFollowTicketKeyFile() {
	dir, err := os.MkdirTemp("", "fleet")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ticket-keys")
	// The rotator made the file (see the TicketKeySet example).
	set, _, err := libtls.RotateTicketKeyFile(path, time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	set.Zero()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	certPEM, keyPEM := fleetServerKeypair()
	if err := cfg.SetKeypair(certPEM, keyPEM); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetSessionLifetime(time.Hour); err != nil {
		log.Fatal(err)
	}
	// Follow before Listen: libtls copies the session ID into the server
	// when it is created. Keys reach the running server as they come.
	follower, err := libtls.FollowTicketKeyFile(cfg, path, 100*time.Millisecond)
	if err != nil {
		log.Fatal(err)
	}
	defer follower.Close() // before cfg.Close
	l, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	fmt.Println("keys:", cfg.TicketKeyRevisions())

	// The rotator adds rev 2 (forced here by a clock an hour ahead).
	set, err = libtls.ReadTicketKeyFile(path)
	if err != nil {
		log.Fatal(err)
	}
	set.Rotate(time.Now().Add(time.Hour), time.Hour)
	if err := libtls.WriteTicketKeyFile(path, set); err != nil {
		log.Fatal(err)
	}
	set.Zero()
	for i := 0; i < 100 && len(cfg.TicketKeyRevisions()) < 2; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Println("keys:", cfg.TicketKeyRevisions(), "follower error:", follower.Err())
	// Output:
	// keys: [1]
	// keys: [2 1] follower error: <nil>
}

// fleetServerKeypair stands for loading the server's certificate and key.
func fleetServerKeypair() (certPEM, keyPEM []byte) {
	ca, err := testcert.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue("localhost")
	if err != nil {
		log.Fatal(err)
	}
	return leaf.CertPEM, leaf.KeyPEM
}
