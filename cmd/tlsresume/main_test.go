package main

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/testcert"
)

// TestMain doubles as "tlsresume" for the serve processes the demo and the
// tests start: os.Executable is the test binary then.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv("GORACE") == "" {
		// Children under -race would otherwise sleep a second at exit.
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}

// runCmd runs the command line in-process and returns its exit status and
// outputs.
func runCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	t.Logf("tlsresume %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, stdout.String(), stderr.String())
	return code, stdout.String(), stderr.String()
}

// testPKI is a throwaway CA and a certificate for localhost and 127.0.0.1,
// also written to files in a temporary directory.
type testPKI struct {
	ca                        *testcert.CA
	leaf                      *testcert.Leaf
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := testcert.NewCA("tlsresume test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{ca: ca, leaf: leaf}
	if p.caFile, p.certFile, p.keyFile, err = ca.Files(t.TempDir(), leaf); err != nil {
		t.Fatal(err)
	}
	return p
}

// goServer starts a crypto/tls server on loopback that completes handshakes
// and reads until the client closes.
func goServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// roundRobin is a TCP forwarder on loopback that sends each connection to
// the next backend in turn, like a load balancer in front of a fleet.
type roundRobin struct {
	addr     string
	backends []string
	counts   []atomic.Int32
}

func newRoundRobin(t *testing.T, backends ...string) *roundRobin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rr := &roundRobin{addr: ln.Addr().String(), backends: backends, counts: make([]atomic.Int32, len(backends))}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b := i % len(backends)
			rr.counts[b].Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				u, err := net.DialTimeout("tcp", backends[b], 5*time.Second)
				if err != nil {
					return
				}
				defer u.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(u, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
				<-done
				c.Close()
				u.Close()
				<-done
			}()
		}
	}()
	return rr
}

// oneLine checks that s is exactly one line containing every want.
func oneLine(t *testing.T, s string, want ...string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("want exactly one line on stderr, got %q", s)
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("stderr %q does not contain %q", s, w)
		}
	}
}
