/*
 * bench.c: the golibtls benchmark scenarios written directly against libtls,
 * as the native baseline for the Go benchmarks (BENCHMARKS.md).
 *
 * Client and server run in one process over loopback TCP, as threads, on
 * blocking sockets with TCP_NODELAY on both ends; every libtls call is looped
 * on TLS_WANT_POLLIN/TLS_WANT_POLLOUT (libtls clears SSL_MODE_AUTO_RETRY, so
 * they come back even on blocking sockets). The idle scenario forks so that
 * the client ends live in another process, as the Go benchmark does.
 *
 * BenchmarkPlainTCP is the handshake scenario without TLS (connect, one byte
 * each way, close): the floor that sockets and threads set.
 *
 * Every rate comes with the CPU time per op, user + system, from
 * getrusage(RUSAGE_SELF) around the timed loop (cpu-ns/op, sys-ns/op; bulk
 * also per byte: cpu-ns/B, sys-ns/B).
 *
 * Results are printed in Go benchmark format, under the same names as the Go
 * benchmarks, so that benchstat can read them.
 *
 *   cc -O2 -o bench bench.c -lpthread $(pkg-config --cflags --libs libtls)
 *   ./bench -ca ca.pem -cert cert.pem -key key.pem [-benchtime 1s]
 *           [-bulk 1GiB] [-clients 1,2,8,64] [-idle 1000] [-run REGEX]
 *
 * -bulk, -clients and -idle default to GOLIBTLS_BENCH_BULK,
 * GOLIBTLS_BENCH_CLIENTS and GOLIBTLS_BENCH_IDLE, like the Go benchmarks.
 * -run is an extended regular expression matched against the full benchmark
 * name (e.g. "Handshake|Bulk"); the default runs the handshake and bulk
 * scenarios, and Scaling only when the expression names it.
 *
 * Two processes (the peer protocol, shared with bench/peer, the Go side):
 *
 *   ./bench -ca ca.pem -cert cert.pem -key key.pem -serve [-clients 1,8]
 *           [-timeout 3600]
 *   ./bench -ca ca.pem -connect 127.0.0.1:PORT [-benchtime 1s] [-bulk 1GiB]
 *           [-clients 1,8] [-run REGEX]
 *
 * -serve listens on loopback with one server per scenario and prints
 * "control 127.0.0.1:PORT"; on that plain TCP control port it answers the
 * line "ports" with "ports NAME=PORT ..." (services full/tls12, full/tls13,
 * resumed/tls12, resumed/tls13, scaling, bulk), "cpu" with "cpu USER_NS
 * SYS_NS" (its getrusage) and exits on "quit" (or after -timeout seconds).
 * The handshake services serve one connection at a time (scaling: one
 * thread for each of the largest -clients count) with the handshake
 * scenario; bulk reads an 8-byte big-endian count, that many bytes, and
 * answers one byte, until the client closes.
 * -connect runs the client side of the Handshake, Bulk and
 * Scaling/handshakes/clients=K against such a server and reports, beside
 * each rate, the CPU per op of both processes (cpu-ns/op) and of each
 * (srv-cpu-ns/op, cli-cpu-ns/op; bulk per byte: cpu-ns/B, srv-, cli-).
 */
#define _GNU_SOURCE
#include <sys/types.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <tls.h>

#define SERVER_NAME "localhost"
#define READ_BUF (16 * 1024)

static const char *ca_file, *cert_file, *key_file;
static double bench_secs = 1.0;
static long long bulk_total = 1LL << 30;
static int nproc = 1;
static regex_t run_re;
static int have_run_re;
static int ctl_fd = -1; /* -connect: the server's control connection */
static FILE *ctl_in;

static void
die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- CPU time ------------------------------------------------------------ */

/* cpu is process CPU time in nanoseconds, all threads together. */
struct cpu {
	double user, sys;
};

static struct cpu
cpu_now(void)
{
	struct rusage ru;
	struct cpu c = { 0, 0 };
	if (getrusage(RUSAGE_SELF, &ru) == 0) {
		c.user = ru.ru_utime.tv_sec * 1e9 + ru.ru_utime.tv_usec * 1e3;
		c.sys = ru.ru_stime.tv_sec * 1e9 + ru.ru_stime.tv_usec * 1e3;
	}
	return c;
}

static struct cpu
cpu_since(struct cpu start, struct cpu end)
{
	struct cpu c = { end.user - start.user, end.sys - start.sys };
	return c;
}

/* --- libtls configuration --------------------------------------------- */

static struct tls_config *
server_config(uint32_t protocols, int lifetime)
{
	struct tls_config *cfg = tls_config_new();
	if (cfg == NULL)
		die("tls_config_new failed");
	if (tls_config_set_keypair_file(cfg, cert_file, key_file) != 0)
		die("server keypair: %s", tls_config_error(cfg));
	if (protocols != 0 && tls_config_set_protocols(cfg, protocols) != 0)
		die("server protocols: %s", tls_config_error(cfg));
	if (lifetime > 0 && tls_config_set_session_lifetime(cfg, lifetime) != 0)
		die("session lifetime: %s", tls_config_error(cfg));
	return cfg;
}

/* client_config loads the CA into memory once, as golibtls's SetCA does. */
static struct tls_config *
client_config(uint32_t protocols, int session_fd)
{
	struct tls_config *cfg = tls_config_new();
	if (cfg == NULL)
		die("tls_config_new failed");
	if (tls_config_set_ca_file(cfg, ca_file) != 0)
		die("client CA: %s", tls_config_error(cfg));
	if (protocols != 0 && tls_config_set_protocols(cfg, protocols) != 0)
		die("client protocols: %s", tls_config_error(cfg));
	if (session_fd != -1 && tls_config_set_session_fd(cfg, session_fd) != 0)
		die("session fd: %s", tls_config_error(cfg));
	return cfg;
}

