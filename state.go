package libtls

/*
#include <stdlib.h>
#include <string.h>
#include <tls.h>

// golibtls_conninfo holds the facts of an established connection that every
// connection needs; golibtls_conninfo_get reads them in one cgo call.
struct golibtls_conninfo {
	const char *version, *cipher, *alpn, *servername;
	int version_code, strength, resumed, peer_cert, ocsp_status;
};

static void golibtls_conninfo_get(struct tls *ctx, struct golibtls_conninfo *ci) {
	ci->version = tls_conn_version(ctx);
	ci->version_code = 0;
	if (ci->version != NULL) {
		if (strcmp(ci->version, "TLSv1.3") == 0)
			ci->version_code = 0x0304;
		else if (strcmp(ci->version, "TLSv1.2") == 0)
			ci->version_code = 0x0303;
		else if (strcmp(ci->version, "TLSv1.1") == 0)
			ci->version_code = 0x0302;
		else if (strcmp(ci->version, "TLSv1") == 0 || strcmp(ci->version, "TLSv1.0") == 0)
			ci->version_code = 0x0301;
	}
	ci->cipher = tls_conn_cipher(ctx);
	ci->strength = tls_conn_cipher_strength(ctx);
	ci->alpn = tls_conn_alpn_selected(ctx);
	ci->servername = tls_conn_servername(ctx);
	ci->resumed = tls_conn_session_resumed(ctx);
	ci->peer_cert = tls_peer_cert_provided(ctx);
	ci->ocsp_status = tls_peer_ocsp_response_status(ctx);
}
*/
import "C"

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"
)

// ConnectionState returns the connection's TLS facts in crypto/tls's form,
// the form net/http reads (Request.TLS, Response.TLS) and HTTP/2 checks.
//
// Version, CipherSuite (the IANA ID of the suite libtls names; 0 for a
// suite CipherSuiteID does not know), DidResume, NegotiatedProtocol,
// ServerName (on a server the name the client sent, on a client the name it
// sent) and PeerCertificates (the peer's chain as it sent it, leaf first,
// parsed once) come from libtls. Fields libtls cannot fill honestly stay
// zero: VerifiedChains (libtls verifies the peer against the Config's CAs
// unless InsecureNoVerifyCert was called, but does not expose the chain it
// built), OCSPResponse and SignedCertificateTimestamps (libtls exposes only
// its reading of a stapled response: see ConnInfo), TLSUnique and CurveID.
// ExportKeyingMaterial must not be called on the result: crypto/tls offers
// no way to fill it from outside the package.
//
// Before the handshake completes only ServerName is set, on a client. The
// facts outlive Close. ConnInfo has what libtls reports beyond these.
//
// http.Server.Serve over a golibtls listener reads ConnectionState before
// the connection's first Read runs the handshake, so its Request.TLS shows
// a handshake that has not completed; libtlshttp.Serve runs the handshake
// first.
func (c *Conn) ConnectionState() tls.ConnectionState {
	if !c.handshakeOK() {
		var cs tls.ConnectionState
		if c.isClient {
			cs.ServerName = c.sni
		}
		return cs
	}
	s := &c.state
	cs := tls.ConnectionState{
		Version:            s.version,
		HandshakeComplete:  true,
		DidResume:          s.resumed,
		CipherSuite:        s.cipher.id,
		NegotiatedProtocol: s.alpn,
		ServerName:         s.serverName,
	}
	//lint:ignore SA1019 crypto/tls always sets it, and older readers still check it.
	cs.NegotiatedProtocolIsMutual = true
	if d := c.details(); d != nil && len(d.chainPEM) > 0 {
		// A chain that does not parse is left out rather than guessed at;
		// ConnInfo().PeerCertificates reports the error.
		if certs, err := s.certs.parse(d.chainPEM); err == nil {
			cs.PeerCertificates = certs
		}
	}
	return cs
}

// SessionResumed reports whether the handshake resumed a previous session
// (tls_conn_session_resumed), on client and server connections alike. It
// is false before the handshake completes.
func (c *Conn) SessionResumed() bool {
	return c.handshakeOK() && c.state.resumed
}

