/* The server: configuration, the listening socket, connections and their timeouts,
 * admission of requests (limits, token, routing), the loop thread, graceful stop.
 *
 * h2o 2.2.5 parses HTTP/1.1 and HTTP/2 and calls on_req (below) for every complete
 * request; everything else h2o does on its own (keep-alive, chunked encoding, HTTP/2
 * framing and flow control, TLS with ALPN).  Its own early errors (413 for a body over
 * the limit, 400 for a broken chunked body) pass through json_errors_filter so that
 * every error the server makes has a JSON body; a request line h2o cannot parse at all
 * gets h2o's plain "400 Bad Request" and the connection is closed. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>


#include "srv_core.h"

extern __thread struct srv *srv_tls_loop;
extern __thread struct srv *srv_tls_worker;

#define DEF(field, value) do { if (cfg.field == 0) cfg.field = (value); } while (0)

struct srv_h2o_handler {
	h2o_handler_t super;
	struct srv *srv;
};

struct srv_h2o_logger {
	h2o_logger_t super;
	struct srv *srv;
};

struct srv_h2o_filter {
	h2o_filter_t super;
	struct srv *srv;
};

/* --- connections (loop thread) --- */

static size_t conn_hash(const struct srv *srv, const h2o_socket_t *sock)
{
	uint64_t k = (uint64_t)(uintptr_t)sock;
	k = (k >> 4) * 0x9E3779B97F4A7C15ull;
	return (size_t)(k >> 32) & srv->chash_mask;
}

static struct srv_conn *conn_find(struct srv *srv, h2o_socket_t *sock)
{
	for (struct srv_conn *c = srv->chash[conn_hash(srv, sock)]; c != NULL; c = c->hnext)
		if (c->sock == sock)
			return c;
	return NULL;
}

/* Closes a connection under h2o: after shutdown(2) h2o's next read or write fails and
 * h2o closes the connection through its own path, disposing its requests first.
 * Closing the socket behind h2o's back instead would leave it with a dangling one. */
void srv_conn_shut(struct srv_conn *c)
{
	if (c->shut || uv_is_closing((uv_handle_t *)&c->tcp))
		return;
	c->shut = true;
	int fd = h2o_socket_get_fd(c->sock);
	if (fd >= 0)
		shutdown(fd, SHUT_RDWR);
}

void srv_conn_request_done(struct srv *srv, struct srv_conn *c)
{
	if (c->inflight > 0)
		c->inflight--;
	if (c->inflight == 0) {
		c->deadline = uv_now(&srv->loop) + srv->cfg.request_timeout_ms;
		if (srv->stopping)
			srv_conn_shut(c);
	}
}

static void check_exit(struct srv *srv);

static void on_conn_close(uv_handle_t *h)
{
	struct srv_conn *c = (struct srv_conn *)h;
	struct srv *srv = c->srv;

	if (c->sock != NULL) {
		struct srv_conn **pp = &srv->chash[conn_hash(srv, c->sock)];
		while (*pp != NULL && *pp != c)
			pp = &(*pp)->hnext;
		if (*pp == c)
			*pp = c->hnext;
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			srv->conns = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
		srv->nconns--;
		SRV_SUB(srv, connections_active, 1);
	}
	free(c);
	check_exit(srv);
}

static void on_accept(uv_stream_t *listener, int status)
{
	struct srv *srv = listener->data;
	struct srv_conn *c;

	if (status < 0)
		return;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return; /* the connection stays in the backlog; libuv retries */
	c->srv = srv;
	uv_tcp_init(&srv->loop, &c->tcp);
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
		uv_close((uv_handle_t *)&c->tcp, on_conn_close);
		return;
	}
	if (srv->stopping || srv->nconns >= srv->cfg.max_connections) {
		SRV_COUNT(srv, connections_rejected);
		uv_close((uv_handle_t *)&c->tcp, on_conn_close);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_close);
	c->deadline = uv_now(&srv->loop) + srv->cfg.request_timeout_ms;
	size_t hb = conn_hash(srv, c->sock);
	c->hnext = srv->chash[hb];
	srv->chash[hb] = c;
	c->next = srv->conns;
	if (srv->conns != NULL)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	SRV_COUNT(srv, connections_accepted);
	SRV_COUNT(srv, connections_active);
	h2o_accept(&srv->accept_ctx, c->sock);
}

/* Works around h2o 2.2.5 on libuv: when a read fails (e.g. ECONNRESET) libuv clears
 * the handle's writable flag, and a write h2o starts afterwards (the TLS close_notify
 * of h2o_socket_close, an HTTP/2 GOAWAY) gets UV_EPIPE from uv_write at once, which h2o
 * ignores: it then waits forever for a write callback, and the connection (fd, memory,
 * a max_connections slot) is never freed.  A write h2o waits for while libuv has none
 * queued and the handle is not writable, seen by two sweeps in a row, cannot complete;
 * this completes it with an error the way h2o's own write callback would, which makes
 * h2o close and free the connection (for TLS possibly after one more round). */
