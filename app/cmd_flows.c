/* podcap flows — lists stored flows, newest first, with simple filters.
 *
 * The database is opened read-only: listing never creates, migrates or locks a
 * database out from under a running writer (WAL lets both run at once). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "flowdb.h"
#include "pktstore.h"
#include "query.h"

#define FLOWS_USAGE "flows --db PATH [--json|--csv] [--limit N] [--app NAME] [--ip ADDR] " \
	"[--port N] [--since T]"
#define FLOWS_DEFAULT_LIMIT 100

static void flows_help(void)
{
	printf("usage: podcap " FLOWS_USAGE "\n\n"
	       "Lists stored flows, newest (by last packet) first.\n\n"
	       "  --db PATH      flow database written by 'podcap read' or 'podcap run'\n"
	       "  --json         a JSON array of objects (all columns; ids as strings)\n"
	       "  --csv          CSV with a header line (all columns)\n"
	       "                 (default: an aligned table for terminals)\n"
	       "  --limit N      at most N flows (default %d; 0 = no limit)\n"
	       "  --app NAME     nDPI protocol, case-insensitive; matches either part of\n"
	       "                 a name like TLS.Facebook, or the whole name\n"
	       "  --ip ADDR      either endpoint, inner or outer (tunnel) address\n"
	       "  --port N       either port\n"
	       "  --since T      flows active since T: epoch seconds (1727784000), UTC time\n"
	       "                 (2024-10-01T12:00:00 or '2024-10-01 12:00:00', optional Z),\n"
	       "                 or a duration before now: 30s, 10m, 2h, 3d\n",
	       FLOWS_DEFAULT_LIMIT);
}

/* Parses --since into microseconds since the epoch; -EINVAL on anything else. */
static int parse_since(const char *s, uint64_t *out_us)
{
	unsigned long long v;
	size_t n = strlen(s);
	if (!n)
		return -EINVAL;
	if (app_parse_uint(s, 0, UINT64_MAX / 1000000, &v) == 0) {
		*out_us = v * 1000000ULL;
		return 0;
	}
	/* Relative: digits followed by one unit letter. */
	if (n >= 2 && strchr("smhd", s[n - 1]) && isdigit((unsigned char)s[0])) {
		char num[32];
		if (n - 1 >= sizeof(num))
			return -EINVAL;
		memcpy(num, s, n - 1);
		num[n - 1] = 0;
		unsigned long long mul = s[n - 1] == 's' ? 1 : s[n - 1] == 'm' ? 60 :
					 s[n - 1] == 'h' ? 3600 : 86400;
		if (app_parse_uint(num, 0, 100ULL * 365 * 86400 / mul, &v))
			return -EINVAL;
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t now = (uint64_t)ts.tv_sec;
		uint64_t ago = v * mul;
		*out_us = (now > ago ? now - ago : 0) * 1000000ULL;
		return 0;
	}
	/* ISO 8601 date and time, taken as UTC. */
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d %H:%M:%S", &tm);
	}
	if (!end) {
		memset(&tm, 0, sizeof(tm));
		end = strptime(s, "%Y-%m-%d", &tm);
		if (end && *end)
			end = NULL;
	}
	if (end && *end == 'Z')
		end++;
	if (!end || *end)
		return -EINVAL;
	/* strptime accepts some out-of-range fields; round-trip to reject them. */
	struct tm check = tm;
	time_t t = timegm(&check);
	if (t == (time_t)-1 || t < 0 || check.tm_mday != tm.tm_mday || check.tm_mon != tm.tm_mon ||
	    check.tm_hour != tm.tm_hour || check.tm_min != tm.tm_min)
		return -EINVAL;
	*out_us = (uint64_t)t * 1000000ULL;
	return 0;
}

