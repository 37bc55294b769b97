package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/golibtls/libtls"
	"github.com/golibtls/libtls/internal/testcert"
)

// row is one sample of both processes during the load.
type row struct {
	elapsed float64 // seconds since the load started (parent's clock)
	srv     serverReport
	cli     procStats
}

// result is what a soak run found.
type result struct {
	checks []check
	rows   []row
	warmup float64 // seconds
	tally  map[string]kindStats
	final  serverReport
}

// child is the server process.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	reports chan serverReport // closed when its stdout ends
	exited  chan struct{}     // closed after Wait
	waitErr error
	stderr  *tailBuffer
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

func startChild(p serverParams) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	env, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	c := &child{reports: make(chan serverReport, 1024), exited: make(chan struct{}), stderr: &tailBuffer{max: 64 << 10}}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envServer+"="+string(env))
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c.cmd = cmd
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var r serverReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = serverReport{Type: "garbled", Msg: sc.Text()}
			}
			c.reports <- r
		}
		close(c.reports)
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()
	return c, nil
}

// stop closes the child's stdin (it drains and exits) and kills it if it
// has not exited within timeout.
func (c *child) stop(timeout time.Duration) {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		go func() {
			for range c.reports {
			}
		}()
		<-c.exited
	}
}

// next waits for the server's next report of one of the types.
func (c *child) next(timeout time.Duration, types ...string) (serverReport, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case r, ok := <-c.reports:
			if !ok {
				select {
				case <-c.exited:
				case <-time.After(10 * time.Second):
					return r, fmt.Errorf("the server closed its stdout")
				}
				return r, fmt.Errorf("the server exited: %v\n%s", c.waitErr, c.stderr.String())
			}
			if r.Type == "fatal" || r.Type == "garbled" {
				return r, fmt.Errorf("the server: %s: %s", r.Type, r.Msg)
			}
			for _, typ := range types {
				if r.Type == typ {
					return r, nil
				}
			}
		case <-t.C:
			return serverReport{}, fmt.Errorf("no %v report from the server within %v", types, timeout)
		}
	}
}

func soak(ctx context.Context, o options, out io.Writer) (*result, error) {
	if o.seed == 0 {
		o.seed = rand.Uint64()
	}
	dir, err := os.MkdirTemp("", "golibtls-soak-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	ca, err := testcert.NewCA("golibtls soak CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(append([]string{"localhost", "127.0.0.1"}, cacheNames...)...)
	if err != nil {
		return nil, err
	}
	_, certFile, keyFile, err := ca.Files(dir, leaf)
	if err != nil {
		return nil, err
	}
	keys, err := libtls.NewTicketKeySet()
	if err != nil {
		return nil, err
	}
	defer keys.Zero()
	keyPath := filepath.Join(dir, "ticket-keys")
	if err := libtls.WriteTicketKeyFile(keyPath, keys); err != nil {
		return nil, err
	}

	srv, err := startChild(serverParams{
		Cert: certFile, Key: keyFile, KeyFile: keyPath,
		Lifetime: o.lifetime, Poll: o.poll, Interval: o.interval,
		HandshakeTimeout: o.hsTimeout, IOTimeout: o.ioTimeout,
		MaxLife: o.duration + 3*time.Minute, Inject: o.inject,
	})
	if err != nil {
		return nil, fmt.Errorf("starting the server: %w", err)
	}
	defer srv.stop(5 * time.Second) // a no-op after the orderly stop below
	ready, err := srv.next(30*time.Second, "ready")
	if err != nil {
		return nil, err
	}
	srvBase, err := srv.next(30*time.Second, "baseline")
	if err != nil {
		return nil, err
	}

	l := &load{
		addr: "127.0.0.1:" + strconv.Itoa(ready.Port), ioTimeout: o.ioTimeout, hsTimeout: o.hsTimeout,
		ca: ca, caPEM: ca.CertPEM, dir: dir, tally: newTally(), keyFile: keyPath, keys: keys,
	}
	l.rev.Store(keys.Keys[len(keys.Keys)-1].Rev)
	defer l.close()
	workers, err := l.workers()
	if err != nil {
		return nil, err
	}
	cliBase := readProcStats()

	b := libtls.Backend()
	fmt.Fprintf(out, "soak: %v; server resumes TLS 1.2: %v, TLS 1.3 resumes: %v\n", b, b.ServerSessionResumption, b.TLS13Resumption)
	fmt.Fprintf(out, "soak: %v of load, warm-up %v, sample every %v; %d workers (%d connections at most); keys rotate every %v, session lifetime %v; server pid %d on %s; seed %d\n",
		o.duration, o.warmup, o.interval, len(workers), workerCount(), o.rotate, o.lifetime, ready.PID, l.addr, o.seed)
	if len(o.inject) > 0 {
		fmt.Fprintf(out, "soak: SELF-TEST: the server leaks on purpose: %v\n", o.inject)
	}
	printHeader(out)

	// The load.
	start := time.Now()
	stopRotate := make(chan struct{})
	rotDone := make(chan struct{})
	go func() {
		defer close(rotDone)
		l.rotate(stopRotate, o.rotate)
	}()
	stopLoad := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.seed, uint64(i)))
			for {
				select {
				case <-stopLoad:
					return
				default:
				}
				w.run(rng)
			}
		}()
	}

	res := &result{warmup: o.warmup.Seconds()}
	var (
		interrupted, serverGone bool
		maxLag                  int64
		emergencyKey            uint32
		followErrs              = map[string]bool{}
		serverMsgs              []string // fatal or garbled lines during the load
	)
	prev := row{srv: srvBase}
	deadline := time.NewTimer(o.duration)
	defer deadline.Stop()
