package libtls

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golibtls/libtls/internal/testcert"
	"github.com/stretchr/testify/require"
)

// testTimeout bounds every network wait of a test, so that a bug shows up
// as a failure rather than a hung test binary.
const testTimeout = 30 * time.Second

// bound sets a deadline of testTimeout on c.
func bound(c net.Conn) net.Conn {
	_ = c.SetDeadline(time.Now().Add(testTimeout))
	return c
}

// serverResult is what a test server reports for every connection: the
// handshake's error or, on success, the server side's view of it.
type serverResult[S any] struct {
	State S
	Err   error
}

// testServer runs an accept loop on loopback TCP. For each connection it
// runs the handshake, reports the result on Results and, when it
// succeeded, calls handle. Cleanup closes the listener and every live
// connection and waits for all goroutines.
type testServer[C net.Conn, S any] struct {
	Addr    string
	Results chan serverResult[S]

	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func (s *testServer[C, S]) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *testServer[C, S]) untrack(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

func runTestServer[C net.Conn, S any](t testing.TB, l net.Listener, wrap func(net.Conn) C,
	handshake func(context.Context, C) (S, error), handle func(C)) *testServer[C, S] {
	t.Helper()
	s := &testServer[C, S]{
		Addr:    l.Addr().String(),
		Results: make(chan serverResult[S], 64),
		l:       l,
		conns:   map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			c := wrap(bound(raw))
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
				st, err := handshake(ctx, c)
				cancel()
				select {
				case s.Results <- serverResult[S]{st, err}:
				default:
				}
				if err == nil && handle != nil {
					handle(c)
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.conns = nil
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// next returns the server's result for the next connection.
func (s *testServer[C, S]) next(t testing.TB) serverResult[S] {
	t.Helper()
	select {
	case r := <-s.Results:
		return r
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the server's handshake")
		panic("unreachable")
	}
}

// goServer is a crypto/tls server on loopback.
func goServer(t testing.TB, cfg *tls.Config, handle func(*tls.Conn)) *testServer[*tls.Conn, tls.ConnectionState] {
	t.Helper()
	return runTestServer(t, loopback(t),
		func(c net.Conn) *tls.Conn { return tls.Server(c, cfg) },
		func(ctx context.Context, c *tls.Conn) (tls.ConnectionState, error) {
			err := c.HandshakeContext(ctx)
			return c.ConnectionState(), err
		}, handle)
}

// libtlsServer is a golibtls server (NewListener) on loopback.
func libtlsServer(t testing.TB, cfg *Config, handle func(*Conn)) *testServer[*Conn, ConnInfo] {
	t.Helper()
	l, err := NewListener(loopback(t), cfg)
	require.NoError(t, err)
	return runTestServer(t, l,
		func(c net.Conn) *Conn { return c.(*Conn) },
		func(ctx context.Context, c *Conn) (ConnInfo, error) {
			err := c.HandshakeContext(ctx)
			return c.ConnInfo(), err
		}, handle)
}

// echo copies everything back until EOF, then closes (sending
// close_notify).
func echo[C net.Conn](c C) { _, _ = io.Copy(c, c) }

// dialLibtls dials addr with a golibtls client and serverName.
func dialLibtls(t testing.TB, addr string, cfg *Config, serverName string) (*Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	d := &Dialer{Config: cfg, ServerName: serverName}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	bound(c)
	return c.(*Conn), nil
}

// dialGo dials addr with a crypto/tls client.
func dialGo(t testing.TB, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	d := &tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	bound(c)
	return c.(*tls.Conn), nil
}

// requireLibtlsError checks that err is an *Error of op whose libtls text
// contains want.
func requireLibtlsError(t testing.TB, err error, op, want string) {
	t.Helper()
	require.Error(t, err)
	var le *Error
	require.True(t, errors.As(err, &le), "not an *Error: %T %v", err, err)
	require.Equal(t, op, le.Op, "%v", err)
	require.Contains(t, le.Msg, want, "%v", err)
	require.Contains(t, err.Error(), want)
}

// --- Pairs of connections -----------------------------------------------------

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l := loopback(t)
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	client, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	server = <-ch
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return bound(client), bound(server)
}

// pipePair returns both ends of a net.Pipe.
func pipePair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	client, server = net.Pipe()
	t.Cleanup(func() { client.Close(); server.Close() })
	return bound(client), bound(server)
}

// unixPair returns both ends of a Unix stream socket connection.
func unixPair(t testing.TB) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			c = nil
		}
		ch <- c
	}()
	client, err = net.Dial("unix", l.Addr().String())
	require.NoError(t, err)
	server = <-ch
	require.NotNil(t, server)
	t.Cleanup(func() { client.Close(); server.Close() })
	return bound(client), bound(server)
}

// countingConn is a wrapped net.Conn that is neither a *net.TCPConn nor a
// net.Pipe: it counts the bytes that cross it.
type countingConn struct {
	net.Conn
	mu          sync.Mutex
	read, wrote int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.wrote += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingConn) counts() (read, wrote int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read, c.wrote
}

