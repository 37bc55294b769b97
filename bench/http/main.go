// Command http is the Go end of scripts/bench-http (BENCHMARKS.md): an HTTPS
// server with one tiny handler, over golibtls (libtlshttp.Serve) or over
// crypto/tls (net/http's own), for h2load to load; and a client that makes
// one new, resumed TLS 1.2 connection per request, through
// libtlshttp.Transport or through net/http's Transport with an LRU session
// cache.
//
//	http serve -impl golibtls|gotls -cert cert.pem -key key.pem [-addr 127.0.0.1:0]
//	     [-tls12] [-h1] [-xnet] [-cpuprofile FILE]
//	http newconn -impl golibtls|gotls -ca ca.pem -url https://127.0.0.1:PORT/ [-d 5s] [-c 1]
//	     [-cpuprofile FILE]
//	http report DIR
//
// serve prints "listening ADDR" once it accepts connections and runs until
// SIGTERM or SIGINT; then it writes the CPU profile if asked. The handler answers every request with "hello\n" (6
// bytes, text/plain), the same on both implementations. -tls12 limits the
// server to TLS 1.2 (so that libtls clients can resume), -h1 offers only
// http/1.1 by ALPN, -xnet serves HTTP/2 over crypto/tls with
// golang.org/x/net/http2, the HTTP/2 server libtlshttp uses, rather than
// net/http's bundled copy (to tell the HTTP/2 servers' difference from the
// TLS libraries').
//
// newconn sends GET requests from -c goroutines for -d, each on a new
// connection (Request.Close), after one untimed request that fills the
// session cache, and prints a Go benchmark line: requests/s, the CPU time
// per request of the process (cpu-ns/req) and the fraction of resumed
// handshakes (resumed/req).
//
// report reads the results scripts/bench-http kept in DIR and prints the
// tables and issue 20's targets (report.go).
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/libtlshttp"
	"golang.org/x/net/http2"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("http: ")
	if len(os.Args) < 2 {
		log.Fatal("usage: http serve|newconn|report [flags]")
	}
	switch os.Args[1] {
	case "serve":
		serve(os.Args[2:])
	case "newconn":
		newconn(os.Args[2:])
	case "report":
		if len(os.Args) != 3 {
			log.Fatal("usage: http report DIR")
		}
		check(report(os.Stdout, os.Args[2]))
	default:
		log.Fatalf("unknown command %q (serve, newconn, report)", os.Args[1])
	}
}

var hello = []byte("hello\n")

// handler is the handler of both servers: as little work as a handler can
// do, so that the TLS and HTTP stacks are what is measured.
func handler(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain"}
	_, _ = w.Write(hello)
}

func serve(args []string) {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	impl := fs.String("impl", "golibtls", "golibtls or gotls")
	cert := fs.String("cert", "", "certificate PEM file")
	key := fs.String("key", "", "key PEM file")
	addr := fs.String("addr", "127.0.0.1:0", "address to listen on")
	tls12 := fs.Bool("tls12", false, "TLS 1.2 only")
	h1 := fs.Bool("h1", false, "offer only http/1.1")
	xnet := fs.Bool("xnet", false, "gotls: serve HTTP/2 with golang.org/x/net/http2 (as libtlshttp does), not net/http's own")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to FILE")
	_ = fs.Parse(args)
	protos := []string{"h2", "http/1.1"}
	if *h1 {
		protos = protos[1:]
	}
	srv := &http.Server{Handler: http.HandlerFunc(handler), ErrorLog: log.New(io.Discard, "", 0)}
	var ln net.Listener
	var run func() error
	switch *impl {
	case "golibtls":
		cfg, err := libtls.NewConfig()
		check(err)
		check(cfg.SetKeypairFile(*cert, *key))
		check(cfg.SetALPN(protos...))
		if *tls12 {
			check(cfg.SetProtocols(libtls.ProtocolTLSv1_2))
			check(cfg.SetSessionLifetime(time.Hour))
		}
		l, err := libtls.Listen("tcp", *addr, cfg)
		check(err)
		ln = l
		run = func() error { return libtlshttp.Serve(srv, l) }
	case "gotls":
		c, err := tls.LoadX509KeyPair(*cert, *key)
		check(err)
		tc := &tls.Config{Certificates: []tls.Certificate{c}, NextProtos: protos}
		if *tls12 {
			tc.MaxVersion = tls.VersionTLS12
		}
		srv.TLSConfig = tc
		if *xnet {
			//lint:ignore SA1019 -xnet measures x/net's HTTP/2 server, the one libtlshttp.Serve uses.
			check(http2.ConfigureServer(srv, &http2.Server{}))
		}
		// No TCP keep-alive, as libtls.Listen: the same socket calls.
		lc := net.ListenConfig{KeepAlive: -1}
		l, err := lc.Listen(context.Background(), "tcp", *addr)
		check(err)
		ln = l
		run = func() error { return srv.ServeTLS(l, "", "") }
	default:
		log.Fatalf("-impl %q: golibtls or gotls", *impl)
	}
	defer startCPUProfile(*cpuprofile)()
	errc := make(chan error, 1)
	go func() { errc <- run() }()
	fmt.Printf("listening %s\n", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-errc:
		log.Fatal(err)
	case <-ctx.Done():
	}
	_ = srv.Close()
}

