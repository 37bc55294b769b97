package libtlsgrpc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// assertSecure checks what every AuthInfo of these credentials must be:
// TLS, complete, h2, PrivacyAndIntegrity.
func assertSecure(t *testing.T, ti credentials.TLSInfo) {
	t.Helper()
	assert.Equal(t, "tls", ti.AuthType())
	assert.Equal(t, credentials.PrivacyAndIntegrity, ti.SecurityLevel)
	assert.True(t, ti.State.HandshakeComplete)
	assert.Equal(t, "h2", ti.State.NegotiatedProtocol)
	assert.NotZero(t, ti.State.CipherSuite)
}

// TestGolibtlsServer: a golibtls server answers grpc-go clients on
// crypto/tls over TLS 1.2 and 1.3; both ends see TLS with the right
// versions, the client sees the server's certificate, and the handler's
// peer is a TLSInfo.
func TestGolibtlsServer(t *testing.T) {
	p := testPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			creds := NewCredentials(serverConfig(t, p.server, 0, nil))
			ts := startServer(t, creds, nil)
			cc := dial(t, ts.addr, grpc.WithTransportCredentials(goClientCreds(p.ca, v, nil)))
			cli := mustCheck(t, cc)
			assertSecure(t, cli)
			assert.Equal(t, v, cli.State.Version)
			require.NotEmpty(t, cli.State.PeerCertificates)
			assert.True(t, cli.State.PeerCertificates[0].Equal(p.server.Cert))

			srv := ts.seen.last(t)
			assertSecure(t, srv)
			assert.Equal(t, v, srv.State.Version)
			assert.Equal(t, cli.State.CipherSuite, srv.State.CipherSuite)
			assert.Empty(t, srv.State.PeerCertificates, "no client certificate was sent")
			assert.Nil(t, srv.SPIFFEID)

			lsrv, err := Server(creds)
			require.NoError(t, err)
			assert.Equal(t, int64(1), lsrv.Stats().Handshakes)
		})
	}
}

// TestGolibtlsClient: a golibtls client calls a grpc-go server on
// crypto/tls over TLS 1.2 and 1.3. The name it sends and verifies is the
// target's host.
func TestGolibtlsClient(t *testing.T) {
	p := testPKI(t)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			ts := startServer(t, goServerCreds(p.server, v, nil), nil)
			_, port, err := net.SplitHostPort(ts.addr)
			require.NoError(t, err)
			// passthrough: the authority is localhost:PORT and the
			// dialer resolves it, as the DNS resolver would.
			cc := dial(t, "passthrough:///localhost:"+port, grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, nil))))
			cli := mustCheck(t, cc)
			assertSecure(t, cli)
			assert.Equal(t, v, cli.State.Version)
			assert.Equal(t, "localhost", cli.State.ServerName)
			require.NotEmpty(t, cli.State.PeerCertificates)
			assert.True(t, cli.State.PeerCertificates[0].Equal(p.server.Cert))
			assert.False(t, cli.State.DidResume)

			srv := ts.seen.last(t)
			assertSecure(t, srv)
			assert.Equal(t, "localhost", srv.State.ServerName, "the SNI the server got")
			assert.Equal(t, v, srv.State.Version)
		})
	}
}

// TestGolibtlsBothEnds: golibtls credentials at both ends, the same
// credentials value serving and calling.
func TestGolibtlsBothEnds(t *testing.T) {
	p := testPKI(t)
	cfg := serverConfig(t, p.server, 0, nil)
	require.NoError(t, cfg.SetCA(p.ca.CertPEM)) // to verify servers as a client
	creds := NewCredentials(cfg)
	ts := startServer(t, creds, nil)
	cc := dial(t, ts.addr, grpc.WithTransportCredentials(creds))
	for range 3 {
		cli := mustCheck(t, cc)
		assertSecure(t, cli)
		assert.Equal(t, "127.0.0.1", cli.State.ServerName)
		require.NotEmpty(t, cli.State.PeerCertificates)
		assert.True(t, cli.State.PeerCertificates[0].Equal(p.server.Cert))
	}
	assertSecure(t, ts.seen.last(t))
	lsrv, err := Server(creds)
	require.NoError(t, err)
	assert.Equal(t, int64(1), lsrv.Stats().Handshakes, "one connection for three calls")
}

