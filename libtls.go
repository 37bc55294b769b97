// Package libtls is a Go binding to libtls, the small TLS API of LibreSSL
// (also shipped as LibreTLS on top of OpenSSL by several distributions).
//
// Its reason to exist is the part of libtls that configures resuming TLS
// handshakes: a client's session file ([Config.SetSessionFile]), a server's
// session ID and lifetime ([Config.SetSessionID], [Config.SetSessionLifetime])
// and ticket keys shared by the processes of a server fleet
// ([Config.AddTicketKey]). Every setter is a thin wrapper over the C call of
// the same name, and a failing call returns a [*ConfigError] that carries the
// C function and the text of tls_config_error verbatim.
//
// Around the configuration the package offers connections shaped like Go's
// crypto/tls: [Client], [NewServer], [Listen], [Dial] and a [Conn] that
// implements net.Conn over any underlying net.Conn.
//
// # Backends
//
// What resumes depends on the library the program was linked with; [Backend]
// tells at run time. Real LibreSSL resumes TLS 1.2 sessions on both sides.
// LibreTLS over OpenSSL 3 resumes only as a client: its server issues empty
// session tickets. Neither resumes TLS 1.3 sessions.
package libtls

/*
#include <stdlib.h>
#include <tls.h>

#if defined(__has_include)
#if __has_include(<openssl/opensslv.h>)
#include <openssl/opensslv.h>
#endif
#endif

// LIBRESSL_VERSION_NUMBER is defined only by LibreSSL's headers; TLS_API is
// the same on both backends, so this is the only compile-time tell.
static unsigned long golibtls_libressl_version(void) {
#ifdef LIBRESSL_VERSION_NUMBER
	return LIBRESSL_VERSION_NUMBER;
#else
	return 0;
#endif
}

static const char *golibtls_ssl_version_text(void) {
#ifdef OPENSSL_VERSION_TEXT
	return OPENSSL_VERSION_TEXT;
#else
	return "";
#endif
}
*/
import "C"

import (
	"fmt"
	"sync"
)

// TLSAPI is the TLS_API version of the tls.h the package was compiled with.
const TLSAPI = C.TLS_API

// BackendInfo describes the libtls implementation the program is linked with.
type BackendInfo struct {
	// Name is "LibreSSL" for real LibreSSL and "LibreTLS" for libtls ported
	// onto OpenSSL (Debian's libtls-dev, for instance).
	Name string
	// Version is LibreSSL's version ("4.3.2") or, for LibreTLS, the
	// OpenSSL version text of the headers it was compiled against when they
	// were available ("" otherwise).
	Version string
	// VersionNumber is LIBRESSL_VERSION_NUMBER (0x4030200f for 4.3.2), or 0.
	VersionNumber uint32
	// TLSAPI is the TLS_API date of tls.h (20200120 on both backends today).
	TLSAPI int

	// ServerSessionResumption reports whether a server built on this backend
	// resumes sessions (TLS 1.2 session tickets). False on LibreTLS over
	// OpenSSL >= 1.1: its ticket callback returns 0, which OpenSSL reads as
	// "issue an empty ticket".
	ServerSessionResumption bool
	// ClientSessionResumption reports whether a client with a session file
	// resumes TLS 1.2 sessions against a server that issues tickets. True on
	// both backends.
	ClientSessionResumption bool
	// TLS13Resumption reports whether TLS 1.3 sessions resume. False on both:
	// LibreSSL has no TLS 1.3 PSK support, and LibreTLS writes the session
	// file before the post-handshake ticket arrives.
	TLS13Resumption bool
	// StoredSessionPinsTLS12 reports whether a stored TLS 1.2 session pins
	// the client to TLS 1.2, so that a TLS 1.3-only Config fails every
	// connect with "no protocols available" (LibreSSL).
	StoredSessionPinsTLS12 bool
	// FailsOnUnmatchedALPN reports whether a server fails the handshake when
	// no ALPN protocol matches (LibreSSL >= 4.2); older LibreSSL and LibreTLS
	// continue without ALPN.
	FailsOnUnmatchedALPN bool
}

func (b BackendInfo) String() string {
	return fmt.Sprintf("%s %s (TLS_API %d)", b.Name, b.Version, b.TLSAPI)
}

var backend = func() BackendInfo {
	b := BackendInfo{
		TLSAPI:                  int(C.TLS_API),
		ClientSessionResumption: true,
	}
	if v := uint32(C.golibtls_libressl_version()); v != 0 {
		b.Name = "LibreSSL"
		b.VersionNumber = v
		// MNNFFPPS: major, minor, fix.
		b.Version = fmt.Sprintf("%d.%d.%d", v>>28, (v>>20)&0xff, (v>>12)&0xff)
		b.ServerSessionResumption = true
		b.StoredSessionPinsTLS12 = true
		b.FailsOnUnmatchedALPN = v >= 0x40200000
	} else {
		b.Name = "LibreTLS"
		b.Version = C.GoString(C.golibtls_ssl_version_text())
	}
	return b
}()

// Backend reports which libtls implementation the program is linked with and
// what it can do.
func Backend() BackendInfo { return backend }

var (
	initOnce sync.Once
	initErr  error
)

// ensureInit runs tls_init once per process. libtls >= 2.7 initialises
// itself too, but calling it first keeps older libraries safe.
func ensureInit() error {
	initOnce.Do(func() {
		if C.tls_init() != 0 {
			initErr = &ConfigError{Op: "tls_init", Msg: "initialisation failed"}
		}
	})
	return initErr
}
