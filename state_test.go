package libtls

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// checkTLSState checks a golibtls side's ConnectionState against the
// crypto/tls peer's (or the other golibtls side's) view of the connection.
func checkTLSState(t testing.TB, st, peer tls.ConnectionState) {
	t.Helper()
	require.True(t, st.HandshakeComplete)
	require.Equal(t, tls.VersionName(peer.Version), tls.VersionName(st.Version))
	require.NotZero(t, st.CipherSuite)
	require.Equal(t, tls.CipherSuiteName(peer.CipherSuite), tls.CipherSuiteName(st.CipherSuite))
	require.Equal(t, peer.DidResume, st.DidResume)
	require.Equal(t, peer.NegotiatedProtocol, st.NegotiatedProtocol)
	require.Equal(t, peer.ServerName, st.ServerName)
	require.Nil(t, st.VerifiedChains, "libtls does not say which chain it verified")
}

// rsaLeaf issues an RSA certificate for localhost from the test CA, for the
// ECDHE-RSA and RSA key exchange suites.
func rsaLeaf(t testing.TB) (certPEM, keyPEM []byte, cert tls.Certificate) {
	t.Helper()
	p := testPKI(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA.Cert, &key.PublicKey, p.CA.Key)
	require.NoError(t, err)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	require.NoError(t, err)
	return certPEM, keyPEM, cert
}

// TestConnectionStateCipherSuites negotiates every TLS 1.2 suite crypto/tls
// implements, one at a time, with crypto/tls as the peer on either side,
// and checks that ConnectionState's ID is the one crypto/tls negotiated
// (and ConnInfo's name maps to it). A suite the linked backend does not
// offer (RC4, 3DES on newer libraries) fails its handshake; the AEAD suites
// must work on both backends.
func TestConnectionStateCipherSuites(t *testing.T) {
	p := testPKI(t)
	rsaCertPEM, rsaKeyPEM, rsaCert := rsaLeaf(t)
	var suites []*tls.CipherSuite
	suites = append(suites, tls.CipherSuites()...)
	suites = append(suites, tls.InsecureCipherSuites()...)
	mustWork := map[string]bool{}
	for _, name := range []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
		"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
	} {
		mustWork[name] = true
	}
	worked := 0
	for _, s := range suites {
		if !containsVersion(s.SupportedVersions, tls.VersionTLS12) {
			continue // the TLS 1.3 suites: below
		}
		rsaSuite := !strings.Contains(s.Name, "ECDSA")
		t.Run(s.Name, func(t *testing.T) {
			// golibtls client, crypto/tls server restricted to the suite.
			gcfg := &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{s.ID}, Certificates: []tls.Certificate{p.Server.TLS}}
			if rsaSuite {
				gcfg.Certificates = []tls.Certificate{rsaCert}
			}
			srv := goServer(t, gcfg, echo)
			cfg := newClientConfig(t)
			require.NoError(t, cfg.SetCiphers("insecure"))
			c, cerr := dialLibtls(t, srv.Addr, cfg, "localhost")
			r := srv.next(t)
			if mustWork[s.Name] {
				require.NoError(t, cerr)
			}
			if cerr != nil {
				t.Logf("%s: not offered by %s: %v", s.Name, Backend(), cerr)
				return
			}
			require.NoError(t, r.Err)
			st := c.ConnectionState()
			require.Equal(t, s.ID, st.CipherSuite, "libtls calls it %s", c.ConnInfo().Cipher)
			checkTLSState(t, st, r.State)
			id, ok := CipherSuiteID(c.ConnInfo().Cipher)
			require.True(t, ok)
			require.Equal(t, s.ID, id)

			// crypto/tls client restricted to the suite, golibtls server.
			scfg, err := NewConfig()
			require.NoError(t, err)
			t.Cleanup(func() { scfg.Close() })
			if rsaSuite {
				require.NoError(t, scfg.SetKeypair(rsaCertPEM, rsaKeyPEM))
			} else {
				require.NoError(t, scfg.SetKeypair(p.Server.CertPEM, p.Server.KeyPEM))
			}
			require.NoError(t, scfg.SetCiphers("insecure"))
			require.NoError(t, scfg.SetProtocols(ProtocolTLSv1_2))
			lsrv := libtlsServer(t, scfg, echo)
			gc, err := dialGo(t, lsrv.Addr, &tls.Config{RootCAs: p.CA.Pool, ServerName: "localhost", CipherSuites: []uint16{s.ID}, MaxVersion: tls.VersionTLS12})
			lr := lsrv.next(t)
			require.NoError(t, err)
			require.NoError(t, lr.Err)
			require.Equal(t, s.ID, gc.ConnectionState().CipherSuite)
			id, ok = CipherSuiteID(lr.State.Cipher)
			require.True(t, ok, lr.State.Cipher)
			require.Equal(t, s.ID, id)
			worked++
		})
	}
	require.GreaterOrEqual(t, worked, len(mustWork))

	// TLS 1.3: crypto/tls picks the suite; golibtls must name the same.
	for _, side := range []string{"LibtlsClient", "LibtlsServer"} {
		t.Run("TLS13/"+side, func(t *testing.T) {
			if side == "LibtlsClient" {
				srv := goServer(t, goServerConfig(t), echo)
				c, err := dialLibtls(t, srv.Addr, newClientConfig(t), "localhost")
				require.NoError(t, err)
				r := srv.next(t)
				require.NoError(t, r.Err)
				checkTLSState(t, c.ConnectionState(), r.State)
				require.Equal(t, uint16(tls.VersionTLS13), c.ConnectionState().Version)
				return
			}
			lsrv := libtlsServer(t, newServerConfig(t), echo)
			gc, err := dialGo(t, lsrv.Addr, goClientConfig(t))
			require.NoError(t, err)
			r := lsrv.next(t)
			require.NoError(t, r.Err)
			id, ok := CipherSuiteID(r.State.Cipher)
			require.True(t, ok, r.State.Cipher)
			require.Equal(t, gc.ConnectionState().CipherSuite, id)
		})
	}
}

