/* podcap top [FILTER] — the keys (applications, addresses, ports, pods, ...) with
 * the most bytes, packets or flows among the flows that match a filter: the
 * query API's /api/v1/top (docs/api.md) on the command line, from a flow
 * database (--db, read-only, as `podcap flows`) or from an agent or `podcap
 * serve` (--server).  Both print the same: a table per key, or --json.
 *
 * Several keys (--by src_pod,dst_pod) are summed in one scan of the flows
 * (q_top_many); keys the per-minute rollup keeps come from it when no filter
 * narrows the flows. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "flowdb.h"
#include "query.h"

#define TOP_USAGE "top (--db PATH | --server URL [--token-file FILE] [--cacert FILE]) [FILTER] " \
	"[--by KEY[,KEY...]] [--metric bytes|packets|flows] [--limit N] [--since T] [--until T] [--pod POD] [--json]"
#define TOP_DEFAULT_LIMIT 10

static void top_help(void)
{
	printf("usage: podcap " TOP_USAGE "\n\n"
	       "The keys with the most traffic among the flows that match FILTER, e.g.\n"
	       "  podcap top --db flows.db --by app\n"
	       "  podcap top --db flows.db --by src_pod,dst_pod --since 1h 'ns == shop'\n"
	       "  podcap top --server http://127.0.0.1:7070 --by dst --metric flows 'dport == 53'\n"
	       "(the filter language: docs/filters.md; several words are joined by spaces)\n\n"
	       "  --db PATH      flow database written by 'podcap read' or 'podcap run'\n"
	       "  --server URL   ask an agent or 'podcap serve' instead (http://HOST:PORT)\n"
	       "  --token-file FILE  its bearer token;  --cacert FILE  its CA for https\n"
	       "  --by KEYS      what to group by (default app), up to %d separated by commas,\n"
	       "                 summed in one pass over the flows:\n"
	       "                 %s\n"
	       "                 (pod is the observation point's; src_pod ... service name the\n"
	       "                 ends, \"\" shown as (none) for flows without one)\n"
	       "  --metric M     bytes (default), packets or flows\n"
	       "  --limit N      keys per table (default %d, at most 1000)\n"
	       "  --since T      flows active since T: epoch seconds, a UTC time, or a time\n"
	       "                 before now: 30s, 10m, 2h, 3d (as podcap flows)\n"
	       "  --until T      flows active until T (same forms)\n"
	       "  --pod POD      only the flows of POD (namespace/name, or name in any\n"
	       "                 namespace) at either end or as the observation point:\n"
	       "                 pod == POD and (FILTER)\n"
	       "  --json         the answer as JSON (one object per key, as /api/v1/top)\n",
	       Q_TOP_MANY, Q_TOP_BY_NAMES, TOP_DEFAULT_LIMIT);
}

/* One key's answer, from the database or parsed from the server's JSON. */
struct top_out {
	enum q_top_by by;
	struct q_top_result r;
};

/* "1.5 GB": decimal units, as the web page shows them. */
static void fmt_value(char *buf, size_t len, enum q_metric m, int64_t v)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
	if (m != Q_METRIC_BYTES || v < 1000) {
		snprintf(buf, len, m == Q_METRIC_BYTES ? "%lld B" : "%lld", (long long)v);
		return;
	}
	double d = (double)v;
	int u = 0;
	while (d >= 1000 && u < 6) {
		d /= 1000;
		u++;
	}
	snprintf(buf, len, d >= 100 ? "%.0f %s" : "%.1f %s", d, units[u]);
}

