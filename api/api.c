/* api — lifecycle, the worker threads' read-only handles, parameters shared by
 * the endpoints, completeness, and the routes (docs/api.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "flowdb.h"
#include "pktstore.h"

/* embedded by meson (server/embed.py) */
extern const struct srv_asset web_assets[];
extern const size_t web_assets_count;
extern const struct srv_asset api_doc_assets[];
extern const size_t api_doc_assets_count;

#define STORE_RETRY_US 5000000u

void api_config_default(struct api_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->mode = "serve";
	cfg->query_ms = 10000;
	cfg->max_exports = 4;
	cfg->max_streams = 8;
}

uint64_t api_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- per-thread handles ---- */

static void handles_free(void *p)
{
	struct api_handles *h = p;
	if (!h)
		return;
	pks_close(h->store);
	fdb_close(h->db);
	free(h);
}

static void store_log(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "podcap: api: %s\n", msg);
}

static struct api_handles *handles(struct api *a)
{
	struct api_handles *h = pthread_getspecific(a->key);
	if (h)
		return h;
	if (!(h = calloc(1, sizeof(*h))))
		return NULL;
	if (pthread_setspecific(a->key, h) != 0) {
		free(h);
		return NULL;
	}
	return h;
}

static int open_db(struct api *a, struct fdb **out, char *err, size_t errlen)
{
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	int rc = fdb_open(a->db_path, &cfg, out, err, errlen);
	if (rc == 0)
		fdb_set_deadline(*out, a->cfg.query_ms);
	return rc;
}

struct fdb *api_db(struct api *a, struct srv_req *req)
{
	struct api_handles *h = handles(a);
	char err[512];
	if (!h) {
		srv_respond_error(req, 503, "out of memory");
		return NULL;
	}
	if (h->db)
		return h->db;
	/* Not kept on failure: the next request tries again (the file may come back). */
	if (open_db(a, &h->db, err, sizeof(err)) < 0) {
		srv_respond_error(req, 503, "flow database: %s", err);
		return NULL;
	}
	return h->db;
}

/* Opens the worker's store handle if it can; a failure is remembered for
 * STORE_RETRY_US so that a database without a store does not try on every
 * request.  *why gets the last error. */
static struct pks *store_try(struct api *a, struct api_handles *h, struct fdb *db, char *why, size_t whylen)
{
	struct q_error qe;
	if (h->store)
		return h->store;
	uint64_t now = api_now_us();
	if (h->store_state < 0 && now < h->store_retry_us) {
		snprintf(why, whylen, "%s", h->store_state == -ENOENT && !a->store_dir ?
			 "this database has no packet store" : "the packet store cannot be opened (see the server's log)");
		return NULL;
	}
	memset(&qe, 0, sizeof(qe));
	int rc = q_open_store(db, a->store_dir, store_log, NULL, &h->store, &qe);
	if (rc < 0) {
		h->store_state = rc;
		h->store_retry_us = now + STORE_RETRY_US;
		if (rc != -ENOENT || a->store_dir)
			fprintf(stderr, "podcap: api: packet store: %s\n", qe.msg);
		snprintf(why, whylen, "%s", rc == -ENOENT && !a->store_dir ? "this database has no packet store" : qe.msg);
		return NULL;
	}
	h->store_state = 1;
	return h->store;
}

struct pks *api_store_quiet(struct api *a, struct fdb *db)
{
	struct api_handles *h = handles(a);
	char why[512];
	return h ? store_try(a, h, db, why, sizeof(why)) : NULL;
}

struct pks *api_store(struct api *a, struct srv_req *req)
{
	struct api_handles *h = handles(a);
	char why[512];
	if (!h) {
		srv_respond_error(req, 503, "out of memory");
		return NULL;
	}
	struct fdb *db = api_db(a, req);
	if (!db)
		return NULL;
	struct pks *s = store_try(a, h, db, why, sizeof(why));
	if (!s)
		srv_respond_error(req, h->store_state == -ENOENT && !a->store_dir ? 409 : 503, "%s", why);
	return s;
}

/* ---- common parameters ---- */

