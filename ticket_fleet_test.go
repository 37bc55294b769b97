package libtls

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// --- Helpers shared by the ticket key tests ----------------------------------

// tkIOTimeout bounds every dial, handshake and echo of these tests.
const tkIOTimeout = 30 * time.Second

// tkServer is a golibtls server on a loopback port that completes the
// handshake, echoes one byte and closes, counting what it saw.
type tkServer struct {
	addr       string
	handshakes atomic.Int64
	resumed    atomic.Int64

	mu   sync.Mutex
	errs []error
}

func (s *tkServer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *tkServer) errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

func tkServe(t testing.TB, cfg *Config) *tkServer {
	t.Helper()
	l, err := Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	s := &tkServer{addr: l.Addr().String()}
	var wg sync.WaitGroup
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := nc.(*Conn)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(tkIOTimeout))
				if err := c.Handshake(); err != nil {
					s.fail(err)
					return
				}
				s.handshakes.Add(1)
				if c.SessionResumed() {
					s.resumed.Add(1)
				}
				b := make([]byte, 1)
				if _, err := c.Read(b); err != nil {
					s.fail(fmt.Errorf("server read: %w", err))
					return
				}
				if _, err := c.Write(b); err != nil {
					s.fail(fmt.Errorf("server write: %w", err))
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-acceptDone
		wg.Wait()
	})
	return s
}

// tkClientConfig is a TLS 1.2 client Config with its own session file
// (TLS 1.3 sessions never resume on either backend).
func tkClientConfig(t testing.TB) *Config {
	t.Helper()
	cfg := newClientConfig(t)
	require.NoError(t, cfg.SetProtocols(ProtocolTLSv1_2))
	require.NoError(t, cfg.SetSessionFile(sessionFile(t)))
	// The servers of a fleet listen at several addresses.
	require.NoError(t, cfg.SetSessionScope(SessionPerServerName))
	return cfg
}

// tkServerConfig is a server Config with a session lifetime.
func tkServerConfig(t testing.TB, lifetime time.Duration) *Config {
	t.Helper()
	cfg := newServerConfig(t)
	require.NoError(t, cfg.SetSessionLifetime(lifetime))
	return cfg
}

// tkDial connects, completes the handshake, echoes one byte and reports
// whether the session was resumed.
func tkDial(addr string, cfg *Config) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), tkIOTimeout)
	defer cancel()
	d := &Dialer{NetDialer: &net.Dialer{Timeout: tkIOTimeout}, Config: cfg, ServerName: "localhost"}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return false, err
	}
	c := nc.(*Conn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(tkIOTimeout))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return false, fmt.Errorf("client write: %w", err)
	}
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil {
		return false, fmt.Errorf("client read: %w", err)
	}
	return c.SessionResumed(), nil
}

// tkEventually polls cond every 5ms for up to 10s.
func tkEventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// tkSet is a valid set with the given revisions, created an hour apart
// ending now, and a fixed-looking random ID.
func tkSet(t testing.TB, revs ...uint32) *TicketKeySet {
	t.Helper()
	set := &TicketKeySet{SessionID: make([]byte, MaxSessionIDLength)}
	_, err := rand.Read(set.SessionID)
	require.NoError(t, err)
	now := time.Now().UTC()
	for i, r := range revs {
		k, err := NewTicketKey()
		require.NoError(t, err)
		set.Keys = append(set.Keys, TicketKeyEntry{Rev: r, Created: now.Add(time.Duration(i-len(revs)+1) * time.Minute), Key: k})
	}
	return set
}

func tkRevs(set *TicketKeySet) []uint32 {
	var r []uint32
	for _, k := range set.Keys {
		r = append(r, k.Rev)
	}
	return r
}

// tkEqualSets compares two sets, creation times by instant.
func tkEqualSets(t testing.TB, want, got *TicketKeySet) {
	t.Helper()
	require.Equal(t, want.SessionID, got.SessionID)
	require.Len(t, got.Keys, len(want.Keys))
	for i := range want.Keys {
		assert.Equal(t, want.Keys[i].Rev, got.Keys[i].Rev, "key %d", i)
		assert.Equal(t, want.Keys[i].Key, got.Keys[i].Key, "key %d", i)
		assert.True(t, want.Keys[i].Created.Equal(got.Keys[i].Created), "key %d created %v, want %v", i, got.Keys[i].Created, want.Keys[i].Created)
	}
}

// tkDirNames lists a directory.
func tkDirNames(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// --- The set and its file ------------------------------------------------------

func TestNewTicketKeySet(t *testing.T) {
	before := time.Now()
	a, err := NewTicketKeySet()
	require.NoError(t, err)
	b, err := NewTicketKeySet()
	require.NoError(t, err)
	require.NoError(t, a.validate())
	assert.Len(t, a.SessionID, MaxSessionIDLength)
	require.Len(t, a.Keys, 1)
	assert.Equal(t, uint32(1), a.Keys[0].Rev)
	assert.Len(t, a.Keys[0].Key, TicketKeySize)
	assert.False(t, a.Keys[0].Created.Before(before.Add(-time.Second)))
	assert.False(t, a.Keys[0].Created.After(time.Now()))
	assert.NotEqual(t, a.SessionID, b.SessionID, "session IDs must be random")
	assert.NotEqual(t, a.Keys[0].Key, b.Keys[0].Key, "keys must be random")

	a.Zero()
	assert.Equal(t, make([]byte, TicketKeySize), a.Keys[0].Key)
	(*TicketKeySet)(nil).Zero() // no panic
}

func TestTicketKeyFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	set := tkSet(t, 3, 4, 9, 0x7fffffff)
	set.SessionID = []byte("short id")
	require.NoError(t, WriteTicketKeyFile(path, set))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode(), "key file mode")
	assert.Equal(t, []string{"keys"}, tkDirNames(t, dir), "no temporary files left behind")

	got, err := ReadTicketKeyFile(path)
	require.NoError(t, err)
	tkEqualSets(t, set, got)

	// The documented format, line by line.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	require.Len(t, lines, 6)
	assert.Equal(t, "golibtls-ticket-keys 1", lines[0])
	assert.Equal(t, "session-id "+hex.EncodeToString([]byte("short id")), lines[1])
	for i, k := range set.Keys {
		assert.Equal(t, fmt.Sprintf("key %d %s %x", k.Rev, k.Created.UTC().Format(time.RFC3339Nano), k.Key), lines[2+i])
	}

	// Overwriting keeps mode 0600 even when the file had been loosened
	// (the new file replaces it) and under a permissive umask.
	require.NoError(t, os.Chmod(path, 0o644))
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	set2 := tkSet(t, 1)
	require.NoError(t, WriteTicketKeyFile(path, set2))
	fi, err = os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
	got, err = ReadTicketKeyFile(path)
	require.NoError(t, err)
	tkEqualSets(t, set2, got)
	assert.Equal(t, []string{"keys"}, tkDirNames(t, dir))

	// A relative path writes in the current directory.
	t.Chdir(dir)
	require.NoError(t, WriteTicketKeyFile("rel", set))
	got, err = ReadTicketKeyFile("rel")
	require.NoError(t, err)
	tkEqualSets(t, set, got)
}

