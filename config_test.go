package libtls_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// isLibreSSL reports whether the tests run against real LibreSSL (rather
// than LibreTLS over OpenSSL).
func isLibreSSL() bool { return libtls.Backend().Name == "LibreSSL" }

// newTestConfig returns a fresh Config that is closed when the test ends.
func newTestConfig(t testing.TB) *libtls.Config {
	t.Helper()
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	require.NotNil(t, cfg)
	t.Cleanup(func() { assert.NoError(t, cfg.Close()) })
	return cfg
}

// wantErr describes the *ConfigError a call must return.
type wantErr struct {
	Op string
	// Msg is the exact message: tls_config_error's text verbatim for
	// errors from libtls, the binding's text for its own errors.
	Msg string
	// re, when set, replaces Msg: a regexp the whole message must match
	// (for messages that embed a temporary path or an OpenSSL error code).
	re string
	// own marks an error the binding detects itself: it wraps a sentinel
	// (Err != nil). Errors from libtls carry only its text (Err == nil).
	own bool
}

func libtlsErr(op, msg string) *wantErr { return &wantErr{Op: op, Msg: msg} }
func ownErr(op, msg string) *wantErr    { return &wantErr{Op: op, Msg: msg, own: true} }
func libtlsErrRE(op, re string) *wantErr {
	return &wantErr{Op: op, re: re}
}

// checkErr asserts that err is what want describes; want == nil means
// success.
func checkErr(t testing.TB, err error, want *wantErr) {
	t.Helper()
	if want == nil {
		require.NoError(t, err)
		return
	}
	require.Error(t, err)
	var ce *libtls.ConfigError
	require.True(t, errors.As(err, &ce), "errors.As(%T %v, *ConfigError) = false", err, err)
	assert.Equal(t, want.Op, ce.Op, "Op")
	if want.re != "" {
		assert.Regexp(t, regexp.MustCompile("^(?:"+want.re+")$"), ce.Msg, "Msg")
	} else {
		assert.Equal(t, want.Msg, ce.Msg, "Msg")
	}
	assert.Equal(t, "libtls: "+ce.Op+": "+ce.Msg, err.Error())
	if want.own {
		assert.Error(t, ce.Err, "the binding's own errors wrap a sentinel")
		assert.False(t, errors.Is(err, net.ErrClosed), "an input error must not look like a closed Config")
	} else {
		assert.NoError(t, ce.Err, "errors from libtls carry only tls_config_error's text")
	}
}

// badPEMErr is what the certificate setters report for a PEM block with
// broken base64: "failed to load certificate: " and an OpenSSL error string,
// whose layout differs by backend. Which error string is not reliable on
// either backend: libtls pops the oldest error of the calling thread's
// OpenSSL error queue, which still holds errors of earlier unrelated failed
// calls (a bad cipher string leaves "no cipher match", a wrong LoadFile
// password "bad decrypt"), and Go runs cgo calls on any thread. On a clean
// queue it is "...:bad base64 decode". LibreTLS also appends strerror of
// whatever errno was left over (": Success", ": No such file or directory").
func badPEMErr(op string) *wantErr {
	if isLibreSSL() {
		// error:06FFF064:digital envelope routines:CRYPTO_internal:bad decrypt
		return libtlsErrRE(op, `failed to load certificate: error:[0-9A-F]{8}:[^:]+:[^:]+:[^:]+`)
	}
	// error:04800064:PEM routines::bad base64 decode: No such file or directory
	return libtlsErrRE(op, `failed to load certificate: error:[0-9A-F]{8}:[^:]+::[^:]+(: [A-Za-z ]+)?`)
}

// fixture holds the files and PEM blocks the setter tests use, all under
// t.TempDir().
type fixture struct {
	dir                       string
	ca                        *testcert.CA
	leaf                      *testcert.Leaf
	caFile, certFile, keyFile string
	crlPEM                    []byte
	crlFile                   string
	ocspDER                   []byte // libtls stores staples without parsing them
	ocspFile                  string
	garbagePEM                []byte
	garbageFile               string
	missing                   string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	fx := &fixture{dir: t.TempDir()}
	var err error
	fx.ca, err = testcert.NewCA("golibtls config test CA")
	require.NoError(t, err)
	fx.leaf, err = fx.ca.Issue("localhost", "127.0.0.1")
	require.NoError(t, err)
	fx.caFile, fx.certFile, fx.keyFile, err = fx.ca.Files(fx.dir, fx.leaf)
	require.NoError(t, err)

	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:     big.NewInt(1),
		ThisUpdate: time.Now().Add(-time.Hour),
		NextUpdate: time.Now().Add(24 * time.Hour),
	}, fx.ca.Cert, fx.ca.Key)
	require.NoError(t, err)
	fx.crlPEM = pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})
	fx.crlFile = fx.write(t, "crl.pem", fx.crlPEM)

	fx.ocspDER = []byte{0x30, 0x03, 0x0a, 0x01, 0x00} // OCSPResponse{responseStatus: successful}
	fx.ocspFile = fx.write(t, "ocsp.der", fx.ocspDER)

	fx.garbagePEM = []byte("-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n")
	fx.garbageFile = fx.write(t, "garbage.pem", fx.garbagePEM)
	fx.missing = filepath.Join(fx.dir, "missing.pem")
	return fx
}

func (fx *fixture) write(t testing.TB, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(fx.dir, name)
	require.NoError(t, os.WriteFile(p, data, 0o600))
	return p
}

// openErr is libtls's message for a file it cannot open.
func openErr(op, what, path string) *wantErr {
	return libtlsErr(op, fmt.Sprintf("failed to open %s '%s': No such file or directory", what, path))
}

func nulErr(op, s string) *wantErr {
	return ownErr(op, fmt.Sprintf("string %q contains a NUL byte", s))
}

// setterCase is one call of one Config method on a fresh Config.
type setterCase struct {
	method string // the Config method exercised
	name   string
	bad    bool // the input is wrong (even if libtls only notices later)
	call   func(cfg *libtls.Config) error
	want   *wantErr
}

