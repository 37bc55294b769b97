package libtls

/*
#include <tls.h>
*/
import "C"

// TicketKeySize is the size of a session ticket key (TLS_TICKET_KEY_SIZE):
// 32 bytes of AES-256 key followed by 16 bytes of HMAC-SHA256 key.
const TicketKeySize = C.TLS_TICKET_KEY_SIZE

// AddTicketKey adds a session ticket key to a server's Config
// (tls_config_add_ticket_key). libtls keeps the four newest keys: new
// tickets are encrypted with the newest, tickets under the others are still
// accepted (and renewed). The key must be exactly TicketKeySize bytes.
//
// Revisions name keys inside tickets, so the processes of a fleet must give
// the same key the same revision. Revision 0 is refused: libtls's empty key
// slots carry revision 0, so it would fail ("ticket key already present")
// or be silently ignored. Re-adding the newest (rev, key) is a no-op;
// re-adding another revision that is still held fails ("ticket key already
// present"). A fifth key evicts the oldest.
//
// Once a key is added by hand libtls stops generating keys for that Config,
// and keys expire after the session lifetime: a server that runs longer than
// its lifetime must keep adding keys, or every new handshake fails ("no
// valid ticket key found"). The caller's key slice is not retained; libtls
// copies it, and the binding makes no copy of its own.
func (cfg *Config) AddTicketKey(rev uint32, key []byte) error {
	const op = "tls_config_add_ticket_key"
	if rev == 0 {
		return &ConfigError{Op: op, Msg: "ticket key revision 0 is reserved (it equals libtls's empty key slots); use revisions from 1", Err: errInvalid}
	}
	return cfg.call(op, func(c *C.struct_tls_config) C.int {
		p, n := bytesPtr(key)
		return C.tls_config_add_ticket_key(c, C.uint32_t(rev), p, n)
	})
}
