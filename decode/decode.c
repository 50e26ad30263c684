/* decode — the per-packet walk: link → VLAN → IP → L4 → tunnel → again.
 *
 * Everything here is on the hot path (a capture pipeline calls dc_decode() once per
 * packet), so the walk is one loop over a small state ("which header comes next, and
 * where does the region that holds it end") instead of recursion or tables of
 * function pointers: the compiler inlines every layer into dc_decode().
 *
 * Bounds: two ends are carried for the region being decoded.  `end` is how far the
 * captured bytes of the region go (never beyond caplen); `wire_end` is where the
 * region ended on the wire (an IP total length or UDP length may reach past a
 * snaplen cut).  A header that does not fit in `end` is a truncation; a length field
 * that points past `wire_end` is a lie in the packet.  All reads go through the rd_*
 * readers, which re-check against caplen, so even a mistake in a layer's own check
 * can never read outside the frame.
 *
 * Termination: every loop that packet data drives has a cap (VLAN tags, MPLS labels,
 * IPv6 extension headers, GTP extension headers; Geneve options and Hop-by-Hop options
 * by their bounded length), every tunnel counts against max_tunnel_depth, and the main
 * loop walks at most DC_LAYER_CAP headers, so no frame, however crafted, makes the
 * walk long.
 *
 * The same walk also serves dc_resize_enclosing() (IP reassembly, cold): it then
 * carries a trace that records where the length fields are.  dc_decode() passes no
 * trace; everything is inlined into it, so the compiler drops the recording there.
 */
#include <errno.h>
#include <string.h>

#include "decode.h"

/* The layers every packet goes through (link, VLAN, IP, TCP/UDP, VXLAN, Geneve) are
 * forced inline so that dc_decode() stays one function; the rarer tunnels are kept
 * out of line so that they do not grow it (and its instruction cache footprint). */
#define HOT static inline __attribute__((always_inline))
#define COLD static __attribute__((noinline))

/* Length fields seen by the walk, for dc_resize_enclosing(). */
enum trace_kind { T_IPV4, T_IPV6, T_JUMBO, T_UDP, T_GTP, T_PPPOE, T_PPTP };
#define TRACE_MAX 64
struct trace {
	unsigned n, nip;
	uint32_t off[TRACE_MAX];
	uint8_t kind[TRACE_MAX];
	uint32_t ip_off[TRACE_MAX]; /* every IP header accepted */
};

/* ---- bounds-checked big-endian readers (one family, like tcpdump's GET_BE_U_2) ---- */

struct walk {
	const struct dc_config *cfg;
	const uint8_t *p;
	uint32_t caplen;
	struct dc_packet *out;
	unsigned ip_layers;  /* IP headers accepted so far */
	struct trace *trace; /* NULL on the hot path */
};

/* Does [off, off+n) fit before end?  Written so that it cannot overflow. */
HOT int fits(uint32_t off, uint32_t n, uint32_t end)
{
	return off <= end && n <= end - off;
}

HOT uint8_t rd_u8(const struct walk *w, uint32_t off)
{
	return off < w->caplen ? w->p[off] : 0;
}

HOT uint16_t rd_be16(const struct walk *w, uint32_t off)
{
	if (!fits(off, 2, w->caplen))
		return 0;
	return (uint16_t)(w->p[off] << 8 | w->p[off + 1]);
}

HOT uint32_t rd_be32(const struct walk *w, uint32_t off)
{
	if (!fits(off, 4, w->caplen))
		return 0;
	return (uint32_t)w->p[off] << 24 | (uint32_t)w->p[off + 1] << 16 |
	       (uint32_t)w->p[off + 2] << 8 | w->p[off + 3];
}

/* Little-endian: PPI's and radiotap's headers and 802.11's sequence control. */
HOT uint32_t rd_le32(const struct walk *w, uint32_t off)
{
	if (!fits(off, 4, w->caplen))
		return 0;
	return (uint32_t)w->p[off + 3] << 24 | (uint32_t)w->p[off + 2] << 16 |
	       (uint32_t)w->p[off + 1] << 8 | w->p[off];
}

HOT uint16_t rd_le16(const struct walk *w, uint32_t off)
{
	if (!fits(off, 2, w->caplen))
		return 0;
	return (uint16_t)(w->p[off + 1] << 8 | w->p[off]);
}

HOT void rd_bytes(const struct walk *w, uint32_t off, uint8_t *dst, uint32_t n)
{
	if (fits(off, n, w->caplen))
		memcpy(dst, w->p + off, n);
}

HOT uint32_t min32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* A header of n bytes at off: a lie (len_reason) when the region on the wire cannot
 * hold it, a truncation (trunc_reason) when only the capture was cut, else 0. */
HOT int need(uint32_t off, uint32_t n, uint32_t end, uint32_t wire_end,
		       int trunc_reason, int len_reason)
{
	if (!fits(off, n, wire_end))
		return len_reason;
	if (!fits(off, n, end))
		return trunc_reason;
	return 0;
}

HOT void trace_len(struct walk *w, uint32_t off, enum trace_kind k)
{
	struct trace *t = w->trace;
	if (t && t->n < TRACE_MAX) {
		t->off[t->n] = off;
		t->kind[t->n++] = (uint8_t)k;
	}
}

/* ---- the walk ---- */

enum next {
	N_DONE, N_ETH, N_IP4, N_IP6, N_IPANY,
	N_MPLS,     /* a label stack after an ethertype-like field */
	N_MPLS_TUN, /* a label stack that is itself the tunnel (MPLS in UDP / in IP) */
	N_NSH,      /* a Network Service Header */
	N_WLAN,     /* an 802.11 frame inside a tunnel */
	N_WLAN_SWAPPED, /* the same from CAPWAP: frame control bytes may be swapped */
};

struct region {
	uint32_t off;      /* start of the next header */
	uint32_t end;      /* captured end of the region (<= caplen) */
	uint32_t wire_end; /* end of the region on the wire (>= end) */
};

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD
#define ETH_ARP 0x0806
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88A8
#define ETH_QINQ_OLD 0x9100
#define ETH_MPLS 0x8847
#define ETH_MPLS_MC 0x8848
#define ETH_PPPOE 0x8864
#define ETH_TEB 0x6558
#define ETH_ERSPAN2 0x88BE
#define ETH_ERSPAN3 0x22EB
#define ETH_CMD 0x8909   /* Cisco MetaData */
#define ETH_NSH 0x894F
#define ETH_WCCP 0x883E  /* GRE protocol of a WCCP redirect */
#define ETH_FABRICPATH 0x8903 /* Cisco FabricPath: FTag/TTL, then a whole Ethernet frame */

/* Maps an ethertype (or an ethertype-like protocol field) to the next layer,
 * walking VLAN tags, Cisco MetaData and a PPPoE session header on the way.  VLAN
 * IDs are recorded only for the outermost link (`record`). */
HOT int walk_ethertype(struct walk *w, uint16_t type, struct region *rg,
				 int record, enum next *next)
{
	struct dc_packet *out = w->out;
	unsigned depth = 0;

	while (type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD || type == ETH_CMD) {
		if (++depth > DC_VLAN_DEPTH_CAP)
			return DC_R_VLAN_DEPTH;
		if (type == ETH_CMD) {
			/* version(1) length(1) option(2) SGT(2) ethertype(2): a tag, like VLAN */
			if (!fits(rg->off, 8, rg->end))
				return DC_R_TRUNC_CMD;
			type = rd_be16(w, rg->off + 6);
			rg->off += 8;
			continue;
		}
		if (!fits(rg->off, 4, rg->end))
			return DC_R_TRUNC_VLAN;
		if (record) {
			if (out->vlan_depth < DC_MAX_VLANS)
				out->vlan[out->vlan_depth] = rd_be16(w, rg->off) & 0x0fff;
			out->vlan_depth++;
		}
		type = rd_be16(w, rg->off + 2);
		rg->off += 4;
	}
	switch (type) {
	case ETH_IPV4:
		*next = N_IP4;
		return DC_OK;
	case ETH_IPV6:
		*next = N_IP6;
		return DC_OK;
	case ETH_MPLS:
	case ETH_MPLS_MC:
		*next = N_MPLS;
		return DC_OK;
	case ETH_NSH:
		*next = N_NSH;
		return DC_OK;
	case ETH_FABRICPATH:
		/* MAC-in-MAC inside the data centre fabric: no IP carrier, so not a tunnel;
		 * the classic frame's tags are not recorded (they are the inner link's). */
		if (!fits(rg->off, 2, rg->end))
			return DC_R_TRUNC_LINK;
		rg->off += 2;
		*next = N_ETH;
		return DC_OK;
	case ETH_PPPOE:
		/* 6-byte PPPoE session header (its length at +4), then a 2-byte PPP protocol. */
		if (!fits(rg->off, 8, rg->end))
			return DC_R_TRUNC_LINK;
		trace_len(w, rg->off, T_PPPOE);
		type = rd_be16(w, rg->off + 6);
		rg->off += 8;
		if (type == 0x0021) {
			*next = N_IP4;
			return DC_OK;
		}
		if (type == 0x0057) {
			*next = N_IP6;
			return DC_OK;
		}
		return DC_NOT_IP;
	default:
		return DC_NOT_IP;
	}
}

