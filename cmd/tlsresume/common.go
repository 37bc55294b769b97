package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
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
	fmt.Fprintf(c.stderr, "tlsresume %s: %s\n", c.name, flat(err))
	return exitError
}

// stampWriter starts every line written to it with the local time, to the
// millisecond (RFC 3339), for a long-running command's log. Writes are
// serialized: each line is written whole.
type stampWriter struct {
	mu      sync.Mutex
	w       io.Writer
	midLine bool // the last write did not end its line
	now     func() time.Time
}

func newStampWriter(w io.Writer) *stampWriter { return &stampWriter{w: w, now: time.Now} }

// stampLayout is RFC 3339 with milliseconds, as log/slog writes times.
const stampLayout = "2006-01-02T15:04:05.000Z07:00"

func (s *stampWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b []byte
	stamp := s.now().AppendFormat(nil, stampLayout)
	for rest := p; len(rest) > 0; {
		if !s.midLine {
			b = append(append(b, stamp...), ' ')
		}
		line, after, found := bytes.Cut(rest, []byte{'\n'})
		b = append(b, line...)
		if found {
			b = append(b, '\n')
		}
		s.midLine = !found
		rest = after
	}
	if _, err := s.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
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
	// HTTPStatus is the status of the response to probe's request, in
	// its HTTP mode.
	HTTPStatus int `json:"http_status,omitempty"`
}

func (r result) kind() string {
	if r.Resumed {
		return "resumed"
	}
	return "full"
}

// printTable prints results as an aligned table, with the HTTP status
// when there is one.
func printTable(w io.Writer, results []result) error {
	withStatus := false
	for _, r := range results {
		withStatus = withStatus || r.HTTPStatus != 0
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := "#\tSERVER\tPROTOCOL\tCIPHER\tHANDSHAKE\tTIME"
	if withStatus {
		head += "\tHTTP"
	}
	fmt.Fprintln(tw, head)
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%.2f ms", r.N, r.Server, r.Protocol, r.Cipher, r.kind(), r.HandshakeMS)
		if withStatus {
			fmt.Fprintf(tw, "\t%d", r.HTTPStatus)
		}
		fmt.Fprintln(tw)
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

// notTLSError is a handshake with a server that answered with something
// other than TLS: libtls only says "wrong version number" (OpenSSL) or
// "tlsv1 alert protocol version" (LibreSSL).
type notTLSError struct {
	addr  string
	first []byte // the first bytes the server sent
	err   error
}

func (e *notTLSError) Error() string {
	return fmt.Sprintf("%s did not answer with TLS (it sent %q): is this a TLS port? (%v)", e.addr, e.first, e.err)
}

func (e *notTLSError) Unwrap() error { return e.err }

// recordingConn keeps the first bytes read from a connection, to tell a
// server that does not speak TLS.
type recordingConn struct {
	net.Conn
	mu    sync.Mutex
	first []byte
}

const recordBytes = 24

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		if len(c.first) < recordBytes {
			c.first = append(c.first, p[:min(n, recordBytes-len(c.first))]...)
		}
		c.mu.Unlock()
	}
	return n, err
}

// notTLS reports whether the first bytes received cannot start a TLS
// connection: a TLS record starts with a content type from 20 to 24 and
// version major 3.
func (c *recordingConn) notTLS() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.first) == 0 {
		return nil, false
	}
	b := c.first
	return append([]byte{}, b...), b[0] < 20 || b[0] > 24 || len(b) > 1 && b[1] != 3
}

// httpProbe is the request probe sends on each connection in its HTTP
// mode.
type httpProbe struct {
	host, path string
}

// handshakeResult is one client connection: its facts, the peer address,
// the time of the TLS handshake alone (without the TCP connect) and, in
// HTTP mode, the response's status.
type handshakeResult struct {
	info   libtls.ConnInfo
	peer   string
	d      time.Duration
	status int
}

// handshake connects to addr, runs one client handshake with cfg (which
// reads and writes its session file), sends req if not nil, and closes
// the connection.
func handshake(ctx context.Context, cfg *libtls.Config, addr, serverName string, timeout time.Duration, req *httpProbe) (handshakeResult, error) {
	var r handshakeResult
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return r, &dialError{err}
	}
	r.peer = raw.RemoteAddr().String()
	if tc, ok := raw.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	rec := &recordingConn{Conn: raw}
	start := time.Now()
	c, err := libtls.Client(rec, cfg, serverName)
	if err != nil {
		raw.Close()
		return r, err
	}
	defer c.Close()
	err = c.HandshakeContext(ctx)
	r.d = time.Since(start)
	if err != nil {
		if first, ok := rec.notTLS(); ok {
			return r, &notTLSError{addr, first, err}
		}
		if ctx.Err() != nil {
			return r, &timeoutError{addr, timeout}
		}
		return r, err
	}
	r.info = c.ConnInfo()
	if req != nil {
		if r.status, err = httpGet(ctx, c, req); err != nil {
			if ctx.Err() != nil {
				return r, &timeoutError{addr, timeout}
			}
			return r, fmt.Errorf("HTTP request: %w", err)
		}
	}
	return r, nil
}

// httpGet sends a GET for req over c (HTTP/1.1, closing the connection)
// and returns the response's status, after reading its body.
func httpGet(ctx context.Context, c *libtls.Conn, req *httpProbe) (int, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+req.host+req.path, nil)
	if err != nil {
		return 0, err
	}
	hreq.Close = true
	hreq.Header.Set("User-Agent", "tlsresume")
	if err := hreq.Write(c); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), hreq)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, nil
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
