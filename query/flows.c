/* query — listing flows and exporting their packets (see query.h).
 *
 * The SQL is built here from constant fragments only; every value from a user
 * (filter terms, times, limits) is a bound parameter.  JSON objects are built by
 * SQLite's json_object() (its escaping is exact and it is fast); the packet
 * store's state of each flow is appended in C, since it lives in another file.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "flowdb.h"
#include "pcapng.h"
#include "pktstore.h"
#include "internal.h"
#include "query.h"

int q_write_file(void *arg, const void *buf, size_t len)
{
	FILE *f = arg;
	if (len && fwrite(buf, 1, len, f) != len)
		return -EIO;
	return 0;
}

/* ---- SQL ------------------------------------------------------------------ */

/* A statement being put together: constant fragments only; the filter's SQL
 * from q_compile and every value as a parameter. */
struct sqlbuf {
	char text[8192];
	size_t off;
	struct fdb_param *param;
	size_t nparam, cap;
	struct q_sql *filter;   /* owned */
	int big;                /* the filter's WHERE did not fit: allocated text */
	char *heap;
};

static void sql_add(struct sqlbuf *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sql_add(struct sqlbuf *q, const char *fmt, ...)
{
	if (q->off >= sizeof(q->text))
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(q->text + q->off, sizeof(q->text) - q->off, fmt, ap);
	va_end(ap);
	q->off = n < 0 ? sizeof(q->text) : q->off + (size_t)n;
}

static int param_int(struct sqlbuf *q, int64_t v)
{
	q->param[q->nparam] = (struct fdb_param){.type = FDB_INT, .i = v};
	return (int)++q->nparam;
}

static void sqlbuf_free(struct sqlbuf *q)
{
	if (!q)
		return;
	q_sql_free(q->filter);
	free(q->param);
	free(q->heap);
	free(q);
}

/* The statement's text: the fixed buffer, or for a filter too long for it an
 * allocated copy (filters may compile to a few kB of SQL). */
static const char *sql_text(struct sqlbuf *q) { return q->heap ? q->heap : q->text; }

static const struct {
	const char *name, *key;  /* the sort key's SQL over `flows f` */
	int desc;
} orders[Q_ORDER__COUNT] = {
	[Q_ORDER_LAST_DESC] = {"-last", "f.last_us", 1},
	[Q_ORDER_FIRST_ASC] = {"first", "f.first_us", 0},
	[Q_ORDER_LAST_ASC] = {"last", "f.last_us", 0},
	[Q_ORDER_FIRST_DESC] = {"-first", "f.first_us", 1},
	[Q_ORDER_ID_DESC] = {"-id", "f.id", 1},
	[Q_ORDER_ID_ASC] = {"id", "f.id", 0},
	[Q_ORDER_BYTES_DESC] = {"-bytes", "(f.c2s_bytes + f.s2c_bytes)", 1},
	[Q_ORDER_PACKETS_DESC] = {"-packets", "(f.c2s_pkts + f.s2c_pkts)", 1},
};

int q_order_parse(const char *name, enum q_order *out)
{
	for (int i = 0; i < Q_ORDER__COUNT; i++)
		if (!strcmp(orders[i].name, name)) {
			*out = (enum q_order)i;
			return 0;
		}
	return -EINVAL;
}

const char *q_order_name(enum q_order order)
{
	return order < Q_ORDER__COUNT ? orders[order].name : "?";
}

/* How where() asks: the planner's way, walking the last_us index (INDEXED BY
 * flows_last), or (WHERE_WALK) the filter and the cursor alone in last_us order
 * from the end, with no limit, for first_bound(): through the index, or
 * (WHERE_WALK_PLANNED) as the planner likes, where INDEXED BY cannot be said (a
 * read-only handle on an older file reads flows through a view). */
enum { WHERE_PLAN, WHERE_TIME_SCAN, WHERE_WALK, WHERE_WALK_PLANNED };

/* Appends " FROM flows f WHERE <filter> [AND <after the cursor>] [AND last_us >=
 * min_last] ORDER BY ... LIMIT ?" for sel, with one row more than the limit:
 * whether another page follows.  min_last INT64_MIN: none. */
static int where(struct sqlbuf *q, const struct q_select *sel, int mode, int64_t min_last, struct q_error *err)
{
	struct q_compile_opts opts;
	q_compile_opts_default(&opts);
	opts.range = sel->range;
	int rc = q_compile(sel->filter, &opts, &q->filter, err);
	if (rc < 0)
		return rc;
	q->cap = q->filter->nparams + 5;
	if (!(q->param = calloc(q->cap, sizeof(*q->param))))
		return q_err(err, -ENOMEM, 0, "out of memory");
	q_sql_params(q->filter, q->param);
	q->nparam = q->filter->nparams;
	/* The filter's parameters are ?1..?n (first_param 1); ours follow.  The
	 * filter comes first in the WHERE (its SQL is sized for that). */
	enum q_order o = sel->order < Q_ORDER__COUNT ? sel->order : Q_ORDER_LAST_DESC;
	const char *key = orders[o].key, *dir = orders[o].desc ? "DESC" : "";
	char tail[512] = "";
	size_t t = 0;
	if (sel->after.set) {
		/* rows after (value, id) in this order: keyset pagination */
		const char *cmp = orders[o].desc ? "<" : ">";
		int v = param_int(q, sel->after.value), id = param_int(q, sel->after.id);
		if (o == Q_ORDER_ID_DESC || o == Q_ORDER_ID_ASC)
			t = (size_t)snprintf(tail, sizeof(tail), " AND f.id %s ?%d", cmp, id);
		else
			t = (size_t)snprintf(tail, sizeof(tail), " AND (%s %s ?%d OR (%s = ?%d AND f.id %s ?%d))",
					     key, cmp, v, key, v, cmp, id);
	}
	if (min_last != INT64_MIN) {
		int ml = param_int(q, min_last);
		t += (size_t)snprintf(tail + t, sizeof(tail) - t, " AND f.last_us >= ?%d", ml);
	}
	if (mode == WHERE_WALK || mode == WHERE_WALK_PLANNED) {
		snprintf(tail + t, sizeof(tail) - t, " ORDER BY f.last_us DESC");
	} else {
		int lim = param_int(q, sel->limit < 0 ? -1 : sel->limit < INT64_MAX ? sel->limit + 1 : sel->limit);
		snprintf(tail + t, sizeof(tail) - t, " ORDER BY %s %s, f.id %s LIMIT ?%d", key, dir, dir, lim);
	}
	/* The page's ids first, then its columns: when the order cannot come from
	 * an index (e.g. pod == X, an OR over three columns), SQLite sorts whole
	 * result rows, so a JSON row (json_object over every column) was built for
	 * each of the 15,000 matches of a 1M-flow database to keep 100 (240 ms;
	 * now 15 ms).  Without a limit there is nothing to save. */
	int wrap = sel->limit >= 0 && mode != WHERE_WALK && mode != WHERE_WALK_PLANNED;
	char outer[160] = "";
	if (wrap)
		snprintf(outer, sizeof(outer), ") ORDER BY %s %s, f.id %s", key, dir, dir);
	char head[128];
	snprintf(head, sizeof(head), wrap ? " FROM flows f WHERE f.id IN (SELECT f.id FROM flows f%s WHERE "
					  : " FROM flows f%s WHERE ",
		 mode == WHERE_TIME_SCAN || mode == WHERE_WALK ? " INDEXED BY flows_last" : "");
	size_t need = q->off + strlen(head) + q->filter->where_len + strlen(tail) + strlen(outer) + 1;
	if (need > sizeof(q->text)) {
		if (!(q->heap = malloc(need)))
			return q_err(err, -ENOMEM, 0, "out of memory");
		snprintf(q->heap, need, "%s%s%s%s%s", q->text, head, q->filter->where, tail, outer);
		return 0;
	}
	sql_add(q, "%s%s%s%s", head, q->filter->where, tail, outer);
	return 0;
}

/* A page in last-packet order whose filter an index narrows (pod, namespace, an
 * address, a port) is planned as "the index's matches, sorted": right when they
 * are few, but when they are many (ns == default, dport == 443 on a busy node:
 * hundreds of thousands) the sort reads and orders all of them to keep 100 —
 * seconds on millions of flows — where walking the last_us index from the end
 * finds the page after a few hundred rows.  So when the planner would sort, its
 * plan runs within a budget of TIME_SCAN_STEPS of SQLite's virtual machine steps
 * (TIME_SCAN_STEPS_PER_ROW per row asked, if more; ~10-20 steps a match, so
 * some 10,000 matches); past it the page is asked again walking the time
 * index, which then finds it quickly: the filter matches many.  A sparse filter
 * costs nothing more; a dense one at most the budget (~20 ms here). */
#define TIME_SCAN_STEPS 200000
#define TIME_SCAN_STEPS_PER_ROW 4000

static void where_reset(struct sqlbuf *q, size_t off)
{
	q_sql_free(q->filter);
	q->filter = NULL;
	free(q->param);
	q->param = NULL;
	q->nparam = q->cap = 0;
	free(q->heap);
	q->heap = NULL;
	q->off = off;
	q->text[off] = 0;
}

/* Appends the FROM/WHERE/ORDER of sel to q (which holds the SELECT list), opens
 * the cursor and steps it once: *first is that step's result (1 a row, 0 none,
 * < 0 an error). */
/* A page in first-packet order, newest first (the web page's "First packet"
 * column) has no index to walk: the planner sorts every match (3.4 s for 10M
 * flows).  But a flow's first packet is no later than its last, so the page is
 * among the flows whose last packets are newest: walking the last_us index from
 * the end and holding the limit + 1 largest first_us seen, once they are held a
 * flow whose last packet is older than the smallest of them cannot belong.  That
 * smallest is the bound: the page asked with last_us >= it (an index range)
 * holds every flow the sort would have kept.  Asked only when the planner's
 * own plan ran out of the budget of last-packet pages (a sparse filter sorts
 * its few matches at once).  The walk visits the flows that overlap the page's
 * time; past FIRST_WALK_STEPS virtual machine steps (long-lived flows by the
 * hundred thousand) it gives up and the page is sorted as before. */
#define FIRST_WALK_STEPS 5000000
#define FIRST_BOUND_MAX_LIMIT 100000 /* the heap: 8 bytes a row */

static void heap_down(int64_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && h[l] < h[m])
			m = l;
		if (r < n && h[r] < h[m])
			m = r;
		if (m == i)
			return;
		int64_t t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void heap_up(int64_t *h, size_t i)
{
	while (i && h[(i - 1) / 2] > h[i]) {
		int64_t t = h[i];
		h[i] = h[(i - 1) / 2];
		h[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

/* *bound: the smallest last_us the page's flows can have (INT64_MIN: the walk
 * held fewer than limit + 1 matches, so all of them are the page).  0; 1 when
 * there is none to find (past the budget, or no last_us index: a file whose
 * deferred build was cut short, opened read-only); or a negative errno with err
 * filled. */
static int first_bound(struct fdb *db, const struct q_select *sel, int64_t *bound, struct q_error *err)
{
	struct sqlbuf *w = calloc(1, sizeof(*w));
	struct fdb_cursor *c = NULL;
	size_t k = (size_t)sel->limit + 1, n = 0;
	int64_t *h = malloc(k * sizeof(*h));
	int rc;
	*bound = INT64_MIN;
	if (!w || !h) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	for (int mode = WHERE_WALK; !c; mode = WHERE_WALK_PLANNED) {
		if (mode == WHERE_WALK_PLANNED)
			where_reset(w, 0);
		sql_add(w, "SELECT f.first_us, f.last_us");
		if ((rc = where(w, sel, mode, INT64_MIN, err)) < 0)
			goto out;
		if (fdb_cursor_open(db, sql_text(w), w->param, w->nparam, &c) < 0 && mode == WHERE_WALK_PLANNED) {
			rc = 1;
			goto out;
		}
	}
	fdb_cursor_budget(c, FIRST_WALK_STEPS);
	while ((rc = fdb_cursor_next(c)) == 1) {
		int64_t fu = fdb_cursor_int(c, 0), lu = fdb_cursor_int(c, 1);
		if (n == k && lu < h[0])
			break; /* no older flow can enter */
		if (n < k) {
			h[n] = fu;
			heap_up(h, n++);
		} else if (fu > h[0]) {
			h[0] = fu;
			heap_down(h, n, 0);
		}
	}
	if (rc == -EAGAIN) {
		rc = 1;
	} else if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
	} else {
		rc = 0;
		if (n == k)
			*bound = h[0];
	}
out:
	fdb_cursor_close(c);
	sqlbuf_free(w);
	free(h);
	return rc;
}

/* The page of a first-packet order past the planner's budget: bounded by
 * first_bound(), or sorted as the planner likes without a budget. */
static int open_first_page(struct fdb *db, struct sqlbuf *q, size_t off, const struct q_select *sel,
			   struct fdb_cursor **c, int *first, struct q_error *err)
{
	int64_t bound = INT64_MIN;
	int rc = sel->limit <= FIRST_BOUND_MAX_LIMIT ? first_bound(db, sel, &bound, err) : 1;
	if (rc < 0)
		return rc;
	/* the range of last_us through its index: a filter's own index (a
	 * namespace) would read all of its matches to test the bound */
	where_reset(q, off);
	if ((rc = where(q, sel, bound != INT64_MIN ? WHERE_TIME_SCAN : WHERE_PLAN, bound, err)) < 0)
		return rc;
	if (fdb_cursor_open(db, sql_text(q), q->param, q->nparam, c) < 0) {
		where_reset(q, off); /* no INDEXED BY through a view: the planner's way */
		if ((rc = where(q, sel, WHERE_PLAN, bound, err)) < 0)
			return rc;
		if ((rc = fdb_cursor_open(db, sql_text(q), q->param, q->nparam, c)) < 0)
			return q_err(err, rc, 0, "%s", fdb_errmsg(db));
	}
	*first = fdb_cursor_next(*c);
	return 0;
}

static int open_page(struct fdb *db, struct sqlbuf *q, const struct q_select *sel, struct fdb_cursor **c,
		     int *first, struct q_error *err)
{
	enum q_order o = sel->order < Q_ORDER__COUNT ? sel->order : Q_ORDER_LAST_DESC;
	int rc, budget = 0;
	size_t off = q->off;
	*c = NULL;
	if ((rc = where(q, sel, WHERE_PLAN, INT64_MIN, err)) < 0)
		return rc;
	if ((o == Q_ORDER_LAST_DESC || o == Q_ORDER_LAST_ASC || o == Q_ORDER_FIRST_DESC) && sel->limit >= 0 &&
	    sel->limit < INT32_MAX) {
		/* Only where the planner would sort the matches: the subquery's own
		 * "USE TEMP B-TREE FOR ORDER BY" besides the page's (a filter no
		 * index narrows is walked in time order already; first_us has no
		 * index, so that order always sorts). */
		char plan[2048];
		int sorts = 0;
		if (fdb_explain(db, sql_text(q), q->param, q->nparam, plan, sizeof(plan)) == 0)
			for (const char *p = plan; (p = strstr(p, "B-TREE FOR ORDER BY")); p++)
				sorts++;
		budget = sorts >= 2;
	}
	if ((rc = fdb_cursor_open(db, sql_text(q), q->param, q->nparam, c)) < 0)
		return q_err(err, rc, 0, "%s", fdb_errmsg(db));
	if (budget) {
		uint64_t steps = (uint64_t)sel->limit * TIME_SCAN_STEPS_PER_ROW;
		fdb_cursor_budget(*c, steps > TIME_SCAN_STEPS ? steps : TIME_SCAN_STEPS);
	}
	*first = fdb_cursor_next(*c);
	if (!budget || *first != -EAGAIN) {
		fdb_cursor_budget(*c, 0);
		return 0;
	}
	fdb_cursor_close(*c);
	*c = NULL;
	if (o == Q_ORDER_FIRST_DESC)
		return open_first_page(db, q, off, sel, c, first, err);
	/* many matches: the time index from the end */
	where_reset(q, off);
	if ((rc = where(q, sel, WHERE_TIME_SCAN, INT64_MIN, err)) < 0)
		return rc;
	if (fdb_cursor_open(db, sql_text(q), q->param, q->nparam, c) < 0) {
		/* no last_us index (a file whose deferred build was cut short, open
		 * read-only): the planner's way after all, without a budget */
		where_reset(q, off);
		if ((rc = where(q, sel, WHERE_PLAN, INT64_MIN, err)) < 0)
			return rc;
		if ((rc = fdb_cursor_open(db, sql_text(q), q->param, q->nparam, c)) < 0)
			return q_err(err, rc, 0, "%s", fdb_errmsg(db));
	}
	*first = fdb_cursor_next(*c);
	return 0;
}

/* ---- output --------------------------------------------------------------- */

/* Columns of JSON and CSV output, in order; packets_state, the last, comes from
 * the packet store.  Times stay in microseconds (exact); the table format is the
 * one for humans. */
static const char *const out_cols[] = {
	"id", "obs_id", "pod", "end_reason", "family", "ip_proto", "src", "sport", "dst", "dport",
	"vlan", "tunnel", "vni", "outer_src", "outer_sport", "outer_dst", "outer_dport",
	"first_us", "last_us", "c2s_pkts", "s2c_pkts", "c2s_bytes", "s2c_bytes", "c2s_payload",
	"s2c_payload", "c2s_tcp_flags", "s2c_tcp_flags", "syn", "synack", "fin", "rst", "rtt_us",
	"c2s_retrans", "s2c_retrans", "c2s_ooo", "s2c_ooo", "frags", "community_id",
	"master_id", "app_id", "proto_name", "master_name", "app_name", "category", "risk",
	"risk_names", "host", "url", "http_status", "dns_rcode", "ja3c", "ja3s", "dpi_done",
	"confidence", "src_pod", "src_ns", "src_node", "src_workload", "src_labels", "dst_pod",
	"dst_ns", "dst_node", "dst_workload", "dst_labels", "service", "service_via",
	"outer_src_node", "outer_dst_node",
	"iface", "packets_state",
};
#define N_OUT_COLS ((int)(sizeof(out_cols) / sizeof(out_cols[0])))
#define JSON_SPLIT 40 /* out_cols[JSON_SPLIT..] go into the second json_object() */

static void out_expr(struct sqlbuf *q, int i);

/* The SQL of an output column: the column itself, but for what is computed.
 * json: labels go into JSON output as objects, not as text holding JSON. */
static void out_expr_fmt(struct sqlbuf *q, int i, int json)
{
	size_t n = strlen(out_cols[i]);
	if (json && n > 7 && !strcmp(out_cols[i] + n - 7, "_labels"))
		sql_add(q, "CASE WHEN json_valid(f.%s) THEN json(f.%s) END", out_cols[i], out_cols[i]);
	else
		out_expr(q, i);
}

static void out_expr(struct sqlbuf *q, int i)
{
	if (!strcmp(out_cols[i], "id"))
		sql_add(q, "u64text(f.id)");
	else if (!strcmp(out_cols[i], "iface"))
		sql_add(q, "(SELECT iface FROM observation_points o WHERE o.id = f.obs_id)");
	else
		sql_add(q, "f.%s", out_cols[i]);
}

/* Output through the caller's writer, with the first error kept. */
struct out {
	q_write_fn write;
	void *arg;
	int err;
	char buf[16384];
	size_t len;
};

static void out_flush(struct out *o)
{
	if (o->len && !o->err)
		o->err = o->write(o->arg, o->buf, o->len);
	o->len = 0;
}

static void out_bytes(struct out *o, const char *s, size_t n)
{
	if (o->err)
		return;
	if (o->len + n > sizeof(o->buf)) {
		out_flush(o);
		if (n > sizeof(o->buf)) {
			if (!o->err)
				o->err = o->write(o->arg, s, n);
			return;
		}
	}
	memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void out_str(struct out *o, const char *s) { out_bytes(o, s, strlen(s)); }

static void out_fmt(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_fmt(struct out *o, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		out_bytes(o, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* JSON text from SQLite's json_object(), which escapes C0 controls only: DEL and
 * C1 controls (as UTF-8: C2 80..9F, which terminals also obey) go out as
 * \u007f / \u0080.. too, so a JSON answer shown raw carries no escape sequence
 * either.  They can only be inside strings (the structure is ASCII). */
static void out_json(struct out *o, const char *s, size_t n)
{
	size_t start = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		unsigned code;
		if (ch == 0x7f)
			code = 0x7f;
		else if (ch == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 && (unsigned char)s[i + 1] <= 0x9f)
			code = (unsigned char)s[i + 1];
		else
			continue;
		out_bytes(o, s + start, i - start);
		out_fmt(o, "\\u%04x", code);
		i += code == 0x7f ? 0 : 1;
		start = i + 1;
	}
	out_bytes(o, s + start, n - start);
}

/* One CSV field.  Host names and other texts come off the wire: control
 * characters (C0, DEL, and C1 as UTF-8, which terminals also obey) are written
 * as '?', as the table does, so a CSV shown in a terminal or read by a careless
 * tool carries no escape sequences or line breaks of an attacker's choosing.
 * (JSON keeps them, escaped as \u00XX.)  Fields with a comma or quote are quoted. */
static void csv_field(struct out *o, const char *v)
{
	int quote = strpbrk(v, ",\"") != NULL;
	if (quote)
		out_str(o, "\"");
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			out_str(o, "?");
		} else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
			out_str(o, "?");
			p++;
		} else {
			if (*p == '"')
				out_str(o, "\"");
			out_bytes(o, (const char *)p, 1);
		}
	}
	if (quote)
		out_str(o, "\"");
}

static const char *l4_name(int proto, char *buf, size_t len)
{
	switch (proto) {
	case 1: return "ICMP";
	case 6: return "TCP";
	case 17: return "UDP";
	case 58: return "ICMPv6";
	case 132: return "SCTP";
	default: snprintf(buf, len, "%d", proto); return buf;
	}
}

#define TABLE_COLS 11
#define TABLE_WIDTH_ROWS 1000 /* rows measured for column widths before streaming */

struct table_row {
	char *col[TABLE_COLS];
};

/* ID first: it is what `podcap export --flow` takes.  SEEN ON is the observation
 * point, with the tunnel when the flow was seen encapsulated there: the same
 * connection on a pod veth and on the underlay is two rows. */
static const char *const table_head[TABLE_COLS] = {"ID", "TIME (UTC)", "SEEN ON", "L4", "CLIENT -> SERVER",
						   "PODS", "APP", "HOST", "PKTS", "BYTES", "RTT"};

static void table_print(struct out *o, struct table_row *rows, size_t n, int *w)
{
	for (size_t r = 0; r < n; r++) {
		for (int c = 0; c < TABLE_COLS; c++) {
			/* Numbers right-aligned, text left-aligned; no trailing blanks. */
			int right = c >= 8 || c == 0;
			if (c == TABLE_COLS - 1)
				out_fmt(o, "%*s\n", w[c], rows[r].col[c]);
			else
				out_fmt(o, right ? "%*s  " : "%-*s  ", w[c], rows[r].col[c]);
		}
	}
}

static void fmt_endpoint(char *buf, size_t len, const char *addr, int port, int family, int proto)
{
	int has_port = proto == 6 || proto == 17 || proto == 132;
	if (!addr)
		addr = "?";
	if (!has_port)
		snprintf(buf, len, "%s", addr);
	else if (family == 6)
		snprintf(buf, len, "[%s]:%d", addr, port);
	else
		snprintf(buf, len, "%s:%d", addr, port);
}

/* Columns of the table query, in this order. */
#define TABLE_SELECT "last_us, ip_proto, family, src, sport, dst, dport, proto_name, host," \
	" c2s_pkts + s2c_pkts, c2s_bytes + s2c_bytes, rtt_us, id," \
	" (SELECT iface FROM observation_points o WHERE o.id = f.obs_id), tunnel, vni," \
	" src_pod, src_node, dst_pod, dst_node, service, confidence"

static int table_row(struct fdb_cursor *c, struct table_row *row)
{
	char tbuf[64], l4buf[16], a[80], b[80], ep[200], pk[32], by[32], rtt[32];
	int64_t last = fdb_cursor_int(c, 0);
	time_t secs = (time_t)(last / 1000000);
	struct tm tm;
	if (gmtime_r(&secs, &tm))
		snprintf(tbuf, sizeof(tbuf), "%04d-%02d-%02d %02d:%02d:%02d.%03d", tm.tm_year + 1900,
			 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int)(last % 1000000 / 1000));
	else
		snprintf(tbuf, sizeof(tbuf), "%lld", (long long)last);
	int proto = (int)fdb_cursor_int(c, 1), family = (int)fdb_cursor_int(c, 2);
	fmt_endpoint(a, sizeof(a), fdb_cursor_text(c, 3), (int)fdb_cursor_int(c, 4), family, proto);
	fmt_endpoint(b, sizeof(b), fdb_cursor_text(c, 5), (int)fdb_cursor_int(c, 6), family, proto);
	snprintf(ep, sizeof(ep), "%s -> %s", a, b);
	const char *app = fdb_cursor_text(c, 7);
	const char *host = fdb_cursor_text(c, 8);
	snprintf(pk, sizeof(pk), "%lld", (long long)fdb_cursor_int(c, 9));
	snprintf(by, sizeof(by), "%lld", (long long)fdb_cursor_int(c, 10));
	if (fdb_cursor_type(c, 11) == FDB_NULL)
		snprintf(rtt, sizeof(rtt), "-");
	else
		snprintf(rtt, sizeof(rtt), "%.3fms", (double)fdb_cursor_int(c, 11) / 1000.0);
	char hostbuf[48];
	/* Long host names would push every other column off the screen. */
	snprintf(hostbuf, sizeof(hostbuf), "%s", host ? host : "-");
	if (host && strlen(host) >= sizeof(hostbuf))
		memcpy(hostbuf + sizeof(hostbuf) - 4, "...", 4);
	char idbuf[32], seen[96];
	snprintf(idbuf, sizeof(idbuf), "%llu", (unsigned long long)fdb_cursor_int(c, 12));
	const char *iface = fdb_cursor_text(c, 13);
	const char *tun = fdb_cursor_text(c, 14);
	if (tun && strcmp(tun, "none") && fdb_cursor_type(c, 15) != FDB_NULL)
		snprintf(seen, sizeof(seen), "%s %s/%lld", iface ? iface : "?", tun,
			 (long long)fdb_cursor_int(c, 15));
	else if (tun && strcmp(tun, "none"))
		snprintf(seen, sizeof(seen), "%s %s", iface ? iface : "?", tun);
	else
		snprintf(seen, sizeof(seen), "%s", iface ? iface : "?");
	/* PODS: who the ends are, "client -> Service -> server" when a VIP was
	 * involved; a node's own address as "node NAME". */
	char pods[640], from[280], to[280], appbuf[96];
	const char *sp = fdb_cursor_text(c, 16), *sn = fdb_cursor_text(c, 17);
	const char *dp = fdb_cursor_text(c, 18), *dn = fdb_cursor_text(c, 19);
	const char *svc = fdb_cursor_text(c, 20), *conf = fdb_cursor_text(c, 21);
	snprintf(from, sizeof(from), "%s%s", sp ? "" : sn ? "node " : "?", sp ? sp : sn ? sn : "");
	snprintf(to, sizeof(to), "%s%s", dp ? "" : dn ? "node " : "?", dp ? dp : dn ? dn : "");
	if (!sp && !sn && !dp && !dn && !svc)
		snprintf(pods, sizeof(pods), "-");
	else if (svc)
		snprintf(pods, sizeof(pods), "%s -> %s -> %s", from, svc, to);
	else
		snprintf(pods, sizeof(pods), "%s -> %s", from, to);
	/* nDPI's guesses are marked as such: "POP3 (by-port)" */
	if (conf && (!strcmp(conf, "by-port") || !strcmp(conf, "by-ip")))
		snprintf(appbuf, sizeof(appbuf), "%s (%s)", app ? app : "-", conf);
	else
		snprintf(appbuf, sizeof(appbuf), "%s", app ? app : "-");
	const char *v[TABLE_COLS] = {idbuf, tbuf, seen, l4_name(proto, l4buf, sizeof(l4buf)), ep,
				     pods, appbuf, hostbuf, pk, by, rtt};
	for (int k = 0; k < TABLE_COLS; k++) {
		if (!(row->col[k] = strdup(v[k])))
			return -ENOMEM;
		/* Host names come off the wire: no terminal escape sequences (C0,
		 * DEL, and C1 as UTF-8, as the CSV writes them). */
		char *w = row->col[k];
		for (const unsigned char *ch = (const unsigned char *)row->col[k]; *ch; ch++) {
			if (*ch < 0x20 || *ch == 0x7f) {
				*w++ = '?';
			} else if (*ch == 0xc2 && ch[1] >= 0x80 && ch[1] <= 0x9f) {
				*w++ = '?';
				ch++;
			} else {
				*w++ = (char)*ch;
			}
		}
		*w = 0;
	}
	return 0;
}

/* What the packet store holds of a flow, or the database's own column when there
 * is no store to ask. */
static const char *packets_state(struct pks *store, int64_t id, const char *column)
{
	if (store) {
		int st = pks_flow_state(store, (uint64_t)id);
		if (st >= 0)
			return pks_flow_state_name(st);
	}
	return column ? column : "none";
}

static void free_rows(struct table_row *rows, size_t n)
{
	for (size_t r = 0; r < n; r++)
		for (int k = 0; k < TABLE_COLS; k++)
			free(rows[r].col[k]);
}

long q_list_flows(struct fdb *db, struct pks *store, const struct q_select *sel, enum q_format fmt,
		  q_write_fn write, void *arg, struct q_page *page, struct q_error *err)
{
	struct sqlbuf *q = calloc(1, sizeof(*q));
	struct out *o = calloc(1, sizeof(*o));
	struct table_row *rows = NULL;
	struct fdb_cursor *c = NULL;
	size_t nrows = 0;
	long count = 0;
	int rc = 0, w[TABLE_COLS], widths_fixed = 0;

	if (!q || !o) {
		rc = q_err(err, -ENOMEM, 0, "out of memory");
		goto out;
	}
	o->write = write;
	o->arg = arg;
	sql_add(q, "SELECT ");
	if (fmt == Q_FMT_TABLE) {
		sql_add(q, TABLE_SELECT);
	} else if (fmt == Q_FMT_JSON || fmt == Q_FMT_NDJSON) {
		/* Two objects, joined below: SQLite takes at most 100 arguments per
		 * function call, and every column is two. */
		sql_add(q, "f.id, f.packets_state, json_object(");
		for (int i = 0; i < N_OUT_COLS - 1; i++) {
			if (i == JSON_SPLIT)
				sql_add(q, "), json_object(");
			sql_add(q, "%s'%s',", i && i != JSON_SPLIT ? "," : "", out_cols[i]);
			out_expr_fmt(q, i, 1);
		}
		sql_add(q, ")");
	} else if (fmt == Q_FMT_CSV) {
		sql_add(q, "f.id, f.packets_state");
		for (int i = 0; i < N_OUT_COLS - 1; i++) {
			sql_add(q, ",");
			out_expr(q, i);
		}
	} else {
		rc = q_err(err, -EINVAL, 0, "unknown output format %d", (int)fmt);
		goto out;
	}
	/* the last two columns: the row's id and sort key, for the next page */
	sql_add(q, ", f.id, %s", orders[sel->order < Q_ORDER__COUNT ? sel->order : 0].key);
	if (page)
		memset(page, 0, sizeof(*page));
	int first;
	if ((rc = open_page(db, q, sel, &c, &first, err)) < 0)
		goto out;
	if (fmt == Q_FMT_TABLE) {
		rows = calloc(TABLE_WIDTH_ROWS, sizeof(*rows));
		if (!rows) {
			rc = q_err(err, -ENOMEM, 0, "out of memory");
			goto out;
		}
		for (int k = 0; k < TABLE_COLS; k++)
			w[k] = (int)strlen(table_head[k]);
	} else if (fmt == Q_FMT_JSON) {
		out_str(o, "[");
	} else if (fmt == Q_FMT_CSV) {
		for (int i = 0; i < N_OUT_COLS; i++) {
			if (i)
				out_str(o, ",");
			out_str(o, out_cols[i]);
		}
		out_str(o, "\n");
	}
	int ncols = fdb_cursor_columns(c);
	for (rc = first; rc == 1 && !o->err; rc = fdb_cursor_next(c)) {
		if (count == LONG_MAX)
			break;
		if (sel->limit >= 0 && count == sel->limit) {
			/* the one row more than asked: another page follows */
			if (page)
				page->more = 1;
			break;
		}
		count++;
		if (page) {
			page->next.set = 1;
			page->next.id = fdb_cursor_int(c, ncols - 2);
			page->next.value = fdb_cursor_int(c, ncols - 1);
		}
		if (fmt == Q_FMT_JSON || fmt == Q_FMT_NDJSON) {
			const char *obj = fdb_cursor_text(c, 2), *obj2 = fdb_cursor_text(c, 3);
			size_t len = obj ? strlen(obj) : 0, len2 = obj2 ? strlen(obj2) : 0;
			if (fmt == Q_FMT_JSON)
				out_str(o, count > 1 ? ",\n" : "\n");
			if (len < 2 || obj[len - 1] != '}' || len2 < 3 || obj2[0] != '{' || obj2[len2 - 1] != '}') {
				out_str(o, "null");
			} else {
				/* both json_object texts as one object, then packets_state */
				out_json(o, obj, len - 1);
				out_str(o, ",");
				out_json(o, obj2 + 1, len2 - 2);
				out_fmt(o, ",\"packets_state\":\"%s\"}",
					packets_state(store, fdb_cursor_int(c, 0), fdb_cursor_text(c, 1)));
			}
			if (fmt == Q_FMT_NDJSON)
				out_str(o, "\n");
		} else if (fmt == Q_FMT_CSV) {
			for (int i = 0; i < N_OUT_COLS - 1; i++) {
				if (i)
					out_str(o, ",");
				const char *v = fdb_cursor_text(c, i + 2);
				if (v)
					csv_field(o, v);
			}
			out_str(o, ",");
			out_str(o, packets_state(store, fdb_cursor_int(c, 0), fdb_cursor_text(c, 1)));
			out_str(o, "\n");
		} else {
			struct table_row row;
			memset(&row, 0, sizeof(row));
			if (table_row(c, &row) < 0) {
				free_rows(&row, 1);
				rc = q_err(err, -ENOMEM, 0, "out of memory");
				goto out;
			}
			if (widths_fixed) {
				table_print(o, &row, 1, w);
				free_rows(&row, 1);
				continue;
			}
			rows[nrows++] = row;
			for (int k = 0; k < TABLE_COLS; k++) {
				int l = (int)strlen(row.col[k]);
				if (l > w[k])
					w[k] = l;
			}
			if (nrows == TABLE_WIDTH_ROWS) {
				struct table_row head;
				memcpy(head.col, table_head, sizeof(head.col));
				table_print(o, &head, 1, w);
				table_print(o, rows, nrows, w);
				widths_fixed = 1;
			}
		}
	}
	if (rc < 0) {
		q_err(err, rc, 0, "%s", fdb_errmsg(db));
		goto out;
	}
	if (page && !page->more)
		page->next.set = 0;
	if (fmt == Q_FMT_JSON) {
		out_str(o, count ? "\n]\n" : "]\n");
	} else if (fmt == Q_FMT_TABLE && !widths_fixed) {
		struct table_row head;
		memcpy(head.col, table_head, sizeof(head.col));
		table_print(o, &head, 1, w);
		table_print(o, rows, nrows, w);
	}
	out_flush(o);
	rc = 0;
out:
	if (o && o->err && rc == 0) {
		rc = o->err;
		q_err(err, rc, 0, "writing output: %s", strerror(-rc));
	}
	if (rows) {
		free_rows(rows, nrows);
		free(rows);
	}
	fdb_cursor_close(c);
	sqlbuf_free(q);
	free(o);
	return rc < 0 ? rc : count;
}

/* ---- the packet store and export ----------------------------------------- */

int q_open_store(struct fdb *db, const char *dir, void (*log)(void *, const char *), void *log_arg,
		 struct pks **out, struct q_error *err)
{
	char path[2 * PATH_MAX + 2], v[PATH_MAX];
	*out = NULL;
	if (dir) {
		snprintf(path, sizeof(path), "%s", dir);
	} else {
		int rc = fdb_meta_get(db, "packet_store_dir", v, sizeof(v));
		if (rc == -ENOENT)
			return q_err(err, -ENOENT, 0, "%s has no packet store (it was written without --store);"
				     " give one with --store DIR", fdb_path(db));
		if (rc < 0)
			return q_err(err, rc, 0, "%s", fdb_errmsg(db));
		const char *dbpath = fdb_path(db);
		const char *slash = strrchr(dbpath, '/');
		if (v[0] == '/' || !slash || access(v, F_OK) == 0)
			snprintf(path, sizeof(path), "%s", v);
		else
			snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - dbpath), dbpath, v);
	}
	struct pks_config cfg;
	pks_config_default(&cfg);
	cfg.readonly = 1;
	cfg.log = log;
	cfg.log_arg = log_arg;
	char e[512];
	int rc = pks_open(path, &cfg, out, e, sizeof(e));
	if (rc < 0)
		return q_err(err, rc, 0, "%s", e);
	return 0;
}