// newLibtlsClient wraps raw in a golibtls client Conn closed at cleanup.
func newLibtlsClient(t testing.TB, raw net.Conn, cfg *Config, serverName string) *Conn {
	t.Helper()
	c, err := Client(raw, cfg, serverName)
	require.NoError(t, err)
	t.Cleanup(func() { closeAtCleanup(c) })
	return c
}

// newLibtlsServer wraps raw in a server Conn of a fresh Server of cfg.
func newLibtlsServer(t testing.TB, raw net.Conn, cfg *Config) *Conn {
	t.Helper()
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	c, err := srv.Accept(raw)
	require.NoError(t, err)
	t.Cleanup(func() { closeAtCleanup(c) })
	return c
}

// closeAtCleanup closes the transport before the Conn: like crypto/tls,
// Close waits up to 5s to send close_notify, and over net.Pipe nobody
// reads it once the test is over.
func closeAtCleanup(c *Conn) {
	c.NetConn().Close()
	c.Close()
}

type handshaker interface {
	net.Conn
	HandshakeContext(context.Context) error
}

// handshakeBoth runs both handshakes at once and returns their errors.
func handshakeBoth(client, server handshaker) (cerr, serr error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- server.HandshakeContext(ctx) }()
	cerr = client.HandshakeContext(ctx)
	if cerr != nil {
		// A client that gave up does not always tell the server (an
		// alert may be lost); closing its end does.
		client.Close()
	}
	serr = <-done
	return cerr, serr
}

// --- Versions -----------------------------------------------------------------

type tlsVersion struct {
	name    string   // libtls's tls_conn_version text
	proto   Protocol // for SetProtocols
	goVer   uint16
	viaPeer bool // limit the crypto/tls peer instead of the golibtls side
}

// versionCases are TLS 1.2 and 1.3, each forced once through the golibtls
// Config (SetProtocols) and once through the crypto/tls peer (Min/MaxVersion).
var versionCases = []tlsVersion{
	{"TLSv1.2", ProtocolTLSv1_2, tls.VersionTLS12, false},
	{"TLSv1.2", ProtocolTLSv1_2, tls.VersionTLS12, true},
	{"TLSv1.3", ProtocolTLSv1_3, tls.VersionTLS13, false},
	{"TLSv1.3", ProtocolTLSv1_3, tls.VersionTLS13, true},
}

func (v tlsVersion) String() string {
	if v.viaPeer {
		return v.name + "/MaxVersion"
	}
	return v.name + "/SetProtocols"
}

// apply limits the version on the side the case names.
func (v tlsVersion) apply(t testing.TB, cfg *Config, gcfg *tls.Config) {
	t.Helper()
	if v.viaPeer {
		gcfg.MinVersion, gcfg.MaxVersion = v.goVer, v.goVer
		return
	}
	require.NoError(t, cfg.SetProtocols(v.proto))
}

// --- State checks ---------------------------------------------------------------

// checkPeerCert checks every tls_peer_cert_* fact against the certificate
// the peer was configured with.
func checkPeerCert(t testing.TB, st ConnInfo, want *x509.Certificate) {
	t.Helper()
	require.True(t, st.PeerCertificateProvided)
	certs, err := st.PeerCertificates()
	require.NoError(t, err)
	require.NotEmpty(t, certs)
	require.Equal(t, want.Raw, certs[0].Raw)
	sum := sha256.Sum256(want.Raw)
	require.Equal(t, "SHA256:"+hex.EncodeToString(sum[:]), st.PeerCertificateHash)
	require.Contains(t, st.PeerCertificateSubject, "CN="+want.Subject.CommonName)
	require.Contains(t, st.PeerCertificateIssuer, "CN="+want.Issuer.CommonName)
	require.True(t, st.PeerCertificateNotBefore.Equal(want.NotBefore), "%v != %v", st.PeerCertificateNotBefore, want.NotBefore)
	require.True(t, st.PeerCertificateNotAfter.Equal(want.NotAfter), "%v != %v", st.PeerCertificateNotAfter, want.NotAfter)
	require.True(t, bytes.HasPrefix(st.PeerCertificateChainPEM, []byte("-----BEGIN CERTIFICATE-----\n")))
}

// checkState checks a golibtls side's ConnInfo against the crypto/tls
// peer's view of the same connection.
func checkState(t testing.TB, st ConnInfo, peer tls.ConnectionState, version string) {
	t.Helper()
	require.True(t, st.HandshakeComplete)
	require.Equal(t, version, st.Version)
	require.Equal(t, version, strings.Replace(tls.VersionName(peer.Version), "TLS 1", "TLSv1", 1))
	require.NotEmpty(t, st.Cipher)
	if version == "TLSv1.3" {
		// OpenSSL and Go use the same names for the TLS 1.3 suites.
		require.Equal(t, tls.CipherSuiteName(peer.CipherSuite), st.Cipher)
	} else {
		// The test certificates are ECDSA; Go's name is the IANA one.
		require.Contains(t, st.Cipher, "ECDHE-ECDSA")
		require.Contains(t, tls.CipherSuiteName(peer.CipherSuite), "ECDHE_ECDSA")
	}
	id, ok := CipherSuiteID(st.Cipher)
	require.True(t, ok, st.Cipher)
	require.Equal(t, peer.CipherSuite, id, "%s is %s", st.Cipher, tls.CipherSuiteName(peer.CipherSuite))
	require.Contains(t, []int{128, 256}, st.CipherStrength)
	require.Equal(t, peer.NegotiatedProtocol, st.NegotiatedProtocol)
	require.Equal(t, peer.DidResume, st.SessionResumed)
	require.Nil(t, st.OCSP)
}

