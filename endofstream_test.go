package libtls

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// How connections end: a peer's half-close, CloseWrite, Close racing a
// Write, Close after a failed Write. Each test runs on both transports
// over loopback TCP, whatever GOLIBTLS_TRANSPORT says.

// forEachTransport runs f as a subtest on the socket transport and on the
// callback transport.
func forEachTransport(t *testing.T, f func(t *testing.T)) {
	for _, tr := range []struct {
		name string
		mode int32
	}{{"socket", transportAuto}, {"callback", transportCallback}} {
		t.Run(tr.name, func(t *testing.T) {
			withTransport(t, tr.mode, func() { f(t) })
		})
	}
}

// tlsVersions are the two versions the end-of-stream tests run with,
// forced on the crypto/tls peer.
var tlsVersions = []uint16{tls.VersionTLS12, tls.VersionTLS13}

// goPeerPair returns a golibtls end and a crypto/tls end of a loopback
// TCP connection after their handshake, the golibtls end as client or
// server, with the crypto/tls end limited to version, and the crypto/tls
// end's TCP connection.
func goPeerPair(t *testing.T, libtlsClient bool, version uint16) (*Conn, *tls.Conn, *net.TCPConn) {
	t.Helper()
	craw, sraw := tcpPair(t)
	var c *Conn
	var g *tls.Conn
	var graw net.Conn
	if libtlsClient {
		gcfg := goServerConfig(t)
		gcfg.MinVersion, gcfg.MaxVersion = version, version
		c, g, graw = newLibtlsClient(t, craw, newClientConfig(t), "localhost"), tls.Server(sraw, gcfg), sraw
		cerr, serr := handshakeBoth(c, g)
		require.NoError(t, cerr)
		require.NoError(t, serr)
	} else {
		gcfg := goClientConfig(t)
		gcfg.MinVersion, gcfg.MaxVersion = version, version
		c, g, graw = newLibtlsServer(t, sraw, newServerConfig(t)), tls.Client(craw, gcfg), craw
		cerr, serr := handshakeBoth(g, c)
		require.NoError(t, cerr)
		require.NoError(t, serr)
	}
	want := map[bool]string{true: "callback", false: "socket"}[forceTransport.Load() == transportCallback]
	require.Equal(t, want, c.TransportName())
	return c, g, graw.(*net.TCPConn)
}

// Issue 19, item 2: a peer that sends its request and shuts down its TCP
// write side at a record boundary, without close_notify, gets its reply, as
// crypto/tls gives it: the golibtls end reads the request and io.EOF, its
// reply goes out, and its Close sends close_notify and returns nil. Before,
// on LibreTLS the Read failed "unexpected eof while reading", the reply
// failed "write failed: Success" (the peer saw "error decoding message")
// and Close failed "shutdown while in init"; on LibreSSL Close failed "EOF
// without close notify".
func TestHalfCloseWithoutCloseNotify(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		for _, version := range tlsVersions {
			for _, libtlsClient := range []bool{false, true} {
				name := fmt.Sprintf("%s/libtls-client=%v", tls.VersionName(version), libtlsClient)
				t.Run(name, func(t *testing.T) {
					c, g, graw := goPeerPair(t, libtlsClient, version)
					_, err := g.Write([]byte("request"))
					require.NoError(t, err)
					require.NoError(t, graw.CloseWrite()) // no close_notify
					got, err := io.ReadAll(c)
					require.NoError(t, err, "io.EOF ends the request")
					require.Equal(t, "request", string(got))
					n, err := c.Read(make([]byte, 1))
					require.Equal(t, 0, n)
					require.Equal(t, io.EOF, err, "and again")

					_, err = c.Write([]byte("reply"))
					require.NoError(t, err)
					require.NoError(t, c.Close())
					got, err = io.ReadAll(g)
					require.NoError(t, err, "the peer sees the reply and close_notify")
					require.Equal(t, "reply", string(got))
				})
			}
		}
	})
}

// Issue 19, item 6: CloseWrite sends close_notify as crypto/tls's does;
// later Writes fail, Reads go on (the peer's reply, then its close_notify
// as io.EOF), and Close returns nil without sending another close_notify.
// Data that had already arrived when CloseWrite ran is not lost (LibreSSL's
// SSL_shutdown reads, and drops, application data after sending
// close_notify).
func TestCloseWrite(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		for _, version := range tlsVersions {
			for _, libtlsClient := range []bool{false, true} {
				name := fmt.Sprintf("%s/libtls-client=%v", tls.VersionName(version), libtlsClient)
				t.Run(name, func(t *testing.T) {
					c, g, _ := goPeerPair(t, libtlsClient, version)
					// Sent before CloseWrite, read after it.
					_, err := g.Write([]byte("early "))
					require.NoError(t, err)
					buf := make([]byte, 1)
					_, err = io.ReadFull(c, buf) // the first byte: it has arrived
					require.NoError(t, err)
					require.Equal(t, "e", string(buf))
					_, err = c.Write([]byte("request"))
					require.NoError(t, err)
					require.NoError(t, c.CloseWrite())

					got, err := io.ReadAll(g)
					require.NoError(t, err, "the peer reads close_notify as io.EOF")
					require.Equal(t, "request", string(got))

					_, err = c.Write([]byte("more"))
					var le *Error
					require.ErrorAs(t, err, &le, "Write after CloseWrite")
					require.Contains(t, le.Msg, "CloseWrite")

					_, err = g.Write([]byte("reply"))
					require.NoError(t, err)
					require.NoError(t, g.Close())
					got, err = io.ReadAll(c)
					require.NoError(t, err)
					require.Equal(t, "arly reply", string(got))

					require.NoError(t, c.CloseWrite(), "again: nothing more to send")
					require.NoError(t, c.Close())
					require.ErrorIs(t, c.CloseWrite(), net.ErrClosed)
				})
			}
		}
	})
	t.Run("BeforeHandshake", func(t *testing.T) {
		craw, _ := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		err := c.CloseWrite()
		var le *Error
		require.ErrorAs(t, err, &le)
		require.Contains(t, le.Msg, "before the handshake")
	})
	t.Run("LibtlsPeer", func(t *testing.T) {
		// Both ends golibtls: each closes its write side after its
		// message and reads the other's until io.EOF.
		forEachTransport(t, func(t *testing.T) {
			craw, sraw := tcpPair(t)
			c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			var wg sync.WaitGroup
			got := make([]string, 2)
			errs := make([]error, 2)
			for i, x := range []*Conn{c, s} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := x.Write([]byte(fmt.Sprintf("from %d", i))); err != nil {
						errs[i] = err
						return
					}
					if err := x.CloseWrite(); err != nil {
						errs[i] = err
						return
					}
					b, err := io.ReadAll(x)
					got[i], errs[i] = string(b), err
				}()
			}
			wg.Wait()
			require.NoError(t, errors.Join(errs...))
			require.Equal(t, []string{"from 1", "from 0"}, got)
			require.NoError(t, c.Close())
			require.NoError(t, s.Close())
		})
	})
}

