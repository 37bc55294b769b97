package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ticketKeyFileHeader is the first line of a version 1 key file.
const ticketKeyFileHeader = "golibtls-ticket-keys 1"

// maxTicketKeyFileSize bounds what ReadTicketKeyFile reads; a valid file is
// well under a kilobyte.
const maxTicketKeyFileSize = 64 << 10

// TicketKeySet is the state a server fleet shares: the session ID context
// and the ticket keys. Servers resume each other's TLS 1.2 sessions only
// when they share both. The set lives in a key file (ReadTicketKeyFile,
// WriteTicketKeyFile) with two roles around it:
//
//   - one rotator process (RotateTicketKeyFile, TicketKeyRotator) creates
//     the file and adds a new key on libtls's schedule, every 3/4 of the
//     session lifetime (earlier for lifetimes under 8s, see NextRotation),
//     keeping the newest 4;
//   - every server process follows the file (FollowTicketKeyFile), which
//     applies its session ID and new keys to the server's Config
//     (Config.ApplyTicketKeySet), before the server is created and then as
//     the file changes.
//
// # Backends
//
// What works where (see Backend):
//
//   - LibreSSL (ServerSessionResumption true): servers sharing the file
//     resume each other's TLS 1.2 sessions, across rotations.
//   - LibreTLS over OpenSSL (ServerSessionResumption false): the file, the
//     rotator and the follower work the same and the keys and ID are
//     applied (TicketKeyRevisions shows them), but libtls's servers issue
//     empty tickets there, so no server resumes anything.
//   - TLS 1.3 sessions resume on neither backend (TLS13Resumption false).
//
// libtls encrypts new tickets with the newest key it holds. After a
// rotation, a server that has applied the new key issues tickets that a
// server which has not yet polled the file cannot decrypt: such a client
// gets a full handshake there (never a failure). Keep the follower's
// interval short next to the lifetime (a second or so).
//
// # File format (version 1)
//
// A text file, mode 0600, lines ending in "\n":
//
//	golibtls-ticket-keys 1
//	session-id <hex of the session ID>
//	key <rev> <created, RFC 3339 UTC> <hex of the 48-byte key>
//	key ...
//
// The key lines are oldest first with strictly increasing decimal
// revisions, 1 to 4 of them. For example (keys shortened):
//
//	golibtls-ticket-keys 1
//	session-id 6c1f...e2
//	key 7 2026-01-02T15:04:05.123456789Z 9a0b...41
//	key 8 2026-01-02T15:10:05.5Z 03f7...c2
//
// Anything else (other versions, extra fields, blank lines, a missing final
// newline) is refused by ReadTicketKeyFile with an error naming the line.
// MarshalText and UnmarshalText produce and read the same text, for sets
// kept in other stores (package etcdkeys keeps them in etcd), so that a
// fleet can move between a file and a store by copying the bytes.
//
// The file holds secrets. Readers refuse anything but a regular file; a
// regular file named directly must be owned by the effective user and have
// no group or world permission bit (0600 or 0400), as the rotator writes it.
//
// # Secret volumes
//
// A key file may also be a symlink into its own directory, the layout of a
// Kubernetes secret volume (and of other tools that update a directory of
// files atomically):
//
//	keys -> ..data/keys
//	..data -> ..2026_01_02_15_04_05.123456789
//	..2026_01_02_15_04_05.123456789/keys     (the file)
//
// The tool updates the file by writing a new timestamped directory,
// pointing ..data at it (a symlink renamed over the old one) and deleting
// the old directory. Readers follow such symlinks only when the file they
// resolve to lies inside the directory that holds the named path (or below
// it); a symlink that resolves anywhere else is refused. The file reached that way is written
// by the volume's manager, not by the servers, so it may also be owned by
// root and readable by its group, as a volume with defaultMode 0440 (or
// 0400) and an fsGroup gives it: owner the effective user or root; group
// at most read; nothing for others. Never world-readable: Kubernetes's
// default mode 0644 is refused, so set defaultMode. FollowTicketKeyFile
// notices the swap (it compares the file the links resolve to).
type TicketKeySet struct {
	// SessionID is the session ID context the fleet shares: 1 to
	// MaxSessionIDLength bytes (NewTicketKeySet makes 32 random ones).
	SessionID []byte
	// Keys are the ticket keys, oldest first, revisions strictly
	// increasing, from 1 to below LocalTicketKeyRevBase; 1 to 4 of them.
	Keys []TicketKeyEntry
}

// TicketKeyEntry is one ticket key of a TicketKeySet.
type TicketKeyEntry struct {
	// Rev is the revision libtls names the key by inside tickets.
	Rev uint32
	// Created is when the rotator made the key; Rotate schedules the next
	// key from it.
	Created time.Time
	// Key is the TicketKeySize-byte key.
	Key []byte
}

