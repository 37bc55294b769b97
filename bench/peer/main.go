// Command peer is the Go end of scripts/bench's two-process scenarios: a
// server or a client speaking the peer protocol of the C harness
// (bench/c/bench.c, -serve and -connect), with golibtls (through its public
// API only) or with crypto/tls. See BENCHMARKS.md.
//
//	peer -impl golibtls -cert cert.pem -key key.pem -serve [-clients 1,8] [-timeout 1h]
//	peer -impl golibtls -ca ca.pem -connect 127.0.0.1:PORT [-benchtime 1s]
//	     [-bulk 1GiB] [-clients 1,8] [-run REGEX] [-sessions file|cache]
//
// -serve listens on loopback with one server per scenario, prints "control
// 127.0.0.1:PORT", and answers on that plain TCP control port: "ports" with
// "ports NAME=PORT ...", "cpu" with "cpu USER_NS SYS_NS" (its getrusage),
// and exits on "quit" or after -timeout. The handshake services serve one
// connection at a time (scaling: each in its own goroutine): handshake, one
// byte in, the byte back, close. The bulk service reads an 8-byte
// big-endian count and that many bytes (with a 16 KiB buffer), and answers
// one byte, until the client closes.
//
// -connect runs the client side of the Handshake, Bulk and
// Scaling/handshakes scenarios against such a server, C or Go, and prints
// Go benchmark lines with the rate and the CPU time per op of both
// processes (cpu-ns/op) and of each (srv-cpu-ns/op, cli-cpu-ns/op; bulk per
// byte: cpu-ns/B, srv-cpu-ns/B, cli-cpu-ns/B). Like the C harness it runs
// every scenario for -benchtime after one untimed handshake.
//
// -bulk and -clients default to GOLIBTLS_BENCH_BULK and
// GOLIBTLS_BENCH_CLIENTS, like the other harnesses.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/benchenv"
)

const (
	serverName = "localhost"
	readBuf    = 16 << 10
)

// service is one server of -serve, named as the C harness names it.
type service struct {
	name       string
	proto      libtls.Protocol
	goVersion  uint16 // 0: crypto/tls's defaults
	resume     bool   // server: session tickets; client: a session store
	bulk       bool   // the bulk peer, not the handshake one
	concurrent bool   // serve each connection in its own goroutine
}

var services = []service{
	{name: "full/tls12", proto: libtls.ProtocolTLSv1_2, goVersion: tls.VersionTLS12},
	{name: "full/tls13", proto: libtls.ProtocolTLSv1_3, goVersion: tls.VersionTLS13},
	{name: "resumed/tls12", proto: libtls.ProtocolTLSv1_2, goVersion: tls.VersionTLS12, resume: true},
	{name: "resumed/tls13", proto: libtls.ProtocolTLSv1_3, goVersion: tls.VersionTLS13, resume: true},
	{name: "scaling", proto: libtls.ProtocolsDefault, concurrent: true},
	{name: "bulk", proto: libtls.ProtocolsDefault, bulk: true},
}

func serviceNamed(name string) service {
	for _, s := range services {
		if s.name == name {
			return s
		}
	}
	panic("no service " + name)
}

// conn is an established TLS connection of either implementation.
type conn interface {
	net.Conn
	Handshake() error
	Resumed() bool
}

// wrap makes a TLS connection over an established TCP connection.
type wrap func(nc net.Conn) (conn, error)

// impl is golibtls or crypto/tls.
type impl interface {
	server(svc service, certPEM, keyPEM []byte) (wrap, error)
	// client's cleanup undoes what it set up (configs, session files).
	client(svc service, caPEM []byte) (w wrap, cleanup func(), err error)
}

// --- golibtls ---------------------------------------------------------------------

// golibtls's clients keep sessions in a session file, or (cache) in a
// memory SessionCache, as libtlshttp.Transport does.
type golibtls struct{ cache bool }

type libConn struct{ *libtls.Conn }

func (c libConn) Resumed() bool { return c.SessionResumed() }

