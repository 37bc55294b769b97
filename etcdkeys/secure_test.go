package etcdkeys

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

// The tests here run against etcd as operators run it: clients over TLS
// with certificates, authentication enabled, and each role with the least
// it needs (rotators readwrite on the prefix KEY, servers read on KEY).

// TestAccessErrors: a user that lacks a permission is told which one.
func TestAccessErrors(t *testing.T) {
	c := secureCluster(t)
	key := testKey(t)
	ctx := ctxFor(t)
	nobody := userClient(t, c, "nobody")
	reader := userClient(t, c, "server", serverGrant(key))
	writer := userClient(t, c, "rotator", rotatorGrant(key))

	_, err := Follow(serverConfig(t, time.Hour), nobody, key)
	assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
	assert.True(t, IsAccessError(err))
	assert.ErrorContains(t, err, "the etcd user needs read on "+key)
	err = (&Rotator{Client: nobody, Key: key, Lifetime: time.Hour}).Check(ctx)
	assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
	assert.ErrorContains(t, err, "read "+key)
	err = (&Rotator{Client: reader, Key: key, Lifetime: time.Hour}).Check(ctx)
	assert.ErrorIs(t, err, rpctypes.ErrPermissionDenied)
	assert.ErrorContains(t, err, "the etcd user needs readwrite on the prefix "+key)
	err = (&Rotator{Client: writer, Key: key, Lifetime: time.Hour}).Check(ctx)
	assert.NoError(t, err)
	assert.Nil(t, getSet(t, writer, key), "Check writes nothing")
	err = (&Rotator{Client: writer, Key: key}).Check(ctx)
	assert.ErrorContains(t, err, "lifetime 0s is outside")

	// Running, a Rotator without the permission says so and writes
	// nothing.
	var lg logs
	runRotator(t, &Rotator{Client: reader, Key: key, Lifetime: libtls.MinSessionLifetime, Interval: 50 * time.Millisecond, Logger: lg.logger()})
	eventually(t, 10*time.Second, "a warning", func() bool { return len(lg.find("etcdkeys: rotator failed; campaigning again")) > 0 })
	assert.Contains(t, fmt.Sprint(lg.find("etcdkeys: rotator failed; campaigning again")[0].attrs["err"]), "permission denied: the etcd user needs readwrite on the prefix "+key)
	assert.Nil(t, getSet(t, writer, key))
}

