package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/libtlshttp"
)

const serveUsage = `Usage: tlsresume serve -addr A -cert F -key F [-lifetime 2h] [-keys FILE | -keys etcd[s]://HOST:PORT/KEY [etcd options]] [-metrics HOST:PORT]

A libtls HTTPS server with session resumption (TLS 1.2 session tickets),
over HTTP/2 or HTTP/1.1. Every response says which protocol, cipher and
handshake (full or resumed) the connection got. It prints "listening on
ADDRESS" once it accepts connections, and stops on SIGINT or SIGTERM.

It logs on stderr, each line with a timestamp: failed handshakes with the
client's address, its ticket keys and their source's state as they change,
and its handshake counters (handshakes, resumed, failed by kind) on
SIGUSR1 and when it stops. It answers plain HTTP sent to its port with
"400 Bad Request".

Without -keys the server makes its own ticket keys and session ID, so only
this process resumes its sessions. With -keys it follows the fleet's
session ID and ticket keys: every serve process following the same source
resumes the others' sessions. The source is either
  FILE                      a ticket key file (see "tlsresume keys"), for
                            the processes of one machine (a symlink into a
                            Kubernetes secret volume is fine), or
  etcd://HOST:PORT/KEY      the set stored in etcd under KEY (the URL's
                            path, e.g. etcd://10.0.0.5:2379/fleet/keys for
                            the key /fleet/keys; several endpoints as
                            HOST:PORT,HOST:PORT), rotated by "tlsresume
                            keys rotate -etcd", for fleets across machines;
  etcds://HOST:PORT/KEY     the same over TLS (etcd:// uses TLS too when
                            -etcd-cacert, -etcd-cert or -etcd-key is given).
Every server and rotator of a fleet must use the same -lifetime.

With etcd, the -etcd-* options (or etcdctl's environment variables
ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY, ETCDCTL_USER, ETCDCTL_PASSWORD)
say how to reach it, and -kek FILE unseals keys that the rotators seal
with the same key-encryption key. The server's etcd user needs read on
KEY. When etcd does not answer at start (down, or without quorum), the
server starts all the same with ticket keys of its own and takes the
fleet's when etcd answers; a mistake (TLS expected or not, a certificate,
credentials, permissions, a KEK that does not fit) stops it with an error
that says so.

With -metrics HOST:PORT it also serves Prometheus metrics, plain HTTP, at
http://HOST:PORT/metrics (printed on stdout after "listening on"): its
handshakes (golibtls_handshakes_total{kind="full"|"resumed"}), failed
handshakes by reason (golibtls_handshake_failures_total) and, with -keys,
the fleet key revision applied and whether it is in step
(golibtls_ticket_key_revision, golibtls_ticket_keys_in_step; 0 and 0
while a server that started without etcd serves with keys of its own).

No certificate to try it with? "tlsresume cert" writes a self-signed pair
for localhost, 127.0.0.1 and ::1 (cert.pem, key.pem; see tlsresume cert
-h), as does
  ` + opensslCertCommand + `
then: tlsresume serve -addr 127.0.0.1:8443 -cert cert.pem -key key.pem,
and clients trust it with -cafile cert.pem (curl --cacert cert.pem).
`

// childEnv marks a serve process started by the demo (or the tests): it
// exits when its standard input closes, that is when its parent is gone.
const childEnv = "TLSRESUME_CHILD"

type serveOptions struct {
	addr, cert, key string
	lifetime        time.Duration
	keys            string
	metrics         string
	etcd            *etcdFlags
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("serve", serveUsage, stdout, stderr)
	fs := cmd.fs
	var o serveOptions
	fs.StringVar(&o.addr, "addr", "", "address to listen on, HOST:PORT (port 0: any free port)")
	fs.StringVar(&o.cert, "cert", "", "PEM file of the server certificate (and chain)")
	fs.StringVar(&o.key, "key", "", "PEM file of the certificate's private key")
	fs.DurationVar(&o.lifetime, "lifetime", 2*time.Hour, "session lifetime, whole seconds from 4s to 24h")
	fs.StringVar(&o.keys, "keys", "", "ticket keys to follow (shared by a fleet): a key file, or etcd://HOST:PORT/KEY (etcds:// for TLS)")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics at http://`HOST:PORT`/metrics (plain HTTP)")
	o.etcd = addEtcdFlags(fs)
	pos, code, ok := cmd.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return cmd.usageError("unexpected argument %q", pos[0])
	case o.addr == "":
		return cmd.usageError("-addr is required")
	case o.cert == "" || o.key == "":
		return cmd.usageError("-cert and -key are required")
	}
	if err := checkLifetime(o.lifetime); err != nil {
		return cmd.usageError("-lifetime %v: %v", o.lifetime, err)
	}
	if isEtcdSource(o.keys) {
		if _, _, _, err := parseEtcdURL(o.keys); err != nil {
			return cmd.usageError("-keys: %v", err)
		}
	} else if o.etcd.given() {
		return cmd.usageError("-etcd-cacert, -etcd-cert, -etcd-key, -etcd-user and -kek go with -keys etcd://...")
	}
	if o.metrics != "" {
		if err := checkMetricsAddr(o.metrics); err != nil {
			return cmd.usageError("-metrics: %v", err)
		}
	}

	// From here on, every line on stderr is part of the server's log.
	stderr = newStampWriter(stderr)
	cmd.stderr = stderr
	ctx, stop := runContext()
	defer stop()
	if err := serve(ctx, o, stdout, stderr); err != nil {
		return cmd.fail(err)
	}
	return exitOK
}

