/* srv-test: the server module with test routes, driven by srv_test.py (curl and raw
 * sockets) and by bench/server-bench (wrk).
 *
 *   srv-test [--listen ADDR] [--token-file F] [--tls-cert F --tls-key F] [--workers N]
 *            [--port-file F] [--max-connections N] [--request-timeout-ms N]
 *            [--write-timeout-ms N] [--max-body N] [--max-header N] [--max-url N]
 *            [--queue-bytes N] [--max-queued N] [--stop-grace-ms N]
 *
 * Runs until SIGTERM or SIGINT, then stops the server gracefully, prints its counters
 * and exits 0 (srv_open errors: the message and exit 2).  Routes:
 *   GET  /inline              inline, {"ok": true}             (wrk: loop thread)
 *   GET  /worker              worker, {"ok": true}             (wrk: worker round trip)
 *   GET  /public              inline, needs no token
 *   GET  /echo/{id}           JSON of method, path, id, query parameters, x-test header
 *   GET  /r/{a}/x/{b}, /r/lit/x/{b}   routing precedence
 *   POST /body                {"len": N} of the request body
 *   GET  /big?mb=N&chunk=K    streams N MiB (byte at offset o is o % 251) in K-byte
 *                             blocking writes; class "export" (2 at once)
 *   GET  /whole?kb=N          the same bytes as one whole answer
 *   GET  /slow?lines=N&ms=M   a slow producer: a line every M ms
 *   GET  /live?n=N&ms=M&size=S&burst=B  detached stream fed by the producer thread with
 *                             non-blocking writes (B events of S bytes every M ms; drops
 *                             counted), ended after N events (0: until the client goes)
 *   GET  /live-inline?...     the same, detached by an inline handler (loop thread)
 *   GET  /sleep?ms=N          a slow handler
 *   GET  /abort               streams 1000 bytes, then srv_stream_abort
 *   GET  /noanswer            returns without answering (the server sends 500)
 *   GET  /stats               inline: server counters + the test's writer outcomes
 *   GET  /ui/...              embedded fixture files (srv_static)
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "server.h"
#include "srv_internal.h"

extern const struct srv_asset test_assets[];
extern const size_t test_assets_count;

/* What the writers saw, for the tests to check through /stats. */
static struct {
	atomic_long big_done, big_failed, big_last_err;
	atomic_long slow_done, slow_failed;
	atomic_long live_started, live_ended, live_gone, live_drops, live_events, live_closed_cb;
} T;

static long qnum(struct srv_req *req, const char *name, long def, long min, long max)
{
	const char *v = srv_req_query(req, name, NULL);
	if (v == NULL || *v == '\0')
		return def;
	char *end;
	long n = strtol(v, &end, 10);
	if (*end != '\0' || n < min || n > max)
		return -1;
	return n;
}

static void h_ok(struct srv_req *req, void *arg)
{
	static const char body[] = "{\"ok\": true}\n";
	srv_respond(req, 200, "application/json", body, sizeof(body) - 1);
}

static void append_json_str(char **p, size_t *left, const char *s, size_t len)
{
	char esc[4096];
	srv_json_escape(esc, sizeof(esc), s, len);
	int n = snprintf(*p, *left, "\"%s\"", esc);
	if (n < 0 || (size_t)n >= *left)
		n = (int)*left - 1;
	*p += n;
	*left -= (size_t)n;
}

static void append(char **p, size_t *left, const char *s)
{
	int n = snprintf(*p, *left, "%s", s);
	if (n < 0 || (size_t)n >= *left)
		n = (int)*left - 1;
	*p += n;
	*left -= (size_t)n;
}

