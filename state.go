package libtls

/*
#include <stdlib.h>
#include <tls.h>
*/
import "C"

import (
	"crypto/x509"
	"encoding/pem"
	"sync"
	"time"
	"unsafe"
)

// ConnectionState describes an established connection, as libtls reports it
// after the handshake (the tls_conn_* and tls_peer_* calls).
type ConnectionState struct {
	// HandshakeComplete is true once the handshake has succeeded.
	HandshakeComplete bool
	// Version is the protocol version, for example "TLSv1.3"
	// (tls_conn_version).
	Version string
	// CipherSuite and CipherStrength are the negotiated cipher and its
	// strength in bits (tls_conn_cipher, tls_conn_cipher_strength).
	CipherSuite    string
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

type peerCerts struct {
	once  sync.Once
	certs []*x509.Certificate
	err   error
}

// PeerCertificates parses PeerCertificateChainPEM into certificates, leaf
// first. The chain is parsed on first use, not during the handshake.
func (s *ConnectionState) PeerCertificates() ([]*x509.Certificate, error) {
	if s.peerCerts == nil {
		return nil, nil
	}
	p := s.peerCerts
	p.once.Do(func() {
		rest := s.PeerCertificateChainPEM
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				return
			}
			if b.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				p.err = err
				return
			}
			p.certs = append(p.certs, c)
		}
	})
	return p.certs, p.err
}

func goStringOrEmpty(p *C.char) string {
	if p == nil {
		return ""
	}
	return C.GoString(p)
}

func unixTime(t C.time_t) time.Time {
	if t == -1 {
		return time.Time{}
	}
	return time.Unix(int64(t), 0)
}

// captureState copies the connection facts out of the C context right after
// a successful handshake, so that they outlive Close. Called with cMu held.
func (c *Conn) captureState() {
	ctx := c.ctx
	s := ConnectionState{
		HandshakeComplete:  true,
		Version:            goStringOrEmpty(C.tls_conn_version(ctx)),
		CipherSuite:        goStringOrEmpty(C.tls_conn_cipher(ctx)),
		CipherStrength:     int(C.tls_conn_cipher_strength(ctx)),
		NegotiatedProtocol: goStringOrEmpty(C.tls_conn_alpn_selected(ctx)),
		SessionResumed:     C.tls_conn_session_resumed(ctx) == 1,
	}
	if c.isClient {
		s.ServerName = c.sni
	} else {
		s.ServerName = goStringOrEmpty(C.tls_conn_servername(ctx))
	}
	if C.tls_peer_cert_provided(ctx) == 1 {
		s.PeerCertificateProvided = true
		s.PeerCertificateHash = goStringOrEmpty(C.tls_peer_cert_hash(ctx))
		s.PeerCertificateSubject = goStringOrEmpty(C.tls_peer_cert_subject(ctx))
		s.PeerCertificateIssuer = goStringOrEmpty(C.tls_peer_cert_issuer(ctx))
		s.PeerCertificateNotBefore = unixTime(C.tls_peer_cert_notbefore(ctx))
		s.PeerCertificateNotAfter = unixTime(C.tls_peer_cert_notafter(ctx))
		var n C.size_t
		if p := C.tls_peer_cert_chain_pem(ctx, &n); p != nil && n > 0 {
			s.PeerCertificateChainPEM = C.GoBytes(unsafe.Pointer(p), C.int(n))
			s.peerCerts = &peerCerts{}
		}
	}
	if rs := C.tls_peer_ocsp_response_status(ctx); rs >= 0 {
		s.OCSP = &OCSPResult{
			ResponseStatus: int(rs),
			CertStatus:     int(C.tls_peer_ocsp_cert_status(ctx)),
			CRLReason:      int(C.tls_peer_ocsp_crl_reason(ctx)),
			Result:         goStringOrEmpty(C.tls_peer_ocsp_result(ctx)),
			URL:            goStringOrEmpty(C.tls_peer_ocsp_url(ctx)),
			ThisUpdate:     unixTime(C.tls_peer_ocsp_this_update(ctx)),
			NextUpdate:     unixTime(C.tls_peer_ocsp_next_update(ctx)),
			RevocationTime: unixTime(C.tls_peer_ocsp_revocation_time(ctx)),
		}
	}
	c.state = s
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
