package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/golibtls/libtls/etcdkeys"
)

// The -keys values that name a key in etcd: etcd:// talks TLS when TLS
// options are given, etcds:// always (like https://).
const (
	etcdScheme  = "etcd://"
	etcdsScheme = "etcds://"
)

// etcdDialTimeout bounds connecting (and logging in with a password), and
// the first reads of serve and keys rotate.
const etcdDialTimeout = 5 * time.Second

// isEtcdSource reports whether a -keys value names a key in etcd.
func isEtcdSource(s string) bool {
	return strings.HasPrefix(s, etcdScheme) || strings.HasPrefix(s, etcdsScheme)
}

// parseEtcdURL splits etcd[s]://HOST:PORT[,HOST:PORT...]/KEY into the
// endpoints, the key, which is the URL's path, leading slash included
// (percent-escapes decoded), and whether the scheme asks for TLS.
func parseEtcdURL(s string) (endpoints []endpoint, key string, useTLS bool, err error) {
	rest, ok := strings.CutPrefix(s, etcdScheme)
	if !ok {
		if rest, ok = strings.CutPrefix(s, etcdsScheme); !ok {
			return nil, "", false, fmt.Errorf("%q does not start with %s or %s", s, etcdScheme, etcdsScheme)
		}
		useTLS = true
	}
	hosts, path, ok := strings.Cut(rest, "/")
	if !ok || path == "" {
		return nil, "", false, fmt.Errorf("%q names no key (want %sHOST:PORT/KEY)", s, etcdScheme)
	}
	if key, err = url.PathUnescape("/" + path); err != nil {
		return nil, "", false, fmt.Errorf("%q: key: %v", s, err)
	}
	if endpoints, err = parseEndpoints(hosts); err != nil {
		return nil, "", false, fmt.Errorf("%q: %v", s, err)
	}
	for _, ep := range endpoints {
		if ep.scheme != "" {
			return nil, "", false, fmt.Errorf("%q: write endpoints as HOST:PORT here (%s for TLS)", s, etcdsScheme)
		}
	}
	return endpoints, key, useTLS, nil
}

// endpoint is one etcd endpoint as given: HOST:PORT, and the scheme it was
// written with ("", "http" or "https").
type endpoint struct {
	scheme, hostPort string
}

