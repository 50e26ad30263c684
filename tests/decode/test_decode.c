/* Unit tests of decode/: raw frames written out byte by byte, one header per line,
 * so each test says exactly what is on the wire (the way Suricata's UNITTESTS in
 * decode-vxlan.c do).  Malformed variants are made by changing one field of a good
 * frame; every dc_reason is produced at least once. */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "decode.h"

static int failures, checks;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
	fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, #cond); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); checks++; \
	if (_a != _b) { failures++; fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n", \
	__FILE__, __LINE__, __func__, #a, _a, #b, _b); } } while (0)
static int reason_seen[DC_R__COUNT];
#define CHECK_REASON(p, r) do { checks++; reason_seen[r] = 1; if ((p)->reason != (r)) { failures++; \
	fprintf(stderr, "%s:%d: %s: reason %s, expected %s\n", __FILE__, __LINE__, __func__, \
	dc_reason_name((p)->reason), dc_reason_name(r)); } } while (0)

static struct dc_config cfg;

static int dec(int link, const uint8_t *f, size_t n, struct dc_packet *p)
{
	return dc_decode(&cfg, link, f, (uint32_t)n, (uint32_t)n, p);
}
#define DEC(link, arr, p) dec(link, arr, sizeof(arr), p)

static int v4_is(const uint8_t *a, int b0, int b1, int b2, int b3)
{
	return a[0] == b0 && a[1] == b1 && a[2] == b2 && a[3] == b3 && a[4] == 0 && a[15] == 0;
}

/* ---- reusable headers ---- */

/* Ethernet: dst 00:11:22:33:44:55, src 66:77:88:99:aa:bb, then the ethertype. */
#define ETH_MACS 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb
#define ETH_V4 ETH_MACS, 0x08, 0x00
#define ETH_V6 ETH_MACS, 0x86, 0xdd
/* IPv4, IHL 5, total length tl, DF, TTL 64, protocol pr, 10.0.0.1 -> 10.0.0.2 */
#define IP4(tl, pr) 0x45, 0x00, (tl) >> 8, (tl) & 0xff, 0x00, 0x01, 0x40, 0x00, \
	0x40, pr, 0x00, 0x00, 10, 0, 0, 1, 10, 0, 0, 2
/* The same with other addresses, for the carrier of a tunnel: 192.168.0.1 -> .2 */
#define IP4C(tl, pr) 0x45, 0x00, (tl) >> 8, (tl) & 0xff, 0x00, 0x01, 0x40, 0x00, \
	0x40, pr, 0x00, 0x00, 192, 168, 0, 1, 192, 168, 0, 2
/* IPv6, payload length pl, next header nh, hop limit 64, 2001:db8::1 -> 2001:db8::2 */
#define IP6(pl, nh) 0x60, 0x00, 0x00, 0x00, (pl) >> 8, (pl) & 0xff, nh, 64, \
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, \
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2
/* TCP 12345 -> 80, seq 1, ack 0, data offset 5, SYN, window 29200 */
#define TCP_SYN 0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0x72, 0x10, 0, 0, 0, 0
/* UDP 5353 -> 53, length ul */
#define UDP(ul) 0x14, 0xe9, 0x00, 0x35, (ul) >> 8, (ul) & 0xff, 0x00, 0x00

/* The inner frame most tunnel tests carry (54 bytes): Ethernet, IPv4 10.244.1.2 ->
 * 10.244.2.3 total length 40, TCP 45228 -> 443 SYN. */
#define IN_ETH 0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00
#define IN_IP4 0x45, 0x00, 0x00, 40, 0x00, 0x02, 0x40, 0x00, 63, 6, 0, 0, \
	10, 244, 1, 2, 10, 244, 2, 3
#define IN_TCP 0xb0, 0xac, 0x01, 0xbb, 0, 0, 0, 7, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0
#define IN_FRAME IN_ETH, IN_IP4, IN_TCP

static void check_inner_tcp(const struct dc_packet *p)
{
	CHECK_EQ(p->inner.family, 4);
	CHECK_EQ(p->inner.proto, 6);
	CHECK(v4_is(p->inner.src, 10, 244, 1, 2));
	CHECK(v4_is(p->inner.dst, 10, 244, 2, 3));
	CHECK_EQ(p->inner.sport, 45228);
	CHECK_EQ(p->inner.dport, 443);
	CHECK_EQ(p->tcp_flags, DC_TCP_SYN);
	CHECK_EQ(p->tcp_seq, 7);
	CHECK_EQ(p->ttl, 63);
	CHECK_EQ(p->payload_len, 0);
}

/* ---------------- link layers ---------------- */

static void test_ethernet_tcp(void)
{
	static const uint8_t f[] = {
		ETH_V4,
		/* IPv4: total length 44 (20 + 24), TCP */
		IP4(44, 6),
		/* TCP 12345 -> 80, seq 1, ack 0, offset 6 (24 bytes), SYN, win 29200 */
		0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x60, 0x02, 0x72, 0x10, 0, 0, 0, 0,
		/* option: MSS 1460 */
		0x02, 0x04, 0x05, 0xb4,
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.outer.family, 4);
	CHECK_EQ(p.outer.proto, 6);
	CHECK(v4_is(p.outer.src, 10, 0, 0, 1));
	CHECK(v4_is(p.outer.dst, 10, 0, 0, 2));
	CHECK_EQ(p.outer.sport, 12345);
	CHECK_EQ(p.outer.dport, 80);
	CHECK(memcmp(&p.outer, &p.inner, sizeof p.inner) == 0);
	CHECK_EQ(p.tcp_flags, DC_TCP_SYN);
	CHECK_EQ(p.tcp_seq, 1);
	CHECK_EQ(p.tcp_win, 29200);
	CHECK_EQ(p.tcp_optlen, 4);
	CHECK_EQ(p.l3_off, 14);
	CHECK_EQ(p.l3_len, 44);
	CHECK_EQ(p.l4_off, 34);
	CHECK_EQ(p.payload_off, 58);
	CHECK_EQ(p.payload_len, 0);
	CHECK_EQ(p.ttl, 64);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	CHECK_EQ(p.frag, DC_FRAG_NONE);
	CHECK_EQ(p.vlan_depth, 0);
}

static void test_ethernet_padding(void)
{
	/* A 60-byte minimum frame: IPv4 total length 28 (UDP, no payload), 18 bytes of
	 * Ethernet padding that must not count as payload. */
	static const uint8_t f[] = {
		ETH_V4,
		IP4(28, 17),
		UDP(8),
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* padding */
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.l3_len, 28);
	CHECK_EQ(p.payload_len, 0);
	CHECK_EQ(p.payload_wire, 0);
	CHECK_EQ(p.outer.sport, 5353);
	CHECK_EQ(p.outer.dport, 53);
}

static void test_vlan_qinq(void)
{
	static const uint8_t one[] = {
		ETH_MACS, 0x81, 0x00,
		/* 802.1Q: PCP 3, VID 5, then IPv4 */
		0x60, 0x05, 0x08, 0x00,
		IP4(28, 17), UDP(8),
	};
	static const uint8_t two[] = {
		ETH_MACS, 0x88, 0xa8,
		/* 802.1ad S-tag VID 100 */
		0x00, 0x64, 0x81, 0x00,
		/* 802.1Q C-tag VID 4095 */
		0x0f, 0xff, 0x08, 0x00,
		IP4(28, 17), UDP(8),
	};
	static const uint8_t three[] = {
		ETH_MACS, 0x88, 0xa8,
		0x00, 0x01, 0x91, 0x00, /* old QinQ ethertype 0x9100 next */
		0x00, 0x02, 0x81, 0x00,
		0x00, 0x03, 0x08, 0x00,
		IP4(28, 17), UDP(8),
	};
	static const uint8_t deep[] = {
		ETH_MACS, 0x81, 0x00,
		0x00, 0x01, 0x81, 0x00, 0x00, 0x02, 0x81, 0x00, 0x00, 0x03, 0x81, 0x00,
		0x00, 0x04, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00, /* 5 tags > DC_VLAN_DEPTH_CAP */
		IP4(28, 17), UDP(8),
	};
	static const uint8_t cut[] = {
		ETH_MACS, 0x81, 0x00,
		0x00, 0x05, /* tag cut in half */
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, one, &p), DC_OK);
	CHECK_EQ(p.vlan_depth, 1);
	CHECK_EQ(p.vlan[0], 5);
	CHECK_EQ(p.l3_off, 18);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, two, &p), DC_OK);
	CHECK_EQ(p.vlan_depth, 2);
	CHECK_EQ(p.vlan[0], 100);
	CHECK_EQ(p.vlan[1], 4095);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, three, &p), DC_OK);
	CHECK_EQ(p.vlan_depth, 3);
	CHECK_EQ(p.vlan[0], 1);
	CHECK_EQ(p.vlan[1], 2);
	CHECK_EQ(p.l3_off, 26);
	DEC(DC_LINK_ETHERNET, deep, &p);
	CHECK_REASON(&p, DC_R_VLAN_DEPTH);
	DEC(DC_LINK_ETHERNET, cut, &p);
	CHECK_REASON(&p, DC_R_TRUNC_VLAN);
}

