package libtls_test

import (
	"crypto/tls"
	"fmt"
	"log"

	"github.com/golibtls/libtls"
)

// A client that talks to several servers keeps one session per server in a
// SessionCache (in memory here; NewDirSessionCache keeps them across
// restarts), and resumes with each. The servers are Go's crypto/tls,
// in-process, each with ticket keys of its own.
func ExampleConfig_SetSessionCache() {
	pki := newExamplePKI()
	var addrs []string
	for range 2 {
		addr, stop := goEchoServer(&tls.Config{
			Certificates: []tls.Certificate{pki.server.TLS},
			MaxVersion:   tls.VersionTLS12, // libtls resumes TLS 1.2 sessions only
		})
		defer stop()
		addrs = append(addrs, addr)
	}

	cache := libtls.NewMemorySessionCache(0)
	defer cache.Close() // after the Config: defers run in reverse order
	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetSessionCache(cache); err != nil {
		log.Fatal(err)
	}

	for round := 1; round <= 2; round++ {
		for i, addr := range addrs {
			c, err := libtls.Dial("tcp", addr, cfg)
			if err != nil {
				log.Fatal(err)
			}
			fmt.Printf("round %d, server %d: resumed %v\n", round, i+1, c.SessionResumed())
			c.Close()
		}
	}
	// Output:
	// round 1, server 1: resumed false
	// round 1, server 2: resumed false
	// round 2, server 1: resumed true
	// round 2, server 2: resumed true
}

// The servers of a fleet share ticket keys and listen at several addresses
// under one name. By default a client offers a session only to the address
// it came from; with SessionPerServerName (as crypto/tls keys its session
// cache) a session made with one server resumes with the others. The
// servers are Go's crypto/tls, in-process, with one ticket key.
func ExampleConfig_SetSessionScope() {
	pki := newExamplePKI()
	var key [32]byte
	copy(key[:], "the fleet's ticket key, 32 bytes")
	var addrs []string
	for range 2 {
		srv := &tls.Config{
			Certificates: []tls.Certificate{pki.server.TLS},
			MaxVersion:   tls.VersionTLS12, // libtls resumes TLS 1.2 sessions only
		}
		srv.SetSessionTicketKeys([][32]byte{key})
		addr, stop := goEchoServer(srv)
		defer stop()
		addrs = append(addrs, addr)
	}

	for _, scope := range []libtls.SessionScope{libtls.SessionPerAddress, libtls.SessionPerServerName} {
		cache := libtls.NewMemorySessionCache(0)
		cfg, err := libtls.NewConfig()
		if err != nil {
			log.Fatal(err)
		}
		if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
			log.Fatal(err)
		}
		if err := cfg.SetSessionCache(cache); err != nil {
			log.Fatal(err)
		}
		if err := cfg.SetSessionScope(scope); err != nil {
			log.Fatal(err)
		}
		var resumed []bool
		for _, addr := range []string{addrs[0], addrs[1], addrs[0]} {
			d := &libtls.Dialer{Config: cfg, ServerName: "localhost"}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				log.Fatal(err)
			}
			resumed = append(resumed, c.(*libtls.Conn).SessionResumed())
			c.Close()
		}
		fmt.Println(resumed)
		cfg.Close()
		cache.Close()
	}
	// Output:
	// [false false true]
	// [false true true]
}
