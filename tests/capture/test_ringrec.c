/* Unprivileged unit test of the eBPF ring record checks (capture/live_bpf.c):
 * records that are short, lie about their length, carry a bad magic, direction
 * or an interface we do not capture are skipped and counted. */
#include <linux/types.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "live_int.h"
#include "tc_shared.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

int main(void)
{
	struct cap_live *l = calloc(1, sizeof(*l));
	struct live_if *ifc = calloc(1, sizeof(*ifc));
	struct cap_packet pkt;
	uint8_t buf[sizeof(struct pc_rec_hdr) + 64];
	struct pc_rec_hdr h = {.magic = PC_REC_MAGIC, .ifindex = 7, .ts_ns = 1000, .caplen = 60,
			       .wirelen = 1500, .dir = PC_DIR_EGRESS};

	ifc->ifindex = 7;
	ifc->tag = 42;
	l->ifs[0] = ifc;
	l->n_ifs = 1;
	live_index_add(l, ifc);
	memset(buf, 0xab, sizeof(buf));

	memcpy(buf, &h, sizeof(h));
	CHECK(lb_record_parse(l, buf, sizeof(h) + 60, &pkt) == 0, "good record refused");
	CHECK(pkt.caplen == 60 && pkt.wirelen == 1500 && pkt.ifindex == 7 && pkt.dir == CAP_DIR_OUT && pkt.tag == 42 &&
	      pkt.data == buf + sizeof(h), "good record fields");

	/* a wire length far beyond the record: cut to caplen + CAP_MAX_WIRE_EXCESS, counted */
	{
		struct pc_rec_hdr hw = h;
		hw.wirelen = 0xffffffffu;
		memcpy(buf, &hw, sizeof(hw));
		CHECK(lb_record_parse(l, buf, sizeof(hw) + 60, &pkt) == 0 && pkt.wirelen == 60 + CAP_MAX_WIRE_EXCESS &&
		      l->wirelen_clamped == 1, "4 GB wire length: %u, clamped %llu", pkt.wirelen,
		      (unsigned long long)l->wirelen_clamped);
	}

	struct {
		const char *what;
		struct pc_rec_hdr h;
		size_t size;
	} bad[] = {
		{"shorter than a header", h, sizeof(h) - 1},
		{"caplen beyond the record", h, sizeof(h) + 59},
		{"bad magic", h, sizeof(h) + 60},
		{"caplen 0", h, sizeof(h) + 60},
		{"caplen > wirelen", h, sizeof(h) + 60},
		{"caplen > snap max", h, sizeof(buf)},
		{"bad direction", h, sizeof(h) + 60},
		{"unknown interface", h, sizeof(h) + 60},
	};
	bad[2].h.magic = 0xdeadbeef;
	bad[3].h.caplen = 0;
	bad[4].h.wirelen = 59;
	bad[5].h.caplen = PC_SNAP_MAX + 1;
	bad[5].h.wirelen = PC_SNAP_MAX + 1;
	bad[6].h.dir = 2;
	bad[7].h.ifindex = 8;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t before = l->bad_records;
		memcpy(buf, &bad[i].h, sizeof(bad[i].h));
		CHECK(lb_record_parse(l, buf, bad[i].size, &pkt) < 0 && l->bad_records == before + 1,
		      "%s accepted", bad[i].what);
	}
	CHECK(lb_record_parse(l, NULL, 0, &pkt) < 0, "NULL record accepted");
	free(ifc);
	free(l);
	if (failures)
		return 1;
	printf("ok: ring record checks\n");
	return 0;
}