static int print_table(const struct top_out *o, size_t n, enum q_metric m)
{
	for (size_t i = 0; i < n; i++) {
		const struct q_top_result *r = &o[i].r;
		char v[32], head[64];
		int w = 12; /* "(other keys)" */
		for (size_t j = 0; j < r->nrows; j++) {
			int l = (int)strlen(r->rows[j].key);
			if (l > w)
				w = l > 60 ? 60 : l;
		}
		snprintf(head, sizeof(head), "%s", q_top_by_name(o[i].by));
		for (char *c = head; *c; c++)
			*c = (char)(*c >= 'a' && *c <= 'z' ? *c - 32 : *c);
		if (i)
			putchar('\n');
		printf("%-*s %12s %7s   (%s%s)\n", w, head, q_metric_name(m), "share",
		       r->from_rollup ? "from the per-minute rollup" : "counted from the flows",
		       r->untracked ? ", approximate" : "");
		for (size_t j = 0; j < r->nrows; j++) {
			fmt_value(v, sizeof(v), m, r->rows[j].value);
			/* keys come off the wire (host names): no control characters */
			const char *k = r->rows[j].key[0] ? r->rows[j].key : "(none)";
			char safe[256];
			size_t s = 0;
			for (; *k && s + 1 < sizeof(safe); k++)
				safe[s++] = (unsigned char)*k < 0x20 || *k == 0x7f ? '?' : *k;
			safe[s] = 0;
			printf("%-*s %12s %6.1f%%\n", w, safe, v,
			       r->total ? 100.0 * (double)r->rows[j].value / (double)r->total : 0.0);
		}
		if (r->other) {
			fmt_value(v, sizeof(v), m, r->other);
			printf("%-*s %12s %6.1f%%\n", w, "(other keys)", v,
			       r->total ? 100.0 * (double)r->other / (double)r->total : 0.0);
		}
		fmt_value(v, sizeof(v), m, r->total);
		printf("%-*s %12s\n", w, "total", v);
	}
	return 0;
}

/* s as a JSON string: keys come off the wire (a Host cut inside a character), and
 * a byte that does not start valid UTF-8 becomes U+FFFD, as the API writes it. */
static json_t *json_text(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s);
	char *c = malloc(3 * n + 1), *o = c;
	if (!c)
		return NULL;
	for (size_t i = 0; i < n;) {
		size_t need = u[i] < 0x80 ? 1 : u[i] >= 0xc2 && u[i] <= 0xdf ? 2 : u[i] >= 0xe0 && u[i] <= 0xef ? 3
			    : u[i] >= 0xf0 && u[i] <= 0xf4 ? 4 : 0;
		size_t k = 1;
		while (need && k < need && i + k < n && (u[i + k] & 0xc0) == 0x80)
			k++;
		/* no overlong forms, surrogates or code points past U+10FFFF */
		int ok = need && k == need &&
			 !(need == 3 && ((u[i] == 0xe0 && u[i + 1] < 0xa0) || (u[i] == 0xed && u[i + 1] >= 0xa0))) &&
			 !(need == 4 && ((u[i] == 0xf0 && u[i + 1] < 0x90) || (u[i] == 0xf4 && u[i + 1] >= 0x90)));
		if (ok) {
			memcpy(o, u + i, need);
			o += need;
			i += need;
		} else {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	*o = 0;
	json_t *j = json_string(c);
	free(c);
	return j;
}

static json_t *result_json(const struct top_out *o, enum q_metric m)
{
	json_t *rows = json_array();
	for (size_t j = 0; rows && j < o->r.nrows; j++) {
		json_t *row = json_pack("{s:o, s:I}", "key", json_text(o->r.rows[j].key), "value",
					(json_int_t)o->r.rows[j].value);
		if (!row || json_array_append_new(rows, row) < 0) {
			json_decref(rows);
			return NULL;
		}
	}
	if (!rows)
		return NULL;
	json_t *j = json_pack("{s:s, s:s, s:o, s:I, s:I, s:s}", "by", q_top_by_name(o->by), "metric",
			      q_metric_name(m), "rows", rows, "other", (json_int_t)o->r.other, "total",
			      (json_int_t)o->r.total, "source", o->r.from_rollup ? "rollup" : "scan");
	if (j && o->r.from_rollup)
		json_object_set_new(j, "resolution_us", json_integer(o->r.resolution_us));
	if (j && o->r.untracked)
		json_object_set_new(j, "approximate_flows", json_integer(o->r.untracked));
	return j;
}

static int print_json(const struct top_out *o, size_t n, enum q_metric m, int multi, int complete)
{
	json_t *j;
	if (!multi) {
		j = result_json(&o[0], m);
	} else {
		json_t *tops = json_array();
		for (size_t i = 0; tops && i < n; i++)
			if (json_array_append_new(tops, result_json(&o[i], m)) < 0) {
				json_decref(tops);
				tops = NULL;
			}
		j = tops ? json_pack("{s:s, s:o}", "metric", q_metric_name(m), "tops", tops) : NULL;
	}
	if (!j)
		return -ENOMEM;
	json_object_set_new(j, "complete", json_boolean(complete));
	int rc = json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) < 0 || putchar('\n') == EOF ? -EIO : 0;
	json_decref(j);
	return rc;
}

