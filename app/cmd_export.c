/* podcap export — writes the stored packets of flows as pcapng (or pcap).
 *
 * The flow database names the packet store (meta key packet_store_dir) and holds
 * each flow's Community ID, which becomes the comment of every exported packet.
 * Both are read here with plain read-only SQLite queries, so exporting never
 * locks or migrates a database a running agent writes to.  Until the flow filter
 * language of query/ exists, --filter understands only the simple terms of
 * 'podcap flows': app, ip and port, joined by "and".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

#include "app.h"
#include "pcapng.h"
#include "segments.h"

#define EXPORT_USAGE "export --db PATH (--flow ID ... | --filter EXPR | --app NAME | --ip ADDR | " \
	"--port N) -w FILE|- [-F pcapng|pcap] [--store DIR] [--limit N]"
#define EXPORT_DEFAULT_LIMIT 10000
#define EXPORT_MAX_FLOWS 1000000

static void export_help(void)
{
	printf("usage: podcap " EXPORT_USAGE "\n\n"
	       "Writes the stored packets of flows, merged in time order, with one interface\n"
	       "per observation point (named after the interface and the pod) and the flow's\n"
	       "Community ID as the comment of each packet.\n\n"
	       "  --db PATH      flow database written by 'podcap read --store' or 'podcap run'\n"
	       "  --flow ID      a flow id as 'podcap flows' prints it; may be repeated\n"
	       "  --filter EXPR  flows matching EXPR.  For now EXPR is one or more terms\n"
	       "                 'app == NAME', 'ip == ADDR', 'port == N' joined by 'and'\n"
	       "                 (the same simple filters as 'podcap flows'); the full\n"
	       "                 filter language comes later\n"
	       "  --app NAME, --ip ADDR, --port N\n"
	       "                 the same terms as options, as in 'podcap flows'\n"
	       "  --limit N      at most N flows from a filter, oldest first (default %d)\n"
	       "  -w FILE|-      output file, '-' for stdout (e.g. | wireshark -k -i -)\n"
	       "  -F FORMAT      pcapng (default) or pcap; pcap keeps neither interface names\n"
	       "                 nor comments and cannot mix link types\n"
	       "  --store DIR    packet store directory (default: from the database)\n\n"
	       "Exit status: 0 when packets were written, 1 when none could be (flows\n"
	       "unknown, packets expired) or on errors, 2 on bad usage.\n",
	       EXPORT_DEFAULT_LIMIT);
}

static void log_stderr(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "podcap export: %s\n", msg);
}

struct filter {
	const char *app;
	char ip[INET6_ADDRSTRLEN];
	int port;
};

static int set_ip(struct filter *f, const char *s)
{
	uint8_t a[16];
	/* The flow store keeps addresses in inet_ntop form: normalise the same way. */
	if (inet_pton(AF_INET, s, a) == 1)
		return inet_ntop(AF_INET, a, f->ip, sizeof(f->ip)) ? 0 : -EINVAL;
	if (inet_pton(AF_INET6, s, a) == 1)
		return inet_ntop(AF_INET6, a, f->ip, sizeof(f->ip)) ? 0 : -EINVAL;
	return -EINVAL;
}

static int set_port(struct filter *f, const char *s)
{
	unsigned long long v;
	if (app_parse_uint(s, 0, 65535, &v) < 0)
		return -EINVAL;
	f->port = (int)v;
	return 0;
}

/* Parses "app == DNS and port == 53".  expr is modified in place.  On error,
 * prints the position and returns -EINVAL. */
static int parse_filter(char *expr, struct filter *f)
{
	const char *orig = strdup(expr);
	char *p = expr;
	int rc = -EINVAL;
	for (;;) {
		while (*p == ' ')
			p++;
		char *field = p;
		while (*p && (*p == '_' || (*p >= 'a' && *p <= 'z')))
			p++;
		size_t flen = (size_t)(p - field);
		while (*p == ' ')
			p++;
		if (p[0] == '=' && p[1] == '=')
			p += 2;
		else if (p[0] == '=')
			p++;
		else
			goto bad;
		while (*p == ' ')
			p++;
		char *val = p;
		if (*p == '"') {
			val = ++p;
			while (*p && *p != '"')
				p++;
			if (!*p)
				goto bad;
			*p++ = 0;
		} else {
			while (*p && *p != ' ')
				p++;
			if (*p)
				*p++ = 0;
		}
		if (!*val)
			goto bad;
		if (flen == 3 && !strncmp(field, "app", 3))
			f->app = val;
		else if (flen == 2 && !strncmp(field, "ip", 2)) {
			if (set_ip(f, val) < 0) {
				fprintf(stderr, "podcap export: --filter: '%s' is not an IP address\n", val);
				goto out;
			}
		} else if (flen == 4 && !strncmp(field, "port", 4)) {
			if (set_port(f, val) < 0) {
				fprintf(stderr, "podcap export: --filter: bad port '%s'\n", val);
				goto out;
			}
		} else {
			p = field;
			goto bad;
		}
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		if (strncmp(p, "and ", 4))
			goto bad;
		p += 4;
	}
	rc = 0;
	goto out;
bad:
	fprintf(stderr, "podcap export: --filter: cannot parse at position %d: '%s'\n"
		"  (for now only 'app == NAME', 'ip == ADDR', 'port == N' joined by 'and')\n",
		(int)(p - expr) + 1, orig ? orig : "");
out:
	free((void *)orig);
	return rc;
}

