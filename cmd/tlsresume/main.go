// Command tlsresume shows and checks TLS session resumption with libtls.
//
//	tlsresume [demo] [-json] [-n 4]
//	tlsresume probe HOST:PORT|https://HOST[:PORT]/PATH [-http] [-servername N] [-n 3] [-tls1.2|-tls1.3] [-cafile F | -insecure] [-json]
//	tlsresume serve -addr A -cert F -key F [-lifetime 2h] [-keys FILE | -keys etcd[s]://HOST:PORT/KEY [etcd options]] [-metrics HOST:PORT]
//	tlsresume cert [-cert cert.pem] [-key key.pem] [-hosts localhost,127.0.0.1,::1] [-days 30]
//	tlsresume keys init|rotate -file FILE [-lifetime 2h]
//	tlsresume keys rotate -etcd [https://]HOST:PORT -key KEY [-lifetime 2h] [-name NAME] [etcd options]
//
// The etcd options are -etcd-cacert, -etcd-cert, -etcd-key and -etcd-user
// (or etcdctl's environment variables ETCDCTL_CACERT, ETCDCTL_CERT,
// ETCDCTL_KEY, ETCDCTL_USER, ETCDCTL_PASSWORD), and -kek FILE, a
// key-encryption key that seals the ticket keys in etcd.
//
// Without arguments it runs the demo: throwaway certificates, servers on
// loopback and a client with a session file whose later handshakes resume.
// Run "tlsresume COMMAND -h" for each command's options.
package main

import (
	"fmt"
	"io"
	"os"
)

const usageText = `tlsresume shows and checks TLS session resumption with libtls.

Usage:
  tlsresume [demo] [-json] [-n 4]       resumption on loopback, with throwaway certificates
  tlsresume probe HOST:PORT [options]   does this server resume libtls sessions?
  tlsresume probe https://HOST/PATH     the same, with an HTTP request per connection
  tlsresume serve -addr A -cert F -key F [-lifetime 2h] [-keys FILE | -keys etcd[s]://HOST:PORT/KEY] [-metrics HOST:PORT]
                                        a libtls HTTPS server (HTTP/2 and HTTP/1.1) that
                                        resumes sessions; SIGUSR1 prints its counters,
                                        -metrics serves them to Prometheus
  tlsresume cert                        a self-signed certificate and key to try serve with
  tlsresume keys init|rotate -file FILE a ticket key file shared by serve processes
  tlsresume keys rotate -etcd HOST:PORT -key KEY
                                        a rotator of the keys in etcd, for fleets across machines

Run "tlsresume COMMAND -h" for a command's options.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // bad command line
)

// run runs the tlsresume command line args (without the program name) and
// returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		return runDemo(nil, stdout, stderr)
	}
	switch args[0] {
	case "demo":
		return runDemo(args[1:], stdout, stderr)
	case "probe":
		return runProbe(args[1:], stdout, stderr)
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "keys":
		return runKeys(args[1:], stdout, stderr)
	case "cert":
		return runCert(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	}
	if len(args[0]) > 0 && args[0][0] == '-' {
		// Flags without a command are the demo's.
		return runDemo(args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "tlsresume: unknown command %q (commands: demo, probe, serve, keys, cert; see tlsresume -h)\n", args[0])
	return exitUsage
}
