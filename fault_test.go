package libtls

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// requireHandshakeFailed checks that err is a prompt handshake failure
// with libtls's text, not a deadline hit because the connection hung.
func requireHandshakeFailed(t testing.TB, err error) *Error {
	t.Helper()
	require.Error(t, err)
	require.NotErrorIs(t, err, os.ErrDeadlineExceeded, "the handshake hung until the test's deadline")
	var le *Error
	require.ErrorAs(t, err, &le)
	require.Equal(t, "handshake", le.Op)
	require.NotEmpty(t, le.Msg)
	return le
}

// clientHello captures the first record crypto/tls sends as a client.
func clientHello(t testing.TB) []byte {
	t.Helper()
	a, b := pipePair(t)
	go func() { _ = tls.Client(a, goClientConfig(t)).Handshake() }()
	rec := readRecord(t, b)
	a.Close()
	return rec
}

// readRecord reads one TLS record (header and body) from c.
func readRecord(t testing.TB, c net.Conn) []byte {
	t.Helper()
	hdr := make([]byte, 5)
	_, err := io.ReadFull(c, hdr)
	require.NoError(t, err)
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	return append(hdr, body...)
}

// relay copies between a and b, but only the first limit bytes from b to
// a; then it closes both. It returns when both directions are done.
func relay(a, b net.Conn, limit int64) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(b, a)
		b.Close()
	}()
	go func() {
		defer wg.Done()
		_, _ = io.CopyN(a, b, limit)
		a.Close()
		b.Close()
	}()
	wg.Wait()
}

func TestPeerClosesMidHandshake(t *testing.T) {
	hello := clientHello(t)
	require.Equal(t, byte(0x16), hello[0], "a handshake record")

	// A server whose client stops part of the way through its first
	// flight.
	for _, cut := range []int{0, 3, len(hello) / 2, len(hello) - 1} {
		t.Run(fmt.Sprintf("LibtlsServer/ClientHello[:%d]", cut), func(t *testing.T) {
			craw, sraw := tcpPair(t)
			s := newLibtlsServer(t, sraw, newServerConfig(t))
			_, err := craw.Write(hello[:cut])
			require.NoError(t, err)
			require.NoError(t, craw.(*net.TCPConn).CloseWrite())
			le := requireHandshakeFailed(t, s.Handshake())
			require.Contains(t, strings.ToLower(le.Msg), "unexpected eof")
		})
	}
	// A server whose client leaves after the whole ClientHello, while the
	// server waits for the client's second flight.
	t.Run("LibtlsServer/AfterClientHello", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		_, err := craw.Write(hello)
		require.NoError(t, err)
		go func() {
			// Read the server's flight, then leave without answering.
			_ = readRecord(t, craw)
			craw.Close()
		}()
		requireHandshakeFailed(t, s.Handshake())
	})

	// A client whose server stops part of the way through its flight.
	for _, limit := range []int64{0, 3, 60, 400} {
		t.Run(fmt.Sprintf("LibtlsClient/ServerFlight[:%d]", limit), func(t *testing.T) {
			craw, mid := tcpPair(t)
			mid2, sraw := tcpPair(t)
			go func() { _ = tls.Server(sraw, goServerConfig(t)).Handshake() }()
			go relay(mid, mid2, limit)
			c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
			le := requireHandshakeFailed(t, c.Handshake())
			require.Regexp(t, "(?i)eof|reset", le.Error())
		})
	}

	// Both ends golibtls, over net.Pipe: the client's transport goes away
	// right after its ClientHello.
	t.Run("LibtlsBoth/Pipe", func(t *testing.T) {
		craw, sraw := pipePair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		c := newLibtlsClient(t, &closeAfterWrite{Conn: craw}, newClientConfig(t), "localhost")
		wait := async(c.Handshake)
		requireHandshakeFailed(t, s.Handshake())
		requireHandshakeFailed(t, wait())
	})
}

// closeAfterWrite closes itself after its first Write.
type closeAfterWrite struct{ net.Conn }

