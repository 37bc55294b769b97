package libtls_test

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/golibtls/libtls"
)

const opTicketKey = "tls_config_add_ticket_key"

var (
	errKeySize      = libtlsErr(opTicketKey, "wrong amount of ticket key data")
	errKeyPresent   = libtlsErr(opTicketKey, "ticket key already present")
	errRevisionZero = ownErr(opTicketKey, "ticket key revision 0 is reserved (it equals libtls's empty key slots); use revisions from 1")
)

func localRevErr(rev uint32) *wantErr {
	return ownErr(opTicketKey, fmt.Sprintf("ticket key revision %#x is reserved for keys the binding generates", rev))
}

// keyFor is the usual key of revision rev in these tests.
func keyFor(rev uint32) []byte { return ticketKey(rev, 0) }

// ticketKey is a distinct, deterministic 48-byte key for (rev, variant).
func ticketKey(rev uint32, variant byte) []byte {
	k := make([]byte, libtls.TicketKeySize)
	for i := range k {
		k[i] = byte(rev)*7 + byte(i) + variant*101 + 1
	}
	return k
}

// ticketStep is one AddTicketKey call and its expected result.
type ticketStep struct {
	rev  uint32
	key  []byte
	want *wantErr
}

func add(rev uint32) ticketStep { return ticketStep{rev, keyFor(rev), nil} }

func TestAddTicketKey(t *testing.T) {
	local := libtls.LocalTicketKeyRevBase
	tests := []struct {
		name  string
		steps []ticketStep
		revs  []uint32 // TicketKeyRevisions afterwards, newest first
	}{
		{"48 bytes", []ticketStep{add(1)}, []uint32{1}},
		{"all-zero key", []ticketStep{{1, make([]byte, 48), nil}}, []uint32{1}},
		{"highest caller revision", []ticketStep{add(local - 1)}, []uint32{local - 1}},
		{"nil key", []ticketStep{{1, nil, errKeySize}}, []uint32{}},
		{"0 bytes", []ticketStep{{1, []byte{}, errKeySize}}, []uint32{}},
		{"1 byte", []ticketStep{{1, []byte{1}, errKeySize}}, []uint32{}},
		{"47 bytes", []ticketStep{{1, seq(47), errKeySize}}, []uint32{}},
		{"49 bytes", []ticketStep{{1, seq(49), errKeySize}}, []uint32{}},
		{"96 bytes", []ticketStep{{1, seq(96), errKeySize}}, []uint32{}},
		// Revision 0 equals libtls's empty slots; the binding refuses it
		// whatever the key, before libtls sees it.
		{"rev 0 on a fresh config", []ticketStep{{0, ticketKey(0, 0), errRevisionZero}}, []uint32{}},
		{"rev 0 with an all-zero key", []ticketStep{{0, make([]byte, 48), errRevisionZero}}, []uint32{}},
		{"rev 0 with a wrong size", []ticketStep{{0, seq(47), errRevisionZero}}, []uint32{}},
		{"rev 0 after other keys", []ticketStep{add(1), add(2), {0, ticketKey(0, 0), errRevisionZero}}, []uint32{2, 1}},
		// Revisions from LocalTicketKeyRevBase are the binding's own.
		{"binding's revision base", []ticketStep{{local, keyFor(1), localRevErr(local)}}, []uint32{}},
		{"max revision", []ticketStep{{0xffffffff, keyFor(1), localRevErr(0xffffffff)}}, []uint32{}},
		{"re-adding the newest key is a no-op", []ticketStep{add(1), add(1), add(1)}, []uint32{1}},
		{"re-adding the newest key after others", []ticketStep{add(1), add(2), add(2)}, []uint32{2, 1}},
		{"newest rev with another key", []ticketStep{add(1), {1, ticketKey(1, 1), errKeyPresent}}, []uint32{1}},
		{"older rev with the same key", []ticketStep{add(1), add(2), {1, keyFor(1), errKeyPresent}}, []uint32{2, 1}},
		{"older rev with another key", []ticketStep{add(1), add(2), {1, ticketKey(1, 1), errKeyPresent}}, []uint32{2, 1}},
		{"oldest of four", []ticketStep{add(1), add(2), add(3), add(4), {1, keyFor(1), errKeyPresent}}, []uint32{4, 3, 2, 1}},
		{"lower rev than the newest is fine when new", []ticketStep{add(10), add(3)}, []uint32{3, 10}},
		{
			// Four slots: the fifth key evicts rev 1, which can then be
			// added again, while rev 2 is still held (and is evicted by that
			// re-add of rev 1, and so on).
			"a fifth key evicts the oldest",
			[]ticketStep{
				add(1), add(2), add(3), add(4), add(5),
				{2, keyFor(2), errKeyPresent},
				add(1), // slots: 1 5 4 3
				add(2), // slots: 2 1 5 4
				add(3), // slots: 3 2 1 5
				{5, keyFor(5), errKeyPresent},
				{1, keyFor(1), errKeyPresent},
			},
			[]uint32{3, 2, 1, 5},
		},
		{
			// A no-op re-add of the newest takes no slot.
			"a no-op re-add does not evict",
			[]ticketStep{
				add(1), add(2), add(3), add(4), add(4), add(4),
				add(5), // evicts 1 only: slots 5 4 3 2
				{2, keyFor(2), errKeyPresent},
				add(1),
			},
			[]uint32{1, 5, 4, 3},
		},
		{
			// Failed adds take no slot either.
			"failed adds do not evict",
			[]ticketStep{
				add(1), add(2), add(3), add(4),
				{5, seq(47), errKeySize}, {5, seq(49), errKeySize}, {3, ticketKey(3, 9), errKeyPresent}, {0, ticketKey(0, 0), errRevisionZero},
				{1, keyFor(1), errKeyPresent},
			},
			[]uint32{4, 3, 2, 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := newTestConfig(t)
			for i, s := range tc.steps {
				orig := slices.Clone(s.key)
				err := cfg.AddTicketKey(s.rev, s.key)
				t.Run(fmt.Sprintf("step %d rev %d", i, s.rev), func(t *testing.T) {
					checkErr(t, err, s.want)
				})
				assert.Equal(t, orig, s.key, "step %d: the caller's key was modified", i)
			}
			if diff := cmp.Diff(tc.revs, cfg.TicketKeyRevisions(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("TicketKeyRevisions (-want +got):\n%s", diff)
			}
		})
	}
	assert.Equal(t, 48, libtls.TicketKeySize)
}

// TestAddTicketKeyWithLifetime: ticket keys and the session lifetime are
// independent settings; neither order fails.
func TestAddTicketKeyWithLifetime(t *testing.T) {
	for _, keyFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("key first %v", keyFirst), func(t *testing.T) {
			cfg := newTestConfig(t)
			if keyFirst {
				require.NoError(t, cfg.AddTicketKey(1, keyFor(1)))
			}
			require.NoError(t, cfg.SetSessionLifetime(libtls.MinSessionLifetime))
			require.NoError(t, cfg.SetSessionID([]byte("fleet")))
			if !keyFirst {
				require.NoError(t, cfg.AddTicketKey(1, keyFor(1)))
			}
			checkErr(t, cfg.AddTicketKey(1, ticketKey(1, 1)), errKeyPresent)
		})
	}
}