struct flow_list {
	struct seg_flow *v;
	char **cid;
	size_t n, cap;
};

static int flow_push(struct flow_list *l, uint64_t id, const char *cid)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		struct seg_flow *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		char **nc = realloc(l->cid, ncap * sizeof(*nc));
		if (!nc)
			return -ENOMEM;
		l->cid = nc;
		l->cap = ncap;
	}
	char *c = NULL;
	if (cid && *cid)
		c = strdup(cid);
	else if (asprintf(&c, "podcap flow %" PRIu64, id) < 0)
		c = NULL;
	memset(&l->v[l->n], 0, sizeof(l->v[l->n]));
	l->v[l->n].id = id;
	l->v[l->n].comment = c;
	l->cid[l->n] = c;
	l->n++;
	return 0;
}

static int select_flows(sqlite3 *db, const uint64_t *ids, size_t nids, const struct filter *f,
			int use_filter, long long limit, struct flow_list *out)
{
	sqlite3_stmt *st;
	int r;
	if (!use_filter) {
		r = sqlite3_prepare_v2(db, "SELECT community_id FROM flows WHERE id = ?1", -1, &st, NULL);
		if (r != SQLITE_OK)
			goto sqlerr;
		int found = 0;
		for (size_t i = 0; i < nids; i++) {
			sqlite3_reset(st);
			sqlite3_bind_int64(st, 1, (int64_t)ids[i]);
			r = sqlite3_step(st);
			if (r == SQLITE_ROW) {
				found++;
				if (flow_push(out, ids[i], (const char *)sqlite3_column_text(st, 0)) < 0)
					break;
			} else if (r == SQLITE_DONE) {
				fprintf(stderr, "podcap export: flow %" PRIu64 ": not in the flow database\n",
					ids[i]);
			} else {
				sqlite3_finalize(st);
				goto sqlerr;
			}
		}
		sqlite3_finalize(st);
		return 0;
	}
	char sql[1024];
	size_t off = snprintf(sql, sizeof(sql), "SELECT id, community_id FROM flows WHERE 1");
	/* Constant fragments only; values are bound. */
	if (f->app)
		off += snprintf(sql + off, sizeof(sql) - off,
				" AND (master_name = ?1 COLLATE NOCASE OR app_name = ?1 COLLATE NOCASE"
				" OR proto_name = ?1 COLLATE NOCASE)");
	if (f->ip[0])
		off += snprintf(sql + off, sizeof(sql) - off,
				" AND (src = ?2 OR dst = ?2 OR outer_src = ?2 OR outer_dst = ?2)");
	if (f->port >= 0)
		off += snprintf(sql + off, sizeof(sql) - off, " AND (sport = ?3 OR dport = ?3)");
	snprintf(sql + off, sizeof(sql) - off, " ORDER BY first_us, id LIMIT ?4");
	r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (r != SQLITE_OK)
		goto sqlerr;
	if (f->app)
		sqlite3_bind_text(st, 1, f->app, -1, SQLITE_STATIC);
	if (f->ip[0])
		sqlite3_bind_text(st, 2, f->ip, -1, SQLITE_STATIC);
	if (f->port >= 0)
		sqlite3_bind_int(st, 3, f->port);
	sqlite3_bind_int64(st, 4, limit);
	while ((r = sqlite3_step(st)) == SQLITE_ROW)
		if (flow_push(out, (uint64_t)sqlite3_column_int64(st, 0),
			      (const char *)sqlite3_column_text(st, 1)) < 0)
			break;
	sqlite3_finalize(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE)
		goto sqlerr;
	return 0;
sqlerr:
	fprintf(stderr, "podcap export: flow database: %s\n", sqlite3_errmsg(db));
	return -EIO;
}

