package libtls

import (
	"crypto/tls"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSmokeGoServer(t *testing.T) {
	l := loopback(t)
	gcfg := goServerConfig(t)
	gcfg.MaxVersion = tls.VersionTLS12
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(c, gcfg)
				io.Copy(tc, tc)
				tc.Close()
			}()
		}
	}()
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetSessionFile(sessionFile(t)))
	for i := 0; i < 3; i++ {
		c, err := Dial("tcp", l.Addr().String(), cfg)
		require.NoError(t, err)
		_, err = c.Write([]byte("hello"))
		require.NoError(t, err)
		buf := make([]byte, 5)
		_, err = io.ReadFull(c, buf)
		require.NoError(t, err)
		t.Logf("%d: %+v resumed=%v", i, c.ConnectionState().Version, c.SessionResumed())
		require.NoError(t, c.Close())
	}
}

func TestSmokePipe(t *testing.T) {
	scfg := newServerConfig(t)
	srv, err := NewServer(scfg)
	require.NoError(t, err)
	defer srv.Close()
	a, b := net.Pipe()
	sc, err := srv.Accept(a)
	require.NoError(t, err)
	cc, err := Client(b, newClientConfig(t), "localhost")
	require.NoError(t, err)
	go func() { io.Copy(sc, sc); sc.Close() }()
	_, err = cc.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(cc, buf)
	require.NoError(t, err)
	require.Equal(t, "ping", string(buf))
	t.Logf("%+v", cc.ConnectionState())
	require.NoError(t, cc.Close())
}
