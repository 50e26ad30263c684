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
 */
#include <string.h>

#include "decode.h"

/* ---- bounds-checked big-endian readers (one family, like tcpdump's GET_BE_U_2) ---- */

struct walk {
	const struct dc_config *cfg;
	const uint8_t *p;
	uint32_t caplen;
	struct dc_packet *out;
	unsigned ip_layers; /* IP headers accepted so far */
};

/* Does [off, off+n) fit before end?  Written so that it cannot overflow. */
static inline int fits(uint32_t off, uint32_t n, uint32_t end)
{
	return off <= end && n <= end - off;
}

static inline uint8_t rd_u8(const struct walk *w, uint32_t off)
{
	return off < w->caplen ? w->p[off] : 0;
}

static inline uint16_t rd_be16(const struct walk *w, uint32_t off)
{
	if (!fits(off, 2, w->caplen))
		return 0;
	return (uint16_t)(w->p[off] << 8 | w->p[off + 1]);
}

static inline uint32_t rd_be32(const struct walk *w, uint32_t off)
{
	if (!fits(off, 4, w->caplen))
		return 0;
	return (uint32_t)w->p[off] << 24 | (uint32_t)w->p[off + 1] << 16 |
	       (uint32_t)w->p[off + 2] << 8 | w->p[off + 3];
}

/* Little-endian: only PPI's header uses it. */
static inline uint32_t rd_le32(const struct walk *w, uint32_t off)
{
	if (!fits(off, 4, w->caplen))
		return 0;
	return (uint32_t)w->p[off + 3] << 24 | (uint32_t)w->p[off + 2] << 16 |
	       (uint32_t)w->p[off + 1] << 8 | w->p[off];
}

static inline uint16_t rd_le16(const struct walk *w, uint32_t off)
{
	if (!fits(off, 2, w->caplen))
		return 0;
	return (uint16_t)(w->p[off + 1] << 8 | w->p[off]);
}

static inline void rd_bytes(const struct walk *w, uint32_t off, uint8_t *dst, uint32_t n)
{
	if (fits(off, n, w->caplen))
		memcpy(dst, w->p + off, n);
}

static inline uint32_t min32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* ---- the walk ---- */

enum next { N_DONE, N_ETH, N_IP4, N_IP6, N_IPANY };

struct region {
	uint32_t off;      /* start of the next header */
	uint32_t end;      /* captured end of the region (<= caplen) */
	uint32_t wire_end; /* end of the region on the wire (>= end) */
};

#define ETH_IPV4 0x0800
#define ETH_IPV6 0x86DD
#define ETH_VLAN 0x8100
#define ETH_QINQ 0x88A8
#define ETH_QINQ_OLD 0x9100
#define ETH_MPLS 0x8847
#define ETH_MPLS_MC 0x8848
#define ETH_PPPOE 0x8864
#define ETH_TEB 0x6558
#define ETH_ERSPAN2 0x88BE
#define ETH_ERSPAN3 0x22EB

#define MPLS_DEPTH_CAP 5 /* as DPDK's rte_net_get_ptype */

/* Maps an ethertype (or an ethertype-like protocol field) to the next layer,
 * walking VLAN tags, MPLS labels and a PPPoE session header on the way.  VLAN IDs
 * are recorded only for the outermost link (`record`). */