HOT int walk_ethernet(struct walk *w, struct region *rg, int record, enum next *next)
{
	if (!fits(rg->off, 14, rg->end))
		return DC_R_TRUNC_LINK;
	uint16_t type = rd_be16(w, rg->off + 12);
	rg->off += 14;
	/* Below 0x0600 the field is an 802.3 length: LLC (STP, CDP, ...), not IP. */
	if (type < 0x0600)
		return DC_NOT_IP;
	return walk_ethertype(w, type, rg, record, next);
}

/* An 802.11 frame: only data frames that carry LLC/SNAP are decoded further.
 * Frame control (2, version/type/subtype | flags), duration (2), three addresses,
 * sequence control (2), a fourth address when both DS bits are set, QoS control (2)
 * in QoS data subtypes and HT control (4) when such a frame has the order bit.
 * `swapped`: Cisco's CAPWAP sends the frame control bytes swapped (Wireshark's
 * default reading of CAPWAP too); the other order is taken when only it makes a
 * version 0 data frame. */
COLD int walk_wlan(struct walk *w, struct region *rg, int record, int swapped,
			    enum next *next)
{
	uint32_t off = rg->off;
	if (!fits(off, 2, rg->end))
		return DC_R_TRUNC_WLAN;
	uint8_t fc0 = rd_u8(w, off), fc1 = rd_u8(w, off + 1);
	if (swapped && (fc0 & 0x0f) != 0x08 && (fc1 & 0x0f) == 0x08) {
		uint8_t t = fc0;
		fc0 = fc1;
		fc1 = t;
	}
	if ((fc0 & 3) != 0)
		return DC_UNSUPPORTED; /* a protocol version 802.11 has not defined */
	if (((fc0 >> 2) & 3) != 2)
		return DC_NOT_IP; /* management and control frames */
	unsigned subtype = fc0 >> 4;
	/* Null-function frames have no body; protected bodies are encrypted; a
	 * fragment holds only part of an MSDU (the first one's IP header would promise
	 * more than it carries). */
	if ((subtype & 4) || (fc1 & 0x40) || (fc1 & 0x04))
		return DC_NOT_IP;
	uint32_t hlen = 24;
	if ((fc1 & 3) == 3)
		hlen += 6;
	uint32_t qos_off = off + hlen;
	int qos = (subtype & 8) != 0;
	if (qos) {
		hlen += 2;
		if (fc1 & 0x80)
			hlen += 4;
	}
	if (!fits(off, hlen, rg->end))
		return DC_R_TRUNC_WLAN;
	if (rd_le16(w, off + 22) & 0x000f) /* fragment number: a later fragment */
		return DC_NOT_IP;
	off += hlen;
	if (qos && (rd_u8(w, qos_off) & 0x80)) {
		/* A-MSDU: the first subframe (DA, SA, length) is decoded. */
		if (!fits(off, 14, rg->end))
			return DC_R_TRUNC_WLAN;
		off += 14;
	}
	/* LLC/SNAP: AA AA 03, OUI 00-00-00 (RFC 1042) or 00-00-F8 (bridge tunnel), type */
	int r = need(off, 8, rg->end, rg->wire_end, DC_R_TRUNC_WLAN, DC_NOT_IP);
	if (r)
		return r;
	if (rd_be16(w, off) != 0xaaaa || rd_u8(w, off + 2) != 0x03)
		return DC_NOT_IP;
	uint32_t oui = rd_be32(w, off + 2) & 0xffffff;
	if (oui != 0 && oui != 0xf8)
		return DC_NOT_IP;
	uint16_t type = rd_be16(w, off + 6);
	rg->off = off + 8;
	return walk_ethertype(w, type, rg, record, next);
}

/* BSD loopback families that mean IP; the value depends on the OS that wrote the
 * capture (IPv6 is 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS, 10 on Linux). */
HOT int null_family(uint32_t af, enum next *next)
{
	switch (af) {
	case 2:
		*next = N_IP4;
		return DC_OK;
	case 10: case 24: case 28: case 30:
		*next = N_IP6;
		return DC_OK;
	default:
		return DC_NOT_IP;
	}
}

/* A PPP frame (the PPP link type, or inside PPTP's GRE): optional FF 03 address/control, then a protocol of
 * one byte (protocol field compression: an odd first byte) or two. */
static inline int walk_ppp(struct walk *w, struct region *rg, int trunc, enum next *next)
{
	if (!fits(rg->off, 1, rg->end))
		return trunc;
	if (rd_u8(w, rg->off) == 0xff) {
		if (!fits(rg->off, 2, rg->end))
			return trunc;
		rg->off += 2;
	}
	if (!fits(rg->off, 1, rg->end))
		return trunc;
	uint16_t proto = rd_u8(w, rg->off);
	if (proto & 1) {
		rg->off += 1;
	} else {
		if (!fits(rg->off, 2, rg->end))
			return trunc;
		proto = rd_be16(w, rg->off);
		rg->off += 2;
	}
	if (proto == 0x0021)
		*next = N_IP4;
	else if (proto == 0x0057)
		*next = N_IP6;
	else
		return DC_NOT_IP;
	return DC_OK;
}