/* session_file makes an empty 0600 file and returns its descriptor. */
static int
session_file(void)
{
	char path[] = "/tmp/golibtls-bench-session-XXXXXX";
	int fd = mkstemp(path);
	if (fd == -1)
		die("mkstemp: %s", strerror(errno));
	unlink(path);
	if (fchmod(fd, 0600) != 0)
		die("fchmod: %s", strerror(errno));
	return fd;
}

/* --- sockets ------------------------------------------------------------ */

static void
nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
		die("TCP_NODELAY: %s", strerror(errno));
}

static int
listen_loopback(struct sockaddr_in *addr)
{
	socklen_t len = sizeof(*addr);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	memset(addr, 0, sizeof(*addr));
	addr->sin_family = AF_INET;
	addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0)
		die("bind: %s", strerror(errno));
	if (listen(fd, 4096) != 0)
		die("listen: %s", strerror(errno));
	if (getsockname(fd, (struct sockaddr *)addr, &len) != 0)
		die("getsockname: %s", strerror(errno));
	return fd;
}

static int
dial(const struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd == -1)
		die("socket: %s", strerror(errno));
	if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) != 0)
		die("connect: %s", strerror(errno));
	nodelay(fd);
	return fd;
}

/* --- libtls calls looped on TLS_WANT_POLLIN/POLLOUT -------------------- */

/* wait_want waits for fd as rc asks; it returns 0 if rc is not a want. */
static int
wait_want(int fd, ssize_t rc)
{
	struct pollfd p = { .fd = fd };
	if (rc == TLS_WANT_POLLIN)
		p.events = POLLIN;
	else if (rc == TLS_WANT_POLLOUT)
		p.events = POLLOUT;
	else
		return 0;
	while (poll(&p, 1, -1) == -1 && errno == EINTR)
		;
	return 1;
}

static int
do_handshake(struct tls *t, int fd)
{
	int rc;
	while ((rc = tls_handshake(t)) != 0)
		if (!wait_want(fd, rc))
			return -1;
	return 0;
}

static ssize_t
do_read(struct tls *t, int fd, void *buf, size_t len)
{
	ssize_t n;
	while ((n = tls_read(t, buf, len)) < 0)
		if (!wait_want(fd, n))
			return -1;
	return n;
}

static int
do_write(struct tls *t, int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = tls_write(t, p, len);
		if (n < 0) {
			if (!wait_want(fd, n))
				return -1;
			continue;
		}
		p += n;
		len -= n;
	}
	return 0;
}

/* do_close sends close_notify; like golibtls's Close it does not wait for
 * the peer's. */
static void
do_close(struct tls *t, int fd)
{
	int rc, i;
	for (i = 0; i < 4; i++) {
		rc = tls_close(t);
		if (rc != TLS_WANT_POLLOUT)
			break;
		wait_want(fd, rc);
	}
}

/* --- output ------------------------------------------------------------- */

static int
selected(const char *name, int default_on)
{
	if (!have_run_re)
		return default_on;
	return regexec(&run_re, name, 0, NULL, 0) == 0;
}

/* metrics are the value-unit pairs of one result line. */
struct metrics {
	int n;
	const char *unit[16];
	double v[16];
};

static void
metric(struct metrics *m, const char *unit, double v)
{
	if (m->n < 16) {
		m->unit[m->n] = unit;
		m->v[m->n++] = v;
	}
}

static struct cpu remote_cpu(void);

/* cpu_metrics adds the CPU time since local0 (and, with a control
 * connection, the server's since remote0) per op, and per byte with
 * bytes_per_op > 0. */
static void
cpu_metrics(struct metrics *m, long long ops, double bytes_per_op, struct cpu local0, struct cpu remote0)
{
	struct cpu local = cpu_since(local0, cpu_now());
	double n = ops ? ops : 1;
	if (ctl_fd == -1) {
		metric(m, "cpu-ns/op", (local.user + local.sys) / n);
		metric(m, "sys-ns/op", local.sys / n);
		if (bytes_per_op > 0) {
			metric(m, "cpu-ns/B", (local.user + local.sys) / n / bytes_per_op);
			metric(m, "sys-ns/B", local.sys / n / bytes_per_op);
		}
	} else {
		struct cpu remote = cpu_since(remote0, remote_cpu());
		double cli = local.user + local.sys, srv = remote.user + remote.sys;
		metric(m, "cpu-ns/op", (cli + srv) / n);
		metric(m, "srv-cpu-ns/op", srv / n);
		metric(m, "cli-cpu-ns/op", cli / n);
		if (bytes_per_op > 0) {
			metric(m, "cpu-ns/B", (cli + srv) / n / bytes_per_op);
			metric(m, "srv-cpu-ns/B", srv / n / bytes_per_op);
			metric(m, "cli-cpu-ns/B", cli / n / bytes_per_op);
		}
	}
}

/* report prints one Go benchmark result line: name, N, ns/op, then the
 * metrics. */
static void
report(const char *name, long long n, double secs, const struct metrics *m)
{
	int i;
	printf("%s-%d\t%10lld\t%12.0f ns/op", name, nproc, n, secs * 1e9 / (n ? n : 1));
	for (i = 0; i < m->n; i++)
		printf("\t%12.6g %s", m->v[i], m->unit[i]);
	printf("\n");
	fflush(stdout);
}

