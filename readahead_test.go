package libtls

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The socket transport's read-ahead and write coalescing, and the small
// Reads' plaintext buffer: what they hold and when, and that the record
// framing, the plain-text check and deadlines keep working with them.

// queued returns how many bytes wait in conn's socket receive queue, peeked
// at without waiting (up to 1 MiB).
func queued(t testing.TB, conn net.Conn) int {
	t.Helper()
	rc, err := conn.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	buf := make([]byte, 1<<20)
	n := 0
	var perr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}))
	if errors.Is(perr, syscall.EAGAIN) {
		return 0
	}
	require.NoError(t, perr)
	return n
}

// waitQueued waits (bounded) until at least n bytes wait in conn's socket.
func waitQueued(t testing.TB, conn net.Conn, n int) {
	t.Helper()
	for range 500 {
		if queued(t, conn) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.GreaterOrEqual(t, queued(t, conn), n, "bytes in the socket")
}

// tlsPairOnTCP returns a golibtls client on the socket transport and a
// crypto/tls server after their handshake and a first exchange (which
// takes TLS 1.3's session tickets out of the way), with the server's TCP
// connection.
func tlsPairOnTCP(t *testing.T) (*Conn, *tls.Conn, net.Conn, net.Conn) {
	t.Helper()
	var c *Conn
	var s *tls.Conn
	var craw, sraw net.Conn
	withTransport(t, transportAuto, func() {
		craw, sraw = tcpPair(t)
		c = newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		s = tls.Server(sraw, goServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
	})
	require.Equal(t, "socket", c.TransportName())
	_, err := s.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	return c, s, craw, sraw
}

// twoRecords sends two records of 2000 bytes from s and waits until they
// are in craw's socket.
func twoRecords(t *testing.T, s *tls.Conn, craw net.Conn) (a, b []byte) {
	t.Helper()
	a, b = bytes.Repeat([]byte("a"), 2000), bytes.Repeat([]byte("b"), 2000)
	_, err := s.Write(a)
	require.NoError(t, err)
	_, err = s.Write(b)
	require.NoError(t, err)
	waitQueued(t, craw, len(a)+len(b))
	return a, b
}

// One read takes everything that has arrived: a Read of one record leaves
// the next one read ahead (the socket is empty), and the buffer goes once
// libtls has taken it all. An idle connection holds no buffer.
func TestReadAheadBuffer(t *testing.T) {
	c, s, craw, _ := tlsPairOnTCP(t)
	_, _, rbuf, wbuf, ok := c.socketBuffers()
	require.True(t, ok)
	require.False(t, rbuf || wbuf, "an idle connection holds no buffer")

	a, b := twoRecords(t, s, craw)

	buf := make([]byte, len(a))
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, a, buf[:n])
	ahead, _, rbuf, _, _ := c.socketBuffers()
	require.True(t, rbuf, "the second record is read ahead")
	require.Greater(t, ahead, len(b), "the whole second record (and its header and tag) is read ahead")
	require.Zero(t, queued(t, craw), "nothing is left in the socket")

	n, err = c.Read(buf)
	require.NoError(t, err)
	require.Equal(t, b, buf[:n], "the record read ahead")
	ahead, pending, rbuf, wbuf, _ := c.socketBuffers()
	require.Zero(t, ahead)
	require.Zero(t, pending)
	require.False(t, rbuf || wbuf, "the buffers go once empty")
}

// A Write's records are on the wire when it returns: the peer's socket
// holds them without another call on the writer. (A record of 16 KiB goes
// out at once, the small one after it through the output buffer.)
func TestWriteFlushedBeforeReturn(t *testing.T) {
	c, s, _, sraw := tlsPairOnTCP(t)
	msg := bytes.Repeat([]byte("0123456789abcdef"), (16<<10+100)/16)
	n, err := c.Write(msg)
	require.NoError(t, err)
	require.Equal(t, len(msg), n)
	_, pending, _, wbuf, _ := c.socketBuffers()
	require.Zero(t, pending)
	require.False(t, wbuf)
	waitQueued(t, sraw, len(msg)+2*(5+16)) // two records: header and tag each
	got := make([]byte, len(msg))
	_, err = io.ReadFull(s, got)
	require.NoError(t, err)
	require.Equal(t, msg, got)

	// A few small Writes, each a record of its own, each sent at once.
	for i := range 3 {
		_, err := c.Write([]byte{byte('0' + i)})
		require.NoError(t, err)
		waitQueued(t, sraw, 5+1+16)
		one := make([]byte, 1)
		_, err = io.ReadFull(s, one)
		require.NoError(t, err)
		require.Equal(t, byte('0'+i), one[0])
	}
}

// With socket buffers far smaller than a record and a slow reader, Writes
// meet a full socket again and again: a Write returns only after all its
// records have left (nothing is left in the output buffer when it
// returns), in order, so the peer reads every byte while the writer makes
// no further call.
func TestWriteWaitsForSocketSpace(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		craw, sraw := tcpPair(t)
		require.NoError(t, craw.(*net.TCPConn).SetWriteBuffer(8192))
		require.NoError(t, sraw.(*net.TCPConn).SetReadBuffer(8192))
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		s := tls.Server(sraw, goServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		// Small records (through the output buffer) and large ones (sent
		// at once).
		sizes := []int{3000, 16<<10 + 100, 3000, 3000, 16 << 10, 1000}
		const rounds = 12
		chunk := func(i int) []byte {
			b := make([]byte, sizes[i%len(sizes)])
			for j := range b {
				b[j] = byte(i + j*7)
			}
			return b
		}
		werr := make(chan error, 1)
		go func() {
			for i := range rounds {
				if _, err := c.Write(chunk(i)); err != nil {
					werr <- err
					return
				}
				if _, pending, _, wbuf, ok := c.socketBuffers(); ok && (pending != 0 || wbuf) {
					werr <- fmt.Errorf("write %d returned with %d bytes not sent", i, pending)
					return
				}
			}
			werr <- nil
		}()
		for i := range rounds {
			if i%3 == 0 {
				time.Sleep(2 * time.Millisecond) // let the socket fill
			}
			want := chunk(i)
			got := make([]byte, len(want))
			_, err := io.ReadFull(s, got)
			require.NoError(t, err, "chunk %d", i)
			require.Equal(t, want, got, "chunk %d", i)
		}
		require.NoError(t, <-werr)
	})
}

