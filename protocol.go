package libtls

/*
#include <stdlib.h>
#include <tls.h>
*/
import "C"

import (
	"strings"
	"unsafe"
)

// Protocol is a set of TLS protocol versions, as passed to
// tls_config_set_protocols.
type Protocol uint32

// Protocol versions, from tls.h. On LibreSSL 3.8 and 3.9 ProtocolTLSv1_0 and
// ProtocolTLSv1_1 equal ProtocolTLSv1_2 (the old versions were removed), so
// never use them as distinct map keys or switch cases.
const (
	ProtocolTLSv1_0 Protocol = C.TLS_PROTOCOL_TLSv1_0
	ProtocolTLSv1_1 Protocol = C.TLS_PROTOCOL_TLSv1_1
	ProtocolTLSv1_2 Protocol = C.TLS_PROTOCOL_TLSv1_2
	ProtocolTLSv1_3 Protocol = C.TLS_PROTOCOL_TLSv1_3
	// ProtocolTLSv1 is every TLS 1.x version the library knows.
	ProtocolTLSv1 Protocol = C.TLS_PROTOCOL_TLSv1
	// ProtocolsAll is every version the library supports.
	ProtocolsAll Protocol = C.TLS_PROTOCOLS_ALL
	// ProtocolsDefault is libtls's default: TLS 1.2 and TLS 1.3.
	ProtocolsDefault Protocol = C.TLS_PROTOCOLS_DEFAULT
)

// protocolNames lists the versions in the order String prints them. The
// lookups go through bit tests, never a switch, because the old versions'
// bits may coincide with TLS 1.2's.
var protocolNames = []struct {
	p    Protocol
	name string
}{
	{ProtocolTLSv1_0, "tlsv1.0"},
	{ProtocolTLSv1_1, "tlsv1.1"},
	{ProtocolTLSv1_2, "tlsv1.2"},
	{ProtocolTLSv1_3, "tlsv1.3"},
}

// String returns the set in the syntax ParseProtocols accepts, for example
// "tlsv1.2,tlsv1.3".
func (p Protocol) String() string {
	var names []string
	for _, e := range protocolNames {
		if e.p == ProtocolTLSv1_2 && e.name != "tlsv1.2" {
			continue // an alias of TLS 1.2 on this library
		}
		if p&e.p != 0 {
			names = append(names, e.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// ParseProtocols parses a protocol string as tls_config_parse_protocols does:
// comma or colon separated versions ("tlsv1.2", "tlsv1.3"), the keywords
// "all", "secure", "default", "legacy", and "!" to remove a version.
func ParseProtocols(s string) (Protocol, error) {
	if err := ensureInit(); err != nil {
		return 0, err
	}
	if err := checkNUL("tls_config_parse_protocols", s); err != nil {
		return 0, err
	}
	cs := cstring(s)
	defer C.free(unsafe.Pointer(cs))
	var p C.uint32_t
	if C.tls_config_parse_protocols(&p, cs) != 0 {
		return 0, &ConfigError{Op: "tls_config_parse_protocols", Msg: "invalid protocols " + quote(s), Err: errInvalid}
	}
	return Protocol(p), nil
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