/* --- handshakes ------------------------------------------------------------ */

struct hs_bench {
	struct sockaddr_in addr;
	int lfd;
	struct tls *srv;
	pthread_mutex_t accept_mu; /* tls_accept_socket on the shared context */
	struct tls_config *ccfg;
	int plain; /* no TLS: the TCP and threading floor */
	volatile int stop;
	pthread_mutex_t mu;
	long long done, resumed, srv_resumed;
	int failed;
};

static void *
hs_server(void *arg)
{
	struct hs_bench *h = arg;
	char one;
	for (;;) {
		struct tls *c = NULL;
		int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return NULL; /* the listener was shut down */
		}
		nodelay(fd);
		if (h->plain) {
			if (read(fd, &one, 1) != 1 || write(fd, &one, 1) != 1) {
				pthread_mutex_lock(&h->mu);
				h->failed = 1;
				pthread_mutex_unlock(&h->mu);
			}
			close(fd);
			continue;
		}
		pthread_mutex_lock(&h->accept_mu);
		int rc = tls_accept_socket(h->srv, &c, fd);
		pthread_mutex_unlock(&h->accept_mu);
		if (rc != 0)
			die("tls_accept_socket: %s", tls_error(h->srv));
		if (do_handshake(c, fd) != 0 || do_read(c, fd, &one, 1) != 1 ||
		    do_write(c, fd, &one, 1) != 0) {
			fprintf(stderr, "bench: server: %s\n", tls_error(c));
			pthread_mutex_lock(&h->mu);
			h->failed = 1;
			pthread_mutex_unlock(&h->mu);
		} else if (tls_conn_session_resumed(c) == 1) {
			pthread_mutex_lock(&h->mu);
			h->srv_resumed++;
			pthread_mutex_unlock(&h->mu);
		}
		do_close(c, fd);
		tls_free(c);
		close(fd);
	}
}

/* hs_client_once: connect, handshake, one byte each way, close. */
static int
hs_client_once(struct hs_bench *h, int *resumed)
{
	char one = 1;
	int fd = dial(&h->addr), ok = 0;
	struct tls *t;
	if (h->plain) {
		ok = write(fd, &one, 1) == 1 && read(fd, &one, 1) == 1;
		close(fd);
		*resumed = 0;
		return ok;
	}
	t = tls_client();
	if (t == NULL)
		die("tls_client failed");
	if (tls_configure(t, h->ccfg) != 0)
		die("tls_configure: %s", tls_error(t));
	if (tls_connect_socket(t, fd, SERVER_NAME) != 0)
		die("tls_connect_socket: %s", tls_error(t));
	if (do_handshake(t, fd) == 0 && do_write(t, fd, &one, 1) == 0 &&
	    do_read(t, fd, &one, 1) == 1) {
		ok = 1;
		*resumed = tls_conn_session_resumed(t) == 1;
	} else
		fprintf(stderr, "bench: client: %s\n", tls_error(t));
	do_close(t, fd);
	tls_free(t);
	close(fd);
	return ok;
}

static void *
hs_client(void *arg)
{
	struct hs_bench *h = arg;
	while (!h->stop) {
		int resumed = 0;
		if (!hs_client_once(h, &resumed)) {
			pthread_mutex_lock(&h->mu);
			h->failed = 1;
			pthread_mutex_unlock(&h->mu);
			h->stop = 1;
			break;
		}
		pthread_mutex_lock(&h->mu);
		h->done++;
		h->resumed += resumed;
		pthread_mutex_unlock(&h->mu);
	}
	return NULL;
}

static int remote_service(const char *service, struct sockaddr_in *addr);
static void print_header(void);

/* run_handshakes runs k client threads against k server threads for the
 * bench time; with lifetime > 0 the server issues tickets and the clients
 * share one session file. With service, the server is the -connect one's
 * service of that name (its protocols and lifetime are its own; lifetime
 * here only asks for a session file). */
static void
run_handshakes(const char *name, int k, uint32_t protocols, int lifetime, int with_resumed, int plain,
    const char *service)
{
	struct hs_bench h;
	struct tls_config *scfg = NULL;
	struct metrics m = { 0 };
	struct cpu cpu0, rcpu0 = { 0, 0 };
	pthread_t *srv_th, *cli_th;
	int session_fd = -1, i, warm, nsrv = service ? 0 : k;
	double start, secs;

	if (!selected(name, 1))
		return;
	memset(&h, 0, sizeof(h));
	h.plain = plain;
	pthread_mutex_init(&h.mu, NULL);
	pthread_mutex_init(&h.accept_mu, NULL);
	if (lifetime > 0)
		session_fd = session_file();
	h.ccfg = client_config(protocols, session_fd);
	if (service != NULL) {
		if (!remote_service(service, &h.addr))
			die("%s: the server has no service %s", name, service);
	} else {
		scfg = server_config(protocols, lifetime);
		if ((h.srv = tls_server()) == NULL)
			die("tls_server failed");
		if (tls_configure(h.srv, scfg) != 0)
			die("tls_configure server: %s", tls_error(h.srv));
		h.lfd = listen_loopback(&h.addr);
	}

	srv_th = calloc(k, sizeof(*srv_th));
	cli_th = calloc(k, sizeof(*cli_th));
	for (i = 0; i < nsrv; i++)
		if (pthread_create(&srv_th[i], NULL, hs_server, &h) != 0)
			die("pthread_create");
	/* One handshake first: it fills the session file, and warms up. */
	if (!hs_client_once(&h, &warm))
		die("%s: warm-up handshake failed", name);

	if (service != NULL)
		rcpu0 = remote_cpu();
	cpu0 = cpu_now();
	start = now();
	for (i = 0; i < k; i++)
		if (pthread_create(&cli_th[i], NULL, hs_client, &h) != 0)
			die("pthread_create");
	while (!h.stop && now() - start < bench_secs)
		usleep(1000);
	h.stop = 1;
	for (i = 0; i < k; i++)
		pthread_join(cli_th[i], NULL);
	secs = now() - start;
	if (plain)
		metric(&m, "conns/s", h.done / secs);
	else
		metric(&m, "handshakes/s", h.done / secs);
	if (with_resumed)
		metric(&m, "resumed/op", (double)h.resumed / (h.done ? h.done : 1));
	cpu_metrics(&m, h.done, 0, cpu0, rcpu0);
	if (service == NULL) {
		shutdown(h.lfd, SHUT_RDWR);
		for (i = 0; i < nsrv; i++)
			pthread_join(srv_th[i], NULL);
		close(h.lfd);
	}
	if (h.failed)
		die("%s: a handshake failed", name);
	report(name, h.done, secs, &m);

	if (h.srv != NULL)
		tls_free(h.srv);
	if (scfg != NULL)
		tls_config_free(scfg);
	tls_config_free(h.ccfg);
	if (session_fd != -1)
		close(session_fd);
	free(srv_th);
	free(cli_th);
}