// NewTicketKeySet returns a new set with a random 32-byte session ID and one
// random key, revision 1, created now. Zero it when done.
func NewTicketKeySet() (*TicketKeySet, error) {
	id := make([]byte, MaxSessionIDLength)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	key, err := NewTicketKey()
	if err != nil {
		return nil, err
	}
	return &TicketKeySet{
		SessionID: id,
		Keys:      []TicketKeyEntry{{Rev: 1, Created: time.Now().UTC(), Key: key}},
	}, nil
}

// validate checks everything ReadTicketKeyFile, WriteTicketKeyFile and
// ApplyTicketKeySet require of a set.
func (s *TicketKeySet) validate() error {
	if s == nil {
		return errors.New("nil ticket key set")
	}
	if n := len(s.SessionID); n == 0 || n > MaxSessionIDLength {
		return fmt.Errorf("session ID is %d bytes, want 1 to %d", n, MaxSessionIDLength)
	}
	if len(s.Keys) == 0 {
		return errors.New("no ticket keys")
	}
	if len(s.Keys) > maxTicketKeys {
		return fmt.Errorf("%d ticket keys, at most %d are kept", len(s.Keys), maxTicketKeys)
	}
	for i, k := range s.Keys {
		if err := k.validate(); err != nil {
			return err
		}
		if i > 0 && k.Rev <= s.Keys[i-1].Rev {
			return fmt.Errorf("ticket key revisions not strictly increasing (rev %d after rev %d); keys go oldest first", k.Rev, s.Keys[i-1].Rev)
		}
	}
	return nil
}

func (k *TicketKeyEntry) validate() error {
	if k.Rev == 0 {
		return errors.New("ticket key rev 0 is reserved (it equals libtls's empty key slots); revisions start at 1")
	}
	if k.Rev >= LocalTicketKeyRevBase {
		return fmt.Errorf("ticket key rev %d is reserved for keys the binding generates (revisions must be below %d)", k.Rev, LocalTicketKeyRevBase)
	}
	if len(k.Key) != TicketKeySize {
		return fmt.Errorf("ticket key rev %d is %d bytes, want %d", k.Rev, len(k.Key), TicketKeySize)
	}
	if k.Created.IsZero() {
		return fmt.Errorf("ticket key rev %d has no creation time", k.Rev)
	}
	return nil
}

// Zero zeroes the key material of the set. Call it when the set is no
// longer needed.
func (s *TicketKeySet) Zero() {
	if s == nil {
		return
	}
	for i := range s.Keys {
		clear(s.Keys[i].Key)
	}
}

// followSlack is the time the rotation schedule leaves for a new key to
// reach every server of the fleet: the rotator's check interval plus the
// follower's delay (a poll of the key file, or an etcd watch).
const followSlack = time.Second

// rotationAge is how old the newest key of a set may get before Rotate adds
// the next one: 3/4 of lifetime, libtls's own schedule, but never so late
// that a server's Config would add a key of its own first.
//
// A Config given keys by hand adds a random key of its own when the newest
// is within max(1s, lifetime/16) of expiring (see Config.AddTicketKey),
// counted on libtls's clock of whole seconds, so as early as
// lifetime - max(1s, lifetime/16) after the add. Tickets under such a key
// resume on that server only. For lifetimes under 8s that point comes
// before 3/4 of the lifetime (at 4s, 3s after a key was added), so the
// fleet's next key is made followSlack before it instead; at least a
// quarter of the lifetime apart.
func rotationAge(lifetime time.Duration) time.Duration {
	age := lifetime * 3 / 4
	ownKey := lifetime - max(time.Second, lifetime/16)
	if a := ownKey - followSlack; a < age {
		age = max(a, lifetime/4)
	}
	return age
}

