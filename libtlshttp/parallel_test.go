package libtlshttp

import (
	"crypto/tls"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The connections a Transport opens at once handshake at once: 8 concurrent
// requests, each on a new connection, reach the server's handshake together
// (the server holds each ClientHello until all 8 have arrived), and a
// second wave resumes every session. Before, the Transport's SessionCache
// made the handshakes of its Config run one at a time.
func TestTransportHandshakesRunInParallel(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	waiting, most := 0, 0
	var open chan struct{}
	reset := func() {
		mu.Lock()
		waiting, most, open = 0, 0, make(chan struct{})
		mu.Unlock()
	}
	reset()
	arrive := func(*tls.ClientHelloInfo) (*tls.Config, error) {
		mu.Lock()
		waiting++
		most = max(most, waiting)
		ch := open
		if waiting == n {
			close(open)
		}
		mu.Unlock()
		select {
		case <-ch:
		case <-time.After(5 * time.Second): // serialized handshakes: give up, fail below
		}
		mu.Lock()
		waiting--
		mu.Unlock()
		return nil, nil
	}
	ts, cfg := startGoFactsServer(t, false, &tls.Config{MaxVersion: tls.VersionTLS12, GetConfigForClient: arrive}, io.Discard)
	tr := NewTransport(cfg)
	tr.DisableHTTP2 = true
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: testTimeout}

	wave := func() (resumed int) {
		reset()
		var wg sync.WaitGroup
		var rmu sync.Mutex
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, err := http.NewRequest(http.MethodGet, ts.URL+"/x", nil)
				if !assert.NoError(t, err) {
					return
				}
				req.Close = true // a new connection per request
				resp, err := client.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				resp.Body.Close()
				rmu.Lock()
				if resp.TLS != nil && resp.TLS.DidResume {
					resumed++
				}
				rmu.Unlock()
			}()
		}
		wg.Wait()
		return resumed
	}
	require.Zero(t, wave())
	mu.Lock()
	assert.Equal(t, n, most, "handshakes at the server at once")
	mu.Unlock()
	assert.Equal(t, n, wave(), "the second wave resumes")
	mu.Lock()
	assert.Equal(t, n, most, "second wave: handshakes at once")
	mu.Unlock()
}