func TestWriteTicketKeyFileRefusesInvalidSets(t *testing.T) {
	good := func() *TicketKeySet { return tkSet(t, 1, 2) }
	tests := []struct {
		name   string
		mutate func(*TicketKeySet) *TicketKeySet
		want   string
	}{
		{"nil", func(*TicketKeySet) *TicketKeySet { return nil }, "nil ticket key set"},
		{"no session ID", func(s *TicketKeySet) *TicketKeySet { s.SessionID = nil; return s }, "session ID is 0 bytes"},
		{"long session ID", func(s *TicketKeySet) *TicketKeySet { s.SessionID = make([]byte, 33); return s }, "session ID is 33 bytes"},
		{"no keys", func(s *TicketKeySet) *TicketKeySet { s.Keys = nil; return s }, "no ticket keys"},
		{"five keys", func(*TicketKeySet) *TicketKeySet { return tkSet(t, 1, 2, 3, 4, 5) }, "5 ticket keys, at most 4"},
		{"rev 0", func(s *TicketKeySet) *TicketKeySet { s.Keys[0].Rev = 0; return s }, "rev 0 is reserved"},
		{"local rev", func(s *TicketKeySet) *TicketKeySet { s.Keys[1].Rev = LocalTicketKeyRevBase; return s }, "reserved for keys the binding generates"},
		{"short key", func(s *TicketKeySet) *TicketKeySet { s.Keys[1].Key = s.Keys[1].Key[:47]; return s }, "rev 2 is 47 bytes, want 48"},
		{"equal revs", func(s *TicketKeySet) *TicketKeySet { s.Keys[1].Rev = 1; return s }, "not strictly increasing (rev 1 after rev 1)"},
		{"newest first", func(s *TicketKeySet) *TicketKeySet { slices.Reverse(s.Keys); return s }, "not strictly increasing (rev 1 after rev 2)"},
		{"no creation time", func(s *TicketKeySet) *TicketKeySet { s.Keys[0].Created = time.Time{}; return s }, "rev 1 has no creation time"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteTicketKeyFile(filepath.Join(dir, "keys"), tc.mutate(good()))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, tkDirNames(t, dir), "nothing written")
		})
	}
}

func TestReadTicketKeyFileErrors(t *testing.T) {
	id := strings.Repeat("ab", 32)
	key := func(rev string, keyHex string) string {
		return "key " + rev + " 2026-01-02T15:04:05Z " + keyHex + "\n"
	}
	k48 := strings.Repeat("0f", 48)
	header := "golibtls-ticket-keys 1\nsession-id " + id + "\n"
	valid := header + key("1", k48) + key("2", k48)

	contents := []struct {
		name, data, want string
	}{
		{"empty", "", "is empty"},
		{"garbage", "hello, world\n", `line 1: not a golibtls ticket key file (first line "hello, world"`},
		{"binary garbage", "\x00\xff\x13\x37\n", "line 1: not a golibtls ticket key file"},
		{"PEM", "-----BEGIN SSL SESSION PARAMETERS-----\nMIIB\n-----END SSL SESSION PARAMETERS-----\n", "line 1: not a golibtls ticket key file"},
		{"version 2", strings.Replace(valid, "keys 1", "keys 2", 1), `line 1: unsupported version "golibtls-ticket-keys 2"`},
		{"CRLF", strings.ReplaceAll(valid, "\n", "\r\n"), `line 1: unsupported version "golibtls-ticket-keys 1\r"`},
		{"no final newline", strings.TrimSuffix(valid, "\n"), "does not end with a newline (truncated?)"},
		{"header only", "golibtls-ticket-keys 1\n", "no session-id line"},
		{"no session-id line", "golibtls-ticket-keys 1\n" + key("1", k48), `line 2: want "session-id <hex>"`},
		{"bad session ID hex", header[:len(header)-3] + "zz\n" + key("1", k48), "line 2: session ID is not valid hex"},
		{"odd session ID hex", header[:len(header)-1] + "a\n" + key("1", k48), "line 2: session ID is not valid hex"},
		{"empty session ID", "golibtls-ticket-keys 1\nsession-id \n" + key("1", k48), "line 2: session ID is 0 bytes, want 1 to 32"},
		{"long session ID", "golibtls-ticket-keys 1\nsession-id " + id + "cd\n" + key("1", k48), "line 2: session ID is 33 bytes"},
		{"no keys", header, "no ticket keys"},
		{"bad key hex", header + key("1", "zz"+k48[2:]), "line 3: ticket key rev 1 is not valid hex"},
		{"47-byte key", header + key("1", k48[2:]), "line 3: ticket key rev 1 is 94 hex digits, want 96 (48 bytes)"},
		{"49-byte key", header + key("1", k48+"00"), "line 3: ticket key rev 1 is 98 hex digits, want 96 (48 bytes)"},
		{"rev 0", header + key("0", k48), "line 3: ticket key rev 0 is reserved"},
		{"local rev", header + key("2147483648", k48), "line 3: ticket key rev 2147483648 is reserved for keys the binding generates"},
		{"rev too large", header + key("4294967296", k48), `line 3: bad revision "4294967296"`},
		{"negative rev", header + key("-1", k48), `line 3: bad revision "-1"`},
		{"hex rev", header + key("0x1", k48), `line 3: bad revision "0x1"`},
		{"decreasing revs", header + key("2", k48) + key("1", k48), "line 4: ticket key revisions not strictly increasing (rev 1 after rev 2)"},
		{"equal revs", header + key("5", k48) + key("5", k48), "line 4: ticket key revisions not strictly increasing (rev 5 after rev 5)"},
		{"five keys", header + key("1", k48) + key("2", k48) + key("3", k48) + key("4", k48) + key("5", k48), "line 7: more than 4 ticket keys"},
		{"bad time", header + "key 1 yesterday " + k48 + "\n", `line 3: bad creation time "yesterday"`},
		{"extra field", header + "key 1 2026-01-02T15:04:05Z " + k48 + " extra\n", `line 3: want "key <rev> <created> <hex key>"`},
		{"blank line", valid + "\n", `line 5: want "key <rev> <created> <hex key>"`},
		{"double space", header + "key  1 2026-01-02T15:04:05Z " + k48 + "\n", "line 3: want"},
		{"unknown line", valid + "comment\n", "line 5: want"},
	}
	for _, tc := range contents {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			require.NoError(t, os.WriteFile(path, []byte(tc.data), 0o600))
			set, err := ReadTicketKeyFile(path)
			require.Error(t, err)
			assert.Nil(t, set)
			assert.Contains(t, err.Error(), "libtls: ticket key file "+path+": ")
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	t.Run("valid", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(path, []byte(valid), 0o600))
		set, err := ReadTicketKeyFile(path)
		require.NoError(t, err)
		assert.Equal(t, []uint32{1, 2}, tkRevs(set))
		assert.Equal(t, time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC), set.Keys[0].Created.UTC())
	})

	// The file itself.
	modes := []struct {
		mode os.FileMode
		want string
	}{
		{0o644, "has mode 0644; it holds secret keys and must not be accessible by group or others (chmod 600)"},
		{0o640, "has mode 0640"},
		{0o604, "has mode 0604"},
		{0o610, "has mode 0610"},
		{0o601, "has mode 0601"},
	}
	for _, m := range modes {
		t.Run(fmt.Sprintf("mode %#o", m.mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			require.NoError(t, os.WriteFile(path, []byte(valid), 0o600))
			require.NoError(t, os.Chmod(path, m.mode))
			_, err := ReadTicketKeyFile(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), m.want)
		})
	}
	for _, mode := range []os.FileMode{0o400, 0o700} {
		t.Run(fmt.Sprintf("mode %#o is fine", mode), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			require.NoError(t, os.WriteFile(path, []byte(valid), 0o600))
			require.NoError(t, os.Chmod(path, mode))
			_, err := ReadTicketKeyFile(path)
			require.NoError(t, err)
		})
	}
	t.Run("symlink out of its directory", func(t *testing.T) {
		target := filepath.Join(t.TempDir(), "real")
		require.NoError(t, os.WriteFile(target, []byte(valid), 0o600))
		dir := t.TempDir()
		link := filepath.Join(dir, "keys")
		require.NoError(t, os.Symlink(target, link))
		_, err := ReadTicketKeyFile(link)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is a symlink to "+target+", outside its directory")
		assert.Contains(t, err.Error(), "refusing to follow it")
		// Relative, through "..": the same.
		sub := filepath.Join(dir, "sub")
		require.NoError(t, os.Mkdir(sub, 0o700))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "up"), []byte(valid), 0o600))
		require.NoError(t, os.Symlink("../up", filepath.Join(sub, "keys")))
		_, err = ReadTicketKeyFile(filepath.Join(sub, "keys"))
		require.Error(t, err)
		assert.Contains(t, err.Error(), "outside its directory")
	})
	t.Run("symlink inside its directory", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "real"), []byte(valid), 0o600))
		link := filepath.Join(dir, "keys")
		require.NoError(t, os.Symlink("real", link))
		set, err := ReadTicketKeyFile(link)
		require.NoError(t, err)
		assert.Equal(t, []uint32{1, 2}, tkRevs(set))
	})
	t.Run("dangling symlink", func(t *testing.T) {
		link := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.Symlink("/nonexistent", link))
		_, err := ReadTicketKeyFile(link)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is a symlink")
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o700))
		_, err := ReadTicketKeyFile(dir)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not a regular file")
	})
	t.Run("FIFO", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "fifo")
		require.NoError(t, syscall.Mkfifo(p, 0o600))
		_, err := ReadTicketKeyFile(p) // must not block
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not a regular file")
	})
	t.Run("missing", func(t *testing.T) {
		_, err := ReadTicketKeyFile(filepath.Join(t.TempDir(), "keys"))
		require.Error(t, err)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
	t.Run("too large", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(path, bytes.Repeat([]byte("x"), 1<<20), 0o600))
		_, err := ReadTicketKeyFile(path)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "too large")
	})
	if os.Geteuid() == 0 {
		t.Run("other owner", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys")
			require.NoError(t, os.WriteFile(path, []byte(valid), 0o600))
			require.NoError(t, os.Chown(path, 12345, 12345))
			_, err := ReadTicketKeyFile(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "is owned by uid 12345, not by uid 0")
		})
	}
}

