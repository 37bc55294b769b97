package libtls

/*
#cgo linux LDFLAGS: -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <tls.h>

// golibtls_clear_ssl_errors empties this thread's OpenSSL error queue.
// libtls's config setters build their message from the queue's first entry
// without clearing it first, so an error left over on the thread by an
// earlier failure would otherwise be reported as this call's. The function
// is looked up at run time because Debian's libtls-dev does not bring the
// libcrypto development files to link against; libcrypto is loaded with
// libtls anyway. (In a static binary the lookup fails and nothing is
// cleared.)
static void (*golibtls_err_clear)(void);
static pthread_once_t golibtls_err_clear_once = PTHREAD_ONCE_INIT;

static void golibtls_find_err_clear(void) {
	golibtls_err_clear = (void (*)(void))dlsym(RTLD_DEFAULT, "ERR_clear_error");
}

static void golibtls_clear_ssl_errors(void) {
	pthread_once(&golibtls_err_clear_once, golibtls_find_err_clear);
	if (golibtls_err_clear != NULL)
		golibtls_err_clear();
}
*/
import "C"

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Config wraps a struct tls_config. Create it with NewConfig, set it up with
// its setters, use it for any number of clients and servers, and Close it.
//
// A Config is safe for concurrent use. Setters exclude the server handshakes
// that read the configuration (libtls reads a server's ticket keys during
// every handshake), so a setter called while servers run waits for the
// handshake steps in progress. Client handshakes run on libtls
// configurations of their own, made from the Config's settings when the
// handshake starts (see SetSessionFD): a setter never waits for them, and
// a change applies to the handshakes that start after it.
//
// Closing a Config ends its setters, and no new client or server can be
// built from it; the clients and servers already built from it keep working,
// and the C configuration is freed when the last of them is closed.
type Config struct {
	// mu is held for writing by every setter and for reading by every C
	// call that reads the configuration (tls_configure of a server, its
	// handshake steps) and while a client configuration is made from
	// client.
	mu     sync.RWMutex
	c      *C.struct_tls_config
	closed bool

	// users counts the holders of the binding's C reference: 1 for the
	// Config itself until Close, plus 1 per client Conn and per Server
	// configured from it until they are freed. libtls counts references
	// too, but its count can drop to zero under the binding (tls_reset of
	// a client being restarted drops the context's reference before
	// tls_configure takes a new one), so the binding keeps its own
	// reference until no Go object can reach cfg.c.
	users atomic.Int64

	// client is what client connections are configured with; every
	// client handshake runs on a tls_config of its own from pool, made
	// from it (client_config.go).
	client *clientSettings
	pool   clientPool

	// sessionFile is the client session file (SetSessionFile,
	// SetSessionFD), nil if none; it keeps the *os.File reachable, so
	// that its finalizer cannot close the descriptor while the binding
	// may use it. sessionCache, when set, takes precedence. Both are
	// read by each client handshake when it starts (session_store.go).
	sessionFile  *fileSessionStore
	sessionCache *SessionCache
	sessionScope SessionScope

	// session holds what the binding knows of the server-side session
	// settings; see session.go and ticket.go.
	session sessionState
}

// NewConfig allocates a new configuration with libtls's defaults
// (tls_config_new).
func NewConfig() (*Config, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	c, err := C.tls_config_new()
	if c == nil {
		return nil, &ConfigError{Op: "tls_config_new", Msg: fmt.Sprintf("allocation failed: %v", err), Err: err}
	}
	cfg := &Config{c: c, client: &clientSettings{}}
	cfg.client.seal()
	cfg.users.Store(1)
	liveConfigs.Add(1)
	// Only a backstop: programs should call Close.
	runtime.SetFinalizer(cfg, (*Config).Close)
	return cfg, nil
}

// Close ends the Config: every later call on it returns an error wrapping
// ErrClosed, and no client or server can be built from it. Clients and
// servers built before keep working; the C configuration is freed
// (tls_config_free) when the last of them is freed. Close is idempotent.
func (cfg *Config) Close() error {
	cfg.mu.Lock()
	if cfg.closed {
		cfg.mu.Unlock()
		return nil
	}
	cfg.closed = true
	runtime.SetFinalizer(cfg, nil)
	cfg.mu.Unlock()
	cfg.pool.close()
	cfg.unref()
	return nil
}