static void rescue_stuck_write(struct srv_conn *c)
{
	h2o_socket_t *sock = c->sock;
	if (uv_is_closing((uv_handle_t *)&c->tcp))
		return; /* h2o is already freeing it */
	bool stuck = sock->_cb.write != NULL && !uv_is_writable((uv_stream_t *)&c->tcp) &&
		     c->tcp.write_queue_size == 0;

	if (!stuck) {
		c->write_stuck = false;
		return;
	}
	if (!c->write_stuck) {
		c->write_stuck = true;
		return;
	}
	c->write_stuck = false;
	h2o_socket_cb cb = sock->_cb.write;
	sock->_cb.write = NULL;
	cb(sock, h2o_socket_error_io);
}

/* Every SRV_SWEEP_MS: connections idle past request_timeout_ms (no request in
 * progress: slowloris, idle keep-alive, a TLS handshake that never ends) are closed,
 * and so are those of answers whose client has read nothing for write_timeout_ms. */
static void on_sweep(uv_timer_t *t)
{
	struct srv *srv = t->data;
	uint64_t now = uv_now(&srv->loop);

	for (struct srv_conn *c = srv->conns; c != NULL; c = c->next) {
		if (!c->shut && c->inflight == 0 && c->deadline != 0 && now >= c->deadline) {
			SRV_COUNT(srv, timeouts_request);
			srv_conn_shut(c);
		}
		/* h2o frees a connection through uv_close, whose callback (on_conn_close)
		 * unlinks it later: c stays valid for the rest of this walk. */
		rescue_stuck_write(c);
	}
	for (struct srv_req *r = srv->active; r != NULL; r = r->anext) {
		if (r->busy && r->conn != NULL && !r->conn->shut &&
		    now - r->busy_since >= srv->cfg.write_timeout_ms) {
			SRV_COUNT(srv, timeouts_write);
			srv_req_cut(r, -ETIMEDOUT);
			srv_conn_shut(r->conn);
		}
	}
}

/* --- answers made before a srv_req exists (loop thread) --- */

static void send_json_error(h2o_req_t *req, int status, const char *msg,
			    const char *hname, const char *hvalue)
{
	char esc[1100], body[1200];
	int n;

	srv_json_escape(esc, sizeof(esc), msg, strlen(msg));
	n = snprintf(body, sizeof(body), "{\"error\": \"%s\", \"status\": %d}\n", esc, status);
	req->res.status = status;
	req->res.reason = srv_reason(status);
	req->res.content_length = (size_t)n;
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
		       H2O_STRLIT("application/json"));
	h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
	if (hname != NULL) {
		h2o_iovec_t v = h2o_strdup(&req->pool, hvalue, SIZE_MAX);
		h2o_add_header_by_str(&req->pool, &req->res.headers, hname, strlen(hname), 1, NULL, v.base, v.len);
	}
	h2o_send_inline(req, body, (size_t)n);
}