// TestSealedFleet: a Rotator with a KEK stores only sealed sets, servers
// with the KEK unseal and share them across rotations (and, on LibreSSL,
// resume each other's sessions), a server without the KEK or with another
// cannot start, and a running server whose KEK does not fit a new value
// says so and keeps serving with the keys it has.
func TestSealedFleet(t *testing.T) {
	const life = libtls.MinSessionLifetime
	c := secureCluster(t)
	key := testKey(t)
	root := newClient(t, c)
	kek := newKEK(t)
	h := watchHistory(t, root, key, kek)

	var lg logs
	r := &Rotator{Client: userClient(t, c, "rotator", rotatorGrant(key)), Key: key, Lifetime: life, Name: "r", KEK: kek, Logger: lg.logger()}
	require.NoError(t, r.Check(ctxFor(t)))
	stopRotator := runRotator(t, r)
	eventually(t, 10*time.Second, "the set", func() bool { return h.lastNewest() >= 1 })

	var servers []*server
	var followers []*Follower
	for i := range 2 {
		cfg := serverConfig(t, life)
		f, err := (&FollowConfig{KEK: kek}).Follow(cfg, userClient(t, c, "server", serverGrant(key)), key)
		require.NoError(t, err)
		t.Cleanup(func() { f.Close() })
		followers = append(followers, f)
		servers = append(servers, serve(t, fmt.Sprintf("server%d", i), cfg))
	}
	srvCli := userClient(t, c, "server", serverGrant(key))
	_, err := Follow(serverConfig(t, life), srvCli, key)
	assert.ErrorIs(t, err, ErrWrongKEK)
	assert.ErrorContains(t, err, "is sealed with KEK "+kek.ID()+" and there is no KEK here")
	other := newKEK(t)
	_, err = (&FollowConfig{KEK: other}).Follow(serverConfig(t, life), srvCli, key)
	assert.ErrorIs(t, err, ErrWrongKEK)
	assert.ErrorContains(t, err, "not with this KEK ("+other.ID()+")")

	// A client goes round the servers through three rotations.
	client := clientConfig(t)
	first := h.lastNewest()
	var results []bool
	for i := 0; h.lastNewest() < first+3 && i < 10000; i++ {
		resumed, err := dial(servers[i%2].addr, client)
		require.NoError(t, err, "handshake %d", i)
		results = append(results, resumed)
	}
	final := h.lastNewest()
	eventually(t, 5*time.Second, "the servers apply the last set", func() bool {
		for _, s := range servers {
			if revs := s.cfg.TicketKeyRevisions(); len(revs) == 0 || revs[0] != final {
				return false
			}
		}
		return true
	})
	firstResume := slices.Index(results, true)
	resumed := 0
	for _, r := range results[max(firstResume, 0):] {
		if r {
			resumed++
		}
	}
	t.Logf("%v: %d handshakes, first resume at #%d, then %d resumed; keys rev %d to %d", libtls.Backend(), len(results), firstResume, resumed, first, final)
	if libtls.Backend().ServerSessionResumption {
		require.GreaterOrEqual(t, firstResume, 0, "resumed at all")
		after := len(results) - firstResume
		require.Greater(t, after, 20, "enough handshakes to count")
		assert.GreaterOrEqual(t, float64(resumed), 0.95*float64(after), "resumed across servers after the first resume")
	} else {
		assert.Equal(t, -1, firstResume, "%v servers never resume", libtls.Backend())
	}

	// What etcd holds, and held: sealed values only, never a key in clear.
	values := h.values()
	require.GreaterOrEqual(t, len(values), 4)
	for _, v := range values {
		assert.True(t, v.sealed, "revision %d is sealed", v.revision)
	}
	resp, err := root.Get(ctxFor(t), key)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(resp.Kvs[0].Value, []byte(sealedHeader+"\nkek "+kek.ID()+"\n")), "%q", resp.Kvs[0].Value)
	for _, w := range []string{"etcdkeys: created", "etcdkeys: rotated"} {
		for _, rec := range lg.find(w) {
			assert.Equal(t, kek.ID(), rec.attrs["kek"], w)
		}
	}

	// Values the servers' KEK does not fit: reported, the keys kept.
	stopRotator()
	set := getSetKEK(t, root, key, kek)
	defer set.Zero()
	revs := servers[0].cfg.TicketKeyRevisions()
	text, err := rotated(t, set).MarshalText()
	require.NoError(t, err)
	defer clear(text)
	sealedOther, err := other.seal(key, text)
	require.NoError(t, err)
	for _, v := range []struct {
		value []byte
		want  string
	}{
		{sealedOther, "is sealed with KEK " + other.ID() + ", not with this KEK (" + kek.ID() + ")"},
		{text, "is stored in clear, but this Follower has a KEK (" + kek.ID() + ")"},
	} {
		_, err = root.Put(ctxFor(t), key, string(v.value))
		require.NoError(t, err)
		for i, f := range followers {
			eventually(t, 5*time.Second, "the error", func() bool { return f.Err() != nil && strings.Contains(f.Err().Error(), v.want) })
			assert.ErrorIs(t, f.Err(), ErrWrongKEK, "follower %d", i)
			assert.ErrorContains(t, f.Err(), v.want, "follower %d", i)
			assert.Equal(t, revs, servers[i].cfg.TicketKeyRevisions(), "server %d keeps its keys", i)
			_, err := dial(servers[i].addr, client)
			assert.NoError(t, err, "server %d serves", i)
		}
	}
	for _, s := range servers {
		assert.Empty(t, s.errors(), s.name)
	}
}

// getSetKEK reads the sealed set under key.
func getSetKEK(t testing.TB, cli *clientv3.Client, key string, kek *KEK) *libtls.TicketKeySet {
	t.Helper()
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	set, sealed, err := decodeSet(key, resp.Kvs[0].ModRevision, resp.Kvs[0].Value, kek)
	require.NoError(t, err)
	require.True(t, sealed)
	return set
}

