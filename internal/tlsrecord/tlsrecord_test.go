package tlsrecord

import "testing"

func TestTracker(t *testing.T) {
	rec := func(n int) []byte {
		b := append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, make([]byte, n)...)
		return b
	}
	stream := append(append(rec(3), rec(300)...), rec(0)...)
	// Fed whole, byte by byte and in odd pieces, the boundaries are the
	// same.
	boundaries := map[int]bool{0: true, 8: true, 8 + 305: true, 8 + 305 + 5: true}
	for _, step := range []int{1, 2, 3, 7, 64, len(stream)} {
		var tr Tracker
		for off := 0; off < len(stream); {
			end := min(off+step, len(stream))
			tr.Feed(stream[off:end])
			off = end
			if step == 1 && tr.AtBoundary() != boundaries[off] {
				t.Fatalf("after %d bytes: AtBoundary %v, want %v", off, tr.AtBoundary(), boundaries[off])
			}
		}
		if !tr.AtBoundary() {
			t.Fatalf("step %d: not at a boundary at the end", step)
		}
	}
	var tr Tracker
	tr.Feed(stream[:4]) // inside the first header
	if tr.AtBoundary() {
		t.Fatal("a partial header is not a boundary")
	}
	tr.Feed(stream[4:6]) // inside the first body
	if tr.AtBoundary() {
		t.Fatal("a partial body is not a boundary")
	}
}