// NextRotation returns when Rotate will add the next key to the set for
// servers whose session lifetime is lifetime: once the newest key is older
// than 3/4 of lifetime (libtls's own rekeying schedule), or, for lifetimes
// under 8s, early enough that the new key reaches the servers (within a
// second) before their Configs would add keys of their own (see
// Config.AddTicketKey): at 4s, a key every 2s. It returns the zero
// Time for a set without keys (a key is due now), and the far future for a
// lifetime <= 0 (no rotation).
func (s *TicketKeySet) NextRotation(lifetime time.Duration) time.Time {
	if len(s.Keys) == 0 {
		return time.Time{}
	}
	if lifetime <= 0 {
		return time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	return s.Keys[len(s.Keys)-1].Created.Add(rotationAge(lifetime))
}

// rotationDue reports whether Rotate would add a key at now (see
// NextRotation).
func (s *TicketKeySet) rotationDue(now time.Time, lifetime time.Duration) bool {
	if len(s.Keys) == 0 {
		return true
	}
	return lifetime > 0 && now.After(s.NextRotation(lifetime))
}

// Rotate adds a new random key (crypto/rand), revision max+1, created now,
// when the set has no key or now is after NextRotation (3/4 of lifetime
// after the newest key, earlier for lifetimes under 8s), then keeps the
// newest 4 keys, zeroing the dropped ones. It reports whether the set
// changed. lifetime is the servers' session lifetime; a lifetime <= 0 only
// adds a first key.
//
// Revisions run out at LocalTicketKeyRevBase-1 (after two billion
// rotations, or a hand-made file that starts high): Rotate then adds
// nothing, and RotateTicketKeySet and RotateTicketKeyFile report an error.
func (s *TicketKeySet) Rotate(now time.Time, lifetime time.Duration) bool {
	changed := false
	if s.rotationDue(now, lifetime) && !s.revsExhausted() {
		key, err := NewTicketKey()
		if err == nil { // crypto/rand does not fail since Go 1.24
			rev := uint32(1)
			if n := len(s.Keys); n > 0 {
				rev = s.Keys[n-1].Rev + 1
			}
			s.Keys = append(s.Keys, TicketKeyEntry{Rev: rev, Created: now.UTC(), Key: key})
			changed = true
		}
	}
	if drop := len(s.Keys) - maxTicketKeys; drop > 0 {
		for i := range s.Keys[:drop] {
			clear(s.Keys[i].Key)
		}
		s.Keys = append(s.Keys[:0], s.Keys[drop:]...)
		clear(s.Keys[len(s.Keys):cap(s.Keys)]) // no stale key references
		changed = true
	}
	return changed
}

// RotateTicketKeySet is the rotator's step on a set kept anywhere (a key
// file: RotateTicketKeyFile; etcd: package etcdkeys). With set nil (the
// store holds none yet) it returns a new set (NewTicketKeySet: a random
// session ID and key rev 1). Otherwise it validates set and rotates it in
// place (Rotate), never touching its session ID, and returns it. It
// reports whether the set changed, that is whether the caller must store
// it. lifetime is the servers' session lifetime, from MinSessionLifetime to
// MaxSessionLifetime.
//
// An invalid set is an error, and so is a key that is due when revisions
// are exhausted: the caller should leave the stored set as it is, since
// replacing it would change the fleet's session ID.
func RotateTicketKeySet(set *TicketKeySet, now time.Time, lifetime time.Duration) (*TicketKeySet, bool, error) {
	if lifetime < MinSessionLifetime || lifetime > MaxSessionLifetime {
		return nil, false, fmt.Errorf("libtls: rotate ticket keys: lifetime %v is outside %v to %v", lifetime, MinSessionLifetime, MaxSessionLifetime)
	}
	if set == nil {
		set, err := NewTicketKeySet()
		if err != nil {
			return nil, false, err
		}
		return set, true, nil
	}
	if err := set.validate(); err != nil {
		return nil, false, fmt.Errorf("libtls: rotate ticket keys: invalid set: %v", err)
	}
	if set.rotationDue(now, lifetime) && set.revsExhausted() {
		return nil, false, fmt.Errorf("libtls: rotate ticket keys: ticket key revisions exhausted (newest is %d); start a new set", set.Keys[len(set.Keys)-1].Rev)
	}
	return set, set.Rotate(now, lifetime), nil
}

func (s *TicketKeySet) revsExhausted() bool {
	n := len(s.Keys)
	return n > 0 && s.Keys[n-1].Rev >= LocalTicketKeyRevBase-1
}

// --- The key file -------------------------------------------------------------

// ticketKeyFileError is the error of a bad key file: what is wrong and where.
func ticketKeyFileError(path string, line int, format string, args ...any) error {
	return ticketKeySetError("ticket key file "+path, line, format, args...)
}

// ticketKeySetError is the error of a bad encoded set from src ("ticket key
// file PATH", "ticket key set"): what is wrong and where.
func ticketKeySetError(src string, line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		return fmt.Errorf("libtls: %s: line %d: %s", src, line, msg)
	}
	return fmt.Errorf("libtls: %s: %s", src, msg)
}

// MarshalText returns the set in the key file's text (version 1, see
// TicketKeySet), so that sets can be kept in stores other than files
// (package etcdkeys keeps them in etcd) and moved between them byte for
// byte. It refuses an invalid set. The text holds the keys in hex: zero it
// (clear) after use.
func (s *TicketKeySet) MarshalText() ([]byte, error) {
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("libtls: ticket key set: invalid set: %v", err)
	}
	return s.encode(), nil
}

