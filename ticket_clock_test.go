package libtls

import (
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Defect 2: libtls dates ticket keys and expires them on the wall clock
// (time(NULL) - lifetime > key->time). The binding used to schedule its
// keys on Go's monotonic clock, so after the wall clock stepped forward (a
// VM resumed, an NTP step) libtls considered every key expired while the
// binding thought none was due, and every TLS 1.2 handshake that asked for
// a ticket failed "no valid ticket key found" for up to a lifetime.
//
// The test moves libtls's clock, not the machine's: it builds a small
// LD_PRELOAD library whose time() adds an offset read from a file, and
// runs itself again under it. time() is the clock libtls reads for ticket
// keys (and the binding reads it through the same symbol); Go's own clock,
// and with it crypto/tls on the client side, is not affected, as a VM's
// peer on another machine would not be.

const (
	envClockFile = "GOLIBTLS_TEST_CLOCK_FILE" // the offset file of the shim
	clockShimC   = `
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* time() = the real wall clock + the offset in seconds written in the file
 * named by GOLIBTLS_TEST_CLOCK_FILE (0 when it is missing). */
time_t time(time_t *out) {
	struct timespec ts;
	long long off = 0;
	const char *path = getenv("GOLIBTLS_TEST_CLOCK_FILE");
	clock_gettime(CLOCK_REALTIME, &ts);
	if (path != NULL) {
		FILE *f = fopen(path, "r");
		if (f != NULL) {
			if (fscanf(f, "%lld", &off) != 1)
				off = 0;
			fclose(f);
		}
	}
	time_t t = (time_t)(ts.tv_sec + off);
	if (out != NULL)
		*out = t;
	return t;
}
`
)

func TestTicketKeysFollowWallClockSteps(t *testing.T) {
	if path := os.Getenv(envClockFile); path != "" {
		ticketKeysUnderClockSteps(t, path)
		return
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "clockshim.c")
	lib := filepath.Join(dir, "clockshim.so")
	require.NoError(t, os.WriteFile(src, []byte(clockShimC), 0o600))
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	out, err := exec.Command(cc, "-shared", "-fPIC", "-O2", "-o", lib, src).CombinedOutput()
	require.NoError(t, err, "building the time() shim: %s", out)

	cmd := exec.Command(os.Args[0], "-test.run=^TestTicketKeysFollowWallClockSteps$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(),
		"LD_PRELOAD="+lib,
		envClockFile+"="+filepath.Join(dir, "offset"))
	out, err = cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	require.NoError(t, err, "the test under a stepping clock failed")
	require.Contains(t, string(out), "--- PASS: TestTicketKeysFollowWallClockSteps")
}

// ticketKeysUnderClockSteps runs in the child, under the shim.
func ticketKeysUnderClockSteps(t *testing.T, offsetFile string) {
	const lifetime = time.Hour
	setOffset := func(d time.Duration) {
		t.Helper()
		require.NoError(t, os.WriteFile(offsetFile, []byte(strconv.FormatInt(int64(d/time.Second), 10)), 0o600))
		// The shim is in place: libtls's clock is Go's plus the offset.
		skew := libtlsNow() - time.Now().Unix()
		require.InDelta(t, int64(d/time.Second), skew, 1, "libtls's clock (time()) is not the shim's")
	}
	setOffset(0)

	for _, keys := range []string{"binding's own", "added by hand"} {
		t.Run(keys, func(t *testing.T) {
			setOffset(0)
			cfg := tkServerConfig(t, lifetime)
			if keys == "added by hand" {
				key, err := NewTicketKey()
				require.NoError(t, err)
				require.NoError(t, cfg.AddTicketKey(1, key))
			}
			srv := tkServe(t, cfg)
			gcfg := goClientConfig(t)
			gcfg.MaxVersion = tls.VersionTLS12
			gcfg.ClientSessionCache = tls.NewLRUClientSessionCache(1) // asks for tickets
			dial := func(step string) bool {
				t.Helper()
				c, err := tls.Dial("tcp", srv.addr, gcfg)
				require.NoError(t, err, "%s: handshake", step)
				defer c.Close()
				require.NoError(t, c.SetDeadline(time.Now().Add(tkIOTimeout)))
				_, err = c.Write([]byte{'x'})
				require.NoError(t, err, step)
				_, err = io.ReadFull(c, make([]byte, 1)) // the echo may come with close_notify
				require.NoError(t, err, "%s: the server failed the handshake (%v)", step, srv.errors())
				return c.ConnectionState().DidResume
			}
			dial("before any step")
			revs := cfg.TicketKeyRevisions()
			require.NotEmpty(t, revs)

			// Forward by more than a lifetime: every key libtls holds
			// has expired by its clock. The next handshake must still
			// get a ticket, under a new key.
			setOffset(lifetime + 10*time.Minute)
			dial("after a forward step of a lifetime")
			assert.NotEqual(t, revs[0], cfg.TicketKeyRevisions()[0], "a new key after the step")
			resumed := dial("after the forward step, again")
			assert.Equal(t, Backend().ServerSessionResumption, resumed, "the new key's ticket resumes where the backend can")

			// Back, by more than a lifetime: keys now look younger to
			// libtls and to the binding alike; nothing fails.
			setOffset(-2 * lifetime)
			resumed = dial("after a backward step")
			dial("after the backward step, again")

			// And forward again, past every key's date.
			setOffset(2 * lifetime)
			dial("after a second forward step")
			dial("after the second forward step, again")
			assert.Empty(t, srv.errors())
			t.Logf("%v: keys %s, resumed after the backward step: %v", Backend(), fmtRevs(cfg.TicketKeyRevisions()), resumed)
		})
	}
	setOffset(0)
}

func fmtRevs(revs []uint32) string {
	s := make([]string, len(revs))
	for i, r := range revs {
		s[i] = fmt.Sprintf("%#x", r)
	}
	return strings.Join(s, ",")
}
