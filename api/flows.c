/* The flow endpoints: listings with keyset pages, one flow with the records of
 * the same connection elsewhere, pcapng exports streamed from the packet store,
 * and top-N with time buckets.  Every query runs on the worker thread with its
 * own read-only handles, under the database's query deadline. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"
#include "flowdb.h"
#include "pcapng.h"
#include "pktstore.h"

#define FLOWS_DEFAULT_LIMIT 100
#define FLOWS_MAX_LIMIT 10000
#define PCAP_DEFAULT_FLOWS 10000
#define PCAP_MAX_FLOWS 1000000
#define TOP_DEFAULT_LIMIT 20
#define TOP_MAX_LIMIT 1000
#define TOP_MAX_BUCKETS 1000
#define RELATED_WINDOW_US (120ull * 1000000u)
#define RELATED_MAX 100
/* pcap answers hold back their first bytes (the header and interface blocks) */
#define EXPORT_HOLD 65536

/* A non-negative decimal integer with nothing around it, at most max. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;
	if (!s || !*s || strlen(s) > 20)
		return -EINVAL;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -EINVAL;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* limit=N in 1..max, default def; answers 400 and returns -1 on a bad one. */
static int limit_param(struct srv_req *req, const char *name, uint64_t def, uint64_t max, uint64_t *out)
{
	const char *v = srv_req_query(req, name, NULL);
	*out = def;
	if (!v)
		return 0;
	if (parse_u64(v, max, out) < 0 || *out == 0) {
		srv_respond_error(req, 400, "%s must be a whole number from 1 to %" PRIu64, name, max);
		return -1;
	}
	return 0;
}

/* ---- cursors: "ORDER:VALUE:ID", e.g. "-id:0:42" or "-last:1732870000000000:42" ---- */

static void cursor_text(char *buf, size_t len, enum q_order order, const struct q_cursor *c)
{
	snprintf(buf, len, "%s:%" PRId64 ":%" PRId64, q_order_name(order), c->value, c->id);
}

static int cursor_parse(const char *s, enum q_order order, struct q_cursor *out)
{
	const char *name = q_order_name(order);
	size_t n = strlen(name);
	char *end;
	if (strncmp(s, name, n) || s[n] != ':')
		return -EINVAL;
	s += n + 1;
	if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
		return -EINVAL;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end != ':')
		return -EINVAL;
	s = end + 1;
	if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
		return -EINVAL;
	long long id = strtoll(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	out->set = 1;
	out->value = v;
	out->id = id;
	return 0;
}

/* ---- GET /api/v1/flows ---- */

static const struct {
	const char *name;
	enum q_format fmt;
	const char *type;
} formats[] = {
	{"json", Q_FMT_JSON, "application/json"},
	{"ndjson", Q_FMT_NDJSON, "application/x-ndjson"},
	{"csv", Q_FMT_CSV, "text/csv; charset=utf-8"},
	{"table", Q_FMT_TABLE, "text/plain; charset=utf-8"},
};

