package main

import (
	"context"
	"net"
	"sync"

	libtls "github.com/golibtls/libtls"
)

// fleetListener is serve's TLS listener: it hands each TCP connection to
// the current libtls.Server. libtls copies the session ID into a server
// when it is made, so a server that started without the fleet's session
// ID (etcd did not answer) makes a new one once the set is applied
// (renew); connections accepted before keep their server.
type fleetListener struct {
	net.Listener // TCP

	mu      sync.Mutex
	srv     *libtls.Server
	retired []*libtls.Server // for their counters
}

// listen listens on addr with a libtls.Server made from cfg, with TCP
// keep-alive off as libtls.Listen does.
func listen(addr string, cfg *libtls.Config) (*fleetListener, error) {
	srv, err := libtls.NewServer(cfg)
	if err != nil {
		return nil, err
	}
	lc := net.ListenConfig{KeepAlive: -1}
	inner, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		srv.Close()
		return nil, err
	}
	return &fleetListener{Listener: inner, srv: srv}, nil
}

func (l *fleetListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	srv := l.srv
	l.mu.Unlock()
	c, err := srv.Accept(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// renew makes the server that accepts from now on from cfg.
func (l *fleetListener) renew(cfg *libtls.Config) error {
	srv, err := libtls.NewServer(cfg)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.srv
	l.srv = srv
	l.retired = append(l.retired, old)
	l.mu.Unlock()
	// A Conn that old accepted an instant ago still works: Close only
	// drops the Server's own reference.
	return old.Close()
}

// Stats returns the handshake counters of every server the listener had.
func (l *fleetListener) Stats() libtls.ServerStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	sum := l.srv.Stats()
	for _, s := range l.retired {
		st := s.Stats()
		sum.Handshakes += st.Handshakes
		sum.Resumed += st.Resumed
		sum.Failed += st.Failed
		f, g := &sum.Failures, st.Failures
		f.Timeout += g.Timeout
		f.PeerClosed += g.PeerClosed
		f.NotTLS += g.NotTLS
		f.TLS += g.TLS
		f.Canceled += g.Canceled
		f.Other += g.Other
	}
	return sum
}

func (l *fleetListener) Close() error {
	err := l.Listener.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.srv.Close()
	return err
}
