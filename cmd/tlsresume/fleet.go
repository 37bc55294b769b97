package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys"
)

// keyPollInterval is the longest serve waits before re-reading its -keys
// file: short next to any lifetime, so that a rotation reaches every
// process within a second. At short lifetimes it polls faster (see
// filePollInterval).
const keyPollInterval = time.Second

// filePollInterval is how often serve re-reads a key file for a session
// lifetime: a second, or lifetime/16 when shorter (at the 4s minimum a new
// key is due every 2s and must reach the servers within a second).
func filePollInterval(lifetime time.Duration) time.Duration {
	return min(keyPollInterval, lifetime/16)
}

// reportInterval is how often serve checks its follower to log changes.
const reportInterval = 100 * time.Millisecond

// etcdRetryInterval is how often serve tries again to log in to etcd when
// etcd did not answer at start.
const etcdRetryInterval = 2 * time.Second

// keyFollower is what serve needs of a libtls.TicketKeyFollower or an
// etcdFollower.
type keyFollower interface {
	Err() error
	Close() error
}

// followKeys applies the ticket keys of o.keys (a key file, or
// etcd[s]://HOST:PORT[,HOST:PORT...]/KEY) to cfg and follows them.
// ready is closed once the fleet's set is applied: at once, unless etcd did
// not answer at start; then startErr says why (and cfg serves with keys of
// its own until then).
func followKeys(ctx context.Context, cfg *libtls.Config, o serveOptions) (f keyFollower, ready <-chan struct{}, startErr error, err error) {
	if !isEtcdSource(o.keys) {
		ff, err := libtls.FollowTicketKeyFile(cfg, o.keys, filePollInterval(o.lifetime))
		if err != nil {
			return nil, nil, nil, explainKeyFile(o.keys, err)
		}
		done := make(chan struct{})
		close(done)
		return ff, done, nil, nil
	}
	endpoints, key, forceTLS, err := parseEtcdURL(o.keys)
	if err != nil {
		return nil, nil, nil, err
	}
	conf, err := o.etcd.config(endpoints, forceTLS)
	if err != nil {
		return nil, nil, nil, err
	}
	kek, err := o.etcd.readKEK()
	if err != nil {
		return nil, nil, nil, err
	}
	ef, err := startEtcdFollower(ctx, cfg, conf, key, kek)
	if err != nil {
		return nil, nil, nil, err
	}
	return ef, ef.ready, ef.startErr, nil
}

// etcdFollower follows a key in etcd for serve. When etcd does not answer
// at start, serve starts all the same, with keys of its own, and the
// etcdFollower follows the key as soon as etcd answers: the
// etcdkeys.Follower waits for etcd by itself (FollowConfig's
// StartUnreachable), and when the client must log in with a password
// first, which fails while etcd does not answer, the etcdFollower logs in
// again every etcdRetryInterval.
type etcdFollower struct {
	conf     *etcdConfig
	key      string
	fc       etcdkeys.FollowConfig
	cfg      *libtls.Config
	ready    chan struct{} // closed when the fleet's set is applied
	startErr error         // why not ready at start

	stop      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu  sync.Mutex
	cli *clientv3.Client
	f   *etcdkeys.Follower
	err error // while there is no f
}

func startEtcdFollower(ctx context.Context, cfg *libtls.Config, conf *etcdConfig, key string, kek *etcdkeys.KEK) (*etcdFollower, error) {
	e := &etcdFollower{
		conf: conf, key: key, cfg: cfg,
		fc:    etcdkeys.FollowConfig{KEK: kek, Timeout: etcdDialTimeout, StartUnreachable: true},
		ready: make(chan struct{}),
		stop:  make(chan struct{}),
	}
	err := e.attach()
	if err == nil {
		select {
		case <-e.ready:
			return e, nil
		default:
		}
		// The Follower waits for etcd: is it an outage, or a mistake?
		err = fmt.Errorf("etcd %s: %w", conf.display, etcdkeys.ErrUnreachable)
		if err = conf.unreachable(ctx, err); !errors.Is(err, etcdkeys.ErrUnreachable) {
			e.Close()
			return nil, err
		}
		e.startErr = err
		return e, nil
	}
	if !errors.Is(err, etcdkeys.ErrUnreachable) {
		return nil, err
	}
	if err = conf.unreachable(ctx, err); !errors.Is(err, etcdkeys.ErrUnreachable) {
		return nil, err
	}
	e.startErr, e.err = err, err
	e.wg.Add(1)
	go e.retry()
	return e, nil
}

