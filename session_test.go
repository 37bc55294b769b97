package libtls_test

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
)

const (
	opSessionFD       = "tls_config_set_session_fd"
	opSessionID       = "tls_config_set_session_id"
	opSessionLifetime = "tls_config_set_session_lifetime"
)

// newSessionFile creates a file under dir with exactly mode perm (chmod
// after create, so the umask does not matter), opened with flag.
func newSessionFile(t *testing.T, dir, name string, flag int, perm os.FileMode) *os.File {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.NoError(t, os.Chmod(p, perm))
	f, err = os.OpenFile(p, flag, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func openForTest(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func permErr(mode string) *wantErr {
	return libtlsErr(opSessionFD, fmt.Sprintf("session file has incorrect permissions (%s != 600)", mode))
}

// sessionFDCase is a descriptor to hand to SetSessionFD and SetSessionFile.
type sessionFDCase struct {
	name string
	open func(t *testing.T, dir string) *os.File
	want *wantErr
}

var notRegularErr = libtlsErr(opSessionFD, "session file is not a regular file")

// TestSetSessionFD runs every kind of session file descriptor through both
// SetSessionFD and SetSessionFile; both must report libtls's checks (in
// libtls's order: fstat, regular file, owner, mode) verbatim.
func TestSetSessionFD(t *testing.T) {
	uid := os.Getuid()
	tests := []sessionFDCase{
		{"0600 read-write", func(t *testing.T, dir string) *os.File {
			return newSessionFile(t, dir, "s", os.O_RDWR, 0o600)
		}, nil},
		{"0644", func(t *testing.T, dir string) *os.File {
			return newSessionFile(t, dir, "s", os.O_RDWR, 0o644)
		}, permErr("644")},
		{"0400", func(t *testing.T, dir string) *os.File {
			return newSessionFile(t, dir, "s", os.O_RDONLY, 0o400)
		}, permErr("400")},
		{"0700", func(t *testing.T, dir string) *os.File {
			return newSessionFile(t, dir, "s", os.O_RDWR, 0o700)
		}, permErr("700")},
		{"0660", func(t *testing.T, dir string) *os.File {
			return newSessionFile(t, dir, "s", os.O_RDWR, 0o660)
		}, permErr("660")},
		{"0000", func(t *testing.T, dir string) *os.File {
			// Root can open a mode 0 file; others open it before the chmod.
			f := newSessionFile(t, dir, "s", os.O_RDWR, 0o600)
			require.NoError(t, f.Chmod(0))
			return f
		}, permErr("0")},
		{"setuid and sticky bits are ignored", func(t *testing.T, dir string) *os.File {
			f := newSessionFile(t, dir, "s", os.O_RDWR, 0o600)
			require.NoError(t, f.Chmod(0o600|os.ModeSetuid|os.ModeSticky))
			return f
		}, nil},
		{"setgid with 0644", func(t *testing.T, dir string) *os.File {
			f := newSessionFile(t, dir, "s", os.O_RDWR, 0o600)
			require.NoError(t, f.Chmod(0o644|os.ModeSetgid))
			return f
		}, permErr("644")},
		{"directory", func(t *testing.T, dir string) *os.File {
			return openForTest(t, dir, os.O_RDONLY)
		}, notRegularErr},
		{"FIFO", func(t *testing.T, dir string) *os.File {
			p := filepath.Join(dir, "fifo")
			require.NoError(t, syscall.Mkfifo(p, 0o600))
			// O_RDWR does not block on Linux (a reader and a writer at once).
			return openForTest(t, p, os.O_RDWR)
		}, notRegularErr},
		{"character device", func(t *testing.T, dir string) *os.File {
			return openForTest(t, os.DevNull, os.O_RDWR)
		}, notRegularErr},
		{"read-only fd", func(t *testing.T, dir string) *os.File {
			// libtls does not check writability: it would accept the
			// descriptor and fail every handshake ("failed to truncate
			// session file: ..."). The binding refuses it at once.
			return newSessionFile(t, dir, "s", os.O_RDONLY, 0o600)
		}, ownErr(opSessionFD, "session file is not open for writing")},
		{"write-only fd", func(t *testing.T, dir string) *os.File {
			// Likewise; libtls would fail reading the session back.
			return newSessionFile(t, dir, "s", os.O_WRONLY, 0o600)
		}, ownErr(opSessionFD, "session file is not open for reading")},
	}

	// A file owned by another user: libtls compares st_uid with getuid().
	if uid == 0 {
		chowned := func(t *testing.T, dir string, perm os.FileMode) *os.File {
			f := newSessionFile(t, dir, "s", os.O_RDWR, perm)
			require.NoError(t, f.Chown(65534, 65534))
			return f
		}
		ownerErr := libtlsErr(opSessionFD, fmt.Sprintf("session file has incorrect owner (uid 65534 != %d)", uid))
		tests = append(tests,
			sessionFDCase{"owned by uid 65534", func(t *testing.T, dir string) *os.File { return chowned(t, dir, 0o600) }, ownerErr},
			sessionFDCase{"owned by uid 65534 with mode 0644 (owner is checked first)", func(t *testing.T, dir string) *os.File {
				return chowned(t, dir, 0o644)
			}, ownerErr},
		)
	} else {
		// Not root: we cannot chown, but a readable file of someone else
		// (root's /etc/passwd) makes the same case.
		var st syscall.Stat_t
		if err := syscall.Stat("/etc/passwd", &st); err == nil && int(st.Uid) != uid {
			tests = append(tests, sessionFDCase{"owned by another uid (/etc/passwd)", func(t *testing.T, dir string) *os.File {
				return openForTest(t, "/etc/passwd", os.O_RDONLY)
			}, libtlsErr(opSessionFD, fmt.Sprintf("session file has incorrect owner (uid %d != %d)", st.Uid, uid))})
		} else {
			t.Logf("not root and no file of another user to open: the other-owner case is not tested (uid %d)", uid)
		}
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.open(t, t.TempDir())
			t.Run("SetSessionFD", func(t *testing.T) {
				cfg := newTestConfig(t)
				checkErr(t, cfg.SetSessionFD(int(f.Fd())), tc.want)
			})
			t.Run("SetSessionFile", func(t *testing.T) {
				cfg := newTestConfig(t)
				checkErr(t, cfg.SetSessionFile(f), tc.want)
			})
		})
	}
}

func TestSetSessionFDNumbers(t *testing.T) {
	// A descriptor that was just closed.
	f, err := os.CreateTemp(t.TempDir(), "closed")
	require.NoError(t, err)
	closedFD := int(f.Fd())
	require.NoError(t, f.Close())

	badFD := libtlsErr(opSessionFD, "failed to stat session file: Bad file descriptor")
	tests := []struct {
		name string
		fd   int
		want *wantErr
	}{
		{"-1 disables", -1, nil},
		{"closed fd", closedFD, badFD},
		{"never opened fd", 1 << 30, badFD},
		{"-2", -2, ownErr(opSessionFD, "invalid file descriptor -2")},
		{"min int", math.MinInt, ownErr(opSessionFD, fmt.Sprintf("invalid file descriptor %d", math.MinInt))},
		{"above int32", math.MaxInt32 + 1, ownErr(opSessionFD, "invalid file descriptor 2147483648")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.fd == closedFD {
				var st syscall.Stat_t
				require.ErrorIs(t, syscall.Fstat(closedFD, &st), syscall.EBADF, "fd %d was reused", closedFD)
			}
			cfg := newTestConfig(t)
			checkErr(t, cfg.SetSessionFD(tc.fd), tc.want)
		})
	}
}