// A stream cut inside a record while that record's first bytes are read
// ahead is still a truncation, not io.EOF; a stream that ends right after
// a record read ahead is io.EOF (a half-close). The framing follows what
// libtls takes from the buffer, not what the socket gave.
func TestTruncatedRecordWithReadAhead(t *testing.T) {
	for _, cut := range []bool{true, false} {
		t.Run(map[bool]string{true: "Cut", false: "Whole"}[cut], func(t *testing.T) {
			withTransport(t, transportAuto, func() { readAheadEnd(t, cut) })
		})
	}
}

func readAheadEnd(t *testing.T, cut bool) {
	craw, sraw := tcpPair(t)
	c, s, hs := holdingGoServer(t, craw, sraw)
	hs.setHold()
	// Large enough for a Read straight into the caller's buffer, which
	// stops when that is full.
	first := bytes.Repeat([]byte("the first record arrives whole. "), 50)
	_, err := s.Write(first)
	require.NoError(t, err)
	rec := bytes.Clone(hs.release()) // the tickets and the first record
	hs.setHold()
	last := []byte("the second record")
	_, err = s.Write(last)
	require.NoError(t, err)
	second := hs.release()[len(rec):] // holdConn keeps what it held before
	if cut {
		second = second[:len(second)-3]
	}
	wire := append(rec, second...)
	_, err = sraw.Write(wire)
	require.NoError(t, err)
	require.NoError(t, sraw.(*net.TCPConn).CloseWrite())
	waitQueued(t, craw, len(wire))

	buf := make([]byte, len(first))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, first, buf)
	ahead, _, _, _, _ := c.socketBuffers()
	require.Equal(t, len(second), ahead, "the second record is read ahead")

	got, err := io.ReadAll(c)
	if !cut {
		require.NoError(t, err, "io.EOF after the last record")
		require.Equal(t, last, got)
		return
	}
	require.Empty(t, got)
	require.Error(t, err)
	var le *Error
	require.ErrorAs(t, err, &le)
	if Backend().Name == "LibreSSL" {
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the binding saw the cut")
	} else {
		require.Contains(t, strings.ToLower(le.Msg), "unexpected eof", "OpenSSL saw the cut")
	}
}

// Bytes read ahead are a readable socket: a Read takes them whatever its
// deadline (it never waits in the netpoller for bytes that are already
// here), and a Read that timed out loses none of them.
func TestReadAheadAndDeadlines(t *testing.T) {
	c, s, craw, _ := tlsPairOnTCP(t)
	a, b := twoRecords(t, s, craw)
	buf := make([]byte, len(a))
	_, err := io.ReadFull(c, buf)
	require.NoError(t, err)
	ahead, _, _, _, _ := c.socketBuffers()
	require.Greater(t, ahead, 0)

	require.NoError(t, c.SetReadDeadline(time.Now().Add(-time.Second)))
	_, err = c.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded, "an expired deadline is an expired deadline")
	ahead2, _, _, _, _ := c.socketBuffers()
	require.Equal(t, ahead, ahead2, "the timed-out Read took nothing")

	// Far enough that a Read waiting for the socket would fail the test
	// on the connection's own deadline first (tcpPair's).
	require.NoError(t, c.SetReadDeadline(time.Now().Add(time.Hour)))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, b, buf)
}

