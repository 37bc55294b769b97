package etcdkeys

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/api/v3/mvccpb"

	libtls "github.com/golibtls/libtls"
)

// newKEK returns a random KEK.
func newKEK(t testing.TB) *KEK {
	t.Helper()
	key := make([]byte, KEKSize)
	_, err := rand.Read(key)
	require.NoError(t, err)
	defer clear(key)
	k, err := NewKEK(key)
	require.NoError(t, err)
	return k
}

// writeKEKFile writes a random KEK file with mode into dir.
func writeKEKFile(t testing.TB, dir, name string, size int, mode os.FileMode) string {
	t.Helper()
	data := make([]byte, size)
	_, err := rand.Read(data)
	require.NoError(t, err)
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, data, mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}

// TestReadKEKFile: 32 bytes, private to its owner; anything else is
// refused saying what is wrong.
func TestReadKEKFile(t *testing.T) {
	dir := t.TempDir()
	good := writeKEKFile(t, dir, "good", KEKSize, 0o600)
	k, err := ReadKEKFile(good)
	require.NoError(t, err)
	assert.Len(t, k.ID(), 16)
	again, err := ReadKEKFile(good)
	require.NoError(t, err)
	assert.Equal(t, k.ID(), again.ID(), "the ID depends on the key only")
	readOnly := writeKEKFile(t, dir, "ro", KEKSize, 0o400)
	ro, err := ReadKEKFile(readOnly)
	require.NoError(t, err)
	assert.NotEqual(t, k.ID(), ro.ID())

	hexText := filepath.Join(dir, "hex")
	require.NoError(t, os.WriteFile(hexText, []byte(hex.EncodeToString(make([]byte, KEKSize))+"\n"), 0o600))
	zeros := filepath.Join(dir, "zeros")
	require.NoError(t, os.WriteFile(zeros, make([]byte, KEKSize), 0o600))
	for _, tc := range []struct {
		path string
		want []string
	}{
		{writeKEKFile(t, dir, "public", KEKSize, 0o644), []string{"has mode 0644", "chmod 600"}},
		{writeKEKFile(t, dir, "group", KEKSize, 0o640), []string{"has mode 0640"}},
		{writeKEKFile(t, dir, "short", KEKSize-1, 0o600), []string{"is 31 bytes; a KEK is 32 random bytes"}},
		{writeKEKFile(t, dir, "long", KEKSize+1, 0o600), []string{"is 33 bytes"}},
		{hexText, []string{"is 65 bytes", "not text"}},
		{zeros, []string{"all zeros"}},
		{dir, []string{"not a regular file"}},
		{filepath.Join(dir, "missing"), []string{"no such file"}},
	} {
		_, err := ReadKEKFile(tc.path)
		if assert.Error(t, err, tc.path) {
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w, tc.path)
			}
		}
	}
	_, err = NewKEK(make([]byte, 16))
	assert.ErrorContains(t, err, "a KEK is 32 random bytes, not 16")
}

