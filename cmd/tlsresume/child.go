package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// serveProcess is a "tlsresume serve" (or other long-running tlsresume)
// child process.
type serveProcess struct {
	cmd    *exec.Cmd
	stdin  io.Closer
	pid    int
	addr   string        // what followed the ready prefix on its first line
	out    *lockedBuffer // its stderr
	stdout *lockedBuffer // its stdout after the first line
	once   sync.Once     // stop
}

// startServe starts this program again as "tlsresume serve" (the running
// binary: no rebuild) and waits until it listens. The child exits when its
// standard input closes, so it cannot outlive this process.
func startServe(ctx context.Context, addr, certFile, keyFile, keysFile string) (*serveProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "-addr", addr, "-cert", certFile, "-key", keyFile}
	if keysFile != "" {
		args = append(args, "-keys", keysFile)
	}
	return startChild(ctx, exe, args, "listening on ")
}

// startChild starts exe args as a child that exits when its standard input
// closes, and waits until the first line of its standard output starts
// with ready.
func startChild(ctx context.Context, exe string, args []string, ready string) (*serveProcess, error) {
	return startChildEnv(ctx, exe, nil, args, ready)
}

// startChildEnv is startChild with env added to the child's environment.
func startChildEnv(ctx context.Context, exe string, env, args []string, ready string) (*serveProcess, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	p := &serveProcess{cmd: cmd, out: &lockedBuffer{}, stdout: &lockedBuffer{}}
	cmd.Stderr = p.out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.stdin, p.pid = stdin, cmd.Process.Pid

	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		s, _ := r.ReadString('\n')
		line <- s
		_, _ = io.Copy(p.stdout, r) // keep the pipe drained
	}()
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case s := <-line:
		if a, ok := strings.CutPrefix(strings.TrimSpace(s), ready); ok {
			p.addr = a
			return p, nil
		}
		p.stop()
		if msg := strings.TrimSpace(p.out.String()); msg != "" {
			return nil, errors.New(lastLine(msg))
		}
		return nil, fmt.Errorf("exited before it was ready (%v)", cmd.ProcessState)
	case <-timer.C:
		p.stop()
		return nil, errors.New("not ready after 30s")
	case <-ctx.Done():
		p.stop()
		return nil, ctx.Err()
	}
}

// runChild runs exe args (with env added to its environment) to its end,
// and kills it if it has not ended within timeout. It returns the exit
// status (-1 when killed), stdout and stderr.
func runChild(exe string, timeout time.Duration, env, args []string) (int, string, string) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(append(os.Environ(), childEnv+"=1"), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return -1, "", err.Error()
	}
	defer stdin.Close() // open until the end: closing it stops the child
	if err := cmd.Run(); err != nil && ctx.Err() != nil {
		stderr.WriteString(fmt.Sprintf("[killed: still running after %v]\n", timeout))
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// stop closes the child's standard input, which makes it shut down, and
// kills it if it has not exited within 5 seconds. Stopping a stopped
// child does nothing.
func (p *serveProcess) stop() {
	p.once.Do(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { _ = p.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-done
		}
	})
}

// stopAll stops the processes (nil: none) in parallel.
func stopAll(procs []*serveProcess) {
	var wg sync.WaitGroup
	for _, p := range procs {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); p.stop() }()
	}
	wg.Wait()
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// lockedBuffer is a bytes.Buffer safe for the exec package's copying
// goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