// configMethods lists the exported methods of *Config that return only an
// error: the setters and Close (accessors such as TicketKeyRevisions are
// tested where they belong).
func configMethods(t testing.TB) []string {
	t.Helper()
	typ := reflect.TypeOf((*libtls.Config)(nil))
	errType := reflect.TypeOf((*error)(nil)).Elem()
	var names []string
	for i := range typ.NumMethod() {
		m := typ.Method(i)
		if m.Type.NumOut() == 1 && m.Type.Out(0) == errType {
			names = append(names, m.Name)
		}
	}
	require.NotEmpty(t, names)
	return names
}

// configMethodTakesInput reports whether a Config method has parameters
// besides its receiver (setters like VerifyClient take none and cannot fail
// except on a closed Config).
func configMethodTakesInput(name string) bool {
	m, ok := reflect.TypeOf((*libtls.Config)(nil)).MethodByName(name)
	return ok && m.Type.NumIn() > 1
}

func setterCases(t *testing.T, fx *fixture) []setterCase {
	const (
		opCAFile      = "tls_config_set_ca_file"
		opCAPath      = "tls_config_set_ca_path"
		opCertFile    = "tls_config_set_cert_file"
		opCert        = "tls_config_set_cert_mem"
		opKeyFile     = "tls_config_set_key_file"
		opKeypairFile = "tls_config_set_keypair_file"
		opKeypair     = "tls_config_set_keypair_mem"
		opKPOCSPFile  = "tls_config_set_keypair_ocsp_file"
		opKPOCSP      = "tls_config_set_keypair_ocsp_mem"
		opAddKPFile   = "tls_config_add_keypair_file"
		opAddKP       = "tls_config_add_keypair_mem"
		opAddOCSPFile = "tls_config_add_keypair_ocsp_file"
		opAddOCSP     = "tls_config_add_keypair_ocsp_mem"
		opStapleFile  = "tls_config_set_ocsp_staple_file"
		opCRLFile     = "tls_config_set_crl_file"
		opALPN        = "tls_config_set_alpn"
		opCiphers     = "tls_config_set_ciphers"
		opDHE         = "tls_config_set_dheparams"
		opCurve       = "tls_config_set_ecdhecurve"
		opCurves      = "tls_config_set_ecdhecurves"
		opDepth       = "tls_config_set_verify_depth"
	)
	cert, key, ca, g, miss := fx.leaf.CertPEM, fx.leaf.KeyPEM, fx.ca.CertPEM, fx.garbagePEM, fx.missing
	long255 := strings.Repeat("a", 255)
	tooMany := make([]string, 300) // 300 names of 255 bytes: > 65535 bytes in all
	for i := range tooMany {
		tooMany[i] = long255
	}
	good := func(method, name string, call func(*libtls.Config) error) setterCase {
		return setterCase{method: method, name: name, call: call}
	}
	// accepted: wrong input that libtls stores without looking at it; the
	// error comes from tls_configure or the handshake (connection tests).
	accepted := func(method, name string, call func(*libtls.Config) error) setterCase {
		return setterCase{method: method, name: name, bad: true, call: call}
	}
	bad := func(method, name string, want *wantErr, call func(*libtls.Config) error) setterCase {
		return setterCase{method: method, name: name, bad: true, call: call, want: want}
	}
	return []setterCase{
		good("SetCAFile", "CA file", func(c *libtls.Config) error { return c.SetCAFile(fx.caFile) }),
		bad("SetCAFile", "missing file", openErr(opCAFile, "CA file", miss), func(c *libtls.Config) error { return c.SetCAFile(miss) }),
		bad("SetCAFile", "directory", libtlsErr(opCAFile, fmt.Sprintf("failed to read CA file '%s': Is a directory", fx.dir)), func(c *libtls.Config) error {
			return c.SetCAFile(fx.dir)
		}),
		accepted("SetCAFile", "garbage PEM (read, parsed at tls_configure)", func(c *libtls.Config) error { return c.SetCAFile(fx.garbageFile) }),
		bad("SetCAFile", "NUL in path", nulErr(opCAFile, fx.caFile+"\x00x"), func(c *libtls.Config) error { return c.SetCAFile(fx.caFile + "\x00x") }),

		good("SetCAPath", "directory", func(c *libtls.Config) error { return c.SetCAPath(fx.dir) }),
		accepted("SetCAPath", "missing directory (only recorded)", func(c *libtls.Config) error { return c.SetCAPath(miss) }),
		bad("SetCAPath", "NUL in path", nulErr(opCAPath, "a\x00b"), func(c *libtls.Config) error { return c.SetCAPath("a\x00b") }),

		good("SetCA", "CA PEM", func(c *libtls.Config) error { return c.SetCA(ca) }),
		good("SetCA", "nil", func(c *libtls.Config) error { return c.SetCA(nil) }),
		accepted("SetCA", "garbage PEM (parsed at tls_configure)", func(c *libtls.Config) error { return c.SetCA(g) }),

		good("SetCertFile", "cert file", func(c *libtls.Config) error { return c.SetCertFile(fx.certFile) }),
		bad("SetCertFile", "missing file", openErr(opCertFile, "certificate file", miss), func(c *libtls.Config) error { return c.SetCertFile(miss) }),
		bad("SetCertFile", "NUL in path", nulErr(opCertFile, "\x00"), func(c *libtls.Config) error { return c.SetCertFile("\x00") }),

		good("SetCert", "cert PEM", func(c *libtls.Config) error { return c.SetCert(cert) }),
		good("SetCert", "nil", func(c *libtls.Config) error { return c.SetCert(nil) }),
		bad("SetCert", "garbage PEM", badPEMErr(opCert), func(c *libtls.Config) error { return c.SetCert(g) }),

		good("SetKeyFile", "key file", func(c *libtls.Config) error { return c.SetKeyFile(fx.keyFile) }),
		bad("SetKeyFile", "missing file", openErr(opKeyFile, "key file", miss), func(c *libtls.Config) error { return c.SetKeyFile(miss) }),

		good("SetKey", "key PEM", func(c *libtls.Config) error { return c.SetKey(key) }),
		accepted("SetKey", "garbage PEM (parsed at tls_configure)", func(c *libtls.Config) error { return c.SetKey(g) }),

		good("SetKeypairFile", "files", func(c *libtls.Config) error { return c.SetKeypairFile(fx.certFile, fx.keyFile) }),
		bad("SetKeypairFile", "missing cert", openErr(opKeypairFile, "certificate file", miss), func(c *libtls.Config) error { return c.SetKeypairFile(miss, fx.keyFile) }),
		bad("SetKeypairFile", "missing key", openErr(opKeypairFile, "key file", miss), func(c *libtls.Config) error { return c.SetKeypairFile(fx.certFile, miss) }),
		bad("SetKeypairFile", "NUL in key path", nulErr(opKeypairFile, "k\x00"), func(c *libtls.Config) error { return c.SetKeypairFile(fx.certFile, "k\x00") }),

		good("SetKeypair", "PEM", func(c *libtls.Config) error { return c.SetKeypair(cert, key) }),
		bad("SetKeypair", "garbage cert", badPEMErr(opKeypair), func(c *libtls.Config) error { return c.SetKeypair(g, key) }),
		accepted("SetKeypair", "key of another cert (checked at tls_configure)", func(c *libtls.Config) error { return c.SetKeypair(cert, g) }),

		good("SetKeypairOCSPFile", "no staple", func(c *libtls.Config) error { return c.SetKeypairOCSPFile(fx.certFile, fx.keyFile, "") }),
		good("SetKeypairOCSPFile", "staple", func(c *libtls.Config) error { return c.SetKeypairOCSPFile(fx.certFile, fx.keyFile, fx.ocspFile) }),
		bad("SetKeypairOCSPFile", "missing cert", openErr(opKPOCSPFile, "certificate file", miss), func(c *libtls.Config) error {
			return c.SetKeypairOCSPFile(miss, fx.keyFile, fx.ocspFile)
		}),
		bad("SetKeypairOCSPFile", "missing staple", openErr(opKPOCSPFile, "ocsp file", miss), func(c *libtls.Config) error {
			return c.SetKeypairOCSPFile(fx.certFile, fx.keyFile, miss)
		}),

		good("SetKeypairOCSP", "staple", func(c *libtls.Config) error { return c.SetKeypairOCSP(cert, key, fx.ocspDER) }),
		good("SetKeypairOCSP", "no staple", func(c *libtls.Config) error { return c.SetKeypairOCSP(cert, key, nil) }),
		bad("SetKeypairOCSP", "garbage cert", badPEMErr(opKPOCSP), func(c *libtls.Config) error { return c.SetKeypairOCSP(g, key, nil) }),

		good("AddKeypairFile", "files", func(c *libtls.Config) error { return c.AddKeypairFile(fx.certFile, fx.keyFile) }),
		bad("AddKeypairFile", "missing key", openErr(opAddKPFile, "key file", miss), func(c *libtls.Config) error { return c.AddKeypairFile(fx.certFile, miss) }),

		good("AddKeypair", "PEM", func(c *libtls.Config) error { return c.AddKeypair(cert, key) }),
		bad("AddKeypair", "garbage cert", badPEMErr(opAddKP), func(c *libtls.Config) error { return c.AddKeypair(g, g) }),

		good("AddKeypairOCSPFile", "staple", func(c *libtls.Config) error { return c.AddKeypairOCSPFile(fx.certFile, fx.keyFile, fx.ocspFile) }),
		bad("AddKeypairOCSPFile", "missing staple", openErr(opAddOCSPFile, "ocsp file", miss), func(c *libtls.Config) error {
			return c.AddKeypairOCSPFile(fx.certFile, fx.keyFile, miss)
		}),
		bad("AddKeypairOCSPFile", "NUL in staple path", nulErr(opAddOCSPFile, "o\x00"), func(c *libtls.Config) error {
			return c.AddKeypairOCSPFile(fx.certFile, fx.keyFile, "o\x00")
		}),

		good("AddKeypairOCSP", "staple", func(c *libtls.Config) error { return c.AddKeypairOCSP(cert, key, fx.ocspDER) }),
		bad("AddKeypairOCSP", "garbage cert", badPEMErr(opAddOCSP), func(c *libtls.Config) error { return c.AddKeypairOCSP(g, key, fx.ocspDER) }),

		good("SetOCSPStapleFile", "DER file", func(c *libtls.Config) error { return c.SetOCSPStapleFile(fx.ocspFile) }),
		bad("SetOCSPStapleFile", "missing file", openErr(opStapleFile, "ocsp file", miss), func(c *libtls.Config) error { return c.SetOCSPStapleFile(miss) }),

		good("SetOCSPStaple", "DER", func(c *libtls.Config) error { return c.SetOCSPStaple(fx.ocspDER) }),
		accepted("SetOCSPStaple", "garbage (stapled as is)", func(c *libtls.Config) error { return c.SetOCSPStaple(g) }),

		good("SetCRLFile", "CRL file", func(c *libtls.Config) error { return c.SetCRLFile(fx.crlFile) }),
		bad("SetCRLFile", "missing file", openErr(opCRLFile, "CRL file", miss), func(c *libtls.Config) error { return c.SetCRLFile(miss) }),

		good("SetCRL", "CRL PEM", func(c *libtls.Config) error { return c.SetCRL(fx.crlPEM) }),
		accepted("SetCRL", "garbage PEM (parsed at tls_configure)", func(c *libtls.Config) error { return c.SetCRL(g) }),

		good("ClearKeys", "after SetKeypair", func(c *libtls.Config) error {
			if err := c.SetKeypair(cert, key); err != nil {
				return err
			}
			return c.ClearKeys()
		}),

		good("SetALPN", "h2, http/1.1", func(c *libtls.Config) error { return c.SetALPN("h2", "http/1.1") }),
		good("SetALPN", "255-byte name", func(c *libtls.Config) error { return c.SetALPN(long255) }),
		bad("SetALPN", "no names", ownErr(opALPN, "no ALPN protocols"), func(c *libtls.Config) error { return c.SetALPN() }),
		bad("SetALPN", "empty name", ownErr(opALPN, `invalid ALPN protocol ""`), func(c *libtls.Config) error { return c.SetALPN("h2", "") }),
		bad("SetALPN", "comma", ownErr(opALPN, `invalid ALPN protocol "h2,http/1.1"`), func(c *libtls.Config) error { return c.SetALPN("h2,http/1.1") }),
		bad("SetALPN", "256-byte name", ownErr(opALPN, fmt.Sprintf("invalid ALPN protocol %q", long255+"a")), func(c *libtls.Config) error {
			return c.SetALPN(long255 + "a")
		}),
		bad("SetALPN", "NUL", ownErr(opALPN, `invalid ALPN protocol "h2\x00evil"`), func(c *libtls.Config) error { return c.SetALPN("h2\x00evil") }),
		bad("SetALPN", "more than 65535 bytes in all", libtlsErr(opALPN, "alpn too large"), func(c *libtls.Config) error { return c.SetALPN(tooMany...) }),

		good("SetCiphers", "secure", func(c *libtls.Config) error { return c.SetCiphers("secure") }),
		good("SetCiphers", "insecure", func(c *libtls.Config) error { return c.SetCiphers("insecure") }),
		good("SetCiphers", "OpenSSL string", func(c *libtls.Config) error { return c.SetCiphers("ECDHE-ECDSA-AES128-GCM-SHA256") }),
		bad("SetCiphers", "unknown", libtlsErr(opCiphers, "no ciphers for 'NOT-A-CIPHER'"), func(c *libtls.Config) error { return c.SetCiphers("NOT-A-CIPHER") }),
		bad("SetCiphers", "empty", libtlsErr(opCiphers, "no ciphers for ''"), func(c *libtls.Config) error { return c.SetCiphers("") }),
		bad("SetCiphers", "NUL", nulErr(opCiphers, "secure\x00junk"), func(c *libtls.Config) error { return c.SetCiphers("secure\x00junk") }),

		good("SetDHEParams", "auto", func(c *libtls.Config) error { return c.SetDHEParams("auto") }),
		good("SetDHEParams", "none", func(c *libtls.Config) error { return c.SetDHEParams("none") }),
		good("SetDHEParams", "legacy", func(c *libtls.Config) error { return c.SetDHEParams("legacy") }),
		bad("SetDHEParams", "unknown", libtlsErr(opDHE, "invalid dhe param 'bogus'"), func(c *libtls.Config) error { return c.SetDHEParams("bogus") }),
		bad("SetDHEParams", "empty", libtlsErr(opDHE, "invalid dhe param ''"), func(c *libtls.Config) error { return c.SetDHEParams("") }),

		good("SetECDHECurve", "P-256", func(c *libtls.Config) error { return c.SetECDHECurve("P-256") }),
		bad("SetECDHECurve", "unknown", libtlsErr(opCurve, "invalid ecdhe curve 'bogus'"), func(c *libtls.Config) error { return c.SetECDHECurve("bogus") }),

		good("SetECDHECurves", "X25519,P-256", func(c *libtls.Config) error { return c.SetECDHECurves("X25519,P-256") }),
		good("SetECDHECurves", "default", func(c *libtls.Config) error { return c.SetECDHECurves("default") }),
		bad("SetECDHECurves", "one unknown", libtlsErr(opCurves, "invalid ecdhe curve 'bogus'"), func(c *libtls.Config) error { return c.SetECDHECurves("X25519,bogus") }),
		bad("SetECDHECurves", "empty", libtlsErr(opCurves, "invalid ecdhe curve ''"), func(c *libtls.Config) error { return c.SetECDHECurves("") }),

		good("SetProtocols", "default", func(c *libtls.Config) error { return c.SetProtocols(libtls.ProtocolsDefault) }),
		good("SetProtocols", "TLS 1.3", func(c *libtls.Config) error { return c.SetProtocols(libtls.ProtocolTLSv1_3) }),
		accepted("SetProtocols", "none (the handshake fails later)", func(c *libtls.Config) error { return c.SetProtocols(0) }),

		good("SetVerifyDepth", "0", func(c *libtls.Config) error { return c.SetVerifyDepth(0) }),
		good("SetVerifyDepth", "5", func(c *libtls.Config) error { return c.SetVerifyDepth(5) }),
		bad("SetVerifyDepth", "negative", ownErr(opDepth, "invalid verify depth -1"), func(c *libtls.Config) error { return c.SetVerifyDepth(-1) }),
		bad("SetVerifyDepth", "huge", ownErr(opDepth, "invalid verify depth 1073741825"), func(c *libtls.Config) error { return c.SetVerifyDepth(1<<30 + 1) }),

		// Setters without input cannot fail on an open Config; their bad
		// case is the closed Config (TestConfigUseAfterClose).
		good("PreferCiphersClient", "", (*libtls.Config).PreferCiphersClient),
		good("PreferCiphersServer", "", (*libtls.Config).PreferCiphersServer),
		good("InsecureNoVerifyCert", "", (*libtls.Config).InsecureNoVerifyCert),
		good("InsecureNoVerifyName", "", (*libtls.Config).InsecureNoVerifyName),
		good("InsecureNoVerifyTime", "", (*libtls.Config).InsecureNoVerifyTime),
		good("Verify", "", (*libtls.Config).Verify),
		good("VerifyClient", "", (*libtls.Config).VerifyClient),
		good("VerifyClientOptional", "", (*libtls.Config).VerifyClientOptional),
		good("OCSPRequireStapling", "", (*libtls.Config).OCSPRequireStapling),
		good("Close", "", (*libtls.Config).Close),

		// The session calls have their own tables (session_test.go,
		// ticket_test.go); one good and one bad call each here keeps this
		// table complete.
		good("SetSessionFD", "-1", func(c *libtls.Config) error { return c.SetSessionFD(-1) }),
		bad("SetSessionFD", "-2", ownErr("tls_config_set_session_fd", "invalid file descriptor -2"), func(c *libtls.Config) error { return c.SetSessionFD(-2) }),
		good("SetSessionFile", "nil", func(c *libtls.Config) error { return c.SetSessionFile(nil) }),
		bad("SetSessionFile", "directory", libtlsErr("tls_config_set_session_fd", "session file is not a regular file"), func(c *libtls.Config) error {
			d, err := os.Open(fx.dir)
			if err != nil {
				return err
			}
			defer d.Close()
			return c.SetSessionFile(d)
		}),
		good("ApplyTicketKeySet", "new set", func(c *libtls.Config) error {
			set, err := libtls.NewTicketKeySet()
			if err != nil {
				return err
			}
			defer set.Zero()
			return c.ApplyTicketKeySet(set)
		}),
		bad("ApplyTicketKeySet", "nil set", ownErr(opTicketKey, "invalid ticket key set: nil ticket key set"), func(c *libtls.Config) error {
			return c.ApplyTicketKeySet(nil)
		}),
		bad("ApplyTicketKeySet", "no keys", ownErr(opTicketKey, "invalid ticket key set: no ticket keys"), func(c *libtls.Config) error {
			return c.ApplyTicketKeySet(&libtls.TicketKeySet{SessionID: []byte("fleet")})
		}),
		good("SetSessionCache", "memory cache", func(c *libtls.Config) error { return c.SetSessionCache(libtls.NewMemorySessionCache(0)) }),
		good("SetSessionCache", "nil", func(c *libtls.Config) error { return c.SetSessionCache(nil) }),
		accepted("SetSessionCache", "closed cache (client connects fail later)", func(c *libtls.Config) error {
			sc := libtls.NewMemorySessionCache(0)
			if err := sc.Close(); err != nil {
				return err
			}
			return c.SetSessionCache(sc)
		}),
		good("SetSessionScope", "per server name", func(c *libtls.Config) error { return c.SetSessionScope(libtls.SessionPerServerName) }),
		good("SetSessionScope", "per address", func(c *libtls.Config) error { return c.SetSessionScope(libtls.SessionPerAddress) }),
		bad("SetSessionScope", "unknown", ownErr("SetSessionScope", "invalid session scope 7"), func(c *libtls.Config) error { return c.SetSessionScope(7) }),
		good("SetSessionID", "32 bytes", func(c *libtls.Config) error { return c.SetSessionID(make([]byte, 32)) }),
		bad("SetSessionID", "33 bytes", libtlsErr("tls_config_set_session_id", "session ID too large"), func(c *libtls.Config) error { return c.SetSessionID(make([]byte, 33)) }),
		good("SetSessionLifetime", "1h", func(c *libtls.Config) error { return c.SetSessionLifetime(time.Hour) }),
		bad("SetSessionLifetime", "1s", libtlsErr("tls_config_set_session_lifetime", "session lifetime too small"), func(c *libtls.Config) error {
			return c.SetSessionLifetime(time.Second)
		}),
		good("AddTicketKey", "rev 1", func(c *libtls.Config) error { return c.AddTicketKey(1, make([]byte, 48)) }),
		bad("AddTicketKey", "rev 0", errRevisionZero, func(c *libtls.Config) error { return c.AddTicketKey(0, make([]byte, 48)) }),
		bad("AddTicketKey", "47 bytes", libtlsErr("tls_config_add_ticket_key", "wrong amount of ticket key data"), func(c *libtls.Config) error {
			return c.AddTicketKey(1, make([]byte, 47))
		}),
	}
}