// TestMigrateToSealed: a fleet in clear moves to sealed keys without
// losing a session. A Rotator with a KEK replaces the one without: it
// seals the set at once, same session ID and keys; servers without the
// KEK say so and keep their keys; servers started with the KEK get the
// same set, so sessions resume across old and new servers.
func TestMigrateToSealed(t *testing.T) {
	c := secureCluster(t)
	key := testKey(t)
	root := newClient(t, c)
	rotCli := userClient(t, c, "rotator", rotatorGrant(key))
	var lg logs
	stopPlain := runRotator(t, &Rotator{Client: rotCli, Key: key, Lifetime: time.Hour, Name: "plain", Logger: lg.logger()})
	eventually(t, 10*time.Second, "the set", func() bool { s := getSet(t, root, key); defer s.Zero(); return s != nil })

	plainCfg := serverConfig(t, time.Hour)
	fPlain, err := Follow(plainCfg, userClient(t, c, "server", serverGrant(key)), key)
	require.NoError(t, err)
	defer fPlain.Close()
	plainSrv := serve(t, "plain", plainCfg)
	client := clientConfig(t)
	resumed, err := dial(plainSrv.addr, client)
	require.NoError(t, err)
	require.False(t, resumed)
	before := getSet(t, root, key)
	defer before.Zero()

	// The rotators restart with the KEK.
	stopPlain()
	kek := newKEK(t)
	runRotator(t, &Rotator{Client: rotCli, Key: key, Lifetime: time.Hour, Name: "sealing", KEK: kek, Logger: lg.logger()})
	eventually(t, 10*time.Second, "the sealed set", func() bool { return len(lg.find("etcdkeys: sealed the set stored in clear")) == 1 })
	after := getSetKEK(t, root, key, kek)
	defer after.Zero()
	assert.Equal(t, before.SessionID, after.SessionID, "the session ID stays")
	assert.Equal(t, revsOf(before), revsOf(after), "no new key")
	assert.Equal(t, before.Keys[0].Key, after.Keys[0].Key)
	assert.Equal(t, kek.ID(), lg.find("etcdkeys: sealed the set stored in clear")[0].attrs["kek"])

	// The server without the KEK says so and keeps its keys.
	eventually(t, 5*time.Second, "the plain server's error", func() bool { return fPlain.Err() != nil })
	assert.ErrorIs(t, fPlain.Err(), ErrWrongKEK)
	assert.ErrorContains(t, fPlain.Err(), "there is no KEK here")
	assert.Equal(t, []uint32{1}, plainCfg.TicketKeyRevisions())

	// Servers restarted with the KEK share the set with it.
	sealedCfg := serverConfig(t, time.Hour)
	fSealed, err := (&FollowConfig{KEK: kek}).Follow(sealedCfg, userClient(t, c, "server", serverGrant(key)), key)
	require.NoError(t, err)
	defer fSealed.Close()
	assert.NoError(t, fSealed.Err())
	assert.Equal(t, plainCfg.TicketKeyRevisions(), sealedCfg.TicketKeyRevisions())
	sealedSrv := serve(t, "sealed", sealedCfg)
	b := libtls.Backend()
	for i, s := range []*server{sealedSrv, plainSrv, sealedSrv} {
		resumed, err := dial(s.addr, client)
		require.NoError(t, err)
		assert.Equal(t, b.ServerSessionResumption, resumed, "handshake %d with %s resumed the session made before the migration (%v)", i, s.name, b)
	}
	for _, r := range lg.all() {
		assert.Less(t, r.level, slog.LevelWarn, "%s %v", r.msg, r.attrs)
	}
}

