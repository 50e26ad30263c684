/* frag — IPv4/IPv6 reassembly (see frag.h for the contract).
 *
 * A datagram in progress holds its fragments twice linked: by offset (to find gaps,
 * duplicates and overlaps, and to copy the payload in order) and by arrival (to hand
 * the original frames back in the order they were captured).  Fragments usually
 * arrive in order, so the offset list is appended at its tail in O(1); anything else
 * walks it, at most max_fragments steps.  Datagrams are also linked by creation time,
 * oldest first: timeouts and evictions take from that end in O(1).
 *
 * Every fragment's header is re-read here from the frame (decode said where the IP
 * header is and that it is a fragment; the offsets, flags and lengths are frag's own
 * business), with the same bounds discipline as decode: nothing is read before it is
 * known to be inside the captured frame.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "frag.h"

/* One held fragment: bookkeeping, then a copy of its whole frame. */
struct node {
	struct node *next;      /* by offset */
	struct node *arr_next;  /* by arrival */
	uint32_t off, end;      /* payload bytes [off, end) of the datagram it carries */
	uint32_t data_off;      /* where those bytes start in the frame */
	uint32_t l3_off;        /* the fragmented IP header */
	uint32_t ip_total;      /* that IP datagram's length on the wire (header + payload) */
	uint32_t hdr_end;       /* IPv4: end of the header; IPv6: the fragment header */
	uint32_t nh_off;        /* IPv6: the byte that names the fragment header */
	uint8_t frag_nh;        /* IPv6: what follows the fragment header */
	uint64_t cost;          /* bytes counted for it */
	struct fr_fragment f;   /* f.frame points at data[] */
	uint8_t data[];
};

/* Built with memset so that padding compares equal too. */
struct key {
	uint8_t src[16], dst[16];
	uint32_t id;
	uint32_t obs;
	uint32_t vni;
	uint16_t vlan;          /* 0, or 0x1000 | the outermost VLAN id */
	uint8_t family, proto, tunnel, has_vni;
};

struct dg {
	struct dg *hnext;       /* hash chain */
	struct dg *older, *newer;
	struct key k;
	uint32_t hash;
	uint64_t first_ts;
	struct node *frags, *tail;     /* by offset */
	struct node *arr_head, *arr_tail;
	uint32_t len;           /* the payload's length: known once the last fragment is
	                         * in (last_in), else the largest end seen */
	uint32_t meat;          /* payload bytes held */
	uint32_t nfrags;
	uint64_t bytes;
	uint8_t first_in, last_in;
};

struct fr_table {
	struct fr_config cfg;
	struct dg **bucket;
	uint32_t mask;
	uint64_t seed;
	struct dg *oldest, *newest;
	struct fr_stats st;
	struct dg *done;        /* the datagram last handed out: freed at the next call */
	uint8_t *buf;           /* the rebuilt frame */
	size_t buf_cap;
	struct fr_fragment *fragv;
	size_t fragv_cap;
};

static const char *const why_names[FR_WHY__COUNT] = {
	[FR_WHY_NONE] = "none",
	[FR_WHY_UNCAPTURED] = "uncaptured",
	[FR_WHY_DUPLICATE] = "duplicate",
	[FR_WHY_OVERLAP] = "overlap",
	[FR_WHY_TOO_BIG] = "too-big",
	[FR_WHY_BAD] = "bad",
	[FR_WHY_TIMEOUT] = "timeout",
	[FR_WHY_EVICTED] = "evicted",
	[FR_WHY_FLUSH] = "flush",
};

const char *fr_why_name(enum fr_why why)
{
	if ((unsigned)why >= FR_WHY__COUNT)
		return "unknown";
	return why_names[why];
}

void fr_config_default(struct fr_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	dc_config_default(&cfg->dc);
	cfg->max_datagrams = 4096;
	cfg->max_bytes = 64u << 20;
	cfg->max_datagram_bytes = 256u << 10;
	cfg->max_fragments = 256;
	cfg->timeout_us = 30ull * 1000000;
}

static inline int fits(uint32_t off, uint32_t n, uint32_t end)
{
	return off <= end && n <= end - off;
}

static inline uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- the table ---- */

