/* query — top talkers and charts: q_top() over the flow database's per-minute
 * rollup or over the matching flows (see query.h).
 *
 * Runs on the caller's thread with the caller's fdb handle, like the rest of
 * query/; the result is the caller's (q_top_free). */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flowdb.h"
#include "internal.h"
#include "query.h"

/* A statement over the flows: the compiled filter's parameters first, then ours;
 * the text allocated. */
struct top_stmt {
	struct q_sql *filter;
	struct fdb_param *param;
	size_t nparam, cap;
	char *heap;
};

static int top_param_int(struct top_stmt *q, int64_t v)
{
	q->param[q->nparam] = (struct fdb_param){.type = FDB_INT, .i = v};
	return (int)++q->nparam;
}

static void top_stmt_free(struct top_stmt *q)
{
	if (!q)
		return;
	q_sql_free(q->filter);
	free(q->param);
	free(q->heap);
	free(q);
}

static const struct {
	const char *name, *key;
} top_by[Q_BY__COUNT] = {
	[Q_BY_APP] = {"app", "coalesce(f.proto_name, '')"},
	[Q_BY_POD] = {"pod", "coalesce(f.pod, '')"},
	[Q_BY_SRC] = {"src", "coalesce(f.src, '')"},
	[Q_BY_DST] = {"dst", "coalesce(f.dst, '')"},
	[Q_BY_DPORT] = {"dport", "CAST(f.dport AS TEXT)"},
	[Q_BY_IFACE] = {"iface", "coalesce((SELECT iface FROM observation_points o WHERE o.id = f.obs_id), '')"},
	[Q_BY_CATEGORY] = {"category", "coalesce(f.category, '')"},
	[Q_BY_HOST] = {"host", "coalesce(f.host, '')"},
	[Q_BY_SRC_POD] = {"src_pod", "coalesce(f.src_pod, '')"},
	[Q_BY_DST_POD] = {"dst_pod", "coalesce(f.dst_pod, '')"},
	[Q_BY_SRC_NS] = {"src_ns", "coalesce(f.src_ns, '')"},
	[Q_BY_DST_NS] = {"dst_ns", "coalesce(f.dst_ns, '')"},
	/* "Kind/name", as the workload filter takes it (with src_ns beside it, or a
	 * filter on the namespace, where names repeat across namespaces) */
	[Q_BY_SRC_WORKLOAD] = {"src_workload", "coalesce(f.src_workload, '')"},
	[Q_BY_DST_WORKLOAD] = {"dst_workload", "coalesce(f.dst_workload, '')"},
	[Q_BY_SERVICE] = {"service", "coalesce(f.service, '')"},
};
static const struct {
	const char *name, *sum;
} metrics[Q_METRIC__COUNT] = {
	[Q_METRIC_BYTES] = {"bytes", "sum(f.c2s_bytes + f.s2c_bytes)"},
	[Q_METRIC_PACKETS] = {"packets", "sum(f.c2s_pkts + f.s2c_pkts)"},
	[Q_METRIC_FLOWS] = {"flows", "count(*)"},
};

int q_top_by_parse(const char *name, enum q_top_by *out)
{
	for (int i = 0; i < Q_BY__COUNT; i++)
		if (!strcmp(top_by[i].name, name)) {
			*out = (enum q_top_by)i;
			return 0;
		}
	return -EINVAL;
}

int q_metric_parse(const char *name, enum q_metric *out)
{
	for (int i = 0; i < Q_METRIC__COUNT; i++)
		if (!strcmp(metrics[i].name, name)) {
			*out = (enum q_metric)i;
			return 0;
		}
	return -EINVAL;
}

const char *q_top_by_name(enum q_top_by by) { return by < Q_BY__COUNT ? top_by[by].name : "?"; }
const char *q_metric_name(enum q_metric m) { return m < Q_METRIC__COUNT ? metrics[m].name : "?"; }

void q_top_free(struct q_top_result *r)
{
	for (size_t i = 0; i < r->nrows; i++)
		free(r->rows[i].key);
	free(r->rows);
	free(r->buckets);
	memset(r, 0, sizeof(*r));
}

/* "SELECT <head> FROM flows f WHERE <filter> <tail>" with the filter's parameters
 * first and extra ones after. */
static int top_sql(struct top_stmt *q, const struct q_top *req, const char *head, struct q_error *err)
{
	struct q_compile_opts opts;
	q_compile_opts_default(&opts);
	opts.range = req->range;
	int rc = q_compile(req->filter, &opts, &q->filter, err);
	if (rc < 0)
		return rc;
	q->cap = q->filter->nparams + (size_t)req->limit + 4;
	if (!(q->param = calloc(q->cap, sizeof(*q->param))))
		return q_err(err, -ENOMEM, 0, "out of memory");
	q_sql_params(q->filter, q->param);
	q->nparam = q->filter->nparams;
	size_t need = strlen(head) + q->filter->where_len + 64;
	if (!(q->heap = malloc(need)))
		return q_err(err, -ENOMEM, 0, "out of memory");
	snprintf(q->heap, need, "SELECT %s FROM flows f WHERE %s", head, q->filter->where);
	return 0;
}

