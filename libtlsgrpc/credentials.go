// Package libtlsgrpc gives gRPC (google.golang.org/grpc) transport
// credentials whose connections are golibtls connections: libtls runs the
// handshakes, and grpc-go sees a secure transport as it sees crypto/tls's.
//
//	creds := libtlsgrpc.NewCredentials(cfg)
//	srv := grpc.NewServer(grpc.Creds(creds))                                    // a server
//	cc, err := grpc.NewClient("api.example.net:443", grpc.WithTransportCredentials(creds)) // a client
//
// Each connection's AuthInfo is a credentials.TLSInfo with the connection's
// crypto/tls ConnectionState (libtls.Conn.ConnectionState) and the security
// level PrivacyAndIntegrity, so handlers find the peer's certificates with
// peer.FromContext (mTLS identities), and per-RPC credentials that require
// transport security (OAuth tokens and the like) are sent.
//
// A client resumes its TLS 1.2 sessions when it reconnects: the credentials
// keep one session per server name and address (a libtls.SessionCache;
// with cfg.SetSessionScope(libtls.SessionPerServerName), one per server
// name, for a fleet that shares ticket keys at several addresses).
// What resumes depends on the linked libtls (libtls.Backend): clients
// resume on both backends against servers that issue tickets; libtls
// servers resume only on real LibreSSL; TLS 1.3 never resumes through
// libtls.
//
// The package is a module of its own, so that the core module never
// depends on grpc-go.
package libtlsgrpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"

	libtls "github.com/golibtls/libtls"
	"google.golang.org/grpc/credentials"
)

// ALPN is the one application protocol the credentials offer and accept:
// gRPC runs over HTTP/2 and grpc-go refuses TLS connections without it.
const ALPN = "h2"

// SessionCacheCapacity is how many servers a client's credentials keep a
// session for.
const SessionCacheCapacity = libtls.DefaultSessionCacheCapacity

// NewCredentials returns gRPC transport credentials whose handshakes run
// libtls with cfg, used as credentials.NewTLS is: with grpc.Creds on a
// server, with grpc.WithTransportCredentials on a client. The same
// credentials may serve both.
//
// cfg holds what a server needs (a keypair; for mTLS VerifyClient and the
// client CAs) or what a client needs (the CAs that verify servers, a
// client certificate for mTLS), as for libtls.Listen and libtls.Dial.
// NewCredentials sets cfg's ALPN protocols to "h2" alone and gives it a
// SessionCache of SessionCacheCapacity servers, replacing any session file
// or cache set before: cfg should serve these credentials only (and their
// clones). If that fails, or cfg is nil, every handshake returns the error.
//
// On a client the name sent (SNI) and verified is the host of the
// authority grpc-go hands to the handshake: the target's, or the one set
// with grpc.WithAuthority or OverrideServerName. A client connection to a
// server it has talked to resumes that session (TLS 1.2). The client
// handshakes of one Config run in parallel, each on a libtls
// configuration of its own.
//
// On a server the credentials make one libtls.Server from cfg at their
// first handshake (or Server call) and accept every connection with it:
// apply the fleet's ticket keys and session ID (libtls.FollowTicketKeyFile,
// etcdkeys.Follow) before that. Server returns it, for its Stats.
//
// Handshakes that select no ALPN protocol are refused, as grpc-go refuses
// them. The handshake's deadline on a server is the one grpc-go sets on
// the connection (grpc.ConnectionTimeout); on a client the context's.
func NewCredentials(cfg *libtls.Config) credentials.TransportCredentials {
	s := &shared{cfg: cfg}
	switch {
	case cfg == nil:
		s.err = errors.New("libtlsgrpc: nil Config")
	default:
		if err := cfg.SetALPN(ALPN); err != nil {
			s.err = fmt.Errorf("libtlsgrpc: %w", err)
			break
		}
		if err := cfg.SetSessionCache(libtls.NewMemorySessionCache(SessionCacheCapacity)); err != nil {
			s.err = fmt.Errorf("libtlsgrpc: %w", err)
		}
	}
	return &creds{s: s}
}

// shared is what a credentials value and its clones have in common.
type shared struct {
	cfg *libtls.Config
	err error // from NewCredentials: returned by every handshake

	mu  sync.Mutex
	srv *libtls.Server // made at the first server handshake
}

// creds implements credentials.TransportCredentials.
type creds struct {
	s          *shared
	serverName string // OverrideServerName's; "" uses the authority
}

// server returns the credentials' libtls Server, making it on first use.
// A failure is not kept: a later call tries again.
func (s *shared) server() (*libtls.Server, error) {
	if s.err != nil {
		return nil, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		srv, err := libtls.NewServer(s.cfg)
		if err != nil {
			return nil, fmt.Errorf("libtlsgrpc: %w", err)
		}
		s.srv = srv
	}
	return s.srv, nil
}

