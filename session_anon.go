package libtls

/*
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

// golibtls_memfd makes an anonymous memory file (Linux, glibc >= 2.27);
// elsewhere it reports ENOSYS.
static int golibtls_memfd(const char *name) {
#if defined(__linux__) && defined(MFD_CLOEXEC)
	return memfd_create(name, MFD_CLOEXEC);
#else
	(void)name;
	errno = ENOSYS;
	return -1;
#endif
}

// golibtls_tmpfile makes an unnamed file in dir (Linux O_TMPFILE; O_EXCL
// keeps it from ever being linked into the file system).
static int golibtls_tmpfile(const char *dir) {
#ifdef O_TMPFILE
	return open(dir, O_TMPFILE | O_RDWR | O_EXCL | O_CLOEXEC, 0600);
#else
	(void)dir;
	errno = ENOSYS;
	return -1;
#endif
}

// golibtls_shmfile makes an unlinked shared memory file (OpenBSD).
static int golibtls_shmfile(void) {
#ifdef __OpenBSD__
	char name[] = "/tmp/golibtls-session.XXXXXXXXXX";
	int fd = shm_mkstemp(name);
	if (fd >= 0)
		shm_unlink(name);
	return fd;
#else
	errno = ENOSYS;
	return -1;
#endif
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Anonymous session files: libtls demands a session descriptor of a regular
// file owned by the real user with mode 0600. The binding gives every
// member of a client pool such a file of its own, which no other process
// can open: the first of these that the system has.
type anonMethod int

const (
	anonMemfd   anonMethod = iota // memfd_create (Linux)
	anonTmpfile                   // open(O_TMPFILE) in the temporary directory (Linux)
	anonShm                       // shm_mkstemp + shm_unlink (OpenBSD)
	anonTemp                      // mkstemp + unlink in the temporary directory (everywhere)
	numAnonMethods
)

func (m anonMethod) String() string {
	return [...]string{"memfd_create", "O_TMPFILE", "shm_mkstemp", "mkstemp"}[m]
}

// anonFirst is the first method worth trying: methods that failed as
// unsupported are not tried again. Tests set it to force a fallback.
var anonFirst atomic.Int32

// newAnonymousFile returns a new anonymous 0600 regular file.
func newAnonymousFile(name string) (*os.File, anonMethod, error) {
	var errs []error
	for m := anonMethod(anonFirst.Load()); m < numAnonMethods; m++ {
		f, err := openAnonymous(m, name)
		if err == nil {
			if err := f.Chmod(0o600); err != nil { // the umask may have taken bits away
				f.Close()
				return nil, m, err
			}
			return f, m, nil
		}
		errs = append(errs, fmt.Errorf("%v: %w", m, err))
		if unsupported(err) {
			// Not on this system (or not in this directory): skip it
			// from now on.
			anonFirst.CompareAndSwap(int32(m), int32(m+1))
		}
	}
	return nil, 0, fmt.Errorf("no anonymous file for sessions: %w", errors.Join(errs...))
}

// unsupported reports errors that say a method does not exist here, as
// opposed to a failure of the moment (EMFILE, ENOMEM).
func unsupported(err error) bool {
	return errors.Is(err, syscall.ENOSYS) || errors.Is(err, syscall.EOPNOTSUPP) ||
		errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EISDIR)
}

func openAnonymous(m anonMethod, name string) (*os.File, error) {
	var fd C.int
	var err error
	switch m {
	case anonMemfd:
		cname := cstring(name)
		defer C.free(unsafe.Pointer(cname))
		fd, err = C.golibtls_memfd(cname)
	case anonTmpfile:
		cdir := cstring(os.TempDir())
		defer C.free(unsafe.Pointer(cdir))
		fd, err = C.golibtls_tmpfile(cdir)
	case anonShm:
		fd, err = C.golibtls_shmfile()
	case anonTemp:
		f, err := os.CreateTemp("", name+".*")
		if err != nil {
			return nil, err
		}
		if err := os.Remove(f.Name()); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	}
	if fd < 0 {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}