static int top_append(struct top_stmt *q, const char *more, struct q_error *err)
{
	size_t n = strlen(q->heap), m = strlen(more);
	char *h = realloc(q->heap, n + m + 1);
	if (!h)
		return q_err(err, -ENOMEM, 0, "out of memory");
	memcpy(h + n, more, m + 1);
	q->heap = h;
	return 0;
}

/* The time bucket of a flow as SQL: that of its last packet, no later than the
 * range's end (now without one).  A flow still running after the end is in
 * the range (first_us <= to) and counts in its last bucket, so the buckets add
 * up to the keys' totals and there are no more of them than the range holds
 * (the API's max_buckets, the answer's size). */
static void bucket_sql(char *buf, size_t len, const struct q_top *req)
{
	int64_t end = req->range.has_to ? req->range.to_us : 0;
	if (!req->range.has_to) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		end = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	snprintf(buf, len, "(min(f.last_us, %lld) / %lld) * %lld", (long long)end, (long long)req->bucket_us,
		 (long long)req->bucket_us);
}

/* The rows (t, k, v) of c, grouped by SQL, into out->buckets for the keys among
 * out->rows (few: a linear search).  0 or a negative errno with err filled. */
static int read_buckets(struct fdb *db, struct fdb_cursor *c, struct q_top_result *out, struct q_error *err)
{
	size_t cap = 0;
	int rc;
	while ((rc = fdb_cursor_next(c)) == 1) {
		if (out->nbuckets == cap) {
			cap = cap ? 2 * cap : 256;
			struct q_top_bucket *nb = realloc(out->buckets, cap * sizeof(*nb));
			if (!nb)
				return q_err(err, -ENOMEM, 0, "out of memory");
			out->buckets = nb;
		}
		const char *k = fdb_cursor_text(c, 1);
		size_t r = 0;
		while (r < out->nrows && strcmp(out->rows[r].key, k ? k : ""))
			r++;
		if (r == out->nrows)
			continue;
		out->buckets[out->nbuckets++] = (struct q_top_bucket){fdb_cursor_int(c, 0), r, fdb_cursor_int(c, 2)};
	}
	return rc < 0 ? q_err(err, rc, 0, "%s", fdb_errmsg(db)) : 0;
}

/* The writer's per-minute rollup (flowdb.c) answers top-N without a filter for
 * the keys it keeps, reading about (minutes x keys) rows instead of every flow:
 * 24 hours of 40 applications is 57,600 rows, where the flows of those hours may
 * be millions.  Its time resolution is the minute of each flow's last packet.
 * Returns 1 when it answered, 0 when it cannot (a filter, another key, a bucket
 * that is not whole minutes, or a database whose rollup is not current), or a
 * negative errno. */
