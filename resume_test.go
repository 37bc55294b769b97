package libtls

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The resumption cases of the connection issue. Every case asserts what
// the linked backend does (Backend()), so a backend that changes behaviour
// fails the suite instead of being skipped.

// requireSessionStored checks that a client handshake left a session in f.
func requireSessionStored(t testing.TB, f *os.File) {
	t.Helper()
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	require.Contains(t, string(data), "-----BEGIN SSL SESSION PARAMETERS-----")
	fi, err := f.Stat()
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

// libtlsRoundTrip dials srv with a golibtls client, exchanges a message
// (which also lets post-handshake messages such as TLS 1.3 tickets
// arrive), closes, and returns the client's view and the server's result.
func libtlsRoundTrip[C net.Conn, S any](t testing.TB, srv *testServer[C, S], cfg *Config) (ConnInfo, serverResult[S]) {
	t.Helper()
	c, err := dialLibtls(t, srv.Addr, cfg, "localhost")
	require.NoError(t, err)
	ping(t, c, "resume?")
	st := c.ConnInfo()
	require.Equal(t, st.SessionResumed, c.SessionResumed())
	require.Equal(t, st.SessionResumed, c.ConnectionState().DidResume)
	require.NoError(t, c.Close())
	r := srv.next(t)
	require.NoError(t, r.Err)
	return st, r
}

// goRoundTrip is libtlsRoundTrip with a crypto/tls client.
func goRoundTrip[C net.Conn, S any](t testing.TB, srv *testServer[C, S], gcfg *tls.Config) (tls.ConnectionState, serverResult[S]) {
	t.Helper()
	c, err := dialGo(t, srv.Addr, gcfg)
	require.NoError(t, err)
	ping(t, c, "resume?")
	st := c.ConnectionState()
	require.NoError(t, c.Close())
	r := srv.next(t)
	require.NoError(t, r.Err)
	return st, r
}

// Case 1: a golibtls client with a session file resumes against crypto/tls
// over TLS 1.2, on both sides, on every backend.
func TestResumeLibtlsClientGoServerTLS12(t *testing.T) {
	require.True(t, Backend().ClientSessionResumption)
	gcfg := goServerConfig(t)
	gcfg.MaxVersion = tls.VersionTLS12
	srv := goServer(t, gcfg, echo)
	f := sessionFile(t)
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetSessionFile(f))

	st, r := libtlsRoundTrip(t, srv, cfg)
	require.Equal(t, "TLSv1.2", st.Version)
	require.False(t, st.SessionResumed, "first connection: full handshake")
	require.False(t, r.State.DidResume)
	requireSessionStored(t, f)

	for i := range 2 {
		st, r = libtlsRoundTrip(t, srv, cfg)
		require.True(t, st.SessionResumed, "connection %d: client resumed", i+2)
		require.True(t, r.State.DidResume, "connection %d: server resumed", i+2)
		require.Equal(t, "TLSv1.2", st.Version)
		// A resumed handshake carries no certificate; libtls still
		// reports the one of the original session.
		checkPeerCert(t, st, testPKI(t).Server.Cert)
	}

	// A client without the file does not resume.
	st, r = libtlsRoundTrip(t, srv, newClientConfig(t))
	require.False(t, st.SessionResumed)
	require.False(t, r.State.DidResume)
}

// Case 2: a crypto/tls client with a session cache against a golibtls
// server with a session lifetime, TLS 1.2: the second connection resumes
// exactly where the backend's server supports it (LibreSSL), and nowhere
// else (LibreTLS issues empty tickets).
func TestResumeGoClientLibtlsServerTLS12(t *testing.T) {
	want := Backend().ServerSessionResumption
	cfg := newServerConfig(t)
	require.NoError(t, cfg.SetSessionLifetime(time.Hour))
	srv := libtlsServer(t, cfg, echo)
	gcfg := goClientConfig(t)
	gcfg.MaxVersion = tls.VersionTLS12
	gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	st, r := goRoundTrip(t, srv, gcfg)
	require.False(t, st.DidResume)
	require.False(t, r.State.SessionResumed)
	require.Equal(t, "TLSv1.2", r.State.Version)

	for i := range 2 {
		st, r = goRoundTrip(t, srv, gcfg)
		require.Equal(t, want, st.DidResume, "connection %d: crypto/tls client resumed (%s)", i+2, Backend())
		require.Equal(t, want, r.State.SessionResumed, "connection %d: golibtls server resumed (%s)", i+2, Backend())
	}

	t.Run("NoLifetime", func(t *testing.T) {
		// Without a lifetime no backend resumes.
		srv := libtlsServer(t, newServerConfig(t), echo)
		gcfg := goClientConfig(t)
		gcfg.MaxVersion = tls.VersionTLS12
		gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for range 2 {
			st, r := goRoundTrip(t, srv, gcfg)
			require.False(t, st.DidResume)
			require.False(t, r.State.SessionResumed)
		}
	})
}

