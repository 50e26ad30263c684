/* Requests: the copy of what the client sent, the answer (whole or streamed), the
 * bounded queue between producers and the loop thread, reference counting, and the
 * worker pool that runs blocking handlers.
 *
 * How a streamed byte travels: a producer thread calls srv_stream_write, which copies
 * the bytes into the request's queue under req->mu (waiting on req->cv while the queue
 * is full).  If the loop thread was idle for this request (r->waiting), the producer
 * schedules the request on the server's pending list and wakes the loop (uv_async).
 * The loop thread's srv_req_pump moves queued chunks to r->inflight and hands them to
 * h2o_send; h2o calls gen_proceed when they are written (or buffered, for HTTP/2),
 * which frees them and pumps again.  So at most stream_queue_bytes wait in the queue
 * and at most as much again is in flight: memory per stream is bounded whatever the
 * client's speed. */
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "srv_core.h"

/* The server whose loop runs on this thread (NULL on other threads), and the server
 * this thread is a worker of. */
__thread struct srv *srv_tls_loop;
__thread struct srv *srv_tls_worker;

static bool on_loop(const struct srv *srv)
{
	return srv_tls_loop == srv;
}

/* --- reference counting --- */

static void free_chunks(struct srv_chunk *c)
{
	while (c != NULL) {
		struct srv_chunk *next = c->next;
		free(c);
		c = next;
	}
}

void srv_req_ref(struct srv_req *r)
{
	atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
}

void srv_req_unref(struct srv_req *r)
{
	if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
		return;
	struct srv *srv = r->srv;
	free_chunks(r->qhead);
	free_chunks(r->inflight);
	for (struct srv_hdr *h = r->hdrs; h != NULL;) {
		struct srv_hdr *next = h->next;
		free(h->name);
		free(h->value);
		free(h);
		h = next;
	}
	free(r->ctype);
	if (!r->out_static)
		free(r->out);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r);
	pthread_mutex_lock(&srv->live_mu);
	if (--srv->live == 0)
		pthread_cond_broadcast(&srv->live_cv);
	pthread_mutex_unlock(&srv->live_mu);
}

/* --- creation (loop thread) --- */

/* Bump allocation inside the request's arena; sizes are computed up front, so running
 * out is a bug, not a client's doing. */
struct arena {
	char *p;
	size_t left;
};

static void *arena_get(struct arena *a, size_t n)
{
	if (n > a->left)
		abort();
	void *p = a->p;
	a->p += n;
	a->left -= n;
	return p;
}

