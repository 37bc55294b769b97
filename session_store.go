package libtls

/*
#include <tls.h>
*/
import "C"

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"os"
	"sync/atomic"
	"syscall"
)

// sessionKey names what a stored client session may be offered to: one
// server name at one address, under one trust (clientSettings.trust). A
// session is offered only to a connection with the same key, so it never
// crosses Configs that verify servers differently or present other client
// certificates, and is never offered to another server name (whose
// certificate libtls would then check against the session's, and fail).
type sessionKey [sha256.Size]byte

func sessionKeyFor(serverName, addr string, trust [sha256.Size]byte) sessionKey {
	h := sha256.New()
	h.Write([]byte("golibtls session\x00"))
	h.Write([]byte(serverName))
	h.Write([]byte{0})
	h.Write([]byte(addr))
	h.Write([]byte{0})
	h.Write(trust[:])
	var k sessionKey
	h.Sum(k[:0])
	return k
}

func (k sessionKey) String() string { return hex.EncodeToString(k[:]) }

// sessionStore keeps client sessions between connections, in libtls's own
// format (the PEM "SSL SESSION PARAMETERS" libtls writes to its session
// file). The binding moves them between a store and the private session
// file of the handshake's pool member (clientMember).
type sessionStore interface {
	// load appends the session stored under key to dst and returns it;
	// nothing is appended when there is none. A wait for the store ends
	// with ctx or when closing is closed.
	load(ctx context.Context, closing <-chan struct{}, key sessionKey, dst []byte) ([]byte, error)
	// save stores the session libtls wrote at the end of a handshake
	// (empty: libtls had none, and the store forgets what it had).
	save(key sessionKey, pem []byte) error
	// discard forgets the session under key if it is still pem, which
	// libtls refused.
	discard(key sessionKey, pem []byte) error
}

// --- A plain session file ----------------------------------------------------

// fileSessionStore is a Config's session file (SetSessionFile,
// SetSessionFD): libtls's meaning, one session whose latest write wins.
// After the PEM that libtls wrote, the binding adds one line naming the
// session's key:
//
//	golibtls-session-key: <64 hex digits>
//
// libtls (and OpenSSL's PEM reader) ignore text after the PEM block, so
// the file stays a libtls session file. A session is offered only to a
// connection with that key; a file without the line (written by C libtls,
// or by a version of the binding before it) is offered to none, and the
// first handshake rewrites it.
//
// The binding reads and writes the file itself, under the process-wide
// lock of the file (lockSessionFile), only for the moment of the copy:
// handshakes on one file run in parallel.
type fileSessionStore struct {
	f  *os.File // nil for SetSessionFD
	fd int
	// id is the file's identity, the key of its lock, taken once when it
	// is set (an fstat per handshake saved; libtls keeps the descriptor
	// on one file as long as it is set).
	id fileID
	// retired is set when the Config moves to another file: from then
	// on the descriptor, which its owner may close and reuse, is never
	// touched again.
	retired atomic.Bool
	// size is the file's length when the binding last read or wrote it
	// (under the file's lock): a save as long or longer needs no
	// ftruncate. Should another process have lengthened the file since,
	// its tail stays after the key line, where readers (libtls's PEM
	// reader, splitSessionFile) never look.
	size int
}

const sessionKeyLine = "golibtls-session-key: "

// pemEnd is the last line libtls writes.
var pemEnd = []byte("-----END SSL SESSION PARAMETERS-----\n")

// splitSessionFile returns the PEM part of a session file's content and
// the key its trailing line names (ok false without one).
func splitSessionFile(b []byte) (pem []byte, key sessionKey, ok bool) {
	i := bytes.Index(b, pemEnd)
	if i < 0 {
		return b, key, false
	}
	pem, rest := b[:i+len(pemEnd)], b[i+len(pemEnd):]
	line, _, found := bytes.Cut(rest, []byte("\n"))
	if !found || !bytes.HasPrefix(line, []byte(sessionKeyLine)) {
		return pem, key, false
	}
	n, err := hex.Decode(key[:], line[len(sessionKeyLine):])
	if err != nil || n != len(key) || len(line) != len(sessionKeyLine)+2*len(key) {
		return pem, key, false
	}
	return pem, key, true
}

func (s *fileSessionStore) lock(ctx context.Context, closing <-chan struct{}) (func(), error) {
	if s.retired.Load() {
		return nil, nil
	}
	unlock, err := lockSessionFileID(ctx, closing, s.id)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &Error{Op: "session", Msg: "session file: " + pe.Err.Error(), Err: pe.Err}
		}
		return nil, err
	}
	if s.retired.Load() {
		unlock()
		return nil, nil
	}
	return unlock, nil
}

// readAll reads the whole file into dst (reusing its capacity).
func (s *fileSessionStore) readAll(dst []byte) ([]byte, error) {
	return preadAll(s.fd, dst)
}

func (s *fileSessionStore) load(ctx context.Context, closing <-chan struct{}, key sessionKey, dst []byte) ([]byte, error) {
	unlock, err := s.lock(ctx, closing)
	if unlock == nil {
		return dst, err
	}
	defer unlock()
	start := len(dst)
	b, err := s.readAll(dst)
	if err != nil {
		return dst, &Error{Op: "session", Msg: "failed to read session file: " + err.Error(), Err: err}
	}
	s.size = len(b) - start
	pem, k, ok := splitSessionFile(b[start:])
	if !ok || k != key {
		clear(b[start:])
		return b[:start], nil
	}
	return b[:start+len(pem)], nil
}

