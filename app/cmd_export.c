/* podcap export — writes the stored packets of flows as pcapng (or pcap).
 *
 * The flow database names the packet store (meta key packet_store_dir) and holds
 * each flow's Community ID, which becomes the comment of every exported packet;
 * query/ picks the flows and the packet store streams their packets.  Both are
 * opened read-only, so exporting never locks or migrates what an agent writes.
 * Until the flow filter language exists, --filter understands only the simple
 * terms of 'podcap flows': app, ip and port, joined by "and".
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

#include "app.h"
#include "fsio.h"
#include "pcapng.h"
#include "flowdb.h"
#include "pktstore.h"
#include "query.h"

#define EXPORT_USAGE "export (--db PATH [--store DIR] | --server URL [--token-file FILE] [--cacert FILE]) " \
	"(--flow ID ... | --filter FILTER | --app NAME | --ip ADDR | --port N) -w FILE|- [-F pcapng|pcap] [--limit N] [--inner]"
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
	       "  --filter FILTER  flows matching FILTER, in the language of 'podcap flows'\n"
	       "                 (docs/filters.md), e.g. 'app == DNS and rcode exists'\n"
	       "  --app NAME, --ip ADDR, --port N\n"
	       "                 the shorthands of 'podcap flows' (and-ed with --filter)\n"
	       "  --limit N      at most N flows from a filter, oldest first (default %d)\n"
	       "  -w FILE|-      output file, '-' for stdout (e.g. | wireshark -k -i -); a file\n"
	       "                 is written beside FILE and renamed into place on success (an\n"
	       "                 existing FILE stays as it was otherwise; a symbolic link is\n"
	       "                 refused), mode 0640 with the group $PODCAP_GROUP if set\n"
	       "  -F FORMAT      pcapng (default) or pcap; pcap keeps neither interface names\n"
	       "                 nor comments and cannot mix link types\n"
	       "  --inner        write tunnelled packets decapsulated (VXLAN, Geneve, IPIP...):\n"
	       "                 the pods' own packets, as Ethernet\n"
	       "  --store DIR    packet store directory (default: from the database)\n"
	       "  --server URL   download from an agent or 'podcap serve' (http://HOST:PORT)\n"
	       "                 instead of reading a database\n"
	       "  --token-file FILE  its bearer token;  --cacert FILE  its CA for https\n\n"
	       "Exit status: 0 when packets were written, 1 when none could be (flows\n"
	       "unknown, packets expired) or on errors, 2 on bad usage.\n",
	       EXPORT_DEFAULT_LIMIT);
}

static void log_stderr(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "podcap export: %s\n", msg);
}

/* Per-flow outcome lines, as each flow is done. */
static void report(void *arg, const struct pks_flow *x)
{
	uint64_t *flows_with = arg;
	*flows_with += x->packets > 0;
	if (x->state == PKS_FLOW_EXPIRED)
		fprintf(stderr, "podcap export: flow %" PRIu64 ": packets expired\n", x->id);
	else if (x->state == PKS_FLOW_NONE)
		fprintf(stderr, "podcap export: flow %" PRIu64 ": no packets stored\n", x->id);
	else if (x->missing || x->corrupt)
		fprintf(stderr, "podcap export: flow %" PRIu64 ": %" PRIu64 " packets written, %"
			PRIu64 " expired or missing, %" PRIu64 " unreadable\n",
			x->id, x->packets, x->missing, x->corrupt);
}

struct export_opts {
	const char *db_path, *out_path, *store_dir;
	const char *server, *token_file, *cacert;
	const char *filter_expr, *app, *ip;
	int port;
	int use_filter, inner;
	enum pn_format fmt;
	unsigned long long limit;
	uint64_t *ids;
	size_t nids;
};