func TestConfigSetters(t *testing.T) {
	fx := newFixture(t)
	cases := setterCases(t, fx)
	for _, tc := range cases {
		t.Run(tc.method+"/"+tc.name, func(t *testing.T) {
			cfg := newTestConfig(t)
			checkErr(t, tc.call(cfg), tc.want)
			// tls_config_error is sticky; a good call after a failed one
			// must still succeed.
			if tc.want != nil {
				require.NoError(t, cfg.SetVerifyDepth(3))
			}
		})
	}

	t.Run("coverage", func(t *testing.T) {
		// Every method of *Config is called at least once with good input
		// and, when it takes input, once with bad input.
		var missingGood, missingBad []string
		for _, m := range configMethods(t) {
			if !slices.ContainsFunc(cases, func(c setterCase) bool { return c.method == m && !c.bad }) {
				missingGood = append(missingGood, m)
			}
			if configMethodTakesInput(m) && !slices.ContainsFunc(cases, func(c setterCase) bool { return c.method == m && c.bad }) {
				missingBad = append(missingBad, m)
			}
		}
		assert.Empty(t, missingGood, "methods without a good case")
		assert.Empty(t, missingBad, "methods without a bad case")
	})
}

func TestConfigErrorsAreConfigErrors(t *testing.T) {
	cfg := newTestConfig(t)
	err := cfg.SetSessionID(make([]byte, libtls.MaxSessionIDLength+1))
	var ce *libtls.ConfigError
	require.ErrorAs(t, err, &ce)
	if diff := cmp.Diff(&libtls.ConfigError{Op: "tls_config_set_session_id", Msg: "session ID too large"}, ce); diff != "" {
		t.Errorf("ConfigError mismatch (-want +got):\n%s", diff)
	}
	assert.EqualError(t, err, "libtls: tls_config_set_session_id: session ID too large")

	// Wrapped, it is still found.
	wrapped := fmt.Errorf("configuring server: %w", err)
	ce = nil
	require.ErrorAs(t, wrapped, &ce)
	assert.Equal(t, "session ID too large", ce.Msg)

	// The binding's own errors use the same type.
	err = cfg.AddTicketKey(0, make([]byte, libtls.TicketKeySize))
	ce = nil
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "tls_config_add_ticket_key", ce.Op)
	assert.NotNil(t, ce.Unwrap())
}