// ref records a new holder of the C configuration. The caller holds cfg.mu
// (for reading at least) and has checked that the Config is open, so the
// count cannot be zero.
func (cfg *Config) ref() { cfg.users.Add(1) }

// unref drops a holder and frees the C configuration with the last one.
// It takes cfg.mu only then; callers must not hold cfg.mu, a Server's mu or
// a Conn's cMu.
func (cfg *Config) unref() {
	n := cfg.users.Add(-1)
	if n > 0 {
		return
	}
	if n < 0 {
		panic("libtls: Config reference count below zero")
	}
	cfg.mu.Lock()
	C.tls_config_free(cfg.c)
	cfg.c = nil
	cfg.client.drop()
	cfg.mu.Unlock()
	liveConfigs.Add(-1)
}

// errConfigClosed is the error of any call on a closed Config.
func errConfigClosed(op string) error {
	return &ConfigError{Op: op, Msg: "config is closed", Err: ErrClosed}
}

// lastError builds the ConfigError of a failed C call. tls_config_error is
// sticky (never cleared on success), so it is only read right after a call
// that reported failure. Callers hold cfg.mu.
func (cfg *Config) lastError(op string) error {
	msg := "unknown error"
	if m := C.tls_config_error(cfg.c); m != nil {
		msg = C.GoString(m)
	}
	return &ConfigError{Op: op, Msg: msg}
}

// call runs one C setter under the write lock and maps its result: 0 is
// success, anything else a ConfigError with tls_config_error's text. It is
// the one place where Config setters reach C.
//
// The C strings of strs are checked first: a Go string with a NUL byte would
// be silently truncated by C, so it is refused.
func (cfg *Config) call(op string, f func(c *C.struct_tls_config) C.int, strs ...string) error {
	if err := checkNUL(op, strs...); err != nil {
		return err
	}
	cfg.mu.Lock()
	defer cfg.mu.Unlock()
	if cfg.closed {
		return errConfigClosed(op)
	}
	// The error queue is per OS thread: clear it and call on one thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	C.golibtls_clear_ssl_errors()
	if f(cfg.c) != 0 {
		return cfg.lastError(op)
	}
	return nil
}

// checkNUL refuses strings that C would silently truncate at a NUL byte.
func checkNUL(op string, strs ...string) error {
	for _, s := range strs {
		if strings.IndexByte(s, 0) >= 0 {
			return &ConfigError{Op: op, Msg: fmt.Sprintf("string %q contains a NUL byte", s), Err: errInvalid}
		}
	}
	return nil
}

// callClient is call for the settings that client connections read: after
// libtls accepted the value on the Config's own tls_config, record (under
// the same write lock) puts it into the client settings that each client
// handshake's tls_config is made from (client_config.go).
func (cfg *Config) callClient(op string, f func(c *C.struct_tls_config) C.int, record func(s *clientSettings) error, strs ...string) error {
	var recErr error
	err := cfg.call(op, func(c *C.struct_tls_config) C.int {
		if rc := f(c); rc != 0 {
			return rc
		}
		recErr = cfg.recordClient(record)
		return 0
	}, strs...)
	if err == nil && recErr != nil {
		return &ConfigError{Op: op, Msg: recErr.Error(), Err: recErr}
	}
	return err
}

// callVoidClient is callClient for a setter that cannot fail.
func (cfg *Config) callVoidClient(op string, f func(c *C.struct_tls_config), record func(s *clientSettings)) error {
	return cfg.callClient(op, func(c *C.struct_tls_config) C.int { f(c); return 0 },
		func(s *clientSettings) error { record(s); return nil })
}

// callVoid runs one C setter that cannot fail.
func (cfg *Config) callVoid(op string, f func(c *C.struct_tls_config)) error {
	return cfg.call(op, func(c *C.struct_tls_config) C.int { f(c); return 0 })
}

// cstring is a C copy of s that the caller frees with C.free.
func cstring(s string) *C.char { return C.CString(s) }

// withCString runs f with a temporary C copy of s.
func withCString(s string, f func(*C.char) C.int) C.int {
	p := cstring(s)
	defer C.free(unsafe.Pointer(p))
	return f(p)
}

