package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"text/tabwriter"
	"time"

	libtls "github.com/golibtls/libtls"
)

const keysUsage = `Usage: tlsresume keys init|rotate -file FILE [-lifetime 2h]

Manages a ticket key file (mode 0600) shared by "tlsresume serve -keys FILE"
processes: it holds the fleet's session ID and up to 4 ticket keys.

  init    creates FILE with a random session ID and one key (rev 1);
          fails if FILE exists
  rotate  adds a new key when the newest is older than 3/4 of -lifetime
          (the servers' session lifetime) and keeps the newest 4; creates
          FILE when it does not exist. Run it from cron or a timer, more
          often than every lifetime/4.
`

func runKeys(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keys", keysUsage, stdout, stderr)
	if len(args) == 0 {
		return cmd.usageError("missing init or rotate")
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		cmd.printUsage()
		return exitOK
	case "init", "rotate":
	default:
		return cmd.usageError("unknown keys command %q, want init or rotate", args[0])
	}
	op := args[0]
	cmd = newCommand("keys "+op, keysUsage, stdout, stderr)
	file := cmd.fs.String("file", "", "the ticket key file")
	lifetime := cmd.fs.Duration("lifetime", 2*time.Hour, "the servers' session lifetime (serve -lifetime), 4s to 24h")
	pos, code, ok := cmd.parse(args[1:])
	if !ok {
		return code
	}
	switch {
	case len(pos) > 0:
		return cmd.usageError("unexpected argument %q", pos[0])
	case *file == "":
		return cmd.usageError("-file is required")
	}
	if err := checkLifetime(*lifetime); err != nil {
		return cmd.usageError("-lifetime %v: %v", *lifetime, err)
	}

	var (
		set     *libtls.TicketKeySet
		changed bool
		err     error
	)
	if op == "init" {
		set, err = createKeyFile(*file)
		changed = true
	} else {
		set, changed, err = libtls.RotateTicketKeyFile(*file, *lifetime)
	}
	if err != nil {
		return cmd.fail(err)
	}
	defer set.Zero()
	printKeys(stdout, *file, set, changed, op, *lifetime)
	return exitOK
}

// createKeyFile writes a new key set to path, which must not exist. It is
// atomic against a concurrent "keys rotate" on the same file.
func createKeyFile(path string) (*libtls.TicketKeySet, error) {
	set, err := libtls.CreateTicketKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%s already exists (use keys rotate to add a key)", path)
	}
	return set, err
}

// initKeyFile is createKeyFile for the demo.
func initKeyFile(path string) error {
	set, err := createKeyFile(path)
	set.Zero()
	return err
}

func printKeys(w io.Writer, path string, set *libtls.TicketKeySet, changed bool, op string, lifetime time.Duration) {
	newest := set.Keys[len(set.Keys)-1]
	switch {
	case op == "init":
		fmt.Fprintf(w, "created %s\n", path)
	case changed:
		fmt.Fprintf(w, "rotated %s: newest key is rev %d\n", path, newest.Rev)
	default:
		next := newest.Created.Add(lifetime * 3 / 4)
		fmt.Fprintf(w, "%s unchanged: rotation not due before %s (3/4 of lifetime %v after rev %d)\n",
			path, next.Local().Format(time.DateTime), lifetime, newest.Rev)
	}
	fmt.Fprintf(w, "session ID %s… (%d bytes)\n", hex.EncodeToString(set.SessionID[:min(4, len(set.SessionID))]), len(set.SessionID))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REV\tCREATED\tAGE")
	now := time.Now()
	for _, k := range set.Keys {
		fmt.Fprintf(tw, "%d\t%s\t%v\n", k.Rev, k.Created.Local().Format(time.DateTime), now.Sub(k.Created).Round(time.Second))
	}
	tw.Flush()
}