func TestConfigCloseTwice(t *testing.T) {
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	require.NoError(t, cfg.Close())
	require.NoError(t, cfg.Close())
	require.NoError(t, cfg.Close())
}

// closedCalls calls every method of *Config but Close, with valid input.
func closedCalls(t *testing.T, fx *fixture) map[string]func(*libtls.Config) error {
	f, err := os.OpenFile(filepath.Join(fx.dir, "session"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	cert, key := fx.leaf.CertPEM, fx.leaf.KeyPEM
	return map[string]func(*libtls.Config) error{
		"SetCAFile":            func(c *libtls.Config) error { return c.SetCAFile(fx.caFile) },
		"SetCAPath":            func(c *libtls.Config) error { return c.SetCAPath(fx.dir) },
		"SetCA":                func(c *libtls.Config) error { return c.SetCA(fx.ca.CertPEM) },
		"SetCertFile":          func(c *libtls.Config) error { return c.SetCertFile(fx.certFile) },
		"SetCert":              func(c *libtls.Config) error { return c.SetCert(cert) },
		"SetKeyFile":           func(c *libtls.Config) error { return c.SetKeyFile(fx.keyFile) },
		"SetKey":               func(c *libtls.Config) error { return c.SetKey(key) },
		"SetKeypairFile":       func(c *libtls.Config) error { return c.SetKeypairFile(fx.certFile, fx.keyFile) },
		"SetKeypair":           func(c *libtls.Config) error { return c.SetKeypair(cert, key) },
		"SetKeypairOCSPFile":   func(c *libtls.Config) error { return c.SetKeypairOCSPFile(fx.certFile, fx.keyFile, fx.ocspFile) },
		"SetKeypairOCSP":       func(c *libtls.Config) error { return c.SetKeypairOCSP(cert, key, fx.ocspDER) },
		"AddKeypairFile":       func(c *libtls.Config) error { return c.AddKeypairFile(fx.certFile, fx.keyFile) },
		"AddKeypair":           func(c *libtls.Config) error { return c.AddKeypair(cert, key) },
		"AddKeypairOCSPFile":   func(c *libtls.Config) error { return c.AddKeypairOCSPFile(fx.certFile, fx.keyFile, fx.ocspFile) },
		"AddKeypairOCSP":       func(c *libtls.Config) error { return c.AddKeypairOCSP(cert, key, fx.ocspDER) },
		"SetOCSPStapleFile":    func(c *libtls.Config) error { return c.SetOCSPStapleFile(fx.ocspFile) },
		"SetOCSPStaple":        func(c *libtls.Config) error { return c.SetOCSPStaple(fx.ocspDER) },
		"SetCRLFile":           func(c *libtls.Config) error { return c.SetCRLFile(fx.crlFile) },
		"SetCRL":               func(c *libtls.Config) error { return c.SetCRL(fx.crlPEM) },
		"ClearKeys":            (*libtls.Config).ClearKeys,
		"SetALPN":              func(c *libtls.Config) error { return c.SetALPN("h2") },
		"SetCiphers":           func(c *libtls.Config) error { return c.SetCiphers("secure") },
		"SetDHEParams":         func(c *libtls.Config) error { return c.SetDHEParams("auto") },
		"SetECDHECurve":        func(c *libtls.Config) error { return c.SetECDHECurve("P-256") },
		"SetECDHECurves":       func(c *libtls.Config) error { return c.SetECDHECurves("X25519") },
		"SetProtocols":         func(c *libtls.Config) error { return c.SetProtocols(libtls.ProtocolsDefault) },
		"SetVerifyDepth":       func(c *libtls.Config) error { return c.SetVerifyDepth(4) },
		"PreferCiphersClient":  (*libtls.Config).PreferCiphersClient,
		"PreferCiphersServer":  (*libtls.Config).PreferCiphersServer,
		"InsecureNoVerifyCert": (*libtls.Config).InsecureNoVerifyCert,
		"InsecureNoVerifyName": (*libtls.Config).InsecureNoVerifyName,
		"InsecureNoVerifyTime": (*libtls.Config).InsecureNoVerifyTime,
		"Verify":               (*libtls.Config).Verify,
		"VerifyClient":         (*libtls.Config).VerifyClient,
		"VerifyClientOptional": (*libtls.Config).VerifyClientOptional,
		"OCSPRequireStapling":  (*libtls.Config).OCSPRequireStapling,
		"SetSessionFD":         func(c *libtls.Config) error { return c.SetSessionFD(int(f.Fd())) },
		"SetSessionFile":       func(c *libtls.Config) error { return c.SetSessionFile(f) },
		"SetSessionCache":      func(c *libtls.Config) error { return c.SetSessionCache(libtls.NewMemorySessionCache(0)) },
		"SetSessionScope":      func(c *libtls.Config) error { return c.SetSessionScope(libtls.SessionPerServerName) },
		"ApplyTicketKeySet": func(c *libtls.Config) error {
			set, err := libtls.NewTicketKeySet()
			if err != nil {
				return err
			}
			return c.ApplyTicketKeySet(set)
		},
		"SetSessionID":       func(c *libtls.Config) error { return c.SetSessionID([]byte("id")) },
		"SetSessionLifetime": func(c *libtls.Config) error { return c.SetSessionLifetime(time.Hour) },
		"AddTicketKey":       func(c *libtls.Config) error { return c.AddTicketKey(1, make([]byte, libtls.TicketKeySize)) },
	}
}

func TestConfigUseAfterClose(t *testing.T) {
	fx := newFixture(t)
	calls := closedCalls(t, fx)

	// The table covers every method but Close.
	var want []string
	for _, m := range configMethods(t) {
		if m != "Close" {
			want = append(want, m)
		}
	}
	var got []string
	for m := range calls {
		got = append(got, m)
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("closedCalls does not cover the methods of *Config (-want +got):\n%s", diff)
	}

	for _, m := range got {
		t.Run(m, func(t *testing.T) {
			// The call works on an open Config...
			open := newTestConfig(t)
			require.NoError(t, calls[m](open))

			// ...and fails on a closed one, without reaching C.
			cfg, err := libtls.NewConfig()
			require.NoError(t, err)
			require.NoError(t, cfg.Close())
			err = calls[m](cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, net.ErrClosed)
			assert.ErrorIs(t, err, libtls.ErrClosed)
			var ce *libtls.ConfigError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, "config is closed", ce.Msg)
			assert.NotEmpty(t, ce.Op)
			require.NoError(t, cfg.Close(), "Close after use-after-close")
		})
	}
}

// TestConfigConcurrentClose runs setters while the Config is closed under
// them: every call either succeeds or reports ErrClosed (run with -race).
func TestConfigConcurrentClose(t *testing.T) {
	for range 20 {
		cfg, err := libtls.NewConfig()
		require.NoError(t, err)
		var wg sync.WaitGroup
		errs := make(chan error, 4*50+1)
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					switch (g + i) % 4 {
					case 0:
						errs <- cfg.SetSessionLifetime(time.Minute)
					case 1:
						errs <- cfg.SetSessionID([]byte{byte(i)})
					case 2:
						errs <- cfg.AddTicketKey(uint32(g*100+i+1), make([]byte, libtls.TicketKeySize))
					case 3:
						errs <- cfg.SetCiphers("secure")
					}
				}
			}()
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs <- cfg.Close() }()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				require.ErrorIs(t, err, net.ErrClosed)
			}
		}
		require.NoError(t, cfg.Close())
	}
}