static void test_link_types(void)
{
	static const uint8_t sll[] = {
		/* Linux cooked v1: packet type 0 (to us), ARPHRD_ETHER 1, addr len 6,
		 * address (8 bytes, padded), protocol IPv4 */
		0x00, 0x00, 0x00, 0x01, 0x00, 0x06, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0, 0,
		0x08, 0x00,
		IP4(28, 17), UDP(8),
	};
	static const uint8_t sll2[] = {
		/* Linux cooked v2: protocol IPv6, reserved, ifindex 3, ARPHRD_ETHER,
		 * packet type 4 (outgoing), addr len 6, address */
		0x86, 0xdd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01, 0x04, 0x06,
		0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0, 0,
		IP6(8, 17), UDP(8),
	};
	static const uint8_t raw4[] = { IP4(28, 17), UDP(8) };
	static const uint8_t raw6[] = { IP6(8, 17), UDP(8) };
	static const uint8_t null_le[] = { 0x02, 0x00, 0x00, 0x00, /* AF_INET little-endian */
		IP4(28, 17), UDP(8) };
	static const uint8_t null_be6[] = { 0x00, 0x00, 0x00, 0x1e, /* AF_INET6 on macOS, big-endian */
		IP6(8, 17), UDP(8) };
	static const uint8_t loop[] = { 0x00, 0x00, 0x00, 0x18, /* OpenBSD AF_INET6 = 24 */
		IP6(8, 17), UDP(8) };
	static const uint8_t null_other[] = { 0x07, 0x00, 0x00, 0x00, /* AF 7: not IP */
		0x00, 0x00 };
	static const uint8_t ppp[] = { 0xff, 0x03, 0x00, 0x21, /* HDLC address/control, PPP IPv4 */
		IP4(28, 17), UDP(8) };
	static const uint8_t ppp_nohdr[] = { 0x00, 0x57, /* PPP IPv6, no address/control */
		IP6(8, 17), UDP(8) };
	static const uint8_t ppp_lcp[] = { 0xff, 0x03, 0xc0, 0x21, 0x01, 0x01, 0x00, 0x04 };
	static const uint8_t chdlc[] = { 0x0f, 0x00, 0x08, 0x00, /* Cisco HDLC unicast, IPv4 */
		IP4(28, 17), UDP(8) };
	static const uint8_t fabricpath[] = { ETH_MACS, 0x89, 0x03,
		/* Cisco FabricPath: FTag 1, TTL 32; then a classic Ethernet frame */
		0x40, 0x20, ETH_V4, IP4(28, 17), UDP(8) };
	static const uint8_t ppi[] = {
		/* PPI: version 0, flags 0, length 8 (LE), DLT 1 Ethernet (LE) */
		0x00, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00,
		ETH_V4, IP4(28, 17), UDP(8) };
	static const uint8_t arp[] = { ETH_MACS, 0x08, 0x06,
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01 };
	static const uint8_t llc[] = { ETH_MACS, 0x00, 0x26, /* 802.3 length: STP over LLC */
		0x42, 0x42, 0x03 };
	static const uint8_t short_eth[] = { ETH_MACS };
	static const uint8_t pppoe[] = { ETH_MACS, 0x88, 0x64,
		/* PPPoE session: ver/type 0x11, code 0, session 1, length 30, PPP IPv4 */
		0x11, 0x00, 0x00, 0x01, 0x00, 0x1e, 0x00, 0x21,
		IP4(28, 17), UDP(8) };
	static const uint8_t mpls[] = { ETH_MACS, 0x88, 0x47,
		/* label 16, not bottom; label 17, bottom of stack, TTL 64 */
		0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x11, 0x40,
		IP4(28, 17), UDP(8) };
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_LINUX_SLL, sll, &p), DC_OK);
	CHECK_EQ(p.outer.family, 4);
	CHECK_EQ(p.l3_off, 16);
	CHECK_EQ(DEC(DC_LINK_LINUX_SLL2, sll2, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(p.l3_off, 20);
	CHECK_EQ(p.outer.dport, 53);
	CHECK_EQ(p.outer.src[15], 1);
	CHECK_EQ(p.ttl, 64);
	CHECK_EQ(DEC(DC_LINK_RAW_DLT, raw4, &p), DC_OK);
	CHECK_EQ(p.outer.family, 4);
	CHECK_EQ(DEC(DC_LINK_RAW, raw6, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(DEC(DC_LINK_IPV4, raw4, &p), DC_OK);
	CHECK_EQ(DEC(DC_LINK_IPV6, raw6, &p), DC_OK);
	DEC(DC_LINK_IPV4, raw6, &p);
	CHECK_REASON(&p, DC_R_IPV4_VERSION);
	DEC(DC_LINK_IPV6, raw4, &p);
	CHECK_REASON(&p, DC_R_IPV6_VERSION);
	CHECK_EQ(DEC(DC_LINK_NULL, null_le, &p), DC_OK);
	CHECK_EQ(p.l3_off, 4);
	CHECK_EQ(DEC(DC_LINK_NULL, null_be6, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(DEC(DC_LINK_LOOP, loop, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(DEC(DC_LINK_NULL, null_other, &p), DC_NOT_IP);
	CHECK_EQ(DEC(DC_LINK_PPP, ppp, &p), DC_OK);
	CHECK_EQ(p.l3_off, 4);
	CHECK_EQ(DEC(DC_LINK_PPP, ppp_nohdr, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(DEC(DC_LINK_PPP, ppp_lcp, &p), DC_NOT_IP);
	CHECK_EQ(DEC(DC_LINK_C_HDLC, chdlc, &p), DC_OK);
	/* the same framing in a capture that says PPP */
	CHECK_EQ(DEC(DC_LINK_PPP, chdlc, &p), DC_OK);
	CHECK_EQ(p.l3_off, 4);
	dec(DC_LINK_PPP, chdlc, 3, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, fabricpath, &p), DC_OK);
	CHECK_EQ(p.l3_off, 14 + 2 + 14);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	dec(DC_LINK_ETHERNET, fabricpath, 15, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	CHECK_EQ(DEC(DC_LINK_PPI, ppi, &p), DC_OK);
	CHECK_EQ(p.l3_off, 8 + 14);
	dec(DC_LINK_PPI, ppi, 7, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, arp, &p), DC_NOT_IP);
	CHECK_EQ(p.outer.family, 0);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, llc, &p), DC_NOT_IP);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, pppoe, &p), DC_OK);
	CHECK_EQ(p.l3_off, 22);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, mpls, &p), DC_OK);
	CHECK_EQ(p.l3_off, 22);
	CHECK_EQ(DEC(147, raw4, &p), DC_UNSUPPORTED); /* LINKTYPE_USER0 */
	DEC(DC_LINK_ETHERNET, short_eth, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	CHECK(dc_is_malformed(p.reason));
	DEC(DC_LINK_LINUX_SLL, short_eth, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	DEC(DC_LINK_LINUX_SLL2, short_eth, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	dec(DC_LINK_NULL, null_le, 3, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	dec(DC_LINK_ETHERNET, pppoe, 18, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	/* nothing at all */
	dec(DC_LINK_RAW, raw4, 0, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV4);
}

/* ---------------- IPv4 ---------------- */

static void test_ipv4_options_and_errors(void)
{
	static const uint8_t opts[] = {
		ETH_V4,
		/* IPv4 IHL 6: 4 bytes of options; total length 32 (24 + 8) */
		0x46, 0x00, 0x00, 32, 0x00, 0x01, 0x00, 0x00, 0x40, 17, 0, 0,
		10, 0, 0, 1, 10, 0, 0, 2,
		/* options: router alert (4 bytes) */
		0x94, 0x04, 0x00, 0x00,
		UDP(8),
	};
	uint8_t f[sizeof opts];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, opts, &p), DC_OK);
	CHECK_EQ(p.ip_optlen, 4);
	CHECK_EQ(p.l4_off, 38);
	CHECK_EQ(p.outer.dport, 53);

	memcpy(f, opts, sizeof f);
	f[14] = 0x56; /* version 5 */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_IPV4_VERSION);
	memcpy(f, opts, sizeof f);
	f[14] = 0x44; /* IHL 4 < 5 */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_BAD_IHL);
	memcpy(f, opts, sizeof f);
	f[14] = 0x4f; /* IHL 15: 60-byte header, more than captured */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV4);
	memcpy(f, opts, sizeof f);
	f[17] = 200; /* total length beyond the wire */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_IPV4_LEN);
	memcpy(f, opts, sizeof f);
	f[17] = 22; /* total length below the header length */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_IPV4_LEN);
	/* header cut by the capture */
	dec(DC_LINK_ETHERNET, opts, 14 + 10, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV4);
	/* total length 0 (segmentation offload): the frame's length is used */
	memcpy(f, opts, sizeof f);
	f[16] = f[17] = 0;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.l3_len, 32);
}

static void test_snaplen_cut_is_not_malformed(void)
{
	/* 1500-byte IPv4/TCP packet captured with snaplen 68: the headers are whole. */
	static const uint8_t f[] = {
		ETH_V4,
		/* IPv4 total length 1486 (0x05ce) */
		0x45, 0x00, 0x05, 0xce, 0x00, 0x01, 0x40, 0x00, 0x40, 6, 0, 0,
		10, 0, 0, 1, 10, 0, 0, 2,
		/* TCP 12345 -> 80 ACK PSH, offset 5 */
		0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 2, 0x50, 0x18, 0x01, 0x00, 0, 0, 0, 0,
		/* 14 bytes of payload captured */
		'G', 'E', 'T', ' ', '/', ' ', 'H', 'T', 'T', 'P', '/', '1', '.', '1',
	};
	struct dc_packet p;
	CHECK_EQ(dc_decode(&cfg, DC_LINK_ETHERNET, f, sizeof f, 1500, &p), DC_OK);
	CHECK_EQ(p.l3_len, sizeof f - 14);
	CHECK_EQ(p.payload_wire, 1486 - 40);
	CHECK_EQ(p.payload_len, 14);
	CHECK_EQ(p.tcp_flags, DC_TCP_ACK | DC_TCP_PSH);
	CHECK_EQ(p.tcp_ack, 2);
	/* But a total length beyond the wire length is a lie. */
	dc_decode(&cfg, DC_LINK_ETHERNET, f, sizeof f, 1400, &p);
	CHECK_REASON(&p, DC_R_IPV4_LEN);
	/* Cut inside the TCP header: a truncation, not an offset error. */
	dc_decode(&cfg, DC_LINK_ETHERNET, f, 14 + 20 + 10, 1500, &p);
	CHECK_REASON(&p, DC_R_TRUNC_TCP);
	CHECK_EQ(p.outer.family, 4);
}

static void test_ipv4_fragments(void)
{
	static const uint8_t first[] = {
		ETH_V4,
		/* IPv4 total length 36, MF set, offset 0, UDP */
		0x45, 0x00, 0x00, 36, 0x12, 0x34, 0x20, 0x00, 0x40, 17, 0, 0,
		10, 0, 0, 1, 10, 0, 0, 2,
		/* UDP 5353 -> 53, length 1008: the whole datagram, longer than this fragment */
		0x14, 0xe9, 0x00, 0x35, 0x03, 0xf0, 0x00, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0,
	};
	static const uint8_t later[] = {
		ETH_V4,
		/* IPv4 total length 36, offset 16 (x8 = 128 bytes), no MF, UDP */
		0x45, 0x00, 0x00, 36, 0x12, 0x34, 0x00, 0x10, 0x40, 17, 0, 0,
		10, 0, 0, 1, 10, 0, 0, 2,
		/* 16 bytes of the datagram's middle: looks like a UDP header, is not */
		0x14, 0xe9, 0x12, 0xb5, 0x00, 0x08, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, first, &p), DC_OK);
	CHECK_EQ(p.frag, DC_FRAG_FIRST);
	CHECK_EQ(p.ip_id, 0x1234);
	CHECK_EQ(p.outer.sport, 5353);
	CHECK_EQ(p.outer.dport, 53);
	CHECK_EQ(p.payload_wire, 8);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, later, &p), DC_OK);
	CHECK_EQ(p.frag, DC_FRAG_LATER);
	CHECK_EQ(p.ip_id, 0x1234);
	CHECK_EQ(p.outer.proto, 17);
	CHECK_EQ(p.outer.sport, 0);
	CHECK_EQ(p.outer.dport, 0);
	CHECK_EQ(p.l4_off, 0);
	CHECK_EQ(p.payload_off, 34);
	CHECK_EQ(p.payload_len, 16);
}

/* ---------------- IPv6 ---------------- */

