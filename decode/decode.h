/* decode — turns one captured frame into what it really is.
 *
 * Pure code: no allocation, no I/O, no dependency outside libc; safe to call from
 * any thread.  The caller owns the frame bytes and the dc_packet; dc_decode() only
 * reads frame[0 .. caplen) and only writes *out.  Offsets in dc_packet point into
 * the caller's frame and are valid as long as the frame is.
 *
 * A frame is walked from its link layer down: VLAN tags → IP → L4 → and, where the
 * L4/L3 says so, a tunnel whose inner packet is decoded again (nesting capped by
 * dc_config.max_tunnel_depth).  The first (outermost) IP tuple and the last
 * (innermost) one are kept; for an untunnelled packet they are the same.
 *
 * Malformed input never aborts decoding silently: dc_packet.reason names the first
 * problem (dc_reason_name() gives the stable text, e.g. "truncated-ipv4"), and the
 * fields decoded before it stay filled in so callers can still attribute the packet.
 * Callers count reasons (dc_counters) and skip malformed packets -- except
 * fragments (frag != DC_FRAG_NONE), which go to reassembly first: a first fragment
 * too short for its L4 header is malformed alone but fine once reassembled.
 *
 * Tunnels (UDP ports are destination ports unless "either" is said):
 *   VXLAN (4789, 8472, configurable), Geneve (6081), VXLAN-GPE (4790; IPv4, IPv6,
 *   Ethernet, NSH or MPLS inside), GTP-U (2152, G-PDUs), GTP v0 / GTP' (3386, either),
 *   GRE in UDP (4754), MPLS in UDP (6635), Teredo (3544, either), AYIYA (5072,
 *   either), CAPWAP data (5247, either); GRE (IP, TEB, ERSPAN, MPLS, NSH, WCCP,
 *   Aruba 802.11, PPTP), IPIP / 6in4 / 4in6 / 6in6, MPLS in IP (137).
 * Tunnel details:
 *  - a tunnel whose header is well formed but whose inner frame carries no IP (ARP
 *    inside VXLAN) gives DC_NOT_IP with tunnel/vni and outer == inner == the carrier;
 *  - GRE version 1 is PPTP (PPP inside; the call id is the vni); GRE with the
 *    routing bit and GRE/Geneve payloads other than the above are not opened: the
 *    packet is a plain GRE/UDP packet.  So are GTP-U messages other than G-PDUs
 *    (echo, error indication, end marker), AYIYA messages other than "forward",
 *    keep-alive, fragmented or DTLS CAPWAP packets;
 *  - GTP' (charging) carries records, not packets: it is recognised (tunnel
 *    DC_TUN_GTP_PRIME, depth 1) and the packet stays the UDP packet it is
 *    (inner == outer);
 *  - fragmented carriers are not opened (the inner packet is incomplete);
 *  - vni is the outermost tunnel identifier present (VXLAN/Geneve/VXLAN-GPE VNI,
 *    GRE key, ERSPAN session id, GTP TEID, MPLS top label, WCCP service id);
 *  - mpls_* describe the outermost MPLS label stack wherever it is (on the link, in
 *    a tunnel); has_nsh/nsh_path the first NSH header.  An MPLS stack on the link
 *    followed by IP is not a tunnel (as VLAN tags are not); one followed by an
 *    Ethernet pseudowire (with or without control word) is DC_TUN_MPLS;
 *  - when an inner header is malformed, or a tunnel would go past max_tunnel_depth
 *    (DC_R_TUNNEL_DEPTH), inner is the last IP tuple that decoded (the carrier),
 *    tunnel/tunnel_depth count the tunnels actually opened.  Whatever the nesting,
 *    a frame is at most DC_LAYER_CAP headers deep (DC_R_LAYER_DEPTH).
 * Besides the link types below, Ethernet frames may carry 802.1Q/802.1ad tags
 * (0x8100, 0x88A8, 0x9100), Cisco MetaData (0x8909), MPLS label stacks, NSH (0x894F)
 * and PPPoE sessions before the IP; 802.11 data frames carry LLC/SNAP.
 *
 * Segmentation offload ("BIG TCP") captures: an IPv4 total length of 0 takes the
 * length from the frame (as Linux does for GSO packets); an IPv6 payload length of
 * 0 takes it from a Hop-by-Hop jumbo option (RFC 2675) when there is one, else from
 * the frame.
 */
#ifndef PODCAP_DECODE_H
#define PODCAP_DECODE_H

#include <stddef.h>
#include <stdint.h>