loop:
	for {
		select {
		case r, ok := <-srv.reports:
			if !ok {
				serverGone = true
				break loop
			}
			if r.Type != "sample" {
				if r.Type == "fatal" || r.Type == "garbled" {
					serverMsgs = append(serverMsgs, r.Type+": "+r.Msg)
				}
				continue
			}
			rw := row{elapsed: time.Since(start).Seconds(), srv: r, cli: readProcStats()}
			if lag := int64(l.rev.Load()) - int64(r.NewestRev); lag > maxLag {
				maxLag = lag
			}
			if r.NewestRev >= libtls.LocalTicketKeyRevBase {
				emergencyKey = r.NewestRev
			}
			if r.FollowErr != "" {
				followErrs[r.FollowErr] = true
			}
			res.rows = append(res.rows, rw)
			printRow(out, prev, rw, l.tally)
			prev = rw
		case <-deadline.C:
			break loop
		case <-ctx.Done():
			interrupted = true
			break loop
		}
	}
	loadTime := time.Since(start)

	// Stop: let every operation in progress finish, then drain.
	close(stopLoad)
	workersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(workersDone)
	}()
	workersStopped := true
	select {
	case <-workersDone:
	case <-time.After(o.ioTimeout + o.hsTimeout + 20*time.Second):
		workersStopped = false
	}
	close(stopRotate)
	<-rotDone
	l.close()
	cliDrained := readProcStats()
	srv.stdin.Close()
	final, finalErr := srv.next(o.hsTimeout+o.ioTimeout+30*time.Second, "final")
	srv.stop(10 * time.Second)
	res.final = final
	res.tally = l.tally.snapshot()

	fmt.Fprintf(out, "\n")
	res.checks = judge(judgeInput{
		o: o, loadTime: loadTime, interrupted: interrupted, serverGone: serverGone,
		workersStopped: workersStopped, srv: srv, final: final, finalErr: finalErr,
		srvBase: srvBase, cliBase: cliBase, cliDrained: cliDrained,
		rows: res.rows, tally: res.tally, rotations: l.rotations.Load(), rotErrs: l.rotErrs,
		maxLag: maxLag, emergencyKey: emergencyKey, followErrs: followErrs, serverMsgs: serverMsgs,
	}, out)
	return res, nil
}