func (c *closeAfterWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}

func TestGarbageInsteadOfHandshake(t *testing.T) {
	for _, garbage := range []string{
		"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
		"\x16\x03\x01\x00\x05hello", // a handshake record that is no ClientHello
		strings.Repeat("\x00", 64),
	} {
		t.Run(fmt.Sprintf("LibtlsServer/%q", garbage[:5]), func(t *testing.T) {
			craw, sraw := tcpPair(t)
			s := newLibtlsServer(t, sraw, newServerConfig(t))
			go func() { _, _ = craw.Write([]byte(garbage)) }() // and stay connected
			le := requireHandshakeFailed(t, s.Handshake())
			if garbage[0] == 0x16 {
				require.True(t, strings.HasPrefix(le.Msg, "handshake failed: "), le.Msg)
			} else {
				// Bytes that cannot start TLS never reach libtls
				// (recordheader.go).
				var rhe *RecordHeaderError
				require.ErrorAs(t, le, &rhe)
				require.Equal(t, garbage[:5], string(rhe.RecordHeader[:]))
			}
			require.Equal(t, le, s.Handshake(), "the failure is final")
		})
	}
	t.Run("LibtlsClient", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		go func() {
			_ = readRecord(t, sraw)
			_, _ = sraw.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
		}()
		le := requireHandshakeFailed(t, c.Handshake())
		require.True(t, strings.HasPrefix(le.Msg, "handshake failed: "), le.Msg)
		_, err := c.Write([]byte("x"))
		require.Equal(t, le, err)
	})
}

// --- Deadlines and cancellation ---------------------------------------------------

// silentPeer accepts TCP connections and never writes to them.
func silentPeer(t testing.TB) net.Listener {
	t.Helper()
	l := loopback(t)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l
}

// requireFast checks that f returns within limit and returns its error.
func requireFast(t testing.TB, limit time.Duration, f func() error) error {
	t.Helper()
	start := time.Now()
	err := f()
	require.Less(t, time.Since(start), limit, "took too long")
	return err
}