/* The store directory from meta.packet_store_dir; a relative one is taken from
 * the current directory if it exists there, else next to the database. */
static int store_dir(sqlite3 *db, const char *dbpath, char *out, size_t len)
{
	sqlite3_stmt *st;
	int rc = -ENOENT;
	if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'packet_store_dir'", -1,
			       &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "podcap export: %s: %s\n", dbpath, sqlite3_errmsg(db));
		return -EIO;
	}
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
		const char *v = (const char *)sqlite3_column_text(st, 0);
		const char *slash = strrchr(dbpath, '/');
		if (v[0] == '/' || !slash || access(v, F_OK) == 0)
			snprintf(out, len, "%s", v);
		else
			snprintf(out, len, "%.*s/%s", (int)(slash - dbpath), dbpath, v);
		rc = 0;
	}
	sqlite3_finalize(st);
	if (rc < 0)
		fprintf(stderr, "podcap export: %s has no packet store (it was written without --store);"
			" give one with --store DIR\n", dbpath);
	return rc;
}

int cmd_export(int argc, char **argv)
{
	enum { O_DB = 256, O_FLOW, O_FILTER, O_APP, O_IP, O_PORT, O_STORE, O_LIMIT, O_HELP };
	static const struct option opts[] = {
		{"db", required_argument, NULL, O_DB},
		{"flow", required_argument, NULL, O_FLOW},
		{"filter", required_argument, NULL, O_FILTER},
		{"app", required_argument, NULL, O_APP},
		{"ip", required_argument, NULL, O_IP},
		{"port", required_argument, NULL, O_PORT},
		{"store", required_argument, NULL, O_STORE},
		{"limit", required_argument, NULL, O_LIMIT},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	const char *db_path = NULL, *out_path = NULL, *store = NULL;
	char *filter_expr = NULL;
	struct filter f = {.port = -1};
	int use_filter = 0;
	enum pn_format fmt = PN_FORMAT_PCAPNG;
	unsigned long long v, limit = EXPORT_DEFAULT_LIMIT;
	uint64_t *ids = NULL;
	size_t nids = 0;
	struct flow_list fl = {0};
	sqlite3 *db = NULL;
	struct seg_store *seg = NULL;
	struct pn_writer *w = NULL;
	int status = 1, c, fd = -1;
	char dir[PATH_MAX], err[512];

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "w:F:h", opts, NULL)) != -1) {
		switch (c) {
		case O_DB: db_path = optarg; break;
		case O_FLOW:
			if (app_parse_uint(optarg, 0, UINT64_MAX, &v) < 0 || nids >= EXPORT_MAX_FLOWS) {
				fprintf(stderr, "podcap export: bad flow id '%s'\n", optarg);
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			uint64_t *ni = realloc(ids, (nids + 1) * sizeof(*ni));
			if (!ni)
				goto out;
			ids = ni;
			ids[nids++] = v;
			break;
		case O_FILTER:
			free(filter_expr);
			filter_expr = strdup(optarg);
			use_filter = 1;
			if (!filter_expr || parse_filter(filter_expr, &f) < 0) {
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			break;
		case O_APP: f.app = optarg; use_filter = 1; break;
		case O_IP:
			use_filter = 1;
			if (set_ip(&f, optarg) < 0) {
				fprintf(stderr, "podcap export: '%s' is not an IP address\n", optarg);
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			break;
		case O_PORT:
			use_filter = 1;
			if (set_port(&f, optarg) < 0) {
				fprintf(stderr, "podcap export: bad port '%s'\n", optarg);
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			break;
		case O_STORE: store = optarg; break;
		case O_LIMIT:
			if (app_parse_uint(optarg, 1, EXPORT_MAX_FLOWS, &limit) < 0) {
				fprintf(stderr, "podcap export: bad --limit '%s' (1..%d)\n", optarg,
					EXPORT_MAX_FLOWS);
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			break;
		case 'w': out_path = optarg; break;
		case 'F':
			if (!strcasecmp(optarg, "pcapng"))
				fmt = PN_FORMAT_PCAPNG;
			else if (!strcasecmp(optarg, "pcap"))
				fmt = PN_FORMAT_PCAP;
			else {
				fprintf(stderr, "podcap export: unknown format '%s' (pcapng or pcap)\n", optarg);
				status = app_usage(EXPORT_USAGE);
				goto out;
			}
			break;
		case 'h': case O_HELP:
			export_help();
			status = 0;
			goto out;
		default:
			fprintf(stderr, "podcap export: unknown or incomplete option '%s'\n",
				argv[optind - 1]);
			status = app_usage(EXPORT_USAGE);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "podcap export: unexpected argument '%s'\n", argv[optind]);
		status = app_usage(EXPORT_USAGE);
		goto out;
	}
	if (!db_path || !out_path || (!nids && !use_filter) || (nids && use_filter)) {
		fprintf(stderr, "podcap export: %s\n", !db_path ? "--db is required" :
			!out_path ? "-w FILE (or -) is required" :
			nids ? "give --flow or a filter, not both" : "give --flow ID or a filter");
		status = app_usage(EXPORT_USAGE);
		goto out;
	}
	if (!strcmp(out_path, "-") && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "podcap export: not writing a capture to a terminal; pipe it or use -w FILE\n");
		status = app_usage(EXPORT_USAGE);
		goto out;
	}

	if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
		fprintf(stderr, "podcap export: %s: %s\n", db_path, db ? sqlite3_errmsg(db) : "cannot open");
		goto out;
	}
	sqlite3_busy_timeout(db, 5000);
	if (store)
		snprintf(dir, sizeof(dir), "%s", store);
	else if (store_dir(db, db_path, dir, sizeof(dir)) < 0)
		goto out;
	if (select_flows(db, ids, nids, &f, use_filter, (long long)limit, &fl) < 0)
		goto out;
	if (!fl.n) {
		fprintf(stderr, "podcap export: no matching flows\n");
		goto out;
	}

	struct seg_config cfg;
	seg_config_default(&cfg);
	cfg.readonly = 1;
	cfg.log = log_stderr;
	if (seg_open(dir, &cfg, &seg, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap export: %s\n", err);
		goto out;
	}

	if (!strcmp(out_path, "-")) {
		fd = STDOUT_FILENO;
	} else {
		fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "podcap export: %s: %s\n", out_path, strerror(errno));
			goto out;
		}
	}
	/* A reader that goes away (wireshark closed, | head) must show up as EPIPE
	 * from write(), not kill us before we can say so. */
	signal(SIGPIPE, SIG_IGN);
	struct pn_config pc;
	pn_config_default(&pc);
	pc.format = fmt;
	pc.flags = fd == STDOUT_FILENO ? 0 : PN_OWN_FD;
	w = pn_open_fd(fd, &pc);
	if (!w) {
		fprintf(stderr, "podcap export: %s\n", strerror(errno));
		if (fd != STDOUT_FILENO)
			close(fd);
		goto out;
	}
	int rc = seg_export(seg, fl.v, fl.n, w);
	int crc = pn_close(w);
	w = NULL;
	if (rc < 0) {
		fprintf(stderr, "podcap export: %s\n", seg_errmsg(seg));
		goto out;
	}
	if (crc < 0) {
		fprintf(stderr, "podcap export: %s: %s\n", out_path, strerror(-crc));
		goto out;
	}
	uint64_t packets = 0, flows_with = 0;
	for (size_t i = 0; i < fl.n; i++) {
		struct seg_flow *x = &fl.v[i];
		packets += x->packets;
		flows_with += x->packets > 0;
		if (x->state == SEG_FLOW_EXPIRED)
			fprintf(stderr, "podcap export: flow %" PRIu64 ": packets expired\n", x->id);
		else if (x->state == SEG_FLOW_NONE)
			fprintf(stderr, "podcap export: flow %" PRIu64 ": no packets stored\n", x->id);
		else if (x->missing || x->corrupt)
			fprintf(stderr, "podcap export: flow %" PRIu64 ": %" PRIu64 " packets written, %"
				PRIu64 " expired or missing, %" PRIu64 " unreadable\n",
				x->id, x->packets, x->missing, x->corrupt);
	}
	fprintf(stderr, "podcap export: %" PRIu64 " packets of %" PRIu64 " flows (of %zu selected)"
		" written to %s\n", packets, flows_with, fl.n,
		strcmp(out_path, "-") ? out_path : "stdout");
	status = packets ? 0 : 1;
out:
	pn_close(w);
	seg_close(seg);
	if (db)
		sqlite3_close(db);
	for (size_t i = 0; i < fl.n; i++)
		free(fl.cid[i]);
	free(fl.v);
	free(fl.cid);
	free(ids);
	free(filter_expr);
	return status;
}