void api_query_error(struct srv_req *req, const struct q_error *qe, const char *what)
{
	struct jbuf b = {0};
	int first = 1, status = 500;
	if (qe->code == -ETIMEDOUT)
		status = 503;
	else if (qe->code == -EINVAL || qe->code == -E2BIG)
		status = 400;
	else if (qe->code == -ENOMEM)
		status = 503;
	jb_str(&b, "{");
	char msg[400];
	snprintf(msg, sizeof(msg), "%s%s%s", what ? what : "", what ? ": " : "", qe->msg);
	jb_kv_str(&b, &first, "error", msg);
	jb_kv_i64(&b, &first, "status", status);
	if (status == 400 && qe->pos) {
		jb_kv_u64(&b, &first, "position", qe->pos);
		if (qe->found[0])
			jb_kv_str(&b, &first, "found", qe->found);
		if (qe->expected[0])
			jb_kv_str(&b, &first, "expected", qe->expected);
	}
	jb_str(&b, "}\n");
	if (b.err) {
		jb_free(&b);
		srv_respond_error(req, 500, "out of memory");
		return;
	}
	srv_respond_take(req, status, "application/json", b.p, b.len);
}

int api_common_params(struct srv_req *req, struct q_filter **filter, struct q_range *range)
{
	size_t len = 0;
	struct q_error qe;
	const char *text = srv_req_query(req, "filter", &len);
	*filter = NULL;
	memset(range, 0, sizeof(*range));
	/* all blank is no filter, as empty is (the rollup can answer top then);
	 * otherwise the text as given, for error positions */
	size_t lead = 0;
	while (text && lead < len && strchr(" \t\r\n", text[lead]) && text[lead])
		lead++;
	if (text && lead < len) {
		memset(&qe, 0, sizeof(qe));
		if (q_parse(text, len, NULL, filter, &qe) < 0) {
			api_query_error(req, &qe, NULL);
			return -1;
		}
	}
	static const char *const names[2] = {"from", "to"};
	uint64_t now = api_now_us();
	for (int i = 0; i < 2; i++) {
		const char *v = srv_req_query(req, names[i], &len);
		if (!v || !len)
			continue;
		int64_t us;
		memset(&qe, 0, sizeof(qe));
		if (q_time_parse(v, len, (int64_t)now, &us, &qe) < 0) {
			char what[16];
			snprintf(what, sizeof(what), "%s", names[i]);
			api_query_error(req, &qe, what);
			q_filter_free(*filter);
			*filter = NULL;
			return -1;
		}
		if (i == 0) {
			range->has_from = 1;
			range->from_us = us;
		} else {
			range->has_to = 1;
			range->to_us = us;
		}
	}
	if (range->has_from && range->has_to && range->from_us > range->to_us) {
		srv_respond_error(req, 400, "from is after to");
		q_filter_free(*filter);
		*filter = NULL;
		return -1;
	}
	return 0;
}

/* ---- the database's numbers, cached ---- */

int api_db_numbers(struct api *a, struct fdb *db, uint64_t *max_id, int64_t *oldest, int64_t *newest,
		   int64_t *retained)
{
	uint64_t now = api_now_us();
	pthread_mutex_lock(&a->db_cache_lock);
	/* without a handle (the caller saw a fresh cache a moment ago) the values
	 * a moment old are fine too */
	int fresh = (a->db_cache_us && now - a->db_cache_us < API_DB_CACHE_US) || !db;
	if (fresh) {
		*max_id = a->db_max_id;
		*oldest = a->db_oldest_us;
		*newest = a->db_newest_us;
		*retained = a->db_retained_us;
	}
	pthread_mutex_unlock(&a->db_cache_lock);
	if (fresh)
		return 0;
	*max_id = 0;
	*oldest = *newest = *retained = 0;
	int rc;
	if ((rc = fdb_max_flow_id(db, max_id)) < 0 || (rc = q_time_span(db, oldest, newest)) < 0 ||
	    (rc = q_retained_until(db, retained)) < 0)
		return rc;
	pthread_mutex_lock(&a->db_cache_lock);
	a->db_cache_us = now;
	a->db_max_id = *max_id;
	a->db_oldest_us = *oldest;
	a->db_newest_us = *newest;
	a->db_retained_us = *retained;
	pthread_mutex_unlock(&a->db_cache_lock);
	return 0;
}

/* ---- completeness ---- */