// ConnInfo describes an established connection as libtls reports it (the
// tls_conn_* and tls_peer_* calls), names and all. Conn.ConnectionState
// gives the same facts in crypto/tls's form; ConnInfo adds what does not fit
// there: libtls's names of the version and cipher, the cipher's strength,
// the peer certificate's hash, names and validity as libtls formats them,
// its chain in PEM, and the result of a stapled OCSP response.
type ConnInfo struct {
	// HandshakeComplete is true once the handshake has succeeded.
	HandshakeComplete bool
	// Version is the protocol version, for example "TLSv1.3"
	// (tls_conn_version).
	Version string
	// Cipher and CipherStrength are the negotiated cipher suite, named as
	// OpenSSL names it ("ECDHE-ECDSA-AES256-GCM-SHA384",
	// "TLS_AES_128_GCM_SHA256"), and its strength in bits
	// (tls_conn_cipher, tls_conn_cipher_strength).
	Cipher         string
	CipherStrength int
	// NegotiatedProtocol is the ALPN protocol selected, or ""
	// (tls_conn_alpn_selected).
	NegotiatedProtocol string
	// ServerName is the SNI name: on a server the name the client sent
	// (tls_conn_servername), on a client the name it sent.
	ServerName string
	// SessionResumed reports whether the handshake resumed a session
	// (tls_conn_session_resumed); valid on both sides.
	SessionResumed bool

	// PeerCertificateProvided reports whether the peer sent a certificate.
	PeerCertificateProvided bool
	// PeerCertificateHash is "SHA256:" followed by the hex digest of the
	// peer's certificate (tls_peer_cert_hash).
	PeerCertificateHash string
	// PeerCertificateSubject and PeerCertificateIssuer are the peer
	// certificate's names as libtls formats them.
	PeerCertificateSubject string
	PeerCertificateIssuer  string
	// PeerCertificateNotBefore and PeerCertificateNotAfter are its validity.
	PeerCertificateNotBefore time.Time
	PeerCertificateNotAfter  time.Time
	// PeerCertificateChainPEM is the peer's chain as libtls returns it
	// (tls_peer_cert_chain_pem), leaf first.
	PeerCertificateChainPEM []byte

	// OCSP is the result of a stapled OCSP response, if the peer sent one.
	OCSP *OCSPResult

	peerCerts *peerCerts
}

// OCSPResult is what libtls made of a stapled OCSP response (tls_peer_ocsp_*).
type OCSPResult struct {
	ResponseStatus int    // TLS_OCSP_RESPONSE_*
	CertStatus     int    // TLS_OCSP_CERT_*
	CRLReason      int    // TLS_CRL_REASON_*
	Result         string // tls_peer_ocsp_result
	URL            string
	ThisUpdate     time.Time
	NextUpdate     time.Time
	RevocationTime time.Time
}

// PeerCertificates parses PeerCertificateChainPEM into certificates, leaf
// first. The chain is parsed once per connection, on first use, and shared
// with Conn.ConnectionState.
func (s *ConnInfo) PeerCertificates() ([]*x509.Certificate, error) {
	if s.peerCerts == nil {
		return nil, nil
	}
	return s.peerCerts.parse(s.PeerCertificateChainPEM)
}

// ConnInfo returns what libtls reports about the connection. Before the
// handshake completes only ServerName (on a client) is set. The facts
// outlive Close.
func (c *Conn) ConnInfo() ConnInfo {
	if !c.handshakeOK() {
		var ci ConnInfo
		if c.isClient {
			ci.ServerName = c.sni
		}
		return ci
	}
	s := &c.state
	ci := ConnInfo{
		HandshakeComplete:       true,
		Version:                 s.versionName,
		Cipher:                  s.cipher.name,
		CipherStrength:          s.strength,
		NegotiatedProtocol:      s.alpn,
		ServerName:              s.serverName,
		SessionResumed:          s.resumed,
		PeerCertificateProvided: s.peerCert,
	}
	if d := c.details(); d != nil {
		ci.PeerCertificateHash = d.hash
		ci.PeerCertificateSubject = d.subject
		ci.PeerCertificateIssuer = d.issuer
		ci.PeerCertificateNotBefore = d.notBefore
		ci.PeerCertificateNotAfter = d.notAfter
		ci.PeerCertificateChainPEM = d.chainPEM
		if d.ocsp != nil {
			o := *d.ocsp
			ci.OCSP = &o
		}
		if len(d.chainPEM) > 0 {
			ci.peerCerts = &s.certs
		}
	}
	return ci
}

