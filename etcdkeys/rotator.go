package etcdkeys

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	libtls "github.com/golibtls/libtls"
)

// Rotator rotates the ticket key set stored in etcd under Key, as the
// elected leader among every Rotator of that key. Run two or more, on
// different machines, for failover; see the package documentation.
//
// Set Client, Key and Lifetime; the other fields have defaults. Do not
// change the fields while Run is running.
type Rotator struct {
	// Client is the etcd client the Rotator uses; Run does not close it.
	Client *clientv3.Client
	// Key is the etcd key holding the set (as a key file's text). The
	// election takes place under Key + "/rotator/".
	Key string
	// Lifetime is the servers' session lifetime (Config.SetSessionLifetime),
	// from libtls.MinSessionLifetime to libtls.MaxSessionLifetime. Every
	// Rotator of a key and every server following it must use the same.
	Lifetime time.Duration

	// Interval is how often the leader reads the set back even when no key
	// is due (it wakes up for a due key anyway), to notice a set replaced
	// by hand; 0 means Lifetime/16.
	Interval time.Duration
	// TTL is the leadership's lease: a leader that crashes (rather than
	// being cancelled, which hands over at once) is replaced once it has
	// expired. 0 means Lifetime/8, at least 2s and at most 60s; etcd
	// rounds it up to its own minimum (1.5 times its election timeout).
	TTL time.Duration
	// Name identifies this Rotator in the election (the value of its
	// election key) and in its log; "" means host name/process ID.
	Name string
	// Logger, if set, receives the Rotator's events: info for elections,
	// rotations and hand-overs, warnings for failures, after which Run
	// carries on. Every record has the attributes "key" and "rotator".
	// While etcd stays unreachable (or without quorum) the Rotator says so
	// once, not at every attempt.
	Logger *slog.Logger
	// KEK, if set, seals every set the Rotator stores (see KEK); every
	// Follower of Key needs the same KEK. A set found in clear is sealed
	// at once, without a new key: the step that moves a fleet to sealed
	// keys. A set sealed with another KEK (or any KEK, when this is nil)
	// is reported and left alone, like an invalid value.
	KEK *KEK
}

// errDeposed is a write refused because the writer is no longer leader.
var errDeposed = errors.New("no longer the leader")

// Run campaigns for the leadership of Key and, while it holds it, rotates
// the set: it creates one (a random session ID and key rev 1) when Key is
// absent, adds a key when NextRotation has passed and keeps the newest 4.
// A stored value that is not a valid set is reported (Logger) and left
// alone: replacing it would change the fleet's session ID.
//
// Run returns only when ctx is done (with ctx.Err(), having handed the
// leadership over: it resigns and revokes its lease), or at once with an
// error for an invalid Rotator. Failures of etcd are logged and retried;
// when the lease is lost (etcd unreachable for TTL) the Rotator stops
// writing at once and campaigns again, and another Rotator takes over.
func (r *Rotator) Run(ctx context.Context) error {
	if err := r.validate(); err != nil {
		return err
	}
	log := r.logger()
	var failing string // the kind of the failure last logged, "" after an election
	for {
		err := r.term(ctx, log, &failing)
		if err != nil && ctx.Err() == nil {
			// An outage fails every attempt, each in its own words (a
			// lease not granted, a lease lost, a timeout of the client or
			// of the server): say it once, until the next election.
			if k := failureKind(err); k != failing {
				log.Warn("etcdkeys: rotator failed; campaigning again", "err", err)
				failing = k
			}
		}
		// Whether the term ended in an error or a lost lease, etcd is in
		// trouble: give it an interval before campaigning again.
		if !sleep(ctx, r.interval()) {
			return ctx.Err()
		}
	}
}

func (r *Rotator) validate() error {
	switch {
	case r.Client == nil:
		return fmt.Errorf("etcdkeys: rotator: %w", errNoClient)
	case r.Key == "":
		return errors.New("etcdkeys: rotator: empty key")
	case r.Lifetime < libtls.MinSessionLifetime || r.Lifetime > libtls.MaxSessionLifetime:
		return fmt.Errorf("etcdkeys: rotator: lifetime %v is outside %v to %v", r.Lifetime, libtls.MinSessionLifetime, libtls.MaxSessionLifetime)
	case r.Interval < 0 || r.TTL < 0:
		return errors.New("etcdkeys: rotator: negative Interval or TTL")
	}
	return nil
}