static inline int walk_ethertype(struct walk *w, uint16_t type, struct region *rg,
				 int record, enum next *next)
{
	struct dc_packet *out = w->out;
	unsigned depth = 0;

	while (type == ETH_VLAN || type == ETH_QINQ || type == ETH_QINQ_OLD) {
		if (++depth > DC_VLAN_DEPTH_CAP)
			return DC_R_VLAN_DEPTH;
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
		/* MPLS does not say what it carries; after the bottom-of-stack label the
		 * IP version nibble does (what every MPLS decoder does). */
		for (unsigned n = 0;; n++) {
			if (n == MPLS_DEPTH_CAP)
				return DC_UNSUPPORTED;
			if (!fits(rg->off, 4, rg->end))
				return DC_R_TRUNC_LINK;
			uint32_t label = rd_be32(w, rg->off);
			rg->off += 4;
			if (label & 0x100)
				break;
		}
		*next = N_IPANY;
		return DC_OK;
	case ETH_PPPOE:
		/* 6-byte PPPoE session header, then a 2-byte PPP protocol. */
		if (!fits(rg->off, 8, rg->end))
			return DC_R_TRUNC_LINK;
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

static inline int walk_ethernet(struct walk *w, struct region *rg, int record, enum next *next)
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

/* BSD loopback families that mean IP; the value depends on the OS that wrote the
 * capture (IPv6 is 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS, 10 on Linux). */
static inline int null_family(uint32_t af, enum next *next)
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

static int walk_link(struct walk *w, int linktype, struct region *rg, enum next *next)
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
		return walk_ppp(w, rg, DC_R_TRUNC_LINK, next);
	case DC_LINK_PPI: {
		/* Per-Packet Information: version(1) flags(1) length(2 LE) dlt(4 LE), then
		 * length-8 bytes of fields; only an Ethernet frame behind it is decoded. */
		if (!fits(rg->off, 8, rg->end))
			return DC_R_TRUNC_LINK;
		uint32_t len = rd_le16(w, rg->off + 2);
		uint32_t dlt = rd_le32(w, rg->off + 4);
		if (len < 8 || !fits(rg->off, len, rg->end))
			return DC_R_TRUNC_LINK;
		rg->off += len;
		if (dlt != DC_LINK_ETHERNET)
			return DC_UNSUPPORTED;
		return walk_ethernet(w, rg, 1, next);
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
static inline int enter_tunnel(struct walk *w, enum dc_tunnel type, int has_id, uint32_t id)
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

static inline int vxlan_port(const struct dc_config *cfg, uint16_t port)
{
	for (unsigned i = 0; i < DC_MAX_VXLAN_PORTS; i++)
		if (cfg->vxlan_ports[i] == port && port)
			return 1;
	return 0;
}

/* VXLAN (RFC 7348): flags(1) reserved(3) VNI(3) reserved(1), then Ethernet. */
static inline int walk_vxlan(struct walk *w, struct region *rg, enum next *next)
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
static inline int walk_geneve(struct walk *w, struct region *rg, enum next *next)
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

/* GRE (RFC 2784/2890): C R K S flags, version 0, protocol; optional checksum+reserved,
 * key, sequence number.  Version 1 is PPTP's enhanced GRE, handled above. */
static inline int walk_gre(struct walk *w, struct region *rg, enum next *next)
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
	enum dc_tunnel type = DC_TUN_GRE;
	switch (proto) {
	case ETH_IPV4: n = N_IP4; break;
	case ETH_IPV6: n = N_IP6; break;
	case ETH_TEB: n = N_ETH; break;
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
	default:
		/* MPLS, PPP, NSH, ...: a GRE packet we count but do not open. */
		return DC_OK;
	}
	int r = enter_tunnel(w, type, has_key, key);
	if (r)
		return r;
	rg->off = off;
	*next = n;
	return DC_OK;
}

/* The L4 header of an IP datagram whose payload is `rg` (bounded by the IP length).
 * Fills ports/flags/payload of the innermost tuple; may enter a tunnel and set *next. */
static inline int walk_l4(struct walk *w, uint8_t proto, struct region *rg, int family,
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
			return DC_OK;
		break;
	case 47:
		r = walk_gre(w, &in, next);
		break;
	case 4:
		r = enter_tunnel(w, family == 4 ? DC_TUN_IPIP : DC_TUN_4IN6, 0, 0);
		*next = r ? N_DONE : N_IP4;
		break;
	case 41:
		r = enter_tunnel(w, family == 4 ? DC_TUN_6IN4 : DC_TUN_6IN6, 0, 0);
		*next = r ? N_DONE : N_IP6;
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
static inline void begin_ip(struct walk *w)
{
	struct dc_packet *out = w->out;
	if (++w->ip_layers == 2)
		out->outer = out->inner;
	out->frag = DC_FRAG_NONE;
	out->ip_id = 0;
	out->l4_off = 0;
	out->payload_off = out->payload_len = out->payload_wire = 0;
	out->inner.sport = out->inner.dport = 0;
}

static inline int walk_ipv4(struct walk *w, struct region *rg, enum next *next)
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
	/* Segmentation offload hands captures large "packets" with total length 0;
	 * take the frame's length then, as Wireshark does. */
	if (tl == 0)
		tl = wire_left;
	if (tl < hlen || tl > wire_left)
		return DC_R_IPV4_LEN;

	begin_ip(w);
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

static inline int ipv6_is_ext(uint8_t nh)
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

static inline int walk_ipv6(struct walk *w, struct region *rg, enum next *next)
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
	/* Payload length 0 is a jumbogram or a segmentation-offload capture: use
	 * what the frame holds (unless nothing follows: "no next header"). */
	if (plen == 0 && rd_u8(w, off + 6) != 59)
		plen = wire_left;
	if (plen > wire_left)
		return DC_R_TRUNC_IPV6;

	begin_ip(w);
	struct dc_tuple *t = &out->inner;
	uint8_t nh = rd_u8(w, off + 6);
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

int dc_decode(const struct dc_config *cfg, int linktype, const uint8_t *frame,
	      uint32_t caplen, uint32_t wirelen, struct dc_packet *out)
{
	/* A copy from a zero struct: GCC turns a plain memset of this size into
	 * `rep stos`, whose start-up cost was a third of the whole decode. */
	static const struct dc_packet zero;
	*out = zero;
	out->caplen = caplen;
	out->wirelen = wirelen;
	out->linktype = (uint16_t)linktype;

	struct walk w = { cfg, frame, caplen, out, 0 };
	/* A wire length below the captured length is a broken file; trust caplen. */
	struct region rg = { 0, caplen, wirelen > caplen ? wirelen : caplen };
	enum next next = N_DONE;
	int r = walk_link(&w, linktype, &rg, &next);

	while (r == DC_OK && next != N_DONE) {
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
		default:
			break;
		}
	}
	if (w.ip_layers < 2)
		out->outer = out->inner;
	out->reason = (uint8_t)r;
	return r;
}