static void test_ipv6_ext_headers(void)
{
	static const uint8_t f[] = {
		ETH_V6,
		/* IPv6 payload length 44 (8 + 16 + 20), next header hop-by-hop */
		IP6(44, 0),
		/* hop-by-hop: next = destination options, len 0 (8 bytes), PadN */
		60, 0, 0x01, 0x04, 0, 0, 0, 0,
		/* destination options: next = TCP, len 1 (16 bytes), PadN 12 */
		6, 1, 0x01, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		TCP_SYN,
	};
	uint8_t g[sizeof f];
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(p.outer.proto, 6);
	CHECK_EQ(p.outer.sport, 12345);
	CHECK_EQ(p.ip_optlen, 24);
	CHECK_EQ(p.l4_off, 14 + 40 + 24);
	CHECK_EQ(p.l3_len, 84);
	CHECK_EQ(p.tcp_flags, DC_TCP_SYN);
	/* destination-options length 5 (48 bytes) runs past the packet */
	memcpy(g, f, sizeof g);
	g[14 + 40 + 8 + 1] = 5;
	DEC(DC_LINK_ETHERNET, g, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV6_EXT);
	/* cut inside the hop-by-hop header */
	dc_decode(&cfg, DC_LINK_ETHERNET, f, 14 + 40 + 4, sizeof f, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV6_EXT);
	/* payload length beyond the wire */
	memcpy(g, f, sizeof g);
	g[14 + 5] = 200;
	DEC(DC_LINK_ETHERNET, g, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV6);
	/* version 4 in an IPv6 ethertype */
	memcpy(g, f, sizeof g);
	g[14] = 0x40;
	DEC(DC_LINK_ETHERNET, g, &p);
	CHECK_REASON(&p, DC_R_IPV6_VERSION);
	/* fixed header cut */
	dec(DC_LINK_ETHERNET, f, 14 + 30, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV6);
}

static void test_ipv6_ext_depth(void)
{
	static const uint8_t f[] = {
		ETH_V6,
		/* payload length 72 = 9 destination-options headers of 8 bytes */
		IP6(72, 60),
		60, 0, 1, 4, 0, 0, 0, 0, 60, 0, 1, 4, 0, 0, 0, 0, 60, 0, 1, 4, 0, 0, 0, 0,
		60, 0, 1, 4, 0, 0, 0, 0, 60, 0, 1, 4, 0, 0, 0, 0, 60, 0, 1, 4, 0, 0, 0, 0,
		60, 0, 1, 4, 0, 0, 0, 0, 60, 0, 1, 4, 0, 0, 0, 0, 59, 0, 1, 4, 0, 0, 0, 0,
	};
	struct dc_packet p;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_IPV6_EXT_DEPTH);
	CHECK_EQ(p.outer.family, 6);
}

static void test_ipv6_fragments(void)
{
	static const uint8_t first[] = {
		ETH_V6,
		IP6(36, 44),
		/* fragment header: next UDP, offset 0, M=1, id 0x1234 */
		17, 0, 0x00, 0x01, 0x00, 0x00, 0x12, 0x34,
		/* UDP 5353 -> 53 length 1000 (whole datagram) */
		0x14, 0xe9, 0x00, 0x35, 0x03, 0xe8, 0x00, 0x00,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	static const uint8_t later[] = {
		ETH_V6,
		IP6(24, 44),
		/* fragment header: next UDP, offset 100 (x8), M=0 */
		17, 0, 0x03, 0x20, 0x00, 0x00, 0x12, 0x34,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, first, &p), DC_OK);
	CHECK_EQ(p.frag, DC_FRAG_FIRST);
	CHECK_EQ(p.outer.proto, 17);
	CHECK_EQ(p.outer.dport, 53);
	CHECK_EQ(p.ip_optlen, 8);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, later, &p), DC_OK);
	CHECK_EQ(p.frag, DC_FRAG_LATER);
	CHECK_EQ(p.ip_id, 0x1234);
	CHECK_EQ(p.outer.proto, 17);
	CHECK_EQ(p.outer.dport, 0);
	CHECK_EQ(p.payload_len, 16);
}

/* ---------------- L4 ---------------- */

static void test_l4(void)
{
	static const uint8_t udp[] = { ETH_V4, IP4(32, 17), UDP(12), 'a', 'b', 'c', 'd' };
	static const uint8_t icmp[] = { ETH_V4, IP4(32, 1),
		/* echo request: type 8 code 0, checksum, id 1, seq 2, 4 bytes data */
		0x08, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 'p', 'i', 'n', 'g' };
	static const uint8_t icmp6[] = { ETH_V6, IP6(8, 58),
		/* destination unreachable: type 1 code 4 */
		0x01, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
	static const uint8_t sctp[] = { ETH_V4, IP4(48, 132),
		/* SCTP 36412 -> 36412 (S1AP), verification tag, checksum */
		0x8e, 0x3c, 0x8e, 0x3c, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
		/* an INIT chunk header */
		0x01, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
	static const uint8_t esp[] = { ETH_V4, IP4(28, 50), 0, 0, 0, 1, 0, 0, 0, 1 };
	uint8_t f[64];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, udp, &p), DC_OK);
	CHECK_EQ(p.payload_len, 4);
	CHECK_EQ(p.payload_wire, 4);
	CHECK_EQ(p.payload_off, 42);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, icmp, &p), DC_OK);
	CHECK_EQ(p.outer.proto, 1);
	CHECK_EQ(p.outer.sport, 8);
	CHECK_EQ(p.outer.dport, 0);
	CHECK_EQ(p.payload_len, 4);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, icmp6, &p), DC_OK);
	CHECK_EQ(p.outer.proto, 58);
	CHECK_EQ(p.outer.sport, 1);
	CHECK_EQ(p.outer.dport, 4);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, sctp, &p), DC_OK);
	CHECK_EQ(p.outer.proto, 132);
	CHECK_EQ(p.outer.sport, 36412);
	CHECK_EQ(p.payload_len, 16);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, esp, &p), DC_OK);
	CHECK_EQ(p.outer.proto, 50);
	CHECK_EQ(p.l4_off, 0);
	CHECK_EQ(p.payload_len, 8);

	/* UDP length below 8, and beyond the IP payload */
	memcpy(f, udp, sizeof udp);
	f[14 + 20 + 5] = 4;
	dec(DC_LINK_ETHERNET, f, sizeof udp, &p);
	CHECK_REASON(&p, DC_R_UDP_LEN);
	memcpy(f, udp, sizeof udp);
	f[14 + 20 + 5] = 13;
	dec(DC_LINK_ETHERNET, f, sizeof udp, &p);
	CHECK_REASON(&p, DC_R_UDP_LEN);
	/* TCP data offset 4, and 15 (60 bytes) in a 40-byte datagram */
	static const uint8_t tcp[] = { ETH_V4, IP4(40, 6), TCP_SYN };
	memcpy(f, tcp, sizeof tcp);
	f[14 + 20 + 12] = 0x40;
	dec(DC_LINK_ETHERNET, f, sizeof tcp, &p);
	CHECK_REASON(&p, DC_R_TCP_OFFSET);
	f[14 + 20 + 12] = 0xf0;
	dec(DC_LINK_ETHERNET, f, sizeof tcp, &p);
	CHECK_REASON(&p, DC_R_TCP_OFFSET);
	/* L4 headers cut by the capture */
	dc_decode(&cfg, DC_LINK_ETHERNET, udp, 14 + 20 + 5, sizeof udp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_UDP);
	dc_decode(&cfg, DC_LINK_ETHERNET, icmp, 14 + 20 + 5, sizeof icmp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_ICMP);
	dc_decode(&cfg, DC_LINK_ETHERNET, sctp, 14 + 20 + 10, sizeof sctp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_SCTP);
	dc_decode(&cfg, DC_LINK_ETHERNET, tcp, 14 + 20 + 19, sizeof tcp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_TCP);
	CHECK_EQ(p.outer.proto, 6);
}

/* ---------------- tunnels ---------------- */

static const uint8_t vxlan_frame[] = {
	ETH_MACS, 0x81, 0x00,
	/* 802.1Q VID 5 */
	0x00, 0x05, 0x08, 0x00,
	/* IPv4 192.168.0.1 -> 192.168.0.2, total length 90 (20 + 8 + 8 + 54), UDP */
	IP4C(90, 17),
	/* UDP 45000 -> 4789, length 70 */
	0xaf, 0xc8, 0x12, 0xb5, 0x00, 70, 0x00, 0x00,
	/* VXLAN: flags I, reserved, VNI 42, reserved */
	0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00,
	IN_FRAME,
};
#define VXLAN_OFF (18 + 20 + 8)

