/* podcap flows [FILTER] — lists stored flows, newest first, that match a filter
 * in the filter language (docs/filters.md); --app/--ip/--port are shorthands.
 *
 * The database is opened read-only: listing never creates, migrates or locks a
 * database out from under a running writer (WAL lets both run at once). */
#include <errno.h>
#include <jansson.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "flowdb.h"
#include "pktstore.h"
#include "query.h"

#define FLOWS_USAGE "flows (--db PATH | --server URL [--token-file FILE] [--cacert FILE]) [FILTER] " \
	"[--json|--ndjson|--csv] [--limit N] [--order ORDER] [--since T] [--until T] [--app NAME] [--ip ADDR] [--port N]"
#define FLOWS_DEFAULT_LIMIT 100

static void flows_help(void)
{
	printf("usage: podcap " FLOWS_USAGE "\n\n"
	       "Lists stored flows, newest (by last packet) first, that match FILTER, e.g.\n"
	       "  podcap flows --db flows.db 'app == TLS and host == \"*.example.com\"'\n"
	       "  podcap flows --db flows.db 'src in 10.244.1.0/24 and bytes > 1M'\n"
	       "(the filter language: docs/filters.md; several words are joined by spaces)\n\n"
	       "  --db PATH      flow database written by 'podcap read' or 'podcap run'\n"
	       "  --server URL   ask an agent or 'podcap serve' instead (http://HOST:PORT)\n"
	       "  --token-file FILE  its bearer token;  --cacert FILE  its CA for https\n"
	       "  --json         a JSON array of objects (all columns; ids as strings)\n"
	       "  --ndjson       one JSON object per line\n"
	       "  --csv          CSV with a header line (all columns)\n"
	       "                 (default: an aligned table for terminals)\n"
	       "  --limit N      at most N flows (default %d; 0 = no limit)\n"
	       "  --order ORDER  -last (default: last packet, newest first), last, -first,\n"
	       "                 first (first packet), -id, id (flow id: the order flows were\n"
	       "                 recorded), -bytes, -packets (largest first)\n"
	       "  --since T      flows active since T: epoch seconds (1727784000), a UTC time\n"
	       "                 (2024-10-01T12:00:00Z, '2024-10-01 12:00:00'), or a time before\n"
	       "                 now: 30s, 10m, 2h, 3d (also -1h, now-90m)\n"
	       "  --until T      flows active until T (same forms)\n"
	       "  --app NAME     shorthand for: app == NAME (TLS matches TLS.Facebook too)\n"
	       "  --ip ADDR      shorthand for: (ip == ADDR or outer.ip == ADDR)\n"
	       "  --port N       shorthand for: port == N\n",
	       FLOWS_DEFAULT_LIMIT);
}

/* Prints a filter error: the message, then the filter with a caret under the
 * position (for filters that fit on a line). */
void app_filter_error(const char *cmd, const char *text, const struct q_error *e)
{
	fprintf(stderr, "podcap %s: %s\n", cmd, e->msg);
	size_t len = strlen(text);
	if (e->pos && len < 200 && e->byte <= len) {
		fprintf(stderr, "  %s\n  %*s^\n", text, (int)e->byte, "");
	}
}

/* --since / --until of flows and top into r: 0, or -EINVAL after a message. */
int app_range_opt(const char *cmd, int since, const char *val, struct q_range *r)
{
	struct q_error qe;
	int64_t t;
	if (q_time_parse(val, strlen(val), 0, &t, &qe) < 0) {
		fprintf(stderr, "podcap %s: --%s: '%s': %s\n", cmd, since ? "since" : "until", val, qe.msg);
		return -EINVAL;
	}
	if (since) {
		r->has_from = 1;
		r->from_us = t;
	} else {
		r->has_to = 1;
		r->to_us = t;
	}
	return 0;
}

int app_range_check(const char *cmd, const struct q_range *r)
{
	if (r->has_from && r->has_to && r->from_us > r->to_us) {
		fprintf(stderr, "podcap %s: --since is after --until\n", cmd);
		return -EINVAL;
	}
	return 0;
}

/* ---- --server: the same listing from the query API ---- */

#define REMOTE_PAGE 10000

