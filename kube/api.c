/* api.c — the Kubernetes API source: list + watch of pods, Services and
 * EndpointSlices on one thread, all three requests at once on one libcurl multi
 * handle.
 *
 * Per resource, the cycle client-go's reflector runs:
 *   list (paginated, ?limit=N&continue=...) into a staging array; only a
 *   complete list replaces the directory's set (so a list that fails half-way
 *   changes nothing), and its metadata.resourceVersion starts the watch;
 *   watch (?watch=1&allowWatchBookmarks=true&resourceVersion=RV&timeoutSeconds=T)
 *   one JSON event per line, parsed as each line completes; ADDED/MODIFIED/
 *   DELETED change the directory, BOOKMARK only moves RV;
 *   the server ends the watch after T: reopen from RV at once;
 *   410 Gone (HTTP status, or an ERROR event with code 410), or an event we
 *   could not read (garbage, over the size bound): relist, since events may be
 *   lost;
 *   any other failure (connection refused or dropped, 5xx, a watch silent past
 *   T + grace, a list past its timeout): retry after an exponential back-off
 *   with jitter, a watch from RV, a list from the start.
 * The directory is never emptied by a failure: lookups keep answering with the
 * last good state and the status says since when it is stale. */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kube_int.h"

enum { R_PODS = 0, R_SVCS, R_SLICES };
enum { REQ_NONE = 0, REQ_LIST, REQ_WATCH };
#define ERRBODY_MAX 65536

struct kres {
	struct kapi *api;
	int idx;
	const char *name, *path;
	char *selector;           /* "&fieldSelector=..." or "" */
	int req;                  /* REQ_* in flight */
	CURL *easy;
	struct curl_slist *hdrs;
	char curl_err[CURL_ERROR_SIZE];
	char *buf;                /* list body / watch partial line / error body */
	size_t len, cap;
	int abort_kind;           /* why the write callback stopped the transfer */
	char abort_msg[KUBE_ERR_LEN];
	int established;          /* watch answered 200 */
	int failing;              /* the last request failed; cleared by a good one */
	uint64_t established_at;
	char rv[64];
	char *cont;               /* list continue token */
	char list_rv[64];
	unsigned page;            /* ?limit= now; shrinks when a page is too big */
	struct kpod **pods;       /* staging for the list under way */
	struct ksvc **svcs;
	struct kslice **slices;
	size_t nstage, capstage;
	size_t skipped;           /* objects of this list refused by the bounds */
	char skip_msg[KUBE_ERR_LEN];
	int listed;               /* listed once */
	int relist_next;          /* the next request is a list */
	uint64_t next_at;         /* monotonic us: start the next request then */
	unsigned backoff_ms;
	uint64_t req_start, last_byte;
	unsigned watch_timeout;
	uint64_t watch_events;
	uint64_t list_start;
};

enum { ABORT_NONE = 0, ABORT_RELIST, ABORT_RETRY, ABORT_TOOBIG };

struct kapi {
	struct kube *k;
	struct kcreds creds;
	int incluster;
	CURLM *multi;
	struct kres res[KUBE_MAX_RES];
	unsigned n_res;
	uint64_t rng;
	uint64_t stale_since;
	int was_connected;
};

/* ---- small helpers ---------------------------------------------------------------- */

static unsigned rnd(struct kapi *a, unsigned n)
{
	a->rng ^= a->rng << 13;
	a->rng ^= a->rng >> 7;
	a->rng ^= a->rng << 17;
	return n ? (unsigned)(a->rng % n) : 0;
}

static struct kube_res_status *rst(struct kres *r)
{
	return &r->api->k->st.res[r->idx];
}

