package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

const certUsage = `Usage: tlsresume cert [-cert cert.pem] [-key key.pem] [-hosts localhost,127.0.0.1,::1] [-days 30]

Writes a self-signed ECDSA (P-256) certificate and its private key, to try
"tlsresume serve" with:

  tlsresume cert
  tlsresume serve -addr 127.0.0.1:8443 -cert cert.pem -key key.pem
  tlsresume probe https://localhost:8443/ -cafile cert.pem

The certificate names the -hosts (DNS names and IP addresses; the first is
also its common name) and is its own CA: clients trust it with -cafile
cert.pem (curl --cacert cert.pem). The key file gets mode 0600. Existing
files are never overwritten. For anything but trying, use a certificate
from your CA.

The same with the openssl command:

  ` + opensslCertCommand + `
`

// opensslCertCommand makes a pair like "tlsresume cert" does (OpenSSL 1.1.1
// or later); serve -h and the README show it.
const opensslCertCommand = `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1 -keyout key.pem -out cert.pem`

// maxCertDays bounds -days: ten years is long enough to try anything.
const maxCertDays = 3650

func runCert(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("cert", certUsage, stdout, stderr)
	certFile := cmd.fs.String("cert", "cert.pem", "the certificate `file` to write")
	keyFile := cmd.fs.String("key", "key.pem", "the private key `file` to write (mode 0600)")
	hosts := cmd.fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated DNS names and IP addresses the certificate names")
	days := cmd.fs.Int("days", 30, "days the certificate is valid, 1 to 3650")
	pos, code, ok := cmd.parse(args)
	if !ok {
		return code
	}
	names, err := parseHosts(*hosts)
	switch {
	case len(pos) > 0:
		return cmd.usageError("unexpected argument %q", pos[0])
	case err != nil:
		return cmd.usageError("-hosts: %v", err)
	case *days < 1 || *days > maxCertDays:
		return cmd.usageError("-days %d: want 1 to %d", *days, maxCertDays)
	case *certFile == "" || *keyFile == "":
		return cmd.usageError("-cert and -key must name files")
	case *certFile == *keyFile:
		return cmd.usageError("-cert and -key name the same file")
	}
	certPEM, keyPEM, err := selfSigned(names, time.Now(), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return cmd.fail(err)
	}
	defer clear(keyPEM)
	if err := writePair(*certFile, *keyFile, certPEM, keyPEM); err != nil {
		return cmd.fail(err)
	}
	fmt.Fprintf(stdout, "wrote %s and %s (self-signed, for %s, valid %d days)\n", *certFile, *keyFile, strings.Join(names, ", "), *days)
	return exitOK
}

// parseHosts splits -hosts into names, each an IP address or a DNS name.
func parseHosts(s string) ([]string, error) {
	var names []string
	for _, h := range strings.Split(s, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("%q has an empty name", s)
		}
		if net.ParseIP(h) == nil && !validDNSName(h) {
			return nil, fmt.Errorf("%q is neither an IP address nor a DNS name", h)
		}
		names = append(names, h)
	}
	return names, nil
}

// validDNSName accepts host names as certificates carry them: labels of
// letters, digits and hyphens (a wildcard first label allowed), at most
// 253 bytes.
func validDNSName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i, label := range strings.Split(s, ".") {
		if i == 0 && label == "*" {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// selfSigned makes a self-signed ECDSA P-256 certificate for names, valid
// from an hour before now (clocks differ) for validity, and returns it and
// its PKCS#8 key in PEM.
func selfSigned(names []string, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"tlsresume cert"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		// Its own CA, as "openssl req -x509" makes it: LibreSSL's verifier
		// takes a self-signed certificate as a trust anchor only then. It
		// issues nothing else.
		IsCA:           true,
		MaxPathLen:     0,
		MaxPathLenZero: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	defer clear(kder)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// writePair creates the key file (mode 0600) and the certificate file
// (0644), neither of which may exist; after a failure neither is left.
func writePair(certFile, keyFile string, certPEM, keyPEM []byte) error {
	for _, f := range []string{certFile, keyFile} {
		if _, err := os.Lstat(f); err == nil {
			return fmt.Errorf("%s exists; remove it or name another file", f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := createFile(keyFile, keyPEM, 0o600); err != nil {
		return err
	}
	if err := createFile(certFile, certPEM, 0o644); err != nil {
		os.Remove(keyFile)
		return err
	}
	return nil
}

// createFile writes data to a new file (O_EXCL: never an existing one).
func createFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists; remove it or name another file", path)
		}
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}