// withCStrings runs f with temporary C copies of ss.
func withCStrings(ss []string, f func([]*C.char) C.int) C.int {
	ps := make([]*C.char, len(ss))
	for i, s := range ss {
		ps[i] = cstring(s)
	}
	defer func() {
		for _, p := range ps {
			C.free(unsafe.Pointer(p))
		}
	}()
	return f(ps)
}

// bytesPtr returns a pointer to b's first byte (nil when b is empty) and its
// length, for C calls that copy the bytes before they return. Passing Go
// memory this way follows the cgo pointer rules: the bytes hold no Go
// pointers and C keeps no reference to them.
func bytesPtr(b []byte) (*C.uint8_t, C.size_t) {
	if len(b) == 0 {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(&b[0])), C.size_t(len(b))
}

// optCString is like withCString for an optional argument: "" becomes NULL.
func optCString(s string) *C.char {
	if s == "" {
		return nil
	}
	return cstring(s)
}

func freeOpt(p *C.char) {
	if p != nil {
		C.free(unsafe.Pointer(p))
	}
}

// --- Certificates, keys and trust -----------------------------------------

// SetCAFile sets the file of PEM root certificates used to verify the peer
// (tls_config_set_ca_file). Without one, libtls uses its default CA file
// (see DefaultCAFile); LibreTLS uses OpenSSL's default verify paths instead.
func (cfg *Config) SetCAFile(path string) error {
	return cfg.callClient("tls_config_set_ca_file", func(c *C.struct_tls_config) C.int {
		return withCString(path, func(p *C.char) C.int { return C.tls_config_set_ca_file(c, p) })
	}, func(s *clientSettings) error {
		b, err := readSettingFile(path)
		s.ca, s.caSet = b, err == nil
		return err
	}, path)
}

// SetCAPath sets a directory of hashed root certificates
// (tls_config_set_ca_path).
func (cfg *Config) SetCAPath(dir string) error {
	return cfg.callClient("tls_config_set_ca_path", func(c *C.struct_tls_config) C.int {
		return withCString(dir, func(p *C.char) C.int { return C.tls_config_set_ca_path(c, p) })
	}, func(s *clientSettings) error { s.caPath = &dir; return nil }, dir)
}

// SetCA sets the PEM root certificates used to verify the peer
// (tls_config_set_ca_mem).
func (cfg *Config) SetCA(pem []byte) error {
	return cfg.callClient("tls_config_set_ca_mem", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(pem)
		return C.tls_config_set_ca_mem(c, p, n)
	}, func(s *clientSettings) error { s.ca, s.caSet = bytes.Clone(pem), true; return nil })
}

// SetCertFile sets the PEM certificate chain file of the local side
// (tls_config_set_cert_file).
func (cfg *Config) SetCertFile(path string) error {
	return cfg.callClient("tls_config_set_cert_file", func(c *C.struct_tls_config) C.int {
		return withCString(path, func(p *C.char) C.int { return C.tls_config_set_cert_file(c, p) })
	}, func(s *clientSettings) error {
		b, err := readSettingFile(path)
		s.cert, s.certSet = b, err == nil
		return err
	}, path)
}

// SetCert sets the PEM certificate chain of the local side
// (tls_config_set_cert_mem).
func (cfg *Config) SetCert(pem []byte) error {
	return cfg.callClient("tls_config_set_cert_mem", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(pem)
		return C.tls_config_set_cert_mem(c, p, n)
	}, func(s *clientSettings) error { s.cert, s.certSet = bytes.Clone(pem), true; return nil })
}

// SetKeyFile sets the PEM private key file of the local side
// (tls_config_set_key_file).
func (cfg *Config) SetKeyFile(path string) error {
	return cfg.callClient("tls_config_set_key_file", func(c *C.struct_tls_config) C.int {
		return withCString(path, func(p *C.char) C.int { return C.tls_config_set_key_file(c, p) })
	}, func(s *clientSettings) error {
		b, err := readSettingFile(path)
		s.setKey(b, err == nil)
		return err
	}, path)
}