static char *arena_str(struct arena *a, const char *s, size_t len)
{
	char *d = arena_get(a, len + 1);
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static size_t align8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

struct srv_req *srv_req_new(struct srv *srv, h2o_req_t *h2o, const struct srv_route_def *route,
			    const char **pvals, const size_t *pvlen, const char *query, size_t qlen,
			    int *http_status, char *msg, size_t msglen)
{
	size_t pathlen = h2o->query_at != SIZE_MAX ? h2o->query_at : h2o->path.len;
	size_t pieces = query != NULL ? srv_query_pieces(query, qlen) : 0;
	size_t maxq = pieces < srv->cfg.max_query_params ? pieces : srv->cfg.max_query_params;
	size_t nh = h2o->headers.size + 1; /* + host, which h2o keeps apart */
	size_t need = 0;

	need += align8(route->pat.nparams * sizeof(struct srv_kv));
	need += align8(maxq * sizeof(struct srv_kv));
	need += align8(nh * sizeof(struct srv_kv));
	need += h2o->method.len + 1 + pathlen + 1 + 64;
	for (unsigned i = 0; i < route->pat.nparams; i++)
		need += pvlen[i] + 1;
	need += qlen + 2 * pieces;
	for (size_t i = 0; i < h2o->headers.size; i++)
		need += h2o->headers.entries[i].name->len + h2o->headers.entries[i].value.len + 2;
	need += h2o->authority.len + 1;
	need += h2o->entity.len + 1;

	struct srv_req *r = calloc(1, sizeof(*r) + need);
	if (r == NULL) {
		*http_status = 503;
		snprintf(msg, msglen, "out of memory");
		return NULL;
	}
	struct arena a = {r->arena, need};

	r->params = arena_get(&a, align8(route->pat.nparams * sizeof(struct srv_kv)));
	r->query = arena_get(&a, align8(maxq * sizeof(struct srv_kv)));
	r->headers = arena_get(&a, align8(nh * sizeof(struct srv_kv)));

	if (query != NULL) {
		size_t bad = 0;
		size_t qbuf = qlen + 2 * pieces;
		char *qb = arena_get(&a, qbuf);
		long n = srv_query_parse(query, qlen, r->query, maxq, qb, qbuf, &bad);
		if (n == -1) {
			*http_status = 400;
			snprintf(msg, msglen, "malformed percent-escape in the query at offset %zu "
				 "(expected %%XX with two hex digits; no %%00 in names)", bad);
			free(r);
			return NULL;
		}
		if (n < 0) {
			*http_status = 400;
			snprintf(msg, msglen, "too many query parameters (limit %u)", srv->cfg.max_query_params);
			free(r);
			return NULL;
		}
		r->nquery = (size_t)n;
	}

	r->srv = srv;
	atomic_init(&r->refs, 2); /* h2o's anchor + the handler */
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	r->route = route;
	r->method = arena_str(&a, h2o->method.base, h2o->method.len);
	r->path = arena_str(&a, h2o->path.base, pathlen);
	r->version = h2o->version;
	r->is_head = h2o_memis(h2o->method.base, h2o->method.len, H2O_STRLIT("HEAD"));

	for (unsigned i = 0, pi = 0; i < route->pat.nsegs; i++) {
		const struct srv_seg *seg = &route->pat.segs[i];
		if (seg->kind == SRV_SEG_LITERAL)
			continue;
		r->params[pi].name = seg->text;
		r->params[pi].name_len = seg->len;
		r->params[pi].value = arena_str(&a, pvals[pi], pvlen[pi]);
		r->params[pi].value_len = pvlen[pi];
		pi++;
	}
	r->nparams = route->pat.nparams;

	r->headers[0].name = "host";
	r->headers[0].name_len = 4;
	r->headers[0].value = arena_str(&a, h2o->authority.base, h2o->authority.len);
	r->headers[0].value_len = h2o->authority.len;
	r->nheaders = 1;
	for (size_t i = 0; i < h2o->headers.size; i++) {
		const h2o_header_t *h = &h2o->headers.entries[i];
		struct srv_kv *kv = &r->headers[r->nheaders++];
		kv->name = arena_str(&a, h->name->base, h->name->len);
		kv->name_len = h->name->len;
		kv->value = arena_str(&a, h->value.base, h->value.len);
		kv->value_len = h->value.len;
	}
	if (h2o->entity.base != NULL) {
		r->body = arena_str(&a, h2o->entity.base, h2o->entity.len);
		r->body_len = h2o->entity.len;
	}

	char *peer = arena_get(&a, 64);
	struct sockaddr_storage ss;
	socklen_t sl = h2o->conn->callbacks->get_peername(h2o->conn, (struct sockaddr *)&ss);
	char host[NI_MAXHOST];
	peer[0] = '\0';
	if (sl != 0 && h2o_socket_getnumerichost((struct sockaddr *)&ss, sl, host) != SIZE_MAX) {
		int port = h2o_socket_getport((struct sockaddr *)&ss);
		snprintf(peer, 64, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", host, port);
	}
	r->peer = peer;

	pthread_mutex_lock(&srv->live_mu);
	srv->live++;
	pthread_mutex_unlock(&srv->live_mu);
	return r;
}

/* --- h2o side (loop thread) --- */

struct srv_anchor {
	struct srv_req *r;
};

/* h2o frees the request's memory pool when the request is over (answered, or the
 * client went away); this object lives in that pool, so its dispose callback is the
 * one place that learns that h2o_req_t is gone. */
static void anchor_dispose(void *p)
{
	struct srv_req *r = ((struct srv_anchor *)p)->r;
	struct srv *srv = r->srv;
	void (*cb)(struct srv_req *, void *) = NULL;
	void *cb_arg = NULL;

	r->h2o = NULL;
	r->busy = false;
	free_chunks(r->inflight);
	r->inflight = NULL;

	pthread_mutex_lock(&r->mu);
	if (r->closed_err == 0)
		r->closed_err = -EPIPE;
	free_chunks(r->qhead);
	r->qhead = r->qtail = NULL;
	r->queued = 0;
	if (r->on_close != NULL && !r->on_close_fired) {
		cb = r->on_close;
		cb_arg = r->on_close_arg;
	}
	r->on_close_fired = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);

	if (r->aprev != NULL)
		r->aprev->anext = r->anext;
	else
		srv->active = r->anext;
	if (r->anext != NULL)
		r->anext->aprev = r->aprev;
	r->anext = r->aprev = NULL;
	if (r->counted_class)
		srv->classes[r->route->limit_class - 1].active--;
	SRV_SUB(srv, requests_active, 1);
	if (r->conn != NULL)
		srv_conn_request_done(srv, r->conn);
	r->conn = NULL;

	if (cb != NULL)
		cb(r, cb_arg);
	srv_req_unref(r);
}

static void gen_proceed(h2o_generator_t *g, h2o_req_t *req)
{
	struct srv_req *r = H2O_STRUCT_FROM_MEMBER(struct srv_req, gen, g);
	r->busy = false;
	free_chunks(r->inflight);
	r->inflight = NULL;
	srv_req_pump(r);
}

static void gen_stop(h2o_generator_t *g, h2o_req_t *req)
{
	struct srv_req *r = H2O_STRUCT_FROM_MEMBER(struct srv_req, gen, g);
	r->busy = false;
	r->final_sent = true;
	pthread_mutex_lock(&r->mu);
	if (r->closed_err == 0)
		r->closed_err = -EPIPE;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	SRV_COUNT(r->srv, streams_cut);
}

void srv_req_admit(struct srv_req *r, struct srv_conn *conn)
{
	struct srv *srv = r->srv;
	struct srv_anchor *a = h2o_mem_alloc_shared(&r->h2o->pool, sizeof(*a), anchor_dispose);
	a->r = r;
	r->gen.proceed = gen_proceed;
	r->gen.stop = gen_stop;
	r->conn = conn;
	r->anext = srv->active;
	if (srv->active != NULL)
		srv->active->aprev = r;
	srv->active = r;
	if (r->route->limit_class > 0) {
		srv->classes[r->route->limit_class - 1].active++;
		r->counted_class = true;
	}
	SRV_COUNT(srv, requests_active);
}

/* Copies the answer's head into h2o and starts it; false while there is none yet. */
static bool start_response(struct srv_req *r)
{
	h2o_req_t *req = r->h2o;
	enum srv_mode mode;
	bool has_cache_control = false;

	pthread_mutex_lock(&r->mu);
	mode = r->mode;
	if (mode == SRV_MODE_NONE) {
		pthread_mutex_unlock(&r->mu);
		return false;
	}
	req->res.status = r->status;
	req->res.reason = srv_reason(r->status);
	if (r->ctype != NULL)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
			       r->ctype, strlen(r->ctype));
	for (struct srv_hdr *h = r->hdrs; h != NULL; h = h->next) {
		size_t nlen = strlen(h->name);
		h2o_iovec_t name = h2o_strdup(&req->pool, h->name, nlen);
		h2o_iovec_t value = h2o_strdup(&req->pool, h->value, strlen(h->value));
		h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 1, NULL,
				      value.base, value.len);
		if (strcmp(h->name, "cache-control") == 0)
			has_cache_control = true;
	}
	pthread_mutex_unlock(&r->mu);

	/* API answers describe live state: no cache should keep them unless the handler
	 * says otherwise. */
	if (!has_cache_control)
		h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
	h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
			      H2O_STRLIT("nosniff"));

	r->started = true;
	if (mode == SRV_MODE_WHOLE) {
		r->whole = true;
		if (r->status != 204 && r->status != 304)
			req->res.content_length = r->out_len;
	}
	h2o_start_response(req, &r->gen);
	return true;
}