/* Link types, as pcap/pcapng files number them (LINKTYPE_*), plus the Linux DLT
 * value for raw IP that pcap_datalink() reports in place of LINKTYPE_RAW. */
enum dc_linktype {
	DC_LINK_NULL = 0,       /* BSD loopback: 4-byte AF_ in host byte order */
	DC_LINK_ETHERNET = 1,
	DC_LINK_PPP = 9,
	DC_LINK_RAW_DLT = 12,   /* DLT_RAW on Linux */
	DC_LINK_RAW = 101,      /* LINKTYPE_RAW */
	DC_LINK_C_HDLC = 104,   /* Cisco HDLC: address, control, ethertype */
	DC_LINK_IEEE802_11 = 105, /* 802.11 frames (data frames are decoded) */
	DC_LINK_LOOP = 108,     /* OpenBSD loopback: AF_ in network byte order */
	DC_LINK_LINUX_SLL = 113,
	DC_LINK_RADIOTAP = 127, /* radiotap header, then an 802.11 frame */
	DC_LINK_PPI = 192,      /* Per-Packet Information header, Ethernet or 802.11 behind it */
	DC_LINK_IPV4 = 228,
	DC_LINK_IPV6 = 229,
	DC_LINK_LINUX_SLL2 = 276,
};

enum dc_tunnel {
	DC_TUN_NONE = 0,
	DC_TUN_VXLAN,
	DC_TUN_GENEVE,
	DC_TUN_GRE,       /* GRE carrying IP, Ethernet (TEB), MPLS, NSH or 802.11 (Aruba) */
	DC_TUN_ERSPAN,    /* GRE carrying ERSPAN I/II/III */
	DC_TUN_IPIP,      /* IPv4 in IPv4 */
	DC_TUN_6IN4,      /* IPv6 in IPv4 */
	DC_TUN_4IN6,
	DC_TUN_6IN6,
	/* Values below were added later; the numbers above never change. */
	DC_TUN_GTPU,      /* GTP-U v1 G-PDU (UDP 2152); vni = TEID */
	DC_TUN_GTPV0,     /* GTP v0 G-PDU (UDP 3386); vni = flow label */
	DC_TUN_GTP_PRIME, /* GTP' charging (UDP 3386): recognised, carries no packet */
	DC_TUN_GRE_UDP,   /* GRE in UDP (RFC 8086, UDP 4754); vni = GRE key */
	DC_TUN_MPLS,      /* MPLS in UDP (6635) or IP (137), or an MPLS pseudowire; vni = top label */
	DC_TUN_VXLAN_GPE, /* VXLAN-GPE (UDP 4790); vni = VNI */
	DC_TUN_TEREDO,    /* Teredo (UDP 3544): IPv6 in UDP/IPv4 */
	DC_TUN_AYIYA,     /* AYIYA (UDP 5072) */
	DC_TUN_WCCP,      /* GRE carrying a WCCP redirect; vni = WCCP service id */
	DC_TUN_CAPWAP,    /* CAPWAP data (UDP 5247): 802.11 or 802.3 frames */
	DC_TUN__COUNT
};

/* Result of a decode.  DC_OK and DC_NOT_IP are not errors: DC_NOT_IP is a frame
 * that is well formed but carries no IP (ARP, LLDP, STP, ...).  DC_UNSUPPORTED is a
 * protocol we do not decode (e.g. an unknown link type).  Everything from
 * DC_R_TRUNC_LINK on is malformed input. */