// SetKey sets the PEM private key of the local side (tls_config_set_key_mem).
// libtls copies the key; the caller may zero its slice afterwards.
func (cfg *Config) SetKey(pem []byte) error {
	return cfg.callClient("tls_config_set_key_mem", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(pem)
		return C.tls_config_set_key_mem(c, p, n)
	}, func(s *clientSettings) error { s.setKey(bytes.Clone(pem), true); return nil })
}

// SetKeypairFile sets the certificate and key files of the local side
// (tls_config_set_keypair_file).
func (cfg *Config) SetKeypairFile(certPath, keyPath string) error {
	return cfg.callClient("tls_config_set_keypair_file", func(c *C.struct_tls_config) C.int {
		return withCStrings([]string{certPath, keyPath}, func(p []*C.char) C.int {
			return C.tls_config_set_keypair_file(c, p[0], p[1])
		})
	}, func(s *clientSettings) error { return s.setKeypairFiles(certPath, keyPath) }, certPath, keyPath)
}

// SetKeypair sets the PEM certificate chain and key of the local side
// (tls_config_set_keypair_mem).
func (cfg *Config) SetKeypair(certPEM, keyPEM []byte) error {
	return cfg.callClient("tls_config_set_keypair_mem", func(c *C.struct_tls_config) C.int {
		cp, cn := bytesPtr(certPEM)
		kp, kn := bytesPtr(keyPEM)
		return C.tls_config_set_keypair_mem(c, cp, cn, kp, kn)
	}, func(s *clientSettings) error { s.setKeypair(certPEM, keyPEM); return nil })
}

// SetKeypairOCSPFile sets the certificate, key and DER OCSP response files of
// the local side (tls_config_set_keypair_ocsp_file). An empty ocspPath
// means no staple.
func (cfg *Config) SetKeypairOCSPFile(certPath, keyPath, ocspPath string) error {
	return cfg.callClient("tls_config_set_keypair_ocsp_file", func(c *C.struct_tls_config) C.int {
		o := optCString(ocspPath)
		defer freeOpt(o)
		return withCStrings([]string{certPath, keyPath}, func(p []*C.char) C.int {
			return C.tls_config_set_keypair_ocsp_file(c, p[0], p[1], o)
		})
	}, func(s *clientSettings) error { return s.setKeypairFiles(certPath, keyPath) }, certPath, keyPath, ocspPath)
}

// SetKeypairOCSP sets the certificate, key and DER OCSP response of the local
// side (tls_config_set_keypair_ocsp_mem).
func (cfg *Config) SetKeypairOCSP(certPEM, keyPEM, ocspDER []byte) error {
	return cfg.callClient("tls_config_set_keypair_ocsp_mem", func(c *C.struct_tls_config) C.int {
		cp, cn := bytesPtr(certPEM)
		kp, kn := bytesPtr(keyPEM)
		op, on := bytesPtr(ocspDER)
		return C.tls_config_set_keypair_ocsp_mem(c, cp, cn, kp, kn, op, on)
	}, func(s *clientSettings) error { s.setKeypair(certPEM, keyPEM); return nil })
}

// AddKeypairFile adds another certificate and key for a server, chosen by
// SNI (tls_config_add_keypair_file).
func (cfg *Config) AddKeypairFile(certPath, keyPath string) error {
	return cfg.call("tls_config_add_keypair_file", func(c *C.struct_tls_config) C.int {
		return withCStrings([]string{certPath, keyPath}, func(p []*C.char) C.int {
			return C.tls_config_add_keypair_file(c, p[0], p[1])
		})
	}, certPath, keyPath)
}

// AddKeypair adds another PEM certificate and key for a server, chosen by
// SNI (tls_config_add_keypair_mem).
func (cfg *Config) AddKeypair(certPEM, keyPEM []byte) error {
	return cfg.call("tls_config_add_keypair_mem", func(c *C.struct_tls_config) C.int {
		cp, cn := bytesPtr(certPEM)
		kp, kn := bytesPtr(keyPEM)
		return C.tls_config_add_keypair_mem(c, cp, cn, kp, kn)
	})
}

