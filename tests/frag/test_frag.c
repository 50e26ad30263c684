/* Unit tests of frag/: datagrams are built here, cut into fragments the way an IP
 * stack does, decoded with dc_decode() and offered to fr_add() in every order that
 * matters; the rebuilt frame is decoded again and its payload compared with the
 * original bytes.  Every frame given to fr_add() must come back exactly once (in a
 * datagram, as FR_PASS or through the release callback): the tests count them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "frag.h"

static int failures, checks;

#define CHECK(cond) do { checks++; if (!(cond)) { failures++; \
	fprintf(stderr, "%s:%d: %s: CHECK(%s) failed\n", __FILE__, __LINE__, __func__, #cond); } } while (0)
#define CHECK_EQ(a, b) do { long long _a = (long long)(a), _b = (long long)(b); checks++; \
	if (_a != _b) { failures++; fprintf(stderr, "%s:%d: %s: %s == %lld, expected %s == %lld\n", \
	__FILE__, __LINE__, __func__, #a, _a, #b, _b); } } while (0)

/* ---- frames ---- */

struct frame {
	uint8_t b[4096];
	uint32_t n;
};

static void put(struct frame *f, const void *p, uint32_t n)
{
	if (f->n + n > sizeof f->b)
		abort();
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

static void put16(struct frame *f, uint32_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put(f, b, 2);
}

static void put32(struct frame *f, uint32_t v)
{
	put16(f, v >> 16);
	put16(f, v & 0xffff);
}

static void eth(struct frame *f, uint16_t type)
{
	static const uint8_t macs[12] = { 2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1 };
	put(f, macs, 12);
	put16(f, type);
}

static void csum4(uint8_t *h)
{
	uint32_t s = 0;
	h[10] = h[11] = 0;
	for (int i = 0; i < 20; i += 2)
		s += (uint32_t)h[i] << 8 | h[i + 1];
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	s = ~s & 0xffff;
	h[10] = (uint8_t)(s >> 8);
	h[11] = (uint8_t)s;
}

/* IPv4 header (no options): total length tl, id, fragment word fw, protocol, a -> b */
static void ip4(struct frame *f, uint32_t tl, uint32_t id, uint32_t fw, uint8_t proto,
		uint32_t a, uint32_t b)
{
	uint32_t at = f->n;
	put16(f, 0x4500);
	put16(f, tl);
	put16(f, id);
	put16(f, fw);
	uint8_t ttlp[2] = { 64, proto };
	put(f, ttlp, 2);
	put16(f, 0);
	put32(f, a);
	put32(f, b);
	csum4(f->b + at);
}

#define A_POD 0x0af40102u  /* 10.244.1.2 */
#define B_POD 0x0af40203u  /* 10.244.2.3 */
#define A_NODE 0xc0a80001u /* 192.168.0.1 */
#define B_NODE 0xc0a80002u

/* A UDP datagram 5000 -> 5001 with n bytes of payload (byte i = i * 7). */
static uint32_t udp_datagram(uint8_t *d, uint32_t n)
{
	d[0] = 0x13; d[1] = 0x88; d[2] = 0x13; d[3] = 0x89;
	d[4] = (uint8_t)((n + 8) >> 8); d[5] = (uint8_t)(n + 8); d[6] = d[7] = 0;
	for (uint32_t i = 0; i < n; i++)
		d[8 + i] = (uint8_t)(i * 7);
	return n + 8;
}

/* Cuts the IPv4 payload d[0..len) into fragments of `size` bytes (a multiple of 8),
 * each behind `prefix` (a link header, or a carrier's headers up to the inner IP):
 * prefix_fn writes it given the IP datagram length that follows. */
typedef void (*prefix_fn)(struct frame *f, uint32_t ip_len);

static void eth_prefix(struct frame *f, uint32_t ip_len)
{
	(void)ip_len;
	eth(f, 0x0800);
}

static unsigned fragment4(const uint8_t *d, uint32_t len, uint32_t size, uint32_t id,
			  uint8_t proto, uint32_t a, uint32_t b, prefix_fn prefix,
			  struct frame *out, unsigned max)
{
	unsigned k = 0;
	for (uint32_t off = 0; off < len; off += size) {
		if (k == max)
			abort();
		uint32_t n = len - off < size ? len - off : size;
		int more = off + n < len;
		struct frame *f = &out[k++];
		f->n = 0;
		prefix(f, 20 + n);
		ip4(f, 20 + n, id, (more ? 0x2000 : 0) | (off / 8), proto, a, b);
		put(f, d + off, n);
	}
	return k;
}

/* ---- the table, and an account of every frame given to it ---- */

struct account {
	unsigned in, completed, passed, released;
	unsigned why[FR_WHY__COUNT];
};

static void on_release(void *ctx, const struct fr_fragment *f, enum fr_why why)
{
	struct account *a = ctx;
	a->released++;
	if ((unsigned)why < FR_WHY__COUNT)
		a->why[why]++;
	CHECK(f->frame != NULL && f->caplen > 0);
}

static struct fr_table *table(struct account *a, void (*tune)(struct fr_config *))
{
	struct fr_config c;
	fr_config_default(&c);
	c.release = on_release;
	c.release_ctx = a;
	if (tune)
		tune(&c);
	memset(a, 0, sizeof *a);
	struct fr_table *t = fr_new(&c);
	if (!t)
		abort();
	return t;
}

static struct dc_config dcfg;

/* Decodes and offers one frame; returns fr_add()'s result. */
static int offer(struct fr_table *t, struct account *a, const struct frame *f, uint64_t ts,
		 struct fr_datagram *out)
{
	struct dc_packet p;
	dc_decode(&dcfg, DC_LINK_ETHERNET, f->b, f->n, f->n, &p);
	CHECK(p.frag != DC_FRAG_NONE);
	int r = fr_add(t, 1, &p, f->b, ts, out);
	a->in++;
	if (r == FR_COMPLETE)
		a->completed += out->nfrags;
	else if (r == FR_PASS)
		a->passed++;
	return r;
}

/* Every frame came back exactly once, and the table holds nothing. */
static void check_account(struct fr_table *t, struct account *a)
{
	fr_flush(t);
	CHECK_EQ(a->completed + a->passed + a->released, a->in);
	struct fr_stats s;
	fr_stats(t, &s);
	CHECK_EQ(s.in_progress, 0);
}

/* The rebuilt frame decodes as the whole UDP datagram of n payload bytes. */
static void check_udp(const struct fr_datagram *dg, uint32_t n, int family)
{
	struct dc_packet p;
	CHECK_EQ(dc_decode(&dcfg, dg->linktype, dg->frame, dg->len, dg->wirelen, &p), DC_OK);
	CHECK_EQ(p.frag, DC_FRAG_NONE);
	CHECK_EQ(p.inner.family, family);
	CHECK_EQ(p.inner.proto, 17);
	CHECK_EQ(p.inner.sport, 5000);
	CHECK_EQ(p.inner.dport, 5001);
	CHECK_EQ(p.payload_wire, n);
	CHECK_EQ(p.payload_len, n);
	int same = p.payload_off + n <= dg->len;
	for (uint32_t i = 0; same && i < n; i++)
		same = dg->frame[p.payload_off + i] == (uint8_t)(i * 7);
	CHECK(same);
}

/* ---- tests ---- */

static void test_orders(void)
{
	static uint8_t d[4000];
	static struct frame fr[8];
	uint32_t len = udp_datagram(d, 2992); /* 3000 bytes: 1480 + 1480 + 40 */
	unsigned k = fragment4(d, len, 1480, 77, 17, A_POD, B_POD, eth_prefix, fr, 8);
	CHECK_EQ(k, 3);
	static const int orders[][3] = { { 0, 1, 2 }, { 2, 1, 0 }, { 1, 2, 0 }, { 2, 0, 1 } };
	for (unsigned o = 0; o < sizeof orders / sizeof orders[0]; o++) {
		struct account a;
		struct fr_table *t = table(&a, NULL);
		struct fr_datagram dg;
		CHECK_EQ(offer(t, &a, &fr[orders[o][0]], 100, &dg), FR_HELD);
		CHECK_EQ(offer(t, &a, &fr[orders[o][1]], 200, &dg), FR_HELD);
		CHECK_EQ(offer(t, &a, &fr[orders[o][2]], 300, &dg), FR_COMPLETE);
		check_udp(&dg, 2992, 4);
		CHECK_EQ(dg.nfrags, 3);
		CHECK_EQ(dg.ts_us, 300);
		CHECK_EQ(dg.obs, 1);
		/* the original frames, in arrival order, as they were */
		for (unsigned i = 0; i < 3 && i < dg.nfrags; i++) {
			const struct frame *orig = &fr[orders[o][i]];
			CHECK_EQ(dg.frags[i].caplen, orig->n);
			CHECK(memcmp(dg.frags[i].frame, orig->b, orig->n) == 0);
			CHECK_EQ(dg.frags[i].ts_us, 100 * (i + 1));
		}
		/* the rebuilt header: no fragment bits, a good checksum */
		CHECK_EQ(dg.frame[14 + 6] & 0x3f, 0);
		CHECK_EQ(dg.frame[14 + 7], 0);
		struct fr_stats s;
		fr_stats(t, &s);
		CHECK_EQ(s.reassembled, 1);
		CHECK_EQ(s.fragments, 3);
		CHECK_EQ(s.in_progress, 0);
		check_account(t, &a);
		fr_free(t);
	}
}

static void test_duplicates_and_overlaps(void)
{
	static uint8_t d[4000];
	static struct frame fr[8], odd;
	uint32_t len = udp_datagram(d, 2992);
	fragment4(d, len, 1480, 78, 17, A_POD, B_POD, eth_prefix, fr, 8);
	struct fr_datagram dg;
	struct fr_stats s;
	struct account a;

	/* the same fragment twice: the second is a duplicate, the datagram completes */
	struct fr_table *t = table(&a, NULL);
	CHECK_EQ(offer(t, &a, &fr[0], 1, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[0], 2, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_DUPLICATE);
	CHECK_EQ(offer(t, &a, &fr[1], 3, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[2], 4, &dg), FR_COMPLETE);
	CHECK_EQ(dg.nfrags, 3);
	check_udp(&dg, 2992, 4);
	/* a fragment covering two held ones exactly (one run): also a duplicate */
	struct frame big[2];
	fragment4(d, len, 2960, 79, 17, A_POD, B_POD, eth_prefix, big, 2);
	static struct frame fr79[8];
	fragment4(d, len, 1480, 79, 17, A_POD, B_POD, eth_prefix, fr79, 8);
	CHECK_EQ(offer(t, &a, &fr79[0], 5, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr79[1], 6, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &big[0], 7, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_DUPLICATE);
	CHECK_EQ(offer(t, &a, &fr79[2], 8, &dg), FR_COMPLETE);
	fr_stats(t, &s);
	CHECK_EQ(s.duplicates, 2);
	CHECK_EQ(s.reassembled, 2);
	check_account(t, &a);
	fr_free(t);

	/* bytes 1000..2000 while 0..1480 is held: a partial overlap discards it all */
	t = table(&a, NULL);
	CHECK_EQ(offer(t, &a, &fr[0], 1, &dg), FR_HELD);
	odd.n = 0;
	eth(&odd, 0x0800);
	ip4(&odd, 20 + 1000, 78, 0x2000 | 125, 17, A_POD, B_POD);
	put(&odd, d + 1000, 1000);
	CHECK_EQ(offer(t, &a, &odd, 2, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_OVERLAP);
	CHECK_EQ(a.why[FR_WHY_OVERLAP], 1); /* fr[0] came back */
	/* the rest starts a new datagram that never completes */
	CHECK_EQ(offer(t, &a, &fr[1], 3, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[2], 4, &dg), FR_HELD);
	fr_stats(t, &s);
	CHECK_EQ(s.overlapping, 1);
	CHECK_EQ(s.reassembled, 0);
	/* a fragment reaching past the last one from inside it: an overlap too */
	odd.n = 0;
	eth(&odd, 0x0800);
	ip4(&odd, 20 + 1480, 81, 0x2000 | 125, 17, A_POD, B_POD);
	put(&odd, d + 1000, 1480);
	static struct frame fr81[8];
	fragment4(d, len, 1480, 81, 17, A_POD, B_POD, eth_prefix, fr81, 8);
	CHECK_EQ(offer(t, &a, &fr81[0], 5, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &odd, 5, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_OVERLAP);
	fr_stats(t, &s);
	CHECK_EQ(s.overlapping, 2);
	/* a last fragment whose end (3080) disagrees with the one known (3000) */
	odd.n = 0;
	eth(&odd, 0x0800);
	ip4(&odd, 20 + 1600, 78, 185, 17, A_POD, B_POD); /* offset 1480, last, 1600 bytes */
	put(&odd, d, 1600);
	CHECK_EQ(offer(t, &a, &odd, 6, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	check_account(t, &a);
	fr_free(t);
}

static void test_timeout(void)
{
	static uint8_t d[4000];
	static struct frame fr[8];
	uint32_t len = udp_datagram(d, 2992);
	fragment4(d, len, 1480, 80, 17, A_POD, B_POD, eth_prefix, fr, 8);
	struct account a;
	struct fr_table *t = table(&a, NULL);
	struct fr_datagram dg;
	uint64_t t0 = 1000000000;
	CHECK_EQ(offer(t, &a, &fr[0], t0, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[1], t0 + 1000, &dg), FR_HELD);
	/* the last fragment never comes */
	CHECK_EQ(fr_expire(t, t0 + 29999999), 0);
	CHECK_EQ(a.released, 0);
	CHECK_EQ(fr_expire(t, t0 + 30000000), 1);
	CHECK_EQ(a.why[FR_WHY_TIMEOUT], 2);
	struct fr_stats s;
	fr_stats(t, &s);
	CHECK_EQ(s.timed_out, 1);
	CHECK_EQ(s.in_progress, 0);
	/* a time going backwards expires nothing */
	CHECK_EQ(offer(t, &a, &fr[0], t0 + 50000000, &dg), FR_HELD);
	CHECK_EQ(fr_expire(t, t0), 0);
	/* the next fragment, far later, finds its datagram expired: it starts anew */
	CHECK_EQ(offer(t, &a, &fr[1], t0 + 90000000, &dg), FR_HELD);
	fr_stats(t, &s);
	CHECK_EQ(s.timed_out, 2);
	CHECK_EQ(s.in_progress, 1);
	check_account(t, &a);
	fr_free(t);
}

static void test_ipv6(void)
{
	/* IPv6 2001:db8::1 -> ::2, a hop-by-hop header (unfragmentable), then the
	 * fragment header; UDP 5000 -> 5001 with 2000 bytes, in 1232-byte pieces */
	static uint8_t d[3000];
	uint32_t len = udp_datagram(d, 2000);
	static struct frame fr[4];
	unsigned k = 0;
	for (uint32_t off = 0; off < len; off += 1232, k++) {
		uint32_t n = len - off < 1232 ? len - off : 1232;
		int more = off + n < len;
		struct frame *f = &fr[k];
		f->n = 0;
		eth(f, 0x86dd);
		put32(f, 0x60000000);
		put16(f, 8 + 8 + n);
		uint8_t nh_hl[2] = { 0, 64 };
		put(f, nh_hl, 2);
		put32(f, 0x20010db8); put32(f, 0); put32(f, 0); put32(f, 1);
		put32(f, 0x20010db8); put32(f, 0); put32(f, 0); put32(f, 2);
		/* hop-by-hop: next header 44 (fragment), length 0, PadN 4 */
		uint8_t hbh[8] = { 44, 0, 1, 4, 0, 0, 0, 0 };
		put(f, hbh, 8);
		/* fragment: next header UDP, offset, M, id 0xabcd */
		uint8_t fh[4] = { 17, 0, (uint8_t)(off >> 8), (uint8_t)((off & 0xf8) | more) };
		put(f, fh, 4);
		put32(f, 0xabcd);
		put(f, d + off, n);
	}
	CHECK_EQ(k, 2);
	struct account a;
	struct fr_table *t = table(&a, NULL);
	struct fr_datagram dg;
	CHECK_EQ(offer(t, &a, &fr[1], 1, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[0], 2, &dg), FR_COMPLETE);
	check_udp(&dg, 2000, 6);
	struct dc_packet p;
	dc_decode(&dcfg, DC_LINK_ETHERNET, dg.frame, dg.len, dg.wirelen, &p);
	CHECK_EQ(p.ip_optlen, 8); /* the hop-by-hop header stays, the fragment header goes */
	CHECK_EQ(dg.len, 14 + 40 + 8 + len);
	CHECK_EQ(dg.frame[14 + 40], 17);

	/* a non-final piece whose length is not a multiple of 8 is refused (RFC 8200) */
	struct frame bad = fr[0];
	bad.n -= 4;
	bad.b[14 + 5] -= 4;
	CHECK_EQ(offer(t, &a, &bad, 3, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	/* any overlap discards the datagram (RFC 5722) */
	CHECK_EQ(offer(t, &a, &fr[0], 4, &dg), FR_HELD);
	struct frame ov = fr[1];
	ov.b[14 + 40 + 8 + 3] = (uint8_t)((1224 & 0xf8) | 0); /* offset 1224 < 1232 */
	ov.b[14 + 40 + 8 + 2] = (uint8_t)(1224 >> 8);
	CHECK_EQ(offer(t, &a, &ov, 5, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_OVERLAP);
	check_account(t, &a);
	fr_free(t);
}

/* ---- tunnels ---- */

static uint32_t vni_sport = 45000;

/* Outer Ethernet, IPv4 (not fragmented), UDP to 4789, VXLAN 42, inner Ethernet: in
 * front of an inner IP datagram of ip_len bytes. */
static void vxlan_prefix(struct frame *f, uint32_t ip_len)
{
	eth(f, 0x0800);
	ip4(f, 20 + 8 + 8 + 14 + ip_len, 9, 0x4000, 17, A_NODE, B_NODE);
	put16(f, vni_sport);
	put16(f, 4789);
	put16(f, 8 + 8 + 14 + ip_len);
	put16(f, 0);
	put32(f, 0x08000000);
	put32(f, 42 << 8);
	eth(f, 0x0800);
}

static void test_vxlan_underlay(void)
{
	/* the whole VXLAN packet: inner TCP 45228 -> 443 with 1800 bytes of payload */
	static uint8_t d[3000];
	struct frame in;
	in.n = 0;
	put16(&in, vni_sport); put16(&in, 4789);
	uint32_t inner_ip = 20 + 20 + 1800;
	put16(&in, 8 + 8 + 14 + inner_ip); put16(&in, 0);
	put32(&in, 0x08000000); put32(&in, 42 << 8);
	eth(&in, 0x0800);
	ip4(&in, inner_ip, 5, 0x4000, 6, A_POD, B_POD);
	uint8_t tcp[20] = { 0xb0, 0xac, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff };
	put(&in, tcp, 20);
	for (int i = 0; i < 1800; i++) {
		uint8_t c = (uint8_t)i;
		put(&in, &c, 1);
	}
	memcpy(d, in.b, in.n);
	/* the underlay's MTU cuts the carrier (UDP) in two: 1480 + the rest */
	static struct frame fr[4];
	unsigned k = fragment4(d, in.n, 1480, 300, 17, A_NODE, B_NODE, eth_prefix, fr, 4);
	CHECK_EQ(k, 2);
	struct account a;
	struct fr_table *t = table(&a, NULL);
	struct fr_datagram dg;
	struct dc_packet p;
	dc_decode(&dcfg, DC_LINK_ETHERNET, fr[0].b, fr[0].n, fr[0].n, &p);
	CHECK_EQ(p.tunnel, DC_TUN_NONE); /* a fragmented carrier is not opened */
	CHECK_EQ(offer(t, &a, &fr[0], 1, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr[1], 2, &dg), FR_COMPLETE);
	CHECK_EQ(dc_decode(&dcfg, dg.linktype, dg.frame, dg.len, dg.wirelen, &p), DC_OK);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	CHECK_EQ(p.vni, 42);
	CHECK_EQ(p.outer.dport, 4789);
	CHECK_EQ(p.inner.proto, 6);
	CHECK_EQ(p.inner.sport, 45228);
	CHECK_EQ(p.inner.dport, 443);
	CHECK_EQ(p.payload_wire, 1800);
	CHECK_EQ(p.payload_len, 1800);
	CHECK_EQ(dg.frame[p.payload_off + 1799], (uint8_t)1799);
	check_account(t, &a);
	fr_free(t);
}

static void test_inner_fragments(void)
{
	/* the pod's UDP datagram (2000 bytes) is fragmented before it enters VXLAN:
	 * every fragment travels in its own, unfragmented, carrier */
	static uint8_t d[3000];
	uint32_t len = udp_datagram(d, 1992);
	static struct frame fr[4];
	unsigned k = fragment4(d, len, 1000, 301, 17, A_POD, B_POD, vxlan_prefix, fr, 4);
	CHECK_EQ(k, 2);
	struct account a;
	struct fr_table *t = table(&a, NULL);
	struct fr_datagram dg;
	struct dc_packet p;
	dc_decode(&dcfg, DC_LINK_ETHERNET, fr[1].b, fr[1].n, fr[1].n, &p);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	CHECK_EQ(p.frag, DC_FRAG_LATER);
	CHECK_EQ(offer(t, &a, &fr[1], 1, &dg), FR_HELD);
	/* the same inner datagram seen at another observation point stays apart */
	struct fr_datagram dg2;
	CHECK_EQ(fr_add(t, 2, &p, fr[1].b, 1, &dg2), FR_HELD);
	a.in++;
	CHECK_EQ(offer(t, &a, &fr[0], 2, &dg), FR_COMPLETE);
	CHECK_EQ(dg.nfrags, 2);
	check_udp(&dg, 1992, 4);
	dc_decode(&dcfg, dg.linktype, dg.frame, dg.len, dg.wirelen, &p);
	CHECK_EQ(p.tunnel, DC_TUN_VXLAN);
	CHECK_EQ(p.vni, 42);
	/* the carrier's lengths were grown to hold the whole inner datagram */
	CHECK_EQ(dg.frame[14 + 2] << 8 | dg.frame[14 + 3], 20 + 8 + 8 + 14 + 20 + len);
	CHECK_EQ(dg.frame[34 + 4] << 8 | dg.frame[34 + 5], 8 + 8 + 14 + 20 + len);
	struct fr_stats s;
	fr_stats(t, &s);
	CHECK_EQ(s.in_progress, 1); /* the copy seen at observation point 2 */
	check_account(t, &a);
	fr_free(t);

	/* The first fragment's carrier holds 4 more bytes after the inner datagram (the
	 * inner Ethernet frame's padding), and the capture cut them: the rebuilt frame
	 * says so in its wire length, and decodes with it. */
	struct frame padded = fr[0];
	uint32_t ol = (uint32_t)(padded.b[14 + 2] << 8 | padded.b[14 + 3]) + 4;
	padded.b[14 + 2] = (uint8_t)(ol >> 8);
	padded.b[14 + 3] = (uint8_t)ol;
	uint32_t ul = (uint32_t)(padded.b[34 + 4] << 8 | padded.b[34 + 5]) + 4;
	padded.b[34 + 4] = (uint8_t)(ul >> 8);
	padded.b[34 + 5] = (uint8_t)ul;
	t = table(&a, NULL);
	CHECK_EQ(offer(t, &a, &fr[1], 1, &dg), FR_HELD);
	dc_decode(&dcfg, DC_LINK_ETHERNET, padded.b, padded.n, padded.n + 4, &p);
	CHECK_EQ(p.reason, DC_OK);
	CHECK_EQ(fr_add(t, 1, &p, padded.b, 2, &dg), FR_COMPLETE);
	a.in++;
	a.completed += dg.nfrags;
	CHECK_EQ(dg.wirelen, dg.len + 4);
	check_udp(&dg, 1992, 4);
	check_account(t, &a);
	fr_free(t);
}

/* ---- caps and hostile input ---- */

static void small_memory(struct fr_config *c)
{
	c->max_bytes = 4u << 20;
}

static void many_datagrams(void)
{
	/* 10,000 datagrams whose last fragment never comes, at once */
	static uint8_t d[4000];
	uint32_t len = udp_datagram(d, 2992);
	for (int variant = 0; variant < 2; variant++) {
		struct account a;
		struct fr_table *t = table(&a, variant ? small_memory : NULL);
		struct fr_config c;
		fr_config_default(&c);
		uint64_t cap = variant ? (4u << 20) : c.max_bytes;
		struct fr_datagram dg;
		struct frame fr[4];
		uint64_t peak = 0;
		int over = 0;
		for (uint32_t i = 0; i < 10000; i++) {
			/* distinct ids and sources */
			fragment4(d, len, 1480, i & 0xffff, 17, A_POD + (i >> 16), B_POD, eth_prefix, fr, 4);
			offer(t, &a, &fr[0], 1000 + i, &dg);
			struct fr_stats s;
			fr_stats(t, &s);
			if (s.bytes > cap || s.in_progress > c.max_datagrams)
				over = 1;
			if (s.bytes > peak)
				peak = s.bytes;
		}
		struct fr_stats s;
		fr_stats(t, &s);
		CHECK(!over);
		CHECK(s.bytes_peak <= cap);
		CHECK_EQ(s.evicted, 10000 - s.in_progress);
		CHECK_EQ(a.why[FR_WHY_EVICTED], s.evicted);
		if (variant == 0)
			CHECK_EQ(s.in_progress, c.max_datagrams); /* the count cap bit first */
		else
			CHECK(s.in_progress < c.max_datagrams);   /* the memory cap bit first */
		printf("frag: 10000 incomplete datagrams, cap %llu bytes: %u held, %llu evicted, peak %llu bytes\n",
		       (unsigned long long)cap, s.in_progress, (unsigned long long)s.evicted,
		       (unsigned long long)s.bytes_peak);
		check_account(t, &a);
		fr_free(t);
	}
}

static void few_fragments(struct fr_config *c)
{
	c->max_fragments = 4;
}

static void test_hostile(void)
{
	static uint8_t d[70000];
	struct account a;
	struct fr_datagram dg;
	struct frame f;
	struct fr_stats s;
	struct fr_table *t = table(&a, NULL);

	/* offset 65528 (the largest) + 100 bytes: past 64 KiB */
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 20 + 100, 1, 0x1fff, 17, A_POD, B_POD);
	put(&f, d, 100);
	CHECK_EQ(offer(t, &a, &f, 1, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_TOO_BIG);
	/* a fragment with no payload */
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 20, 2, 0x2000 | 10, 17, A_POD, B_POD);
	CHECK_EQ(offer(t, &a, &f, 2, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	/* a non-final IPv4 fragment of 7 bytes: trimmed to nothing, refused */
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 27, 3, 0x2000, 17, A_POD, B_POD);
	put(&f, d, 7);
	CHECK_EQ(offer(t, &a, &f, 3, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	/* cut by the capture: cannot be reassembled */
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 20 + 1000, 4, 0x2000, 17, A_POD, B_POD);
	put(&f, d, 100);
	{
		struct dc_packet p;
		dc_decode(&dcfg, DC_LINK_ETHERNET, f.b, f.n, f.n + 900, &p);
		CHECK_EQ(fr_add(t, 1, &p, f.b, 4, &dg), FR_PASS);
		a.in++;
		a.passed++;
		CHECK_EQ(dg.why, FR_WHY_UNCAPTURED);
	}
	/* a final fragment ending elsewhere than the one already seen */
	uint32_t len = udp_datagram(d, 2992);
	struct frame fr[4], fr2[4];
	fragment4(d, len, 1480, 5, 17, A_POD, B_POD, eth_prefix, fr, 4);
	fragment4(d, len - 8, 1480, 5, 17, A_POD, B_POD, eth_prefix, fr2, 4);
	CHECK_EQ(offer(t, &a, &fr[2], 5, &dg), FR_HELD);
	CHECK_EQ(offer(t, &a, &fr2[2], 6, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	/* a middle fragment reaching past the known end (3000) */
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 20 + 1600, 5, 0x2000 | 185, 17, A_POD, B_POD);
	put(&f, d, 1600);
	CHECK_EQ(offer(t, &a, &f, 7, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_BAD);
	CHECK_EQ(offer(t, &a, &fr[0], 7, &dg), FR_HELD);
	/* a datagram of more than 65535 bytes, whole: refused when complete */
	fr_stats(t, &s);
	uint64_t too_big0 = s.too_big;
	static struct frame huge[64];
	memset(d, 'h', sizeof d);
	unsigned k = fragment4(d, 65528 + 8, 1480, 6, 17, A_POD, B_POD, eth_prefix, huge, 64);
	for (unsigned i = 0; i < k; i++)
		CHECK(offer(t, &a, &huge[i], 8 + i, &dg) != FR_COMPLETE);
	fr_stats(t, &s);
	CHECK_EQ(s.too_big, too_big0 + 1);
	check_account(t, &a);
	fr_free(t);

	/* more fragments than allowed: the datagram is given up */
	t = table(&a, few_fragments);
	static struct frame tiny[64];
	len = udp_datagram(d, 400);
	k = fragment4(d, len, 64, 7, 17, A_POD, B_POD, eth_prefix, tiny, 64);
	for (unsigned i = 0; i < k; i++)
		offer(t, &a, &tiny[i], 1 + i, &dg);
	fr_stats(t, &s);
	CHECK_EQ(s.too_big, 1);
	CHECK_EQ(s.reassembled, 0);
	check_account(t, &a);
	fr_free(t);

	/* bad configuration */
	struct fr_config c;
	fr_config_default(&c);
	c.max_datagrams = 0;
	errno = 0;
	CHECK(fr_new(&c) == NULL);
	CHECK_EQ(errno, EINVAL);
	/* not a fragment: passed with nothing to say */
	t = table(&a, NULL);
	f.n = 0;
	eth(&f, 0x0800);
	ip4(&f, 28, 8, 0, 17, A_POD, B_POD);
	put(&f, d, 8);
	struct dc_packet p;
	dc_decode(&dcfg, DC_LINK_ETHERNET, f.b, f.n, f.n, &p);
	CHECK_EQ(fr_add(t, 1, &p, f.b, 1, &dg), FR_PASS);
	CHECK_EQ(dg.why, FR_WHY_NONE);
	fr_free(t);
}

/* Many datagrams, their fragments shuffled, some duplicated, some lost: every frame
 * comes back once; every datagram whose fragments all came is rebuilt right. */
static void test_random(void)
{
	static uint8_t d[9000];
	static struct frame pool[4096];
	static uint32_t dgram_of[4096];
	uint64_t rng = 15;
#define RAND() (rng = rng * 6364136223846793005ull + 1442695040888963407ull, (uint32_t)(rng >> 33))
	unsigned n = 0;
	unsigned lost_dgrams = 0, whole = 0;
	for (uint32_t i = 0; i < 300; i++) {
		uint32_t len = udp_datagram(d, 100 + RAND() % 5000);
		struct frame fr[32];
		unsigned k = fragment4(d, len, 8 * (30 + RAND() % 150), 1000 + i, 17, A_POD, B_POD,
				       eth_prefix, fr, 32);
		if (k < 2) { /* small enough for one packet: not a fragment */
			whole++;
			continue;
		}
		int lost = 0;
		for (unsigned j = 0; j < k; j++) {
			if (RAND() % 50 == 0) {
				lost = 1;
				continue;
			}
			pool[n] = fr[j];
			dgram_of[n++] = i;
			if (RAND() % 20 == 0) {
				pool[n] = fr[j];
				dgram_of[n++] = i;
			}
		}
		lost_dgrams += lost;
	}
	/* shuffle within windows of 16, as a network reorders */
	for (unsigned i = 0; i < n; i++) {
		unsigned j = i + RAND() % 16;
		if (j >= n)
			continue;
		struct frame tmp = pool[i];
		pool[i] = pool[j];
		pool[j] = tmp;
		uint32_t u = dgram_of[i];
		dgram_of[i] = dgram_of[j];
		dgram_of[j] = u;
	}
	struct account a;
	struct fr_table *t = table(&a, NULL);
	struct fr_datagram dg;
	unsigned done = 0;
	for (unsigned i = 0; i < n; i++) {
		if (offer(t, &a, &pool[i], 1 + i, &dg) == FR_COMPLETE) {
			done++;
			struct dc_packet p;
			CHECK_EQ(dc_decode(&dcfg, dg.linktype, dg.frame, dg.len, dg.wirelen, &p), DC_OK);
			CHECK_EQ(p.frag, DC_FRAG_NONE);
			CHECK_EQ(p.payload_len, p.payload_wire);
			int same = 1;
			for (uint32_t b = 0; same && b < p.payload_len; b++)
				same = dg.frame[p.payload_off + b] == (uint8_t)(b * 7);
			CHECK(same);
		}
	}
	CHECK_EQ(done, 300 - lost_dgrams - whole);
	check_account(t, &a);
	fr_free(t);
#undef RAND
}

int main(void)
{
	dc_config_default(&dcfg);
	test_orders();
	test_duplicates_and_overlaps();
	test_timeout();
	test_ipv6();
	test_vxlan_underlay();
	test_inner_fragments();
	many_datagrams();
	test_hostile();
	test_random();
	CHECK(strcmp(fr_why_name(FR_WHY_OVERLAP), "overlap") == 0);
	CHECK(strcmp(fr_why_name(FR_WHY__COUNT), "unknown") == 0);
	printf("frag unit: %d checks, %d failed\n", checks, failures);
	return failures ? 1 : 0;
}