// TestWriteTicketKeyFileAtomic: readers polling the file while it is
// rewritten always see a whole, valid file (never an empty or partial one,
// as a truncate-and-write would show them).
func TestWriteTicketKeyFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	set := tkSet(t, 1)
	require.NoError(t, WriteTicketKeyFile(path, set))
	var done atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				s, err := ReadTicketKeyFile(path)
				if err != nil {
					errs <- err
					return
				}
				s.Zero()
				reads.Add(1)
			}
		}()
	}
	now := time.Now()
	for i := range 100 {
		now = now.Add(time.Hour)
		require.True(t, set.Rotate(now, time.Hour))
		require.NoError(t, WriteTicketKeyFile(path, set), "write %d", i)
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	assert.Equal(t, []string{"keys"}, tkDirNames(t, dir))
	assert.Equal(t, []uint32{98, 99, 100, 101}, tkRevs(set))
	t.Logf("%d reads during 100 writes", reads.Load())
}

func TestTicketKeySetRotate(t *testing.T) {
	const life = 16 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	set := &TicketKeySet{SessionID: []byte("id")}
	assert.True(t, set.NextRotation(life).IsZero(), "no key: due now")
	require.True(t, set.Rotate(t0, life), "an empty set gets a key")
	require.Equal(t, []uint32{1}, tkRevs(set))
	assert.True(t, set.Keys[0].Created.Equal(t0))
	assert.True(t, set.NextRotation(life).Equal(t0.Add(12*time.Second)))

	// Not before the newest key is older than 3/4 of the lifetime (12s).
	for _, d := range []time.Duration{0, time.Second, 11 * time.Second, 12 * time.Second} {
		assert.False(t, set.Rotate(t0.Add(d), life), "at +%v", d)
	}
	assert.False(t, set.Rotate(t0.Add(-time.Hour), life), "a clock going backwards")
	require.Equal(t, []uint32{1}, tkRevs(set))
	t1 := t0.Add(12*time.Second + time.Nanosecond)
	require.True(t, set.Rotate(t1, life))
	require.Equal(t, []uint32{1, 2}, tkRevs(set))
	assert.True(t, set.Keys[1].Created.Equal(t1))
	assert.False(t, set.Rotate(t1.Add(12*time.Second), life), "scheduled from the newest key")
	require.NoError(t, set.validate())

	// Keeps the newest four, zeroing the dropped ones.
	dropped := set.Keys[0].Key
	now := t1
	for i := 0; i < 3; i++ {
		now = now.Add(13 * time.Second)
		require.True(t, set.Rotate(now, life))
	}
	require.Equal(t, []uint32{2, 3, 4, 5}, tkRevs(set))
	assert.Equal(t, make([]byte, TicketKeySize), dropped, "dropped key zeroed")
	seen := map[string]bool{}
	for _, k := range set.Keys {
		assert.Len(t, k.Key, TicketKeySize)
		assert.False(t, seen[string(k.Key)], "keys are distinct")
		seen[string(k.Key)] = true
	}
	require.NoError(t, set.validate())

	// A set with too many keys is trimmed even when no key is due.
	big := tkSet(t, 1, 2, 3, 4, 5, 6)
	require.True(t, big.Rotate(big.Keys[5].Created, time.Hour))
	assert.Equal(t, []uint32{3, 4, 5, 6}, tkRevs(big))

	// lifetime <= 0 only adds a first key.
	assert.False(t, set.Rotate(now.Add(1000*time.Hour), 0))
	empty := &TicketKeySet{}
	assert.True(t, empty.Rotate(now, 0))

	// Revisions run out below LocalTicketKeyRevBase.
	last := tkSet(t, LocalTicketKeyRevBase-1)
	assert.False(t, last.Rotate(time.Now().Add(time.Hour), life))
	assert.Equal(t, []uint32{LocalTicketKeyRevBase - 1}, tkRevs(last))
	almost := tkSet(t, LocalTicketKeyRevBase-2)
	assert.True(t, almost.Rotate(time.Now().Add(time.Hour), life))
	assert.Equal(t, []uint32{LocalTicketKeyRevBase - 2, LocalTicketKeyRevBase - 1}, tkRevs(almost))
}