// Check tells whether the Rotator can do its work, without writing
// anything: that etcd answers within ctx; that the client may read Key,
// and write Key and the election under it (a transaction that would write
// both, were Key at an impossible revision); and that a value stored under
// Key is a set this Rotator can read (with its KEK). Run retries every
// failure, so a program calls Check first to stop at once on a mistake
// of configuration: errors of access explain what the etcd user needs.
func (r *Rotator) Check(ctx context.Context) error {
	if err := r.validate(); err != nil {
		return err
	}
	resp, err := r.Client.Get(ctx, r.Key)
	if err != nil {
		return checkError("read", r.Key, err, "read on "+r.Key)
	}
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		set, _, err := decodeSet(r.Key, kv.ModRevision, kv.Value, r.KEK)
		if err != nil {
			return err
		}
		set.Zero()
	}
	// No revision is -1: the transaction never writes, but etcd checks
	// the permissions of both puts before it compares.
	_, err = r.Client.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(r.Key), "=", -1),
	).Then(
		clientv3.OpPut(r.Key, ""),
		clientv3.OpPut(electionPrefix(r.Key)+"/check", ""),
	).Commit()
	if err != nil {
		return checkError("write", r.Key, err, "readwrite on the prefix "+r.Key+" (the set and the election under it)")
	}
	return nil
}

// checkError is Check's error for a failed op on key.
func checkError(op, key string, err error, need string) error {
	if IsAccessError(err) {
		return fmt.Errorf("etcdkeys: %s %s: %w", op, key, explain(err, need))
	}
	return fmt.Errorf("etcdkeys: %s %s: %w (%v)", op, key, ErrUnreachable, err)
}

func (r *Rotator) interval() time.Duration {
	if r.Interval > 0 {
		return r.Interval
	}
	return r.Lifetime / 16
}

func (r *Rotator) ttlSeconds() int {
	ttl := r.TTL
	if ttl <= 0 {
		ttl = min(max(r.Lifetime/8, 2*time.Second), time.Minute)
	}
	return int(max(1, (ttl+time.Second-1)/time.Second))
}

func (r *Rotator) name() string {
	if r.Name != "" {
		return r.Name
	}
	host, err := os.Hostname()
	if err != nil {
		host = "?"
	}
	return host + "/" + strconv.Itoa(os.Getpid())
}

func (r *Rotator) logger() *slog.Logger {
	lg := r.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	return lg.With("key", r.Key, "rotator", r.name())
}

// term is one term of office: a lease, a campaign, and rotations while
// the leadership lasts. It clears *failing once elected.
func (r *Rotator) term(ctx context.Context, log *slog.Logger, failing *string) error {
	// The lease is granted within a TTL: without quorum etcd may never
	// answer, and the Rotator would wait silently.
	gctx, gcancel := context.WithTimeout(ctx, time.Duration(r.ttlSeconds())*time.Second)
	lease, err := r.Client.Grant(gctx, int64(r.ttlSeconds()))
	gcancel()
	if err != nil {
		return fmt.Errorf("lease: %w", explain(err, "readwrite on the prefix "+r.Key))
	}
	sess, err := concurrency.NewSession(r.Client, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = r.Client.Revoke(rctx, lease.ID)
		return fmt.Errorf("lease: %w", err)
	}
	// The lease goes with the term: revoking it deletes the election key,
	// so that another Rotator takes over now, not after the TTL. ctx may
	// be done already: use a context of its own.
	defer func() {
		sess.Orphan()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = r.Client.Revoke(rctx, sess.Lease())
	}()

	// Everything below stops as soon as the lease is lost.
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
			cancel()
		case <-lctx.Done():
		}
	}()

	e := concurrency.NewElection(sess, electionPrefix(r.Key))
	if err := e.Campaign(lctx, r.name()); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if lctx.Err() != nil {
			return errors.New("lease lost while campaigning")
		}
		return fmt.Errorf("campaign: %w", explain(err, "readwrite on the prefix "+r.Key))
	}
	// Resign forgets the key: keep it for the log.
	ekey := e.Key()
	log.Info("etcdkeys: elected", "election_key", ekey, "election_rev", e.Rev())
	*failing = ""
	err = r.lead(lctx, e, log)
	switch {
	case ctx.Err() != nil:
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = e.Resign(rctx)
		log.Info("etcdkeys: resigned", "election_key", ekey)
		return nil
	case lctx.Err() != nil:
		return errors.New("lease lost; stopped writing")
	}
	return err
}