void api_h_flows(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct q_filter *filter = NULL;
	struct q_select sel = {0};
	struct q_page page;
	struct q_error qe = {0};
	struct jbuf b = {0};
	char *norm = NULL;
	uint64_t limit;
	size_t fi = 0;
	const char *v;

	if (api_common_params(req, &filter, &sel.range) < 0)
		return;
	if (limit_param(req, "limit", FLOWS_DEFAULT_LIMIT, FLOWS_MAX_LIMIT, &limit) < 0)
		goto out;
	sel.filter = filter;
	sel.limit = (int64_t)limit;
	sel.order = Q_ORDER_ID_DESC;
	if ((v = srv_req_query(req, "order", NULL)) && q_order_parse(v, &sel.order) < 0) {
		srv_respond_error(req, 400, "unknown order '%.40s' (-id, id, -last, last, -first, first, -bytes, -packets)", v);
		goto out;
	}
	if ((v = srv_req_query(req, "cursor", NULL)) && *v && cursor_parse(v, sel.order, &sel.after) < 0) {
		srv_respond_error(req, 400, "bad cursor (it must come from next_cursor of a page in order %s)",
				  q_order_name(sel.order));
		goto out;
	}
	if ((v = srv_req_query(req, "format", NULL))) {
		while (fi < sizeof(formats) / sizeof(formats[0]) && strcmp(formats[fi].name, v))
			fi++;
		if (fi == sizeof(formats) / sizeof(formats[0])) {
			srv_respond_error(req, 400, "unknown format '%.40s' (json, ndjson, csv, table)", v);
			goto out;
		}
	}
	struct fdb *db = api_db(a, req);
	if (!db)
		goto out;
	/* The packet store only says what it holds of each flow; without one the
	 * database's own column is shown. */
	struct pks *store = api_store_quiet(a, db);
	enum q_format fmt = formats[fi].fmt;
	if (fmt == Q_FMT_JSON)
		jb_str(&b, "{\"flows\":");
	long n = q_list_flows(db, store, &sel, fmt, jb_write, &b, &page, &qe);
	if (n < 0) {
		if (b.err == -E2BIG)
			srv_respond_error(req, 413, "the answer is too large: ask for fewer rows (limit)");
		else
			api_query_error(req, &qe, NULL);
		goto out;
	}
	char cur[96] = "";
	if (page.more)
		cursor_text(cur, sizeof(cur), sel.order, &page.next);
	int first = 0;
	bool complete = true;
	if (fmt == Q_FMT_JSON) {
		if (b.len && b.p[b.len - 1] == '\n')
			b.len--; /* the array's newline */
		jb_key(&b, &first, "next_cursor");
		jb_jstr(&b, page.more ? cur : NULL);
		jb_kv_str(&b, &first, "order", q_order_name(sel.order));
		jb_kv_i64(&b, &first, "count", n);
		norm = filter ? q_filter_text(filter) : NULL;
		jb_kv_str(&b, &first, "filter", norm ? norm : "");
		api_completeness(a, db, &sel.range, &b, &first, &complete);
		jb_str(&b, "}\n");
	} else if (fmt == Q_FMT_NDJSON) {
		/* the last line says where the next page starts and how complete this is */
		first = 1;
		jb_str(&b, "{");
		jb_key(&b, &first, "next_cursor");
		jb_jstr(&b, page.more ? cur : NULL);
		jb_kv_i64(&b, &first, "count", n);
		api_completeness(a, db, &sel.range, &b, &first, &complete);
		jb_str(&b, "}\n");
	} else {
		/* CSV and text: the same in headers */
		struct jbuf tmp = {0};
		first = 1;
		jb_str(&tmp, "{");
		api_completeness(a, db, &sel.range, &tmp, &first, &complete);
		jb_free(&tmp);
		if (page.more)
			srv_add_header(req, "X-Next-Cursor", cur);
		srv_add_header(req, "X-Complete", complete ? "true" : "false");
	}
	if (b.err) {
		srv_respond_error(req, b.err == -E2BIG ? 413 : 503, "%s",
				  b.err == -E2BIG ? "the answer is too large: ask for fewer rows (limit)" : "out of memory");
		goto out;
	}
	srv_respond_take(req, 200, formats[fi].type, b.p, b.len);
	b.p = NULL;
out:
	jb_free(&b);
	free(norm);
	q_filter_free(filter);
}

/* ---- GET /api/v1/flows/{id} ---- */

/* An address or Community ID as stored, checked to hold only the characters such
 * values have, so that quoting it into a filter cannot change the filter. */
static bool plain_value(const char *s)
{
	if (!s || !*s || strlen(s) > 64)
		return false;
	for (; *s; s++)
		if (!strchr("0123456789abcdefABCDEF.:/+=ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ", *s))
			return false;
	return true;
}

