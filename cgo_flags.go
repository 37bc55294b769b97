//go:build !libtls_static

package libtls

// The default build links the shared libtls found by pkg-config. To build
// against another install prefix set PKG_CONFIG_PATH to its lib/pkgconfig
// (and, for a prefix the dynamic loader does not search, an rpath through
// CGO_LDFLAGS, as scripts/test does for LIBTLS_PREFIX).

// #cgo pkg-config: libtls
import "C"