// parseEndpoints splits [SCHEME://]HOST:PORT[,...], SCHEME http or https.
func parseEndpoints(s string) ([]endpoint, error) {
	if s == "" {
		return nil, errors.New("no etcd endpoint (want HOST:PORT)")
	}
	var eps []endpoint
	for _, e := range strings.Split(s, ",") {
		var ep endpoint
		ep.hostPort = e
		if scheme, hp, ok := strings.Cut(e, "://"); ok {
			if scheme != "http" && scheme != "https" {
				return nil, fmt.Errorf("etcd endpoint %q: scheme %s, want http or https", e, scheme)
			}
			ep.scheme, ep.hostPort = scheme, hp
		}
		host, port, err := net.SplitHostPort(ep.hostPort)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("etcd endpoint %q is not HOST:PORT", e)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// etcdFlags are the options that say how to reach etcd, named after
// etcdctl's; each defaults to etcdctl's environment variable.
type etcdFlags struct {
	cacert, cert, key, user string
	kek                     string
}

func addEtcdFlags(fs *flag.FlagSet) *etcdFlags {
	f := &etcdFlags{}
	fs.StringVar(&f.cacert, "etcd-cacert", "", "etcd: PEM file of the CA that signed etcd's certificate; implies TLS (default $ETCDCTL_CACERT)")
	fs.StringVar(&f.cert, "etcd-cert", "", "etcd: PEM file of this client's certificate, for etcd's --client-cert-auth; implies TLS (default $ETCDCTL_CERT)")
	fs.StringVar(&f.key, "etcd-key", "", "etcd: PEM file of the client certificate's key (default $ETCDCTL_KEY)")
	fs.StringVar(&f.user, "etcd-user", "", "etcd: the user to log in as, USER:PASSWORD, or USER with the password in $ETCDCTL_PASSWORD (default $ETCDCTL_USER)")
	fs.StringVar(&f.kek, "kek", "", "etcd: seal (rotate) or unseal (serve) the ticket keys with this key-encryption key, a file of 32 random bytes, mode 0600")
	return f
}

// given reports whether any etcd option was given as a flag.
func (f *etcdFlags) given() bool {
	return f.cacert != "" || f.cert != "" || f.key != "" || f.user != "" || f.kek != ""
}

// etcdConfig is how to reach etcd, resolved from endpoints, flags and
// environment.
type etcdConfig struct {
	endpoints []string // for the client: with a scheme
	hostPorts []string
	display   string      // the endpoints, for messages
	tls       *tls.Config // nil: plain gRPC
	clientCrt bool        // tls has a client certificate
	user      string
	password  string
}

// config resolves how to reach endpoints: TLS when an endpoint is https://,
// forceTLS (etcds://), or TLS files are given; a user from -etcd-user or
// the environment.
func (f *etcdFlags) config(endpoints []endpoint, forceTLS bool) (*etcdConfig, error) {
	env := func(v, name string) string {
		if v == "" {
			return os.Getenv(name)
		}
		return v
	}
	cacert, cert, key := env(f.cacert, "ETCDCTL_CACERT"), env(f.cert, "ETCDCTL_CERT"), env(f.key, "ETCDCTL_KEY")
	var https, http bool
	for _, ep := range endpoints {
		https = https || ep.scheme == "https"
		http = http || ep.scheme == "http"
	}
	files := cacert != "" || cert != "" || key != ""
	useTLS := https || forceTLS || files
	switch {
	case https && http:
		return nil, errors.New("the etcd endpoints mix http:// and https://")
	case http && useTLS:
		return nil, errors.New("TLS options (-etcd-cacert, -etcd-cert, -etcd-key or ETCDCTL_CACERT, ETCDCTL_CERT, ETCDCTL_KEY) given for http:// endpoints: use https:// endpoints, or drop the TLS options")
	case (cert == "") != (key == ""):
		return nil, errors.New("-etcd-cert and -etcd-key (ETCDCTL_CERT and ETCDCTL_KEY) go together")
	}
	c := &etcdConfig{}
	scheme := "http://"
	if useTLS {
		scheme = "https://"
		tc, err := (transport.TLSInfo{CertFile: cert, KeyFile: key, TrustedCAFile: cacert}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: %v", err)
		}
		c.tls, c.clientCrt = tc, cert != ""
	}
	for _, ep := range endpoints {
		c.endpoints = append(c.endpoints, scheme+ep.hostPort)
		c.hostPorts = append(c.hostPorts, ep.hostPort)
	}
	c.display = strings.Join(c.endpoints, ",")
	if user := env(f.user, "ETCDCTL_USER"); user != "" {
		name, password, ok := strings.Cut(user, ":")
		if !ok {
			password = os.Getenv("ETCDCTL_PASSWORD")
		}
		if name == "" || password == "" {
			return nil, fmt.Errorf("etcd user %q without a password: give USER:PASSWORD, or set ETCDCTL_PASSWORD", name)
		}
		c.user, c.password = name, password
	}
	return c, nil
}

// readKEK reads the -kek file, if any.
func (f *etcdFlags) readKEK() (*etcdkeys.KEK, error) {
	if f.kek == "" {
		return nil, nil
	}
	return etcdkeys.ReadKEKFile(f.kek)
}

// newClient connects to etcd, logging only the client's errors, to
// stderr. It returns at once, except with a password: then it logs in
// first (within etcdDialTimeout), which fails when etcd does not answer.
func (c *etcdConfig) newClient() (*clientv3.Client, error) {
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	lg, err := lc.Build()
	if err != nil {
		lg = zap.NewNop()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.endpoints,
		TLS:         c.tls,
		Username:    c.user,
		Password:    c.password,
		DialTimeout: etcdDialTimeout,
		Logger:      lg,
	})
	if err != nil {
		return nil, c.clientError(err)
	}
	return cli, nil
}

// clientError is the error of clientv3.New, which fails only when it must
// log in: wrong credentials, or (wrapping etcdkeys.ErrUnreachable) etcd
// not answering.
func (c *etcdConfig) clientError(err error) error {
	if etcdkeys.IsAccessError(err) {
		return fmt.Errorf("etcd %s: user %s: %w (check -etcd-user, or ETCDCTL_USER and ETCDCTL_PASSWORD)", c.display, c.user, err)
	}
	return fmt.Errorf("etcd %s: %w (%v)", c.display, etcdkeys.ErrUnreachable, err)
}

// named names the endpoints in an error of etcdkeys.
func (c *etcdConfig) named(err error) error {
	return fmt.Errorf("etcd %s: %w", c.display, err)
}

// unreachable looks into err, etcd not answering: it returns the mistake
// of configuration that diagnose finds, or err with what diagnose saw of
// the outage.
func (c *etcdConfig) unreachable(ctx context.Context, err error) error {
	outage, mistake := c.diagnose(ctx)
	if mistake != nil {
		return mistake
	}
	return fmt.Errorf("%w: %s", err, outage)
}

// The probes of diagnose.
const (
	probeTimeout = 2 * time.Second
	// alertWait is how long a TLS 1.3 client waits after its handshake
	// for the server's verdict on its certificate.
	alertWait = 300 * time.Millisecond
)

// diagnose is called when etcd did not answer: it connects to each
// endpoint itself to tell a mistake of configuration, which waiting does
// not cure (TLS where etcd speaks plain gRPC or the reverse, a certificate
// that does not verify, a client certificate missing or refused), from an
// outage. It returns the mistake, or what it saw of the outage.
func (c *etcdConfig) diagnose(ctx context.Context) (outage string, mistake error) {
	var seen []string
	for _, hp := range c.hostPorts {
		o, m := c.probe(ctx, hp)
		if m != nil {
			return "", fmt.Errorf("etcd %s: %v", hp, m)
		}
		if o != "" {
			seen = append(seen, o)
		}
	}
	if len(seen) == 0 {
		return "its members accept connections but did not answer in time: no quorum?", nil
	}
	return strings.Join(seen, "; "), nil
}

// probe connects to one endpoint as the client would.
func (c *etcdConfig) probe(ctx context.Context, hostPort string) (outage string, mistake error) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return err.Error(), nil
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(hostPort)
	if c.tls == nil {
		// Does it speak TLS? Any answer in TLS says so.
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, ServerName: host}) // a probe: nothing is sent but a ClientHello
		if err := tc.HandshakeContext(ctx); err == nil || isRemoteAlert(err) {
			return "", errors.New("speaks TLS, and this client plain gRPC: use https:// endpoints (etcds:// with -keys) and give etcd's CA with -etcd-cacert (or ETCDCTL_CACERT)")
		}
		return "", nil
	}
	cfg := c.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(ctx)
	if err == nil && tc.ConnectionState().Version == tls.VersionTLS13 {
		// TLS 1.3 servers check the client's certificate after the
		// client's handshake is done: an alert comes next, or nothing.
		_ = conn.SetReadDeadline(time.Now().Add(alertWait))
		if _, rerr := tc.Read(make([]byte, 1)); isRemoteAlert(rerr) {
			err = rerr
		}
	}
	var verr *tls.CertificateVerificationError
	var rerr tls.RecordHeaderError
	switch {
	case err == nil:
		return "", nil
	case errors.As(err, &verr):
		return "", fmt.Errorf("its certificate does not verify (%v): give the CA that signed it with -etcd-cacert (or ETCDCTL_CACERT)", verr.Err)
	case isRemoteAlert(err) && (strings.Contains(err.Error(), "certificate required") || strings.Contains(err.Error(), "bad certificate")) && !c.clientCrt:
		return "", errors.New("requires a client certificate: give -etcd-cert and -etcd-key (or ETCDCTL_CERT and ETCDCTL_KEY)")
	case isRemoteAlert(err) && c.clientCrt:
		return "", fmt.Errorf("refused the client certificate (%v): is it signed by a CA etcd trusts (its --trusted-ca-file)?", err)
	case isRemoteAlert(err):
		return "", fmt.Errorf("refused the TLS handshake (%v)", err)
	case errors.As(err, &rerr), speaksPlainGRPC(ctx, hostPort):
		return "", errors.New("speaks plain gRPC, not TLS: use http:// endpoints (etcd:// with -keys) and no TLS options")
	}
	return fmt.Sprintf("%s: TLS handshake: %v", hostPort, err), nil
}

// isRemoteAlert reports whether err is a TLS alert sent by the peer.
func isRemoteAlert(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}

// speaksPlainGRPC reports whether hostPort answers the HTTP/2 connection
// preface in clear with a SETTINGS frame, as etcd serving plain gRPC does
// (it closes the connection on a TLS ClientHello).
func speaksPlainGRPC(ctx context.Context, hostPort string) bool {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort)
	if err != nil {
		return false
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	emptySettings := []byte{0, 0, 0, 4, 0, 0, 0, 0, 0} // length 0, type SETTINGS, no flags, stream 0
	if _, err := conn.Write(append([]byte(preface), emptySettings...)); err != nil {
		return false
	}
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(conn, hdr); err != nil {
		return false
	}
	return hdr[3] == 4 // a frame of type SETTINGS
}
