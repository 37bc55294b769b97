// Package tlsrecord follows the record framing of a TLS byte stream, so that
// a reader can tell whether the stream ended between two records or in the
// middle of one (a truncation).
package tlsrecord

// HeaderLen is the length of a TLS record header: content type, version,
// and the body's length in its last two bytes.
const HeaderLen = 5

// Tracker follows the framing of the bytes fed to it. The zero Tracker is at
// the start of a stream.
type Tracker struct {
	hdr  [HeaderLen]byte
	nhdr int // header bytes seen of the current record
	body int // body bytes still expected
}

// Feed advances the tracker over b, the next bytes of the stream. It skips
// record bodies without looking at them, so it costs a few steps per
// record, not per byte.
func (t *Tracker) Feed(b []byte) {
	for len(b) > 0 {
		if t.body > 0 {
			n := min(t.body, len(b))
			t.body -= n
			b = b[n:]
			continue
		}
		n := copy(t.hdr[t.nhdr:], b)
		t.nhdr += n
		b = b[n:]
		if t.nhdr == HeaderLen {
			t.body = int(t.hdr[3])<<8 | int(t.hdr[4])
			t.nhdr = 0
		}
	}
}

// AtBoundary reports whether the bytes fed so far end at the end of a
// record (or are none).
func (t *Tracker) AtBoundary() bool { return t.nhdr == 0 && t.body == 0 }