void api_h_flow(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct q_error qe = {0};
	struct q_filter *f = NULL;
	struct jbuf one = {0}, rel = {0}, b = {0};
	struct fdb_cursor *c = NULL;
	char text[512];
	uint64_t id;

	if (parse_u64(srv_req_param(req, "id"), UINT64_MAX, &id) < 0) {
		srv_respond_error(req, 400, "a flow id is a decimal number");
		return;
	}
	struct fdb *db = api_db(a, req);
	if (!db)
		return;
	snprintf(text, sizeof(text), "id == %" PRIu64, id);
	struct q_select sel = {.limit = 1, .order = Q_ORDER_ID_ASC};
	if (q_parse(text, strlen(text), NULL, &f, &qe) < 0) {
		api_query_error(req, &qe, NULL);
		goto out;
	}
	sel.filter = f;
	struct pks *store = api_store_quiet(a, db);
	long n = q_list_flows(db, store, &sel, Q_FMT_NDJSON, jb_write, &one, NULL, &qe);
	if (n < 0) {
		api_query_error(req, &qe, NULL);
		goto out;
	}
	if (n == 0) {
		srv_respond_error(req, 404, "no flow %" PRIu64, id);
		goto out;
	}
	q_filter_free(f);
	f = NULL;
	/* The same connection elsewhere: same Community ID and addresses (either
	 * way round: a reply seen first makes the server the client), near in time. */
	struct fdb_param p = {.type = FDB_INT, .i = (int64_t)id};
	int rc = fdb_cursor_open(db, "SELECT community_id, src, dst, first_us, last_us FROM flows WHERE id = ?1",
				 &p, 1, &c);
	if (rc < 0 || (rc = fdb_cursor_next(c)) < 0) {
		srv_respond_error(req, rc == -ETIMEDOUT ? 503 : 500, "%s", fdb_errmsg(db));
		goto out;
	}
	const char *cid = rc == 1 ? fdb_cursor_text(c, 0) : NULL;
	const char *src = rc == 1 ? fdb_cursor_text(c, 1) : NULL;
	const char *dst = rc == 1 ? fdb_cursor_text(c, 2) : NULL;
	jb_str(&rel, "[]");
	struct q_page rpage = {0};
	if (plain_value(cid) && plain_value(src) && plain_value(dst)) {
		int64_t t0 = fdb_cursor_int(c, 3), t1 = fdb_cursor_int(c, 4);
		snprintf(text, sizeof(text),
			 "community_id == \"%s\" and ((src == %s and dst == %s) or (src == %s and dst == %s)) and id != %" PRIu64,
			 cid, src, dst, dst, src, id);
		struct q_select rs = {.limit = RELATED_MAX, .order = Q_ORDER_FIRST_ASC};
		rs.range = (struct q_range){1, 1, t0 - (int64_t)RELATED_WINDOW_US, t1 + (int64_t)RELATED_WINDOW_US};
		if (q_parse(text, strlen(text), NULL, &f, &qe) == 0) {
			rs.filter = f;
			rel.len = 0;
			n = q_list_flows(db, store, &rs, Q_FMT_JSON, jb_write, &rel, &rpage, &qe);
			if (n < 0) {
				api_query_error(req, &qe, "related flows");
				goto out;
			}
		}
	}
	while (one.len && one.p[one.len - 1] == '\n')
		one.len--;
	while (rel.len && rel.p[rel.len - 1] == '\n')
		rel.len--;
	jb_str(&b, "{\"flow\":");
	jb_raw(&b, one.p, one.len);
	jb_str(&b, ",\"related\":");
	jb_raw(&b, rel.p, rel.len);
	/* at most RELATED_MAX: say when there were more */
	jb_str(&b, rpage.more ? ",\"related_complete\":false}\n" : ",\"related_complete\":true}\n");
	if (b.err || one.err || rel.err) {
		srv_respond_error(req, 503, "out of memory");
		goto out;
	}
	srv_respond_take(req, 200, "application/json", b.p, b.len);
	b.p = NULL;
out:
	fdb_cursor_close(c);
	q_filter_free(f);
	jb_free(&one);
	jb_free(&rel);
	jb_free(&b);
}

