package libtls

import "crypto/tls"

// libtls names cipher suites as OpenSSL does (tls_conn_cipher):
// "ECDHE-ECDSA-AES128-GCM-SHA256" for TLS 1.2, the IANA name
// "TLS_AES_256_GCM_SHA384" for TLS 1.3. crypto/tls.ConnectionState wants the
// IANA ID. The IDs of every suite crypto/tls knows come from crypto/tls
// itself (CipherSuites and InsecureCipherSuites), by IANA name; only the
// OpenSSL names are written down here. Suites crypto/tls does not implement
// (DHE, CCM, CBC with SHA-384) can still be negotiated by libtls with other
// peers, so they carry their IANA IDs here. TestCipherSuiteTable checks
// every entry against "openssl ciphers -V" of both backends.
var opensslCipherNames = []struct {
	openssl string
	iana    string
	id      uint16 // only for suites crypto/tls does not know
}{
	// TLS 1.3: OpenSSL uses the IANA names.
	{"TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", 0},
	{"TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", 0},
	{"TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", 0},
	{"TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_SHA256", 0x1304},
	{"TLS_AES_128_CCM_8_SHA256", "TLS_AES_128_CCM_8_SHA256", 0x1305},

	// TLS 1.2 suites crypto/tls implements.
	{"ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0},
	{"ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", 0},
	{"ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0},
	{"ECDHE-RSA-AES256-GCM-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", 0},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", 0},
	{"ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0},
	{"ECDHE-ECDSA-AES128-SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0},
	{"ECDHE-ECDSA-AES256-SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", 0},
	{"ECDHE-RSA-AES128-SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0},
	{"ECDHE-RSA-AES256-SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", 0},
	{"ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0},
	{"ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0},
	{"ECDHE-RSA-DES-CBC3-SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", 0},
	{"ECDHE-ECDSA-RC4-SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", 0},
	{"ECDHE-RSA-RC4-SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA", 0},
	{"AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256", 0},
	{"AES256-GCM-SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384", 0},
	{"AES128-SHA", "TLS_RSA_WITH_AES_128_CBC_SHA", 0},
	{"AES256-SHA", "TLS_RSA_WITH_AES_256_CBC_SHA", 0},
	{"AES128-SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256", 0},
	{"DES-CBC3-SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0},
	{"RC4-SHA", "TLS_RSA_WITH_RC4_128_SHA", 0},

	// TLS 1.2 suites in libtls's defaults (LibreSSL's
	// TLSv1.2+AEAD+DHE, OpenSSL's HIGH) that crypto/tls does not implement.
	{"DHE-RSA-AES128-GCM-SHA256", "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009E},
	{"DHE-RSA-AES256-GCM-SHA384", "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384", 0x009F},
	{"DHE-RSA-CHACHA20-POLY1305", "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256", 0xCCAA},
	{"ECDHE-ECDSA-AES256-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", 0xC024},
	{"ECDHE-RSA-AES256-SHA384", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", 0xC028},
	{"AES256-SHA256", "TLS_RSA_WITH_AES_256_CBC_SHA256", 0x003D},
	{"DHE-RSA-AES128-SHA", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 0x0033},
	{"DHE-RSA-AES256-SHA", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA", 0x0039},
	{"DHE-RSA-AES128-SHA256", "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256", 0x0067},
	{"DHE-RSA-AES256-SHA256", "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256", 0x006B},
}

// cipherSuite is a libtls cipher name with its IANA ID.
type cipherSuite struct {
	id   uint16
	name string // OpenSSL's name, as libtls reports it
}

// cipherSuites maps OpenSSL cipher names to IANA IDs.
var cipherSuites = func() map[string]cipherSuite {
	ids := make(map[string]uint16)
	for _, s := range tls.CipherSuites() {
		ids[s.Name] = s.ID
	}
	for _, s := range tls.InsecureCipherSuites() {
		ids[s.Name] = s.ID
	}
	m := make(map[string]cipherSuite, len(opensslCipherNames))
	for _, e := range opensslCipherNames {
		id, ok := ids[e.iana]
		if !ok {
			id = e.id
		}
		if id != 0 {
			m[e.openssl] = cipherSuite{id: id, name: e.openssl}
		}
	}
	return m
}()

// CipherSuiteID returns the IANA ID of a cipher suite named as libtls
// names it (OpenSSL's names, such as "ECDHE-ECDSA-AES128-GCM-SHA256", and
// the TLS 1.3 names, such as "TLS_AES_256_GCM_SHA384"), and whether the
// name is known.
func CipherSuiteID(name string) (uint16, bool) {
	s, ok := cipherSuites[name]
	return s.id, ok
}
