package etcdkeys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

// The fleet test's shape.
const (
	fleetServers = 3
	fleetClients = 2
	// fleetRun is how long the clients run at least: at the minimum
	// lifetime a key is due every two seconds, so this spans about six
	// rotations. They run on (up to fleetRunMax) until the second Rotator
	// has rotated three times.
	fleetRun    = 12 * time.Second
	fleetRunMax = 30 * time.Second
	// When, into the run, an etcd member is stopped and the leading
	// Rotator is cancelled.
	fleetStopMember = 4 * time.Second
	fleetStopLeader = 8 * time.Second
	// fleetAgree bounds how long the servers may take to agree on a new
	// set (etcd watches deliver in milliseconds).
	fleetAgree = 3 * time.Second
)

// handshakeResult is one client handshake of the fleet test.
type handshakeResult struct {
	at      time.Duration
	server  int
	resumed bool
	err     error
}

// TestFleet runs a fleet across "machines" at the minimum session
// lifetime (4s): a three-member etcd cluster, two Rotators (each with its
// own client), three server Configs following the key (each with its own
// client) and clients that go round the servers, one handshake after
// another, through about ten rotations. Mid-run the raft leader of etcd is
// stopped, and later the leading Rotator is cancelled.
//
// Asserted: no handshake fails; on LibreSSL at least 99% of each client's
// handshakes after its first resumed one resume, on whichever server; the
// servers' TicketKeyRevisions agree after every rotation (both backends;
// on LibreTLS that is all there is to see, since its servers never resume)
// and never include a key of their own; the store's history shows every
// write made by the Rotator leading at that revision, and the second
// Rotator takes over.
func TestFleet(t *testing.T) {
	const life = libtls.MinSessionLifetime
	c := etcdtest.New(t, 3)
	key := testKey(t)
	h := watchHistory(t, newClient(t, c), key, nil)
	var lg logs

	// The rotators: r1 first, so that it leads and creates the set.
	names := []string{"r1", "r2"}
	cancels := map[string]func(){}
	for i, name := range names {
		cancels[name] = runRotator(t, &Rotator{Client: newClient(t, c), Key: key, Lifetime: life, Name: name, Logger: lg.logger()})
		if i == 0 {
			eventually(t, 10*time.Second, "the set", func() bool { return h.lastNewest() >= 1 })
		}
	}

	// The servers, each following the key through a client of its own.
	var servers []*server
	var followers []*Follower
	for i := range fleetServers {
		cfg := serverConfig(t, life)
		f, err := Follow(cfg, newClient(t, c), key)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		followers = append(followers, f)
		servers = append(servers, serve(t, fmt.Sprintf("server%d", i), cfg))
	}

	// The monitor: which set each server holds, every few milliseconds.
	type agreement struct {
		rev   uint32
		after time.Duration // from the value's arrival in the history
	}
	var (
		monMu      sync.Mutex
		agreed     []agreement
		ownKeys    = map[string]string{} // server: its revisions when it first had a key of its own
		monDone    = make(chan struct{})
		monStop    = make(chan struct{})
		lastAgree  uint32
		raftLeader = c.Leader()
		monStart   = time.Now()
	)
	go func() {
		defer close(monDone)
		var pending uint32
		var since time.Time
		for {
			select {
			case <-monStop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if l := c.Leader(); l != raftLeader {
				t.Logf("%v: etcd raft leader %d -> %d", time.Since(monStart).Round(time.Millisecond), raftLeader, l)
				raftLeader = l
			}
			want := h.lastNewest()
			if want != pending {
				pending, since = want, time.Now()
			}
			all := make([][]uint32, len(servers))
			same := true
			for i, s := range servers {
				all[i] = s.cfg.TicketKeyRevisions()
				for _, r := range all[i] {
					if r >= libtls.LocalTicketKeyRevBase {
						monMu.Lock()
						if _, seen := ownKeys[s.name]; !seen {
							// The first time only, with what its Follower saw.
							ownKeys[s.name] = fmt.Sprint(all[i])
							t.Logf("%v: %s added a key of its own: %v; its follower: revision %d, error %v; the newest set written: rev %d",
								time.Since(monStart).Round(time.Millisecond), s.name, all[i], followers[i].Revision(), followers[i].Err(), want)
						}
						monMu.Unlock()
					}
				}
				same = same && slices.Equal(all[i], all[0])
			}
			if same && len(all[0]) > 0 && all[0][0] == want && want != lastAgree {
				monMu.Lock()
				agreed = append(agreed, agreement{want, time.Since(since)})
				lastAgree = want
				monMu.Unlock()
				if d := time.Since(since); d > 50*time.Millisecond {
					t.Logf("%v: servers agreed on rev %d after %v", time.Since(monStart).Round(time.Millisecond), want, d.Round(time.Millisecond))
				}
			}
		}
	}()

	// The clients, each going round the servers from a different one,
	// until stopClients.
	start := time.Now()
	stopClients := make(chan struct{})
	results := make([][]handshakeResult, fleetClients)
	var wg sync.WaitGroup
	for ci := range fleetClients {
		cfg := clientConfig(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000000; i++ {
				select {
				case <-stopClients:
					return
				default:
				}
				si := (ci + i) % len(servers)
				resumed, err := dial(servers[si].addr, cfg)
				results[ci] = append(results[ci], handshakeResult{time.Since(start), si, resumed, err})
			}
		}()
	}

	// Mid-run, each on its own clock: stop etcd's raft leader (it hands
	// leadership over), and cancel the leading Rotator (it resigns; the
	// other takes over).
	var events sync.WaitGroup
	var leader string
	events.Add(2)
	go func() {
		defer events.Done()
		time.Sleep(fleetStopMember)
		stopped := c.Leader()
		if !assert.GreaterOrEqual(t, stopped, 0, "etcd has a leader") {
			return
		}
		c.Stop(stopped)
		t.Logf("%v: stopped etcd member %d (raft leader)", time.Since(start).Round(time.Millisecond), stopped)
	}()
	leaderCli := newClient(t, c)
	go func() {
		defer events.Done()
		time.Sleep(fleetStopLeader)
		var err error
		if leader, err = currentLeader(leaderCli, key); !assert.NoError(t, err) {
			return
		}
		cancels[leader]()
		t.Logf("%v: cancelled rotator %s (leader)", time.Since(start).Round(time.Millisecond), leader)
	}()
	events.Wait()
	require.NotEmpty(t, leader)
	// The other Rotator rotates a few times before the clients stop.
	other := names[0]
	if leader == other {
		other = names[1]
	}
	for i := 0; i < 2000 && time.Since(start) < fleetRunMax; i++ {
		n := 0
		for _, r := range lg.find("etcdkeys: rotated") {
			if r.attrs["rotator"] == other {
				n++
			}
		}
		if n >= 3 && time.Since(start) >= fleetRun {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stopClients)
	wg.Wait()
	elapsed := time.Since(start)

	// Let the last rotation reach every server, then stop the monitor.
	final := h.lastNewest()
	eventually(t, fleetAgree, "the servers agree on the last set", func() bool {
		monMu.Lock()
		defer monMu.Unlock()
		return lastAgree == h.lastNewest()
	})
	close(monStop)
	<-monDone

	// No failures, anywhere.
	total, resumedAll := 0, 0
	for ci, rs := range results {
		for _, r := range rs {
			assert.NoError(t, r.err, "client %d, handshake at %v with server%d", ci, r.at, r.server)
		}
		total += len(rs)
	}
	for _, s := range servers {
		assert.Empty(t, s.errors(), s.name)
		resumedAll += int(s.resumed.Load())
	}
	for i, f := range followers {
		assert.NoError(t, f.Err(), "follower %d at the end", i)
	}

	// Resumption after each client's first resume, across servers.
	for ci, rs := range results {
		first := slices.IndexFunc(rs, func(r handshakeResult) bool { return r.resumed })
		after, resumed, crossed := 0, 0, 0
		var full []string
		if first >= 0 {
			for i, r := range rs[first+1:] {
				after++
				if r.resumed {
					resumed++
					if prev := rs[first+i]; prev.server != r.server {
						crossed++
					}
				} else {
					full = append(full, fmt.Sprintf("%v@server%d", r.at.Round(time.Millisecond), r.server))
				}
			}
		}
		t.Logf("client %d: %d handshakes, first resume at #%d, then %d of %d resumed (%d on another server than the previous), full: %v",
			ci, len(rs), first, resumed, after, crossed, full)
		if libtls.Backend().ServerSessionResumption {
			require.GreaterOrEqual(t, first, 0, "client %d resumed at all", ci)
			require.Greater(t, after, 100, "client %d: enough handshakes to count", ci)
			assert.GreaterOrEqual(t, float64(resumed), 0.99*float64(after), "client %d: at least 99%% resumed after its first resume (%v)", ci, libtls.Backend())
			assert.Greater(t, crossed, after/2, "client %d: resumed across servers", ci)
		} else {
			assert.Equal(t, -1, first, "client %d: %v servers never resume", ci, libtls.Backend())
		}
	}

	// The servers agreed after every rotation, on the fleet's keys only.
	values := h.values()
	monMu.Lock()
	var agreedRevs []uint32
	var slowest time.Duration
	for _, a := range agreed {
		agreedRevs = append(agreedRevs, a.rev)
		slowest = max(slowest, a.after)
	}
	assert.Empty(t, ownKeys, "no server made a key of its own")
	monMu.Unlock()
	var written []uint32
	for _, v := range values {
		written = append(written, v.newest)
	}
	require.GreaterOrEqual(t, len(written), 4, "at least three rotations")
	assert.Equal(t, written, agreedRevs, "the servers agreed on every set written")
	assert.Less(t, slowest, fleetAgree)

	// One writer at a time, and the second took over.
	counts := h.checkOneWriter(t, &lg, leader)
	assert.Positive(t, counts[leader], "the first leader rotated")
	assert.GreaterOrEqual(t, counts[other], 2, "%s took over after %s was cancelled", other, leader)
	assert.Len(t, lg.find("etcdkeys: resigned"), 1, "the cancelled leader resigned")
	for _, r := range lg.all() {
		if r.level >= slog.LevelWarn {
			t.Logf("rotator log: %s %s %v", r.level, r.msg, r.attrs)
		}
	}

	t.Logf("%v: %d handshakes (%d resumed on the servers) in %v, %d sets (revs %d..%d), servers agreed within %v at worst, writes %v",
		libtls.Backend(), total, resumedAll, elapsed.Round(time.Millisecond), len(values), written[0], final, slowest.Round(time.Millisecond), counts)
}

// currentLeader returns the name of the Rotator leading key's election.
func currentLeader(cli *clientv3.Client, key string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	resp, err := cli.Get(ctx, electionPrefix(key)+"/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend), clientv3.WithLimit(1))
	if err != nil {
		return "", err
	}
	if len(resp.Kvs) != 1 {
		return "", errors.New("no rotator leads")
	}
	return string(resp.Kvs[0].Value), nil
}
