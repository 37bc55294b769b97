package libtls

import (
	"bytes"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/golibtls/libtls/internal/testcert"
	"github.com/stretchr/testify/require"
)

// pki is the throwaway PKI shared by the connection tests.
type pki struct {
	CA     *testcert.CA
	Server *testcert.Leaf // "localhost", 127.0.0.1, ::1
	Client *testcert.Leaf // "client"
}

var (
	pkiOnce sync.Once
	pkiVal  *pki
	pkiErr  error
)

func testPKI(t testing.TB) *pki {
	t.Helper()
	pkiOnce.Do(func() {
		p := &pki{}
		if p.CA, pkiErr = testcert.NewCA("golibtls test CA"); pkiErr != nil {
			return
		}
		if p.Server, pkiErr = p.CA.Issue("localhost", "127.0.0.1", "::1"); pkiErr != nil {
			return
		}
		if p.Client, pkiErr = p.CA.Issue("client"); pkiErr != nil {
			return
		}
		pkiVal = p
	})
	require.NoError(t, pkiErr)
	return pkiVal
}

// newServerConfig is a libtls server Config with the test certificate.
func newServerConfig(t testing.TB) *Config {
	t.Helper()
	p := testPKI(t)
	cfg, err := NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetKeypair(p.Server.CertPEM, p.Server.KeyPEM))
	require.NoError(t, cfg.SetCA(p.CA.CertPEM))
	return cfg
}

// newClientConfig is a libtls client Config trusting the test CA.
func newClientConfig(t testing.TB) *Config {
	t.Helper()
	p := testPKI(t)
	cfg, err := NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { cfg.Close() })
	require.NoError(t, cfg.SetCA(p.CA.CertPEM))
	return cfg
}

// goServerConfig is a crypto/tls server config with the test certificate.
func goServerConfig(t testing.TB) *tls.Config {
	p := testPKI(t)
	return &tls.Config{Certificates: []tls.Certificate{p.Server.TLS}, ClientCAs: p.CA.Pool}
}

// goClientConfig is a crypto/tls client config trusting the test CA.
func goClientConfig(t testing.TB) *tls.Config {
	p := testPKI(t)
	return &tls.Config{RootCAs: p.CA.Pool, ServerName: "localhost"}
}

// sessionFile creates an empty 0600 session file in a temp dir.
func sessionFile(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

// storeSession writes content into the session file f as the session stored
// for connections of cfg to serverName at addr: followed by the END line of
// libtls's PEM (when content lacks one) and the binding's key line.
func storeSession(t testing.TB, f *os.File, cfg *Config, serverName, addr string, content []byte) {
	t.Helper()
	cfg.mu.RLock()
	trust := cfg.client.trust
	cfg.mu.RUnlock()
	b := append([]byte(nil), content...)
	if !bytes.Contains(b, pemEnd) {
		b = append(append(b, '\n'), pemEnd...)
	}
	b = append(b, sessionKeyLine+sessionKeyFor(serverName, addr, trust).String()+"\n"...)
	require.NoError(t, os.WriteFile(f.Name(), b, 0o600))
}

// storedSession returns the session part of a session file and whether it
// carries a key line.
func storedSession(t testing.TB, f *os.File) ([]byte, bool) {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	pem, _, ok := splitSessionFile(b)
	return pem, ok
}

// loopback listens on a random loopback TCP port.
func loopback(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}