func TestBackend(t *testing.T) {
	b := libtls.Backend()
	t.Logf("backend: %v\n%#v", b, b)
	assert.Equal(t, b, libtls.Backend(), "Backend is constant")
	assert.Equal(t, libtls.TLSAPI, b.TLSAPI)
	assert.GreaterOrEqual(t, b.TLSAPI, 20200120)
	assert.Equal(t, fmt.Sprintf("%s %s (TLS_API %d)", b.Name, b.Version, b.TLSAPI), b.String())
	// Both backends: clients resume TLS 1.2, nothing resumes TLS 1.3.
	assert.True(t, b.ClientSessionResumption)
	assert.False(t, b.TLS13Resumption)

	switch b.Name {
	case "LibreSSL":
		assert.NotZero(t, b.VersionNumber)
		assert.Regexp(t, `^\d+\.\d+\.\d+$`, b.Version)
		v := b.VersionNumber
		assert.Equal(t, fmt.Sprintf("%d.%d.%d", v>>28, (v>>20)&0xff, (v>>12)&0xff), b.Version)
		if b.Version == "4.3.2" {
			assert.Equal(t, uint32(0x4030200f), b.VersionNumber)
		}
		assert.True(t, b.ServerSessionResumption)
		assert.True(t, b.StoredSessionPinsTLS12)
		assert.Equal(t, v >= 0x40200000, b.FailsOnUnmatchedALPN)
		// LibreSSL dropped TLS 1.0 and 1.1: "all" is TLS 1.2 and 1.3.
		assert.Equal(t, libtls.ProtocolTLSv1_2|libtls.ProtocolTLSv1_3, libtls.ProtocolsAll)
	case "LibreTLS":
		assert.Zero(t, b.VersionNumber)
		if b.Version != "" {
			assert.Regexp(t, `^OpenSSL \d+\.\d+\.\d+`, b.Version)
		}
		assert.False(t, b.ServerSessionResumption, "LibreTLS over OpenSSL >= 1.1 issues empty tickets")
		assert.False(t, b.StoredSessionPinsTLS12)
		assert.False(t, b.FailsOnUnmatchedALPN)
		assert.Equal(t, libtls.ProtocolTLSv1_0|libtls.ProtocolTLSv1_1|libtls.ProtocolTLSv1_2|libtls.ProtocolTLSv1_3, libtls.ProtocolsAll)
	default:
		t.Fatalf("unknown backend name %q", b.Name)
	}
}

