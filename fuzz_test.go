package libtls_test

// Fuzz targets for the setters that take bytes or strings. Without -fuzz
// only their seed corpora run, as ordinary tests. To fuzz one:
//
//	go test -run='^$' -fuzz=FuzzSetSessionID -fuzztime=30s
//
// Every target asserts that a call returns nil or a *ConfigError (never
// another error, never a crash) and, where the rule is simple enough, exactly
// which.

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// nilOrConfigError asserts that err is nil or a *ConfigError from op.
func nilOrConfigError(t *testing.T, err error, op string) {
	t.Helper()
	if err == nil {
		return
	}
	var ce *libtls.ConfigError
	require.True(t, errors.As(err, &ce), "%T %v is not a *ConfigError", err, err)
	require.Equal(t, op, ce.Op)
	require.NotEmpty(t, ce.Msg)
	require.False(t, errors.Is(err, libtls.ErrClosed), "open Config reported closed: %v", err)
}

func fuzzConfig(t *testing.T) *libtls.Config {
	t.Helper()
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, cfg.Close()) })
	return cfg
}

func FuzzSetSessionID(f *testing.F) {
	for _, n := range []int{0, 1, 16, 31, 32, 33, 64, 1024} {
		f.Add(seq(n))
	}
	f.Fuzz(func(t *testing.T, id []byte) {
		cfg := fuzzConfig(t)
		err := cfg.SetSessionID(id)
		nilOrConfigError(t, err, opSessionID)
		if len(id) <= libtls.MaxSessionIDLength {
			require.NoError(t, err)
		} else {
			checkErr(t, err, libtlsErr(opSessionID, "session ID too large"))
		}
	})
}

func FuzzAddTicketKey(f *testing.F) {
	for _, rev := range []uint32{0, 1, 2, 0x7fffffff, libtls.LocalTicketKeyRevBase, 0xffffffff} {
		for _, n := range []int{0, 47, 48, 49} {
			f.Add(rev, seq(n))
		}
	}
	f.Fuzz(func(t *testing.T, rev uint32, key []byte) {
		cfg := fuzzConfig(t)
		err := cfg.AddTicketKey(rev, key)
		nilOrConfigError(t, err, opTicketKey)
		switch {
		case rev == 0:
			checkErr(t, err, errRevisionZero)
		case rev >= libtls.LocalTicketKeyRevBase:
			checkErr(t, err, localRevErr(rev))
		case len(key) != libtls.TicketKeySize:
			checkErr(t, err, errKeySize)
		default:
			require.NoError(t, err)
			require.NoError(t, cfg.AddTicketKey(rev, key), "re-adding the newest key")
			assert.Equal(t, []uint32{rev}, cfg.TicketKeyRevisions())
		}
	})
}

// pemSeeds are valid and broken PEM inputs for the certificate setters.
func pemSeeds(f *testing.F) (certPEM, keyPEM []byte, broken [][]byte) {
	ca, err := testcert.NewCA("fuzz CA")
	require.NoError(f, err)
	leaf, err := ca.Issue("localhost")
	require.NoError(f, err)
	return leaf.CertPEM, leaf.KeyPEM, [][]byte{
		nil,
		[]byte("-----BEGIN CERTIFICATE-----\n"),
		[]byte("-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n"),
		[]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
		leaf.CertPEM[:len(leaf.CertPEM)/2],
		append(append([]byte{}, ca.CertPEM...), leaf.CertPEM...),
		[]byte("\x00\xff\x00"),
	}
}

func FuzzSetCA(f *testing.F) {
	certPEM, keyPEM, broken := pemSeeds(f)
	f.Add(certPEM)
	f.Add(keyPEM)
	for _, b := range broken {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg := fuzzConfig(t)
		// libtls stores CA, CRL and OCSP data as they are.
		nilOrConfigError(t, cfg.SetCA(data), "tls_config_set_ca_mem")
		nilOrConfigError(t, cfg.SetCRL(data), "tls_config_set_crl_mem")
		nilOrConfigError(t, cfg.SetOCSPStaple(data), "tls_config_set_ocsp_staple_mem")
		// The certificate is parsed at once.
		nilOrConfigError(t, cfg.SetCert(data), "tls_config_set_cert_mem")
	})
}