func TestNewTicketKey(t *testing.T) {
	a, err := libtls.NewTicketKey()
	require.NoError(t, err)
	b, err := libtls.NewTicketKey()
	require.NoError(t, err)
	require.Len(t, a, libtls.TicketKeySize)
	require.Len(t, b, libtls.TicketKeySize)
	assert.NotEqual(t, a, b)
	assert.NotEqual(t, make([]byte, libtls.TicketKeySize), a)
	cfg := newTestConfig(t)
	require.NoError(t, cfg.AddTicketKey(1, a))
	require.NoError(t, cfg.AddTicketKey(1, a))
	checkErr(t, cfg.AddTicketKey(1, b), errKeyPresent)
}

// TestTicketKeyRevisionsAfterClose: the read-only accessor does not crash
// on a closed Config and reports what was added.
func TestTicketKeyRevisionsAfterClose(t *testing.T) {
	cfg, err := libtls.NewConfig()
	require.NoError(t, err)
	require.NoError(t, cfg.AddTicketKey(7, keyFor(7)))
	require.NoError(t, cfg.Close())
	assert.Equal(t, []uint32{7}, cfg.TicketKeyRevisions())
	require.ErrorIs(t, cfg.AddTicketKey(8, keyFor(8)), net.ErrClosed)
	assert.Equal(t, []uint32{7}, cfg.TicketKeyRevisions())
}
