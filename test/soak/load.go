package main

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
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// cacheNames are the server names the SessionCache clients pick from, more
// than the cache holds, so that it evicts.
var cacheNames = []string{"s0.soak.test", "s1.soak.test", "s2.soak.test", "s3.soak.test", "s4.soak.test", "s5.soak.test"}

const cacheCapacity = 4

// Client kinds: legitimate clients (every failure of theirs fails the run)
// and bad peers (expected to fail their handshake on the server).
const (
	kSessFile12 = "sessfile-tls12" // golibtls, own session file, TLS 1.2 only
	kSessFile13 = "sessfile-tls13" // golibtls, own session file, TLS 1.2+1.3 (negotiates 1.3)
	kCache12    = "cache-tls12"    // golibtls, one Config with a SessionCache, TLS 1.2, 6 names
	kGo12       = "gotls-tls12"    // crypto/tls, ClientSessionCache, TLS 1.2
	kGo13       = "gotls-tls13"    // crypto/tls, ClientSessionCache, TLS 1.3
	kFull12     = "full-tls12"     // golibtls, no session, TLS 1.2
	kFull13     = "full-tls13"     // golibtls, no session, TLS 1.3

	bGarbage    = "garbage"           // random bytes, then wait for the server to close
	bHTTP       = "plain-http"        // an HTTP request to the TLS port, then wait
	bPartClose  = "hello-part-close"  // part of a ClientHello, then close
	bPartReset  = "hello-part-reset"  // part of a ClientHello, then reset (RST)
	bHelloClose = "hello-close"       // a whole ClientHello, then close before the reply
	bHelloReset = "hello-reply-reset" // a whole ClientHello, read the reply's start, reset
	bIdleClose  = "idle-close"        // connect, idle 10-100 ms, close
	bIdleWait   = "idle-timeout"      // connect, send nothing, wait for the server's handshake timeout
)

// legitKinds in report order, with their worker counts.
var legitKinds = []struct {
	name    string
	workers int
}{
	{kSessFile12, 2}, {kSessFile13, 1}, {kCache12, 2}, {kGo12, 1}, {kGo13, 1}, {kFull12, 1}, {kFull13, 1},
}

// badCycle is what the bad-peer worker cycles through; bIdleWait has a
// worker of its own (each takes a handshake timeout).
var badCycle = []string{bGarbage, bHTTP, bPartClose, bPartReset, bHelloClose, bHelloReset, bIdleClose}

var badKinds = append(slices.Clone(badCycle), bIdleWait)

// workerCount is how many connections the load holds open at most.
func workerCount() int {
	n := 2 // the bad-peer worker and the idle-timeout worker
	for _, k := range legitKinds {
		n += k.workers
	}
	return n
}

// kindStats counts one client kind.
type kindStats struct {
	Attempts uint64
	OK       uint64 // legit: handshake and echo done; bad: peer ran
	Resumed  uint64
	Failures map[string]uint64 // legit: stage/kind -> n; bad: peers the server did not close
	Outcomes map[string]uint64 // bad peers: how the server ended them
	Examples map[string]string
	// Connected counts bad peers whose TCP connect succeeded: the server
	// must report one failed handshake for each.
	Connected uint64
	MaxWait   time.Duration // idle-timeout: longest wait for the server to close
	MinWait   time.Duration
}

type tally struct {
	mu    sync.Mutex
	kinds map[string]*kindStats
}

func newTally() *tally {
	t := &tally{kinds: map[string]*kindStats{}}
	for _, k := range legitKinds {
		t.kinds[k.name] = &kindStats{Failures: map[string]uint64{}, Outcomes: map[string]uint64{}, Examples: map[string]string{}}
	}
	for _, k := range badKinds {
		t.kinds[k] = &kindStats{Failures: map[string]uint64{}, Outcomes: map[string]uint64{}, Examples: map[string]string{}}
	}
	return t
}

func (t *tally) legit(kind string, resumed bool, stage string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kinds[kind]
	k.Attempts++
	if err != nil {
		key := stage + "/" + classify(err)
		k.Failures[key]++
		if _, ok := k.Examples[key]; !ok {
			k.Examples[key] = err.Error()
		}
		return
	}
	k.OK++
	if resumed {
		k.Resumed++
	}
}

func (t *tally) bad(kind string, connected bool, outcome string, wait time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := t.kinds[kind]
	k.Attempts++
	if connected {
		k.Connected++
	}
	if err != nil {
		key := outcome
		k.Failures[key]++
		if _, ok := k.Examples[key]; !ok {
			k.Examples[key] = err.Error()
		}
		return
	}
	k.OK++
	k.Outcomes[outcome]++
	if wait > 0 {
		k.MaxWait = max(k.MaxWait, wait)
		if k.MinWait == 0 || wait < k.MinWait {
			k.MinWait = wait
		}
	}
}