func TestSetSessionFileNilAndClosed(t *testing.T) {
	dir := t.TempDir()
	cfg := newTestConfig(t)
	f := newSessionFile(t, dir, "s", os.O_RDWR, 0o600)

	require.NoError(t, cfg.SetSessionFile(f))
	require.NoError(t, cfg.SetSessionFile(nil), "nil disables")
	require.NoError(t, cfg.SetSessionFile(f))
	require.NoError(t, cfg.SetSessionFD(-1), "-1 disables")

	// A failed call leaves the Config usable.
	bad := newSessionFile(t, dir, "bad", os.O_RDWR, 0o644)
	checkErr(t, cfg.SetSessionFile(bad), permErr("644"))
	require.NoError(t, cfg.SetSessionFile(f))

	// A closed *os.File must not turn into fd -1 (which would silently
	// disable sessions).
	g := newSessionFile(t, dir, "g", os.O_RDWR, 0o600)
	require.NoError(t, g.Close())
	err := cfg.SetSessionFile(g)
	checkErr(t, err, ownErr(opSessionFD, "session file is closed"))
	assert.ErrorIs(t, err, os.ErrClosed)
}

// TestSetSessionFileKeepsFileOpen checks that the Config keeps the *os.File
// reachable: libtls neither dups nor closes the descriptor, so the file's
// finalizer must not close it while the Config lives.
func TestSetSessionFileKeepsFileOpen(t *testing.T) {
	dir := t.TempDir()
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	defer cfg.Close()

	open := func(name string) int {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o600)
		require.NoError(t, err)
		require.NoError(t, f.Chmod(0o600))
		if name == "session" {
			require.NoError(t, cfg.SetSessionFile(f))
		}
		return int(f.Fd())
	} // both *os.Files are unreachable from here on, except through cfg
	sessionFD := open("session")
	controlFD := open("control")

	isOpen := func(fd int) bool {
		var st syscall.Stat_t
		return syscall.Fstat(fd, &st) == nil
	}
	// Collect until the control file's finalizer has closed its fd, which
	// shows that finalizers ran.
	deadline := time.Now().Add(10 * time.Second)
	for isOpen(controlFD) && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	require.False(t, isOpen(controlFD), "the control file was never finalized; the test proves nothing")
	assert.True(t, isOpen(sessionFD), "the session file was closed while the Config uses it")
	// libtls can still use it.
	require.NoError(t, cfg.SetSessionFD(sessionFD))
	runtime.KeepAlive(cfg)
}