// identityCheck lets only callers whose client certificate names one of
// names through, as an authorization interceptor would.
func identityCheck(names ...string) func(context.Context, *peer.Peer) error {
	return func(_ context.Context, p *peer.Peer) error {
		ti, ok := p.AuthInfo.(credentials.TLSInfo)
		if !ok || len(ti.State.PeerCertificates) == 0 {
			return status.Error(codes.Unauthenticated, "no client certificate")
		}
		cn := ti.State.PeerCertificates[0].Subject.CommonName
		for _, n := range names {
			if cn == n {
				return nil
			}
		}
		return status.Errorf(codes.PermissionDenied, "%s may not call", cn)
	}
}

// TestMutualTLS: a golibtls server requiring client certificates checks
// the caller's identity from peer.FromContext; golibtls and crypto/tls
// clients with alice's certificate get through, mallory's is refused by
// the check, and a client without a certificate by the handshake.
func TestMutualTLS(t *testing.T) {
	p := testPKI(t)
	creds := NewCredentials(serverConfig(t, p.server, 0, p.ca))
	ts := startServer(t, creds, identityCheck("alice"))

	for _, c := range []struct {
		name  string
		creds credentials.TransportCredentials
	}{
		{"golibtls", NewCredentials(clientConfig(t, p.ca, p.alice))},
		{"crypto/tls", goClientCreds(p.ca, 0, p.alice)},
	} {
		t.Run(c.name, func(t *testing.T) {
			cc := dial(t, ts.addr, grpc.WithTransportCredentials(c.creds))
			mustCheck(t, cc)
			srv := ts.seen.last(t)
			require.NotEmpty(t, srv.State.PeerCertificates)
			assert.True(t, srv.State.PeerCertificates[0].Equal(p.alice.Cert))
		})
	}

	t.Run("another identity", func(t *testing.T) {
		cc := dial(t, ts.addr, grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, p.mallory))))
		err := checkFails(t, cc)
		assert.Equal(t, codes.PermissionDenied, status.Code(err))
		assert.Contains(t, err.Error(), "mallory may not call")
	})

	t.Run("no certificate", func(t *testing.T) {
		before := mustServer(t, creds).Stats()
		cc := dial(t, ts.addr, grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, nil))))
		err := checkFails(t, cc)
		assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		after := mustServer(t, creds).Stats()
		assert.Equal(t, before.Handshakes, after.Handshakes)
		assert.Greater(t, after.Failures.TLS, before.Failures.TLS, "the server refused the handshake")
	})
}

func mustServer(t *testing.T, creds credentials.TransportCredentials) *libtls.Server {
	t.Helper()
	s, err := Server(creds)
	require.NoError(t, err)
	return s
}

// TestUnverifiableServer: a golibtls client refuses a server whose
// certificate its CAs do not verify, and one whose certificate does not
// name the authority; with the right CA and name the same setup works.
func TestUnverifiableServer(t *testing.T) {
	p := testPKI(t)
	for _, c := range []struct {
		name   string
		server credentials.TransportCredentials
		opts   []grpc.DialOption
		want   string // in the error; "" for success
	}{
		{"untrusted CA, golibtls server", NewCredentials(serverConfig(t, p.otherServer, 0, nil)), nil, "certificate verification failed"},
		{"untrusted CA, crypto/tls server", goServerCreds(p.otherServer, 0, nil), nil, "certificate verification failed"},
		{"wrong name", goServerCreds(p.server, 0, nil), []grpc.DialOption{grpc.WithAuthority("grpc.test")}, "grpc.test"},
		{"control", goServerCreds(p.server, 0, nil), nil, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := startServer(t, c.server, nil)
			opts := append([]grpc.DialOption{grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, nil)))}, c.opts...)
			cc := dial(t, ts.addr, opts...)
			if c.want == "" {
				mustCheck(t, cc)
				return
			}
			err := checkFails(t, cc)
			assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
			assert.Contains(t, err.Error(), "authentication handshake failed")
			assert.Contains(t, err.Error(), c.want)
			ts.seen.mu.Lock()
			defer ts.seen.mu.Unlock()
			assert.Empty(t, ts.seen.infos, "no call reached the server")
		})
	}
}