// --- The rotator ---------------------------------------------------------------

func TestRotateTicketKeyFile(t *testing.T) {
	const life = 8 * time.Second
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")

	set, changed, err := RotateTicketKeyFile(path, life)
	require.NoError(t, err)
	require.True(t, changed, "created")
	require.Equal(t, []uint32{1}, tkRevs(set))
	require.Len(t, set.SessionID, MaxSessionIDLength)
	onDisk, err := ReadTicketKeyFile(path)
	require.NoError(t, err)
	tkEqualSets(t, set, onDisk)
	fi, err := os.Stat(path + ".lock")
	require.NoError(t, err, "lock file beside the key file")
	assert.Equal(t, os.FileMode(0o600), fi.Mode())

	again, changed, err := RotateTicketKeyFile(path, life)
	require.NoError(t, err)
	assert.False(t, changed, "nothing due")
	tkEqualSets(t, set, again)

	// Backdate the newest key past its rotation (5s at 8s): the next call adds
	// rev 2 and keeps the session ID.
	onDisk.Keys[0].Created = time.Now().Add(-7 * time.Second)
	require.NoError(t, WriteTicketKeyFile(path, onDisk))
	rotated, changed, err := RotateTicketKeyFile(path, life)
	require.NoError(t, err)
	require.True(t, changed)
	assert.Equal(t, []uint32{1, 2}, tkRevs(rotated))
	assert.Equal(t, set.SessionID, rotated.SessionID)
	onDisk, err = ReadTicketKeyFile(path)
	require.NoError(t, err)
	tkEqualSets(t, rotated, onDisk)
	assert.ElementsMatch(t, []string{"keys", "keys.lock"}, tkDirNames(t, dir))

	// Bad lifetimes and bad files are errors; a bad file is left alone.
	for _, l := range []time.Duration{0, -time.Second, 3 * time.Second, 25 * time.Hour} {
		_, _, err := RotateTicketKeyFile(path, l)
		require.Error(t, err, "lifetime %v", l)
		assert.Contains(t, err.Error(), "is outside 4s to 24h0m0s")
	}
	require.NoError(t, os.WriteFile(path, []byte("garbage\n"), 0o600))
	_, _, err = RotateTicketKeyFile(path, life)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a golibtls ticket key file")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "garbage\n", string(data))

	// Revisions exhausted.
	last := tkSet(t, LocalTicketKeyRevBase-1)
	last.Keys[0].Created = time.Now().Add(-time.Hour)
	require.NoError(t, WriteTicketKeyFile(path, last))
	_, _, err = RotateTicketKeyFile(path, life)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ticket key revisions exhausted")

	// A symlinked key file is refused, and not replaced.
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(path, link))
	_, _, err = RotateTicketKeyFile(link, life)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a symlink")
}

// TestRotateTicketKeyFileConcurrent: rotators racing on one file (the lock
// is per open file, so goroutines exclude each other like processes) create
// it once and rotate it once.
func TestRotateTicketKeyFileConcurrent(t *testing.T) {
	const life = 8 * time.Second
	const n = 16
	path := filepath.Join(t.TempDir(), "keys")
	run := func() (changes int, ids map[string]bool, revs map[uint32]bool) {
		ids, revs = map[string]bool{}, map[uint32]bool{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				set, changed, err := RotateTicketKeyFile(path, life)
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if changed {
					changes++
				}
				ids[string(set.SessionID)] = true
				revs[set.Keys[len(set.Keys)-1].Rev] = true
				set.Zero()
			}()
		}
		close(start)
		wg.Wait()
		return changes, ids, revs
	}
	changes, ids, revs := run()
	assert.Equal(t, 1, changes, "created exactly once")
	assert.Len(t, ids, 1, "one session ID")
	assert.Equal(t, map[uint32]bool{1: true}, revs)

	set, err := ReadTicketKeyFile(path)
	require.NoError(t, err)
	set.Keys[0].Created = time.Now().Add(-time.Minute)
	require.NoError(t, WriteTicketKeyFile(path, set))
	changes, ids, revs = run()
	assert.Equal(t, 1, changes, "rotated exactly once")
	assert.Len(t, ids, 1)
	assert.Equal(t, map[uint32]bool{2: true}, revs)
	set, err = ReadTicketKeyFile(path)
	require.NoError(t, err)
	assert.Equal(t, []uint32{1, 2}, tkRevs(set))
}

func TestTicketKeyRotatorRun(t *testing.T) {
	t.Run("rotates until cancelled", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		ctx, cancel := context.WithCancel(context.Background())
		r := &TicketKeyRotator{Path: path, Lifetime: MinSessionLifetime, Interval: 10 * time.Millisecond}
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		tkEventually(t, "the key file", func() bool { _, err := os.Stat(path); return err == nil })
		first, err := ReadTicketKeyFile(path)
		require.NoError(t, err)
		// A rotation every second at 4s (NextRotation): wait for rev 2.
		tkEventually(t, "rev 2", func() bool {
			s, err := ReadTicketKeyFile(path)
			return err == nil && s.Keys[len(s.Keys)-1].Rev == 2
		})
		second, err := ReadTicketKeyFile(path)
		require.NoError(t, err)
		assert.Equal(t, first.SessionID, second.SessionID)
		assert.Equal(t, []uint32{1, 2}, tkRevs(second))
		cancel()
		select {
		case err := <-done:
			assert.ErrorIs(t, err, context.Canceled)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	})
	t.Run("default interval", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		err := (&TicketKeyRotator{Path: path, Lifetime: time.Hour}).Run(ctx)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		_, err = ReadTicketKeyFile(path)
		assert.NoError(t, err, "rotated at once")
	})
	t.Run("errors without OnError end Run", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(path, []byte("garbage\n"), 0o600))
		err := (&TicketKeyRotator{Path: path, Lifetime: time.Hour}).Run(context.Background())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a golibtls ticket key file")
	})
	t.Run("OnError gets errors and Run carries on", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "keys")
		require.NoError(t, os.WriteFile(path, []byte("garbage\n"), 0o600))
		var mu sync.Mutex
		var errs []error
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		r := &TicketKeyRotator{Path: path, Lifetime: time.Hour, Interval: 5 * time.Millisecond, OnError: func(err error) {
			mu.Lock()
			defer mu.Unlock()
			errs = append(errs, err)
		}}
		go func() { done <- r.Run(ctx) }()
		tkEventually(t, "three errors", func() bool { mu.Lock(); defer mu.Unlock(); return len(errs) >= 3 })
		// Repaired (removed): the rotator creates a new file.
		require.NoError(t, os.Remove(path))
		tkEventually(t, "a new key file", func() bool { _, err := ReadTicketKeyFile(path); return err == nil })
		cancel()
		assert.ErrorIs(t, <-done, context.Canceled)
		mu.Lock()
		defer mu.Unlock()
		assert.Contains(t, errs[0].Error(), "not a golibtls ticket key file")
	})
	t.Run("bad lifetime", func(t *testing.T) {
		err := (&TicketKeyRotator{Path: filepath.Join(t.TempDir(), "keys"), Lifetime: time.Second}).Run(context.Background())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "lifetime 1s is outside")
	})
}