// ping writes msg on c and expects it echoed back.
func ping(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	_, err := c.Write([]byte(msg))
	require.NoError(t, err)
	buf := make([]byte, len(msg))
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	require.Equal(t, msg, string(buf))
}

// --- Interop with crypto/tls ------------------------------------------------------

func TestInteropLibtlsClientGoServer(t *testing.T) {
	p := testPKI(t)
	for _, v := range versionCases {
		t.Run(v.String(), func(t *testing.T) {
			cfg, gcfg := newClientConfig(t), goServerConfig(t)
			v.apply(t, cfg, gcfg)
			srv := goServer(t, gcfg, echo)
			c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
			require.NoError(t, err)
			r := srv.next(t)
			require.NoError(t, r.Err)
			ping(t, c, "hello from golibtls")

			st := c.ConnInfo()
			checkState(t, st, r.State, v.name)
			checkTLSState(t, c.ConnectionState(), r.State)
			require.Equal(t, "localhost", st.ServerName)
			require.Equal(t, "localhost", r.State.ServerName, "SNI the Go server saw")
			checkPeerCert(t, st, p.Server.Cert)
			require.Empty(t, r.State.PeerCertificates, "no client certificate")
			require.False(t, c.SessionResumed())
			require.True(t, c.PeerCertificateContainsName("localhost"))
			require.False(t, c.PeerCertificateContainsName("example.com"))
			require.Equal(t, srv.Addr, c.RemoteAddr().String())
			require.IsType(t, &net.TCPConn{}, c.NetConn())

			require.NoError(t, c.Close())
			// The facts outlive the C context.
			require.Equal(t, st.Version, c.ConnInfo().Version)
			require.False(t, c.PeerCertificateContainsName("localhost"))
		})
	}
}

func TestInteropGoClientLibtlsServer(t *testing.T) {
	p := testPKI(t)
	for _, v := range versionCases {
		t.Run(v.String(), func(t *testing.T) {
			cfg, gcfg := newServerConfig(t), goClientConfig(t)
			v.apply(t, cfg, gcfg)
			srv := libtlsServer(t, cfg, echo)
			c, err := dialGo(t, srv.Addr, gcfg)
			require.NoError(t, err)
			r := srv.next(t)
			require.NoError(t, r.Err)
			ping(t, c, "hello from crypto/tls")

			checkState(t, r.State, c.ConnectionState(), v.name)
			require.Equal(t, "localhost", r.State.ServerName, "SNI the golibtls server saw")
			require.False(t, r.State.PeerCertificateProvided)
			certs, err := r.State.PeerCertificates()
			require.NoError(t, err)
			require.Empty(t, certs)
			require.Equal(t, p.Server.Cert.Raw, c.ConnectionState().PeerCertificates[0].Raw)
		})
	}
}

// TestSNI checks the name a golibtls server sees and the certificate it
// picks for it (AddKeypair), and the name a golibtls client sends.
func TestSNI(t *testing.T) {
	p := testPKI(t)
	other, err := p.CA.Issue("other.example")
	require.NoError(t, err)
	cfg := newServerConfig(t)
	require.NoError(t, cfg.AddKeypair(other.CertPEM, other.KeyPEM))
	lsrv := libtlsServer(t, cfg, echo)
	gsrv := goServer(t, goServerConfig(t), echo)

	for _, tc := range []struct {
		name     string
		sni      string // "" = dial by IP address: no SNI
		wantLeaf *x509.Certificate
	}{
		{"localhost", "localhost", p.Server.Cert},
		{"other", "other.example", other.Cert},
		{"none", "", p.Server.Cert},
	} {
		t.Run("GoClient/"+tc.name, func(t *testing.T) {
			gcfg := goClientConfig(t)
			gcfg.ServerName = tc.sni
			if tc.sni == "" {
				gcfg.ServerName = "127.0.0.1" // verified, but not sent
			}
			c, err := dialGo(t, lsrv.Addr, gcfg)
			require.NoError(t, err)
			r := lsrv.next(t)
			require.NoError(t, r.Err)
			require.Equal(t, tc.sni, r.State.ServerName)
			require.Equal(t, tc.wantLeaf.Raw, c.ConnectionState().PeerCertificates[0].Raw)
			ping(t, c, "sni")
		})
		if tc.name == "other" {
			continue // the Go server has one certificate
		}
		t.Run("LibtlsClient/"+tc.name, func(t *testing.T) {
			name := tc.sni
			if name == "" {
				name = "127.0.0.1" // verified against the IP SAN, not sent
			}
			c, err := dialLibtls(t, gsrv.Addr, newClientConfig(t), name)
			require.NoError(t, err)
			r := gsrv.next(t)
			require.NoError(t, r.Err)
			require.Equal(t, tc.sni, r.State.ServerName)
			require.Equal(t, name, c.ConnectionState().ServerName)
			ping(t, c, "sni")
		})
	}
}

