package libtls

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
)

// libtls does not check that a key belongs to its certificate until the
// Config is used, and then says only "failed to load private key" (the
// reason, OpenSSL's "key values mismatch", stays in OpenSSL's error queue).
// The keypair setters check it first, where Go can parse both, and refuse
// a key that certainly is not the certificate's with a message that says
// so, leaving the Config as it was.

// checkKeypair returns the ConfigError of op for a private key (keyPEM's
// first) that is not the key of certPEM's first certificate, and nil when
// they match or either cannot be parsed here (libtls then judges).
func checkKeypair(op string, certPEM, keyPEM []byte) error {
	cert := firstCertificate(certPEM)
	if cert == nil {
		return nil
	}
	key := firstPrivateKey(keyPEM)
	if key == nil {
		return nil
	}
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || pub.Equal(key.Public()) {
		return nil
	}
	return &ConfigError{Op: op, Msg: "the private key does not match the certificate's public key", Err: errInvalid}
}

// checkKeypairFiles is checkKeypair for files; files it cannot read are
// left to libtls, whose errors name them.
func checkKeypairFiles(op, certPath, keyPath string) error {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil
	}
	defer clear(keyPEM)
	return checkKeypair(op, certPEM, keyPEM)
}

// firstCertificate parses the first CERTIFICATE block of a PEM chain, the
// leaf libtls uses; nil if there is none or it does not parse.
func firstCertificate(chainPEM []byte) *x509.Certificate {
	for rest := chainPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if b.Type == "CERTIFICATE" {
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			return cert
		}
	}
}

// firstPrivateKey parses the first private key block of keyPEM (PKCS #8,
// PKCS #1 or SEC 1; not an encrypted one) and zeroes the DER it decoded;
// nil if there is none or it does not parse.
func firstPrivateKey(keyPEM []byte) crypto.Signer {
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return nil
		}
		if !strings.HasSuffix(b.Type, "PRIVATE KEY") {
			continue
		}
		defer clear(b.Bytes)
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			s, _ := k.(crypto.Signer)
			return s
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k
		}
		return nil
	}
}