/* Parses the options; 0, or the exit status after --help (0) or a usage error (2). */
static int export_parse(int argc, char **argv, struct export_opts *o)
{
	enum { O_DB = 256, O_FLOW, O_FILTER, O_APP, O_IP, O_PORT, O_STORE, O_LIMIT, O_SERVER, O_TOKEN, O_CACERT,
	       O_HELP, O_INNER };
	static const struct option opts[] = {
		{"db", required_argument, NULL, O_DB},
		{"flow", required_argument, NULL, O_FLOW},
		{"filter", required_argument, NULL, O_FILTER},
		{"app", required_argument, NULL, O_APP},
		{"ip", required_argument, NULL, O_IP},
		{"port", required_argument, NULL, O_PORT},
		{"store", required_argument, NULL, O_STORE},
		{"limit", required_argument, NULL, O_LIMIT},
		{"server", required_argument, NULL, O_SERVER},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"cacert", required_argument, NULL, O_CACERT},
		{"help", no_argument, NULL, O_HELP},
		{"inner", no_argument, NULL, O_INNER},
		{NULL, 0, NULL, 0},
	};
	unsigned long long v;
	uint8_t a[16];
	int c;

	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "w:F:h", opts, NULL)) != -1) {
		switch (c) {
		case O_DB:
		case O_STORE:
		case O_TOKEN:
		case O_CACERT: {
			/* "--db -", "--store --flow": a value left out, not a file */
			const char *opt = c == O_DB ? "--db" : c == O_STORE ? "--store" : c == O_TOKEN ? "--token-file" :
					  "--cacert";
			if (app_check_path("export", opt, optarg) < 0)
				return app_usage(EXPORT_USAGE);
			if (c == O_DB)
				o->db_path = optarg;
			else if (c == O_STORE)
				o->store_dir = optarg;
			else if (c == O_TOKEN)
				o->token_file = optarg;
			else
				o->cacert = optarg;
			break;
		}
		case O_FLOW: {
			if (app_parse_uint(optarg, 0, UINT64_MAX, &v) < 0 || o->nids >= EXPORT_MAX_FLOWS) {
				fprintf(stderr, "podcap export: bad flow id '%s'\n", optarg);
				return app_usage(EXPORT_USAGE);
			}
			uint64_t *ni = realloc(o->ids, (o->nids + 1) * sizeof(*ni));
			if (!ni) {
				fprintf(stderr, "podcap export: out of memory\n");
				return 1;
			}
			o->ids = ni;
			o->ids[o->nids++] = v;
			break;
		}
		case O_FILTER:
			/* the filter and the shorthands below add up (and) */
			o->filter_expr = optarg;
			o->use_filter = 1;
			break;
		case O_APP:
			/* empty: the shorthand would drop it and select every flow */
			if (!*optarg) {
				fprintf(stderr, "podcap export: --app: empty name\n");
				return app_usage(EXPORT_USAGE);
			}
			o->app = optarg;
			o->use_filter = 1;
			break;
		case O_IP:
			o->use_filter = 1;
			if (inet_pton(AF_INET, optarg, a) != 1 && inet_pton(AF_INET6, optarg, a) != 1) {
				fprintf(stderr, "podcap export: '%s' is not an IP address\n", optarg);
				return app_usage(EXPORT_USAGE);
			}
			o->ip = optarg;
			break;
		case O_PORT:
			o->use_filter = 1;
			if (app_parse_uint(optarg, 0, 65535, &v) < 0) {
				fprintf(stderr, "podcap export: bad port '%s'\n", optarg);
				return app_usage(EXPORT_USAGE);
			}
			o->port = (int)v;
			break;
		case O_SERVER:
			if (app_check_server("export", optarg) < 0)
				return app_usage(EXPORT_USAGE);
			o->server = optarg;
			break;
		case O_LIMIT:
			if (app_parse_uint(optarg, 1, EXPORT_MAX_FLOWS, &o->limit) < 0) {
				fprintf(stderr, "podcap export: bad --limit '%s' (1..%d)\n", optarg, EXPORT_MAX_FLOWS);
				return app_usage(EXPORT_USAGE);
			}
			break;
		case 'w':
			/* "-" is standard output; "-w --db" is a value left out */
			if (strcmp(optarg, "-") && app_check_path("export", "-w", optarg) < 0)
				return app_usage(EXPORT_USAGE);
			o->out_path = optarg;
			break;
		case O_INNER: o->inner = 1; break;
		case 'F':
			if (!strcasecmp(optarg, "pcapng")) {
				o->fmt = PN_FORMAT_PCAPNG;
			} else if (!strcasecmp(optarg, "pcap")) {
				o->fmt = PN_FORMAT_PCAP;
			} else {
				fprintf(stderr, "podcap export: unknown format '%s' (pcapng or pcap)\n", optarg);
				return app_usage(EXPORT_USAGE);
			}
			break;
		case 'h': case O_HELP:
			export_help();
			return 0;
		default:
			fprintf(stderr, "podcap export: unknown or incomplete option '%s'\n", argv[optind - 1]);
			return app_usage(EXPORT_USAGE);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "podcap export: unexpected argument '%s'\n", argv[optind]);
		return app_usage(EXPORT_USAGE);
	}
	if (o->server && (o->db_path || o->store_dir)) {
		fprintf(stderr, "podcap export: --server reads no local database: leave out --db and --store\n");
		return app_usage(EXPORT_USAGE);
	}
	if (!o->server && (o->token_file || o->cacert)) {
		fprintf(stderr, "podcap export: --token-file and --cacert go with --server\n");
		return app_usage(EXPORT_USAGE);
	}
	if ((!o->db_path && !o->server) || !o->out_path || (!o->nids && !o->use_filter) || (o->nids && o->use_filter)) {
		fprintf(stderr, "podcap export: %s\n", !o->db_path && !o->server ? "--db (or --server) is required" :
			!o->out_path ? "-w FILE (or -) is required" :
			o->nids ? "give --flow or a filter, not both" : "give --flow ID or a filter");
		return app_usage(EXPORT_USAGE);
	}
	if (!strcmp(o->out_path, "-") && isatty(STDOUT_FILENO)) {
		fprintf(stderr, "podcap export: not writing a capture to a terminal; pipe it or use -w FILE\n");
		return app_usage(EXPORT_USAGE);
	}
	return -1; /* go on */
}