func TestALPN(t *testing.T) {
	t.Run("LibtlsClient", func(t *testing.T) {
		gcfg := goServerConfig(t)
		gcfg.NextProtos = []string{"http/1.1", "h2"}
		srv := goServer(t, gcfg, echo)
		cfg := newClientConfig(t)
		require.NoError(t, cfg.SetALPN("h2", "http/1.1"))
		c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
		require.NoError(t, err)
		r := srv.next(t)
		require.NoError(t, r.Err)
		// crypto/tls picks by its own preference.
		require.Equal(t, "http/1.1", r.State.NegotiatedProtocol)
		require.Equal(t, "http/1.1", c.ConnectionState().NegotiatedProtocol)
	})
	t.Run("LibtlsServer", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.SetALPN("h2", "http/1.1"))
		srv := libtlsServer(t, cfg, echo)
		gcfg := goClientConfig(t)
		gcfg.NextProtos = []string{"foo", "http/1.1"}
		c, err := dialGo(t, srv.Addr, gcfg)
		require.NoError(t, err)
		r := srv.next(t)
		require.NoError(t, r.Err)
		require.Equal(t, "http/1.1", r.State.NegotiatedProtocol)
		require.Equal(t, "http/1.1", c.ConnectionState().NegotiatedProtocol)
	})
	t.Run("NotOffered", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.SetALPN("h2"))
		srv := libtlsServer(t, cfg, echo)
		c, err := dialGo(t, srv.Addr, goClientConfig(t))
		require.NoError(t, err)
		require.NoError(t, srv.next(t).Err)
		require.Equal(t, "", c.ConnectionState().NegotiatedProtocol)
	})
	t.Run("UnmatchedAtLibtlsServer", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.SetALPN("h2"))
		srv := libtlsServer(t, cfg, echo)
		gcfg := goClientConfig(t)
		gcfg.NextProtos = []string{"foo"}
		c, err := dialGo(t, srv.Addr, gcfg)
		r := srv.next(t)
		if Backend().FailsOnUnmatchedALPN {
			require.ErrorContains(t, err, "no application protocol")
			requireLibtlsError(t, r.Err, "handshake", "no application protocol")
			return
		}
		// LibreTLS and LibreSSL < 4.2 continue without ALPN.
		require.NoError(t, err)
		require.NoError(t, r.Err)
		require.Equal(t, "", c.ConnectionState().NegotiatedProtocol)
		require.Equal(t, "", r.State.NegotiatedProtocol)
	})
	t.Run("UnmatchedAtGoServer", func(t *testing.T) {
		gcfg := goServerConfig(t)
		gcfg.NextProtos = []string{"h2"}
		srv := goServer(t, gcfg, echo)
		cfg := newClientConfig(t)
		require.NoError(t, cfg.SetALPN("foo"))
		_, err := dialLibtls(t, srv.Addr, cfg, "localhost")
		requireLibtlsError(t, err, "handshake", "no application protocol")
		require.ErrorContains(t, srv.next(t).Err, "unsupported application protocols")
	})
}

