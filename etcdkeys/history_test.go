package etcdkeys

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// history records, from etcd's own watch, every change to a key and to
// its Rotators' election keys from the moment it starts: the store's view
// of who led when and what was written.
type history struct {
	key string
	cli *clientv3.Client
	kek *KEK // unseals the values, if set

	mu     sync.Mutex
	events []histEvent
	sets   []histSet // the key's valid values, in order
	seen   int64     // the latest revision seen under the prefix
}

type histEvent struct {
	put      bool
	key      string
	create   int64
	revision int64 // of the change
}

type histSet struct {
	revision int64
	id       []byte
	newest   uint32
	sealed   bool
}

// watchHistory starts recording key's history, unsealing its values with
// kek if not nil; it stops when the test ends.
func watchHistory(t testing.TB, cli *clientv3.Client, key string, kek *KEK) *history {
	t.Helper()
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	h := &history{key: key, cli: cli, kek: kek}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	wch := cli.Watch(ctx, key, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				k := string(ev.Kv.Key)
				h.mu.Lock()
				h.seen = max(h.seen, ev.Kv.ModRevision)
				h.mu.Unlock()
				if k != key && !strings.HasPrefix(k, electionPrefix(key)+"/") {
					continue
				}
				e := histEvent{put: ev.Type == mvccpb.PUT, key: k, create: ev.Kv.CreateRevision, revision: ev.Kv.ModRevision}
				h.mu.Lock()
				h.events = append(h.events, e)
				if k == key && e.put {
					if set, sealed, err := decodeSet(key, e.revision, ev.Kv.Value, h.kek); err == nil {
						h.sets = append(h.sets, histSet{revision: e.revision, id: bytes.Clone(set.SessionID), newest: newest(set), sealed: sealed})
						set.Zero()
					}
				}
				h.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// writes returns the key's valid values so far.
func (h *history) values() []histSet {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]histSet(nil), h.sets...)
}

// lastNewest returns the newest key revision of the latest value, 0 if
// none.
func (h *history) lastNewest() uint32 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sets) == 0 {
		return 0
	}
	return h.sets[len(h.sets)-1].newest
}

// checkOneWriter asserts that every write to the key was made by the
// Rotator that led at that revision, by the store's history: the leader at
// revision R is the live election key with the lowest create revision
// (what Campaign waits for), and the Rotators' logs name the writer of
// each revision and the owner of each election key. Leadership is thus a
// function of the revision, so no two Rotators ever write in the same
// term. It returns how many writes each Rotator made.
//
// ended names the Rotators whose term the test ended (cancelled, lease
// revoked): the last write of such a term may have been applied by etcd
// while the Rotator's call was being cut off, so that it never logged it.
// Only such a write may be missing from the logs.
func (h *history) checkOneWriter(t testing.TB, lg *logs, ended ...string) map[string]int {
	t.Helper()
	// Rotators may still be writing: check the history up to a marker
	// written now, which every write logged so far precedes.
	resp, err := h.cli.Put(ctxFor(t), h.key+"/sync", "")
	require.NoError(t, err)
	upTo := resp.Header.Revision
	eventually(t, 10*time.Second, "the history up to the marker", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.seen >= upTo
	})
	h.mu.Lock()
	var events []histEvent
	for _, e := range h.events {
		if e.revision < upTo {
			events = append(events, e)
		}
	}
	h.mu.Unlock()
	// A write is logged just after etcd confirms it.
	loggedWriters := func() map[int64]string {
		writer := map[int64]string{}
		for _, r := range append(lg.find("etcdkeys: rotated"), lg.find("etcdkeys: created")...) {
			if rev, _ := r.attrs["etcd_revision"].(int64); rev < upTo {
				writer[rev] = fmt.Sprint(r.attrs["rotator"])
			}
		}
		return writer
	}
	var nwrites int
	for _, e := range events {
		if e.key == h.key && e.put {
			nwrites++
		}
	}
	for i := 0; len(loggedWriters()) < nwrites && i < 300; i++ {
		time.Sleep(10 * time.Millisecond)
	}

	type term struct{ create, end int64 } // end 0: still live
	terms := map[string]*term{}           // by election key
	var writes []int64
	for _, e := range events {
		switch {
		case e.key == h.key && e.put:
			writes = append(writes, e.revision)
		case e.key == h.key:
			t.Errorf("the key was deleted at revision %d", e.revision)
		case e.put:
			if terms[e.key] == nil {
				terms[e.key] = &term{create: e.create}
			}
		default:
			if tm := terms[e.key]; tm != nil {
				tm.end = e.revision
			}
		}
	}
	leaderAt := func(rev int64) string {
		best := ""
		for k, tm := range terms {
			if tm.create <= rev && (tm.end == 0 || rev < tm.end) && (best == "" || tm.create < terms[best].create) {
				best = k
			}
		}
		return best
	}
	owner := map[string]string{} // election key -> rotator
	for _, r := range lg.find("etcdkeys: elected") {
		owner[fmt.Sprint(r.attrs["election_key"])] = fmt.Sprint(r.attrs["rotator"])
	}
	writer := loggedWriters() // revision -> rotator

	counts := map[string]int{}
	for i, rev := range writes {
		lead := leaderAt(rev)
		if !assert.NotEmpty(t, lead, "a Rotator led at revision %d", rev) {
			continue
		}
		w, logged := writer[rev]
		if !logged {
			// Only the last write of a term the test ended.
			last := i == len(writes)-1 || terms[lead].end != 0 && writes[i+1] > terms[lead].end
			if assert.True(t, slices.Contains(ended, owner[lead]) && terms[lead].end != 0 && last,
				"the write at revision %d is in a Rotator's log (leader %s, ended %v)", rev, owner[lead], ended) {
				t.Logf("the write at revision %d, the last of %s's term, was cut off before it was logged", rev, owner[lead])
				counts[owner[lead]]++
			}
			continue
		}
		assert.Equal(t, owner[lead], w, "the write at revision %d was made by the leader (election key %s)", rev, lead)
		counts[w]++
	}
	for rev, w := range writer {
		assert.Contains(t, writes, rev, "%s's logged write at revision %d is in the store's history", w, rev)
	}

	// Every value keeps the session ID and adds one key.
	var sets []histSet
	for _, v := range h.values() {
		if v.revision < upTo {
			sets = append(sets, v)
		}
	}
	for i := 1; i < len(sets); i++ {
		assert.Equal(t, sets[0].id, sets[i].id, "value at revision %d: the session ID never changes", sets[i].revision)
		assert.Equal(t, sets[i-1].newest+1, sets[i].newest, "value at revision %d: one new key", sets[i].revision)
	}

	// The terms, for the log.
	keys := make([]string, 0, len(terms))
	for k := range terms {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return terms[keys[i]].create < terms[keys[j]].create })
	for _, k := range keys {
		t.Logf("election key %s (%s): revisions %d to %d", k, owner[k], terms[k].create, terms[k].end)
	}
	return counts
}