func TestConstants(t *testing.T) {
	got := map[string]int64{
		"MaxSessionIDLength": libtls.MaxSessionIDLength,
		"TicketKeySize":      libtls.TicketKeySize,
		"MinSessionLifetime": int64(libtls.MinSessionLifetime),
		"MaxSessionLifetime": int64(libtls.MaxSessionLifetime),
		"ProtocolTLSv1_2":    int64(libtls.ProtocolTLSv1_2),
		"ProtocolTLSv1_3":    int64(libtls.ProtocolTLSv1_3),
		"ProtocolsDefault":   int64(libtls.ProtocolsDefault),
	}
	want := map[string]int64{
		"MaxSessionIDLength": 32,
		"TicketKeySize":      48,
		"MinSessionLifetime": int64(4 * time.Second),
		"MaxSessionLifetime": int64(86400 * time.Second),
		"ProtocolTLSv1_2":    1 << 3,
		"ProtocolTLSv1_3":    1 << 4,
		"ProtocolsDefault":   1<<3 | 1<<4,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("constants (-want +got):\n%s", diff)
	}
}

func TestParseProtocols(t *testing.T) {
	const (
		v10 = libtls.ProtocolTLSv1_0
		v11 = libtls.ProtocolTLSv1_1
		v12 = libtls.ProtocolTLSv1_2
		v13 = libtls.ProtocolTLSv1_3
	)
	const op = "tls_config_parse_protocols"
	tests := []struct {
		in   string
		want libtls.Protocol
		err  *wantErr
	}{
		{in: "tlsv1.2", want: v12},
		{in: "tlsv1.3", want: v13},
		{in: "TLSv1.2", want: v12},
		{in: "tlsv1.2,tlsv1.3", want: v12 | v13},
		{in: "tlsv1.2:tlsv1.3", want: v12 | v13},
		{in: "secure", want: v12 | v13},
		{in: "default", want: libtls.ProtocolsDefault},
		{in: "all", want: libtls.ProtocolsAll},
		{in: "legacy", want: libtls.ProtocolsAll},
		{in: "tlsv1", want: libtls.ProtocolTLSv1},
		{in: "all,!tlsv1.3", want: libtls.ProtocolsAll &^ v13},
		// Both backends still parse the old names to their own bits.
		{in: "tlsv1.0", want: v10},
		{in: "tlsv1.1", want: v11},
		{in: "", err: ownErr(op, `invalid protocols ""`)},
		{in: "bogus", err: ownErr(op, `invalid protocols "bogus"`)},
		{in: "tlsv1.4", err: ownErr(op, `invalid protocols "tlsv1.4"`)},
		{in: ",", err: ownErr(op, `invalid protocols ","`)},
		{in: "!", err: ownErr(op, `invalid protocols "!"`)},
		{in: "tlsv1.2\x00bogus", err: nulErr(op, "tlsv1.2\x00bogus")},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q", tc.in), func(t *testing.T) {
			got, err := libtls.ParseProtocols(tc.in)
			checkErr(t, err, tc.err)
			assert.Equal(t, tc.want, got, "got %v (%#x), want %v (%#x)", got, uint32(got), tc.want, uint32(tc.want))
		})
	}

	t.Run("per backend", func(t *testing.T) {
		all, err := libtls.ParseProtocols("all")
		require.NoError(t, err)
		legacy, err := libtls.ParseProtocols("legacy")
		require.NoError(t, err)
		if isLibreSSL() {
			assert.Equal(t, v12|v13, all)
			assert.Equal(t, v12|v13, legacy)
			assert.Equal(t, "tlsv1.2,tlsv1.3", all.String())
		} else {
			assert.Equal(t, v10|v11|v12|v13, all)
			assert.Equal(t, v10|v11|v12|v13, legacy)
			assert.Equal(t, "tlsv1.0,tlsv1.1,tlsv1.2,tlsv1.3", all.String())
		}
	})
}