HOT int walk_link(struct walk *w, int linktype, struct region *rg, enum next *next)
{
	switch (linktype) {
	case DC_LINK_ETHERNET:
		return walk_ethernet(w, rg, 1, next);
	case DC_LINK_RAW_DLT:
	case DC_LINK_RAW:
		*next = N_IPANY;
		return DC_OK;
	case DC_LINK_IPV4:
		*next = N_IP4;
		return DC_OK;
	case DC_LINK_IPV6:
		*next = N_IP6;
		return DC_OK;
	case DC_LINK_NULL: {
		if (!fits(rg->off, 4, rg->end))
			return DC_R_TRUNC_LINK;
		/* Host order of the machine that wrote the file, not ours: the family is
		 * small, so a value with high bytes set is the other byte order. */
		uint32_t af = rd_be32(w, rg->off);
		if (af > 0xffff)
			af = __builtin_bswap32(af);
		rg->off += 4;
		return null_family(af, next);
	}
	case DC_LINK_LOOP: {
		if (!fits(rg->off, 4, rg->end))
			return DC_R_TRUNC_LINK;
		uint32_t af = rd_be32(w, rg->off);
		rg->off += 4;
		return null_family(af, next);
	}
	case DC_LINK_PPP:
		/* Cisco HDLC framing (address 0x0f unicast / 0x8f broadcast, control 0)
		 * shows up in "PPP" captures of serial links; Wireshark reads it so too. */
		if (fits(rg->off, 2, rg->end) && (rd_u8(w, rg->off) & 0x7f) == 0x0f &&
		    rd_u8(w, rg->off + 1) == 0) {
			if (!fits(rg->off, 4, rg->end))
				return DC_R_TRUNC_LINK;
			uint16_t proto = rd_be16(w, rg->off + 2);
			rg->off += 4;
			return walk_ethertype(w, proto, rg, 1, next);
		}
		return walk_ppp(w, rg, DC_R_TRUNC_LINK, next);
	case DC_LINK_PPI: {
		/* Per-Packet Information: version(1) flags(1) length(2 LE) dlt(4 LE), then
		 * length-8 bytes of fields; an Ethernet or 802.11 frame behind it is decoded. */
		if (!fits(rg->off, 8, rg->end))
			return DC_R_TRUNC_LINK;
		uint32_t len = rd_le16(w, rg->off + 2);
		uint32_t dlt = rd_le32(w, rg->off + 4);
		if (len < 8 || !fits(rg->off, len, rg->end))
			return DC_R_TRUNC_LINK;
		rg->off += len;
		if (dlt == DC_LINK_IEEE802_11)
			return walk_wlan(w, rg, 1, 0, next);
		if (dlt != DC_LINK_ETHERNET)
			return DC_UNSUPPORTED;
		return walk_ethernet(w, rg, 1, next);
	}
	case DC_LINK_IEEE802_11:
		return walk_wlan(w, rg, 1, 0, next);
	case DC_LINK_RADIOTAP: {
		/* version(1)=0 pad(1) length(2 LE) present(4 LE)...: skipped by its length.
		 * A trailing FCS, if the radiotap flags say so, lies beyond the IP length. */
		if (!fits(rg->off, 8, rg->end))
			return DC_R_TRUNC_LINK;
		uint32_t len = rd_le16(w, rg->off + 2);
		if (rd_u8(w, rg->off) != 0)
			return DC_UNSUPPORTED;
		if (len < 8 || !fits(rg->off, len, rg->end))
			return DC_R_TRUNC_LINK;
		rg->off += len;
		return walk_wlan(w, rg, 1, 0, next);
	}
	case DC_LINK_C_HDLC: {
		if (!fits(rg->off, 4, rg->end))
			return DC_R_TRUNC_LINK;
		uint16_t proto = rd_be16(w, rg->off + 2);
		rg->off += 4;
		return walk_ethertype(w, proto, rg, 1, next);
	}
	case DC_LINK_LINUX_SLL: {
		/* type(2) arphrd(2) addrlen(2) addr(8) protocol(2) */
		if (!fits(rg->off, 16, rg->end))
			return DC_R_TRUNC_LINK;
		uint16_t proto = rd_be16(w, rg->off + 14);
		rg->off += 16;
		if (proto < 0x0600) /* Linux-specific values: 802.2 LLC, CAN, ... */
			return DC_NOT_IP;
		return walk_ethertype(w, proto, rg, 1, next);
	}
	case DC_LINK_LINUX_SLL2: {
		/* protocol(2) reserved(2) ifindex(4) arphrd(2) type(1) addrlen(1) addr(8) */
		if (!fits(rg->off, 20, rg->end))
			return DC_R_TRUNC_LINK;
		uint16_t proto = rd_be16(w, rg->off);
		rg->off += 20;
		if (proto < 0x0600)
			return DC_NOT_IP;
		return walk_ethertype(w, proto, rg, 1, next);
	}
	default:
		return DC_UNSUPPORTED;
	}
}

/* Enters a tunnel whose header has been checked: counts it, remembers the outermost
 * one, refuses past the configured depth. */
HOT int enter_tunnel(struct walk *w, enum dc_tunnel type, int has_id, uint32_t id)
{
	struct dc_packet *out = w->out;
	if (out->tunnel_depth >= w->cfg->max_tunnel_depth)
		return DC_R_TUNNEL_DEPTH;
	if (out->tunnel_depth == 0)
		out->tunnel = (uint8_t)type;
	out->tunnel_depth++;
	/* The VNI is the outermost identifier: the one the carrier network routes by. */
	if (has_id && !out->has_vni) {
		out->has_vni = 1;
		out->vni = id;
	}
	return DC_OK;
}

/* Ethertypes that say "this really is an Ethernet frame" for the pseudowire guess. */
static inline int common_ethertype(uint16_t t)
{
	return t == ETH_IPV4 || t == ETH_IPV6 || t == ETH_ARP || t == ETH_VLAN ||
	       t == ETH_QINQ || t == ETH_MPLS || t == ETH_MPLS_MC || t == ETH_PPPOE;
}

/* An MPLS label stack (RFC 3032): label(20) TC(3) S(1) TTL(8) until S, at most
 * DC_MPLS_DEPTH_CAP labels.  MPLS does not say what it carries, so the first nibble
 * after the stack does (RFC 4385 / BCP 128, as Wireshark and every MPLS decoder do):
 * 4 or 6 with a plausible IP length is IP, 1 an associated channel (OAM, not IP),
 * anything else an Ethernet pseudowire, with a control word when the first nibble is
 * 0 and the frame's ethertype is where a control word would put it.  `carrier`: the
 * stack is itself the tunnel (MPLS in UDP or in IP). */
COLD int walk_mpls(struct walk *w, struct region *rg, int carrier, enum next *next)
{
	struct dc_packet *out = w->out;
	uint32_t top = 0, label = 0;
	unsigned n = 0;
	for (;;) {
		if (n == DC_MPLS_DEPTH_CAP)
			return DC_R_MPLS_DEPTH;
		if (!fits(rg->off, 4, rg->end))
			return DC_R_TRUNC_MPLS;
		uint32_t e = rd_be32(w, rg->off);
		label = e >> 12;
		if (n++ == 0)
			top = label;
		rg->off += 4;
		if (e & 0x100)
			break;
	}
	if (!out->mpls_depth) {
		out->mpls_depth = (uint8_t)n;
		out->mpls_top = top;
		out->mpls_bottom = label;
	}
	if (carrier) {
		int r = enter_tunnel(w, DC_TUN_MPLS, 1, top);
		if (r)
			return r;
	}
	uint32_t off = rg->off;
	if (!fits(off, 1, rg->end))
		return DC_R_TRUNC_MPLS;
	unsigned nib = rd_u8(w, off) >> 4;
	uint32_t left = rg->wire_end - off;
	if (nib == 4) {
		/* IPv4 unless its header says otherwise (a MAC address starting with 4). */
		if (!fits(off, 4, rg->end) ||
		    ((rd_u8(w, off) & 0x0f) >= 5 && rd_be16(w, off + 2) <= left)) {
			*next = N_IP4;
			return DC_OK;
		}
	} else if (nib == 6) {
		if (!fits(off, 6, rg->end) || (uint32_t)rd_be16(w, off + 4) + 40 <= left) {
			*next = N_IP6;
			return DC_OK;
		}
	} else if (nib == 1) {
		return DC_NOT_IP; /* pseudowire / generic associated channel */
	}
	/* An Ethernet pseudowire (RFC 4448).  The guess needs the ethertype of both
	 * readings: a capture cut before them is a truncation. */
	if (!fits(off, 18, rg->end))
		return DC_R_TRUNC_MPLS;
	if (nib == 0 && (common_ethertype(rd_be16(w, off + 16)) ||
			 !common_ethertype(rd_be16(w, off + 12))))
		off += 4; /* control word: 0000 flags frg length sequence */
	else if (!common_ethertype(rd_be16(w, off + 12)))
		return DC_NOT_IP;
	if (!carrier) {
		int r = enter_tunnel(w, DC_TUN_MPLS, 1, top);
		if (r)
			return r;
	}
	rg->off = off;
	*next = N_ETH;
	return DC_OK;
}

/* The protocol numbers VXLAN-GPE and NSH share for what follows them. */
static inline int gpe_next(uint8_t np, enum next *next)
{
	switch (np) {
	case 1: *next = N_IP4; return DC_OK;
	case 2: *next = N_IP6; return DC_OK;
	case 3: *next = N_ETH; return DC_OK;
	case 4: *next = N_NSH; return DC_OK;
	case 5: *next = N_MPLS; return DC_OK;
	default: return DC_UNSUPPORTED;
	}
}

/* NSH (RFC 8300): ver(2) O U TTL(6) length(6) | U(4) MD type(4) | next protocol(8) |
 * SPI(24) SI(8) | context headers; length counts 4-byte words of the whole header
 * (6 for MD type 1, at least 2 otherwise). */
COLD int walk_nsh(struct walk *w, struct region *rg, enum next *next)
{
	struct dc_packet *out = w->out;
	uint32_t off = rg->off;
	if (!fits(off, 8, rg->end))
		return DC_R_TRUNC_NSH;
	if (rd_u8(w, off) >> 6 != 0)
		return DC_R_NSH_VERSION;
	uint32_t len = (uint32_t)(rd_u8(w, off + 1) & 0x3f) * 4;
	unsigned md = rd_u8(w, off + 2) & 0x0f;
	if (len < 8 || (md == 1 && len != 24))
		return DC_R_NSH_LEN;
	int r = need(off, len, rg->end, rg->wire_end, DC_R_TRUNC_NSH, DC_R_NSH_LEN);
	if (r)
		return r;
	if (!out->has_nsh) {
		out->has_nsh = 1;
		out->nsh_path = rd_be32(w, off + 4);
	}
	r = gpe_next(rd_u8(w, off + 3), next);
	if (r)
		return r;
	rg->off = off + len;
	return DC_OK;
}

