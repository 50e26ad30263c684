/* frag-read — a capture file through dc_decode() and fr_add(), as the engine will
 * run it: one line per packet saying what reassembly did with it, and for each
 * completed datagram the rebuilt frame decoded again.  The golden format of
 * tests/frag/:
 *
 *   N pass WHY | held | complete from A,B,C: OUTER [| TUNNEL [ID K] | INNER] len L [REASON]
 *   released N WHY            (a held frame given back: timeout, overlap, flush, ...)
 *   summary: ...               (fr_stats)
 *
 * usage: frag-read FILE */
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "frag.h"

#define MAX_PACKETS 100000

/* Which packet number each held copy came from: by its timestamp, which the test
 * captures make unique (one second apart). */
static uint64_t ts_of[MAX_PACKETS + 1];
static unsigned npackets;

static unsigned number_of(uint64_t ts)
{
	for (unsigned i = 1; i <= npackets; i++)
		if (ts_of[i] == ts)
			return i;
	return 0;
}

static void on_release(void *ctx, const struct fr_fragment *f, enum fr_why why)
{
	(void)ctx;
	printf("released %u %s\n", number_of(f->ts_us), fr_why_name(why));
}

static void print_decoded(const struct dc_config *cfg, const struct fr_datagram *dg)
{
	struct dc_packet p;
	char a[DC_TUPLE_STRLEN], b[DC_TUPLE_STRLEN];
	dc_decode(cfg, dg->linktype, dg->frame, dg->len, dg->wirelen, &p);
	printf(" %s", dc_tuple_format(&p.outer, a, sizeof a));
	if (p.tunnel != DC_TUN_NONE) {
		printf(" | %s", dc_tunnel_name(p.tunnel));
		if (p.has_vni)
			printf(p.tunnel == DC_TUN_GTPU ? " %s 0x%08x" : " %s %u",
			       dc_tunnel_id_name(p.tunnel), p.vni);
		printf(" | %s", dc_tuple_format(&p.inner, b, sizeof b));
	}
	printf(" len %u", p.payload_wire);
	if (p.reason != DC_OK)
		printf(" %s", dc_reason_name(p.reason));
	if (p.frag != DC_FRAG_NONE)
		printf(" still-fragment");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: frag-read FILE\n");
		return 2;
	}
	char err[PCAP_ERRBUF_SIZE];
	pcap_t *pc = pcap_open_offline(argv[1], err);
	if (!pc) {
		fprintf(stderr, "frag-read: %s\n", err);
		return 1;
	}
	struct fr_config cfg;
	fr_config_default(&cfg);
	cfg.release = on_release;
	struct fr_table *t = fr_new(&cfg);
	if (!t)
		return 1;
	int link = pcap_datalink(pc);
	struct pcap_pkthdr *h;
	const u_char *data;
	while (npackets < MAX_PACKETS && pcap_next_ex(pc, &h, &data) == 1) {
		uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000 + (uint64_t)h->ts.tv_usec;
		ts_of[++npackets] = ts;
		struct dc_packet p;
		dc_decode(&cfg.dc, link, data, h->caplen, h->len, &p);
		struct fr_datagram dg;
		int r = p.frag == DC_FRAG_NONE ? FR_PASS : fr_add(t, 0, &p, data, ts, &dg);
		printf("%u", npackets);
		if (p.frag == DC_FRAG_NONE)
			printf(" whole\n");
		else if (r == FR_HELD)
			printf(" held\n");
		else if (r == FR_PASS)
			printf(" pass %s\n", fr_why_name(dg.why));
		else {
			printf(" complete from");
			for (unsigned i = 0; i < dg.nfrags; i++)
				printf("%s%u", i ? "," : " ", number_of(dg.frags[i].ts_us));
			printf(":");
			print_decoded(&cfg.dc, &dg);
			printf("\n");
		}
	}
	pcap_close(pc);
	fr_flush(t);
	struct fr_stats s;
	fr_stats(t, &s);
	printf("summary: fragments %llu reassembled %llu timed-out %llu overlapping %llu duplicates %llu "
	       "evicted %llu too-big %llu bad %llu uncaptured %llu released %llu\n",
	       (unsigned long long)s.fragments, (unsigned long long)s.reassembled,
	       (unsigned long long)s.timed_out, (unsigned long long)s.overlapping,
	       (unsigned long long)s.duplicates, (unsigned long long)s.evicted,
	       (unsigned long long)s.too_big, (unsigned long long)s.bad,
	       (unsigned long long)s.uncaptured, (unsigned long long)s.released);
	fr_free(t);
	return 0;
}