func (golibtls) server(svc service, certPEM, keyPEM []byte) (wrap, error) {
	cfg, err := libtls.NewConfig()
	if err != nil {
		return nil, err
	}
	if err := cfg.SetKeypair(certPEM, keyPEM); err != nil {
		return nil, err
	}
	if err := cfg.SetProtocols(svc.proto); err != nil {
		return nil, err
	}
	if svc.resume {
		if err := cfg.SetSessionLifetime(time.Hour); err != nil {
			return nil, err
		}
	}
	srv, err := libtls.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	return func(nc net.Conn) (conn, error) {
		c, err := srv.Accept(nc)
		if err != nil {
			return nil, err
		}
		return libConn{c}, nil
	}, nil
}

func (g golibtls) client(svc service, caPEM []byte) (wrap, func(), error) {
	cfg, err := libtls.NewConfig()
	if err != nil {
		return nil, nil, err
	}
	var f *os.File
	cleanup := func() {
		cfg.Close()
		if f != nil {
			f.Close()
		}
	}
	fail := func(err error) (wrap, func(), error) { cleanup(); return nil, nil, err }
	if err := cfg.SetCA(caPEM); err != nil {
		return fail(err)
	}
	if err := cfg.SetProtocols(svc.proto); err != nil {
		return fail(err)
	}
	if svc.resume && g.cache {
		if err := cfg.SetSessionCache(libtls.NewMemorySessionCache(16)); err != nil {
			return fail(err)
		}
	} else if svc.resume {
		// A fresh 0600 session file, unlinked at once: only the
		// descriptor is needed.
		if f, err = os.CreateTemp("", "golibtls-peer-session-*"); err != nil {
			return fail(err)
		}
		os.Remove(f.Name())
		if err := f.Chmod(0o600); err != nil {
			return fail(err)
		}
		if err := cfg.SetSessionFile(f); err != nil {
			return fail(err)
		}
	}
	return func(nc net.Conn) (conn, error) {
		c, err := libtls.Client(nc, cfg, serverName)
		if err != nil {
			return nil, err
		}
		return libConn{c}, nil
	}, cleanup, nil
}

// --- crypto/tls -------------------------------------------------------------------

type gotls struct{}

type goConn struct{ *tls.Conn }

func (c goConn) Resumed() bool { return c.ConnectionState().DidResume }

func (gotls) server(svc service, certPEM, keyPEM []byte) (wrap, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             svc.goVersion,
		MaxVersion:             svc.goVersion,
		SessionTicketsDisabled: !svc.resume,
	}
	return func(nc net.Conn) (conn, error) { return goConn{tls.Server(nc, cfg)}, nil }, nil
}

func (gotls) client(svc service, caPEM []byte) (wrap, func(), error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, errors.New("no CA certificate in the -ca file")
	}
	cfg := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: svc.goVersion, MaxVersion: svc.goVersion}
	if svc.resume {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(1)
	}
	return func(nc net.Conn) (conn, error) { return goConn{tls.Client(nc, cfg)}, nil }, func() {}, nil
}

// --- the server ---------------------------------------------------------------------

// handshakePeer: handshake, one byte in, the byte back, close.
func handshakePeer(c conn) error {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return err
	}
	var one [1]byte
	if _, err := io.ReadFull(c, one[:]); err != nil {
		return err
	}
	_, err := c.Write(one[:])
	return err
}

// bulkPeer: per op, a count, that many bytes, one byte back; until EOF.
func bulkPeer(c conn) error {
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return err
	}
	buf := make([]byte, readBuf)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		total := int64(binary.BigEndian.Uint64(hdr[:]))
		for got := int64(0); got < total; {
			n, err := c.Read(buf[:min(int64(len(buf)), total-got)])
			got += int64(n)
			if err != nil && got < total {
				return err
			}
		}
		if _, err := c.Write(hdr[:1]); err != nil {
			return err
		}
	}
}

