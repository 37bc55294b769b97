// Command libtls-backend prints the libtls backend the module links with, as
// scripts/test reports it before running the suite.
package main

import (
	"fmt"

	libtls "github.com/golibtls/libtls"
)

func main() {
	b := libtls.Backend()
	fmt.Printf("%s (server resumption: %v, TLS 1.3 resumption: %v)\n", b, b.ServerSessionResumption, b.TLS13Resumption)
}
