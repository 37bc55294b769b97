// Package fleet_test runs a fleet of golibtls server processes that share a
// ticket key file, the way a deployment would: the test binary re-executes
// itself as each server (GOLIBTLS_FLEET_CHILD=1), the parent rotates the key
// file and a client resumes its session round-robin on every server.
package fleet_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// The child's environment.
const (
	envChild    = "GOLIBTLS_FLEET_CHILD" // "1": run as a fleet server
	envKeys     = "GOLIBTLS_FLEET_KEYS"  // the ticket key file
	envCert     = "GOLIBTLS_FLEET_CERT"
	envKey      = "GOLIBTLS_FLEET_KEY"
	envLifetime = "GOLIBTLS_FLEET_LIFETIME" // a time.Duration
	envPoll     = "GOLIBTLS_FLEET_POLL"     // the follower's interval
)

const (
	fleetSize = 3
	// fleetLifetime is the servers' session lifetime. Long enough that
	// neither sessions nor the servers' keys expire during the test (the
	// binding would add a key of its own within max(1s, lifetime/16) of a
	// key's expiry, see Config.AddTicketKey); the rotation is forced by
	// backdating the first key instead.
	fleetLifetime = 30 * time.Second
	fleetPoll     = 20 * time.Millisecond
	ioTimeout     = 30 * time.Second
	// childMaxLife bounds a child whose parent vanished without closing
	// its stdin.
	childMaxLife = 5 * time.Minute
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// --- The server child ---------------------------------------------------------

// child is one server of the fleet. It reports on stdout, one line each:
//
//	sid <hex>             the session ID of the key file it follows
//	port <n>              it listens on 127.0.0.1:<n>
//	revs <r1,r2,...>      its ticket key revisions (newest first), on change
//	follow-error <msg>    the follower's error, on change
//	handshake-error <msg> a failed handshake
//
// To every client that completes a handshake it writes one line,
// "resumed=<bool> revs=<r1,r2,...>", and closes. It exits when its stdin
// reaches EOF.
func child() int {
	var outMu sync.Mutex
	say := func(format string, args ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	fail := func(err error) int {
		say("fatal %v", err)
		return 1
	}
	lifetime, err := time.ParseDuration(os.Getenv(envLifetime))
	if err != nil {
		return fail(err)
	}
	poll, err := time.ParseDuration(os.Getenv(envPoll))
	if err != nil {
		return fail(err)
	}
	keys := os.Getenv(envKeys)
	cfg, err := libtls.NewConfig()
	if err != nil {
		return fail(err)
	}
	defer cfg.Close()
	if err := cfg.SetKeypairFile(os.Getenv(envCert), os.Getenv(envKey)); err != nil {
		return fail(err)
	}
	if err := cfg.SetSessionLifetime(lifetime); err != nil {
		return fail(err)
	}
	// Before Listen: libtls copies the session ID into the server.
	follower, err := libtls.FollowTicketKeyFile(cfg, keys, poll)
	if err != nil {
		return fail(err)
	}
	defer follower.Close()
	set, err := libtls.ReadTicketKeyFile(keys)
	if err != nil {
		return fail(err)
	}
	say("sid %x", set.SessionID)
	set.Zero()
	l, err := libtls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return fail(err)
	}
	defer l.Close()
	say("port %d", l.Addr().(*net.TCPAddr).Port)

	// Report key and follower changes.
	go func() {
		var lastRevs, lastErr string
		for {
			if r := joinRevs(cfg.TicketKeyRevisions()); r != lastRevs {
				lastRevs = r
				say("revs %s", r)
			}
			e := ""
			if err := follower.Err(); err != nil {
				e = err.Error()
			}
			if e != lastErr {
				lastErr = e
				say("follow-error %s", e)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				conn := c.(*libtls.Conn)
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(ioTimeout))
				if err := conn.Handshake(); err != nil {
					say("handshake-error %v", err)
					return
				}
				fmt.Fprintf(conn, "resumed=%v revs=%s\n", conn.SessionResumed(), joinRevs(cfg.TicketKeyRevisions()))
			}()
		}
	}()

	stdin := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdin)
	}()
	select {
	case <-stdin:
	case <-time.After(childMaxLife):
	}
	return 0
}

func joinRevs(revs []uint32) string {
	s := make([]string, len(revs))
	for i, r := range revs {
		s[i] = strconv.FormatUint(uint64(r), 10)
	}
	return strings.Join(s, ",")
}

// --- The parent's view of a child ------------------------------------------------

type server struct {
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	port   int
	sid    string
	revs   string // latest reported
	allRev []string
	errs   []string
	ready  chan struct{} // closed at "port"
	exited chan struct{} // closed when stdout ends
	stderr bytes.Buffer  // read only after exit
}

func (s *server) state() (revs string, errs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.revs, slices.Clone(s.errs)
}

func startServer(t *testing.T, name string, env []string) *server {
	t.Helper()
	s := &server{name: name, ready: make(chan struct{}), exited: make(chan struct{})}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = &s.stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	s.cmd = cmd
	go func() {
		defer close(s.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			kind, arg, _ := strings.Cut(sc.Text(), " ")
			s.mu.Lock()
			switch kind {
			case "sid":
				s.sid = arg
			case "port":
				s.port, _ = strconv.Atoi(arg)
				close(s.ready)
			case "revs":
				s.revs = arg
				s.allRev = append(s.allRev, arg)
			case "follow-error":
				if arg != "" {
					s.errs = append(s.errs, "follow: "+arg)
				}
			default:
				s.errs = append(s.errs, sc.Text())
			}
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		stdin.Close() // the child exits on EOF
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-s.exited
		}
		err := cmd.Wait()
		assert.NoError(t, err, "%s exit; stderr:\n%s", name, s.stderr.String())
		assert.NotContains(t, s.stderr.String(), "DATA RACE", name)
	})
	select {
	case <-s.ready:
	case <-s.exited:
		_, errs := s.state()
		t.Fatalf("%s exited before listening: %v", name, errs)
	case <-time.After(ioTimeout):
		t.Fatalf("%s did not report its port", name)
	}
	return s
}