/* ---- pcapng exports ---- */

struct export_ctx {
	struct api *a;
	struct srv_req *req;
	const char *type;   /* the answer's Content-Type */
	const char *disposition; /* its Content-Disposition */
	int begun;          /* 200 and the headers sent: errors can only cut it now */
	int err;
	uint64_t corrupt, missing;
	uint8_t hold[EXPORT_HOLD]; /* the first bytes, held back (see export_sink) */
	size_t held;
};

/* Sends 200, the headers and what was held back. */
static int export_begin(struct export_ctx *x)
{
	srv_add_header(x->req, "Content-Disposition", x->disposition);
	if (srv_stream_begin(x->req, 200, x->type) < 0)
		return x->err = -EIO;
	x->begun = 1;
	int rc = x->held ? srv_stream_write(x->req, x->hold, x->held) : 0;
	x->held = 0;
	if (rc < 0)
		x->err = rc;
	return rc;
}

/* The answer begins once more than the header and interface blocks are there
 * (EXPORT_HOLD bytes), or at the end: until then the flows' selection can still
 * add headers, and an error (no such flows, a pcap file asked for flows of
 * different link types, every packet gone from the store) is still a JSON
 * error. */
static int export_sink(void *arg, const uint8_t *buf, size_t len)
{
	struct export_ctx *x = arg;
	if (!x->begun) {
		if (x->held + len <= sizeof(x->hold)) {
			memcpy(x->hold + x->held, buf, len);
			x->held += len;
			return 0;
		}
		int rc = export_begin(x);
		if (rc < 0)
			return rc;
	}
	int rc = srv_stream_write(x->req, buf, len);
	if (rc < 0)
		x->err = rc;
	return rc;
}

static void export_selected(void *arg, uint64_t n, int more)
{
	struct export_ctx *x = arg;
	char v[24];
	if (x->begun)
		return;
	snprintf(v, sizeof(v), "%" PRIu64, n);
	srv_add_header(x->req, "X-Podcap-Flows", v);
	srv_add_header(x->req, "X-Podcap-Complete", more ? "false" : "true");
	if (more) {
		srv_add_header(x->req, "X-Podcap-Incomplete-Because", "limit");
		__atomic_add_fetch(&x->a->exports_limited, 1, __ATOMIC_RELAXED);
	}
}

static void export_report(void *arg, const struct pks_flow *f)
{
	struct export_ctx *x = arg;
	x->corrupt += f->corrupt;
	x->missing += f->missing;
	if (f->corrupt)
		fprintf(stderr, "podcap: api: export: flow %" PRIu64 ": %" PRIu64 " packets unreadable (the packet "
			"store is damaged: podcap store check)\n", f->id, f->corrupt);
}

static void export_log(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "podcap: api: export: %s\n", msg);
}

/* inner=1|true|yes (or present without a value): decapsulated packets; 0 when
 * absent or 0|false|no, -1 for anything else. */