func newconn(args []string) {
	fs := flag.NewFlagSet("newconn", flag.ExitOnError)
	impl := fs.String("impl", "golibtls", "golibtls or gotls")
	ca := fs.String("ca", "", "CA PEM file")
	url := fs.String("url", "", "https URL to GET")
	d := fs.Duration("d", 5*time.Second, "how long to send requests")
	clients := fs.Int("c", 1, "concurrent clients")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the timed requests to FILE")
	_ = fs.Parse(args)
	caPEM, err := os.ReadFile(*ca)
	check(err)
	var client *http.Client
	var resumed func(*http.Response) bool
	switch *impl {
	case "golibtls":
		cfg, err := libtls.NewConfig()
		check(err)
		check(cfg.SetCA(caPEM))
		tr := libtlshttp.NewTransport(cfg)
		tr.DisableHTTP2 = true
		tr.DialContext = (&net.Dialer{KeepAlive: -1}).DialContext
		client = &http.Client{Transport: tr}
	case "gotls":
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			log.Fatal("no certificate in -ca")
		}
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{
				RootCAs:            pool,
				ClientSessionCache: tls.NewLRUClientSessionCache(0),
			},
			DialContext: (&net.Dialer{KeepAlive: -1}).DialContext,
		}
		client = &http.Client{Transport: tr}
	default:
		log.Fatalf("-impl %q: golibtls or gotls", *impl)
	}
	resumed = func(r *http.Response) bool { return r.TLS != nil && r.TLS.DidResume }
	get := func() (bool, error) {
		req, err := http.NewRequest(http.MethodGet, *url, nil)
		if err != nil {
			return false, err
		}
		req.Close = true
		resp, err := client.Do(req)
		if err != nil {
			return false, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != http.StatusOK {
			err = errors.New(resp.Status)
		}
		return resumed(resp), err
	}
	if _, err := get(); err != nil {
		log.Fatal(err)
	}
	defer startCPUProfile(*cpuprofile)()
	var n, nres atomic.Int64
	var failed atomic.Pointer[error]
	cpu0 := cpuTime()
	start := time.Now()
	deadline := start.Add(*d)
	var wg sync.WaitGroup
	for range *clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && failed.Load() == nil {
				r, err := get()
				if err != nil {
					failed.Store(&err)
					return
				}
				n.Add(1)
				if r {
					nres.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := cpuTime() - cpu0
	if e := failed.Load(); e != nil {
		log.Print(*e)
		return
	}
	fmt.Printf("BenchmarkNewConn/%s/clients=%d\t%d\t%.0f req/s\t%.0f cpu-ns/req\t%.3f resumed/req\n",
		*impl, *clients, n.Load(), float64(n.Load())/secs, float64(cpu.Nanoseconds())/float64(n.Load()),
		float64(nres.Load())/float64(n.Load()))
}

// startCPUProfile starts a CPU profile into path (none if empty) and
// returns what stops it.
func startCPUProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	check(err)
	check(pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
