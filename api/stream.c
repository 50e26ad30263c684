/* GET /api/v1/stream — live pcapng (docs/api.md, docs/sniff.md).
 *
 * The handler checks the parameters, finds the observation points of the pod
 * or interface asked for among those the agent captures now, opens a stream
 * on the hub (stream/), starts the chunked answer and detaches the request:
 * no worker thread is held while the stream lasts.  From then on the hub's
 * sink thread writes (srv_stream_try_write, which never waits) and ends the
 * answer (done).  The client's going away reaches the hub through the
 * server's close callback (strm_cancel).
 *
 * A stream's context lives until both of its ends are done with it: the hub's
 * done() and the server's close callback (and, for a flow filter, the poller),
 * counted in refs.  ctx->lock orders done() against the close callback and the
 * poller, which use ctx->strm only while it is set.
 *
 * A flow filter (the filter language) is answered with flow ids: the poller
 * thread asks the flow database every second for the flows matching it that
 * were active since the stream began, and gives their ids to the stream. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api_internal.h"
#include "flowdb.h"
#include "pcapng.h"
#include "stream.h"

#define STREAM_MAX_IFACES 64
#define STREAM_POLL_MS 1000
#define STREAM_POLL_FLOWS 100000
#define STREAM_WRITE_MAX (64u * 1024u)

struct api_stream {
	pthread_mutex_t lock;
	int refs;
	struct api *a;
	struct srv_req *req;
	struct strm *strm;           /* NULL once the hub is done with it */
	struct q_filter *filter;     /* flow filter, polled; NULL otherwise */
	uint64_t start_us;
	struct api_stream *next;     /* the poller's list (a->stream_lock) */
};

