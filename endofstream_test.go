package libtls

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// How connections end: a peer's half-close, timeouts. Each test runs on
// both transports over loopback TCP, whatever GOLIBTLS_TRANSPORT says.

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
