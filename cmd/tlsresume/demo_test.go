package main

import (
	"encoding/json"
	"strings"
	"testing"

	libtls "github.com/golibtls/libtls"
)

func TestDemoJSON(t *testing.T) {
	b := libtls.Backend()
	code, stdout, stderr := runCmd(t, "demo", "-json", "-n", "5")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep demoReport
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		t.Fatalf("-json output: %v", err)
	}
	if rep.Backend.Name != b.Name || rep.Backend.ServerSessionResumption != b.ServerSessionResumption {
		t.Errorf("backend %+v, want %v", rep.Backend, b)
	}
	if len(rep.Connections) != 5 {
		t.Fatalf("%d connections, want 5", len(rep.Connections))
	}
	kinds := map[string]string{}
	for _, s := range rep.Servers {
		kinds[s.Name] = s.Kind
	}
	if b.ServerSessionResumption {
		if rep.Note != "" {
			t.Errorf("unexpected note %q", rep.Note)
		}
		if len(rep.Servers) != 2 {
			t.Fatalf("%d servers, want 2 serve processes", len(rep.Servers))
		}
		for _, s := range rep.Servers {
			if s.Kind != "libtls" || s.PID <= 0 {
				t.Errorf("server %+v, want a libtls serve process", s)
			}
		}
		if rep.Servers[0].PID == rep.Servers[1].PID {
			t.Errorf("both servers are pid %d", rep.Servers[0].PID)
		}
	} else {
		if !strings.Contains(rep.Note, "cannot resume") {
			t.Errorf("note %q does not say servers cannot resume", rep.Note)
		}
		if len(rep.Servers) != 1 || rep.Servers[0].Kind != "crypto/tls" {
			t.Fatalf("servers %+v, want one crypto/tls server", rep.Servers)
		}
	}
	resumed := 0
	for i, c := range rep.Connections {
		if c.N != i+1 || c.Protocol != "TLSv1.2" || c.Cipher == "" || c.HandshakeMS <= 0 {
			t.Errorf("connection %+v", c)
		}
		if want := rep.Servers[i%len(rep.Servers)].Name; c.Server != want {
			t.Errorf("connection %d went to %q, want %q (alternating)", c.N, c.Server, want)
		}
		if i == 0 {
			if c.Resumed {
				t.Errorf("first handshake resumed")
			}
			continue
		}
		// Later handshakes resume iff the server can: a libtls server on a
		// backend with server resumption, or crypto/tls (client-side).
		want := b.ClientSessionResumption
		if kinds[c.Server] == "libtls" {
			want = b.ServerSessionResumption
		}
		if c.Resumed != want {
			t.Errorf("connection %d to %s: resumed %v, want %v", c.N, c.Server, c.Resumed, want)
		}
		if c.Resumed {
			resumed++
		}
	}
	if rep.Resumed != resumed {
		t.Errorf("resumed %d, want %d", rep.Resumed, resumed)
	}
}

func TestDemoTable(t *testing.T) {
	b := libtls.Backend()
	// No arguments at all is the demo.
	code, stdout, stderr := runCmd(t)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" {
		t.Errorf("stderr %q", stderr)
	}
	lines := strings.Split(stdout, "\n")
	header := -1
	for i, l := range lines {
		if strings.HasPrefix(l, "#") {
			header = i
			break
		}
	}
	if header < 0 {
		t.Fatalf("no table header in\n%s", stdout)
	}
	for _, col := range []string{"SERVER", "PROTOCOL", "CIPHER", "HANDSHAKE", "TIME"} {
		if !strings.Contains(lines[header], col) {
			t.Errorf("header %q lacks %s", lines[header], col)
		}
	}
	// The columns are aligned: every row starts its HANDSHAKE column where
	// the header does.
	col := strings.Index(lines[header], "HANDSHAKE")
	var kinds []string
	for _, l := range lines[header+1:] {
		if l == "" {
			break
		}
		f := strings.Fields(l)
		if len(f) < 6 || f[len(f)-1] != "ms" {
			t.Fatalf("bad row %q", l)
		}
		kind := f[len(f)-3]
		if !strings.HasPrefix(l[col:], kind) {
			t.Errorf("row %q: %q not aligned under HANDSHAKE", l, kind)
		}
		kinds = append(kinds, kind)
	}
	want := []string{"full", "resumed", "resumed", "resumed"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("handshakes %v, want %v", kinds, want)
	}
	intro := strings.Join(strings.Fields(strings.Join(lines[:header], " ")), " ")
	if b.ServerSessionResumption {
		if !strings.Contains(intro, "two \"tlsresume serve\" processes") {
			t.Errorf("intro does not mention the two serve processes:\n%s", intro)
		}
		if !strings.Contains(stdout, "#2") {
			t.Errorf("no second server in\n%s", stdout)
		}
	} else {
		if !strings.Contains(intro, b.Name+" servers cannot resume sessions") || !strings.Contains(intro, "crypto/tls") {
			t.Errorf("intro does not say why servers cannot resume:\n%s", intro)
		}
	}
}
