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
	kek *KEK

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	ready     chan struct{} // closed when the first set is applied

	// applyMu serializes applying, from the watch and from the checks, so
	// that revisions are applied in order and each once.
	applyMu sync.Mutex

	mu      sync.Mutex
	id      []byte // the session ID applied first; nil until then
	seen    int64  // mod revision of the last value considered, applied or not
	applied int64  // mod revision of the set applied last
	present bool   // the key existed at the last look
	dataErr error  // the last value's problem
	connErr error  // etcd unreachable, or refusing this client
}

// FollowConfig holds the options of Follow. The zero value follows as
// Follow does.
type FollowConfig struct {
	// KEK, if set, unseals the stored set, which the Rotators seal with
	// the same KEK. A set stored in clear is then refused (reported by Err,
	// the keys kept), so that whoever can write the key without holding
	// the KEK cannot hand the servers keys of their choosing.
	KEK *KEK
	// Timeout bounds the first read of the set; 0 means FollowTimeout.
	Timeout time.Duration
	// StartUnreachable makes Follow return a Follower, instead of an
	// error, when etcd does not answer the first read (it is down, cut
	// off or without quorum): the Config serves with a session ID and
	// ticket keys of its own meanwhile, Err reports ErrUnreachable, and
	// the Follower applies the stored set as soon as etcd answers, then
	// closes Ready. The set's session ID reaches only servers created
	// after that (see libtls.Config.ApplyTicketKeySet): create a new
	// Server then and accept on it, so that it resumes the fleet's
	// sessions. Errors of access (permission denied, authentication
	// required or failed) still fail Follow.
	StartUnreachable bool
}

// Follow reads the ticket key set stored under key and applies it to cfg
// (Config.ApplyTicketKeySet: session ID and keys), then watches key and
// applies every change until Close. It returns an error when the first
// read fails (within FollowTimeout), when key holds no set yet (start a
// Rotator first) or an invalid one, or when applying fails. It is
// FollowConfig.Follow with the zero FollowConfig.
//
// Call it before NewServer or Listen: libtls copies the session ID into a
// server when it is created. Close the Follower before the Config.
//
// Later problems are kept for Err while the Config keeps serving with the
// keys it has: an invalid value, a deleted key, a set with another session
// ID (running servers cannot change theirs; restart them), a set the
// Follower's KEK does not fit, and etcd being unreachable (checked every
// CheckInterval). The binding adds keys of its own before the applied ones
// expire (see Config.AddTicketKey), so handshakes never fail for want of a
// key; they just stop resuming across servers until the Follower catches
// up.
func Follow(cfg *libtls.Config, cli *clientv3.Client, key string) (*Follower, error) {
	return (&FollowConfig{}).Follow(cfg, cli, key)
}

