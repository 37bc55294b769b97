//go:build libtls_static

package libtls

// With the libtls_static build tag the program is linked statically: pkg-config
// is asked with --static (so libssl, libcrypto and their private dependencies
// come along) and the link is -static, so the archives of the pkg-config
// prefix are used and the binary needs no libtls at run time. glibc warns
// that getaddrinfo in a static binary still needs the shared NSS modules;
// the binding itself never calls it (connections run over Go net.Conns).
//
//	go build -tags libtls_static ./...

// #cgo pkg-config: --static libtls
// #cgo LDFLAGS: -static
import "C"
