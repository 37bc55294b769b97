package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys"
	"github.com/golibtls/libtls/etcdkeys/etcdtest"
)

func TestParseEtcdURL(t *testing.T) {
	for _, tc := range []struct {
		in        string
		endpoints []string
		key       string
		tls       bool
		err       string
	}{
		{"etcd://127.0.0.1:2379/fleet/keys", []string{"127.0.0.1:2379"}, "/fleet/keys", false, ""},
		{"etcds://127.0.0.1:2379/fleet/keys", []string{"127.0.0.1:2379"}, "/fleet/keys", true, ""},
		{"etcd://a:1,b:2/k", []string{"a:1", "b:2"}, "/k", false, ""},
		{"etcd://[::1]:2379/k%20x", []string{"[::1]:2379"}, "/k x", false, ""},
		{"etcd://127.0.0.1:2379", nil, "", false, "names no key"},
		{"etcd://127.0.0.1:2379/", nil, "", false, "names no key"},
		{"etcd:///k", nil, "", false, "no etcd endpoint"},
		{"etcd://host/k", nil, "", false, `etcd endpoint "host" is not HOST:PORT`},
		{"etcd://a:1,/k", nil, "", false, `etcd endpoint "" is not HOST:PORT`},
		{"etcd://a:1/%zz", nil, "", false, "key: invalid URL escape"},
		{"etcd://https://a:1/k", nil, "", false, `etcd endpoint "https:" is not HOST:PORT`},
		{"file:///k", nil, "", false, "does not start with etcd:// or etcds://"},
	} {
		eps, key, useTLS, err := parseEtcdURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		var hps []string
		for _, ep := range eps {
			hps = append(hps, ep.hostPort)
		}
		if err != nil || !slices.Equal(hps, tc.endpoints) || key != tc.key || useTLS != tc.tls {
			t.Errorf("%s: %v %q %v %v, want %v %q %v", tc.in, hps, key, useTLS, err, tc.endpoints, tc.key, tc.tls)
		}
	}
}

// TestServeEtcdMissingKey: serve refuses to start without a set in etcd,
// and starts once there is one (plain gRPC, no authentication).
func TestServeEtcdMissingKey(t *testing.T) {
	p := newTestPKI(t)
	c := etcdtest.New(t, 1)
	const key = "/tlsresume-test/none"
	args := []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-keys", "etcd://" + c.Endpoint(0) + key}
	code, _, stderr := runCmd(t, args...)
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "tlsresume serve:", key, "no ticket key set stored there yet")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	putSet(t, ctx, c, key, 1)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := startChild(ctx, exe, args, "listening on ")
	if err != nil {
		t.Fatal(err)
	}
	sp.stop()
	if out := sp.out.String(); !strings.Contains(out, "ticket keys from etcd://"+c.Endpoint(0)+key+": revs 1\n") {
		t.Errorf("stderr %q", out)
	}
}

// putSet stores under key in c a new ticket key set with revisions 1 to
// revs.
func putSet(t *testing.T, ctx context.Context, c *etcdtest.Cluster, key string, revs int) {
	t.Helper()
	cli, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	set, err := libtls.NewTicketKeySet()
	if err != nil {
		t.Fatal(err)
	}
	defer set.Zero()
	for range revs - 1 {
		set.Rotate(time.Now().Add(2*time.Hour), time.Hour)
	}
	text, err := set.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	_, err = cli.Put(ctx, key, string(text))
	clear(text)
	if err != nil {
		t.Fatal(err)
	}
}

// secureEtcd is a one-member etcd with client-certificate TLS and
// authentication, and the files its clients need.
type secureEtcd struct {
	c   *etcdtest.Cluster
	cli *clientv3.Client // root
	key string           // the fleet's key
	ca  string
	// client certificates and keys, by user: rotator (readwrite on the
	// prefix key), server (read on key), nobody (no role).
	certs map[string][2]string
	kek   string // a KEK file
}

