package etcdkeys

import (
	"context"

	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	libtls "github.com/golibtls/libtls"
)

// runRotator runs r until the test ends (or its cancel is called) and
// checks that Run then returns ctx's error.
func runRotator(t testing.TB, r *Rotator) (cancel func()) {
	t.Helper()
	ctx, cancelCtx := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	cancel = func() {
		if stopped {
			return
		}
		stopped = true
		cancelCtx()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled, "rotator %s", r.Name)
		case <-time.After(ioTimeout):
			t.Errorf("rotator %s: Run did not return after cancel", r.Name)
		}
	}
	t.Cleanup(cancel)
	return cancel
}

// TestRotator: a Rotator alone creates the set, then adds a key whenever
// NextRotation has passed, and keeps the session ID and the newest four.
func TestRotator(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	var lg logs
	const life = libtls.MinSessionLifetime
	start := time.Now()
	stop := runRotator(t, &Rotator{Client: cli, Key: key, Lifetime: life, Name: "r", Logger: lg.logger()})

	var first *libtls.TicketKeySet
	eventually(t, 10*time.Second, "the set", func() bool { first = getSet(t, cli, key); return first != nil })
	defer first.Zero()
	assert.Equal(t, []uint32{1}, revsOf(first))
	assert.Len(t, first.SessionID, libtls.MaxSessionIDLength)
	eventually(t, 15*time.Second, "rev 6", func() bool { s := getSet(t, cli, key); defer s.Zero(); return newest(s) >= 6 })
	set := getSet(t, cli, key)
	defer set.Zero()
	assert.Equal(t, first.SessionID, set.SessionID, "the session ID never changes")
	require.Len(t, set.Keys, 4, "the newest four")
	for i := 1; i < len(set.Keys); i++ {
		prev := &libtls.TicketKeySet{Keys: set.Keys[i-1 : i]}
		due := prev.NextRotation(life)
		created := set.Keys[i].Created
		assert.False(t, created.Before(due), "keys %d and %d: not before NextRotation", set.Keys[i-1].Rev, set.Keys[i].Rev)
		assert.Less(t, created.Sub(due), life/16+500*time.Millisecond, "keys %d and %d: soon after NextRotation", set.Keys[i-1].Rev, set.Keys[i].Rev)
	}
	t.Logf("rev %d after %v", newest(set), time.Since(start).Round(time.Millisecond))
	stop()
	assert.Len(t, lg.find("etcdkeys: elected"), 1)
	// The resignation names the election key it gave up.
	if resigned := lg.find("etcdkeys: resigned"); assert.Len(t, resigned, 1) {
		assert.NotEmpty(t, resigned[0].attrs["election_key"])
		assert.Equal(t, lg.find("etcdkeys: elected")[0].attrs["election_key"], resigned[0].attrs["election_key"])
	}
	assert.Len(t, lg.find("etcdkeys: created"), 1)
	assert.GreaterOrEqual(t, len(lg.find("etcdkeys: rotated")), 5)
	for _, r := range lg.all() {
		assert.Equal(t, key, r.attrs["key"])
		assert.Equal(t, "r", r.attrs["rotator"])
		assert.Less(t, r.level, slog.LevelWarn, "%s %v", r.msg, r.attrs)
	}
}

