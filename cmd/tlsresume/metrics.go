package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	libtls "github.com/golibtls/libtls"
	"github.com/golibtls/libtls/libtlsprom"
)

// checkMetricsAddr checks -metrics: HOST:PORT (port 0: any free port).
func checkMetricsAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%q is not HOST:PORT", addr)
	}
	return nil
}

// metricsServer serves a serve process's metrics for Prometheus at
// http://ADDR/metrics, plain HTTP on an address of its own.
type metricsServer struct {
	ln     net.Listener
	srv    *http.Server
	served chan error
}

// startMetrics listens on addr and serves, at /metrics, the handshake
// counters of stats (serve's listener: of every server it had) and, when keys follows a fleet's ticket
// keys (-keys; nil without), their revision in cfg and whether the
// follower is in step; with the Go runtime's and the process's own
// metrics.
func startMetrics(addr string, stats libtlsprom.StatsSource, cfg *libtls.Config, keys keyFollower, logger *log.Logger) (*metricsServer, error) {
	var opts []libtlsprom.Option
	if keys != nil {
		opts = append(opts, libtlsprom.WithTicketKeys(cfg, keys))
	}
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(libtlsprom.NewCollector(stats, opts...)),
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: logger}))
	m := &metricsServer{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          logger,
		},
		served: make(chan error, 1),
	}
	go func() { m.served <- m.srv.Serve(ln) }()
	return m, nil
}

// url is where the metrics are.
func (m *metricsServer) url() string { return "http://" + m.ln.Addr().String() + "/metrics" }

// close stops serving, letting a scrape in progress finish for a moment.
func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.served
}
