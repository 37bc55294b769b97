package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

const demoUsage = `Usage: tlsresume [demo] [-n 4] [-json]

Shows TLS session resumption on loopback with a throwaway CA and server
certificate: one libtls client with a session file connects n times over
TLS 1.2; the first handshake is full and the later ones resume.

Where libtls servers resume (LibreSSL), the servers are two "tlsresume
serve" processes that share a ticket key file and session ID, and the client
alternates between them: the second process resumes a session the first
one made. Where they cannot (LibreTLS), the demo says so and shows the
client resuming against a Go crypto/tls server instead.
`

// demoServer is a server the demo's client connects to.
type demoServer struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"` // "libtls" (a tlsresume serve process) or "crypto/tls"
	Address string `json:"address"`
	PID     int    `json:"pid"`
}

// demoReport is the demo's -json output.
type demoReport struct {
	Backend     backendJSON  `json:"backend"`
	Note        string       `json:"note,omitempty"`
	Servers     []demoServer `json:"servers"`
	Connections []result     `json:"connections"`
	// Resumed counts the resumed handshakes after the first.
	Resumed int `json:"resumed"`
}

const demoTimeout = 10 * time.Second

func runDemo(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("demo", demoUsage, stdout, stderr)
	n := cmd.fs.Int("n", 4, "number of connections (2 to 100)")
	asJSON := cmd.fs.Bool("json", false, "print a JSON object instead of a table")
	pos, code, ok := cmd.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError("unexpected argument %q", pos[0])
	}
	if *n < 2 || *n > 100 {
		return cmd.usageError("-n %d: need 2 to 100 connections", *n)
	}
	rep, err := demo(context.Background(), *n, stderr)
	if err != nil {
		return cmd.fail(err)
	}
	if *asJSON {
		err = writeJSON(stdout, rep)
	} else {
		err = printDemo(stdout, rep)
	}
	if err != nil {
		return cmd.fail(err)
	}
	return exitOK
}

func demo(ctx context.Context, n int, stderr io.Writer) (*demoReport, error) {
	b := libtls.Backend()
	rep := &demoReport{Backend: backendInfo()}

	ca, err := testcert.NewCA("tlsresume demo CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue("localhost", "127.0.0.1")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "tlsresume-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	if b.ServerSessionResumption {
		_, certFile, keyFile, err := ca.Files(dir, leaf)
		if err != nil {
			return nil, err
		}
		keysFile := filepath.Join(dir, "ticket-keys")
		if err := initKeyFile(keysFile); err != nil {
			return nil, err
		}
		var procs []*serveProcess
		defer func() { stopAll(procs) }()
		for i := 1; i <= 2; i++ {
			p, err := startServe(ctx, "127.0.0.1:0", certFile, keyFile, keysFile)
			if err != nil {
				return nil, fmt.Errorf("serve process %d: %w", i, err)
			}
			procs = append(procs, p)
			rep.Servers = append(rep.Servers, demoServer{Name: fmt.Sprintf("serve #%d (pid %d)", i, p.pid), Kind: "libtls", Address: p.addr, PID: p.pid})
		}
	} else {
		rep.Note = fmt.Sprintf("%s servers cannot resume sessions (%s), so this shows the libtls client resuming against a Go crypto/tls server over TLS 1.2 instead.", b.Name, noServerResumption)
		addr, stop, err := startGoServer(leaf.TLS)
		if err != nil {
			return nil, err
		}
		defer stop()
		rep.Servers = append(rep.Servers, demoServer{Name: "crypto/tls (in-process)", Kind: "crypto/tls", Address: addr, PID: os.Getpid()})
	}

	cfg, err := libtls.NewConfig()
	if err != nil {
		return nil, err
	}
	defer cfg.Close()
	if err := cfg.SetCA(ca.CertPEM); err != nil {
		return nil, err
	}
	if err := cfg.SetProtocols(libtls.ProtocolTLSv1_2); err != nil {
		return nil, err
	}
	sf, err := newSessionFile()
	if err != nil {
		return nil, err
	}
	defer removeFile(sf)
	if err := cfg.SetSessionFile(sf); err != nil {
		return nil, err
	}
	// The fleet's servers listen at several addresses under one name:
	// the client offers its session to all of them.
	if err := cfg.SetSessionScope(libtls.SessionPerServerName); err != nil {
		return nil, err
	}
	for i := 1; i <= n; i++ {
		srv := rep.Servers[(i-1)%len(rep.Servers)]
		hr, err := handshake(ctx, cfg, srv.Address, "localhost", demoTimeout, nil)
		if err != nil {
			return nil, fmt.Errorf("connection %d to %s: %w", i, srv.Name, err)
		}
		rep.Connections = append(rep.Connections, result{
			N: i, Server: srv.Name, Address: srv.Address,
			Protocol: hr.info.Version, Cipher: hr.info.Cipher,
			Resumed: hr.info.SessionResumed, HandshakeMS: milliseconds(hr.d),
		})
		if i > 1 && hr.info.SessionResumed {
			rep.Resumed++
		}
	}
	return rep, nil
}

// startGoServer runs a crypto/tls server (TLS 1.2, session tickets on) on
// loopback that completes handshakes and waits for the client to close.
func startGoServer(cert tls.Certificate) (string, func(), error) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		MaxVersion:   tls.VersionTLS12,
	})
	if err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(demoTimeout))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String(), func() { ln.Close(); <-done }, nil
}

func printDemo(w io.Writer, r *demoReport) error {
	b := r.Backend
	later := len(r.Connections) - 1
	if r.Note == "" {
		var pids []string
		for _, s := range r.Servers {
			pids = append(pids, fmt.Sprint(s.PID))
		}
		fmt.Fprintf(w, "%s\n\n", wrap(fmt.Sprintf("golibtls on %s %s: two \"tlsresume serve\" processes (pids %s) share one ticket key file and session ID; one libtls client with a session file connects %d times over TLS 1.2, alternating between them.",
			b.Name, b.Version, strings.Join(pids, ", "), len(r.Connections)), 80))
	} else {
		fmt.Fprintf(w, "golibtls on %s (%s).\n%s\n\n", b.Name, b.Version, wrap(r.Note, 80))
	}
	if err := printTable(w, r.Connections); err != nil {
		return err
	}
	fmt.Fprintln(w)
	first := "full"
	if r.Connections[0].Resumed {
		first = "resumed" // a stale session file; cannot happen with a fresh one
	}
	last := fmt.Sprintf("The first handshake was %s; %d of %d later ones resumed", first, r.Resumed, later)
	switch {
	case r.Note != "":
		last += ", from the libtls client's session file."
	case len(r.Servers) > 1 && r.Resumed == later:
		last += fmt.Sprintf(", on %s too, which never saw the first.", r.Servers[1].Name)
	default:
		last += "."
	}
	fmt.Fprintln(w, wrap(last, 80))
	return nil
}

// wrap breaks text into lines of at most width columns at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	n := 0
	for i, word := range strings.Fields(text) {
		if i > 0 {
			if n+1+len(word) > width {
				b.WriteByte('\n')
				n = 0
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(word)
		n += len(word)
	}
	return b.String()
}