/* ---- --server: the same bytes from the query API ---- */

struct fd_out {
	int fd;
	uint64_t bytes;
};

static int fd_write(void *arg, const void *buf, size_t len)
{
	struct fd_out *o = arg;
	const char *p = buf;
	while (len) {
		ssize_t n = write(o->fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		o->bytes += (uint64_t)n;
	}
	return 0;
}

static int export_remote(const struct export_opts *o, const char *filter_text, int fd)
{
	struct fd_out out = {.fd = fd};
	struct app_get g = {.cmd = "export", .server = o->server, .token_file = o->token_file, .cacert = o->cacert,
			    .write = fd_write, .arg = &out};
	char path[64], limit[24], *ids = NULL;
	if (o->nids == 1) {
		snprintf(path, sizeof(path), "/api/v1/flows/%" PRIu64 "/pcap", o->ids[0]);
		g.path = path;
	} else {
		g.path = "/api/v1/pcap";
		if (o->nids > 1) {
			/* several ids: "id in [a, b, ...]" */
			size_t cap = o->nids * 22 + 16, off = 0;
			if (!(ids = malloc(cap))) {
				fprintf(stderr, "podcap export: out of memory\n");
				return 1;
			}
			off += (size_t)snprintf(ids + off, cap - off, "id in [");
			for (size_t i = 0; i < o->nids; i++)
				off += (size_t)snprintf(ids + off, cap - off, "%s%" PRIu64, i ? "," : "", o->ids[i]);
			snprintf(ids + off, cap - off, "]");
			filter_text = ids;
		}
		snprintf(limit, sizeof(limit), "%llu", o->nids > 1 ? (unsigned long long)o->nids : o->limit);
		g.params[g.nparams].name = "filter";
		g.params[g.nparams++].value = filter_text;
		g.params[g.nparams].name = "limit";
		g.params[g.nparams++].value = limit;
		g.filter_text = filter_text;
	}
	if (o->inner) {
		g.params[g.nparams].name = "inner";
		g.params[g.nparams++].value = "1";
	}
	g.params[g.nparams].name = "format";
	g.params[g.nparams++].value = o->fmt == PN_FORMAT_PCAP ? "pcap" : "pcapng";
	int rc = app_get(&g);
	app_get_done(&g);
	free(ids);
	if (rc != 0)
		return rc == 400 ? 2 : 1;
	fprintf(stderr, "podcap export: %" PRIu64 " bytes from %s written to %s\n", out.bytes, o->server,
		strcmp(o->out_path, "-") ? o->out_path : "stdout");
	return 0;
}

int cmd_export(int argc, char **argv)
{
	struct export_opts o = {.port = -1, .fmt = PN_FORMAT_PCAPNG, .limit = EXPORT_DEFAULT_LIMIT};
	struct q_error qe = {0};
	struct q_filter *filter = NULL;
	char *text = NULL;
	struct fdb *db = NULL;
	struct pks *store = NULL;
	struct pn_writer *w = NULL;
	struct fsio_output *output = NULL;
	int status = export_parse(argc, argv, &o);
	char err[512];

	if (status >= 0)
		goto out;
	/* the exported file holds payloads: readable by the agent's group only */
	if (getenv("PODCAP_GROUP") && *getenv("PODCAP_GROUP") &&
	    fsio_set_group(getenv("PODCAP_GROUP"), err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap export: PODCAP_GROUP: %s\n", err);
		status = app_usage(EXPORT_USAGE);
		goto out;
	}
	status = 1;
	if (o.use_filter) {
		if (!(text = q_shorthand(o.filter_expr, o.app, o.ip, o.port))) {
			fprintf(stderr, "podcap export: out of memory\n");
			goto out;
		}
		if (q_parse(text, strlen(text), NULL, &filter, &qe) < 0) {
			app_filter_error("export", text, &qe);
			status = app_usage(EXPORT_USAGE);
			goto out;
		}
	}
	if (o.server) {
		if (fsio_output_open(o.out_path, FSIO_FILE_MODE, &output, err, sizeof(err)) < 0) {
			fprintf(stderr, "podcap export: %s\n", err);
			goto out;
		}
		signal(SIGPIPE, SIG_IGN);
		status = export_remote(&o, text, fsio_output_fd(output));
		if (status == 0) {
			int crc = fsio_output_commit(output, err, sizeof(err));
			output = NULL; /* freed by the commit, renamed or not */
			if (crc < 0) {
				fprintf(stderr, "podcap export: %s\n", err);
				status = 1;
			}
		}
		goto out;
	}
	/* Read-only: exporting never locks or migrates a database an agent writes. */
	struct fdb_config dcfg;
	fdb_config_default(&dcfg);
	dcfg.readonly = 1;
	if (fdb_open(o.db_path, &dcfg, &db, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap export: %s\n", err);
		goto out;
	}
	if (q_open_store(db, o.store_dir, log_stderr, NULL, &store, &qe) < 0) {
		fprintf(stderr, "podcap export: %s\n", qe.msg);
		goto out;
	}
	/* A file is written beside the final path and renamed into place only when
	 * the export succeeds: an export that fails (or finds no packets) leaves an
	 * existing file as it was, and a symbolic link there is refused, never
	 * written through (fsio.h).  "-" is standard output. */
	if (fsio_output_open(o.out_path, FSIO_FILE_MODE, &output, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap export: %s\n", err);
		goto out;
	}
	/* A reader that goes away (wireshark closed, | head) must show up as EPIPE
	 * from write(), not kill us before we can say so. */
	signal(SIGPIPE, SIG_IGN);
	struct pn_config pc;
	pn_config_default(&pc);
	pc.format = o.fmt;
	if (!(w = pn_open_fd(fsio_output_fd(output), &pc))) {
		fprintf(stderr, "podcap export: %s\n", strerror(errno));
		goto out;
	}
	struct q_select sel = {.filter = filter, .order = Q_ORDER_FIRST_ASC, .limit = (int64_t)o.limit};
	uint64_t selected = 0, packets = 0, flows_with = 0;
	struct q_export_opts xo = {.inner = o.inner};
	int rc = q_export_ex(db, store, o.ids, o.nids, &sel, &xo, w, report, &flows_with, log_stderr, NULL,
			     &selected, &packets, &qe);
	int crc = pn_close(w);
	w = NULL;
	if (rc < 0) {
		fprintf(stderr, "podcap export: %s\n", qe.msg);
		goto out;
	}
	if (crc < 0) {
		fprintf(stderr, "podcap export: %s: %s\n", o.out_path, strerror(-crc));
		goto out;
	}
	if (!packets) {
		/* nothing worth a file: an existing one stays as it was */
		fprintf(stderr, "podcap export: no packets to write%s\n",
			strcmp(o.out_path, "-") ? "; the output file was not written" : "");
		goto out;
	}
	if (fsio_output_commit(output, err, sizeof(err)) < 0) {
		output = NULL;
		fprintf(stderr, "podcap export: %s\n", err);
		goto out;
	}
	output = NULL;
	fprintf(stderr, "podcap export: %" PRIu64 " packets of %" PRIu64 " flows (of %" PRIu64 " selected)"
		" written to %s\n", packets, flows_with, selected, strcmp(o.out_path, "-") ? o.out_path : "stdout");
	status = 0;
out:
	pn_close(w);
	fsio_output_abort(output);
	pks_close(store);
	fdb_close(db);
	free(o.ids);
	q_filter_free(filter);
	free(text);
	return status;
}
