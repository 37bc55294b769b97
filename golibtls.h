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
 * golibtls_rec follows the record framing of the ciphertext libtls reads,
 * so that an end of the stream inside a record is reported as a truncation:
 * LibreSSL's tls_read returns 0 there, as for close_notify. It skips record
 * bodies without looking at them: a few steps per record.
 */
struct golibtls_rec {
	unsigned char hdr[5];
	int nhdr;     /* header bytes seen of the current record */
	size_t body;  /* body bytes still expected */
};

static inline void golibtls_rec_feed(struct golibtls_rec *r, const unsigned char *b, size_t n) {
	while (n > 0) {
		if (r->body > 0) {
			size_t k = r->body < n ? r->body : n;
			r->body -= k;
			b += k;
			n -= k;
			continue;
		}
		r->hdr[r->nhdr++] = *b++;
		n--;
		if (r->nhdr == 5) {
			r->body = ((size_t)r->hdr[3] << 8) | r->hdr[4];
			r->nhdr = 0;
		}
	}
}

static inline int golibtls_rec_at_boundary(const struct golibtls_rec *r) {
	return r->nhdr == 0 && r->body == 0;
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
 * golibtls_read_many is the same for tls_read: it fills buf with as many
 * records as are already available and stops at the first that is not.
 * When it has read something and then tls_read ends the stream (0) or
 * fails, it returns what it read and leaves that last result in *last for
 * the next Read: the failure has consumed what caused it (a socket error is
 * reported once), so it cannot be asked for again. *last is 1 otherwise.
 */
static inline ssize_t golibtls_read_many(struct tls *ctx, void *buf, size_t len, ssize_t *last) {
	size_t done = 0;
	*last = 1;
	while (done < len) {
		ssize_t n = tls_read(ctx, (char *)buf + done, len - done);
		if (n <= 0) {
			if (done == 0)
				return n;
			if (n != TLS_WANT_POLLIN && n != TLS_WANT_POLLOUT)
				*last = n;
			return (ssize_t)done;
		}
		done += (size_t)n;
	}
	return (ssize_t)done;
}

#endif
