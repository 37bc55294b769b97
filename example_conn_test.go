package libtls_test

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// examplePKI is a throwaway CA with a server certificate for "localhost"
// and 127.0.0.1 and a client certificate for "client". Real programs load
// their own certificates.
type examplePKI struct {
	ca             *testcert.CA
	server, client *testcert.Leaf
}

func newExamplePKI() examplePKI {
	ca, err := testcert.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	server, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		log.Fatal(err)
	}
	client, err := ca.Issue("client")
	if err != nil {
		log.Fatal(err)
	}
	return examplePKI{ca, server, client}
}

// goEchoServer runs a crypto/tls echo server on loopback and returns its
// address.
func goEchoServer(cfg *tls.Config) (addr string, stop func()) {
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return l.Addr().String(), func() { l.Close() }
}

// A client connects to a TLS server, verifies it against its CA and
// exchanges data. The server here is Go's crypto/tls, in-process.
func ExampleDial() {
	pki := newExamplePKI()
	addr, stop := goEchoServer(&tls.Config{Certificates: []tls.Certificate{pki.server.TLS}})
	defer stop()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}

	// Dial returns after the handshake; the name verified is addr's host.
	c, err := libtls.Dial("tcp", addr, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		log.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		log.Fatal(err)
	}
	// ConnectionState has crypto/tls's form; ConnInfo libtls's own.
	st := c.ConnectionState()
	fmt.Printf("%s over %s\n", buf, tls.VersionName(st.Version))
	fmt.Println("valid for:", st.PeerCertificates[0].DNSNames, st.PeerCertificates[0].IPAddresses)
	fmt.Println("server certificate:", c.ConnInfo().PeerCertificateSubject)
	// Output:
	// hello over TLS 1.3
	// valid for: [localhost] [127.0.0.1]
	// server certificate: /CN=localhost
}

// A client sends its whole request, then CloseWrite tells the server that
// nothing more follows (close_notify) while the reply can still be read:
// here the echo server copies until that end and then closes.
func ExampleConn_CloseWrite() {
	pki := newExamplePKI()
	addr, stop := goEchoServer(&tls.Config{Certificates: []tls.Certificate{pki.server.TLS}})
	defer stop()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	c, err := libtls.Dial("tcp", addr, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("the whole request")); err != nil {
		log.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		log.Fatal(err)
	}
	reply, err := io.ReadAll(c) // up to the server's close_notify
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.Write([]byte("more"))
	fmt.Printf("%s\nwrite after CloseWrite: %v\n", reply, err)
	// Output:
	// the whole request
	// write after CloseWrite: libtls: write: the connection is shut down for writing (CloseWrite sent close_notify)
}

// Client runs TLS over any net.Conn: here one end of a net.Pipe, with a
// crypto/tls server on the other.
func ExampleClient() {
	pki := newExamplePKI()
	clientEnd, serverEnd := net.Pipe()
	go func() {
		s := tls.Server(serverEnd, &tls.Config{
			Certificates: []tls.Certificate{pki.server.TLS},
			MaxVersion:   tls.VersionTLS12,
		})
		defer s.Close()
		_, _ = io.Copy(s, s)
	}()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	c, err := libtls.Client(clientEnd, cfg, "localhost")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// The handshake runs on the first Read or Write, or here explicitly.
	if err := c.Handshake(); err != nil {
		log.Fatal(err)
	}
	st := c.ConnInfo()
	fmt.Println(st.Version, st.ServerName, st.HandshakeComplete)
	// Output:
	// TLSv1.2 localhost true
}

// A server accepts TLS connections with Listen; crypto/tls is the client.
// Accept returns *libtls.Conn values whose handshake runs on the first
// Read or Write.
func ExampleListen() {
	pki := newExamplePKI()
	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetKeypair(pki.server.CertPEM, pki.server.KeyPEM); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetALPN("echo/1"); err != nil {
		log.Fatal(err)
	}
	l, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	seen := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			log.Fatal(err)
		}
		st := c.(*libtls.Conn).ConnInfo()
		seen <- fmt.Sprintf("server got %q for %s over %s, protocol %s", buf, st.ServerName, st.Version, st.NegotiatedProtocol)
		_, _ = c.Write(buf)
	}()

	roots := pki.ca.Pool
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"echo/1"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(<-seen)
	reply, err := io.ReadAll(io.LimitReader(c, 5))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("client got %q\n", reply)
	// Output:
	// server got "hello" for localhost over TLSv1.3, protocol echo/1
	// client got "hello"
}