// UnmarshalText replaces s with the set encoded in text, the key file's
// text (see TicketKeySet), validated as ReadTicketKeyFile validates a file;
// errors name the line. On success the keys s held before are zeroed; on
// failure s is unchanged. text is not retained: the caller may zero it.
func (s *TicketKeySet) UnmarshalText(text []byte) error {
	set, err := parseTicketKeySet("ticket key set", text)
	if err != nil {
		return err
	}
	s.Zero()
	*s = *set
	return nil
}

// ReadTicketKeyFile reads and validates a key file (see TicketKeySet for
// the format). It refuses anything but a regular file; a symlink unless it
// resolves inside its own directory (a secret volume); a file that is not
// owned by the effective user or has any group or world permission bit
// (for a secret volume's file: not owned by the effective user or root, or
// with more than group read); and any content that is not a valid version
// 1 set, with an error that says which. Zero the set when done.
func ReadTicketKeyFile(path string) (*TicketKeySet, error) {
	data, _, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	return parseTicketKeyFile(path, data)
}

// resolveSecretFile returns the file that path names: path itself when it
// is not a symlink (or does not exist: opening it reports that), otherwise
// the file its symlinks resolve to, which must lie inside path's directory
// (the layout of a secret volume, see TicketKeySet). linked reports the
// latter.
func resolveSecretFile(path string) (file string, linked bool, err error) {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		return path, false, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(abs))
	if err != nil {
		return "", false, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	target, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", false, fmt.Errorf("libtls: ticket key file %s: is a symlink that does not resolve: %w", path, err)
	}
	// Every link may go anywhere on the way, but the file read must live in
	// the directory tree of path, which whoever manages it controls.
	rel, err := filepath.Rel(dir, target)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", false, ticketKeyFileError(path, 0, "is a symlink to %s, outside its directory %s; refusing to follow it", target, dir)
	}
	return target, true, nil
}

// readSecretFile reads a small file that must be private to its owner (or,
// in a secret volume, to its owner and group; see ReadTicketKeyFile). It
// returns the data and the FileInfo of the file it read.
func readSecretFile(path string) ([]byte, os.FileInfo, error) {
	// A secret volume's manager may delete the directory the links
	// resolved to between resolving and opening (it has just swapped
	// ..data): resolve again, a bounded number of times.
	var (
		f      *os.File
		file   string
		linked bool
		err    error
	)
	for range 3 {
		if file, linked, err = resolveSecretFile(path); err != nil {
			return nil, nil, err
		}
		f, err = os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
		if !linked || !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, ticketKeyFileError(path, 0, "is a symlink; refusing to follow it")
		}
		return nil, nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, ticketKeyFileError(path, 0, "is not a regular file (%v)", fi.Mode().Type())
	}
	perm := fi.Mode().Perm()
	uid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = int(st.Uid)
	}
	if !linked {
		if perm&0o077 != 0 {
			return nil, nil, ticketKeyFileError(path, 0, "has mode %#o; it holds secret keys and must not be accessible by group or others (chmod 600)", perm)
		}
		if uid >= 0 && uid != os.Geteuid() {
			return nil, nil, ticketKeyFileError(path, 0, "is owned by uid %d, not by uid %d", uid, os.Geteuid())
		}
	} else {
		// A secret volume: written by its manager as root, shared with the
		// servers' group (fsGroup) at most for reading.
		if perm&0o037 != 0 {
			return nil, nil, ticketKeyFileError(path, 0, "resolves to %s with mode %#o; it holds secret keys: others must have no access and the group at most read (defaultMode 0400 or 0440)", file, perm)
		}
		if uid >= 0 && uid != os.Geteuid() && uid != 0 {
			return nil, nil, ticketKeyFileError(path, 0, "resolves to %s, owned by uid %d, neither uid %d nor root", file, uid, os.Geteuid())
		}
	}
	if fi.Size() > maxTicketKeyFileSize {
		return nil, nil, ticketKeyFileError(path, 0, "is %d bytes, too large for a key file", fi.Size())
	}
	buf := make([]byte, maxTicketKeyFileSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if n > maxTicketKeyFileSize {
		clear(buf)
		return nil, nil, ticketKeyFileError(path, 0, "is too large for a key file")
	}
	return buf[:n], fi, nil
}

// parseTicketKeyFile parses a version 1 key file.
func parseTicketKeyFile(path string, data []byte) (*TicketKeySet, error) {
	return parseTicketKeySet("ticket key file "+path, data)
}

