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
//     session lifetime, keeping the newest 4;
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
// The file holds secrets: readers refuse it when it is a symlink, is not a
// regular file, is not owned by the effective user, or has any group or
// world permission bit.
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

// rotationDue reports whether Rotate would add a key: when there is none,
// or when the newest is older than 3/4 of lifetime (libtls's own rekeying
// schedule). A lifetime <= 0 only asks for a first key.
func (s *TicketKeySet) rotationDue(now time.Time, lifetime time.Duration) bool {
	if len(s.Keys) == 0 {
		return true
	}
	if lifetime <= 0 {
		return false
	}
	return now.Sub(s.Keys[len(s.Keys)-1].Created) > lifetime*3/4
}

// Rotate adds a new random key (crypto/rand), revision max+1, created now,
// when the set has no key or its newest key is older than 3/4 of lifetime,
// then keeps the newest 4 keys, zeroing the dropped ones. It reports whether
// the set changed. lifetime is the servers' session lifetime; a lifetime <= 0
// only adds a first key.
//
// Revisions run out at LocalTicketKeyRevBase-1 (after two billion
// rotations, or a hand-made file that starts high): Rotate then adds
// nothing, and RotateTicketKeyFile reports an error.
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

func (s *TicketKeySet) revsExhausted() bool {
	n := len(s.Keys)
	return n > 0 && s.Keys[n-1].Rev >= LocalTicketKeyRevBase-1
}

// --- The key file -------------------------------------------------------------

// ticketKeyFileError is the error of a bad key file: what is wrong and where.
func ticketKeyFileError(path string, line int, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if line > 0 {
		return fmt.Errorf("libtls: ticket key file %s: line %d: %s", path, line, msg)
	}
	return fmt.Errorf("libtls: ticket key file %s: %s", path, msg)
}

// ReadTicketKeyFile reads and validates a key file (see TicketKeySet for
// the format). It refuses a symlink, anything but a regular file, a file not
// owned by the effective user or with any group or world permission bit, and
// any content that is not a valid version 1 set, with an error that says
// which. Zero the set when done.
func ReadTicketKeyFile(path string) (*TicketKeySet, error) {
	data, err := readSecretFile(path)
	if err != nil {
		return nil, err
	}
	defer clear(data)
	return parseTicketKeyFile(path, data)
}

// readSecretFile reads a small file that must be private to its owner.
func readSecretFile(path string) ([]byte, error) {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return nil, ticketKeyFileError(path, 0, "is a symlink; refusing to follow it")
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, ticketKeyFileError(path, 0, "is a symlink; refusing to follow it")
		}
		return nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, ticketKeyFileError(path, 0, "is not a regular file (%v)", fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, ticketKeyFileError(path, 0, "has mode %#o; it holds secret keys and must not be accessible by group or others (chmod 600)", perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, ticketKeyFileError(path, 0, "is owned by uid %d, not by uid %d", st.Uid, os.Geteuid())
	}
	if fi.Size() > maxTicketKeyFileSize {
		return nil, ticketKeyFileError(path, 0, "is %d bytes, too large for a key file", fi.Size())
	}
	buf := make([]byte, maxTicketKeyFileSize+1)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		clear(buf)
		return nil, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	if n > maxTicketKeyFileSize {
		clear(buf)
		return nil, ticketKeyFileError(path, 0, "is too large for a key file")
	}
	return buf[:n], nil
}

// parseTicketKeyFile parses a version 1 key file. It works on data in
// place, so that the caller can zero every copy of the hex key material.
func parseTicketKeyFile(path string, data []byte) (*TicketKeySet, error) {
	if len(data) == 0 {
		return nil, ticketKeyFileError(path, 0, "is empty")
	}
	if data[len(data)-1] != '\n' {
		return nil, ticketKeyFileError(path, 0, "does not end with a newline (truncated?)")
	}
	lines := bytes.Split(data[:len(data)-1], []byte{'\n'})
	set := &TicketKeySet{}
	fail := func(line int, format string, args ...any) (*TicketKeySet, error) {
		set.Zero()
		return nil, ticketKeyFileError(path, line, format, args...)
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

	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		set, err := NewTicketKeySet()
		if err != nil {
			return nil, false, err
		}
		if err := WriteTicketKeyFile(path, set); err != nil {
			set.Zero()
			return nil, false, err
		}
		return set, true, nil
	}
	set, err := ReadTicketKeyFile(path)
	if err != nil {
		return nil, false, err
	}
	now := time.Now()
	if set.rotationDue(now, lifetime) && set.revsExhausted() {
		set.Zero()
		return nil, false, ticketKeyFileError(path, 0, "ticket key revisions exhausted (newest is %d); create a new key file", set.Keys[len(set.Keys)-1].Rev)
	}
	if !set.Rotate(now, lifetime) {
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

// read stats then reads the file: a change after the stat is seen at the
// next poll.
func (f *TicketKeyFollower) read() (*TicketKeySet, fileStamp, error) {
	fi, err := os.Lstat(f.path)
	if err != nil {
		return nil, fileStamp{}, fmt.Errorf("libtls: ticket key file: %w", err)
	}
	set, err := ReadTicketKeyFile(f.path)
	return set, stampOf(fi), err
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
	if fi, err := os.Lstat(f.path); err == nil && lastErr == nil && stampOf(fi) == last {
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
