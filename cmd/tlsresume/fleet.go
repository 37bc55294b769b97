package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

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

// keyFollower is what serve needs of a libtls.TicketKeyFollower or an
// etcdkeys.Follower.
type keyFollower interface {
	Err() error
	Close() error
}

// followKeys applies the ticket keys of source (a key file, or
// etcd://HOST:PORT[,HOST:PORT...]/KEY) to cfg and follows them, logging to
// stderr every change of the Config's key revisions and of the follower's
// state until the returned Closer is closed.
func followKeys(cfg *libtls.Config, source string, lifetime time.Duration, stderr io.Writer) (io.Closer, error) {
	var f keyFollower
	if strings.HasPrefix(source, etcdScheme) {
		endpoints, key, err := parseEtcdURL(source)
		if err != nil {
			return nil, err
		}
		cli, err := newEtcdClient(endpoints)
		if err != nil {
			return nil, err
		}
		ef, err := etcdkeys.Follow(cfg, cli, key)
		if err != nil {
			cli.Close()
			return nil, err
		}
		f = closers{ef, cli}
	} else {
		ff, err := libtls.FollowTicketKeyFile(cfg, source, filePollInterval(lifetime))
		if err != nil {
			return nil, explainKeyFile(source, err)
		}
		f = ff
	}
	r := &keyReporter{f: f, stop: make(chan struct{})}
	r.wg.Add(1)
	go r.report(cfg, source, stderr)
	return r, nil
}

// closers closes a follower, then the client it used.
type closers struct {
	keyFollower
	cli io.Closer
}

func (c closers) Close() error {
	err := c.keyFollower.Close()
	return errors.Join(err, c.cli.Close())
}

// keyReporter logs what a follower does; closing it closes the follower.
type keyReporter struct {
	f    keyFollower
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func (r *keyReporter) report(cfg *libtls.Config, source string, stderr io.Writer) {
	defer r.wg.Done()
	t := time.NewTicker(reportInterval)
	defer t.Stop()
	lastErr, lastRevs := "", joinRevs(cfg.TicketKeyRevisions())
	fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: revs %s\n", source, lastRevs)
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		if revs := joinRevs(cfg.TicketKeyRevisions()); revs != lastRevs {
			fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: revs %s\n", source, revs)
			lastRevs = revs
		}
		msg := ""
		if err := r.f.Err(); err != nil {
			msg = err.Error()
		}
		if msg == lastErr {
			continue
		}
		if msg == "" {
			fmt.Fprintf(stderr, "tlsresume serve: ticket keys from %s: in step again\n", source)
		} else {
			fmt.Fprintf(stderr, "tlsresume serve: %s (keeping the keys it has)\n", msg)
		}
		lastErr = msg
	}
}

func (r *keyReporter) Close() error {
	r.once.Do(func() { close(r.stop) })
	r.wg.Wait()
	return r.f.Close()
}

// joinRevs formats key revisions, newest first, as "3,2,1".
func joinRevs(revs []uint32) string {
	s := make([]string, len(revs))
	for i, r := range revs {
		s[i] = strconv.FormatUint(uint64(r), 10)
	}
	return strings.Join(s, ",")
}
