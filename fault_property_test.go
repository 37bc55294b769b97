package libtls

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/faultconn"
	"github.com/stretchr/testify/require"
)

// Fault injection: handshakes and transfers over connections that fail,
// stall, cut and reset at random but seeded points, on both ends, with
// libtls on one or both sides. For every seed:
//
//   - nothing panics and nothing hangs: every call returns within its
//     deadline (a watchdog fails the seed and prints the goroutines);
//   - data is never corrupted: what a successful read returns is what was
//     written;
//   - every error is classified: a deadline is a net.Error whose Timeout is
//     true and matches os.ErrDeadlineExceeded; io.EOF only at a TLS record
//     boundary (a stream cut inside a record is never a clean EOF); after
//     Close, net.ErrClosed; libtls's own failures are *Error (a net.Error);
//     otherwise the transport's (injected) error, wrapped;
//
// and after all seeds no goroutine, descriptor or C context is left.
//
// GOLIBTLS_FAULT_SEEDS=N runs N seeds (default faultSeeds);
// GOLIBTLS_FAULT_SEED=S runs only seed S, to reproduce a failure;
// GOLIBTLS_FAULT_VERBOSE=1 logs the seeds that take longer than 500ms.

const (
	faultSeeds    = 300
	faultOpTime   = time.Second      // the deadline of every handshake, Read and Write
	faultWatchdog = 20 * time.Second // a seed that takes longer hangs
)

// faultCase is what a seed decides.
type faultCase struct {
	seed        uint64
	pipe        bool   // net.Pipe instead of loopback TCP
	pairing     string // "libtls-libtls", "libtls-go", "go-libtls" (client-server)
	clientRate  float64
	serverRate  float64
	after       int64 // bytes before the first fault
	tls12       bool
	sessionFile bool
	payload     int
	chunk       int
	closer      string // who closes first after the echo: "client" or "server"
	socket      bool   // golibtls ends without faults on TCP use the socket transport
}

func (fc faultCase) String() string {
	tr := "tcp"
	if fc.pipe {
		tr = "pipe"
	}
	return fmt.Sprintf("seed=%d %s %s rates=%.2f/%.2f after=%d tls12=%v session=%v payload=%d/%d closer=%s socket=%v",
		fc.seed, tr, fc.pairing, fc.clientRate, fc.serverRate, fc.after, fc.tls12, fc.sessionFile, fc.payload, fc.chunk, fc.closer, fc.socket)
}

func newFaultCase(seed uint64) faultCase {
	r := rand.New(rand.NewPCG(seed, 1))
	rate := func() float64 {
		if r.IntN(3) == 0 {
			return 0 // a well-behaved end
		}
		return []float64{0.02, 0.05, 0.1, 0.3}[r.IntN(4)]
	}
	fc := faultCase{
		seed:        seed,
		pipe:        r.IntN(3) == 0,
		pairing:     []string{"libtls-libtls", "libtls-libtls", "libtls-go", "go-libtls"}[r.IntN(4)],
		clientRate:  rate(),
		serverRate:  rate(),
		tls12:       r.IntN(2) == 0,
		sessionFile: r.IntN(2) == 0,
		payload:     []int{0, 1, 100, 16 << 10, 100 << 10}[r.IntN(5)],
		chunk:       []int{1, 1000, 16 << 10, 64 << 10}[r.IntN(4)],
		closer:      []string{"client", "server"}[r.IntN(2)],
		socket:      r.IntN(2) == 0,
	}
	if r.IntN(2) == 0 {
		fc.after = int64(r.IntN(8 << 10)) // let the handshake through, sometimes
	}
	return fc
}

// faultEnv is what the seeds share: Configs, a Server, a session file.
type faultEnv struct {
	ln             net.Listener // loopback TCP, for every seed's connection
	srv            *Server
	client         *Config // TLS 1.2 and 1.3
	client12       *Config // TLS 1.2 only, with a session file
	goServer       *tls.Config
	goServer12     *tls.Config
	goClient       *tls.Config
	goClient12     *tls.Config
	sessionClients map[bool]*Config
}

