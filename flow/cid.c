/* Community ID v1 (https://github.com/corelight/community-id-spec) and the small
 * SHA-1 it needs.
 *
 * SHA-1 is written here (FIPS 180-4, straightforward one-block-at-a-time form)
 * rather than taken from libgcrypt so that the flow module needs nothing beyond
 * nDPI, and so the hash is usable in the fuzzers and tests without crypto setup.
 * Community ID is not a security feature; SHA-1 is what the spec fixes.
 */
#include <errno.h>
#include <string.h>

#include "flow_int.h"

struct sha1 {
	uint32_t h[5];
	uint64_t len;      /* bytes hashed so far */
	uint8_t buf[64];
	uint32_t fill;     /* bytes in buf */
};

static inline uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_init(struct sha1 *s)
{
	s->h[0] = 0x67452301u;
	s->h[1] = 0xefcdab89u;
	s->h[2] = 0x98badcfeu;
	s->h[3] = 0x10325476u;
	s->h[4] = 0xc3d2e1f0u;
	s->len = 0;
	s->fill = 0;
}

static void sha1_block(struct sha1 *s, const uint8_t *b)
{
	uint32_t w[80];
	for (int i = 0; i < 16; i++)
		w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 |
		       (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
	for (int i = 16; i < 80; i++)
		w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);

	uint32_t a = s->h[0], bb = s->h[1], c = s->h[2], d = s->h[3], e = s->h[4];
	for (int i = 0; i < 80; i++) {
		uint32_t f, k;
		if (i < 20) {
			f = (bb & c) | (~bb & d);
			k = 0x5a827999u;
		} else if (i < 40) {
			f = bb ^ c ^ d;
			k = 0x6ed9eba1u;
		} else if (i < 60) {
			f = (bb & c) | (bb & d) | (c & d);
			k = 0x8f1bbcdcu;
		} else {
			f = bb ^ c ^ d;
			k = 0xca62c1d6u;
		}
		uint32_t tmp = rol32(a, 5) + f + e + k + w[i];
		e = d;
		d = c;
		c = rol32(bb, 30);
		bb = a;
		a = tmp;
	}
	s->h[0] += a;
	s->h[1] += bb;
	s->h[2] += c;
	s->h[3] += d;
	s->h[4] += e;
}

static void sha1_update(struct sha1 *s, const void *data, size_t n)
{
	const uint8_t *p = data;
	s->len += n;
	while (n > 0) {
		size_t take = 64 - s->fill;
		if (take > n)
			take = n;
		memcpy(s->buf + s->fill, p, take);
		s->fill += (uint32_t)take;
		p += take;
		n -= take;
		if (s->fill == 64) {
			sha1_block(s, s->buf);
			s->fill = 0;
		}
	}
}

static void sha1_final(struct sha1 *s, uint8_t out[20])
{
	uint64_t bits = s->len * 8;
	/* Pad in place: 0x80, zeros up to 56 mod 64, then the bit length. */
	s->buf[s->fill++] = 0x80;
	if (s->fill > 56) {
		memset(s->buf + s->fill, 0, 64 - s->fill);
		sha1_block(s, s->buf);
		s->fill = 0;
	}
	memset(s->buf + s->fill, 0, 56 - s->fill);
	for (int i = 0; i < 8; i++)
		s->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
	sha1_block(s, s->buf);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(s->h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
		out[4 * i + 3] = (uint8_t)s->h[i];
	}
}

/* Whole-buffer SHA-1; also used by the unit test against FIPS vectors. */
void fl_sha1(const void *data, size_t len, uint8_t out[20])
{
	struct sha1 s;
	sha1_init(&s);
	sha1_update(&s, data, len);
	sha1_final(&s, out);
}

static size_t base64(const uint8_t *in, size_t n, char *out)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = tab[(v >> 18) & 63];
		out[o++] = tab[(v >> 12) & 63];
		out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < n ? tab[v & 63] : '=';
	}
	out[o] = 0;
	return o;
}