void api_completeness(struct api *a, struct fdb *db, const struct q_range *range, struct jbuf *b,
		      int *first, bool *complete_out)
{
	int64_t retained = 0, oldest = 0, newest = 0;
	uint64_t max_id = 0;
	bool complete = true;
	api_db_numbers(a, db, &max_id, &oldest, &newest, &retained);
	struct jbuf why = {0};
	int wfirst = 1;

	jb_str(&why, "[");
	if (retained > 0 &&
	    (!range->has_from || range->from_us <= retained) && (!range->has_to || range->to_us >= 0)) {
		/* Retention deleted flows whose last packet is at or before `retained`:
		 * a range reaching back to that time misses some. */
		complete = false;
		char s[160];
		snprintf(s, sizeof(s), "retention deleted flows that ended at or before %" PRId64 " us", retained);
		if (!wfirst)
			jb_str(&why, ",");
		wfirst = 0;
		jb_jstr(&why, s);
	}
	struct engine *e = __atomic_load_n(&a->eng, __ATOMIC_ACQUIRE);
	if (e) {
		/* The agent: losses since it started, when the range reaches into its run. */
		bool in_run = !range->has_to || range->to_us >= (int64_t)a->start_us;
		struct eng_stats es;
		eng_stats(e, &es);
		uint64_t kd = 0, rd = 0, cl = 0, full = 0;
		pthread_mutex_lock(&a->cap_lock);
		if (a->have_capture) {
			kd = a->cap.kernel_drops;
			rd = a->cap.ring_drops;
			cl = a->cap.counts_lost;
			/* a full eBPF flow map evicts keys with their counts */
			full = a->cap.flow_map_size && a->cap.flow_map_entries >= a->cap.flow_map_size;
		}
		pthread_mutex_unlock(&a->cap_lock);
		struct fdb_sink_stats fs = {0};
		struct fdb_sink *fdbs = __atomic_load_n(&a->fdbs, __ATOMIC_ACQUIRE);
		if (fdbs)
			fdb_sink_stats(fdbs, &fs);
		struct { const char *what; uint64_t n; } loss[] = {
			{"packets dropped in the kernel", kd},
			{"packets dropped in the capture ring", rd},
			{"flows ended early by the flow table's memory cap", es.fl.evicted},
			{"flow records the database refused", fs.lost},
			{"counts-only flow records lost", cl},
		};
		for (size_t i = 0; in_run && i < sizeof(loss) / sizeof(loss[0]); i++) {
			if (!loss[i].n)
				continue;
			complete = false;
			char s[160];
			snprintf(s, sizeof(s), "%" PRIu64 " %s since the agent started", loss[i].n, loss[i].what);
			if (!wfirst)
				jb_str(&why, ",");
			wfirst = 0;
			jb_jstr(&why, s);
		}
		if (in_run && full) {
			complete = false;
			if (!wfirst)
				jb_str(&why, ",");
			wfirst = 0;
			jb_jstr(&why, "the kernel's flow map is full: it evicts the least recently used keys with their "
				       "counts");
		}
	}
	jb_str(&why, "]");
	jb_kv_bool(b, first, "complete", complete);
	jb_key(b, first, "oldest_us");
	if (oldest)
		jb_fmt(b, "%" PRId64, oldest);
	else
		jb_str(b, "null");
	jb_key(b, first, "incomplete_because");
	jb_raw(b, why.p ? why.p : "[]", why.p ? why.len : 2);
	if (why.err && !b->err)
		b->err = why.err;
	jb_free(&why);
	if (complete_out)
		*complete_out = complete;
}

/* ---- small endpoints ---- */

static void h_healthz(struct srv_req *req, void *arg)
{
	(void)arg;
	srv_respond(req, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

/* ---- lifecycle ---- */

/* Whether name is one of the comma-separated list. */
static int in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && !memcmp(p, name, n))
			return 1;
		p = comma ? comma + 1 : NULL;
	}
	return 0;
}

/* Every handler runs behind this, which refuses with 400:
 *  - a parameter the route does not take: a typo (filtr=) was ignored, and the
 *    answer held every flow;
 *  - one given twice (limit=10&limit=20 used the first), but for repeatable ones;
 *  - a value with a NUL byte (%00), except filter, from and to, whose parsers take
 *    a length and say where it is: the others read their value as a C string,
 *    which ended at the NUL (limit=10%00junk was limit=10). */
