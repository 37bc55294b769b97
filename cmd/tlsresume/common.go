package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	libtls "github.com/golibtls/libtls"
)

// command is one subcommand's flag set and how to report its errors.
type command struct {
	name   string // "probe", "keys rotate", ...
	fs     *flag.FlagSet
	usage  string // first lines of -h, before the flags
	stdout io.Writer
	stderr io.Writer
}

func newCommand(name, usage string, stdout, stderr io.Writer) *command {
	fs := flag.NewFlagSet("tlsresume "+name, flag.ContinueOnError)
	// The flag package's own messages are replaced by one line (errors) or
	// the full usage on stdout (-h).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &command{name: name, fs: fs, usage: usage, stdout: stdout, stderr: stderr}
}

// parse parses args, allowing flags after positional arguments
// ("probe HOST:PORT -n 5"). It returns the positional arguments, or an exit
// status when the command must stop (-h: 0; a bad flag: 2).
func (c *command) parse(args []string) ([]string, int, bool) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				c.printUsage()
				return nil, exitOK, false
			}
			return nil, c.usageError("%v", err), false
		}
		rest := c.fs.Args()
		if len(rest) == 0 {
			return pos, 0, true
		}
		// After "--" everything is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (c *command) printUsage() {
	fmt.Fprint(c.stdout, c.usage)
	var b strings.Builder
	c.fs.SetOutput(&b)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
	if b.Len() > 0 {
		fmt.Fprintf(c.stdout, "\nOptions:\n%s", b.String())
	}
}

// usageError prints one line about a bad command line and returns exitUsage.
func (c *command) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "tlsresume %s: %s (see tlsresume %s -h)\n", c.name, fmt.Sprintf(format, a...), c.name)
	return exitUsage
}

// fail prints one line about a failure and returns exitError.
func (c *command) fail(err error) int {
	msg := strings.Join(strings.Fields(err.Error()), " ") // one line
	fmt.Fprintf(c.stderr, "tlsresume %s: %s\n", c.name, msg)
	return exitError
}

// result is one client handshake, a row of the table.
type result struct {
	N           int     `json:"n"`
	Server      string  `json:"server"`
	Address     string  `json:"address"`
	Protocol    string  `json:"protocol"`
	Cipher      string  `json:"cipher"`
	Resumed     bool    `json:"resumed"`
	HandshakeMS float64 `json:"handshake_ms"`
}

func (r result) kind() string {
	if r.Resumed {
		return "resumed"
	}
	return "full"
}

// printTable prints results as an aligned table.
func printTable(w io.Writer, results []result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSERVER\tPROTOCOL\tCIPHER\tHANDSHAKE\tTIME")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.2f ms\n", r.N, r.Server, r.Protocol, r.Cipher, r.kind(), r.HandshakeMS)
	}
	return tw.Flush()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newSessionFile creates an empty temporary session file with the mode
// libtls insists on (0600). The caller closes and removes it.
func newSessionFile() (*os.File, error) {
	f, err := os.CreateTemp("", "tlsresume-session-*")
	if err != nil {
		return nil, fmt.Errorf("session file: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("session file: %w", err)
	}
	return f, nil
}

func removeFile(f *os.File) {
	f.Close()
	os.Remove(f.Name())
}

// dialError is a failed TCP connect (as opposed to a failed handshake).
type dialError struct{ err error }

func (e *dialError) Error() string { return e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// timeoutError is a handshake that took too long.
type timeoutError struct {
	addr    string
	timeout time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("handshake with %s timed out after %v", e.addr, e.timeout)
}

// handshake connects to addr, runs one client handshake with cfg (which
// reads and writes its session file) and closes the connection. It returns
// the connection's state, the peer address and the time of the TLS
// handshake alone, without the TCP connect.
func handshake(ctx context.Context, cfg *libtls.Config, addr, serverName string, timeout time.Duration) (libtls.ConnectionState, string, time.Duration, error) {
	var none libtls.ConnectionState
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return none, "", 0, &dialError{err}
	}
	peer := raw.RemoteAddr().String()
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	start := time.Now()
	c, err := libtls.Client(raw, cfg, serverName)
	if err != nil {
		raw.Close()
		return none, peer, 0, err
	}
	err = c.HandshakeContext(ctx)
	elapsed := time.Since(start)
	if err != nil {
		c.Close()
		if ctx.Err() != nil {
			return none, peer, 0, &timeoutError{addr, timeout}
		}
		return none, peer, 0, err
	}
	state := c.ConnectionState()
	c.Close()
	return state, peer, elapsed, nil
}

func milliseconds(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// backendJSON is Backend() for -json output.
type backendJSON struct {
	Name                    string `json:"name"`
	Version                 string `json:"version"`
	ServerSessionResumption bool   `json:"server_session_resumption"`
	ClientSessionResumption bool   `json:"client_session_resumption"`
	TLS13Resumption         bool   `json:"tls13_resumption"`
}

func backendInfo() backendJSON {
	b := libtls.Backend()
	return backendJSON{
		Name:                    b.Name,
		Version:                 b.Version,
		ServerSessionResumption: b.ServerSessionResumption,
		ClientSessionResumption: b.ClientSessionResumption,
		TLS13Resumption:         b.TLS13Resumption,
	}
}

// noServerResumption says briefly why a backend's servers never resume.
const noServerResumption = "libtls's ticket callback makes OpenSSL issue empty session tickets"