/* The ICMP "port" mapping of the spec: request/reply pairs become a two-way
 * conversation (type, counterpart type); every other type is one-way and keeps
 * (type, code).  Returns 1 when the message is one-way. */
static int icmp4_counterpart(uint8_t type, uint8_t code, uint16_t *p1, uint16_t *p2)
{
	int other;
	switch (type) {
	case 8: other = 0; break;    /* echo ↔ echo reply */
	case 0: other = 8; break;
	case 13: other = 14; break;  /* timestamp */
	case 14: other = 13; break;
	case 15: other = 16; break;  /* information */
	case 16: other = 15; break;
	case 10: other = 9; break;   /* router solicitation → advertisement (one entry only, as the spec) */
	case 17: other = 18; break;  /* address mask */
	case 18: other = 17; break;
	default:
		*p1 = type;
		*p2 = code;
		return 1;
	}
	*p1 = type;
	*p2 = (uint16_t)other;
	return 0;
}

static int icmp6_counterpart(uint8_t type, uint8_t code, uint16_t *p1, uint16_t *p2)
{
	int other;
	switch (type) {
	case 128: other = 129; break; /* echo */
	case 129: other = 128; break;
	case 133: other = 134; break; /* router solicitation / advertisement */
	case 134: other = 133; break;
	case 135: other = 136; break; /* neighbor solicitation / advertisement */
	case 136: other = 135; break;
	case 130: other = 131; break; /* MLD query / report */
	case 131: other = 130; break;
	case 139: other = 140; break; /* node information query / reply ("who are you") */
	case 140: other = 139; break;
	case 144: other = 145; break; /* home agent address discovery */
	case 145: other = 144; break;
	default:
		*p1 = type;
		*p2 = code;
		return 1;
	}
	*p1 = type;
	*p2 = (uint16_t)other;
	return 0;
}

int fl_community_id(const struct dc_tuple *t, uint16_t seed, char *out, size_t len)
{
	size_t alen;
	if (t->family == 4)
		alen = 4;
	else if (t->family == 6)
		alen = 16;
	else
		return -EINVAL;
	if (len < 32)
		return -EINVAL;

	const uint8_t *a1 = t->src, *a2 = t->dst;
	uint16_t p1 = t->sport, p2 = t->dport;
	int has_ports = 1, one_way = 0;

	switch (t->proto) {
	case 6: case 17: case 132: /* TCP, UDP, SCTP */
		break;
	case 1:
		one_way = icmp4_counterpart((uint8_t)t->sport, (uint8_t)t->dport, &p1, &p2);
		break;
	case 58:
		one_way = icmp6_counterpart((uint8_t)t->sport, (uint8_t)t->dport, &p1, &p2);
		break;
	default:
		has_ports = 0;
		p1 = p2 = 0;
		break;
	}

	/* Order the endpoints so both directions hash alike: smaller address first,
	 * ports break a tie.  One-way ICMP keeps the sender first, as the spec says. */
	if (!one_way) {
		int c = memcmp(a1, a2, alen);
		if (c > 0 || (c == 0 && p1 > p2)) {
			const uint8_t *ta = a1;
			a1 = a2;
			a2 = ta;
			uint16_t tp = p1;
			p1 = p2;
			p2 = tp;
		}
	}

	uint8_t buf[2 + 16 + 16 + 2 + 4];
	size_t n = 0;
	buf[n++] = (uint8_t)(seed >> 8);
	buf[n++] = (uint8_t)seed;
	memcpy(buf + n, a1, alen);
	n += alen;
	memcpy(buf + n, a2, alen);
	n += alen;
	buf[n++] = t->proto;
	buf[n++] = 0;
	if (has_ports) {
		buf[n++] = (uint8_t)(p1 >> 8);
		buf[n++] = (uint8_t)p1;
		buf[n++] = (uint8_t)(p2 >> 8);
		buf[n++] = (uint8_t)p2;
	}

	uint8_t digest[20];
	fl_sha1(buf, n, digest);
	out[0] = '1';
	out[1] = ':';
	base64(digest, sizeof(digest), out + 2); /* 28 chars + NUL: fits in 32 */
	return 0;
}