func newFaultEnv(t *testing.T) *faultEnv {
	scfg := newServerConfig(t)
	require.NoError(t, scfg.SetSessionLifetime(time.Hour))
	srv, err := NewServer(scfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	e := &faultEnv{ln: loopback(t), srv: srv, client: newClientConfig(t)}
	e.client12 = newClientConfig(t)
	require.NoError(t, e.client12.SetProtocols(ProtocolTLSv1_2))
	s12 := newClientConfig(t)
	require.NoError(t, s12.SetProtocols(ProtocolTLSv1_2))
	require.NoError(t, s12.SetSessionFile(sessionFile(t)))
	s13 := newClientConfig(t)
	require.NoError(t, s13.SetSessionFile(sessionFile(t)))
	e.sessionClients = map[bool]*Config{true: s12, false: s13}
	e.goServer = goServerConfig(t)
	e.goServer.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256} // cheaper under -race
	e.goServer12 = e.goServer.Clone()
	e.goServer12.MaxVersion = tls.VersionTLS12
	e.goClient = goClientConfig(t)
	// X25519 (cheaper under -race) and P-256, which TLS 1.2 needs for
	// the test certificate's ECDSA P-256 key.
	e.goClient.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	e.goClient.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	e.goClient12 = e.goClient.Clone()
	e.goClient12.MaxVersion = tls.VersionTLS12
	return e
}

// tcpPair connects to the shared listener.
func (e *faultEnv) tcpPair(t *testing.T) (net.Conn, net.Conn) {
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := e.ln.Accept()
		ch <- c
	}()
	client, err := net.Dial("tcp", e.ln.Addr().String())
	require.NoError(t, err)
	server := <-ch
	require.NotNil(t, server)
	return client, server
}

// faultEnd is one side of a seed's connection.
type faultEnd struct {
	name   string
	conn   net.Conn        // the TLS connection (*Conn or *tls.Conn)
	fault  *faultconn.Conn // its faulty transport (bypassed on the socket transport)
	libtls bool
	// atBoundary tells, when a Read returns io.EOF, whether what this end
	// read ends at a record boundary (nil: unknown).
	atBoundary func() bool

	mu        sync.Mutex
	errs      []error // every error a handshake, Read or Write returned, in order
	closeErrs []error // Close's errors (close_notify to a peer that left)
	eof       bool    // a Read returned io.EOF
}

func (e *faultEnd) record(err error) {
	if err != nil {
		e.mu.Lock()
		e.errs = append(e.errs, err)
		e.mu.Unlock()
	}
}

func (e *faultEnd) handshake() error {
	_ = e.conn.SetDeadline(time.Now().Add(faultOpTime))
	var err error
	switch c := e.conn.(type) {
	case *Conn:
		err = c.Handshake()
	case *tls.Conn:
		err = c.Handshake()
	}
	e.record(err)
	return err
}

func (e *faultEnd) read(p []byte) (int, error) {
	_ = e.conn.SetReadDeadline(time.Now().Add(faultOpTime))
	n, err := e.conn.Read(p)
	if err == io.EOF {
		e.mu.Lock()
		e.eof = true
		e.mu.Unlock()
	}
	e.record(err)
	return n, err
}

func (e *faultEnd) write(p []byte) (int, error) {
	_ = e.conn.SetWriteDeadline(time.Now().Add(faultOpTime))
	n, err := e.conn.Write(p)
	e.record(err)
	return n, err
}

func (e *faultEnd) close() {
	// Close may wait up to faultOpTime for close_notify to go out.
	_ = e.conn.SetWriteDeadline(time.Now().Add(faultOpTime))
	if err := ignoreClosed(e.conn.Close()); err != nil {
		e.mu.Lock()
		e.closeErrs = append(e.closeErrs, err)
		e.mu.Unlock()
	}
}

// sawReset reports whether a call of this end failed with a connection
// reset.
func (e *faultEnd) sawReset() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, err := range e.errs {
		if errors.Is(err, syscall.ECONNRESET) {
			return true
		}
	}
	return false
}

