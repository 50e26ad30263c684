/* libFuzzer target for fr_add(): a sequence of frames through dc_decode() and a
 * small reassembly table (caps low enough that evictions and the per-datagram limits
 * happen), then invariants: every frame offered comes back exactly once, memory
 * stays under its cap, a rebuilt frame decodes without reading past its end.
 *
 * Input: byte 0 picks the link type (as fuzz_decode.c), byte 1 configuration bits;
 * then records: length (2 bytes, big-endian), time step in ms (1 byte), observation
 * point (7 bits; the top bit: the capture cut 64 bytes off the frame), the frame.  Each frame is copied into a buffer of exactly its
 * length so AddressSanitizer sees any overread.  make-seeds.py --frag writes seeds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "frag.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int link_types[] = {
	DC_LINK_ETHERNET, DC_LINK_ETHERNET, DC_LINK_RAW, DC_LINK_LINUX_SLL,
	DC_LINK_IEEE802_11, DC_LINK_LINUX_SLL2, DC_LINK_IPV4, DC_LINK_IPV6,
};

struct count {
	uint64_t released;
};

static void on_release(void *ctx, const struct fr_fragment *f, enum fr_why why)
{
	struct count *c = ctx;
	c->released++;
	if (!f->frame || (unsigned)why >= FR_WHY__COUNT)
		abort();
	/* the copy must be whole: read its last byte (ASan checks the read) */
	if (f->caplen) {
		volatile uint8_t last = f->frame[f->caplen - 1];
		(void)last;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct fr_config cfg;
	fr_config_default(&cfg);
	int link = link_types[data[0] % (sizeof link_types / sizeof link_types[0])];
	uint8_t c = data[1];
	cfg.max_datagrams = 1 + (c & 0x0f);
	cfg.max_bytes = (c & 0x10) ? 16384 : 262144;
	cfg.max_datagram_bytes = (c & 0x20) ? 4096 : 65536;
	cfg.max_fragments = (c & 0x40) ? 4 : 64;
	cfg.timeout_us = 1000000;
	struct count cnt = { 0 };
	cfg.release = on_release;
	cfg.release_ctx = &cnt;
	struct fr_table *t = fr_new(&cfg);
	if (!t)
		return 0;
	uint64_t offered = 0, back = 0, ts = 1000000;
	size_t off = 2;
	while (off + 4 <= size) {
		uint32_t len = (uint32_t)data[off] << 8 | data[off + 1];
		ts += (uint64_t)data[off + 2] * 1000;
		uint32_t obs = data[off + 3] & 0x7f;
		uint32_t cut = (data[off + 3] & 0x80) ? 64 : 0;
		off += 4;
		if (len > size - off)
			len = (uint32_t)(size - off);
		uint8_t *frame = malloc(len ? len : 1);
		if (!frame)
			abort();
		memcpy(frame, data + off, len);
		off += len;
		struct dc_packet p;
		dc_decode(&cfg.dc, link, frame, len, len + cut, &p);
		if (p.frag != DC_FRAG_NONE) {
			struct fr_datagram dg;
			offered++;
			int r = fr_add(t, obs, &p, frame, ts, &dg);
			if (r == FR_PASS) {
				back++;
			} else if (r == FR_COMPLETE) {
				back += dg.nfrags;
				if (!dg.nfrags || dg.len > cfg.max_datagram_bytes + 65536)
					abort();
				/* a copy of exactly its length, decoded again */
				uint8_t *copy = malloc(dg.len ? dg.len : 1);
				if (!copy)
					abort();
				memcpy(copy, dg.frame, dg.len);
				struct dc_packet q;
				dc_decode(&cfg.dc, dg.linktype, copy, dg.len, dg.wirelen, &q);
				free(copy);
			} else if (r != FR_HELD) {
				abort();
			}
			struct fr_stats s;
			fr_stats(t, &s);
			if (s.bytes > cfg.max_bytes || s.in_progress > cfg.max_datagrams)
				abort();
		}
		free(frame);
	}
	fr_flush(t);
	if (offered != back + cnt.released)
		abort();
	struct fr_stats s;
	fr_stats(t, &s);
	if (s.in_progress != 0 || s.bytes != 0)
		abort();
	fr_free(t);
	return 0;
}