static void h_echo(struct srv_req *req, void *arg)
{
	size_t cap = 65536, left = cap;
	char *body = malloc(cap), *p = body;
	const char *name, *value;
	size_t vlen;

	if (body == NULL) {
		srv_respond_error(req, 500, "out of memory");
		return;
	}
	append(&p, &left, "{\"method\": ");
	append_json_str(&p, &left, srv_req_method(req), strlen(srv_req_method(req)));
	append(&p, &left, ", \"path\": ");
	append_json_str(&p, &left, srv_req_path(req), strlen(srv_req_path(req)));
	const char *params[] = {"id", "a", "b"};
	for (size_t i = 0; i < 3; i++) {
		const char *v = srv_req_param(req, params[i]);
		if (v == NULL)
			continue;
		append(&p, &left, ", \"");
		append(&p, &left, params[i]);
		append(&p, &left, "\": ");
		append_json_str(&p, &left, v, strlen(v));
	}
	append(&p, &left, ", \"query\": [");
	for (size_t i = 0; i < srv_req_query_count(req); i++) {
		srv_req_query_at(req, i, &name, &value, &vlen);
		append(&p, &left, i ? ", [" : "[");
		append_json_str(&p, &left, name, strlen(name));
		append(&p, &left, ", ");
		append_json_str(&p, &left, value, vlen);
		append(&p, &left, "]");
	}
	append(&p, &left, "]");
	const char *all[8];
	size_t n = srv_req_query_all(req, "v", all, 8);
	char num[64];
	snprintf(num, sizeof(num), ", \"v_count\": %zu", n);
	append(&p, &left, num);
	const char *xt = srv_req_header(req, "X-Test");
	if (xt != NULL) {
		append(&p, &left, ", \"x_test\": ");
		append_json_str(&p, &left, xt, strlen(xt));
	}
	append(&p, &left, ", \"host\": ");
	append_json_str(&p, &left, srv_req_header(req, "host"), strlen(srv_req_header(req, "host")));
	append(&p, &left, ", \"peer\": ");
	append_json_str(&p, &left, srv_req_peer(req), strlen(srv_req_peer(req)));
	snprintf(num, sizeof(num), ", \"version\": %d}\n", srv_req_http_version(req));
	append(&p, &left, num);
	srv_add_header(req, "X-Echo", "yes");
	srv_respond_take(req, 200, "application/json", body, (size_t)(p - body));
}

static void h_body(struct srv_req *req, void *arg)
{
	size_t len;
	char out[64];
	srv_req_body(req, &len);
	int n = snprintf(out, sizeof(out), "{\"len\": %zu}\n", len);
	srv_respond(req, 200, "application/json", out, (size_t)n);
}

static void fill_pattern(unsigned char *buf, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (unsigned char)((off + i) % 251);
}

static void h_big(struct srv_req *req, void *arg)
{
	long mb = qnum(req, "mb", 1, 0, 4096);
	long chunk = qnum(req, "chunk", 65536, 1, 1 << 20);
	if (mb < 0 || chunk < 0) {
		srv_respond_error(req, 400, "mb must be 0-4096 and chunk 1-1048576");
		return;
	}
	unsigned char *buf = malloc((size_t)chunk);
	if (buf == NULL) {
		srv_respond_error(req, 500, "out of memory");
		return;
	}
	uint64_t total = (uint64_t)mb << 20, off = 0;
	int rc = srv_stream_begin(req, 200, "application/octet-stream");
	while (rc == 0 && off < total) {
		size_t n = total - off < (uint64_t)chunk ? (size_t)(total - off) : (size_t)chunk;
		fill_pattern(buf, n, off);
		rc = srv_stream_write(req, buf, n);
		off += n;
	}
	free(buf);
	if (rc == 0) {
		srv_stream_end(req);
		atomic_fetch_add(&T.big_done, 1);
	} else {
		/* The writer learns the client left: -EPIPE (or -ESHUTDOWN, -ETIMEDOUT). */
		atomic_store(&T.big_last_err, rc);
		atomic_fetch_add(&T.big_failed, 1);
		srv_stream_abort(req);
	}
}

static void h_whole(struct srv_req *req, void *arg)
{
	long kb = qnum(req, "kb", 1, 0, 1 << 20);
	if (kb < 0) {
		srv_respond_error(req, 400, "kb must be 0-1048576");
		return;
	}
	size_t len = (size_t)kb << 10;
	unsigned char *buf = malloc(len ? len : 1);
	if (buf == NULL) {
		srv_respond_error(req, 500, "out of memory");
		return;
	}
	fill_pattern(buf, len, 0);
	srv_respond_take(req, 200, "application/octet-stream", buf, len);
}

static void h_slow(struct srv_req *req, void *arg)
{
	long lines = qnum(req, "lines", 10, 0, 100000), ms = qnum(req, "ms", 100, 0, 10000);
	if (lines < 0 || ms < 0) {
		srv_respond_error(req, 400, "bad lines or ms");
		return;
	}
	int rc = srv_stream_begin(req, 200, "text/plain");
	for (long i = 0; rc == 0 && i < lines; i++) {
		char line[64];
		int n = snprintf(line, sizeof(line), "line %ld\n", i);
		rc = srv_stream_write(req, line, (size_t)n);
		if (rc == 0 && ms > 0)
			usleep((useconds_t)ms * 1000);
	}
	atomic_fetch_add(rc == 0 ? &T.slow_done : &T.slow_failed, 1);
	/* Returning without srv_stream_end: the server ends it (or cuts it after an error). */
}

