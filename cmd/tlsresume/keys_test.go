package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	libtls "github.com/golibtls/libtls"
)

// TestKeysInitRacesRotate: "keys init" and a "keys rotate" started at the
// same moment on a missing file. Exactly one of them creates the file, and
// the fleet's session ID is the one it created: init never replaces a file
// a rotator has just created (which would change the session ID under the
// servers following it), nor the other way round.
func TestKeysInitRacesRotate(t *testing.T) {
	const rounds = 50
	dir := t.TempDir()
	initWon := 0
	for i := range rounds {
		file := filepath.Join(dir, fmt.Sprintf("keys-%d", i))
		var (
			initSet, rotSet *libtls.TicketKeySet
			initErr, rotErr error
			rotCreated      bool
			wg              sync.WaitGroup
		)
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; initSet, initErr = createKeyFile(file) }()
		go func() {
			defer wg.Done()
			<-start
			// Spread the rotator's start over init's (bounded busy wait),
			// so that either may come first.
			for t0 := time.Now(); time.Since(t0) < time.Duration(i)*20*time.Microsecond; {
			}
			rotSet, rotCreated, rotErr = libtls.RotateTicketKeyFile(file, time.Hour)
		}()
		close(start)
		wg.Wait()
		if rotErr != nil {
			t.Fatalf("round %d: rotate: %v", i, rotErr)
		}
		final, err := libtls.ReadTicketKeyFile(file)
		if err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		if !bytes.Equal(rotSet.SessionID, final.SessionID) {
			t.Fatalf("round %d: the rotator's session ID was replaced (init: %v)", i, initErr)
		}
		switch {
		case initErr == nil:
			initWon++
			if rotCreated || !bytes.Equal(initSet.SessionID, final.SessionID) {
				t.Fatalf("round %d: init and rotate both created the file", i)
			}
		case strings.Contains(initErr.Error(), "already exists"):
			if !rotCreated {
				t.Fatalf("round %d: init refused, but rotate did not create the file either", i)
			}
		default:
			t.Fatalf("round %d: init: %v", i, initErr)
		}
		initSet.Zero()
		rotSet.Zero()
		final.Zero()
	}
	t.Logf("init created the file in %d of %d rounds, rotate in the others", initWon, rounds)
}