func serve(im impl, certPEM, keyPEM []byte, timeout time.Duration) error {
	var ports []string
	for _, svc := range services {
		w, err := im.server(svc, certPEM, keyPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", svc.name, err)
		}
		l, err := benchenv.ListenLoopback()
		if err != nil {
			return err
		}
		ports = append(ports, fmt.Sprintf("%s=%d", svc.name, l.Addr().(*net.TCPAddr).Port))
		peer := handshakePeer
		if svc.bulk {
			peer = bulkPeer
		}
		handle := func(nc net.Conn) {
			c, err := w(nc)
			if err == nil {
				err = peer(c)
			} else {
				nc.Close()
			}
			if err != nil {
				log.Printf("%s: %v", svc.name, err)
			}
		}
		go func() {
			for {
				nc, err := l.Accept()
				if err != nil {
					log.Fatalf("%s: accept: %v", svc.name, err)
				}
				if svc.concurrent || svc.bulk {
					go handle(nc)
				} else {
					handle(nc)
				}
			}
		}()
	}
	cl, err := benchenv.ListenLoopback()
	if err != nil {
		return err
	}
	if timeout > 0 {
		time.AfterFunc(timeout, func() {
			log.Printf("-timeout %v reached", timeout)
			os.Exit(2)
		})
	}
	fmt.Printf("control %s\n", cl.Addr())
	for {
		nc, err := cl.Accept()
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(nc)
		for sc.Scan() {
			var reply string
			switch cmd := strings.TrimSpace(sc.Text()); cmd {
			case "cpu":
				c := benchenv.CPUNow()
				reply = fmt.Sprintf("cpu %d %d", c.User.Nanoseconds(), c.Sys.Nanoseconds())
			case "ports":
				reply = "ports " + strings.Join(ports, " ")
			case "quit":
				os.Exit(0)
			default:
				reply = "error unknown command " + cmd
			}
			if _, err := io.WriteString(nc, reply+"\n"); err != nil {
				break
			}
		}
		nc.Close()
	}
}

// --- the client ---------------------------------------------------------------------

// control is the -connect side of the control connection.
type control struct {
	nc    net.Conn
	in    *bufio.Reader
	host  string
	ports map[string]string
}

func dialControl(addr string) (*control, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	nc, err := benchenv.Dial(addr)
	if err != nil {
		return nil, err
	}
	ctl := &control{nc: nc, in: bufio.NewReader(nc), host: host, ports: map[string]string{}}
	reply, err := ctl.ask("ports")
	if err != nil {
		return nil, err
	}
	f := strings.Fields(reply)
	if len(f) == 0 || f[0] != "ports" {
		return nil, fmt.Errorf("bad ports reply %q", reply)
	}
	for _, kv := range f[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("bad ports reply %q", reply)
		}
		ctl.ports[k] = v
	}
	return ctl, nil
}

func (ctl *control) ask(cmd string) (string, error) {
	if _, err := io.WriteString(ctl.nc, cmd+"\n"); err != nil {
		return "", err
	}
	line, err := ctl.in.ReadString('\n')
	return strings.TrimSpace(line), err
}

func (ctl *control) addr(svc string) string {
	p, ok := ctl.ports[svc]
	if !ok {
		log.Fatalf("the server has no service %s", svc)
	}
	return net.JoinHostPort(ctl.host, p)
}

// cpu is the server's CPU time.
func (ctl *control) cpu() benchenv.CPU {
	reply, err := ctl.ask("cpu")
	var u, s int64
	if err == nil {
		_, err = fmt.Sscanf(reply, "cpu %d %d", &u, &s)
	}
	if err != nil {
		log.Fatalf("cpu from the server: %v (%q)", err, reply)
	}
	return benchenv.CPU{User: time.Duration(u), Sys: time.Duration(s)}
}

type client struct {
	im        impl
	caPEM     []byte
	ctl       *control
	benchtime time.Duration
	bulk      int64
	run       *regexp.Regexp
}

type metric struct {
	v    float64
	unit string
}

// cpuMetrics: CPU per op of both processes and of each since the starts,
// and per byte with bytesPerOp > 0.
func (cl *client) cpuMetrics(ops int64, bytesPerOp int64, local0, remote0 benchenv.CPU) []metric {
	cli := float64(benchenv.CPUNow().Sub(local0).Total())
	srv := float64(cl.ctl.cpu().Sub(remote0).Total())
	n := float64(max(ops, 1))
	m := []metric{{(cli + srv) / n, "cpu-ns/op"}, {srv / n, "srv-cpu-ns/op"}, {cli / n, "cli-cpu-ns/op"}}
	if bytesPerOp > 0 {
		b := n * float64(bytesPerOp)
		m = append(m, metric{(cli + srv) / b, "cpu-ns/B"}, metric{srv / b, "srv-cpu-ns/B"}, metric{cli / b, "cli-cpu-ns/B"})
	}
	return m
}

