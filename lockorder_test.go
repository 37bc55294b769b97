package libtls

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Closing server connections, accepting new ones, handshaking and writing
// the Config all at once must keep making progress. It once deadlocked:
// Conn.free held its C lock while releasing the Server, Accept held the
// Server while read-locking the Config, and a waiting Config writer blocked
// that read lock while a handshake held it and waited for the C lock.
func TestLockOrderCloseAcceptHandshakeSetter(t *testing.T) {
	const duration = 3 * time.Second
	scfg := newServerConfig(t)
	require.NoError(t, scfg.SetSessionLifetime(time.Hour))
	srv, err := NewServer(scfg)
	require.NoError(t, err)
	defer srv.Close()

	stop := make(chan struct{})
	var progress atomic.Int64
	var wg sync.WaitGroup
	loop := func(body func(i int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body(i)
			}
		}()
	}
	loop(func(int) { _ = scfg.PreferCiphersServer() }) // a Config writer
	loop(func(int) {                                   // accepts whose conns are closed at once
		a, b := net.Pipe()
		if c, err := srv.Accept(a); err == nil {
			c.Close()
		}
		b.Close()
	})
	for range 6 { // handshakes closed from another goroutine at any point
		loop(func(i int) {
			a, b := net.Pipe()
			c, err := srv.Accept(a)
			if err != nil {
				return
			}
			done := make(chan struct{}, 2)
			go func() {
				gc := tls.Client(b, goClientConfig(t))
				_ = gc.Handshake()
				gc.Close()
				done <- struct{}{}
			}()
			go func() { _ = c.Handshake(); done <- struct{}{} }()
			time.Sleep(time.Duration(i%20) * 100 * time.Microsecond)
			// The peer goes first: Close then does not wait to send
			// close_notify into a pipe nobody reads.
			b.Close()
			c.Close()
			<-done
			<-done
			progress.Add(1)
		})
	}

	last := int64(-1)
	for range int(duration / (500 * time.Millisecond)) {
		time.Sleep(500 * time.Millisecond)
		p := progress.Load()
		if p == last {
			// A deadlock would also hang the test's cleanups (and a
			// panic runs them first): report and end the binary here.
			fmt.Fprintf(os.Stderr, "--- FAIL: %s: no progress for 500ms after %d iterations: deadlock\n", t.Name(), p)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			os.Exit(1)
		}
		last = p
	}
	close(stop)
	wg.Wait()
	t.Logf("%d handshakes closed mid-way", last)
}