// AddKeypairOCSPFile is AddKeypairFile with an OCSP response file
// (tls_config_add_keypair_ocsp_file).
func (cfg *Config) AddKeypairOCSPFile(certPath, keyPath, ocspPath string) error {
	return cfg.call("tls_config_add_keypair_ocsp_file", func(c *C.struct_tls_config) C.int {
		o := optCString(ocspPath)
		defer freeOpt(o)
		return withCStrings([]string{certPath, keyPath}, func(p []*C.char) C.int {
			return C.tls_config_add_keypair_ocsp_file(c, p[0], p[1], o)
		})
	}, certPath, keyPath, ocspPath)
}

// AddKeypairOCSP is AddKeypair with a DER OCSP response
// (tls_config_add_keypair_ocsp_mem).
func (cfg *Config) AddKeypairOCSP(certPEM, keyPEM, ocspDER []byte) error {
	return cfg.call("tls_config_add_keypair_ocsp_mem", func(c *C.struct_tls_config) C.int {
		cp, cn := bytesPtr(certPEM)
		kp, kn := bytesPtr(keyPEM)
		op, on := bytesPtr(ocspDER)
		return C.tls_config_add_keypair_ocsp_mem(c, cp, cn, kp, kn, op, on)
	})
}

// SetOCSPStapleFile sets the DER OCSP response a server staples
// (tls_config_set_ocsp_staple_file).
func (cfg *Config) SetOCSPStapleFile(path string) error {
	return cfg.call("tls_config_set_ocsp_staple_file", func(c *C.struct_tls_config) C.int {
		return withCString(path, func(p *C.char) C.int { return C.tls_config_set_ocsp_staple_file(c, p) })
	}, path)
}

// SetOCSPStaple sets the DER OCSP response a server staples
// (tls_config_set_ocsp_staple_mem).
func (cfg *Config) SetOCSPStaple(der []byte) error {
	return cfg.call("tls_config_set_ocsp_staple_mem", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(der)
		return C.tls_config_set_ocsp_staple_mem(c, p, n)
	})
}

// SetCRLFile sets a PEM certificate revocation list file
// (tls_config_set_crl_file).
func (cfg *Config) SetCRLFile(path string) error {
	return cfg.callClient("tls_config_set_crl_file", func(c *C.struct_tls_config) C.int {
		return withCString(path, func(p *C.char) C.int { return C.tls_config_set_crl_file(c, p) })
	}, func(s *clientSettings) error {
		b, err := readSettingFile(path)
		s.crl, s.crlSet = b, err == nil
		return err
	}, path)
}

// SetCRL sets a PEM certificate revocation list (tls_config_set_crl_mem).
func (cfg *Config) SetCRL(pem []byte) error {
	return cfg.callClient("tls_config_set_crl_mem", func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(pem)
		return C.tls_config_set_crl_mem(c, p, n)
	}, func(s *clientSettings) error { s.crl, s.crlSet = bytes.Clone(pem), true; return nil })
}

// ClearKeys zeroes the private keys held by the configuration
// (tls_config_clear_keys). Call it after the servers that need them are
// configured.
func (cfg *Config) ClearKeys() error {
	return cfg.callVoidClient("tls_config_clear_keys", func(c *C.struct_tls_config) { C.tls_config_clear_keys(c) }, func(s *clientSettings) { s.setKey(nil, false) })
}

// --- Handshake parameters -------------------------------------------------

// SetALPN sets the ALPN protocols, most preferred first
// (tls_config_set_alpn). A client offers them; a server selects the first
// of its own that the client offered. Each name must be 1 to 255 bytes
// without commas.
func (cfg *Config) SetALPN(protos ...string) error {
	const op = "tls_config_set_alpn"
	for _, p := range protos {
		if p == "" || len(p) > 255 || strings.ContainsAny(p, ",\x00") {
			return &ConfigError{Op: op, Msg: fmt.Sprintf("invalid ALPN protocol %q", p), Err: errInvalid}
		}
	}
	if len(protos) == 0 {
		return &ConfigError{Op: op, Msg: "no ALPN protocols", Err: errInvalid}
	}
	alpn := strings.Join(protos, ",")
	return cfg.callClient(op, func(c *C.struct_tls_config) C.int {
		return withCString(alpn, func(p *C.char) C.int { return C.tls_config_set_alpn(c, p) })
	}, func(s *clientSettings) error { s.alpn = &alpn; return nil })
}

