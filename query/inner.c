/* --inner: the pods' own view of a packet seen inside a tunnel.
 *
 * A flow seen on the underlay is VXLAN (or Geneve, IPIP, ...) on the wire, and
 * Wireshark does not open VXLAN on port 8472 by default; what a user wants to
 * see is the packet the pods exchanged.  decode/ already found where the
 * innermost IP header starts (dc_packet.l3_off): the inner frame is that IP
 * packet behind an Ethernet header, so every frame written is Ethernet and one
 * capture file can hold tunnelled and untunnelled packets alike. */
#include <errno.h>
#include <string.h>

#include "decode.h"
#include "query.h"

#define ETH_HLEN 14u
#define VXLAN_HLEN 8u

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* VXLAN always carries Ethernet: when the outermost (only) tunnel is VXLAN and
 * the inner IP header directly follows an untagged inner Ethernet header (its
 * type is the IP version's, no 802.1Q/802.1ad tag before it, the VXLAN header's
 * I flag before that), the pods' own MAC addresses are kept.  Anything else gets
 * made-up addresses: guessing where another tunnel's inner header starts could
 * take bytes of the carrier for addresses. */
static int inner_ethernet_kept(const struct dc_packet *p, const uint8_t *frame, uint16_t type)
{
	uint32_t off = p->l3_off;
	if (p->tunnel != DC_TUN_VXLAN || p->tunnel_depth != 1 || off < ETH_HLEN + VXLAN_HLEN + 28)
		return 0;
	if (be16(frame + off - 2) != type)
		return 0;
	uint16_t before = be16(frame + off - 6);
	if (before == 0x8100 || before == 0x88A8 || before == 0x9100)
		return 0;
	return (frame[off - ETH_HLEN - VXLAN_HLEN] & 0x08) != 0;
}

int q_inner_frame(const struct dc_packet *p, const uint8_t *frame, uint8_t *out, size_t outcap,
		  uint32_t *caplen, uint32_t *wirelen)
{
	if (!p->inner.family || !p->l3_off || p->l3_off >= p->caplen)
		return -EINVAL; /* no IP packet found in this frame */
	if (p->linktype == DC_LINK_ETHERNET && p->tunnel == DC_TUN_NONE && !p->tunnel_depth)
		return 0; /* already what is wanted */
	if (outcap < ETH_HLEN)
		return -ENOSPC;
	uint16_t type = p->inner.family == 6 ? 0x86DD : 0x0800;
	uint32_t ip_len = p->caplen - p->l3_off;
	if (ip_len > outcap - ETH_HLEN)
		ip_len = (uint32_t)(outcap - ETH_HLEN);
	if (inner_ethernet_kept(p, frame, type)) {
		memcpy(out, frame + p->l3_off - ETH_HLEN, ETH_HLEN);
	} else {
		memset(out, 0, 12);
		out[12] = (uint8_t)(type >> 8);
		out[13] = (uint8_t)type;
	}
	memcpy(out + ETH_HLEN, frame + p->l3_off, ip_len);
	*caplen = ETH_HLEN + ip_len;
	/* What was not captured of the frame is behind the inner packet. */
	uint32_t wire = p->wirelen > p->l3_off ? p->wirelen - p->l3_off : ip_len;
	*wirelen = ETH_HLEN + (wire > ip_len ? wire : ip_len);
	return 1;
}
