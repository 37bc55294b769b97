package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
)

// servePair starts "tlsresume serve" with the pair and checks that clients
// trusting the certificate alone reach it: probe (a libtls client, with an
// HTTP request), crypto/tls, and curl.
func servePair(t *testing.T, certFile, keyFile string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, err := startServe(ctx, "127.0.0.1:0", certFile, keyFile, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.stop)
	_, port, err := net.SplitHostPort(sp.addr)
	if err != nil {
		t.Fatal(err)
	}

	// probe: the name verified is the URL's, localhost.
	rep := probeJSON(t, "https://localhost:"+port+"/", "-cafile", certFile, "-n", "2")
	want := verdictNoResume
	if libtls.Backend().ServerSessionResumption {
		want = verdictResumes
	}
	checkProbe(t, rep, 2, "TLSv1.2", want == verdictResumes, want)

	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in", certFile)
	}
	for _, name := range []string{"localhost", "127.0.0.1"} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: name}}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + sp.addr + "/")
		if err != nil {
			t.Fatalf("crypto/tls, name %s: %v", name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if !strings.Contains(string(body), "tlsresume serve") {
			t.Errorf("crypto/tls got %q", body)
		}
	}

	out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "20", "--cacert", certFile,
		"--resolve", "localhost:"+port+":127.0.0.1", "https://localhost:"+port+"/").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "tlsresume serve") {
		t.Errorf("curl: %v: %s", err, out)
	}
}

// TestCert: "tlsresume cert" writes a self-signed ECDSA pair (key mode
// 0600) for the default names, which serve takes and clients trusting the
// certificate reach; it never overwrites files.
func TestCert(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	code, stdout, stderr := runCmd(t, "cert", "-cert", certFile, "-key", keyFile)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "wrote "+certFile+" and "+keyFile) || !strings.Contains(stdout, "localhost, 127.0.0.1, ::1") {
		t.Errorf("stdout %q", stdout)
	}
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("cert file %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", cert.PublicKey)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil || !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
		t.Errorf("not self-signed: %v, issuer %v", err, cert.Issuer)
	}
	if !cert.IsCA || cert.MaxPathLen != 0 || !cert.MaxPathLenZero {
		t.Errorf("IsCA %v, MaxPathLen %d: want its own CA, issuing nothing else", cert.IsCA, cert.MaxPathLen)
	}
	if cert.Subject.CommonName != "localhost" || strings.Join(cert.DNSNames, ",") != "localhost" || len(cert.IPAddresses) != 2 ||
		!cert.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !cert.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("names: CN %q, DNS %v, IP %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses)
	}
	if d := time.Until(cert.NotAfter); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("valid until %v", cert.NotAfter)
	}
	servePair(t, certFile, keyFile)

	// Run again: refused, both files unchanged.
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd(t, "cert", "-cert", certFile, "-key", keyFile)
	if code != exitError {
		t.Errorf("second run: exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, "tlsresume cert:", certFile+" exists")
	for f, want := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if got, err := os.ReadFile(f); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s changed (%v)", f, err)
		}
	}
	// Only the key exists: refused before anything is written.
	other := filepath.Join(dir, "other.pem")
	code, _, stderr = runCmd(t, "cert", "-cert", other, "-key", keyFile)
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	oneLine(t, stderr, keyFile+" exists")
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", other, err)
	}

	// Other names and validity.
	certFile2 := filepath.Join(dir, "c2.pem")
	if code, _, stderr := runCmd(t, "cert", "-cert", certFile2, "-key", filepath.Join(dir, "k2.pem"), "-hosts", "api.test,10.0.0.1", "-days", "1"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, _ := os.ReadFile(certFile2)
	block, _ = pem.Decode(b)
	cert, err = x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "api.test" || strings.Join(cert.DNSNames, ",") != "api.test" || len(cert.IPAddresses) != 1 ||
		time.Until(cert.NotAfter) > 25*time.Hour {
		t.Errorf("CN %q, DNS %v, IP %v, until %v", cert.Subject.CommonName, cert.DNSNames, cert.IPAddresses, cert.NotAfter)
	}
}

// TestCertUsage: bad command lines are usage errors that write nothing.
func TestCertUsage(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-days", "0"}, "-days 0: want 1 to 3650"},
		{[]string{"-days", "3651"}, "-days 3651"},
		{[]string{"-hosts", ""}, "empty name"},
		{[]string{"-hosts", "localhost,,x"}, "empty name"},
		{[]string{"-hosts", "bad host"}, `"bad host" is neither an IP address nor a DNS name`},
		{[]string{"-hosts", "-x.test"}, "neither"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	} {
		code, _, stderr := runCmd(t, append([]string{"cert", "-cert", c, "-key", k}, tc.args...)...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		oneLine(t, stderr, "tlsresume cert:", tc.want)
	}
	code, _, stderr := runCmd(t, "cert", "-cert", c, "-key", c)
	if code != exitUsage {
		t.Errorf("same file: exit %d", code)
	}
	oneLine(t, stderr, "-cert and -key name the same file")
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 0 {
		t.Errorf("files written: %v (%v)", entries, err)
	}
	code, stdout, _ := runCmd(t, "cert", "-h")
	if code != 0 || !strings.Contains(stdout, opensslCertCommand) {
		t.Errorf("cert -h: exit %d: %s", code, stdout)
	}
}

// TestCertOpenSSL: the openssl command that serve -h and the README show
// makes a pair that serve takes and clients reach, as "tlsresume cert"
// does.
func TestCertOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (Debian package openssl)")
	}
	dir := t.TempDir()
	args := strings.Fields(opensslCertCommand)
	if args[0] != "openssl" {
		t.Fatalf("command %q", opensslCertCommand)
	}
	cmd := exec.Command(bin, args[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, out)
	}
	code, stdout, _ := runCmd(t, "serve", "-h")
	if code != 0 || !strings.Contains(stdout, opensslCertCommand) || !strings.Contains(stdout, "tlsresume cert") {
		t.Errorf("serve -h does not show how to make a certificate:\n%s", stdout)
	}
	servePair(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
}