func containsVersion(vs []uint16, v uint16) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// TestCipherSuiteTable checks every entry of the name table against the
// IDs the openssl command of the linked library prints ("openssl ciphers
// -V"; scripts/env.sh puts LibreSSL's first on PATH with LIBTLS_PREFIX),
// and the IDs of the suites crypto/tls knows against crypto/tls.
func TestCipherSuiteTable(t *testing.T) {
	goIDs := map[string]uint16{}
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		goIDs[s.Name] = s.ID
	}
	for _, e := range opensslCipherNames {
		id, ok := CipherSuiteID(e.openssl)
		require.True(t, ok, e.openssl)
		if gid, ok := goIDs[e.iana]; ok {
			require.Equal(t, gid, id, e.openssl)
			require.Zero(t, e.id, "%s: crypto/tls knows its ID", e.openssl)
		} else {
			require.Equal(t, e.id, id, e.openssl)
		}
	}
	_, ok := CipherSuiteID("NO-SUCH-CIPHER")
	require.False(t, ok)

	out, err := exec.Command("openssl", "ciphers", "-V", "ALL:COMPLEMENTOFALL").Output()
	require.NoError(t, err, "the openssl command (Debian package openssl) checks the table")
	version, _ := exec.Command("openssl", "version").Output()
	opensslIDs := map[string]uint16{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// "0xC0,0x2B - ECDHE-ECDSA-AES128-GCM-SHA256 TLSv1.2 Kx=ECDH ..."
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[1] != "-" {
			continue
		}
		hi, lo, ok := strings.Cut(f[0], ",")
		require.True(t, ok, sc.Text())
		h, err1 := strconv.ParseUint(strings.TrimPrefix(hi, "0x"), 16, 8)
		l, err2 := strconv.ParseUint(strings.TrimPrefix(lo, "0x"), 16, 8)
		require.NoError(t, errors.Join(err1, err2), sc.Text())
		opensslIDs[f[2]] = uint16(h<<8 | l)
	}
	checked := 0
	for _, e := range opensslCipherNames {
		if oid, ok := opensslIDs[e.openssl]; ok {
			id, _ := CipherSuiteID(e.openssl)
			require.Equal(t, oid, id, "%s (%s)", e.openssl, strings.TrimSpace(string(version)))
			checked++
		}
	}
	t.Logf("%s: %d of %d table entries checked against openssl ciphers -V", strings.TrimSpace(string(version)), checked, len(opensslCipherNames))
	// Both OpenSSL 3 and LibreSSL list at least the TLS 1.3, ECDHE AEAD,
	// DHE AEAD and CBC suites.
	require.GreaterOrEqual(t, checked, 25)
}

