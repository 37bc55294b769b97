package main

import (
	"context"
	"fmt"
	"io"
	"time"

	libtls "github.com/golibtls/libtls"
)

// keyPollInterval is how often serve re-reads its -keys file: short next to
// any lifetime, so that a rotation reaches every process within a second.
const keyPollInterval = time.Second

// followKeys applies the key file to cfg and follows it, logging changes of
// the follower's state to stderr until ctx is done.
func followKeys(ctx context.Context, cfg *libtls.Config, path string, stderr io.Writer) (io.Closer, error) {
	f, err := libtls.FollowTicketKeyFile(cfg, path, keyPollInterval)
	if err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(keyPollInterval)
		defer t.Stop()
		last := ""
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			msg := ""
			if err := f.Err(); err != nil {
				msg = err.Error()
			}
			if msg == last {
				continue
			}
			if msg == "" {
				fmt.Fprintf(stderr, "tlsresume serve: ticket key file %s read again\n", path)
			} else {
				fmt.Fprintf(stderr, "tlsresume serve: %s (keeping the keys it has)\n", msg)
			}
			last = msg
		}
	}()
	return f, nil
}