static void params_checked(struct srv_req *req, void *arg)
{
	struct api_route *r = arg;
	size_t n = srv_req_query_count(req);
	for (size_t i = 0; i < n; i++) {
		const char *name, *value;
		size_t len;
		if (srv_req_query_at(req, i, &name, &value, &len) < 0)
			continue;
		if (r->params && !in_list(r->params, name)) {
			srv_respond_error(req, 400, "unknown parameter '%.40s' (%s)", name,
					  *r->params ? r->params : "this takes none");
			return;
		}
		if (r->params && !in_list(r->repeat, name))
			for (size_t k = 0; k < i; k++) {
				const char *other, *v2;
				if (srv_req_query_at(req, k, &other, &v2, NULL) == 0 && !strcmp(other, name)) {
					srv_respond_error(req, 400, "parameter '%.40s' given more than once", name);
					return;
				}
			}
		if (memchr(value, 0, len) && strcmp(name, "filter") && strcmp(name, "from") && strcmp(name, "to")) {
			srv_respond_error(req, 400, "%.40s: a NUL byte (%%00) in its value", name);
			return;
		}
	}
	r->fn(req, r->a);
}

static int route(struct api *a, const char *pattern, srv_handler_fn fn, unsigned flags, int cls,
		 const char *params, const char *repeat)
{
	struct srv_route_opts o = {.flags = flags, .limit_class = cls};
	if (a->nroutes == API_MAX_ROUTES)
		return -ENOSPC;
	struct api_route *r = &a->routes[a->nroutes++];
	*r = (struct api_route){fn, a, params, repeat};
	return srv_route(a->srv, "GET", pattern, params_checked, r, &o);
}

