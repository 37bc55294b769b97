package libtls

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
)

// ServerStats counts the handshakes of a Server's connections since it was
// made: how many completed, how many of those resumed a session, and how
// many failed, by kind. Resumed/Handshakes is what HAProxy calls its SSL
// session reuse ratio.
//
// The fields have JSON names, so a Server's counters publish with expvar:
//
//	expvar.Publish("tls", expvar.Func(func() any { return srv.Stats() }))
type ServerStats struct {
	// Handshakes counts the completed handshakes, full and resumed.
	Handshakes int64 `json:"handshakes"`
	// Resumed counts the completed handshakes that resumed a session.
	Resumed int64 `json:"resumed"`
	// Failed counts the failed handshakes; Failures splits them by kind.
	Failed   int64             `json:"failed"`
	Failures HandshakeFailures `json:"failures"`
}

// HandshakeFailures counts failed server handshakes by kind.
type HandshakeFailures struct {
	// Timeout: a deadline passed or a context's deadline expired.
	Timeout int64 `json:"timeout"`
	// PeerClosed: the peer closed or reset the connection mid-handshake.
	PeerClosed int64 `json:"peer_closed"`
	// NotTLS: the peer's first bytes were not a TLS record, such as plain
	// HTTP on the TLS port (a RecordHeaderError).
	NotTLS int64 `json:"not_tls"`
	// TLS: libtls refused the handshake: no common protocol version or
	// cipher, a certificate that does not verify, an alert from the peer.
	TLS int64 `json:"tls"`
	// Canceled: the handshake's context was canceled or the Conn closed.
	Canceled int64 `json:"canceled"`
	// Other: any other error of the underlying connection.
	Other int64 `json:"other"`
}

// ResumptionRatio returns Resumed/Handshakes, or 0 before the first
// completed handshake.
func (s ServerStats) ResumptionRatio() float64 {
	if s.Handshakes == 0 {
		return 0
	}
	return float64(s.Resumed) / float64(s.Handshakes)
}

// String returns the counters and the resumption ratio as one JSON object.
func (s ServerStats) String() string {
	b, _ := json.Marshal(struct {
		ServerStats
		Ratio float64 `json:"resumption_ratio"`
	}{s, s.ResumptionRatio()})
	return string(b)
}

// serverStats are a Server's live counters.
type serverStats struct {
	handshakes, resumed                                   atomic.Int64
	timeout, peerClosed, notTLS, tls, canceled, otherFail atomic.Int64
}

// Stats returns a snapshot of the server's handshake counters; it is safe
// to call at any time, also after Close.
func (s *Server) Stats() ServerStats {
	st := &s.stats
	f := HandshakeFailures{
		Timeout:    st.timeout.Load(),
		PeerClosed: st.peerClosed.Load(),
		NotTLS:     st.notTLS.Load(),
		TLS:        st.tls.Load(),
		Canceled:   st.canceled.Load(),
		Other:      st.otherFail.Load(),
	}
	return ServerStats{
		Handshakes: st.handshakes.Load(),
		Resumed:    st.resumed.Load(),
		Failed:     f.Timeout + f.PeerClosed + f.NotTLS + f.TLS + f.Canceled + f.Other,
		Failures:   f,
	}
}

// ListenerServer returns the Server behind a listener made by Listen or
// NewListener, for its Stats; nil for any other listener.
func ListenerServer(ln net.Listener) *Server {
	if l, ok := ln.(*listener); ok {
		return l.srv
	}
	return nil
}

// countHandshake counts the end of a server connection's handshake in its
// Server's stats. HandshakeContext calls it once per Conn.
func (c *Conn) countHandshake(err error) {
	if c.srv == nil {
		return
	}
	st := &c.srv.stats
	if err == nil {
		st.handshakes.Add(1)
		if c.state.resumed {
			st.resumed.Add(1)
		}
		return
	}
	var counter *atomic.Int64
	switch handshakeFailureKind(err) {
	case failTimeout:
		counter = &st.timeout
	case failPeerClosed:
		counter = &st.peerClosed
	case failNotTLS:
		counter = &st.notTLS
	case failTLS:
		counter = &st.tls
	case failCanceled:
		counter = &st.canceled
	default:
		counter = &st.otherFail
	}
	counter.Add(1)
}

type failureKind int

const (
	failOther failureKind = iota
	failTimeout
	failPeerClosed
	failNotTLS
	failTLS
	failCanceled
)

// handshakeFailureKind sorts a handshake error into a HandshakeFailures
// kind.
func handshakeFailureKind(err error) failureKind {
	var rhe *RecordHeaderError
	var ne net.Error
	var le *Error
	switch {
	case errors.As(err, &rhe):
		return failNotTLS
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return failTimeout
	case errors.Is(err, context.Canceled), errors.Is(err, ErrClosed):
		return failCanceled
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return failPeerClosed
	case errors.As(err, &le) && le.Err == nil:
		// libtls's own message. An end of stream the TLS library saw
		// itself is the peer's doing, not a TLS failure.
		if m := strings.ToLower(le.Msg); strings.Contains(m, "eof") || strings.Contains(m, "connection reset") {
			return failPeerClosed
		}
		return failTLS
	}
	return failOther
}