// parseTicketKeySet parses a version 1 set read from src (which errors
// name). It works on data in place, so that the caller can zero every copy
// of the hex key material.
func parseTicketKeySet(src string, data []byte) (*TicketKeySet, error) {
	if len(data) == 0 {
		return nil, ticketKeySetError(src, 0, "is empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, ticketKeySetError(src, 0, "does not end with a newline (truncated?)")
	}
	lines := bytes.Split(data[:len(data)-1], []byte{'\n'})
	set := &TicketKeySet{}
	fail := func(line int, format string, args ...any) (*TicketKeySet, error) {
		set.Zero()
		return nil, ticketKeySetError(src, line, format, args...)
	}
	if string(lines[0]) != ticketKeyFileHeader {
		h := lines[0]
		if bytes.HasPrefix(h, []byte("golibtls-ticket-keys ")) {
			return fail(1, "unsupported version %q, this reader knows %q", h, ticketKeyFileHeader)
		}
		if len(h) > 40 {
			h = h[:40]
		}
		return fail(1, "not a golibtls ticket key file (first line %q, want %q)", h, ticketKeyFileHeader)
	}
	if len(lines) < 2 {
		return fail(0, "no session-id line")
	}
	f := bytes.Split(lines[1], []byte{' '})
	if len(f) != 2 || string(f[0]) != "session-id" {
		return fail(2, "want %q", "session-id <hex>")
	}
	id := make([]byte, hex.DecodedLen(len(f[1])))
	if _, err := hex.Decode(id, f[1]); err != nil || len(f[1])%2 != 0 {
		return fail(2, "session ID is not valid hex")
	}
	set.SessionID = id
	if n := len(id); n == 0 || n > MaxSessionIDLength {
		return fail(2, "session ID is %d bytes, want 1 to %d", n, MaxSessionIDLength)
	}
	if len(lines) == 2 {
		return fail(0, "no ticket keys")
	}
	for i, l := range lines[2:] {
		ln := i + 3
		f := bytes.Split(l, []byte{' '})
		if len(f) != 4 || string(f[0]) != "key" {
			return fail(ln, "want %q", "key <rev> <created> <hex key>")
		}
		rev, err := strconv.ParseUint(string(f[1]), 10, 32)
		if err != nil {
			return fail(ln, "bad revision %q", f[1])
		}
		created, err := time.Parse(time.RFC3339Nano, string(f[2]))
		if err != nil {
			return fail(ln, "bad creation time %q (want RFC 3339)", f[2])
		}
		if len(f[3]) != 2*TicketKeySize {
			return fail(ln, "ticket key rev %d is %d hex digits, want %d (%d bytes)", rev, len(f[3]), 2*TicketKeySize, TicketKeySize)
		}
		key := make([]byte, TicketKeySize)
		set.Keys = append(set.Keys, TicketKeyEntry{Rev: uint32(rev), Created: created, Key: key})
		if _, err := hex.Decode(key, f[3]); err != nil {
			return fail(ln, "ticket key rev %d is not valid hex", rev)
		}
		if len(set.Keys) > maxTicketKeys {
			return fail(ln, "more than %d ticket keys", maxTicketKeys)
		}
		if err := set.Keys[len(set.Keys)-1].validate(); err != nil {
			return fail(ln, "%v", err)
		}
		if n := len(set.Keys); n > 1 && set.Keys[n-1].Rev <= set.Keys[n-2].Rev {
			return fail(ln, "ticket key revisions not strictly increasing (rev %d after rev %d); keys go oldest first", rev, set.Keys[n-2].Rev)
		}
	}
	if err := set.validate(); err != nil { // belt and braces
		return fail(0, "%v", err)
	}
	return set, nil
}

// encode returns the version 1 file text of a valid set. Zero it after use.
func (s *TicketKeySet) encode() []byte {
	// Sized up front: growing would leave copies of the keys behind.
	size := len(ticketKeyFileHeader) + 1 + len("session-id ") + 2*len(s.SessionID) + 1
	for range s.Keys {
		size += len("key 4294967295 ") + len(time.RFC3339Nano) + 32 + 2*TicketKeySize + 1
	}
	b := make([]byte, 0, size)
	b = append(b, ticketKeyFileHeader+"\nsession-id "...)
	b = hex.AppendEncode(b, s.SessionID)
	b = append(b, '\n')
	for _, k := range s.Keys {
		b = append(b, "key "...)
		b = strconv.AppendUint(b, uint64(k.Rev), 10)
		b = append(b, ' ')
		b = k.Created.UTC().AppendFormat(b, time.RFC3339Nano)
		b = append(b, ' ')
		b = hex.AppendEncode(b, k.Key)
		b = append(b, '\n')
	}
	return b
}

// WriteTicketKeyFile writes set to path atomically: it writes a temporary
// file (mode 0600) in the same directory, fsyncs it, renames it over path
// and fsyncs the directory, so that readers see either the old file or the
// new one, also after a crash. The set is validated first. Writers should
// not race each other; RotateTicketKeyFile takes a lock for that.
func WriteTicketKeyFile(path string, set *TicketKeySet) error {
	return writeTicketKeyFile(path, set, os.Rename)
}

// CreateTicketKeyFile creates a new key file at path with a new set
// (NewTicketKeySet: a random session ID and key rev 1) and returns the set
// (zero it when done). It fails with an error wrapping fs.ErrExist if path
// exists, and never replaces a file: it takes the lock RotateTicketKeyFile
// takes and publishes the file with link(2), which fails rather than
// overwrite, so a rotator that creates the file at the same moment cannot
// have its set (and the fleet's session ID) replaced.
func CreateTicketKeyFile(path string) (*TicketKeySet, error) {
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	set, err := NewTicketKeySet()
	if err != nil {
		return nil, err
	}
	if err := writeTicketKeyFile(path, set, os.Link); err != nil {
		set.Zero()
		return nil, err
	}
	return set, nil
}

// writeTicketKeyFile writes set to a temporary file beside path and
// publishes it with publish (os.Rename to replace, os.Link to create only).
func writeTicketKeyFile(path string, set *TicketKeySet, publish func(oldpath, newpath string) error) error {
	if err := set.validate(); err != nil {
		return fmt.Errorf("libtls: ticket key file %s: invalid set: %v", path, err)
	}
	data := set.encode()
	defer clear(data)
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	// After a rename the temporary name is gone; after a link (or a
	// failure) it is removed.
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	// CreateTemp uses 0600, but make sure of it whatever the umask or ACLs.
	if err := tmp.Chmod(0o600); err != nil {
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if err := publish(tmp.Name(), path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			err = &os.PathError{Op: le.Op, Path: path, Err: le.Err} // name the key file, not the temporary
		}
		return fmt.Errorf("libtls: ticket key file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("libtls: ticket key file: sync directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("libtls: ticket key file: sync directory: %w", err)
	}
	return nil
}

// RotateTicketKeyFile is one step of the fleet's rotator. With path
// missing it creates a new set (NewTicketKeySet: a random session ID and key
// rev 1); otherwise it reads the set, rotates it for lifetime (see
// Rotate) and writes it back if that changed it. It returns the current set
// (zero it when done) and whether the file changed. lifetime is the
// servers' session lifetime, from MinSessionLifetime to MaxSessionLifetime.
//
// An exclusive flock on path+".lock" (created beside it, mode 0600, never
// removed) is held throughout, so rotators in several processes or
// goroutines never interleave. A file that exists but is invalid is an
// error and is left as it is: replacing it would change the fleet's session
// ID.
func RotateTicketKeyFile(path string, lifetime time.Duration) (*TicketKeySet, bool, error) {
	if lifetime < MinSessionLifetime || lifetime > MaxSessionLifetime {
		return nil, false, fmt.Errorf("libtls: rotate ticket key file %s: lifetime %v is outside %v to %v", path, lifetime, MinSessionLifetime, MaxSessionLifetime)
	}
	unlock, err := lockFile(path + ".lock")
	if err != nil {
		return nil, false, err
	}
	defer unlock()

	var set *TicketKeySet
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// RotateTicketKeySet creates a set.
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		// Rewriting would replace the link (a secret volume's) by a file.
		return nil, false, ticketKeyFileError(path, 0, "is a symlink; the rotator writes only regular files")
	default:
		if set, err = ReadTicketKeyFile(path); err != nil {
			return nil, false, err
		}
	}
	now := time.Now()
	if set != nil && set.rotationDue(now, lifetime) && set.revsExhausted() {
		set.Zero()
		return nil, false, ticketKeyFileError(path, 0, "ticket key revisions exhausted (newest is %d); create a new key file", set.Keys[len(set.Keys)-1].Rev)
	}
	rotated, changed, err := RotateTicketKeySet(set, now, lifetime)
	if err != nil {
		set.Zero()
		return nil, false, err
	}
	set = rotated
	if !changed {
		return set, false, nil
	}
	if err := WriteTicketKeyFile(path, set); err != nil {
		set.Zero()
		return nil, false, err
	}
	return set, true, nil
}

// lockFile takes an exclusive flock on path, creating it (0600) if needed.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("libtls: ticket key lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("libtls: ticket key lock file %s: flock: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// TicketKeyRotator runs RotateTicketKeyFile on a schedule. Exactly one
// process of a fleet should run it (the file lock makes a second one
// harmless, not useful).
type TicketKeyRotator struct {
	// Path is the key file.
	Path string
	// Lifetime is the servers' session lifetime (SetSessionLifetime).
	Lifetime time.Duration
	// Interval is how often to check; 0 means Lifetime/16, so that a new
	// key is in the file well before servers fall back to keys of their
	// own (at 15/16 of the lifetime).
	Interval time.Duration
	// OnError, if set, receives every failed rotation and Run carries on;
	// if nil, Run returns the first error.
	OnError func(error)
}

// Run rotates the key file now, then every Interval, until ctx is done; it
// then returns ctx.Err(). See OnError for failures.
func (r *TicketKeyRotator) Run(ctx context.Context) error {
	if r.Lifetime < MinSessionLifetime || r.Lifetime > MaxSessionLifetime {
		return fmt.Errorf("libtls: ticket key rotator: lifetime %v is outside %v to %v", r.Lifetime, MinSessionLifetime, MaxSessionLifetime)
	}
	interval := r.Interval
	if interval <= 0 {
		interval = r.Lifetime / 16
	}
	rotate := func() error {
		set, _, err := RotateTicketKeyFile(r.Path, r.Lifetime)
		set.Zero()
		if err != nil && r.OnError != nil {
			r.OnError(err)
			return nil
		}
		return err
	}
	if err := rotate(); err != nil {
		return err
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			if err := rotate(); err != nil {
				return err
			}
		}
	}
}