/* --inner for exports: each stored frame decoded again to find its inner packet. */
static int inner_rewrite(void *arg, int linktype, const uint8_t *frame, uint32_t caplen, uint32_t wirelen,
			 uint8_t *out, size_t outcap, uint32_t *out_caplen, uint32_t *out_wirelen)
{
	const struct dc_config *cfg = arg;
	struct dc_packet p;
	dc_decode(cfg, linktype, frame, caplen, wirelen, &p);
	return q_inner_frame(&p, frame, out, outcap, out_caplen, out_wirelen);
}

int q_export(struct fdb *db, struct pks *store, const uint64_t *ids, size_t n, const struct q_select *sel,
	     struct pn_writer *w, void (*report)(void *arg, const struct pks_flow *f), void *report_arg,
	     void (*log)(void *, const char *), void *log_arg, uint64_t *selected, uint64_t *written,
	     struct q_error *err)
{
	return q_export_ex(db, store, ids, n, sel, NULL, w, report, report_arg, log, log_arg, selected, written,
			   err);
}

int q_export_ex(struct fdb *db, struct pks *store, const uint64_t *ids, size_t n, const struct q_select *sel,
		const struct q_export_opts *opts, struct pn_writer *w,
		void (*report)(void *arg, const struct pks_flow *f), void *report_arg,
		void (*log)(void *, const char *), void *log_arg, uint64_t *selected, uint64_t *written,
		struct q_error *err)
{
	struct dc_config dc;
	struct pks_export *x = NULL;
	struct fdb_cursor *c = NULL;
	struct sqlbuf *q = calloc(1, sizeof(*q));
	int rc;
	uint64_t nsel = 0;
	int more = 0;

