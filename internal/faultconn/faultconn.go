// Package faultconn wraps a net.Conn so that it misbehaves the way real
// networks and peers do, at random but reproducible points: errors, short
// reads and writes, delays, resets and early end-of-file. The tests of the
// binding run handshakes and transfers over such connections, on both ends,
// under many seeds, and check that nothing panics, hangs or leaks, and that
// every error is classified as a Go program expects.
package faultconn

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/golibtls/libtls/internal/tlsrecord"
)

// ErrInjected is wrapped by every error the wrapper makes up itself.
var ErrInjected = errors.New("faultconn: injected fault")

// Kind is a kind of fault.
type Kind int

const (
	// None passes the call through.
	None Kind = iota
	// Error fails the call with an error wrapping ErrInjected, without
	// touching the connection; later calls may succeed again.
	Error
	// Short reads into, or writes from, a random prefix of the caller's
	// buffer. A short write completes the rest with further writes of the
	// underlying connection, as a congested network does; a short read
	// returns fewer bytes than available.
	Short
	// Delay sleeps up to MaxDelay before the call.
	Delay
	// Reset closes the connection abruptly (a TCP reset where the
	// connection allows it) and fails the call.
	Reset
	// EOF closes the connection and ends the read side: Read returns
	// io.EOF, Write fails. The peer sees the stream end where it is,
	// usually in the middle of a TLS record.
	EOF
	// PartialWrite writes a random prefix of the buffer, then fails with
	// an error wrapping ErrInjected (the io.Writer contract for n < len).
	PartialWrite
	numKinds
)

func (k Kind) String() string {
	switch k {
	case None:
		return "none"
	case Error:
		return "error"
	case Short:
		return "short"
	case Delay:
		return "delay"
	case Reset:
		return "reset"
	case EOF:
		return "eof"
	case PartialWrite:
		return "partial-write"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Options say how often the wrapper misbehaves.
type Options struct {
	// Rate is the probability (0 to 1) that a call gets a fault.
	Rate float64
	// Kinds are the faults to choose from, uniformly; empty means all.
	Kinds []Kind
	// MaxDelay bounds a Delay fault (default 5ms).
	MaxDelay time.Duration
	// After is the number of bytes (read and written together) that pass
	// untouched before the first fault, so that a test can aim faults at a
	// handshake (small) or a transfer (large).
	After int64
}

// Conn is a faulty net.Conn. Faults are drawn from a generator seeded by
// the seed given to Wrap, one draw per Read or Write in call order; with
// the same seed and the same sequence of calls, the same faults happen.
type Conn struct {
	net.Conn
	opts Options

	mu       sync.Mutex
	rng      *rand.Rand
	passed   int64 // bytes read and written so far
	dead     error // set after Reset or EOF: every later call fails
	injected []Kind
	eofRead  bool
	records  tlsrecord.Tracker // the TLS record framing of what was read
	wrecords tlsrecord.Tracker // ...and of what was written
}

// Wrap wraps c. A zero Options.Rate never injects anything.
func Wrap(c net.Conn, seed uint64, opts Options) *Conn {
	if opts.MaxDelay <= 0 {
		opts.MaxDelay = 5 * time.Millisecond
	}
	return &Conn{Conn: c, opts: opts, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// draw decides the fault of one call and a random fraction for it.
func (c *Conn) draw(write bool) (Kind, float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.passed < c.opts.After || c.rng.Float64() >= c.opts.Rate {
		return None, 0
	}
	kinds := c.opts.Kinds
	var k Kind
	if len(kinds) == 0 {
		k = Kind(1 + c.rng.IntN(int(numKinds)-1))
	} else {
		k = kinds[c.rng.IntN(len(kinds))]
	}
	if k == PartialWrite && !write {
		k = Short
	}
	c.injected = append(c.injected, k)
	return k, c.rng.Float64()
}

func (c *Conn) deadErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// kill ends the connection for good: abruptly (reset) or with an EOF.
func (c *Conn) kill(k Kind) error {
	err := fmt.Errorf("%w: %v", ErrInjected, k)
	c.mu.Lock()
	if c.dead == nil {
		c.dead = err
	}
	c.mu.Unlock()
	if tc, ok := c.Conn.(*net.TCPConn); ok && k == Reset {
		_ = tc.SetLinger(0) // close sends RST
	}
	_ = c.Conn.Close()
	return err
}

func (c *Conn) count(n int) {
	c.mu.Lock()
	c.passed += int64(n)
	c.mu.Unlock()
}

// written counts and tracks n bytes of p written.
func (c *Conn) written(p []byte, n int) {
	c.mu.Lock()
	c.passed += int64(n)
	c.wrecords.Feed(p[:n])
	c.mu.Unlock()
}

// Read reads from the connection, or misbehaves.
func (c *Conn) Read(p []byte) (int, error) {
	if err := c.deadErr(); err != nil {
		c.mu.Lock()
		eof := c.eofRead
		c.mu.Unlock()
		if eof {
			return 0, io.EOF
		}
		return 0, err
	}
	k, f := c.draw(false)
	switch k {
	case Error:
		return 0, fmt.Errorf("%w: read error", ErrInjected)
	case Short:
		if len(p) > 1 {
			p = p[:1+int(f*float64(len(p)-1))]
		}
	case Delay:
		time.Sleep(time.Duration(f * float64(c.opts.MaxDelay)))
	case Reset:
		return 0, c.kill(Reset)
	case EOF:
		c.mu.Lock()
		c.eofRead = true
		c.mu.Unlock()
		_ = c.kill(EOF)
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	c.count(n)
	c.mu.Lock()
	c.records.Feed(p[:n])
	c.mu.Unlock()
	return n, err
}

// Write writes to the connection, or misbehaves.
func (c *Conn) Write(p []byte) (int, error) {
	if err := c.deadErr(); err != nil {
		return 0, err
	}
	k, f := c.draw(true)
	switch k {
	case Error:
		return 0, fmt.Errorf("%w: write error", ErrInjected)
	case Short:
		// The whole buffer, in two writes.
		cut := int(f * float64(len(p)))
		n, err := c.Conn.Write(p[:cut])
		c.written(p, n)
		if err != nil {
			return n, err
		}
		m, err := c.Conn.Write(p[cut:])
		c.written(p[cut:], m)
		return n + m, err
	case Delay:
		time.Sleep(time.Duration(f * float64(c.opts.MaxDelay)))
	case Reset:
		return 0, c.kill(Reset)
	case EOF:
		return 0, c.kill(EOF)
	case PartialWrite:
		cut := int(f * float64(len(p)))
		n, err := c.Conn.Write(p[:cut])
		c.written(p, n)
		if err != nil {
			return n, err
		}
		return n, fmt.Errorf("%w: partial write (%d of %d bytes)", ErrInjected, n, len(p))
	}
	n, err := c.Conn.Write(p)
	c.written(p, n)
	return n, err
}

// Injected returns the faults injected so far, in order.
func (c *Conn) Injected() []Kind {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Kind(nil), c.injected...)
}

// Killed reports whether a Reset or EOF fault ended the connection.
func (c *Conn) Killed() bool { return c.deadErr() != nil }

// AtRecordBoundary reports whether everything read so far ends at the end
// of a TLS record, that is whether a truncation of the read side right now
// would fall between records.
func (c *Conn) AtRecordBoundary() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records.AtBoundary()
}

// WrittenAtRecordBoundary reports whether everything written so far ends
// at the end of a TLS record: whether the peer, reading it all, would see
// the stream end between records if it ended now.
func (c *Conn) WrittenAtRecordBoundary() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wrecords.AtBoundary()
}
