package etcdkeys

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

// rotated returns set with its next key added (as the rotator would add
// it once due).
func rotated(t testing.TB, set *libtls.TicketKeySet) *libtls.TicketKeySet {
	t.Helper()
	require.True(t, set.Rotate(set.NextRotation(time.Hour).Add(time.Second), time.Hour))
	return set
}

func TestFollow(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	cfg := serverConfig(t, time.Hour)

	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	rev := putSet(t, cli, key, set)
	f, err := Follow(cfg, cli, key)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions(), "applied before Follow returns")
	assert.Equal(t, rev, f.Revision())
	assert.NoError(t, f.Err())

	revsAre := func(want ...uint32) func() bool {
		return func() bool { return slices.Equal(cfg.TicketKeyRevisions(), want) }
	}
	rev = putSet(t, cli, key, rotated(t, set))
	eventually(t, 5*time.Second, "rev 2", revsAre(2, 1))
	assert.Equal(t, rev, f.Revision())
	assert.NoError(t, f.Err())

	// An invalid value: reported, the keys stay, and the next valid one
	// is applied.
	_, err = cli.Put(ctxFor(t), key, "garbage\n")
	require.NoError(t, err)
	eventually(t, 5*time.Second, "the error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "not a golibtls ticket key file")
	assert.Equal(t, []uint32{2, 1}, cfg.TicketKeyRevisions())
	assert.Equal(t, rev, f.Revision(), "the revision applied last")
	putSet(t, cli, key, rotated(t, set))
	eventually(t, 5*time.Second, "rev 3", revsAre(3, 2, 1))
	eventually(t, 5*time.Second, "no error", func() bool { return f.Err() == nil })

	// Deleted, then stored again.
	_, err = cli.Delete(ctxFor(t), key)
	require.NoError(t, err)
	eventually(t, 5*time.Second, "the deletion", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "was deleted; serving with the keys applied")
	// Still deleted at the following checks (and no apply of anything).
	time.Sleep(CheckInterval + 100*time.Millisecond)
	assert.ErrorContains(t, f.Err(), "was deleted")
	putSet(t, cli, key, rotated(t, set))
	eventually(t, 5*time.Second, "rev 4", revsAre(4, 3, 2, 1))
	eventually(t, 5*time.Second, "no error", func() bool { return f.Err() == nil })

	// Another session ID cannot reach running servers: refused.
	other, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer other.Zero()
	other.Keys[0].Rev = 9
	putSet(t, cli, key, other)
	eventually(t, 5*time.Second, "the session ID error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "the session ID changed")
	assert.Equal(t, []uint32{4, 3, 2, 1}, cfg.TicketKeyRevisions())

	// Closed: nothing more is applied.
	putSet(t, cli, key, set)
	eventually(t, 5*time.Second, "no error", func() bool { return f.Err() == nil })
	require.NoError(t, f.Close())
	require.NoError(t, f.Close(), "idempotent")
	putSet(t, cli, key, rotated(t, set))
	time.Sleep(CheckInterval + 200*time.Millisecond)
	assert.Equal(t, []uint32{4, 3, 2, 1}, cfg.TicketKeyRevisions())
}

func TestFollowErrors(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	cfg := serverConfig(t, time.Hour)

	_, err := Follow(cfg, cli, key)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no ticket key set stored there yet")
	_, err = cli.Put(ctxFor(t), key, "golibtls-ticket-keys 1\nsession-id zz\n")
	require.NoError(t, err)
	_, err = Follow(cfg, cli, key)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "etcdkeys: "+key+" at revision ")
	assert.Contains(t, err.Error(), "line 2: session ID is not valid hex")
	_, err = Follow(nil, cli, key)
	assert.ErrorContains(t, err, "nil Config")
	_, err = Follow(cfg, nil, key)
	assert.ErrorContains(t, err, "nil etcd client")
	_, err = Follow(cfg, cli, "")
	assert.ErrorContains(t, err, "empty key")
	assert.Empty(t, cfg.TicketKeyRevisions(), "nothing applied by the failures")

	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	putSet(t, cli, key, set)
	require.NoError(t, cfg.Close())
	_, err = Follow(cfg, cli, key)
	assert.ErrorIs(t, err, libtls.ErrClosed)
}