func (s *fileSessionStore) save(key sessionKey, pem []byte) error {
	unlock, err := s.lock(context.Background(), nil)
	if unlock == nil {
		return err
	}
	defer unlock()
	if len(pem) == 0 {
		s.size = 0
		return ftruncate(s.fd, 0)
	}
	// One write of the session and its key, then the length: a crash in
	// between leaves the new session followed by old bytes, which
	// splitSessionFile still reads (the key line ends at its newline).
	b := make([]byte, 0, len(pem)+len(sessionKeyLine)+2*len(key)+1)
	b = append(b, pem...)
	b = append(b, sessionKeyLine...)
	b = hex.AppendEncode(b, key[:])
	b = append(b, '\n')
	defer clear(b)
	if err := pwriteAll(s.fd, b); err != nil {
		return err
	}
	if len(b) >= s.size {
		s.size = len(b)
		return nil
	}
	s.size = len(b)
	return ftruncate(s.fd, int64(len(b)))
}

func (s *fileSessionStore) discard(key sessionKey, pem []byte) error {
	unlock, err := s.lock(context.Background(), nil)
	if unlock == nil {
		return err
	}
	defer unlock()
	b, err := s.readAll(nil)
	defer clear(b)
	if err != nil {
		return err
	}
	s.size = len(b)
	cur, k, ok := splitSessionFile(b)
	if ok && k == key && bytes.Equal(cur, pem) {
		s.size = 0
		return ftruncate(s.fd, 0)
	}
	return nil
}

// retire stops all use of the descriptor, waiting for a copy in progress.
func (s *fileSessionStore) retire() {
	if unlock, _ := lockSessionFileID(context.Background(), nil, s.id); unlock != nil {
		s.retired.Store(true)
		unlock()
		return
	}
	s.retired.Store(true)
}

// --- File helpers ---------------------------------------------------------------

// maxSessionSize bounds what the binding reads as a session: libtls's PEM
// sessions are a few KiB (a ticket, a peer certificate chain).
const maxSessionSize = 1 << 20

// preadAll appends the content of the file behind fd, read from offset 0,
// to dst. A read shorter than asked is the end of a regular file, so a
// session usually costs one pread.
func preadAll(fd int, dst []byte) ([]byte, error) {
	start := len(dst)
	for {
		if cap(dst)-len(dst) < 4096 {
			grown := make([]byte, len(dst), 2*cap(dst)+4096)
			copy(grown, dst)
			clear(dst[start:]) // the old array held session bytes
			dst = grown
		}
		want := cap(dst) - len(dst)
		n, err := syscall.Pread(fd, dst[len(dst):cap(dst)], int64(len(dst)-start))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return dst, os.NewSyscallError("pread", err)
		}
		dst = dst[:len(dst)+n]
		if len(dst)-start > maxSessionSize {
			return dst, fmt.Errorf("session larger than %d bytes", maxSessionSize)
		}
		if n < want {
			return dst, nil
		}
	}
}

// pwriteAll writes b at offset 0 of the file behind fd.
func pwriteAll(fd int, b []byte) error {
	for off := 0; off < len(b); {
		n, err := syscall.Pwrite(fd, b[off:], int64(off))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("pwrite", err)
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		off += n
	}
	return nil
}

func ftruncate(fd int, n int64) error {
	for {
		err := syscall.Ftruncate(fd, n)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("ftruncate", err)
		}
		return nil
	}
}

// --- A member's private session file ------------------------------------------------

// useSessions gives the member its private session file, the first time a
// handshake with a session store runs on it.
func (m *clientMember) useSessions() error {
	if m.sess != nil {
		return nil
	}
	f, _, err := newAnonymousFile("golibtls-client-session")
	if err != nil {
		return &Error{Op: "connect", Msg: "session file: " + err.Error(), Err: err}
	}
	if C.tls_config_set_session_fd(m.c, C.int(f.Fd())) != 0 {
		msg := "unknown error"
		if e := C.tls_config_error(m.c); e != nil {
			msg = C.GoString(e)
		}
		f.Close()
		return &Error{Op: "connect", Msg: msg}
	}
	m.sess, m.sessFD = f, int(f.Fd())
	return nil
}

// offer puts pem (possibly empty: no session) where libtls's tls_connect
// reads it, unless the file already holds it: a client that resumes with
// one server over and over offers what libtls wrote last time.
func (m *clientMember) offer(pem []byte) error {
	sum := sessionSum(pem)
	if m.fileKnown && sum == m.fileSum {
		return nil
	}
	m.fileKnown = false
	fd := m.sessFD
	if len(pem) > 0 {
		if err := pwriteAll(fd, pem); err != nil {
			return err
		}
	}
	if err := ftruncate(fd, int64(len(pem))); err != nil {
		return err
	}
	m.fileSum, m.fileKnown = sum, true
	return nil
}

// taken reads back what libtls wrote at the end of the handshake, into the
// member's scratch buffer.
func (m *clientMember) taken() ([]byte, error) {
	m.fileKnown = false
	b, err := preadAll(m.sessFD, m.buf[:0])
	m.buf = b
	if err == nil {
		m.fileSum, m.fileKnown = sessionSum(b), true
	}
	return b, err
}

// sessionSum tells sessions apart for offer. The member keeps this digest
// of its file's content rather than a copy of the session (its master
// secret): a seeded 64-bit hash with the length, which two different
// sessions share with probability 2^-64.
func sessionSum(b []byte) [2]uint64 {
	return [2]uint64{maphash.Bytes(sessionSeed, b), uint64(len(b))}
}

var sessionSeed = maphash.MakeSeed()
