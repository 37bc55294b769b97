//go:build linux && cgo

// Package cmem reports how much memory the C allocator has handed out, for
// the tests that check that the binding frees every C allocation (libtls
// contexts and configurations, OpenSSL's objects under them, the binding's
// own C buffers). It needs glibc (mallinfo2, glibc >= 2.33), so it builds
// only on Linux, and Supported reports whether the C library is glibc.
package cmem

/*
#include <stdlib.h>
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
#include <malloc.h>

static int cmem_supported(void) { return 1; }

static size_t cmem_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}
#else
static int cmem_supported(void) { return 0; }
static size_t cmem_in_use(void) { return 0; }
#endif
*/
import "C"

// Supported reports whether InUse can measure: the C library is glibc 2.33
// or later.
func Supported() bool { return C.cmem_supported() != 0 }

// InUse returns the bytes allocated with malloc and not freed, in glibc's
// main arena plus its mmapped chunks (mallinfo2's uordblks + hblkhd); 0
// when not Supported.
//
// glibc gives other threads arenas of their own, which mallinfo2 does not
// count, and keeps freed small chunks in per-thread caches (tcache), which
// it counts as in use; a process that measures with InUse should run with a
// single arena and no tcache (SingleArenaEnv), so that every allocation of
// every thread is counted and only live ones are.
func InUse() uint64 { return uint64(C.cmem_in_use()) }

// SingleArenaEnv is the environment entry that makes glibc use one arena
// and no thread caches.
const SingleArenaEnv = "GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.tcache_count=0"