// --- Applying sets --------------------------------------------------------------

// tkAdded returns when the binding recorded each held key as added, by rev.
func tkAdded(cfg *Config) map[uint32]time.Time {
	cfg.mu.RLock()
	defer cfg.mu.RUnlock()
	m := map[uint32]time.Time{}
	for _, k := range cfg.session.tickets.keys {
		m[k.rev] = time.Unix(k.added, 0)
	}
	return m
}

func tkSessionID(cfg *Config) []byte {
	cfg.mu.RLock()
	defer cfg.mu.RUnlock()
	return bytes.Clone(cfg.session.id)
}

func TestApplyTicketKeySet(t *testing.T) {
	cfg := tkServerConfig(t, time.Hour)
	set := tkSet(t, 1, 2, 3)
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{3, 2, 1}, cfg.TicketKeyRevisions(), "added oldest first: the newest is libtls's newest")
	assert.Equal(t, set.SessionID, tkSessionID(cfg))
	added := tkAdded(cfg)

	// Idempotent: nothing is re-added.
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{3, 2, 1}, cfg.TicketKeyRevisions())
	assert.Equal(t, added, tkAdded(cfg))

	// After a rotation only the new key is added.
	require.True(t, set.Rotate(time.Now().Add(time.Hour), time.Hour))
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{4, 3, 2, 1}, cfg.TicketKeyRevisions())
	after := tkAdded(cfg)
	for _, r := range []uint32{1, 2, 3} {
		assert.Equal(t, added[r], after[r], "rev %d not re-added", r)
	}
	require.True(t, set.Rotate(time.Now().Add(2*time.Hour), time.Hour))
	assert.Equal(t, []uint32{2, 3, 4, 5}, tkRevs(set))
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{5, 4, 3, 2}, cfg.TicketKeyRevisions(), "rev 1 evicted by libtls")

	// An older set (a stale copy of the file) changes nothing, not even
	// re-adding the evicted rev 1.
	stale := &TicketKeySet{SessionID: set.SessionID, Keys: []TicketKeyEntry{
		{Rev: 1, Created: time.Now(), Key: make([]byte, TicketKeySize)},
		{Rev: 3, Created: time.Now(), Key: set.Keys[1].Key},
	}}
	require.NoError(t, cfg.ApplyTicketKeySet(stale))
	assert.Equal(t, []uint32{5, 4, 3, 2}, cfg.TicketKeyRevisions())

	// A held rev with other bytes (a re-created file) is refused before
	// anything changes, naming the rev.
	recreated := tkSet(t, 5, 6)
	err := cfg.ApplyTicketKeySet(recreated)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ticket key rev 5 differs from the key this Config already holds")
	assert.Equal(t, []uint32{5, 4, 3, 2}, cfg.TicketKeyRevisions())
	assert.Equal(t, set.SessionID, tkSessionID(cfg), "session ID untouched")

	// Revisions above one added by hand only.
	require.NoError(t, cfg.AddTicketKey(10, bytes.Repeat([]byte{7}, TicketKeySize)))
	set2 := tkSet(t, 8, 9, 10, 11)
	set2.Keys[2].Key = bytes.Repeat([]byte{7}, TicketKeySize)
	require.NoError(t, cfg.ApplyTicketKeySet(set2))
	assert.Equal(t, []uint32{11, 10, 5, 4}, cfg.TicketKeyRevisions())
	assert.Equal(t, set2.SessionID, tkSessionID(cfg))

	// Invalid sets change nothing.
	bad := tkSet(t, 12)
	bad.Keys[0].Key = bad.Keys[0].Key[:10]
	err = cfg.ApplyTicketKeySet(bad)
	require.Error(t, err)
	var ce *ConfigError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, "tls_config_add_ticket_key", ce.Op)
	assert.Equal(t, "invalid ticket key set: ticket key rev 12 is 10 bytes, want 48", ce.Msg)
	assert.ErrorIs(t, cfg.ApplyTicketKeySet(nil), errInvalid)
	assert.Equal(t, []uint32{11, 10, 5, 4}, cfg.TicketKeyRevisions())

	// A closed Config.
	require.NoError(t, cfg.Close())
	assert.ErrorIs(t, cfg.ApplyTicketKeySet(tkSet(t, 20)), ErrClosed)
}

// TestApplyTicketKeySetLocalKeys: keys the binding generated itself do not
// hold back the fleet's revisions, and the fleet's keys take over again.
func TestApplyTicketKeySetLocalKeys(t *testing.T) {
	cfg := tkServerConfig(t, MinSessionLifetime)
	// ensureTicketKeys works for a live server connection of cfg.
	srv, err := NewServer(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })
	raw, peer := net.Pipe()
	t.Cleanup(func() { peer.Close() })
	sc, err := srv.Accept(raw)
	require.NoError(t, err)
	t.Cleanup(func() { sc.Close() })
	require.NoError(t, cfg.ensureTicketKeys(sc)) // no key yet: a local one
	revs := cfg.TicketKeyRevisions()
	require.Len(t, revs, 1)
	require.GreaterOrEqual(t, revs[0], LocalTicketKeyRevBase)
	set := tkSet(t, 1)
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{1, revs[0]}, cfg.TicketKeyRevisions())
	require.NoError(t, cfg.ensureTicketKeys(sc))
	assert.Equal(t, []uint32{1, revs[0]}, cfg.TicketKeyRevisions(), "a fresh fleet key is not replaced")
}

// TestApplyTicketKeySetSharesSessions: two servers that applied the same set
// resume each other's sessions (LibreSSL); the same keys under another
// session ID, or the same ID with other keys, do not.
func TestApplyTicketKeySetSharesSessions(t *testing.T) {
	set := tkSet(t, 1, 2)
	otherID := tkSet(t, 1, 2)
	for i := range otherID.Keys {
		otherID.Keys[i].Key = set.Keys[i].Key
	}
	otherKeys := tkSet(t, 1, 2)
	otherKeys.SessionID = set.SessionID

	serve := func(s *TicketKeySet) *tkServer {
		cfg := tkServerConfig(t, time.Hour)
		require.NoError(t, cfg.ApplyTicketKeySet(s)) // before Listen
		return tkServe(t, cfg)
	}
	a, b := serve(set), serve(set)
	c, d := serve(otherID), serve(otherKeys)
	client := tkClientConfig(t)
	steps := []struct {
		name string
		srv  *tkServer
		want bool // resumed, on a backend whose servers resume
	}{
		{"A first", a, false},
		{"B", b, true},
		{"A", a, true},
		{"B again", b, true},
		{"other session ID", c, false},
		{"A after C's session", a, false},
		{"B", b, true},
		{"other keys", d, false},
	}
	resumes := Backend().ServerSessionResumption
	for _, s := range steps {
		resumed, err := tkDial(s.srv.addr, client)
		require.NoError(t, err, s.name)
		assert.Equal(t, s.want && resumes, resumed, "%s: resumed (backend %v)", s.name, Backend())
	}
	for _, s := range []*tkServer{a, b, c, d} {
		assert.Empty(t, s.errors())
	}
}

