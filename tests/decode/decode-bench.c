/* decode-bench — in-memory dc_decode() throughput: loads every packet of a capture
 * into one buffer (so disk and libpcap are out of the measurement), then decodes
 * them all PASSES times and prints packets per second.  bench/decode-bench runs it
 * next to tcpdump on the same file.
 * usage: decode-bench FILE [PASSES] */
#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"

struct rec {
	uint64_t off;
	uint32_t caplen, wirelen;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: decode-bench FILE [PASSES]\n");
		return 2;
	}
	int passes = argc == 3 ? atoi(argv[2]) : 5;
	if (passes < 1)
		passes = 1;
	char err[PCAP_ERRBUF_SIZE];
	pcap_t *pc = pcap_open_offline(argv[1], err);
	if (!pc) {
		fprintf(stderr, "decode-bench: %s\n", err);
		return 1;
	}
	int link = pcap_datalink(pc);
	size_t cap = 1 << 20, used = 0, nrec = 0, recmax = 1 << 16;
	uint8_t *arena = malloc(cap);
	struct rec *recs = malloc(recmax * sizeof *recs);
	struct pcap_pkthdr *h;
	const u_char *data;
	int rc;
	if (!arena || !recs)
		return 1;
	while ((rc = pcap_next_ex(pc, &h, &data)) == 1) {
		if (used + h->caplen > cap) {
			while (used + h->caplen > cap)
				cap *= 2;
			arena = realloc(arena, cap);
		}
		if (nrec == recmax) {
			recmax *= 2;
			recs = realloc(recs, recmax * sizeof *recs);
		}
		if (!arena || !recs)
			return 1;
		memcpy(arena + used, data, h->caplen);
		recs[nrec++] = (struct rec){ used, h->caplen, h->len };
		used += h->caplen;
	}
	pcap_close(pc);

	struct dc_config cfg;
	dc_config_default(&cfg);
	struct dc_counters counters;
	memset(&counters, 0, sizeof counters);
	struct dc_packet p;
	uint64_t sink = 0;
	double t0 = now();
	for (int pass = 0; pass < passes; pass++) {
		for (size_t i = 0; i < nrec; i++) {
			dc_decode(&cfg, link, arena + recs[i].off, recs[i].caplen, recs[i].wirelen, &p);
			sink += p.inner.sport + p.payload_len;
			if (pass == 0)
				dc_count(&counters, &p);
		}
	}
	double dt = now() - t0;
	double total = (double)nrec * passes;
	uint64_t bad = 0;
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		bad += counters.by_reason[r];
	printf("decode-bench: %zu packets (%.1f MB) x %d passes in %.3f s: %.2f Mpps, %.1f ns/packet\n",
	       nrec, used / 1e6, passes, dt, total / dt / 1e6, dt / total * 1e9);
	printf("decode-bench: per pass: ok %llu not-ip %llu malformed %llu tunnelled %llu (checksum %llu)\n",
	       (unsigned long long)counters.by_reason[DC_OK],
	       (unsigned long long)counters.by_reason[DC_NOT_IP], (unsigned long long)bad,
	       (unsigned long long)(counters.packets - counters.by_tunnel[DC_TUN_NONE]),
	       (unsigned long long)sink);
	printf("decode-bench-pps %.0f\n", total / dt);
	free(arena);
	free(recs);
	return 0;
}
