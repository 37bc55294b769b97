// Package libtlsprom exports a golibtls server's handshake counters, and
// the state of its fleet's ticket keys, as Prometheus metrics
// (github.com/prometheus/client_golang):
//
//	golibtls_handshakes_total{kind="full"|"resumed"}     counter
//	golibtls_handshake_failures_total{reason="..."}       counter
//	golibtls_ticket_key_revision                          gauge (WithTicketKeys)
//	golibtls_ticket_keys_in_step                          gauge (WithTicketKeys and a follower)
//
// The failure reasons are the kinds of libtls.HandshakeFailures, named as
// in its JSON: timeout, peer_closed, not_tls, tls, canceled, other.
//
// The counters are the Server's own (libtls.Server.Stats), read at each
// scrape: the Collector adds nothing to the handshake path. For a listener
// made by libtls.Listen or libtls.NewListener, collect
// libtls.ListenerServer(ln); for a listener that accepts with several
// Servers over its life, collect a StatsSource that sums theirs.
//
// A registry holds one Collector per metric name and labels: for several
// servers in one process, register each through
// prometheus.WrapRegistererWith with a label that tells them apart.
//
// The package is a module of its own, so that the core module never
// depends on client_golang.
package libtlsprom

import (
	"errors"

	libtls "github.com/golibtls/libtls"
	"github.com/prometheus/client_golang/prometheus"
)

// KeyFollower is what the Collector needs of a fleet's ticket key
// follower: *libtls.TicketKeyFollower (a key file) and *etcdkeys.Follower
// (etcd) are KeyFollowers. Err is nil when the follower's last check
// found the Config in step with the fleet's keys.
type KeyFollower interface {
	Err() error
}

// StatsSource is what a Collector reads the handshake counters of at each
// scrape. A *libtls.Server is one. So is a listener that makes a new
// Server from its Config when the fleet's session ID arrives (libtls
// copies the session ID into a Server when it is made) and sums the
// counters of every Server it had, so that the metrics never go back.
type StatsSource interface {
	Stats() libtls.ServerStats
}

// Option configures a Collector.
type Option func(*Collector)

// WithTicketKeys adds the fleet's ticket keys to the metrics:
// golibtls_ticket_key_revision is the newest fleet key revision applied to
// cfg, the server's Config (revisions the binding generates for itself,
// from libtls.LocalTicketKeyRevBase up, are left out; 0 before any key),
// and, with follower not nil, golibtls_ticket_keys_in_step is 1 while
// follower.Err() is nil and 0 while the follower reports a problem (the
// key source unreadable or unreachable, an invalid or deleted set, a new
// session ID). Every server of a fleet shows the same revision once a
// rotation has reached it.
func WithTicketKeys(cfg *libtls.Config, follower KeyFollower) Option {
	return func(c *Collector) {
		c.keys = cfg
		c.follower = follower
		if cfg == nil {
			c.err = errors.New("libtlsprom: WithTicketKeys: nil Config")
		}
	}
}

// Collector is a prometheus.Collector of a libtls Server's counters.
type Collector struct {
	srv      StatsSource
	keys     *libtls.Config
	follower KeyFollower
	err      error // reported by Describe, so that registering fails

	handshakes, failures, keyRevision, inStep *prometheus.Desc
}

// NewCollector returns a Collector of srv's handshake counters: a Server
// made by libtls.NewServer or, for a listener, by
// libtls.ListenerServer(ln), or another StatsSource. Register it
// (prometheus.MustRegister) and serve the registry (promhttp.Handler). A
// nil srv (ListenerServer's answer for a listener that is not golibtls's)
// makes registering fail with an error that says so.
func NewCollector(srv StatsSource, opts ...Option) *Collector {
	c := &Collector{
		srv: srv,
		handshakes: prometheus.NewDesc("golibtls_handshakes_total",
			"Completed TLS handshakes of the golibtls server, by kind: full, or resumed (a session resumed).",
			[]string{"kind"}, nil),
		failures: prometheus.NewDesc("golibtls_handshake_failures_total",
			"Failed TLS handshakes of the golibtls server, by reason: timeout, peer_closed, not_tls, tls, canceled, other.",
			[]string{"reason"}, nil),
		keyRevision: prometheus.NewDesc("golibtls_ticket_key_revision",
			"Newest fleet ticket key revision applied to the golibtls server's Config (0: none).",
			nil, nil),
		inStep: prometheus.NewDesc("golibtls_ticket_keys_in_step",
			"1 if the ticket key follower's last check found the server in step with the fleet's keys, else 0.",
			nil, nil),
	}
	if s, ok := srv.(*libtls.Server); srv == nil || ok && s == nil {
		c.err = errors.New("libtlsprom: nil Server (libtls.ListenerServer returns nil for a listener not made by libtls.Listen or libtls.NewListener)")
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// failureReasons are the label values of golibtls_handshake_failures_total,
// the JSON names of libtls.HandshakeFailures's fields.
var failureReasons = []struct {
	reason string
	count  func(libtls.HandshakeFailures) int64
}{
	{"timeout", func(f libtls.HandshakeFailures) int64 { return f.Timeout }},
	{"peer_closed", func(f libtls.HandshakeFailures) int64 { return f.PeerClosed }},
	{"not_tls", func(f libtls.HandshakeFailures) int64 { return f.NotTLS }},
	{"tls", func(f libtls.HandshakeFailures) int64 { return f.TLS }},
	{"canceled", func(f libtls.HandshakeFailures) int64 { return f.Canceled }},
	{"other", func(f libtls.HandshakeFailures) int64 { return f.Other }},
}

// Describe sends the descriptors of the metrics Collect sends
// (prometheus.Collector).
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.err != nil {
		ch <- prometheus.NewInvalidDesc(c.err)
		return
	}
	ch <- c.handshakes
	ch <- c.failures
	if c.keys != nil {
		ch <- c.keyRevision
		if c.follower != nil {
			ch <- c.inStep
		}
	}
}

// Collect sends the current values (prometheus.Collector). The handshake
// counters come from one Stats snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.err != nil {
		ch <- prometheus.NewInvalidMetric(prometheus.NewInvalidDesc(c.err), c.err)
		return
	}
	st := c.srv.Stats()
	ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(st.Handshakes-st.Resumed), "full")
	ch <- prometheus.MustNewConstMetric(c.handshakes, prometheus.CounterValue, float64(st.Resumed), "resumed")
	for _, r := range failureReasons {
		ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(r.count(st.Failures)), r.reason)
	}
	if c.keys == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.keyRevision, prometheus.GaugeValue, float64(fleetRevision(c.keys)))
	if c.follower != nil {
		inStep := 0.0
		if c.follower.Err() == nil {
			inStep = 1
		}
		ch <- prometheus.MustNewConstMetric(c.inStep, prometheus.GaugeValue, inStep)
	}
}

// fleetRevision is the newest ticket key revision cfg holds below
// libtls.LocalTicketKeyRevBase, or 0.
func fleetRevision(cfg *libtls.Config) uint32 {
	var newest uint32
	for _, r := range cfg.TicketKeyRevisions() {
		if r < libtls.LocalTicketKeyRevBase && r > newest {
			newest = r
		}
	}
	return newest
}
