/* query — top talkers and charts: q_top() over the flow database's per-minute
 * rollup or over the matching flows (see query.h).
 *
 * Runs on the caller's thread with the caller's fdb handle, like the rest of
 * query/; the result is the caller's (q_top_free). */
#include <errno.h>
#include <stdarg.h>
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
	size_t cap = 0;
	while ((rc = fdb_cursor_next(c)) == 1) {
		if (out->nbuckets == cap) {
			cap = cap ? 2 * cap : 256;
			struct q_top_bucket *nb = realloc(out->buckets, cap * sizeof(*nb));
			if (!nb) {
				rc = q_err(err, -ENOMEM, 0, "out of memory");
				goto out;
			}
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
	if (rc < 0)
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
	else
		rc = 1;
out:
	fdb_cursor_close(c);
	if (rc < 0)
		q_top_free(out);
	return rc;
}

int q_top(struct fdb *db, const struct q_top *req, struct q_top_result *out, struct q_error *err)
{
	struct top_stmt *q = NULL;
	struct fdb_cursor *c = NULL;
	char head[512], tail[128];
	int rc;
	memset(out, 0, sizeof(*out));
	if (req->by >= Q_BY__COUNT || req->metric >= Q_METRIC__COUNT || req->limit < 1 || req->limit > 1000)
		return q_err(err, -EINVAL, 0, "bad top request");
	if (req->bucket_us > 0 && req->range.has_from && req->max_buckets > 0) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		int64_t to = req->range.has_to ? req->range.to_us : (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
		if (to > req->range.from_us && (to - req->range.from_us) / req->bucket_us > req->max_buckets)
			return q_err(err, -E2BIG, 0, "more than %lld buckets: choose a larger bucket or a shorter range",
				     (long long)req->max_buckets);
	}
	if ((rc = top_rollup(db, req, out, err)) != 0)
		return rc < 0 ? rc : 0;
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
	fdb_cursor_close(c);
	c = NULL;
	rc = 0;
	if (req->bucket_us <= 0 || !out->nrows)
		goto out;
	/* 2. those keys per time bucket (of the flows' last packets) */
	top_stmt_free(q);
	if (!(q = calloc(1, sizeof(*q)))) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	snprintf(head, sizeof(head), "(f.last_us / %lld) * %lld AS t, %s AS k, %s AS v", (long long)req->bucket_us,
		 (long long)req->bucket_us, top_by[req->by].key, metrics[req->metric].sum);
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
	size_t cap = 0;
	while ((rc = fdb_cursor_next(c)) == 1) {
		if (out->nbuckets == cap) {
			cap = cap ? 2 * cap : 256;
			struct q_top_bucket *nb = realloc(out->buckets, cap * sizeof(*nb));
			if (!nb) {
				rc = q_err(err, -ENOMEM, 0, "out of memory");
				goto out;
			}
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
	if (rc < 0)
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
	else
		rc = 0;
out:
	fdb_cursor_close(c);
	top_stmt_free(q);
	if (rc < 0)
		q_top_free(out);
	return rc;
}