func (t *tally) snapshot() map[string]kindStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]kindStats, len(t.kinds))
	for name, k := range t.kinds {
		c := *k
		c.Failures, c.Outcomes, c.Examples = cloneMap(k.Failures), cloneMap(k.Outcomes), cloneMap(k.Examples)
		out[name] = c
	}
	return out
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// load is the parent's client side.
type load struct {
	addr      string
	ioTimeout time.Duration
	hsTimeout time.Duration // the server's handshake timeout
	ca        *testcert.CA
	caPEM     []byte
	dir       string
	tally     *tally

	// Client state; closed by close.
	configs  []*libtls.Config
	files    []*os.File
	cache    *libtls.SessionCache
	cacheCfg *libtls.Config

	// Ticket key rotation.
	keyFile   string
	keys      *libtls.TicketKeySet
	rev       atomic.Uint32 // newest revision written
	rotations atomic.Uint64
	rotMu     sync.Mutex
	rotErrs   []string
}

func (l *load) newConfig(p libtls.Protocol) (*libtls.Config, error) {
	cfg, err := libtls.NewConfig()
	if err != nil {
		return nil, err
	}
	l.configs = append(l.configs, cfg)
	if err := cfg.SetCA(l.caPEM); err != nil {
		return nil, err
	}
	if err := cfg.SetProtocols(p); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (l *load) sessionFileConfig(name string, p libtls.Protocol) (*libtls.Config, error) {
	cfg, err := l.newConfig(p)
	if err != nil {
		return nil, err
	}
	f, err := libtls.OpenSessionFile(filepath.Join(l.dir, name+".session"))
	if err != nil {
		return nil, err
	}
	l.files = append(l.files, f)
	return cfg, cfg.SetSessionFile(f)
}

func (l *load) close() {
	if l.cache != nil {
		l.cache.Close()
	}
	for _, c := range l.configs {
		c.Close()
	}
	for _, f := range l.files {
		f.Close()
	}
	l.configs, l.files, l.cache = nil, nil, nil
}

// worker runs one client kind in a loop until stop is closed. An operation
// in progress when stop closes finishes: it is never cancelled, so the
// parent's counts and the server's match exactly.
type worker struct {
	name string
	run  func(rng *rand.Rand)
}

func (l *load) workers() ([]worker, error) {
	var ws []worker
	tls12, tls13 := libtls.ProtocolTLSv1_2, libtls.ProtocolTLSv1_3
	for _, k := range legitKinds {
		for i := range k.workers {
			var run func(rng *rand.Rand)
			switch k.name {
			case kSessFile12, kSessFile13:
				p, want := tls12, "TLSv1.2"
				if k.name == kSessFile13 {
					p, want = tls12|tls13, "TLSv1.3"
				}
				cfg, err := l.sessionFileConfig(fmt.Sprintf("%s-%d", k.name, i), p)
				if err != nil {
					return nil, err
				}
				run = l.golibtlsClient(k.name, cfg, func(*rand.Rand) string { return "localhost" }, want)
			case kCache12:
				if l.cacheCfg == nil {
					cfg, err := l.newConfig(tls12)
					if err != nil {
						return nil, err
					}
					l.cache = libtls.NewMemorySessionCache(cacheCapacity)
					if err := cfg.SetSessionCache(l.cache); err != nil {
						return nil, err
					}
					l.cacheCfg = cfg
				}
				run = l.golibtlsClient(k.name, l.cacheCfg, func(rng *rand.Rand) string { return cacheNames[rng.IntN(len(cacheNames))] }, "TLSv1.2")
			case kFull12, kFull13:
				p, want := tls12, "TLSv1.2"
				if k.name == kFull13 {
					p, want = tls13, "TLSv1.3"
				}
				cfg, err := l.newConfig(p)
				if err != nil {
					return nil, err
				}
				run = l.golibtlsClient(k.name, cfg, func(*rand.Rand) string { return "localhost" }, want)
			case kGo12, kGo13:
				v := uint16(tls.VersionTLS12)
				if k.name == kGo13 {
					v = tls.VersionTLS13
				}
				cfg := &tls.Config{
					RootCAs: l.ca.Pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
					ClientSessionCache: tls.NewLRUClientSessionCache(8),
				}
				run = l.goClient(k.name, cfg)
			}
			ws = append(ws, worker{name: k.name, run: run})
		}
	}
	hello, err := captureClientHello()
	if err != nil {
		return nil, err
	}
	n := 0
	ws = append(ws, worker{name: "bad", run: func(rng *rand.Rand) {
		kind := badCycle[n%len(badCycle)]
		n++
		l.badPeer(kind, hello, rng)
	}})
	ws = append(ws, worker{name: bIdleWait, run: func(rng *rand.Rand) { l.badPeer(bIdleWait, hello, rng) }})
	return ws, nil
}

// golibtlsClient dials with a golibtls Config, checks the protocol
// version, echoes a random payload and closes.
func (l *load) golibtlsClient(kind string, cfg *libtls.Config, name func(*rand.Rand) string, wantVersion string) func(*rand.Rand) {
	buf := newEchoBuf()
	return func(rng *rand.Rand) {
		d := &libtls.Dialer{Config: cfg, ServerName: name(rng), NetDialer: &net.Dialer{Timeout: l.ioTimeout}}
		nc, err := d.Dial("tcp", l.addr)
		if err != nil {
			l.tally.legit(kind, false, "handshake", err)
			return
		}
		c := nc.(*libtls.Conn)
		defer c.Close()
		resumed := c.SessionResumed()
		if v := c.ConnInfo().Version; v != wantVersion {
			l.tally.legit(kind, resumed, "version", fmt.Errorf("negotiated %s, want %s", v, wantVersion))
			return
		}
		if err := c.SessionFileError(); err != nil {
			l.tally.legit(kind, resumed, "session-file", err)
			return
		}
		if err := buf.echo(c, rng, l.ioTimeout); err != nil {
			l.tally.legit(kind, resumed, "echo", err)
			return
		}
		if err := c.Close(); err != nil {
			l.tally.legit(kind, resumed, "close", err)
			return
		}
		l.tally.legit(kind, resumed, "", nil)
	}
}

// goClient is golibtlsClient with crypto/tls.
func (l *load) goClient(kind string, cfg *tls.Config) func(*rand.Rand) {
	buf := newEchoBuf()
	want := tls.VersionName(cfg.MaxVersion)
	return func(rng *rand.Rand) {
		ctx, cancel := context.WithTimeout(context.Background(), l.ioTimeout)
		defer cancel()
		d := &tls.Dialer{Config: cfg}
		nc, err := d.DialContext(ctx, "tcp", l.addr)
		if err != nil {
			l.tally.legit(kind, false, "handshake", err)
			return
		}
		c := nc.(*tls.Conn)
		defer c.Close()
		st := c.ConnectionState()
		if v := tls.VersionName(st.Version); v != want {
			l.tally.legit(kind, st.DidResume, "version", fmt.Errorf("negotiated %s, want %s", v, want))
			return
		}
		if err := buf.echo(c, rng, l.ioTimeout); err != nil {
			l.tally.legit(kind, st.DidResume, "echo", err)
			return
		}
		if err := c.Close(); err != nil {
			l.tally.legit(kind, st.DidResume, "close", err)
			return
		}
		l.tally.legit(kind, st.DidResume, "", nil)
	}
}

// echoBuf holds a worker's payload buffers.
type echoBuf struct{ out, in []byte }

func newEchoBuf() *echoBuf {
	return &echoBuf{out: make([]byte, 16<<10), in: make([]byte, 16<<10)}
}

// echo writes 1 B to 16 KiB of random bytes and reads them back.
func (b *echoBuf) echo(c net.Conn, rng *rand.Rand, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	n := 1 + rng.IntN(len(b.out))
	for i := 0; i < n; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b.out[i+j] = byte(v >> (8 * j))
		}
	}
	if _, err := c.Write(b.out[:n]); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b.in[:n]); err != nil {
		return err
	}
	if !bytes.Equal(b.out[:n], b.in[:n]) {
		return errors.New("echo: the server sent back different bytes")
	}
	return nil
}