// The plain-text check peeks: the bytes of a peer that does not speak TLS
// stay in the socket, all of them, for the plain-text answer's side.
func TestRecordHeaderErrorLeavesBytes(t *testing.T) {
	withTransport(t, transportAuto, func() {
		craw, sraw := tcpPair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		req := "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: plain\r\n\r\n"
		_, err := craw.Write([]byte(req))
		require.NoError(t, err)
		require.NoError(t, craw.(*net.TCPConn).CloseWrite())
		err = s.Handshake()
		var rhe *RecordHeaderError
		require.ErrorAs(t, err, &rhe)
		got, err := io.ReadAll(rhe.Conn)
		require.NoError(t, err)
		require.Equal(t, req, string(got), "the request is still in the socket")
	})
}

// A small Read (an HTTP/2 server reads each frame's 9-byte header) takes
// what libtls has into a pooled buffer, and the Reads that follow take it
// from there; the buffer goes back once empty. Close ends those Reads too.
func TestSmallReadsBuffered(t *testing.T) {
	forEachTransport(t, func(t *testing.T) {
		c, s := goPeerPairTLS13(t)
		msg := make([]byte, 3000)
		for i := range msg {
			msg[i] = byte(i % 251)
		}
		_, err := s.Write(msg)
		require.NoError(t, err)
		got := make([]byte, 0, len(msg))
		buf := make([]byte, 9)
		n, err := c.Read(buf)
		require.NoError(t, err)
		got = append(got, buf[:n]...)
		require.NotNil(t, c.rbuf, "the rest of the record waits in the plaintext buffer")
		for len(got) < len(msg) {
			n, err := c.Read(buf)
			require.NoError(t, err)
			got = append(got, buf[:n]...)
		}
		require.Equal(t, msg, got)
		require.Nil(t, c.rbuf, "the buffer goes once empty")

		_, err = s.Write(msg[:100])
		require.NoError(t, err)
		_, err = c.Read(buf)
		require.NoError(t, err)
		require.NotNil(t, c.rbuf)
		require.NoError(t, c.Close())
		_, err = c.Read(buf)
		require.ErrorIs(t, err, net.ErrClosed, "Close ends Reads of buffered data too")
	})
}

// goPeerPairTLS13 is goPeerPair with a golibtls client and TLS 1.3, after
// the session tickets have been read.
func goPeerPairTLS13(t *testing.T) (*Conn, *tls.Conn) {
	c, g, _ := goPeerPair(t, true, tls.VersionTLS13)
	_, err := g.Write([]byte("x"))
	require.NoError(t, err)
	_, err = io.ReadFull(c, make([]byte, 1))
	require.NoError(t, err)
	return c, g
}

// The connections of a client that talks to one server over and over
// share the parsed peer chain (as crypto/tls's resumed connections do),
// each with its own slice; the cache forgets the chain once no connection
// holds it.
func TestPeerChainParsedOnce(t *testing.T) {
	ccfg := newClientConfig(t)
	states := make([]tls.ConnectionState, 2)
	var key string
	func() {
		for i := range states {
			craw, sraw := tcpPair(t)
			c, err := Client(craw, ccfg, "localhost") // not kept by a cleanup
			require.NoError(t, err)
			s := tls.Server(sraw, goServerConfig(t))
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			states[i] = c.ConnectionState()
			require.NotEmpty(t, states[i].PeerCertificates)
			key = string(c.ConnInfo().PeerCertificateChainPEM)
			require.NoError(t, c.Close())
		}
	}()
	a, b := states[0].PeerCertificates, states[1].PeerCertificates
	require.Same(t, a[0], b[0], "parsed once")
	a[0] = nil
	require.NotNil(t, b[0], "each connection has its own slice")
	require.True(t, chainCached(key), "the chain is cached while connections hold it")
	clear(states)
	for range 100 {
		runtime.GC()
		if !chainCached(key) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.False(t, chainCached(key), "the cache forgets a chain nobody holds")
}

// chainCached reports whether the chain cache has an entry for chainPEM.
func chainCached(chainPEM string) bool {
	chainCache.Lock()
	defer chainCache.Unlock()
	_, ok := chainCache.m[chainPEM]
	return ok
}