// --- Following the file ----------------------------------------------------------

func TestFollowTicketKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys")
	set := tkSet(t, 1)
	require.NoError(t, WriteTicketKeyFile(path, set))
	cfg := tkServerConfig(t, time.Hour)

	f, err := FollowTicketKeyFile(cfg, path, 5*time.Millisecond)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions(), "applied synchronously")
	assert.Equal(t, set.SessionID, tkSessionID(cfg))
	assert.NoError(t, f.Err())

	revsAre := func(want ...uint32) func() bool {
		return func() bool { return slices.Equal(cfg.TicketKeyRevisions(), want) }
	}
	require.True(t, set.Rotate(time.Now().Add(time.Hour), time.Hour))
	require.NoError(t, WriteTicketKeyFile(path, set))
	tkEventually(t, "rev 2", revsAre(2, 1))
	assert.NoError(t, f.Err())

	// A broken file: the error is kept, the keys stay, and a repaired file
	// is picked up.
	require.NoError(t, os.WriteFile(path+".bad", []byte("garbage\n"), 0o600))
	require.NoError(t, os.Rename(path+".bad", path))
	tkEventually(t, "the error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "not a golibtls ticket key file")
	assert.Equal(t, []uint32{2, 1}, cfg.TicketKeyRevisions())
	require.True(t, set.Rotate(time.Now().Add(2*time.Hour), time.Hour))
	require.NoError(t, WriteTicketKeyFile(path, set))
	tkEventually(t, "rev 3", revsAre(3, 2, 1))
	tkEventually(t, "no error", func() bool { return f.Err() == nil })

	// Loosened permissions are an error too.
	require.NoError(t, os.Chmod(path, 0o644))
	tkEventually(t, "the mode error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "has mode 0644")
	require.NoError(t, os.Chmod(path, 0o600))
	tkEventually(t, "no error", func() bool { return f.Err() == nil })

	// Missing file.
	require.NoError(t, os.Rename(path, path+".away"))
	tkEventually(t, "the missing-file error", func() bool { return errors.Is(f.Err(), os.ErrNotExist) })
	require.NoError(t, os.Rename(path+".away", path))
	tkEventually(t, "no error", func() bool { return f.Err() == nil })

	// Another session ID cannot reach the running servers: refused.
	other := tkSet(t, 4)
	require.NoError(t, WriteTicketKeyFile(path, other))
	tkEventually(t, "the session ID error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "the session ID changed")
	assert.Equal(t, []uint32{3, 2, 1}, cfg.TicketKeyRevisions())
	assert.Equal(t, set.SessionID, tkSessionID(cfg))

	// Closed: nothing more is applied.
	require.NoError(t, WriteTicketKeyFile(path, set))
	tkEventually(t, "no error", func() bool { return f.Err() == nil })
	require.NoError(t, f.Close())
	require.NoError(t, f.Close(), "idempotent")
	require.True(t, set.Rotate(time.Now().Add(3*time.Hour), time.Hour))
	require.NoError(t, WriteTicketKeyFile(path, set))
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, []uint32{3, 2, 1}, cfg.TicketKeyRevisions())
}

func TestFollowTicketKeyFileErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "keys")
	require.NoError(t, WriteTicketKeyFile(good, tkSet(t, 1)))
	cfg := tkServerConfig(t, time.Hour)

	_, err := FollowTicketKeyFile(cfg, filepath.Join(dir, "missing"), time.Second)
	assert.ErrorIs(t, err, os.ErrNotExist)
	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("garbage\n"), 0o600))
	_, err = FollowTicketKeyFile(cfg, bad, time.Second)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a golibtls ticket key file")
	_, err = FollowTicketKeyFile(cfg, good, 0)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "interval 0s is not positive")
	_, err = FollowTicketKeyFile(nil, good, time.Second)
	require.Error(t, err)
	assert.Empty(t, cfg.TicketKeyRevisions(), "nothing applied by the failures")

	require.NoError(t, cfg.Close())
	_, err = FollowTicketKeyFile(cfg, good, time.Second)
	assert.ErrorIs(t, err, ErrClosed)
}

// --- Hazard 2 with a fleet's keys -------------------------------------------------

// Rotation under load: the ticket keys change every rotationLoadInterval
// while rotationLoadClients clients handshake with one server for
// rotationLoadDuration.
const (
	rotationLoadDuration = 10 * time.Second
	rotationLoadInterval = 100 * time.Millisecond
	rotationLoadClients  = 32
)

// TestTicketKeyRotationUnderLoad: applying a rotating set (and adding keys
// by hand) while handshakes run never fails a handshake and is clean under
// the race detector. On LibreSSL sessions keep resuming; on LibreTLS the
// server never resumes.
func TestTicketKeyRotationUnderLoad(t *testing.T) {
	const lifetime = time.Minute
	cfg := tkServerConfig(t, lifetime)
	set := tkSet(t, 1)
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	srv := tkServe(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), rotationLoadDuration)
	defer cancel()
	var wg sync.WaitGroup

	// The rotator: a fleet's set rotated and applied, with a key added by
	// hand now and then, and the revisions read back.
	var rotations atomic.Int64
	var rotErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(rotationLoadInterval)
		defer tick.Stop()
		fake := time.Now()
		for i := 1; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			fake = fake.Add(lifetime)
			if !set.Rotate(fake, lifetime) {
				rotErr = errors.New("Rotate did not rotate")
				return
			}
			newest := set.Keys[len(set.Keys)-1].Rev
			var err error
			if i%5 == 0 {
				err = cfg.AddTicketKey(newest, set.Keys[len(set.Keys)-1].Key)
			} else {
				err = cfg.ApplyTicketKeySet(set)
			}
			if err != nil {
				rotErr = fmt.Errorf("rotation %d: %w", i, err)
				return
			}
			if got := cfg.TicketKeyRevisions(); got[0] != newest {
				rotErr = fmt.Errorf("rotation %d: revisions %v, want %d first", i, got, newest)
				return
			}
			rotations.Add(1)
		}
	}()

	var handshakes, resumed atomic.Int64
	var mu sync.Mutex
	var clientErrs []error
	for range rotationLoadClients {
		client := tkClientConfig(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 1_000_000; i++ {
				r, err := tkDial(srv.addr, client)
				if err != nil {
					mu.Lock()
					clientErrs = append(clientErrs, err)
					mu.Unlock()
					continue
				}
				handshakes.Add(1)
				if r {
					resumed.Add(1)
				}
			}
		}()
	}
	wg.Wait()

	t.Logf("%v: %d rotations, %d handshakes (%d resumed) by %d clients; server saw %d (%d resumed)",
		Backend(), rotations.Load(), handshakes.Load(), resumed.Load(), rotationLoadClients, srv.handshakes.Load(), srv.resumed.Load())
	require.NoError(t, rotErr)
	assert.Empty(t, clientErrs, "failed client handshakes")
	assert.Empty(t, srv.errors(), "failed server handshakes")
	assert.GreaterOrEqual(t, rotations.Load(), int64(rotationLoadDuration/rotationLoadInterval/2))
	assert.Greater(t, handshakes.Load(), int64(rotationLoadClients))
	if Backend().ServerSessionResumption {
		assert.Positive(t, resumed.Load(), "LibreSSL resumes across rotations")
		assert.Equal(t, resumed.Load(), srv.resumed.Load())
	} else {
		assert.Zero(t, resumed.Load(), "LibreTLS servers never resume")
		assert.Zero(t, srv.resumed.Load())
	}
	for _, r := range cfg.TicketKeyRevisions() {
		assert.Less(t, r, LocalTicketKeyRevBase, "no emergency keys were needed")
	}
}