func TestClientCertificates(t *testing.T) {
	p := testPKI(t)
	evil, err := testcert.NewCA("evil CA")
	require.NoError(t, err)
	evilClient, err := evil.Issue("client")
	require.NoError(t, err)

	t.Run("LibtlsServerVerifyClient", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.VerifyClient())
		srv := libtlsServer(t, cfg, echo)

		gcfg := goClientConfig(t)
		gcfg.Certificates = []tls.Certificate{p.Client.TLS}
		c, err := dialGo(t, srv.Addr, gcfg)
		require.NoError(t, err)
		r := srv.next(t)
		require.NoError(t, r.Err)
		checkPeerCert(t, r.State, p.Client.Cert)
		ping(t, c, "with a certificate")

		// No certificate: TLS 1.3 clients learn it on their first read.
		c, err = dialGo(t, srv.Addr, goClientConfig(t))
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		require.ErrorContains(t, err, "certificate required")
		requireLibtlsError(t, srv.next(t).Err, "handshake", "peer did not return a certificate")

		// A certificate from a CA the server does not trust.
		gcfg = goClientConfig(t)
		gcfg.Certificates = []tls.Certificate{evilClient.TLS}
		c, err = dialGo(t, srv.Addr, gcfg)
		if err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		require.Error(t, err)
		requireLibtlsError(t, srv.next(t).Err, "handshake", "certificate verify")
	})
	t.Run("LibtlsServerVerifyClientOptional", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.VerifyClientOptional())
		srv := libtlsServer(t, cfg, echo)
		c, err := dialGo(t, srv.Addr, goClientConfig(t))
		require.NoError(t, err)
		ping(t, c, "optional")
		r := srv.next(t)
		require.NoError(t, r.Err)
		require.False(t, r.State.PeerCertificateProvided)

		gcfg := goClientConfig(t)
		gcfg.Certificates = []tls.Certificate{p.Client.TLS}
		c, err = dialGo(t, srv.Addr, gcfg)
		require.NoError(t, err)
		ping(t, c, "optional")
		r = srv.next(t)
		require.NoError(t, r.Err)
		checkPeerCert(t, r.State, p.Client.Cert)
	})
	t.Run("GoServerRequiresClientCert", func(t *testing.T) {
		gcfg := goServerConfig(t)
		gcfg.ClientAuth = tls.RequireAndVerifyClientCert
		srv := goServer(t, gcfg, echo)

		cfg := newClientConfig(t)
		require.NoError(t, cfg.SetKeypair(p.Client.CertPEM, p.Client.KeyPEM))
		c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
		require.NoError(t, err)
		ping(t, c, "client cert")
		r := srv.next(t)
		require.NoError(t, r.Err)
		// Leaf first (OpenSSL may append the chain it builds from the CA).
		require.NotEmpty(t, r.State.PeerCertificates)
		require.Equal(t, p.Client.Cert.Raw, r.State.PeerCertificates[0].Raw)

		// Without a certificate the TLS 1.3 client learns it when it reads.
		c, err = dialLibtls(t, srv.Addr, newClientConfig(t), "localhost")
		if err == nil {
			_, err = c.Read(make([]byte, 1))
			requireLibtlsError(t, err, "read", "certificate required")
		}
		require.Error(t, err)
		require.ErrorContains(t, srv.next(t).Err, "client didn't provide a certificate")
	})
	t.Run("LibtlsBoth", func(t *testing.T) {
		scfg := newServerConfig(t)
		require.NoError(t, scfg.VerifyClient())
		ccfg := newClientConfig(t)
		require.NoError(t, ccfg.SetKeypair(p.Client.CertPEM, p.Client.KeyPEM))
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, ccfg, "localhost"), newLibtlsServer(t, sraw, scfg)
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		checkPeerCert(t, s.ConnInfo(), p.Client.Cert)
		checkPeerCert(t, c.ConnInfo(), p.Server.Cert)
		require.Equal(t, p.Client.Cert.Raw, s.ConnectionState().PeerCertificates[0].Raw)
		require.Equal(t, p.Server.Cert.Raw, c.ConnectionState().PeerCertificates[0].Raw)
		require.True(t, s.PeerCertificateContainsName("client"))
	})
}

// TestBadCertificate checks that verification failures fail the handshake
// with libtls's own words.
func TestBadCertificate(t *testing.T) {
	p := testPKI(t)
	evil, err := testcert.NewCA("evil CA")
	require.NoError(t, err)
	evilLeaf, err := evil.Issue("localhost", "127.0.0.1")
	require.NoError(t, err)
	expired, err := p.CA.IssueValid(time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour), "localhost")
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		leaf *tls.Certificate
		sni  string
		want string
	}{
		{"UnknownCA", &evilLeaf.TLS, "localhost", "certificate verification failed: unable to get local issuer certificate"},
		{"WrongName", nil, "wrong.example", "name `wrong.example' not present in server certificate"},
		{"Expired", &expired.TLS, "localhost", "certificate verification failed: certificate has expired"},
	} {
		t.Run("LibtlsClient/"+tc.name, func(t *testing.T) {
			gcfg := goServerConfig(t)
			if tc.leaf != nil {
				gcfg.Certificates = []tls.Certificate{*tc.leaf}
			}
			srv := goServer(t, gcfg, echo)
			c, err := dialLibtls(t, srv.Addr, newClientConfig(t), tc.sni)
			require.Nil(t, c)
			requireLibtlsError(t, err, "handshake", tc.want)
			if tc.leaf != nil {
				// The client aborted; what the server reads depends on
				// when the backend's alert is sent.
				require.Error(t, srv.next(t).Err)
			}
		})
	}

	t.Run("GoClient/WrongName", func(t *testing.T) {
		srv := libtlsServer(t, newServerConfig(t), echo)
		gcfg := goClientConfig(t)
		gcfg.ServerName = "wrong.example"
		_, err := dialGo(t, srv.Addr, gcfg)
		var he x509.HostnameError
		require.ErrorAs(t, err, &he)
		requireLibtlsError(t, srv.next(t).Err, "handshake", "alert bad certificate")
	})
	t.Run("GoClient/UnknownCA", func(t *testing.T) {
		cfg, err := NewConfig()
		require.NoError(t, err)
		defer cfg.Close()
		require.NoError(t, cfg.SetKeypair(evilLeaf.CertPEM, evilLeaf.KeyPEM))
		srv := libtlsServer(t, cfg, echo)
		_, err = dialGo(t, srv.Addr, goClientConfig(t))
		var ue x509.UnknownAuthorityError
		require.ErrorAs(t, err, &ue)
		requireLibtlsError(t, srv.next(t).Err, "handshake", "alert")
	})
	t.Run("LibtlsBoth/UnknownCA", func(t *testing.T) {
		cfg, err := NewConfig()
		require.NoError(t, err)
		defer cfg.Close()
		require.NoError(t, cfg.SetKeypair(evilLeaf.CertPEM, evilLeaf.KeyPEM))
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, cfg)
		cerr, serr := handshakeBoth(c, s)
		requireLibtlsError(t, cerr, "handshake", "certificate verification failed")
		require.Error(t, serr)
		// Every later call reports the handshake's failure.
		_, err = c.Write([]byte("x"))
		require.Equal(t, cerr, err)
		_, err = c.Read(make([]byte, 1))
		require.Equal(t, cerr, err)
		require.False(t, c.ConnectionState().HandshakeComplete)
		require.False(t, c.SessionResumed())
	})
}