// captureConn records what a crypto/tls client writes and fails its first
// read, to capture a ClientHello.
type captureConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *captureConn) Read([]byte) (int, error)         { return 0, io.EOF }
func (c *captureConn) Close() error                     { return nil }
func (c *captureConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *captureConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *captureConn) SetDeadline(time.Time) error      { return nil }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }
func (c *captureConn) SetReadDeadline(time.Time) error  { return nil }

func captureClientHello() ([]byte, error) {
	cfg := &tls.Config{ServerName: "localhost", MinVersion: tls.VersionTLS12}
	cc := &captureConn{}
	_ = tls.Client(cc, cfg).Handshake() // fails at the first read
	if cc.buf.Len() < 10 || cc.buf.Bytes()[0] != 0x16 {
		return nil, fmt.Errorf("capturing a ClientHello: got %d bytes", cc.buf.Len())
	}
	return cc.buf.Bytes(), nil
}

// badPeer runs one misbehaving peer. Peers that wait for the server check
// that it ends the connection in time; a server that keeps one open is a
// failure of the run.
func (l *load) badPeer(kind string, hello []byte, rng *rand.Rand) {
	// The server's handshake timer starts once the connection exists,
	// never before this: a wait measured from here is never shorter than
	// the server's, however late this goroutine runs after the dial.
	start := time.Now()
	nc, err := net.DialTimeout("tcp", l.addr, l.ioTimeout)
	if err != nil {
		l.tally.bad(kind, false, "connect", 0, err)
		return
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(l.ioTimeout))
	reset := func() {
		_ = c.SetLinger(0)
		c.Close()
	}
	// The server must end the connection within its handshake timeout
	// (plus scheduling slack).
	waitLimit := l.hsTimeout + 10*time.Second
	switch kind {
	case bGarbage:
		junk := make([]byte, 1+rng.IntN(2048))
		for i := range junk {
			junk[i] = byte(rng.Uint32())
		}
		if junk[0] == 0x16 {
			junk[0] = 0x17 // not a handshake record: fail at once rather than wait for a record body
		}
		if _, err := c.Write(junk); err != nil {
			// The server ended it while we wrote: fine.
			l.tally.bad(kind, true, "write-"+classify(err), 0, nil)
			return
		}
		l.waitClosed(kind, c, start, waitLimit)
	case bHTTP:
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: golibtls-soak\r\n\r\n"); err != nil {
			l.tally.bad(kind, true, "write-"+classify(err), 0, nil)
			return
		}
		l.waitClosed(kind, c, start, waitLimit)
	case bPartClose, bPartReset:
		_, _ = c.Write(hello[:1+rng.IntN(len(hello)-1)])
		if kind == bPartReset {
			reset()
		}
		l.tally.bad(kind, true, "self-closed", 0, nil)
	case bHelloClose:
		_, _ = c.Write(hello)
		l.tally.bad(kind, true, "self-closed", 0, nil)
	case bHelloReset:
		if _, err := c.Write(hello); err != nil {
			l.tally.bad(kind, true, "no-reply", 0, err)
			return
		}
		var b [1]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			// The server must answer a valid ClientHello.
			l.tally.bad(kind, true, "no-reply", 0, err)
			return
		}
		reset()
		l.tally.bad(kind, true, "self-reset", 0, nil)
	case bIdleClose:
		time.Sleep(time.Duration(10+rng.IntN(90)) * time.Millisecond)
		l.tally.bad(kind, true, "self-closed", 0, nil)
	case bIdleWait:
		l.waitClosed(kind, c, start, waitLimit)
	}
}