func TestProtocolString(t *testing.T) {
	tests := []struct {
		p    libtls.Protocol
		want string
	}{
		{0, "none"},
		{libtls.ProtocolTLSv1_2, "tlsv1.2"},
		{libtls.ProtocolTLSv1_3, "tlsv1.3"},
		{libtls.ProtocolsDefault, "tlsv1.2,tlsv1.3"},
		{libtls.ProtocolTLSv1_0 | libtls.ProtocolTLSv1_3, "tlsv1.0,tlsv1.3"},
		{1 << 0, "none"}, // not a version bit
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, tc.p.String(), "%#x", uint32(tc.p))
	}

	// Round trip: every non-empty set of versions parses back to itself.
	versions := []libtls.Protocol{libtls.ProtocolTLSv1_0, libtls.ProtocolTLSv1_1, libtls.ProtocolTLSv1_2, libtls.ProtocolTLSv1_3}
	for mask := 1; mask < 1<<len(versions); mask++ {
		var p libtls.Protocol
		for i, v := range versions {
			if mask&(1<<i) != 0 {
				p |= v
			}
		}
		got, err := libtls.ParseProtocols(p.String())
		require.NoError(t, err, "ParseProtocols(%q)", p.String())
		assert.Equal(t, p, got, "ParseProtocols(%q)", p.String())
	}
}