int cmd_flows(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"csv", no_argument, NULL, 'c'},
		{"limit", required_argument, NULL, 'n'},
		{"app", required_argument, NULL, 'a'},
		{"ip", required_argument, NULL, 'i'},
		{"port", required_argument, NULL, 'p'},
		{"since", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *db = NULL;
	int fmt = -1;
	struct q_simple w = {.app = NULL, .ip = NULL, .port = -1};
	struct q_select q = {.where = &w, .since_us = 0, .order = Q_ORDER_LAST_DESC,
			     .limit = FLOWS_DEFAULT_LIMIT};
	unsigned long long v;
	int c;

	optind = 1;
	opterr = 0; /* our own messages, then the usage line */
	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		switch (c) {
		case 'd':
			db = optarg;
			break;
		case 'j':
		case 'c':
			if (fmt >= 0) {
				fprintf(stderr, "podcap flows: choose one of --json and --csv\n");
				return app_usage(FLOWS_USAGE);
			}
			fmt = c == 'j' ? Q_FMT_JSON : Q_FMT_CSV;
			break;
		case 'n':
			if (app_parse_uint(optarg, 0, INT64_MAX, &v)) {
				fprintf(stderr, "podcap flows: --limit: '%s' is not a count\n", optarg);
				return app_usage(FLOWS_USAGE);
			}
			q.limit = v == 0 ? -1 : (int64_t)v;
			break;
		case 'a':
			if (!*optarg) {
				fprintf(stderr, "podcap flows: --app: empty name\n");
				return app_usage(FLOWS_USAGE);
			}
			w.app = optarg;
			break;
		case 'i': {
			uint8_t a[16];
			if (inet_pton(AF_INET, optarg, a) != 1 && inet_pton(AF_INET6, optarg, a) != 1) {
				fprintf(stderr, "podcap flows: --ip: '%s' is not an IP address\n", optarg);
				return app_usage(FLOWS_USAGE);
			}
			w.ip = optarg;
			break;
		}
		case 'p':
			if (app_parse_uint(optarg, 0, 65535, &v)) {
				fprintf(stderr, "podcap flows: --port: '%s' is not a port (0-65535)\n", optarg);
				return app_usage(FLOWS_USAGE);
			}
			w.port = (int)v;
			break;
		case 's':
			if (parse_since(optarg, &q.since_us)) {
				fprintf(stderr, "podcap flows: --since: '%s' is not epoch seconds, "
					"YYYY-MM-DDTHH:MM:SS or a duration like 10m\n", optarg);
				return app_usage(FLOWS_USAGE);
			}
			break;
		case 'h':
			flows_help();
			return 0;
		case '?':
		default:
			/* getopt has already moved past the offending word. */
			fprintf(stderr, "podcap flows: unknown option or missing value: '%s'\n",
				argv[optind - 1]);
			return app_usage(FLOWS_USAGE);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "podcap flows: unexpected argument '%s'\n", argv[optind]);
		return app_usage(FLOWS_USAGE);
	}
	if (!db) {
		fprintf(stderr, "podcap flows: --db PATH is required\n");
		return app_usage(FLOWS_USAGE);
	}

	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	struct fdb *st;
	struct pks *store = NULL;
	struct q_error qe = {0};
	char err[512];
	int rc = fdb_open(db, &cfg, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "podcap flows: %s\n", err);
		return 1;
	}
	/* What the packet store holds of each flow (JSON and CSV show it), when the
	 * database names one; a database without one shows its own column. */
	if (fmt >= 0 && q_open_store(st, NULL, NULL, NULL, &store, &qe) < 0)
		store = NULL; /* no store, or not readable: the column it is */
	long n = q_list_flows(st, store, &q, fmt < 0 ? Q_FMT_TABLE : (enum q_format)fmt, q_write_file, stdout, &qe);
	if (n >= 0 && (fflush(stdout) == EOF || ferror(stdout))) {
		n = -EIO;
		snprintf(qe.msg, sizeof(qe.msg), "writing output: %s", strerror(errno));
	}
	if (n < 0)
		fprintf(stderr, "podcap flows: %s\n", qe.msg);
	pks_close(store);
	fdb_close(st);
	return n < 0 ? 1 : 0;
}