// the password of pwserver, a user with read on key who logs in by
// password (with nobody's certificate, which TLS needs).
const pwserverPassword = "pw-secret"

func newSecureEtcd(t *testing.T) *secureEtcd {
	t.Helper()
	c := etcdtest.NewWith(t, 1, etcdtest.Options{TLS: true, Auth: true})
	s := &secureEtcd{c: c, key: "/fleet/ticket-keys", ca: c.CAFile(), certs: map[string][2]string{}}
	for user, grant := range map[string]*etcdtest.Grant{
		"rotator":  {Key: s.key, Prefix: true, ReadWrite: true},
		"server":   {Key: s.key},
		"nobody":   nil,
		"pwserver": {Key: s.key},
	} {
		var grants []etcdtest.Grant
		if grant != nil {
			grants = append(grants, *grant)
		}
		password := ""
		if user == "pwserver" {
			password = pwserverPassword
		}
		if err := c.AddUser(user, password, grants...); err != nil {
			t.Fatal(err)
		}
		cert, key, err := c.CertFiles(user)
		if err != nil {
			t.Fatal(err)
		}
		s.certs[user] = [2]string{cert, key}
	}
	var err error
	if s.cli, err = c.Client(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cli.Close() })
	s.kek = writeKEK(t)
	return s
}

// writeKEK writes a KEK file, 32 random bytes, mode 0600.
func writeKEK(t *testing.T) string {
	t.Helper()
	kek := make([]byte, etcdkeys.KEKSize)
	if _, err := rand.Read(kek); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kek")
	err := os.WriteFile(path, kek, 0o600)
	clear(kek)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// certFlags are the flags that give user's certificate and the CA.
func (s *secureEtcd) certFlags(user string) []string {
	return []string{"-etcd-cacert", s.ca, "-etcd-cert", s.certs[user][0], "-etcd-key", s.certs[user][1]}
}

// certEnv is certFlags as etcdctl's environment variables.
func (s *secureEtcd) certEnv(user string) []string {
	return []string{"ETCDCTL_CACERT=" + s.ca, "ETCDCTL_CERT=" + s.certs[user][0], "ETCDCTL_KEY=" + s.certs[user][1]}
}

// passwordEnv logs in as pwserver by password, with nobody's certificate
// for TLS.
func (s *secureEtcd) passwordEnv() []string {
	return append(s.certEnv("nobody"), "ETCDCTL_USER=pwserver", "ETCDCTL_PASSWORD="+pwserverPassword)
}

// stored returns the value stored under the key.
func (s *secureEtcd) stored(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return nil
	}
	return resp.Kvs[0].Value
}