static void test_vxlan(void)
{
	uint8_t f[sizeof vxlan_frame];
	struct dc_packet p;
	struct dc_config c2;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, vxlan_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	CHECK_EQ(p.tunnel_depth, 1);
	CHECK_EQ(p.has_vni, 1);
	CHECK_EQ(p.vni, 42);
	CHECK_EQ(p.vlan_depth, 1);
	CHECK_EQ(p.vlan[0], 5);
	CHECK_EQ(p.outer.proto, 17);
	CHECK_EQ(p.outer.dport, 4789);
	CHECK_EQ(p.outer.sport, 45000);
	CHECK(v4_is(p.outer.src, 192, 168, 0, 1));
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, VXLAN_OFF + 8 + 14);
	CHECK_EQ(p.l3_len, 40);

	/* the I flag cleared */
	memcpy(f, vxlan_frame, sizeof f);
	f[VXLAN_OFF] = 0x00;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_VXLAN_FLAGS);
	CHECK_EQ(p.outer.dport, 4789);
	/* VXLAN header cut */
	dc_decode(&cfg, DC_LINK_ETHERNET, vxlan_frame, VXLAN_OFF + 4, sizeof vxlan_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_VXLAN);
	/* inner Ethernet cut */
	dc_decode(&cfg, DC_LINK_ETHERNET, vxlan_frame, VXLAN_OFF + 8 + 6, sizeof vxlan_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	/* inner IPv4 cut: the outer tuple stays */
	dc_decode(&cfg, DC_LINK_ETHERNET, vxlan_frame, VXLAN_OFF + 8 + 20, sizeof vxlan_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV4);
	CHECK_EQ(p.outer.dport, 4789);
	/* inner IPv4 claims more than the UDP datagram holds */
	memcpy(f, vxlan_frame, sizeof f);
	f[VXLAN_OFF + 8 + 14 + 3] = 41;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_IPV4_LEN);
	/* decapsulation off: a plain UDP packet */
	c2 = cfg;
	c2.decap = 0;
	CHECK_EQ(dc_decode(&c2, DC_LINK_ETHERNET, vxlan_frame, sizeof vxlan_frame,
			   sizeof vxlan_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	CHECK_EQ(p.inner.dport, 4789);
	/* another port: not VXLAN unless configured */
	memcpy(f, vxlan_frame, sizeof f);
	f[18 + 20 + 2] = 0x27;
	f[18 + 20 + 3] = 0x0f; /* 9999 */
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	c2 = cfg;
	CHECK_EQ(dc_config_add_vxlan_port(&c2, 9999), 0);
	CHECK_EQ(dc_decode(&c2, DC_LINK_ETHERNET, f, sizeof f, sizeof f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	check_inner_tcp(&p);
	/* flannel's 8472 is on by default */
	f[18 + 20 + 2] = 0x21;
	f[18 + 20 + 3] = 0x18;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	/* ARP inside VXLAN: not IP, but the carrier is known */
	memcpy(f, vxlan_frame, sizeof f);
	f[VXLAN_OFF + 8 + 12] = 0x08;
	f[VXLAN_OFF + 8 + 13] = 0x06;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_NOT_IP);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	CHECK_EQ(p.outer.dport, 4789);
	CHECK_EQ(p.inner.dport, 4789);
}

static const uint8_t geneve_frame[] = {
	ETH_V4,
	/* IPv4, total length 98 (20 + 8 + 8 + 8 + 54) */
	IP4C(98, 17),
	/* UDP 40000 -> 6081, length 78 */
	0x9c, 0x40, 0x17, 0xc1, 0x00, 78, 0x00, 0x00,
	/* Geneve: version 0, option length 2 words; flags 0; protocol 0x6558 (Ethernet);
	 * VNI 7 */
	0x02, 0x00, 0x65, 0x58, 0x00, 0x00, 0x07, 0x00,
	/* option: class 0x0102, type 0x80, length 1 word, 4 bytes of data */
	0x01, 0x02, 0x80, 0x01, 0xde, 0xad, 0xbe, 0xef,
	IN_FRAME,
};
#define GENEVE_OFF (14 + 20 + 8)

static void test_geneve(void)
{
	uint8_t f[sizeof geneve_frame];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, geneve_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GENEVE);
	CHECK_EQ(p.vni, 7);
	CHECK_EQ(p.has_vni, 1);
	CHECK_EQ(p.outer.dport, 6081);
	check_inner_tcp(&p);

	memcpy(f, geneve_frame, sizeof f);
	f[GENEVE_OFF] = 0x42; /* version 1 */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_GENEVE_VERSION);
	memcpy(f, geneve_frame, sizeof f);
	f[GENEVE_OFF + 8 + 3] = 0x02; /* option says 2 words, the area has 1 */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_GENEVE_OPTLEN);
	memcpy(f, geneve_frame, sizeof f);
	f[GENEVE_OFF] = 0x3f; /* 63 words of options: past the datagram */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_GENEVE_OPTLEN);
	dc_decode(&cfg, DC_LINK_ETHERNET, geneve_frame, GENEVE_OFF + 6, sizeof geneve_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GENEVE);
	dc_decode(&cfg, DC_LINK_ETHERNET, geneve_frame, GENEVE_OFF + 12, sizeof geneve_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GENEVE);

	/* Geneve carrying IPv4 directly, no options */
	static const uint8_t ip[] = {
		ETH_V4, IP4C(76, 17),
		0x9c, 0x40, 0x17, 0xc1, 0x00, 56, 0x00, 0x00,
		/* Geneve: no options, protocol IPv4, VNI 0x010203 */
		0x00, 0x00, 0x08, 0x00, 0x01, 0x02, 0x03, 0x00,
		IN_IP4, IN_TCP,
	};
	CHECK_EQ(DEC(DC_LINK_ETHERNET, ip, &p), DC_OK);
	CHECK_EQ(p.vni, 0x010203);
	check_inner_tcp(&p);
}

/* GRE carrier: IPv4 192.168.0.1 -> .2, protocol 47 */
static void test_gre(void)
{
	static const uint8_t plain[] = {
		ETH_V4, IP4C(64, 47),
		/* GRE: no flags, version 0, protocol IPv4 */
		0x00, 0x00, 0x08, 0x00,
		IN_IP4, IN_TCP,
	};
	static const uint8_t ckseq[] = {
		ETH_V4, IP4C(76, 47),
		/* GRE: C K S set, version 0, protocol IPv4 */
		0xb0, 0x00, 0x08, 0x00,
		/* checksum, reserved */
		0x00, 0x00, 0x00, 0x00,
		/* key 0x1234 */
		0x00, 0x00, 0x12, 0x34,
		/* sequence 9 */
		0x00, 0x00, 0x00, 0x09,
		IN_IP4, IN_TCP,
	};
	static const uint8_t teb[] = {
		ETH_V4, IP4C(78, 47),
		/* GRE: protocol 0x6558 transparent Ethernet bridging */
		0x00, 0x00, 0x65, 0x58,
		IN_FRAME,
	};
	static const uint8_t v6[] = {
		ETH_V6,
		/* IPv6 carrier, payload 4 + 60 */
		IP6(64, 47),
		0x00, 0x00, 0x86, 0xdd,
		/* inner IPv6 fd00::1 -> fd00::2, TCP */
		0x60, 0, 0, 0, 0, 20, 6, 64,
		0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
		0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
		TCP_SYN,
	};
	static const uint8_t pptp[] = {
		ETH_V4, IP4C(64, 47),
		/* enhanced GRE: K S set, version 1, protocol PPP, payload length 32,
		 * call id 0x4000, sequence 1 */
		0x30, 0x01, 0x88, 0x0b, 0x00, 32, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01,
		/* PPP: address/control, protocol IPv4 */
		0xff, 0x03, 0x00, 0x21,
		/* inner IPv4, total length 28, UDP */
		IP4(28, 17), UDP(8),
	};
	uint8_t f[128];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, plain, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	CHECK_EQ(p.has_vni, 0);
	CHECK_EQ(p.outer.proto, 47);
	CHECK_EQ(p.outer.sport, 0);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, ckseq, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	CHECK_EQ(p.has_vni, 1);
	CHECK_EQ(p.vni, 0x1234);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, teb, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, v6, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	CHECK_EQ(p.outer.family, 6);
	CHECK_EQ(p.inner.family, 6);
	CHECK_EQ(p.inner.src[0], 0xfd);
	CHECK_EQ(p.inner.dport, 80);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, pptp, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	CHECK_EQ(p.vni, 0x4000);
	CHECK_EQ(p.inner.dport, 53);
	CHECK(v4_is(p.inner.src, 10, 0, 0, 1));

	/* version 2 */
	memcpy(f, plain, sizeof plain);
	f[35] = 0x02;
	dec(DC_LINK_ETHERNET, f, sizeof plain, &p);
	CHECK_REASON(&p, DC_R_GRE_VERSION);
	/* GRE headers cut by the capture: optional fields, base header, PPTP header */
	dc_decode(&cfg, DC_LINK_ETHERNET, ckseq, 34 + 10, sizeof ckseq, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GRE);
	dc_decode(&cfg, DC_LINK_ETHERNET, plain, 34 + 2, sizeof plain, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GRE);
	dc_decode(&cfg, DC_LINK_ETHERNET, pptp, 34 + 13, sizeof pptp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GRE);
	/* an unknown GRE protocol (NHRP) is a GRE packet, not a tunnel */
	memcpy(f, plain, sizeof plain);
	f[36] = 0x20;
	f[37] = 0x01;
	CHECK_EQ(dec(DC_LINK_ETHERNET, f, sizeof plain, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	CHECK_EQ(p.inner.proto, 47);
}

static void test_erspan(void)
{
	static const uint8_t type2[] = {
		ETH_V4, IP4C(90, 47),
		/* GRE: S set, protocol 0x88be; sequence 1 */
		0x10, 0x00, 0x88, 0xbe, 0x00, 0x00, 0x00, 0x01,
		/* ERSPAN II: version 1, VLAN 0; COS 0 En 0 T 0 session 7; index 0 */
		0x10, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00,
		IN_FRAME,
	};
	static const uint8_t type1[] = {
		ETH_V4, IP4C(78, 47),
		/* GRE: no sequence number, protocol 0x88be: ERSPAN type I, no header */
		0x00, 0x00, 0x88, 0xbe,
		IN_FRAME,
	};
	static const uint8_t type3[] = {
		ETH_V4, IP4C(102, 47),
		/* GRE: S set, protocol 0x22eb; sequence 1 */
		0x10, 0x00, 0x22, 0xeb, 0x00, 0x00, 0x00, 0x01,
		/* ERSPAN III: version 2, VLAN 0; session 9; timestamp */
		0x20, 0x00, 0x00, 0x09, 0x00, 0x00, 0x10, 0x00,
		/* SGT 0; P 0 FT 0 (Ethernet) HW ID 0; D 0 Gra 0 O 1 */
		0x00, 0x00, 0x00, 0x01,
		/* platform-specific subheader (O set) */
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		IN_FRAME,
	};
	uint8_t f[sizeof type3];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, type2, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_ERSPAN);
	CHECK_EQ(p.vni, 7);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, type1, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_ERSPAN);
	CHECK_EQ(p.has_vni, 0);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, type3, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_ERSPAN);
	CHECK_EQ(p.vni, 9);
	check_inner_tcp(&p);

	memcpy(f, type2, sizeof type2);
	f[42] = 0x20; /* version 2 under 0x88be */
	dec(DC_LINK_ETHERNET, f, sizeof type2, &p);
	CHECK_REASON(&p, DC_R_ERSPAN_VERSION);
	memcpy(f, type3, sizeof type3);
	f[42] = 0x10; /* version 1 under 0x22eb */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_ERSPAN_VERSION);
	dc_decode(&cfg, DC_LINK_ETHERNET, type2, 42 + 4, sizeof type2, &p);
	CHECK_REASON(&p, DC_R_TRUNC_ERSPAN);
	dc_decode(&cfg, DC_LINK_ETHERNET, type3, 42 + 14, sizeof type3, &p);
	CHECK_REASON(&p, DC_R_TRUNC_ERSPAN);
}

static void test_ip_in_ip(void)
{
	static const uint8_t ipip[] = { ETH_V4, IP4C(60, 4), IN_IP4, IN_TCP };
	static const uint8_t six4[] = { ETH_V4, IP4C(80, 41), IP6(20, 6), TCP_SYN };
	static const uint8_t four6[] = { ETH_V6, IP6(40, 4), IN_IP4, IN_TCP };
	static const uint8_t six6[] = { ETH_V6, IP6(60, 41), IP6(20, 6), TCP_SYN };
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, ipip, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_IPIP);
	CHECK_EQ(p.outer.proto, 4);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, six4, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_6IN4);
	CHECK_EQ(p.inner.family, 6);
	CHECK_EQ(p.inner.dport, 80);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, four6, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_4IN6);
	CHECK_EQ(p.outer.family, 6);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, six6, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_6IN6);
	CHECK_EQ(p.inner.proto, 6);
	CHECK_EQ(p.l3_off, 14 + 40);
}