struct remote_out {
	int fmt;                /* Q_FMT_* wanted */
	int page;               /* 0-based page number */
	long rows;              /* rows written so far */
	char *line;             /* a partial NDJSON line */
	size_t len, cap;
	char cursor[128];
	int incomplete;
	char why[512];
};

/* A whole NDJSON line: a flow (written out) or the page's last line. */
static int remote_line(struct remote_out *r, const char *l, size_t n)
{
	static const char meta[] = "{\"next_cursor\"";
	if (n >= sizeof(meta) - 1 && !memcmp(l, meta, sizeof(meta) - 1)) {
		json_error_t je;
		json_t *j = json_loadb(l, n, 0, &je);
		const char *cur = j ? json_string_value(json_object_get(j, "next_cursor")) : NULL;
		snprintf(r->cursor, sizeof(r->cursor), "%s", cur ? cur : "");
		if (j && json_is_false(json_object_get(j, "complete"))) {
			r->incomplete = 1;
			json_t *why = json_array_get(json_object_get(j, "incomplete_because"), 0);
			if (json_string_value(why))
				snprintf(r->why, sizeof(r->why), "%s", json_string_value(why));
		}
		json_decref(j);
		return 0;
	}
	/* the array opens with its first row: a request that fails leaves
	 * nothing on stdout rather than a '[' that no parser takes */
	if (r->fmt == Q_FMT_JSON && fputs(r->rows ? ",\n" : "[\n", stdout) == EOF)
		return -EIO;
	r->rows++;
	if (fwrite(l, 1, n, stdout) != n || (r->fmt == Q_FMT_NDJSON && putchar('\n') == EOF))
		return -EIO;
	return 0;
}

static int remote_write(void *arg, const void *buf, size_t len)
{
	struct remote_out *r = arg;
	const char *p = buf;
	if (r->fmt == Q_FMT_TABLE)
		return fwrite(p, 1, len, stdout) == len ? 0 : -EIO;
	if (r->fmt == Q_FMT_CSV) {
		/* the header line once, on the first page */
		if (r->page > 0 && !r->rows) {
			const char *nl = memchr(p, '\n', len);
			if (!nl)
				return 0;
			r->rows = 1;
			len -= (size_t)(nl + 1 - p);
			p = nl + 1;
		}
		r->rows = 1;
		return fwrite(p, 1, len, stdout) == len ? 0 : -EIO;
	}
	while (len) {
		const char *nl = memchr(p, '\n', len);
		size_t take = nl ? (size_t)(nl - p) : len;
		if (r->len + take > r->cap) {
			size_t cap = (r->len + take) * 2 + 256;
			if (cap > (16u << 20))
				return -E2BIG;
			char *n = realloc(r->line, cap);
			if (!n)
				return -ENOMEM;
			r->line = n;
			r->cap = cap;
		}
		memcpy(r->line + r->len, p, take);
		r->len += take;
		if (!nl)
			break;
		int rc = remote_line(r, r->line, r->len);
		r->len = 0;
		if (rc < 0)
			return rc;
		len -= take + 1;
		p = nl + 1;
	}
	return 0;
}

