package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHelp: -h on every command prints its usage on stdout and exits 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"demo", "-h"}, {"probe", "-h"}, {"serve", "-h"},
		{"keys", "-h"}, {"keys", "init", "-h"}, {"keys", "rotate", "-h"},
		{"probe", "127.0.0.1:1", "-h"},
	} {
		code, stdout, stderr := runCmd(t, args...)
		if code != 0 || stderr != "" || !strings.Contains(stdout, "Usage: tlsresume") && !strings.Contains(stdout, "Usage:\n  tlsresume") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
	}
}

// TestUsageErrors: a bad command line is one line on stderr and exit 2.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"demo", "-n", "1"}, "-n 1"},
		{[]string{"demo", "extra"}, `unexpected argument "extra"`},
		{[]string{"probe"}, "missing HOST:PORT"},
		{[]string{"probe", "localhost"}, `"localhost" is not HOST:PORT`},
		{[]string{"probe", "127.0.0.1:1", "127.0.0.1:2"}, "unexpected argument"},
		{[]string{"probe", "127.0.0.1:1", "-n", "x"}, `invalid value "x" for flag -n`},
		{[]string{"probe", "127.0.0.1:1", "-n", "1"}, "-n 1"},
		{[]string{"probe", "127.0.0.1:1", "-cafile", "ca.pem", "-insecure"}, "exclude each other"},
		{[]string{"probe", "127.0.0.1:1", "-bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"serve", "-cert", "c", "-key", "k"}, "-addr is required"},
		{[]string{"serve", "-addr", "127.0.0.1:0"}, "-cert and -key are required"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-lifetime", "25h"}, "-lifetime 25h0m0s"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-lifetime", "1500ms"}, "whole number of seconds"},
		{[]string{"keys"}, "missing init or rotate"},
		{[]string{"keys", "shred"}, `unknown keys command "shred"`},
		{[]string{"keys", "init"}, "-file is required"},
		{[]string{"keys", "rotate", "-file", "f", "-lifetime", "2s"}, "-lifetime 2s"},
		{[]string{"keys", "init", "-etcd", "127.0.0.1:1", "-key", "/k"}, "-etcd works with rotate only"},
		{[]string{"keys", "rotate", "-etcd", "127.0.0.1:1"}, "-key is required with -etcd"},
		{[]string{"keys", "rotate", "-file", "f", "-etcd", "127.0.0.1:1", "-key", "/k"}, "-file and -etcd exclude each other"},
		{[]string{"keys", "rotate", "-file", "f", "-key", "/k"}, "-key, -name, -etcd-cacert, -etcd-cert, -etcd-key, -etcd-user and -kek go with -etcd"},
		{[]string{"keys", "rotate", "-file", "f", "-kek", "kek"}, "-kek go with -etcd"},
		{[]string{"keys", "rotate", "-etcd", "ftp://127.0.0.1:1", "-key", "/k"}, "scheme ftp, want http or https"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-keys", "keys", "-etcd-cacert", "ca.pem"}, "go with -keys etcd://"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-kek", "kek"}, "go with -keys etcd://"},
		{[]string{"keys", "rotate", "-etcd", "localhost", "-key", "/k"}, `-etcd: etcd endpoint "localhost" is not HOST:PORT`},
		{[]string{"keys", "rotate", "-etcd", "127.0.0.1:1", "-key", "/k", "-lifetime", "3s"}, "-lifetime 3s"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-keys", "etcd://127.0.0.1:2379"}, "-keys: \"etcd://127.0.0.1:2379\" names no key"},
		{[]string{"serve", "-addr", ":0", "-cert", "c", "-key", "k", "-keys", "etcd:///k"}, "no etcd endpoint"},
	} {
		code, _, stderr := runCmd(t, tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		oneLine(t, stderr, tc.want, "tlsresume")
	}
}

// TestFailures: a failing command is one line on stderr and exit 1.
func TestFailures(t *testing.T) {
	p := newTestPKI(t)
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		return path
	}
	garbage := write("garbage", "not a key file\n", 0o600)
	truncated := write("truncated", "golibtls-ticket-keys 1\nsession-id 00", 0o600)
	good := filepath.Join(dir, "good")
	if code, _, stderr := runCmd(t, "keys", "init", "-file", good); code != 0 {
		t.Fatalf("keys init: %s", stderr)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	public := write("public", string(data), 0o644)
	missing := filepath.Join(dir, "missing")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy, silent := ln.Addr().String(), ln.Addr().String() // accepted by the kernel, never answered
	serve := func(keys string) []string {
		return []string{"serve", "-addr", "127.0.0.1:0", "-cert", p.certFile, "-key", p.keyFile, "-keys", keys}
	}

	for _, tc := range []struct {
		args []string
		want []string
	}{
		// Unreachable: nothing listens on a closed loopback port.
		{[]string{"probe", closedPort(t), "-insecure"}, []string{"tlsresume probe: ", "connection refused"}},
		{[]string{"probe", "127.0.0.1:1", "-cafile", filepath.Join(dir, "no-ca.pem")}, []string{"-cafile", "no such file"}},
		// Bad key files.
		{[]string{"keys", "rotate", "-file", garbage}, []string{"tlsresume keys rotate: ", garbage, "not a golibtls ticket key file"}},
		{[]string{"keys", "rotate", "-file", truncated}, []string{truncated, "newline"}},
		{[]string{"keys", "rotate", "-file", public}, []string{public, "chmod 600"}},
		{[]string{"keys", "init", "-file", good}, []string{"already exists"}},
		{[]string{"keys", "init", "-file", filepath.Join(dir, "no-dir", "keys")}, []string{"no such file"}},
		{serve(garbage), []string{"tlsresume serve: ", "not a golibtls ticket key file"}},
		{serve(public), []string{"tlsresume serve: ", "chmod 600"}},
		{serve(missing), []string{"tlsresume serve: ", "no such file"}},
		// Bad certificate files.
		{[]string{"serve", "-addr", "127.0.0.1:0", "-cert", filepath.Join(dir, "nocert"), "-key", p.keyFile}, []string{"tlsresume serve: ", "no such file"}},
		{[]string{"serve", "-addr", "127.0.0.1:0", "-cert", garbage, "-key", garbage}, []string{"tlsresume serve: "}},
		{[]string{"serve", "-addr", busy, "-cert", p.certFile, "-key", p.keyFile}, []string{"tlsresume serve: ", "address already in use"}},
		// A server that never answers.
		{[]string{"probe", silent, "-insecure", "-timeout", "200ms"}, []string{"tlsresume probe: ", "timed out after 200ms"}},
	} {
		code, stdout, stderr := runCmd(t, tc.args...)
		if code != exitError {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitError)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q", tc.args, stdout)
		}
		oneLine(t, stderr, tc.want...)
	}
	// A failed rotation leaves the file as it was.
	if after, _ := os.ReadFile(garbage); string(after) != "not a key file\n" {
		t.Errorf("garbage key file changed to %q", after)
	}
}

// TestKeysRotate: rotate adds a key only when one is due and keeps the
// file private.
func TestKeysRotate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys")
	// rotate creates a missing file.
	code, stdout, _ := runCmd(t, "keys", "rotate", "-file", file, "-lifetime", "4s")
	if code != 0 || !strings.Contains(stdout, "rotated") {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	code, stdout, _ = runCmd(t, "keys", "rotate", "-file", file, "-lifetime", "1h")
	if code != 0 || !strings.Contains(stdout, "unchanged") || !strings.Contains(stdout, "(45m0s after rev 1, for lifetime 1h0m0s)") {
		t.Errorf("exit %d, stdout %q", code, stdout)
	}
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
}
