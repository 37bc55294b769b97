package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

func TestParseEtcdURL(t *testing.T) {
	for _, tc := range []struct {
		in        string
		endpoints []string
		key, err  string
	}{
		{"etcd://127.0.0.1:2379/fleet/keys", []string{"127.0.0.1:2379"}, "/fleet/keys", ""},
		{"etcd://a:1,b:2/k", []string{"a:1", "b:2"}, "/k", ""},
		{"etcd://[::1]:2379/k%20x", []string{"[::1]:2379"}, "/k x", ""},
		{"etcd://127.0.0.1:2379", nil, "", "names no key"},
		{"etcd://127.0.0.1:2379/", nil, "", "names no key"},
		{"etcd:///k", nil, "", "no etcd endpoint"},
		{"etcd://host/k", nil, "", `etcd endpoint "host" is not HOST:PORT`},
		{"etcd://a:1,/k", nil, "", `etcd endpoint "" is not HOST:PORT`},
		{"etcd://a:1/%zz", nil, "", "key: invalid URL escape"},
		{"file:///k", nil, "", "does not start with etcd://"},
	} {
		eps, key, err := parseEtcdURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(eps, tc.endpoints) || key != tc.key {
			t.Errorf("%s: %v %q %v, want %v %q", tc.in, eps, key, err, tc.endpoints, tc.key)
		}
	}
}

// TestServeEtcdMissingKey: serve refuses to start without a set in etcd.
func TestServeEtcdMissingKey(t *testing.T) {
	p := newTestPKI(t)
	c := etcdtest.New(t, 1)
	code, _, stderr := runCmd(t, "serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile,
		"-keys", "etcd://"+c.Endpoint(0)+"/tlsresume-test/none")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "tlsresume serve:", "/tlsresume-test/none", "no ticket key set stored there yet")
}