// connState is what a Conn keeps of its handshake. Why lazily: every
// connection needs its version, cipher, ALPN and resumption, which
// captureState reads in one cgo call; the peer certificate's facts and
// OCSP take a dozen calls and several copies, and most server connections
// have neither, so they are read when first asked for, or just before the
// C context is freed (keepState), so that they outlive Close.
type connState struct {
	// Written by captureState under cMu before the handshake is marked
	// done (hsDone), read after it without locks.
	captured    bool
	version     uint16
	versionName string
	cipher      cipherSuite
	strength    int
	alpn        string
	serverName  string
	resumed     bool
	peerCert    bool
	ocspStatus  int // tls_peer_ocsp_response_status: -1 without a stapled response

	details atomic.Pointer[connDetails] // loaded under cMu
	certs   peerCerts
}

// connDetails are the facts read lazily.
type connDetails struct {
	hash, subject, issuer string
	notBefore, notAfter   time.Time
	chainPEM              []byte
	ocsp                  *OCSPResult
}

// peerCerts parses a connection's peer chain once.
type peerCerts struct {
	once  sync.Once
	chain *certChain // keeps the cache's entry alive while the Conn lives
	certs []*x509.Certificate
}

func (p *peerCerts) parse(chainPEM []byte) ([]*x509.Certificate, error) {
	p.once.Do(func() {
		p.chain = parseChain(chainPEM)
		// The certificates are shared with other connections (as
		// crypto/tls shares a resumed session's), the slice is not.
		p.certs = slices.Clone(p.chain.certs)
	})
	return p.certs, p.chain.err
}

// certChain is a parsed peer chain.
type certChain struct {
	certs []*x509.Certificate
	err   error
}

// chainCache maps a chain's PEM to its parsed form while some connection
// holds it, as crypto/tls's certificate cache does: the connections of a
// client that talks to one server over and over (a new connection per
// request, resumed) parse its chain once, not per connection. An entry
// goes when the last connection holding it is collected.
var chainCache = struct {
	sync.Mutex
	m map[string]weak.Pointer[certChain]
}{m: make(map[string]weak.Pointer[certChain])}

func parseChain(chainPEM []byte) *certChain {
	chainCache.Lock()
	if wp, ok := chainCache.m[string(chainPEM)]; ok {
		if c := wp.Value(); c != nil {
			chainCache.Unlock()
			return c
		}
	}
	chainCache.Unlock()
	c := &certChain{}
	rest := chainPEM
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			c.certs, c.err = nil, err
			break
		}
		c.certs = append(c.certs, cert)
	}
	key := string(chainPEM)
	chainCache.Lock()
	chainCache.m[key] = weak.Make(c)
	chainCache.Unlock()
	runtime.AddCleanup(c, func(key string) {
		chainCache.Lock()
		if wp, ok := chainCache.m[key]; ok && wp.Value() == nil {
			delete(chainCache.m, key)
		}
		chainCache.Unlock()
	}, key)
	return c
}

// handshakeOK reports whether the handshake completed successfully, after
// which c.state's captured facts are final.
func (c *Conn) handshakeOK() bool { return c.hsDone.Load() && c.hsErr == nil }

func goStringOrEmpty(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

// cView is a string over C memory, for map lookups only: it must not
// outlive the call that returned p.
func cView(p *C.char) string {
	if p == nil {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Pointer(p)), int(C.strlen(p)))
}

func unixTime(t C.time_t) time.Time {
	if t == -1 {
		return time.Time{}
	}
	return time.Unix(int64(t), 0)
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLSv1.3"
	case tls.VersionTLS12:
		return "TLSv1.2"
	case tls.VersionTLS11:
		return "TLSv1.1"
	case tls.VersionTLS10:
		return "TLSv1"
	}
	return ""
}