// report prints one line in Go benchmark format, as the C harness does.
func report(name string, n int64, elapsed time.Duration, m []metric) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s-%d\t%10d\t%12.0f ns/op", name, runtime.GOMAXPROCS(0), n, float64(elapsed.Nanoseconds())/float64(max(n, 1)))
	for _, x := range m {
		fmt.Fprintf(&b, "\t%12.6g %s", x.v, x.unit)
	}
	fmt.Println(b.String())
}

// handshakes runs k clients against svc for the bench time after one
// untimed handshake (which also fills the session store).
func (cl *client) handshakes(name string, k int, svc service, withResumed bool) error {
	if !cl.run.MatchString(name) {
		return nil
	}
	w, cleanup, err := cl.im.client(svc, cl.caPEM)
	if err != nil {
		return err
	}
	defer cleanup()
	addr := cl.ctl.addr(svc.name)
	once := func() (bool, error) {
		nc, err := benchenv.Dial(addr)
		if err != nil {
			return false, err
		}
		c, err := w(nc)
		if err != nil {
			nc.Close()
			return false, err
		}
		defer c.Close()
		if err := c.Handshake(); err != nil {
			return false, err
		}
		var one [1]byte
		if _, err := c.Write(one[:]); err != nil {
			return false, err
		}
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return false, err
		}
		return c.Resumed(), nil
	}
	if _, err := once(); err != nil {
		return fmt.Errorf("%s: warm-up handshake: %w", name, err)
	}
	var (
		done, resumed atomic.Int64
		stop          atomic.Bool
		wg            sync.WaitGroup
		firstErr      error
		errOnce       sync.Once
		failed        = make(chan struct{})
	)
	remote0, local0 := cl.ctl.cpu(), benchenv.CPUNow()
	start := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				r, err := once()
				if err != nil {
					errOnce.Do(func() { firstErr = err; close(failed) })
					return
				}
				done.Add(1)
				if r {
					resumed.Add(1)
				}
			}
		}()
	}
	t := time.NewTimer(cl.benchtime)
	select {
	case <-t.C:
	case <-failed:
		t.Stop()
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	n := done.Load()
	m := []metric{{float64(n) / elapsed.Seconds(), "handshakes/s"}}
	if withResumed {
		m = append(m, metric{float64(resumed.Load()) / float64(max(n, 1)), "resumed/op"})
	}
	m = append(m, cl.cpuMetrics(n, 0, local0, remote0)...)
	if firstErr != nil {
		return fmt.Errorf("%s: %w", name, firstErr)
	}
	report(name, n, elapsed, m)
	return nil
}

// bulkRun sends cl.bulk bytes per op in writes of chunk over one
// connection to the bulk service and waits for the byte back.
func (cl *client) bulkRun(name string, chunk int) error {
	if !cl.run.MatchString(name) {
		return nil
	}
	svc := serviceNamed("bulk")
	w, cleanup, err := cl.im.client(svc, cl.caPEM)
	if err != nil {
		return err
	}
	defer cleanup()
	nc, err := benchenv.Dial(cl.ctl.addr(svc.name))
	if err != nil {
		return err
	}
	c, err := w(nc)
	if err != nil {
		nc.Close()
		return err
	}
	defer c.Close()
	if err := c.Handshake(); err != nil {
		return fmt.Errorf("%s: handshake: %w", name, err)
	}
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(cl.bulk))
	buf := make([]byte, chunk)
	var ops int64
	remote0, local0 := cl.ctl.cpu(), benchenv.CPUNow()
	start := time.Now()
	for ops == 0 || time.Since(start) < cl.benchtime {
		if _, err := c.Write(hdr[:]); err != nil {
			return fmt.Errorf("%s: write: %w", name, err)
		}
		for sent := int64(0); sent < cl.bulk; {
			n := min(int64(chunk), cl.bulk-sent)
			if _, err := c.Write(buf[:n]); err != nil {
				return fmt.Errorf("%s: write: %w", name, err)
			}
			sent += n
		}
		if _, err := io.ReadFull(c, hdr[:1]); err != nil {
			return fmt.Errorf("%s: no answer: %w", name, err)
		}
		binary.BigEndian.PutUint64(hdr[:], uint64(cl.bulk))
		ops++
	}
	elapsed := time.Since(start)
	m := []metric{{float64(cl.bulk) * float64(ops) / elapsed.Seconds() / 1e6, "MB/s"}}
	m = append(m, cl.cpuMetrics(ops, cl.bulk, local0, remote0)...)
	report(name, ops, elapsed, m)
	return nil
}