static void ctx_unref(struct api_stream *c)
{
	pthread_mutex_lock(&c->lock);
	int left = --c->refs;
	pthread_mutex_unlock(&c->lock);
	if (left)
		return;
	q_filter_free(c->filter);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

/* ---- the stream's output (the hub's sink thread) ---- */

static int out_try_write(void *arg, const void *buf, size_t len)
{
	struct api_stream *c = arg;
	return srv_stream_try_write(c->req, buf, len);
}

static void out_done(void *arg, int complete)
{
	struct api_stream *c = arg;
	pthread_mutex_lock(&c->lock);
	c->strm = NULL;
	pthread_mutex_unlock(&c->lock);
	if (complete)
		srv_stream_end(c->req);
	else
		srv_stream_abort(c->req);
	srv_req_release(c->req);
	ctx_unref(c);
}

/* The server is done with the request (client gone, answer sent, stop). */
static void on_close(struct srv_req *req, void *arg)
{
	struct api_stream *c = arg;
	(void)req;
	pthread_mutex_lock(&c->lock);
	if (c->strm)
		strm_cancel(c->strm);
	pthread_mutex_unlock(&c->lock);
	ctx_unref(c);
}

/* ---- the flow filter poller ---- */

/* q_list_flows's CSV, one id per row (the first column), into an array. */
struct id_sink {
	uint64_t *ids;
	size_t n, cap;
	int line, in_id;   /* rows seen; reading the first column */
	uint64_t cur;
	int err;
};

static int id_write(void *arg, const void *buf, size_t len)
{
	struct id_sink *s = arg;
	const char *p = buf;
	for (size_t i = 0; i < len; i++) {
		char ch = p[i];
		if (ch == '\n') {
			if (s->line > 0 && s->cur) {
				if (s->n == s->cap) {
					size_t nc = s->cap ? 2 * s->cap : 1024;
					uint64_t *n = realloc(s->ids, nc * sizeof(*n));
					if (!n)
						return s->err = -ENOMEM;
					s->ids = n;
					s->cap = nc;
				}
				s->ids[s->n++] = s->cur;
			}
			s->line++;
			s->cur = 0;
			s->in_id = 1;
		} else if (s->in_id) {
			if (ch >= '0' && ch <= '9' && s->cur < UINT64_MAX / 10)
				s->cur = s->cur * 10 + (uint64_t)(ch - '0');
			else
				s->in_id = 0; /* the first comma, or the header's "id" */
		}
	}
	return 0;
}

static void poll_one(struct fdb *db, struct api_stream *c)
{
	struct id_sink ids = {.in_id = 1};
	struct q_select sel = {.filter = c->filter, .order = Q_ORDER_ID_DESC, .limit = STREAM_POLL_FLOWS};
	struct q_error qe;
	sel.range.has_from = 1;
	sel.range.from_us = (int64_t)c->start_us;
	memset(&qe, 0, sizeof(qe));
	long rows = q_list_flows(db, NULL, &sel, Q_FMT_CSV, id_write, &ids, NULL, &qe);
	if (rows < 0 || ids.err) {
		if (rows < 0)
			fprintf(stderr, "podcap: api: stream filter: %s\n", qe.msg);
		free(ids.ids);
		return;
	}
	pthread_mutex_lock(&c->lock);
	if (c->strm)
		strm_set_flows(c->strm, ids.ids, ids.n);
	pthread_mutex_unlock(&c->lock);
	free(ids.ids);
}

static void *poller_main(void *arg)
{
	struct api *a = arg;
	struct fdb *db = NULL;
	char err[512];
	pthread_setname_np(pthread_self(), "podcap-sfilter");
	pthread_mutex_lock(&a->stream_lock);
	while (!a->stream_stop) {
		/* Streams the hub is done with leave the list (its reference goes);
		 * the others are polled, each with a reference of the round's. */
		struct api_stream *take[64], *gone = NULL, *c, **pp = &a->stream_list;
		size_t n = 0;
		while ((c = *pp)) {
			pthread_mutex_lock(&c->lock);
			int ended = c->strm == NULL;
			if (!ended && n < 64) {
				c->refs++;
				take[n++] = c;
			}
			pthread_mutex_unlock(&c->lock);
			if (ended) {
				*pp = c->next;
				c->next = gone;
				gone = c;
			} else {
				pp = &c->next;
			}
		}
		pthread_mutex_unlock(&a->stream_lock);
		while (gone) {
			c = gone;
			gone = c->next;
			ctx_unref(c);
		}
		if (n && !db) {
			struct fdb_config cfg;
			fdb_config_default(&cfg);
			cfg.readonly = 1;
			if (fdb_open(a->db_path, &cfg, &db, err, sizeof(err)) == 0)
				fdb_set_deadline(db, a->cfg.query_ms);
			else
				db = NULL; /* the agent may not have made it yet: next round */
		}
		for (size_t i = 0; i < n; i++) {
			if (db)
				poll_one(db, take[i]);
			ctx_unref(take[i]);
		}
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += STREAM_POLL_MS / 1000;
		pthread_mutex_lock(&a->stream_lock);
		if (!a->stream_stop)
			pthread_cond_timedwait(&a->stream_cond, &a->stream_lock, &ts);
	}
	/* the list's references go with the poller */
	struct api_stream *c = a->stream_list;
	a->stream_list = NULL;
	pthread_mutex_unlock(&a->stream_lock);
	while (c) {
		struct api_stream *next = c->next;
		ctx_unref(c);
		c = next;
	}
	fdb_close(db);
	return NULL;
}

/* Hands c to the poller (one more reference), starting it on first use. */
static int poll_add(struct api *a, struct api_stream *c)
{
	int rc = 0;
	pthread_mutex_lock(&a->stream_lock);
	if (a->stream_stop) {
		rc = -ESHUTDOWN;
	} else if (!a->poller_started) {
		if (pthread_create(&a->poller, NULL, poller_main, a) != 0)
			rc = -EAGAIN;
		else
			a->poller_started = 1;
	}
	if (rc == 0) {
		pthread_mutex_lock(&c->lock);
		c->refs++;
		pthread_mutex_unlock(&c->lock);
		c->next = a->stream_list;
		a->stream_list = c;
		pthread_cond_signal(&a->stream_cond);
	}
	pthread_mutex_unlock(&a->stream_lock);
	return rc;
}

void api_stream_stop(struct api *a)
{
	pthread_mutex_lock(&a->stream_lock);
	a->stream_stop = 1;
	pthread_cond_broadcast(&a->stream_cond);
	int started = a->poller_started;
	a->poller_started = 0;
	pthread_mutex_unlock(&a->stream_lock);
	if (started)
		pthread_join(a->poller, NULL);
}

/* ---- the handler ---- */

/* A yes/no parameter: absent = 0, "", 1, true, yes = 1; 0, false, no = 0. */
static int bool_param(struct srv_req *req, const char *name, int *out)
{
	const char *v = srv_req_query(req, name, NULL);
	*out = 0;
	if (!v)
		return 0;
	if (!*v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) {
		*out = 1;
		return 0;
	}
	if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
		return 0;
	srv_respond_error(req, 400, "%s: expected 1 or 0, true or false, not '%.40s'", name, v);
	return -1;
}

/* A whole number in [min, max]; absent = 0. */
static int u64_param(struct srv_req *req, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
	size_t len = 0;
	const char *v = srv_req_query(req, name, &len);
	*out = 0;
	if (!v || !len)
		return 0;
	uint64_t x = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9' || x > (UINT64_MAX - 9) / 10) {
			srv_respond_error(req, 400, "%s: not a whole number in %" PRIu64 "..%" PRIu64 ": '%.40s'",
					  name, min, max, v);
			return -1;
		}
		x = x * 10 + (uint64_t)(v[i] - '0');
	}
	if (x < min || x > max) {
		srv_respond_error(req, 400, "%s: %" PRIu64 " is outside %" PRIu64 "..%" PRIu64, name, x, min, max);
		return -1;
	}
	*out = x;
	return 0;
}