// --- Applying a set to a server's Config -------------------------------------

// ApplyTicketKeySet applies a fleet's set to a server's Config: it sets the
// session ID (SetSessionID) and adds the keys (AddTicketKey) oldest first,
// skipping every revision at or below the newest revision already added by
// hand (by AddTicketKey or an earlier ApplyTicketKeySet) to this Config:
// libtls encrypts with the key added last, so an older revision is never
// re-added. Applying the same set again is therefore a no-op, and after a
// rotation only the new key is added.
//
// The Config's lock is held for the whole call, so handshakes see the
// Config before or after it, never in between. A key whose revision the
// Config still holds with different bytes (a re-created key file) is
// refused before anything changes. A failure reports the revision concerned.
//
// libtls copies the session ID into a server when it is created (NewServer,
// Listen), so apply the set before that; later ID changes reach only servers
// created afterwards. Keys reach running servers at once. Servers resume
// each other's sessions only on LibreSSL (see Backend and TicketKeySet).
func (cfg *Config) ApplyTicketKeySet(set *TicketKeySet) error {
	const op = "tls_config_add_ticket_key"
	if err := set.validate(); err != nil {
		return &ConfigError{Op: op, Msg: "invalid ticket key set: " + err.Error(), Err: errInvalid}
	}
	var ferr error
	err := cfg.call(op, func(c *C.struct_tls_config) C.int {
		ferr = cfg.applyTicketKeySetLocked(c, set)
		if ferr != nil {
			return -1
		}
		return 0
	})
	if ferr != nil {
		return ferr
	}
	return err
}