// SetCiphers sets the cipher list (tls_config_set_ciphers): "secure" (or
// "default"), "compat", "legacy", "insecure" (or "all"), or an OpenSSL
// cipher string.
func (cfg *Config) SetCiphers(ciphers string) error {
	return cfg.callClient("tls_config_set_ciphers", func(c *C.struct_tls_config) C.int {
		return withCString(ciphers, func(p *C.char) C.int { return C.tls_config_set_ciphers(c, p) })
	}, func(s *clientSettings) error { s.ciphers = &ciphers; return nil }, ciphers)
}

// SetDHEParams sets the DHE parameters: "none", "auto" or "legacy"
// (tls_config_set_dheparams).
func (cfg *Config) SetDHEParams(params string) error {
	return cfg.call("tls_config_set_dheparams", func(c *C.struct_tls_config) C.int {
		return withCString(params, func(p *C.char) C.int { return C.tls_config_set_dheparams(c, p) })
	}, params)
}

// SetECDHECurve sets a single ECDHE curve (tls_config_set_ecdhecurve;
// deprecated in libtls in favour of SetECDHECurves).
func (cfg *Config) SetECDHECurve(curve string) error {
	return cfg.callClient("tls_config_set_ecdhecurve", func(c *C.struct_tls_config) C.int {
		return withCString(curve, func(p *C.char) C.int { return C.tls_config_set_ecdhecurve(c, p) })
	}, func(s *clientSettings) error { s.curves, s.curvesSingle = &curve, true; return nil }, curve)
}

// SetECDHECurves sets the ECDHE curves (key shares), most preferred first,
// for example "X25519,P-256" or "default" (tls_config_set_ecdhecurves).
func (cfg *Config) SetECDHECurves(curves string) error {
	return cfg.callClient("tls_config_set_ecdhecurves", func(c *C.struct_tls_config) C.int {
		return withCString(curves, func(p *C.char) C.int { return C.tls_config_set_ecdhecurves(c, p) })
	}, func(s *clientSettings) error { s.curves, s.curvesSingle = &curves, false; return nil }, curves)
}

// SetProtocols sets the protocol versions to enable
// (tls_config_set_protocols), for example ProtocolTLSv1_2|ProtocolTLSv1_3.
func (cfg *Config) SetProtocols(p Protocol) error {
	return cfg.callClient("tls_config_set_protocols", func(c *C.struct_tls_config) C.int {
		return C.tls_config_set_protocols(c, C.uint32_t(p))
	}, func(s *clientSettings) error { s.protocols = &p; return nil })
}

// SetVerifyDepth sets the maximum length of the peer's certificate chain
// (tls_config_set_verify_depth).
func (cfg *Config) SetVerifyDepth(depth int) error {
	const op = "tls_config_set_verify_depth"
	if depth < 0 || depth > 1<<30 {
		return &ConfigError{Op: op, Msg: fmt.Sprintf("invalid verify depth %d", depth), Err: errInvalid}
	}
	return cfg.callClient(op, func(c *C.struct_tls_config) C.int {
		return C.tls_config_set_verify_depth(c, C.int(depth))
	}, func(s *clientSettings) error { s.verifyDepth = &depth; return nil })
}

// PreferCiphersClient makes a server honour the client's cipher preference
// (tls_config_prefer_ciphers_client).
func (cfg *Config) PreferCiphersClient() error {
	return cfg.callVoid("tls_config_prefer_ciphers_client", func(c *C.struct_tls_config) { C.tls_config_prefer_ciphers_client(c) })
}

// PreferCiphersServer makes a server use its own cipher preference, the
// default (tls_config_prefer_ciphers_server).
func (cfg *Config) PreferCiphersServer() error {
	return cfg.callVoid("tls_config_prefer_ciphers_server", func(c *C.struct_tls_config) { C.tls_config_prefer_ciphers_server(c) })
}

// --- Verification ---------------------------------------------------------

