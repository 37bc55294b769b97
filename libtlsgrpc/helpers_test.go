package libtlsgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// testTimeout bounds every RPC and wait of these tests.
const testTimeout = 30 * time.Second

// pki is the tests' throwaway PKI: a CA, a server certificate for
// localhost and 127.0.0.1, two client certificates, and a second CA that
// nobody here trusts with a server certificate of its own.
type pki struct {
	ca, otherCA         *testcert.CA
	server, otherServer *testcert.Leaf
	alice, mallory      *testcert.Leaf
	onlyGRPCTest        *testcert.Leaf // a server certificate for grpc.test alone
}

var (
	pkiOnce sync.Once
	thePKI  pki
	pkiErr  error
)

func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() {
		p := &thePKI
		issue := func(ca *testcert.CA, names ...string) *testcert.Leaf {
			l, err := ca.Issue(names...)
			pkiErr = errors.Join(pkiErr, err)
			return l
		}
		if p.ca, pkiErr = testcert.NewCA("libtlsgrpc test CA"); pkiErr != nil {
			return
		}
		if p.otherCA, pkiErr = testcert.NewCA("libtlsgrpc untrusted CA"); pkiErr != nil {
			return
		}
		p.server = issue(p.ca, "localhost", "127.0.0.1")
		p.otherServer = issue(p.otherCA, "localhost", "127.0.0.1")
		p.alice = issue(p.ca, "alice")
		p.mallory = issue(p.ca, "mallory")
		p.onlyGRPCTest = issue(p.ca, "grpc.test")
	})
	require.NoError(t, pkiErr)
	return &thePKI
}

// newConfig returns a Config closed when the test ends.
func newConfig(t testing.TB) *libtls.Config {
	t.Helper()
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	return cfg
}

// serverConfig is a libtls server Config with leaf's keypair and sessions
// (which resume where the backend's servers do), limited to protocols
// (0: libtls's default); clientCA, if set, makes it require and verify
// client certificates.
func serverConfig(t testing.TB, leaf *testcert.Leaf, protocols libtls.Protocol, clientCA *testcert.CA) *libtls.Config {
	t.Helper()
	cfg := newConfig(t)
	require.NoError(t, cfg.SetKeypair(leaf.CertPEM, leaf.KeyPEM))
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	if protocols != 0 {
		require.NoError(t, cfg.SetProtocols(protocols))
	}
	if clientCA != nil {
		require.NoError(t, cfg.SetCA(clientCA.CertPEM))
		require.NoError(t, cfg.VerifyClient())
	}
	return cfg
}

// clientConfig is a libtls client Config trusting ca, presenting cert if
// not nil.
func clientConfig(t testing.TB, ca *testcert.CA, cert *testcert.Leaf) *libtls.Config {
	t.Helper()
	cfg := newConfig(t)
	require.NoError(t, cfg.SetCA(ca.CertPEM))
	if cert != nil {
		require.NoError(t, cfg.SetKeypair(cert.CertPEM, cert.KeyPEM))
	}
	return cfg
}

// seen is what a test server's interceptor saw of its callers.
type seen struct {
	mu    sync.Mutex
	infos []credentials.TLSInfo
	other []credentials.AuthInfo // AuthInfos that are not TLSInfo
}

func (s *seen) add(ai credentials.AuthInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ti, ok := ai.(credentials.TLSInfo); ok {
		s.infos = append(s.infos, ti)
	} else {
		s.other = append(s.other, ai)
	}
}

// last returns the TLSInfo of the last call; it fails the test if there
// was none or a call came without one.
func (s *seen) last(t testing.TB) credentials.TLSInfo {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	require.Empty(t, s.other, "calls without a TLSInfo")
	require.NotEmpty(t, s.infos, "no calls")
	return s.infos[len(s.infos)-1]
}

// testServer is a gRPC server with the health service on loopback.
type testServer struct {
	addr string
	srv  *grpc.Server
	seen *seen
	// conns are the raw connections accepted so far.
	mu    sync.Mutex
	conns []net.Conn
}

// startServer serves the health service with creds on 127.0.0.1. check,
// if not nil, runs before every unary call with the call's peer and may
// refuse it.
func startServer(t testing.TB, creds credentials.TransportCredentials, check func(context.Context, *peer.Peer) error) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := &testServer{addr: ln.Addr().String(), seen: &seen{}}
	intercept := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		p, ok := peer.FromContext(ctx)
		if !ok {
			return nil, errors.New("no peer in the context")
		}
		ts.seen.add(p.AuthInfo)
		if check != nil {
			if err := check(ctx, p); err != nil {
				return nil, err
			}
		}
		return handler(ctx, req)
	}
	ts.srv = grpc.NewServer(grpc.Creds(creds), grpc.UnaryInterceptor(intercept))
	healthpb.RegisterHealthServer(ts.srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- ts.srv.Serve(&trackingListener{Listener: ln, ts: ts}) }()
	t.Cleanup(func() {
		ts.srv.Stop()
		require.NoError(t, <-served)
	})
	return ts
}

// dropConns closes every connection the server has accepted, as a server
// restart or a network failure would: clients reconnect.
func (ts *testServer) dropConns() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, c := range ts.conns {
		c.Close()
	}
	ts.conns = nil
}

// trackingListener records the connections it accepts.
type trackingListener struct {
	net.Listener
	ts *testServer
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.ts.mu.Lock()
		l.ts.conns = append(l.ts.conns, c)
		l.ts.mu.Unlock()
	}
	return c, err
}

// goServerCreds are grpc-go's own TLS credentials for a server with leaf's
// certificate, TLS versions up to maxVersion (0: crypto/tls's default)
// and, with clientCAs, required client certificates.
func goServerCreds(leaf *testcert.Leaf, maxVersion uint16, clientCA *testcert.CA) credentials.TransportCredentials {
	cfg := &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, MaxVersion: maxVersion}
	if clientCA != nil {
		cfg.ClientCAs = clientCA.Pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return credentials.NewTLS(cfg)
}

// goClientCreds are grpc-go's own TLS credentials for a client trusting ca,
// TLS versions up to maxVersion, presenting cert if not nil.
func goClientCreds(ca *testcert.CA, maxVersion uint16, cert *testcert.Leaf) credentials.TransportCredentials {
	cfg := &tls.Config{RootCAs: ca.Pool, MaxVersion: maxVersion}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{cert.TLS}
	}
	return credentials.NewTLS(cfg)
}

// dial makes a ClientConn to target, closed when the test ends.
func dial(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	return cc
}

// check calls the health service's Check and returns the server as the
// client saw it.
func check(cc *grpc.ClientConn) (*peer.Peer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	var p peer.Peer
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p), grpc.WaitForReady(true))
	if err != nil {
		return nil, err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return nil, errors.New("health: " + resp.GetStatus().String())
	}
	return &p, nil
}

// mustCheck is check that fails the test on error and returns the
// client's TLSInfo.
func mustCheck(t testing.TB, cc *grpc.ClientConn) credentials.TLSInfo {
	t.Helper()
	p, err := check(cc)
	require.NoError(t, err)
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	require.Truef(t, ok, "client AuthInfo is %T, not credentials.TLSInfo", p.AuthInfo)
	return ti
}

// checkFails calls Check once, without waiting for the connection, and
// returns its error.
func checkFails(t testing.TB, cc *grpc.ClientConn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	require.Error(t, err)
	return err
}