// ignoreClosed drops the net.ErrClosed of a second Close.
func ignoreClosed(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// runFaultCase runs one seed: a handshake, an echo of the payload, a close.
func runFaultCase(t *testing.T, env *faultEnv, fc faultCase) (client, server *faultEnd) {
	var craw, sraw net.Conn
	if fc.pipe {
		craw, sraw = net.Pipe()
	} else {
		craw, sraw = env.tcpPair(t)
	}
	cf := faultconn.Wrap(craw, fc.seed*2, faultconn.Options{Rate: fc.clientRate, After: fc.after})
	sf := faultconn.Wrap(sraw, fc.seed*2+1, faultconn.Options{Rate: fc.serverRate, After: fc.after})
	client = &faultEnd{name: "client", fault: cf, atBoundary: cf.AtRecordBoundary}
	server = &faultEnd{name: "server", fault: sf, atBoundary: sf.AtRecordBoundary}
	// A golibtls end without faults on TCP may run on the socket
	// transport: it then reads the socket itself, and what it read is what
	// the peer wrote through its wrapper.
	var ctr, str net.Conn = cf, sf
	if fc.socket && !fc.pipe {
		if fc.pairing != "go-libtls" && fc.clientRate == 0 {
			ctr, client.atBoundary = craw, sf.WrittenAtRecordBoundary
		}
		if fc.pairing != "libtls-go" && fc.serverRate == 0 {
			str, server.atBoundary = sraw, cf.WrittenAtRecordBoundary
		}
		if ctr == craw && str == sraw {
			client.atBoundary, server.atBoundary = nil, nil // no wrapper sees the bytes
		}
	}
	var err error
	if fc.pairing == "go-libtls" {
		gc := env.goClient
		if fc.tls12 {
			gc = env.goClient12
		}
		client.conn = tls.Client(cf, gc)
	} else {
		ccfg := env.client
		switch {
		case fc.sessionFile:
			ccfg = env.sessionClients[fc.tls12]
		case fc.tls12:
			ccfg = env.client12
		}
		client.conn, err = Client(ctr, ccfg, "localhost")
		require.NoError(t, err)
		client.libtls = true
	}
	if fc.pairing == "libtls-go" {
		gs := env.goServer
		if fc.tls12 {
			gs = env.goServer12
		}
		server.conn = tls.Server(sf, gs)
	} else {
		server.conn, err = env.srv.Accept(str)
		require.NoError(t, err)
		server.libtls = true
	}

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the server echoes until the stream ends
		defer wg.Done()
		defer server.close()
		if server.handshake() != nil {
			return
		}
		buf := make([]byte, 8<<10)
		echoed := 0
		for echoed < fc.payload || fc.closer == "client" {
			n, err := server.read(buf)
			if n > 0 {
				if _, err := server.write(buf[:n]); err != nil {
					return
				}
				echoed += n
			}
			if err != nil {
				return
			}
		}
	}()
	go func() { // the client sends the payload and checks the echo
		defer wg.Done()
		defer client.close()
		if client.handshake() != nil {
			return
		}
		data := make([]byte, fc.payload)
		for i := range data {
			data[i] = byte(i*7 + int(fc.seed))
		}
		writeErr := make(chan error, 1)
		go func() {
			for off := 0; off < len(data); off += fc.chunk {
				if _, err := client.write(data[off:min(off+fc.chunk, len(data))]); err != nil {
					// Give up, as an application would: Close
					// unblocks the Read below.
					client.close()
					writeErr <- err
					return
				}
			}
			writeErr <- nil
		}()
		got := make([]byte, 0, len(data))
		buf := make([]byte, 4<<10)
		for len(got) < len(data) {
			n, err := client.read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				client.close() // give up; this unblocks the writer
				break
			}
		}
		if werr := <-writeErr; werr == nil && len(got) == len(data) {
			if !bytes.Equal(data, got) {
				t.Errorf("%v: the echo differs from what was sent", fc)
			}
		} else if !bytes.Equal(data[:len(got)], got) {
			t.Errorf("%v: the echo's first %d bytes differ from what was sent", fc, len(got))
		}
		if fc.closer == "server" {
			// Wait for the server's close: the rest must be EOF or an error.
			for range 16 {
				if _, err := client.read(buf); err != nil {
					break
				}
			}
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(faultWatchdog):
		buf := make([]byte, 1<<20)
		t.Fatalf("%v: hung (injected client %v, server %v):\n%s", fc, cf.Injected(), sf.Injected(), buf[:runtime.Stack(buf, true)])
	}
	craw.Close()
	sraw.Close()
	return client, server
}

