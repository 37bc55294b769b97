package libtls

import (
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

// loopback listens on a random loopback TCP port.
func loopback(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	return l
}