func TestRotatorErrors(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	ctx := ctxFor(t)
	for _, tc := range []struct {
		r    Rotator
		want string
	}{
		{Rotator{Key: "k", Lifetime: time.Hour}, "nil etcd client"},
		{Rotator{Client: cli, Lifetime: time.Hour}, "empty key"},
		{Rotator{Client: cli, Key: "k", Lifetime: 3 * time.Second}, "lifetime 3s is outside 4s to 24h0m0s"},
		{Rotator{Client: cli, Key: "k"}, "lifetime 0s is outside"},
		{Rotator{Client: cli, Key: "k", Lifetime: time.Hour, TTL: -1}, "negative"},
	} {
		err := tc.r.Run(ctx)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
}

// TestRotatorLeavesInvalidSetAlone: a value that is not a set is reported
// and never replaced (a new set would change the fleet's session ID).
func TestRotatorLeavesInvalidSetAlone(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	_, err := cli.Put(ctxFor(t), key, "garbage\n")
	require.NoError(t, err)
	var lg logs
	cancel := runRotator(t, &Rotator{Client: cli, Key: key, Lifetime: time.Hour, Interval: 20 * time.Millisecond, Logger: lg.logger()})
	eventually(t, 10*time.Second, "three warnings", func() bool { return len(lg.find("etcdkeys: rotation failed")) >= 3 })
	cancel()
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	assert.Equal(t, "garbage\n", string(resp.Kvs[0].Value))
	assert.Contains(t, fmt.Sprint(lg.find("etcdkeys: rotation failed")[0].attrs["err"]), "not a golibtls ticket key file")
	assert.Contains(t, fmt.Sprint(lg.find("etcdkeys: rotation failed")[0].attrs["err"]), "leaving it alone")
	assert.Empty(t, lg.find("etcdkeys: rotated"))
}

// TestRotatorFenced: a leader whose lease is gone cannot write, even if it
// does not know yet: its write is conditional on its election key.
func TestRotatorFenced(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	set.Keys[0].Created = time.Now().Add(-time.Hour) // a key is due
	rev := putSet(t, cli, key, set)

	ctx := ctxFor(t)
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	require.NoError(t, err)
	defer sess.Close()
	e := concurrency.NewElection(sess, electionPrefix(key))
	require.NoError(t, e.Campaign(ctx, "deposed"))
	// The lease expires behind the leader's back.
	_, err = cli.Revoke(ctx, sess.Lease())
	require.NoError(t, err)

	r := &Rotator{Client: cli, Key: key, Lifetime: time.Hour, Name: "deposed"}
	var lg logs
	_, err = r.step(ctx, e, lg.logger())
	assert.ErrorIs(t, err, errDeposed)
	resp, err := cli.Get(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, rev, resp.Kvs[0].ModRevision, "not written")
	assert.Empty(t, lg.find("etcdkeys: rotated"))
}

// TestRotatorLosesLease: two Rotators; the leader's lease is revoked under
// it (as when etcd expires it). It stops writing at once, the other takes
// over, and the store's history shows one writer at a time.
func TestRotatorLosesLease(t *testing.T) {
	c := sharedCluster(t)
	key := testKey(t)
	h := watchHistory(t, newClient(t, c), key, nil)
	var lg logs
	const life = libtls.MinSessionLifetime
	cli1, cli2 := newClient(t, c), newClient(t, c)
	runRotator(t, &Rotator{Client: cli1, Key: key, Lifetime: life, Name: "r1", Logger: lg.logger()})
	eventually(t, 10*time.Second, "r1 leads", func() bool { return len(lg.find("etcdkeys: created")) == 1 })
	runRotator(t, &Rotator{Client: cli2, Key: key, Lifetime: life, Name: "r2", Logger: lg.logger()})
	eventually(t, 10*time.Second, "rev 3", func() bool { return h.lastNewest() >= 3 })

	// r1's lease, found in the store.
	resp, err := cli2.Get(ctxFor(t), electionPrefix(key)+"/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 2, "two candidates")
	require.Equal(t, "r1", string(resp.Kvs[0].Value), "r1 leads")
	_, err = cli2.Revoke(ctxFor(t), clientv3.LeaseID(resp.Kvs[0].Lease))
	require.NoError(t, err)
	lost := h.lastNewest()

	eventually(t, 10*time.Second, "r2 rotates", func() bool { return len(lg.find("etcdkeys: elected")) >= 2 && h.lastNewest() >= lost+3 })
	counts := h.checkOneWriter(t, &lg, "r1")
	assert.Positive(t, counts["r1"])
	assert.GreaterOrEqual(t, counts["r2"], 3)
	var r1Stopped bool
	for _, r := range lg.all() {
		if r.attrs["rotator"] == "r1" && r.level == slog.LevelWarn && (r.msg == "etcdkeys: rotator failed; campaigning again" || r.msg == "etcdkeys: deposed; stopped writing") {
			r1Stopped = true
		}
	}
	assert.True(t, r1Stopped, "r1 noticed: %v", lg.all())
	t.Logf("%v", counts)
}