HOT int vxlan_port(const struct dc_config *cfg, uint16_t port)
{
	for (unsigned i = 0; i < DC_MAX_VXLAN_PORTS; i++)
		if (cfg->vxlan_ports[i] == port && port)
			return 1;
	return 0;
}

/* VXLAN (RFC 7348): flags(1) reserved(3) VNI(3) reserved(1), then Ethernet. */
HOT int walk_vxlan(struct walk *w, struct region *rg, enum next *next)
{
	if (!fits(rg->off, 8, rg->end))
		return DC_R_TRUNC_VXLAN;
	if (!(rd_u8(w, rg->off) & 0x08)) /* the I flag: "VNI is valid" must be set */
		return DC_R_VXLAN_FLAGS;
	uint32_t vni = rd_be32(w, rg->off + 4) >> 8;
	int r = enter_tunnel(w, DC_TUN_VXLAN, 1, vni);
	if (r)
		return r;
	rg->off += 8;
	*next = N_ETH;
	return DC_OK;
}

/* Geneve (RFC 8926): ver(2) optlen(6) | O C rsvd(6) | protocol(16) | VNI(24) rsvd(8),
 * then optlen*4 bytes of TLV options. */
HOT int walk_geneve(struct walk *w, struct region *rg, enum next *next)
{
	if (!fits(rg->off, 8, rg->end))
		return DC_R_TRUNC_GENEVE;
	uint8_t b0 = rd_u8(w, rg->off);
	if (b0 >> 6 != 0)
		return DC_R_GENEVE_VERSION;
	uint32_t optlen = (uint32_t)(b0 & 0x3f) * 4;
	uint16_t proto = rd_be16(w, rg->off + 2);
	uint32_t vni = rd_be32(w, rg->off + 4) >> 8;
	uint32_t opt = rg->off + 8;
	if (!fits(opt, optlen, rg->wire_end))
		return DC_R_GENEVE_OPTLEN;
	if (!fits(opt, optlen, rg->end))
		return DC_R_TRUNC_GENEVE;
	/* Each option: class(2) type(1) rsvd(3) len(5) = 4-byte words after the
	 * 4-byte option header.  They must tile the option area exactly. */
	uint32_t opt_end = opt + optlen;
	while (opt < opt_end) {
		if (!fits(opt, 4, opt_end))
			return DC_R_GENEVE_OPTLEN;
		uint32_t l = 4 + (uint32_t)(rd_u8(w, opt + 3) & 0x1f) * 4;
		if (!fits(opt, l, opt_end))
			return DC_R_GENEVE_OPTLEN;
		opt += l;
	}
	enum next n;
	if (proto == ETH_TEB)
		n = N_ETH;
	else if (proto == ETH_IPV4)
		n = N_IP4;
	else if (proto == ETH_IPV6)
		n = N_IP6;
	else
		return DC_UNSUPPORTED;
	int r = enter_tunnel(w, DC_TUN_GENEVE, 1, vni);
	if (r)
		return r;
	rg->off = opt_end;
	*next = n;
	return DC_OK;
}

/* VXLAN-GPE (draft-ietf-nvo3-vxlan-gpe): flags R R Ver(2) I P B O | reserved(16) |
 * next protocol(8) | VNI(24) reserved(8).  Without the P bit the payload is
 * Ethernet, as in VXLAN. */
COLD int walk_vxlan_gpe(struct walk *w, struct region *rg, enum next *next)
{
	if (!fits(rg->off, 8, rg->end))
		return DC_R_TRUNC_VXLAN_GPE;
	uint8_t f = rd_u8(w, rg->off);
	if ((f & 0x30) != 0 || !(f & 0x08)) /* version 0, I flag set */
		return DC_R_VXLAN_GPE_FLAGS;
	enum next n;
	int r = gpe_next((f & 0x04) ? rd_u8(w, rg->off + 3) : 3, &n);
	if (r)
		return r;
	r = enter_tunnel(w, DC_TUN_VXLAN_GPE, 1, rd_be32(w, rg->off + 4) >> 8);
	if (r)
		return r;
	rg->off += 8;
	*next = n;
	return DC_OK;
}

/* A GTP T-PDU starts at rg->off.  Which kind of PDU session it belongs to is
 * signalled on the control plane, not here, so it is guessed as Wireshark does: IP
 * by its version nibble, an Ethernet frame (5G Ethernet PDU sessions) by a common
 * ethertype where Ethernet has its type; anything else (unstructured, PPP) is not IP. */
static inline int gtp_tpdu(struct walk *w, struct region *rg, enum next *next)
{
	if (!fits(rg->off, 1, rg->end))
		return rg->off < rg->wire_end ? DC_R_TRUNC_GTP : DC_NOT_IP;
	unsigned v = rd_u8(w, rg->off) >> 4;
	if (v == 4) {
		*next = N_IP4;
		return DC_OK;
	}
	if (v == 6) {
		*next = N_IP6;
		return DC_OK;
	}
	int r = need(rg->off, 14, rg->end, rg->wire_end, DC_R_TRUNC_GTP, DC_NOT_IP);
	if (r)
		return r;
	if (!common_ethertype(rd_be16(w, rg->off + 12)))
		return DC_NOT_IP;
	*next = N_ETH;
	return DC_OK;
}

/* GTP-U (3GPP TS 29.281): version(3)=1 PT(1)=1 spare E S PN | type | length(16) |
 * TEID(32), then, if any of E/S/PN, sequence(16) N-PDU(8) next-extension(8) and,
 * with E, a chain of extension headers: length(8, 4-byte units) contents next(8).
 * Length counts the bytes after the first 8.  Only G-PDUs (type 255) carry a packet. */
COLD int walk_gtpu(struct walk *w, struct region *rg, enum next *next)
{
	uint32_t off = rg->off;
	if (!fits(off, 8, rg->end))
		return DC_R_TRUNC_GTP;
	uint8_t f = rd_u8(w, off);
	if (f >> 5 != 1 || !(f & 0x10))
		return DC_R_GTP_VERSION;
	uint32_t len = rd_be16(w, off + 2);
	if (!fits(off + 8, len, rg->wire_end))
		return DC_R_GTP_LEN;
	trace_len(w, off, T_GTP);
	if (rd_u8(w, off + 1) != 0xff)
		return DC_OK; /* echo, error indication, end marker: GTP's own traffic */
	uint32_t wire_end = off + 8 + len;
	uint32_t end = min32(rg->end, wire_end);
	uint32_t p = off + 8;
	if (f & 0x07) {
		int r = need(p, 4, end, wire_end, DC_R_TRUNC_GTP, DC_R_GTP_LEN);
		if (r)
			return r;
		uint8_t nx = (f & 0x04) ? rd_u8(w, p + 3) : 0;
		p += 4;
		for (unsigned n = 0; nx; n++) {
			if (n == DC_GTP_EXT_CAP)
				return DC_R_GTP_EXT;
			if ((r = need(p, 1, end, wire_end, DC_R_TRUNC_GTP, DC_R_GTP_EXT)))
				return r;
			uint32_t el = (uint32_t)rd_u8(w, p) * 4;
			if (el == 0)
				return DC_R_GTP_EXT;
			if ((r = need(p, el, end, wire_end, DC_R_TRUNC_GTP, DC_R_GTP_EXT)))
				return r;
			nx = rd_u8(w, p + el - 1);
			p += el;
		}
	}
	int r = enter_tunnel(w, DC_TUN_GTPU, 1, rd_be32(w, off + 4));
	if (r)
		return r;
	*rg = (struct region){ p, end, wire_end };
	return gtp_tpdu(w, rg, next);
}

/* GTP' message types (3GPP TS 32.295): echo, version not supported, node alive,
 * redirection, data record transfer. */
static inline int gtp_prime_type(uint8_t t)
{
	return (t >= 1 && t <= 7) || t == 240 || t == 241;
}

