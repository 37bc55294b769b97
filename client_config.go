package libtls

/*
#include <stdlib.h>
#include <tls.h>
*/
import "C"

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"runtime"
	"sync"
)

// Client connections do not share the Config's C configuration. libtls
// keeps one session per tls_config: it reads the session file at
// tls_connect and rewrites it when the handshake completes, both through
// config->session_fd. Sharing one tls_config among concurrent client
// handshakes would mean switching its session descriptor under a lock held
// for the whole handshake (network round trips included), and a session
// written under one Config's trust could be offered under another's.
//
// So each client handshake runs on a tls_config of its own (a member of the
// Config's pool), made from the client-side settings the Config recorded
// (clientSettings), with a private anonymous session file. The binding
// copies the stored session that fits the connection (session_store.go) into
// that file before tls_connect, and copies what libtls wrote back to the
// store afterwards. Members are reused by later handshakes, so a connection
// costs a pool get and put, not a new tls_config.
//
// A member is held from the start of the handshake to its end; the
// connection's C context keeps its own libtls reference to the member's
// tls_config for as long as it lives, and libtls reads config->session_fd
// only in tls_connect and at the end of the handshake, so a member can
// serve the next handshake while earlier connections still run on it.

// clientSettings is the client side of a Config: every setting libtls reads
// when it connects a client (tls_connect_common, tls_configure_ssl,
// tls_configure_ssl_verify), with file contents read once when they were
// set. A value is never changed once published in Config.client: setters
// publish a modified clone (under Config.mu), so a member being built from
// a snapshot sees one consistent Config.
type clientSettings struct {
	protocols    *Protocol
	ciphers      *string
	curves       *string
	curvesSingle bool // set by SetECDHECurve (tls_config_set_ecdhecurve)
	alpn         *string
	ca           []byte
	caSet        bool
	caPath       *string
	crl          []byte
	crlSet       bool
	cert         []byte
	certSet      bool
	key          []byte // owned by this snapshot: zeroed when it is dropped
	keySet       bool
	verifyDepth  *int
	noVerifyCert bool
	noVerifyName bool
	noVerifyTime bool
	ocspRequire  bool

	// trust is the digest of everything that decides whether a session
	// made under these settings may be offered under others: what
	// verifies the server (CA, CA path, CRL, depth, the insecure flags,
	// OCSP stapling), the client certificate it presents, and the
	// protocols and ciphers it accepts. Sessions are stored under it
	// (sessionKeyFor), so Configs that trust differently never share one.
	trust [sha256.Size]byte
}

// clone returns a copy that owns a copy of the key.
func (s *clientSettings) clone() *clientSettings {
	n := *s
	if s.key != nil {
		n.key = append([]byte(nil), s.key...)
	}
	return &n
}

// drop zeroes the snapshot's copy of the private key.
func (s *clientSettings) drop() {
	clear(s.key)
	s.key = nil
}

// seal computes the trust digest; called once, before publication.
func (s *clientSettings) seal() {
	h := sha256.New()
	field := func(name string, set bool, b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write([]byte(name))
		if !set {
			h.Write([]byte{0})
			return
		}
		h.Write([]byte{1})
		h.Write(n[:])
		h.Write(b)
	}
	str := func(name string, p *string) {
		if p == nil {
			field(name, false, nil)
			return
		}
		field(name, true, []byte(*p))
	}
	field("ca", s.caSet, s.ca)
	str("capath", s.caPath)
	field("crl", s.crlSet, s.crl)
	field("cert", s.certSet, s.cert)
	str("ciphers", s.ciphers)
	if s.protocols != nil {
		field("protocols", true, []byte(fmt.Sprint(uint32(*s.protocols))))
	} else {
		field("protocols", false, nil)
	}
	if s.verifyDepth != nil {
		field("depth", true, []byte(fmt.Sprint(*s.verifyDepth)))
	} else {
		field("depth", false, nil)
	}
	field("flags", true, []byte(fmt.Sprint(s.noVerifyCert, s.noVerifyName, s.noVerifyTime, s.ocspRequire)))
	h.Sum(s.trust[:0])
}