// applyTicketKeySetLocked does ApplyTicketKeySet's work with cfg.mu held
// for writing.
func (cfg *Config) applyTicketKeySetLocked(c *C.struct_tls_config, set *TicketKeySet) error {
	const op = "tls_config_add_ticket_key"
	ts := &cfg.session.tickets
	for _, k := range set.Keys {
		for _, held := range ts.keys {
			if !held.local && held.rev == k.Rev && held.sum != sha256.Sum256(k.Key) {
				return &ConfigError{Op: op, Msg: fmt.Sprintf("ticket key rev %d differs from the key this Config already holds as rev %d (was the key file re-created?)", k.Rev, k.Rev), Err: errInvalid}
			}
		}
	}
	if !bytes.Equal(cfg.session.id, set.SessionID) {
		p, n := bytesPtr(set.SessionID)
		if C.tls_config_set_session_id(c, p, n) != 0 {
			return cfg.lastError("tls_config_set_session_id")
		}
		cfg.session.id = bytes.Clone(set.SessionID)
	}
	now := time.Unix(libtlsNow(), 0) // the clock libtls expires keys by
	for i, k := range set.Keys {
		if k.Rev <= ts.handRev {
			continue
		}
		// libtls dates a key from when it is added, not from when the
		// rotator made it: a process starting late would give keys the
		// fleet has retired a fresh lifetime. Such keys are left out
		// (the newest is always applied, so the fleet keeps one key).
		if life := cfg.session.lifetime; life > 0 && i < len(set.Keys)-1 && !k.Created.Add(life).After(now) {
			continue
		}
		if cfg.addTicketKeyLocked(c, k.Rev, k.Key, false) != 0 {
			err := cfg.lastError(op).(*ConfigError)
			err.Msg = fmt.Sprintf("ticket key rev %d: %s", k.Rev, err.Msg)
			return err
		}
	}
	return nil
}