/* --- live streams: detached requests fed by one producer thread --- */

struct live {
	struct live *next;
	struct srv_req *req;    /* the detached reference: released by the producer */
	long n, ms, size, burst, sent;
	uint64_t due_ms;
};

static pthread_mutex_t live_mu = PTHREAD_MUTEX_INITIALIZER;
static struct live *lives;
static atomic_bool producer_quit;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void live_on_close(struct srv_req *req, void *arg)
{
	/* Loop thread: only note it; the producer notices through srv_req_closed / -EPIPE
	 * and releases its reference itself. */
	atomic_fetch_add(&T.live_closed_cb, 1);
}

static void h_live(struct srv_req *req, void *arg)
{
	long n = qnum(req, "n", 0, 0, 1000000), ms = qnum(req, "ms", 10, 1, 10000);
	long size = qnum(req, "size", 32, 8, 65536), burst = qnum(req, "burst", 1, 1, 10000);
	if (n < 0 || ms < 0 || size < 0 || burst < 0) {
		srv_respond_error(req, 400, "bad n, ms, size or burst");
		return;
	}
	struct live *l = calloc(1, sizeof(*l));
	if (l == NULL) {
		srv_respond_error(req, 500, "out of memory");
		return;
	}
	srv_stream_begin(req, 200, "text/plain");
	srv_req_on_close(req, live_on_close, NULL);
	srv_req_detach(req);
	l->req = req;
	l->n = n;
	l->ms = ms;
	l->size = size;
	l->burst = burst;
	l->due_ms = now_ms();
	pthread_mutex_lock(&live_mu);
	l->next = lives;
	lives = l;
	pthread_mutex_unlock(&live_mu);
	atomic_fetch_add(&T.live_started, 1);
	/* Returns at once: the worker thread is free again. */
}

static void *producer_main(void *arg)
{
	char buf[65536];

	while (!atomic_load(&producer_quit)) {
		uint64_t now = now_ms();
		pthread_mutex_lock(&live_mu);
		for (struct live **pp = &lives; *pp != NULL;) {
			struct live *l = *pp;
			int rc = 0;
			bool done = false;
			if (now >= l->due_ms) {
				l->due_ms = now + (uint64_t)l->ms;
				for (long b = 0; b < l->burst && rc != -EPIPE; b++) {
					int k = snprintf(buf, sizeof(buf), "event %ld ", l->sent);
					memset(buf + k, 'x', (size_t)l->size - (size_t)k - 1);
					buf[l->size - 1] = '\n';
					rc = srv_stream_try_write(l->req, buf, (size_t)l->size);
					if (rc == -EAGAIN) {
						atomic_fetch_add(&T.live_drops, 1);
						rc = 0;
					} else if (rc == 0) {
						atomic_fetch_add(&T.live_events, 1);
					} else {
						break;
					}
					l->sent++;
					if (l->n > 0 && l->sent >= l->n) {
						done = true;
						break;
					}
				}
			}
			if (rc != 0) {
				atomic_fetch_add(&T.live_gone, 1);
				done = true;
			} else if (done) {
				srv_stream_end(l->req);
				atomic_fetch_add(&T.live_ended, 1);
			}
			if (done) {
				*pp = l->next;
				srv_req_release(l->req);
				free(l);
			} else {
				pp = &l->next;
			}
		}
		pthread_mutex_unlock(&live_mu);
		usleep(2000);
	}
	/* Stopping: end and release what is left so that srv_close does not wait. */
	pthread_mutex_lock(&live_mu);
	while (lives != NULL) {
		struct live *l = lives;
		lives = l->next;
		srv_stream_end(l->req);
		srv_req_release(l->req);
		free(l);
	}
	pthread_mutex_unlock(&live_mu);
	return NULL;
}

static void h_sleep(struct srv_req *req, void *arg)
{
	long ms = qnum(req, "ms", 100, 0, 60000);
	if (ms < 0) {
		srv_respond_error(req, 400, "bad ms");
		return;
	}
	usleep((useconds_t)ms * 1000);
	char out[64];
	int n = snprintf(out, sizeof(out), "{\"slept\": %ld}\n", ms);
	srv_respond(req, 200, "application/json", out, (size_t)n);
}

static void h_abort(struct srv_req *req, void *arg)
{
	char buf[1000];
	memset(buf, 'a', sizeof(buf));
	srv_stream_begin(req, 200, "text/plain");
	srv_stream_write(req, buf, sizeof(buf));
	srv_stream_abort(req);
}