/* --- bulk transfer --------------------------------------------------------- */

struct conn_pair {
	int lfd, sfd, cfd;
	struct tls *srv, *s, *c;
	struct tls_config *scfg, *ccfg;
};

struct accept_arg {
	struct conn_pair *p;
	int ok;
};

static void *
pair_accept(void *arg)
{
	struct accept_arg *a = arg;
	struct conn_pair *p = a->p;
	if ((p->sfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
		die("accept: %s", strerror(errno));
	nodelay(p->sfd);
	if (tls_accept_socket(p->srv, &p->s, p->sfd) != 0)
		die("tls_accept_socket: %s", tls_error(p->srv));
	a->ok = do_handshake(p->s, p->sfd) == 0;
	return NULL;
}

/* pair_open establishes one connection (default protocols: TLS 1.3). */
static void
pair_open(struct conn_pair *p)
{
	struct sockaddr_in addr;
	struct accept_arg a = { .p = p };
	pthread_t th;

	memset(p, 0, sizeof(*p));
	p->scfg = server_config(0, 0);
	p->ccfg = client_config(0, -1);
	if ((p->srv = tls_server()) == NULL || tls_configure(p->srv, p->scfg) != 0)
		die("server context failed");
	p->lfd = listen_loopback(&addr);
	pthread_create(&th, NULL, pair_accept, &a);
	p->cfd = dial(&addr);
	if ((p->c = tls_client()) == NULL || tls_configure(p->c, p->ccfg) != 0)
		die("client context failed");
	if (tls_connect_socket(p->c, p->cfd, SERVER_NAME) != 0)
		die("tls_connect_socket: %s", tls_error(p->c));
	if (do_handshake(p->c, p->cfd) != 0)
		die("client handshake: %s", tls_error(p->c));
	pthread_join(th, NULL);
	if (!a.ok)
		die("server handshake: %s", tls_error(p->s));
}

static void
pair_close(struct conn_pair *p)
{
	do_close(p->c, p->cfd);
	do_close(p->s, p->sfd);
	tls_free(p->c);
	tls_free(p->s);
	tls_free(p->srv);
	close(p->cfd);
	close(p->sfd);
	close(p->lfd);
	tls_config_free(p->scfg);
	tls_config_free(p->ccfg);
}

struct bulk_arg {
	struct conn_pair *p;
	size_t chunk;
	long long total;
};

static void *
bulk_writer(void *arg)
{
	struct bulk_arg *a = arg;
	char *buf = calloc(1, a->chunk);
	long long sent = 0;
	while (sent < a->total) {
		size_t n = a->chunk;
		if ((long long)n > a->total - sent)
			n = a->total - sent;
		if (do_write(a->p->c, a->p->cfd, buf, n) != 0)
			die("bulk write: %s", tls_error(a->p->c));
		sent += n;
	}
	free(buf);
	return NULL;
}

static void
run_bulk(const char *name, size_t chunk)
{
	struct conn_pair p;
	struct metrics m = { 0 };
	struct cpu cpu0;
	char *rbuf;
	long long ops = 0;
	double start, secs;

	if (!selected(name, 1))
		return;
	pair_open(&p);
	rbuf = malloc(READ_BUF);
	cpu0 = cpu_now();
	start = now();
	do {
		struct bulk_arg a = { .p = &p, .chunk = chunk, .total = bulk_total };
		pthread_t th;
		long long got = 0;
		pthread_create(&th, NULL, bulk_writer, &a);
		while (got < bulk_total) {
			ssize_t n = do_read(p.s, p.sfd, rbuf, READ_BUF);
			if (n <= 0)
				die("bulk read: %s", tls_error(p.s));
			got += n;
		}
		pthread_join(th, NULL);
		ops++;
	} while (now() - start < bench_secs);
	secs = now() - start;
	metric(&m, "MB/s", bulk_total * (double)ops / secs / 1e6);
	cpu_metrics(&m, ops, (double)bulk_total, cpu0, cpu0);
	report(name, ops, secs, &m);
	free(rbuf);
	pair_close(&p);
}

/* --- idle connections -------------------------------------------------- */

static void
proc_status(int *threads, long long *rss)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	*threads = 0;
	*rss = 0;
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "Threads:", 8) == 0)
			*threads = atoi(line + 8);
		else if (strncmp(line, "VmRSS:", 6) == 0)
			*rss = atoll(line + 6) * 1024;
	}
	fclose(f);
}