/* Does iface belong to the pod asked for?  want is "ns/name", or "name" for
 * any namespace. */
static int pod_matches(const char *pod, const char *want)
{
	if (!pod[0])
		return 0;
	if (strchr(want, '/'))
		return !strcmp(pod, want);
	const char *slash = strchr(pod, '/');
	return slash && !strcmp(slash + 1, want);
}

/* The observation points of pod / interface / target among the interfaces
 * captured now.  Returns the count (0 = none asked: every point), or -1 after
 * answering. */
static int resolve(struct api *a, struct srv_req *req, const char *target, const char *pod, const char *ns,
		   const char **ifaces, size_t nifaces, uint32_t *obs)
{
	char want[300];
	const char *pod_want = NULL;
	int n = 0;
	if (!target && !pod && !nifaces)
		return 0;
	pthread_mutex_lock(&a->cap_lock);
	const struct api_iface *f = a->ifaces;
	size_t nf = a->have_capture ? a->nifaces : 0;
	if (pod || target) {
		const char *name = pod ? pod : target;
		if (ns && *ns && !strchr(name, '/'))
			snprintf(want, sizeof(want), "%s/%s", ns, name);
		else
			snprintf(want, sizeof(want), "%s", name);
		pod_want = want;
	}
	const char *first_pod = NULL;
	int several = 0;
	for (size_t i = 0; pod_want && i < nf && n < STREAM_MAX_IFACES; i++) {
		if (!f[i].obs_id || !pod_matches(f[i].pod, pod_want))
			continue;
		if (first_pod && strcmp(first_pod, f[i].pod))
			several = 1;
		first_pod = f[i].pod;
		obs[n++] = f[i].obs_id;
	}
	if (several) {
		pthread_mutex_unlock(&a->cap_lock);
		srv_respond_error(req, 400, "pod name '%s' is in several namespaces: give namespace/name", pod_want);
		return -1;
	}
	if (pod && !n) {
		pthread_mutex_unlock(&a->cap_lock);
		srv_respond_error(req, 404, "no captured interface belongs to pod '%s' on this node", pod_want);
		return -1;
	}
	if (target && !n) {
		/* not a pod: an interface of that name */
		for (size_t i = 0; i < nf && n < STREAM_MAX_IFACES; i++)
			if (f[i].obs_id && !strcmp(f[i].iface, target))
				obs[n++] = f[i].obs_id;
		if (!n) {
			pthread_mutex_unlock(&a->cap_lock);
			srv_respond_error(req, 404, "no pod or interface '%s' is captured on this node", target);
			return -1;
		}
	}
	for (size_t k = 0; k < nifaces; k++) {
		int found = 0;
		for (size_t i = 0; i < nf && n < STREAM_MAX_IFACES; i++)
			if (f[i].obs_id && !strcmp(f[i].iface, ifaces[k])) {
				obs[n++] = f[i].obs_id;
				found = 1;
			}
		if (!found) {
			pthread_mutex_unlock(&a->cap_lock);
			srv_respond_error(req, 404, "interface '%s' is not captured on this node", ifaces[k]);
			return -1;
		}
	}
	pthread_mutex_unlock(&a->cap_lock);
	return n;
}