// lead rotates the set while this Rotator leads, until ctx is done or a
// write shows that it no longer leads.
func (r *Rotator) lead(ctx context.Context, e *concurrency.Election, log *slog.Logger) error {
	for {
		next, err := r.step(ctx, e, log)
		if errors.Is(err, errDeposed) {
			log.Warn("etcdkeys: deposed; stopped writing", "election_key", e.Key())
			return err
		}
		wait := r.interval()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return nil
			}
			log.Warn("etcdkeys: rotation failed", "err", err)
		case !next.IsZero():
			// Wake just after the next key is due (Rotate wants now to be
			// strictly after NextRotation).
			wait = min(wait, time.Until(next)+time.Millisecond)
		default:
			wait = 0 // the value changed under us: read it again
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// step reads the set and stores its rotation, if due. It returns when the
// next key is due, the zero Time when the set must be read again at once,
// and errDeposed when the write was refused for want of leadership.
func (r *Rotator) step(ctx context.Context, e *concurrency.Election, log *slog.Logger) (time.Time, error) {
	resp, err := r.Client.Get(ctx, r.Key)
	if err != nil {
		return time.Time{}, fmt.Errorf("read %s: %w", r.Key, explain(err, "readwrite on the prefix "+r.Key))
	}
	var (
		set    *libtls.TicketKeySet
		modRev int64 // 0: absent, which ModRevision compares equal to
		sealed bool
	)
	if len(resp.Kvs) > 0 {
		kv := resp.Kvs[0]
		if set, sealed, err = decodeSet(r.Key, kv.ModRevision, kv.Value, r.KEK); err != nil {
			return time.Time{}, fmt.Errorf("%w; leaving it alone (a new set would change the fleet's session ID)", err)
		}
		modRev = kv.ModRevision
	}
	rotated, changed, err := libtls.RotateTicketKeySet(set, time.Now(), r.Lifetime)
	if err != nil {
		set.Zero()
		return time.Time{}, fmt.Errorf("%s: %w", r.Key, err)
	}
	set = rotated
	defer set.Zero()
	next := set.NextRotation(r.Lifetime)
	// A set in clear is sealed as soon as this Rotator has a KEK.
	seal := r.KEK != nil && modRev != 0 && !sealed
	if !changed && !seal {
		return next, nil
	}
	value, err := EncodeSet(r.Key, set, r.KEK)
	if err != nil {
		return time.Time{}, err
	}
	defer clear(value) // the keys, when in clear
	// Fenced: only while this Rotator's election key still exists (it is
	// the leader: later candidates wait for its deletion) and the value is
	// the one just read. The etcd client copies the value into its request
	// (a string, then protobuf bytes): those copies are not ours to zero.
	tresp, err := r.Client.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(e.Key()), "=", e.Rev()),
		clientv3.Compare(clientv3.ModRevision(r.Key), "=", modRev),
	).Then(
		clientv3.OpPut(r.Key, string(value)),
	).Else(
		clientv3.OpGet(e.Key(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		return time.Time{}, fmt.Errorf("write %s: %w", r.Key, err)
	}
	if !tresp.Succeeded {
		kvs := tresp.Responses[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 || kvs[0].CreateRevision != e.Rev() {
			return time.Time{}, errDeposed
		}
		log.Info("etcdkeys: the set changed while rotating it; reading it again")
		return time.Time{}, nil
	}
	newest := set.Keys[len(set.Keys)-1].Rev
	what := "etcdkeys: rotated"
	switch {
	case modRev == 0:
		what = "etcdkeys: created"
	case !changed:
		what = "etcdkeys: sealed the set stored in clear"
	}
	attrs := []any{"rev", newest, "etcd_revision", tresp.Header.Revision, "next", next}
	if r.KEK != nil {
		attrs = append(attrs, "kek", r.KEK.ID())
	}
	log.Info(what, attrs...)
	return next, nil
}

// sleep waits for d or until ctx is done; it reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