// TestSeal: a sealed set opens with its KEK under its key only, holds no
// key material in clear, and every misfit is an error that says which.
func TestSeal(t *testing.T) {
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	text, err := set.MarshalText()
	require.NoError(t, err)
	defer clear(text)
	k, other := newKEK(t), newKEK(t)
	const key = "/fleet/ticket-keys"

	sealed, err := k.seal(key, text)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(sealed), sealedHeader+"\nkek "+k.ID()+"\nsealed "), "%s", sealed)
	assert.NotContains(t, string(sealed), hex.EncodeToString(set.Keys[0].Key))
	assert.NotContains(t, string(sealed), hex.EncodeToString(set.SessionID))
	again, err := k.seal(key, text)
	require.NoError(t, err)
	assert.NotEqual(t, sealed, again, "a nonce of its own")

	decode := func(name string, value []byte, kek *KEK) (*libtls.TicketKeySet, bool, error) {
		return decodeSet(name, 7, bytes.Clone(value), kek)
	}
	got, isSealed, err := decode(key, sealed, k)
	require.NoError(t, err)
	assert.True(t, isSealed)
	assert.Equal(t, set.SessionID, got.SessionID)
	assert.Equal(t, set.Keys[0].Key, got.Keys[0].Key)
	got.Zero()

	got, isSealed, err = decode(key, text, k)
	require.NoError(t, err, "a set in clear is read (a Rotator seals it)")
	assert.False(t, isSealed)
	got.Zero()

	_, _, err = decode(key, sealed, nil)
	assert.ErrorIs(t, err, ErrWrongKEK)
	assert.ErrorContains(t, err, "is sealed with KEK "+k.ID()+" and there is no KEK here")
	_, _, err = decode(key, sealed, other)
	assert.ErrorIs(t, err, ErrWrongKEK)
	assert.ErrorContains(t, err, "not with this KEK ("+other.ID()+")")
	_, _, err = decode("/other/key", sealed, k)
	assert.ErrorContains(t, err, "/other/key at revision 7 does not unseal with KEK "+k.ID())
	assert.False(t, errors.Is(err, ErrWrongKEK))

	sv, err := parseSealed(sealed)
	require.NoError(t, err)
	sv.ct[len(sv.ct)/2] ^= 1
	flipped := []byte(sealedHeader + "\nkek " + sv.kek + "\nsealed " + base64.StdEncoding.EncodeToString(sv.ct) + "\n")
	_, _, err = decode(key, flipped, k)
	assert.ErrorContains(t, err, "does not unseal")
	for _, bad := range []string{
		sealedHeader + "\n",
		sealedHeader + "\nkek " + k.ID() + "\n",
		sealedHeader + "\nkek xyz\nsealed AAAA\n",
		sealedHeader + "\nkek " + k.ID() + "\nsealed ***\n",
		sealedHeader + "\nkek " + k.ID() + "\nsealed AAAA\n",
		sealedHeader + "\nkek " + k.ID() + "\nsealed AAAA\nmore\n",
	} {
		_, _, err := decode(key, []byte(bad), k)
		assert.Error(t, err, "%q", bad)
	}
}

// TestFollowerRefusesClearWithKEK: with a KEK, a Follower takes sealed sets
// only.
func TestFollowerRefusesClearWithKEK(t *testing.T) {
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	text, err := set.MarshalText()
	require.NoError(t, err)
	f := &Follower{key: "/k", kek: newKEK(t)}
	_, err = f.decode(&mvccpb.KeyValue{Value: text, ModRevision: 3})
	assert.ErrorIs(t, err, ErrWrongKEK)
	assert.ErrorContains(t, err, "/k at revision 3 is stored in clear")
	assert.Equal(t, make([]byte, len(text)), text, "the value is zeroed")
}

// TestEncodeDecodeSet: what a program uses to move a set between a key
// file and etcd, sealed or not.
func TestEncodeDecodeSet(t *testing.T) {
	set, err := libtls.NewTicketKeySet()
	require.NoError(t, err)
	defer set.Zero()
	k := newKEK(t)
	for _, kek := range []*KEK{nil, k} {
		value, err := EncodeSet("/k", set, kek)
		require.NoError(t, err)
		assert.Equal(t, kek != nil, isSealed(value))
		got, sealed, err := DecodeSet("/k", value, kek)
		require.NoError(t, err)
		assert.Equal(t, kek != nil, sealed)
		assert.Equal(t, set.SessionID, got.SessionID)
		assert.Equal(t, set.Keys[0].Key, got.Keys[0].Key)
		got.Zero()
		assert.Equal(t, make([]byte, len(value)), value, "zeroed")
	}
	value, err := EncodeSet("/k", set, k)
	require.NoError(t, err)
	_, _, err = DecodeSet("/other", value, k)
	assert.EqualError(t, err, "etcdkeys: /other does not unseal with KEK "+k.ID()+": altered, or copied from another key")
	_, err = EncodeSet("/k", &libtls.TicketKeySet{}, k)
	assert.Error(t, err, "an invalid set")
}
