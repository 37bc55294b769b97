package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	libtls "github.com/golibtls/libtls"
)

const probeUsage = `Usage: tlsresume probe HOST:PORT|https://HOST[:PORT]/PATH [-http] [-servername N] [-n 3] [-tls1.2|-tls1.3] [-cafile F | -insecure] [-json]

Connects n times to HOST:PORT with one fresh session file, like
"openssl s_client -reconnect", and reports each handshake (full or resumed)
and a verdict: resumes, does not resume, or TLS 1.3 only, which libtls
cannot resume.

With an https:// URL (or -http) every connection also sends an HTTP/1.1
GET for the URL's path (/ with -http) and reports the response's status:
a request per connection, as a browser's or proxy's would be.

libtls resumes TLS 1.2 sessions only, so probe offers TLS 1.2; when the
server refuses TLS 1.2 it retries with TLS 1.3 to tell a TLS 1.3-only
server. -tls1.3 offers only TLS 1.3; both flags offer both.
The exit status is 0 whatever the verdict (see -json), 1 when a connection
fails and 2 for a bad command line.
`

// Verdicts.
const (
	verdictResumes   = "resumes"
	verdictNoResume  = "does not resume"
	verdictTLS13Only = "TLS 1.3 only, which libtls cannot resume"
)

type probeOptions struct {
	addr       string
	url        string     // the https:// URL given, if any
	http       *httpProbe // the request of each connection, in HTTP mode
	serverName string
	n          int
	protocols  libtls.Protocol
	fallback   bool // offer TLS 1.3 alone when TLS 1.2 is refused
	caFile     string
	insecure   bool
	timeout    time.Duration
}

// probeReport is probe's -json output.
type probeReport struct {
	Target      string      `json:"target"`
	URL         string      `json:"url,omitempty"`
	Mode        string      `json:"mode"` // "tls" (a handshake per connection) or "http" (and a request)
	ServerName  string      `json:"server_name"`
	Offered     string      `json:"offered"` // protocols of the connections below
	Client      backendJSON `json:"client"`
	Connections []result    `json:"connections"`
	// Resumed counts the resumed handshakes among the Reconnections
	// after the first.
	Resumed       int    `json:"resumed"`
	Reconnections int    `json:"reconnections"`
	Resumes       bool   `json:"resumes"`
	Verdict       string `json:"verdict"`
	Note          string `json:"note,omitempty"`
	TLS12Error    string `json:"tls12_error,omitempty"` // why TLS 1.2 failed, for TLS 1.3-only servers
}

func runProbe(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("probe", probeUsage, stdout, stderr)
	fs := cmd.fs
	var o probeOptions
	fs.StringVar(&o.serverName, "servername", "", "server name to send (SNI) and verify (default: HOST)")
	fs.IntVar(&o.n, "n", 3, "number of connections (at least 2)")
	tls12 := fs.Bool("tls1.2", false, "offer TLS 1.2 only, without the TLS 1.3 retry")
	tls13 := fs.Bool("tls1.3", false, "offer TLS 1.3 only (never resumes with libtls)")
	fs.StringVar(&o.caFile, "cafile", "", "PEM file of the CAs to trust (default: the system's)")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server's certificate or name")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "time limit of each connection")
	httpMode := fs.Bool("http", false, "send an HTTP GET / on every connection (implied by an https:// URL)")
	asJSON := fs.Bool("json", false, "print a JSON object instead of a table")
	pos, code, ok := cmd.parse(args)
	if !ok {
		return code
	}
	switch {
	case len(pos) == 0:
		return cmd.usageError("missing HOST:PORT or https:// URL")
	case len(pos) > 1:
		return cmd.usageError("unexpected argument %q after %s", pos[1], pos[0])
	}
	host, port, path, err := parseTarget(pos[0])
	if err != nil {
		return cmd.usageError("%v", err)
	}
	o.addr = net.JoinHostPort(host, port)
	if path != "" {
		o.url = pos[0]
	} else if *httpMode {
		path = "/"
	}
	if path != "" {
		o.http = &httpProbe{host: o.addr, path: path}
		if port == "443" {
			o.http.host = host
		}
	}
	if o.n < 2 || o.n > 1000 {
		return cmd.usageError("-n %d: need 2 to 1000 connections, as resumption needs a second one", o.n)
	}
	if o.caFile != "" && o.insecure {
		return cmd.usageError("-cafile and -insecure exclude each other")
	}
	if o.timeout <= 0 {
		return cmd.usageError("-timeout must be positive")
	}
	switch {
	case *tls12 && *tls13:
		o.protocols = libtls.ProtocolTLSv1_2 | libtls.ProtocolTLSv1_3
	case *tls13:
		o.protocols = libtls.ProtocolTLSv1_3
	case *tls12:
		o.protocols = libtls.ProtocolTLSv1_2
	default:
		o.protocols, o.fallback = libtls.ProtocolTLSv1_2, true
	}
	if o.serverName == "" {
		o.serverName = host
	}

	rep, err := probe(context.Background(), o)
	if err != nil {
		err = explainProbeError(err, o)
		if *asJSON {
			// A script reading -json gets an object either way.
			_ = writeJSON(stdout, probeFailure{Target: o.addr, URL: o.url, ServerName: o.serverName, Client: backendInfo(), Error: err.Error()})
		}
		return cmd.fail(err)
	}
	if *asJSON {
		err = writeJSON(stdout, rep)
	} else {
		err = printProbe(stdout, rep)
	}
	if err != nil {
		return cmd.fail(err)
	}
	return exitOK
}