enum dc_reason {
	DC_OK = 0,
	DC_NOT_IP,
	DC_UNSUPPORTED,
	/* malformed from here */
	DC_R_TRUNC_LINK,
	DC_R_TRUNC_VLAN,
	DC_R_VLAN_DEPTH,
	DC_R_TRUNC_IPV4,
	DC_R_IPV4_VERSION,
	DC_R_BAD_IHL,
	DC_R_IPV4_LEN,
	DC_R_TRUNC_IPV6,
	DC_R_IPV6_VERSION,
	DC_R_TRUNC_IPV6_EXT,
	DC_R_IPV6_EXT_DEPTH,
	DC_R_TRUNC_TCP,
	DC_R_TCP_OFFSET,
	DC_R_TRUNC_UDP,
	DC_R_UDP_LEN,
	DC_R_TRUNC_ICMP,
	DC_R_TRUNC_SCTP,
	DC_R_TRUNC_VXLAN,
	DC_R_VXLAN_FLAGS,
	DC_R_TRUNC_GENEVE,
	DC_R_GENEVE_VERSION,
	DC_R_GENEVE_OPTLEN,
	DC_R_TRUNC_GRE,
	DC_R_GRE_VERSION,
	DC_R_TRUNC_ERSPAN,
	DC_R_ERSPAN_VERSION,
	DC_R_TUNNEL_DEPTH,
	/* Reasons below were added later; the numbers above never change. */
	DC_R_TRUNC_GTP,
	DC_R_GTP_VERSION,
	DC_R_GTP_LEN,
	DC_R_GTP_EXT,
	DC_R_TRUNC_MPLS,
	DC_R_MPLS_DEPTH,
	DC_R_TRUNC_VXLAN_GPE,
	DC_R_VXLAN_GPE_FLAGS,
	DC_R_TRUNC_NSH,
	DC_R_NSH_VERSION,
	DC_R_NSH_LEN,
	DC_R_TRUNC_TEREDO,
	DC_R_TRUNC_AYIYA,
	DC_R_TRUNC_WCCP,
	DC_R_TRUNC_CMD,
	DC_R_TRUNC_WLAN,
	DC_R_TRUNC_CAPWAP,
	DC_R_CAPWAP_HLEN,
	DC_R_IPV6_JUMBO,
	DC_R_LAYER_DEPTH,
	DC_R__COUNT
};

#define DC_FIRST_MALFORMED DC_R_TRUNC_LINK

/* Fragment state of the packet's innermost IP header. */
enum dc_frag {
	DC_FRAG_NONE = 0,
	DC_FRAG_FIRST, /* offset 0, more fragments: L4 header (ports) present */
	DC_FRAG_LATER  /* offset > 0: no L4 header, ports are 0 */
};

/* TCP flag bits as on the wire (low byte) plus ECE/CWR. */
enum {
	DC_TCP_FIN = 0x01, DC_TCP_SYN = 0x02, DC_TCP_RST = 0x04, DC_TCP_PSH = 0x08,
	DC_TCP_ACK = 0x10, DC_TCP_URG = 0x20, DC_TCP_ECE = 0x40, DC_TCP_CWR = 0x80,
};

/* One IP-level tuple.  Addresses are in network byte order (IPv4 in the first 4
 * bytes, rest zero); ports in host order.  For ICMP/ICMPv6, sport = type and
 * dport = code (as nDPI and Community ID do); for other protocols without ports
 * both are 0. */
struct dc_tuple {
	uint8_t family;   /* 4, 6, or 0 when absent */
	uint8_t proto;    /* IPPROTO_* of the L4 header */
	uint16_t sport, dport;
	uint8_t src[16], dst[16];
};

#define DC_MAX_VLANS 2 /* tags kept; deeper stacks are walked up to DC_VLAN_DEPTH_CAP */
#define DC_VLAN_DEPTH_CAP 4
#define DC_IPV6_EXT_CAP 8
#define DC_MAX_VXLAN_PORTS 8
#define DC_MPLS_DEPTH_CAP 8   /* labels in one stack (DC_R_MPLS_DEPTH beyond) */
#define DC_GTP_EXT_CAP 8      /* GTP-U extension headers (DC_R_GTP_EXT beyond) */
#define DC_LAYER_CAP 64       /* headers walked in one frame (DC_R_LAYER_DEPTH beyond) */

struct dc_config {
	uint16_t vxlan_ports[DC_MAX_VXLAN_PORTS]; /* 0 = unused slot */
	uint16_t geneve_port;                      /* 0 = off */
	uint8_t max_tunnel_depth;                  /* nested tunnels decapsulated */
	uint8_t decap;                             /* 0: do not look into tunnels */
};

/* Defaults: VXLAN on 4789 and 8472, Geneve on 6081, tunnel depth 3, decap on. */
void dc_config_default(struct dc_config *cfg);
/* Adds a VXLAN port; returns 0, or -ENOSPC when all slots are taken. */
int dc_config_add_vxlan_port(struct dc_config *cfg, uint16_t port);

struct dc_packet {
	uint32_t caplen, wirelen;
	uint16_t linktype;
	uint8_t reason;        /* enum dc_reason */
	uint8_t frag;          /* enum dc_frag, innermost IP */

	uint16_t vlan[DC_MAX_VLANS]; /* outermost link's VLAN IDs (12 bits) */
	uint8_t vlan_depth;          /* tags seen on the outermost link */

	uint8_t tunnel;        /* enum dc_tunnel of the outermost tunnel, or NONE */
	uint8_t tunnel_depth;  /* number of tunnels decapsulated */
	uint8_t has_vni;       /* vni is a VXLAN/Geneve VNI, GRE key or ERSPAN session */
	uint32_t vni;

