/* libFuzzer target for the checks on records from the eBPF ring buffer
 * (lb_record_parse, capture/live_bpf.c): the ring is memory the kernel writes,
 * and a bug or a layout change could fill it with anything.
 *
 * Input: byte 0 = how many interfaces are captured (0..7, ifindex 1..n), bytes
 * 1..8 = the monotonic-to-real clock offset; then records, each a 2-byte
 * little-endian length and that many bytes, copied into a buffer of exactly that
 * size so AddressSanitizer sees any read past it.  An accepted record must
 * describe bytes inside itself, a known interface and direction, and a wire
 * length within CAP_MAX_WIRE_EXCESS of its captured length; its frame then goes
 * through dc_decode() as the agent would take it.  Rejected records must be
 * counted.  make-seeds.py --ring writes seeds; tests/capture/regress-ring/ is
 * replayed in CI. */
#include <linux/types.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "live_int.h"
#include "tc_shared.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 9)
		return 0;
	struct cap_live *l = calloc(1, sizeof(*l));
	struct live_if ifs[7];
	if (!l)
		return 0;
	memset(ifs, 0, sizeof(ifs));
	unsigned nif = data[0] & 7;
	for (unsigned i = 0; i < nif; i++) {
		ifs[i].ifindex = i + 1;
		ifs[i].tag = 100 + i;
		l->ifs[l->n_ifs++] = &ifs[i];
		/* the same open addressing as live_index_add() (live.c) */
		size_t slot = live_slot(ifs[i].ifindex);
		while (l->by_index[slot])
			slot = (slot + 1) % LIVE_IF_SLOTS;
		l->by_index[slot] = &ifs[i];
	}
	memcpy(&l->mono_to_real_ns, data + 1, 8);
	struct dc_config cfg;
	dc_config_default(&cfg);
	size_t pos = 9;
	uint64_t records = 0, accepted = 0;
	while (pos + 2 <= size) {
		size_t len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
		pos += 2;
		if (len > size - pos)
			len = size - pos;
		uint8_t *rec = malloc(len ? len : 1);
		if (!rec)
			break;
		memcpy(rec, data + pos, len);
		pos += len;
		records++;
		struct cap_packet pk;
		if (lb_record_parse(l, len ? rec : NULL, len, &pk) == 0) {
			accepted++;
			if (pk.data < rec || pk.caplen == 0 || pk.caplen > len || (size_t)(pk.data - rec) > len - pk.caplen ||
			    pk.wirelen < pk.caplen || (uint64_t)pk.wirelen > (uint64_t)pk.caplen + CAP_MAX_WIRE_EXCESS ||
			    pk.ifindex < 1 || pk.ifindex > nif || pk.tag != 100 + pk.ifindex - 1 ||
			    (pk.dir != CAP_DIR_IN && pk.dir != CAP_DIR_OUT))
				abort();
			struct dc_packet dp;
			dc_decode(&cfg, pk.linktype, pk.data, pk.caplen, pk.wirelen, &dp);
		}
		free(rec);
	}
	if (l->bad_records != records - accepted || l->wirelen_clamped > accepted)
		abort();
	free(l);
	return 0;
}
