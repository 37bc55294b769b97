package etcdkeys

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

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

	mu     sync.Mutex
	events []histEvent
	sets   []histSet // the key's valid values, in order
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
}

// watchHistory starts recording key's history; it stops when the test
// ends.
func watchHistory(t testing.TB, cli *clientv3.Client, key string) *history {
	t.Helper()
	resp, err := cli.Get(ctxFor(t), key)
	require.NoError(t, err)
	h := &history{key: key}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	wch := cli.Watch(ctx, key, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() {
		defer close(done)
		for wr := range wch {
			for _, ev := range wr.Events {
				k := string(ev.Kv.Key)
				if k != key && !strings.HasPrefix(k, electionPrefix(key)+"/") {
					continue
				}
				e := histEvent{put: ev.Type == mvccpb.PUT, key: k, create: ev.Kv.CreateRevision, revision: ev.Kv.ModRevision}
				h.mu.Lock()
				h.events = append(h.events, e)
				if k == key && e.put {
					if set, err := parseSet(key, e.revision, ev.Kv.Value); err == nil {
						h.sets = append(h.sets, histSet{revision: e.revision, id: bytes.Clone(set.SessionID), newest: newest(set)})
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
func (h *history) checkOneWriter(t testing.TB, lg *logs) map[string]int {
	t.Helper()
	h.mu.Lock()
	events := append([]histEvent(nil), h.events...)
	h.mu.Unlock()

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
	writer := map[int64]string{} // revision -> rotator
	for _, r := range append(lg.find("etcdkeys: rotated"), lg.find("etcdkeys: created")...) {
		rev, _ := r.attrs["etcd_revision"].(int64)
		writer[rev] = fmt.Sprint(r.attrs["rotator"])
	}

	counts := map[string]int{}
	for _, rev := range writes {
		lead := leaderAt(rev)
		w, logged := writer[rev]
		if !assert.True(t, logged, "the write at revision %d is in a Rotator's log", rev) {
			continue
		}
		if !assert.NotEmpty(t, lead, "a Rotator led at revision %d", rev) {
			continue
		}
		assert.Equal(t, owner[lead], w, "the write at revision %d was made by the leader (election key %s)", rev, lead)
		counts[w]++
	}
	assert.Len(t, writer, len(writes), "every logged write is in the store's history")

	// Every value keeps the session ID and adds one key.
	sets := h.values()
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
