package libtlsprom_test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
	"github.com/golibtls/libtls/libtlsprom"
)

// A golibtls listener that follows a fleet's ticket key file, with its
// metrics served for Prometheus on a plain HTTP address of their own. One
// client completes a handshake, another sends plain HTTP to the TLS port;
// then the example scrapes /metrics as Prometheus would.
func ExampleNewCollector() {
	dir, err := os.MkdirTemp("", "libtlsprom-example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca, err := testcert.NewCA("example CA") // stands for the server's certificate files
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
	// The fleet's key file (tlsresume keys init, or a TicketKeyRotator).
	keyFile := filepath.Join(dir, "ticket-keys")
	set, err := libtls.CreateTicketKeyFile(keyFile)
	if err != nil {
		log.Fatal(err)
	}
	set.Zero()
	follower, err := libtls.FollowTicketKeyFile(cfg, keyFile, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer follower.Close()
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()

	// The metrics: a registry of their own, served on another address.
	reg := prometheus.NewRegistry()
	reg.MustRegister(libtlsprom.NewCollector(libtls.ListenerServer(ln), libtlsprom.WithTicketKeys(cfg, follower)))
	metrics := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer metrics.Close()

	// The server's side: each connection's handshake, then close.
	handshaken := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*libtls.Conn).Handshake()
			c.Close()
			handshaken <- struct{}{}
		}
	}()
	if c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"}); err == nil {
		<-handshaken
		c.Close()
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
		<-handshaken
		c.Close()
	}

	resp, err := http.Get(metrics.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "golibtls_") {
			fmt.Println(sc.Text())
		}
	}
	// Output:
	// golibtls_handshake_failures_total{reason="canceled"} 0
	// golibtls_handshake_failures_total{reason="not_tls"} 1
	// golibtls_handshake_failures_total{reason="other"} 0
	// golibtls_handshake_failures_total{reason="peer_closed"} 0
	// golibtls_handshake_failures_total{reason="timeout"} 0
	// golibtls_handshake_failures_total{reason="tls"} 0
	// golibtls_handshakes_total{kind="full"} 1
	// golibtls_handshakes_total{kind="resumed"} 0
	// golibtls_ticket_key_revision 1
	// golibtls_ticket_keys_in_step 1
}