static void
write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n <= 0)
			die("write: %s", strerror(errno));
		p += n;
		len -= n;
	}
}

/* run_idle: n established connections, server ends here, client ends in a
 * forked child; reports threads and RSS per connection of each side. */
static void
run_idle(const char *name, int n)
{
	struct sockaddr_in addr;
	struct tls_config *scfg;
	struct tls *srv, **conns;
	int lfd, *fds, report_pipe[2], hold_pipe[2], i, threads, cthreads;
	long long rss0, rss1, crss;
	double start, secs;
	pid_t pid;
	char msg[128];
	ssize_t got;

	if (!selected(name, 0))
		return;
	scfg = server_config(0, 0);
	if ((srv = tls_server()) == NULL || tls_configure(srv, scfg) != 0)
		die("server context failed");
	lfd = listen_loopback(&addr);
	if (pipe(report_pipe) != 0 || pipe(hold_pipe) != 0)
		die("pipe: %s", strerror(errno));
	fflush(stdout);
	conns = calloc(n, sizeof(*conns));
	fds = calloc(n, sizeof(*fds));
	proc_status(&threads, &rss0);
	start = now();
	if ((pid = fork()) == -1)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		struct tls_config *ccfg = client_config(0, -1);
		int t0, t1;
		long long r0, r1;
		char c;
		close(report_pipe[0]);
		close(hold_pipe[1]);
		close(lfd);
		proc_status(&t0, &r0);
		for (i = 0; i < n; i++) {
			fds[i] = dial(&addr);
			if ((conns[i] = tls_client()) == NULL || tls_configure(conns[i], ccfg) != 0 ||
			    tls_connect_socket(conns[i], fds[i], SERVER_NAME) != 0 ||
			    do_handshake(conns[i], fds[i]) != 0)
				die("idle client %d: %s", i, tls_error(conns[i]));
		}
		proc_status(&t1, &r1);
		snprintf(msg, sizeof(msg), "%d %lld\n", t1, r1 - r0);
		write_full(report_pipe[1], msg, strlen(msg));
		while (read(hold_pipe[0], &c, 1) > 0)
			;
		_exit(0);
	}
	close(report_pipe[1]);
	close(hold_pipe[0]);
	for (i = 0; i < n; i++) {
		if ((fds[i] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) == -1)
			die("accept: %s", strerror(errno));
		nodelay(fds[i]);
		if (tls_accept_socket(srv, &conns[i], fds[i]) != 0 ||
		    do_handshake(conns[i], fds[i]) != 0)
			die("idle server %d: %s", i, tls_error(conns[i] ? conns[i] : srv));
	}
	got = read(report_pipe[0], msg, sizeof(msg) - 1);
	if (got <= 0)
		die("the client process did not report");
	msg[got] = '\0';
	if (sscanf(msg, "%d %lld", &cthreads, &crss) != 2)
		die("bad client report %s", msg);
	secs = now() - start;
	proc_status(&threads, &rss1);
	{
		struct metrics m = { 0 };
		metric(&m, "threads", (double)threads);
		metric(&m, "RSS-B/conn", (double)(rss1 - rss0) / n);
		metric(&m, "client-threads", (double)cthreads);
		metric(&m, "client-RSS-B/conn", (double)crss / n);
		report(name, 1, secs, &m);
	}
	close(hold_pipe[1]);
	waitpid(pid, NULL, 0);
	close(report_pipe[0]);
	for (i = 0; i < n; i++) {
		tls_free(conns[i]);
		close(fds[i]);
	}
	free(conns);
	free(fds);
	close(lfd);
	tls_free(srv);
	tls_config_free(scfg);
}

/* --- two processes: -serve and -connect ------------------------------------ */

/* The services of -serve, by name; the -connect client asks for their
 * ports. protocols 0 and lifetime 0 are libtls's defaults. */
#define NSERVICES 6
static const struct {
	const char *name;
	uint32_t protocols;
	int lifetime;
	int bulk;       /* the bulk peer, not the handshake one */
	int concurrent; /* one thread per concurrent client */
} services[NSERVICES] = {
	{ "full/tls12", TLS_PROTOCOL_TLSv1_2, 0, 0, 0 },
	{ "full/tls13", TLS_PROTOCOL_TLSv1_3, 0, 0, 0 },
	{ "resumed/tls12", TLS_PROTOCOL_TLSv1_2, 3600, 0, 0 },
	{ "resumed/tls13", TLS_PROTOCOL_TLSv1_3, 3600, 0, 0 },
	{ "scaling", 0, 0, 0, 1 },
	{ "bulk", 0, 0, 1, 0 },
};

/* read_full reads exactly len bytes: 1 when done, 0 at a clean end of
 * stream before the first byte, -1 otherwise. */
static int
read_full(struct tls *t, int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = do_read(t, fd, p + got, len - got);
		if (n <= 0)
			return n == 0 && got == 0 ? 0 : -1;
		got += n;
	}
	return 1;
}

/* bulk_server serves the bulk service: per op, an 8-byte big-endian
 * count, that many bytes (read with a READ_BUF buffer), one byte back. */