/* UDP 3386 carries two protocols told apart by the PT bit: GTP' (PT 0; charging
 * records, a 6-byte header when the low bit of the flags is set, else 20 bytes) and
 * GTP version 0 (PT 1): flags type length(16) sequence(16) flow label(16) SNDCP(8)
 * spare(24) TID(64), 20 bytes, then a T-PDU in G-PDUs (type 255).  Neither is a
 * standard's only user of the port, so a datagram is taken for one of them only when
 * its header fits it exactly (version, type, a length that fills the datagram); any
 * other datagram stays plain UDP rather than being called malformed. */
COLD int walk_gtp3386(struct walk *w, struct region *rg, enum next *next)
{
	uint32_t off = rg->off;
	int r = need(off, 4, rg->end, rg->wire_end, DC_R_TRUNC_GTP, -1);
	if (r)
		return r < 0 ? DC_OK : r;
	uint8_t f = rd_u8(w, off), type = rd_u8(w, off + 1);
	uint32_t len = rd_be16(w, off + 2);
	uint32_t hlen = (!(f & 0x10) && (f & 0x01)) ? 6 : 20;
	if (rg->wire_end - off != hlen + len)
		return DC_OK;
	if (!(f & 0x10)) {
		if (f >> 5 > 2 || !gtp_prime_type(type))
			return DC_OK;
		/* GTP': recognised; the UDP packet stays what it is (no inner packet). */
		*next = N_DONE;
		return enter_tunnel(w, DC_TUN_GTP_PRIME, 0, 0);
	}
	if (f >> 5 != 0 || type != 0xff)
		return DC_OK;
	if (!fits(off, hlen, rg->end))
		return DC_R_TRUNC_GTP;
	trace_len(w, off, T_GTP);
	r = enter_tunnel(w, DC_TUN_GTPV0, 1, rd_be16(w, off + 6));
	if (r)
		return r;
	uint32_t wire_end = off + hlen + len;
	*rg = (struct region){ off + hlen, min32(rg->end, wire_end), wire_end };
	return gtp_tpdu(w, rg, next);
}

/* Teredo (RFC 4380): an optional authentication indicator (00 01, client id length,
 * authentication length, id, value, nonce(8), confirmation(1)), an optional origin
 * indication (00 00, port, address: 8 bytes), then an IPv6 packet (a bubble is one
 * with no payload).  A datagram that is not IPv6 after them is left as UDP. */
COLD int walk_teredo(struct walk *w, struct region *rg, enum next *next)
{
	uint32_t off = rg->off;
	if (!fits(off, 2, rg->wire_end))
		return DC_OK;
	if (!fits(off, 2, rg->end))
		return DC_R_TRUNC_TEREDO;
	uint16_t ind = rd_be16(w, off);
	if (ind == 1) {
		if (!fits(off, 4, rg->end))
			return DC_R_TRUNC_TEREDO;
		uint32_t alen = 13 + (uint32_t)rd_u8(w, off + 2) + rd_u8(w, off + 3);
		if (!fits(off, alen + 2, rg->end))
			return DC_R_TRUNC_TEREDO;
		off += alen;
		ind = rd_be16(w, off);
	}
	if (ind == 0) {
		if (!fits(off, 8, rg->end))
			return DC_R_TRUNC_TEREDO;
		off += 8;
	}
	if (!fits(off, 1, rg->end))
		return DC_R_TRUNC_TEREDO;
	if (rd_u8(w, off) >> 4 != 6)
		return DC_OK;
	int r = enter_tunnel(w, DC_TUN_TEREDO, 0, 0);
	if (r)
		return r;
	rg->off = off;
	*next = N_IP6;
	return DC_OK;
}

/* AYIYA (draft-massar-v6ops-ayiya): id length(4, log2) id type(4) | signature
 * length(4, words) hash(4) | auth(4) opcode(4) | next header | epoch(32) | id |
 * signature | payload.  Only "forward" (opcode 1) carries IPv4 or IPv6. */
COLD int walk_ayiya(struct walk *w, struct region *rg, enum next *next)
{
	uint32_t off = rg->off;
	if (!fits(off, 8, rg->wire_end))
		return DC_OK;
	if (!fits(off, 8, rg->end))
		return DC_R_TRUNC_AYIYA;
	uint32_t hlen = 8 + (1u << (rd_u8(w, off) >> 4)) + (uint32_t)(rd_u8(w, off + 1) >> 4) * 4;
	uint8_t nh = rd_u8(w, off + 3);
	if ((rd_u8(w, off + 2) & 0x0f) != 1 || (nh != 4 && nh != 41))
		return DC_OK;
	if (!fits(off, hlen, rg->end))
		return DC_R_TRUNC_AYIYA;
	int r = enter_tunnel(w, DC_TUN_AYIYA, 0, 0);
	if (r)
		return r;
	rg->off = off + hlen;
	*next = nh == 4 ? N_IP4 : N_IP6;
	return DC_OK;
}

/* CAPWAP data channel (RFC 5415): preamble version(4)=0 type(4) (1 = DTLS: not
 * opened) | HLEN(5, words) RID(5) WBID(5) T F L W M K flags(3) | fragment id(16) |
 * offset(13) rsvd(3) | radio MAC, wireless info (within HLEN).  T: a native frame of
 * binding WBID (1 = 802.11) follows, else an 802.3 frame.  Fragments and
 * keep-alives are not opened. */
COLD int walk_capwap(struct walk *w, struct region *rg, enum next *next)
{
	uint32_t off = rg->off;
	if (!fits(off, 8, rg->wire_end))
		return DC_OK;
	if (!fits(off, 8, rg->end))
		return DC_R_TRUNC_CAPWAP;
	uint32_t h = rd_be32(w, off);
	if (h >> 24 != 0)
		return DC_OK;
	uint32_t hlen = ((h >> 19) & 0x1f) * 4;
	if (hlen < 8)
		return DC_R_CAPWAP_HLEN;
	int r = need(off, hlen, rg->end, rg->wire_end, DC_R_TRUNC_CAPWAP, DC_R_CAPWAP_HLEN);
	if (r)
		return r;
	if (h & (0x80 | 0x08)) /* F, K */
		return DC_OK;
	enum next n = N_ETH;
	if (h & 0x100) {
		if (((h >> 9) & 0x1f) != 1)
			return DC_UNSUPPORTED;
		n = N_WLAN_SWAPPED;
	}
	r = enter_tunnel(w, DC_TUN_CAPWAP, 0, 0);
	if (r)
		return r;
	rg->off = off + hlen;
	*next = n;
	return DC_OK;
}

/* PPTP's enhanced GRE (RFC 2637): version 1, key always present (payload length +
 * call id), optional sequence and acknowledgment numbers, PPP inside.  A packet
 * with only an acknowledgment carries no payload. */
static inline int walk_pptp_gre(struct walk *w, struct region *rg, uint16_t flags,
				uint16_t proto, enum next *next)
{
	if (proto != 0x880B || !(flags & 0x2000))
		return DC_OK; /* not PPTP: left as a plain GRE packet */
	uint32_t hlen = 8 + ((flags & 0x1000) ? 4 : 0) + ((flags & 0x0080) ? 4 : 0);
	if (!fits(rg->off, hlen, rg->end))
		return DC_R_TRUNC_GRE;
	uint16_t call_id = rd_be16(w, rg->off + 6);
	uint16_t plen = rd_be16(w, rg->off + 4);
	if (plen == 0)
		return DC_OK;
	trace_len(w, rg->off, T_PPTP);
	struct region in = { rg->off + hlen, rg->end, rg->wire_end };
	enum next n = N_DONE;
	/* The PPP frame is checked before counting the tunnel: LCP/CCP control frames
	 * are PPTP's own traffic, not a tunnelled packet. */
	int r = walk_ppp(w, &in, DC_R_TRUNC_GRE, &n);
	if (r == DC_NOT_IP)
		return DC_OK;
	if (r)
		return r;
	r = enter_tunnel(w, DC_TUN_GRE, 1, call_id);
	if (r)
		return r;
	*rg = in;
	*next = n;
	return DC_OK;
}

/* Aruba's GRE protocols for 802.11 frames: 0x8200..0x8370 in steps of 0x10 (those
 * Wireshark hands to its 802.11 dissector). */
static inline int aruba_proto(uint16_t proto)
{
	return proto >= 0x8200 && proto <= 0x8370 && !(proto & 0x0f);
}

/* GRE (RFC 2784/2890): C R K S flags, version 0, protocol; optional checksum+reserved,
 * key, sequence number.  Version 1 is PPTP's enhanced GRE, handled above.  `udp`:
 * the GRE header is the payload of GRE-in-UDP (RFC 8086). */
