package libtlshttp

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/stretchr/testify/require"
)

// TestConcurrentLoad runs hundreds of requests at once against one Serve:
// crypto/tls clients over HTTP/2 (many streams on few connections) and
// HTTP/1.1 (many connections), and Transports of this package over both,
// with bodies up to 256 KiB. Every answer must be whole and right, no
// handshake may fail, and nothing may race.
func TestConcurrentLoad(t *testing.T) {
	ts := startServe(t, serverConfig(t, 0), http.HandlerFunc(factsHandler), func(s *http.Server) {
		s.IdleTimeout = time.Minute
	})
	type client struct {
		name  string
		c     *http.Client
		proto string
	}
	var clients []client
	for i := range 2 {
		c, _ := goClient(t, true, 0)
		clients = append(clients, client{fmt.Sprintf("go-h2-%d", i), c, "HTTP/2.0"})
		c, tr := goClient(t, false, tls12or13(i))
		tr.MaxIdleConnsPerHost = 16
		clients = append(clients, client{fmt.Sprintf("go-h1-%d", i), c, "HTTP/1.1"})
		c, _ = libtlsClient(t, nil)
		clients = append(clients, client{fmt.Sprintf("libtls-h2-%d", i), c, "HTTP/2.0"})
		c, _ = libtlsClient(t, func(tr *Transport) { tr.DisableHTTP2 = true; tr.MaxIdleConnsPerHost = 16 })
		clients = append(clients, client{fmt.Sprintf("libtls-h1-%d", i), c, "HTTP/1.1"})
	}
	const workers, perWorker = 32, 16 // 512 requests
	var wg sync.WaitGroup
	var done atomic.Int64
	errs := make(chan error, workers)
	start := time.Now()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			cl := clients[w%len(clients)]
			for i := range perWorker {
				body := make([]byte, rng.IntN(256<<10))
				for j := range body {
					body[j] = byte(j*w + i)
				}
				path := fmt.Sprintf("/%s/%d/%d", cl.name, w, i)
				resp, b, err := tryDo(cl.c, http.MethodPost, ts.url+path, body)
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.StatusCode, b)
				}
				if err == nil {
					want := fmt.Sprintf("%s POST %s %d %s", cl.proto, path, len(body), sum(body))
					if got := b[:min(len(b), len(want))]; got != want {
						err = fmt.Errorf("got %q, want %q", got, want)
					}
				}
				if err == nil && resp.TLS == nil {
					err = fmt.Errorf("%s: no Response.TLS", cl.name)
				}
				if err != nil {
					errs <- fmt.Errorf("%s request %d: %w", cl.name, i, err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(workers*perWorker), done.Load())
	st := ts.lsrv.Stats()
	t.Logf("%d requests in %v over %d connections (%s); server stats %v", done.Load(), time.Since(start).Round(time.Millisecond), st.Handshakes, libtls.Backend(), st)
	require.Zero(t, st.Failed, "%v", st)
	require.GreaterOrEqual(t, st.Handshakes, int64(len(clients)))
	require.Empty(t, ts.log.String())
}

func tls12or13(i int) uint16 {
	if i == 0 {
		return 0x0303
	}
	return 0
}
