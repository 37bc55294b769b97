package libtls

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hazard 3: keys that expire under a running server. libtls never refreshes
// a key added by hand and fails every handshake once the newest key is older
// than the session lifetime ("no valid ticket key found"). The binding adds
// a key of its own before that (ensureTicketKeys).
const (
	expiryLifetime = MinSessionLifetime // 4s, the shortest libtls allows
	expiryTraffic  = 10 * time.Second   // well past two lifetimes
	expiryStep     = 200 * time.Millisecond
)

// TestTicketKeysNeverExpire: a server with a 4s session lifetime and one key
// added by hand (rev 1) keeps accepting handshakes over 10s of traffic. On
// LibreSSL sessions keep resuming across the binding's key change; on
// LibreTLS the server never resumes.
func TestTicketKeysNeverExpire(t *testing.T) {
	cfg := tkServerConfig(t, expiryLifetime)
	key, err := NewTicketKey()
	require.NoError(t, err)
	require.NoError(t, cfg.AddTicketKey(1, key))
	srv := tkServe(t, cfg)
	client := tkClientConfig(t)

	type result struct {
		at      time.Duration
		resumed bool
		err     error
		newest  uint32
	}
	var results []result
	start := time.Now()
	for i := 0; time.Since(start) < expiryTraffic+expiryStep && i < int(2*expiryTraffic/expiryStep); i++ {
		r := result{at: time.Since(start)}
		r.resumed, r.err = tkDial(srv.addr, client)
		r.newest = cfg.TicketKeyRevisions()[0]
		results = append(results, r)
		time.Sleep(expiryStep)
	}
	require.GreaterOrEqual(t, time.Since(start), expiryTraffic)

	var failed, resumed, resumedAfterChange int
	changeAt := -1
	for i, r := range results {
		if r.err != nil {
			failed++
			t.Errorf("handshake %d at %v failed: %v", i, r.at.Round(time.Millisecond), r.err)
			continue
		}
		if r.resumed {
			resumed++
		}
		if r.newest >= LocalTicketKeyRevBase && changeAt < 0 {
			changeAt = i
		}
		if changeAt >= 0 && i > changeAt && r.resumed {
			resumedAfterChange++
		}
	}
	t.Logf("%v: %d handshakes over %v, %d failed, %d resumed (%d after the key change at handshake %d, %v); server saw %d (%d resumed); keys now %v",
		Backend(), len(results), time.Since(start).Round(time.Millisecond), failed, resumed, resumedAfterChange, changeAt,
		func() string {
			if changeAt < 0 {
				return "never"
			}
			return results[changeAt].at.Round(time.Millisecond).String()
		}(), srv.handshakes.Load(), srv.resumed.Load(), fmt.Sprintf("%#x", cfg.TicketKeyRevisions()))
	assert.Zero(t, failed)
	assert.Empty(t, srv.errors())
	require.GreaterOrEqual(t, changeAt, 0, "the binding added a key of its own")
	// libtls expires a key once time(NULL) - lifetime > its date in whole
	// seconds: at the latest a lifetime and a second after it was added.
	assert.Less(t, results[changeAt].at, expiryLifetime+time.Second, "before the hand-added key expired")
	revs := cfg.TicketKeyRevisions()
	assert.Contains(t, revs, uint32(1), "the hand-added key is kept")
	assert.GreaterOrEqual(t, revs[0], LocalTicketKeyRevBase)
	if Backend().ServerSessionResumption {
		// Sessions themselves expire after the lifetime (a full handshake
		// every 4s); all others resume, across the key change too.
		assert.GreaterOrEqual(t, resumed, (len(results)-1)*3/4, "most handshakes after the first resume")
		assert.Positive(t, resumedAfterChange, "resumption keeps working across the key change")
	} else {
		assert.Zero(t, resumed, "LibreTLS servers never resume")
		assert.Zero(t, srv.resumed.Load())
	}
}
