/* eng-replay — capture files through the engine, for tests and measurements.
 *
 *   eng-replay [-q] [-n] [-j N] [--db PATH] [--store DIR [--cap B] [--segment B]
 *              [--snaplen N] [--flow-packets N]] FILE...
 *
 * Reads the files (cap_open_file, as `podcap read`), feeds the engine with the
 * sinks asked for, and prints one tab-separated line per final flow record (a
 * record sink of its own, the way any output plugs into the engine):
 *
 *   l4  src  sport  dst  dport  vlan  proto  host  pkts_c2s  pkts_s2c  bytes_c2s
 *   bytes_s2c  tunnel  end  community_id  dpi_done  category  url  http_status
 *   dns_rcode  ja3c  rtt_us  retrans_c2s  retrans_s2c
 *
 * then a summary line starting with '#'.  -q prints only the summary, -n turns
 * nDPI off, -j N runs N flow workers (default 0: inline).  --db and --store add
 * the flow database and packet store sinks (building stores for export tests and
 * bench/segments-bench).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "engine.h"
#include "flowdb.h"
#include "pktstore.h"

static int quiet;
static uint64_t final_records; /* the print sink's thread only; read after eng_finish */

/* Names as ndpiReader prints them (ipProto2Name), so outputs compare directly. */
static const char *l4name(uint8_t p)
{
	switch (p) {
	case 6: return "TCP";
	case 17: return "UDP";
	case 1: return "ICMP";
	case 58: return "ICMPV6";
	case 112: return "VRRP";
	case 2: return "IGMP";
	default: return NULL;
	}
}

static const char *endname(int e)
{
	static const char *n[] = {"active", "idle", "tcp", "evicted", "flush", "counts"};
	return e >= 0 && e <= FL_END_FLUSH ? n[e] : "?";
}

static void addr(const struct dc_tuple *t, const uint8_t *a, char *buf, size_t len)
{
	inet_ntop(t->family == 6 ? AF_INET6 : AF_INET, a, buf, (socklen_t)len);
}

/* The print sink: runs on its own engine thread, so printf needs no lock. */
static int print_record(void *ctx, const struct fl_record *r)
{
	(void)ctx;
	if (r->end == FL_END_ACTIVE)
		return 0;
	final_records++;
	if (quiet)
		return 0;
	char s[64], d[64], pn[8];
	addr(&r->key, r->key.src, s, sizeof(s));
	addr(&r->key, r->key.dst, d, sizeof(d));
	const char *l4 = l4name(r->key.proto);
	if (!l4) {
		snprintf(pn, sizeof(pn), "%u", r->key.proto);
		l4 = pn;
	}
	/* ICMP "ports" are type/code; print 0 like ndpiReader, which keys ICMP without. */
	int icmp = r->key.proto == 1 || r->key.proto == 58;
	printf("%s\t%s\t%u\t%s\t%u\t%u\t%s\t%s\t%llu\t%llu\t%llu\t%llu\t%s\t%s\t%s\t%u\t%s"
	       "\t%s\t%u\t%u\t%s\t%lld\t%u\t%u\n", l4, s,
	       icmp ? 0 : r->key.sport, d, icmp ? 0 : r->key.dport, r->vlan, r->proto,
	       r->host[0] ? r->host : "-", (unsigned long long)r->pkts[0], (unsigned long long)r->pkts[1],
	       (unsigned long long)r->bytes[0], (unsigned long long)r->bytes[1], dc_tunnel_name(r->tunnel),
	       endname(r->end), r->community_id, r->dpi_done, r->category[0] ? r->category : "-",
	       r->url[0] ? r->url : "-", r->http_status, r->dns_rcode, r->ja3c[0] ? r->ja3c : "-",
	       (long long)r->rtt_us, r->retrans[0], r->retrans[1]);
	return 0;
}