	struct dc_tuple outer; /* outermost IP tuple (the carrier when tunnelled) */
	struct dc_tuple inner; /* innermost IP tuple; == outer when not tunnelled */

	/* Innermost IP header: offset into the frame and length available for DPI
	 * (the IP datagram as captured: min(IP total length, captured bytes)). */
	uint32_t l3_off, l3_len;
	uint32_t l4_off;       /* innermost L4 header, 0 if none */
	uint32_t payload_off;  /* innermost L4 payload */
	uint32_t payload_len;  /* payload bytes captured */
	uint32_t payload_wire; /* payload bytes on the wire, from the IP/UDP lengths */

	uint8_t ttl;           /* innermost hop limit */
	uint8_t tcp_flags;
	uint16_t tcp_win;
	uint32_t tcp_seq, tcp_ack;
	uint8_t tcp_optlen;    /* bytes of TCP options */
	uint8_t ip_optlen;     /* bytes of IPv4 options / IPv6 extension headers */
	uint8_t mpls_depth;    /* labels in the outermost MPLS stack; 0: none */
	uint8_t has_nsh;       /* nsh_path is set */
	uint32_t ip_id;        /* innermost IPv4 identification, or the IPv6 fragment
	                        * header's identification (0 without one): with the
	                        * addresses it ties fragments of one datagram together */
	uint32_t mpls_top, mpls_bottom; /* first and last label (20 bits) of that stack */
	uint32_t nsh_path;     /* first NSH service path: SPI (24 bits) << 8 | SI */
};

/* Decodes frame[0..caplen) of the given link type.  wirelen is the original length
 * (>= caplen).  Always fills *out and returns out->reason. */
int dc_decode(const struct dc_config *cfg, int linktype, const uint8_t *frame,
	      uint32_t caplen, uint32_t wirelen, struct dc_packet *out);

/* For IP reassembly (cold path).  The frame `dst` is a copy of `orig` (a frame that
 * dc_decode() decoded with the same cfg, linktype and lengths) up to l3_off, the
 * offset of the innermost IP header (dc_packet.l3_off), followed by a datagram `delta`
 * bytes longer (or shorter) than orig's.  Adds delta to every length field of the headers
 * that enclose that IP header (IPv4 total length with its header checksum, IPv6
 * payload length or jumbo length, UDP length with the checksum cleared, GTP and
 * PPPoE lengths, PPTP's payload length), in dst.  Reads orig[0..orig_caplen), writes
 * dst[0..l3_off).  Returns 0, -EINVAL when l3_off is not an IP header orig's walk
 * reaches, -EOVERFLOW when a field cannot hold its new value. */
int dc_resize_enclosing(const struct dc_config *cfg, int linktype, const uint8_t *orig,
			uint32_t orig_caplen, uint32_t orig_wirelen, uint8_t *dst,
			uint32_t l3_off, int32_t delta);

/* Stable names: "ok", "not-ip", "unsupported", "truncated-ipv4", "bad-ihl", ... */
const char *dc_reason_name(int reason);
const char *dc_tunnel_name(int tunnel); /* "none", "vxlan", "geneve", "gre", ... */
/* What a tunnel calls its identifier (dc_packet.vni): "vni", "teid", "label", ... */
const char *dc_tunnel_id_name(int tunnel);
/* 1 for reasons that mean malformed input. */
static inline int dc_is_malformed(int reason) { return reason >= DC_FIRST_MALFORMED; }

/* Per-reason counters; owned by the caller, one per thread (not atomic). */
struct dc_counters {
	uint64_t packets;
	uint64_t by_reason[DC_R__COUNT];
	uint64_t by_tunnel[DC_TUN__COUNT];
};
void dc_count(struct dc_counters *c, const struct dc_packet *p);

/* Formats a tuple as "10.0.0.1:80 -> 10.0.0.2:1234 TCP" into buf; returns buf.
 * IPv6 addresses are bracketed ("[2001:db8::1]:443"); ICMP shows "ICMP type/code";
 * protocols without ports show addresses only.  64 bytes hold IPv4, 120 any tuple. */
char *dc_tuple_format(const struct dc_tuple *t, char *buf, size_t len);
#define DC_TUPLE_STRLEN 120

/* "TCP", "UDP", "ICMPv6", ... for an IP protocol number; NULL when unnamed. */
const char *dc_proto_name(int proto, int family);

#endif