// Server returns the libtls Server with which creds, made by
// NewCredentials, accept connections (making it if no server handshake
// has yet), for its handshake counters (Stats; package libtlsprom exports
// them to Prometheus). Clones share it. It fails for other credentials
// and for a Config that cannot serve (no keypair).
func Server(tc credentials.TransportCredentials) (*libtls.Server, error) {
	c, ok := tc.(*creds)
	if !ok || c == nil {
		return nil, fmt.Errorf("libtlsgrpc: %T credentials are not libtlsgrpc's", tc)
	}
	return c.s.server()
}

// ClientHandshake runs a client handshake over rawConn, bounded by ctx. The
// server name is the override, if set, else the host of authority.
func (c *creds) ClientHandshake(ctx context.Context, authority string, rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.s.err != nil {
		return nil, nil, c.s.err
	}
	name := c.serverName
	if name == "" {
		name = hostOf(authority)
	}
	conn, err := libtls.Client(rawConn, c.s.cfg, name)
	if err != nil {
		return nil, nil, err
	}
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return established(rawConn, conn, "the server selected no ALPN protocol")
}

// ServerHandshake runs a server handshake over rawConn, within the deadline
// grpc-go has set on it.
func (c *creds) ServerHandshake(rawConn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	srv, err := c.s.server()
	if err != nil {
		return nil, nil, err
	}
	conn, err := srv.Accept(rawConn)
	if err != nil {
		return nil, nil, err
	}
	if err := conn.Handshake(); err != nil {
		conn.Close()
		return nil, nil, err
	}
	return established(rawConn, conn, "the client did not offer h2 by ALPN")
}

// established checks a completed handshake's ALPN and returns the
// connection and AuthInfo grpc-go expects. noALPN is the error's text when
// the handshake selected no protocol (the only alternative to "h2", the
// one protocol either end offers).
func established(rawConn net.Conn, conn *libtls.Conn, noALPN string) (net.Conn, credentials.AuthInfo, error) {
	cs := conn.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		conn.Close()
		return nil, nil, fmt.Errorf("libtlsgrpc: %s; gRPC needs %q", noALPN, ALPN)
	}
	info := credentials.TLSInfo{
		State:          cs,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		SPIFFEID:       spiffeID(cs),
	}
	// grpc-go reads socket options through the connection (channelz), as
	// its own TLS credentials allow.
	if sc, ok := rawConn.(syscall.Conn); ok {
		return &syscallConn{Conn: conn, sc: sc}, info, nil
	}
	return conn, info, nil
}

// syscallConn is a golibtls connection that exposes its socket's
// syscall.Conn, as grpc-go's TLS credentials expose theirs.
type syscallConn struct {
	*libtls.Conn
	sc syscall.Conn
}

func (c *syscallConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// Info describes the security protocol, as grpc-go's TLS credentials do.
func (c *creds) Info() credentials.ProtocolInfo {
	info := credentials.ProtocolInfo{SecurityProtocol: "tls"}
	//lint:ignore SA1019 grpc-go's own TLS credentials fill both, and grpc-go still takes ServerName as the channel's authority.
	info.SecurityVersion, info.ServerName = "1.2", c.serverName
	return info
}

// Clone returns a copy whose OverrideServerName does not affect c. It shares
// c's Config, session cache and Server.
func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{s: c.s, serverName: c.serverName}
}

// OverrideServerName sets the server name a client verifies and sends
// instead of the authority's host; grpc-go then uses it as the authority.
//
// Deprecated: use grpc.WithAuthority, as for grpc-go's own credentials.
func (c *creds) OverrideServerName(name string) error {
	c.serverName = name
	return nil
}

// hostOf returns the host of a gRPC authority ("host:port", "host",
// "[v6]:port").
func hostOf(authority string) string {
	if host, _, err := net.SplitHostPort(authority); err == nil {
		return host
	}
	if strings.HasPrefix(authority, "[") && strings.HasSuffix(authority, "]") {
		return authority[1 : len(authority)-1]
	}
	return authority
}

// spiffeID returns the SPIFFE ID of the peer's certificate for
// TLSInfo.SPIFFEID, which grpc-go's TLS credentials fill too: the
// certificate's one URI SAN when it is a well-formed spiffe:// URI, else
// nil.
func spiffeID(cs tls.ConnectionState) *url.URL {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	return spiffeIDOf(cs.PeerCertificates[0])
}

func spiffeIDOf(cert *x509.Certificate) *url.URL {
	// The SPIFFE X.509-SVID rules: exactly one URI SAN; scheme spiffe;
	// a trust domain (host) of at most 255 bytes and a path; no user
	// info, query or fragment; at most 2048 bytes.
	if len(cert.URIs) != 1 {
		return nil
	}
	u := cert.URIs[0]
	switch {
	case u == nil, u.Scheme != "spiffe", u.Opaque != "", u.User != nil,
		u.Host == "", len(u.Host) > 255, u.Path == "",
		u.RawQuery != "", u.Fragment != "", len(u.String()) > 2048:
		return nil
	}
	return u
}