/* Records an error in the resource's status and the log. */
static void res_error(struct kres *r, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void res_error(struct kres *r, int level, const char *fmt, ...)
{
	struct kube *k = r->api->k;
	char msg[KUBE_ERR_LEN];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	uint64_t now = know_us();
	pthread_mutex_lock(&k->st_lock);
	struct kube_res_status *s = rst(r);
	s->errors++;
	s->last_error_us = now;
	snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
	k->st.last_error_us = now;
	snprintf(k->st.last_error, sizeof(k->st.last_error), "%s: %.200s", r->name, msg);
	pthread_mutex_unlock(&k->st_lock);
	klog(k, level, "%s: %s", r->name, msg);
}

static void res_state(struct kres *r, int state)
{
	struct kube *k = r->api->k;
	pthread_mutex_lock(&k->st_lock);
	rst(r)->state = (uint8_t)state;
	uint64_t mono = kmono_us();
	rst(r)->retry_at_us = state == KUBE_RES_BACKOFF ?
				      know_us() + (r->next_at > mono ? r->next_at - mono : 0) : 0;
	pthread_mutex_unlock(&k->st_lock);
}

static void stage_free(struct kres *r)
{
	for (size_t i = 0; i < r->nstage; i++) {
		if (r->idx == R_PODS)
			kpod_free(r->pods[i]);
		else if (r->idx == R_SVCS)
			ksvc_free(r->svcs[i]);
		else
			kslice_free(r->slices[i]);
	}
	r->nstage = 0;
	r->skipped = 0;
	free(r->cont);
	r->cont = NULL;
}

static int stage_push(struct kres *r, void *obj)
{
	if (r->nstage == r->capstage) {
		size_t ncap = r->capstage ? r->capstage * 2 : 256;
		void *np;
		if (r->idx == R_PODS)
			np = realloc(r->pods, ncap * sizeof(*r->pods));
		else if (r->idx == R_SVCS)
			np = realloc(r->svcs, ncap * sizeof(*r->svcs));
		else
			np = realloc(r->slices, ncap * sizeof(*r->slices));
		if (!np)
			return -ENOMEM;
		if (r->idx == R_PODS)
			r->pods = np;
		else if (r->idx == R_SVCS)
			r->svcs = np;
		else
			r->slices = np;
		r->capstage = ncap;
	}
	if (r->idx == R_PODS)
		r->pods[r->nstage++] = obj;
	else if (r->idx == R_SVCS)
		r->svcs[r->nstage++] = obj;
	else
		r->slices[r->nstage++] = obj;
	return 0;
}

static void *parse_obj(struct kres *r, json_t *o, char *err, size_t errlen)
{
	if (r->idx == R_PODS)
		return kobj_pod(o, err, errlen);
	if (r->idx == R_SVCS)
		return kobj_svc(o, err, errlen);
	return kobj_slice(o, err, errlen);
}

static void buf_reset(struct kres *r)
{
	r->len = 0;
}

static int buf_append(struct kres *r, const char *p, size_t n)
{
	if (r->len + n + 1 > r->cap) {
		size_t ncap = r->cap ? r->cap : 16384;
		while (ncap < r->len + n + 1)
			ncap *= 2;
		char *nb = realloc(r->buf, ncap);
		if (!nb)
			return -ENOMEM;
		r->buf = nb;
		r->cap = ncap;
	}
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	r->buf[r->len] = '\0';
	return 0;
}

/* The message of a Kubernetes Status body, or the start of the body. */
static void body_message(const char *body, size_t len, char *out, size_t outlen)
{
	json_error_t je;
	json_t *j = len ? json_loadb(body, len, 0, &je) : NULL;
	const char *m = json_string_value(json_object_get(j, "message"));
	if (m)
		snprintf(out, outlen, "%s", m);
	else if (len)
		snprintf(out, outlen, "%.*s", (int)(len < 120 ? len : 120), body);
	else
		out[0] = '\0';
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	json_decref(j);
}

/* ---- watch events ------------------------------------------------------------------ */

static void set_rv(struct kres *r, json_t *obj)
{
	const char *rv = json_string_value(json_object_get(json_object_get(obj, "metadata"),
							   "resourceVersion"));
	if (rv && rv[0] && strlen(rv) < sizeof(r->rv))
		snprintf(r->rv, sizeof(r->rv), "%s", rv);
}

/* One watch line.  Returns 0 to go on, or an ABORT_* kind (message in
 * r->abort_msg) to stop the watch. */
static int watch_event(struct kres *r, const char *line, size_t len)
{
	struct kube *k = r->api->k;
	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return 0;
	json_error_t je;
	json_t *ev = json_loadb(line, len, 0, &je);
	if (!ev) {
		snprintf(r->abort_msg, sizeof(r->abort_msg),
			 "watch: unreadable event (%s at byte %d of %zu): relisting, events may be lost",
			 je.text, je.position, len);
		return ABORT_RELIST;
	}
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t *obj = json_object_get(ev, "object");
	int ret = 0, applied = 0, bookmark = 0;
	uint64_t now = know_us();
	char err[KUBE_ERR_LEN] = "";
	if (!type || !json_is_object(obj)) {
		snprintf(r->abort_msg, sizeof(r->abort_msg),
			 "watch: event without type or object: relisting, events may be lost");
		ret = ABORT_RELIST;
	} else if (!strcmp(type, "ADDED") || !strcmp(type, "MODIFIED")) {
		void *o = parse_obj(r, obj, err, sizeof(err));
		if (o) {
			int rr = r->idx == R_PODS ? kdir_pod_upsert(&k->dir, o, now) :
				 r->idx == R_SVCS ? kdir_svc_upsert(&k->dir, o, now) :
						    kdir_slice_upsert(&k->dir, o, now);
			if (rr == -ENOSPC)
				snprintf(err, sizeof(err), "more than %zu %s: one not added",
					 k->cfg.max_objects, r->name);
		}
		set_rv(r, obj);
		applied = 1;
	} else if (!strcmp(type, "DELETED")) {
		char key[400];
		if (kobj_key(obj, r->idx == R_PODS, key, sizeof(key)) == 0) {
			if (r->idx == R_PODS)
				kdir_pod_delete(&k->dir, key, now);
			else if (r->idx == R_SVCS)
				kdir_svc_delete(&k->dir, key, now);
			else
				kdir_slice_delete(&k->dir, key, now);
		} else {
			snprintf(err, sizeof(err), "DELETED event without a usable name");
		}
		set_rv(r, obj);
		applied = 1;
	} else if (!strcmp(type, "BOOKMARK")) {
		set_rv(r, obj);
		bookmark = 1;
	} else if (!strcmp(type, "ERROR")) {
		json_int_t code = json_integer_value(json_object_get(obj, "code"));
		char msg[160];
		const char *m = json_string_value(json_object_get(obj, "message"));
		snprintf(msg, sizeof(msg), "%s", m ? m : "");
		if (code == 410) {
			pthread_mutex_lock(&k->st_lock);
			rst(r)->gone++;
			pthread_mutex_unlock(&k->st_lock);
			snprintf(r->abort_msg, sizeof(r->abort_msg), "watch: 410 Gone (%s): relisting", msg);
			ret = ABORT_RELIST;
		} else {
			snprintf(r->abort_msg, sizeof(r->abort_msg), "watch: ERROR event code %lld: %s",
				 (long long)code, msg);
			ret = ABORT_RETRY;
		}
	} else {
		snprintf(err, sizeof(err), "watch: unknown event type \"%.32s\" ignored", type);
	}
	json_decref(ev);
	pthread_mutex_lock(&k->st_lock);
	struct kube_res_status *s = rst(r);
	if (applied)
		s->events++;
	if (bookmark)
		s->bookmarks++;
	if (applied || bookmark)
		s->last_event_us = now;
	snprintf(s->resource_version, sizeof(s->resource_version), "%s", r->rv);
	pthread_mutex_unlock(&k->st_lock);
	if (applied || bookmark)
		r->watch_events++;
	if (err[0])
		res_error(r, KUBE_LOG_WARN, "%s", err);
	return ret;
}

static size_t on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct kres *r = arg;
	struct kube *k = r->api->k;
	size_t n = size * nmemb;
	long code = 0;
	r->last_byte = kmono_us();
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
	if (r->req == REQ_LIST || code != 200) {
		/* A list page, or an error answer: kept whole, bounded. */
		size_t max = r->req == REQ_LIST ? k->cfg.max_response_bytes : ERRBODY_MAX;
		if (r->len + n > max) {
			snprintf(r->abort_msg, sizeof(r->abort_msg),
				 "%s answer larger than %zu bytes: refused", r->req == REQ_LIST ? "list" : "error",
				 max);
			r->abort_kind = ABORT_TOOBIG;
			return 0;
		}
		if (buf_append(r, p, n) < 0) {
			snprintf(r->abort_msg, sizeof(r->abort_msg), "out of memory");
			r->abort_kind = ABORT_TOOBIG;
			return 0;
		}
		return n;
	}
	/* Watch: one event per line, handled as each line completes; only the
	 * unfinished line is kept, and it is bounded. */
	size_t off = 0;
	while (off < n) {
		char *nl = memchr(p + off, '\n', n - off);
		size_t chunk = nl ? (size_t)(nl - (p + off)) : n - off;
		if (r->len + chunk > k->cfg.max_event_bytes) {
			snprintf(r->abort_msg, sizeof(r->abort_msg),
				 "watch: event longer than %zu bytes: relisting", k->cfg.max_event_bytes);
			r->abort_kind = ABORT_RELIST;
			return 0;
		}
		if (buf_append(r, p + off, chunk) < 0) {
			snprintf(r->abort_msg, sizeof(r->abort_msg), "out of memory");
			r->abort_kind = ABORT_RELIST;
			return 0;
		}
		off += chunk;
		if (!nl)
			break;
		off++; /* the newline */
		int a = watch_event(r, r->buf, r->len);
		buf_reset(r);
		if (a) {
			r->abort_kind = a;
			return 0;
		}
	}
	return n;
}