static void test_nested_and_depth(void)
{
	static const uint8_t f[] = {
		ETH_V4,
		/* IPv4 carrier 1: IPIP, total length 138 */
		IP4C(138, 4),
		/* IPv4 carrier 2: GRE, total length 118, 10.0.0.1 -> 10.0.0.2 */
		IP4(118, 47),
		/* GRE: key 5, protocol IPv4 */
		0x20, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x05,
		/* IPv4 carrier 3: UDP, total length 90 */
		IP4(90, 17),
		/* UDP -> 4789, length 70 */
		0xaf, 0xc8, 0x12, 0xb5, 0x00, 70, 0x00, 0x00,
		/* VXLAN VNI 42 */
		0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00,
		IN_FRAME,
	};
	struct dc_packet p;
	struct dc_config c2 = cfg;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_IPIP);
	CHECK_EQ(p.tunnel_depth, 3);
	CHECK_EQ(p.vni, 5); /* the outermost identifier: the GRE key */
	CHECK(v4_is(p.outer.src, 192, 168, 0, 1));
	CHECK_EQ(p.outer.proto, 4);
	check_inner_tcp(&p);

	c2.max_tunnel_depth = 2;
	dc_decode(&c2, DC_LINK_ETHERNET, f, sizeof f, sizeof f, &p);
	CHECK_REASON(&p, DC_R_TUNNEL_DEPTH);
	CHECK_EQ(p.tunnel, DC_TUN_IPIP);
	CHECK_EQ(p.tunnel_depth, 2);
	CHECK(v4_is(p.outer.src, 192, 168, 0, 1));
	CHECK_EQ(p.inner.proto, 17); /* what was decoded stays: the VXLAN carrier */
	CHECK_EQ(p.inner.dport, 4789);
	c2.max_tunnel_depth = 0;
	dc_decode(&c2, DC_LINK_ETHERNET, f, sizeof f, sizeof f, &p);
	CHECK_REASON(&p, DC_R_TUNNEL_DEPTH);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	CHECK_EQ(p.outer.proto, 4);
}

/* ---------------- the tunnels added for issue 15 ---------------- */

#define Z4 0, 0, 0, 0
#define Z8 Z4, Z4
/* 802.11 data frame to the AP (to-DS): frame control 08 01, duration, BSSID, source,
 * destination, sequence control (fragment 0, sequence 1), then LLC/SNAP for IPv4 */
#define WLAN_HDR 0x08, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a, \
	0x02, 0, 0, 0, 0, 0x0c, 0x10, 0x00
#define LLC_SNAP_V4 0xaa, 0xaa, 0x03, 0x00, 0x00, 0x00, 0x08, 0x00

static const uint8_t gtpu_frame[] = {
	ETH_V4,
	/* IPv4, total length 76 (20 + 8 + 8 + 40), UDP */
	IP4C(76, 17),
	/* UDP 2152 -> 2152, length 56 */
	0x08, 0x68, 0x08, 0x68, 0x00, 56, 0x00, 0x00,
	/* GTP-U: version 1, PT 1, no E/S/PN; G-PDU (255); length 40; TEID 0x11223344 */
	0x30, 0xff, 0x00, 40, 0x11, 0x22, 0x33, 0x44,
	IN_IP4, IN_TCP,
};
#define GTP_OFF (14 + 20 + 8)

static const uint8_t gtpu_ext_frame[] = {
	ETH_V4,
	IP4C(84, 17),
	/* UDP 40000 -> 2152, length 64 */
	0x9c, 0x40, 0x08, 0x68, 0x00, 64, 0x00, 0x00,
	/* GTP-U: E set; G-PDU; length 48 (4 + 4 + 40); TEID 0x55667788 */
	0x34, 0xff, 0x00, 48, 0x55, 0x66, 0x77, 0x88,
	/* sequence 0, N-PDU 0, next extension 0x85 (PDU session container) */
	0x00, 0x00, 0x00, 0x85,
	/* extension: length 1 word, PDU type 0 / QFI 9, next extension 0 (none) */
	0x01, 0x00, 0x09, 0x00,
	IN_IP4, IN_TCP,
};

static void test_gtp(void)
{
	uint8_t f[sizeof gtpu_ext_frame];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, gtpu_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GTPU);
	CHECK_EQ(p.has_vni, 1);
	CHECK_EQ(p.vni, 0x11223344);
	CHECK_EQ(p.outer.dport, 2152);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, GTP_OFF + 8);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, gtpu_ext_frame, &p), DC_OK);
	CHECK_EQ(p.vni, 0x55667788);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, GTP_OFF + 16);

	/* header cut by the capture */
	dc_decode(&cfg, DC_LINK_ETHERNET, gtpu_frame, GTP_OFF + 5, sizeof gtpu_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GTP);
	/* optional fields and extension cut */
	dc_decode(&cfg, DC_LINK_ETHERNET, gtpu_ext_frame, GTP_OFF + 10, sizeof gtpu_ext_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GTP);
	dc_decode(&cfg, DC_LINK_ETHERNET, gtpu_ext_frame, GTP_OFF + 14, sizeof gtpu_ext_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GTP);
	/* version 2 on the user-plane port */
	memcpy(f, gtpu_frame, sizeof gtpu_frame);
	f[GTP_OFF] = 0x50;
	dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p);
	CHECK_REASON(&p, DC_R_GTP_VERSION);
	/* PT 0 (GTP') on 2152 */
	f[GTP_OFF] = 0x20;
	dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p);
	CHECK_REASON(&p, DC_R_GTP_VERSION);
	/* length 41: one byte more than the datagram holds */
	memcpy(f, gtpu_frame, sizeof gtpu_frame);
	f[GTP_OFF + 3] = 41;
	dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p);
	CHECK_REASON(&p, DC_R_GTP_LEN);
	/* S set but length 2: the optional fields do not fit in it */
	f[GTP_OFF] = 0x32;
	f[GTP_OFF + 3] = 2;
	dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p);
	CHECK_REASON(&p, DC_R_GTP_LEN);
	/* extension header of length 0 */
	memcpy(f, gtpu_ext_frame, sizeof f);
	f[GTP_OFF + 12] = 0;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_GTP_EXT);
	/* extension of 2 words running past the GTP length (8 bytes after the header) */
	memcpy(f, gtpu_ext_frame, sizeof f);
	f[GTP_OFF + 3] = 8;
	f[GTP_OFF + 12] = 2;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_GTP_EXT);
	/* extensions chained forever: each one says another follows */
	memcpy(f, gtpu_ext_frame, sizeof f);
	{
		uint8_t chain[sizeof gtpu_ext_frame];
		memcpy(chain, gtpu_ext_frame, sizeof chain);
		/* the 40 bytes of the inner packet become 10 one-word extensions */
		for (unsigned i = 0; i < 11; i++) {
			chain[GTP_OFF + 12 + 4 * i] = 1;
			chain[GTP_OFF + 15 + 4 * i] = 0x85;
		}
		DEC(DC_LINK_ETHERNET, chain, &p);
		CHECK_REASON(&p, DC_R_GTP_EXT);
	}
	/* an echo request (type 1): GTP's own traffic, a plain UDP packet */
	memcpy(f, gtpu_frame, sizeof gtpu_frame);
	f[GTP_OFF + 1] = 1;
	CHECK_EQ(dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	/* a T-PDU that is neither IP nor Ethernet */
	memcpy(f, gtpu_frame, sizeof gtpu_frame);
	f[GTP_OFF + 8] = 0x01;
	CHECK_EQ(dec(DC_LINK_ETHERNET, f, sizeof gtpu_frame, &p), DC_NOT_IP);
	CHECK_EQ(p.tunnel, DC_TUN_GTPU);

	static const uint8_t gtpv0[] = {
		ETH_V4, IP4C(88, 17),
		/* UDP 3386 -> 3386, length 68 */
		0x0d, 0x3a, 0x0d, 0x3a, 0x00, 68, 0x00, 0x00,
		/* GTP v0: version 0, PT 1, spare 111, SNN 0; G-PDU; length 40; sequence 1;
		 * flow label 0x42; SNDCP N-PDU 0xff; spare; TID */
		0x1e, 0xff, 0x00, 40, 0x00, 0x01, 0x00, 0x42, 0xff, 0xff, 0xff, 0xff,
		0x21, 0x43, 0x65, 0x87, 0x09, 0x21, 0x43, 0xf5,
		IN_IP4, IN_TCP,
	};
	CHECK_EQ(DEC(DC_LINK_ETHERNET, gtpv0, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GTPV0);
	CHECK_EQ(p.vni, 0x42);
	check_inner_tcp(&p);
	static const uint8_t gtp_prime[] = {
		ETH_V4, IP4C(40, 17),
		/* UDP 40001 -> 3386, length 20 */
		0x9c, 0x41, 0x0d, 0x3a, 0x00, 20, 0x00, 0x00,
		/* GTP': version 1, PT 0, 6-byte header; data record transfer (240);
		 * length 6; sequence 9; then 6 bytes of records */
		0x2f, 240, 0x00, 6, 0x00, 0x09, 'C', 'D', 'R', '.', '.', '.',
	};
	CHECK_EQ(DEC(DC_LINK_ETHERNET, gtp_prime, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GTP_PRIME);
	CHECK_EQ(p.has_vni, 0);
	CHECK(memcmp(&p.inner, &p.outer, sizeof p.inner) == 0);
	CHECK_EQ(p.payload_len, 12);
	/* a length that does not fill the datagram: not GTP', plain UDP */
	uint8_t g2[sizeof gtp_prime];
	memcpy(g2, gtp_prime, sizeof g2);
	g2[GTP_OFF + 3] = 5;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, g2, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	dc_decode(&cfg, DC_LINK_ETHERNET, gtpv0, GTP_OFF + 3, sizeof gtpv0, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GTP);
	dc_decode(&cfg, DC_LINK_ETHERNET, gtpv0, GTP_OFF + 12, sizeof gtpv0, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GTP);
}

static void test_mpls(void)
{
	static const uint8_t pw[] = {
		ETH_MACS, 0x88, 0x47,
		/* label 200, bottom of stack, TTL 64 */
		0x00, 0x0c, 0x81, 0x40,
		/* pseudowire control word: flags 0, sequence 1 */
		0x00, 0x00, 0x00, 0x01,
		IN_FRAME,
	};
	static const uint8_t deep[] = {
		ETH_MACS, 0x88, 0x47,
		/* nine labels, none at the bottom of the stack */
		0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40,
		0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40,
		0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40, 0x00, 0x01, 0x00, 0x40,
		IN_IP4, IN_TCP,
	};
	static const uint8_t udp[] = {
		ETH_V4, IP4C(72, 17),
		/* UDP 49152 -> 6635, length 52 */
		0xc0, 0x00, 0x19, 0xeb, 0x00, 52, 0x00, 0x00,
		/* label 1000, bottom of stack */
		0x00, 0x3e, 0x81, 0x40,
		IN_IP4, IN_TCP,
	};
	static const uint8_t ach[] = {
		ETH_MACS, 0x88, 0x47,
		/* label 13 (GAL), bottom; then an associated channel header 1 0 0007 */
		0x00, 0x00, 0xd1, 0x01, 0x10, 0x00, 0x00, 0x07, Z8,
	};
	struct dc_packet p;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, pw, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_MPLS);
	CHECK_EQ(p.vni, 200);
	CHECK_EQ(p.mpls_depth, 1);
	CHECK_EQ(p.mpls_top, 200);
	CHECK_EQ(p.mpls_bottom, 200);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, 14 + 4 + 4 + 14);
	DEC(DC_LINK_ETHERNET, deep, &p);
	CHECK_REASON(&p, DC_R_MPLS_DEPTH);
	/* cut inside the label stack, and right after it */
	dc_decode(&cfg, DC_LINK_ETHERNET, pw, 14 + 3, sizeof pw, &p);
	CHECK_REASON(&p, DC_R_TRUNC_MPLS);
	dc_decode(&cfg, DC_LINK_ETHERNET, pw, 14 + 4, sizeof pw, &p);
	CHECK_REASON(&p, DC_R_TRUNC_MPLS);
	/* a pseudowire guess needs the ethertype: cut before it */
	dc_decode(&cfg, DC_LINK_ETHERNET, pw, 14 + 4 + 10, sizeof pw, &p);
	CHECK_REASON(&p, DC_R_TRUNC_MPLS);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, udp, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_MPLS);
	CHECK_EQ(p.vni, 1000);
	CHECK_EQ(p.outer.dport, 6635);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, ach, &p), DC_NOT_IP);
	CHECK_EQ(p.mpls_top, 13);
}