// TestFollowUnreachable: with etcd gone the server keeps serving (and, on
// LibreSSL, resuming) with the keys it has, Err says etcd is unreachable,
// and once etcd is back the Follower catches up with what it missed.
func TestFollowUnreachable(t *testing.T) {
	c := etcdtest.New(t, 1)
	cli := newClient(t, c)
	key := testKey(t)
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	putSet(t, cli, key, set)

	cfg := serverConfig(t, time.Hour)
	f, err := Follow(cfg, cli, key)
	require.NoError(t, err)
	defer f.Close()
	srv := serve(t, "server", cfg)
	client := clientConfig(t)
	resumes := libtls.Backend().ServerSessionResumption
	handshake := func(i int) {
		resumed, err := dial(srv.addr, client)
		require.NoError(t, err, "handshake %d", i)
		assert.Equal(t, resumes && i > 0, resumed, "handshake %d resumed (%v)", i, libtls.Backend())
	}
	handshake(0)

	c.Stop(0)
	eventually(t, CheckInterval+checkTimeout+5*time.Second, "the unreachable error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "etcd unreachable")
	assert.Contains(t, f.Err().Error(), "serving with the keys applied")
	for i := 1; i <= 3; i++ {
		handshake(i)
	}
	assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions())

	require.NoError(t, c.Restart(0))
	eventually(t, CheckInterval+checkTimeout+5*time.Second, "no error", func() bool { return f.Err() == nil })
	putSet(t, cli, key, rotated(t, set))
	eventually(t, 5*time.Second, "rev 2", func() bool { return slices.Equal(cfg.TicketKeyRevisions(), []uint32{2, 1}) })
	handshake(4)
	assert.Empty(t, srv.errors())
}

// TestFileToEtcdAndBack: the stored value is the key file's bytes, so a
// fleet moves from a key file to etcd and back by copying them.
func TestFileToEtcdAndBack(t *testing.T) {
	cli := newClient(t, sharedCluster(t))
	key := testKey(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "ticket-keys")
	set, _, err := libtls.RotateTicketKeyFile(file, time.Hour)
	require.NoError(t, err)
	defer set.Zero()

	// File -> etcd (etcdctl put KEY < FILE).
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	_, err = cli.Put(ctxFor(t), key, string(data))
	require.NoError(t, err)
	clear(data)
	cfg := serverConfig(t, time.Hour)
	f, err := Follow(cfg, cli, key)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions())

	// A rotator takes over the set in etcd; the session ID stays.
	backdated := getSet(t, cli, key)
	backdated.Keys[0].Created = time.Now().Add(-time.Hour)
	putSet(t, cli, key, backdated)
	backdated.Zero()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Rotator{Client: cli, Key: key, Lifetime: time.Hour}).Run(ctx) }()
	eventually(t, 10*time.Second, "rev 2 in etcd", func() bool { s := getSet(t, cli, key); defer s.Zero(); return newest(s) == 2 })
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
	eventually(t, 5*time.Second, "rev 2 applied", func() bool { return slices.Equal(cfg.TicketKeyRevisions(), []uint32{2, 1}) })

	// Etcd -> file (etcdctl get --print-value-only KEY > FILE, mode 0600).
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file+".new", resp.Kvs[0].Value, 0o600))
	clear(resp.Kvs[0].Value)
	back, err := libtls.ReadTicketKeyFile(file + ".new")
	require.NoError(t, err)
	defer back.Zero()
	assert.Equal(t, set.SessionID, back.SessionID)
	assert.Equal(t, []uint32{1, 2}, revsOf(back))
	assert.Equal(t, set.Keys[0].Key, back.Keys[0].Key)
}