/* ---- requests ---------------------------------------------------------------------- */

static int start_request(struct kres *r)
{
	struct kapi *a = r->api;
	struct kube *k = a->k;
	char url[2048], tok[16400], err[KUBE_ERR_LEN];
	int list = !r->listed || r->relist_next || r->cont;
	if (list) {
		char *c = r->cont ? curl_easy_escape(NULL, r->cont, 0) : NULL;
		snprintf(url, sizeof(url), "%s%s?limit=%u%s%s%s", a->creds.server, r->path,
			 r->page, c ? "&continue=" : "", c ? c : "", r->selector);
		curl_free(c);
	} else {
		char *rv = curl_easy_escape(NULL, r->rv, 0);
		/* As client-go: a timeout between the minimum and twice it, so the
		 * watches of many agents do not all end at once. */
		r->watch_timeout = k->cfg.watch_timeout_s + rnd(a, k->cfg.watch_timeout_s + 1);
		snprintf(url, sizeof(url),
			 "%s%s?allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%u&watch=1%s",
			 a->creds.server, r->path, rv ? rv : "", r->watch_timeout, r->selector);
		curl_free(rv);
	}
	if (kcreds_token(&a->creds, tok, sizeof(tok), err, sizeof(err)) < 0) {
		res_error(r, KUBE_LOG_ERROR, "%s", err);
		return -EIO;
	}
	CURL *e = curl_easy_init();
	if (!e)
		return -ENOMEM;
	struct curl_slist *h = curl_slist_append(NULL, "Accept: application/json");
	if (tok[0]) {
		char auth[16450];
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", tok);
		struct curl_slist *h2 = curl_slist_append(h, auth);
		explicit_bzero(auth, sizeof(auth));
		h = h2 ? h2 : h;
	}
	explicit_bzero(tok, sizeof(tok));
	r->hdrs = h;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "podcap/" PODCAP_VERSION " (kube)");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_err);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)k->cfg.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, ""); /* gzip lists; bounds apply decoded */
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);        /* share one HTTP/2 connection */
	if (list)
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)k->cfg.list_timeout_ms);
	if (a->incluster)
		curl_easy_setopt(e, CURLOPT_NOPROXY, "*"); /* the Service IP is never proxied */
	if (a->creds.ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, a->creds.ca_file);
	if (a->creds.ca_pem) {
		struct curl_blob b = {a->creds.ca_pem, a->creds.ca_pem_len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b);
	}
	if (a->creds.cert_file[0]) {
		curl_easy_setopt(e, CURLOPT_SSLCERT, a->creds.cert_file);
		curl_easy_setopt(e, CURLOPT_SSLKEY, a->creds.key_file);
	}
	if (a->creds.cert_pem) {
		struct curl_blob c = {a->creds.cert_pem, a->creds.cert_pem_len, CURL_BLOB_COPY};
		struct curl_blob kk = {a->creds.key_pem, a->creds.key_pem_len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &c);
		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kk);
	}
	if (a->creds.insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	if (a->creds.username) {
		curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(e, CURLOPT_USERNAME, a->creds.username);
		curl_easy_setopt(e, CURLOPT_PASSWORD, a->creds.password ? a->creds.password : "");
	}
	r->easy = e;
	r->req = list ? REQ_LIST : REQ_WATCH;
	r->abort_kind = ABORT_NONE;
	r->abort_msg[0] = r->curl_err[0] = '\0';
	r->established = 0;
	r->watch_events = 0;
	r->req_start = r->last_byte = kmono_us();
	if (list && !r->cont) {
		r->list_start = r->req_start;
		r->skipped = 0;
	}
	buf_reset(r);
	if (curl_multi_add_handle(a->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		curl_slist_free_all(h);
		r->easy = NULL;
		r->hdrs = NULL;
		r->req = REQ_NONE;
		return -ENOMEM;
	}
	if (!list) {
		pthread_mutex_lock(&k->st_lock);
		rst(r)->watches++;
		pthread_mutex_unlock(&k->st_lock);
	}
	res_state(r, list ? KUBE_RES_LISTING : KUBE_RES_IDLE);
	return 0;
}

static void end_request(struct kres *r)
{
	if (r->easy) {
		curl_multi_remove_handle(r->api->multi, r->easy);
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->hdrs);
	r->easy = NULL;
	r->hdrs = NULL;
	r->req = REQ_NONE;
	r->established = 0;
}

/* Failure: keep what we have, try again later. */
static void backoff(struct kres *r, int relist)
{
	struct kube *k = r->api->k;
	unsigned b = r->backoff_ms ? r->backoff_ms * 2 : k->cfg.backoff_initial_ms;
	if (b > k->cfg.backoff_max_ms)
		b = k->cfg.backoff_max_ms;
	r->backoff_ms = b;
	r->failing = 1;
	/* "Equal jitter": half fixed, half random, so agents restarted together
	 * spread their retries without ever retrying at once. */
	unsigned delay = b / 2 + rnd(r->api, b / 2 + 1);
	r->next_at = kmono_us() + (uint64_t)delay * 1000;
	if (relist)
		r->relist_next = 1;
	pthread_mutex_lock(&k->st_lock);
	if (r->listed && !relist)
		rst(r)->reconnects++;
	pthread_mutex_unlock(&k->st_lock);
	res_state(r, KUBE_RES_BACKOFF);
}

static void commit_list(struct kres *r)
{
	struct kube *k = r->api->k;
	uint64_t now = know_us();
	size_t n = r->nstage, refused;
	if (r->idx == R_PODS)
		refused = kdir_pods_replace(&k->dir, r->pods, n, KPOD_SRC_WATCH, now);
	else if (r->idx == R_SVCS)
		refused = kdir_svcs_replace(&k->dir, r->svcs, n, now);
	else
		refused = kdir_slices_replace(&k->dir, r->slices, n, now);
	r->nstage = 0; /* the directory owns them now */
	snprintf(r->rv, sizeof(r->rv), "%s", r->list_rv);
	int first = !r->listed;
	r->listed = 1;
	r->relist_next = 0;
	r->backoff_ms = 0;
	r->failing = 0;
	r->next_at = 0;
	pthread_mutex_lock(&k->st_lock);
	struct kube_res_status *s = rst(r);
	s->lists++;
	if (!first)
		s->relists++;
	s->synced = 1;
	s->last_sync_us = now;
	s->objects = n - refused;
	snprintf(s->resource_version, sizeof(s->resource_version), "%s", r->rv);
	pthread_cond_broadcast(&k->st_cond);
	pthread_mutex_unlock(&k->st_lock);
	klog(k, first ? KUBE_LOG_INFO : KUBE_LOG_WARN, "%s: %slisted %zu in %.0f ms (resourceVersion %s)%s",
	     r->name, first ? "" : "re", n - refused, (double)(kmono_us() - r->list_start) / 1000.0,
	     r->rv, refused ? "; some refused: too many objects" : "");
	if (r->skipped)
		res_error(r, KUBE_LOG_WARN, "%zu objects of the list skipped, e.g. %s", r->skipped,
			  r->skip_msg);
	if (refused)
		res_error(r, KUBE_LOG_WARN, "%zu objects refused: more than %zu %s", refused,
			  k->cfg.max_objects, r->name);
}

static void list_done(struct kres *r, CURLcode cres, long code)
{
	struct kube *k = r->api->k;
	char msg[200];
	if (r->abort_kind == ABORT_TOOBIG) {
		if (r->page > 10) {
			/* Big objects: smaller pages keep each answer (and the parse of
			 * it, about 11 times its size) under the bound. */
			r->page = r->page / 4 > 10 ? r->page / 4 : 10;
			res_error(r, KUBE_LOG_WARN, "%s: listing again %u at a time", r->abort_msg,
				  r->page);
			stage_free(r);
			r->next_at = 0;
			return;
		}
		res_error(r, KUBE_LOG_ERROR, "%s; keeping the previous state", r->abort_msg);
		stage_free(r);
		backoff(r, 1);
		return;
	}
	if (cres != CURLE_OK) {
		res_error(r, KUBE_LOG_ERROR, "list failed: %s; keeping the previous state",
			  r->curl_err[0] ? r->curl_err : curl_easy_strerror(cres));
		stage_free(r);
		backoff(r, 1);
		return;
	}
	if (code == 410 && r->cont) {
		/* The continue token expired between pages: start the list again. */
		pthread_mutex_lock(&k->st_lock);
		rst(r)->gone++;
		pthread_mutex_unlock(&k->st_lock);
		klog(k, KUBE_LOG_WARN, "%s: list continue token expired (410): listing again", r->name);
		stage_free(r);
		r->next_at = 0;
		return;
	}
	if (code != 200) {
		body_message(r->buf, r->len, msg, sizeof(msg));
		res_error(r, KUBE_LOG_ERROR, "list failed: HTTP %ld%s%s; keeping the previous state", code,
			  msg[0] ? ": " : "", msg);
		stage_free(r);
		backoff(r, 1);
		return;
	}
	json_error_t je;
	json_t *j = json_loadb(r->buf, r->len, 0, &je);
	buf_reset(r);
	json_t *items = json_object_get(j, "items");
	if (!j || !(json_is_array(items) || json_is_null(items))) {
		if (!j)
			res_error(r, KUBE_LOG_ERROR,
				  "list: unreadable JSON (%s at line %d column %d); keeping the previous state",
				  je.text, je.line, je.column);
		else
			res_error(r, KUBE_LOG_ERROR, "list: answer without an items array; keeping the "
				  "previous state");
		json_decref(j);
		stage_free(r);
		backoff(r, 1);
		return;
	}
	json_t *md = json_object_get(j, "metadata");
	const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
	const char *cont = json_string_value(json_object_get(md, "continue"));
	if (!rv || !rv[0] || strlen(rv) >= sizeof(r->list_rv)) {
		res_error(r, KUBE_LOG_ERROR, "list: no usable metadata.resourceVersion; keeping the "
			  "previous state");
		json_decref(j);
		stage_free(r);
		backoff(r, 1);
		return;
	}
	snprintf(r->list_rv, sizeof(r->list_rv), "%s", rv);
	size_t i;
	json_t *it;
	json_array_foreach(items, i, it) {
		char err[KUBE_ERR_LEN];
		if (r->nstage >= k->cfg.max_objects) {
			res_error(r, KUBE_LOG_ERROR, "list: more than %zu %s; keeping the previous state",
				  k->cfg.max_objects, r->name);
			json_decref(j);
			stage_free(r);
			backoff(r, 1);
			return;
		}
		void *o = parse_obj(r, it, err, sizeof(err));
		if (!o) {
			if (!r->skipped++)
				snprintf(r->skip_msg, sizeof(r->skip_msg), "%s", err);
			continue;
		}
		if (stage_push(r, o) < 0) {
			res_error(r, KUBE_LOG_ERROR, "list: out of memory; keeping the previous state");
			free(o); /* each object is one allocation */
			json_decref(j);
			stage_free(r);
			backoff(r, 1);
			return;
		}
	}
	free(r->cont);
	r->cont = cont && cont[0] ? strdup(cont) : NULL;
	json_decref(j);
	if (r->cont) {
		r->next_at = 0; /* next page at once */
		return;
	}
	commit_list(r);
}

static void watch_done(struct kres *r, CURLcode cres, long code)
{
	struct kube *k = r->api->k;
	char msg[200];
	if (r->abort_kind == ABORT_RELIST || r->abort_kind == ABORT_TOOBIG) {
		int gone = strstr(r->abort_msg, "410") != NULL;
		res_error(r, gone ? KUBE_LOG_WARN : KUBE_LOG_ERROR, "%s", r->abort_msg);
		if (gone) {
			/* Expected now and then (the watch cache moved on): relist now. */
			r->relist_next = 1;
			r->next_at = 0;
			res_state(r, KUBE_RES_IDLE);
		} else {
			backoff(r, 1);
		}
		return;
	}
	if (r->abort_kind == ABORT_RETRY) {
		res_error(r, KUBE_LOG_ERROR, "%s; keeping the current state", r->abort_msg);
		backoff(r, 0);
		return;
	}
	if (code == 410) {
		pthread_mutex_lock(&k->st_lock);
		rst(r)->gone++;
		pthread_mutex_unlock(&k->st_lock);
		body_message(r->buf, r->len, msg, sizeof(msg));
		res_error(r, KUBE_LOG_WARN, "watch: HTTP 410 Gone (%s): relisting", msg);
		r->relist_next = 1;
		r->next_at = 0;
		res_state(r, KUBE_RES_IDLE);
		return;
	}
	if (cres == CURLE_OK && code == 200) {
		/* The server closed the watch at timeoutSeconds: reopen from RV.  A
		 * server that closes at once over and over gets the back-off. */
		if (r->watch_events == 0 && kmono_us() - r->req_start < 1000000) {
			res_error(r, KUBE_LOG_WARN, "watch: closed by the server at once");
			backoff(r, 0);
			return;
		}
		r->backoff_ms = 0;
		r->next_at = 0;
		res_state(r, KUBE_RES_IDLE);
		return;
	}
	if (cres != CURLE_OK)
		snprintf(msg, sizeof(msg), "%.190s", r->curl_err[0] ? r->curl_err : curl_easy_strerror(cres));
	else
		body_message(r->buf, r->len, msg, sizeof(msg));
	if (cres == CURLE_OK)
		res_error(r, KUBE_LOG_ERROR, "watch failed: HTTP %ld%s%s; keeping the current state", code,
			  msg[0] ? ": " : "", msg);
	else
		res_error(r, KUBE_LOG_ERROR, "watch failed: %s; keeping the current state", msg);
	backoff(r, 0);
}

/* ---- the thread ----------------------------------------------------------------------- */

/* Connected: every resource listed and its watch running or reopening normally
 * (not failing, not waiting to relist).  A watch the server ends at
 * timeoutSeconds and we reopen at once does not count as a disconnection. */
static void update_connected(struct kapi *a)
{
	struct kube *k = a->k;
	int all = 1;
	for (unsigned i = 0; i < a->n_res; i++) {
		struct kres *r = &a->res[i];
		if (!r->listed || r->failing || r->relist_next)
			all = 0;
	}
	pthread_mutex_lock(&k->st_lock);
	for (unsigned i = 0; i < a->n_res; i++)
		if (a->res[i].established)
			k->st.res[i].state = KUBE_RES_WATCHING;
	if (all != k->st.connected) {
		k->st.connected = (uint8_t)all;
		k->st.stale = !all;
		k->st.stale_since_us = all ? 0 : know_us();
	}
	pthread_mutex_unlock(&k->st_lock);
	if (all && !a->was_connected)
		klog(k, KUBE_LOG_INFO, "in sync: watching pods, services and endpointslices");
	if (!all && a->was_connected)
		klog(k, KUBE_LOG_WARN, "out of sync: names may go stale (the last known state is kept)");
	a->was_connected = all;
}

void *kapi_thread(void *arg)
{
	struct kube *k = arg;
	struct kapi *a = k->api;
	uint64_t last_expire = 0;
	while (!atomic_load(&k->stop)) {
		uint64_t now = kmono_us();
		for (unsigned i = 0; i < a->n_res; i++) {
			struct kres *r = &a->res[i];
			if (r->req == REQ_NONE && now >= r->next_at) {
				if (start_request(r) < 0)
					backoff(r, !r->listed || r->relist_next);
			}
		}
		int running;
		curl_multi_perform(a->multi, &running);
		CURLMsg *m;
		int left;
		while ((m = curl_multi_info_read(a->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			struct kres *r = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
			if (!r)
				continue;
			CURLcode cres = m->data.result;
			long code = 0;
			curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
			int req = r->req;
			if (req == REQ_WATCH && r->len && cres == CURLE_OK && code == 200 && !r->abort_kind) {
				/* A last event without its newline. */
				int ab = watch_event(r, r->buf, r->len);
				if (ab)
					r->abort_kind = ab;
				buf_reset(r);
			}
			end_request(r);
			if (req == REQ_LIST)
				list_done(r, cres, code);
			else
				watch_done(r, cres, code);
		}
		now = kmono_us();
		for (unsigned i = 0; i < a->n_res; i++) {
			struct kres *r = &a->res[i];
			if (r->req != REQ_WATCH)
				continue;
			if (!r->established) {
				long code = 0;
				curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
				if (code == 200) {
					r->established = 1;
					r->failing = 0;
					r->established_at = now;
				}
			}
			/* The back-off starts over only once a watch has stayed up a
			 * while: a server that accepts and then drops every watch gets
			 * ever longer pauses, not a tight loop. */
			if (r->established && r->backoff_ms && now - r->established_at > 10000000)
				r->backoff_ms = 0;
			uint64_t limit = (uint64_t)(r->watch_timeout + k->cfg.watch_grace_s) * 1000000;
			if (now - r->last_byte > limit) {
				end_request(r);
				res_error(r, KUBE_LOG_ERROR,
					  "watch: nothing received for %u s (asked for timeoutSeconds=%u): "
					  "reconnecting; keeping the current state",
					  r->watch_timeout + k->cfg.watch_grace_s, r->watch_timeout);
				backoff(r, 0);
			}
		}
		update_connected(a);
		uint64_t wall = know_us();
		if (wall - last_expire > 1000000) {
			kdir_expire(&k->dir, wall);
			last_expire = wall;
		}
		/* Sleep until data, the next retry, or at most 200 ms (idle checks). */
		uint64_t wait = 200000;
		now = kmono_us();
		for (unsigned i = 0; i < a->n_res; i++) {
			struct kres *r = &a->res[i];
			if (r->req != REQ_NONE)
				continue;
			uint64_t w = r->next_at > now ? r->next_at - now : 0;
			if (w < wait)
				wait = w;
		}
		if (wait)
			curl_multi_poll(a->multi, NULL, 0, (int)(wait / 1000) + 1, NULL);
	}
	return NULL;
}

/* ---- open / close ----------------------------------------------------------------------- */

int kapi_open(struct kube *k, char *err, size_t errlen)
{
	struct kapi *a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	a->k = k;
	int r;
	if (k->cfg.kubeconfig) {
		r = kcreds_kubeconfig(k->cfg.kubeconfig, k->cfg.context, &a->creds, err, errlen);
	} else {
		r = kcreds_incluster(k->cfg.serviceaccount_dir, &a->creds, err, errlen);
		a->incluster = 1;
	}
	if (r < 0) {
		free(a);
		return r;
	}
	a->multi = curl_multi_init();
	if (!a->multi) {
		kcreds_free(&a->creds);
		free(a);
		snprintf(err, errlen, "curl_multi_init failed");
		return -ENOMEM;
	}
	curl_multi_setopt(a->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	a->rng = know_us() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)a;
	if (!a->rng)
		a->rng = 88172645463325252ull;
	static const struct {
		const char *name, *path;
	} defs[KUBE_MAX_RES] = {
		{"pods", "/api/v1/pods"},
		{"services", "/api/v1/services"},
		{"endpointslices", "/apis/discovery.k8s.io/v1/endpointslices"},
	};
	a->n_res = KUBE_MAX_RES;
	for (unsigned i = 0; i < a->n_res; i++) {
		struct kres *rs = &a->res[i];
		rs->api = a;
		rs->idx = (int)i;
		rs->name = defs[i].name;
		rs->path = defs[i].path;
		rs->selector = strdup("");
		rs->page = k->cfg.page_size;
		snprintf(k->st.res[i].name, sizeof(k->st.res[i].name), "%s", defs[i].name);
	}
	if (k->cfg.pod_scope == KUBE_PODS_NODE) {
		char sel[400];
		snprintf(sel, sizeof(sel), "spec.nodeName=%s", k->cfg.node);
		char *esc = curl_easy_escape(NULL, sel, 0);
		free(a->res[R_PODS].selector);
		a->res[R_PODS].selector = NULL;
		if (esc && asprintf(&a->res[R_PODS].selector, "&fieldSelector=%s", esc) < 0)
			a->res[R_PODS].selector = NULL;
		curl_free(esc);
	}
	for (unsigned i = 0; i < a->n_res; i++) {
		if (!a->res[i].selector) {
			k->api = a;
			kapi_close(k);
			snprintf(err, errlen, "out of memory");
			return -ENOMEM;
		}
	}
	k->st.n_res = a->n_res;
	k->st.stale = 1;
	k->st.stale_since_us = know_us();
	snprintf(k->st.source_desc, sizeof(k->st.source_desc), "%.180s, pods: %s%.60s", a->creds.desc,
		 k->cfg.pod_scope == KUBE_PODS_NODE ? "node " : "all",
		 k->cfg.pod_scope == KUBE_PODS_NODE ? k->cfg.node : "");
	k->api = a;
	return 0;
}

void kapi_wake(struct kube *k)
{
	if (k->api && k->api->multi)
		curl_multi_wakeup(k->api->multi);
}

void kapi_close(struct kube *k)
{
	struct kapi *a = k->api;
	if (!a)
		return;
	for (unsigned i = 0; i < a->n_res; i++) {
		struct kres *r = &a->res[i];
		end_request(r);
		stage_free(r);
		free(r->pods);
		free(r->svcs);
		free(r->slices);
		free(r->buf);
		free(r->selector);
	}
	if (a->multi)
		curl_multi_cleanup(a->multi);
	kcreds_free(&a->creds);
	free(a);
	k->api = NULL;
}