static const uint8_t gpe_nsh_frame[] = {
	ETH_V4,
	/* IPv4 total length 100 (20 + 8 + 8 + 24 + 40), UDP */
	IP4C(100, 17),
	/* UDP 51000 -> 4790, length 80 */
	0xc7, 0x38, 0x12, 0xb6, 0x00, 80, 0x00, 0x00,
	/* VXLAN-GPE: flags I P, reserved, next protocol 4 (NSH), VNI 14 */
	0x0c, 0x00, 0x00, 0x04, 0x00, 0x00, 0x0e, 0x00,
	/* NSH: version 0, TTL 63, length 6 words; MD type 1; next protocol 1 (IPv4);
	 * SPI 0x123, SI 254; 16 bytes of fixed context */
	0x0f, 0xc6, 0x01, 0x01, 0x00, 0x01, 0x23, 0xfe, Z8, Z8,
	IN_IP4, IN_TCP,
};
#define GPE_OFF (14 + 20 + 8)

static void test_vxlan_gpe_nsh(void)
{
	uint8_t f[sizeof gpe_nsh_frame];
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, gpe_nsh_frame, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN_GPE);
	CHECK_EQ(p.vni, 14);
	CHECK_EQ(p.has_nsh, 1);
	CHECK_EQ(p.nsh_path >> 8, 0x123);
	CHECK_EQ(p.nsh_path & 0xff, 254);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, GPE_OFF + 8 + 24);
	dc_decode(&cfg, DC_LINK_ETHERNET, gpe_nsh_frame, GPE_OFF + 7, sizeof gpe_nsh_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_VXLAN_GPE);
	dc_decode(&cfg, DC_LINK_ETHERNET, gpe_nsh_frame, GPE_OFF + 8 + 7, sizeof gpe_nsh_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_NSH);
	dc_decode(&cfg, DC_LINK_ETHERNET, gpe_nsh_frame, GPE_OFF + 8 + 20, sizeof gpe_nsh_frame, &p);
	CHECK_REASON(&p, DC_R_TRUNC_NSH);
	/* VXLAN-GPE version 1; then the I flag cleared */
	memcpy(f, gpe_nsh_frame, sizeof f);
	f[GPE_OFF] = 0x1c;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_VXLAN_GPE_FLAGS);
	f[GPE_OFF] = 0x04;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_VXLAN_GPE_FLAGS);
	/* next protocol 0x80: not one we know */
	memcpy(f, gpe_nsh_frame, sizeof f);
	f[GPE_OFF + 3] = 0x80;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_UNSUPPORTED);
	/* NSH version 1 */
	memcpy(f, gpe_nsh_frame, sizeof f);
	f[GPE_OFF + 8] = 0x4f;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_NSH_VERSION);
	/* MD type 1 with length 5 words; length 1 word; MD type 2 longer than the datagram */
	memcpy(f, gpe_nsh_frame, sizeof f);
	f[GPE_OFF + 9] = 0xc5;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_NSH_LEN);
	f[GPE_OFF + 9] = 0xc1;
	f[GPE_OFF + 10] = 0x02;
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_NSH_LEN);
	f[GPE_OFF + 9] = 0xff; /* 63 words */
	DEC(DC_LINK_ETHERNET, f, &p);
	CHECK_REASON(&p, DC_R_NSH_LEN);
	/* the P bit cleared: Ethernet follows (here: the NSH bytes, read as Ethernet) */
	memcpy(f, gpe_nsh_frame, sizeof f);
	f[GPE_OFF] = 0x08;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_NOT_IP);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN_GPE);

	/* NSH on Ethernet, chained with Ethernet again and again: the layer cap */
	size_t n = 14 + 40 * (8 + 14) + 20;
	uint8_t *bomb = calloc(1, n);
	if (!bomb)
		abort();
	for (size_t i = 0; i < 40; i++) {
		/* Ethernet, type NSH */
		bomb[i * 22 + 12] = 0x89;
		bomb[i * 22 + 13] = 0x4f;
		/* NSH MD type 2, length 2 words, next protocol 3 (Ethernet), SPI 1, SI 1 */
		bomb[i * 22 + 14] = 0x0f;
		bomb[i * 22 + 15] = 0xc2;
		bomb[i * 22 + 16] = 0x02;
		bomb[i * 22 + 17] = 0x03;
		bomb[i * 22 + 20] = 0x01;
		bomb[i * 22 + 21] = 0x01;
	}
	dc_decode(&cfg, DC_LINK_ETHERNET, bomb, (uint32_t)n, (uint32_t)n, &p);
	CHECK_REASON(&p, DC_R_LAYER_DEPTH);
	free(bomb);
}

static void test_teredo_ayiya(void)
{
	static const uint8_t teredo[] = {
		ETH_V4, IP4C(109, 17),
		/* UDP 40000 -> 3544, length 89 */
		0x9c, 0x40, 0x0d, 0xd8, 0x00, 89, 0x00, 0x00,
		/* authentication: 00 01, id length 0, value length 0, nonce, confirmation */
		0x00, 0x01, 0x00, 0x00, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x00,
		/* origin indication: 00 00, port ~40000, address ~192.0.2.10 */
		0x00, 0x00, 0x63, 0xbf, 0x3f, 0xff, 0xfd, 0xf5,
		IP6(20, 6), TCP_SYN,
	};
	static const uint8_t bubble[] = {
		ETH_V4, IP4C(68, 17),
		0x9c, 0x40, 0x0d, 0xd8, 0x00, 48, 0x00, 0x00,
		/* IPv6 with payload length 0 and no next header */
		IP6(0, 59),
	};
	static const uint8_t ayiya[] = {
		ETH_V4, IP4C(120, 17),
		/* UDP 5072 -> 5072, length 100 */
		0x13, 0xd0, 0x13, 0xd0, 0x00, 100, 0x00, 0x00,
		/* AYIYA: id 2^4 bytes, type 1; signature 5 words, SHA1; auth 1, opcode 1
		 * (forward); next header 41 (IPv6); epoch */
		0x41, 0x52, 0x11, 0x29, 0x65, 0x53, 0xf1, 0x00,
		/* identity (16) and signature (20) */
		0x20, 0x01, 0x0d, 0xb8, Z4, Z8, Z8, Z8, Z4,
		IP6(8, 17), UDP(8),
	};
	struct dc_packet p;
	uint8_t f[sizeof teredo];

	CHECK_EQ(DEC(DC_LINK_ETHERNET, teredo, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_TEREDO);
	CHECK_EQ(p.has_vni, 0);
	CHECK_EQ(p.inner.family, 6);
	CHECK_EQ(p.inner.dport, 80);
	CHECK_EQ(p.outer.dport, 3544);
	CHECK_EQ(p.l3_off, 14 + 20 + 8 + 13 + 8);
	for (uint32_t cutat = 14 + 20 + 8 + 1; cutat < 14 + 20 + 8 + 13 + 8 + 1; cutat += 3) {
		dc_decode(&cfg, DC_LINK_ETHERNET, teredo, cutat, sizeof teredo, &p);
		CHECK_REASON(&p, DC_R_TRUNC_TEREDO);
	}
	/* the server's answer comes from 3544 */
	memcpy(f, teredo, sizeof f);
	f[34] = 0x0d; f[35] = 0xd8; f[36] = 0x9c; f[37] = 0x40;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_TEREDO);
	/* not IPv6 after the indicators: plain UDP */
	memcpy(f, teredo, sizeof f);
	f[14 + 20 + 8 + 21] = 0x45;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, bubble, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_TEREDO);
	CHECK_EQ(p.inner.proto, 59);
	CHECK_EQ(p.payload_wire, 0);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, ayiya, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_AYIYA);
	CHECK_EQ(p.inner.family, 6);
	CHECK_EQ(p.inner.dport, 53);
	dc_decode(&cfg, DC_LINK_ETHERNET, ayiya, 14 + 20 + 8 + 5, sizeof ayiya, &p);
	CHECK_REASON(&p, DC_R_TRUNC_AYIYA);
	dc_decode(&cfg, DC_LINK_ETHERNET, ayiya, 14 + 20 + 8 + 30, sizeof ayiya, &p);
	CHECK_REASON(&p, DC_R_TRUNC_AYIYA);
	/* opcode 0 (heartbeat): plain UDP */
	uint8_t a2[sizeof ayiya];
	memcpy(a2, ayiya, sizeof a2);
	a2[14 + 20 + 8 + 2] = 0x10;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, a2, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
}