// probeFailure is probe's -json output when it fails.
type probeFailure struct {
	Target     string      `json:"target"`
	URL        string      `json:"url,omitempty"`
	ServerName string      `json:"server_name"`
	Client     backendJSON `json:"client"`
	Error      string      `json:"error"`
}

// parseTarget splits probe's argument, HOST:PORT or an https:// URL (port
// 443 by default), into host, port and, for a URL, the path to request.
func parseTarget(arg string) (host, port, path string, err error) {
	if strings.Contains(arg, "://") {
		u, err := url.Parse(arg)
		switch {
		case err != nil:
			return "", "", "", fmt.Errorf("%q: %v", arg, err)
		case u.Scheme != "https":
			return "", "", "", fmt.Errorf("%q: probe speaks TLS; give an https:// URL or HOST:PORT", arg)
		case u.Hostname() == "":
			return "", "", "", fmt.Errorf("%q names no host", arg)
		}
		port = u.Port()
		if port == "" {
			port = "443"
		}
		path = u.EscapedPath()
		if path == "" {
			path = "/"
		}
		if u.RawQuery != "" {
			path += "?" + u.RawQuery
		}
		return u.Hostname(), port, path, nil
	}
	host, port, err = net.SplitHostPort(arg)
	if err != nil || host == "" || port == "" {
		return "", "", "", fmt.Errorf("%q is not HOST:PORT or an https:// URL", arg)
	}
	return host, port, "", nil
}

// explainProbeError adds what the user can do to a failure: a certificate
// that does not verify names the flags that change verification.
func explainProbeError(err error, o probeOptions) error {
	if o.insecure || !isCertError(err) {
		return err
	}
	if strings.Contains(err.Error(), "not present in server certificate") {
		return fmt.Errorf("%w (the server's certificate is not for %s: -servername N verifies another name, -cafile FILE trusts other CAs, -insecure skips verification)", err, o.serverName)
	}
	if o.caFile != "" {
		return fmt.Errorf("%w (the server's certificate does not verify against -cafile %s; -insecure skips verification)", err, o.caFile)
	}
	return fmt.Errorf("%w (the server's certificate does not verify against the system's CAs: -cafile FILE trusts the CAs in FILE, -insecure skips verification)", err)
}