func (cl *client) all(clients []int) error {
	for _, h := range []struct {
		name, svc string
	}{
		{"BenchmarkHandshake/full/tls12", "full/tls12"},
		{"BenchmarkHandshake/full/tls13", "full/tls13"},
		{"BenchmarkHandshake/resumed/tls12", "resumed/tls12"},
		{"BenchmarkHandshake/resumed/tls13", "resumed/tls13"},
	} {
		if err := cl.handshakes(h.name, 1, serviceNamed(h.svc), true); err != nil {
			return err
		}
	}
	for _, b := range []struct {
		name  string
		chunk int
	}{{"BenchmarkBulk/16KiB", 16 << 10}, {"BenchmarkBulk/1KiB", 1 << 10}} {
		if err := cl.bulkRun(b.name, b.chunk); err != nil {
			return err
		}
	}
	for _, k := range clients {
		if err := cl.handshakes(fmt.Sprintf("BenchmarkScaling/handshakes/clients=%d", k), k, serviceNamed("scaling"), false); err != nil {
			return err
		}
	}
	return nil
}

func printHeader(pkg string) {
	fmt.Printf("goos: %s\ngoarch: %s\npkg: %s\n", runtime.GOOS, runtime.GOARCH, pkg)
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				fmt.Printf("cpu: %s\n", strings.TrimSpace(v))
				break
			}
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("peer: ")
	var (
		implName  = flag.String("impl", "golibtls", "TLS implementation: golibtls or gotls (crypto/tls)")
		caFile    = flag.String("ca", "", "CA certificate (PEM), for -connect")
		certFile  = flag.String("cert", "", "server certificate (PEM), for -serve")
		keyFile   = flag.String("key", "", "server key (PEM), for -serve")
		serveMode = flag.Bool("serve", false, "be the server")
		connect   = flag.String("connect", "", "be the client of the server with this control address")
		benchtime = flag.Duration("benchtime", time.Second, "time per scenario")
		bulkFlag  = flag.String("bulk", envOr("GOLIBTLS_BENCH_BULK", "1GiB"), "bytes per bulk op")
		clientsF  = flag.String("clients", envOr("GOLIBTLS_BENCH_CLIENTS", "1,2,8,64"), "concurrent clients of Scaling/handshakes")
		runFlag   = flag.String("run", "", "regular expression selecting scenarios by full name")
		timeout   = flag.Duration("timeout", time.Hour, "with -serve: exit after this long")
		sessions  = flag.String("sessions", "file", "golibtls client: keep sessions in a session file (file) or a memory SessionCache (cache)")
	)
	flag.Parse()
	var im impl
	switch *implName {
	case "golibtls":
		if *sessions != "file" && *sessions != "cache" {
			log.Fatalf("-sessions %q: want file or cache", *sessions)
		}
		im = golibtls{cache: *sessions == "cache"}
	case "gotls":
		im = gotls{}
	default:
		log.Fatalf("-impl %q: want golibtls or gotls", *implName)
	}
	clients, err := benchenv.ParseList(*clientsF)
	if err != nil {
		log.Fatalf("-clients: %v", err)
	}
	read := func(name string) []byte {
		if name == "" {
			log.Fatal("-serve needs -cert and -key; -connect needs -ca")
		}
		data, err := os.ReadFile(name)
		if err != nil {
			log.Fatal(err)
		}
		return data
	}
	switch {
	case *serveMode && *connect == "":
		log.Fatal(serve(im, read(*certFile), read(*keyFile), *timeout))
	case *connect != "" && !*serveMode:
		bulk, err := benchenv.ParseSize(*bulkFlag)
		if err != nil {
			log.Fatalf("-bulk: %v", err)
		}
		run, err := regexp.Compile(*runFlag)
		if err != nil {
			log.Fatalf("-run: %v", err)
		}
		ctl, err := dialControl(*connect)
		if err != nil {
			log.Fatalf("-connect %s: %v", *connect, err)
		}
		cl := &client{im: im, caPEM: read(*caFile), ctl: ctl, benchtime: *benchtime, bulk: bulk, run: run}
		printHeader("github.com/golibtls/libtls/bench/peer/" + *implName)
		if err := cl.all(clients); err != nil {
			log.Fatal(err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}
