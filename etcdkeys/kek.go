package etcdkeys

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	libtls "github.com/golibtls/libtls"
)

// KEKSize is the size of a key-encryption key: 32 bytes, for AES-256.
const KEKSize = 32

// sealedHeader is the first line of a sealed value.
const sealedHeader = "golibtls-sealed-ticket-keys 1"

// ErrWrongKEK is the problem of a stored value that the reader's KEK does
// not fit: sealed while the reader has no KEK, sealed with another KEK, or
// in clear while the reader has a KEK (and so takes sealed values only).
var ErrWrongKEK = errors.New("wrong KEK")

// KEK is a key-encryption key. With one, Rotators seal the set they store
// and Followers unseal it, so that the ticket keys neither travel nor rest
// in clear: not on the wire to etcd, not in etcd's data, its snapshots and
// backups, nor in the history of the key, where every retired value stays
// until etcd compacts it. Everyone who can read the key but lacks the KEK
// sees only the KEK's ID.
//
// Sealing is AES-256-GCM with a random 96-bit nonce per value and the etcd
// key's name as additional data, so a sealed value copied to another key
// does not open. The value is text:
//
//	golibtls-sealed-ticket-keys 1
//	kek <ID: 16 hex digits>
//	sealed <base64 (standard, padded) of the nonce, then the ciphertext and tag>
//
// where the plaintext is the key file text of the set
// (libtls.TicketKeySet.MarshalText). The ID is the first 8 bytes of
// HMAC-SHA256(KEK, "golibtls KEK ID"): it tells KEKs apart in errors and
// logs and reveals nothing of the key.
//
// Every Rotator and every Follower of a key must use the same KEK. A
// Follower with a KEK refuses a set stored in clear, so that whoever can
// write the key but lacks the KEK cannot hand servers ticket keys of their
// choosing; a Rotator with a KEK that finds a set in clear seals it at once,
// which is how a fleet moves to sealed keys (see docs/fleet.md).
//
// A KEK is safe for concurrent use. It keeps only the AES key schedule
// (inside crypto/aes, which cannot be zeroed) and the ID.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// NewKEK returns a KEK made of key, KEKSize random bytes (never a password:
// nothing stretches it). It refuses any other size and a key of zeros; the
// caller keeps key and should zero it.
func NewKEK(key []byte) (*KEK, error) {
	if len(key) != KEKSize {
		return nil, fmt.Errorf("etcdkeys: a KEK is %d random bytes, not %d", KEKSize, len(key))
	}
	var zero [KEKSize]byte
	if bytes.Equal(key, zero[:]) {
		return nil, errors.New("etcdkeys: the KEK is all zeros; make it from random bytes")
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("etcdkeys: KEK: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("etcdkeys: KEK: %w", err)
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("golibtls KEK ID"))
	sum := mac.Sum(nil)
	return &KEK{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// ReadKEKFile reads a KEK from a file of exactly KEKSize bytes, such as
// one made with
//
//	(umask 077; head -c 32 /dev/urandom > kek)
//
// The file must be a regular file owned by the effective user with no
// group or world permission bit (mode 0600 or 0400); anything else is
// refused with an error that says what is wrong, and a file of another
// size (hex text, for one) is refused too.
func ReadKEKFile(path string) (*KEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("etcdkeys: KEK file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("etcdkeys: KEK file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("etcdkeys: KEK file %s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("etcdkeys: KEK file %s has mode %#o; it holds a secret key and must not be accessible by group or others (chmod 600)", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("etcdkeys: KEK file %s is owned by uid %d, not by uid %d", path, st.Uid, os.Geteuid())
	}
	if fi.Size() != KEKSize {
		return nil, fmt.Errorf("etcdkeys: KEK file %s is %d bytes; a KEK is %d random bytes (head -c %d /dev/urandom), not text", path, fi.Size(), KEKSize, KEKSize)
	}
	var key [KEKSize + 1]byte // one more, to see a file that grew
	defer clear(key[:])
	n, err := io.ReadFull(f, key[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("etcdkeys: KEK file %s: %w", path, err)
	}
	if n != KEKSize {
		return nil, fmt.Errorf("etcdkeys: KEK file %s: read %d bytes, want %d", path, n, KEKSize)
	}
	k, err := NewKEK(key[:KEKSize])
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// ID returns the KEK's ID, 16 hex digits (see KEK).
func (k *KEK) ID() string { return k.id }

// seal returns the sealed value of plain, a set's text, for the etcd key
// name.
func (k *KEK) seal(name string, plain []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ct := k.aead.Seal(nonce, nonce, plain, []byte(name))
	b := make([]byte, 0, len(sealedHeader)+len("\nkek \nsealed \n")+len(k.id)+base64.StdEncoding.EncodedLen(len(ct)))
	b = append(b, sealedHeader+"\nkek "+k.id+"\nsealed "...)
	b = base64.StdEncoding.AppendEncode(b, ct)
	return append(b, '\n'), nil
}

// sealedValue is a sealed value, parsed.
type sealedValue struct {
	kek string // the ID
	ct  []byte // nonce, ciphertext and tag
}

// isSealed reports whether value is a sealed value (well formed or not).
func isSealed(value []byte) bool {
	return bytes.HasPrefix(value, []byte(sealedHeader+"\n"))
}

// parseSealed parses a sealed value.
func parseSealed(value []byte) (*sealedValue, error) {
	lines := bytes.Split(value, []byte{'\n'})
	if len(lines) != 4 || len(lines[3]) != 0 {
		return nil, fmt.Errorf("sealed value: want 3 lines ending in a newline")
	}
	id, ok := bytes.CutPrefix(lines[1], []byte("kek "))
	if !ok || len(id) != 16 {
		return nil, fmt.Errorf("sealed value: line 2: want %q", "kek <16 hex digits>")
	}
	if _, err := hex.DecodeString(string(id)); err != nil {
		return nil, fmt.Errorf("sealed value: line 2: KEK ID is not hex")
	}
	b64, ok := bytes.CutPrefix(lines[2], []byte("sealed "))
	if !ok {
		return nil, fmt.Errorf("sealed value: line 3: want %q", "sealed <base64>")
	}
	ct, err := base64.StdEncoding.AppendDecode(nil, b64)
	if err != nil {
		return nil, fmt.Errorf("sealed value: line 3: %v", err)
	}
	return &sealedValue{kek: string(id), ct: ct}, nil
}

// open unseals s, stored under the etcd key name. Zero the result.
func (k *KEK) open(name string, s *sealedValue) ([]byte, error) {
	ns := k.aead.NonceSize()
	if len(s.ct) < ns+k.aead.Overhead() {
		return nil, errors.New("sealed value: too short")
	}
	return k.aead.Open(nil, s.ct[:ns], s.ct[ns:], []byte(name))
}

// DecodeSet returns the set in value, as stored under the etcd key: a key
// file's text (sealed false), or a sealed one, which needs kek. It zeroes
// value; zero the set when done. With EncodeSet, it is how a program moves
// a sealed set between etcd and a key file (libtls.ReadTicketKeyFile,
// libtls.WriteTicketKeyFile) without the keys passing through etcd in
// clear.
func DecodeSet(key string, value []byte, kek *KEK) (set *libtls.TicketKeySet, sealed bool, err error) {
	return decodeSet(key, 0, value, kek)
}

// EncodeSet returns the value to store under the etcd key for set: its
// key file text, sealed with kek unless kek is nil (what a Rotator stores).
// Zero the value when done if it is in clear.
func EncodeSet(key string, set *libtls.TicketKeySet, kek *KEK) ([]byte, error) {
	text, err := set.MarshalText()
	if err != nil || kek == nil {
		return text, err
	}
	defer clear(text)
	return kek.seal(key, text)
}

// decodeSet returns the set stored in value (revision rev of key), which is
// a key file's text or, sealed, needs kek; it zeroes value. sealed reports
// which. A value in clear is returned even when kek is set (a Rotator
// seals it); Followers refuse it.
func decodeSet(key string, rev int64, value []byte, kek *KEK) (set *libtls.TicketKeySet, sealed bool, err error) {
	if !isSealed(value) {
		set, err = parseSet(key, rev, value)
		return set, false, err
	}
	defer clear(value)
	s, err := parseSealed(value)
	if err != nil {
		return nil, true, fmt.Errorf("etcdkeys: %s: %w", at(key, rev), err)
	}
	switch {
	case kek == nil:
		return nil, true, fmt.Errorf("etcdkeys: %s is sealed with KEK %s and there is no KEK here: %w", at(key, rev), s.kek, ErrWrongKEK)
	case s.kek != kek.id:
		return nil, true, fmt.Errorf("etcdkeys: %s is sealed with KEK %s, not with this KEK (%s): %w", at(key, rev), s.kek, kek.id, ErrWrongKEK)
	}
	plain, err := kek.open(key, s)
	if err != nil {
		return nil, true, fmt.Errorf("etcdkeys: %s does not unseal with KEK %s: altered, or copied from another key", at(key, rev), kek.id)
	}
	set, err = parseSet(key, rev, plain) // zeroes plain
	return set, true, err
}