// isCertError reports whether a handshake failed on the server's
// certificate, by libtls's messages on both backends.
func isCertError(err error) bool {
	m := strings.ToLower(err.Error())
	for _, s := range []string{"certificate verif", "not present in server certificate", "self-signed certificate", "self signed certificate",
		"unable to get local issuer", "certificate has expired", "certificate is not yet valid", "unable to get issuer"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// probe runs the connections and decides the verdict.
func probe(ctx context.Context, o probeOptions) (*probeReport, error) {
	rep := &probeReport{Target: o.addr, URL: o.url, Mode: "tls", ServerName: o.serverName, Client: backendInfo(), Offered: protocolNames(o.protocols)}
	if o.http != nil {
		rep.Mode = "http"
	}
	results, err := probeRun(ctx, o, o.protocols)
	var (
		de *dialError
		te *timeoutError
		ne *notTLSError
	)
	// Only a refusal of TLS 1.2 is worth a TLS 1.3 retry, not a server
	// that is unreachable, silent, not TLS, or whose certificate fails.
	if err != nil && o.fallback && len(results) == 0 && !errors.As(err, &de) && !errors.As(err, &te) &&
		!errors.As(err, &ne) && !isCertError(err) {
		// TLS 1.2 refused: does the server speak TLS 1.3 only?
		results13, err13 := probeRun(ctx, o, libtls.ProtocolTLSv1_3)
		if err13 != nil {
			if len(results13) == 0 && err13.Error() != err.Error() {
				return nil, fmt.Errorf("TLS 1.2: %v; TLS 1.3: %v", err, err13)
			}
			return nil, err13
		}
		rep.Offered = protocolNames(libtls.ProtocolTLSv1_3)
		rep.Connections = results13
		rep.TLS12Error = err.Error()
		rep.decide()
		if !rep.Resumes {
			rep.Verdict = verdictTLS13Only
			rep.Note = "libtls resumes TLS 1.2 sessions only, and this server refused TLS 1.2 (" + rep.TLS12Error + ")"
		}
		return rep, nil
	}
	if err != nil {
		return nil, err
	}
	rep.Connections = results
	rep.decide()
	return rep, nil
}

// probeRun makes o.n connections offering protocols, with a fresh session
// file. On error it returns the results so far.
func probeRun(ctx context.Context, o probeOptions, protocols libtls.Protocol) ([]result, error) {
	cfg, err := libtls.NewConfig()
	if err != nil {
		return nil, err
	}
	defer cfg.Close()
	if err := cfg.SetProtocols(protocols); err != nil {
		return nil, err
	}
	switch {
	case o.insecure:
		if err := cfg.InsecureNoVerifyCert(); err != nil {
			return nil, err
		}
		if err := cfg.InsecureNoVerifyName(); err != nil {
			return nil, err
		}
	case o.caFile != "":
		if _, err := os.Stat(o.caFile); err != nil {
			return nil, fmt.Errorf("-cafile: %w", err)
		}
		if err := cfg.SetCAFile(o.caFile); err != nil {
			return nil, fmt.Errorf("-cafile %s: %w", o.caFile, err)
		}
	}
	sf, err := newSessionFile()
	if err != nil {
		return nil, err
	}
	defer removeFile(sf)
	if err := cfg.SetSessionFile(sf); err != nil {
		return nil, err
	}
	var results []result
	for i := 1; i <= o.n; i++ {
		hr, err := handshake(ctx, cfg, o.addr, o.serverName, o.timeout, o.http)
		if err != nil {
			if i > 1 {
				err = fmt.Errorf("connection %d of %d: %w", i, o.n, err)
			}
			return results, err
		}
		results = append(results, result{
			N: i, Server: hr.peer, Address: hr.peer,
			Protocol: hr.info.Version, Cipher: hr.info.Cipher,
			Resumed: hr.info.SessionResumed, HandshakeMS: milliseconds(hr.d),
			HTTPStatus: hr.status,
		})
	}
	return results, nil
}

// decide sets the counts and the verdict from the connections.
func (r *probeReport) decide() {
	r.Reconnections = len(r.Connections) - 1
	r.Resumed = 0
	tls13 := true
	for i, c := range r.Connections {
		if c.Protocol != "TLSv1.3" {
			tls13 = false
		}
		if i > 0 && c.Resumed {
			r.Resumed++
		}
	}
	r.Resumes = r.Resumed > 0
	switch {
	case r.Resumes:
		r.Verdict = verdictResumes
		if r.Resumed < r.Reconnections {
			r.Note = fmt.Sprintf("only %d of %d reconnections resumed", r.Resumed, r.Reconnections)
		}
	default:
		r.Verdict = verdictNoResume
		if tls13 {
			r.Note = "libtls resumes TLS 1.2 sessions only, and the server chose TLS 1.3; try -tls1.2"
		}
	}
}

func printProbe(w io.Writer, r *probeReport) error {
	what := "connections"
	if r.Mode == "http" {
		what = "connections, a request each,"
	}
	fmt.Fprintf(w, "probe %s (server name %s), %d %s offering %s with one session file; client: %s %s\n\n",
		r.Target, r.ServerName, len(r.Connections), what, r.Offered, r.Client.Name, r.Client.Version)
	if err := printTable(w, r.Connections); err != nil {
		return err
	}
	fmt.Fprintln(w)
	switch {
	case r.Note != "":
		fmt.Fprintf(w, "verdict: %s: %s\n", r.Verdict, r.Note)
	default:
		fmt.Fprintf(w, "verdict: %s (%d of %d reconnections resumed)\n", r.Verdict, r.Resumed, r.Reconnections)
	}
	return nil
}

// protocolNames spells a protocol set as libtls reports versions.
func protocolNames(p libtls.Protocol) string {
	var names []string
	if p&libtls.ProtocolTLSv1_2 != 0 {
		names = append(names, "TLSv1.2")
	}
	if p&libtls.ProtocolTLSv1_3 != 0 {
		names = append(names, "TLSv1.3")
	}
	return strings.Join(names, ",")
}
