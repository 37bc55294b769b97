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
	"syscall"
	"time"

	libtls "github.com/golibtls/libtls"
)

const serveUsage = `Usage: tlsresume serve -addr A -cert F -key F [-lifetime 2h] [-keys FILE]

A libtls HTTPS server with session resumption (TLS 1.2 session tickets).
Every response says which protocol, cipher and handshake (full or resumed)
the connection got. It prints "listening on ADDRESS" once it accepts
connections, and stops on SIGINT or SIGTERM.

Without -keys the server makes its own ticket keys and session ID, so only
this process resumes its sessions. With -keys it follows a ticket key file
(see "tlsresume keys") that carries the session ID and the keys: every serve
process following the same file resumes the others' sessions.
`

// childEnv marks a serve process started by the demo (or the tests): it
// exits when its standard input closes, that is when its parent is gone.
const childEnv = "TLSRESUME_CHILD"

type serveOptions struct {
	addr, cert, key string
	lifetime        time.Duration
	keys            string
}

func runServe(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("serve", serveUsage, stdout, stderr)
	fs := cmd.fs
	var o serveOptions
	fs.StringVar(&o.addr, "addr", "", "address to listen on, HOST:PORT (port 0: any free port)")
	fs.StringVar(&o.cert, "cert", "", "PEM file of the server certificate (and chain)")
	fs.StringVar(&o.key, "key", "", "PEM file of the certificate's private key")
	fs.DurationVar(&o.lifetime, "lifetime", 2*time.Hour, "session lifetime, whole seconds from 4s to 24h")
	fs.StringVar(&o.keys, "keys", "", "ticket key file to follow (shared by a fleet; see tlsresume keys)")
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if os.Getenv(childEnv) != "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			cancel()
		}()
	}
	if err := serve(ctx, o, stdout, stderr); err != nil {
		return cmd.fail(err)
	}
	return exitOK
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
	if o.keys != "" {
		follower, err := followKeys(ctx, cfg, o.keys, stderr)
		if err != nil {
			return err
		}
		defer follower.Close()
	}
	ln, err := libtls.Listen("tcp", o.addr, cfg)
	if err != nil {
		return err
	}
	pid := os.Getpid()
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hello(w, r, pid) }),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: log.New(stderr, "tlsresume serve: ", 0),
	}
	b := libtls.Backend()
	if !b.ServerSessionResumption {
		fmt.Fprintf(stderr, "tlsresume serve: note: %s servers cannot resume sessions (%s); every handshake will be full\n", b.Name, noServerResumption)
	}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

type connKey struct{}

// hello answers every request with the facts of its connection.
func hello(w http.ResponseWriter, r *http.Request, pid int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	c, ok := r.Context().Value(connKey{}).(*libtls.Conn)
	if !ok {
		http.Error(w, "not a libtls connection", http.StatusInternalServerError)
		return
	}
	s := c.ConnectionState()
	kind := "full"
	if s.SessionResumed {
		kind = "resumed"
	}
	fmt.Fprintf(w, "tlsresume serve (pid %d): %s, %s, %s handshake\n", pid, s.Version, s.CipherSuite, kind)
}