// handshake dials srv, completes the handshake and returns the server's
// status line and whether the client resumed.
type result struct {
	server        string
	resumed       bool // client side
	serverResumed bool
	serverRevs    string
}

func handshake(t *testing.T, cfg *libtls.Config, srv *server) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	d := &libtls.Dialer{Config: cfg, ServerName: "localhost"}
	nc, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.port)))
	require.NoError(t, err, "dial %s", srv.name)
	c := nc.(*libtls.Conn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err, "status line from %s", srv.name)
	var r result
	_, err = fmt.Sscanf(strings.TrimSpace(line), "resumed=%t revs=%s", &r.serverResumed, &r.serverRevs)
	require.NoError(t, err, "status line %q", line)
	r.server, r.resumed = srv.name, c.SessionResumed()
	require.Equal(t, "TLSv1.2", c.ConnInfo().Version)
	return r
}

// TestFleet: three server processes follow one key file. A client with a
// session file goes round-robin through them; the parent rotates the key
// file halfway. On LibreSSL the first handshake is full and every later one
// resumes, on every server, across the rotation. On LibreTLS every server
// applied the same ID and keys, and nothing resumes, as Backend says.
func TestFleet(t *testing.T) {
	dir := t.TempDir()
	ca, err := testcert.NewCA("fleet CA")
	require.NoError(t, err)
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	require.NoError(t, err)
	caFile, certFile, keyFile, err := ca.Files(dir, leaf)
	require.NoError(t, err)

	// The key file, its first key backdated past 3/4 of the lifetime so
	// that the rotator's next run rotates it.
	keys := filepath.Join(dir, "ticket-keys")
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	set.Keys[0].Created = time.Now().Add(-fleetLifetime)
	require.NoError(t, libtls.WriteTicketKeyFile(keys, set))
	sid := hex.EncodeToString(set.SessionID)
	set.Zero()

	env := []string{
		envChild + "=1", envKeys + "=" + keys, envCert + "=" + certFile, envKey + "=" + keyFile,
		envLifetime + "=" + fleetLifetime.String(), envPoll + "=" + fleetPoll.String(),
	}
	var fleet []*server
	for i := range fleetSize {
		fleet = append(fleet, startServer(t, fmt.Sprintf("server%d", i), env))
	}

	client, err := libtls.NewConfig()
	require.NoError(t, err)
	defer client.Close()
	require.NoError(t, client.SetCAFile(caFile))
	require.NoError(t, client.SetProtocols(libtls.ProtocolTLSv1_2)) // TLS 1.3 never resumes
	sf, err := os.OpenFile(filepath.Join(dir, "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	defer sf.Close()
	require.NoError(t, client.SetSessionFile(sf))
	require.NoError(t, client.SetSessionScope(libtls.SessionPerServerName)) // one fleet at several addresses

	var results []result
	round := func() {
		for _, s := range fleet {
			results = append(results, handshake(t, client, s))
		}
	}
	waitRevs := func(want string) {
		for i := 0; ; i++ {
			all := true
			for _, s := range fleet {
				if r, _ := s.state(); r != want {
					all = false
				}
			}
			if all {
				return
			}
			if i > 2000 {
				t.Fatalf("servers did not all reach revisions %s", want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	start := time.Now()
	waitRevs("1")
	round()
	round()
	before := len(results)

	// The rotator's run: rev 2.
	rotated, changed, err := libtls.RotateTicketKeyFile(keys, fleetLifetime)
	require.NoError(t, err)
	require.True(t, changed, "rotation forced by the backdated key")
	require.Equal(t, uint32(2), rotated.Keys[len(rotated.Keys)-1].Rev)
	rotated.Zero()
	// Wait until every server applied it: until then a ticket under rev 2
	// from one server would get a full handshake on a server still at rev 1.
	waitRevs("2,1")
	round()
	round()
	elapsed := time.Since(start)

	resumes := libtls.Backend().ServerSessionResumption
	for i, r := range results {
		t.Logf("%2d %s: resumed=%v server-resumed=%v server-revs=%s", i, r.server, r.resumed, r.serverResumed, r.serverRevs)
		want := i > 0 && resumes
		assert.Equal(t, want, r.resumed, "handshake %d (%s): resumed on the client (backend %v)", i, r.server, libtls.Backend())
		assert.Equal(t, r.resumed, r.serverResumed, "handshake %d (%s): both sides agree", i, r.server)
		wantRevs := "1"
		if i >= before {
			wantRevs = "2,1"
		}
		assert.Equal(t, wantRevs, r.serverRevs, "handshake %d (%s): the fleet's keys, applied", i, r.server)
	}
	for _, s := range fleet {
		s.mu.Lock()
		assert.Equal(t, sid, s.sid, "%s follows the fleet's session ID", s.name)
		assert.Equal(t, []string{"1", "2,1"}, s.allRev, "%s: only the fleet's keys, no emergency keys", s.name)
		assert.Empty(t, s.errs, s.name)
		s.mu.Unlock()
	}
	t.Logf("%v: %d handshakes on %d servers across one rotation in %v", libtls.Backend(), len(results), len(fleet), elapsed.Round(time.Millisecond))
}
