/*
 * C helpers shared by the binding's cgo preambles (conn.go and the two
 * transports). Everything here is static: each preamble that includes this
 * header gets its own copy.
 */
#ifndef GOLIBTLS_H
#define GOLIBTLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <tls.h>

/*
 * golibtls_in is what the binding knows of the ciphertext libtls reads,
 * kept by both transports' read callbacks.
 *
 * It follows the record framing, so that an end of the stream inside a
 * record is reported as a truncation (LibreSSL's tls_read returns 0 there,
 * as for close_notify). It skips record bodies without looking at them: a
 * few steps per record.
 *
 * After the handshake an end of the stream at a record boundary is kept
 * from libtls: the callback records it (eof) and asks for more input, and
 * golibtls_read_many reports the end itself. Told of it, LibreTLS (OpenSSL
 * 3) fails the read "unexpected eof while reading" and every later write
 * and tls_close, and LibreSSL's tls_close fails "EOF without close
 * notify"; kept from it, the connection stays usable for the reply and a
 * clean close, as crypto/tls's does.
 *
 * It is part of every connection's memory, so its fields are small.
 */
struct golibtls_in {
	unsigned char hdr[5];
	unsigned char nhdr;  /* header bytes seen of the current record */
	unsigned char open;  /* the handshake is over */
	unsigned char eof;   /* the stream ended at a record boundary after the handshake */
	unsigned char hold;  /* libtls must not read: close_notify is being sent */
	unsigned char dry;   /* past what is ahead, more input costs a system call (the socket transport) */
	uint32_t body;       /* body bytes still expected (a record's length is 16 bits) */
	uint32_t records;    /* records completed since tls_read last returned data */
	uint32_t ahead;      /* bytes the transport has read ahead that libtls has not taken yet */
	ssize_t last;        /* golibtls_read_many: the failure or end kept for the next Read, else 1 */
};

static inline void golibtls_in_feed(struct golibtls_in *r, const unsigned char *b, size_t n) {
	while (n > 0) {
		if (r->body > 0) {
			size_t k = r->body < n ? r->body : n;
			r->body -= k;
			b += k;
			n -= k;
			if (r->body == 0)
				r->records++;
			continue;
		}
		r->hdr[r->nhdr++] = *b++;
		n--;
		if (r->nhdr == 5) {
			r->body = ((uint32_t)r->hdr[3] << 8) | r->hdr[4];
			r->nhdr = 0;
			if (r->body == 0)
				r->records++;
		}
	}
}

static inline int golibtls_in_at_boundary(const struct golibtls_in *r) {
	return r->nhdr == 0 && r->body == 0;
}

/*
 * golibtls_in_blocked reports whether a read callback must not read now
 * (and answer TLS_WANT_POLLIN instead): the end of the stream has been
 * seen, or close_notify is being sent (tls_close; LibreSSL's SSL_shutdown
 * would read, and drop, application data that CloseWrite's caller has yet
 * to read).
 */
static inline int golibtls_in_blocked(const struct golibtls_in *r) {
	return r->eof || r->hold;
}

/*
 * golibtls_in_end is a read callback's result at the end of the stream: 0
 * (libtls decides: close_notify missing, a truncated record), or, after the
 * handshake at a record boundary, TLS_WANT_POLLIN with eof set.
 */
static inline ssize_t golibtls_in_end(struct golibtls_in *r) {
	if (r->open && golibtls_in_at_boundary(r)) {
		r->eof = 1;
		return TLS_WANT_POLLIN;
	}
	return 0;
}

/* golibtls_in_open marks the handshake complete. */
static inline void golibtls_in_open(struct golibtls_in *r) {
	r->open = 1;
	r->records = 0;
}

/*
 * golibtls_write_many writes buf through tls_write, record after record, in
 * one call from Go (a trip through cgo and the scheduler per record would
 * cost more than the record's cipher). It stops after max bytes, or when
 * libtls asks for I/O or fails: it returns the bytes written if any,
 * otherwise tls_write's last result.
 */
static inline ssize_t golibtls_write_many(struct tls *ctx, const void *buf, size_t len, size_t max) {
	size_t done = 0;
	if (len > max)
		len = max;
	while (done < len) {
		ssize_t n = tls_write(ctx, (const char *)buf + done, len - done);
		if (n <= 0)
			return done > 0 ? (ssize_t)done : n;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

/*
 * GOLIBTLS_FLOOD is golibtls_read_many's result when the peer has sent more
 * than max_nondata records in a row without application data.
 */
#define GOLIBTLS_FLOOD (-100)

/*
 * golibtls_read_many is the same for tls_read: it fills buf with as many
 * records as are already available and stops at the first that is not.
 * Over a transport whose further input costs a system call (dry), it stops
 * after data once nothing is read ahead, as crypto/tls does: trying the
 * socket then would mostly find it empty, one wasted call per Read.
 * When it has read something and then tls_read ends the stream (0) or
 * fails, it returns what it read and leaves that last result in in->last
 * for the next Read: the failure has consumed what caused it (a socket
 * error is reported once), so it cannot be asked for again. in->last is 1
 * otherwise. (In C memory, not a Go pointer argument: cgo checks every Go
 * pointer passed, on every call.)
 *
 * It returns 0 at an end of the stream that was kept from libtls, and
 * GOLIBTLS_FLOOD once more than max_nondata records have come in a row
 * without application data (TLS 1.3 session tickets, key updates: libtls
 * returns TLS_WANT_POLLIN after each), then at every later call.
 */
static inline ssize_t golibtls_read_many(struct tls *ctx, struct golibtls_in *in, void *buf, size_t len,
    unsigned max_nondata) {
	size_t done = 0;
	in->last = 1;
	while (done < len) {
		ssize_t n;
		if (in->records > max_nondata)
			n = GOLIBTLS_FLOOD;
		else
			n = tls_read(ctx, (char *)buf + done, len - done);
		if (n > 0) {
			in->records = 0;
			done += (size_t)n;
			if (in->dry && in->ahead == 0)
				break;
			continue;
		}
		if (n == TLS_WANT_POLLIN && in->eof)
			n = 0;
		else if (n == TLS_WANT_POLLIN && in->records > max_nondata)
			n = GOLIBTLS_FLOOD;
		if (done == 0)
			return n;
		if (n != TLS_WANT_POLLIN && n != TLS_WANT_POLLOUT)
			in->last = n;
		return (ssize_t)done;
	}
	return (ssize_t)done;
}

#endif