func TestPeerNeverAnswers(t *testing.T) {
	const wait = 100 * time.Millisecond
	t.Run("LibtlsClient/Deadline", func(t *testing.T) {
		l := silentPeer(t)
		raw, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		c := newLibtlsClient(t, raw, newClientConfig(t), "localhost")
		require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
		err = requireFast(t, 10*time.Second, c.Handshake)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
		var le *Error
		require.ErrorAs(t, err, &le)
		require.Equal(t, "handshake", le.Op)
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout())
		// The C context cannot continue a handshake cut off mid-way.
		require.NoError(t, c.SetDeadline(time.Time{}))
		require.Equal(t, err, c.Handshake())
	})
	t.Run("LibtlsClient/WriteDeadlineOnPipe", func(t *testing.T) {
		// Nobody reads the pipe: the ClientHello's write times out.
		craw, _ := pipePair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(wait)))
		err := requireFast(t, 10*time.Second, c.Handshake)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("LibtlsClient/DialContext", func(t *testing.T) {
		l := silentPeer(t)
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		err := requireFast(t, 10*time.Second, func() error {
			_, err := DialContext(ctx, "tcp", l.Addr().String(), newClientConfig(t))
			return err
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("LibtlsServer/Deadline", func(t *testing.T) {
		_, sraw := tcpPair(t) // the client end never writes
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		require.NoError(t, s.SetReadDeadline(time.Now().Add(wait)))
		err := requireFast(t, 10*time.Second, s.Handshake)
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
	t.Run("LibtlsServer/Listener", func(t *testing.T) {
		l, err := NewListener(loopback(t), newServerConfig(t))
		require.NoError(t, err)
		defer l.Close()
		raw, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		defer raw.Close()
		c, err := l.Accept()
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(wait)))
		err = requireFast(t, 10*time.Second, func() error {
			_, err := c.Read(make([]byte, 1)) // the handshake runs first
			return err
		})
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

func TestHandshakeContext(t *testing.T) {
	t.Run("Cancel", func(t *testing.T) {
		l := silentPeer(t)
		raw, err := net.Dial("tcp", l.Addr().String())
		require.NoError(t, err)
		c := newLibtlsClient(t, raw, newClientConfig(t), "localhost")
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		err = requireFast(t, 10*time.Second, func() error { return c.HandshakeContext(ctx) })
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, os.ErrDeadlineExceeded)
		// As in crypto/tls, the transport is closed.
		_, err = raw.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
	})
	t.Run("Timeout", func(t *testing.T) {
		_, sraw := pipePair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := requireFast(t, 10*time.Second, func() error { return s.HandshakeContext(ctx) })
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("AlreadyCanceled", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		require.ErrorIs(t, c.HandshakeContext(ctx), context.Canceled)
		// Nothing was sent: the handshake can still run.
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
	})
	t.Run("DoneAfterSuccess", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		ctx, cancel := context.WithCancel(context.Background())
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		cancel()
		// A completed handshake ignores later contexts, and a canceled
		// context does not reach into the connection afterwards.
		require.NoError(t, c.HandshakeContext(ctx))
		go echo(s)
		ping(t, c, "still alive")
	})
}

// holdConn holds back what is written to it while hold is set.
type holdConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool
	held []byte
}

func (h *holdConn) Write(p []byte) (int, error) {
	h.mu.Lock()
	if h.hold {
		h.held = append(h.held, p...)
		h.mu.Unlock()
		return len(p), nil
	}
	h.mu.Unlock()
	return h.Conn.Write(p)
}

// setHold keeps what is written from now on.
func (h *holdConn) setHold() {
	h.mu.Lock()
	h.hold = true
	h.mu.Unlock()
}

// holdingGoServer is a golibtls client on craw and a crypto/tls server on
// sraw through a holdConn, after their handshake.
func holdingGoServer(t *testing.T, craw, sraw net.Conn) (*Conn, *tls.Conn, *holdConn) {
	t.Helper()
	hs := &holdConn{Conn: sraw}
	c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
	s := tls.Server(hs, goServerConfig(t))
	cerr, serr := handshakeBoth(c, s)
	require.NoError(t, cerr)
	require.NoError(t, serr)
	return c, s, hs
}

func (h *holdConn) release() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hold = false
	return h.held
}

// TestReadRetryAfterDeadline checks that a Read that timed out, even in
// the middle of a record, can be retried once the deadline is moved.
func TestReadRetryAfterDeadline(t *testing.T) {
	for _, tr := range []struct {
		name string
		pair func(testing.TB) (net.Conn, net.Conn)
	}{{"TCP", tcpPair}, {"Pipe", pipePair}} {
		t.Run(tr.name, func(t *testing.T) {
			craw, sraw := tr.pair(t)
			c, s, hs := holdingGoServer(t, craw, sraw)

			// Nothing sent yet: the Read times out.
			require.NoError(t, c.SetReadDeadline(time.Now().Add(50*time.Millisecond)))
			n, err := c.Read(make([]byte, 16))
			require.Equal(t, 0, n)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)

			// Half a record arrives: the Read still times out...
			hs.setHold()
			_, err = s.Write([]byte("hello, again"))
			require.NoError(t, err)
			rec := hs.release()
			require.Greater(t, len(rec), 10)
			go func() { _, _ = sraw.Write(rec[:10]) }()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
			n, err = c.Read(make([]byte, 16))
			require.Equal(t, 0, n)
			require.ErrorIs(t, err, os.ErrDeadlineExceeded)

			// ...and the rest completes it once the deadline is moved.
			go func() { _, _ = sraw.Write(rec[10:]) }()
			require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
			buf := make([]byte, 16)
			n, err = c.Read(buf)
			require.NoError(t, err)
			require.Equal(t, "hello, again", string(buf[:n]))

			// Writes were never affected.
			go func() { _, _ = io.Copy(io.Discard, s) }()
			_, err = c.Write([]byte("ok"))
			require.NoError(t, err)
		})
	}
	t.Run("WriteDeadline", func(t *testing.T) {
		// Over net.Pipe a peer that does not read blocks the writer.
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.NoError(t, c.SetWriteDeadline(time.Now().Add(50*time.Millisecond)))
		_, err := requireFastN(t, func() (int, error) { return c.Write(make([]byte, 1<<20)) })
		require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	})
}

// requireFastN is requireFast for a Read or Write.
func requireFastN(t testing.TB, f func() (int, error)) (int, error) {
	t.Helper()
	var n int
	err := requireFast(t, 10*time.Second, func() error {
		var err error
		n, err = f()
		return err
	})
	return n, err
}

// --- Close ------------------------------------------------------------------------

// closeErrorOK reports whether err is what a Read, Write or Handshake may
// return when either end closes under it.
func closeErrorOK(err error) bool {
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrClosedPipe) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	var le *Error       // a failed handshake or an alert from the peer
	var oe *net.OpError // the peer's socket went away (connection reset)
	return errors.As(err, &le) || errors.As(err, &oe)
}

// TestCloseRacesReadWrite closes connections while many goroutines read,
// write and handshake on them. It must not panic, hang, leak goroutines or
// race, and the C contexts must be freed.
func TestCloseRacesReadWrite(t *testing.T) {
	scfg, ccfg := newServerConfig(t), newClientConfig(t)
	srv, err := NewServer(scfg)
	require.NoError(t, err)
	defer srv.Close()
	before := runtime.NumGoroutine()

	const rounds, workers = 20, 4
	for round := range rounds {
		var craw, sraw net.Conn
		if round%2 == 0 {
			craw, sraw = net.Pipe()
		} else {
			craw, sraw = tcpPair(t)
		}
		c, err := Client(craw, ccfg, "localhost")
		require.NoError(t, err)
		s, err := srv.Accept(sraw)
		require.NoError(t, err)
		conns := []*Conn{c, s}

		var wg sync.WaitGroup
		errs := make(chan error, 4*workers*len(conns)+8)
		for _, x := range conns {
			for range workers {
				wg.Add(3)
				go func() {
					defer wg.Done()
					buf := make([]byte, 1000)
					for {
						if _, err := x.Read(buf); err != nil {
							errs <- err
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					buf := make([]byte, 3000)
					for {
						if _, err := x.Write(buf); err != nil {
							errs <- err
							return
						}
					}
				}()
				go func() {
					defer wg.Done()
					errs <- x.Handshake()
				}()
			}
		}
		// Let some rounds close mid-handshake and others mid-transfer.
		time.Sleep(time.Duration(round%5) * 5 * time.Millisecond)
		for range 2 {
			for _, x := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_ = x.Close()
				}()
			}
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(testTimeout):
			buf := make([]byte, 1<<20)
			t.Fatalf("round %d hung:\n%s", round, buf[:runtime.Stack(buf, true)])
		}
		close(errs)
		for err := range errs {
			require.True(t, closeErrorOK(err), "round %d: unexpected error %T %v", round, err, err)
		}
		for _, x := range conns {
			require.True(t, x.freed(), "C context not freed")
			// net.ErrClosed, unless the handshake had already failed
			// (the peer's Close cut it short): then, as in crypto/tls,
			// that failure.
			_, err := x.Read(make([]byte, 1))
			if hsErr := x.Handshake(); hsErr != nil {
				require.Equal(t, hsErr, err)
			} else {
				require.ErrorIs(t, err, net.ErrClosed)
			}
		}
		craw.Close()
		sraw.Close()
	}
	// Background flushers and the like wind down.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	require.LessOrEqual(t, runtime.NumGoroutine(), before+2, "goroutines leaked")
}

func TestCloseTwiceAndUseAfterClose(t *testing.T) {
	t.Run("AfterHandshake", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		st := c.ConnectionState()

		go func() { _, _ = io.Copy(io.Discard, s) }() // takes the close_notify
		require.NoError(t, c.Close())
		require.ErrorIs(t, c.Close(), net.ErrClosed)
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = c.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
		require.NoError(t, c.Handshake(), "the handshake did complete")
		require.Equal(t, st, c.ConnectionState(), "the facts outlive Close")
	})
	t.Run("BeforeHandshake", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		require.NoError(t, c.Close())
		require.NoError(t, s.Close())
		require.ErrorIs(t, c.Close(), net.ErrClosed)
		require.ErrorIs(t, s.Close(), net.ErrClosed)
		require.ErrorIs(t, c.Handshake(), net.ErrClosed)
		require.ErrorIs(t, s.HandshakeContext(context.Background()), net.ErrClosed)
		_, err := c.Read(make([]byte, 1))
		require.ErrorIs(t, err, net.ErrClosed)
		_, err = s.Write([]byte("x"))
		require.ErrorIs(t, err, net.ErrClosed)
		require.False(t, c.ConnectionState().HandshakeComplete)
	})
	t.Run("CloseUnblocksRead", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		wait := async(func() error { _, err := c.Read(make([]byte, 1)); return err })
		time.Sleep(20 * time.Millisecond)
		go func() { _, _ = io.Copy(io.Discard, s) }()
		require.NoError(t, requireFast(t, 10*time.Second, c.Close))
		require.ErrorIs(t, wait(), net.ErrClosed)
	})
	t.Run("CloseUnblocksWrite", func(t *testing.T) {
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		// Nobody reads: the Write blocks in the transport.
		wait := async(func() error { _, err := c.Write(make([]byte, 1<<20)); return err })
		time.Sleep(20 * time.Millisecond)
		_ = requireFast(t, 10*time.Second, c.Close)
		require.ErrorIs(t, wait(), net.ErrClosed)
	})
}

