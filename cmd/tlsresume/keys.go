package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/etcdkeys"
)

const keysUsage = `Usage: tlsresume keys init|rotate -file FILE [-lifetime 2h]
       tlsresume keys rotate -etcd [https://]HOST:PORT -key KEY [-lifetime 2h] [-name NAME] [etcd options]

Manages the ticket keys a fleet of "tlsresume serve -keys ..." processes
shares: the fleet's session ID and up to 4 ticket keys.

A ticket key file (mode 0600), for the processes of one machine:
  init    creates FILE with a random session ID and one key (rev 1);
          fails if FILE exists
  rotate  adds a new key when the newest is due (3/4 of -lifetime, the
          servers' session lifetime; earlier for lifetimes under 8s) and
          keeps the newest 4; creates FILE when it does not exist. Run it
          from cron or a timer, more often than every lifetime/4.

A key in etcd, for fleets across machines (serve -keys etcd://HOST:PORT/KEY):
  rotate -etcd  runs a rotator until SIGINT or SIGTERM. Run two or three,
          on different machines: they elect one leader through etcd, which
          creates the set under KEY when there is none and adds keys on the
          same schedule; when it stops, another takes over. It logs its
          elections and rotations on stdout. Several endpoints:
          -etcd HOST:PORT,HOST:PORT; https:// endpoints (or any of
          -etcd-cacert, -etcd-cert, -etcd-key) for TLS. Options and
          etcdctl's environment variables (ETCDCTL_CACERT, ETCDCTL_CERT,
          ETCDCTL_KEY, ETCDCTL_USER, ETCDCTL_PASSWORD) say how to reach
          etcd; its user needs readwrite on the prefix KEY (the set and the
          election under it). With -kek FILE (32 random bytes, mode 0600)
          the rotator seals the set, and the servers need the same -kek; a
          set found in clear is sealed at once. A mistake (TLS expected or
          not, a certificate, credentials, permissions, a set it cannot
          read) stops it with an error that says so; while etcd does not
          answer, it waits.
`

func runKeys(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keys", keysUsage, stdout, stderr)
	if len(args) == 0 {
		return cmd.usageError("missing init or rotate")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		cmd.printUsage()
		return exitOK
	case "init", "rotate":
	default:
		return cmd.usageError("unknown keys command %q, want init or rotate", args[0])
	}
	op := args[0]
	cmd = newCommand("keys "+op, keysUsage, stdout, stderr)
	file := cmd.fs.String("file", "", "the ticket key file")
	lifetime := cmd.fs.Duration("lifetime", 2*time.Hour, "the servers' session lifetime (serve -lifetime), 4s to 24h")
	etcd := cmd.fs.String("etcd", "", "rotate: the etcd endpoints, [https://]HOST:PORT[,...], instead of -file")
	key := cmd.fs.String("key", "", "with -etcd: the etcd key holding the set, e.g. /fleet/ticket-keys")
	name := cmd.fs.String("name", "", "with -etcd: this rotator's name in the election (default host/pid)")
	ef := addEtcdFlags(cmd.fs)
	pos, code, ok := cmd.parse(args[1:])
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return cmd.usageError("unexpected argument %q", pos[0])
	case *etcd != "" && op != "rotate":
		return cmd.usageError("-etcd works with rotate only (the rotator creates the set)")
	case *etcd != "" && *file != "":
		return cmd.usageError("-file and -etcd exclude each other")
	case *etcd != "" && *key == "":
		return cmd.usageError("-key is required with -etcd")
	case *etcd == "" && (*key != "" || *name != "" || ef.given()):
		return cmd.usageError("-key, -name, -etcd-cacert, -etcd-cert, -etcd-key, -etcd-user and -kek go with -etcd")
	case *etcd == "" && *file == "":
		return cmd.usageError("-file is required")
	}
	if err := checkLifetime(*lifetime); err != nil {
		return cmd.usageError("-lifetime %v: %v", *lifetime, err)
	}
	if *etcd != "" {
		endpoints, err := parseEndpoints(*etcd)
		if err != nil {
			return cmd.usageError("-etcd: %v", err)
		}
		conf, err := ef.config(endpoints, false)
		if err != nil {
			return cmd.fail(err)
		}
		kek, err := ef.readKEK()
		if err != nil {
			return cmd.fail(err)
		}
		return rotateEtcd(cmd, conf, *key, *name, *lifetime, kek)
	}

	var (
		set     *libtls.TicketKeySet
		changed bool
		err     error
	)
	if op == "init" {
		set, err = createKeyFile(*file)
		changed = true
	} else {
		set, changed, err = libtls.RotateTicketKeyFile(*file, *lifetime)
		err = explainKeyFile(*file, err)
	}
	if err != nil {
		return cmd.fail(err)
	}
	defer set.Zero()
	printKeys(stdout, *file, set, changed, op, *lifetime)
	return exitOK
}