// captureState records the connection facts every connection needs, right
// after a successful handshake. Called with cMu held and the C context
// live; the rest is read by details or keepState.
func (c *Conn) captureState() {
	var ci C.struct_golibtls_conninfo
	C.golibtls_conninfo_get(c.ctx, &ci)
	s := &c.state
	s.captured = true
	s.version = uint16(ci.version_code)
	if s.versionName = versionName(s.version); s.versionName == "" {
		s.versionName = goStringOrEmpty(ci.version)
	}
	// Known names are taken from the table, so that the common case
	// allocates nothing.
	if cs, ok := cipherSuites[cView(ci.cipher)]; ok {
		s.cipher = cs
	} else {
		s.cipher = cipherSuite{name: goStringOrEmpty(ci.cipher)}
	}
	s.strength = int(ci.strength)
	switch p := cView(ci.alpn); p {
	case "h2":
		s.alpn = "h2"
	case "http/1.1":
		s.alpn = "http/1.1"
	default:
		s.alpn = goStringOrEmpty(ci.alpn)
	}
	if c.isClient {
		s.serverName = c.sni
	} else {
		s.serverName = goStringOrEmpty(ci.servername)
	}
	s.resumed = ci.resumed == 1
	s.peerCert = ci.peer_cert == 1
	s.ocspStatus = int(ci.ocsp_status)
}

// hasDetails reports whether the connection has facts to read lazily.
func (s *connState) hasDetails() bool { return s.peerCert || s.ocspStatus >= 0 }

// details returns the lazily read facts, reading them on first use; nil
// when there are none.
func (c *Conn) details() *connDetails {
	s := &c.state
	if !s.hasDetails() {
		return nil
	}
	if d := s.details.Load(); d != nil {
		return d
	}
	c.cMu.Lock()
	defer c.cMu.Unlock()
	c.loadDetailsLocked()
	return s.details.Load()
}

// keepState reads the lazily read facts before the C context is freed, if
// nobody has asked for them yet, so that they outlive Close. Conn.free
// calls it with cMu held and the context live.
func (c *Conn) keepState() { c.loadDetailsLocked() }

// loadDetailsLocked reads the peer certificate's facts and the OCSP result
// from the live context. Called with cMu held.
func (c *Conn) loadDetailsLocked() {
	s := &c.state
	if !s.captured || !s.hasDetails() || s.details.Load() != nil || c.ctx == nil {
		return
	}
	ctx := c.ctx
	d := &connDetails{}
	if s.peerCert {
		d.hash = goStringOrEmpty(C.tls_peer_cert_hash(ctx))
		d.subject = goStringOrEmpty(C.tls_peer_cert_subject(ctx))
		d.issuer = goStringOrEmpty(C.tls_peer_cert_issuer(ctx))
		d.notBefore = unixTime(C.tls_peer_cert_notbefore(ctx))
		d.notAfter = unixTime(C.tls_peer_cert_notafter(ctx))
		var n C.size_t
		if p := C.tls_peer_cert_chain_pem(ctx, &n); p != nil && n > 0 {
			d.chainPEM = C.GoBytes(unsafe.Pointer(p), C.int(n))
		}
	}
	if s.ocspStatus >= 0 {
		d.ocsp = &OCSPResult{
			ResponseStatus: s.ocspStatus,
			CertStatus:     int(C.tls_peer_ocsp_cert_status(ctx)),
			CRLReason:      int(C.tls_peer_ocsp_crl_reason(ctx)),
			Result:         goStringOrEmpty(C.tls_peer_ocsp_result(ctx)),
			URL:            goStringOrEmpty(C.tls_peer_ocsp_url(ctx)),
			ThisUpdate:     unixTime(C.tls_peer_ocsp_this_update(ctx)),
			NextUpdate:     unixTime(C.tls_peer_ocsp_next_update(ctx)),
			RevocationTime: unixTime(C.tls_peer_ocsp_revocation_time(ctx)),
		}
	}
	s.details.Store(d)
}

// PeerCertificateContainsName reports whether the peer's certificate is
// valid for name (tls_peer_cert_contains_name). It needs the live context:
// after Close it reports false.
func (c *Conn) PeerCertificateContainsName(name string) bool {
	cs := cstring(name)
	defer C.free(unsafe.Pointer(cs))
	c.cMu.Lock()
	defer c.cMu.Unlock()
	if c.ctx == nil || !c.hsDone.Load() {
		return false
	}
	return C.tls_peer_cert_contains_name(c.ctx, cs) == 1
}
