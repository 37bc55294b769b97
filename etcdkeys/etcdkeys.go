// Package etcdkeys keeps the session ticket keys of a server fleet in etcd,
// for fleets that span machines.
//
// libtls servers resume each other's TLS 1.2 sessions only while they share
// the session ID context and the ticket keys (see libtls.TicketKeySet). On
// one machine a key file does that (libtls.TicketKeyRotator and
// libtls.FollowTicketKeyFile); across machines this package uses etcd, the
// consistent store such fleets already run:
//
//   - any number of Rotators run (two or three, for failover); they elect
//     one leader through etcd, and only the leader rotates the set stored
//     under the key, with the same rules as the key file's rotator
//     (libtls.RotateTicketKeySet): the session ID never changes, the next
//     key comes before the servers need it (libtls.TicketKeySet.NextRotation),
//     the newest four keys are kept so that sessions under older keys still
//     resume. Every write is a transaction that succeeds only while the
//     writer still holds the leadership and the value is the one it read,
//     so a deposed leader can never overwrite the set.
//   - every server process Follows the key: the stored set is applied to
//     its Config before it serves, then every change as etcd reports it.
//     When etcd is unreachable the server keeps serving with the keys it
//     has (and its Config adds keys of its own before they expire, see
//     libtls.Config.AddTicketKey), and Follower.Err says so.
//
// The value stored under the key is exactly the text of a key file
// (libtls.TicketKeySet.MarshalText), so a fleet moves between a file and
// etcd by copying bytes, for example with etcdctl (whose get adds a
// newline to values printed as text, hence JSON):
//
//	etcdctl put /fleet/ticket-keys < ticket-keys
//	etcdctl get /fleet/ticket-keys -w json | jq -r '.kvs[0].value' | base64 -d > ticket-keys
//
// See docs/fleet.md in the repository for a picture of how keys and
// sessions flow between rotators, etcd and servers over time.
//
// The leader election lives under the key's own prefix, KEY + "/rotator/",
// so an etcd role with read-write access to the prefix KEY is all a
// rotator needs; servers need read access to KEY only.
//
// Servers resume each other's sessions only on LibreSSL; on LibreTLS the
// keys are applied all the same but its servers never resume (see
// libtls.Backend).
package etcdkeys

import (
	"errors"
	"fmt"

	libtls "github.com/golibtls/libtls"
)

// electionPrefix is where the Rotators of key hold their election.
func electionPrefix(key string) string { return key + "/rotator" }

// parseSet decodes a stored value (revision rev of key) and zeroes the
// value, which holds the keys in hex.
func parseSet(key string, rev int64, value []byte) (*libtls.TicketKeySet, error) {
	defer clear(value)
	set := new(libtls.TicketKeySet)
	if err := set.UnmarshalText(value); err != nil {
		return nil, fmt.Errorf("etcdkeys: %s at revision %d: %w", key, rev, err)
	}
	return set, nil
}

var errNoClient = errors.New("nil etcd client")