// newestRotated returns the newest key revision a rotator's stdout says
// it stored, 0 if none.
func newestRotated(stdout string) uint32 {
	var newest uint32
	for _, line := range strings.Split(stdout, "\n") {
		if !strings.Contains(line, `msg="etcdkeys: rotated"`) && !strings.Contains(line, `msg="etcdkeys: created"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "rev="); ok {
				if n, err := strconv.ParseUint(v, 10, 32); err == nil {
					newest = uint32(n)
				}
			}
		}
	}
	return newest
}

// newSecureTest is what the tests of a fleet on a secure etcd start with:
// certificates for the servers, the etcd, this program (which runs as
// tlsresume in a child) and a context for the test.
func newSecureTest(t *testing.T) (*testPKI, *secureEtcd, string, context.Context) {
	t.Helper()
	p := newTestPKI(t)
	s := newSecureEtcd(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return p, s, exe, ctx
}

// sessionClient is a libtls client Config for the test CA with a session
// file of its own, TLS 1.2 only (TLS 1.3 never resumes through libtls).
func sessionClient(t *testing.T, p *testPKI) *libtls.Config {
	t.Helper()
	client, err := libtls.NewConfig()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if err := client.SetCA(p.ca.CertPEM); err != nil {
		t.Fatal(err)
	}
	if err := client.SetProtocols(libtls.ProtocolTLSv1_2); err != nil {
		t.Fatal(err)
	}
	sf, err := os.OpenFile(filepath.Join(t.TempDir(), "session"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sf.Close() })
	if err := client.SetSessionFile(sf); err != nil {
		t.Fatal(err)
	}
	if err := client.SetSessionScope(libtls.SessionPerServerName); err != nil { // one fleet at several addresses
		t.Fatal(err)
	}
	return client
}

// stampedLine is a line of serve's log: a timestamp (RFC 3339, to the
// millisecond), then the text.
var stampedLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d) tlsresume serve: `)

// checkStamped checks that every line of a serve process's stderr starts
// with a timestamp.
func checkStamped(t *testing.T, name, stderr string) {
	t.Helper()
	for _, line := range strings.SplitAfter(stderr, "\n") {
		if line != "" && !stampedLine.MatchString(line) {
			t.Errorf("%s: line without a timestamp: %q", name, line)
		}
	}
}

// TestServeEtcd is a fleet of separate processes sharing keys through an
// etcd run as operators run it (client-certificate TLS, authentication,
// least privilege) with the keys sealed: a "tlsresume keys rotate -etcd"
// process (etcdctl's environment variables, https:// endpoint, -kek)
// rotates the set at the minimum lifetime (a key every 2s), and three
// "tlsresume serve" processes follow it, each reaching etcd another way
// (etcds:// with flags; etcd:// with TLS flags; etcd:// with the
// environment and a password), while a libtls client goes round them.
// The keys cross process boundaries only through etcd, sealed.
//
// On LibreSSL the client's handshakes after its first resume resume
// (99%), on every process; on LibreTLS (whose servers never resume) every
// process applied the same keys. On both, no handshake fails, the rotator
// rotated at least three times, every process reports the final set and
// stamps its log lines, and etcd holds only sealed values.
func TestServeEtcd(t *testing.T) {
	const (
		lifetime = 4 * time.Second
		runFor   = 7 * time.Second
	)
	b := libtls.Backend()
	p, s, exe, ctx := newSecureTest(t)
	hp := s.c.Endpoint(0)

	rot, err := startChildEnv(ctx, exe, s.certEnv("rotator"),
		[]string{"keys", "rotate", "-etcd", "https://" + hp, "-key", s.key, "-lifetime", lifetime.String(), "-name", "rot1", "-kek", s.kek}, "rotating ")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rot.stop)
	for i := 0; newestRotated(rot.stdout.String()) == 0; i++ {
		if i > 1000 {
			t.Fatalf("no set in etcd; rotator stdout:\n%s\nstderr:\n%s", rot.stdout.String(), rot.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := newestRotated(rot.stdout.String())

	serve := []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-lifetime", lifetime.String(), "-kek", s.kek}
	ways := []struct {
		name   string
		source string
		args   []string
		env    []string
	}{
		{"etcds:// and flags", "etcds://" + hp + s.key, s.certFlags("server"), nil},
		{"etcd:// and TLS flags", "etcd://" + hp + s.key, s.certFlags("server"), nil},
		{"etcd:// and the environment, with a password", "etcd://" + hp + s.key, nil, s.passwordEnv()},
	}
	var procs []*serveProcess
	t.Cleanup(func() { stopAll(procs) })
	for _, w := range ways {
		args := append(append(slices.Clone(serve), "-keys", w.source), w.args...)
		sp, err := startChildEnv(ctx, exe, w.env, args, "listening on ")
		if err != nil {
			t.Fatalf("%s: %v", w.name, err)
		}
		procs = append(procs, sp)
	}

	client := sessionClient(t, p)

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
	// The rotator stops (and hands over) before the last set is compared.
	rot.stop()
	last := newestRotated(rot.stdout.String())
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
				t.Errorf("process %d (%s) resumed %d sessions only", i, ways[i].name, n)
			}
		}
	} else if firstResume >= 0 {
		t.Errorf("%v servers never resume, but handshake %d did", b, firstResume)
	}

	// Every process applied the final set (they log their revisions), and
	// stamps its log.
	for i, sp := range procs {
		want := fmt.Sprintf("tlsresume serve: ticket keys from %s: revs %d,", ways[i].source, last)
		for j := 0; !strings.Contains(sp.out.String(), want); j++ {
			if j > 300 {
				t.Fatalf("process %d (%s) does not report %q; stderr:\n%s", i, ways[i].name, want, sp.out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
		out := sp.out.String()
		if strings.Contains(out, "etcdkeys:") || strings.Contains(out, "tlsresume serve: libtls") {
			t.Errorf("process %d (%s): %s", i, ways[i].name, out)
		}
		checkStamped(t, ways[i].name, out)
	}

	// etcd holds the set sealed, by the rotator's KEK.
	if v := s.stored(t); !strings.HasPrefix(string(v), "golibtls-sealed-ticket-keys 1\nkek ") {
		t.Errorf("stored value %q", v)
	}

	// The rotator handed over when stopped.
	out := rot.stdout.String()
	for _, w := range []string{`msg="etcdkeys: elected"`, `msg="etcdkeys: created"`, `msg="etcdkeys: rotated"`, `msg="etcdkeys: resigned"`, "rotator=rot1", "kek="} {
		if !strings.Contains(out, w) {
			t.Errorf("rotator stdout lacks %s:\n%s", w, out)
		}
	}
	if strings.Contains(out, `election_key=""`) {
		t.Errorf("rotator logs an empty election key:\n%s", out)
	}
	if strings.Contains(out, "level=WARN") || rot.out.String() != "" {
		t.Errorf("rotator warnings:\n%s\nstderr:\n%s", out, rot.out.String())
	}
	if code := rot.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("rotator exit %d", code)
	}
	resp, err := s.cli.Get(ctx, s.key+"/rotator/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d election keys left after the rotator stopped", resp.Count)
	}
}

// TestEtcdMistakes: every mistake in reaching etcd stops serve and keys
// rotate at once with one line that names the endpoint and the likely
// cause (they used to hang, or exit after 10s with "context deadline
// exceeded").
func TestEtcdMistakes(t *testing.T) {
	p := newTestPKI(t)
	s := newSecureEtcd(t)
	plain := etcdtest.New(t, 1)
	hp, key := s.c.Endpoint(0), s.key
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// A set sealed with the fleet's KEK.
	kek, err := etcdkeys.ReadKEKFile(s.kek)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() {
		stopped <- (&etcdkeys.Rotator{Client: s.cli, Key: key, Lifetime: time.Hour, KEK: kek}).Run(ctx)
	}()
	for i := 0; s.stored(t) == nil; i++ {
		if i > 1000 {
			t.Fatal("no set stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	public := filepath.Join(t.TempDir(), "public-kek")
	if err := os.WriteFile(public, make([]byte, 32), 0o644); err != nil {
		t.Fatal(err)
	}

	serve := func(source string, more ...string) []string {
		return append([]string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-keys", source}, more...)
	}
	rotate := func(endpoints string, more ...string) []string {
		return append([]string{"keys", "rotate", "-etcd", endpoints, "-key", key, "-lifetime", "1h"}, more...)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  []string
		want []string
	}{
		{"rotate: plain gRPC to TLS", rotate(hp), nil,
			[]string{"etcd " + hp + ": speaks TLS, and this client plain gRPC: use https:// endpoints", "-etcd-cacert"}},
		{"serve: plain gRPC to TLS", serve("etcd://" + hp + key), nil,
			[]string{"etcd " + hp + ": speaks TLS, and this client plain gRPC"}},
		{"serve: no CA", serve("etcds://" + hp + key), nil,
			[]string{"etcd " + hp + ": its certificate does not verify", "give the CA that signed it with -etcd-cacert"}},
		{"serve: no client certificate", serve("etcds://"+hp+key, "-etcd-cacert", s.ca), nil,
			[]string{"etcd " + hp + ": requires a client certificate: give -etcd-cert and -etcd-key"}},
		{"serve: no role", serve("etcd://"+hp+key, s.certFlags("nobody")...), nil,
			[]string{"etcd https://" + hp, "permission denied: the etcd user needs read on " + key}},
		{"rotate: a server's role", rotate("https://"+hp, append(s.certFlags("server"), "-kek", s.kek)...), nil,
			[]string{"etcd https://" + hp, "permission denied: the etcd user needs readwrite on the prefix " + key}},
		{"serve: wrong password", serve("etcd://" + hp + key), append(s.certEnv("nobody"), "ETCDCTL_USER=pwserver:wrong"),
			[]string{"etcd https://" + hp, "user pwserver", "authentication failed", "check -etcd-user"}},
		{"serve: user without password", serve("etcds://"+hp+key, "-etcd-user", "pwserver"), s.certEnv("nobody"),
			[]string{`etcd user "pwserver" without a password`, "ETCDCTL_PASSWORD"}},
		{"serve: no KEK", serve("etcds://"+hp+key, s.certFlags("server")...), nil,
			[]string{"etcd https://" + hp, "is sealed with KEK " + kek.ID() + " and there is no KEK here"}},
		{"serve: another KEK", serve("etcds://"+hp+key, append(s.certFlags("server"), "-kek", writeKEK(t))...), nil,
			[]string{"is sealed with KEK " + kek.ID() + ", not with this KEK"}},
		{"rotate: another KEK", rotate("https://"+hp, append(s.certFlags("rotator"), "-kek", writeKEK(t))...), nil,
			[]string{"is sealed with KEK " + kek.ID() + ", not with this KEK"}},
		{"serve: a KEK file others can read", serve("etcds://"+hp+key, append(s.certFlags("server"), "-kek", public)...), nil,
			[]string{"KEK file " + public + " has mode 0644", "chmod 600"}},
		{"rotate: TLS to plain gRPC", rotate("https://"+plain.Endpoint(0), "-etcd-cacert", s.ca), nil,
			[]string{"etcd " + plain.Endpoint(0) + ": speaks plain gRPC, not TLS: use http:// endpoints"}},
		{"rotate: http and https", rotate("http://" + hp + ",https://" + hp), nil,
			[]string{"mix http:// and https://"}},
		{"rotate: TLS files for http://", rotate("http://"+hp, "-etcd-cacert", s.ca), nil,
			[]string{"given for http:// endpoints"}},
		{"serve: a CA file that is missing", serve("etcds://"+hp+key, "-etcd-cacert", filepath.Join(t.TempDir(), "none.pem")), nil,
			[]string{"etcd TLS:", "no such file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runChild(exe, time.Minute, tc.env, tc.args)
			t.Logf("tlsresume %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(tc.args, " "), code, stdout, stderr)
			if code != exitError {
				t.Errorf("exit %d, want %d", code, exitError)
			}
			if stdout != "" {
				t.Errorf("stdout %q", stdout)
			}
			oneLine(t, stderr, tc.want...)
		})
	}
}

// TestServeStartsWithoutEtcd: servers and a rotator start while etcd does
// not answer; the servers serve with keys of their own (they used to exit
// after 10s) and say so once, however long the outage; when etcd is back
// the rotator creates the set and the servers take it, session ID and all,
// so that they resume each other's sessions (LibreSSL).
func TestServeStartsWithoutEtcd(t *testing.T) {
	const lifetime = 4 * time.Second
	b := libtls.Backend()
	p, s, exe, ctx := newSecureTest(t)
	hp := s.c.Endpoint(0)
	// The rotator logs in with a password, of a user added while etcd is
	// up: before the outage, since a login between etcd's return and the
	// user's creation fails, and a failed login stops the rotator.
	if err := s.c.AddUser("rotpw", pwserverPassword, etcdtest.Grant{Key: s.key, Prefix: true, ReadWrite: true}); err != nil {
		t.Fatal(err)
	}
	s.c.Stop(0)

	// All start at once: each tries etcd for a few seconds first.
	source := "etcds://" + hp + s.key
	serve := []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-lifetime", lifetime.String(), "-kek", s.kek, "-keys", source}
	ways := []struct {
		name  string
		args  []string
		env   []string
		ready string
	}{
		// The rotator logs in by password: it cannot, and waits.
		{"rotator", []string{"keys", "rotate", "-etcd", "https://" + hp, "-key", s.key, "-lifetime", lifetime.String(), "-kek", s.kek, "-name", "rot1"},
			append(s.certEnv("nobody"), "ETCDCTL_USER=rotpw:"+pwserverPassword), "rotating "},
		{"server by certificate", append(slices.Clone(serve), s.certFlags("server")...), nil, "listening on "},
		{"server by password", serve, s.passwordEnv(), "listening on "},
	}
	procs := make([]*serveProcess, len(ways))
	t.Cleanup(func() { stopAll(procs) })
	errs := make([]error, len(ways))
	var wg sync.WaitGroup
	for i, w := range ways {
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs[i], errs[i] = startChildEnv(ctx, exe, w.env, w.args, w.ready)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s, started during the outage: %v", ways[i].name, err)
		}
	}
	rot, servers := procs[0], procs[1:]
	ways = ways[1:]

	client := sessionClient(t, p)
	for i, sp := range servers {
		if _, err := handshake(ctx, client, sp.addr, "localhost", 10*time.Second, nil); err != nil {
			t.Fatalf("handshake with server %d during the outage: %v", i, err)
		}
	}
	// The outage lasts a few of the followers' checks (every second).
	time.Sleep(3 * time.Second)

	if err := s.c.Restart(0); err != nil {
		t.Fatal(err)
	}
	for i, sp := range servers {
		for j := 0; !strings.Contains(sp.out.String(), "the fleet's set is applied; new connections get its session ID"); j++ {
			if j > 3000 {
				t.Fatalf("server %d (%s) did not take the fleet's set; stderr:\n%s\nrotator:\n%s%s", i, ways[i].name, sp.out.String(), rot.stdout.String(), rot.out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	newest := newestRotated(rot.stdout.String())
	if newest == 0 {
		t.Fatalf("the rotator stored no set:\n%s", rot.stdout.String())
	}

	// The servers share the set: sessions resume from one to the other.
	for i := range 4 {
		hr, err := handshake(ctx, client, servers[i%2].addr, "localhost", 10*time.Second, nil)
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		if i > 0 && hr.info.SessionResumed != b.ServerSessionResumption {
			t.Errorf("handshake %d with server %d: resumed %v (%v)", i, i%2, hr.info.SessionResumed, b)
		}
	}
	rot.stop()
	stopAll(servers)
	for i, sp := range servers {
		out := sp.out.String()
		t.Logf("server %d (%s):\n%s", i, ways[i].name, out)
		checkStamped(t, ways[i].name, out)
		if n := strings.Count(out, "etcd unreachable"); n != 1 {
			t.Errorf("server %d (%s): %d lines say etcd is unreachable, want 1", i, ways[i].name, n)
		}
		if !strings.Contains(out, "serving with ticket keys of its own until it answers") {
			t.Errorf("server %d (%s) does not say what it serves with", i, ways[i].name)
		}
		if !strings.Contains(out, fmt.Sprintf("ticket keys from %s: revs %d", source, newest)) {
			t.Errorf("server %d (%s) does not report rev %d", i, ways[i].name, newest)
		}
	}
	rout := rot.stdout.String()
	t.Logf("rotator:\n%s%s", rout, rot.out.String())
	for _, w := range []string{"etcd does not answer; waiting for it", `msg="etcdkeys: created"`} {
		if !strings.Contains(rout, w) {
			t.Errorf("rotator stdout lacks %q", w)
		}
	}
}
