package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/golibtls/libtls"
)

// envServer, when set, makes the program the server under test; its value
// is the JSON of serverParams.
const envServer = "GOLIBTLS_SOAK_SERVER"

// serverParams is what the parent tells its server child.
type serverParams struct {
	Cert, Key        string
	KeyFile          string        // the ticket key file the parent rotates
	Lifetime         time.Duration // session lifetime
	Poll             time.Duration // the key file follower's interval
	Interval         time.Duration // between samples
	HandshakeTimeout time.Duration
	IOTimeout        time.Duration // after the handshake
	MaxLife          time.Duration // exit even if stdin never reaches EOF
	Inject           []string      // self-test only: "leak-fd", "leak-mem"
}

// serverReport is one line of the server's stdout.
type serverReport struct {
	Type string  `json:"type"` // ready, baseline, sample, final, fatal
	Msg  string  `json:"msg,omitempty"`
	Port int     `json:"port,omitempty"`
	PID  int     `json:"pid,omitempty"`
	T    float64 `json:"t"` // seconds since the server started

	procStats

	Accepted     uint64            `json:"accepted"`
	Active       int64             `json:"active"`      // connections being handled
	Handshakes   map[string]uint64 `json:"handshakes"`  // completed, by protocol version
	Resumed      map[string]uint64 `json:"resumed"`     // resumed, by protocol version
	HSFailures   map[string]uint64 `json:"hs_failures"` // failed handshakes, by kind (classify)
	EchoErrors   map[string]uint64 `json:"echo_errors"` // failures after the handshake, by kind
	AcceptErrors uint64            `json:"accept_errors"`
	Examples     map[string]string `json:"examples,omitempty"` // kind -> first error text seen
	NewestRev    uint32            `json:"newest_rev"`         // newest ticket key revision held
	FollowErr    string            `json:"follow_err,omitempty"`
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// classify names the kind of a connection failure for the counters.
func classify(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.Is(err, net.ErrClosed):
		return "closed"
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "connection reset"), strings.Contains(msg, "broken pipe"):
		return "reset"
	case strings.Contains(msg, "eof"):
		return "eof"
	case strings.Contains(msg, "timeout"), strings.Contains(msg, "timed out"):
		return "timeout"
	}
	return "tls"
}

// soakServer is the server child's state.
type soakServer struct {
	p        serverParams
	cfg      *libtls.Config
	follower *libtls.TicketKeyFollower
	start    time.Time

	outMu sync.Mutex

	mu           sync.Mutex
	accepted     uint64
	active       int64
	handshakes   map[string]uint64
	resumed      map[string]uint64
	hsFailures   map[string]uint64
	echoErrors   map[string]uint64
	acceptErrors uint64
	examples     map[string]string

	wg     sync.WaitGroup // connection handlers
	leaked []any          // self-test injections, never released
}

