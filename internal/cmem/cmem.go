// Package cmem reports how much memory the C allocator has handed out, for
// the tests that check that the binding frees every C allocation (libtls
// contexts and configurations, OpenSSL's objects under them, the binding's
// own C buffers).
package cmem

/*
#include <malloc.h>

static size_t cmem_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}
*/
import "C"

// InUse returns the bytes allocated with malloc and not freed, in glibc's
// main arena plus its mmapped chunks (mallinfo2's uordblks + hblkhd).
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