void api_h_stream(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct strm_hub *hub = __atomic_load_n(&a->hub, __ATOMIC_ACQUIRE);
	struct q_filter *filter = NULL;
	struct api_stream *c = NULL;
	uint32_t obs[STREAM_MAX_IFACES];
	const char *ifaces[16];
	char err[512];

	if (!hub) {
		if (strcmp(a->mode, "agent"))
			srv_respond_error(req, 409, "no live capture here: this is 'podcap serve' over a flow database; "
					  "live streams come from an agent ('podcap run --listen')");
		else {
			srv_add_header(req, "Retry-After", "1");
			srv_respond_error(req, 503, "the agent has not started capturing yet");
		}
		return;
	}
	struct strm_spec spec = {0};
	uint64_t snaplen, seconds;
	if (u64_param(req, "snaplen", 1, PN_SNAPLEN_MAX, &snaplen) < 0 ||
	    u64_param(req, "count", 1, UINT64_MAX, &spec.max_packets) < 0 ||
	    u64_param(req, "bytes", 1, UINT64_MAX, &spec.max_bytes) < 0 ||
	    u64_param(req, "seconds", 1, 366u * 86400u, &seconds) < 0 ||
	    bool_param(req, "inner", &spec.inner) < 0)
		return;
	spec.snaplen = (uint32_t)snaplen;
	spec.max_us = seconds * 1000000u;
	const char *target = srv_req_query(req, "target", NULL), *pod = srv_req_query(req, "pod", NULL);
	const char *ns = srv_req_query(req, "namespace", NULL);
	/* srv_req_query_all returns how many there are, storing at most 16: more
	 * is a bad request, not a read past ifaces[] */
	size_t nifaces = srv_req_query_all(req, "iface", ifaces, sizeof(ifaces) / sizeof(ifaces[0]));
	if (nifaces > sizeof(ifaces) / sizeof(ifaces[0])) {
		srv_respond_error(req, 400, "at most %zu iface parameters (%zu given)", sizeof(ifaces) / sizeof(ifaces[0]),
				  nifaces);
		return;
	}
	if (target && !*target)
		target = NULL;
	if (pod && !*pod)
		pod = NULL;
	if (target && (pod || nifaces)) {
		srv_respond_error(req, 400, "target is a pod or an interface: give target, or pod and iface, not both");
		return;
	}
	size_t flen = 0;
	const char *ftext = srv_req_query(req, "filter", &flen);
	if (ftext && flen) {
		struct q_error qe;
		memset(&qe, 0, sizeof(qe));
		if (q_parse(ftext, flen, NULL, &filter, &qe) < 0) {
			api_query_error(req, &qe, "filter");
			return;
		}
		spec.flows_only = 1;
	}
	int n = resolve(a, req, target, pod, ns, ifaces, nifaces, obs);
	if (n < 0)
		goto out;
	spec.obs = obs;
	spec.nobs = (size_t)n;
	spec.bpf = srv_req_query(req, "bpf", NULL);

	if (!(c = calloc(1, sizeof(*c)))) {
		srv_respond_error(req, 503, "out of memory");
		goto out;
	}
	pthread_mutex_init(&c->lock, NULL);
	c->a = a;
	c->req = req;
	c->start_us = api_now_us();
	/* one reference for the hub's done(), one for the server's close callback */
	c->refs = 2;
	size_t qmax = a->cfg.http.stream_queue_bytes ? a->cfg.http.stream_queue_bytes : 256u * 1024u;
	struct strm_output out = {.try_write = out_try_write, .done = out_done, .arg = c,
				  .max_write = qmax < STREAM_WRITE_MAX ? qmax : STREAM_WRITE_MAX};
	int rc = strm_open(hub, &spec, &out, &c->strm, err, sizeof(err));
	if (rc < 0) {
		if (rc == -EINVAL && spec.bpf)
			srv_respond_error(req, 400, "bpf: %s", err);
		else if (rc == -EBUSY) {
			srv_add_header(req, "Retry-After", "5");
			srv_respond_error(req, 429, "%s", err);
		} else
			srv_respond_error(req, rc == -ESHUTDOWN ? 503 : 500, "%s", err);
		pthread_mutex_destroy(&c->lock);
		free(c);
		c = NULL;
		goto out;
	}
	char id[24];
	snprintf(id, sizeof(id), "%" PRIu64, strm_id(c->strm));
	srv_add_header(req, "X-Podcap-Stream", id);
	if (srv_stream_begin(req, 200, "application/x-pcapng") < 0) {
		/* The client is gone already: the hub still calls done(), which
		 * releases the request (detached to it); nothing is written. */
		c->refs = 1; /* no close callback */
		strm_cancel(c->strm);
		srv_req_detach(req);
		goto out;
	}
	if (filter) {
		c->filter = filter;
		filter = NULL;
		if (poll_add(a, c) < 0) {
			/* no poller: the stream would pass nothing; end it */
			strm_cancel(c->strm);
		}
	}
	srv_req_on_close(req, on_close, c);
	srv_req_detach(req);
	strm_start(c->strm);
out:
	q_filter_free(filter);
}

void api_attach_streams(struct api *a, struct strm_hub *h)
{
	__atomic_store_n(&a->hub, h, __ATOMIC_RELEASE);
}