// --- Reads and writes of every size ---------------------------------------------

// async runs f in a goroutine and returns a function that waits for its
// error.
func async(f func() error) func() error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return func() error {
		select {
		case err := <-ch:
			return err
		case <-time.After(testTimeout):
			return errors.New("timed out")
		}
	}
}

// transfer writes data on w in one Write while r reads it, readBuf bytes
// at a time, and checks that it arrived intact.
func transfer(t testing.TB, w, r net.Conn, data []byte, readBuf int) {
	t.Helper()
	wait := async(func() error {
		n, err := w.Write(data)
		if err == nil && n != len(data) {
			err = fmt.Errorf("short write %d", n)
		}
		return err
	})
	got := make([]byte, 0, len(data))
	buf := make([]byte, readBuf)
	for len(got) < len(data) {
		n, err := r.Read(buf[:min(readBuf, len(data)-len(got))])
		require.NoError(t, err)
		require.LessOrEqual(t, n, readBuf)
		got = append(got, buf[:n]...)
	}
	require.NoError(t, wait())
	require.True(t, bytes.Equal(data, got), "data corrupted")
}

// exerciseSizes sends single bytes, and 1 MiB in one Write, both ways
// between a and b, read 1 byte and 1 MiB at a time.
func exerciseSizes(t testing.TB, a, b net.Conn) {
	t.Helper()
	big := make([]byte, 1<<20)
	_, _ = rand.Read(big)
	for _, dir := range [][2]net.Conn{{a, b}, {b, a}} {
		w, r := dir[0], dir[1]
		for i := range 3 {
			transfer(t, w, r, []byte{byte('a' + i)}, 1)
		}
		transfer(t, w, r, big, 1<<20)
		transfer(t, w, r, big[:20000], 1) // records read one byte at a time
		transfer(t, w, r, big, 1000)      // reads that straddle records
	}
}

func TestReadWriteSizes(t *testing.T) {
	for _, v := range versionCases {
		if v.viaPeer {
			continue
		}
		t.Run("LibtlsClient/"+v.name, func(t *testing.T) {
			craw, sraw := tcpPair(t)
			cfg := newClientConfig(t)
			v.apply(t, cfg, nil)
			c := newLibtlsClient(t, craw, cfg, "localhost")
			s := tls.Server(sraw, goServerConfig(t))
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			require.Equal(t, v.name, c.ConnInfo().Version)
			exerciseSizes(t, c, s)
		})
		t.Run("LibtlsServer/"+v.name, func(t *testing.T) {
			craw, sraw := tcpPair(t)
			cfg := newServerConfig(t)
			v.apply(t, cfg, nil)
			c := tls.Client(craw, goClientConfig(t))
			s := newLibtlsServer(t, sraw, cfg)
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			require.Equal(t, v.name, s.ConnInfo().Version)
			exerciseSizes(t, s, c)
		})
	}
}

// --- 64 MiB each way at once ----------------------------------------------------