// TestServerName: the name a golibtls client sends and verifies is the
// authority's host; OverrideServerName and grpc.WithAuthority change it,
// and a clone's override leaves the original alone.
func TestServerName(t *testing.T) {
	p := testPKI(t)
	ts := startServer(t, goServerCreds(p.onlyGRPCTest, 0, nil), nil)

	base := NewCredentials(clientConfig(t, p.ca, nil))
	// The target's host, 127.0.0.1, is not in the certificate.
	err := checkFails(t, dial(t, ts.addr, grpc.WithTransportCredentials(base)))
	assert.Contains(t, err.Error(), "127.0.0.1")

	clone := base.Clone()
	// Deprecated in grpc-go, but part of the interface, and it still works.
	//lint:ignore SA1019 tested as long as grpc-go keeps it
	require.NoError(t, clone.OverrideServerName("grpc.test"))
	//lint:ignore SA1019 grpc-go takes the authority from it
	assert.Equal(t, "grpc.test", clone.Info().ServerName)
	//lint:ignore SA1019 grpc-go takes the authority from it
	assert.Empty(t, base.Info().ServerName, "the original is unchanged")
	cli := mustCheck(t, dial(t, ts.addr, grpc.WithTransportCredentials(clone)))
	assert.Equal(t, "grpc.test", cli.State.ServerName)
	assert.Equal(t, "grpc.test", ts.seen.last(t).State.ServerName)

	cli = mustCheck(t, dial(t, ts.addr, grpc.WithTransportCredentials(base), grpc.WithAuthority("grpc.test:443")))
	assert.Equal(t, "grpc.test", cli.State.ServerName)

	info := base.Info()
	assert.Equal(t, "tls", info.SecurityProtocol)
}

// TestHostOf: the server name of an authority.
func TestHostOf(t *testing.T) {
	for in, want := range map[string]string{
		"example.net:443": "example.net",
		"example.net":     "example.net",
		"127.0.0.1:8443":  "127.0.0.1",
		"[::1]:8443":      "::1",
		"[::1]":           "::1",
		"":                "",
	} {
		assert.Equal(t, want, hostOf(in), in)
	}
}

// tokenCreds are per-RPC credentials that require transport security and
// check it as grpc-go's OAuth credentials do.
type tokenCreds struct{ token string }

func (c tokenCreds) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	ri, _ := credentials.RequestInfoFromContext(ctx)
	if err := credentials.CheckSecurityLevel(ri.AuthInfo, credentials.PrivacyAndIntegrity); err != nil {
		return nil, fmt.Errorf("unable to transfer token: %v", err)
	}
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return true }

// TestPerRPCCredentials: a token that requires transport security is sent
// over golibtls connections. With insecure credentials and a context
// dialer that makes the golibtls connection below gRPC (the way round this
// package replaces), grpc-go sees no transport security and refuses it.
func TestPerRPCCredentials(t *testing.T) {
	p := testPKI(t)
	var mu sync.Mutex
	var tokens []string
	ts := startServer(t, NewCredentials(serverConfig(t, p.server, 0, nil)), func(ctx context.Context, _ *peer.Peer) error {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		tokens = append(tokens, md.Get("authorization")...)
		mu.Unlock()
		return nil
	})

	cc := dial(t, ts.addr,
		grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, nil))),
		grpc.WithPerRPCCredentials(tokenCreds{"s3cret"}))
	mustCheck(t, cc)
	mu.Lock()
	assert.Equal(t, []string{"Bearer s3cret"}, tokens)
	mu.Unlock()

	cliCfg := clientConfig(t, p.ca, nil)
	require.NoError(t, cliCfg.SetALPN("h2"))
	_, err := grpc.NewClient("passthrough:///"+ts.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return libtls.DialContext(ctx, "tcp", addr, cliCfg)
		}),
		grpc.WithPerRPCCredentials(tokenCreds{"s3cret"}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "transport level security")
}

// waitNotReady waits until cc has noticed that its connection is gone.
func waitNotReady(t *testing.T, cc *grpc.ClientConn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	for cc.GetState() == connectivity.Ready {
		require.True(t, cc.WaitForStateChange(ctx, connectivity.Ready), "the client never saw its connection drop")
	}
}

// TestReconnectResumes: a golibtls client whose connection to a crypto/tls
// server drops reconnects and resumes its TLS 1.2 session, within one
// ClientConn and from a new one made with a clone of its credentials. TLS
// 1.3 sessions never resume through libtls.
func TestReconnectResumes(t *testing.T) {
	p := testPKI(t)
	b := libtls.Backend()
	for _, c := range []struct {
		version uint16
		resumes bool
	}{
		{tls.VersionTLS12, b.ClientSessionResumption},
		{tls.VersionTLS13, b.TLS13Resumption},
	} {
		t.Run(tls.VersionName(c.version), func(t *testing.T) {
			ts := startServer(t, goServerCreds(p.server, c.version, nil), nil)
			creds := NewCredentials(clientConfig(t, p.ca, nil))
			cc := dial(t, ts.addr, grpc.WithTransportCredentials(creds))
			first := mustCheck(t, cc)
			assert.False(t, first.State.DidResume)
			assert.Equal(t, c.version, first.State.Version)
			for i := range 2 {
				ts.dropConns()
				waitNotReady(t, cc)
				cli := mustCheck(t, cc)
				assert.Equal(t, c.resumes, cli.State.DidResume, "reconnect %d", i+1)
				assert.Equal(t, c.resumes, ts.seen.last(t).State.DidResume, "the server's view of reconnect %d", i+1)
				// A resumed session still shows the server's certificate.
				require.NotEmpty(t, cli.State.PeerCertificates)
				assert.True(t, cli.State.PeerCertificates[0].Equal(p.server.Cert))
			}
			cli := mustCheck(t, dial(t, ts.addr, grpc.WithTransportCredentials(creds.Clone())))
			assert.Equal(t, c.resumes, cli.State.DidResume, "a new ClientConn")
		})
	}
}