// Follow is the package's Follow with the options of fc.
func (fc *FollowConfig) Follow(cfg *libtls.Config, cli *clientv3.Client, key string) (*Follower, error) {
	switch {
	case cfg == nil:
		return nil, errors.New("etcdkeys: follow: nil Config")
	case cli == nil:
		return nil, fmt.Errorf("etcdkeys: follow: %w", errNoClient)
	case key == "":
		return nil, errors.New("etcdkeys: follow: empty key")
	case fc.Timeout < 0:
		return nil, errors.New("etcdkeys: follow: negative Timeout")
	}
	timeout := fc.Timeout
	if timeout == 0 {
		timeout = FollowTimeout
	}
	f := &Follower{cfg: cfg, cli: cli, key: key, kek: fc.KEK, ready: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	resp, err := cli.Get(ctx, key)
	cancel()
	if err != nil {
		if IsAccessError(err) {
			return nil, fmt.Errorf("etcdkeys: follow %s: %w", key, explain(err, "read on "+key))
		}
		if !fc.StartUnreachable {
			return nil, fmt.Errorf("etcdkeys: follow %s: %w (%v)", key, ErrUnreachable, err)
		}
		f.connErr = f.readError(err)
		f.start(0)
		return f, nil
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcdkeys: follow %s: no ticket key set stored there yet (start a Rotator)", key)
	}
	kv := resp.Kvs[0]
	set, err := f.decode(kv)
	if err != nil {
		return nil, err
	}
	defer set.Zero()
	if err := cfg.ApplyTicketKeySet(set); err != nil {
		return nil, err
	}
	f.id = bytes.Clone(set.SessionID)
	f.seen, f.applied, f.present = kv.ModRevision, kv.ModRevision, true
	close(f.ready)
	f.start(resp.Header.Revision)
	return f, nil
}

// start starts watching after store revision rev (0: after a first
// successful read) and checking.
func (f *Follower) start(rev int64) {
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(2)
	go f.watch(ctx, rev)
	go f.check(ctx)
}

// decode returns the set stored in kv, refusing a set in clear when the
// Follower has a KEK. It zeroes kv.Value.
func (f *Follower) decode(kv *mvccpb.KeyValue) (*libtls.TicketKeySet, error) {
	set, sealed, err := decodeSet(f.key, kv.ModRevision, kv.Value, f.kek)
	if err == nil && f.kek != nil && !sealed {
		set.Zero()
		return nil, fmt.Errorf("etcdkeys: %s at revision %d is stored in clear, but this Follower has a KEK (%s) and takes only sets sealed with it (give the Rotators the KEK: they seal the set): %w",
			f.key, kv.ModRevision, f.kek.ID(), ErrWrongKEK)
	}
	return set, err
}

// readError is the problem of a failed read of the set.
func (f *Follower) readError(err error) error {
	if IsAccessError(err) {
		return fmt.Errorf("etcdkeys: %s: %w; %s", f.key, explain(err, "read on "+f.key), f.serving())
	}
	return fmt.Errorf("etcdkeys: %s: %w (%v); %s", f.key, ErrUnreachable, err, f.serving())
}

// serving says which keys the Config serves with.
func (f *Follower) serving() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.id == nil {
		return "serving with the Config's own keys until a set is applied"
	}
	return "serving with the keys applied"
}

// Ready returns a channel that is closed once a set has been applied: at
// once, unless Follow started while etcd was unreachable
// (FollowConfig.StartUnreachable).
func (f *Follower) Ready() <-chan struct{} { return f.ready }

// watch applies the changes etcd reports after store revision rev; with
// rev 0, after a first successful read.
func (f *Follower) watch(ctx context.Context, rev int64) {
	defer f.wg.Done()
	for rev == 0 {
		if r, ok := f.readNow(ctx); ok {
			rev = r
		} else if !sleep(ctx, CheckInterval) {
			return
		}
	}
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
	var connErr error
	if err != nil {
		connErr = f.readError(err)
	}
	f.mu.Lock()
	f.connErr = connErr
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
	if kv == nil && !f.present && f.id == nil {
		// Started while etcd was unreachable, and found no set since.
		f.dataErr = fmt.Errorf("etcdkeys: %s: no ticket key set stored there yet (start a Rotator); serving with the Config's own keys", f.key)
	}
	id := f.id
	f.mu.Unlock()
	if stale {
		return
	}

	var err error
	first := false
	if kv == nil {
		err = fmt.Errorf("etcdkeys: %s was deleted; serving with the keys applied", f.key)
	} else {
		var set *libtls.TicketKeySet
		set, err = f.decode(kv)
		if err == nil {
			if id != nil && !bytes.Equal(set.SessionID, id) {
				err = fmt.Errorf("etcdkeys: %s at revision %d: the session ID changed; running servers keep theirs, so restart them to use the new set", f.key, rev)
			} else {
				err = f.cfg.ApplyTicketKeySet(set)
				first = err == nil && id == nil
				if first {
					id = bytes.Clone(set.SessionID)
				}
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
	if first {
		f.id = id
		close(f.ready)
	}
}

// Err returns the Follower's current problem, or nil when the set applied
// last is the one etcd holds: etcd unreachable at the last check (wraps
// ErrUnreachable) or refusing the client, or else what was wrong with the
// latest value (invalid, deleted, another session ID, a KEK that does not
// fit it (wraps ErrWrongKEK), refused by the Config).
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