static void *
bulk_server(void *arg)
{
	struct hs_bench *h = arg;
	char *buf = malloc(READ_BUF), ack = 1;
	for (;;) {
		struct tls *c = NULL;
		unsigned char hdr[8];
		int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC), rc, i;
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			free(buf);
			return NULL;
		}
		nodelay(fd);
		pthread_mutex_lock(&h->accept_mu);
		rc = tls_accept_socket(h->srv, &c, fd);
		pthread_mutex_unlock(&h->accept_mu);
		if (rc != 0)
			die("tls_accept_socket: %s", tls_error(h->srv));
		if (do_handshake(c, fd) != 0)
			fprintf(stderr, "bench: bulk server: %s\n", tls_error(c));
		else
			while ((rc = read_full(c, fd, hdr, sizeof(hdr))) == 1) {
				long long total = 0, got = 0;
				for (i = 0; i < 8; i++)
					total = total << 8 | hdr[i];
				while (got < total) {
					size_t want = total - got < READ_BUF ? (size_t)(total - got) : READ_BUF;
					ssize_t n = do_read(c, fd, buf, want);
					if (n <= 0)
						break;
					got += n;
				}
				if (got < total || do_write(c, fd, &ack, 1) != 0) {
					fprintf(stderr, "bench: bulk server: %s\n", tls_error(c));
					break;
				}
			}
		do_close(c, fd);
		tls_free(c);
		close(fd);
	}
}

/* serve is -serve: the services on loopback, then the control port in this
 * thread until "quit" (or SIGALRM after timeout seconds). */
static void
serve(const int *clients, int nclients, int timeout)
{
	static struct hs_bench h[NSERVICES];
	struct sockaddr_in caddr;
	char ports[512] = "", line[128], reply[640];
	size_t off = 0;
	int lfd, i, j, threads = 1;

	for (i = 0; i < nclients; i++)
		if (clients[i] > threads)
			threads = clients[i];
	for (i = 0; i < NSERVICES; i++) {
		struct tls_config *cfg = server_config(services[i].protocols, services[i].lifetime);
		int n = services[i].concurrent ? threads : 1;
		pthread_mutex_init(&h[i].mu, NULL);
		pthread_mutex_init(&h[i].accept_mu, NULL);
		if ((h[i].srv = tls_server()) == NULL || tls_configure(h[i].srv, cfg) != 0)
			die("server context for %s failed", services[i].name);
		h[i].lfd = listen_loopback(&h[i].addr);
		for (j = 0; j < n; j++) {
			pthread_t th;
			if (pthread_create(&th, NULL, services[i].bulk ? bulk_server : hs_server, &h[i]) != 0)
				die("pthread_create");
			pthread_detach(th);
		}
		off += snprintf(ports + off, sizeof(ports) - off, " %s=%d", services[i].name,
		    ntohs(h[i].addr.sin_port));
	}
	lfd = listen_loopback(&caddr);
	if (timeout > 0)
		alarm(timeout);
	printf("control 127.0.0.1:%d\n", ntohs(caddr.sin_port));
	fflush(stdout);
	for (;;) {
		FILE *in;
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd == -1) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			die("control accept: %s", strerror(errno));
		}
		if ((in = fdopen(fd, "r")) == NULL)
			die("fdopen: %s", strerror(errno));
		while (fgets(line, sizeof(line), in) != NULL) {
			line[strcspn(line, "\r\n")] = '\0';
			if (strcmp(line, "cpu") == 0) {
				struct cpu c = cpu_now();
				snprintf(reply, sizeof(reply), "cpu %.0f %.0f\n", c.user, c.sys);
			} else if (strcmp(line, "ports") == 0)
				snprintf(reply, sizeof(reply), "ports%s\n", ports);
			else if (strcmp(line, "quit") == 0)
				exit(0);
			else
				snprintf(reply, sizeof(reply), "error unknown command %s\n", line);
			write_full(fd, reply, strlen(reply));
		}
		fclose(in);
	}
}

/* The -connect side: the control connection and the services' ports. */
static struct sockaddr_in remote_addr;
static struct {
	char name[32];
	int port;
} remotes[NSERVICES];
static int nremotes;

static void
ctl_ask(const char *cmd, char *reply, size_t len)
{
	char line[64];
	snprintf(line, sizeof(line), "%s\n", cmd);
	write_full(ctl_fd, line, strlen(line));
	if (fgets(reply, len, ctl_in) == NULL)
		die("the server's control connection closed");
	reply[strcspn(reply, "\r\n")] = '\0';
}

static struct cpu
remote_cpu(void)
{
	char reply[128];
	struct cpu c;
	ctl_ask("cpu", reply, sizeof(reply));
	if (sscanf(reply, "cpu %lf %lf", &c.user, &c.sys) != 2)
		die("bad cpu reply %s", reply);
	return c;
}

static int
remote_service(const char *service, struct sockaddr_in *addr)
{
	int i;
	for (i = 0; i < nremotes; i++)
		if (strcmp(remotes[i].name, service) == 0) {
			*addr = remote_addr;
			addr->sin_port = htons(remotes[i].port);
			return 1;
		}
	return 0;
}

/* ctl_open connects to the control port at host:port (an IPv4 address)
 * and asks for the ports of the services. */