static int inner_param(struct srv_req *req)
{
	const char *v = srv_req_query(req, "inner", NULL);
	if (!v || !strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no"))
		return 0;
	return !*v || !strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes") ? 1 : -1;
}

/* format=pcapng (default) or pcap, and inner; answers 400 and returns -1 on a
 * bad one. */
static int format_param(struct srv_req *req, enum pn_format *out, const char **type, const char **ext)
{
	const char *v = srv_req_query(req, "format", NULL);
	if (inner_param(req) < 0) {
		srv_respond_error(req, 400, "inner: expected 1 or 0, true or false");
		return -1;
	}
	*out = PN_FORMAT_PCAPNG;
	*type = "application/x-pcapng";
	*ext = "pcapng";
	if (!v || !strcmp(v, "pcapng"))
		return 0;
	if (!strcmp(v, "pcap")) {
		*out = PN_FORMAT_PCAP;
		*type = "application/vnd.tcpdump.pcap";
		*ext = "pcap";
		return 0;
	}
	srv_respond_error(req, 400, "unknown format '%.40s' (pcapng or pcap)", v);
	return -1;
}

/* Streams the packets of ids (or of sel) as pcapng (or pcap) of Content-Type
 * type.  The answer begins once there is more than its header (export_sink), so
 * an error found before is a JSON error.  Packets the store could not read
 * (damage, not expiry) cut it at the end, as any failure midway: it cannot be
 * mistaken for a complete capture. */
static void export_stream(struct api *a, struct srv_req *req, struct fdb *db, struct pks *store,
			  const uint64_t *ids, size_t n, const struct q_select *sel, enum pn_format format,
			  const char *type, const char *disposition)
{
	struct export_ctx *x = calloc(1, sizeof(*x)); /* EXPORT_HOLD bytes: not on the stack */
	struct pn_writer *w = NULL;
	struct q_error qe = {0};
	struct pn_config pc;
	__atomic_add_fetch(&a->exports, 1, __ATOMIC_RELAXED);
	if (x) {
		*x = (struct export_ctx){.a = a, .req = req, .type = type, .disposition = disposition};
		pn_config_default(&pc);
		pc.format = format;
		w = pn_open_sink(export_sink, x, &pc);
	}
	if (!w) {
		__atomic_add_fetch(&a->exports_failed, 1, __ATOMIC_RELAXED);
		srv_respond_error(req, 503, "out of memory");
		goto out;
	}
	uint64_t selected = 0, written = 0;
	struct q_export_opts xo = {.inner = inner_param(req) == 1, .on_selected = export_selected,
				   .on_selected_arg = x};
	int rc = q_export_ex(db, store, ids, n, sel, &xo, w, export_report, x, export_log, NULL, &selected,
			     &written, &qe);
	if (rc == -ENOENT && !selected)
		rc = 0; /* no flow matched: a valid capture without packets */
	if (rc < 0 && !x->begun) {
		/* nothing sent yet: the error as JSON */
		pn_discard(w);
		__atomic_add_fetch(&a->exports_failed, 1, __ATOMIC_RELAXED);
		srv_respond_error(req, rc == -EPROTOTYPE ? 409 : rc == -ETIMEDOUT ? 503 : 500, "%s", qe.msg);
		goto out;
	}
	if (rc >= 0 && !x->begun && !written && (x->missing || x->corrupt)) {
		/* every packet asked for is gone (retention, a segment deleted) or
		 * unreadable: say so, as podcap export does (exit 1), not with an
		 * empty capture */
		pn_discard(w);
		__atomic_add_fetch(x->corrupt ? &a->exports_damaged : &a->exports_missing, 1, __ATOMIC_RELAXED);
		if (x->corrupt)
			srv_respond_error(req, 500, "no packets to send: the packet store could not read the %" PRIu64
					  " packets asked for (it is damaged: podcap store check)", x->corrupt);
		else
			srv_respond_error(req, 410, "no packets to send: the %" PRIu64 " packets of the %s are no "
					  "longer in the packet store (retention, or files deleted)", x->missing,
					  selected == 1 ? "flow" : "flows");
		goto out;
	}
	if (rc >= 0 && x->missing && !x->corrupt)
		__atomic_add_fetch(&a->exports_partial, 1, __ATOMIC_RELAXED);
	int crc = pn_close(w);
	if (rc < 0 || crc < 0 || x->err < 0 || x->corrupt) {
		/* Cut, so the client sees an incomplete body and not a short capture. */
		if (rc < 0 && x->err == 0)
			fprintf(stderr, "podcap: api: export stopped: %s\n", qe.msg);
		__atomic_add_fetch(x->corrupt && rc >= 0 && crc >= 0 && x->err >= 0 ? &a->exports_damaged
											 : &a->exports_failed,
				   1, __ATOMIC_RELAXED);
		if (x->begun || export_begin(x) == 0)
			srv_stream_abort(req);
		goto out;
	}
	if (!x->begun && export_begin(x) < 0) {
		srv_stream_abort(req);
		goto out;
	}
	srv_stream_end(req);
out:
	free(x);
}

void api_h_flow_pcap(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct fdb_cursor *c = NULL;
	uint64_t id;
	char hdr[128];

	if (parse_u64(srv_req_param(req, "id"), UINT64_MAX, &id) < 0) {
		srv_respond_error(req, 400, "a flow id is a decimal number");
		return;
	}
	struct fdb *db = api_db(a, req);
	if (!db)
		return;
	struct fdb_param p = {.type = FDB_INT, .i = (int64_t)id};
	int rc = fdb_cursor_open(db, "SELECT 1 FROM flows WHERE id = ?1", &p, 1, &c);
	if (rc >= 0)
		rc = fdb_cursor_next(c);
	fdb_cursor_close(c);
	if (rc < 0) {
		srv_respond_error(req, rc == -ETIMEDOUT ? 503 : 500, "%s", fdb_errmsg(db));
		return;
	}
	if (rc == 0) {
		srv_respond_error(req, 404, "no flow %" PRIu64, id);
		return;
	}
	/* the request's own parameters first (400), then what the server has (409) */
	enum pn_format format;
	const char *type, *ext;
	if (format_param(req, &format, &type, &ext) < 0)
		return;
	struct pks *store = api_store(a, req);
	if (!store)
		return;
	snprintf(hdr, sizeof(hdr), "attachment; filename=\"podcap-flow-%" PRIu64 ".%s\"", id, ext);
	export_stream(a, req, db, store, &id, 1, NULL, format, type, hdr);
}

void api_h_pcap(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct q_filter *filter = NULL;
	struct q_select sel = {.order = Q_ORDER_FIRST_ASC};
	uint64_t limit;

	if (api_common_params(req, &filter, &sel.range) < 0)
		return;
	if (limit_param(req, "limit", PCAP_DEFAULT_FLOWS, PCAP_MAX_FLOWS, &limit) < 0)
		goto out;
	sel.filter = filter;
	sel.limit = (int64_t)limit;
	struct fdb *db = api_db(a, req);
	if (!db)
		goto out;
	enum pn_format format;
	const char *type, *ext;
	if (format_param(req, &format, &type, &ext) < 0)
		goto out;
	struct pks *store = api_store(a, req);
	if (!store)
		goto out;
	char hdr[96];
	snprintf(hdr, sizeof(hdr), "attachment; filename=\"podcap-export.%s\"", ext);
	export_stream(a, req, db, store, NULL, 0, &sel, format, type, hdr);
out:
	q_filter_free(filter);
}

/* ---- GET /api/v1/top ---- */

/* "60s", "5m", "1h", "1d", "500ms": a bucket width in µs. */
static int parse_bucket(const char *s, int64_t *out)
{
	char *end;
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || v == 0 || v > 1000000000ull)
		return -EINVAL;
	static const struct { const char *u; int64_t us; } units[] = {
		{"ms", 1000}, {"s", 1000000}, {"m", 60000000}, {"h", 3600000000ll}, {"d", 86400000000ll},
	};
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].u)) {
			if (v > (unsigned long long)(INT64_MAX / units[i].us))
				return -EINVAL;
			*out = (int64_t)v * units[i].us;
			return *out >= 1000000 ? 0 : -EINVAL; /* at least a second */
		}
	return -EINVAL;
}

