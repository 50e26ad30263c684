/* libFuzzer target for dc_decode().
 *
 * Input layout: byte 0 picks the link type (index into link_types), byte 1 the
 * configuration (decap on/off, tunnel depth, an extra VXLAN port), byte 2..3 how
 * much shorter than the wire length the capture is (a snaplen cut); the rest is
 * the frame.  The frame is copied into a buffer of exactly its length so
 * AddressSanitizer catches any read past caplen.  A decoded IP header is then used
 * for dc_resize_enclosing() (what reassembly does) and the result decoded again.
 *
 * Also built without libFuzzer (FUZZ_NO_MAIN undefined → see regress.c), so the
 * regression inputs in tests/decode/regress/ replay through the same function. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int link_types[] = {
	DC_LINK_ETHERNET, DC_LINK_ETHERNET, DC_LINK_ETHERNET, DC_LINK_ETHERNET,
	DC_LINK_NULL, DC_LINK_PPP, DC_LINK_RAW_DLT, DC_LINK_RAW, DC_LINK_C_HDLC,
	DC_LINK_LOOP, DC_LINK_LINUX_SLL, DC_LINK_IPV4, DC_LINK_IPV6, DC_LINK_LINUX_SLL2,
	DC_LINK_PPI,
	147, /* unsupported */
	DC_LINK_IEEE802_11, DC_LINK_RADIOTAP,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	struct dc_config cfg;
	dc_config_default(&cfg);
	int link = link_types[data[0] % (sizeof link_types / sizeof link_types[0])];
	uint8_t c = data[1];
	cfg.decap = !(c & 0x80);
	cfg.max_tunnel_depth = c & 0x07;
	if (c & 0x08)
		dc_config_add_vxlan_port(&cfg, 80);
	uint32_t cut = (uint32_t)data[2] << 8 | data[3];
	size -= 4;
	if (size > 65535)
		size = 65535;
	uint8_t *frame = malloc(size ? size : 1);
	if (!frame)
		return 0;
	memcpy(frame, data + 4, size);
	struct dc_packet p;
	int r = dc_decode(&cfg, link, frame, (uint32_t)size, (uint32_t)size + cut, &p);
	/* Invariants every decode keeps, whatever the input. */
	if (r != p.reason || r < 0 || r >= DC_R__COUNT)
		abort();
	if (p.l3_off > size || p.l3_len > size - p.l3_off)
		abort();
	if (p.payload_off > size || p.payload_len > size - p.payload_off)
		abort();
	if (p.l4_off > size || p.tunnel >= DC_TUN__COUNT || p.tunnel_depth > cfg.max_tunnel_depth)
		abort();
	if (p.outer.family != 0 && p.outer.family != 4 && p.outer.family != 6)
		abort();
	if (p.mpls_depth > DC_MPLS_DEPTH_CAP || (p.tunnel != DC_TUN_NONE) != (p.tunnel_depth > 0))
		abort();
	char buf[DC_TUPLE_STRLEN];
	dc_tuple_format(&p.inner, buf, sizeof buf);
	/* Reassembly's use: grow or shrink the datagram at l3_off by a few bytes. */
	if (p.l3_len && size) {
		uint8_t *copy = malloc(size);
		if (!copy)
			abort();
		memcpy(copy, frame, size);
		int32_t delta = (int32_t)(cut & 0xff) - 128;
		int rc = dc_resize_enclosing(&cfg, link, frame, (uint32_t)size, (uint32_t)size + cut,
					     copy, p.l3_off, delta);
		if (rc != 0 && rc != -EINVAL && rc != -EOVERFLOW)
			abort();
		dc_decode(&cfg, link, copy, (uint32_t)size, (uint32_t)size, &p);
		free(copy);
	}
	free(frame);
	return 0;
}