// apply makes a fresh tls_config (from tls_config_new) the client side of
// the Config. Every value was accepted by libtls on the Config's own
// tls_config before it was recorded, so failures are unexpected; they are
// reported with libtls's text.
func (s *clientSettings) apply(c *C.struct_tls_config) error {
	type step struct {
		op string
		f  func() C.int
	}
	var steps []step
	add := func(op string, f func() C.int) { steps = append(steps, step{op, f}) }
	str := func(op string, v *string, set func(*C.char) C.int) {
		if v != nil {
			add(op, func() C.int { return withCString(*v, set) })
		}
	}
	mem := func(op string, set bool, b []byte, f func(*C.uint8_t, C.size_t) C.int) {
		if set {
			add(op, func() C.int { p, n := bytesPtr(b); return f(p, n) })
		}
	}
	if s.protocols != nil {
		add("tls_config_set_protocols", func() C.int { return C.tls_config_set_protocols(c, C.uint32_t(*s.protocols)) })
	}
	str("tls_config_set_ciphers", s.ciphers, func(p *C.char) C.int { return C.tls_config_set_ciphers(c, p) })
	if s.curvesSingle {
		str("tls_config_set_ecdhecurve", s.curves, func(p *C.char) C.int { return C.tls_config_set_ecdhecurve(c, p) })
	} else {
		str("tls_config_set_ecdhecurves", s.curves, func(p *C.char) C.int { return C.tls_config_set_ecdhecurves(c, p) })
	}
	str("tls_config_set_alpn", s.alpn, func(p *C.char) C.int { return C.tls_config_set_alpn(c, p) })
	mem("tls_config_set_ca_mem", s.caSet, s.ca, func(p *C.uint8_t, n C.size_t) C.int { return C.tls_config_set_ca_mem(c, p, n) })
	str("tls_config_set_ca_path", s.caPath, func(p *C.char) C.int { return C.tls_config_set_ca_path(c, p) })
	mem("tls_config_set_crl_mem", s.crlSet, s.crl, func(p *C.uint8_t, n C.size_t) C.int { return C.tls_config_set_crl_mem(c, p, n) })
	mem("tls_config_set_cert_mem", s.certSet, s.cert, func(p *C.uint8_t, n C.size_t) C.int { return C.tls_config_set_cert_mem(c, p, n) })
	mem("tls_config_set_key_mem", s.keySet, s.key, func(p *C.uint8_t, n C.size_t) C.int { return C.tls_config_set_key_mem(c, p, n) })
	if s.verifyDepth != nil {
		add("tls_config_set_verify_depth", func() C.int { return C.tls_config_set_verify_depth(c, C.int(*s.verifyDepth)) })
	}
	for _, fl := range []struct {
		on bool
		op string
		f  func()
	}{
		{s.noVerifyCert, "tls_config_insecure_noverifycert", func() { C.tls_config_insecure_noverifycert(c) }},
		{s.noVerifyName, "tls_config_insecure_noverifyname", func() { C.tls_config_insecure_noverifyname(c) }},
		{s.noVerifyTime, "tls_config_insecure_noverifytime", func() { C.tls_config_insecure_noverifytime(c) }},
		{s.ocspRequire, "tls_config_ocsp_require_stapling", func() { C.tls_config_ocsp_require_stapling(c) }},
	} {
		if fl.on {
			add(fl.op, func() C.int { fl.f(); return 0 })
		}
	}
	for _, st := range steps {
		if st.f() != 0 {
			msg := "unknown error"
			if m := C.tls_config_error(c); m != nil {
				msg = C.GoString(m)
			}
			return &ConfigError{Op: st.op, Msg: "client configuration: " + msg}
		}
	}
	return nil
}

// recordClient publishes a change of the client settings: fn edits a clone
// of the current snapshot. The caller holds cfg.mu for writing.
func (cfg *Config) recordClient(fn func(s *clientSettings) error) error {
	n := cfg.client.clone()
	if err := fn(n); err != nil {
		n.drop()
		return err
	}
	n.seal()
	old := cfg.client
	cfg.client = n
	cfg.pool.changed()
	// No member is being built from old: builders hold cfg.mu for
	// reading.
	old.drop()
	return nil
}

// readSettingFile reads a file named to a setter, after libtls accepted it,
// for the client settings.
func readSettingFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s for client connections: %w", path, err)
	}
	return b, nil
}

// --- The pool of client configurations ----------------------------------------