// rotateEtcd runs an etcdkeys.Rotator on key until SIGINT or SIGTERM. It
// stops at once on a mistake of configuration, and waits while etcd does
// not answer.
func rotateEtcd(cmd *command, conf *etcdConfig, key, name string, lifetime time.Duration, kek *etcdkeys.KEK) int {
	ctx, stop := runContext()
	defer stop()
	log := slog.New(slog.NewTextHandler(cmd.stdout, nil))
	r := &etcdkeys.Rotator{Key: key, Lifetime: lifetime, Name: name, Logger: log, KEK: kek}
	defer func() {
		if r.Client != nil {
			r.Client.Close()
		}
	}()
	var waiting error // etcd does not answer: why
	cli, err := conf.newClient()
	if err == nil {
		r.Client = cli
		cctx, cancel := context.WithTimeout(ctx, etcdDialTimeout)
		err = r.Check(cctx)
		cancel()
		if err != nil {
			err = conf.named(err)
		}
	}
	if errors.Is(err, etcdkeys.ErrUnreachable) {
		err = conf.unreachable(ctx, err)
		waiting = err
	}
	if err != nil && !errors.Is(err, etcdkeys.ErrUnreachable) {
		return cmd.fail(err)
	}
	sealed := ""
	if kek != nil {
		sealed = ", sealed with KEK " + kek.ID()
	}
	fmt.Fprintf(cmd.stdout, "rotating %s in etcd %s (lifetime %v%s); stop with SIGINT or SIGTERM\n", key, conf.display, lifetime, sealed)
	if waiting != nil {
		log.Warn("tlsresume: etcd does not answer; waiting for it", "key", key, "err", flat(waiting))
	}
	// Without a client yet (etcd did not answer a log-in), log in again
	// until it does.
	for r.Client == nil {
		select {
		case <-ctx.Done():
			return exitOK
		case <-time.After(etcdRetryInterval):
		}
		if cli, err = conf.newClient(); err == nil {
			r.Client = cli
		} else if !errors.Is(err, etcdkeys.ErrUnreachable) {
			return cmd.fail(err)
		}
	}
	if err := r.Run(ctx); err != nil && ctx.Err() == nil {
		return cmd.fail(err)
	}
	return exitOK
}

// createKeyFile writes a new key set to path, which must not exist. It is
// atomic against a concurrent "keys rotate" on the same file.
func createKeyFile(path string) (*libtls.TicketKeySet, error) {
	set, err := libtls.CreateTicketKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s already exists (use keys rotate to add a key)", path)
	}
	return set, err
}

// initKeyFile is createKeyFile for the demo.
func initKeyFile(path string) error {
	set, err := createKeyFile(path)
	set.Zero()
	return err
}

func printKeys(w io.Writer, path string, set *libtls.TicketKeySet, changed bool, op string, lifetime time.Duration) {
	newest := set.Keys[len(set.Keys)-1]
	switch {
	case op == "init":
		fmt.Fprintf(w, "created %s\n", path)
	case changed:
		fmt.Fprintf(w, "rotated %s: newest key is rev %d\n", path, newest.Rev)
	default:
		next := set.NextRotation(lifetime)
		fmt.Fprintf(w, "%s unchanged: rotation not due before %s (%v after rev %d, for lifetime %v)\n",
			path, next.Local().Format(time.DateTime), next.Sub(newest.Created), newest.Rev, lifetime)
	}
	fmt.Fprintf(w, "session ID %s… (%d bytes)\n", hex.EncodeToString(set.SessionID[:min(4, len(set.SessionID))]), len(set.SessionID))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REV\tCREATED\tAGE")
	now := time.Now()
	for _, k := range set.Keys {
		fmt.Fprintf(tw, "%d\t%s\t%v\n", k.Rev, k.Created.Local().Format(time.DateTime), now.Sub(k.Created).Round(time.Second))
	}
	tw.Flush()
}

// explainKeyFile names a key file of another format when reading it
// failed: nginx's ssl_session_ticket_key files are 48 or 80 bytes of
// binary key material, which the key file reader would otherwise call not
// a key file or truncated.
func explainKeyFile(path string, err error) error {
	if err == nil {
		return nil
	}
	if m := err.Error(); !strings.Contains(m, "truncated") && !strings.Contains(m, "not a golibtls ticket key file") {
		return err
	}
	fi, serr := os.Stat(path)
	if serr != nil || !fi.Mode().IsRegular() || (fi.Size() != 48 && fi.Size() != 80) {
		return err
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return err
	}
	defer clear(data) // key material
	if utf8.Valid(data) && !bytes.ContainsAny(data, "\x00") {
		return err // text of some kind, not a binary key
	}
	kind := "AES-128"
	if len(data) == 80 {
		kind = "AES-256"
	}
	return fmt.Errorf("%s holds %d bytes of binary data, like an nginx ssl_session_ticket_key file (%s), not a golibtls ticket key file; "+
		"libtls takes other keys: create a key file with \"tlsresume keys init -file FILE\" and give every server that one (%w)", path, len(data), kind, err)
}
