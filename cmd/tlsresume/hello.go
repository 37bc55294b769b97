package main

import (
	"net/http"
	"strconv"
	"sync/atomic"

	libtls "github.com/golibtls/libtls"
)

// connKey is the context key under which serve's ConnContext keeps each
// request's connection.
type connKey struct{}

// hello answers every request with the facts of its connection: "tlsresume
// serve (pid PID): PROTO, VERSION, CIPHER, full|resumed handshake".
//
// It costs about what the library's own tiny handler costs (the demo's
// requests/s is what people measure): the facts come from the connection
// without a call into C, and the answer is built once for the facts the
// last request had, then reused for every request that has the same.
func hello(w http.ResponseWriter, r *http.Request, pid int) {
	// HTTP/1.1 connections are *libtls.Conn, HTTP/2 ones wrap one.
	c, ok := r.Context().Value(connKey{}).(interface{ ConnInfo() libtls.ConnInfo })
	if !ok {
		http.Error(w, "not a libtls connection", http.StatusInternalServerError)
		return
	}
	s := c.ConnInfo()
	k := helloKey{pid: pid, proto: r.Proto, version: s.Version, cipher: s.Cipher, resumed: s.SessionResumed}
	a := lastHello.Load()
	if a == nil || a.key != k {
		body := helloBody(k)
		a = &helloAnswer{key: k, body: body, length: []string{strconv.Itoa(len(body))}}
		lastHello.Store(a)
	}
	h := w.Header()
	h["Content-Type"] = textPlain
	h["Content-Length"] = a.length
	_, _ = w.Write(a.body)
}

var textPlain = []string{"text/plain; charset=utf-8"}

// helloKey is what an answer says.
type helloKey struct {
	pid                    int
	proto, version, cipher string
	resumed                bool
}

// helloAnswer is an answer, kept for the next request with the same facts.
// Neither it nor its slices are changed once stored.
type helloAnswer struct {
	key    helloKey
	body   []byte
	length []string
}

var lastHello atomic.Pointer[helloAnswer]

func helloBody(k helloKey) []byte {
	kind := "full"
	if k.resumed {
		kind = "resumed"
	}
	b := []byte("tlsresume serve (pid ")
	b = strconv.AppendInt(b, int64(k.pid), 10)
	b = append(b, "): "...)
	b = append(b, k.proto...)
	b = append(b, ", "...)
	b = append(b, k.version...)
	b = append(b, ", "...)
	b = append(b, k.cipher...)
	b = append(b, ", "...)
	b = append(b, kind...)
	b = append(b, " handshake\n"...)
	return b
}