// TestConnInfoLazy checks that the peer certificate facts read lazily are
// there after Close whether or not anyone asked before, on both sides of a
// connection with client certificates, and that ConnectionState and
// ConnInfo agree.
func TestConnInfoLazy(t *testing.T) {
	p := testPKI(t)
	for _, askFirst := range []bool{false, true} {
		t.Run("askBeforeClose="+strconv.FormatBool(askFirst), func(t *testing.T) {
			scfg := newServerConfig(t)
			require.NoError(t, scfg.VerifyClient())
			ccfg := newClientConfig(t)
			require.NoError(t, ccfg.SetKeypair(p.Client.CertPEM, p.Client.KeyPEM))
			craw, sraw := tcpPair(t)
			c, s := newLibtlsClient(t, craw, ccfg, "localhost"), newLibtlsServer(t, sraw, scfg)
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			var before ConnInfo
			var beforeTLS tls.ConnectionState
			if askFirst {
				before, beforeTLS = c.ConnInfo(), c.ConnectionState()
			}
			go func() { _, _ = io.Copy(io.Discard, s) }()
			require.NoError(t, c.Close())
			_ = s.Close() // its close_notify may meet a closed peer
			checkPeerCert(t, c.ConnInfo(), p.Server.Cert)
			checkPeerCert(t, s.ConnInfo(), p.Client.Cert)
			require.Equal(t, p.Server.Cert.Raw, c.ConnectionState().PeerCertificates[0].Raw)
			require.Equal(t, p.Client.Cert.Raw, s.ConnectionState().PeerCertificates[0].Raw)
			if askFirst {
				require.Equal(t, before, c.ConnInfo())
				require.Equal(t, beforeTLS, c.ConnectionState())
			}
			checkTLSState(t, c.ConnectionState(), s.ConnectionState())
			id, ok := CipherSuiteID(c.ConnInfo().Cipher)
			require.True(t, ok)
			require.Equal(t, id, c.ConnectionState().CipherSuite)
		})
	}
}

// TestRecordHeaderError: a plain-text client on a server's socket gets
// no TLS bytes back; the handshake fails with a RecordHeaderError whose
// Conn takes a plain-text answer. Over a net.Conn without a socket libtls
// reports the failure itself.
func TestRecordHeaderError(t *testing.T) {
	for _, tc := range []struct {
		name, send string
		wantHdr    string
	}{
		{"HTTP", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "GET /"},
		{"SlowHTTP", "PO", "POST "}, // the rest follows later
		{"Binary", "\x00\x00\x00\x00\x00\x00", "\x00\x00\x00\x00\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			craw, sraw := tcpPair(t)
			s := newLibtlsServer(t, sraw, newServerConfig(t))
			go func() {
				_, _ = craw.Write([]byte(tc.send))
				if tc.name == "SlowHTTP" {
					time.Sleep(50 * time.Millisecond)
					_, _ = craw.Write([]byte("ST / HTTP/1.1\r\n\r\n"))
				}
			}()
			err := s.Handshake()
			var rhe *RecordHeaderError
			require.True(t, errors.As(err, &rhe), "%T %v", err, err)
			require.Equal(t, tc.wantHdr, string(rhe.RecordHeader[:]))
			require.Contains(t, err.Error(), "libtls: handshake: first record does not look like a TLS handshake")
			_, err = io.WriteString(rhe.Conn, "plain answer\n")
			require.NoError(t, err)
			// The peer's bytes were only peeked at: read them before
			// closing, or the kernel answers with a reset.
			require.NoError(t, rhe.Conn.(*net.TCPConn).CloseWrite())
			_ = rhe.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, _ = io.Copy(io.Discard, rhe.Conn)
			require.NoError(t, s.Close())
			got, err := io.ReadAll(craw)
			require.NoError(t, err)
			require.Equal(t, "plain answer\n", string(got), "nothing of TLS before the answer")
		})
	}
	t.Run("TLSStillWorks", func(t *testing.T) {
		craw, sraw := unixPair(t)
		c, s := newLibtlsClient(t, craw, newClientConfig(t), "localhost"), newLibtlsServer(t, sraw, newServerConfig(t))
		cerr, serr := handshakeBoth(c, s)
		require.NoError(t, cerr)
		require.NoError(t, serr)
	})
	t.Run("Pipe", func(t *testing.T) {
		craw, sraw := pipePair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		go func() {
			_, _ = craw.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
			_, _ = io.Copy(io.Discard, craw)
		}()
		err := s.Handshake()
		var rhe *RecordHeaderError
		require.False(t, errors.As(err, &rhe))
		requireLibtlsError(t, err, "handshake", "handshake failed")
	})
	t.Run("Deadline", func(t *testing.T) {
		_, sraw := tcpPair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		require.NoError(t, s.SetDeadline(time.Now().Add(50*time.Millisecond)))
		err := s.Handshake()
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "%v", err)
	})
	t.Run("Cancel", func(t *testing.T) {
		_, sraw := tcpPair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		require.ErrorIs(t, s.HandshakeContext(ctx), context.DeadlineExceeded)
	})
	t.Run("CloseDuringPeek", func(t *testing.T) {
		_, sraw := tcpPair(t)
		s := newLibtlsServer(t, sraw, newServerConfig(t))
		done := async(s.Handshake)
		time.Sleep(20 * time.Millisecond)
		require.NoError(t, s.Close())
		require.ErrorIs(t, done(), net.ErrClosed)
	})
}