static void
ctl_open(const char *hostport)
{
	char host[64], reply[640], *tok, *save = NULL;
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || (size_t)(colon - hostport) >= sizeof(host))
		die("bad -connect address %s", hostport);
	memcpy(host, hostport, colon - hostport);
	host[colon - hostport] = '\0';
	memset(&remote_addr, 0, sizeof(remote_addr));
	remote_addr.sin_family = AF_INET;
	remote_addr.sin_port = htons(atoi(colon + 1));
	if (inet_pton(AF_INET, host, &remote_addr.sin_addr) != 1)
		die("bad -connect address %s", hostport);
	ctl_fd = dial(&remote_addr);
	if ((ctl_in = fdopen(dup(ctl_fd), "r")) == NULL)
		die("fdopen: %s", strerror(errno));
	ctl_ask("ports", reply, sizeof(reply));
	if (strncmp(reply, "ports", 5) != 0)
		die("bad ports reply %s", reply);
	for (tok = strtok_r(reply + 5, " ", &save); tok != NULL && nremotes < NSERVICES;
	     tok = strtok_r(NULL, " ", &save)) {
		char *eq = strchr(tok, '=');
		if (eq == NULL || (size_t)(eq - tok) >= sizeof(remotes[0].name))
			die("bad ports reply");
		memcpy(remotes[nremotes].name, tok, eq - tok);
		remotes[nremotes].name[eq - tok] = '\0';
		remotes[nremotes++].port = atoi(eq + 1);
	}
}

/* run_bulk_remote is the Bulk scenario against the -connect server's bulk service: one
 * connection (default protocols); one op sends the count, bulk_total bytes
 * in writes of chunk, and waits for the byte back. */
static void
run_bulk_remote(const char *name, size_t chunk)
{
	struct sockaddr_in addr;
	struct tls_config *ccfg;
	struct tls *t;
	struct metrics m = { 0 };
	struct cpu cpu0, rcpu0;
	unsigned char hdr[8];
	char *buf, ack;
	long long ops = 0;
	double start, secs;
	int fd, i;

	if (!selected(name, 1))
		return;
	if (!remote_service("bulk", &addr))
		die("%s: the server has no bulk service", name);
	ccfg = client_config(0, -1);
	fd = dial(&addr);
	if ((t = tls_client()) == NULL || tls_configure(t, ccfg) != 0 ||
	    tls_connect_socket(t, fd, SERVER_NAME) != 0 || do_handshake(t, fd) != 0)
		die("%s: handshake: %s", name, t ? tls_error(t) : "tls_client failed");
	for (i = 0; i < 8; i++)
		hdr[i] = (unsigned char)(bulk_total >> (56 - 8 * i));
	buf = calloc(1, chunk);
	rcpu0 = remote_cpu();
	cpu0 = cpu_now();
	start = now();
	do {
		long long sent = 0;
		if (do_write(t, fd, hdr, sizeof(hdr)) != 0)
			die("%s: write: %s", name, tls_error(t));
		while (sent < bulk_total) {
			size_t n = chunk;
			if ((long long)n > bulk_total - sent)
				n = bulk_total - sent;
			if (do_write(t, fd, buf, n) != 0)
				die("%s: write: %s", name, tls_error(t));
			sent += n;
		}
		if (do_read(t, fd, &ack, 1) != 1)
			die("%s: no answer: %s", name, tls_error(t));
		ops++;
	} while (now() - start < bench_secs);
	secs = now() - start;
	metric(&m, "MB/s", bulk_total * (double)ops / secs / 1e6);
	cpu_metrics(&m, ops, (double)bulk_total, cpu0, rcpu0);
	report(name, ops, secs, &m);
	do_close(t, fd);
	tls_free(t);
	close(fd);
	tls_config_free(ccfg);
	free(buf);
}

/* connect_all is -connect: every two-process scenario -run selects. */
static void
connect_all(const char *hostport, const int *clients, int nclients)
{
	char name[128];
	int i;
	ctl_open(hostport);
	print_header();
	run_handshakes("BenchmarkHandshake/full/tls12", 1, TLS_PROTOCOL_TLSv1_2, 0, 1, 0, "full/tls12");
	run_handshakes("BenchmarkHandshake/full/tls13", 1, TLS_PROTOCOL_TLSv1_3, 0, 1, 0, "full/tls13");
	run_handshakes("BenchmarkHandshake/resumed/tls12", 1, TLS_PROTOCOL_TLSv1_2, 3600, 1, 0, "resumed/tls12");
	run_handshakes("BenchmarkHandshake/resumed/tls13", 1, TLS_PROTOCOL_TLSv1_3, 3600, 1, 0, "resumed/tls13");
	run_bulk_remote("BenchmarkBulk/16KiB", 16 * 1024);
	run_bulk_remote("BenchmarkBulk/1KiB", 1024);
	for (i = 0; i < nclients; i++) {
		snprintf(name, sizeof(name), "BenchmarkScaling/handshakes/clients=%d", clients[i]);
		run_handshakes(name, clients[i], 0, 0, 0, 0, "scaling");
	}
}

/* --- main ---------------------------------------------------------------- */

static long long
parse_size(const char *s)
{
	char *end;
	long long n = strtoll(s, &end, 10);
	if (strcmp(end, "GiB") == 0)
		n <<= 30;
	else if (strcmp(end, "MiB") == 0)
		n <<= 20;
	else if (strcmp(end, "KiB") == 0)
		n <<= 10;
	else if (*end != '\0')
		n = 0;
	if (n <= 0)
		die("bad size %s", s);
	return n;
}

static double
parse_duration(const char *s)
{
	char *end;
	double v = strtod(s, &end);
	if (strcmp(end, "ms") == 0)
		v /= 1000;
	else if (strcmp(end, "s") != 0 && *end != '\0')
		v = 0;
	if (v <= 0)
		die("bad duration %s", s);
	return v;
}