/* The fields of one key's answer, into an open object. */
static void top_json(struct jbuf *b, int *first, const struct q_top *t, const struct q_top_result *r)
{
	jb_kv_str(b, first, "by", q_top_by_name(t->by));
	jb_kv_str(b, first, "metric", q_metric_name(t->metric));
	jb_key(b, first, "rows");
	jb_str(b, "[");
	for (size_t i = 0; i < r->nrows; i++) {
		int f2 = 1;
		jb_str(b, i ? ",{" : "{");
		jb_kv_str(b, &f2, "key", r->rows[i].key);
		jb_kv_i64(b, &f2, "value", r->rows[i].value);
		jb_str(b, "}");
	}
	jb_str(b, "]");
	jb_kv_i64(b, first, "other", r->other);
	jb_kv_i64(b, first, "total", r->total);
	/* how it was counted: the per-minute rollup (fast, to the minute) or a scan */
	jb_kv_str(b, first, "source", r->from_rollup ? "rollup" : "scan");
	if (r->from_rollup) {
		jb_kv_i64(b, first, "resolution_us", r->resolution_us);
		if (r->untracked)
			jb_kv_i64(b, first, "approximate_flows", r->untracked);
	}
	if (t->bucket_us > 0) {
		jb_kv_i64(b, first, "bucket_us", t->bucket_us);
		jb_key(b, first, "buckets");
		jb_str(b, "[");
		for (size_t i = 0; i < r->nbuckets; i++) {
			int f2 = 1;
			jb_str(b, i ? ",{" : "{");
			jb_kv_i64(b, &f2, "t", r->buckets[i].t);
			jb_kv_str(b, &f2, "key", r->rows[r->buckets[i].row].key);
			jb_kv_i64(b, &f2, "value", r->buckets[i].value);
			jb_str(b, "}");
		}
		jb_str(b, "]");
	}
}