// streamBoth makes both ends write streamSize bytes (whole MiBs) while
// reading the peer's, and compares SHA-256 hashes of what was sent and
// received.
func streamBoth(t testing.TB, a, b net.Conn, streamSize int64) {
	t.Helper()
	type result struct {
		sum []byte
		err error
	}
	send := func(c net.Conn, seed byte, out chan<- result) {
		block := make([]byte, 1<<20)
		for i := range block {
			block[i] = byte(i*7) ^ seed
		}
		h := sha256.New()
		for i := range streamSize / int64(len(block)) {
			// Every block differs, so a lost or repeated one shows.
			binary.BigEndian.PutUint64(block, uint64(i))
			h.Write(block)
			if _, err := c.Write(block); err != nil {
				out <- result{err: fmt.Errorf("write block %d: %w", i, err)}
				return
			}
		}
		out <- result{sum: h.Sum(nil)}
	}
	recv := func(c net.Conn, out chan<- result) {
		h := sha256.New()
		n, err := io.CopyBuffer(h, io.LimitReader(c, streamSize), make([]byte, 64<<10))
		if err == nil && n != streamSize {
			err = fmt.Errorf("received %d bytes", n)
		}
		out <- result{sum: h.Sum(nil), err: err}
	}
	sentA, sentB, gotA, gotB := make(chan result, 1), make(chan result, 1), make(chan result, 1), make(chan result, 1)
	go send(a, 1, sentA)
	go send(b, 2, sentB)
	go recv(a, gotA)
	go recv(b, gotB)
	get := func(ch <-chan result) []byte {
		select {
		case r := <-ch:
			require.NoError(t, r.err)
			return r.sum
		case <-time.After(2 * testTimeout):
			t.Fatal("stream timed out")
			return nil
		}
	}
	require.Equal(t, get(sentA), get(gotB), "a -> b")
	require.Equal(t, get(sentB), get(gotA), "b -> a")
}

func TestStream64MiB(t *testing.T) {
	t.Run("LibtlsClient", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
		s := tls.Server(sraw, goServerConfig(t))
		streamBoth(t, c, s, 64<<20)
	})
	t.Run("LibtlsServer", func(t *testing.T) {
		craw, sraw := tcpPair(t)
		c := tls.Client(craw, goClientConfig(t))
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		streamBoth(t, s, c, 64<<20)
	})
}

// --- golibtls on both ends ------------------------------------------------------

func TestLibtlsPair(t *testing.T) {
	p := testPKI(t)
	transports := []struct {
		name string
		pair func(testing.TB) (net.Conn, net.Conn)
	}{
		{"Pipe", pipePair},
		{"TCP", tcpPair},
		{"Unix", unixPair},
		{"Wrapped", func(t testing.TB) (net.Conn, net.Conn) {
			c, s := tcpPair(t)
			return &countingConn{Conn: c}, &countingConn{Conn: s}
		}},
	}
	for _, tr := range transports {
		for _, v := range versionCases {
			if v.viaPeer {
				continue
			}
			t.Run(tr.name+"/"+v.name, func(t *testing.T) {
				craw, sraw := tr.pair(t)
				ccfg, scfg := newClientConfig(t), newServerConfig(t)
				require.NoError(t, scfg.SetProtocols(v.proto))
				c, s := newLibtlsClient(t, craw, ccfg, "localhost"), newLibtlsServer(t, sraw, scfg)

				// Before the handshake only the client's name is known.
				require.Equal(t, ConnInfo{ServerName: "localhost"}, c.ConnInfo())
				require.Equal(t, ConnInfo{}, s.ConnInfo())
				require.Equal(t, tls.ConnectionState{ServerName: "localhost"}, c.ConnectionState())
				require.Equal(t, tls.ConnectionState{}, s.ConnectionState())
				require.False(t, c.SessionResumed())

				cerr, serr := handshakeBoth(c, s)
				require.NoError(t, cerr)
				require.NoError(t, serr)
				cs, ss := c.ConnInfo(), s.ConnInfo()
				for _, st := range []ConnInfo{cs, ss} {
					require.True(t, st.HandshakeComplete)
					require.Equal(t, v.name, st.Version)
					require.Equal(t, "localhost", st.ServerName)
					require.False(t, st.SessionResumed)
					require.NotEmpty(t, st.Cipher)
				}
				require.Equal(t, cs.Cipher, ss.Cipher)
				checkTLSState(t, c.ConnectionState(), s.ConnectionState())
				require.Equal(t, cs.CipherStrength, ss.CipherStrength)
				checkPeerCert(t, cs, p.Server.Cert)
				require.False(t, ss.PeerCertificateProvided)
				require.Equal(t, craw, c.NetConn())
				require.Equal(t, sraw.LocalAddr(), s.LocalAddr())
				require.Equal(t, craw.RemoteAddr(), c.RemoteAddr())

				exerciseSizes(t, c, s)
				streamBoth(t, c, s, 4<<20)

				if cc, ok := craw.(*countingConn); ok {
					read, wrote := cc.counts()
					require.Greater(t, read, int64(4<<20))
					require.Greater(t, wrote, int64(4<<20))
				}

				// A clean close reaches the peer as io.EOF.
				closed := async(c.Close)
				n, err := s.Read(make([]byte, 1))
				require.Equal(t, 0, n)
				require.Equal(t, io.EOF, err)
				require.NoError(t, closed())
			})
		}
	}
}

