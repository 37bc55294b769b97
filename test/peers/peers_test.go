// Package peers_test runs golibtls against TLS peers that nobody here
// wrote, as separate processes: Python's ssl module (OpenSSL), driven by
// testdata/peer.py. Every test runs on both transports: the socket
// transport (a *net.TCPConn) and the callback transport (the same
// connection behind a wrapper that hides its socket).
package peers_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// testTimeout bounds every wait: a hang shows as a failure.
const testTimeout = 30 * time.Second

// pki is a CA and a "localhost" certificate, as PEM and as files.
type pki struct {
	ca                        *testcert.CA
	leaf                      *testcert.Leaf
	caFile, certFile, keyFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := testcert.NewCA("golibtls peers CA")
	require.NoError(t, err)
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	require.NoError(t, err)
	p := &pki{ca: ca, leaf: leaf}
	p.caFile, p.certFile, p.keyFile, err = ca.Files(t.TempDir(), leaf)
	require.NoError(t, err)
	return p
}

// transports are the two ways a golibtls Conn moves ciphertext.
var transports = []string{"socket", "callback"}

// onTransport returns raw as it is (a *net.TCPConn: the socket transport)
// or behind a wrapper that hides its socket (the callback transport).
func onTransport(raw net.Conn, transport string) net.Conn {
	if transport == "callback" {
		return struct{ net.Conn }{raw}
	}
	return raw
}

// peer is a running testdata/peer.py; its stderr goes to the test's.
type peer struct {
	cmd  *exec.Cmd
	out  *bufio.Reader
	port string // a server's
}

// startPeer starts peer.py with role ("server" or "client"), mode and
// count; a client connects to port. A server's port is read from its
// first line.
func startPeer(t *testing.T, p *pki, role, mode string, count int, port string) *peer {
	t.Helper()
	python, err := exec.LookPath("python3")
	require.NoError(t, err, "python3 is needed (Debian: python3)")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	args := []string{filepath.Join("testdata", "peer.py"), role, mode, fmt.Sprint(count), p.certFile, p.keyFile, p.caFile}
	if port != "" {
		args = append(args, port)
	}
	cmd := exec.CommandContext(ctx, python, args...)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	pr := &peer{cmd: cmd, out: bufio.NewReader(stdout)}
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil { // result has not waited
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	if role == "server" {
		line, err := pr.out.ReadString('\n')
		require.NoError(t, err, "peer.py did not start (its stderr is above)")
		pr.port = strings.TrimSpace(line)
	}
	return pr
}

// result waits for the peer to exit and returns its output lines after
// the port.
func (p *peer) result(t *testing.T) []string {
	t.Helper()
	b, err := io.ReadAll(p.out)
	require.NoError(t, err)
	require.NoError(t, p.cmd.Wait(), "peer.py failed (its stderr is above)")
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// dialPeer connects a golibtls client to a peer.py server.
func dialPeer(t *testing.T, p *pki, pr *peer, transport string) *libtls.Conn {
	t.Helper()
	raw, err := net.Dial("tcp", "127.0.0.1:"+pr.port)
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(p.ca.CertPEM))
	c, err := libtls.Client(onTransport(raw, transport), cfg, "localhost")
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.Equal(t, transport, c.TransportName())
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c
}

// acceptPeer starts a peer.py client against a golibtls server and returns
// the server's Conn.
func acceptPeer(t *testing.T, p *pki, mode string, count int, transport string) (*libtls.Conn, *peer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetKeypair(p.leaf.CertPEM, p.leaf.KeyPEM))
	srv, err := libtls.NewServer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	_, port, err := net.SplitHostPort(l.Addr().String())
	require.NoError(t, err)
	pr := startPeer(t, p, "client", mode, count, port)
	require.NoError(t, l.(*net.TCPListener).SetDeadline(time.Now().Add(testTimeout)))
	raw, err := l.Accept()
	require.NoError(t, err, "peer.py did not connect (its stderr is above)")
	t.Cleanup(func() { raw.Close() })
	c, err := srv.Accept(onTransport(raw, transport))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	require.Equal(t, transport, c.TransportName())
	require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
	return c, pr
}