#define ROLLUP_US 60000000LL
static int top_rollup(struct fdb *db, const struct q_top *req, struct q_top_result *out, struct q_error *err)
{
	static const struct { int dim; const char *key; } keys[Q_BY__COUNT] = {
		[Q_BY_APP] = {0, "r.key"},
		[Q_BY_CATEGORY] = {1, "r.key"},
		[Q_BY_IFACE] = {2, "coalesce((SELECT iface FROM observation_points o WHERE o.id = CAST(r.key AS INTEGER)), '')"},
		[Q_BY_POD] = {2, "coalesce((SELECT pod FROM observation_points o WHERE o.id = CAST(r.key AS INTEGER)), '')"},
	};
	static const char *const sums[Q_METRIC__COUNT] = {
		[Q_METRIC_BYTES] = "sum(r.bytes)", [Q_METRIC_PACKETS] = "sum(r.packets)", [Q_METRIC_FLOWS] = "sum(r.flows)",
	};
	char v[16], sql[1024], range[96] = "";
	struct fdb_cursor *c = NULL;
	struct fdb_param p[8 + 1000];
	int np = 0, rc;
	if (req->filter || !keys[req->by].key || (req->bucket_us > 0 && req->bucket_us % ROLLUP_US))
		return 0;
	if (fdb_meta_get(db, "rollup", v, sizeof(v)) < 0 || strcmp(v, "1"))
		return 0;
	p[np++] = (struct fdb_param){.type = FDB_INT, .i = keys[req->by].dim};
	if (req->range.has_from) {
		p[np++] = (struct fdb_param){.type = FDB_INT, .i = req->range.from_us / ROLLUP_US * ROLLUP_US};
		snprintf(range, sizeof(range), " AND r.bucket_us >= ?%d", np);
	}
	if (req->range.has_to) {
		size_t l = strlen(range);
		p[np++] = (struct fdb_param){.type = FDB_INT, .i = req->range.to_us};
		snprintf(range + l, sizeof(range) - l, " AND r.bucket_us <= ?%d", np);
	}
	const char *key = keys[req->by].key, *sum = sums[req->metric];
	int base = np;
	/* 1. every key's sum, largest first: the first `limit` are the rows, the
	 * total is all of them (keys are few, so no second pass) */
	snprintf(sql, sizeof(sql), "SELECT %s AS k, %s AS v FROM rollup r WHERE r.dim = ?1%s GROUP BY k"
		 " ORDER BY v DESC, k", key, sum, range);
	if ((rc = fdb_cursor_open(db, sql, p, (size_t)np, &c)) < 0)
		return q_err(err, rc, 0, "%s", fdb_errmsg(db));
	if (!(out->rows = calloc((size_t)req->limit, sizeof(*out->rows)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	while ((rc = fdb_cursor_next(c)) == 1) {
		int64_t val = fdb_cursor_int(c, 1);
		out->total += val;
		if (val == 0 || out->nrows == (size_t)req->limit)
			continue;
		const char *k = fdb_cursor_text(c, 0);
		if (!(out->rows[out->nrows].key = strdup(k ? k : ""))) {
			rc = q_err(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		out->rows[out->nrows++].value = val;
	}
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	fdb_cursor_close(c);
	c = NULL;
	int64_t top = 0;
	for (size_t i = 0; i < out->nrows; i++)
		top += out->rows[i].value;
	out->other = out->total - top;
	out->from_rollup = 1;
	out->resolution_us = ROLLUP_US;
	if (fdb_meta_get(db, "rollup_untracked", v, sizeof(v)) == 0)
		out->untracked = strtoll(v, NULL, 10);
	rc = 1;
	if (req->bucket_us <= 0 || !out->nrows)
		goto out;
	/* 2. those keys per bucket */
	size_t l = (size_t)snprintf(sql, sizeof(sql), "SELECT (r.bucket_us / %lld) * %lld AS t, %s AS k, %s AS v"
				    " FROM rollup r WHERE r.dim = ?1%s GROUP BY t, k HAVING k IN (",
				    (long long)req->bucket_us, (long long)req->bucket_us, key, sum, range);
	for (size_t i = 0; i < out->nrows && l < sizeof(sql) - 16; i++) {
		p[np++] = (struct fdb_param){.type = FDB_TEXT, .s = out->rows[i].key};
		l += (size_t)snprintf(sql + l, sizeof(sql) - l, "%s?%d", i ? "," : "", np);
	}
	(void)base;
	if (l >= sizeof(sql) - 40) {
		/* too many keys for one statement here: the scan answers */
		q_top_free(out);
		return 0;
	}
	snprintf(sql + l, sizeof(sql) - l, ") ORDER BY t, v DESC");
	if ((rc = fdb_cursor_open(db, sql, p, (size_t)np, &c)) < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	rc = read_buckets(db, c, out, err);
	if (rc == 0)
		rc = 1;
out:
	fdb_cursor_close(c);
	if (rc < 0)
		q_top_free(out);
	return rc;
}

/* The SQL way: GROUP BY in SQLite (which sorts the matching rows by key), a
 * second scan for the total, a third for the buckets.  For a hash table too big
 * for top_hash's memory. */
static int top_group_by(struct fdb *db, const struct q_top *req, struct q_top_result *out, struct q_error *err)
{
	struct top_stmt *q = NULL;
	struct fdb_cursor *c = NULL;
	char head[512], tail[128];
	int rc;
	/* 1. the keys with the largest sums, and the total */
	if (!(q = calloc(1, sizeof(*q))))
		return q_err(err, -ENOMEM, 0, "out of memory");
	snprintf(head, sizeof(head), "%s AS k, %s AS v", top_by[req->by].key, metrics[req->metric].sum);
	if ((rc = top_sql(q, req, head, err)) < 0)
		goto out;
	int lim = top_param_int(q, req->limit);
	snprintf(tail, sizeof(tail), " GROUP BY k ORDER BY v DESC, k LIMIT ?%d", lim);
	if ((rc = top_append(q, tail, err)) < 0)
		goto out;
	if ((rc = fdb_cursor_open(db, q->heap, q->param, q->nparam, &c)) < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	if (!(out->rows = calloc((size_t)req->limit, sizeof(*out->rows)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	while ((rc = fdb_cursor_next(c)) == 1 && out->nrows < (size_t)req->limit) {
		const char *k = fdb_cursor_text(c, 0);
		if (!(out->rows[out->nrows].key = strdup(k ? k : ""))) {
			rc = q_err(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		out->rows[out->nrows++].value = fdb_cursor_int(c, 1);
	}
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	fdb_cursor_close(c);
	c = NULL;
	top_stmt_free(q);
	if (!(q = calloc(1, sizeof(*q)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	snprintf(head, sizeof(head), "coalesce(%s, 0)", metrics[req->metric].sum);
	if ((rc = top_sql(q, req, head, err)) < 0 ||
	    (rc = fdb_cursor_open(db, q->heap, q->param, q->nparam, &c)) < 0) {
		if (rc != -ENOMEM && !err->msg[0])
			q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	if ((rc = fdb_cursor_next(c)) == 1)
		out->total = fdb_cursor_int(c, 0);
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	int64_t top = 0;
	for (size_t i = 0; i < out->nrows; i++)
		top += out->rows[i].value;
	out->other = out->total - top;
	out->scans = 2;
	fdb_cursor_close(c);
	c = NULL;
	rc = 0;
	if (req->bucket_us <= 0 || !out->nrows)
		goto out;
	out->scans = 3;
	/* 2. those keys per time bucket (of the flows' last packets) */
	top_stmt_free(q);
	if (!(q = calloc(1, sizeof(*q)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	char tb[128];
	bucket_sql(tb, sizeof(tb), req);
	snprintf(head, sizeof(head), "%s AS t, %s AS k, %s AS v", tb, top_by[req->by].key, metrics[req->metric].sum);
	if ((rc = top_sql(q, req, head, err)) < 0)
		goto out;
	if ((rc = top_append(q, " AND k IN (", err)) < 0)
		goto out;
	for (size_t i = 0; i < out->nrows; i++) {
		char ph[24];
		q->param[q->nparam] = (struct fdb_param){.type = FDB_TEXT, .s = out->rows[i].key};
		snprintf(ph, sizeof(ph), "%s?%zu", i ? "," : "", ++q->nparam);
		if ((rc = top_append(q, ph, err)) < 0)
			goto out;
	}
	if ((rc = top_append(q, ") GROUP BY t, k ORDER BY t, v DESC", err)) < 0 ||
	    (rc = fdb_cursor_open(db, q->heap, q->param, q->nparam, &c)) < 0) {
		if (rc != -ENOMEM)
			q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	rc = read_buckets(db, c, out, err);
out:
	fdb_cursor_close(c);
	top_stmt_free(q);
	if (rc < 0)
		q_top_free(out);
	return rc;
}

/* ---- one scan, summed in a hash table -------------------------------------- *
 *
 * SQLite groups by sorting every matching row by its key (a temporary b-tree),
 * then the total took a second scan: top src over 10M flows was 8.2 s + 1.75 s,
 * past the API's 10-s query limit (503).  Here the rows (key, value) of one scan
 * are summed in an open-addressing table: 2.7 s for the same answer.  The keys'
 * bytes, entries and slots stay under max_mem (TOP_MEM unless the request says);
 * a key with more distinct values than that (host over millions of names) is
 * answered the SQL way, whose sorter spills to disk. */
#define TOP_MEM (32u << 20)

struct tent {
	uint64_t hash;
	int64_t v;
	size_t off;      /* key bytes in the arena */
	uint32_t len;
	int32_t row;     /* index in the result's rows, -1 */
	uint32_t last_b; /* the key's latest bucket in the ptab + 1 (0 none) ... */
	int64_t last_t;  /* ... and its time: flows come in about time order */
};

/* What the tables of one q_top_many call hold together: each key also has its
 * own max_mem, and the call no more than the largest of those, so that a
 * request for 8 keys costs what one did (the API runs 4 at once). */
struct tpool {
	size_t cap, used;
};

/* A table of cur bytes grows to nxt: true (and counted) if the pool holds it. */
static bool pool_take(struct tpool *pool, size_t cur, size_t nxt)
{
	if (!pool)
		return true;
	if (pool->used - cur + nxt > pool->cap)
		return false;
	pool->used += nxt - cur;
	return true;
}

struct ttab {
	struct tpool *pool; /* NULL: only max_mem counts */
	struct tent *e;
	size_t n, ecap;
	uint32_t *slot;  /* entry index + 1; 0 = empty */
	size_t scap;     /* power of two */
	char *arena;
	size_t alen, acap;
	size_t max_mem;
};

static uint64_t key_hash(const char *k, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)k[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static size_t ttab_mem(size_t ecap, size_t scap, size_t acap)
{
	return ecap * sizeof(struct tent) + scap * sizeof(uint32_t) + acap;
}

/* Grows what must grow for one more key of len bytes: 0, -E2BIG past max_mem,
 * -ENOMEM. */
static int ttab_reserve(struct ttab *t, size_t len)
{
	size_t ecap = t->ecap, scap = t->scap, acap = t->acap;
	if (t->n == ecap)
		ecap = ecap ? 2 * ecap : 1024;
	if ((t->n + 1) * 2 > scap)
		scap = scap ? 2 * scap : 2048;
	while (t->alen + len > acap || !acap) /* an arena even for "" alone */
		acap = acap ? 2 * acap : 65536;
	if (ecap == t->ecap && scap == t->scap && acap == t->acap)
		return 0;
	size_t cur = ttab_mem(t->ecap, t->scap, t->acap), nxt = ttab_mem(ecap, scap, acap);
	if (nxt > t->max_mem || !pool_take(t->pool, cur, nxt)) /* given back by ttab_free */
		return -E2BIG;
	if (ecap != t->ecap) {
		struct tent *ne = realloc(t->e, ecap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		t->e = ne;
		t->ecap = ecap;
	}
	if (acap != t->acap) {
		char *na = realloc(t->arena, acap);
		if (!na)
			return -ENOMEM;
		t->arena = na;
		t->acap = acap;
	}
	if (scap != t->scap) {
		uint32_t *ns = calloc(scap, sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		for (size_t i = 0; i < t->n; i++) {
			size_t j = t->e[i].hash & (scap - 1);
			while (ns[j])
				j = (j + 1) & (scap - 1);
			ns[j] = (uint32_t)i + 1;
		}
		free(t->slot);
		t->slot = ns;
		t->scap = scap;
	}
	return 0;
}

/* The entry of key k (len bytes), added with value 0 if new: its index, or
 * -E2BIG / -ENOMEM. */
static long ttab_get(struct ttab *t, const char *k, size_t len, int add)
{
	uint64_t h = key_hash(k, len);
	if (t->scap) {
		for (size_t j = h & (t->scap - 1); t->slot[j]; j = (j + 1) & (t->scap - 1)) {
			struct tent *e = &t->e[t->slot[j] - 1];
			if (e->hash == h && e->len == len && !memcmp(t->arena + e->off, k, len))
				return (long)(t->slot[j] - 1);
		}
	}
	if (!add)
		return -ENOENT;
	if (len > UINT32_MAX || t->n >= UINT32_MAX - 1)
		return -E2BIG;
	int rc = ttab_reserve(t, len);
	if (rc < 0)
		return rc;
	size_t j = h & (t->scap - 1);
	while (t->slot[j])
		j = (j + 1) & (t->scap - 1);
	struct tent *e = &t->e[t->n];
	*e = (struct tent){.hash = h, .off = t->alen, .len = (uint32_t)len, .row = -1, .last_b = 0};
	memcpy(t->arena + t->alen, k, len);
	t->alen += len;
	t->slot[j] = (uint32_t)++t->n;
	return (long)(t->n - 1);
}

static void ttab_free(struct ttab *t)
{
	if (t->pool)
		t->pool->used -= ttab_mem(t->ecap, t->scap, t->acap);
	free(t->e);
	free(t->slot);
	free(t->arena);
}

/* Largest value first, then the key in byte order (SQLite's BINARY collation,
 * as the SQL way's ORDER BY v DESC, k). */
static int cmp_top(const void *a, const void *b, void *arg)
{
	const struct ttab *t = arg;
	const struct tent *x = &t->e[*(const uint32_t *)a], *y = &t->e[*(const uint32_t *)b];
	if (x->v != y->v)
		return x->v > y->v ? -1 : 1;
	size_t m = x->len < y->len ? x->len : y->len;
	int c = memcmp(t->arena + x->off, t->arena + y->off, m);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int cmp_bucket(const void *a, const void *b)
{
	const struct q_top_bucket *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	if (x->value != y->value)
		return x->value > y->value ? -1 : 1;
	return (x->row > y->row) - (x->row < y->row);
}

/* Adds v to *sum as SQL's sum() would, which fails on overflow. */
static int add_checked(int64_t *sum, int64_t v, struct q_error *err)
{
	if (__builtin_add_overflow(*sum, v, sum))
		return q_err(err, -ERANGE, 0, "integer overflow in the sum");
	return 0;
}

static const char *const row_values[Q_METRIC__COUNT] = {
	[Q_METRIC_BYTES] = "f.c2s_bytes + f.s2c_bytes",
	[Q_METRIC_PACKETS] = "f.c2s_pkts + f.s2c_pkts",
	[Q_METRIC_FLOWS] = "1",
};

/* Sums per (time bucket, key): the buckets themselves, indexed by an open-
 * addressing table.  While the keys are being summed, .row holds the key's
 * entry in the ttab; in the answer, its row. */
struct ptab {
	struct tpool *pool; /* NULL: only the budget of ptab_add counts */
	struct q_top_bucket *b;
	size_t n, cap;
	uint32_t *slot; /* bucket index + 1; 0 = empty */
	size_t scap;
};

static size_t ptab_mem(size_t cap, size_t scap)
{
	return cap * sizeof(struct q_top_bucket) + scap * sizeof(uint32_t);
}


/* splitmix64's finaliser over both: bucket times are multiples of the width
 * (many low zero bits), so a plain multiply clustered them (90 % of a 10M-flow
 * query's time went into probing). */
static size_t pair_slot(int64_t t, size_t row, size_t scap)
{
	uint64_t h = (uint64_t)t ^ ((uint64_t)row * 0x9E3779B97F4A7C15ULL);
	h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
	h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
	return (size_t)(h ^ (h >> 31)) & (scap - 1);
}

/* Adds v (unless isnull: the bucket is still there, as SQL's group of NULLs) to
 * bucket (t, row).  The bucket's index, -E2BIG when the tables would pass budget
 * bytes, -ENOMEM or -ERANGE (err filled). */
static long ptab_add(struct ptab *p, int64_t t, size_t row, int isnull, int64_t v, size_t budget,
		    struct q_error *err)
{
	if ((p->n + 1) * 2 > p->scap) {
		size_t ns = p->scap ? 2 * p->scap : 1024;
		if (ptab_mem(p->cap, ns) > budget || !pool_take(p->pool, ptab_mem(p->cap, p->scap), ptab_mem(p->cap, ns)))
			return -E2BIG;
		uint32_t *nb = calloc(ns, sizeof(*nb));
		if (!nb)
			return q_err(err, -ENOMEM, 0, "out of memory");
		for (size_t j = 0; j < p->n; j++) {
			size_t s = pair_slot(p->b[j].t, p->b[j].row, ns);
			while (nb[s])
				s = (s + 1) & (ns - 1);
			nb[s] = (uint32_t)j + 1;
		}
		free(p->slot);
		p->slot = nb;
		p->scap = ns;
	}
	size_t s = pair_slot(t, row, p->scap);
	while (p->slot[s] && !(p->b[p->slot[s] - 1].t == t && p->b[p->slot[s] - 1].row == row))
		s = (s + 1) & (p->scap - 1);
	if (!p->slot[s]) {
		if (p->n == p->cap) {
			size_t nc = p->cap ? 2 * p->cap : 256;
			if (ptab_mem(nc, p->scap) > budget || !pool_take(p->pool, ptab_mem(p->cap, p->scap), ptab_mem(nc, p->scap)))
				return -E2BIG;
			struct q_top_bucket *nb = realloc(p->b, nc * sizeof(*nb));
			if (!nb)
				return q_err(err, -ENOMEM, 0, "out of memory");
			p->b = nb;
			p->cap = nc;
		}
		p->b[p->n] = (struct q_top_bucket){t, row, 0};
		p->slot[s] = (uint32_t)++p->n;
	}
	int rc = isnull ? 0 : add_checked(&p->b[p->slot[s] - 1].value, v, err);
	return rc < 0 ? rc : (long)(p->slot[s] - 1);
}

static void ptab_free(struct ptab *p)
{
	struct tpool *pool = p->pool;
	if (pool)
		pool->used -= ptab_mem(p->cap, p->scap);
	free(p->b);
	free(p->slot);
	memset(p, 0, sizeof(*p));
	p->pool = pool;
}

/* One request's sums during a scan that may serve several (q_top_many: the
 * charts' keys over the same flows).  Each keeps its own max_mem. */
struct tacc {
	const struct q_top *req;
	struct q_top_result *out;
	struct ttab t;
	struct ptab pt;
	size_t full;     /* its max_mem */
	int pairs;       /* still summing every key's buckets (bucket_us) */
	int kcol, tcol;  /* its key's and bucket's columns in the scan */
	int too_many;    /* more distinct keys than max_mem: the SQL way answers */
};

static void acc_free(struct tacc *a)
{
	ptab_free(&a->pt);
	ttab_free(&a->t);
	memset(&a->t, 0, sizeof(a->t));
}

/* The current row of c into a: value v (isnull: SQL's NULL, counted as a group
 * but not summed).  0, or a negative errno with err filled. */
static int acc_row(struct tacc *a, struct fdb_cursor *c, int isnull, int64_t v, struct q_error *err)
{
	const char *k = fdb_cursor_text(c, a->kcol);
	if (!k)
		k = ""; /* CAST(NULL AS TEXT): the SQL way's NULL group comes out as "" too */
	size_t len = strlen(k);
	long i;
	int rc;
	while ((i = ttab_get(&a->t, k, len, 1)) == -E2BIG && a->pairs) {
		ptab_free(&a->pt); /* the keys first: the buckets can come from a second scan */
		a->pairs = 0;
		a->t.max_mem = a->full;
	}
	if (i == -E2BIG) {
		acc_free(a); /* the SQL way answers after the scan */
		a->too_many = 1;
		return 0;
	}
	if (i < 0)
		return q_err(err, (int)i, 0, "out of memory");
	struct tent *e = &a->t.e[i];
	int64_t bt;
	if (a->pairs && e->last_b && e->last_t == (bt = fdb_cursor_int(c, a->tcol))) {
		/* the same key's bucket as its last row: most rows, cheaply */
		if (!isnull && (rc = add_checked(&a->pt.b[e->last_b - 1].value, v, err)) < 0)
			return rc;
	} else if (a->pairs) {
		size_t keys = ttab_mem(a->t.ecap, a->t.scap, a->t.acap);
		bt = fdb_cursor_int(c, a->tcol);
		long bi = ptab_add(&a->pt, bt, (size_t)i, isnull, v, a->full - keys, err);
		if (bi >= 0) {
			e->last_b = (uint32_t)bi + 1;
			e->last_t = bt;
			/* the keys may grow into what the buckets leave */
			a->t.max_mem = a->full - ptab_mem(a->pt.cap, a->pt.scap);
		} else if (bi == -E2BIG) {
			ptab_free(&a->pt);
			a->pairs = 0;
			a->t.max_mem = a->full;
		} else {
			return (int)bi;
		}
	}
	if (!isnull && ((rc = add_checked(&e->v, v, err)) < 0 || (rc = add_checked(&a->out->total, v, err)) < 0))
		return rc;
	return 0;
}

/* a's answer from its sums: the largest keys, and with bucket_us their buckets,
 * from the pairs of every key or, when those did not fit, from a second scan of
 * the top keys alone.  0 or a negative errno with err filled. */
static int acc_finish(struct fdb *db, struct tacc *a, struct q_error *err)
{
	const struct q_top *req = a->req;
	struct q_top_result *out = a->out;
	struct ttab *t = &a->t;
	struct ptab *pt = &a->pt;
	struct top_stmt *q = NULL;
	struct fdb_cursor *c = NULL;
	uint32_t *order = NULL;
	char head[512];
	long i;
	int rc = 0;
	out->scans = 1;
	/* the largest: sorting every key is fine for the few hundred thousand
	 * max_mem holds */
	if (t->n && !(order = malloc(t->n * sizeof(*order)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	for (size_t j = 0; j < t->n; j++)
		order[j] = (uint32_t)j;
	if (t->n)
		qsort_r(order, t->n, sizeof(*order), cmp_top, t);
	size_t want = t->n < (size_t)req->limit ? t->n : (size_t)req->limit;
	if (want && !(out->rows = calloc(want, sizeof(*out->rows)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	int64_t top = 0;
	for (size_t j = 0; j < want; j++) {
		struct tent *e = &t->e[order[j]];
		if (!(out->rows[j].key = malloc((size_t)e->len + 1))) {
			rc = q_err(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		memcpy(out->rows[j].key, t->arena + e->off, e->len);
		out->rows[j].key[e->len] = 0;
		out->rows[j].value = e->v;
		out->nrows++;
		e->row = (int32_t)j;
		top += e->v;
	}
	out->other = out->total - top;
	out->in_memory = 1;
	if (req->bucket_us <= 0 || !out->nrows)
		goto out;
	if (a->pairs) {
		/* the top keys' buckets, from the pairs of every key */
		size_t n = 0;
		for (size_t j = 0; j < pt->n; j++)
			if (t->e[pt->b[j].row].row >= 0)
				pt->b[n++] = (struct q_top_bucket){pt->b[j].t, (size_t)t->e[pt->b[j].row].row, pt->b[j].value};
		out->buckets = pt->b;
		out->nbuckets = n;
		pt->b = NULL;
		goto sort;
	}
	/* 2. the top keys per time bucket, in a second scan */
	if (!(q = calloc(1, sizeof(*q)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	char tb[128];
	bucket_sql(tb, sizeof(tb), req);
	snprintf(head, sizeof(head), "%s AS t, %s AS k, %s AS v", tb, top_by[req->by].key, row_values[req->metric]);
	if ((rc = top_sql(q, req, head, err)) < 0 || (rc = top_append(q, " AND k IN (", err)) < 0)
		goto out;
	for (size_t j = 0; j < out->nrows; j++) {
		char ph[24];
		q->param[q->nparam] = (struct fdb_param){.type = FDB_TEXT, .s = out->rows[j].key};
		snprintf(ph, sizeof(ph), "%s?%zu", j ? "," : "", ++q->nparam);
		if ((rc = top_append(q, ph, err)) < 0)
			goto out;
	}
	if ((rc = top_append(q, ")", err)) < 0)
		goto out;
	if ((rc = fdb_cursor_open(db, q->heap, q->param, q->nparam, &c)) < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	ptab_free(pt);
	pt->pool = NULL; /* these are bounded by limit x max_buckets (the API's bounds) */
	while ((rc = fdb_cursor_next(c)) == 1) {
		const char *k = fdb_cursor_text(c, 1);
		if (!k)
			k = "";
		if ((i = ttab_get(t, k, strlen(k), 0)) < 0 || t->e[i].row < 0)
			continue; /* cannot happen: k IN (the rows' keys) */
		/* at most max_buckets x limit of them (the API's bounds) */
		long bi = ptab_add(pt, fdb_cursor_int(c, 0), (size_t)t->e[i].row, fdb_cursor_type(c, 2) == FDB_NULL,
				   fdb_cursor_int(c, 2), SIZE_MAX, err);
		if (bi < 0) {
			rc = (int)bi;
			goto out;
		}
	}
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	rc = 0;
	out->buckets = pt->b;
	out->nbuckets = pt->n;
	pt->b = NULL;
	out->scans = 2;
sort:
	if (out->nbuckets)
		qsort(out->buckets, out->nbuckets, sizeof(*out->buckets), cmp_bucket);
out:
	fdb_cursor_close(c);
	top_stmt_free(q);
	free(order);
	return rc;
}

/* The keys of n requests (same filter, range and metric), their totals and
 * (bucket_us) every key's buckets, summed in one scan of the matching flows;
 * then each answered (acc_finish), or marked too_many for the SQL way.  0 or a
 * negative errno with err filled. */
static int top_scan(struct fdb *db, struct tacc *acc, size_t n, struct tpool *pool, struct q_error *err)
{
	struct top_stmt *q = NULL;
	struct fdb_cursor *c = NULL;
	char *head = NULL;
	size_t cap = 64 + n * 256, len;
	int rc, col = 1;
	if (!(head = malloc(cap)) || !(q = calloc(1, sizeof(*q)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	len = (size_t)snprintf(head, cap, "%s AS v", row_values[acc[0].req->metric]);
	for (size_t j = 0; j < n; j++) {
		struct tacc *a = &acc[j];
		a->full = a->req->max_mem ? a->req->max_mem : TOP_MEM;
		a->t.max_mem = a->full;
		a->t.pool = a->pt.pool = pool;
		a->pairs = a->req->bucket_us > 0;
		a->kcol = col++;
		len += (size_t)snprintf(head + len, cap - len, ", %s AS k%zu", top_by[a->req->by].key, j);
		if (a->pairs) {
			a->tcol = col++;
			char tb[128];
			bucket_sql(tb, sizeof(tb), a->req);
			len += (size_t)snprintf(head + len, cap - len, ", %s AS t%zu", tb, j);
		}
	}
	if ((rc = top_sql(q, acc[0].req, head, err)) < 0)
		goto out;
	if ((rc = fdb_cursor_open(db, q->heap, q->param, q->nparam, &c)) < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	size_t left = n;
	while (left && (rc = fdb_cursor_next(c)) == 1) {
		int isnull = fdb_cursor_type(c, 0) == FDB_NULL;
		int64_t v = isnull ? 0 : fdb_cursor_int(c, 0);
		for (size_t j = 0; j < n; j++) {
			if (acc[j].too_many)
				continue;
			if ((rc = acc_row(&acc[j], c, isnull, v, err)) < 0)
				goto out;
			left -= (size_t)acc[j].too_many;
		}
	}
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	fdb_cursor_close(c);
	c = NULL;
	rc = 0;
	for (size_t j = 0; j < n && rc == 0; j++)
		if (!acc[j].too_many)
			rc = acc_finish(db, &acc[j], err);
out:
	fdb_cursor_close(c);
	top_stmt_free(q);
	free(head);
	return rc;
}

/* The checks q_top documents, for one request of a q_top_many call. */
static int top_check(const struct q_top *req, const struct q_top *first, struct q_error *err)
{
	if (req->by >= Q_BY__COUNT || req->metric >= Q_METRIC__COUNT || req->limit < 1 || req->limit > 1000)
		return q_err(err, -EINVAL, 0, "bad top request");
	if (req->filter != first->filter || req->metric != first->metric ||
	    req->range.has_from != first->range.has_from || req->range.has_to != first->range.has_to ||
	    (req->range.has_from && req->range.from_us != first->range.from_us) ||
	    (req->range.has_to && req->range.to_us != first->range.to_us))
		return q_err(err, -EINVAL, 0, "top requests of one scan must share filter, range and metric");
	if (req->bucket_us > 0 && req->range.has_from && req->max_buckets > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t to = req->range.has_to ? req->range.to_us : (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		if (to > req->range.from_us && (to - req->range.from_us) / req->bucket_us > req->max_buckets)
			return q_err(err, -E2BIG, 0, "more than %lld buckets: choose a larger bucket or a shorter range",
				     (long long)req->max_buckets);
	}
	return 0;
}

int q_top_many(struct fdb *db, const struct q_top *reqs, size_t n, struct q_top_result *outs, struct q_error *err)
{
	struct tacc acc[Q_TOP_MANY];
	size_t na = 0;
	int rc = 0;
	if (n < 1 || n > Q_TOP_MANY)
		return q_err(err, -EINVAL, 0, "bad top request: 1 to %d keys", Q_TOP_MANY);
	for (size_t i = 0; i < n; i++)
		memset(&outs[i], 0, sizeof(outs[i]));
	for (size_t i = 0; i < n; i++)
		if ((rc = top_check(&reqs[i], &reqs[0], err)) < 0)
			return rc;
	/* the rollup answers what it can without reading the flows */
	for (size_t i = 0; i < n; i++) {
		if ((rc = top_rollup(db, &reqs[i], &outs[i], err)) < 0)
			goto fail;
		if (rc == 0)
			acc[na++] = (struct tacc){.req = &reqs[i], .out = &outs[i]};
	}
	struct tpool pool = {0};
	for (size_t j = 0; j < na; j++) {
		size_t m = acc[j].req->max_mem ? acc[j].req->max_mem : TOP_MEM;
		pool.cap = m > pool.cap ? m : pool.cap;
	}
	rc = na ? top_scan(db, acc, na, &pool, err) : 0;
	for (size_t j = 0; j < na; j++) {
		int too_many = acc[j].too_many;
		acc_free(&acc[j]);
		if (rc == 0 && too_many) {
			memset(acc[j].out, 0, sizeof(*acc[j].out));
			rc = top_group_by(db, acc[j].req, acc[j].out, err);
		}
	}
	if (rc < 0)
		goto fail;
	return 0;
fail:
	for (size_t i = 0; i < n; i++)
		q_top_free(&outs[i]);
	return rc;
}

int q_top(struct fdb *db, const struct q_top *req, struct q_top_result *out, struct q_error *err)
{
	return q_top_many(db, req, 1, out, err);
}