func FuzzSetKeypair(f *testing.F) {
	certPEM, keyPEM, broken := pemSeeds(f)
	f.Add(certPEM, keyPEM)
	f.Add(keyPEM, certPEM)
	for _, b := range broken {
		f.Add(b, keyPEM)
		f.Add(certPEM, b)
	}
	f.Fuzz(func(t *testing.T, cert, key []byte) {
		cfg := fuzzConfig(t)
		nilOrConfigError(t, cfg.SetKeypair(cert, key), "tls_config_set_keypair_mem")
		nilOrConfigError(t, cfg.SetKey(key), "tls_config_set_key_mem")
		nilOrConfigError(t, cfg.AddKeypair(cert, key), "tls_config_add_keypair_mem")
		nilOrConfigError(t, cfg.SetKeypairOCSP(cert, key, key), "tls_config_set_keypair_ocsp_mem")
	})
}

// validALPN is the binding's rule for one ALPN name.
func validALPN(p string) bool {
	return p != "" && len(p) <= 255 && !strings.ContainsAny(p, ",\x00")
}

func FuzzSetALPN(f *testing.F) {
	long := strings.Repeat("x", 255)
	for _, s := range [][2]string{
		{"h2", "http/1.1"}, {"", "h2"}, {"h2", ""}, {"a,b", "c"}, {long, long + "x"},
		{"h2\x00", "x"}, {"\xff\xfe", "ü"}, {"acme-tls/1", "h3"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		cfg := fuzzConfig(t)
		err := cfg.SetALPN(a, b)
		nilOrConfigError(t, err, "tls_config_set_alpn")
		switch {
		case !validALPN(a):
			checkErr(t, err, ownErr("tls_config_set_alpn", fmt.Sprintf("invalid ALPN protocol %q", a)))
		case !validALPN(b):
			checkErr(t, err, ownErr("tls_config_set_alpn", fmt.Sprintf("invalid ALPN protocol %q", b)))
		default:
			require.NoError(t, err)
		}
		// A single name follows the same rule.
		err = cfg.SetALPN(a)
		nilOrConfigError(t, err, "tls_config_set_alpn")
		assert.Equal(t, validALPN(a), err == nil, "SetALPN(%q): %v", a, err)
	})
}

func FuzzParseProtocols(f *testing.F) {
	for _, s := range []string{
		"", "all", "secure", "default", "legacy", "tlsv1", "tlsv1.0", "tlsv1.1", "tlsv1.2", "tlsv1.3",
		"tlsv1.2,tlsv1.3", "tlsv1.2:tlsv1.3", "all,!tlsv1.3", "!tlsv1.2", "tlsv1.2,!tlsv1.2", "TLSV1.3",
		",", "!", "::", "bogus", "tlsv1.4", "tlsv1.2\x00bogus", strings.Repeat("tlsv1.2,", 100),
	} {
		f.Add(s)
	}
	const versions = libtls.ProtocolTLSv1_0 | libtls.ProtocolTLSv1_1 | libtls.ProtocolTLSv1_2 | libtls.ProtocolTLSv1_3
	f.Fuzz(func(t *testing.T, s string) {
		p, err := libtls.ParseProtocols(s)
		nilOrConfigError(t, err, "tls_config_parse_protocols")
		if err != nil {
			require.Zero(t, p)
			return
		}
		require.NotContains(t, s, "\x00", "a NUL byte must be refused, not truncated")
		require.Zero(t, p&^versions, "ParseProtocols(%q) = %#x has unknown bits", s, uint32(p))
		if p != 0 {
			back, err := libtls.ParseProtocols(p.String())
			require.NoError(t, err, "ParseProtocols(%q) (from %q)", p.String(), s)
			require.Equal(t, p, back, "round trip of %q via %q", s, p.String())
		}
	})
}

func FuzzSetSessionLifetime(f *testing.F) {
	for _, d := range []time.Duration{0, time.Second, -time.Second, 3 * time.Second, 4 * time.Second, 86400 * time.Second,
		86401 * time.Second, 1500 * time.Millisecond, (1<<32 + 5) * time.Second, -(1<<32 - 5) * time.Second} {
		f.Add(int64(d))
	}
	f.Fuzz(func(t *testing.T, n int64) {
		d := time.Duration(n)
		cfg := fuzzConfig(t)
		err := cfg.SetSessionLifetime(d)
		nilOrConfigError(t, err, opSessionLifetime)
		switch {
		case d%time.Second != 0:
			require.Error(t, err)
			var ce *libtls.ConfigError
			require.ErrorAs(t, err, &ce)
			require.Error(t, ce.Err, "fractional seconds are the binding's own error")
		case d == 0 || (d >= libtls.MinSessionLifetime && d <= libtls.MaxSessionLifetime):
			require.NoError(t, err)
		case d < libtls.MinSessionLifetime:
			checkErr(t, err, libtlsErr(opSessionLifetime, "session lifetime too small"))
		default:
			checkErr(t, err, libtlsErr(opSessionLifetime, "session lifetime too large"))
		}
	})
}
