package libtls

/*
#include <errno.h>
#include <fcntl.h>

static int golibtls_getfl(int fd) {
	return fcntl(fd, F_GETFL);
}
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"syscall"
)

// ErrUnsafeSessionFile is wrapped by OpenSessionFile's errors for files it
// refuses: libtls would refuse them too, or another user could read the
// session's master secret.
var ErrUnsafeSessionFile = errors.New("unsafe session file")

// OpenSessionFile opens a client session file for SetSessionFile, creating
// it when missing: a regular file, read-write, owned by the real user ID,
// mode exactly 0600, as libtls demands. An existing file that is a symlink,
// is not a regular file, has group or world permission bits or another owner,
// or has more than one hard link is refused with an error wrapping
// ErrUnsafeSessionFile; it is never changed. (libtls truncates and rewrites
// the session file, so a hard link to another private file of the user
// would destroy that file.)
func OpenSessionFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err == nil {
		// The umask may have taken bits away: set exactly 0600.
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	if !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	f, err = os.OpenFile(path, os.O_RDWR|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("session file %s: %w: is a symbolic link", path, ErrUnsafeSessionFile)
		}
		return nil, err
	}
	if err := checkSessionFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("session file %s: %w", path, err)
	}
	return f, nil
}

// checkSessionFile applies libtls's rules to an open file, with Go errors.
func checkSessionFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file (%v)", ErrUnsafeSessionFile, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && int(st.Uid) != os.Getuid() {
		return fmt.Errorf("%w: owned by uid %d, not %d", ErrUnsafeSessionFile, st.Uid, os.Getuid())
	}
	if ok && st.Nlink != 1 {
		return fmt.Errorf("%w: has %d hard links; libtls rewrites the file, which would change the others too", ErrUnsafeSessionFile, st.Nlink)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		return fmt.Errorf("%w: mode %#o, want 0600", ErrUnsafeSessionFile, perm)
	}
	return nil
}

// fcntlGetfl returns the file status flags of fd (fcntl F_GETFL).
func fcntlGetfl(fd int) (int, error) {
	flags, err := C.golibtls_getfl(C.int(fd))
	if flags < 0 {
		return 0, os.NewSyscallError("fcntl", err)
	}
	return int(flags), nil
}

// fileID identifies a file for the session locks: descriptors of one file
// share one lock.
type fileID struct{ dev, ino uint64 }

// fileLock is the lock of one session file and the number of goroutines
// holding or waiting for it; the entry is removed with the last of them,
// so the table holds only files in use.
type fileLock struct {
	sem   semaphore
	users int
}

var sessionLocks = struct {
	sync.Mutex
	m map[fileID]*fileLock
}{m: make(map[fileID]*fileLock)}

// lockSessionFile takes the process-wide lock of the file behind fd,
// waiting until ctx ends or closing is closed. libtls reads the session
// file in every connect and rewrites it (ftruncate and pwrite, without
// locking) at the end of every client handshake, so handshakes on one file
// must not overlap. An error from fstat (a bad descriptor) is returned as
// is; the caller leaves it for libtls to report.
func lockSessionFile(ctx context.Context, closing <-chan struct{}, fd int) (unlock func(), err error) {
	id, err := fileIDOf(fd)
	if err != nil {
		return nil, err
	}
	return lockSessionFileID(ctx, closing, id)
}

// fileIDOf identifies the file behind fd.
func fileIDOf(fd int) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fileID{}, &os.PathError{Op: "fstat", Path: "session file", Err: err}
	}
	return fileID{uint64(st.Dev), st.Ino}, nil
}

// lockSessionFileID is lockSessionFile for a file already identified.
func lockSessionFileID(ctx context.Context, closing <-chan struct{}, id fileID) (unlock func(), err error) {
	sessionLocks.Lock()
	l := sessionLocks.m[id]
	if l == nil {
		l = &fileLock{sem: newSemaphore()}
		sessionLocks.m[id] = l
	}
	l.users++
	sessionLocks.Unlock()
	drop := func() {
		sessionLocks.Lock()
		if l.users--; l.users == 0 {
			delete(sessionLocks.m, id)
		}
		sessionLocks.Unlock()
	}
	if err := l.sem.acquire(ctx, closing); err != nil {
		drop()
		return nil, err
	}
	return func() { l.sem.release(); drop() }, nil
}

// sessionLockCount reports how many files the lock table holds.
func sessionLockCount() int {
	sessionLocks.Lock()
	defer sessionLocks.Unlock()
	return len(sessionLocks.m)
}

// semaphore is a lock whose waiters can give up: a client handshake waiting
// for a session file that another handshake holds still honours its
// context, deadline and Close.
type semaphore chan struct{}

func newSemaphore() semaphore { return make(semaphore, 1) }

// acquire takes the lock, or returns ctx's error or ErrClosed (when closing
// is closed) first.
func (s semaphore) acquire(ctx context.Context, closing <-chan struct{}) error {
	select {
	case s <- struct{}{}:
		return nil
	default:
	}
	select {
	case s <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-closing:
		return closedError("handshake")
	}
}

func (s semaphore) release() { <-s }