/* ---- --server: the same answer from /api/v1/top ---- */

struct body {
	char *p;
	size_t len, cap;
};

static int body_write(void *arg, const void *buf, size_t len)
{
	struct body *b = arg;
	if (b->len + len + 1 > b->cap) {
		size_t cap = (b->len + len + 1) * 2;
		if (cap > (64u << 20))
			return -E2BIG;
		char *n = realloc(b->p, cap);
		if (!n)
			return -ENOMEM;
		b->p = n;
		b->cap = cap;
	}
	memcpy(b->p + b->len, buf, len);
	b->len += len;
	b->p[b->len] = 0;
	return 0;
}

/* One key's object of the server's answer into o. */
static int parse_result(json_t *j, struct top_out *o)
{
	json_t *rows = json_object_get(j, "rows");
	if (!json_is_array(rows) || q_top_by_parse(json_string_value(json_object_get(j, "by")) ?
						   json_string_value(json_object_get(j, "by")) : "", &o->by) < 0)
		return -EPROTO;
	size_t n = json_array_size(rows);
	if (n && !(o->r.rows = calloc(n, sizeof(*o->r.rows))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *row = json_array_get(rows, i);
		const char *k = json_string_value(json_object_get(row, "key"));
		if (!k || !json_is_integer(json_object_get(row, "value")))
			return -EPROTO;
		if (!(o->r.rows[i].key = strdup(k)))
			return -ENOMEM;
		o->r.rows[i].value = json_integer_value(json_object_get(row, "value"));
		o->r.nrows++;
	}
	o->r.other = json_integer_value(json_object_get(j, "other"));
	o->r.total = json_integer_value(json_object_get(j, "total"));
	const char *src = json_string_value(json_object_get(j, "source"));
	o->r.from_rollup = src && !strcmp(src, "rollup");
	o->r.resolution_us = json_integer_value(json_object_get(j, "resolution_us"));
	o->r.untracked = json_integer_value(json_object_get(j, "approximate_flows"));
	return 0;
}

static int top_remote(struct app_get *g, const char *by, enum q_metric m, int limit, const struct q_range *range,
		      const char *filter, struct top_out *o, size_t n, int *complete, char *why, size_t whylen)
{
	struct body b = {0};
	char from[40], to[40], lim[16];
	int rc;
	snprintf(lim, sizeof(lim), "%d", limit);
	if (range->has_from)
		snprintf(from, sizeof(from), "%lld.%06lld", (long long)(range->from_us / 1000000),
			 (long long)(range->from_us % 1000000));
	if (range->has_to)
		snprintf(to, sizeof(to), "%lld.%06lld", (long long)(range->to_us / 1000000),
			 (long long)(range->to_us % 1000000));
	g->path = "/api/v1/top";
	g->write = body_write;
	g->arg = &b;
	g->nparams = 0;
#define PARAM(k, v) do { g->params[g->nparams].name = (k); g->params[g->nparams++].value = (v); } while (0)
	PARAM("filter", filter && *filter ? filter : NULL);
	PARAM("from", range->has_from ? from : NULL);
	PARAM("to", range->has_to ? to : NULL);
	PARAM("by", by);
	PARAM("metric", q_metric_name(m));
	PARAM("limit", lim);
#undef PARAM
	if ((rc = app_get(g)) != 0) {
		free(b.p);
		return rc == 400 ? 2 : 1;
	}
	json_error_t je;
	json_t *j = b.p ? json_loadb(b.p, b.len, 0, &je) : NULL;
	free(b.p);
	json_t *tops = json_object_get(j, "tops");
	rc = 0;
	if (!j || (n > 1 && json_array_size(tops) != n))
		rc = -EPROTO;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = parse_result(n > 1 || tops ? json_array_get(tops, i) : j, &o[i]);
	*complete = !json_is_false(json_object_get(j, "complete"));
	json_t *w = json_array_get(json_object_get(j, "incomplete_because"), 0);
	snprintf(why, whylen, "%s", json_string_value(w) ? json_string_value(w) : "");
	json_decref(j);
	if (rc < 0) {
		fprintf(stderr, "podcap top: %s: %s\n", g->server,
			rc == -ENOMEM ? "out of memory" : "the answer is not what /api/v1/top sends");
		return 1;
	}
	return 0;
}

/* ---- --db ---- */

static int top_local(const char *path, struct q_top *req, size_t n, struct top_out *o, int *complete,
		     char *why, size_t whylen, const char *text)
{
	struct fdb_config cfg;
	struct fdb *db;
	struct q_top_result r[Q_TOP_MANY];
	struct q_error qe = {0};
	char err[512];
	int64_t until = 0;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	if (fdb_open(path, &cfg, &db, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap top: %s\n", err);
		return 1;
	}
	if (q_top_many(db, req, n, r, &qe) < 0) {
		if (qe.pos)
			app_filter_error("top", text, &qe);
		else
			fprintf(stderr, "podcap top: %s\n", qe.msg);
		fdb_close(db);
		return qe.pos ? 2 : 1;
	}
	for (size_t i = 0; i < n; i++)
		o[i].r = r[i];
	/* flows that retention deleted are not in the counts */
	if (q_retained_until(db, &until) == 0 && until > 0 && (!req->range.has_from || req->range.from_us <= until)) {
		*complete = 0;
		snprintf(why, whylen, "retention deleted the flows that ended before %lld.%06lld (epoch s)",
			 (long long)(until / 1000000), (long long)(until % 1000000));
	}
	fdb_close(db);
	return 0;
}

int cmd_top(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"server", required_argument, NULL, 'S'},
		{"token-file", required_argument, NULL, 'T'},
		{"cacert", required_argument, NULL, 'C'},
		{"by", required_argument, NULL, 'b'},
		{"metric", required_argument, NULL, 'm'},
		{"limit", required_argument, NULL, 'n'},
		{"since", required_argument, NULL, 's'},
		{"until", required_argument, NULL, 'u'},
		{"json", no_argument, NULL, 'j'},
		{"pod", required_argument, NULL, 'P'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *db = NULL, *server = NULL, *token_file = NULL, *cacert = NULL, *by = "app", *pod = NULL;
	enum q_metric metric = Q_METRIC_BYTES;
	struct q_range range = {0};
	struct q_top req[Q_TOP_MANY];
	struct top_out out[Q_TOP_MANY];
	struct q_filter *filter = NULL;
	struct q_error qe = {0};
	struct app_get g = {.cmd = "top"};
	unsigned long long v;
	int limit = TOP_DEFAULT_LIMIT, json = 0, status = 1, c, complete = 1;
	size_t n = 0;
	char why[512] = "";
	size_t flen = 1;
	for (int i = 1; i < argc; i++)
		flen += strlen(argv[i]) + 1;
	char *text = calloc(1, flen);
	memset(out, 0, sizeof(out));
	if (!text) {
		fprintf(stderr, "podcap top: out of memory\n");
		return 1;
	}
#define USAGE() do { status = app_usage(TOP_USAGE); goto out; } while (0)

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
		switch (c) {
		case 1:
			if (*text)
				strcat(text, " ");
			strcat(text, optarg);
			break;
		case 'd':
		case 'T':
		case 'C':
			if (app_check_path("top", c == 'd' ? "--db" : c == 'T' ? "--token-file" : "--cacert", optarg) < 0)
				USAGE();
			*(c == 'd' ? &db : c == 'T' ? &token_file : &cacert) = optarg;
			break;
		case 'S':
			if (app_check_server("top", optarg) < 0)
				USAGE();
			server = optarg;
			break;
		case 'b':
			by = optarg;
			break;
		case 'm':
			if (q_metric_parse(optarg, &metric) < 0) {
				fprintf(stderr, "podcap top: --metric: '%s' is not bytes, packets or flows\n", optarg);
				USAGE();
			}
			break;
		case 'n':
			if (app_parse_uint(optarg, 1, 1000, &v)) {
				fprintf(stderr, "podcap top: --limit: '%s' is not a count from 1 to 1000\n", optarg);
				USAGE();
			}
			limit = (int)v;
			break;
		case 's':
		case 'u':
			if (app_range_opt("top", c == 's', optarg, &range) < 0)
				USAGE();
			break;
		case 'j':
			json = 1;
			break;
		case 'P':
			if (!*optarg) {
				fprintf(stderr, "podcap top: --pod: empty name (NAMESPACE/POD)\n");
				USAGE();
			}
			pod = optarg;
			break;
		case 'h':
			top_help();
			status = 0;
			goto out;
		case '?':
		default:
			fprintf(stderr, "podcap top: unknown option or missing value: '%s'\n", argv[optind - 1]);
			USAGE();
		}
	}
	for (; optind < argc; optind++) { /* after "--" */
		if (*text)
			strcat(text, " ");
		strcat(text, argv[optind]);
	}
	if (!db == !server) {
		fprintf(stderr, "podcap top: %s\n", db ? "give --db or --server, not both" : "--db PATH (or --server URL) is required");
		USAGE();
	}
	if (!server && (token_file || cacert)) {
		fprintf(stderr, "podcap top: --token-file and --cacert go with --server\n");
		USAGE();
	}
	if (app_range_check("top", &range) < 0)
		USAGE();
	/* the keys: checked here for both modes, so a typo is a usage error */
	for (const char *p = by;; n++) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char name[32];
		if (n == Q_TOP_MANY) {
			fprintf(stderr, "podcap top: --by: at most %d keys\n", Q_TOP_MANY);
			USAGE();
		}
		snprintf(name, sizeof(name), "%.*s", (int)(len < sizeof(name) ? len : sizeof(name) - 1), p);
		req[n] = (struct q_top){.range = range, .metric = metric, .limit = limit};
		if (len >= sizeof(name) || q_top_by_parse(name, &req[n].by) < 0) {
			fprintf(stderr, "podcap top: --by: '%.*s' is not a key (%s)\n", (int)len, p, Q_TOP_BY_NAMES);
			USAGE();
		}
		out[n].by = req[n].by;
		if (!comma) {
			n++;
			break;
		}
		p = comma + 1;
	}
	/* no filter (not an empty one): the rollup may answer, as in the API */
	if (text[strspn(text, " \t\n")] && q_parse(text, strlen(text), NULL, &filter, &qe) < 0) {
		app_filter_error("top", text, &qe);
		USAGE();
	}
	if (pod) {
		/* the filter parsed alone first, so that "(FILTER)" is one term and no
		 * ") or (" in it can undo the pod's test */
		size_t plen = strlen(pod), tlen = strlen(text);
		char *both = malloc(2 * plen + tlen + 32), *o = both;
		if (!both) {
			fprintf(stderr, "podcap top: out of memory\n");
			goto out;
		}
		o += sprintf(o, "pod == \"");
		for (const char *pc = pod; *pc; pc++) {
			if (*pc == '"' || *pc == '\\')
				*o++ = '\\';
			*o++ = *pc;
		}
		o += sprintf(o, filter ? "\" and (%s)" : "\"", text);
		free(text);
		text = both;
		q_filter_free(filter);
		filter = NULL;
		if (q_parse(text, strlen(text), NULL, &filter, &qe) < 0) {
			fprintf(stderr, "podcap top: --pod: '%s' is not a pod (namespace/name or name)\n", pod);
			USAGE();
		}
	}
	if (server) {
		g.server = server;
		g.token_file = token_file;
		g.cacert = cacert;
		g.filter_text = text;
		status = top_remote(&g, by, metric, limit, &range, text, out, n, &complete, why, sizeof(why));
	} else {
		for (size_t i = 0; i < n; i++)
			req[i].filter = filter;
		status = top_local(db, req, n, out, &complete, why, sizeof(why), text);
	}
	if (status)
		goto out;
	int rc = json ? print_json(out, n, metric, strchr(by, ',') != NULL, complete) : print_table(out, n, metric);
	if (rc < 0 || fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "podcap top: writing output: %s\n", strerror(rc < 0 && rc != -EIO ? -rc : errno));
		status = 1;
		goto out;
	}
	if (!complete)
		fprintf(stderr, "podcap top: the answer is not complete%s%s\n", why[0] ? ": " : "", why);
out:
	for (size_t i = 0; i < Q_TOP_MANY; i++)
		q_top_free(&out[i].r);
	app_get_done(&g);
	q_filter_free(filter);
	free(text);
	return status;
}