int api_open(const struct api_config *cfg_in, struct api **out, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	int rc = -ENOMEM;
	*out = NULL;
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->cfg = *cfg_in;
	a->kube = cfg_in->kube;
	pthread_mutex_init(&a->cap_lock, NULL);
	pthread_mutex_init(&a->db_cache_lock, NULL);
	pthread_mutex_init(&a->stream_lock, NULL);
	pthread_cond_init(&a->stream_cond, NULL);
	api_metrics_init(&a->metrics);
	if (!cfg_in->db_path) {
		snprintf(err, errlen, "no flow database given");
		rc = -EINVAL;
		goto fail;
	}
	if (!(a->db_path = strdup(cfg_in->db_path)) ||
	    (cfg_in->store_dir && !(a->store_dir = strdup(cfg_in->store_dir))) ||
	    !(a->mode = strdup(cfg_in->mode ? cfg_in->mode : "serve"))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	a->cfg.db_path = a->db_path;
	a->cfg.store_dir = a->store_dir;
	a->cfg.mode = a->mode;
	if (!a->cfg.query_ms)
		a->cfg.query_ms = 10000;
	if (!a->cfg.max_exports)
		a->cfg.max_exports = 4;
	if (!a->cfg.max_streams)
		a->cfg.max_streams = 8;
	a->start_us = api_now_us();

	/* Open the database once here, so a wrong path or schema is an error at
	 * start and not a 503 on every request.  Not the agent's: it opens the API
	 * before its own writer creates or migrates the file. */
	if (strcmp(a->mode, "agent")) {
		struct fdb *db = NULL;
		char e[512];
		if ((rc = open_db(a, &db, e, sizeof(e))) < 0) {
			snprintf(err, errlen, "%s", e);
			goto fail;
		}
		fdb_close(db);
	}

	if (pthread_key_create(&a->key, handles_free) != 0) {
		snprintf(err, errlen, "pthread_key_create failed");
		rc = -EAGAIN;
		goto fail;
	}
	a->key_ok = 1;
	if ((rc = srv_open(&a->cfg.http, &a->srv, err, errlen)) < 0)
		goto fail;
	a->export_class = srv_class(a->srv, "export", a->cfg.max_exports, 1);
	if (a->export_class < 0) {
		rc = a->export_class;
		snprintf(err, errlen, "srv_class: %s", strerror(-rc));
		goto fail;
	}
	a->stream_class = srv_class(a->srv, "stream", a->cfg.max_streams, 5);
	if (a->stream_class < 0) {
		rc = a->stream_class;
		snprintf(err, errlen, "srv_class: %s", strerror(-rc));
		goto fail;
	}
	/* the parameters each route takes (docs/api.md); probes and scrapers
	 * (healthz, metrics) may add their own */
	if ((rc = route(a, "/healthz", h_healthz, SRV_INLINE | SRV_PUBLIC, 0, NULL, NULL)) < 0 ||
	    (rc = route(a, "/api/v1/flows", api_h_flows, 0, 0, "filter,from,to,limit,order,cursor,format", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/flows/{id}", api_h_flow, 0, 0, "", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/flows/{id}/pcap", api_h_flow_pcap, 0, a->export_class, "format,inner", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/pcap", api_h_pcap, 0, a->export_class, "filter,from,to,limit,format,inner",
			NULL)) < 0 ||
	    (rc = route(a, "/api/v1/top", api_h_top, 0, 0, "filter,from,to,by,metric,bucket,limit", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/stats", api_h_stats, 0, 0, "", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/interfaces", api_h_interfaces, 0, 0, "", NULL)) < 0 ||
	    (rc = route(a, "/api/v1/fields", api_h_fields, SRV_INLINE, 0, "", NULL)) < 0 ||
	    (rc = route(a, "/metrics", api_h_metrics, 0, 0, NULL, NULL)) < 0 ||
	    (rc = route(a, "/api/v1/stream", api_h_stream, 0, a->stream_class,
			"target,pod,namespace,iface,filter,bpf,snaplen,count,seconds,bytes,inner", "iface")) < 0 ||
	    (rc = srv_static(a->srv, "/api/v1/", api_doc_assets, api_doc_assets_count)) < 0 ||
	    (rc = srv_static(a->srv, "/", web_assets, web_assets_count)) < 0) {
		snprintf(err, errlen, "registering routes: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = srv_start(a->srv)) < 0) {
		snprintf(err, errlen, "starting the server: %s", strerror(-rc));
		goto fail;
	}
	*out = a;
	return 0;
fail:
	api_close(a);
	return rc < 0 ? rc : -EINVAL;
}

int api_port(const struct api *a)
{
	return srv_port(a->srv);
}

void api_metrics_sink(struct api *a, struct eng_sink *out)
{
	a->metrics_used = 1;
	out->ops = &api_metrics_ops;
	out->ctx = &a->metrics;
}

void api_attach(struct api *a, struct engine *e, struct fdb_sink *fdb, struct pks_sink *pks)
{
	/* Requests may run already: each pointer is published with a release store
	 * (readers load with acquire), after the object it points to was made. */
	__atomic_store_n(&a->fdbs, fdb, __ATOMIC_RELEASE);
	__atomic_store_n(&a->pkss, pks, __ATOMIC_RELEASE);
	__atomic_store_n(&a->eng, e, __ATOMIC_RELEASE);
}

void api_attach_kube(struct api *a, struct kube *k)
{
	__atomic_store_n(&a->kube, k, __ATOMIC_RELEASE);
}

void api_attach_nat(struct api *a, struct kube_nat *n)
{
	__atomic_store_n(&a->nat, n, __ATOMIC_RELEASE);
}

void api_publish_capture(struct api *a, const struct api_capture *c)
{
	pthread_mutex_lock(&a->cap_lock);
	if (c->nifaces > a->ifaces_cap) {
		struct api_iface *n = realloc(a->ifaces, c->nifaces * sizeof(*n));
		if (!n) {
			pthread_mutex_unlock(&a->cap_lock);
			return; /* the previous snapshot stays */
		}
		a->ifaces = n;
		a->ifaces_cap = c->nifaces;
	}
	if (c->nifaces)
		memcpy(a->ifaces, c->ifaces, c->nifaces * sizeof(*a->ifaces));
	a->nifaces = c->nifaces;
	a->cap = *c;
	a->cap.ifaces = a->ifaces;
	snprintf(a->backend, sizeof(a->backend), "%s", c->backend ? c->backend : "");
	a->cap.backend = a->backend;
	a->have_capture = 1;
	pthread_mutex_unlock(&a->cap_lock);
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	api_stream_stop(a);
	if (a->srv)
		srv_stop(a->srv);
}

void api_close(struct api *a)
{
	if (!a)
		return;
	api_stream_stop(a);
	srv_close(a->srv); /* joins the workers: their handles are closed by then */
	if (a->key_ok)
		pthread_key_delete(a->key);
	api_metrics_destroy(&a->metrics);
	pthread_mutex_destroy(&a->cap_lock);
	pthread_mutex_destroy(&a->db_cache_lock);
	pthread_mutex_destroy(&a->stream_lock);
	pthread_cond_destroy(&a->stream_cond);
	free(a->ifaces);
	free(a->db_path);
	free(a->store_dir);
	free(a->mode);
	free(a);
}