func (s *soakServer) emit(r serverReport) {
	b, err := json.Marshal(r)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"type":"fatal","msg":%q}`, err.Error()))
	}
	s.outMu.Lock()
	defer s.outMu.Unlock()
	os.Stdout.Write(append(b, '\n'))
}

func (s *soakServer) report(typ string) serverReport {
	r := serverReport{Type: typ, T: time.Since(s.start).Seconds(), procStats: readProcStats()}
	s.mu.Lock()
	r.Accepted, r.Active, r.AcceptErrors = s.accepted, s.active, s.acceptErrors
	r.Handshakes, r.Resumed = maps.Clone(s.handshakes), maps.Clone(s.resumed)
	r.HSFailures, r.EchoErrors = maps.Clone(s.hsFailures), maps.Clone(s.echoErrors)
	r.Examples = maps.Clone(s.examples)
	s.mu.Unlock()
	if revs := s.cfg.TicketKeyRevisions(); len(revs) > 0 {
		r.NewestRev = revs[0]
	}
	if err := s.follower.Err(); err != nil {
		r.FollowErr = err.Error()
	}
	return r
}

func (s *soakServer) failure(m map[string]uint64, prefix string, err error) {
	kind := classify(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	m[kind]++
	if _, ok := s.examples[prefix+kind]; !ok {
		s.examples[prefix+kind] = err.Error()
	}
}

// serverMain runs the server under test until its stdin reaches EOF (the
// parent is done, or gone) or MaxLife passes, then stops accepting, waits
// for the connections in progress and reports a final sample.
func serverMain() int {
	s := &soakServer{
		start:      time.Now(),
		handshakes: map[string]uint64{}, resumed: map[string]uint64{},
		hsFailures: map[string]uint64{}, echoErrors: map[string]uint64{},
		examples: map[string]string{},
	}
	// A terminal's Ctrl-C reaches the whole process group: the parent
	// handles it and then closes our stdin, so that we drain and report.
	signal.Ignore(os.Interrupt)
	fatal := func(err error) int {
		s.emit(serverReport{Type: "fatal", Msg: err.Error()})
		return 1
	}
	if err := json.Unmarshal([]byte(os.Getenv(envServer)), &s.p); err != nil {
		return fatal(fmt.Errorf("%s: %v", envServer, err))
	}
	p := &s.p
	cfg, err := libtls.NewConfig()
	if err != nil {
		return fatal(err)
	}
	defer cfg.Close()
	s.cfg = cfg
	if err := cfg.SetKeypairFile(p.Cert, p.Key); err != nil {
		return fatal(err)
	}
	if err := cfg.SetProtocols(libtls.ProtocolTLSv1_2 | libtls.ProtocolTLSv1_3); err != nil {
		return fatal(err)
	}
	if err := cfg.SetSessionLifetime(p.Lifetime); err != nil {
		return fatal(err)
	}
	// Before Listen: libtls copies the session ID into the server.
	s.follower, err = libtls.FollowTicketKeyFile(cfg, p.KeyFile, p.Poll)
	if err != nil {
		return fatal(err)
	}
	defer s.follower.Close()
	l, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return fatal(err)
	}
	defer l.Close()

	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		s.acceptLoop(l)
	}()
	stdin := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdin)
	}()
	stopSampling := make(chan struct{})
	samplingDone := make(chan struct{})
	go func() {
		defer close(samplingDone)
		t := time.NewTicker(p.Interval)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				s.emit(s.report("sample"))
			}
		}
	}()

	s.emit(serverReport{Type: "ready", Port: l.Addr().(*net.TCPAddr).Port, PID: os.Getpid()})
	s.emit(s.report("baseline"))

	select {
	case <-stdin:
	case <-time.After(p.MaxLife):
	}
	close(stopSampling)
	<-samplingDone
	l.Close()
	<-acceptDone
	drained := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(p.HandshakeTimeout + p.IOTimeout + 5*time.Second):
		// Reported as Active > 0 in the final sample.
	}
	s.emit(s.report("final"))
	return 0
}

func (s *soakServer) acceptLoop(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.mu.Lock()
			s.acceptErrors++
			if _, ok := s.examples["accept"]; !ok {
				s.examples["accept"] = err.Error()
			}
			s.mu.Unlock()
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		s.mu.Lock()
		s.accepted++
		s.active++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.handle(c.(*libtls.Conn))
	}
}

// handle runs the handshake, then echoes what the client sends until it
// closes.
func (s *soakServer) handle(c *libtls.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		s.active--
		s.mu.Unlock()
	}()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(s.p.HandshakeTimeout))
	if err := c.Handshake(); err != nil {
		s.failure(s.hsFailures, "handshake ", err)
		return
	}
	version := c.ConnInfo().Version
	s.mu.Lock()
	s.handshakes[version]++
	if c.SessionResumed() {
		s.resumed[version]++
	}
	s.mu.Unlock()
	s.inject()

	_ = c.SetDeadline(time.Now().Add(s.p.IOTimeout))
	buf := make([]byte, 16<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				s.failure(s.echoErrors, "echo ", werr)
				return
			}
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			s.failure(s.echoErrors, "echo ", err)
			return
		}
	}
}

// inject leaks on purpose, for the self-test that proves the verdict fails.
func (s *soakServer) inject() {
	for _, what := range s.p.Inject {
		switch what {
		case "leak-fd":
			if f, err := os.Open(os.DevNull); err == nil {
				s.mu.Lock()
				s.leaked = append(s.leaked, f)
				s.mu.Unlock()
			}
		case "leak-mem":
			b := make([]byte, 256<<10)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // make it resident
			}
			s.mu.Lock()
			s.leaked = append(s.leaked, b)
			s.mu.Unlock()
		}
	}
}