// waitClosed reads until the server ends the connection and records how,
// and for bIdleWait how long after start (before the dial).
func (l *load) waitClosed(kind string, c *net.TCPConn, start time.Time, limit time.Duration) {
	_ = c.SetReadDeadline(time.Now().Add(limit))
	got := 0
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		got += n
		if err == nil {
			continue
		}
		outcome := "closed"
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			l.tally.bad(kind, true, "not-closed", 0, fmt.Errorf("the server kept the connection open for %v", limit))
			return
		case errors.Is(err, io.EOF):
		default:
			outcome = "reset"
		}
		if got > 0 {
			outcome = "alert+" + outcome
		}
		var wait time.Duration
		if kind == bIdleWait {
			wait = time.Since(start)
		}
		l.tally.bad(kind, true, outcome, wait, nil)
		return
	}
}

// rotateOnce adds a key to the key file, keeping the newest four.
func (l *load) rotateOnce() error {
	key, err := libtls.NewTicketKey()
	if err != nil {
		return err
	}
	s := l.keys
	rev := s.Keys[len(s.Keys)-1].Rev + 1
	s.Keys = append(s.Keys, libtls.TicketKeyEntry{Rev: rev, Created: time.Now().UTC(), Key: key})
	for len(s.Keys) > 4 {
		clear(s.Keys[0].Key)
		s.Keys = slices.Delete(s.Keys, 0, 1)
	}
	if err := libtls.WriteTicketKeyFile(l.keyFile, s); err != nil {
		return err
	}
	l.rev.Store(rev)
	l.rotations.Add(1)
	return nil
}

// rotate rewrites the key file every interval until stop closes.
func (l *load) rotate(stop <-chan struct{}, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if err := l.rotateOnce(); err != nil {
				l.rotMu.Lock()
				if len(l.rotErrs) < 10 {
					l.rotErrs = append(l.rotErrs, err.Error())
				}
				l.rotMu.Unlock()
			}
		}
	}
}