// Issue 19, item 3: a Write that races Close fails with net.ErrClosed, as
// every other call after Close does, never with libtls's "protocol is
// shutdown" (Close had sent close_notify between two of the Write's
// records): about 1 round in 300 on the socket transport before, 4 to 11 on
// the callback transport. Interleaving replays that order step by step
// (it failed every time).
func TestWriteRacesClose(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		t.Run("Interleaving", func(t *testing.T) {
			// Step by step: a Write waits for writeMu while Close,
			// which holds it, sends close_notify.
			c, g, _ := goPeerPair(t, true, tls.VersionTLS13)
			go func() { _, _ = io.Copy(io.Discard, g) }()
			c.writeMu.Lock()
			write := async(func() error { _, err := c.Write([]byte("x")); return err })
			require.True(t, c.closed.CompareAndSwap(false, true)) // Close's first step
			close(c.closing)
			require.NoError(t, c.closeNotify())
			c.writeMu.Unlock()
			require.ErrorIs(t, write(), net.ErrClosed)
			_ = c.conn.Close() // Close's last steps
			c.free()
		})
		t.Run("Race", func(t *testing.T) {
			const rounds = 300
			gcfg := goServerConfig(t)
			ccfg := newClientConfig(t)
			var bad []string
			for round := range rounds {
				craw, sraw := tcpPair(t)
				c := newLibtlsClient(t, craw, ccfg, "localhost")
				g := tls.Server(sraw, gcfg)
				cerr, serr := handshakeBoth(c, g)
				require.NoError(t, cerr)
				require.NoError(t, serr)
				go func() { _, _ = io.Copy(io.Discard, g) }()
				done := make(chan error, 1)
				go func() {
					msg := []byte("x")
					for range 100_000 {
						if _, err := c.Write(msg); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				time.Sleep(time.Duration(round%4) * 100 * time.Microsecond)
				_ = c.Close()
				err := <-done
				if err != nil && !errors.Is(err, net.ErrClosed) {
					bad = append(bad, fmt.Sprintf("round %d: %v", round, err))
				}
				sraw.Close()
			}
			require.Empty(t, bad, "Writes racing Close that failed otherwise than net.ErrClosed")
		})
	})
}

// Issue 19, item 4: Close after a Write that timed out returns no error of
// libtls's own (on LibreTLS it failed "bad write retry": tls_close tried to
// send close_notify behind the record the Write left half sent). The
// stream is broken by then, so no close_notify is sent, as the peer could
// not read it anyway.
func TestCloseAfterWriteTimeout(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		c, g, _ := goPeerPair(t, true, tls.VersionTLS13)
		_ = g // never reads: the Write fills both socket buffers
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		_, err := requireFastN(t, func() (int, error) { return c.Write(make([]byte, 64<<20)) })
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		require.NoError(t, requireFast(t, 10*time.Second, c.Close))
	})
}

// Issue 19, item 5: a timeout reads as the net package's own ("read tcp
// A->B: i/o timeout"), not as one net error inside another ("read tcp
// A->B: raw-read tcp A->B: i/o timeout"), and is still a net.Error with
// Timeout() and os.ErrDeadlineExceeded.
func TestTimeoutErrorText(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		c, g, _ := goPeerPair(t, true, tls.VersionTLS13)
		addrs := fmt.Sprintf("tcp %s->%s", c.LocalAddr(), c.RemoteAddr())
		check := func(err error, op string) {
			t.Helper()
			require.Error(t, err)
			assert.Equal(t, op+" "+addrs+": i/o timeout", err.Error())
			assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			assert.True(t, ne.Timeout())
			assert.Equal(t, 1, strings.Count(err.Error(), "tcp "), "one net error, not two: %v", err)
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
		_, err := c.Read(make([]byte, 1))
		check(err, "read")
		_ = g // never reads
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(100*time.Millisecond)))
		_, err = c.Write(make([]byte, 64<<20))
		check(err, "write")
	})
}
