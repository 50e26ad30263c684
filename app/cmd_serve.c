/* podcap serve — the query API and the web page over an existing flow database
 * (and its packet store), e.g. after `podcap read`, or next to an agent that
 * writes the database (readers never block the writer: WAL).  Runs until
 * SIGINT/SIGTERM, then lets answers in progress finish. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "app.h"

#define SERVE_USAGE "serve --db PATH [--store DIR] [--listen ADDR:PORT] [--token-file FILE] " \
	"[--tls-cert FILE --tls-key FILE] [--http-workers N] [--query-timeout MS] [--max-exports N]"

static void serve_help(void)
{
	printf("usage: podcap " SERVE_USAGE "\n\n"
	       "Serves the query API (docs/api.md) and the web page over a flow database.\n\n"
	       "  --db PATH           flow database written by 'podcap read' or 'podcap run'\n"
	       "  --store DIR         packet store (default: the one the database names)\n"
	       "  --listen ADDR:PORT  address to listen on (default 127.0.0.1:7070; [::1]:7070\n"
	       "                      for IPv6; port 0 picks a free port and prints it)\n"
	       "  --token-file FILE   bearer token (first line, at least 16 characters); required\n"
	       "                      for any address that is not loopback\n"
	       "  --tls-cert FILE, --tls-key FILE\n"
	       "                      serve HTTPS (and HTTP/2 over TLS) with this PEM pair\n"
	       "  --http-workers N    threads answering queries (default 4; 1..64)\n"
	       "  --query-timeout MS  SQLite work one query may take (default 10000)\n"
	       "  --max-exports N     pcap downloads at once (default 4); more get 429\n");
}

int cmd_serve(int argc, char **argv)
{
	enum { O_DB = 256, O_STORE, O_LISTEN, O_TOKEN, O_CERT, O_KEY, O_WORKERS, O_QMS, O_EXPORTS, O_HELP };
	static const struct option opts[] = {
		{"db", required_argument, NULL, O_DB},
		{"store", required_argument, NULL, O_STORE},
		{"listen", required_argument, NULL, O_LISTEN},
		{"token-file", required_argument, NULL, O_TOKEN},
		{"tls-cert", required_argument, NULL, O_CERT},
		{"tls-key", required_argument, NULL, O_KEY},
		{"http-workers", required_argument, NULL, O_WORKERS},
		{"query-timeout", required_argument, NULL, O_QMS},
		{"max-exports", required_argument, NULL, O_EXPORTS},
		{"help", no_argument, NULL, O_HELP},
		{NULL, 0, NULL, 0},
	};
	struct api_config cfg;
	struct api *a = NULL;
	unsigned long long v;
	char err[1024];
	int c;

	api_config_default(&cfg);
	cfg.mode = "serve";
	cfg.http.listen = "127.0.0.1:7070";
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case O_DB:
		case O_STORE:
		case O_TOKEN:
		case O_CERT:
		case O_KEY: {
			/* "--db -", "--store --listen": a value left out, not a file */
			const char *opt = c == O_DB ? "--db" : c == O_STORE ? "--store" : c == O_TOKEN ? "--token-file" :
					  c == O_CERT ? "--tls-cert" : "--tls-key";
			if (app_check_path("serve", opt, optarg) < 0)
				return app_usage(SERVE_USAGE);
			if (c == O_DB)
				cfg.db_path = optarg;
			else if (c == O_STORE)
				cfg.store_dir = optarg;
			else if (c == O_TOKEN)
				cfg.http.token_file = optarg;
			else if (c == O_CERT)
				cfg.http.tls_cert_file = optarg;
			else
				cfg.http.tls_key_file = optarg;
			break;
		}
		case O_LISTEN:
			if (app_check_listen("serve", optarg) < 0)
				return app_usage(SERVE_USAGE);
			cfg.http.listen = optarg;
			break;
		case O_WORKERS:
		case O_QMS:
		case O_EXPORTS: {
			unsigned long long lo = 1, hi = c == O_WORKERS ? 64 : c == O_QMS ? 3600000 : 64;
			if (app_parse_uint(optarg, lo, hi, &v) < 0) {
				fprintf(stderr, "podcap serve: bad --%s '%s' (%llu..%llu)\n",
					c == O_WORKERS ? "http-workers" : c == O_QMS ? "query-timeout" : "max-exports",
					optarg, lo, hi);
				return app_usage(SERVE_USAGE);
			}
			if (c == O_WORKERS)
				cfg.http.workers = (unsigned)v;
			else if (c == O_QMS)
				cfg.query_ms = v;
			else
				cfg.max_exports = (unsigned)v;
			break;
		}
		case 'h':
		case O_HELP:
			serve_help();
			return 0;
		default:
			fprintf(stderr, "podcap serve: unknown option or missing value: '%s'\n", argv[optind - 1]);
			return app_usage(SERVE_USAGE);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "podcap serve: unexpected argument '%s'\n", argv[optind]);
		return app_usage(SERVE_USAGE);
	}
	if (!cfg.db_path) {
		fprintf(stderr, "podcap serve: --db PATH is required\n");
		return app_usage(SERVE_USAGE);
	}
	if (!cfg.http.tls_cert_file != !cfg.http.tls_key_file) {
		fprintf(stderr, "podcap serve: --tls-cert and --tls-key go together\n");
		return app_usage(SERVE_USAGE);
	}
	/* a store given by name must be there: else the server ran and every
	 * pcap download answered 503 */
	struct stat sst;
	if (cfg.store_dir && (stat(cfg.store_dir, &sst) < 0 || !S_ISDIR(sst.st_mode))) {
		fprintf(stderr, "podcap serve: --store %s: %s\n", cfg.store_dir,
			stat(cfg.store_dir, &sst) < 0 ? strerror(errno) : "not a directory");
		return 1;
	}
	/* Signals are taken by this thread alone (sigwait): the server's threads,
	 * made in api_open, inherit the blocked mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (api_open(&cfg, &a, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap serve: %s\n", err);
		return 1;
	}
	const char *colon = strrchr(cfg.http.listen, ':');
	int hostlen = colon ? (int)(colon - cfg.http.listen) : (int)strlen(cfg.http.listen);
	printf("podcap serve: listening on %s://%.*s:%d/ (db %s)\n", cfg.http.tls_cert_file ? "https" : "http",
	       hostlen, cfg.http.listen, api_port(a), cfg.db_path);
	fflush(stdout);
	int sig = 0;
	sigwait(&set, &sig);
	printf("podcap serve: %s, stopping\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	fflush(stdout);
	api_stop(a);
	api_close(a);
	return 0;
}