// TestSessionPerAuthority: one credentials value calling two servers keeps
// a session for each: new connections to both resume. (With one session
// per Config, each server's session would replace the other's.)
func TestSessionPerAuthority(t *testing.T) {
	p := testPKI(t)
	// Two crypto/tls servers, each with ticket keys of its own.
	a := startServer(t, goServerCreds(p.server, tls.VersionTLS12, nil), nil)
	b := startServer(t, goServerCreds(p.server, tls.VersionTLS12, nil), nil)
	creds := NewCredentials(clientConfig(t, p.ca, nil))
	want := libtls.Backend().ClientSessionResumption
	for round := range 3 {
		for _, ts := range []*testServer{a, b} {
			cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(creds))
			require.NoError(t, err)
			cli := mustCheck(t, cc)
			cc.Close()
			assert.Equal(t, round > 0 && want, cli.State.DidResume, "round %d, server %s", round, ts.addr)
		}
	}
}

// TestSessionScope: two servers of one fleet (crypto/tls sharing ticket
// keys) at two addresses of one name. By default a client keeps a session
// per address, so its first connection to the second server is a full
// handshake; with SessionPerServerName it resumes the first server's
// session there.
func TestSessionScope(t *testing.T) {
	p := testPKI(t)
	fleet := goServerCreds(p.server, tls.VersionTLS12, nil) // one tls.Config: the same ticket keys
	a := startServer(t, fleet, nil)
	b := startServer(t, fleet, nil)
	want := libtls.Backend().ClientSessionResumption
	for _, c := range []struct {
		name    string
		scope   libtls.SessionScope
		resumes bool
	}{
		{"per address", libtls.SessionPerAddress, false},
		{"per server name", libtls.SessionPerServerName, want},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := clientConfig(t, p.ca, nil)
			require.NoError(t, cfg.SetSessionScope(c.scope))
			creds := NewCredentials(cfg)
			first := mustCheck(t, dial(t, a.addr, grpc.WithTransportCredentials(creds)))
			assert.False(t, first.State.DidResume)
			second := mustCheck(t, dial(t, b.addr, grpc.WithTransportCredentials(creds)))
			assert.Equal(t, c.resumes, second.State.DidResume, "the first connection to the second address")
			again := mustCheck(t, dial(t, b.addr, grpc.WithTransportCredentials(creds)))
			assert.Equal(t, want, again.State.DidResume, "the second connection to the second address")
		})
	}
}

// TestGolibtlsServerResumes: golibtls at both ends over TLS 1.2: a new
// connection resumes where the backend's servers resume (LibreSSL), and
// the server's counters say so.
func TestGolibtlsServerResumes(t *testing.T) {
	p := testPKI(t)
	srvCreds := NewCredentials(serverConfig(t, p.server, libtls.ProtocolTLSv1_2, nil))
	ts := startServer(t, srvCreds, nil)
	creds := NewCredentials(clientConfig(t, p.ca, nil))
	want := libtls.Backend().ServerSessionResumption
	for i := range 3 {
		cc, err := grpc.NewClient(ts.addr, grpc.WithTransportCredentials(creds))
		require.NoError(t, err)
		cli := mustCheck(t, cc)
		cc.Close()
		assert.Equal(t, tls.VersionTLS12, int(cli.State.Version))
		assert.Equal(t, i > 0 && want, cli.State.DidResume, "connection %d", i+1)
		assert.Equal(t, i > 0 && want, ts.seen.last(t).State.DidResume, "connection %d, server", i+1)
	}
	st := mustServer(t, srvCreds).Stats()
	assert.Equal(t, int64(3), st.Handshakes)
	if want {
		assert.Equal(t, int64(2), st.Resumed)
	} else {
		assert.Zero(t, st.Resumed)
	}
}