COLD int walk_gre(struct walk *w, struct region *rg, int udp, enum next *next)
{
	if (!fits(rg->off, 4, rg->end))
		return DC_R_TRUNC_GRE;
	uint16_t flags = rd_be16(w, rg->off);
	uint16_t proto = rd_be16(w, rg->off + 2);
	unsigned ver = flags & 7;
	if (ver == 1)
		return walk_pptp_gre(w, rg, flags, proto, next);
	if (ver != 0)
		return DC_R_GRE_VERSION;
	/* The R bit (RFC 1701 source routing) brings a variable SRE list: not decoded. */
	if (flags & 0x4000)
		return DC_OK;
	uint32_t hlen = 4;
	uint32_t key = 0;
	int has_key = 0;
	if (flags & 0x8000)
		hlen += 4;
	if (flags & 0x2000) {
		has_key = 1;
		hlen += 4;
	}
	int has_seq = (flags & 0x1000) != 0;
	if (has_seq)
		hlen += 4;
	if (!fits(rg->off, hlen, rg->end))
		return DC_R_TRUNC_GRE;
	if (has_key)
		key = rd_be32(w, rg->off + ((flags & 0x8000) ? 8 : 4));
	uint32_t off = rg->off + hlen;
	enum next n;
	enum dc_tunnel type = udp ? DC_TUN_GRE_UDP : DC_TUN_GRE;
	switch (proto) {
	case ETH_IPV4: n = N_IP4; break;
	case ETH_IPV6: n = N_IP6; break;
	case ETH_TEB: n = N_ETH; break;
	case ETH_MPLS:
	case ETH_MPLS_MC: n = N_MPLS; break;
	case ETH_NSH: n = N_NSH; break;
	case ETH_ERSPAN2:
		type = DC_TUN_ERSPAN;
		n = N_ETH;
		/* ERSPAN type I has no header of its own and no GRE sequence number;
		 * type II has both: ver(4)=1 vlan(12) | cos(3) en(2) t(1) session(10) | rsvd, index. */
		if (has_seq) {
			if (!fits(off, 8, rg->end))
				return DC_R_TRUNC_ERSPAN;
			uint16_t w0 = rd_be16(w, off);
			if (w0 >> 12 != 1)
				return DC_R_ERSPAN_VERSION;
			has_key = 1;
			key = rd_be16(w, off + 2) & 0x3ff;
			off += 8;
		}
		break;
	case ETH_ERSPAN3: {
		type = DC_TUN_ERSPAN;
		/* ver(4)=2 vlan(12) | cos bso t session(10) | timestamp(32) |
		 * sgt(16) p ft(5) hwid(6) d gra(2) o — o: an 8-byte platform subheader follows. */
		if (!fits(off, 12, rg->end))
			return DC_R_TRUNC_ERSPAN;
		if (rd_u8(w, off) >> 4 != 2)
			return DC_R_ERSPAN_VERSION;
		has_key = 1;
		key = rd_be16(w, off + 2) & 0x3ff;
		unsigned ft = (rd_u8(w, off + 10) >> 2) & 0x1f;
		int o = rd_u8(w, off + 11) & 1;
		off += 12;
		if (o) {
			if (!fits(off, 8, rg->end))
				return DC_R_TRUNC_ERSPAN;
			off += 8;
		}
		if (ft == 0)
			n = N_ETH;
		else if (ft == 2)
			n = N_IPANY;
		else
			return DC_UNSUPPORTED;
		break;
	}
	case ETH_WCCP:
		/* WCCP v1 puts the IPv4 packet right after GRE; v2 a 4-byte redirect
		 * header first: flags(1) service id(1) alternative and primary bucket.
		 * Told apart as Wireshark does: by the first nibble. */
		type = DC_TUN_WCCP;
		if (!fits(off, 1, rg->end))
			return DC_R_TRUNC_WCCP;
		if (rd_u8(w, off) >> 4 == 4) {
			n = N_IP4;
			break;
		}
		if (!fits(off, 4, rg->end))
			return DC_R_TRUNC_WCCP;
		has_key = 1;
		key = rd_u8(w, off + 1);
		off += 4;
		n = N_IPANY;
		break;
	case ETH_CMD: {
		struct region in = { off, rg->end, rg->wire_end };
		int r = walk_ethertype(w, proto, &in, 0, &n);
		if (r)
			return r;
		off = in.off;
		break;
	}
	default:
		if (!aruba_proto(proto))
			return DC_OK; /* PPP, NHRP, keepalives, ...: a GRE packet not opened */
		n = N_WLAN;
		break;
	}
	int r = enter_tunnel(w, type, has_key, key);
	if (r)
		return r;
	rg->off = off;
	*next = n;
	return DC_OK;
}

/* UDP ports with a tunnel behind them besides the configured VXLAN/Geneve ones.
 * Destination ports first; the protocols whose servers answer from their
 * well-known port are also matched by source port. */
COLD int walk_udp_tunnel(struct walk *w, struct region *in, uint16_t sport,
				  uint16_t dport, enum next *next)
{
	switch (dport) {
	case 2152: return walk_gtpu(w, in, next);
	case 4790: return walk_vxlan_gpe(w, in, next);
	case 4754: return walk_gre(w, in, 1, next);
	case 6635: *next = N_MPLS_TUN; return DC_OK;
	case 3386: return walk_gtp3386(w, in, next);
	case 3544: return walk_teredo(w, in, next);
	case 5072: return walk_ayiya(w, in, next);
	case 5247: return walk_capwap(w, in, next);
	default: break;
	}
	switch (sport) {
	case 3386: return walk_gtp3386(w, in, next);
	case 3544: return walk_teredo(w, in, next);
	case 5072: return walk_ayiya(w, in, next);
	case 5247: return walk_capwap(w, in, next);
	default: return DC_OK;
	}
}

/* The L4 header of an IP datagram whose payload is `rg` (bounded by the IP length).
 * Fills ports/flags/payload of the innermost tuple; may enter a tunnel and set *next. */
HOT int walk_l4(struct walk *w, uint8_t proto, struct region *rg, int family,
			  int later_fragment, enum next *next)
{
	struct dc_packet *out = w->out;
	struct dc_tuple *t = &out->inner;
	uint32_t off = rg->off;
	uint32_t wire_len = rg->wire_end - off; /* IP payload on the wire */
	uint32_t hlen = 0;
	uint32_t payload_wire;

	*next = N_DONE;
	if (later_fragment) {
		out->payload_off = off;
		out->payload_wire = wire_len;
		out->payload_len = rg->end - off;
		return DC_OK;
	}
	out->l4_off = off;
	switch (proto) {
	case 6: { /* TCP */
		if (!fits(off, 20, rg->end))
			return DC_R_TRUNC_TCP;
		t->sport = rd_be16(w, off);
		t->dport = rd_be16(w, off + 2);
		out->tcp_seq = rd_be32(w, off + 4);
		out->tcp_ack = rd_be32(w, off + 8);
		hlen = (uint32_t)(rd_u8(w, off + 12) >> 4) * 4;
		out->tcp_flags = rd_u8(w, off + 13);
		out->tcp_win = rd_be16(w, off + 14);
		if (hlen < 20 || hlen > wire_len)
			return DC_R_TCP_OFFSET;
		if (!fits(off, hlen, rg->end))
			return DC_R_TRUNC_TCP;
		out->tcp_optlen = (uint8_t)(hlen - 20);
		payload_wire = wire_len - hlen;
		break;
	}
	case 17: { /* UDP */
		if (!fits(off, 8, rg->end))
			return DC_R_TRUNC_UDP;
		t->sport = rd_be16(w, off);
		t->dport = rd_be16(w, off + 2);
		uint32_t ulen = rd_be16(w, off + 4);
		hlen = 8;
		/* A first fragment's UDP length covers the whole datagram, which is longer
		 * than this fragment: only unfragmented datagrams can be checked. */
		if (out->frag == DC_FRAG_NONE) {
			if (ulen < 8 || ulen > wire_len)
				return DC_R_UDP_LEN;
			trace_len(w, off, T_UDP);
			payload_wire = ulen - 8;
			rg->wire_end = off + ulen;
			rg->end = min32(rg->end, rg->wire_end);
		} else {
			payload_wire = wire_len - 8;
		}
		break;
	}
	case 1:  /* ICMP */
	case 58: /* ICMPv6 */
		/* type(1) code(1) checksum(2) rest-of-header(4) */
		if (!fits(off, 8, rg->end))
			return DC_R_TRUNC_ICMP;
		t->sport = rd_u8(w, off);
		t->dport = rd_u8(w, off + 1);
		hlen = 8;
		payload_wire = wire_len - 8; /* end <= wire_end, so wire_len >= 8 here */
		break;
	case 132: /* SCTP common header: sport dport vtag checksum */
		if (!fits(off, 12, rg->end))
			return DC_R_TRUNC_SCTP;
		t->sport = rd_be16(w, off);
		t->dport = rd_be16(w, off + 2);
		hlen = 12;
		payload_wire = wire_len - 12;
		break;
	default:
		/* No L4 header we know of: the IP payload is the payload. */
		out->l4_off = 0;
		payload_wire = wire_len;
		break;
	}
	out->payload_off = off + hlen;
	out->payload_wire = payload_wire;
	out->payload_len = min32(payload_wire, rg->end - (off + hlen));

	if (!w->cfg->decap || out->frag != DC_FRAG_NONE)
		return DC_OK;
	/* Tunnels: the inner packet is the payload region. */
	struct region in = { off + hlen, rg->end, rg->wire_end };
	int r;
	switch (proto) {
	case 17:
		if (vxlan_port(w->cfg, t->dport))
			r = walk_vxlan(w, &in, next);
		else if (w->cfg->geneve_port && t->dport == w->cfg->geneve_port)
			r = walk_geneve(w, &in, next);
		else
			r = walk_udp_tunnel(w, &in, t->sport, t->dport, next);
		break;
	case 47:
		r = walk_gre(w, &in, 0, next);
		break;
	case 4:
		r = enter_tunnel(w, family == 4 ? DC_TUN_IPIP : DC_TUN_4IN6, 0, 0);
		*next = r ? N_DONE : N_IP4;
		break;
	case 41:
		r = enter_tunnel(w, family == 4 ? DC_TUN_6IN4 : DC_TUN_6IN6, 0, 0);
		*next = r ? N_DONE : N_IP6;
		break;
	case 137: /* MPLS in IP (RFC 4023) */
		*next = N_MPLS_TUN;
		r = DC_OK;
		break;
	default:
		return DC_OK;
	}
	if (r)
		*next = N_DONE;
	*rg = in;
	return r;
}