static int flows_remote(const char *server, const char *token_file, const char *cacert, const char *filter,
			const struct q_select *q, int fmt)
{
	struct remote_out r = {.fmt = fmt};
	struct app_get g = {.cmd = "flows", .server = server, .path = "/api/v1/flows", .token_file = token_file,
			    .cacert = cacert, .filter_text = filter, .write = remote_write, .arg = &r,
			    .next_cursor = r.cursor, .next_cursor_len = sizeof(r.cursor), .incomplete = &r.incomplete};
	char from[40], to[40], limit[24];
	int64_t left = q->limit; /* -1: all */
	int status = 1;
	if (q->range.has_from)
		snprintf(from, sizeof(from), "%lld.%06lld", (long long)(q->range.from_us / 1000000),
			 (long long)(q->range.from_us % 1000000));
	if (q->range.has_to)
		snprintf(to, sizeof(to), "%lld.%06lld", (long long)(q->range.to_us / 1000000),
			 (long long)(q->range.to_us % 1000000));
	for (;;) {
		int64_t n = left < 0 || left > REMOTE_PAGE ? REMOTE_PAGE : left;
		snprintf(limit, sizeof(limit), "%lld", (long long)n);
		char cursor[128];
		snprintf(cursor, sizeof(cursor), "%s", r.cursor);
		g.nparams = 0;
#define PARAM(k, v) do { g.params[g.nparams].name = (k); g.params[g.nparams++].value = (v); } while (0)
		PARAM("filter", filter && *filter ? filter : NULL);
		PARAM("from", q->range.has_from ? from : NULL);
		PARAM("to", q->range.has_to ? to : NULL);
		PARAM("order", q_order_name(q->order));
		PARAM("limit", limit);
		PARAM("cursor", cursor[0] ? cursor : NULL);
		PARAM("format", fmt == Q_FMT_JSON || fmt == Q_FMT_NDJSON ? "ndjson" : fmt == Q_FMT_CSV ? "csv" : "table");
#undef PARAM
		int rc = app_get(&g);
		if (rc != 0) {
			status = rc == 400 ? 2 : 1;
			goto out;
		}
		if (left > 0)
			left -= n;
		r.page++;
		/* the table is one page: its columns are aligned over the rows it has */
		if (!r.cursor[0] || left == 0 || fmt == Q_FMT_TABLE)
			break;
	}
	if (fmt == Q_FMT_JSON && fputs(r.rows ? "\n]\n" : "[]\n", stdout) == EOF)
		goto out;
	if (fflush(stdout) == EOF) {
		fprintf(stderr, "podcap flows: writing output: %s\n", strerror(errno));
		goto out;
	}
	if (fmt == Q_FMT_TABLE && r.cursor[0] && (q->limit < 0 || q->limit > REMOTE_PAGE))
		fprintf(stderr, "podcap flows: the table shows %d rows from a server; use --ndjson or --csv for more\n",
			REMOTE_PAGE);
	if (r.incomplete)
		fprintf(stderr, "podcap flows: the answer is not complete%s%s\n", r.why[0] ? ": " : "", r.why);
	status = 0;
out:
	app_get_done(&g);
	free(r.line);
	return status;
}