// Case 3: golibtls on both ends, TLS 1.2: the same rule as case 2.
func TestResumeLibtlsBothTLS12(t *testing.T) {
	want := Backend().ServerSessionResumption
	scfg := newServerConfig(t)
	require.NoError(t, scfg.SetSessionLifetime(time.Hour))
	require.NoError(t, scfg.SetProtocols(ProtocolTLSv1_2))

	t.Run("Listener", func(t *testing.T) {
		srv := libtlsServer(t, scfg, echo)
		f := sessionFile(t)
		ccfg := newClientConfig(t)
		require.NoError(t, ccfg.SetSessionFile(f))

		st, r := libtlsRoundTrip(t, srv, ccfg)
		require.False(t, st.SessionResumed)
		require.False(t, r.State.SessionResumed)
		require.Equal(t, "TLSv1.2", st.Version)
		requireSessionStored(t, f)
		for i := range 2 {
			st, r = libtlsRoundTrip(t, srv, ccfg)
			require.Equal(t, want, st.SessionResumed, "connection %d: client resumed (%s)", i+2, Backend())
			require.Equal(t, want, r.State.SessionResumed, "connection %d: server resumed (%s)", i+2, Backend())
		}
	})
	t.Run("ServerAcceptOverPipe", func(t *testing.T) {
		srv, err := NewServer(scfg)
		require.NoError(t, err)
		defer srv.Close()
		ccfg := newClientConfig(t)
		require.NoError(t, ccfg.SetSessionFile(sessionFile(t)))
		for i := range 3 {
			craw, sraw := pipePair(t)
			s, err := srv.Accept(sraw)
			require.NoError(t, err)
			c := newLibtlsClient(t, craw, ccfg, "localhost")
			cerr, serr := handshakeBoth(c, s)
			require.NoError(t, cerr)
			require.NoError(t, serr)
			resumed := want && i > 0
			require.Equal(t, resumed, c.SessionResumed(), "connection %d: client resumed (%s)", i+1, Backend())
			require.Equal(t, resumed, s.SessionResumed(), "connection %d: server resumed (%s)", i+1, Backend())
			go echo(s)
			ping(t, c, "pipe")
			require.NoError(t, c.Close())
			closeAtCleanup(s)
		}
	})
}

// Case 4: TLS 1.3 handshakes succeed in every combination, and resume
// exactly where the backend resumes TLS 1.3 (nowhere today).
func TestResumeTLS13(t *testing.T) {
	want := Backend().TLS13Resumption

	t.Run("LibtlsClientGoServer", func(t *testing.T) {
		gcfg := goServerConfig(t)
		gcfg.MinVersion = tls.VersionTLS13
		srv := goServer(t, gcfg, echo)
		cfg := newClientConfig(t)
		require.NoError(t, cfg.SetSessionFile(sessionFile(t)))
		for i := range 3 {
			st, r := libtlsRoundTrip(t, srv, cfg)
			require.Equal(t, "TLSv1.3", st.Version)
			require.Equal(t, want && i > 0, st.SessionResumed, "connection %d (%s)", i+1, Backend())
			require.Equal(t, want && i > 0, r.State.DidResume, "connection %d (%s)", i+1, Backend())
		}
	})
	t.Run("GoClientLibtlsServer", func(t *testing.T) {
		cfg := newServerConfig(t)
		require.NoError(t, cfg.SetSessionLifetime(time.Hour))
		srv := libtlsServer(t, cfg, echo)
		gcfg := goClientConfig(t)
		gcfg.MinVersion = tls.VersionTLS13
		gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		for i := range 3 {
			st, r := goRoundTrip(t, srv, gcfg)
			require.Equal(t, "TLSv1.3", r.State.Version)
			require.Equal(t, want && i > 0, st.DidResume, "connection %d (%s)", i+1, Backend())
			require.Equal(t, want && i > 0, r.State.SessionResumed, "connection %d (%s)", i+1, Backend())
		}
	})
	t.Run("LibtlsBoth", func(t *testing.T) {
		scfg := newServerConfig(t)
		require.NoError(t, scfg.SetSessionLifetime(time.Hour))
		srv := libtlsServer(t, scfg, echo)
		ccfg := newClientConfig(t)
		require.NoError(t, ccfg.SetSessionFile(sessionFile(t)))
		require.NoError(t, ccfg.SetProtocols(ProtocolTLSv1_3))
		for i := range 3 {
			st, r := libtlsRoundTrip(t, srv, ccfg)
			require.Equal(t, "TLSv1.3", st.Version)
			require.Equal(t, want && i > 0, st.SessionResumed, "connection %d (%s)", i+1, Backend())
			require.Equal(t, want && i > 0, r.State.SessionResumed, "connection %d (%s)", i+1, Backend())
		}
	})
}
