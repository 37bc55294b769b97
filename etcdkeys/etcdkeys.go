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
// rotator needs; servers need read access to KEY only. Give the
// clientv3.Client what the cluster asks for (TLS, a user); an error of
// access says what the etcd user lacks, and Rotator.Check finds such
// mistakes before Run.
//
// With a KEK (key-encryption key) the set is sealed before it is stored
// and unsealed by the servers, so that nobody who reads etcd, its backups
// or the key's history learns the ticket keys (see KEK, Rotator.KEK and
// FollowConfig.KEK).
//
// A server can start while etcd does not answer (FollowConfig's
// StartUnreachable): it serves with keys of its own and takes the fleet's
// set when etcd is back.
//
// Servers resume each other's sessions only on LibreSSL; on LibreTLS the
// keys are applied all the same but its servers never resume (see
// libtls.Backend).
package etcdkeys

import (
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

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
		return nil, fmt.Errorf("etcdkeys: %s: %w", at(key, rev), err)
	}
	return set, nil
}

// at names a value in errors: "KEY at revision REV", or "KEY" for rev 0.
func at(key string, rev int64) string {
	if rev == 0 {
		return key
	}
	return fmt.Sprintf("%s at revision %d", key, rev)
}

var errNoClient = errors.New("nil etcd client")

// ErrUnreachable is the problem of a read that etcd did not answer: it is
// down, cut off, or without quorum. Follower.Err wraps it during an outage;
// Follow and Rotator.Check wrap it when they fail that way.
var ErrUnreachable = errors.New("etcd unreachable")

// accessErrors are etcd's refusals of a client: waiting does not help.
var accessErrors = []error{
	rpctypes.ErrPermissionDenied, rpctypes.ErrUserEmpty, rpctypes.ErrAuthFailed,
	rpctypes.ErrUserNotFound, rpctypes.ErrRoleNotFound, rpctypes.ErrInvalidAuthMgmt,
}

// IsAccessError reports whether err is etcd refusing the client:
// permission denied, authentication required or failed, an unknown user or
// role. Waiting does not help, unlike when etcd does not answer.
func IsAccessError(err error) bool {
	for _, a := range accessErrors {
		if errors.Is(err, a) {
			return true
		}
	}
	return false
}

// explain adds to an error of etcd's what is likely wrong when etcd
// refused the client; need is what the client's user needs, e.g. "read on
// /fleet/keys".
func explain(err error, need string) error {
	switch {
	case errors.Is(err, rpctypes.ErrPermissionDenied):
		return fmt.Errorf("%w: the etcd user needs %s", err, need)
	case errors.Is(err, rpctypes.ErrUserEmpty):
		return fmt.Errorf("%w: etcd requires authentication: log in as a user, with a password or with a client certificate whose common name is the user", err)
	case errors.Is(err, rpctypes.ErrAuthFailed), errors.Is(err, rpctypes.ErrUserNotFound):
		return fmt.Errorf("%w: check the etcd user name and password", err)
	}
	return err
}

// failureKind tells a Rotator's failures apart for logging: errors of
// access and a deposition by their text, every other failure (etcd
// unreachable, without quorum, a lease lost, timeouts of the client or of
// the server) as one kind.
func failureKind(err error) string {
	if IsAccessError(err) || errors.Is(err, errDeposed) {
		return err.Error()
	}
	return "unreachable"
}
