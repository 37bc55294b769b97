package libtls

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// withTransport runs f with every new Conn on the callback transport, or
// on the automatic choice, and restores the setting.
func withTransport(t *testing.T, mode int32, f func()) {
	t.Helper()
	old := forceTransport.Swap(mode)
	defer forceTransport.Store(old)
	f()
}

// tcpEmbedding is a net.Conn that exposes the socket of the *net.TCPConn
// it embeds: syscall.Conn is promoted.
type tcpEmbedding struct{ *net.TCPConn }

// The transport follows the net.Conn: the socket for TCP, Unix stream
// sockets and other syscall.Conn stream sockets; the callbacks for
// everything else, and for everything when forced.
func TestTransportChoice(t *testing.T) {
	cfg := newClientConfig(t)
	name := func(raw net.Conn) string {
		c, err := Client(raw, cfg, "localhost")
		require.NoError(t, err)
		defer c.Close()
		return c.TransportName()
	}
	withTransport(t, transportAuto, func() {
		tc, _ := tcpPair(t)
		assert.Equal(t, "socket", name(tc))
		uc, _ := unixPair(t)
		assert.Equal(t, "socket", name(uc))
		tc2, _ := tcpPair(t)
		assert.Equal(t, "socket", name(tcpEmbedding{tc2.(*net.TCPConn)}))
		pc, _ := pipePair(t)
		assert.Equal(t, "callback", name(pc))
		wc, _ := tcpPair(t)
		assert.Equal(t, "callback", name(&countingConn{Conn: wc}), "a wrapper that hides the socket")
	})
	withTransport(t, transportCallback, func() {
		tc, _ := tcpPair(t)
		assert.Equal(t, "callback", name(tc))
	})
	// Listen and Dial's connections run on the socket.
	scfg := newServerConfig(t)
	l, err := Listen("tcp", "127.0.0.1:0", scfg)
	require.NoError(t, err)
	defer l.Close()
	done := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err.Error()
			return
		}
		defer c.Close()
		_ = c.(*Conn).Handshake()
		done <- c.(*Conn).TransportName()
	}()
	c, err := Dial("tcp", l.Addr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	want := map[bool]string{true: "callback", false: "socket"}[forceTransport.Load() == transportCallback]
	assert.Equal(t, want, c.TransportName())
	assert.Equal(t, want, <-done)
}

// On the socket transport a waiting Read parks in the netpoller, which
// reports new readiness only. After a non-data record (here TLS 1.3
// session tickets from crypto/tls, sent together with the data) libtls asks
// for more input while the data already waits in the socket: the Read
// must take it instead of waiting for readiness that never comes.
func TestSocketTransportDataAfterTickets(t *testing.T) {
	for round := range 20 {
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		gcfg := goServerConfig(t)
		gcfg.MinVersion = tls.VersionTLS13
		s := tls.Server(sraw, gcfg)
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		require.Equal(t, c.TransportName() == "socket", forceTransport.Load() != transportCallback)
		// The server's tickets go out on its first write, before the data.
		_, err := s.Write([]byte("after the tickets"))
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
		buf := make([]byte, 64)
		n, err := io.ReadAtLeast(c, buf, len("after the tickets"))
		require.NoError(t, err, "round %d", round)
		require.Equal(t, "after the tickets", string(buf[:n]))
	}
}

// keepAliveOn reads SO_KEEPALIVE of conn's socket.
func keepAliveOn(t *testing.T, conn net.Conn) bool {
	t.Helper()
	rc, err := conn.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var v int
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	}))
	require.NoError(t, serr)
	return v != 0
}

// Listen and Dial leave TCP keep-alive off (net.Listen and a zero
// net.Dialer turn it on, two setsockopt calls per connection); a
// NetDialer the user sets keeps its own choice.
func TestListenDialNoKeepAlive(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", newServerConfig(t))
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 2)
	go func() {
		for range 2 {
			c, err := l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			go func() { _ = c.(*Conn).Handshake() }()
			accepted <- c
		}
	}()
	cfg := newClientConfig(t)
	c, err := Dial("tcp", l.Addr().String(), cfg)
	require.NoError(t, err)
	defer c.Close()
	s := <-accepted
	require.NotNil(t, s)
	defer s.Close()
	assert.False(t, keepAliveOn(t, c.NetConn()), "Dial's connection")
	assert.False(t, keepAliveOn(t, s.(*Conn).NetConn()), "Listen's accepted connection")

	d := &Dialer{NetDialer: &net.Dialer{KeepAlive: 30 * time.Second}, Config: cfg}
	c2, err := d.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	if s2 := <-accepted; s2 != nil {
		defer s2.Close()
	}
	assert.True(t, keepAliveOn(t, c2.(*Conn).NetConn()), "a NetDialer with KeepAlive set")
}

// Steady-state Reads and Writes allocate nothing on either transport: the
// libtls calls and the socket transport's RawConn callbacks are bound once
// per Conn, not made as closures per call; small Reads (through the pooled
// plaintext buffer) neither.
func TestReadWriteAllocations(t *testing.T) {
	for _, mode := range []int32{transportAuto, transportCallback} {
		withTransport(t, mode, func() {
			craw, sraw := tcpPair(t)
			c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
			s := newLibtlsServer(t, sraw, newServerConfig(t))
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			msg := make([]byte, 1024)
			buf := make([]byte, len(msg))
			var werr, rerr error
			roundTrip := func() {
				if _, err := c.Write(msg); err != nil && werr == nil {
					werr = err
				}
				if _, err := io.ReadFull(s, buf); err != nil && rerr == nil {
					rerr = err
				}
				// The same the other way, read as an HTTP/2 server
				// reads: a 9-byte header, then the rest.
				if _, err := s.Write(msg); err != nil && werr == nil {
					werr = err
				}
				if _, err := io.ReadFull(c, buf[:9]); err != nil && rerr == nil {
					rerr = err
				}
				if _, err := io.ReadFull(c, buf[9:]); err != nil && rerr == nil {
					rerr = err
				}
			}
			roundTrip() // the first Read and Write make their calls
			allocs := testing.AllocsPerRun(200, roundTrip)
			require.NoError(t, werr)
			require.NoError(t, rerr)
			assert.Zero(t, allocs, "allocations per Write and Read on the %s transport", c.TransportName())
		})
	}
}