/* parse_list parses "1,2,8" (or "none") into at most max counts. */
static int
parse_list(const char *s, int *out, int max)
{
	int n = 0;
	if (strcmp(s, "none") == 0)
		return 0;
	char *copy = strdup(s), *tok, *save = NULL;
	for (tok = strtok_r(copy, ",", &save); tok != NULL && n < max; tok = strtok_r(NULL, ",", &save))
		if ((out[n++] = atoi(tok)) <= 0)
			die("bad count %s", tok);
	free(copy);
	return n;
}

static void
print_header(void)
{
	char line[512], *model = NULL;
	FILE *f = fopen("/proc/cpuinfo", "r");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		if (strncmp(line, "model name", 10) == 0 && (model = strchr(line, ':')) != NULL) {
			model += 2;
			model[strcspn(model, "\n")] = '\0';
			break;
		}
	}
	if (f != NULL)
		fclose(f);
	printf("goos: linux\ngoarch: amd64\npkg: github.com/golibtls/libtls/bench/c\n");
	if (model != NULL)
		printf("cpu: %s\n", model);
}

int
main(int argc, char **argv)
{
	int clients[16] = { 1, 2, 8, 64 }, nclients = 4;
	int idle[16] = { 1000 }, nidle = 1;
	char name[128];
	const char *e, *connect_addr = NULL;
	int i, serve_mode = 0, timeout = 3600;

	signal(SIGPIPE, SIG_IGN);
	nproc = (int)sysconf(_SC_NPROCESSORS_ONLN);
	if ((e = getenv("GOLIBTLS_BENCH_BULK")) != NULL && *e)
		bulk_total = parse_size(e);
	if ((e = getenv("GOLIBTLS_BENCH_CLIENTS")) != NULL && *e)
		nclients = parse_list(e, clients, 16);
	if ((e = getenv("GOLIBTLS_BENCH_IDLE")) != NULL && *e)
		nidle = parse_list(e, idle, 16);
	for (i = 1; i < argc; i++) {
		const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(opt, "-serve") == 0) {
			serve_mode = 1;
			continue;
		}
		if (val == NULL)
			die("%s needs a value", opt);
		i++;
		if (strcmp(opt, "-ca") == 0)
			ca_file = val;
		else if (strcmp(opt, "-cert") == 0)
			cert_file = val;
		else if (strcmp(opt, "-key") == 0)
			key_file = val;
		else if (strcmp(opt, "-benchtime") == 0)
			bench_secs = parse_duration(val);
		else if (strcmp(opt, "-bulk") == 0)
			bulk_total = parse_size(val);
		else if (strcmp(opt, "-clients") == 0)
			nclients = parse_list(val, clients, 16);
		else if (strcmp(opt, "-idle") == 0)
			nidle = parse_list(val, idle, 16);
		else if (strcmp(opt, "-connect") == 0)
			connect_addr = val;
		else if (strcmp(opt, "-timeout") == 0)
			timeout = atoi(val);
		else if (strcmp(opt, "-run") == 0) {
			if (regcomp(&run_re, val, REG_EXTENDED | REG_NOSUB) != 0)
				die("bad -run expression %s", val);
			have_run_re = 1;
		} else
			die("unknown option %s", opt);
	}
	if ((!connect_addr && (cert_file == NULL || key_file == NULL)) || (!serve_mode && ca_file == NULL) ||
	    (serve_mode && connect_addr))
		die("usage: bench -ca ca.pem -cert cert.pem -key key.pem [-benchtime 1s] "
		    "[-bulk 1GiB] [-clients 1,2,8,64] [-idle 1000] [-run REGEX]\n"
		    "       bench -cert cert.pem -key key.pem -serve [-clients 1,8] [-timeout 3600]\n"
		    "       bench -ca ca.pem -connect 127.0.0.1:PORT [-benchtime 1s] [-bulk 1GiB] "
		    "[-clients 1,8] [-run REGEX]");
	if (tls_init() != 0)
		die("tls_init failed");
	if (serve_mode) {
		serve(clients, nclients, timeout);
		return 0;
	}
	if (connect_addr != NULL) {
		connect_all(connect_addr, clients, nclients);
		return 0;
	}

	print_header();
	run_handshakes("BenchmarkHandshake/full/tls12", 1, TLS_PROTOCOL_TLSv1_2, 0, 1, 0, NULL);
	run_handshakes("BenchmarkHandshake/full/tls13", 1, TLS_PROTOCOL_TLSv1_3, 0, 1, 0, NULL);
	run_handshakes("BenchmarkHandshake/resumed/tls12", 1, TLS_PROTOCOL_TLSv1_2, 3600, 1, 0, NULL);
	run_handshakes("BenchmarkHandshake/resumed/tls13", 1, TLS_PROTOCOL_TLSv1_3, 3600, 1, 0, NULL);
	run_handshakes("BenchmarkPlainTCP", 1, 0, 0, 0, 1, NULL);
	run_bulk("BenchmarkBulk/16KiB", 16 * 1024);
	run_bulk("BenchmarkBulk/1KiB", 1024);
	for (i = 0; i < nclients; i++) {
		snprintf(name, sizeof(name), "BenchmarkScaling/handshakes/clients=%d", clients[i]);
		if (have_run_re && selected(name, 0))
			run_handshakes(name, clients[i], 0, 0, 0, 0, NULL);
	}
	for (i = 0; i < nidle; i++) {
		snprintf(name, sizeof(name), "BenchmarkScaling/idle/conns=%d", idle[i]);
		run_idle(name, idle[i]);
	}
	return 0;
}