// A Server is one configured libtls server context; Accept wraps each
// connection in a Conn of it. Here both ends are golibtls, over net.Pipe,
// and the server requires a client certificate.
func ExampleNewServer() {
	pki := newExamplePKI()
	scfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer scfg.Close()
	if err := scfg.SetKeypair(pki.server.CertPEM, pki.server.KeyPEM); err != nil {
		log.Fatal(err)
	}
	if err := scfg.SetCA(pki.ca.CertPEM); err != nil { // to verify clients
		log.Fatal(err)
	}
	if err := scfg.VerifyClient(); err != nil {
		log.Fatal(err)
	}
	srv, err := libtls.NewServer(scfg)
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Close()

	ccfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer ccfg.Close()
	if err := ccfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	if err := ccfg.SetKeypair(pki.client.CertPEM, pki.client.KeyPEM); err != nil {
		log.Fatal(err)
	}

	clientEnd, serverEnd := net.Pipe()
	sc, err := srv.Accept(serverEnd)
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	done := make(chan libtls.ConnInfo)
	go func() {
		if err := sc.Handshake(); err != nil {
			log.Fatal(err)
		}
		done <- sc.ConnInfo()
		// Read until the client's close_notify (io.EOF). Over net.Pipe
		// a write completes only when the other end reads, so Close,
		// like crypto/tls's, would otherwise wait up to 5s to send it.
		_, _ = io.Copy(io.Discard, sc)
	}()

	cc, err := libtls.Client(clientEnd, ccfg, "localhost")
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	if err := cc.Handshake(); err != nil {
		log.Fatal(err)
	}
	st := <-done
	fmt.Println("server sees client:", st.PeerCertificateSubject)
	fmt.Println("client sees server:", cc.ConnInfo().PeerCertificateSubject)
	// Output:
	// server sees client: /CN=client
	// client sees server: /CN=localhost
}

// A client resumes its TLS 1.2 session from a session file: the second
// connection skips the full handshake. The server is an in-process
// crypto/tls server, which issues session tickets; every libtls backend
// resumes against it.
func ExampleConfig_SetSessionFile_resumption() {
	pki := newExamplePKI()
	addr, stop := goEchoServer(&tls.Config{
		Certificates: []tls.Certificate{pki.server.TLS},
		MaxVersion:   tls.VersionTLS12, // libtls resumes TLS 1.2 sessions only
	})
	defer stop()

	dir, err := os.MkdirTemp("", "golibtls-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// A regular file of the user, mode 0600, open for reading and writing.
	f, err := os.OpenFile(filepath.Join(dir, "session.pem"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close() // after the Config: defers run in reverse order

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pki.ca.CertPEM); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetSessionFile(f); err != nil {
		log.Fatal(err)
	}

	for i := 1; i <= 2; i++ {
		c, err := libtls.Dial("tcp", addr, cfg)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("connection %d: %s, resumed %v\n", i, c.ConnInfo().Version, c.SessionResumed())
		c.Close()
	}
	// Output:
	// connection 1: TLSv1.2, resumed false
	// connection 2: TLSv1.2, resumed true
}

// A Dialer plugs golibtls into net/http as the transport's TLS dialer.
// Here it calls an httptest TLS server, trusting that server's certificate.
func ExampleDialer_DialContext() {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello over %s", tls.VersionName(r.TLS.Version))
	}))
	defer ts.Close()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})
	if err := cfg.SetCA(caPEM); err != nil {
		log.Fatal(err)
	}
	tr := &http.Transport{DialTLSContext: (&libtls.Dialer{Config: cfg}).DialContext}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	resp, err := client.Get(ts.URL)
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Status, string(body))
	// Output:
	// 200 OK hello over TLS 1.3
}
