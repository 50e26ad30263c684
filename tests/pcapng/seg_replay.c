/* seg_replay — replays capture files through decode → flow table → packet
 * segments (and, with --flows-db, the flow store), the way the agent's pipeline
 * does.  Used by the export tests (to build a flow DB + packet store from a pcap)
 * and by bench/segments-bench (to build a store of several GB and to time the
 * cost of storing packets: run once with and once without --no-store).
 *
 * usage: seg_replay [options] STORE_DIR FILE...
 *   --flows-db PATH   also write flow records there (and meta packet_store_dir)
 *   --no-store        decode + flow table only (baseline for the store's cost)
 *   --repeat N        replay the files N times; flows end after each pass, so
 *                     every pass makes new flows
 *   --cap BYTES  --segment BYTES  --snaplen N  --flow-packets N
 *   --no-dpi          flow table without nDPI (what the bench measures)
 * Prints one summary line: packets, stored, seconds, MB/s, store stats.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <limits.h>

#include "capture.h"
#include "decode.h"
#include "flow.h"
#include "segments.h"
#include "store.h"

struct ctx {
	struct st_store *st;
	uint64_t records;
};

static int emit(void *arg, const struct fl_record *rec)
{
	struct ctx *c = arg;
	c->records++;
	return c->st ? st_put_flow(c->st, rec) : 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static unsigned long long num(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	switch (*end) {
	case 'k': case 'K': v <<= 10; break;
	case 'm': case 'M': v <<= 20; break;
	case 'g': case 'G': v <<= 30; break;
	}
	return v;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"flows-db", required_argument, NULL, 'd'},
		{"no-store", no_argument, NULL, 'n'},
		{"repeat", required_argument, NULL, 'r'},
		{"cap", required_argument, NULL, 'c'},
		{"segment", required_argument, NULL, 's'},
		{"snaplen", required_argument, NULL, 'l'},
		{"flow-packets", required_argument, NULL, 'p'},
		{"no-dpi", no_argument, NULL, 'x'},
		{NULL, 0, NULL, 0},
	};
	const char *flows_db = NULL;
	int no_store = 0, dpi = 1, c;
	unsigned long long repeat = 1;
	struct seg_config scfg;
	seg_config_default(&scfg);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'd': flows_db = optarg; break;
		case 'n': no_store = 1; break;
		case 'r': repeat = num(optarg); break;
		case 'c': scfg.max_bytes = num(optarg); break;
		case 's': scfg.segment_bytes = num(optarg); break;
		case 'l': scfg.snaplen = (uint32_t)num(optarg); break;
		case 'p': scfg.flow_packets = (uint32_t)num(optarg); break;
		case 'x': dpi = 0; break;
		default:
			fprintf(stderr, "usage: seg_replay [--flows-db DB] [--no-store] [--repeat N] "
				"[--cap B] [--segment B] [--snaplen N] [--flow-packets N] [--no-dpi] "
				"STORE_DIR FILE...\n");
			return 2;
		}
	}
	if (argc - optind < 2) {
		fprintf(stderr, "seg_replay: STORE_DIR and at least one FILE needed\n");
		return 2;
	}
	const char *dir = argv[optind];
	char err[512];
	struct ctx cx = {0};
	struct seg_store *seg = NULL;
	int rc = 1;

	if (flows_db) {
		struct st_config stc;
		st_config_default(&stc);
		if (st_open(flows_db, &stc, &cx.st, err, sizeof(err)) < 0) {
			fprintf(stderr, "seg_replay: %s: %s\n", flows_db, err);
			return 1;
		}
		/* An absolute path: readers run from other directories. */
		char abs[4096];
		if (!no_store && (mkdir(dir, 0755) < 0 && errno != EEXIST)) {
			perror(dir);
			return 1;
		}
		if (!no_store && (!realpath(dir, abs) ||
				  st_meta_set(cx.st, "packet_store_dir", abs) < 0)) {
			fprintf(stderr, "seg_replay: meta: %s\n", st_errmsg(cx.st));
			return 1;
		}
	}
	if (!no_store && seg_open(dir, &scfg, &seg, err, sizeof(err)) < 0) {
		fprintf(stderr, "seg_replay: %s\n", err);
		return 1;
	}
	struct fl_config fc;
	fl_config_default(&fc);
	fc.dpi = (uint8_t)dpi;
	struct fl_table *ft = fl_table_new(&fc, emit, &cx);
	if (!ft) {
		perror("fl_table_new");
		return 1;
	}
	struct dc_config dcfg;
	dc_config_default(&dcfg);

	uint64_t packets = 0, stored = 0, bytes = 0, put_errors = 0;
	double t0 = now_s();
	for (unsigned long long pass = 0; pass < repeat; pass++) {
		for (int fi = optind + 1; fi < argc; fi++) {
			struct cap_source *src;
			if (cap_open_file(argv[fi], &src, err, sizeof(err)) < 0) {
				fprintf(stderr, "seg_replay: %s: %s\n", argv[fi], err);
				goto out;
			}
			int lt = cap_linktype(src);
			uint32_t obs = (uint32_t)lt; /* one observation point per link type */
			if (cx.st) {
				const char *name = cap_ifname(src, 0);
				if (st_obs_point(cx.st, name ? name : "file", "in", NULL, lt, &obs) < 0) {
					fprintf(stderr, "seg_replay: %s\n", st_errmsg(cx.st));
					goto out;
				}
			}
			if (seg && seg_add_interface(seg, obs, lt, cap_ifname(src, 0) ?
						     cap_ifname(src, 0) : "file", NULL) < 0) {
				fprintf(stderr, "seg_replay: %s\n", seg_errmsg(seg));
				goto out;
			}
			struct cap_packet pk;
			int r;
			while ((r = cap_next(src, &pk)) == 1) {
				struct dc_packet dp;
				uint64_t fid, ts = pk.ts_us;
				uint32_t pno;
				packets++;
				bytes += pk.caplen;
				dc_decode(&dcfg, pk.linktype, pk.data, pk.caplen, pk.wirelen, &dp);
				if (fl_table_packet(ft, obs, &dp, pk.data, ts, &fid, &pno) < 0)
					continue;
				if (seg) {
					int pr = seg_put(seg, obs, fid, pno, ts, pk.data, pk.caplen, pk.wirelen);
					if (pr > 0)
						stored++;
					else if (pr < 0)
						put_errors++;
				}
				if ((packets & 4095) == 0)
					fl_table_expire(ft, ts);
			}
			if (r < 0)
				fprintf(stderr, "seg_replay: %s: %s (continuing)\n", argv[fi], cap_error(src));
			cap_close(src);
		}
		/* The next pass starts an hour after this one ended: all flows new. */
		/* Every flow ends with the pass, so the next pass makes new flows
		 * (new ids) from the same packets; times are not shifted because
		 * capture timestamps can sit anywhere in the 64-bit range. */
		fl_table_flush(ft);
	}
	fl_table_flush(ft);
	rc = 0;
out:;
	double secs = now_s() - t0;
	struct seg_stats ss = {0};
	if (seg) {
		seg_stats(seg, &ss);
		if (seg_close(seg) < 0)
			fprintf(stderr, "seg_replay: close: %s\n", "error");
	}
	double secs_all = now_s() - t0;
	fl_table_free(ft);
	if (cx.st) {
		st_commit(cx.st);
		st_close(cx.st);
	}
	printf("packets %" PRIu64 " bytes %" PRIu64 " stored %" PRIu64 " put_errors %" PRIu64
	       " flow_records %" PRIu64 " seconds %.3f (%.3f with close) MB/s %.1f segments %" PRIu64
	       " deleted %" PRIu64 " index_rows %" PRIu64 " index_ms %.1f store_bytes %" PRIu64 "\n",
	       packets, bytes, stored, put_errors, cx.records, secs, secs_all,
	       bytes / 1e6 / (secs_all > 0 ? secs_all : 1), ss.segments_open, ss.segments_deleted,
	       ss.index_rows, ss.index_us / 1000.0, ss.bytes);
	return rc;
}