// TestServeEtcd is a fleet of separate processes sharing keys through
// etcd: a "tlsresume keys rotate -etcd" process rotates the set at the
// minimum lifetime (a key every 2s) and three "tlsresume serve
// -keys etcd://..." processes follow it, while a libtls client goes round
// them. The keys cross process boundaries only through etcd.
//
// On LibreSSL the client's handshakes after its first resume resume
// (99%), on every process; on LibreTLS (whose servers never resume) every
// process applied the same keys. On both, no handshake fails, the rotator
// rotated at least three times and every process reports the final set.
func TestServeEtcd(t *testing.T) {
	const (
		lifetime = 4 * time.Second
		runFor   = 7 * time.Second
		key      = "/tlsresume-test/ticket-keys"
	)
	b := libtls.Backend()
	p := newTestPKI(t)
	c := etcdtest.New(t, 1)
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rot, err := startChild(ctx, exe, []string{"keys", "rotate", "-etcd", c.Endpoint(0), "-key", key, "-lifetime", lifetime.String(), "-name", "rot1"}, "rotating ")
	if err != nil {
		t.Fatal(err)
	}
	rotStopped := false
	t.Cleanup(func() {
		if !rotStopped {
			rot.stop()
		}
	})
	getNewest := func() (uint32, []uint32) {
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			return 0, nil
		}
		var set libtls.TicketKeySet
		err = set.UnmarshalText(resp.Kvs[0].Value)
		clear(resp.Kvs[0].Value)
		if err != nil {
			t.Fatalf("the stored set: %v", err)
		}
		defer set.Zero()
		var revs []uint32
		for _, k := range set.Keys {
			revs = append([]uint32{k.Rev}, revs...) // newest first, as Configs report them
		}
		return revs[0], revs
	}
	for i := 0; ; i++ {
		if n, _ := getNewest(); n > 0 {
			break
		}
		if i > 1000 {
			t.Fatalf("no set in etcd; rotator stdout:\n%s\nstderr:\n%s", rot.stdout.String(), rot.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first, _ := getNewest()

	source := "etcd://" + c.Endpoint(0) + key
	var procs []*serveProcess
	t.Cleanup(func() { stopAll(procs) })
	for range 3 {
		sp, err := startChild(ctx, exe, []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile,
			"-lifetime", lifetime.String(), "-keys", source}, "listening on ")
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, sp)
	}

	client, err := libtls.NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err := client.SetCA(p.ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	if err := client.SetProtocols(libtls.ProtocolTLSv1_2); err != nil { // TLS 1.3 never resumes
		t.Fatal(err)
	}
	sf, err := os.OpenFile(filepath.Join(t.TempDir(), "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if err := client.SetSessionFile(sf); err != nil {
		t.Fatal(err)
	}
	if err := client.SetSessionScope(libtls.SessionPerServerName); err != nil { // one fleet at several addresses
		t.Fatal(err)
	}

	type hs struct {
		proc    int
		resumed bool
	}
	var results []hs
	start := time.Now()
	for i := 0; time.Since(start) < runFor && i < 100000; i++ {
		pi := i % len(procs)
		hr, err := handshake(ctx, client, procs[pi].addr, "localhost", 10*time.Second, nil)
		if err != nil {
			t.Fatalf("handshake %d with process %d: %v", i, pi, err)
		}
		if hr.info.Version != "TLSv1.2" {
			t.Fatalf("handshake %d: %s", i, hr.info.Version)
		}
		results = append(results, hs{pi, hr.info.SessionResumed})
	}
	last, revs := getNewest()
	if last-first < 3 {
		t.Errorf("rotations during the run: revs %d to %d, want at least 3", first, last)
	}

	firstResume := slices.IndexFunc(results, func(r hs) bool { return r.resumed })
	after, resumed := 0, 0
	perProc := make([]int, len(procs))
	if firstResume >= 0 {
		for _, r := range results[firstResume+1:] {
			after++
			if r.resumed {
				resumed++
				perProc[r.proc]++
			}
		}
	}
	t.Logf("%v: %d handshakes in %v, first resume at #%d, then %d of %d resumed (per process %v); keys rev %d to %d",
		b, len(results), runFor, firstResume, resumed, after, perProc, first, last)
	if b.ServerSessionResumption {
		if after < 100 {
			t.Fatalf("only %d handshakes after the first resume", after)
		}
		if float64(resumed) < 0.99*float64(after) {
			t.Errorf("%d of %d handshakes after the first resume resumed, want 99%%", resumed, after)
		}
		for i, n := range perProc {
			if n < after/len(procs)/2 {
				t.Errorf("process %d resumed %d sessions only", i, n)
			}
		}
	} else if firstResume >= 0 {
		t.Errorf("%v servers never resume, but handshake %d did", b, firstResume)
	}

	// Every process applied the final set (they log their revisions).
	want := fmt.Sprintf("ticket keys from %s: revs %s\n", source, joinRevs(revs))
	for i, sp := range procs {
		for j := 0; !strings.HasSuffix(sp.out.String(), want); j++ {
			if j > 300 {
				t.Fatalf("process %d does not report %q; stderr:\n%s", i, want, sp.out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		if out := sp.out.String(); strings.Contains(out, "keeping the keys it has") || strings.Contains(out, "tlsresume serve: libtls") {
			t.Errorf("process %d: %s", i, out)
		}
	}

	// The rotator hands over when stopped.
	rot.stop()
	rotStopped = true
	out := rot.stdout.String()
	for _, w := range []string{`msg="etcdkeys: elected"`, `msg="etcdkeys: created"`, `msg="etcdkeys: rotated"`, `msg="etcdkeys: resigned"`, "rotator=rot1"} {
		if !strings.Contains(out, w) {
			t.Errorf("rotator stdout lacks %s:\n%s", w, out)
		}
	}
	if strings.Contains(out, "level=WARN") || rot.out.String() != "" {
		t.Errorf("rotator warnings:\n%s\nstderr:\n%s", out, rot.out.String())
	}
	if code := rot.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("rotator exit %d", code)
	}
	resp, err := cli.Get(ctx, key+"/rotator/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d election keys left after the rotator stopped", resp.Count)
	}
}