// Keys the fleet retired more than a lifetime ago are not applied (libtls
// would date them from now and accept their tickets for another lifetime);
// the newest key always is.
func TestApplyTicketKeySetSkipsRetiredKeys(t *testing.T) {
	cfg := tkServerConfig(t, time.Hour)
	set := tkSet(t, 1, 2, 3)
	set.Keys[0].Created = time.Now().Add(-3 * time.Hour)
	set.Keys[1].Created = time.Now().Add(-2 * time.Hour)
	set.Keys[2].Created = time.Now().Add(-90 * time.Minute)
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{3}, cfg.TicketKeyRevisions())
}

// --- The set as text, and its rotation step ----------------------------------------

// TestTicketKeySetText: MarshalText is the key file's bytes, UnmarshalText
// reads them back and validates like ReadTicketKeyFile.
func TestTicketKeySetText(t *testing.T) {
	set := tkSet(t, 3, 4)
	text, err := set.MarshalText()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, WriteTicketKeyFile(path, set))
	file, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(file), string(text), "the key file's bytes")

	var got TicketKeySet
	require.NoError(t, got.UnmarshalText(text))
	tkEqualSets(t, set, &got)
	clear(text)
	tkEqualSets(t, set, &got) // nothing retained from text

	// A failure leaves the set as it was; a success zeroes its old keys.
	old := got.Keys[0].Key
	err = got.UnmarshalText([]byte("garbage\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `libtls: ticket key set: line 1: not a golibtls ticket key file (first line "garbage"`)
	tkEqualSets(t, set, &got)
	err = got.UnmarshalText(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "libtls: ticket key set: is empty")
	other := tkSet(t, 9)
	text, err = other.MarshalText()
	require.NoError(t, err)
	require.NoError(t, got.UnmarshalText(text))
	tkEqualSets(t, other, &got)
	assert.Equal(t, make([]byte, TicketKeySize), old, "replaced keys zeroed")

	_, err = (&TicketKeySet{SessionID: []byte("id")}).MarshalText()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid set: no ticket keys")
	_, err = (*TicketKeySet)(nil).MarshalText()
	require.Error(t, err)
}

func TestRotateTicketKeySet(t *testing.T) {
	const life = time.Hour
	now := time.Now()
	set, changed, err := RotateTicketKeySet(nil, now, life)
	require.NoError(t, err)
	assert.True(t, changed, "a new set")
	require.NoError(t, set.validate())
	assert.Equal(t, []uint32{1}, tkRevs(set))

	same, changed, err := RotateTicketKeySet(set, now.Add(time.Minute), life)
	require.NoError(t, err)
	assert.False(t, changed, "nothing due")
	assert.Same(t, set, same)
	id := bytes.Clone(set.SessionID)
	rotated, changed, err := RotateTicketKeySet(set, set.NextRotation(life).Add(time.Nanosecond), life)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Same(t, set, rotated, "rotated in place")
	assert.Equal(t, []uint32{1, 2}, tkRevs(set))
	assert.Equal(t, id, set.SessionID, "the session ID never changes")

	for _, l := range []time.Duration{0, 3 * time.Second, 25 * time.Hour} {
		_, _, err := RotateTicketKeySet(set, now, l)
		require.Error(t, err, "lifetime %v", l)
		assert.Contains(t, err.Error(), "is outside 4s to 24h0m0s")
	}
	_, _, err = RotateTicketKeySet(&TicketKeySet{SessionID: []byte("id")}, now, life)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "invalid set: no ticket keys")
	last := tkSet(t, LocalTicketKeyRevBase-1)
	_, _, err = RotateTicketKeySet(last, now.Add(time.Hour), life)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ticket key revisions exhausted")
}

// TestNextRotationSchedule: 3/4 of the lifetime, libtls's schedule, except
// where a server's Config would add a key of its own first (lifetimes
// under 8s): there the next key comes followSlack before that.
func TestNextRotationSchedule(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	set := &TicketKeySet{SessionID: []byte("id"), Keys: []TicketKeyEntry{{Rev: 1, Created: t0, Key: make([]byte, TicketKeySize)}}}
	for _, tc := range []struct{ life, age time.Duration }{
		{4 * time.Second, 2 * time.Second},
		{5 * time.Second, 3 * time.Second},
		{7 * time.Second, 5 * time.Second},
		{8 * time.Second, 6 * time.Second},
		{11 * time.Second, 8250 * time.Millisecond},
		{12 * time.Second, 9 * time.Second},
		{16 * time.Second, 12 * time.Second},
		{2 * time.Hour, 90 * time.Minute},
		{24 * time.Hour, 18 * time.Hour},
	} {
		assert.Equal(t, t0.Add(tc.age), set.NextRotation(tc.life), "lifetime %v", tc.life)
	}
	for life := MinSessionLifetime; life <= MaxSessionLifetime; life += life/8 + time.Second {
		age := set.NextRotation(life).Sub(t0)
		ownKey := life - max(time.Second, life/16)
		assert.LessOrEqual(t, age+followSlack, ownKey, "lifetime %v: the next key reaches the servers before their own", life)
		assert.LessOrEqual(t, age, life*3/4, "lifetime %v: never later than libtls's schedule", life)
		assert.GreaterOrEqual(t, age, life/4, "lifetime %v: four keys cover a lifetime", life)
	}
	assert.Equal(t, 9999, set.NextRotation(0).Year(), "no lifetime: never")
}

// TestFleetKeyBeforeOwnKey: at the minimum lifetime a server given a
// fleet key holds no key of its own until the fleet's next key is due and
// has had followSlack to arrive (the schedule NextRotation keeps), on the
// Config's real key handling, with handshakes running.
func TestFleetKeyBeforeOwnKey(t *testing.T) {
	life := MinSessionLifetime
	cfg := tkServerConfig(t, life)
	set := tkSet(t, 1)
	set.Keys[0].Created = time.Now()
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	srv := tkServe(t, cfg)
	client := tkClientConfig(t)

	deadline := set.NextRotation(life).Add(followSlack)
	n := 0
	for ; time.Now().Before(deadline) && n < 1000; n++ {
		_, err := tkDial(srv.addr, client)
		require.NoError(t, err)
		assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions(), "handshake %d, %v after the key: only the fleet's key", n, time.Since(set.Keys[0].Created).Round(time.Millisecond))
		time.Sleep(20 * time.Millisecond)
	}
	require.Greater(t, n, 10)
	require.True(t, set.Rotate(time.Now(), life), "due")
	require.NoError(t, cfg.ApplyTicketKeySet(set))
	assert.Equal(t, []uint32{2, 1}, cfg.TicketKeyRevisions())
	assert.Empty(t, srv.errors())
}