// checkFaultErrors applies the classification properties to one end.
func checkFaultErrors(t *testing.T, fc faultCase, e *faultEnd, peer *faultEnd) {
	t.Helper()
	ctx := func() string {
		return fmt.Sprintf("%v: %s (injected here %v, at the peer %v)", fc, e.name, e.fault.Injected(), peer.fault.Injected())
	}
	if fc.clientRate == 0 && fc.serverRate == 0 {
		// Without faults everything works: the only error is the EOF
		// that ends the stream.
		for _, err := range e.errs {
			if err != io.EOF {
				t.Errorf("%s: an error without any fault: %T %v", ctx(), err, err)
			}
		}
	}
	// Checked once both ends are done: the peer's wrapper counts what it
	// wrote after the bytes are on their way. After a reset the kernel
	// drops unread bytes and tells only the first call: when this end's
	// own write took the reset, its reads may see an end of file inside
	// what the peer wrote (the binding turns that end of file into the
	// reset when it can order the two: always on the socket transport).
	if e.eof && e.atBoundary != nil && !e.atBoundary() && !e.sawReset() {
		t.Errorf("%s: io.EOF in the middle of a TLS record: a truncated stream passed for a clean close", ctx())
	}
	if !e.libtls {
		return // crypto/tls's errors are crypto/tls's business
	}
	for _, err := range append(e.errs, e.closeErrs...) {
		if why := classifyFaultError(err); why != "" {
			t.Errorf("%s: %s: %T %v", ctx(), why, err, err)
		}
	}
}

// classifyFaultError returns "" for an error a golibtls call may return
// over a faulty transport, or why it may not.
func classifyFaultError(err error) string {
	if err == io.EOF {
		return ""
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "a context error without a context"
	}
	timeout := errors.Is(err, os.ErrDeadlineExceeded)
	if ne, ok := err.(net.Error); ok {
		if ne.Timeout() != timeout {
			return fmt.Sprintf("Timeout() is %v but errors.Is(err, os.ErrDeadlineExceeded) is %v", ne.Timeout(), timeout)
		}
	} else if timeout {
		return "a timeout that is not a net.Error"
	}
	var le *Error
	if errors.As(err, &le) {
		if _, ok := err.(net.Error); !ok {
			return "an *Error that is not a net.Error by type assertion"
		}
		if le.Msg == "" && le.Err == nil {
			return "an *Error without a message or cause"
		}
		return ""
	}
	switch {
	case timeout,
		errors.Is(err, net.ErrClosed),
		errors.Is(err, faultconn.ErrInjected),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.ErrClosedPipe),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return ""
	}
	return "an unclassified error"
}