	*written = 0;
	if (selected)
		*selected = 0;
	if (!q)
		return q_err(err, -ENOMEM, 0, "out of memory");
	if ((rc = pks_export_open(store, w, &x)) < 0) {
		q_err(err, rc, 0, "%s", pks_errmsg(store));
		goto out;
	}
	if (opts && opts->inner) {
		dc_config_default(&dc);
		if ((rc = pks_export_rewrite(x, DC_LINK_ETHERNET, inner_rewrite, &dc)) < 0) {
			q_err(err, rc, 0, "%s", pks_errmsg(store));
			goto out;
		}
	}
	if (n) {
		static const char sql[] = "SELECT community_id FROM flows WHERE id = ?1";
		for (size_t i = 0; i < n; i++) {
			struct fdb_param p = {.type = FDB_INT, .i = (int64_t)ids[i]};
			if ((rc = fdb_cursor_open(db, sql, &p, 1, &c)) < 0) {
				q_err(err, rc, 0, "%s", fdb_errmsg(db));
				goto out;
			}
			rc = fdb_cursor_next(c);
			if (rc == 1) {
				char cid[64];
				const char *t = fdb_cursor_text(c, 0);
				if (!t || !*t)
					snprintf(cid, sizeof(cid), "podcap flow %" PRIu64, ids[i]);
				rc = pks_export_add(x, ids[i], t && *t ? t : cid);
				nsel++;
			} else if (rc == 0 && log) {
				char msg[96];
				snprintf(msg, sizeof(msg), "flow %" PRIu64 ": not in the flow database", ids[i]);
				log(log_arg, msg);
			}
			fdb_cursor_close(c);
			c = NULL;
			if (rc < 0) {
				q_err(err, rc, 0, "%s", rc == -ENOMEM ? "out of memory" : pks_errmsg(store));
				goto out;
			}
		}
	} else {
		sql_add(q, "SELECT id, community_id");
		int first;
		if ((rc = open_page(db, q, sel, &c, &first, err)) < 0)
			goto out;
		for (rc = first; rc == 1; rc = fdb_cursor_next(c)) {
			if (sel->limit >= 0 && (int64_t)nsel == sel->limit) {
				more = 1;
				break; /* the row where() adds to tell whether more follow */
			}
			uint64_t id = (uint64_t)fdb_cursor_int(c, 0);
			const char *t = fdb_cursor_text(c, 1);
			char cid[64];
			if (!t || !*t)
				snprintf(cid, sizeof(cid), "podcap flow %" PRIu64, id);
			if ((rc = pks_export_add(x, id, t && *t ? t : cid)) < 0) {
				q_err(err, rc, 0, "%s", pks_errmsg(store));
				goto out;
			}
			nsel++;
		}
		if (rc < 0) {
			q_err(err, rc, 0, "%s", fdb_errmsg(db));
			goto out;
		}
		fdb_cursor_close(c);
		c = NULL;
	}
	if (selected)
		*selected = nsel;
	if (opts && opts->on_selected)
		opts->on_selected(opts->on_selected_arg, nsel, more);
	if (!nsel) {
		rc = q_err(err, -ENOENT, 0, "no matching flows");
		goto out;
	}
	while ((rc = pks_export_step(x, 1u << 20)) == 1)
		;
	if (rc < 0) {
		q_err(err, rc, 0, "%s", pks_errmsg(store));
		goto out;
	}
	struct pks_flow f;
	while ((rc = pks_export_result(x, &f)) == 1) {
		*written += f.packets;
		if (report)
			report(report_arg, &f);
	}
	if (rc < 0)
		q_err(err, rc, 0, "%s", pks_errmsg(store));
out:
	fdb_cursor_close(c);
	pks_export_close(x);
	sqlbuf_free(q);
	return rc < 0 ? rc : 0;
}

int q_retained_until(struct fdb *db, int64_t *out_us)
{
	char v[32];
	*out_us = 0;
	int rc = fdb_meta_get(db, "retained_until_us", v, sizeof(v));
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	*out_us = strtoll(v, NULL, 10);
	return 0;
}

int q_time_span(struct fdb *db, int64_t *oldest_us, int64_t *newest_us)
{
	struct fdb_cursor *c = NULL;
	*oldest_us = *newest_us = 0;
	/* Two separate aggregates: each is one probe at an end of the last_us index
	 * (a combined min()/max() would scan). */
	static const char *const sql[2] = {"SELECT min(last_us) FROM flows", "SELECT max(last_us) FROM flows"};
	for (int i = 0; i < 2; i++) {
		int rc = fdb_cursor_open(db, sql[i], NULL, 0, &c);
		if (rc < 0)
			return rc;
		rc = fdb_cursor_next(c);
		if (rc == 1 && fdb_cursor_type(c, 0) == FDB_INT)
			*(i ? newest_us : oldest_us) = fdb_cursor_int(c, 0);
		fdb_cursor_close(c);
		if (rc < 0)
			return rc;
	}
	return 0;
}