func TestDefaultCAFile(t *testing.T) {
	p := libtls.DefaultCAFile()
	t.Logf("DefaultCAFile() = %q", p)
	require.NotEmpty(t, p)
	assert.True(t, filepath.IsAbs(p), "%q is not absolute", p)
	assert.Equal(t, "cert.pem", filepath.Base(p))
	if isLibreSSL() {
		// LibreSSL's OPENSSLDIR/cert.pem, e.g. /opt/libressl/etc/ssl/cert.pem.
		assert.Equal(t, "ssl", filepath.Base(filepath.Dir(p)))
	}
}

func TestLoadFile(t *testing.T) {
	fx := newFixture(t)
	const op = "tls_load_file"

	t.Run("plain", func(t *testing.T) {
		got, err := libtls.LoadFile(fx.keyFile, nil)
		require.NoError(t, err)
		assert.Equal(t, fx.leaf.KeyPEM, got)
	})
	t.Run("missing", func(t *testing.T) {
		got, err := libtls.LoadFile(fx.missing, nil)
		assert.Nil(t, got)
		var ce *libtls.ConfigError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, op, ce.Op)
		assert.Equal(t, "failed to load "+fx.missing+": no such file or directory", ce.Msg)
		assert.ErrorIs(t, err, fs.ErrNotExist)
	})
	t.Run("NUL in path", func(t *testing.T) {
		_, err := libtls.LoadFile(fx.keyFile+"\x00", nil)
		checkErr(t, err, nulErr(op, fx.keyFile+"\x00"))
	})
	t.Run("NUL in password", func(t *testing.T) {
		_, err := libtls.LoadFile(fx.keyFile, []byte("se\x00cret"))
		checkErr(t, err, ownErr(op, "password contains a NUL byte"))
		assert.NotContains(t, err.Error(), "cret")
	})

	// Encrypted keys: a legacy PEM-encrypted EC key made with Go, and a
	// PKCS#8 one made with the openssl CLI.
	type encKey struct {
		name, path string
	}
	var keys []encKey
	{
		block, _ := pem.Decode(fx.leaf.KeyPEM)
		require.NotNil(t, block)
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		require.NoError(t, err)
		ecKey, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
		require.NoError(t, err)
		// Legacy (deprecated, insecure) PEM encryption: exactly the kind of
		// file tls_load_file must decrypt.
		//lint:ignore SA1019 deliberate: the legacy format is what is tested
		enc, err := x509.EncryptPEMBlock(rand.Reader, "EC PRIVATE KEY", ecKey, []byte("secret"), x509.PEMCipherAES256)
		require.NoError(t, err)
		keys = append(keys, encKey{"legacy PEM", fx.write(t, "legacy-enc.pem", pem.EncodeToMemory(enc))})
	}
	if openssl, err := exec.LookPath("openssl"); err == nil {
		p := filepath.Join(fx.dir, "pkcs8-enc.pem")
		out, err := exec.Command(openssl, "pkey", "-in", fx.keyFile, "-aes256", "-passout", "pass:secret", "-out", p).CombinedOutput()
		require.NoError(t, err, "%s", out)
		keys = append(keys, encKey{"PKCS#8 (openssl CLI)", p})
	} else {
		t.Log("openssl CLI not found: only the legacy PEM encrypted key is tested")
	}
	for _, k := range keys {
		t.Run(k.name, func(t *testing.T) {
			raw, err := os.ReadFile(k.path)
			require.NoError(t, err)

			got, err := libtls.LoadFile(k.path, []byte("secret"))
			require.NoError(t, err)
			assert.NotEqual(t, raw, got)
			block, rest := pem.Decode(got)
			require.NotNil(t, block, "decrypted key is not PEM: %q", got)
			assert.Empty(t, bytes.TrimSpace(rest))
			assert.Empty(t, block.Headers, "still encrypted")
			priv, err := parsePrivateKey(block)
			require.NoError(t, err)
			assert.True(t, fx.leaf.Cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(priv.Public()), "decrypted key does not match the certificate")

			// Without a password the file comes back as it is.
			got, err = libtls.LoadFile(k.path, nil)
			require.NoError(t, err)
			assert.Equal(t, raw, got)

			// A wrong or empty password fails (no errno: the message ends
			// with the path).
			for _, pw := range []string{"wrong", ""} {
				got, err = libtls.LoadFile(k.path, []byte(pw))
				assert.Nil(t, got)
				var ce *libtls.ConfigError
				require.ErrorAs(t, err, &ce, "password %q", pw)
				assert.Equal(t, op, ce.Op)
				assert.Equal(t, "failed to load "+k.path, ce.Msg, "password %q", pw)
				assert.NotContains(t, err.Error(), pw+"\x00")
			}
		})
	}
}

// parsePrivateKey parses the private key PEM block tls_load_file returns.
func parsePrivateKey(b *pem.Block) (crypto.Signer, error) {
	switch b.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("%T is not a crypto.Signer", k)
		}
		return s, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(b.Bytes)
	}
	return nil, fmt.Errorf("unexpected PEM block %q", b.Type)
}
