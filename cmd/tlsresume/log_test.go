package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys"
)

// TestStampWriter: every line gets the time, also lines written in parts.
func TestStampWriter(t *testing.T) {
	var b bytes.Buffer
	w := newStampWriter(&b)
	at := time.Date(2026, 1, 2, 15, 4, 5, 678_000_000, time.FixedZone("", 3600))
	w.now = func() time.Time { return at }
	for _, s := range []string{"one\n", "two", " and a half\nthree\n", "", "four"} {
		n, err := fmt.Fprint(w, s)
		if err != nil || n != len(s) {
			t.Fatalf("write %q: %d, %v", s, n, err)
		}
	}
	const stamp = "2026-01-02T15:04:05.678+01:00 "
	want := stamp + "one\n" + stamp + "two and a half\n" + stamp + "three\n" + stamp + "four"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
}

// scriptedFollower returns errs from Err, one per call, then nil.
type scriptedFollower struct {
	mu    sync.Mutex
	calls int
	errs  []error
}

func (f *scriptedFollower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= len(f.errs) {
		return f.errs[f.calls-1]
	}
	return nil
}

func (f *scriptedFollower) Close() error { return nil }

func (f *scriptedFollower) done() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls > len(f.errs)+1
}

// TestReporterLogsOutageOnce: while etcd has no quorum the follower's error
// alternates between two texts (etcd 3.4 answers some reads with its own
// "rpc error: code = Unknown desc = context deadline exceeded", the client
// times out others): serve logs the outage once, then its end once.
func TestReporterLogsOutageOnce(t *testing.T) {
	cfg, err := libtls.NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer cfg.Close()
	serverSide := fmt.Errorf("etcdkeys: /k: %w (rpc error: code = Unknown desc = context deadline exceeded); serving with the keys applied", etcdkeys.ErrUnreachable)
	clientSide := fmt.Errorf("etcdkeys: /k: %w (context deadline exceeded); serving with the keys applied", etcdkeys.ErrUnreachable)
	invalid := errors.New("etcdkeys: /k at revision 9: not a golibtls ticket key file")
	f := &scriptedFollower{errs: []error{serverSide, clientSide, serverSide, clientSide, serverSide, clientSide, nil, invalid, invalid, nil}}
	var out lockedBuffer
	ready := make(chan struct{})
	close(ready)
	r := report(cfg, "etcd://h:1/k", f, ready, nil, nil, &out)
	for i := 0; !f.done(); i++ {
		if i > 1000 {
			t.Fatal("the reporter does not read the follower")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Close()
	got := out.String()
	want := "tlsresume serve: ticket keys from etcd://h:1/k: revs \n" +
		"tlsresume serve: " + serverSide.Error() + "\n" +
		"tlsresume serve: ticket keys from etcd://h:1/k: in step again\n" +
		"tlsresume serve: " + invalid.Error() + " (keeping the keys it has)\n" +
		"tlsresume serve: ticket keys from etcd://h:1/k: in step again\n"
	if got != want {
		t.Errorf("log:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(got, "etcd unreachable"); n != 1 {
		t.Errorf("%d lines say etcd is unreachable, want 1", n)
	}
}