// helloThenBye reads the "hello" the peer sends after its non-data
// records, then replies.
func helloThenBye(t *testing.T, c *libtls.Conn, pr *peer) {
	t.Helper()
	buf := make([]byte, 16)
	n, err := io.ReadAtLeast(c, buf, len("hello"))
	require.NoError(t, err)
	require.Equal(t, "hello", string(buf[:n]))
	replyAndClose(t, c, pr)
}

// replyAndClose sends "bye", closes (close_notify) and checks that the
// peer read it.
func replyAndClose(t *testing.T, c *libtls.Conn, pr *peer) {
	t.Helper()
	_, err := c.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.Equal(t, []string{"read: b'bye'"}, pr.result(t))
}

// Issue 19, item 1: a TLS 1.3 server that sends 100 session tickets before
// its data. On the socket transport the Read hung before (with a deadline:
// timed out) although "hello" was in the socket: after 64 tickets read
// without the socket running dry it waited in the netpoller, whose
// readiness had been used up.
func TestManyTicketsBeforeData(t *testing.T) {
	p := newPKI(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			pr := startPeer(t, p, "server", "tickets", 100, "")
			helloThenBye(t, dialPeer(t, p, pr, tr), pr)
		})
	}
}

// Item 1 for KeyUpdate messages, from a server to a golibtls client and
// from a client to a golibtls server (the same hang before).
func TestKeyUpdatesBeforeData(t *testing.T) {
	p := newPKI(t)
	for _, tr := range transports {
		t.Run(tr+"/from-server", func(t *testing.T) {
			pr := startPeer(t, p, "server", "keyupdate", 100, "")
			helloThenBye(t, dialPeer(t, p, pr, tr), pr)
		})
		t.Run(tr+"/from-client", func(t *testing.T) {
			c, pr := acceptPeer(t, p, "keyupdate", 100, tr)
			helloThenBye(t, c, pr)
		})
	}
}

// Item 1's bound: a peer that sends non-data records and never data (an
// endless flood) gets a clear error, promptly, never a Read that waits for
// its deadline or forever: the binding's after 1,000 records on LibreTLS,
// LibreSSL's own after 100. Before, the socket transport's Read waited for
// its deadline, and the callback transport's until the peer gave up.
func TestNonDataRecordFlood(t *testing.T) {
	p := newPKI(t)
	for _, tr := range transports {
		for _, tc := range []struct{ role, mode string }{
			{"server", "flood-tickets"},
			{"server", "flood-keyupdate"},
			{"client", "flood-keyupdate"},
		} {
			t.Run(fmt.Sprintf("%s/%s/%s", tr, tc.role, tc.mode), func(t *testing.T) {
				var c *libtls.Conn
				var pr *peer
				if tc.role == "server" {
					pr = startPeer(t, p, "server", tc.mode, 0, "")
					c = dialPeer(t, p, pr, tr)
				} else {
					c, pr = acceptPeer(t, p, tc.mode, 0, tr)
				}
				_, err := c.Read(make([]byte, 16))
				require.Error(t, err)
				t.Logf("%s: %v", libtls.Backend().Name, err)
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "the Read waited for its deadline: %v", err)
				var le *libtls.Error
				require.ErrorAs(t, err, &le)
				if libtls.Backend().Name == "LibreSSL" {
					// LibreSSL allows 100 post-handshake messages an
					// hour and then sends a fatal alert of its own.
					require.Contains(t, le.Msg, "unexpected message")
				} else {
					require.Contains(t, le.Msg, "too many non-advancing records")
				}
				require.NoError(t, c.Close())
				out := pr.result(t)
				require.Len(t, out, 1)
				assert.True(t, strings.HasPrefix(out[0], "sent: "), "%q", out)
			})
		}
	}
}

// Item 2 against Python: a client that sends its request and shuts down its
// write side without close_notify gets the golibtls server's reply and its
// close_notify.
func TestHalfCloseFromPython(t *testing.T) {
	p := newPKI(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			c, pr := acceptPeer(t, p, "halfclose", 0, tr)
			got, err := io.ReadAll(c)
			require.NoError(t, err)
			require.Equal(t, "request", string(got))
			replyAndClose(t, c, pr)
		})
	}
}

func TestMain(m *testing.M) {
	// peer.py is found relative to the package directory.
	if _, err := os.Stat(filepath.Join("testdata", "peer.py")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