static bool token_ok(struct srv *srv, h2o_req_t *req)
{
	ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
	unsigned char digest[SHA256_DIGEST_LENGTH];

	if (i < 0)
		return false;
	h2o_iovec_t v = req->headers.entries[i].value;
	if (v.len < 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
		return false;
	const char *t = v.base + 7;
	size_t tlen = v.len - 7;
	while (tlen > 0 && *t == ' ') {
		t++;
		tlen--;
	}
	while (tlen > 0 && (t[tlen - 1] == ' ' || t[tlen - 1] == '\t'))
		tlen--;
	/* Digests of equal length, compared in constant time: neither the token's bytes
	 * nor its length leak through the answer's timing. */
	SHA256((const unsigned char *)t, tlen, digest);
	return CRYPTO_memcmp(digest, srv->token_digest, sizeof(digest)) == 0;
}

bool srv__auth_missing(struct srv_req *req)
{
	struct srv *srv = req->srv;
	if (!srv->has_token || !req->h2o || token_ok(srv, req->h2o))
		return false;
	SRV_COUNT(srv, rejected_auth);
	return true;
}

static bool method_is(const struct srv_route_def *rt, h2o_iovec_t m, bool *via_head)
{
	size_t len = strlen(rt->method);
	*via_head = false;
	if (m.len == len && memcmp(m.base, rt->method, len) == 0)
		return true;
	if (strcmp(rt->method, "GET") == 0 && h2o_memis(m.base, m.len, H2O_STRLIT("HEAD"))) {
		*via_head = true;
		return true;
	}
	return false;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
	struct srv *srv = ((struct srv_h2o_handler *)self)->srv;
	const struct srv_config *cfg = &srv->cfg;
	char msg[256];

	SRV_COUNT(srv, requests);
	if (srv->stopping) {
		send_json_error(req, 503, "the server is stopping", "retry-after", "1");
		return 0;
	}

	/* Sizes first: nothing else is looked at in an oversized request. */
	if (req->path.len > cfg->max_url_bytes) {
		SRV_COUNT(srv, rejected_url);
		snprintf(msg, sizeof(msg), "URL too long: %zu bytes (limit %zu)", req->path.len, cfg->max_url_bytes);
		send_json_error(req, 414, msg, NULL, NULL);
		return 0;
	}
	size_t hbytes = req->authority.len;
	for (size_t i = 0; i < req->headers.size; i++)
		hbytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len;
	if (hbytes > cfg->max_header_bytes) {
		SRV_COUNT(srv, rejected_header);
		snprintf(msg, sizeof(msg), "request headers too large: %zu bytes (limit %zu)", hbytes,
			 cfg->max_header_bytes);
		send_json_error(req, 431, msg, NULL, NULL);
		return 0;
	}

	size_t pathlen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
	struct srv_path path;
	size_t bad = 0;
	int prc = srv_path_split(req->path.base, pathlen, srv->scratch, srv->scratch_len, &path, &bad);
	if (prc == SRV_PATH_NOT_ABSOLUTE) {
		send_json_error(req, 400, "the request target is not an absolute path", NULL, NULL);
		return 0;
	}
	if (prc == SRV_PATH_BAD_ESCAPE) {
		snprintf(msg, sizeof(msg), "malformed percent-escape in the path at offset %zu "
			 "(expected %%XX with two hex digits, not %%00)", bad);
		send_json_error(req, 400, msg, NULL, NULL);
		return 0;
	}

	/* Routing: the matching route with the most literal segments wins (on a tie, the
	 * one without "*"); the methods of routes that match the path with another method
	 * make the Allow header. */
	const struct srv_route_def *best = NULL;
	const char *pvals[SRV_MAX_PARAMS + 1];
	size_t pvlen[SRV_MAX_PARAMS + 1];
	char allow[128] = "";
	size_t allow_len = 0;
	char *restbuf = srv->scratch + pathlen + SRV_MAX_SEGMENTS + 1;
	size_t restlen = srv->scratch_len - (pathlen + SRV_MAX_SEGMENTS + 1);
	if (prc == SRV_PATH_OK) {
		for (size_t i = 0; i < srv->nroutes; i++) {
			const struct srv_route_def *rt = &srv->routes[i];
			const char *v[SRV_MAX_PARAMS + 1];
			size_t vl[SRV_MAX_PARAMS + 1];
			bool via_head;
			if (best != NULL && rt->score <= best->score)
				continue;
			if (!srv_pattern_match(&rt->pat, &path, v, vl, restbuf, restlen))
				continue;
			if (method_is(rt, req->method, &via_head)) {
				best = rt;
				memcpy(pvals, v, sizeof(v[0]) * rt->pat.nparams);
				memcpy(pvlen, vl, sizeof(vl[0]) * rt->pat.nparams);
			}
		}
		/* A later candidate may have reused restbuf: redo the winner's "*" value. */
		if (best != NULL && best->pat.nsegs > 0 &&
		    best->pat.segs[best->pat.nsegs - 1].kind == SRV_SEG_REST)
			srv_pattern_match(&best->pat, &path, pvals, pvlen, restbuf, restlen);
		if (best == NULL) {
			for (size_t i = 0; i < srv->nroutes; i++) {
				const struct srv_route_def *rt = &srv->routes[i];
				const char *v[SRV_MAX_PARAMS + 1];
				size_t vl[SRV_MAX_PARAMS + 1];
				if (!srv_pattern_match(&rt->pat, &path, v, vl, restbuf, restlen))
					continue;
				const char *ms[2] = {rt->method, strcmp(rt->method, "GET") == 0 ? "HEAD" : NULL};
				for (int k = 0; k < 2 && ms[k] != NULL; k++) {
					size_t ml = strlen(ms[k]);
					bool dup = false;
					for (const char *p = allow; *p;) {
						const char *e = strchr(p, ',');
						size_t l = e ? (size_t)(e - p) : strlen(p);
						if (l == ml && memcmp(p, ms[k], ml) == 0)
							dup = true;
						p += l;
						while (*p == ',' || *p == ' ')
							p++;
					}
					if (!dup && allow_len + ml + 3 < sizeof(allow)) {
						allow_len += (size_t)snprintf(allow + allow_len, sizeof(allow) - allow_len,
									      "%s%s", allow_len ? ", " : "", ms[k]);
					}
				}
			}
		}
	}

	if (srv->has_token && !(best != NULL && (best->flags & SRV_PUBLIC)) && !token_ok(srv, req)) {
		SRV_COUNT(srv, rejected_auth);
		bool sent = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0;
		send_json_error(req, 401,
				sent ? "wrong bearer token"
				     : "a bearer token is required (Authorization: Bearer <token>)",
				"www-authenticate",
				sent ? "Bearer realm=\"podcap\", error=\"invalid_token\"" : "Bearer realm=\"podcap\"");
		return 0;
	}
	if (best == NULL) {
		if (allow_len > 0) {
			snprintf(msg, sizeof(msg), "method %.*s is not allowed here (allowed: %s)",
				 (int)(req->method.len > 32 ? 32 : req->method.len), req->method.base, allow);
			send_json_error(req, 405, msg, "allow", allow);
		} else {
			send_json_error(req, 404, "no such path", NULL, NULL);
		}
		return 0;
	}

	if (best->limit_class > 0) {
		struct srv_class_def *cl = &srv->classes[best->limit_class - 1];
		if (cl->active >= cl->max) {
			char ra[16];
			SRV_COUNT(srv, rejected_busy);
			snprintf(ra, sizeof(ra), "%u", cl->retry_after_s);
			snprintf(msg, sizeof(msg), "too many concurrent %s requests (limit %u); retry later",
				 cl->name, cl->max);
			send_json_error(req, 429, msg, "retry-after", ra);
			return 0;
		}
	}
	bool is_inline = (best->flags & SRV_INLINE) != 0;
	if (!is_inline) {
		pthread_mutex_lock(&srv->work_mu);
		unsigned qlen = srv->work_len;
		pthread_mutex_unlock(&srv->work_mu);
		if (qlen >= cfg->max_queued) {
			SRV_COUNT(srv, rejected_overload);
			send_json_error(req, 503, "the server is busy; retry later", "retry-after", "1");
			return 0;
		}
	}

	const char *query = NULL;
	size_t qlen = 0;
	if (req->query_at != SIZE_MAX) {
		query = req->path.base + req->query_at + 1;
		qlen = req->path.len - req->query_at - 1;
	}
	int status = 0;
	struct srv_req *r = srv_req_new(srv, req, best, pvals, pvlen, query, qlen, &status, msg, sizeof(msg));
	if (r == NULL) {
		send_json_error(req, status, msg, NULL, NULL);
		return 0;
	}
	r->h2o = req;
	struct srv_conn *c = conn_find(srv, req->conn->callbacks->get_socket(req->conn));
	if (c != NULL) {
		c->inflight++;
		c->deadline = 0;
	}
	srv_req_admit(r, c);

	if (is_inline) {
		r->in_inline = true;
		best->fn(r, best->arg);
		r->in_inline = false;
		srv_req_handler_done(r, true);
	} else {
		srv_work_push(srv, r);
	}
	return 0;
}

/* Counts every answer h2o finished or gave up on (h2o calls loggers at dispose). */
static void log_access(h2o_logger_t *self, h2o_req_t *req)
{
	struct srv *srv = ((struct srv_h2o_logger *)self)->srv;
	int cls = req->res.status / 100;
	if (cls < 1 || cls > 5)
		cls = 0;
	SRV_COUNT(srv, responses[cls]);
	SRV_ADD(srv, bytes_out, req->bytes_sent);
	SRV_ADD(srv, bytes_in, req->entity.len);
}

/* h2o's own early errors (413 body too large, 400 broken chunked body, 417) are made
 * on the fallback path with a text/plain body; this filter swaps in a JSON one. */
struct json_err_ostream {
	h2o_ostream_t super;
	h2o_iovec_t body;
};

static void json_err_send(h2o_ostream_t *self, h2o_req_t *req, h2o_iovec_t *bufs, size_t n,
			  h2o_send_state_t state)
{
	struct json_err_ostream *o = (struct json_err_ostream *)self;
	if (h2o_send_state_is_in_progress(state)) {
		h2o_ostream_send_next(self, req, NULL, 0, state);
		return;
	}
	bool head = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
	h2o_ostream_send_next(self, req, &o->body, head ? 0 : 1, state);
}

static void json_errors_filter(h2o_filter_t *self, h2o_req_t *req, h2o_ostream_t **slot)
{
	struct srv *srv = ((struct srv_h2o_filter *)self)->srv;

	if (req->res.status >= 400) {
		char body[256];
		const char *what;
		if (req->res.status == 413) {
			SRV_COUNT(srv, rejected_body);
			snprintf(body, sizeof(body),
				 "{\"error\": \"request body too large (limit %zu bytes)\", \"status\": 413}\n",
				 srv->cfg.max_body_bytes);
		} else {
			what = req->res.status == 400 ? "malformed request" : srv_reason(req->res.status);
			snprintf(body, sizeof(body), "{\"error\": \"%s\", \"status\": %d}\n", what, req->res.status);
		}
		ssize_t ct = h2o_find_header(&req->res.headers, H2O_TOKEN_CONTENT_TYPE, -1);
		if (ct >= 0)
			req->res.headers.entries[ct].value = h2o_iovec_init(H2O_STRLIT("application/json"));
		struct json_err_ostream *o = (void *)h2o_add_ostream(req, sizeof(*o), slot);
		o->super.do_send = json_err_send;
		o->body = h2o_strdup(&req->pool, body, SIZE_MAX);
		req->res.content_length = o->body.len;
		slot = &o->super.next;
	}
	h2o_setup_next_ostream(req, slot);
}

/* --- stop (loop thread) --- */

static void on_listener_close(uv_handle_t *h)
{
	struct srv *srv = h->data;
	srv->listener_open = false;
	check_exit(srv);
}

static void on_grace(uv_timer_t *t)
{
	struct srv *srv = t->data;
	for (struct srv_conn *c = srv->conns; c != NULL; c = c->next)
		srv_conn_shut(c);
}

static void begin_stop(struct srv *srv)
{
	srv->stopping = true;
	if (srv->listener_open)
		uv_close((uv_handle_t *)&srv->listener, on_listener_close);
	/* HTTP/2: GOAWAY; HTTP/1.1: no more keep-alive. */
	h2o_context_request_shutdown(&srv->ctx);
	for (struct srv_req *r = srv->active, *next; r != NULL; r = next) {
		next = r->anext;
		srv_req_shutdown(r);
	}
	for (struct srv_conn *c = srv->conns; c != NULL; c = c->next)
		if (c->inflight == 0)
			srv_conn_shut(c);
	uv_timer_start(&srv->grace, on_grace, srv->cfg.stop_grace_ms, 0);
	check_exit(srv);
}

static void check_exit(struct srv *srv)
{
	if (!srv->stopping || srv->nconns > 0 || srv->listener_open)
		return;
	pthread_mutex_lock(&srv->pend_mu);
	srv->loop_running = false;
	pthread_mutex_unlock(&srv->pend_mu);
	uv_stop(&srv->loop);
}

void srv_on_wake(uv_async_t *h)
{
	struct srv *srv = h->data;
	bool stop;

	pthread_mutex_lock(&srv->pend_mu);
	stop = srv->stop_requested && !srv->stopping;
	pthread_mutex_unlock(&srv->pend_mu);

	/* One at a time under the lock: once r->scheduled is false another thread may
	 * queue r again, which rewrites r->pnext, so the list cannot be walked outside. */
	for (;;) {
		pthread_mutex_lock(&srv->pend_mu);
		struct srv_req *r = srv->pend_head;
		if (r != NULL) {
			srv->pend_head = r->pnext;
			if (srv->pend_head == NULL)
				srv->pend_tail = NULL;
			r->pnext = NULL;
			r->scheduled = false;
		}
		pthread_mutex_unlock(&srv->pend_mu);
		if (r == NULL)
			break;
		srv_req_pump(r);
		srv_req_unref(r); /* the reference srv_req_schedule took */
	}
	if (stop)
		begin_stop(srv);
}

static void *loop_main(void *arg)
{
	struct srv *srv = arg;
	sigset_t set;

	/* libuv writes to sockets with write(2): a peer that went away would raise SIGPIPE.
	 * Blocked on this thread, the write returns EPIPE instead, and the process's own
	 * signal dispositions stay untouched. */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	srv_tls_loop = srv;

	uv_run(&srv->loop, UV_RUN_DEFAULT);

	/* Stopped: drop what workers scheduled in the meantime (their requests are gone). */
	pthread_mutex_lock(&srv->pend_mu);
	struct srv_req *list = srv->pend_head;
	srv->pend_head = srv->pend_tail = NULL;
	pthread_mutex_unlock(&srv->pend_mu);
	while (list != NULL) {
		struct srv_req *r = list;
		list = r->pnext;
		r->scheduled = false;
		srv_req_unref(r);
	}
	/* h2o keeps freed socket buffers in a per-thread cache that dies with this thread;
	 * hand them back to malloc.  (Its per-thread cache of 4 KiB memory-pool chunks,
	 * at most 16, has no such door: LeakSanitizer reports it, see server/lsan.supp.) */
	while (h2o_socket_buffer_prototype.allocator.cnt > 0)
		free(h2o_mem_alloc_recycle(&h2o_socket_buffer_prototype.allocator, 0));
	srv_tls_loop = NULL;
	return NULL;
}

/* --- setup (caller's thread) --- */

static int read_token(struct srv *srv, const char *path, char *err, size_t errlen)
{
	char buf[4097];
	struct stat st;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "token file %s: not a regular file", path);
		rc = -EINVAL;
		goto out;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		rc = -errno;
		snprintf(err, errlen, "token file %s: %s", path, strerror(errno));
		goto out;
	}
	if ((size_t)n == sizeof(buf) - 1) {
		snprintf(err, errlen, "token file %s: longer than 4096 bytes", path);
		rc = -EINVAL;
		goto out;
	}
	buf[n] = '\0';
	/* The token is the first line, without surrounding blanks. */
	size_t len = strcspn(buf, "\r\n");
	char *t = buf;
	while (len > 0 && (*t == ' ' || *t == '\t')) {
		t++;
		len--;
	}
	while (len > 0 && (t[len - 1] == ' ' || t[len - 1] == '\t'))
		len--;
	if (len < 16) {
		snprintf(err, errlen, "token file %s: the token must be at least 16 characters (got %zu)", path, len);
		rc = -EINVAL;
		goto out;
	}
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e) {
			snprintf(err, errlen, "token file %s: the token must be printable ASCII without spaces", path);
			rc = -EINVAL;
			goto out;
		}
	}
	SHA256((const unsigned char *)t, len, srv->token_digest);
	srv->has_token = true;