static void test_gre_carriers(void)
{
	static const uint8_t gre_udp[] = {
		ETH_V4, IP4C(72, 17),
		/* UDP 50000 -> 4754, length 52 */
		0xc3, 0x50, 0x12, 0x92, 0x00, 52, 0x00, 0x00,
		/* GRE: no flags, protocol IPv4 */
		0x00, 0x00, 0x08, 0x00,
		IN_IP4, IN_TCP,
	};
	static const uint8_t wccp2[] = {
		ETH_V4, IP4C(68, 47),
		/* GRE, protocol 0x883E (WCCP) */
		0x00, 0x00, 0x88, 0x3e,
		/* WCCP v2 redirect header: flags 0, service 0x5a, buckets 0 and 3 */
		0x00, 0x5a, 0x00, 0x03,
		IN_IP4, IN_TCP,
	};
	static const uint8_t wccp1[] = {
		ETH_V4, IP4C(64, 47),
		0x00, 0x00, 0x88, 0x3e,
		/* WCCP v1: the IPv4 packet right away */
		IN_IP4, IN_TCP,
	};
	static const uint8_t cmd[] = {
		ETH_MACS, 0x89, 0x09,
		/* Cisco MetaData: version 1, length 1, option 0x0001 (SGT), SGT 16, IPv4 */
		0x01, 0x01, 0x00, 0x01, 0x00, 0x10, 0x08, 0x00,
		IP4(28, 17), UDP(8),
	};
	static const uint8_t aruba[] = {
		ETH_V4, IP4C(96, 47),
		/* GRE, protocol 0x8200 (Aruba: an 802.11 frame) */
		0x00, 0x00, 0x82, 0x00,
		WLAN_HDR, LLC_SNAP_V4,
		IN_IP4, IN_TCP,
	};
	static const uint8_t gre_mpls[] = {
		ETH_V4, IP4C(72, 47),
		/* GRE with key 9, protocol MPLS */
		0x20, 0x00, 0x88, 0x47, 0x00, 0x00, 0x00, 0x09,
		/* label 2000, bottom */
		0x00, 0x7d, 0x01, 0x40,
		IN_IP4, IN_TCP,
	};
	struct dc_packet p;

	CHECK_EQ(DEC(DC_LINK_ETHERNET, gre_udp, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE_UDP);
	CHECK_EQ(p.outer.dport, 4754);
	check_inner_tcp(&p);
	dc_decode(&cfg, DC_LINK_ETHERNET, gre_udp, 14 + 20 + 8 + 3, sizeof gre_udp, &p);
	CHECK_REASON(&p, DC_R_TRUNC_GRE);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, wccp2, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_WCCP);
	CHECK_EQ(p.vni, 0x5a);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, wccp1, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_WCCP);
	CHECK_EQ(p.has_vni, 0);
	check_inner_tcp(&p);
	dc_decode(&cfg, DC_LINK_ETHERNET, wccp2, 14 + 20 + 4 + 2, sizeof wccp2, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WCCP);
	dc_decode(&cfg, DC_LINK_ETHERNET, wccp2, 14 + 20 + 4, sizeof wccp2, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WCCP);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, cmd, &p), DC_OK);
	CHECK_EQ(p.l3_off, 14 + 8);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	dc_decode(&cfg, DC_LINK_ETHERNET, cmd, 14 + 5, sizeof cmd, &p);
	CHECK_REASON(&p, DC_R_TRUNC_CMD);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, aruba, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	check_inner_tcp(&p);
	dc_decode(&cfg, DC_LINK_ETHERNET, aruba, 14 + 20 + 4 + 1, sizeof aruba, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WLAN);
	dc_decode(&cfg, DC_LINK_ETHERNET, aruba, 14 + 20 + 4 + 20, sizeof aruba, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WLAN);
	dc_decode(&cfg, DC_LINK_ETHERNET, aruba, 14 + 20 + 4 + 24 + 5, sizeof aruba, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WLAN);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, gre_mpls, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_GRE);
	CHECK_EQ(p.vni, 9);
	CHECK_EQ(p.mpls_top, 2000);
	check_inner_tcp(&p);
}

static void test_wlan(void)
{
	static const uint8_t data[] = { WLAN_HDR, LLC_SNAP_V4, IN_IP4, IN_TCP };
	static const uint8_t radiotap[] = {
		/* radiotap: version 0, pad, length 8, no fields present */
		0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
		WLAN_HDR, LLC_SNAP_V4, IN_IP4, IN_TCP,
	};
	static const uint8_t ppi[] = {
		/* PPI: version 0, flags 0, length 8, DLT 105 (802.11) */
		0x00, 0x00, 0x08, 0x00, 0x69, 0x00, 0x00, 0x00,
		WLAN_HDR, LLC_SNAP_V4, IN_IP4, IN_TCP,
	};
	static const uint8_t qos4[] = {
		/* QoS data (subtype 8), to-DS and from-DS: four addresses, QoS control */
		0x88, 0x03, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a,
		0x02, 0, 0, 0, 0, 0x0c, 0x10, 0x00, 0x02, 0, 0, 0, 0, 0x0d, 0x00, 0x00,
		LLC_SNAP_V4, IN_IP4, IN_TCP,
	};
	static const uint8_t nullfn[] = {
		/* null function (subtype 4): no body */
		0x48, 0x01, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a,
		0x02, 0, 0, 0, 0, 0x0c, 0x10, 0x00,
	};
	static const uint8_t beacon[] = {
		/* management frame (type 0, subtype 8) */
		0x80, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x0b,
		0x02, 0, 0, 0, 0, 0x0b, 0x10, 0x00,
	};
	static const uint8_t capwap_eth[] = {
		ETH_V4, IP4C(90, 17),
		/* UDP 45001 -> 5247, length 70 */
		0xaf, 0xc9, 0x14, 0x7f, 0x00, 70, 0x00, 0x00,
		/* CAPWAP: preamble 0; HLEN 2 words, RID 0, WBID 0, T 0 (802.3); fragment id,
		 * offset 0 */
		0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		IN_FRAME,
	};
	static const uint8_t capwap_wlan[] = {
		ETH_V4, IP4C(108, 17),
		/* UDP 5247 -> 45000, length 88 */
		0x14, 0x7f, 0xaf, 0xc8, 0x00, 88, 0x00, 0x00,
		/* CAPWAP: HLEN 2, WBID 1 (802.11), T 1 (native frame) */
		0x00, 0x10, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00,
		/* 802.11 with the frame control bytes swapped (Cisco) */
		0x01, 0x08, 0x00, 0x00, 0x02, 0, 0, 0, 0, 0x0b, 0x02, 0, 0, 0, 0, 0x0a,
		0x02, 0, 0, 0, 0, 0x0c, 0x10, 0x00,
		LLC_SNAP_V4, IN_IP4, IN_TCP,
	};
	struct dc_packet p;
	uint8_t f[sizeof capwap_wlan];

	CHECK_EQ(DEC(DC_LINK_IEEE802_11, data, &p), DC_OK);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, 24 + 8);
	CHECK_EQ(DEC(DC_LINK_RADIOTAP, radiotap, &p), DC_OK);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_PPI, ppi, &p), DC_OK);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_IEEE802_11, qos4, &p), DC_OK);
	check_inner_tcp(&p);
	CHECK_EQ(p.l3_off, 32 + 8);
	CHECK_EQ(DEC(DC_LINK_IEEE802_11, nullfn, &p), DC_NOT_IP);
	CHECK_EQ(DEC(DC_LINK_IEEE802_11, beacon, &p), DC_NOT_IP);
	dec(DC_LINK_IEEE802_11, data, 10, &p);
	CHECK_REASON(&p, DC_R_TRUNC_WLAN);
	dec(DC_LINK_RADIOTAP, radiotap, 6, &p);
	CHECK_REASON(&p, DC_R_TRUNC_LINK);

	CHECK_EQ(DEC(DC_LINK_ETHERNET, capwap_eth, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_CAPWAP);
	check_inner_tcp(&p);
	CHECK_EQ(DEC(DC_LINK_ETHERNET, capwap_wlan, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_CAPWAP);
	check_inner_tcp(&p);
	/* the standard byte order works as well */
	memcpy(f, capwap_wlan, sizeof f);
	f[50] = 0x08;
	f[51] = 0x01;
	CHECK_EQ(DEC(DC_LINK_ETHERNET, f, &p), DC_OK);
	check_inner_tcp(&p);
	dc_decode(&cfg, DC_LINK_ETHERNET, capwap_eth, 14 + 20 + 8 + 6, sizeof capwap_eth, &p);
	CHECK_REASON(&p, DC_R_TRUNC_CAPWAP);
	/* HLEN 1 word: shorter than the fixed header; HLEN 31 words: past the datagram */
	memcpy(f, capwap_eth, sizeof capwap_eth);
	f[43] = 0x08;
	dec(DC_LINK_ETHERNET, f, sizeof capwap_eth, &p);
	CHECK_REASON(&p, DC_R_CAPWAP_HLEN);
	f[43] = 0xf8;
	dec(DC_LINK_ETHERNET, f, sizeof capwap_eth, &p);
	CHECK_REASON(&p, DC_R_CAPWAP_HLEN);
	/* keep-alive (K) and DTLS (preamble type 1): not opened */
	memcpy(f, capwap_eth, sizeof capwap_eth);
	f[45] = 0x08;
	CHECK_EQ(dec(DC_LINK_ETHERNET, f, sizeof capwap_eth, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
	memcpy(f, capwap_eth, sizeof capwap_eth);
	f[42] = 0x01;
	CHECK_EQ(dec(DC_LINK_ETHERNET, f, sizeof capwap_eth, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_NONE);
}

/* A BIG TCP capture: Ethernet, IPv6 with payload length 0 and a Hop-by-Hop jumbo
 * option, TCP, `payload` bytes.  Returns a heap buffer of *n bytes. */
static uint8_t *jumbo_frame(uint32_t payload, uint32_t jumbo, size_t *n)
{
	static const uint8_t head[] = {
		ETH_V6,
		/* IPv6, payload length 0, next header 0 (hop-by-hop) */
		IP6(0, 0),
		/* hop-by-hop: next header TCP, length 0 (8 bytes), jumbo option C2 04 + value */
		6, 0, 0xc2, 0x04, 0, 0, 0, 0,
		TCP_SYN,
	};
	*n = sizeof head + payload;
	uint8_t *f = calloc(1, *n);
	if (!f)
		abort();
	memcpy(f, head, sizeof head);
	f[14 + 44] = (uint8_t)(jumbo >> 24);
	f[14 + 45] = (uint8_t)(jumbo >> 16);
	f[14 + 46] = (uint8_t)(jumbo >> 8);
	f[14 + 47] = (uint8_t)jumbo;
	return f;
}

static void test_bigtcp(void)
{
	struct dc_packet p;
	size_t n;
	uint8_t *f = jumbo_frame(70000, 8 + 20 + 70000, &n);
	CHECK_EQ(dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n, &p), DC_OK);
	CHECK_EQ(p.inner.proto, 6);
	CHECK_EQ(p.payload_wire, 70000);
	CHECK_EQ(p.l3_len, 40 + 8 + 20 + 70000);
	/* captured with a small snaplen: still whole headers, the jumbo length counts */
	CHECK_EQ(dc_decode(&cfg, DC_LINK_ETHERNET, f, 200, (uint32_t)n, &p), DC_OK);
	CHECK_EQ(p.payload_wire, 70000);
	/* trailing bytes after the jumbogram (padding): the jumbo length wins */
	CHECK_EQ(dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n + 10, &p), DC_OK);
	CHECK_EQ(p.payload_wire, 70000);
	free(f);
	/* a jumbo length below 65536 is not allowed; one longer than the wire is a lie;
	 * a jumbo option must be 4 bytes */
	f = jumbo_frame(100, 8 + 20 + 100, &n);
	dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n, &p);
	CHECK_REASON(&p, DC_R_IPV6_JUMBO);
	free(f);
	f = jumbo_frame(70000, 8 + 20 + 70001, &n);
	dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n, &p);
	CHECK_REASON(&p, DC_R_IPV6_JUMBO);
	f[14 + 43] = 3;
	dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n, &p);
	CHECK_REASON(&p, DC_R_IPV6_JUMBO);
	/* hop-by-hop cut by the capture: a truncation */
	dc_decode(&cfg, DC_LINK_ETHERNET, f, 14 + 40 + 4, (uint32_t)n, &p);
	CHECK_REASON(&p, DC_R_TRUNC_IPV6_EXT);
	free(f);

	/* IPv4 total length 0 with 70000 bytes of TCP payload */
	static const uint8_t h4[] = { ETH_V4, IP4(0, 6), TCP_SYN };
	n = sizeof h4 + 70000;
	f = calloc(1, n);
	if (!f)
		abort();
	memcpy(f, h4, sizeof h4);
	CHECK_EQ(dc_decode(&cfg, DC_LINK_ETHERNET, f, (uint32_t)n, (uint32_t)n, &p), DC_OK);
	CHECK_EQ(p.payload_wire, 70000);
	CHECK_EQ(p.l3_len, 20 + 20 + 70000);
	free(f);
}

