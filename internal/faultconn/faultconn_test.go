package faultconn

import (
	"errors"
	"io"
	"net"
	"slices"
	"testing"
)

// run pushes n writes of 100 bytes through a wrapped pipe end and reads
// them at the other end, returning the faults injected.
func run(t *testing.T, seed uint64, opts Options, n int) []Kind {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = io.Copy(io.Discard, b) }()
	c := Wrap(a, seed, opts)
	buf := make([]byte, 100)
	for range n {
		if _, err := c.Write(buf); err != nil && !errors.Is(err, ErrInjected) && !errors.Is(err, io.ErrClosedPipe) {
			t.Fatalf("unexpected error %v", err)
		}
	}
	return c.Injected()
}

func TestSameSeedSameFaults(t *testing.T) {
	opts := Options{Rate: 0.3, Kinds: []Kind{Error, Short, Delay, PartialWrite}}
	first := run(t, 42, opts, 200)
	if len(first) < 20 {
		t.Fatalf("only %d faults at rate 0.3", len(first))
	}
	if again := run(t, 42, opts, 200); !slices.Equal(first, again) {
		t.Fatalf("seed 42 gave %v, then %v", first, again)
	}
	if other := run(t, 43, opts, 200); slices.Equal(first, other) {
		t.Fatal("seeds 42 and 43 gave the same faults")
	}
	if none := run(t, 42, Options{}, 200); len(none) != 0 {
		t.Fatalf("rate 0 injected %v", none)
	}
	if late := run(t, 42, Options{Rate: 1, Kinds: []Kind{Error}, After: 1 << 30}, 200); len(late) != 0 {
		t.Fatalf("After was not honoured: %v", late)
	}
}

func TestEOFAndReset(t *testing.T) {
	a, b := net.Pipe()
	defer b.Close()
	c := Wrap(a, 1, Options{Rate: 1, Kinds: []Kind{EOF}})
	if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("EOF fault: %d, %v", n, err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after EOF: %v", err)
	}
	if _, err := c.Write([]byte{1}); !errors.Is(err, ErrInjected) {
		t.Fatalf("write after EOF: %v", err)
	}
	if _, err := b.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("the peer should see the end: %v", err)
	}
	if !c.Killed() {
		t.Fatal("not killed")
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		s, err := l.Accept()
		if err == nil {
			// After the peer's first byte, so that its connect is over.
			_, _ = s.Read(make([]byte, 1))
			_, _ = Wrap(s, 1, Options{Rate: 1, Kinds: []Kind{Reset}}).Read(make([]byte, 1))
		}
	}()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := peer.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Read(make([]byte, 1)); err == nil || err == io.EOF {
		t.Fatalf("a reset should reach the peer as an error, got %v", err)
	}
}

func TestAtRecordBoundary(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := Wrap(a, 1, Options{})
	go func() { _, _ = b.Write([]byte{23, 3, 3, 0, 2, 'h', 'i', 23, 3}) }()
	buf := make([]byte, 7)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if !c.AtRecordBoundary() {
		t.Fatal("a whole record was read")
	}
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		t.Fatal(err)
	}
	if c.AtRecordBoundary() {
		t.Fatal("a partial header was read")
	}
}