func TestSetSessionID(t *testing.T) {
	tooLarge := libtlsErr(opSessionID, "session ID too large")
	tests := []struct {
		name string
		id   []byte
		want *wantErr
	}{
		{"nil", nil, nil},
		{"0 bytes", []byte{}, nil},
		{"1 byte", []byte{1}, nil},
		{"31 bytes", seq(31), nil},
		{"32 bytes", seq(32), nil},
		{"33 bytes", seq(33), tooLarge},
		{"64 bytes", seq(64), tooLarge},
		{"4096 bytes", seq(4096), tooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newTestConfig(t)
			orig := slices.Clone(tc.id)
			checkErr(t, cfg.SetSessionID(tc.id), tc.want)
			assert.Equal(t, orig, tc.id, "the caller's slice was modified")
			// Setting it again (and after a failure) works.
			require.NoError(t, cfg.SetSessionID([]byte("fleet")))
		})
	}
	assert.Equal(t, 32, libtls.MaxSessionIDLength)
}

// seq returns n bytes 1, 2, 3, ...
func seq(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i + 1)
	}
	return b
}

func TestSetSessionLifetime(t *testing.T) {
	tooSmall := libtlsErr(opSessionLifetime, "session lifetime too small")
	tooLarge := libtlsErr(opSessionLifetime, "session lifetime too large")
	fractional := func(d time.Duration) *wantErr {
		return ownErr(opSessionLifetime, fmt.Sprintf("session lifetime %v is not a whole number of seconds", d))
	}
	const s = time.Second
	maxWhole := time.Duration(math.MaxInt64) / s * s // 9223372036s
	minWhole := time.Duration(math.MinInt64) / s * s
	tests := []struct {
		d    time.Duration
		want *wantErr
	}{
		{0, nil}, // disables sessions
		{1 * s, tooSmall},
		{-1 * s, tooSmall},
		{3 * s, tooSmall},
		{4 * s, nil},
		{libtls.MinSessionLifetime, nil},
		{time.Hour, nil},
		{86400 * s, nil},
		{libtls.MaxSessionLifetime, nil},
		{86401 * s, tooLarge},
		{libtls.MaxSessionLifetime + s, tooLarge},
		// Not whole seconds: refused by the binding, never truncated.
		{1500 * time.Millisecond, fractional(1500 * time.Millisecond)},
		{4*s + time.Nanosecond, fractional(4*s + time.Nanosecond)},
		{-500 * time.Millisecond, fractional(-500 * time.Millisecond)},
		{time.Nanosecond, fractional(time.Nanosecond)},
		{math.MaxInt64, fractional(math.MaxInt64)},
		{math.MinInt64, fractional(math.MinInt64)},
		// Huge whole durations: clamped into C's int, never wrapped (2^32 s
		// + 5 s would wrap to a valid 5 s).
		{math.MaxInt32 * s, tooLarge},
		{(math.MaxInt32 + 1) * s, tooLarge},
		{(1<<32 + 5) * s, tooLarge},
		{(1<<32 + 3600) * s, tooLarge},
		{-(1<<32 - 5) * s, tooSmall},
		{maxWhole, tooLarge},
		{minWhole, tooSmall},
	}
	for _, tc := range tests {
		t.Run(tc.d.String(), func(t *testing.T) {
			cfg := newTestConfig(t)
			err := cfg.SetSessionLifetime(tc.d)
			checkErr(t, err, tc.want)
			if tc.want != nil && !tc.want.own {
				assert.False(t, errors.Is(err, net.ErrClosed))
			}
			require.NoError(t, cfg.SetSessionLifetime(time.Minute), "a good call after a bad one")
		})
	}
	assert.Equal(t, 4*time.Second, libtls.MinSessionLifetime)
	assert.Equal(t, 86400*time.Second, libtls.MaxSessionLifetime)
}