static void h_noanswer(struct srv_req *req, void *arg)
{
}

static long vm_hwm_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static struct srv *the_srv;

#ifdef __SANITIZE_ADDRESS__
#define SANITIZED 1 /* ASan's quarantine keeps freed memory: VmHWM says nothing then */
#else
#define SANITIZED 0
#endif

static int format_stats(char *out, size_t cap)
{
	struct srv_stats s;
	srv_stats(the_srv, &s);
	return snprintf(out, cap,
		"{\"connections_accepted\": %" PRIu64 ", \"connections_active\": %" PRIu64
		", \"connections_rejected\": %" PRIu64 ", \"requests\": %" PRIu64 ", \"requests_active\": %" PRIu64
		", \"responses\": [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "]"
		", \"bytes_in\": %" PRIu64 ", \"bytes_out\": %" PRIu64
		", \"rejected_url\": %" PRIu64 ", \"rejected_header\": %" PRIu64 ", \"rejected_body\": %" PRIu64
		", \"rejected_auth\": %" PRIu64 ", \"rejected_busy\": %" PRIu64 ", \"rejected_overload\": %" PRIu64
		", \"timeouts_request\": %" PRIu64 ", \"timeouts_write\": %" PRIu64 ", \"streams_cut\": %" PRIu64
		", \"stream_again\": %" PRIu64
		", \"big_done\": %ld, \"big_failed\": %ld, \"big_last_err\": %ld, \"slow_done\": %ld, \"slow_failed\": %ld"
		", \"live_started\": %ld, \"live_ended\": %ld, \"live_gone\": %ld, \"live_drops\": %ld"
		", \"live_events\": %ld, \"live_closed_cb\": %ld, \"vm_hwm_kb\": %ld, \"sanitized\": %d}\n",
		s.connections_accepted, s.connections_active, s.connections_rejected, s.requests, s.requests_active,
		s.responses[0], s.responses[1], s.responses[2], s.responses[3], s.responses[4], s.responses[5],
		s.bytes_in, s.bytes_out, s.rejected_url, s.rejected_header, s.rejected_body, s.rejected_auth,
		s.rejected_busy, s.rejected_overload, s.timeouts_request, s.timeouts_write, s.streams_cut,
		s.stream_again,
		atomic_load(&T.big_done), atomic_load(&T.big_failed), atomic_load(&T.big_last_err),
		atomic_load(&T.slow_done), atomic_load(&T.slow_failed), atomic_load(&T.live_started),
		atomic_load(&T.live_ended), atomic_load(&T.live_gone), atomic_load(&T.live_drops),
		atomic_load(&T.live_events), atomic_load(&T.live_closed_cb), vm_hwm_kb(), SANITIZED);
}

static void h_stats(struct srv_req *req, void *arg)
{
	char out[2048];
	int n = format_stats(out, sizeof(out));
	srv_respond(req, 200, "application/json", out, (size_t)n);
}

