package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
)

// TestServeFleet runs two "tlsresume serve -keys" processes that follow one
// key file behind a round-robin forwarder, and probes them: the client
// resumes on the second process a session the first one made (on a backend
// whose servers resume).
func TestServeFleet(t *testing.T) {
	b := libtls.Backend()
	p := newTestPKI(t)
	keys := filepath.Join(t.TempDir(), "ticket-keys")
	if code, _, stderr := runCmd(t, "keys", "init", "-file", keys); code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, stderr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var procs []*serveProcess
	t.Cleanup(func() { stopAll(procs) })
	for range 2 {
		sp, err := startServe(ctx, "127.0.0.1:0", p.certFile, p.keyFile, keys)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, sp)
	}
	rr := newRoundRobin(t, procs[0].addr, procs[1].addr)

	rep := probeJSON(t, rr.addr, "-cafile", p.caFile, "-servername", "localhost", "-n", "4")
	if got := [2]int32{rr.counts[0].Load(), rr.counts[1].Load()}; got != [2]int32{2, 2} {
		t.Fatalf("connections per process %v, want 2 each", got)
	}
	if b.ServerSessionResumption {
		checkProbe(t, rep, 4, "TLSv1.2", true, verdictResumes)
	} else {
		checkProbe(t, rep, 4, "TLSv1.2", false, verdictNoResume)
	}

	// The processes answer HTTPS requests with their connection's facts.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := client.Get("https://" + procs[1].addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "tlsresume serve") || !strings.Contains(string(body), "full handshake") {
		t.Errorf("response %q", body)
	}

	// After a rotation, which each process picks up on its own, they still
	// resume each other's sessions.
	if b.ServerSessionResumption {
		set, err := libtls.ReadTicketKeyFile(keys)
		if err != nil {
			t.Fatal(err)
		}
		set.Rotate(time.Now().Add(2*time.Hour), time.Hour) // a new key now
		if err := libtls.WriteTicketKeyFile(keys, set); err != nil {
			t.Fatal(err)
		}
		set.Zero()
		time.Sleep(3 * keyPollInterval)
		rep = probeJSON(t, rr.addr, "-cafile", p.caFile, "-servername", "localhost", "-n", "4")
		checkProbe(t, rep, 4, "TLSv1.2", true, verdictResumes)
	}
	for i, sp := range procs {
		if out := sp.out.String(); strings.Contains(out, "tlsresume serve: libtls") {
			t.Errorf("serve process %d: %s", i+1, out)
		}
	}
}

// TestServeAlone is serve without -keys: one process resumes its own
// sessions (LibreSSL) and says on stderr when its backend cannot.
func TestServeAlone(t *testing.T) {
	b := libtls.Backend()
	p := newTestPKI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, err := startServe(ctx, "127.0.0.1:0", p.certFile, p.keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.stop)
	rep := probeJSON(t, sp.addr, "-cafile", p.caFile)
	if b.ServerSessionResumption {
		checkProbe(t, rep, 3, "TLSv1.2", true, verdictResumes)
	} else {
		checkProbe(t, rep, 3, "TLSv1.2", false, verdictNoResume)
		if out := sp.out.String(); !strings.Contains(out, "cannot resume") {
			t.Errorf("serve stderr %q does not say that it cannot resume", out)
		}
	}
}