// TestStartWithoutQuorum: a server starts while etcd has no quorum,
// serving with keys of its own, and converges when etcd is back; a
// Rotator started then says once that etcd does not answer (it used to
// wait silently for a lease) and creates the set when it does.
func TestStartWithoutQuorum(t *testing.T) {
	const life = libtls.MinSessionLifetime
	c := etcdtest.NewWith(t, 3, etcdtest.Options{TLS: true, Auth: true})
	key := testKey(t)
	kek := newKEK(t)
	rotCli := userClient(t, c, "rotator", rotatorGrant(key))
	srvCli, otherCli := userClient(t, c, "server", serverGrant(key)), userClient(t, c, "server", serverGrant(key))
	leader := c.Leader()
	require.GreaterOrEqual(t, leader, 0)
	down := []int{(leader + 1) % 3, (leader + 2) % 3}
	c.Stop(down[0])
	c.Stop(down[1])

	var lg logs
	runRotator(t, &Rotator{Client: rotCli, Key: key, Lifetime: life, Interval: 100 * time.Millisecond, Name: "r", KEK: kek, Logger: lg.logger()})

	cfg := serverConfig(t, life)
	_, err := (&FollowConfig{KEK: kek, Timeout: time.Second}).Follow(cfg, srvCli, key)
	assert.ErrorIs(t, err, ErrUnreachable, "by default, Follow fails")
	assert.ErrorIs(t, (&Rotator{Client: rotCli, Key: key, Lifetime: life}).Check(ctxTimeout(t, time.Second)), ErrUnreachable)
	f, err := (&FollowConfig{KEK: kek, Timeout: time.Second, StartUnreachable: true}).Follow(cfg, srvCli, key)
	require.NoError(t, err)
	defer f.Close()
	assert.ErrorIs(t, f.Err(), ErrUnreachable)
	assert.ErrorContains(t, f.Err(), "serving with the Config's own keys")
	select {
	case <-f.Ready():
		t.Fatal("ready without a set")
	default:
	}
	early := serve(t, "early", cfg)
	client := clientConfig(t)
	_, err = dial(early.addr, client)
	require.NoError(t, err, "serves during the outage")

	// The Rotator says it once, however many times it tries.
	failed := func() int { return len(lg.find("etcdkeys: rotator failed; campaigning again")) }
	eventually(t, 15*time.Second, "the rotator's warning", func() bool { return failed() > 0 })
	time.Sleep(5 * time.Second) // two more leases tried (TTL 2s)
	assert.Equal(t, 1, failed(), "warnings: %v", lg.find("etcdkeys: rotator failed; campaigning again"))
	assert.ErrorIs(t, f.Err(), ErrUnreachable)

	require.NoError(t, c.Restart(down[0]))
	select {
	case <-f.Ready():
	case <-time.After(30 * time.Second):
		t.Fatalf("not ready 30s after quorum came back: %v", f.Err())
	}
	// The fleet's key is the newest; a key the Config made for itself
	// during the outage may follow.
	assert.Equal(t, uint32(1), cfg.TicketKeyRevisions()[0], "%v", cfg.TicketKeyRevisions())
	eventually(t, 5*time.Second, "no error", func() bool { return f.Err() == nil })
	eventually(t, 5*time.Second, "the rotator's log of the set", func() bool { return len(lg.find("etcdkeys: created")) == 1 })
	assert.Equal(t, 1, failed())

	// A new server from the Config has the fleet's session ID: sessions
	// resume between it and any other server of the fleet.
	late := serve(t, "late", cfg)
	otherCfg := serverConfig(t, life)
	fo, err := (&FollowConfig{KEK: kek}).Follow(otherCfg, otherCli, key)
	require.NoError(t, err)
	defer fo.Close()
	assert.Equal(t, otherCfg.TicketKeyRevisions()[0], cfg.TicketKeyRevisions()[0])
	peer := serve(t, "peer", otherCfg)
	b := libtls.Backend()
	for i, s := range []*server{peer, late, peer, late} {
		resumed, err := dial(s.addr, client)
		require.NoError(t, err)
		if i > 0 {
			assert.Equal(t, b.ServerSessionResumption, resumed, "handshake %d with %s resumed (%v)", i, s.name, b)
		}
	}
	for _, s := range []*server{early, late, peer} {
		assert.Empty(t, s.errors(), s.name)
	}
	if t.Failed() {
		t.Logf("rotator log: %v", lg.all())
	}
}
