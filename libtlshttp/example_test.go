package libtlshttp_test

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
	"github.com/golibtls/libtls/libtlshttp"
)

// Serve runs an http.Server on a golibtls listener, with HTTP/2 when the
// client agrees to it. Here the client is Go's own (crypto/tls).
func ExampleServe() {
	ca, err := testcert.NewCA("example CA")
	if err != nil {
		log.Fatal(err)
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
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
	if err := cfg.SetALPN("h2", "http/1.1"); err != nil { // offer HTTP/2
		log.Fatal(err)
	}
	ln, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s over %s", r.Proto, tls.VersionName(r.TLS.Version))
		}),
	}
	served := make(chan error, 1)
	go func() { served <- libtlshttp.Serve(srv, ln) }()

	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(body))

	tr.CloseIdleConnections() // else Shutdown's GOAWAY waits a second for the client
	if err := srv.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	fmt.Println("handshakes:", libtls.ListenerServer(ln).Stats().Handshakes)
	// Output:
	// HTTP/2.0 over TLS 1.3
	// handshakes: 1
}

// NewTransport makes an http.Client whose connections are golibtls ones,
// resuming TLS 1.2 sessions per server. Here it calls an httptest server
// (crypto/tls) limited to TLS 1.2, which issues session tickets.
func ExampleNewTransport() {
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s, resumed %v", r.Proto, r.TLS.DidResume)
	}))
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{MaxVersion: tls.VersionTLS12}
	ts.StartTLS()
	defer ts.Close()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw})); err != nil {
		log.Fatal(err)
	}
	tr := libtlshttp.NewTransport(cfg)
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	for range 2 {
		resp, err := client.Get(ts.URL)
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("%s (client: resumed %v)\n", body, resp.TLS.DidResume)
		tr.CloseIdleConnections() // the next request dials again
	}
	// Output:
	// HTTP/2.0, resumed false (client: resumed false)
	// HTTP/2.0, resumed true (client: resumed true)
}