// runContext is the context of a long-running command: done on SIGINT or
// SIGTERM, and, in a child of the demo or the tests, when standard input
// closes (the parent is gone).
func runContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if os.Getenv(childEnv) == "" {
		return ctx, stop
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	return ctx, func() { cancel(); stop() }
}

func checkLifetime(d time.Duration) error {
	switch {
	case d%time.Second != 0:
		return errors.New("not a whole number of seconds")
	case d < libtls.MinSessionLifetime || d > libtls.MaxSessionLifetime:
		return fmt.Errorf("outside %v to %v", libtls.MinSessionLifetime, libtls.MaxSessionLifetime)
	}
	return nil
}

// serve runs the server until ctx is done.
func serve(ctx context.Context, o serveOptions, stdout, stderr io.Writer) error {
	cfg, err := libtls.NewConfig()
	if err != nil {
		return err
	}
	defer cfg.Close()
	for _, f := range [][2]string{{"-cert", o.cert}, {"-key", o.key}} {
		if _, err := os.Stat(f[1]); err != nil {
			return fmt.Errorf("%s: %w", f[0], err)
		}
	}
	if err := cfg.SetKeypairFile(o.cert, o.key); err != nil {
		return err
	}
	if err := cfg.SetSessionLifetime(o.lifetime); err != nil {
		return err
	}
	var (
		follower keyFollower
		ready    <-chan struct{}
		startErr error
	)
	if o.keys != "" {
		if follower, ready, startErr, err = followKeys(ctx, cfg, o); err != nil {
			return err
		}
		defer func() {
			if follower != nil {
				follower.Close()
			}
		}()
	}
	// HTTP/2 when the client offers it (libtlshttp.Serve serves it).
	if err := cfg.SetALPN("h2", "http/1.1"); err != nil {
		return err
	}
	ln, err := listen(o.addr, cfg)
	if err != nil {
		return err
	}
	var keys keyFollower // for the metrics; the reporter closes it
	if follower != nil {
		r := report(cfg, o.keys, follower, ready, startErr, func() error { return ln.renew(cfg) }, stderr)
		keys, follower = follower, nil
		defer r.Close()
	}
	pid := os.Getpid()
	logger := log.New(stderr, "tlsresume serve: ", 0)
	var metrics *metricsServer
	if o.metrics != "" {
		if metrics, err = startMetrics(o.metrics, ln, cfg, keys, logger); err != nil {
			ln.Close()
			return err
		}
		defer metrics.close()
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hello(w, r, pid) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: logger,
	}
	b := libtls.Backend()
	if !b.ServerSessionResumption {
		fmt.Fprintf(stderr, "tlsresume serve: note: %s servers cannot resume sessions (%s); every handshake will be full\n", b.Name, noServerResumption)
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())
	if metrics != nil {
		fmt.Fprintf(stdout, "metrics on %s\n", metrics.url())
	}

	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	errc := make(chan error, 1)
	go func() { errc <- libtlshttp.Serve(srv, ln) }()
	for {
		select {
		case err := <-errc:
			logger.Print(statsLine(ln.Stats()))
			return err
		case <-usr1:
			logger.Print(statsLine(ln.Stats()))
			continue
		case <-ctx.Done():
		}
		break
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	<-errc
	logger.Print(statsLine(ln.Stats()))
	return nil
}

// statsLine is the server's handshake counters in one line.
func statsLine(s libtls.ServerStats) string {
	line := fmt.Sprintf("handshakes %d, resumed %d (%.1f%%), failed %d", s.Handshakes, s.Resumed, 100*s.ResumptionRatio(), s.Failed)
	var kinds []string
	for _, k := range []struct {
		name string
		n    int64
	}{
		{"timeout", s.Failures.Timeout}, {"peer closed", s.Failures.PeerClosed}, {"not TLS", s.Failures.NotTLS},
		{"TLS", s.Failures.TLS}, {"canceled", s.Failures.Canceled}, {"other", s.Failures.Other},
	} {
		if k.n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k.name, k.n))
		}
	}
	if len(kinds) > 0 {
		line += " (" + strings.Join(kinds, ", ") + ")"
	}
	return line
}