/* v split at commas into at most max items of up to 40 bytes: their number,
 * -E2BIG (too many) or -ENAMETOOLONG (an item longer, cut to 40 bytes in
 * items[0] for the message). */
static int split_list(const char *v, char items[][41], int max)
{
	int n = 0;
	for (;;) {
		const char *c = strchr(v, ',');
		size_t len = c ? (size_t)(c - v) : strlen(v);
		if (n == max)
			return -E2BIG;
		if (len > 40) {
			memcpy(items[0], v, 40);
			items[0][40] = 0;
			return -ENAMETOOLONG;
		}
		memcpy(items[n], v, len);
		items[n++][len] = 0;
		if (!c)
			return n;
		v = c + 1;
	}
}

/* by=KEY[,KEY...] (up to Q_TOP_MANY keys, summed in one scan of the flows);
 * limit and bucket one value for every key or one per key, in by's order (an
 * empty bucket: none for that key).  One key answers one object; several
 * answer {"metric", "tops": [one object per key], completeness}. */
void api_h_top(struct srv_req *req, void *arg)
{
	struct api *a = arg;
	struct q_filter *filter = NULL;
	struct q_top t[Q_TOP_MANY];
	struct q_top_result r[Q_TOP_MANY];
	struct q_range range;
	enum q_metric metric = Q_METRIC_BYTES;
	struct q_error qe = {0};
	struct jbuf b = {0};
	char items[Q_TOP_MANY][41];
	const char *v;
	int n = 1, multi = 0, have_result = 0;

	if (api_common_params(req, &filter, &range) < 0)
		return;
	if ((v = srv_req_query(req, "metric", NULL)) && q_metric_parse(v, &metric) < 0) {
		srv_respond_error(req, 400, "unknown metric '%.40s' (bytes, packets, flows)", v);
		goto out;
	}
	if ((v = srv_req_query(req, "by", NULL)) && (n = split_list(v, items, Q_TOP_MANY)) < 0) {
		if (n == -ENAMETOOLONG)
			srv_respond_error(req, 400, "unknown by '%s...' (" Q_TOP_BY_NAMES ")", items[0]);
		else
			srv_respond_error(req, 400, "by: at most %d keys, separated by commas", Q_TOP_MANY);
		n = 0;
		goto out;
	}
	multi = v && strchr(v, ',');
	for (int i = 0; i < n; i++) {
		t[i] = (struct q_top){.filter = filter, .range = range, .by = Q_BY_APP, .metric = metric,
				      .limit = TOP_DEFAULT_LIMIT, .max_buckets = TOP_MAX_BUCKETS};
		if (v && q_top_by_parse(items[i], &t[i].by) < 0) {
			srv_respond_error(req, 400, "unknown by '%.40s' (" Q_TOP_BY_NAMES ")",
					  items[i]);
			goto out;
		}
	}
	int m;
	if ((v = srv_req_query(req, "limit", NULL))) {
		if ((m = split_list(v, items, Q_TOP_MANY)) != 1 && m != n) {
			srv_respond_error(req, 400, "limit: one number, or one per key of by (%d)", n);
			goto out;
		}
		for (int i = 0; i < n; i++) {
			uint64_t l;
			if (parse_u64(items[m == 1 ? 0 : i], TOP_MAX_LIMIT, &l) < 0 || l == 0) {
				srv_respond_error(req, 400, "limit must be a whole number from 1 to %d", TOP_MAX_LIMIT);
				goto out;
			}
			t[i].limit = (int)l;
		}
	}
	if ((v = srv_req_query(req, "bucket", NULL)) && *v) {
		if ((m = split_list(v, items, Q_TOP_MANY)) != 1 && m != n) {
			srv_respond_error(req, 400, "bucket: one width, or one per key of by (%d; empty for none)", n);
			goto out;
		}
		for (int i = 0; i < n; i++) {
			const char *w = items[m == 1 ? 0 : i];
			if (*w && parse_bucket(w, &t[i].bucket_us) < 0) {
				srv_respond_error(req, 400, "bad bucket '%.40s': a width of at least 1s such as 60s, 5m, 1h", w);
				goto out;
			}
			if (*w && !range.has_from) {
				srv_respond_error(req, 400, "bucket needs from (the start of the chart)");
				goto out;
			}
		}
		/* keys x buckets over all keys within what one key may have: an answer
		 * (and its tables) the size one key's could be */
		int64_t to = range.has_to ? range.to_us : (int64_t)api_now_us(), cells = 0;
		for (int i = 0; i < n; i++)
			if (t[i].bucket_us > 0 && to > range.from_us) {
				int64_t nb = (to - range.from_us) / t[i].bucket_us + 1;
				cells += (int64_t)t[i].limit * (nb < TOP_MAX_BUCKETS ? nb : TOP_MAX_BUCKETS);
			}
		if (cells > (int64_t)TOP_MAX_LIMIT * TOP_MAX_BUCKETS) {
			srv_respond_error(req, 400, "more than %d keys x buckets over all keys: ask for fewer keys (limit) "
					  "or larger buckets", TOP_MAX_LIMIT * TOP_MAX_BUCKETS);
			goto out;
		}
	}
	struct fdb *db = api_db(a, req);
	if (!db)
		goto out;
	if (q_top_many(db, t, (size_t)n, r, &qe) < 0) {
		api_query_error(req, &qe, NULL);
		goto out;
	}
	have_result = 1;
	int first = 1;
	jb_str(&b, "{");
	if (!multi) {
		top_json(&b, &first, &t[0], &r[0]);
	} else {
		jb_kv_str(&b, &first, "metric", q_metric_name(metric));
		jb_key(&b, &first, "tops");
		jb_str(&b, "[");
		for (int i = 0; i < n; i++) {
			int f2 = 1;
			jb_str(&b, i ? ",{" : "{");
			top_json(&b, &f2, &t[i], &r[i]);
			jb_str(&b, "}");
		}
		jb_str(&b, "]");
	}
	api_completeness(a, db, &range, &b, &first, NULL);
	jb_str(&b, "}\n");
	if (b.err) {
		srv_respond_error(req, 503, "out of memory");
		goto out;
	}
	srv_respond_take(req, 200, "application/json", b.p, b.len);
	b.p = NULL;
out:
	if (have_result)
		for (int i = 0; i < n; i++)
			q_top_free(&r[i]);
	jb_free(&b);
	q_filter_free(filter);
}