static unsigned ipv4_sum_ok(const uint8_t *h)
{
	uint32_t sum = 0;
	for (unsigned i = 0; i < 20; i += 2)
		sum += (uint32_t)h[i] << 8 | h[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static void test_resize_enclosing(void)
{
	uint8_t f[sizeof gtpu_frame];
	struct dc_packet p;

	/* VXLAN (with a VLAN tag): the inner IP header at VXLAN_OFF + 8 + 14 grows by
	 * 100 bytes: outer IPv4 total length and UDP length follow, checksums fixed */
	uint8_t v[sizeof vxlan_frame];
	memcpy(v, vxlan_frame, sizeof v);
	CHECK_EQ(dc_resize_enclosing(&cfg, DC_LINK_ETHERNET, vxlan_frame, sizeof vxlan_frame,
				     sizeof vxlan_frame, v, VXLAN_OFF + 8 + 14, 100), 0);
	CHECK_EQ(v[18 + 2] << 8 | v[18 + 3], 190);
	CHECK(ipv4_sum_ok(v + 18));
	CHECK_EQ(v[38 + 4] << 8 | v[38 + 5], 170);
	CHECK_EQ(v[38 + 6] | v[38 + 7], 0);
	/* the inner header itself is left alone */
	CHECK(memcmp(v + VXLAN_OFF, vxlan_frame + VXLAN_OFF, sizeof v - VXLAN_OFF) == 0);
	/* not an IP header the walk reaches */
	CHECK_EQ(dc_resize_enclosing(&cfg, DC_LINK_ETHERNET, vxlan_frame, sizeof vxlan_frame,
				     sizeof vxlan_frame, v, VXLAN_OFF + 8, 100), -EINVAL);
	/* a total length that would not fit in 16 bits */
	CHECK_EQ(dc_resize_enclosing(&cfg, DC_LINK_ETHERNET, vxlan_frame, sizeof vxlan_frame,
				     sizeof vxlan_frame, v, VXLAN_OFF + 8 + 14, 65500), -EOVERFLOW);
	/* GTP-U: its length follows too */
	memcpy(f, gtpu_frame, sizeof f);
	CHECK_EQ(dc_resize_enclosing(&cfg, DC_LINK_ETHERNET, gtpu_frame, sizeof gtpu_frame,
				     sizeof gtpu_frame, f, GTP_OFF + 8, 1000), 0);
	CHECK_EQ(f[GTP_OFF + 2] << 8 | f[GTP_OFF + 3], 1040);
	CHECK_EQ(f[14 + 2] << 8 | f[14 + 3], 1076);
	/* the outermost header: nothing encloses it */
	memcpy(f, gtpu_frame, sizeof f);
	CHECK_EQ(dc_resize_enclosing(&cfg, DC_LINK_ETHERNET, gtpu_frame, sizeof gtpu_frame,
				     sizeof gtpu_frame, f, 14, 1000), 0);
	CHECK(memcmp(f, gtpu_frame, sizeof f) == 0);
	(void)p;
}

/* ---------------- names, counters, formatting ---------------- */

static void test_names_and_format(void)
{
	static const char *const want[] = {
		"ok", "not-ip", "unsupported", "truncated-link", "truncated-vlan", "vlan-depth",
		"truncated-ipv4", "bad-ipv4-version", "bad-ihl", "bad-ipv4-len", "truncated-ipv6",
		"bad-ipv6-version", "truncated-ipv6-ext", "ipv6-ext-depth", "truncated-tcp",
		"bad-tcp-offset", "truncated-udp", "bad-udp-len", "truncated-icmp",
		"truncated-sctp", "truncated-vxlan", "vxlan-flags", "truncated-geneve",
		"geneve-version", "geneve-optlen", "truncated-gre", "gre-version",
		"truncated-erspan", "erspan-version", "tunnel-depth",
		"truncated-gtp", "gtp-version", "gtp-len", "gtp-ext", "truncated-mpls",
		"mpls-depth", "truncated-vxlan-gpe", "vxlan-gpe-flags", "truncated-nsh",
		"nsh-version", "nsh-len", "truncated-teredo", "truncated-ayiya",
		"truncated-wccp", "truncated-cmd", "truncated-wlan", "truncated-capwap",
		"capwap-hlen", "bad-ipv6-jumbo", "layer-depth",
	};
	CHECK_EQ(sizeof want / sizeof want[0], DC_R__COUNT);
	for (int r = 0; r < DC_R__COUNT; r++)
		CHECK(strcmp(dc_reason_name(r), want[r]) == 0);
	CHECK(strcmp(dc_reason_name(DC_R__COUNT), "unknown") == 0);
	CHECK(strcmp(dc_reason_name(-1), "unknown") == 0);
	for (int t = 0; t < DC_TUN__COUNT; t++)
		CHECK(strcmp(dc_tunnel_name(t), "unknown") != 0);
	CHECK(strcmp(dc_tunnel_name(DC_TUN_VXLAN), "vxlan") == 0);
	CHECK(strcmp(dc_tunnel_name(DC_TUN_6IN4), "6in4") == 0);
	CHECK(!dc_is_malformed(DC_NOT_IP));
	CHECK(dc_is_malformed(DC_R_TUNNEL_DEPTH));

	struct dc_packet p;
	char buf[DC_TUPLE_STRLEN];
	DEC(DC_LINK_ETHERNET, vxlan_frame, &p);
	CHECK(strcmp(dc_tuple_format(&p.outer, buf, sizeof buf),
		     "192.168.0.1:45000 -> 192.168.0.2:4789 UDP") == 0);
	CHECK(strcmp(dc_tuple_format(&p.inner, buf, sizeof buf),
		     "10.244.1.2:45228 -> 10.244.2.3:443 TCP") == 0);
	/* a short buffer is cut, never overrun */
	char small[8];
	dc_tuple_format(&p.outer, small, sizeof small);
	CHECK_EQ(strlen(small), 7);
	static const uint8_t icmp6[] = { ETH_V6, IP6(8, 58), 0x80, 0x00, 0, 0, 0, 1, 0, 1 };
	DEC(DC_LINK_ETHERNET, icmp6, &p);
	CHECK(strcmp(dc_tuple_format(&p.outer, buf, sizeof buf),
		     "[2001:db8::1] -> [2001:db8::2] ICMPv6 128/0") == 0);

	struct dc_counters c;
	memset(&c, 0, sizeof c);
	DEC(DC_LINK_ETHERNET, vxlan_frame, &p);
	dc_count(&c, &p);
	dc_count(&c, &p);
	dec(DC_LINK_ETHERNET, vxlan_frame, 20, &p);
	dc_count(&c, &p);
	CHECK_EQ(c.packets, 3);
	CHECK_EQ(c.by_tunnel[DC_TUN_VXLAN], 2);
	CHECK_EQ(c.by_reason[DC_OK], 2);
	CHECK_EQ(c.by_reason[DC_R_TRUNC_IPV4], 1);

	struct dc_config k;
	dc_config_default(&k);
	CHECK_EQ(k.vxlan_ports[0], 4789);
	CHECK_EQ(k.vxlan_ports[1], 8472);
	CHECK_EQ(k.geneve_port, 6081);
	CHECK_EQ(k.max_tunnel_depth, 3);
	CHECK_EQ(k.decap, 1);
	CHECK_EQ(dc_config_add_vxlan_port(&k, 4789), 0); /* already there: no new slot */
	for (int i = 0; i < DC_MAX_VXLAN_PORTS - 2; i++)
		CHECK_EQ(dc_config_add_vxlan_port(&k, (uint16_t)(10000 + i)), 0);
	CHECK_EQ(dc_config_add_vxlan_port(&k, 20000), -ENOSPC);
	CHECK_EQ(dc_config_add_vxlan_port(&k, 0), -EINVAL);
}

/* Every prefix of every good frame: whatever comes out is a truncation (or OK for a
 * cut in the payload), and nothing is read past caplen (ASan build checks that). */
static void test_all_prefixes(void)
{
	static const struct { const uint8_t *f; size_t n; } frames[] = {
		{ vxlan_frame, sizeof vxlan_frame },
		{ geneve_frame, sizeof geneve_frame },
		{ gtpu_frame, sizeof gtpu_frame },
		{ gtpu_ext_frame, sizeof gtpu_ext_frame },
		{ gpe_nsh_frame, sizeof gpe_nsh_frame },
	};
	for (size_t i = 0; i < sizeof frames / sizeof frames[0]; i++) {
		for (size_t n = 0; n <= frames[i].n; n++) {
			struct dc_packet p;
			/* A heap copy of exactly n bytes so ASan sees any overread. */
			uint8_t *copy = n ? malloc(n) : NULL;
			if (n)
				memcpy(copy, frames[i].f, n);
			dc_decode(&cfg, DC_LINK_ETHERNET, copy, (uint32_t)n,
				  (uint32_t)frames[i].n, &p);
			const char *name = dc_reason_name(p.reason);
			CHECK(p.reason == DC_OK || strncmp(name, "truncated-", 10) == 0);
			free(copy);
		}
	}
}

int main(void)
{
	dc_config_default(&cfg);
	test_ethernet_tcp();
	test_ethernet_padding();
	test_vlan_qinq();
	test_link_types();
	test_ipv4_options_and_errors();
	test_snaplen_cut_is_not_malformed();
	test_ipv4_fragments();
	test_ipv6_ext_headers();
	test_ipv6_ext_depth();
	test_ipv6_fragments();
	test_l4();
	test_vxlan();
	test_geneve();
	test_gre();
	test_erspan();
	test_ip_in_ip();
	test_nested_and_depth();
	test_gtp();
	test_mpls();
	test_vxlan_gpe_nsh();
	test_teredo_ayiya();
	test_gre_carriers();
	test_wlan();
	test_bigtcp();
	test_resize_enclosing();
	test_names_and_format();
	test_all_prefixes();
	/* every malformed reason has a test that produces it */
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		if (!reason_seen[r]) {
			failures++;
			fprintf(stderr, "no test produces reason %s\n", dc_reason_name(r));
		}
	printf("decode unit: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