// attach connects and starts following.
func (e *etcdFollower) attach() error {
	cli, err := e.conf.newClient()
	if err != nil {
		return err
	}
	f, err := e.fc.Follow(e.cfg, cli, e.key)
	if err != nil {
		cli.Close()
		return e.conf.named(err)
	}
	e.mu.Lock()
	e.cli, e.f, e.err = cli, f, nil
	e.mu.Unlock()
	select {
	case <-f.Ready():
		close(e.ready)
		return nil
	default:
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		select {
		case <-f.Ready():
			close(e.ready)
		case <-e.stop:
		}
	}()
	return nil
}

// retry logs in again until it can follow the key.
func (e *etcdFollower) retry() {
	defer e.wg.Done()
	for {
		select {
		case <-e.stop:
			return
		case <-time.After(etcdRetryInterval):
		}
		err := e.attach()
		if err == nil {
			return
		}
		e.mu.Lock()
		e.err = err
		e.mu.Unlock()
	}
}

// Err is the Follower's problem, or why there is none yet.
func (e *etcdFollower) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f != nil {
		return e.f.Err()
	}
	return e.err
}

// Close stops following, then closes the client.
func (e *etcdFollower) Close() error {
	e.closeOnce.Do(func() { close(e.stop) })
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	var err error
	if e.f != nil {
		err = errors.Join(e.f.Close(), e.cli.Close())
	}
	return err
}

// keyReporter logs on stderr what a follower does: every change of the
// Config's key revisions, and every change of the follower's state. An
// outage of etcd is one state however its reads fail (in the client's
// words or the server's), logged when it begins and when it ends.
type keyReporter struct {
	f    keyFollower
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

// report starts logging. When ready is closed (at once unless etcd did not
// answer at start, which startErr tells), onReady runs: serve makes a
// server with the fleet's session ID then.
func report(cfg *libtls.Config, source string, f keyFollower, ready <-chan struct{}, startErr error, onReady func() error, stderr io.Writer) *keyReporter {
	r := &keyReporter{f: f, stop: make(chan struct{})}
	r.wg.Add(1)
	go r.run(cfg, source, ready, startErr, onReady, stderr)
	return r
}

// followerState is what the reporter logs changes of: "" in step, "etcd
// unreachable" for an outage, or else the problem's text.
func followerState(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, etcdkeys.ErrUnreachable):
		return etcdkeys.ErrUnreachable.Error()
	}
	return err.Error()
}

func (r *keyReporter) run(cfg *libtls.Config, source string, ready <-chan struct{}, startErr error, onReady func() error, stderr io.Writer) {
	defer r.wg.Done()
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	lastState, lastRevs := "", joinRevs(cfg.TicketKeyRevisions())
	if startErr != nil {
		fmt.Fprintf(stderr, "tlsresume serve: %s; serving with ticket keys of its own until it answers\n", flat(startErr))
		lastState = followerState(startErr)
	} else {
		fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: revs %s\n", source, lastRevs)
	}
	for {
		select {
		case <-r.stop:
			return
		case <-ready:
			ready = nil
			if startErr != nil {
				if err := onReady(); err != nil {
					fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: the fleet's set is applied, but a server with its session ID could not be made: %s\n", source, flat(err))
				} else {
					fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: the fleet's set is applied; new connections get its session ID\n", source)
				}
			}
		case <-t.C:
		}
		if revs := joinRevs(cfg.TicketKeyRevisions()); revs != lastRevs {
			fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: revs %s\n", source, revs)
			lastRevs = revs
		}
		err := r.f.Err()
		state := followerState(err)
		if state == lastState {
			continue
		}
		switch {
		case state == "":
			fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: in step again\n", source)
		case strings.Contains(err.Error(), "serving with"):
			fmt.Fprintf(stderr, "tlsresume serve: %s\n", flat(err))
		default:
			fmt.Fprintf(stderr, "tlsresume serve: %s (keeping the keys it has)\n", flat(err))
		}
		lastState = state
	}
}

func (r *keyReporter) Close() error {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	return r.f.Close()
}

// flat is err's text on one line.
func flat(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// joinRevs formats key revisions, newest first, as "3,2,1"; the keys a
// Config made for itself (from libtls.LocalTicketKeyRevBase on) as "own1",
// "own2"...
func joinRevs(revs []uint32) string {
	s := make([]string, len(revs))
	for i, r := range revs {
		if r >= libtls.LocalTicketKeyRevBase {
			s[i] = "own" + strconv.FormatUint(uint64(r-libtls.LocalTicketKeyRevBase), 10)
		} else {
			s[i] = strconv.FormatUint(uint64(r), 10)
		}
	}
	return strings.Join(s, ",")
}