// TestALPNRequired: a golibtls server drops a TLS client that did not
// offer h2 (grpc-go's own servers do the same), and a golibtls client
// refuses a TLS server that selected no protocol.
func TestALPNRequired(t *testing.T) {
	p := testPKI(t)
	ts := startServer(t, NewCredentials(serverConfig(t, p.server, 0, nil)), nil)
	for _, protos := range [][]string{{"h2"}, nil} {
		t.Run(fmt.Sprintf("client offers %q", protos), func(t *testing.T) {
			c, err := tls.Dial("tcp", ts.addr, &tls.Config{RootCAs: p.ca.Pool, ServerName: "localhost", NextProtos: protos})
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(testTimeout)))
			hdr := make([]byte, 9)
			_, err = io.ReadFull(c, hdr)
			if protos != nil {
				require.NoError(t, err)
				assert.Equal(t, byte(0x4), hdr[3], "the server's first frame is SETTINGS")
				return
			}
			require.Error(t, err)
			assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "the server closed the connection: %v", err)
		})
	}

	t.Run("server selects none", func(t *testing.T) {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{p.server.TLS}})
		require.NoError(t, err)
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err == nil {
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		raw, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		defer raw.Close()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		_, _, err = NewCredentials(clientConfig(t, p.ca, nil)).ClientHandshake(ctx, ln.Addr().String(), raw)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `the server selected no ALPN protocol; gRPC needs "h2"`)
	})
}

// TestBadInput: a nil Config and a Config that cannot serve are errors of
// the handshakes and of Server, never panics.
func TestBadInput(t *testing.T) {
	p := testPKI(t)
	nilCreds := NewCredentials(nil)
	_, _, err := nilCreds.ServerHandshake(nil)
	assert.ErrorContains(t, err, "nil Config")
	_, _, err = nilCreds.ClientHandshake(context.Background(), "localhost:1", nil)
	assert.ErrorContains(t, err, "nil Config")
	_, err = Server(nilCreds)
	assert.ErrorContains(t, err, "nil Config")

	_, err = Server(goServerCreds(p.server, 0, nil))
	assert.ErrorContains(t, err, "are not libtlsgrpc's")

	// A client Config has no keypair: its server handshakes fail, and the
	// connection is left to grpc-go to close.
	cliCreds := NewCredentials(clientConfig(t, p.ca, nil))
	_, err = Server(cliCreds)
	require.Error(t, err)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	_, _, err = cliCreds.ServerHandshake(a)
	require.Error(t, err)
}

// spiffeLeaf issues a client certificate with the given URI SANs.
func spiffeLeaf(t *testing.T, ca *testcert.CA, uris ...string) *testcert.Leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "workload"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	for _, u := range uris {
		pu, err := url.Parse(u)
		require.NoError(t, err)
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return &testcert.Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
}

// TestSPIFFEID: the server's TLSInfo carries the SPIFFE ID of a golibtls
// client's certificate, as grpc-go's own credentials fill it.
func TestSPIFFEID(t *testing.T) {
	p := testPKI(t)
	ts := startServer(t, NewCredentials(serverConfig(t, p.server, 0, p.ca)), nil)
	leaf := spiffeLeaf(t, p.ca, "spiffe://example.org/ns/prod/sa/alice")
	mustCheck(t, dial(t, ts.addr, grpc.WithTransportCredentials(NewCredentials(clientConfig(t, p.ca, leaf)))))
	id := ts.seen.last(t).SPIFFEID
	require.NotNil(t, id)
	assert.Equal(t, "spiffe://example.org/ns/prod/sa/alice", id.String())

	for _, c := range []struct {
		uris []string
		want string
	}{
		{[]string{"spiffe://example.org/a"}, "spiffe://example.org/a"},
		{[]string{"spiffe://example.org/a", "spiffe://example.org/b"}, ""}, // one URI SAN only
		{[]string{"https://example.org/a"}, ""},
		{[]string{"spiffe://example.org"}, ""}, // no path
		{[]string{"spiffe://example.org/a?x=1"}, ""},
		{[]string{"spiffe://" + strings.Repeat("a", 256) + "/a"}, ""},
		{nil, ""},
	} {
		got := spiffeIDOf(spiffeLeaf(t, p.ca, c.uris...).Cert)
		if c.want == "" {
			assert.Nil(t, got, "%q", c.uris)
		} else if assert.NotNil(t, got, "%q", c.uris) {
			assert.Equal(t, c.want, got.String())
		}
	}
}
