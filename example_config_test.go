package libtls_test

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/golibtls/libtls"
)

// A server that resumes sessions: a ticket lifetime, and a session ID and
// ticket key shared by every process of the fleet, so that any of them
// resumes a session another one issued.
func ExampleConfig_AddTicketKey() {
	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	// A real server also sets its certificate and key, e.g.
	// cfg.SetKeypairFile("server.pem", "server.key").

	// Sessions are off by default (lifetime 0).
	if err := cfg.SetSessionLifetime(2 * time.Hour); err != nil {
		log.Fatal(err)
	}
	if err := cfg.SetSessionID([]byte("example-fleet")); err != nil {
		log.Fatal(err)
	}
	// In production every process gets the same key under the same
	// revision from the fleet's key store; here it is random.
	key, err := libtls.NewTicketKey()
	if err != nil {
		log.Fatal(err)
	}
	defer clear(key)
	if err := cfg.AddTicketKey(1, key); err != nil {
		log.Fatal(err)
	}
	fmt.Println("ticket key revisions:", cfg.TicketKeyRevisions())

	// Re-adding the newest key is a no-op; reusing its revision for
	// another key fails with libtls's message.
	fmt.Println(cfg.AddTicketKey(1, key))
	fmt.Println(cfg.AddTicketKey(1, make([]byte, libtls.TicketKeySize)))
	// Output:
	// ticket key revisions: [1]
	// <nil>
	// libtls: tls_config_add_ticket_key: ticket key already present
}

// libtls takes whole seconds from 4 s to 24 h, or 0 to turn sessions off.
func ExampleConfig_SetSessionLifetime() {
	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	for _, d := range []time.Duration{0, 2 * time.Hour, time.Second, 48 * time.Hour, 1500 * time.Millisecond} {
		fmt.Printf("%v: %v\n", d, cfg.SetSessionLifetime(d))
	}
	// Output:
	// 0s: <nil>
	// 2h0m0s: <nil>
	// 1s: libtls: tls_config_set_session_lifetime: session lifetime too small
	// 48h0m0s: libtls: tls_config_set_session_lifetime: session lifetime too large
	// 1.5s: libtls: tls_config_set_session_lifetime: session lifetime 1.5s is not a whole number of seconds
}

// A client that stores its session in a file, to resume it in its next
// connection (even from another process).
func ExampleConfig_SetSessionFile() {
	dir, err := os.MkdirTemp("", "golibtls-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The file must be a regular file of the user, mode 0600, opened for
	// reading and writing. libtls neither dups nor closes it: close it
	// after the Config and the connections built from it (defers run in
	// reverse order).
	f, err := os.OpenFile(filepath.Join(dir, "session.pem"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()

	cfg, err := libtls.NewConfig()
	if err != nil {
		log.Fatal(err)
	}
	defer cfg.Close()
	if err := cfg.SetSessionFile(f); err != nil {
		log.Fatal(err)
	}
	fmt.Println("session file set")

	// A file other users can read is refused.
	if err := f.Chmod(0o644); err != nil {
		log.Fatal(err)
	}
	err = cfg.SetSessionFile(f)
	fmt.Println(err)
	var ce *libtls.ConfigError
	if errors.As(err, &ce) {
		fmt.Printf("Op %s, Msg %q\n", ce.Op, ce.Msg)
	}
	// Output:
	// session file set
	// libtls: tls_config_set_session_fd: session file has incorrect permissions (644 != 600)
	// Op tls_config_set_session_fd, Msg "session file has incorrect permissions (644 != 600)"
}