out:
	OPENSSL_cleanse(buf, sizeof(buf));
	close(fd);
	return rc;
}

static int setup_tls(struct srv *srv, char *err, size_t errlen)
{
	const struct srv_config *cfg = &srv->cfg;
	char ebuf[256];

	if (cfg->tls_cert_file == NULL && cfg->tls_key_file == NULL)
		return 0;
	if (cfg->tls_cert_file == NULL || cfg->tls_key_file == NULL) {
		snprintf(err, errlen, "TLS needs both a certificate and a key file");
		return -EINVAL;
	}
	srv->ssl = SSL_CTX_new(TLS_server_method());
	if (srv->ssl == NULL) {
		snprintf(err, errlen, "TLS: cannot create a context");
		return -ENOMEM;
	}
	SSL_CTX_set_min_proto_version(srv->ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(srv->ssl, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_use_certificate_chain_file(srv->ssl, cfg->tls_cert_file) != 1) {
		ERR_error_string_n(ERR_get_error(), ebuf, sizeof(ebuf));
		snprintf(err, errlen, "TLS certificate %s: %s", cfg->tls_cert_file, ebuf);
		return -EINVAL;
	}
	if (SSL_CTX_use_PrivateKey_file(srv->ssl, cfg->tls_key_file, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_get_error();
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH) {
			snprintf(err, errlen, "TLS key %s does not match certificate %s", cfg->tls_key_file,
				 cfg->tls_cert_file);
		} else {
			ERR_error_string_n(e, ebuf, sizeof(ebuf));
			snprintf(err, errlen, "TLS key %s: %s", cfg->tls_key_file, ebuf);
		}
		return -EINVAL;
	}
	if (SSL_CTX_check_private_key(srv->ssl) != 1) {
		snprintf(err, errlen, "TLS key %s does not match certificate %s", cfg->tls_key_file, cfg->tls_cert_file);
		return -EINVAL;
	}
	/* ALPN offers h2 and http/1.1. */
	h2o_ssl_register_alpn_protocols(srv->ssl, h2o_http2_alpn_protocols);
	return 0;
}

static void setup_h2o(struct srv *srv)
{
	h2o_globalconf_t *g = &srv->h2oconf;
	h2o_hostconf_t *host;
	h2o_pathconf_t *path;

	h2o_config_init(g);
	g->server_name = h2o_iovec_init(H2O_STRLIT("podcap"));
	g->max_request_entity_size = srv->cfg.max_body_bytes;
	/* h2o's own timers back ours up (ours count what they close and come first). */
	g->http1.req_timeout = 2 * (uint64_t)srv->cfg.request_timeout_ms;
	g->http2.idle_timeout = 2 * (uint64_t)srv->cfg.request_timeout_ms;
	g->handshake_timeout = 2 * (uint64_t)srv->cfg.request_timeout_ms;
	/* HTTP/1.1 Upgrade: h2c is refused (no one uses it); prior knowledge still works
	 * because h2o checks the connection preface separately. */
	g->http1.upgrade_to_http2 = 1;

	host = h2o_config_register_host(g, h2o_iovec_init(H2O_STRLIT("default")), 65535);
	path = h2o_config_register_path(host, "/", 0);
	struct srv_h2o_handler *h = (void *)h2o_create_handler(path, sizeof(*h));
	h->super.on_req = on_req;
	h->srv = srv;
	struct srv_h2o_logger *lg = (void *)h2o_create_logger(path, sizeof(*lg));
	lg->super.log_access = log_access;
	lg->srv = srv;
	lg = (void *)h2o_create_logger(&host->fallback_path, sizeof(*lg));
	lg->super.log_access = log_access;
	lg->srv = srv;
	struct srv_h2o_filter *f = (void *)h2o_create_filter(&host->fallback_path, sizeof(*f));
	f->super.on_setup_ostream = json_errors_filter;
	f->srv = srv;

	h2o_context_init(&srv->ctx, &srv->loop, g);
	srv->accept_ctx.ctx = &srv->ctx;
	srv->accept_ctx.hosts = g->hosts;
	srv->accept_ctx.ssl_ctx = srv->ssl;
	srv->h2o_inited = true;
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Frees the loop and h2o once nothing runs on them any more (caller's thread). */
static void teardown_loop(struct srv *srv)
{
	if (srv->h2o_inited) {
		/* h2o_context_request_shutdown leaves its GOAWAY resend timer armed, and
		 * h2o_context_dispose asserts that every timer is empty. */
		if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
			h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
		h2o_context_dispose(&srv->ctx);
		h2o_config_dispose(&srv->h2oconf);
		srv->h2o_inited = false;
	}
	if (srv->loop_inited) {
		if (srv->listener_open) {
			uv_close((uv_handle_t *)&srv->listener, NULL);
			srv->listener_open = false;
		}
		uv_walk(&srv->loop, close_walk, NULL);
		uv_run(&srv->loop, UV_RUN_DEFAULT);
		uv_loop_close(&srv->loop);
		srv->loop_inited = false;
	}
}

int srv_open(const struct srv_config *user_cfg, struct srv **out, char *err, size_t errlen)
{
	struct srv_config cfg = user_cfg != NULL ? *user_cfg : (struct srv_config){0};
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	struct srv *srv;
	int rc;

	*out = NULL;
	if (errlen > 0)
		err[0] = '\0';
	if (cfg.listen == NULL)
		cfg.listen = "127.0.0.1:7070";
	DEF(workers, 4);
	DEF(max_connections, 256);
	DEF(max_queued, 256);
	DEF(max_header_bytes, 16384);
	DEF(max_url_bytes, 8192);
	DEF(max_body_bytes, 65536);
	DEF(max_query_params, 64);
	DEF(request_timeout_ms, 10000);
	DEF(write_timeout_ms, 60000);
	DEF(stream_queue_bytes, 256 * 1024);
	DEF(stop_grace_ms, 5000);
	if (cfg.workers > 256 || cfg.max_connections > 100000 || cfg.max_url_bytes > (1u << 20) ||
	    cfg.max_query_params > 4096 || cfg.max_body_bytes > (64u << 20)) {
		snprintf(err, errlen, "server limits out of range (workers <= 256, connections <= 100000, "
			 "URL <= 1 MiB, query parameters <= 4096, body <= 64 MiB)");
		return -EINVAL;
	}

	rc = srv_parse_listen(cfg.listen, &ss, &sslen, err, errlen);
	if (rc < 0)
		return rc;

	srv = calloc(1, sizeof(*srv));
	if (srv == NULL) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	srv->cfg = cfg;
	snprintf(srv->listen_str, sizeof(srv->listen_str), "%s", cfg.listen);
	srv->cfg.listen = srv->listen_str;
	pthread_mutex_init(&srv->ctl_mu, NULL);
	pthread_mutex_init(&srv->pend_mu, NULL);
	pthread_mutex_init(&srv->work_mu, NULL);
	pthread_cond_init(&srv->work_cv, NULL);
	pthread_mutex_init(&srv->live_mu, NULL);
	pthread_cond_init(&srv->live_cv, NULL);
	atomic_init(&srv->stop_flag, false);

	if (cfg.token_file != NULL && (rc = read_token(srv, cfg.token_file, err, errlen)) < 0)
		goto fail;
	srv->cfg.token_file = NULL; /* not kept: the path is the caller's */
	if (!srv_addr_is_loopback((struct sockaddr *)&ss) && !srv->has_token) {
		snprintf(err, errlen, "listen address %s is not loopback: a bearer token is required (--token-file)",
			 cfg.listen);
		rc = -EPERM;
		goto fail;
	}
	if ((rc = setup_tls(srv, err, errlen)) < 0)
		goto fail;
	srv->cfg.tls_cert_file = srv->cfg.tls_key_file = NULL;

	size_t buckets = 16;
	while (buckets < 2 * (size_t)cfg.max_connections)
		buckets <<= 1;
	srv->chash = calloc(buckets, sizeof(*srv->chash));
	srv->chash_mask = buckets - 1;
	/* Decoded segments + NULs, then the joined rest for "*". */
	srv->scratch_len = 2 * (cfg.max_url_bytes + SRV_MAX_SEGMENTS + 1);
	srv->scratch = malloc(srv->scratch_len);
	if (srv->chash == NULL || srv->scratch == NULL) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}

	if ((rc = uv_loop_init(&srv->loop)) != 0) {
		snprintf(err, errlen, "event loop: %s", uv_strerror(rc));
		goto fail;
	}
	srv->loop_inited = true;
	uv_async_init(&srv->loop, &srv->wake, srv_on_wake);
	srv->wake.data = srv;
	uv_timer_init(&srv->loop, &srv->sweep);
	srv->sweep.data = srv;
	uv_timer_init(&srv->loop, &srv->grace);
	srv->grace.data = srv;
	uv_tcp_init(&srv->loop, &srv->listener);
	srv->listener.data = srv;
	srv->listener_open = true;
	if ((rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_accept)) != 0) {
		snprintf(err, errlen, "listen %s: %s", cfg.listen, uv_strerror(rc));
		goto fail;
	}
	struct sockaddr_storage bound;
	int blen = sizeof(bound);
	if (uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen) == 0)
		srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
							      : ((struct sockaddr_in *)&bound)->sin_port);
	setup_h2o(srv);
	*out = srv;
	return 0;
