package etcdtest

import (
	"io"
	"net"
	"sync"
	"time"
)

// frontDoor is a member's client address: it forwards each connection to
// the port the member really listens on, so that Stop can end every client
// connection of a member at once, as the exit of an etcd process does.
//
// Without it a stopped member's clients hang on: embed.Etcd.Close first
// waits up to its request timeout, 7 s, for its clients' connections and
// streams to end, and only then hands leadership over and stops raft (the
// fleet test failed that way: servers watching through the member being
// stopped fell behind by those seconds and missed sets); and it never
// returns while a client connection has sent no byte yet, which cmux
// waits for (TestStopEndsClientStreams).
type frontDoor struct {
	ln      net.Listener
	backend string // the member's own client address, HOST:PORT

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// openFrontDoor listens on addr and forwards to backend.
func openFrontDoor(addr, backend string) (*frontDoor, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	d := &frontDoor{ln: ln, backend: backend, conns: map[net.Conn]struct{}{}}
	d.wg.Add(1)
	go d.serve()
	return d, nil
}

func (d *frontDoor) serve() {
	defer d.wg.Done()
	for {
		c, err := d.ln.Accept()
		if err != nil {
			return // closed
		}
		if !d.track(c) {
			return
		}
		d.wg.Add(1)
		go d.forward(c)
	}
}

// track records c, or closes it and returns false once the door is closed.
func (d *frontDoor) track(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		c.Close()
		return false
	}
	d.conns[c] = struct{}{}
	return true
}

func (d *frontDoor) untrack(c net.Conn) {
	d.mu.Lock()
	delete(d.conns, c)
	d.mu.Unlock()
	c.Close()
}

// forward copies both ways between c and a connection to the member until
// either ends, then closes both.
func (d *frontDoor) forward(c net.Conn) {
	defer d.wg.Done()
	defer d.untrack(c)
	b, err := net.DialTimeout("tcp", d.backend, 5*time.Second)
	if err != nil {
		return // the member is not listening: the client sees a closed connection
	}
	if !d.track(b) {
		return
	}
	defer d.untrack(b)
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
	// One side ended: end both, which ends the other copy too.
	c.Close()
	b.Close()
	<-done
}

// close stops accepting, ends every connection through the door and waits
// for the forwarding goroutines.
func (d *frontDoor) close() {
	d.mu.Lock()
	d.closed = true
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.ln.Close()
	d.wg.Wait()
}