// clientMember is one tls_config of a Config's client pool, used by one
// handshake at a time.
type clientMember struct {
	c       *C.struct_tls_config
	gen     uint64            // the settings generation it was made from
	trust   [sha256.Size]byte // its settings' trust digest
	sess    *os.File          // its private session file, nil until sessions are used
	sessFD  int               // sess's descriptor
	buf     []byte            // the session libtls wrote, read back; zeroed after use
	offered []byte            // the session offered to the server; zeroed after use

	// What the session file holds, when known (sessionSum): offer skips
	// rewriting it with the same session.
	fileSum   [2]uint64
	fileKnown bool
}

// clientPool keeps idle members for reuse. Members made from settings that
// have changed since (an older gen) are freed instead of reused.
type clientPool struct {
	mu     sync.Mutex // a leaf: nothing else is locked while it is held
	gen    uint64
	idle   []*clientMember
	closed bool
}

// maxIdleMembers bounds the idle members a pool keeps: enough for the
// handshakes that run at once on a busy client, without keeping a
// tls_config (and its copy of the CA) per connection ever made.
func maxIdleMembers() int { return max(4, 2*runtime.GOMAXPROCS(0)) }

// changed retires the members made from the old settings. The caller holds
// Config.mu for writing.
func (p *clientPool) changed() {
	p.mu.Lock()
	p.gen++
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, m := range idle {
		m.free()
	}
}

// close frees the idle members; members in use are freed when they are
// put back.
func (p *clientPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, m := range idle {
		m.free()
	}
}

// getClient returns a member made from the current client settings, reused
// or new. It works on a closed Config too: connections built before Close
// keep working (the caller holds one of cfg.users, which keeps the settings
// alive).
func (cfg *Config) getClient() (*clientMember, error) {
	p := &cfg.pool
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		m := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		if m.gen == p.gen {
			p.mu.Unlock()
			return m, nil
		}
		p.mu.Unlock()
		m.free()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return cfg.newClientMember()
}

// putClient gives a member back after its handshake.
func (cfg *Config) putClient(m *clientMember) {
	clear(m.buf)
	clear(m.offered)
	p := &cfg.pool
	p.mu.Lock()
	if !p.closed && m.gen == p.gen && len(p.idle) < maxIdleMembers() {
		p.idle = append(p.idle, m)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	m.free()
}

// newClientMember makes a tls_config from the current client settings.
func (cfg *Config) newClientMember() (*clientMember, error) {
	c, err := C.tls_config_new()
	if c == nil {
		return nil, &ConfigError{Op: "tls_config_new", Msg: fmt.Sprintf("allocation failed: %v", err), Err: err}
	}
	liveConfigs.Add(1)
	m := &clientMember{c: c}
	// Settings and generation are read together: a setter publishes
	// both under the write lock.
	cfg.mu.RLock()
	s := cfg.client
	cfg.pool.mu.Lock()
	m.gen = cfg.pool.gen
	cfg.pool.mu.Unlock()
	m.trust = s.trust
	err = s.apply(c)
	cfg.mu.RUnlock()
	if err != nil {
		m.free()
		return nil, err
	}
	return m, nil
}

// free drops the binding's reference to the member's tls_config (contexts
// still configured with it keep theirs) and closes its session file. No
// handshake runs on it: the session descriptor is unset first, so that
// libtls never sees a descriptor number that may be reused.
func (m *clientMember) free() {
	if m.sess != nil {
		C.tls_config_set_session_fd(m.c, -1)
		m.sess.Close()
		m.sess = nil
	}
	C.tls_config_free(m.c)
	m.c = nil
	clear(m.buf)
	clear(m.offered)
	liveConfigs.Add(-1)
}

// setKey replaces the private key, zeroing the snapshot's old copy.
func (s *clientSettings) setKey(key []byte, set bool) {
	clear(s.key)
	s.key, s.keySet = key, set
}

func (s *clientSettings) setKeypair(certPEM, keyPEM []byte) {
	s.cert, s.certSet = bytes.Clone(certPEM), true
	s.setKey(bytes.Clone(keyPEM), true)
}

func (s *clientSettings) setKeypairFiles(certPath, keyPath string) error {
	cert, err := readSettingFile(certPath)
	if err != nil {
		return err
	}
	key, err := readSettingFile(keyPath)
	if err != nil {
		return err
	}
	s.cert, s.certSet = cert, true
	s.setKey(key, true)
	return nil
}
