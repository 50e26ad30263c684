/* podcap read FILE... --db PATH — capture files to classified flow records. */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "pipeline.h"

#define READ_USAGE "read FILE... --db PATH [--store DIR] [--vxlan-port N]... [--no-decap] " \
	"[--store-snaplen N] [--store-first N] [--store-cap SIZE] [--idle-timeout S] [--active-timeout S] [--max-flows N] [--dpi-packets N] [--no-dpi] [--quiet]"

static void read_help(void)
{
	printf("usage: podcap " READ_USAGE "\n\n"
	       "Reads pcap/pcapng files (any link type decode supports), tracks bidirectional flows,\n"
	       "classifies them with nDPI and stores flow records in the SQLite database PATH.\n\n"
	       "  --db PATH            flow database (created if missing)\n"
	       "  --store DIR          also keep the packets in rolling pcapng segments under DIR\n"
	       "  --store-snaplen N    keep at most N bytes of each stored packet (default: whole packets)\n"
	       "  --store-first N      keep only the first N packets of each flow\n"
	       "  --store-cap SIZE     total size of the segments, oldest deleted first (e.g. 50M, 2G)\n"
	       "  --vxlan-port N       decapsulate VXLAN on UDP port N too (4789 and 8472 always)\n"
	       "  --no-decap           do not look into tunnels\n"
	       "  --idle-timeout S     end a flow after S seconds without packets (default 120)\n"
	       "  --active-timeout S   periodic record of long flows every S seconds (default 60)\n"
	       "  --max-flows N        flow table cap; older flows are evicted beyond it\n"
	       "  --dpi-packets N      packets per flow given to nDPI before it gives up (default 80 TCP, 24 UDP, as ndpiReader)\n"
	       "  --no-dpi             no nDPI classification\n"
	       "  --workers N          flow worker threads (default: cores - 1, at least 1; 0 = inline)\n"
	       "  --quiet              no progress line and no summary\n");
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int cmd_read(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"store", required_argument, NULL, 's'},
		{"vxlan-port", required_argument, NULL, 'V'},
		{"store-snaplen", required_argument, NULL, 'S'},
		{"store-first", required_argument, NULL, 'F'},
		{"store-cap", required_argument, NULL, 'C'},
		{"no-decap", no_argument, NULL, 'N'},
		{"idle-timeout", required_argument, NULL, 'i'},
		{"active-timeout", required_argument, NULL, 'a'},
		{"max-flows", required_argument, NULL, 'm'},
		{"dpi-packets", required_argument, NULL, 'p'},
		{"no-dpi", no_argument, NULL, 'D'},
		{"workers", required_argument, NULL, 'W'},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{0, 0, 0, 0},
	};
	struct pl_config cfg;
	unsigned long long v;
	int quiet = 0, c, status = 0;

	pl_config_default(&cfg);
	/* A bulk load into an empty database builds its indexes once at the end
	 * (about 3x cheaper per index); an agent keeps them live instead. */
	cfg.st.defer_indexes = 1;
	{
		/* The caller's thread only reads and decodes (~0.1 s per 750k packets from
		 * a mapped file); flow work goes to workers, SQLite to the store thread,
		 * packets to the segment thread.  Measured on 2 cores (753k packets, no
		 * expiry): inline 0.33 s, 1 worker 0.26 s, 2 workers 0.29 s and 10 MB
		 * more; with default timeouts 0.74 / 0.69 / 0.67 s.  Above 2 cores one
		 * worker per core but the caller's. */
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		cfg.workers = ncpu > 2 ? (unsigned)(ncpu - 1 < PL_MAX_WORKERS ? ncpu - 1 : PL_MAX_WORKERS) : 1;
	}
	optind = 1;
	opterr = 1;
	while ((c = getopt_long(argc, argv, "hq", opts, NULL)) != -1) {
		switch (c) {
		case 'd': cfg.db_path = optarg; break;
		case 's': cfg.store_dir = optarg; break;
		case 'V':
			if (app_parse_uint(optarg, 1, 65535, &v) < 0 || dc_config_add_vxlan_port(&cfg.dc, (uint16_t)v) < 0) {
				fprintf(stderr, "podcap read: bad --vxlan-port '%s' (1..65535, at most %d ports)\n",
					optarg, DC_MAX_VXLAN_PORTS);
				return app_usage(READ_USAGE);
			}
			break;
		case 'N': cfg.dc.decap = 0; break;
		case 'S':
		case 'F':
			if (app_parse_uint(optarg, 1, 1u << 20, &v) < 0) {
				fprintf(stderr, "podcap read: bad --%s '%s' (1..1048576)\n",
					c == 'S' ? "store-snaplen" : "store-first", optarg);
				return app_usage(READ_USAGE);
			}
			if (c == 'S')
				cfg.store_snaplen = (uint32_t)v;
			else
				cfg.store_first_packets = (uint32_t)v;
			break;
		case 'C':
			if (app_parse_size(optarg, &v) < 0 || v < (1u << 20)) {
				fprintf(stderr, "podcap read: bad --store-cap '%s' (a size of at least 1M, e.g. 50M)\n", optarg);
				return app_usage(READ_USAGE);
			}
			cfg.store_cap_bytes = v;
			break;
		case 'i':
		case 'a':
			if (app_parse_uint(optarg, 1, 10000000000ULL, &v) < 0) {
				fprintf(stderr, "podcap read: bad timeout '%s' (seconds, 1..10000000000)\n", optarg);
				return app_usage(READ_USAGE);
			}
			if (c == 'i')
				cfg.fl.idle_timeout_us = v * 1000000u;
			else
				cfg.fl.active_timeout_us = v * 1000000u;
			break;
		case 'm':
			if (app_parse_uint(optarg, 16, 1u << 26, &v) < 0) {
				fprintf(stderr, "podcap read: bad --max-flows '%s' (16..67108864)\n", optarg);
				return app_usage(READ_USAGE);
			}
			cfg.fl.max_flows = (uint32_t)v;
			break;
		case 'p':
			if (app_parse_uint(optarg, 1, 10000, &v) < 0) {
				fprintf(stderr, "podcap read: bad --dpi-packets '%s' (1..10000)\n", optarg);
				return app_usage(READ_USAGE);
			}
			cfg.fl.dpi_packets = (uint32_t)v;
			break;
		case 'D': cfg.fl.dpi = 0; break;
		case 'W':
			if (app_parse_uint(optarg, 0, PL_MAX_WORKERS, &v) < 0) {
				fprintf(stderr, "podcap read: bad --workers '%s' (0..%d)\n", optarg, PL_MAX_WORKERS);
				return app_usage(READ_USAGE);
			}
			cfg.workers = (unsigned)v;
			break;
		case 'q': quiet = 1; break;
		case 'h': read_help(); return 0;
		default: return app_usage(READ_USAGE);
		}
	}
	if (!cfg.db_path) {
		fprintf(stderr, "podcap read: --db PATH is required\n");
		return app_usage(READ_USAGE);
	}
	int nfiles = argc - optind;
	if (nfiles <= 0) {
		fprintf(stderr, "podcap read: no capture file given\n");
		return app_usage(READ_USAGE);
	}

	/* Open every file before touching the database, so a typo or a non-capture
	 * file costs nothing and leaves no half-filled store behind. */
	char err[1024];
	struct cap_source **src = calloc((size_t)nfiles, sizeof(*src));
	uint32_t *obs = calloc((size_t)nfiles, sizeof(*obs));
	struct pipeline *pl = NULL;
	if (!src || !obs) {
		fprintf(stderr, "podcap read: out of memory\n");
		status = 1;
		goto out;
	}
	for (int i = 0; i < nfiles; i++) {
		if (cap_open_file(argv[optind + i], &src[i], err, sizeof(err)) < 0) {
			fprintf(stderr, "podcap read: %s\n", err);
			status = 1;
			goto out;
		}
	}
	if (pl_open(&cfg, &pl, err, sizeof(err)) < 0) {
		fprintf(stderr, "podcap read: %s\n", err);
		status = 1;
		goto out;
	}

	int progress = !quiet && isatty(STDERR_FILENO);
	uint64_t t0 = now_ms(), last_draw = t0;
	int fatal = 0;
	for (int i = 0; i < nfiles && !fatal; i++) {
		const char *path = argv[optind + i];
		char *tmp = strdup(path);
		int rc = tmp ? pl_obs_point(pl, basename(tmp), "file", NULL, cap_linktype(src[i]), &obs[i]) : -ENOMEM;
		free(tmp);
		if (rc < 0) {
			fprintf(stderr, "podcap read: %s\n", pl_error(pl));
			status = fatal = 1;
			break;
		}
		struct cap_packet pkt;
		uint64_t n = 0;
		while ((rc = cap_next(src[i], &pkt)) == 1) {
			if (pl_packet(pl, obs[i], &pkt) < 0) {
				fprintf(stderr, "podcap read: %s\n", pl_error(pl));
				status = fatal = 1;
				break;
			}
			if (progress && (++n & 0xffff) == 0) {
				uint64_t t = now_ms();
				if (t - last_draw >= 250) {
					struct cap_stats cs;
					cap_stats(src[i], &cs);
					fprintf(stderr, "\r%s: %3.0f%%  %llu packets  ", path,
						cs.file_size ? 100.0 * (double)cs.bytes_read / (double)cs.file_size : 0.0,
						(unsigned long long)cs.received);
					last_draw = t;
				}
			}
		}
		if (rc < 0) {
			/* Everything before the damage is kept and the next files are still
			 * read; the exit status says an input was bad. */
			fprintf(stderr, "%spodcap read: %s: %s\n", progress ? "\n" : "", path, cap_error(src[i]));
			status = 1;
		}
	}
	if (progress)
		fprintf(stderr, "\r\033[K");
	if (pl_finish(pl) < 0) {
		fprintf(stderr, "podcap read: %s\n", pl_error(pl));
		status = 1;
	}
	{
		struct pl_stats ps;
		pl_stats(pl, &ps);
		if (ps.seg_errors) {
			/* The flows are all recorded; the packets the user asked to keep
			 * are not all there, and the flows concerned say "partial". */
			fprintf(stderr, "podcap read: packet store: %llu write errors (disk full or I/O error): "
				"not every packet was kept; the flows concerned are marked partial\n",
				(unsigned long long)ps.seg_errors);
			status = 1;
		}
	}
	if (!quiet) {
		double secs = (double)(now_ms() - t0) / 1000.0;
		struct pl_stats s;
		pl_stats(pl, &s);
		pl_print_summary(pl, stdout);
		printf("%.2f s, %.0f packets/s\n", secs, secs > 0 ? (double)s.packets / secs : 0.0);
	}
out:
	pl_close(pl);
	if (src)
		for (int i = 0; i < nfiles; i++)
			cap_close(src[i]);
	free(src);
	free(obs);
	return status;
}
