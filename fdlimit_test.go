package libtls

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// needDescriptors makes sure the process may have n descriptors open: it
// raises the soft RLIMIT_NOFILE to the hard limit (Go does so at start, but
// not for every way a test binary is run) and, when the hard limit is below
// n, fails the test saying so, rather than let it fail later on an accept
// or dial with "too many open files", or on a nil connection.
func needDescriptors(t testing.TB, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("this test needs %d open descriptors, but the hard RLIMIT_NOFILE is %d: "+
			"raise it (ulimit -Hn %d as root; docker/podman/buildah run --ulimit nofile=%d:%d)",
			n, lim.Max, n, n, n)
	}
	lim.Cur = lim.Max
	require.NoError(t, syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim), "raising the soft RLIMIT_NOFILE")
}

// Issue 19, item 12: under a hard descriptor limit too low for it (1,024,
// buildah's default), TestThousandBlockedReadsFewThreads fails at once and
// says why. Before, it opened descriptors until Accept failed, dropped
// Accept's error and failed on a nil connection. The test binary runs that
// test again in a shell that lowered its limit.
func TestDescriptorLimitIsStated(t *testing.T) {
	cmd := exec.Command("sh", "-c", `ulimit -n 1024 && exec "$@"`, "sh",
		os.Args[0], "-test.run=^TestThousandBlockedReadsFewThreads$/^TCP$", "-test.count=1", "-test.v")
	out, err := cmd.CombinedOutput()
	require.Error(t, err, "the test cannot pass with 1,024 descriptors:\n%s", out)
	want := fmt.Sprintf("needs %d open descriptors, but the hard RLIMIT_NOFILE is 1024", thousandReadsDescriptors)
	require.True(t, strings.Contains(string(out), want), "the failure does not say why:\n%s", out)
}