func TestFaultInjection(t *testing.T) {
	env := newFaultEnv(t)
	seeds := faultSeeds
	if s := os.Getenv("GOLIBTLS_FAULT_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		require.NoError(t, err)
		seeds = n
	}
	first := uint64(1)
	if s := os.Getenv("GOLIBTLS_FAULT_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		first, seeds = n, 1
	}
	// Warm up what is allocated once (the PKI, crypto/tls's tables) and
	// what the Configs keep for reuse (an idle client configuration each,
	// with its session file).
	runFaultCase(t, env, faultCase{seed: 0, pairing: "libtls-libtls", payload: 10, chunk: 10, closer: "client"})
	for _, tls12 := range []bool{false, true} {
		runFaultCase(t, env, faultCase{seed: 0, pairing: "libtls-go", tls12: tls12, sessionFile: true, payload: 10, chunk: 10, closer: "client"})
	}
	runFaultCase(t, env, faultCase{seed: 0, pairing: "libtls-go", tls12: true, payload: 10, chunk: 10, closer: "client"})
	contexts := liveContexts.Load()
	goroutines := runtime.NumGoroutine()
	fds := countFDs(t)

	stats := map[string]int{}
	for seed := first; seed < first+uint64(seeds); seed++ {
		fc := newFaultCase(seed)
		t0 := time.Now()
		client, server := runFaultCase(t, env, fc)
		if d := time.Since(t0); d > 500*time.Millisecond && os.Getenv("GOLIBTLS_FAULT_VERBOSE") != "" {
			t.Logf("%v took %v: client %v %v / server %v %v", fc, d.Round(time.Millisecond), client.fault.Injected(), client.errs, server.fault.Injected(), server.errs)
		}
		checkFaultErrors(t, fc, client, server)
		checkFaultErrors(t, fc, server, client)
		for _, e := range []*faultEnd{client, server} {
			for _, k := range e.fault.Injected() {
				stats[k.String()]++
			}
			if len(e.errs) == 0 {
				stats["clean "+e.name]++
			}
		}
		if t.Failed() {
			t.Fatalf("stopped at %v; rerun with GOLIBTLS_FAULT_SEED=%d", fc, seed)
		}
	}
	t.Logf("%d seeds; faults injected and clean ends: %v", seeds, stats)

	// Nothing is left behind.
	require.Equal(t, contexts, liveContexts.Load(), "C contexts leaked")
	deadline := time.Now().Add(10 * time.Second)
	for (runtime.NumGoroutine() > goroutines || countFDs(t) > fds) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		buf := make([]byte, 1<<20)
		t.Fatalf("goroutines leaked: %d, was %d:\n%s", n, goroutines, buf[:runtime.Stack(buf, true)])
	}
	require.LessOrEqual(t, countFDs(t), fds, "descriptors leaked")
}

// countFDs counts the process's open descriptors.
func countFDs(t testing.TB) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(entries)
}

// The classification accepts what it should and refuses what it should.
func TestClassifyFaultError(t *testing.T) {
	timeoutErr := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		err error
		ok  bool
	}{
		{io.EOF, true},
		{timeoutErr, true},
		{&Error{Op: "read", Msg: "i/o timeout", Err: timeoutErr}, true},
		{&Error{Op: "handshake", Msg: "unexpected eof"}, true},
		{fmt.Errorf("x: %w", faultconn.ErrInjected), true},
		{closedError("read"), true},
		{io.ErrUnexpectedEOF, true},
		{errors.New("something else"), false},
		{fmt.Errorf("wrapped: %w", os.ErrDeadlineExceeded), false}, // a timeout that is not a net.Error
		{context.DeadlineExceeded, false},
		{&Error{Op: "handshake"}, false},
	} {
		why := classifyFaultError(tc.err)
		require.Equal(t, tc.ok, why == "", "%T %v: %s", tc.err, tc.err, why)
	}
	require.True(t, strings.Contains(classifyFaultError(errors.New("x")), "unclassified"))
}

// A stream cut inside a TLS record is a truncation, never a clean io.EOF
// (which crypto/tls, like the binding, returns only for a close at a record
// boundary). LibreSSL's tls_read returns 0 there as for close_notify, so the
// binding follows the record framing itself.
func TestTruncatedRecordIsNotEOF(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c, s, hs := holdingGoServer(t, craw, sraw)
		hs.setHold()
		_, err := s.Write([]byte("a message that will not arrive whole"))
		require.NoError(t, err)
		rec := hs.release()
		_, err = sraw.Write(rec[:len(rec)-3])
		require.NoError(t, err)
		require.NoError(t, sraw.Close())
		n, err := c.Read(make([]byte, 64))
		require.Zero(t, n)
		require.Error(t, err)
		require.NotEqual(t, io.EOF, err)
		var le *Error
		require.ErrorAs(t, err, &le)
		require.Equal(t, "read", le.Op)
		if Backend().Name == "LibreSSL" {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the binding saw the cut")
		} else {
			require.Contains(t, strings.ToLower(le.Msg), "unexpected eof", "OpenSSL saw the cut")
		}
	})
}