// --- Secret volumes -------------------------------------------------------------

// tkVolume is a directory laid out and updated the way the kubelet's
// AtomicWriter does for a secret volume:
//
//	keys -> ..data/keys
//	..data -> ..2026_01_02_15_04_05.000000001
//	..2026_01_02_15_04_05.000000001/keys
type tkVolume struct {
	t    testing.TB
	dir  string
	n    int
	data string // the current timestamped directory
}

func newTKVolume(t testing.TB) *tkVolume {
	v := &tkVolume{t: t, dir: t.TempDir()}
	require.NoError(t, os.Symlink(filepath.Join("..data", "keys"), filepath.Join(v.dir, "keys")))
	return v
}

func (v *tkVolume) path() string { return filepath.Join(v.dir, "keys") }

// update publishes data as the file with mode, then deletes the old
// timestamped directory, as the kubelet does.
func (v *tkVolume) update(data []byte, mode os.FileMode) {
	t := v.t
	v.n++
	name := fmt.Sprintf("..2026_01_02_15_04_05.%09d", v.n)
	ts := filepath.Join(v.dir, name)
	require.NoError(t, os.Mkdir(ts, 0o755))
	f := filepath.Join(ts, "keys")
	require.NoError(t, os.WriteFile(f, data, 0o600))
	require.NoError(t, os.Chmod(f, mode))
	tmp := filepath.Join(v.dir, "..data_tmp")
	require.NoError(t, os.Symlink(name, tmp))
	require.NoError(t, os.Rename(tmp, filepath.Join(v.dir, "..data")))
	if v.data != "" {
		require.NoError(t, os.RemoveAll(v.data))
	}
	v.data = ts
}

func (v *tkVolume) updateSet(set *TicketKeySet, mode os.FileMode) {
	text, err := set.MarshalText()
	require.NoError(v.t, err)
	defer clear(text)
	v.update(text, mode)
}

func TestReadTicketKeyFileSecretVolume(t *testing.T) {
	set := tkSet(t, 1, 2)
	for _, mode := range []os.FileMode{0o400, 0o440, 0o600, 0o640} {
		t.Run(fmt.Sprintf("mode %#o is fine", mode), func(t *testing.T) {
			v := newTKVolume(t)
			v.updateSet(set, mode)
			got, err := ReadTicketKeyFile(v.path())
			require.NoError(t, err)
			tkEqualSets(t, set, got)
		})
	}
	for _, mode := range []os.FileMode{0o444, 0o404, 0o460, 0o450, 0o644, 0o660} {
		t.Run(fmt.Sprintf("mode %#o", mode), func(t *testing.T) {
			v := newTKVolume(t)
			v.updateSet(set, mode)
			_, err := ReadTicketKeyFile(v.path())
			require.Error(t, err)
			assert.Contains(t, err.Error(), fmt.Sprintf("with mode %#o; it holds secret keys: others must have no access and the group at most read", mode))
		})
	}
	t.Run("..data out of the volume", func(t *testing.T) {
		v := newTKVolume(t)
		elsewhere := t.TempDir()
		require.NoError(t, WriteTicketKeyFile(filepath.Join(elsewhere, "keys"), set))
		require.NoError(t, os.Symlink(elsewhere, filepath.Join(v.dir, "..data")))
		_, err := ReadTicketKeyFile(v.path())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "outside its directory")
	})
	t.Run("dangling ..data", func(t *testing.T) {
		v := newTKVolume(t)
		v.updateSet(set, 0o400)
		require.NoError(t, os.RemoveAll(v.data))
		_, err := ReadTicketKeyFile(v.path())
		require.Error(t, err)
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.Contains(t, err.Error(), "is a symlink that does not resolve")
	})
	t.Run("a directory", func(t *testing.T) {
		v := newTKVolume(t)
		require.NoError(t, os.MkdirAll(filepath.Join(v.dir, "..x", "keys"), 0o700))
		require.NoError(t, os.Symlink("..x", filepath.Join(v.dir, "..data")))
		_, err := ReadTicketKeyFile(v.path())
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is not a regular file")
	})
	t.Run("the rotator does not replace the link", func(t *testing.T) {
		v := newTKVolume(t)
		v.updateSet(set, 0o400)
		_, _, err := RotateTicketKeyFile(v.path(), time.Hour)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is a symlink; the rotator writes only regular files")
		fi, err := os.Lstat(v.path())
		require.NoError(t, err)
		assert.NotZero(t, fi.Mode()&os.ModeSymlink)
	})
	if os.Geteuid() == 0 {
		// As the kubelet leaves it with an fsGroup: root:<fsGroup> 0440.
		t.Run("root and fsGroup", func(t *testing.T) {
			v := newTKVolume(t)
			v.updateSet(set, 0o440)
			require.NoError(t, os.Chown(filepath.Join(v.data, "keys"), 0, 12345))
			_, err := ReadTicketKeyFile(v.path())
			require.NoError(t, err)
			require.NoError(t, os.Chown(filepath.Join(v.data, "keys"), 12345, 12345))
			_, err = ReadTicketKeyFile(v.path())
			require.Error(t, err)
			assert.Contains(t, err.Error(), "owned by uid 12345, neither uid 0 nor root")
		})
	}
}

// TestFollowTicketKeyFileSecretVolume: the follower sees every swap of
// ..data (its own link, keys -> ..data/keys, never changes) and survives
// the deletion of the old target.
func TestFollowTicketKeyFileSecretVolume(t *testing.T) {
	v := newTKVolume(t)
	set := tkSet(t, 1)
	v.updateSet(set, 0o440)
	cfg := tkServerConfig(t, time.Hour)
	f, err := FollowTicketKeyFile(cfg, v.path(), 5*time.Millisecond)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, []uint32{1}, cfg.TicketKeyRevisions())
	assert.Equal(t, set.SessionID, tkSessionID(cfg))

	for i := 1; i <= 3; i++ {
		old := v.data
		require.True(t, set.Rotate(time.Now().Add(time.Duration(i)*time.Hour), time.Hour))
		v.updateSet(set, 0o440)
		_, err := os.Stat(old)
		require.ErrorIs(t, err, os.ErrNotExist, "the old target is gone")
		want := tkRevs(set)
		slices.Reverse(want)
		tkEventually(t, fmt.Sprintf("swap %d", i), func() bool { return slices.Equal(cfg.TicketKeyRevisions(), want) })
		assert.NoError(t, f.Err())
	}

	// A swap to a world-readable file is refused and the keys stay; the
	// next good swap is applied.
	before := cfg.TicketKeyRevisions()
	require.True(t, set.Rotate(time.Now().Add(10*time.Hour), time.Hour))
	v.updateSet(set, 0o444)
	tkEventually(t, "the mode error", func() bool { return f.Err() != nil })
	assert.Contains(t, f.Err().Error(), "with mode 0444")
	assert.Equal(t, before, cfg.TicketKeyRevisions())
	v.updateSet(set, 0o400)
	tkEventually(t, "rev 5", func() bool { return cfg.TicketKeyRevisions()[0] == 5 })
	tkEventually(t, "no error", func() bool { return f.Err() == nil })
}