static void usage(void)
{
	fprintf(stderr, "usage: srv-test [--listen ADDR] [--token-file F] [--tls-cert F --tls-key F] "
		"[--workers N] [--port-file F] [--max-connections N] [--request-timeout-ms N] "
		"[--write-timeout-ms N] [--max-body N] [--max-header N] [--max-url N] [--queue-bytes N] "
		"[--max-queued N] [--stop-grace-ms N]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, 0, 'l'}, {"token-file", required_argument, 0, 't'},
		{"tls-cert", required_argument, 0, 'c'}, {"tls-key", required_argument, 0, 'k'},
		{"workers", required_argument, 0, 'w'}, {"port-file", required_argument, 0, 'p'},
		{"max-connections", required_argument, 0, 'C'}, {"request-timeout-ms", required_argument, 0, 'R'},
		{"write-timeout-ms", required_argument, 0, 'W'}, {"max-body", required_argument, 0, 'B'},
		{"max-header", required_argument, 0, 'H'}, {"max-url", required_argument, 0, 'U'},
		{"queue-bytes", required_argument, 0, 'Q'}, {"max-queued", required_argument, 0, 'q'},
		{"stop-grace-ms", required_argument, 0, 'G'}, {0, 0, 0, 0},
	};
	struct srv_config cfg = {0};
	const char *port_file = NULL;
	char err[256];
	int c, rc;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'l': cfg.listen = optarg; break;
		case 't': cfg.token_file = optarg; break;
		case 'c': cfg.tls_cert_file = optarg; break;
		case 'k': cfg.tls_key_file = optarg; break;
		case 'w': cfg.workers = (unsigned)atoi(optarg); break;
		case 'p': port_file = optarg; break;
		case 'C': cfg.max_connections = (unsigned)atoi(optarg); break;
		case 'R': cfg.request_timeout_ms = (unsigned)atoi(optarg); break;
		case 'W': cfg.write_timeout_ms = (unsigned)atoi(optarg); break;
		case 'B': cfg.max_body_bytes = (size_t)atol(optarg); break;
		case 'H': cfg.max_header_bytes = (size_t)atol(optarg); break;
		case 'U': cfg.max_url_bytes = (size_t)atol(optarg); break;
		case 'Q': cfg.stream_queue_bytes = (size_t)atol(optarg); break;
		case 'q': cfg.max_queued = (unsigned)atoi(optarg); break;
		case 'G': cfg.stop_grace_ms = (unsigned)atoi(optarg); break;
		default: usage();
		}
	}
	if (optind != argc)
		usage();

	/* Signals are taken with sigwait by this thread only: block them before any
	 * thread starts so that every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	rc = srv_open(&cfg, &the_srv, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "srv-test: %s\n", err);
		return 2;
	}
	int export_class = srv_class(the_srv, "export", 2, 3);
	struct srv_route_opts inl = {.flags = SRV_INLINE};
	struct srv_route_opts pub = {.flags = SRV_INLINE | SRV_PUBLIC};
	struct srv_route_opts exp = {.limit_class = export_class};
	if (export_class < 0 ||
	    srv_route(the_srv, "GET", "/inline", h_ok, NULL, &inl) < 0 ||
	    srv_route(the_srv, "GET", "/worker", h_ok, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/public", h_ok, NULL, &pub) < 0 ||
	    srv_route(the_srv, "GET", "/echo/{id}", h_echo, NULL, NULL) < 0 ||
	    srv_route(the_srv, "DELETE", "/echo/{id}", h_echo, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/r/{a}/x/{b}", h_echo, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/r/lit/x/{b}", h_echo, NULL, &inl) < 0 ||
	    srv_route(the_srv, "POST", "/body", h_body, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/big", h_big, NULL, &exp) < 0 ||
	    srv_route(the_srv, "GET", "/whole", h_whole, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/slow", h_slow, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/live", h_live, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/live-inline", h_live, NULL, &inl) < 0 ||
	    srv_route(the_srv, "GET", "/sleep", h_sleep, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/abort", h_abort, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/noanswer", h_noanswer, NULL, NULL) < 0 ||
	    srv_route(the_srv, "GET", "/stats", h_stats, NULL, &inl) < 0 ||
	    srv_static(the_srv, "/ui", test_assets, test_assets_count) < 0) {
		fprintf(stderr, "srv-test: route registration failed\n");
		srv_close(the_srv);
		return 1;
	}
	/* Patterns the server must refuse. */
	if (srv_route(the_srv, "GET", "no-slash", h_ok, NULL, NULL) != -EINVAL ||
	    srv_route(the_srv, "GET", "/a/*/b", h_ok, NULL, NULL) != -EINVAL ||
	    srv_route(the_srv, "GET", "/a/{x}/{x}", h_ok, NULL, NULL) != -EINVAL ||
	    srv_route(the_srv, "G T", "/a", h_ok, NULL, NULL) != -EINVAL) {
		fprintf(stderr, "srv-test: a bad route pattern was accepted\n");
		srv_close(the_srv);
		return 1;
	}

	pthread_t producer;
	if (pthread_create(&producer, NULL, producer_main, NULL) != 0 || srv_start(the_srv) < 0) {
		fprintf(stderr, "srv-test: cannot start\n");
		return 1;
	}
	if (srv_route(the_srv, "GET", "/late", h_ok, NULL, NULL) != -EBUSY) {
		fprintf(stderr, "srv-test: a route was accepted after srv_start\n");
		return 1;
	}
	if (port_file != NULL) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
		FILE *f = fopen(tmp, "w");
		if (f == NULL || fprintf(f, "%d\n", srv_port(the_srv)) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0) {
			fprintf(stderr, "srv-test: cannot write %s\n", port_file);
			return 1;
		}
	}
	printf("srv-test: listening on port %d\n", srv_port(the_srv));
	fflush(stdout);

	int sig;
	sigwait(&set, &sig);

	rc = srv_stop(the_srv);
	atomic_store(&producer_quit, true);
	pthread_join(producer, NULL);
	char out[2048];
	format_stats(out, sizeof(out));
	printf("srv-test: stopped (%d): %s", rc, out);
	fflush(stdout);
	srv_close(the_srv);
	return rc == 0 ? 0 : 1;
}
