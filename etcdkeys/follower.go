package etcdkeys

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
)

const (
	// FollowTimeout bounds Follow's first read of the set.
	FollowTimeout = 10 * time.Second
	// CheckInterval is how often a Follower reads the set back besides
	// watching it: that read tells whether etcd is reachable (a watch
	// waits silently while it is not) and catches any change a watch
	// missed.
	CheckInterval = time.Second
	// checkTimeout bounds each of those reads: etcd is reported
	// unreachable after it.
	checkTimeout = 2 * time.Second
	// maxRewatchDelay bounds the pause before watching again after etcd
	// ended a watch (no leader, compaction): the first retry is at once
	// (the client moves to a member that has a leader, and every
	// millisecond without the watch may cost a resumption), then the
	// pause doubles from 10ms.
	maxRewatchDelay = time.Second
)

// Follower keeps a server's Config in step with the ticket key set stored
// in etcd; see Follow.
type Follower struct {
	cfg *libtls.Config
	cli *clientv3.Client
	key string
	id  []byte // the session ID applied first

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once

	// applyMu serializes applying, from the watch and from the checks, so
	// that revisions are applied in order and each once.
	applyMu sync.Mutex

	mu      sync.Mutex
	seen    int64 // mod revision of the last value considered, applied or not
	applied int64 // mod revision of the set applied last
	present bool  // the key existed at the last look
	dataErr error // the last value's problem
	connErr error // etcd unreachable
}

// Follow reads the ticket key set stored under key and applies it to cfg
// (Config.ApplyTicketKeySet: session ID and keys), then watches key and
// applies every change until Close. It returns an error when the first
// read fails (within FollowTimeout), when key holds no set yet (start a
// Rotator first) or an invalid one, or when applying fails.
//
// Call it before NewServer or Listen: libtls copies the session ID into a
// server when it is created. Close the Follower before the Config.
//
// Later problems are kept for Err while the Config keeps serving with the
// keys it has: an invalid value, a deleted key, a set with another session
// ID (running servers cannot change theirs; restart them) and etcd being
// unreachable (checked every CheckInterval). The binding adds keys of its
// own before the applied ones expire (see Config.AddTicketKey), so
// handshakes never fail for want of a key; they just stop resuming across
// servers until the Follower catches up.
func Follow(cfg *libtls.Config, cli *clientv3.Client, key string) (*Follower, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("etcdkeys: follow: nil Config")
	case cli == nil:
		return nil, fmt.Errorf("etcdkeys: follow: %w", errNoClient)
	case key == "":
		return nil, errors.New("etcdkeys: follow: empty key")
	}
	ctx, cancel := context.WithTimeout(context.Background(), FollowTimeout)
	resp, err := cli.Get(ctx, key)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcdkeys: follow %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdkeys: follow %s: no ticket key set stored there yet (start a Rotator)", key)
	}
	kv := resp.Kvs[0]
	set, err := parseSet(key, kv.ModRevision, kv.Value)
	if err != nil {
		return nil, err
	}
	defer set.Zero()
	if err := cfg.ApplyTicketKeySet(set); err != nil {
		return nil, err
	}
	f := &Follower{
		cfg: cfg, cli: cli, key: key, id: bytes.Clone(set.SessionID),
		seen: kv.ModRevision, applied: kv.ModRevision, present: true,
	}
	wctx, wcancel := context.WithCancel(context.Background())
	f.cancel = wcancel
	f.wg.Add(2)
	go f.watch(wctx, resp.Header.Revision)
	go f.check(wctx)
	return f, nil
}

// watch applies the changes etcd reports after revision rev.
func (f *Follower) watch(ctx context.Context, rev int64) {
	defer f.wg.Done()
	failures := 0 // watches ended in a row
	for ctx.Err() == nil {
		started := time.Now()
		// WithRequireLeader: a member cut off from its cluster ends the
		// watch, and the next one goes to a member that is not.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := f.cli.Watch(wctx, f.key, clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.CompactRevision != 0 {
				// The revisions after rev are gone: read the current value,
				// then watch from there.
				if r, ok := f.readNow(ctx); ok {
					rev = r
				}
				break
			}
			if wr.Err() != nil {
				break
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					f.consider(nil, ev.Kv.ModRevision)
				} else {
					f.consider(ev.Kv, ev.Kv.ModRevision)
				}
				rev = ev.Kv.ModRevision
			}
		}
		cancel() // releases the watch when we left it early
		if time.Since(started) > maxRewatchDelay {
			failures = 0 // it had worked for a while
		}
		if failures > 0 {
			sleep(ctx, min(maxRewatchDelay, 10*time.Millisecond<<min(failures-1, 7)))
		}
		failures++
	}
}

// check reads the set every CheckInterval, to see whether etcd answers and
// to catch changes the watch missed.
func (f *Follower) check(ctx context.Context) {
	defer f.wg.Done()
	t := time.NewTicker(CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.readNow(ctx)
		}
	}
}

// readNow reads the set and considers it; it returns the store's revision
// and whether etcd answered.
func (f *Follower) readNow(ctx context.Context) (int64, bool) {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	resp, err := f.cli.Get(cctx, f.key)
	cancel()
	if ctx.Err() != nil {
		return 0, false
	}
	f.mu.Lock()
	if err != nil {
		f.connErr = fmt.Errorf("etcdkeys: %s: etcd unreachable (%w); serving with the keys applied", f.key, err)
	} else {
		f.connErr = nil
	}
	f.mu.Unlock()
	if err != nil {
		return 0, false
	}
	if len(resp.Kvs) == 0 {
		f.consider(nil, resp.Header.Revision) // absent as of that revision
	} else {
		f.consider(resp.Kvs[0], resp.Kvs[0].ModRevision)
	}
	return resp.Header.Revision, true
}

// consider applies kv, the value at mod revision rev, unless the Follower
// knows the key at rev or later already (the watch and the checks race).
// kv nil means the key is absent: deleted at rev, or found absent by a
// check at store revision rev.
func (f *Follower) consider(kv *mvccpb.KeyValue, rev int64) {
	if kv != nil {
		defer clear(kv.Value)
	}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.mu.Lock()
	stale := rev <= f.seen || (kv == nil && !f.present)
	f.mu.Unlock()
	if stale {
		return
	}

	var err error
	if kv == nil {
		err = fmt.Errorf("etcdkeys: %s was deleted; serving with the keys applied", f.key)
	} else {
		var set *libtls.TicketKeySet
		set, err = parseSet(f.key, rev, kv.Value)
		if err == nil {
			if !bytes.Equal(set.SessionID, f.id) {
				err = fmt.Errorf("etcdkeys: %s at revision %d: the session ID changed; running servers keep theirs, so restart them to use the new set", f.key, rev)
			} else {
				err = f.cfg.ApplyTicketKeySet(set)
			}
			set.Zero()
		}
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = max(f.seen, rev)
	f.present = kv != nil
	f.dataErr = err
	if kv != nil && err == nil {
		f.applied = rev
	}
}

// Err returns the Follower's current problem, or nil when the set applied
// last is the one etcd holds: etcd unreachable (at the last check), or
// else what was wrong with the latest value (invalid, deleted, another
// session ID, refused by the Config).
func (f *Follower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.connErr != nil {
		return f.connErr
	}
	return f.dataErr
}

// Revision returns the etcd mod revision of the set applied last.
func (f *Follower) Revision() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// Close stops following the key and waits for an apply in progress. The
// Config keeps the keys applied. Close is idempotent and returns nil.
func (f *Follower) Close() error {
	f.closeOnce.Do(f.cancel)
	f.wg.Wait()
	return nil
}
