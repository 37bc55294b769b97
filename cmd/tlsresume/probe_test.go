package main

import (
	"crypto/tls"
	"encoding/json"
	"strings"
	"testing"

	libtls "github.com/golibtls/libtls"
)

// probeJSON runs probe -json and decodes its report.
func probeJSON(t *testing.T, args ...string) *probeReport {
	t.Helper()
	code, stdout, stderr := runCmd(t, append([]string{"probe"}, append(args, "-json")...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep probeReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("-json output: %v", err)
	}
	return &rep
}

func checkProbe(t *testing.T, rep *probeReport, n int, protocol string, laterResumed bool, verdict string) {
	t.Helper()
	if len(rep.Connections) != n {
		t.Fatalf("%d connections, want %d", len(rep.Connections), n)
	}
	for i, c := range rep.Connections {
		if c.N != i+1 || c.Protocol != protocol || c.Cipher == "" || c.Address == "" || c.HandshakeMS <= 0 {
			t.Errorf("connection %+v, want protocol %s", c, protocol)
		}
		if want := i > 0 && laterResumed; c.Resumed != want {
			t.Errorf("connection %d resumed %v, want %v", c.N, c.Resumed, want)
		}
	}
	if rep.Verdict != verdict {
		t.Errorf("verdict %q, want %q", rep.Verdict, verdict)
	}
	if rep.Resumes != laterResumed || rep.Reconnections != n-1 {
		t.Errorf("resumes %v, reconnections %d", rep.Resumes, rep.Reconnections)
	}
}

func TestProbeResumes(t *testing.T) {
	p := newTestPKI(t)
	addr := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}, MaxVersion: tls.VersionTLS12})
	rep := probeJSON(t, addr, "-cafile", p.caFile, "-n", "4")
	checkProbe(t, rep, 4, "TLSv1.2", libtls.Backend().ClientSessionResumption, verdictResumes)
	if rep.Resumed != 3 || rep.ServerName != "127.0.0.1" || rep.Offered != "TLSv1.2" {
		t.Errorf("report %+v", rep)
	}

	// The table, with flags before the address and a server name.
	code, stdout, _ := runCmd(t, "probe", "-servername", "localhost", "-tls1.2", "-cafile", p.caFile, addr)
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if !strings.Contains(stdout, "server name localhost") || !strings.Contains(stdout, "verdict: resumes (2 of 2 reconnections resumed)") {
		t.Errorf("output:\n%s", stdout)
	}
	for _, col := range []string{"#", "SERVER", "PROTOCOL", "CIPHER", "HANDSHAKE", "TIME"} {
		if !strings.Contains(stdout, col) {
			t.Errorf("no column %s in\n%s", col, stdout)
		}
	}
}

func TestProbeTicketsDisabled(t *testing.T) {
	p := newTestPKI(t)
	addr := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}, MaxVersion: tls.VersionTLS12, SessionTicketsDisabled: true})
	rep := probeJSON(t, addr, "-cafile", p.caFile)
	checkProbe(t, rep, 3, "TLSv1.2", false, verdictNoResume)

	code, stdout, _ := runCmd(t, "probe", addr, "-insecure", "-n", "2")
	if code != 0 || !strings.Contains(stdout, "verdict: does not resume") {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}
}

func TestProbeTLS13Only(t *testing.T) {
	p := newTestPKI(t)
	addr := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}, MinVersion: tls.VersionTLS13})
	rep := probeJSON(t, addr, "-cafile", p.caFile)
	checkProbe(t, rep, 3, "TLSv1.3", false, verdictTLS13Only)
	if rep.TLS12Error == "" || rep.Offered != "TLSv1.3" {
		t.Errorf("report %+v", rep)
	}

	// Asked for TLS 1.3 against a server that resumes TLS 1.2: no
	// resumption, and the reason.
	addr12 := goServer(t, &tls.Config{Certificates: []tls.Certificate{p.leaf.TLS}})
	rep = probeJSON(t, addr12, "-cafile", p.caFile, "-tls1.3")
	checkProbe(t, rep, 3, "TLSv1.3", false, verdictNoResume)
	if !strings.Contains(rep.Note, "TLS 1.3") {
		t.Errorf("note %q", rep.Note)
	}
	// -tls1.2 alone never falls back.
	code, _, stderr := runCmd(t, "probe", addr, "-cafile", p.caFile, "-tls1.2")
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "tlsresume probe: ")
}