/* Sends the next slice of a whole answer.  Slices (not one big write) let the write
 * timeout measure progress, so a large answer to a slow but live client is not cut. */
static void send_whole_slice(struct srv_req *r)
{
	/* r->out cannot change once the mode is set, so it is read without the lock. */
	size_t left = r->out_len - r->out_sent;
	size_t n = left < r->srv->cfg.stream_queue_bytes ? left : r->srv->cfg.stream_queue_bytes;
	bool final = n == left;

	if (r->is_head) {
		n = 0;
		final = true;
	}
	r->iov[0] = h2o_iovec_init(r->out + r->out_sent, n);
	r->out_sent += n;
	r->busy = true;
	r->busy_since = uv_now(&r->srv->loop);
	if (final)
		r->final_sent = true;
	h2o_send(r->h2o, r->iov, n > 0 ? 1 : 0, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

void srv_req_pump(struct srv_req *r)
{
	if (r->in_pump) {
		r->repump = true;
		return;
	}
	/* h2o may dispose the request from inside h2o_send; our own reference keeps r. */
	srv_req_ref(r);
	r->in_pump = true;
	do {
		size_t n = 0, bytes = 0;
		bool final = false, abort_it = false;

		r->repump = false;
		if (r->h2o == NULL || r->final_sent)
			break;
		if (!r->started) {
			if (!start_response(r))
				break;
			if (r->h2o == NULL)
				break;
		}
		if (r->busy)
			break;
		if (r->whole) {
			send_whole_slice(r);
			continue;
		}

		pthread_mutex_lock(&r->mu);
		if (r->aborted) {
			abort_it = true;
		} else {
			struct srv_chunk **tail = &r->inflight;
			while (r->qhead != NULL && n < SRV_IOV_MAX) {
				struct srv_chunk *c = r->qhead;
				r->qhead = c->next;
				c->next = NULL;
				*tail = c;
				tail = &c->next;
				r->iov[n++] = h2o_iovec_init(c->data, c->len);
				bytes += c->len;
			}
			if (r->qhead == NULL)
				r->qtail = NULL;
			r->queued -= bytes;
			final = r->ended && r->qhead == NULL;
			if (n == 0 && !final)
				r->waiting = true;
		}
		if (n > 0)
			pthread_cond_broadcast(&r->cv);
		pthread_mutex_unlock(&r->mu);

		if (abort_it) {
			r->final_sent = true;
			r->busy = true;
			r->busy_since = uv_now(&r->srv->loop);
			SRV_COUNT(r->srv, streams_cut);
			h2o_send(r->h2o, NULL, 0, H2O_SEND_STATE_ERROR);
			break;
		}
		if (n == 0 && !final)
			break;
		r->busy = true;
		r->busy_since = uv_now(&r->srv->loop);
		if (final)
			r->final_sent = true;
		h2o_send(r->h2o, r->iov, n, final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
	} while (r->repump);
	r->in_pump = false;
	srv_req_unref(r);
}

void srv_req_cut(struct srv_req *r, int err)
{
	pthread_mutex_lock(&r->mu);
	if (r->closed_err == 0)
		r->closed_err = err;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

void srv_req_shutdown(struct srv_req *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->closed_err == 0)
		r->closed_err = -ESHUTDOWN;
	/* A detached stream (live packets, events) has no natural end: the server ends it
	 * cleanly after what is queued.  Handlers on workers see -ESHUTDOWN and return. */
	if (r->detached && r->mode == SRV_MODE_STREAM && !r->ended && !r->aborted)
		r->ended = true;
	pthread_cond_broadcast(&r->cv);
	pthread_mutex_unlock(&r->mu);
	srv_req_pump(r);
}

/* --- waking the loop (any thread) --- */

void srv_req_schedule(struct srv_req *r)
{
	struct srv *srv = r->srv;

	pthread_mutex_lock(&srv->pend_mu);
	if (srv->loop_running) {
		if (!r->scheduled) {
			r->scheduled = true;
			srv_req_ref(r);
			r->pnext = NULL;
			if (srv->pend_tail != NULL)
				srv->pend_tail->pnext = r;
			else
				srv->pend_head = r;
			srv->pend_tail = r;
		}
		/* Under pend_mu so that the loop cannot close the handle in between. */
		uv_async_send(&srv->wake);
	}
	pthread_mutex_unlock(&srv->pend_mu);
}

static void kick(struct srv_req *r)
{
	/* An inline handler's answer is pumped by the admission code right after the
	 * handler returns. */
	if (on_loop(r->srv) && r->in_inline)
		return;
	srv_req_schedule(r);
}

/* --- accessors (any thread) --- */

const char *srv_req_method(const struct srv_req *r) { return r->method; }
const char *srv_req_path(const struct srv_req *r) { return r->path; }
const char *srv_req_peer(const struct srv_req *r) { return r->peer; }
int srv_req_http_version(const struct srv_req *r) { return r->version; }

const char *srv_req_param(const struct srv_req *r, const char *name)
{
	size_t len = strlen(name);
	for (unsigned i = 0; i < r->nparams; i++)
		if (r->params[i].name_len == len && memcmp(r->params[i].name, name, len) == 0)
			return r->params[i].value;
	return NULL;
}

const char *srv_req_query(const struct srv_req *r, const char *name, size_t *len)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; i < r->nquery; i++) {
		if (r->query[i].name_len == nlen && memcmp(r->query[i].name, name, nlen) == 0) {
			if (len != NULL)
				*len = r->query[i].value_len;
			return r->query[i].value;
		}
	}
	return NULL;
}

size_t srv_req_query_all(const struct srv_req *r, const char *name, const char **values, size_t max)
{
	size_t nlen = strlen(name), n = 0;
	for (size_t i = 0; i < r->nquery; i++) {
		if (r->query[i].name_len == nlen && memcmp(r->query[i].name, name, nlen) == 0) {
			if (n < max)
				values[n] = r->query[i].value;
			n++;
		}
	}
	return n;
}

size_t srv_req_query_count(const struct srv_req *r)
{
	return r->nquery;
}

int srv_req_query_at(const struct srv_req *r, size_t i, const char **name, const char **value,
		     size_t *len)
{
	if (i >= r->nquery)
		return -ERANGE;
	*name = r->query[i].name;
	*value = r->query[i].value;
	if (len != NULL)
		*len = r->query[i].value_len;
	return 0;
}

const char *srv_req_header(const struct srv_req *r, const char *name)
{
	size_t nlen = strlen(name);
	for (size_t i = 0; i < r->nheaders; i++)
		if (r->headers[i].name_len == nlen && strncasecmp(r->headers[i].name, name, nlen) == 0)
			return r->headers[i].value;
	return NULL;
}

const void *srv_req_body(const struct srv_req *r, size_t *len)
{
	if (len != NULL)
		*len = r->body_len;
	return r->body;
}

bool srv_req_closed(const struct srv_req *r)
{
	struct srv_req *m = (struct srv_req *)r;
	pthread_mutex_lock(&m->mu);
	bool closed = m->closed_err != 0;
	pthread_mutex_unlock(&m->mu);
	return closed;
}

/* --- answers (any thread) --- */

int srv_add_header(struct srv_req *r, const char *name, const char *value)
{
	size_t nlen = strlen(name);
	if (!srv_is_token(name, nlen) || strpbrk(value, "\r\n") != NULL)
		return -EINVAL;
	struct srv_hdr *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	h->name = strdup(name);
	h->value = strdup(value);
	if (h->name == NULL || h->value == NULL) {
		free(h->name);
		free(h->value);
		free(h);
		return -ENOMEM;
	}
	/* HTTP/2 requires lower-case names; HTTP/1.1 does not care. */
	for (char *p = h->name; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	pthread_mutex_lock(&r->mu);
	if (r->mode != SRV_MODE_NONE) {
		pthread_mutex_unlock(&r->mu);
		free(h->name);
		free(h->value);
		free(h);
		return -EALREADY;
	}
	if (r->hdrs_tail != NULL)
		r->hdrs_tail->next = h;
	else
		r->hdrs = h;
	r->hdrs_tail = h;
	pthread_mutex_unlock(&r->mu);
	return 0;
}

static int respond_common(struct srv_req *r, int status, const char *ctype, void *body, size_t len,
			  bool is_static)
{
	char *ct = NULL;

	if (status < 200 || status > 599) {
		if (!is_static)
			free(body);
		return -EINVAL;
	}
	if (ctype != NULL && (ct = strdup(ctype)) == NULL) {
		if (!is_static)
			free(body);
		return -ENOMEM;
	}
	pthread_mutex_lock(&r->mu);
	if (r->mode != SRV_MODE_NONE) {
		pthread_mutex_unlock(&r->mu);
		free(ct);
		if (!is_static)
			free(body);
		return -EALREADY;
	}
	r->mode = SRV_MODE_WHOLE;
	r->status = status;
	r->ctype = ct;
	r->out = body;
	r->out_len = len;
	r->out_static = is_static;
	pthread_mutex_unlock(&r->mu);
	kick(r);
	return 0;
}

int srv_respond(struct srv_req *r, int status, const char *content_type, const void *body, size_t len)
{
	char *copy = malloc(len ? len : 1);
	if (copy == NULL)
		return -ENOMEM;
	if (len)
		memcpy(copy, body, len);
	return respond_common(r, status, content_type, copy, len, false);
}

int srv_respond_take(struct srv_req *r, int status, const char *content_type, void *body, size_t len)
{
	return respond_common(r, status, content_type, body, len, false);
}

int srv_respond_static(struct srv_req *r, int status, const char *ctype, const void *body, size_t len)
{
	return respond_common(r, status, ctype, (void *)body, len, true);
}

int srv_respond_verror(struct srv_req *r, int status, const char *fmt, va_list ap)
{
	char msg[512], esc[1100], *body;
	int n;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	srv_json_escape(esc, sizeof(esc), msg, strlen(msg));
	body = malloc(sizeof(esc) + 48);
	if (body == NULL)
		return -ENOMEM;
	n = snprintf(body, sizeof(esc) + 48, "{\"error\": \"%s\", \"status\": %d}\n", esc, status);
	return srv_respond_take(r, status, "application/json", body, (size_t)n);
}

int srv_respond_error(struct srv_req *r, int status, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = srv_respond_verror(r, status, fmt, ap);
	va_end(ap);
	return rc;
}

int srv_stream_begin(struct srv_req *r, int status, const char *content_type)
{
	char *ct = NULL;

	if (status < 200 || status > 599)
		return -EINVAL;
	if (content_type != NULL && (ct = strdup(content_type)) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&r->mu);
	if (r->mode != SRV_MODE_NONE) {
		pthread_mutex_unlock(&r->mu);
		free(ct);
		return -EALREADY;
	}
	r->mode = SRV_MODE_STREAM;
	r->status = status;
	r->ctype = ct;
	if (r->is_head) {
		/* HEAD: the head goes out now, with no body; writers stop at once. */
		r->ended = true;
		if (r->closed_err == 0)
			r->closed_err = -EPIPE;
	}
	pthread_mutex_unlock(&r->mu);
	kick(r);
	return 0;
}

/* Appends to the queue (under r->mu); packs small writes into the last chunk. */
static int queue_append(struct srv_req *r, const char *buf, size_t len)
{
	struct srv_chunk *t = r->qtail;
	if (t != NULL && t->cap - t->len >= len) {
		memcpy(t->data + t->len, buf, len);
		t->len += len;
	} else {
		size_t cap = len > SRV_CHUNK_MIN ? len : SRV_CHUNK_MIN;
		struct srv_chunk *c = malloc(sizeof(*c) + cap);
		if (c == NULL)
			return -ENOMEM;
		c->next = NULL;
		c->len = len;
		c->cap = cap;
		memcpy(c->data, buf, len);
		if (t != NULL)
			t->next = c;
		else
			r->qhead = c;
		r->qtail = c;
	}
	r->queued += len;
	return 0;
}

static int stream_write(struct srv_req *r, const void *buf, size_t len, bool may_block)
{
	const char *p = buf;
	size_t cap = r->srv->cfg.stream_queue_bytes;
	bool wake = false;
	int rc = 0;

	pthread_mutex_lock(&r->mu);
	if (r->mode == SRV_MODE_STREAM && r->closed_err != 0) {
		/* The client is gone (or this is HEAD): say so, whatever else happened. */
		rc = r->closed_err;
		r->write_failed = true;
		pthread_mutex_unlock(&r->mu);
		return rc;
	}
	if (r->mode != SRV_MODE_STREAM || r->ended || r->aborted) {
		pthread_mutex_unlock(&r->mu);
		return -EINVAL;
	}
	if (!may_block) {
		/* All or nothing, so a producer's records are never split by a drop. */
		if (r->closed_err != 0) {
			rc = r->closed_err;
			r->write_failed = true;
		} else if (len > cap) {
			rc = -EMSGSIZE;
		} else if (r->queued + len > cap) {
			rc = -EAGAIN;
			SRV_COUNT(r->srv, stream_again);
		} else if ((rc = queue_append(r, p, len)) == 0 && r->waiting) {
			r->waiting = false;
			wake = true;
		}
		pthread_mutex_unlock(&r->mu);
		if (wake)
			kick(r);
		return rc;
	}
	while (len > 0) {
		if (r->closed_err != 0) {
			rc = r->closed_err;
			r->write_failed = true;
			break;
		}
		size_t piece = len < cap ? len : cap;
		if (r->queued + piece > cap) {
			/* Full: make sure the loop is sending before waiting for room. */
			if (wake || r->waiting) {
				r->waiting = false;
				wake = false;
				pthread_mutex_unlock(&r->mu);
				kick(r);
				pthread_mutex_lock(&r->mu);
				continue;
			}
			pthread_cond_wait(&r->cv, &r->mu);
			continue;
		}
		if ((rc = queue_append(r, p, piece)) != 0)
			break;
		p += piece;
		len -= piece;
		if (r->waiting) {
			r->waiting = false;
			wake = true;
		}
	}
	pthread_mutex_unlock(&r->mu);
	if (wake)
		kick(r);
	return rc;
}

int srv_stream_write(struct srv_req *r, const void *buf, size_t len)
{
	/* The loop thread must never wait: it is the one that drains the queue. */
	return stream_write(r, buf, len, !on_loop(r->srv));
}

int srv_stream_try_write(struct srv_req *r, const void *buf, size_t len)
{
	return stream_write(r, buf, len, false);
}

int srv_stream_end(struct srv_req *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->mode != SRV_MODE_STREAM) {
		pthread_mutex_unlock(&r->mu);
		return -EINVAL;
	}
	bool was = r->ended || r->aborted;
	r->ended = true;
	pthread_mutex_unlock(&r->mu);
	if (!was)
		kick(r);
	return 0;
}

int srv_stream_abort(struct srv_req *r)
{
	pthread_mutex_lock(&r->mu);
	if (r->mode != SRV_MODE_STREAM) {
		pthread_mutex_unlock(&r->mu);
		return -EINVAL;
	}
	bool was = r->aborted;
	r->aborted = true;
	free_chunks(r->qhead);
	r->qhead = r->qtail = NULL;
	r->queued = 0;
	pthread_mutex_unlock(&r->mu);
	if (!was)
		kick(r);
	return 0;
}

/* Ends the answer the way a returning handler does (under r->mu). */
static void finish_locked(struct srv_req *r)
{
	static const char no_answer[] = "{\"error\": \"the handler sent no answer\", \"status\": 500}\n";

	if (r->mode == SRV_MODE_NONE) {
		r->mode = SRV_MODE_WHOLE;
		r->status = 500;
		r->ctype = strdup("application/json");
		r->out = (char *)no_answer;
		r->out_len = sizeof(no_answer) - 1;
		r->out_static = true;
	} else if (r->mode == SRV_MODE_STREAM && !r->ended && !r->aborted) {
		/* A stream whose writes failed must not end as if complete. */
		if (r->write_failed) {
			r->aborted = true;
			free_chunks(r->qhead);
			r->qhead = r->qtail = NULL;
			r->queued = 0;
		} else {
			r->ended = true;
		}
	}
}

void srv_req_handler_done(struct srv_req *r, bool direct)
{
	pthread_mutex_lock(&r->mu);
	bool detached = r->detached;
	if (!detached)
		finish_locked(r);
	pthread_mutex_unlock(&r->mu);
	/* An inline handler's answer (even of a request it detached) has not been pumped
	 * yet: kick() skipped it while the handler ran. */
	if (direct)
		srv_req_pump(r);
	else if (!detached)
		kick(r);
	/* A detached request's reference now belongs to whoever detached it. */
	if (!detached)
		srv_req_unref(r);
}

void srv_req_detach(struct srv_req *r)
{
	pthread_mutex_lock(&r->mu);
	r->detached = true;
	pthread_mutex_unlock(&r->mu);
}

void srv_req_release(struct srv_req *r)
{
	pthread_mutex_lock(&r->mu);
	finish_locked(r);
	pthread_mutex_unlock(&r->mu);
	kick(r);
	srv_req_unref(r);
}

void srv_req_on_close(struct srv_req *r, void (*cb)(struct srv_req *, void *), void *arg)
{
	pthread_mutex_lock(&r->mu);
	if (r->on_close_fired) {
		pthread_mutex_unlock(&r->mu);
		cb(r, arg);
		return;
	}
	r->on_close = cb;
	r->on_close_arg = arg;
	pthread_mutex_unlock(&r->mu);
}

/* --- worker pool --- */

static void *worker_main(void *arg)
{
	struct srv *srv = arg;

	srv_tls_worker = srv;
	for (;;) {
		pthread_mutex_lock(&srv->work_mu);
		while (srv->work_head == NULL && !srv->work_quit)
			pthread_cond_wait(&srv->work_cv, &srv->work_mu);
		struct srv_req *r = srv->work_head;
		if (r == NULL) {
			pthread_mutex_unlock(&srv->work_mu);
			break;
		}
		srv->work_head = r->wnext;
		if (srv->work_head == NULL)
			srv->work_tail = NULL;
		srv->work_len--;
		pthread_mutex_unlock(&srv->work_mu);

		if (atomic_load(&srv->stop_flag))
			srv_respond_error(r, 503, "the server is stopping");
		else
			r->route->fn(r, r->route->arg);
		srv_req_handler_done(r, false);
	}
	return NULL;
}

void srv_work_push(struct srv *srv, struct srv_req *r)
{
	pthread_mutex_lock(&srv->work_mu);
	r->wnext = NULL;
	if (srv->work_tail != NULL)
		srv->work_tail->wnext = r;
	else
		srv->work_head = r;
	srv->work_tail = r;
	srv->work_len++;
	pthread_cond_signal(&srv->work_cv);
	pthread_mutex_unlock(&srv->work_mu);
}

int srv_workers_start(struct srv *srv)
{
	srv->workers = calloc(srv->cfg.workers, sizeof(pthread_t));
	if (srv->workers == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < srv->cfg.workers; i++) {
		int rc = pthread_create(&srv->workers[i], NULL, worker_main, srv);
		if (rc != 0) {
			srv_workers_stop(srv);
			return -rc;
		}
		srv->nworkers++;
		char name[16];
		snprintf(name, sizeof(name), "srv-work-%u", i % 1000u);
		pthread_setname_np(srv->workers[i], name);
	}
	return 0;
}

void srv_workers_stop(struct srv *srv)
{
	pthread_mutex_lock(&srv->work_mu);
	srv->work_quit = true;
	pthread_cond_broadcast(&srv->work_cv);
	pthread_mutex_unlock(&srv->work_mu);
	for (unsigned i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i], NULL);
	srv->nworkers = 0;
	free(srv->workers);
	srv->workers = NULL;
}