struct fr_table *fr_new(const struct fr_config *cfg)
{
	if (!cfg || !cfg->max_datagrams || !cfg->max_bytes || !cfg->max_datagram_bytes ||
	    !cfg->max_fragments || !cfg->timeout_us || cfg->max_datagrams > (1u << 24)) {
		errno = EINVAL;
		return NULL;
	}
	struct fr_table *t = calloc(1, sizeof *t);
	if (!t)
		goto fail;
	t->cfg = *cfg;
	uint32_t n = 16;
	while (n < cfg->max_datagrams)
		n <<= 1;
	t->bucket = calloc(n, sizeof *t->bucket);
	if (!t->bucket)
		goto fail;
	t->mask = n - 1;
	/* A per-table seed: fragments are the attacker's to choose, their bucket is not.
	 * The table's address and a stack address vary with ASLR; good enough against
	 * flooding one chain, and it needs no system call. */
	uint64_t local = 0;
	t->seed = ((uint64_t)(uintptr_t)t * 0x9e3779b97f4a7c15ull) ^ (uint64_t)(uintptr_t)&local;
	return t;
fail:
	if (t)
		free(t->bucket);
	free(t);
	errno = ENOMEM;
	return NULL;
}

static uint32_t key_hash(const struct fr_table *t, const struct key *k)
{
	const uint8_t *b = (const uint8_t *)k;
	uint64_t h = t->seed;
	for (size_t i = 0; i + 8 <= sizeof *k; i += 8) {
		uint64_t w;
		memcpy(&w, b + i, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	for (size_t i = sizeof *k & ~(size_t)7; i < sizeof *k; i++)
		h = (h ^ b[i]) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	return (uint32_t)h;
}

static void unlink_dg(struct fr_table *t, struct dg *d)
{
	struct dg **pp = &t->bucket[d->hash & t->mask];
	while (*pp && *pp != d)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = d->hnext;
	if (d->older)
		d->older->newer = d->newer;
	else
		t->oldest = d->newer;
	if (d->newer)
		d->newer->older = d->older;
	else
		t->newest = d->older;
	d->hnext = d->older = d->newer = NULL;
	t->st.in_progress--;
}

static void free_dg(struct fr_table *t, struct dg *d)
{
	struct node *n = d->arr_head;
	while (n) {
		struct node *next = n->arr_next;
		free(n);
		n = next;
	}
	t->st.bytes -= d->bytes;
	free(d);
}

/* Frees the datagram handed out by the previous call. */
static void reap(struct fr_table *t)
{
	if (t->done) {
		free_dg(t, t->done);
		t->done = NULL;
	}
}

static void count_why(struct fr_table *t, enum fr_why why)
{
	switch (why) {
	case FR_WHY_TIMEOUT: t->st.timed_out++; break;
	case FR_WHY_OVERLAP: t->st.overlapping++; break;
	case FR_WHY_EVICTED: t->st.evicted++; break;
	case FR_WHY_TOO_BIG: t->st.too_big++; break;
	case FR_WHY_BAD: t->st.bad++; break;
	case FR_WHY_DUPLICATE: t->st.duplicates++; break;
	case FR_WHY_UNCAPTURED: t->st.uncaptured++; break;
	default: break;
	}
}

/* Gives a datagram up: its fragments go back through the callback, the first one
 * (offset 0, with the L4 header) first when it is held, then the others in arrival
 * order: a caller that hands them to a flow table that joins later fragments to
 * their first fragment's flow (by IP id) then finds that flow for all of them, even
 * when the fragments came in reverse. */
static void give_up(struct fr_table *t, struct dg *d, enum fr_why why)
{
	unlink_dg(t, d);
	count_why(t, why);
	struct node *first = d->first_in ? d->frags : NULL;
	if (first) {
		t->st.released++;
		if (t->cfg.release)
			t->cfg.release(t->cfg.release_ctx, &first->f, why);
	}
	for (struct node *n = d->arr_head; n; n = n->arr_next) {
		if (n == first)
			continue;
		t->st.released++;
		if (t->cfg.release)
			t->cfg.release(t->cfg.release_ctx, &n->f, why);
	}
	free_dg(t, d);
}

static void expire_until(struct fr_table *t, uint64_t now_us, unsigned *n)
{
	while (t->oldest && now_us >= t->oldest->first_ts &&
	       now_us - t->oldest->first_ts >= t->cfg.timeout_us) {
		give_up(t, t->oldest, FR_WHY_TIMEOUT);
		(*n)++;
	}
}

unsigned fr_expire(struct fr_table *t, uint64_t now_us)
{
	unsigned n = 0;
	reap(t);
	expire_until(t, now_us, &n);
	return n;
}

unsigned fr_flush(struct fr_table *t)
{
	unsigned n = 0;
	reap(t);
	while (t->oldest) {
		give_up(t, t->oldest, FR_WHY_FLUSH);
		n++;
	}
	return n;
}

void fr_free(struct fr_table *t)
{
	if (!t)
		return;
	fr_flush(t);
	free(t->bucket);
	free(t->buf);
	free(t->fragv);
	free(t);
}

void fr_stats(const struct fr_table *t, struct fr_stats *s)
{
	*s = t->st;
}

/* ---- one fragment ---- */

/* What frag reads from a fragment's own headers. */
struct fraginfo {
	uint32_t off, end;      /* payload bytes of the datagram */
	uint32_t data_off, hdr_end, ip_total, nh_off;
	uint32_t id;
	uint8_t proto, frag_nh;
	int more;
};

static inline int ipv6_ext(uint8_t nh)
{
	return nh == 0 || nh == 43 || nh == 51 || nh == 60 || nh == 135 || nh == 139 || nh == 140;
}

/* Reads the fragment's IP header at p->l3_off.  Returns FR_WHY_NONE when it is a
 * usable fragment, else why not. */
static enum fr_why parse(const struct dc_packet *p, const uint8_t *f, struct fraginfo *fi)
{
	uint32_t cap = p->caplen, l3 = p->l3_off;
	memset(fi, 0, sizeof *fi);
	if (p->inner.family == 4) {
		if (!fits(l3, 20, cap))
			return FR_WHY_UNCAPTURED;
		uint32_t ihl = (uint32_t)(f[l3] & 0x0f) * 4;
		uint32_t tl = be16(f + l3 + 2);
		/* total length 0 (segmentation offload) has no place in a fragment */
		if ((f[l3] >> 4) != 4 || ihl < 20 || tl < ihl)
			return FR_WHY_BAD;
		if (!fits(l3, tl, cap))
			return FR_WHY_UNCAPTURED;
		uint32_t fw = be16(f + l3 + 6);
		fi->off = (fw & 0x1fff) * 8;
		fi->more = (fw & 0x2000) != 0;
		fi->id = be16(f + l3 + 4);
		fi->proto = f[l3 + 9];
		fi->hdr_end = fi->data_off = l3 + ihl;
		fi->ip_total = tl;
		fi->end = fi->off + (tl - ihl);
		return FR_WHY_NONE;
	}
	if (p->inner.family != 6)
		return FR_WHY_BAD;
	if (!fits(l3, 40, cap))
		return FR_WHY_UNCAPTURED;
	uint32_t plen = be16(f + l3 + 4);
	if ((f[l3] >> 4) != 6 || plen == 0) /* a jumbogram cannot be fragmented */
		return FR_WHY_BAD;
	if (!fits(l3, 40 + plen, cap))
		return FR_WHY_UNCAPTURED;
	uint32_t ip_end = l3 + 40 + plen;
	uint32_t q = l3 + 40, nh_off = l3 + 6;
	uint8_t nh = f[nh_off];
	/* the extension headers up to the fragment header: the unfragmentable part */
	for (unsigned i = 0; nh != 44; i++) {
		if (i == DC_IPV6_EXT_CAP || !ipv6_ext(nh) || !fits(q, 8, ip_end))
			return FR_WHY_BAD;
		uint32_t hl = nh == 51 ? ((uint32_t)f[q + 1] + 2) * 4 : ((uint32_t)f[q + 1] + 1) * 8;
		if (!fits(q, hl, ip_end))
			return FR_WHY_BAD;
		nh_off = q;
		nh = f[q];
		q += hl;
	}
	if (!fits(q, 8, ip_end))
		return FR_WHY_BAD;
	uint32_t offflags = be16(f + q + 2);
	fi->off = offflags & ~7u;
	fi->more = offflags & 1;
	fi->id = be32(f + q + 4);
	fi->frag_nh = f[q];
	fi->proto = 0; /* IPv6 datagrams are told apart by addresses and id only */
	fi->nh_off = nh_off;
	fi->hdr_end = q;
	fi->data_off = q + 8;
	fi->ip_total = 40 + plen;
	fi->end = fi->off + (ip_end - fi->data_off);
	return FR_WHY_NONE;
}

static void make_key(const struct dc_packet *p, uint32_t obs, const struct fraginfo *fi,
		     struct key *k)
{
	memset(k, 0, sizeof *k);
	memcpy(k->src, p->inner.src, 16);
	memcpy(k->dst, p->inner.dst, 16);
	k->id = fi->id;
	k->obs = obs;
	k->family = p->inner.family;
	k->proto = fi->proto;
	k->vlan = p->vlan_depth ? (uint16_t)(0x1000 | p->vlan[0]) : 0;
	/* An inner packet's fragments come through the same tunnel: networks behind
	 * different VNIs may reuse addresses. */
	k->tunnel = p->tunnel;
	k->has_vni = p->has_vni;
	k->vni = p->has_vni ? p->vni : 0;
}

static struct dg *lookup(struct fr_table *t, const struct key *k, uint32_t h)
{
	for (struct dg *d = t->bucket[h & t->mask]; d; d = d->hnext)
		if (d->hash == h && memcmp(&d->k, k, sizeof *k) == 0)
			return d;
	return NULL;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 16;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (!q)
		return -ENOMEM;
	*p = q;
	*cap = n;
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

/* All pieces are in: builds the frame into t->buf and fills *out.  Returns 0, or
 * why the datagram has to be given up. */
static enum fr_why rebuild(struct fr_table *t, struct dg *d, struct fr_datagram *out)
{
	struct node *first = d->frags; /* offset 0: first_in */
	const uint8_t *ff = first->f.frame;
	int v4 = d->k.family == 4;
	uint32_t unfrag = v4 ? 0 : first->hdr_end - (first->l3_off + 40);
	uint32_t hlen = v4 ? first->hdr_end - first->l3_off : 40 + unfrag;
	if ((uint64_t)hlen + d->len > 65535)
		return FR_WHY_TOO_BIG;
	uint32_t new_total = hlen + d->len;
	uint32_t prefix = first->hdr_end; /* IPv6: everything before the fragment header */
	uint32_t suffix = first->f.caplen - (first->l3_off + first->ip_total);
	size_t len = (size_t)prefix + d->len + suffix;
	if (grow((void **)&t->buf, &t->buf_cap, len, 1) < 0 ||
	    grow((void **)&t->fragv, &t->fragv_cap, d->nfrags, sizeof *t->fragv) < 0)
		return FR_WHY_EVICTED;
	uint8_t *b = t->buf;
	memcpy(b, ff, prefix);
	size_t pos = prefix;
	for (struct node *n = d->frags; n; n = n->next) {
		memcpy(b + pos, n->f.frame + n->data_off, n->end - n->off);
		pos += n->end - n->off;
	}
	memcpy(b + pos, ff + first->l3_off + first->ip_total, suffix);

	uint8_t *ip = b + first->l3_off;
	if (v4) {
		ip[2] = (uint8_t)(new_total >> 8);
		ip[3] = (uint8_t)new_total;
		ip[6] &= 0x40; /* keep DF, clear MF and the offset */
		ip[7] = 0;
		ipv4_checksum(ip, hlen);
	} else {
		uint32_t plen = new_total - 40;
		ip[4] = (uint8_t)(plen >> 8);
		ip[5] = (uint8_t)plen;
		b[first->nh_off] = first->frag_nh; /* the fragment header is gone */
	}
	int rc = dc_resize_enclosing(&t->cfg.dc, first->f.linktype, ff, first->f.caplen,
				     first->f.wirelen, b, first->l3_off,
				     (int32_t)new_total - (int32_t)first->ip_total);
	if (rc == -EOVERFLOW)
		return FR_WHY_TOO_BIG;
	if (rc < 0)
		return FR_WHY_BAD;

	unsigned i = 0;
	for (struct node *n = d->arr_head; n; n = n->arr_next)
		t->fragv[i++] = n->f;
	out->frame = b;
	out->len = (uint32_t)len;
	/* bytes of the first fragment's frame the capture did not keep (a trailer) */
	out->wirelen = out->len + (first->f.wirelen > first->f.caplen ?
				   first->f.wirelen - first->f.caplen : 0);
	out->linktype = first->f.linktype;
	out->obs = d->k.obs;
	out->frags = t->fragv;
	out->nfrags = i;
	out->why = FR_WHY_NONE;
	return FR_WHY_NONE;
}

static int pass(struct fr_table *t, struct fr_datagram *out, enum fr_why why)
{
	count_why(t, why);
	out->why = why;
	return FR_PASS;
}

/* The fragment's datagram was just given up (and counted) for the same reason. */
static int pass_given_up(struct fr_datagram *out, enum fr_why why)
{
	out->why = why;
	return FR_PASS;
}

/* Where a fragment [off, end) goes among the held ones.  Returns the node it goes
 * after (NULL: at the head) in *after, or a reason: FR_WHY_DUPLICATE when all its
 * bytes are held (Linux: within one run of adjacent fragments), FR_WHY_OVERLAP when
 * it overlaps partly. */
static enum fr_why place(struct dg *d, uint32_t off, uint32_t end, struct node **after)
{
	*after = NULL;
	/* the common case: it goes after the last one */
	if (!d->tail || d->tail->end <= off) {
		*after = d->tail;
		return FR_WHY_NONE;
	}
	if (d->tail->end < end)
		return FR_WHY_OVERLAP; /* reaches past the last one but starts inside data */
	struct node *prev = NULL, *n = d->frags;
	while (n && n->end <= off) {
		prev = n;
		n = n->next;
	}
	/* n is the first fragment ending after off (there is one: the tail) */
	if (end <= n->off) {
		*after = prev;
		return FR_WHY_NONE;
	}
	if (off < n->off)
		return FR_WHY_OVERLAP;
	/* starts inside n: a duplicate if the contiguous run from n covers it */
	uint32_t covered = n->end;
	for (struct node *m = n->next; m && covered < end && m->off == covered; m = m->next)
		covered = m->end;
	return covered >= end ? FR_WHY_DUPLICATE : FR_WHY_OVERLAP;
}

int fr_add(struct fr_table *t, uint32_t obs, const struct dc_packet *p, const uint8_t *frame,
	   uint64_t ts_us, struct fr_datagram *out)
{
	memset(out, 0, sizeof *out);
	reap(t);
	if (p->frag == DC_FRAG_NONE || !p->l3_len)
		return pass(t, out, FR_WHY_NONE);
	t->st.fragments++;
	unsigned expired = 0;
	expire_until(t, ts_us, &expired);

	struct fraginfo fi;
	enum fr_why why = parse(p, frame, &fi);
	if (why != FR_WHY_NONE)
		return pass(t, out, why);
	if (fi.more && (fi.end & 7)) {
		/* Non-final fragments carry multiples of 8 bytes.  Linux trims an IPv4
		 * one and refuses an IPv6 one (RFC 8200 says: parameter problem). */
		if (p->inner.family == 6)
			return pass(t, out, FR_WHY_BAD);
		fi.end &= ~7u;
	}
	if (fi.end <= fi.off)
		return pass(t, out, FR_WHY_BAD);
	if (fi.end > 65535)
		return pass(t, out, FR_WHY_TOO_BIG);
	uint64_t cost = sizeof(struct node) + p->caplen;
	if (cost > t->cfg.max_datagram_bytes || cost + sizeof(struct dg) > t->cfg.max_bytes)
		return pass(t, out, FR_WHY_TOO_BIG);

	struct key k;
	make_key(p, obs, &fi, &k);
	uint32_t h = key_hash(t, &k);
	struct dg *d = lookup(t, &k, h);
	if (d) {
		/* What this fragment says about the datagram's end must agree with what is
		 * known (Linux: ip_frag_queue()); if not, this fragment is refused. */
		if (!fi.more) {
			if (fi.end < d->len || (d->last_in && fi.end != d->len))
				return pass(t, out, FR_WHY_BAD);
		} else if (d->last_in && fi.end > d->len) {
			return pass(t, out, FR_WHY_BAD);
		}
	}
	struct node *after = NULL;
	if (d) {
		why = place(d, fi.off, fi.end, &after);
		if (why == FR_WHY_DUPLICATE)
			return pass(t, out, why);
		if (why == FR_WHY_OVERLAP) {
			give_up(t, d, FR_WHY_OVERLAP);
			return pass_given_up(out, FR_WHY_OVERLAP);
		}
		if (d->nfrags + 1 > t->cfg.max_fragments ||
		    d->bytes + cost > t->cfg.max_datagram_bytes) {
			give_up(t, d, FR_WHY_TOO_BIG);
			return pass_given_up(out, FR_WHY_TOO_BIG);
		}
	}
	/* Room: the oldest datagrams go first (never the one this fragment joins). */
	uint64_t need = cost + (d ? 0 : sizeof(struct dg));
	while (t->st.bytes + need > t->cfg.max_bytes ||
	       (!d && t->st.in_progress >= t->cfg.max_datagrams)) {
		struct dg *victim = t->oldest == d ? (d ? d->newer : NULL) : t->oldest;
		if (!victim)
			break;
		give_up(t, victim, FR_WHY_EVICTED);
	}
	if (t->st.bytes + need > t->cfg.max_bytes) {
		/* d alone is over the memory cap with this fragment */
		if (!d)
			return pass(t, out, FR_WHY_EVICTED);
		give_up(t, d, FR_WHY_EVICTED);
		return pass_given_up(out, FR_WHY_EVICTED);
	}

	struct node *n = malloc(sizeof *n + p->caplen);
	if (!n) {
		if (!d)
			return pass(t, out, FR_WHY_EVICTED);
		give_up(t, d, FR_WHY_EVICTED);
		return pass_given_up(out, FR_WHY_EVICTED);
	}
	if (!d) {
		d = calloc(1, sizeof *d);
		if (!d) {
			free(n);
			return pass(t, out, FR_WHY_EVICTED);
		}
		d->k = k;
		d->hash = h;
		d->first_ts = ts_us;
		d->bytes = sizeof *d;
		t->st.bytes += sizeof *d;
		d->hnext = t->bucket[h & t->mask];
		t->bucket[h & t->mask] = d;
		d->older = t->newest;
		if (t->newest)
			t->newest->newer = d;
		else
			t->oldest = d;
		t->newest = d;
		t->st.in_progress++;
	}
	memcpy(n->data, frame, p->caplen);
	n->f = (struct fr_fragment){ n->data, p->caplen, p->wirelen, ts_us, obs, p->linktype };
	n->off = fi.off;
	n->end = fi.end;
	n->data_off = fi.data_off;
	n->l3_off = p->l3_off;
	n->ip_total = fi.ip_total;
	n->hdr_end = fi.hdr_end;
	n->nh_off = fi.nh_off;
	n->frag_nh = fi.frag_nh;
	n->cost = cost;
	n->arr_next = NULL;
	if (after) {
		n->next = after->next;
		after->next = n;
	} else {
		n->next = d->frags;
		d->frags = n;
	}
	if (!n->next)
		d->tail = n;
	if (d->arr_tail)
		d->arr_tail->arr_next = n;
	else
		d->arr_head = n;
	d->arr_tail = n;
	d->nfrags++;
	d->meat += fi.end - fi.off;
	d->bytes += cost;
	t->st.bytes += cost;
	if (t->st.bytes > t->st.bytes_peak)
		t->st.bytes_peak = t->st.bytes;
	if (!fi.more) {
		d->last_in = 1;
		d->len = fi.end;
	} else if (fi.end > d->len) {
		d->len = fi.end;
	}
	if (fi.off == 0)
		d->first_in = 1;
	if (!d->first_in || !d->last_in || d->meat != d->len)
		return FR_HELD;

	why = rebuild(t, d, out);
	if (why != FR_WHY_NONE) {
		/* this fragment was held and now comes back with the others */
		give_up(t, d, why);
		memset(out, 0, sizeof *out);
		return FR_HELD;
	}
	out->ts_us = ts_us;
	unlink_dg(t, d);
	t->done = d;
	t->st.reassembled++;
	return FR_COMPLETE;
}