/* Called when an IP header has passed its checks: the tuple filled so far (the
 * carrier) becomes the outer one the first time, and per-packet innermost state
 * starts afresh. */
HOT void begin_ip(struct walk *w, uint32_t off)
{
	struct dc_packet *out = w->out;
	if (++w->ip_layers == 2)
		out->outer = out->inner;
	out->frag = DC_FRAG_NONE;
	out->ip_id = 0;
	out->l4_off = 0;
	out->payload_off = out->payload_len = out->payload_wire = 0;
	out->inner.sport = out->inner.dport = 0;
	if (w->trace && w->trace->nip < TRACE_MAX)
		w->trace->ip_off[w->trace->nip++] = off;
}

HOT int walk_ipv4(struct walk *w, struct region *rg, enum next *next)
{
	struct dc_packet *out = w->out;
	uint32_t off = rg->off;

	if (!fits(off, 1, rg->end))
		return DC_R_TRUNC_IPV4;
	uint8_t vihl = rd_u8(w, off);
	if (vihl >> 4 != 4)
		return DC_R_IPV4_VERSION;
	if (!fits(off, 20, rg->end))
		return DC_R_TRUNC_IPV4;
	uint32_t hlen = (uint32_t)(vihl & 0x0f) * 4;
	if (hlen < 20)
		return DC_R_BAD_IHL;
	if (!fits(off, hlen, rg->end))
		return DC_R_TRUNC_IPV4;
	uint32_t tl = rd_be16(w, off + 2);
	uint32_t wire_left = rg->wire_end - off;
	/* Segmentation offload (BIG TCP, GSO on veths) hands captures packets longer
	 * than 64 KiB with total length 0; Linux then takes the length from the
	 * packet (iph_totlen()), and so do we (Wireshark too). */
	if (tl == 0)
		tl = wire_left;
	else
		trace_len(w, off, T_IPV4);
	if (tl < hlen || tl > wire_left)
		return DC_R_IPV4_LEN;

	begin_ip(w, off);
	struct dc_tuple *t = &out->inner;
	uint16_t fragw = rd_be16(w, off + 6);
	t->family = 4;
	t->proto = rd_u8(w, off + 9);
	memset(t->src, 0, sizeof t->src);
	memset(t->dst, 0, sizeof t->dst);
	rd_bytes(w, off + 12, t->src, 4);
	rd_bytes(w, off + 16, t->dst, 4);
	out->ttl = rd_u8(w, off + 8);
	out->ip_id = rd_be16(w, off + 4);
	out->ip_optlen = (uint8_t)(hlen - 20);
	out->l3_off = off;
	out->l3_len = min32(tl, rg->end - off);
	int later = (fragw & 0x1fff) != 0;
	if (later)
		out->frag = DC_FRAG_LATER;
	else if (fragw & 0x2000)
		out->frag = DC_FRAG_FIRST;

	struct region pl = { off + hlen, min32(off + tl, rg->end), off + tl };
	int r = walk_l4(w, t->proto, &pl, 4, later, next);
	*rg = pl;
	return r;
}

HOT int ipv6_is_ext(uint8_t nh)
{
	switch (nh) {
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		return 1;
	default:
		return 0;
	}
}

/* Payload length 0 with a Hop-by-Hop header at p: looks for the jumbo payload option
 * (type 0xC2, 4 bytes; RFC 2675).  Returns 0 and *jumbo = 0 when there is none (or
 * the options are not all captured: the extension walk then reports the cut), or a
 * reason when the option is wrong: not 4 bytes, at most 65535 (it must not be used
 * then), or longer than the wire.  Linux refuses the same. */
COLD int ipv6_jumbo(struct walk *w, uint32_t p, uint32_t end, uint32_t wire_left,
			     uint32_t *jumbo)
{
	*jumbo = 0;
	if (!fits(p, 2, end))
		return DC_OK;
	uint32_t hend = p + ((uint32_t)rd_u8(w, p + 1) + 1) * 8;
	if (hend > end)
		return DC_OK;
	/* TLVs: Pad1 is one byte, every other option type(1) length(1) data.  Each
	 * step moves on, and hend - p <= 2048: bounded. */
	for (uint32_t o = p + 2; o < hend;) {
		uint8_t type = rd_u8(w, o);
		if (type == 0) {
			o++;
			continue;
		}
		if (!fits(o, 2, hend))
			return DC_OK;
		uint32_t l = rd_u8(w, o + 1);
		if (!fits(o + 2, l, hend))
			return DC_OK;
		if (type == 0xc2) {
			if (l != 4)
				return DC_R_IPV6_JUMBO;
			uint32_t v = rd_be32(w, o + 2);
			if (v <= 65535 || v > wire_left)
				return DC_R_IPV6_JUMBO;
			trace_len(w, o + 2, T_JUMBO);
			*jumbo = v;
			return DC_OK;
		}
		o += 2 + l;
	}
	return DC_OK;
}