// TestCloseNotifyIsEOF checks that a clean close reaches the reader as
// io.EOF, both ways with crypto/tls.
func TestCloseNotifyIsEOF(t *testing.T) {
	t.Run("GoCloses", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		s := tls.Server(sraw, goServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		_, err := s.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		got, err := io.ReadAll(c)
		require.NoError(t, err, "ReadAll stops at io.EOF")
		require.Equal(t, "bye", string(got))
		n, err := c.Read(make([]byte, 1))
		require.Equal(t, 0, n)
		require.Equal(t, io.EOF, err, "EOF again")
	})
	t.Run("LibtlsCloses", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c := tls.Client(craw, goClientConfig(t))
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		_, err := s.Write([]byte("bye"))
		require.NoError(t, err)
		require.NoError(t, s.Close())
		got, err := io.ReadAll(c)
		require.NoError(t, err, "crypto/tls saw close_notify")
		require.Equal(t, "bye", string(got))
	})
	t.Run("NoCloseNotify", func(t *testing.T) {
		// The transport closes without close_notify, between two
		// records: the reader learns promptly, as io.EOF (as from
		// crypto/tls; see TestHalfCloseWithoutCloseNotify).
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		s := tls.Server(sraw, goServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.NoError(t, sraw.Close())
		_, err := requireFastN(t, func() (int, error) { return c.Read(make([]byte, 1)) })
		require.Equal(t, io.EOF, err)
	})
}