fail:
	srv_close(srv);
	return rc;
}

int srv_class(struct srv *srv, const char *name, unsigned max_concurrent, unsigned retry_after_s)
{
	if (srv->started)
		return -EBUSY;
	if (name == NULL || max_concurrent == 0)
		return -EINVAL;
	struct srv_class_def *c = realloc(srv->classes, (srv->nclasses + 1) * sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	srv->classes = c;
	c = &srv->classes[srv->nclasses];
	memset(c, 0, sizeof(*c));
	if ((c->name = strdup(name)) == NULL)
		return -ENOMEM;
	c->max = max_concurrent;
	c->retry_after_s = retry_after_s ? retry_after_s : 1;
	return (int)++srv->nclasses;
}

int srv_route(struct srv *srv, const char *method, const char *pattern,
	      srv_handler_fn fn, void *arg, const struct srv_route_opts *opts)
{
	struct srv_route_def rt = {0};
	int rc;

	if (srv->started)
		return -EBUSY;
	if (method == NULL || fn == NULL || !srv_is_token(method, strlen(method)) || strlen(method) > 16)
		return -EINVAL;
	if (opts != NULL && (opts->limit_class < 0 || (size_t)opts->limit_class > srv->nclasses))
		return -EINVAL;
	if ((rc = srv_pattern_compile(pattern, &rt.pat)) < 0)
		return rc;
	if (srv->nroutes == srv->routes_cap) {
		size_t cap = srv->routes_cap ? 2 * srv->routes_cap : 16;
		struct srv_route_def *n = realloc(srv->routes, cap * sizeof(*n));
		if (n == NULL) {
			srv_pattern_free(&rt.pat);
			return -ENOMEM;
		}
		srv->routes = n;
		srv->routes_cap = cap;
	}
	if ((rt.method = strdup(method)) == NULL) {
		srv_pattern_free(&rt.pat);
		return -ENOMEM;
	}
	rt.fn = fn;
	rt.arg = arg;
	rt.flags = opts ? opts->flags : 0;
	rt.limit_class = opts ? opts->limit_class : 0;
	bool has_rest = rt.pat.nsegs > 0 && rt.pat.segs[rt.pat.nsegs - 1].kind == SRV_SEG_REST;
	rt.score = 2 * rt.pat.nliterals + (has_rest ? 0 : 1);
	srv->routes[srv->nroutes++] = rt;
	return 0;
}

int srv_start(struct srv *srv)
{
	int rc;

	if (srv->started)
		return -EALREADY;
	if ((rc = srv_workers_start(srv)) < 0)
		return rc;
	srv->loop_running = true;
	uv_timer_start(&srv->sweep, on_sweep, SRV_SWEEP_MS, SRV_SWEEP_MS);
	srv->started = true;
	if ((rc = pthread_create(&srv->loop_tid, NULL, loop_main, srv)) != 0) {
		srv->started = false;
		srv->loop_running = false;
		srv_workers_stop(srv);
		return -rc;
	}
	pthread_setname_np(srv->loop_tid, "srv-loop");
	return 0;
}

int srv_stop(struct srv *srv)
{
	if (srv_tls_loop == srv || srv_tls_worker == srv)
		return -EDEADLK;
	/* Serialised: two threads stopping at once must not both join the threads. */
	pthread_mutex_lock(&srv->ctl_mu);
	if (!srv->started || srv->stopped) {
		pthread_mutex_unlock(&srv->ctl_mu);
		return 0;
	}
	atomic_store(&srv->stop_flag, true);
	pthread_mutex_lock(&srv->pend_mu);
	srv->stop_requested = true;
	if (srv->loop_running)
		uv_async_send(&srv->wake);
	pthread_mutex_unlock(&srv->pend_mu);
	pthread_join(srv->loop_tid, NULL);
	srv_workers_stop(srv);
	srv->stopped = true;
	pthread_mutex_unlock(&srv->ctl_mu);
	return 0;
}

void srv_close(struct srv *srv)
{
	if (srv == NULL)
		return;
	srv_stop(srv);
	/* Detached requests still held elsewhere point at srv: wait for them. */
	pthread_mutex_lock(&srv->live_mu);
	while (srv->live > 0)
		pthread_cond_wait(&srv->live_cv, &srv->live_mu);
	pthread_mutex_unlock(&srv->live_mu);
	teardown_loop(srv);
	if (srv->ssl != NULL)
		SSL_CTX_free(srv->ssl);
	for (size_t i = 0; i < srv->nroutes; i++) {
		free(srv->routes[i].method);
		srv_pattern_free(&srv->routes[i].pat);
	}
	free(srv->routes);
	for (size_t i = 0; i < srv->nclasses; i++)
		free(srv->classes[i].name);
	free(srv->classes);
	srv_static_free(srv);
	free(srv->chash);
	free(srv->scratch);
	pthread_mutex_destroy(&srv->ctl_mu);
	pthread_mutex_destroy(&srv->pend_mu);
	pthread_mutex_destroy(&srv->work_mu);
	pthread_cond_destroy(&srv->work_cv);
	pthread_mutex_destroy(&srv->live_mu);
	pthread_cond_destroy(&srv->live_cv);
	OPENSSL_cleanse(srv->token_digest, sizeof(srv->token_digest));
	free(srv);
}

int srv_port(const struct srv *srv)
{
	return srv->port;
}

void srv_stats(const struct srv *srv, struct srv_stats *o)
{
	const struct srv_counters *c = &srv->counters;
#define LD(f) atomic_load_explicit(&c->f, memory_order_relaxed)
	o->connections_accepted = LD(connections_accepted);
	o->connections_active = LD(connections_active);
	o->connections_rejected = LD(connections_rejected);
	o->requests = LD(requests);
	o->requests_active = LD(requests_active);
	for (int i = 0; i < 6; i++)
		o->responses[i] = LD(responses[i]);
	o->bytes_in = LD(bytes_in);
	o->bytes_out = LD(bytes_out);
	o->rejected_url = LD(rejected_url);
	o->rejected_header = LD(rejected_header);
	o->rejected_body = LD(rejected_body);
	o->rejected_auth = LD(rejected_auth);
	o->rejected_busy = LD(rejected_busy);
	o->rejected_overload = LD(rejected_overload);
	o->timeouts_request = LD(timeouts_request);
	o->timeouts_write = LD(timeouts_write);
	o->streams_cut = LD(streams_cut);
	o->stream_again = LD(stream_again);
#undef LD
}
