package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// etcdScheme starts a -keys value that names a key in etcd.
const etcdScheme = "etcd://"

// parseEtcdURL splits etcd://HOST:PORT[,HOST:PORT...]/KEY into the
// endpoints and the key, which is the URL's path, leading slash included
// (percent-escapes decoded).
func parseEtcdURL(s string) (endpoints []string, key string, err error) {
	rest, ok := strings.CutPrefix(s, etcdScheme)
	if !ok {
		return nil, "", fmt.Errorf("%q does not start with %s", s, etcdScheme)
	}
	hosts, path, ok := strings.Cut(rest, "/")
	if !ok || path == "" {
		return nil, "", fmt.Errorf("%q names no key (want %sHOST:PORT/KEY)", s, etcdScheme)
	}
	if key, err = url.PathUnescape("/" + path); err != nil {
		return nil, "", fmt.Errorf("%q: key: %v", s, err)
	}
	if endpoints, err = parseEndpoints(hosts); err != nil {
		return nil, "", fmt.Errorf("%q: %v", s, err)
	}
	return endpoints, key, nil
}

// parseEndpoints splits HOST:PORT[,HOST:PORT...].
func parseEndpoints(s string) ([]string, error) {
	if s == "" {
		return nil, errors.New("no etcd endpoint (want HOST:PORT)")
	}
	var eps []string
	for _, hp := range strings.Split(s, ",") {
		host, port, err := net.SplitHostPort(hp)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("etcd endpoint %q is not HOST:PORT", hp)
		}
		eps = append(eps, hp)
	}
	return eps, nil
}

// newEtcdClient connects to etcd (plain gRPC) and logs only the client's
// errors, to stderr.
func newEtcdClient(endpoints []string) (*clientv3.Client, error) {
	lc := zap.NewProductionConfig()
	lc.Level = zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	lg, err := lc.Build()
	if err != nil {
		lg = zap.NewNop()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: lg})
	if err != nil {
		return nil, fmt.Errorf("etcd %s: %w", strings.Join(endpoints, ","), err)
	}
	return cli, nil
}