// --- Threads ------------------------------------------------------------------------

// osThreads returns the process's thread count from /proc/self/status.
func osThreads(t testing.TB) int {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no Threads: line in /proc/self/status")
	return 0
}

// thousandReadsDescriptors is what the TCP half of
// TestThousandBlockedReadsFewThreads needs: both ends of 1,000 loopback
// connections, and some slack for the test binary's own.
const thousandReadsDescriptors = 2*1000 + 100

// TestThousandBlockedReadsFewThreads checks that goroutines waiting for
// data park in Go rather than block OS threads in C: 1,000 connections,
// each with a Read waiting, keep the process under 64 threads, on the
// callback transport (net.Pipe) and on the socket transport (TCP).
func TestThousandBlockedReadsFewThreads(t *testing.T) {
	t.Run("Pipe", func(t *testing.T) {
		thousandBlockedReads(t, func() (net.Conn, net.Conn) { return net.Pipe() }, "callback")
	})
	t.Run("TCP", func(t *testing.T) {
		needDescriptors(t, thousandReadsDescriptors)
		l := loopback(t)
		thousandBlockedReads(t, func() (net.Conn, net.Conn) {
			type accepted struct {
				c   net.Conn
				err error
			}
			ch := make(chan accepted, 1)
			go func() {
				c, err := l.Accept()
				ch <- accepted{c, err}
			}()
			c, err := net.Dial("tcp", l.Addr().String())
			require.NoError(t, err)
			a := <-ch
			require.NoError(t, a.err, "accept")
			return c, a.c
		}, map[bool]string{true: "callback", false: "socket"}[forceTransport.Load() == transportCallback])
	})
}