// InsecureNoVerifyCert disables verification of the peer's certificate chain
// (tls_config_insecure_noverifycert). For tests only.
func (cfg *Config) InsecureNoVerifyCert() error {
	return cfg.callVoidClient("tls_config_insecure_noverifycert", func(c *C.struct_tls_config) { C.tls_config_insecure_noverifycert(c) }, func(s *clientSettings) { s.noVerifyCert = true })
}

// InsecureNoVerifyName disables the check of the server name against the
// certificate (tls_config_insecure_noverifyname).
func (cfg *Config) InsecureNoVerifyName() error {
	return cfg.callVoidClient("tls_config_insecure_noverifyname", func(c *C.struct_tls_config) { C.tls_config_insecure_noverifyname(c) }, func(s *clientSettings) { s.noVerifyName = true })
}

// InsecureNoVerifyTime disables the validity period check of certificates
// (tls_config_insecure_noverifytime).
func (cfg *Config) InsecureNoVerifyTime() error {
	return cfg.callVoidClient("tls_config_insecure_noverifytime", func(c *C.struct_tls_config) { C.tls_config_insecure_noverifytime(c) }, func(s *clientSettings) { s.noVerifyTime = true })
}

// Verify turns all certificate verification back on (tls_config_verify).
func (cfg *Config) Verify() error {
	return cfg.callVoidClient("tls_config_verify", func(c *C.struct_tls_config) { C.tls_config_verify(c) }, func(s *clientSettings) { s.noVerifyCert, s.noVerifyName, s.noVerifyTime = false, false, false })
}

// VerifyClient makes a server require and verify a client certificate
// (tls_config_verify_client).
func (cfg *Config) VerifyClient() error {
	return cfg.callVoid("tls_config_verify_client", func(c *C.struct_tls_config) { C.tls_config_verify_client(c) })
}

// VerifyClientOptional makes a server verify a client certificate when one
// is sent (tls_config_verify_client_optional).
func (cfg *Config) VerifyClientOptional() error {
	return cfg.callVoid("tls_config_verify_client_optional", func(c *C.struct_tls_config) { C.tls_config_verify_client_optional(c) })
}

// OCSPRequireStapling makes a client require a valid stapled OCSP response
// (tls_config_ocsp_require_stapling).
func (cfg *Config) OCSPRequireStapling() error {
	return cfg.callVoidClient("tls_config_ocsp_require_stapling", func(c *C.struct_tls_config) { C.tls_config_ocsp_require_stapling(c) }, func(s *clientSettings) { s.ocspRequire = true })
}

// DefaultCAFile returns the path of libtls's default CA file
// (tls_default_ca_cert_file). LibreTLS ignores it in favour of OpenSSL's
// default verify paths.
func DefaultCAFile() string {
	if p := C.tls_default_ca_cert_file(); p != nil {
		return C.GoString(p)
	}
	return ""
}

// LoadFile reads a PEM file, decrypting a private key with password when
// one is given (tls_load_file). The result can be passed to SetKey; zero it
// when done.
func LoadFile(path string, password []byte) ([]byte, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	if err := checkNUL("tls_load_file", path); err != nil {
		return nil, err
	}
	if bytes.IndexByte(password, 0) >= 0 {
		// Not quoted: the message must not carry the password.
		return nil, &ConfigError{Op: "tls_load_file", Msg: "password contains a NUL byte", Err: errInvalid}
	}
	cpath := cstring(path)
	defer C.free(unsafe.Pointer(cpath))
	var cpw *C.char
	if password != nil {
		// A NUL-terminated C copy, zeroed before it is freed.
		cpw = (*C.char)(C.calloc(C.size_t(len(password)+1), 1))
		pw := unsafe.Slice((*byte)(unsafe.Pointer(cpw)), len(password)+1)
		copy(pw, password)
		defer func() {
			clear(pw)
			C.free(unsafe.Pointer(cpw))
		}()
	}
	var n C.size_t
	buf, err := C.tls_load_file(cpath, &n, cpw)
	if buf == nil {
		msg := "failed to load " + path
		if err != nil {
			msg += ": " + err.Error()
		}
		return nil, &ConfigError{Op: "tls_load_file", Msg: msg, Err: err}
	}
	out := C.GoBytes(unsafe.Pointer(buf), C.int(n))
	C.tls_unload_file(buf, n) // zeroes and frees
	return out, nil
}