int cmd_flows(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"ndjson", no_argument, NULL, 'N'},
		{"csv", no_argument, NULL, 'c'},
		{"limit", required_argument, NULL, 'n'},
		{"order", required_argument, NULL, 'o'},
		{"app", required_argument, NULL, 'a'},
		{"ip", required_argument, NULL, 'i'},
		{"port", required_argument, NULL, 'p'},
		{"since", required_argument, NULL, 's'},
		{"until", required_argument, NULL, 'u'},
		{"server", required_argument, NULL, 'S'},
		{"token-file", required_argument, NULL, 'T'},
		{"cacert", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *db = NULL, *app = NULL, *ip = NULL, *server = NULL, *token_file = NULL, *cacert = NULL;
	int fmt = -1, port = -1;
	struct q_select q = {.order = Q_ORDER_LAST_DESC, .limit = FLOWS_DEFAULT_LIMIT};
	struct q_error qe;
	unsigned long long v;
	int c;
	/* the filter's words, joined by spaces (at most the whole command line) */
	size_t flen = 1;
	for (int i = 1; i < argc; i++)
		flen += strlen(argv[i]) + 1;
	char *words = calloc(1, flen), *text = NULL;
	struct q_filter *filter = NULL;
	int status = 1;
	if (!words) {
		fprintf(stderr, "podcap flows: out of memory\n");
		return 1;
	}
#define WORD(w) do { if (*words) strcat(words, " "); strcat(words, (w)); } while (0)
#define USAGE() do { status = app_usage(FLOWS_USAGE); goto out; } while (0)

	optind = 1;
	opterr = 0; /* our own messages, then the usage line */
	/* "-" in front: positional words come back as 1, so a filter may stand
	 * between options and start with a word that looks like anything */
	while ((c = getopt_long(argc, argv, "-", opts, NULL)) != -1) {
		switch (c) {
		case 1:
			WORD(optarg);
			break;
		case 'd':
		case 'T':
		case 'C':
			/* "--db -", "--db --json": a value left out, not a file */
			if (app_check_path("flows", c == 'd' ? "--db" : c == 'T' ? "--token-file" : "--cacert", optarg) < 0)
				USAGE();
			if (c == 'd')
				db = optarg;
			else if (c == 'T')
				token_file = optarg;
			else
				cacert = optarg;
			break;
		case 'S':
			if (app_check_server("flows", optarg) < 0)
				USAGE();
			server = optarg;
			break;
		case 'j':
		case 'N':
		case 'c':
			if (fmt >= 0) {
				fprintf(stderr, "podcap flows: choose one of --json, --ndjson and --csv\n");
				USAGE();
			}
			fmt = c == 'j' ? Q_FMT_JSON : c == 'N' ? Q_FMT_NDJSON : Q_FMT_CSV;
			break;
		case 'n':
			if (app_parse_uint(optarg, 0, INT64_MAX, &v)) {
				fprintf(stderr, "podcap flows: --limit: '%s' is not a count\n", optarg);
				USAGE();
			}
			q.limit = v == 0 ? -1 : (int64_t)v;
			break;
		case 'o':
			if (q_order_parse(optarg, &q.order) < 0) {
				fprintf(stderr, "podcap flows: --order: '%s' is not an order (-last, last, -first, first, "
					"-id, id, -bytes, -packets)\n", optarg);
				USAGE();
			}
			break;
		case 'a':
			if (!*optarg) {
				fprintf(stderr, "podcap flows: --app: empty name\n");
				USAGE();
			}
			app = optarg;
			break;
		case 'i':
			if (!*optarg) {
				fprintf(stderr, "podcap flows: --ip: empty address\n");
				USAGE();
			}
			ip = optarg;
			break;
		case 'p':
			if (app_parse_uint(optarg, 0, 65535, &v)) {
				fprintf(stderr, "podcap flows: --port: '%s' is not a port (0-65535)\n", optarg);
				USAGE();
			}
			port = (int)v;
			break;
		case 's':
		case 'u':
			if (app_range_opt("flows", c == 's', optarg, &q.range) < 0)
				USAGE();
			break;
		case 'h':
			flows_help();
			status = 0;
			goto out;
		case '?':
		default:
			/* getopt has already moved past the offending word. */
			fprintf(stderr, "podcap flows: unknown option or missing value: '%s'\n",
				argv[optind - 1]);
			USAGE();
		}
	}
	for (; optind < argc; optind++) /* after "--" */
		WORD(argv[optind]);
	if (!db == !server) {
		fprintf(stderr, "podcap flows: %s\n", db ? "give --db or --server, not both" : "--db PATH (or --server URL) is required");
		USAGE();
	}
	if (!server && (token_file || cacert)) {
		fprintf(stderr, "podcap flows: --token-file and --cacert go with --server\n");
		USAGE();
	}
	if (app_range_check("flows", &q.range) < 0)
		USAGE();
	/* The filter: the positional words and the shorthands. */
	text = q_shorthand(words, app, ip, port);
	if (!text) {
		fprintf(stderr, "podcap flows: out of memory\n");
		goto out;
	}
	if (q_parse(text, strlen(text), NULL, &filter, &qe) < 0) {
		app_filter_error("flows", text, &qe);
		USAGE();
	}
	q.filter = filter;
	if (server) {
		status = flows_remote(server, token_file, cacert, text, &q, fmt < 0 ? Q_FMT_TABLE : fmt);
		goto out;
	}

	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	struct fdb *st;
	struct pks *store = NULL;
	char err[512];
	if (fdb_open(db, &cfg, &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap flows: %s\n", err);
		goto out;
	}
	/* What the packet store holds of each flow (JSON and CSV show it), when the
	 * database names one; a database without one shows its own column. */
	if (fmt >= 0 && q_open_store(st, NULL, NULL, NULL, &store, &qe) < 0)
		store = NULL;
	long n = q_list_flows(st, store, &q, fmt < 0 ? Q_FMT_TABLE : (enum q_format)fmt, q_write_file, stdout, NULL, &qe);
	if (n >= 0 && (fflush(stdout) == EOF || ferror(stdout))) {
		n = -EIO;
		snprintf(qe.msg, sizeof(qe.msg), "writing output: %s", strerror(errno));
	}
	if (n < 0)
		fprintf(stderr, "podcap flows: %s\n", qe.msg);
	pks_close(store);
	fdb_close(st);
	status = n < 0 ? 1 : 0;
out:
	q_filter_free(filter);
	free(text);
	free(words);
	return status;
}