// TestServerStats drives a listener through every kind of handshake it
// counts and reads the counters.
func TestServerStats(t *testing.T) {
	p := testPKI(t)
	cfg := newServerConfig(t)
	require.NoError(t, cfg.SetSessionLifetime(time.Minute))
	require.NoError(t, cfg.SetProtocols(ProtocolTLSv1_2))
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	srv := ListenerServer(l)
	require.NotNil(t, srv)
	require.Nil(t, ListenerServer(loopback(t)))
	require.Equal(t, ServerStats{}, srv.Stats())

	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// Long enough for a loaded machine under -race; the silent
				// client below waits it out.
				_ = c.SetDeadline(time.Now().Add(2 * time.Second))
				if c.(*Conn).Handshake() == nil {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	addr := l.Addr().String()

	// Three completed handshakes, the last two resumed where the backend's
	// servers resume.
	gcfg := &tls.Config{RootCAs: p.CA.Pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	for range 3 {
		c, err := dialGo(t, addr, gcfg)
		require.NoError(t, err)
		ping(t, c, "x")
		c.Close()
	}
	// A failed verification on the client: the server gets its alert.
	_, err = dialGo(t, addr, &tls.Config{ServerName: "localhost"})
	require.Error(t, err)
	// Plain HTTP.
	raw, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, _ = io.WriteString(raw, "GET / HTTP/1.1\r\n\r\n")
	_, _ = io.ReadAll(bound(raw))
	raw.Close()
	// A peer that leaves mid-handshake, and one that says nothing.
	raw, err = net.Dial("tcp", addr)
	require.NoError(t, err)
	_, _ = raw.Write([]byte{22, 3, 1, 0, 200, 1}) // half a ClientHello
	raw.Close()
	silent, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer silent.Close()

	want := ServerStats{Handshakes: 3, Failed: 4, Failures: HandshakeFailures{TLS: 1, NotTLS: 1, PeerClosed: 1, Timeout: 1}}
	if Backend().ServerSessionResumption {
		want.Resumed = 2
	}
	var got ServerStats
	for deadline := time.Now().Add(testTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = srv.Stats(); got.Failed >= want.Failed {
			break
		}
	}
	require.Equal(t, want, got, "%s", Backend())
	require.InDelta(t, float64(want.Resumed)/3, got.ResumptionRatio(), 1e-9)
	require.Contains(t, got.String(), `"handshakes":3`)
	require.Contains(t, got.String(), `"not_tls":1`)
	require.Contains(t, got.String(), `"resumption_ratio":`)
	require.Zero(t, ServerStats{}.ResumptionRatio())
}