func thousandBlockedReads(t *testing.T, pair func() (net.Conn, net.Conn), transport string) {
	const n, maxThreads = 1000, 64
	ccfg := newClientConfig(t)
	gcfg := goServerConfig(t)
	// X25519 alone: the post-quantum key share costs much more under the
	// race detector.
	gcfg.CurvePreferences = []tls.CurveID{tls.X25519}

	clients := make([]*Conn, n)
	servers := make([]*tls.Conn, n)
	t.Cleanup(func() {
		for i := range n {
			if clients[i] != nil {
				closeAtCleanup(clients[i])
			}
			if servers[i] != nil {
				servers[i].NetConn().Close()
			}
		}
	})
	// Handshakes, a few at a time.
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	var failed atomic.Value
	for i := range n {
		craw, sraw := pair()
		c, err := Client(craw, ccfg, "localhost")
		require.NoError(t, err)
		require.Equal(t, transport, c.TransportName())
		clients[i], servers[i] = c, tls.Server(sraw, gcfg)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cerr, serr := handshakeBoth(bound(c).(*Conn), bound(servers[i]).(*tls.Conn))
			if err := errors.Join(cerr, serr); err != nil {
				failed.Store(err)
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatal(err)
	}

	// Every client waits in Read.
	var entered atomic.Int32
	results := make(chan error, n)
	for _, c := range clients {
		require.NoError(t, c.SetReadDeadline(time.Now().Add(testTimeout)))
		go func() {
			entered.Add(1)
			buf := make([]byte, 16)
			_, err := c.Read(buf)
			if err == nil {
				_, err = c.Read(buf) // the message; then EOF
			}
			results <- err
		}()
	}
	for i := 0; entered.Load() < n; i++ {
		require.Less(t, i, 1000, "readers did not start")
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // let them reach their wait
	threads := osThreads(t)
	t.Logf("%d connections blocked in Read, %d OS threads", n, threads)
	require.Less(t, threads, maxThreads)

	// They are all still waiting, and all wake up for data.
	require.Len(t, results, 0, "a Read returned early")
	for _, s := range servers {
		go func() {
			_, _ = s.Write([]byte("wake up"))
			_ = s.Close()
		}()
	}
	for range n {
		select {
		case err := <-results:
			require.Equal(t, io.EOF, err)
		case <-time.After(testTimeout):
			t.Fatal("a Read did not wake up")
		}
	}
}

// --- Session files --------------------------------------------------------------

// TestReadOnlySessionFile: libtls accepts a session file opened read-only
// and then fails every handshake ("failed to truncate session file"); the
// binding refuses it when it is set, and the Config keeps working.
func TestReadOnlySessionFile(t *testing.T) {
	rw := sessionFile(t)
	ro, err := os.Open(rw.Name())
	require.NoError(t, err)
	defer ro.Close()
	cfg := newClientConfig(t)
	err = cfg.SetSessionFile(ro)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "session file is not open for writing", ce.Msg)
	srv := goServer(t, goServerConfig(t), echo)
	c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
	require.NoError(t, err, "the refused file was not set")
	c.Close()
}