// TestPeerCertificateChain checks that PeerCertificates parses every
// certificate of the chain, leaf first.
func TestPeerCertificateChain(t *testing.T) {
	p := testPKI(t)
	t.Run("LibtlsServer", func(t *testing.T) {
		scfg, err := NewConfig()
		require.NoError(t, err)
		defer scfg.Close()
		require.NoError(t, scfg.SetKeypair(append(append([]byte{}, p.Server.CertPEM...), p.CA.CertPEM...), p.Server.KeyPEM))
		craw, sraw := pipePair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, scfg)
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
		st := c.ConnInfo()
		certs, err := st.PeerCertificates()
		require.NoError(t, err)
		require.Len(t, certs, 2)
		require.Equal(t, p.Server.Cert.Raw, certs[0].Raw)
		require.Equal(t, p.CA.Cert.Raw, certs[1].Raw)
		again, err := st.PeerCertificates()
		require.NoError(t, err)
		require.Equal(t, certs, again)
	})
	t.Run("GoServer", func(t *testing.T) {
		gcfg := goServerConfig(t)
		chain := p.Server.TLS
		chain.Certificate = [][]byte{p.Server.Cert.Raw, p.CA.Cert.Raw}
		gcfg.Certificates = []tls.Certificate{chain}
		srv := goServer(t, gcfg, echo)
		c, err := dialLibtls(t, srv.Addr, newClientConfig(t), "localhost")
		require.NoError(t, err)
		st := c.ConnInfo()
		certs, err := st.PeerCertificates()
		require.NoError(t, err)
		require.Len(t, certs, 2)
		require.Equal(t, p.Server.Cert.Raw, certs[0].Raw)
		require.Equal(t, p.CA.Cert.Raw, certs[1].Raw)
		require.Equal(t, 2, bytes.Count(st.PeerCertificateChainPEM, []byte("-----BEGIN CERTIFICATE-----")))
	})
}

// TestDialListen drives the package-level Dial, DialContext, Listen and the
// Listener's Accept.
func TestDialListen(t *testing.T) {
	l, err := Listen("tcp", "127.0.0.1:0", newServerConfig(t))
	require.NoError(t, err)
	srv := runTestServer(t, l,
		func(c net.Conn) *Conn { return c.(*Conn) },
		func(ctx context.Context, c *Conn) (ConnInfo, error) {
			err := c.HandshakeContext(ctx)
			return c.ConnInfo(), err
		}, echo)
	_, port, err := net.SplitHostPort(srv.Addr)
	require.NoError(t, err)
	cfg := newClientConfig(t)

	// The server name comes from the address.
	c, err := Dial("tcp", net.JoinHostPort("localhost", port), cfg)
	if err != nil && strings.Contains(err.Error(), "connection refused") {
		// localhost resolved to ::1 only; the listener is IPv4.
		c, err = Dial("tcp4", net.JoinHostPort("localhost", port), cfg)
	}
	require.NoError(t, err)
	defer c.Close()
	bound(c)
	require.True(t, c.ConnectionState().HandshakeComplete, "Dial returns after the handshake")
	require.Equal(t, "localhost", c.ConnectionState().ServerName)
	ping(t, c, "dial")
	r := srv.next(t)
	require.NoError(t, r.Err)
	require.Equal(t, "localhost", r.State.ServerName)

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c2, err := DialContext(ctx, "tcp", srv.Addr, cfg)
	require.NoError(t, err)
	defer c2.Close()
	require.Equal(t, "127.0.0.1", c2.ConnectionState().ServerName)
	ping(t, c2, "dial context")
	r = srv.next(t)
	require.NoError(t, r.Err)
	require.Equal(t, "", r.State.ServerName, "no SNI for an IP address")

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = DialContext(canceled, "tcp", srv.Addr, cfg)
	require.ErrorIs(t, err, context.Canceled)

	_, err = Dial("tcp", "no-port", cfg)
	require.Error(t, err)

	// A closed listener refuses further Accepts with net.ErrClosed.
	require.NoError(t, l.Close())
	_, err = l.Accept()
	require.ErrorIs(t, err, net.ErrClosed)
}

// TestServerOutlivesClose checks that connections accepted before
// Server.Close keep working, and that Accept fails after it.
func TestServerOutlivesClose(t *testing.T) {
	srv, err := NewServer(newServerConfig(t))
	require.NoError(t, err)
	craw, sraw := pipePair(t)
	s, err := srv.Accept(sraw)
	require.NoError(t, err)
	t.Cleanup(func() { closeAtCleanup(s) })
	require.NoError(t, srv.Close())
	require.NoError(t, srv.Close(), "Close is idempotent")
	_, err = srv.Accept(sraw)
	require.ErrorIs(t, err, net.ErrClosed)

	c := newLibtlsClient(t, craw, newClientConfig(t), "localhost")
	go echo(s)
	ping(t, c, "after Server.Close")
}

// TestClientArguments covers Client's refusals.
func TestClientArguments(t *testing.T) {
	craw, _ := pipePair(t)
	_, err := Client(craw, nil, "localhost")
	require.Error(t, err)
	_, err = NewServer(nil)
	require.Error(t, err)

	cfg, err := NewConfig()
	require.NoError(t, err)
	require.NoError(t, cfg.Close())
	_, err = Client(craw, cfg, "localhost")
	require.ErrorIs(t, err, net.ErrClosed)
	_, err = NewServer(cfg)
	require.ErrorIs(t, err, net.ErrClosed)
}