static const struct eng_sink_ops print_ops = {.name = "print", .record = print_record};

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

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"db", required_argument, NULL, 'd'},
		{"store", required_argument, NULL, 's'},
		{"cap", required_argument, NULL, 'c'},
		{"segment", required_argument, NULL, 'S'},
		{"snaplen", required_argument, NULL, 'l'},
		{"flow-packets", required_argument, NULL, 'p'},
		{NULL, 0, NULL, 0},
	};
	const char *db = NULL, *store = NULL;
	struct eng_config ec;
	struct pks_config pc;
	struct fdb_config fc;
	eng_config_default(&ec);
	pks_config_default(&pc);
	fdb_config_default(&fc);
	int c;
	while ((c = getopt_long(argc, argv, "qnj:", opts, NULL)) != -1) {
		switch (c) {
		case 'q': quiet = 1; break;
		case 'n': ec.fl.dpi = 0; break;
		case 'j': ec.workers = (unsigned)atoi(optarg); break;
		case 'd': db = optarg; break;
		case 's': store = optarg; break;
		case 'c': pc.max_bytes = num(optarg); break;
		case 'S': pc.segment_bytes = num(optarg); break;
		case 'l': pc.snaplen = (uint32_t)num(optarg); break;
		case 'p': pc.flow_packets = (uint32_t)num(optarg); break;
		default:
			fprintf(stderr, "usage: eng-replay [-q] [-n] [-j N] [--db PATH] [--store DIR [--cap B] "
				"[--segment B] [--snaplen N] [--flow-packets N]] FILE...\n");
			return 2;
		}
	}
	if (optind >= argc || ec.workers > ENG_MAX_WORKERS) {
		fprintf(stderr, "usage: eng-replay [-q] [-n] [-j N] [--db PATH] [--store DIR ...] FILE...\n");
		return 2;
	}
	char err[1024];
	struct eng_sink sinks[3];
	size_t n = 0;
	struct pks_sink *ps = NULL;
	struct fdb_sink *fs = NULL;
	sinks[n++] = (struct eng_sink){.ops = &print_ops};
	if (store && pks_sink_open(store, &pc, &ps, &sinks[n++], err, sizeof(err)) < 0) {
		fprintf(stderr, "eng-replay: %s\n", err);
		return 1;
	}
	if (db && fdb_sink_open(db, &fc, store, &fs, &sinks[n++], err, sizeof(err)) < 0) {
		fprintf(stderr, "eng-replay: %s\n", err);
		return 1;
	}
	struct engine *e;
	if (eng_open(&ec, sinks, n, &e, err, sizeof(err)) < 0) {
		fprintf(stderr, "eng-replay: %s\n", err);
		return 1;
	}
	double t0 = now_s();
	int rc = 0, linktype = -1;
	uint64_t tunnelled = 0;
	struct cap_source **src = calloc((size_t)(argc - optind), sizeof(*src));
	for (int i = optind; i < argc && src && rc == 0; i++) {
		struct cap_source *s;
		if (cap_open_file(argv[i], &s, err, sizeof(err)) < 0) {
			fprintf(stderr, "eng-replay: %s\n", err);
			rc = 1;
			break;
		}
		src[i - optind] = s; /* kept open until the engine is closed: stable packets */
		linktype = cap_linktype(s);
		const char *name = cap_ifname(s, 0);
		uint32_t obs;
		if ((rc = eng_obs_point(e, name ? name : "file", "in", NULL, linktype, 0, &obs)) < 0) {
			fprintf(stderr, "eng-replay: observation point: %s\n", strerror(-rc));
			rc = 1;
			break;
		}
		struct cap_packet pk;
		int r;
		while ((r = cap_next(s, &pk)) == 1)
			if (eng_packet(e, obs, &pk) < 0) {
				fprintf(stderr, "eng-replay: %s\n", eng_error(e));
				rc = 1;
				break;
			}
		if (r < 0)
			fprintf(stderr, "eng-replay: %s: %s (continuing)\n", argv[i], cap_error(s));
	}
	if (eng_finish(e) < 0) {
		fprintf(stderr, "eng-replay: %s\n", eng_error(e));
		rc = 1;
	}
	double secs = now_s() - t0;
	struct eng_stats st;
	eng_stats(e, &st);
	for (int t = 1; t < DC_TUN__COUNT; t++)
		tunnelled += st.dc.by_tunnel[t];
	fflush(stdout);
	printf("# linktype %d packets %llu accounted %llu skipped %llu tunnelled %llu flows %llu "
	       "records %llu evicted %llu dpi_giveup %llu dpi_packets %llu seconds %.3f pps %.0f\n",
	       linktype, (unsigned long long)st.packets, (unsigned long long)st.fl.packets,
	       (unsigned long long)(st.packets - st.fl.packets), (unsigned long long)tunnelled,
	       (unsigned long long)final_records, (unsigned long long)st.fl.records,
	       (unsigned long long)st.fl.evicted, (unsigned long long)st.fl.dpi_giveup,
	       (unsigned long long)st.fl.dpi_packets, secs, secs > 0 ? (double)st.packets / secs : 0.0);
	if (ps) {
		struct pks_stats ss;
		pks_sink_stats(ps, &ss);
		printf("# store packets %" PRIu64 " bytes %" PRIu64 " write_errors %" PRIu64 " segments %" PRIu64
		       " deleted %" PRIu64 " index_rows %" PRIu64 "\n", ss.packets, ss.bytes, ss.write_errors,
		       ss.segments_open, ss.segments_deleted, ss.index_rows);
	}
	eng_close(e);
	for (int i = 0; src && i < argc - optind; i++)
		if (src[i])
			cap_close(src[i]);
	free(src);
	return rc;
}