HOT int walk_ipv6(struct walk *w, struct region *rg, enum next *next)
{
	struct dc_packet *out = w->out;
	uint32_t off = rg->off;

	if (!fits(off, 1, rg->end))
		return DC_R_TRUNC_IPV6;
	if (rd_u8(w, off) >> 4 != 6)
		return DC_R_IPV6_VERSION;
	if (!fits(off, 40, rg->end))
		return DC_R_TRUNC_IPV6;
	uint32_t plen = rd_be16(w, off + 4);
	uint32_t wire_left = rg->wire_end - off - 40; /* end <= wire_end: no wrap */
	uint8_t nh = rd_u8(w, off + 6);
	if (plen != 0) {
		trace_len(w, off, T_IPV6);
	} else if (nh != 59) {
		/* Payload length 0: a jumbogram (RFC 2675) when a Hop-by-Hop jumbo option
		 * says how long; otherwise a segmentation-offload capture (BIG TCP
		 * without the option): the frame says how long. */
		uint32_t jumbo = 0;
		if (nh == 0) {
			int r = ipv6_jumbo(w, off + 40, rg->end, wire_left, &jumbo);
			if (r)
				return r;
		}
		plen = jumbo ? jumbo : wire_left;
	}
	if (plen > wire_left)
		return DC_R_TRUNC_IPV6;

	begin_ip(w, off);
	struct dc_tuple *t = &out->inner;
	t->family = 6;
	t->proto = nh;
	rd_bytes(w, off + 8, t->src, 16);
	rd_bytes(w, off + 24, t->dst, 16);
	out->ttl = rd_u8(w, off + 7);
	out->ip_optlen = 0;
	out->l3_off = off;
	out->l3_len = min32(40 + plen, rg->end - off);

	uint32_t ip_end = off + 40 + plen;
	uint32_t cap_end = min32(ip_end, rg->end);
	uint32_t p = off + 40;
	int later = 0;
	for (unsigned n = 0; ipv6_is_ext(nh); n++) {
		if (n == DC_IPV6_EXT_CAP)
			return DC_R_IPV6_EXT_DEPTH;
		if (!fits(p, 8, cap_end))
			return DC_R_TRUNC_IPV6_EXT;
		uint32_t len;
		if (nh == 44) {
			uint16_t offflags = rd_be16(w, p + 2);
			out->ip_id = rd_be32(w, p + 4);
			len = 8;
			if (offflags >> 3)
				later = 1;
			out->frag = later ? DC_FRAG_LATER : ((offflags & 1) ? DC_FRAG_FIRST : DC_FRAG_NONE);
		} else if (nh == 51) {
			len = ((uint32_t)rd_u8(w, p + 1) + 2) * 4;
		} else {
			len = ((uint32_t)rd_u8(w, p + 1) + 1) * 8;
		}
		if (!fits(p, len, cap_end))
			return DC_R_TRUNC_IPV6_EXT;
		nh = rd_u8(w, p);
		p += len;
		t->proto = nh;
		if (later)
			break;
	}
	uint32_t extlen = p - (off + 40);
	out->ip_optlen = (uint8_t)(extlen > 255 ? 255 : extlen);

	struct region pl = { p, cap_end, ip_end };
	int r = walk_l4(w, nh, &pl, 6, later, next);
	*rg = pl;
	return r;
}

/* The whole walk.  Always inlined into its two callers so that dc_decode()'s copy
 * is compiled with trace == NULL and keeps none of the recording. */
static inline __attribute__((always_inline)) int
decode_walk(const struct dc_config *cfg, int linktype, const uint8_t *frame,
	    uint32_t caplen, uint32_t wirelen, struct dc_packet *out, struct trace *trace)
{
	/* A copy from a zero struct: GCC turns a plain memset of this size into
	 * `rep stos`, whose start-up cost was a third of the whole decode. */
	static const struct dc_packet zero;
	*out = zero;
	out->caplen = caplen;
	out->wirelen = wirelen;
	out->linktype = (uint16_t)linktype;

	struct walk w = { cfg, frame, caplen, out, 0, trace };
	/* A wire length below the captured length is a broken file; trust caplen. */
	struct region rg = { 0, caplen, wirelen > caplen ? wirelen : caplen };
	enum next next = N_DONE;
	int r = walk_link(&w, linktype, &rg, &next);

	for (unsigned layers = 0; r == DC_OK && next != N_DONE; layers++) {
		if (layers == DC_LAYER_CAP) {
			r = DC_R_LAYER_DEPTH;
			break;
		}
		enum next cur = next;
		next = N_DONE;
		if (cur == N_IPANY) {
			/* Raw IP: the version nibble says which. */
			uint8_t v = fits(rg.off, 1, rg.end) ? rd_u8(&w, rg.off) >> 4 : 0;
			if (!fits(rg.off, 1, rg.end))
				r = DC_R_TRUNC_IPV4;
			else if (v == 6)
				cur = N_IP6;
			else if (v == 4)
				cur = N_IP4;
			else
				r = DC_R_IPV4_VERSION;
			if (r)
				break;
		}
		switch (cur) {
		case N_ETH:
			r = walk_ethernet(&w, &rg, 0, &next);
			break;
		case N_IP4:
			r = walk_ipv4(&w, &rg, &next);
			break;
		case N_IP6:
			r = walk_ipv6(&w, &rg, &next);
			break;
		case N_MPLS:
		case N_MPLS_TUN:
			r = walk_mpls(&w, &rg, cur == N_MPLS_TUN, &next);
			break;
		case N_NSH:
			r = walk_nsh(&w, &rg, &next);
			break;
		case N_WLAN:
		case N_WLAN_SWAPPED:
			r = walk_wlan(&w, &rg, 0, cur == N_WLAN_SWAPPED, &next);
			break;
		default:
			break;
		}
	}
	if (w.ip_layers < 2)
		out->outer = out->inner;
	out->reason = (uint8_t)r;
	return r;
}

int dc_decode(const struct dc_config *cfg, int linktype, const uint8_t *frame,
	      uint32_t caplen, uint32_t wirelen, struct dc_packet *out)
{
	return decode_walk(cfg, linktype, frame, caplen, wirelen, out, NULL);
}

/* ---- reassembly support (cold) ---- */

static int add16(uint8_t *f, uint32_t off, int32_t delta)
{
	int64_t v = (int64_t)((uint32_t)f[off] << 8 | f[off + 1]) + delta;
	if (v < 0 || v > 0xffff)
		return -EOVERFLOW;
	f[off] = (uint8_t)(v >> 8);
	f[off + 1] = (uint8_t)v;
	return 0;
}

static void ipv4_checksum(uint8_t *h, uint32_t hlen)
{
	uint32_t sum = 0;
	h[10] = h[11] = 0;
	for (uint32_t i = 0; i + 1 < hlen; i += 2)
		sum += (uint32_t)h[i] << 8 | h[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	h[10] = (uint8_t)(sum >> 8);
	h[11] = (uint8_t)sum;
}

int dc_resize_enclosing(const struct dc_config *cfg, int linktype, const uint8_t *orig,
			uint32_t orig_caplen, uint32_t orig_wirelen, uint8_t *dst,
			uint32_t l3_off, int32_t delta)
{
	struct trace t;
	struct dc_packet p;
	t.n = t.nip = 0;
	decode_walk(cfg, linktype, orig, orig_caplen, orig_wirelen, &p, &t);
	/* The walk must have reached an IP header at l3_off: then every length field
	 * recorded before it belongs to a header that encloses it. */
	unsigned i;
	for (i = 0; i < t.nip && t.ip_off[i] != l3_off; i++)
		;
	if (i == t.nip)
		return -EINVAL;
	for (i = 0; i < t.n; i++) {
		uint32_t off = t.off[i];
		if (off >= l3_off)
			continue;
		int rc = 0;
		switch (t.kind[i]) {
		case T_IPV4: {
			/* fields at off+2 (length) and off+10 (checksum) are inside the
			 * header, which the walk checked lies before l3_off */
			uint32_t hlen = (uint32_t)(dst[off] & 0x0f) * 4;
			if ((rc = add16(dst, off + 2, delta)) == 0)
				ipv4_checksum(dst + off, hlen);
			break;
		}
		case T_IPV6:
			rc = add16(dst, off + 4, delta);
			break;
		case T_JUMBO: {
			int64_t v = (int64_t)((uint32_t)dst[off] << 24 | (uint32_t)dst[off + 1] << 16 |
					      (uint32_t)dst[off + 2] << 8 | dst[off + 3]) + delta;
			if (v <= 0xffff || v > 0xffffffffLL) {
				rc = -EOVERFLOW;
				break;
			}
			dst[off] = (uint8_t)(v >> 24);
			dst[off + 1] = (uint8_t)(v >> 16);
			dst[off + 2] = (uint8_t)(v >> 8);
			dst[off + 3] = (uint8_t)v;
			break;
		}
		case T_UDP:
			/* The checksum would need the whole datagram; 0 says "none" (for
			 * IPv6 tunnels RFC 6935 allows it too). */
			if ((rc = add16(dst, off + 4, delta)) == 0)
				dst[off + 6] = dst[off + 7] = 0;
			break;
		case T_GTP:
		case T_PPTP:
			rc = add16(dst, off + 2 + (t.kind[i] == T_PPTP ? 2 : 0), delta);
			break;
		case T_PPPOE:
			rc = add16(dst, off + 4, delta);
			break;
		default:
			break;
		}
		if (rc)
			return rc;
	}
	return 0;
}