// --- Following the key file ---------------------------------------------------

// TicketKeyFollower keeps a server's Config in step with a key file; see
// FollowTicketKeyFile.
type TicketKeyFollower struct {
	cfg      *Config
	path     string
	interval time.Duration
	id       []byte // the session ID applied first

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu   sync.Mutex
	err  error
	last fileStamp
}

// fileStamp identifies a version of a file cheaply.
// The mode and owner are part of it so that loosened permissions are seen.
type fileStamp struct {
	dev, ino uint64
	uid      uint32
	mode     os.FileMode
	size     int64
	mtime    time.Time
}

func stampOf(fi os.FileInfo) fileStamp {
	s := fileStamp{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino, s.uid = uint64(st.Dev), uint64(st.Ino), st.Uid
	}
	return s
}

// FollowTicketKeyFile applies the key file at path to cfg
// (ApplyTicketKeySet) once, synchronously, and returns its error if that
// fails. It then re-reads the file whenever it changes (checked every
// interval) and applies the new keys, until Close. Call it before NewServer
// or Listen: libtls copies the session ID into the server when it is
// created. Close the follower before the Config.
//
// path may be a symlink into a secret volume (see TicketKeySet): a change
// is the file the links resolve to changing, so the volume's swap of its
// ..data link is seen, and so is the deletion of the old target. Keep
// interval short next to the lifetime (a second at most; a new key should
// reach every server within about a second, see NextRotation).
//
// Failed polls are kept (Err) and retried at the next interval; the Config
// keeps the keys it has, and the binding adds keys of its own before they
// expire (see AddTicketKey), so servers keep accepting handshakes, only
// without cross-server resumption. A file whose session ID differs from the
// one applied first is refused (Err): running servers cannot change theirs.
//
// On LibreTLS the keys and ID are applied too, but servers never resume
// sessions there (Backend().ServerSessionResumption is false).
func FollowTicketKeyFile(cfg *Config, path string, interval time.Duration) (*TicketKeyFollower, error) {
	if cfg == nil {
		return nil, errors.New("libtls: follow ticket key file: nil Config")
	}
	if interval <= 0 {
		return nil, fmt.Errorf("libtls: follow ticket key file: interval %v is not positive", interval)
	}
	f := &TicketKeyFollower{cfg: cfg, path: path, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	set, stamp, err := f.read()
	if err != nil {
		return nil, err
	}
	defer set.Zero()
	if err := cfg.ApplyTicketKeySet(set); err != nil {
		return nil, err
	}
	f.id, f.last = bytes.Clone(set.SessionID), stamp
	go f.run()
	return f, nil
}

// read reads the file and returns its set and the stamp of the file read
// (taken before reading it: a change after that is seen at the next poll).
func (f *TicketKeyFollower) read() (*TicketKeySet, fileStamp, error) {
	data, fi, err := readSecretFile(f.path)
	if err != nil {
		return nil, fileStamp{}, err
	}
	defer clear(data)
	set, err := parseTicketKeyFile(f.path, data)
	return set, stampOf(fi), err
}

// stamp returns the stamp of the file path names now: for a symlink into
// a secret volume, of the file it resolves to, which changes when the
// volume's ..data link is swapped even though path's own link does not.
func (f *TicketKeyFollower) stamp() (fileStamp, bool) {
	file, _, err := resolveSecretFile(f.path)
	if err != nil {
		return fileStamp{}, false
	}
	fi, err := os.Lstat(file)
	if err != nil {
		return fileStamp{}, false
	}
	return stampOf(fi), true
}

func (f *TicketKeyFollower) run() {
	defer close(f.done)
	t := time.NewTicker(f.interval)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			f.poll()
		}
	}
}

func (f *TicketKeyFollower) poll() {
	f.mu.Lock()
	last, lastErr := f.last, f.err
	f.mu.Unlock()
	if st, ok := f.stamp(); ok && lastErr == nil && st == last {
		return
	}
	set, stamp, err := f.read()
	if err == nil {
		if !bytes.Equal(set.SessionID, f.id) {
			err = ticketKeyFileError(f.path, 0, "the session ID changed; running servers keep theirs, so restart them to use the new file")
		} else {
			err = f.cfg.ApplyTicketKeySet(set)
		}
		set.Zero()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	if err == nil {
		f.last = stamp
	}
}

// Err returns the error of the last poll, or nil if it succeeded (or found
// the file unchanged).
func (f *TicketKeyFollower) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Close stops following the file and waits for a poll in progress. It is
// idempotent and returns nil.
func (f *TicketKeyFollower) Close() error {
	f.closeOnce.Do(func() { close(f.stop) })
	<-f.done
	return nil
}
