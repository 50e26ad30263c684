/* flow — the table: lookup, per-direction counters, TCP bookkeeping, timers.
 *
 * Layout.  Flows live in chunks of FL_CHUNK entries allocated on demand (so a
 * table sized for 256k flows costs memory only for the flows it has held) and
 * recycled through a free list: no allocation per packet, one per FL_CHUNK new
 * flows at most.  A bucket array of chained entries finds a flow by its symmetric
 * hash.
 *
 * Timers.  Every flow sits on exactly one idle list: FL_LIST_OPEN (idle timeout)
 * or FL_LIST_CLOSED (TCP that saw FIN both ways or a RST; short timeout).  A list
 * is ordered by queued_us, the flow's last packet time when it was put at the
 * tail; a packet only moves last_us on (queued_us <= last_us), so it touches no
 * other flow's entry (moving to the tail on every packet cost three cache misses
 * on neighbours: 14% of a worker's time under a flood over 59k flows).  Each list
 * has one timeout, so fl_table_expire() looks at list heads only: a head whose
 * queued time is due has either expired (last_us too) or is put at the tail
 * again with its real time, once per timeout at most.  The price: a re-queued
 * flow may sit behind flows queued later with a later time, so its end can be
 * noticed up to one timeout late (never early); a packet of it arriving
 * meanwhile still starts a new flow, because fl_table_packet() checks the
 * timeout of the flow it finds.  The same
 * holds for the active-timeout queue: every due time is "time it was set +
 * active_timeout" with non-decreasing set times, so the queue stays ordered by
 * appending.  Eviction under the memory cap takes the older of the two idle-list
 * heads once each is re-queued to its real time: the least recently used flow
 * (but for the lateness above), in O(1) amortised (each re-queue pays back a packet that did not move it).
 *
 * ICMP.  As in ndpiReader, all ICMP (and ICMPv6) between two hosts is one flow:
 * the key uses ports 0, so echo request and reply (type 8 / type 0) meet.  The
 * record's key keeps the type/code of the flow's first packet, from which the
 * Community ID is computed.
 *
 * Fragments.  A non-first fragment (DC_FRAG_LATER) carries no L4 header.  The
 * first fragment's flow is remembered under (addresses, protocol, IP
 * identification: dc_packet.ip_id, the IPv4 id or the IPv6 fragment header's) in a
 * small direct-mapped map (struct fl_frag); later fragments of the same datagram
 * within 30 s are accounted to that flow.  That costs one slot write per first
 * fragment and nothing for unfragmented traffic.  A later fragment that arrives
 * before its first one, or whose slot was overwritten, goes to the flow of
 * (addresses, protocol, ports 0): its packets and bytes are still counted.
 * Later fragments are never given to nDPI (ndpiReader drops them too).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "flow_int.h"

#define FL_CHUNK 1024u
#define FL_MAX_BUCKETS (1u << 22)
#define FL_TCP_CLOSED_TIMEOUT_US (10ull * 1000000)

enum { HS_NONE = 0, HS_SYN, HS_SYNACK, HS_DONE };

void fl_config_default(struct fl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->idle_timeout_us = 120ull * 1000000;
	cfg->active_timeout_us = 60ull * 1000000;
	cfg->tcp_closed_timeout_us = FL_TCP_CLOSED_TIMEOUT_US;
	cfg->max_flows = 262144;
	cfg->dpi_packets = 80;
	cfg->dpi_packets_udp = 24;
	cfg->shard = 0;
	cfg->dpi = 1;
}

/* ---- hashing ------------------------------------------------------------- */

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static inline uint64_t load64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static inline uint64_t endpoint_hash(const uint8_t addr[16], uint16_t port)
{
	return mix64(load64(addr) ^ mix64(load64(addr + 8) ^ ((uint64_t)port << 1 | 1)));
}

/* The lookup key of a packet: what makes two packets the same flow. */
struct pkey {
	uint32_t obs_id;
	uint16_t vlan;
	uint8_t family, proto;
	uint16_t sport, dport;
	const uint8_t *src, *dst;
};

static inline void pkey_of(uint32_t obs_id, const struct dc_packet *p, struct pkey *k)
{
	k->obs_id = obs_id;
	k->vlan = p->vlan_depth ? p->vlan[0] : 0;
	k->family = p->inner.family;
	k->proto = p->inner.proto;
	k->src = p->inner.src;
	k->dst = p->inner.dst;
	if (k->proto == 1 || k->proto == 58 || p->frag == DC_FRAG_LATER) {
		k->sport = 0;
		k->dport = 0;
	} else {
		k->sport = p->inner.sport;
		k->dport = p->inner.dport;
	}
}

static inline uint32_t pkey_hash(const struct pkey *k)
{
	/* Adding the endpoint hashes makes the result independent of direction. */
	uint64_t h = endpoint_hash(k->src, k->sport) + endpoint_hash(k->dst, k->dport);
	h ^= (uint64_t)k->obs_id << 32 | (uint64_t)k->vlan << 16 | (uint64_t)k->proto << 8 | k->family;
	return (uint32_t)(mix64(h) >> 32);
}

uint32_t fl_hash(uint32_t obs_id, const struct dc_packet *p)
{
	struct pkey k;
	pkey_of(obs_id, p, &k);
	return pkey_hash(&k);
}

static inline uint16_t key_sport(const struct fl_flow *f)
{
	return (f->key.proto == 1 || f->key.proto == 58) ? 0 : f->key.sport;
}

static inline uint16_t key_dport(const struct fl_flow *f)
{
	return (f->key.proto == 1 || f->key.proto == 58) ? 0 : f->key.dport;
}

/* Returns 0 or 1 (the packet's direction) when f is the packet's flow, -1 if not. */
static inline int flow_match(const struct fl_flow *f, const struct pkey *k, uint32_t h)
{
	if (f->hash != h || f->obs_id != k->obs_id || f->vlan != k->vlan ||
	    f->key.family != k->family || f->key.proto != k->proto)
		return -1;
	uint16_t fs = key_sport(f), fd = key_dport(f);
	if (fs == k->sport && fd == k->dport && memcmp(f->key.src, k->src, 16) == 0 &&
	    memcmp(f->key.dst, k->dst, 16) == 0)
		return 0;
	if (fs == k->dport && fd == k->sport && memcmp(f->key.src, k->dst, 16) == 0 &&
	    memcmp(f->key.dst, k->src, 16) == 0)
		return 1;
	return -1;
}

/* Buckets take the high bits of a multiplicative remix of the flow hash:
 * callers shard packets over tables by fl_hash() % n (low bits), and the flows
 * of one shard must still spread over all of its buckets. */
static inline uint32_t bucket_of(const struct fl_table *t, uint32_t h)
{
	return (uint32_t)(((uint64_t)(h * 0x9e3779b1u) * t->nbuckets) >> 32);
}

/* ---- lists --------------------------------------------------------------- */

static inline void lru_unlink(struct fl_table *t, struct fl_flow *f)
{
	struct fl_list *l = &t->lru[f->list];
	if (f->lprev)
		f->lprev->lnext = f->lnext;
	else
		l->head = f->lnext;
	if (f->lnext)
		f->lnext->lprev = f->lprev;
	else
		l->tail = f->lprev;
	f->lprev = f->lnext = NULL;
}

static inline void lru_append(struct fl_table *t, struct fl_flow *f, int list)
{
	struct fl_list *l = &t->lru[list];
	f->list = (uint8_t)list;
	f->queued_us = f->last_us;
	f->lnext = NULL;
	f->lprev = l->tail;
	if (l->tail)
		l->tail->lnext = f;
	else
		l->head = f;
	l->tail = f;
}

static inline void active_unlink(struct fl_table *t, struct fl_flow *f)
{
	if (f->aprev)
		f->aprev->anext = f->anext;
	else
		t->active.head = f->anext;
	if (f->anext)
		f->anext->aprev = f->aprev;
	else
		t->active.tail = f->aprev;
	f->aprev = f->anext = NULL;
}

static inline void active_append(struct fl_table *t, struct fl_flow *f)
{
	f->anext = NULL;
	f->aprev = t->active.tail;
	if (t->active.tail)
		t->active.tail->anext = f;
	else
		t->active.head = f;
	t->active.tail = f;
}

/* ---- table --------------------------------------------------------------- */

struct fl_table *fl_table_new(const struct fl_config *cfg, fl_emit_fn emit, void *arg)
{
	struct fl_table *t = NULL;
	int err = EINVAL;

	if (!cfg || !emit || cfg->max_flows == 0 || cfg->idle_timeout_us == 0 || cfg->dpi_packets == 0 ||
	    (cfg->id_stride ? cfg->shard >= cfg->id_stride : cfg->shard != 0))
		goto fail;
	err = ENOMEM;
	t = calloc(1, sizeof(*t));
	if (!t)
		goto fail;
	t->cfg = *cfg;
	/* The fields added after the first version may be 0 in configs built field by
	 * field: 0 means the default there. */
	if (t->cfg.dpi_packets_udp == 0)
		t->cfg.dpi_packets_udp = 24;
	t->id_stride = cfg->id_stride ? cfg->id_stride : 1;
	t->emit = emit;
	t->emit_arg = arg;
	t->closed_timeout_us = cfg->tcp_closed_timeout_us ? cfg->tcp_closed_timeout_us
							  : FL_TCP_CLOSED_TIMEOUT_US;
	if (t->closed_timeout_us > cfg->idle_timeout_us)
		t->closed_timeout_us = cfg->idle_timeout_us;

	/* About one bucket per flow; the array is calloc'ed, so untouched buckets
	 * of a generously sized table cost no resident memory. */
	t->nbuckets = 1024;
	while (t->nbuckets < cfg->max_flows && t->nbuckets < FL_MAX_BUCKETS)
		t->nbuckets <<= 1;
	t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
	t->nchunks = (cfg->max_flows + FL_CHUNK - 1) / FL_CHUNK;
	t->chunks = calloc(t->nchunks, sizeof(*t->chunks));
	if (!t->buckets || !t->chunks)
		goto fail;
	if (cfg->dpi) {
		int rc = fl_dpi_init(t);
		if (rc < 0) {
			err = -rc;
			goto fail;
		}
	}
	return t;
fail:
	if (t) {
		free(t->buckets);
		free(t->chunks);
		free(t);
	}
	errno = err;
	return NULL;
}

void fl_table_free(struct fl_table *t)
{
	if (!t)
		return;
	for (uint32_t b = 0; b < t->nbuckets; b++)
		for (struct fl_flow *f = t->buckets[b]; f; f = f->hnext)
			fl_dpi_release(f);
	for (uint32_t c = 0; c < t->chunks_used; c++)
		free(t->chunks[c]);
	free(t->chunks);
	free(t->buckets);
	fl_dpi_fini(t);
	free(t);
}

static struct fl_flow *flow_alloc(struct fl_table *t)
{
	if (!t->free) {
		if (t->chunks_used == t->nchunks)
			return NULL;
		struct fl_flow *c = malloc(FL_CHUNK * sizeof(*c));
		if (!c)
			return NULL;
		t->chunks[t->chunks_used++] = c;
		/* Thread the new chunk onto the free list back to front so flows are
		 * handed out in address order (kinder to the cache). */
		for (uint32_t i = FL_CHUNK; i-- > 0;) {
			c[i].hnext = t->free;
			t->free = &c[i];
		}
	}
	struct fl_flow *f = t->free;
	t->free = f->hnext;
	return f;
}

static void record_fill(struct fl_table *t, const struct fl_flow *f, int end)
{
	struct fl_record *r = &t->rec;
	memset(r, 0, sizeof(*r));
	r->id = f->id;
	r->obs_id = f->obs_id;
	r->end = (uint8_t)end;
	r->tunnel = f->tunnel;
	r->has_vni = f->has_vni;
	r->vlan = f->vlan;
	r->vni = f->vni;
	r->key = f->key;
	r->outer = f->outer;
	r->first_us = f->first_us;
	r->last_us = f->last_us;
	for (int d = 0; d < 2; d++) {
		r->pkts[d] = f->pkts[d];
		r->bytes[d] = f->bytes[d];
		r->payload[d] = f->payload[d];
		r->tcp_flags[d] = f->tcp_flags[d];
		r->retrans[d] = f->retrans[d];
		r->ooo[d] = f->ooo[d];
	}
	r->syn = f->syn;
	r->synack = f->synack;
	r->fin = f->fin;
	r->rst = f->rst;
	r->rtt_us = f->rtt_us;
	r->frags = f->frags;
	if (fl_community_id(&f->key, t->cfg.community_id_seed, r->community_id, sizeof(r->community_id)) < 0)
		r->community_id[0] = 0;
	fl_dpi_fill(t, f, r);
}

static void emit(struct fl_table *t, const struct fl_flow *f, int end)
{
	record_fill(t, f, end);
	FL_STAT_ADD(t, records, 1);
	int rc = t->emit(t->emit_arg, &t->rec);
	if (rc && !t->err)
		t->err = rc;
}

static void hash_remove(struct fl_table *t, struct fl_flow *f)
{
	struct fl_flow **pp = &t->buckets[bucket_of(t, f->hash)];
	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = f->hnext;
}

/* Ends a flow: final classification, final record, and back to the free list. */
static void flow_end(struct fl_table *t, struct fl_flow *f, int end)
{
	fl_dpi_end(t, f);
	emit(t, f, end);
	fl_dpi_release(f);
	f->id = 0; /* invalidates fragment-map entries pointing here */
	hash_remove(t, f);
	lru_unlink(t, f);
	active_unlink(t, f);
	f->hnext = t->free;
	t->free = f;
	FL_STAT_ADD(t, flows_active, -1);
}

static inline uint64_t flow_timeout(const struct fl_table *t, const struct fl_flow *f)
{
	return f->list == FL_LIST_CLOSED ? t->closed_timeout_us : t->cfg.idle_timeout_us;
}

/* Puts list heads that saw packets since they were queued at the tail with
 * their real time, until the head is the list's least recently used flow. */
static void lru_settle(struct fl_table *t, int list)
{
	struct fl_flow *f;
	while ((f = t->lru[list].head) && f->last_us > f->queued_us) {
		lru_unlink(t, f);
		lru_append(t, f, list);
	}
}

static int evict_one(struct fl_table *t)
{
	lru_settle(t, FL_LIST_OPEN);
	lru_settle(t, FL_LIST_CLOSED);
	struct fl_flow *a = t->lru[FL_LIST_OPEN].head, *b = t->lru[FL_LIST_CLOSED].head;
	struct fl_flow *victim = a;
	if (!victim || (b && b->last_us < a->last_us))
		victim = b;
	if (!victim)
		return -ENOMEM;
	FL_STAT_ADD(t, evicted, 1);
	flow_end(t, victim, FL_END_EVICTED);
	return 0;
}

static struct fl_flow *flow_new(struct fl_table *t, const struct pkey *k, uint32_t h,
				const struct dc_packet *p, uint64_t ts_us, int *dir)
{
	if (t->stats.flows_active >= t->cfg.max_flows && evict_one(t) < 0)
		return NULL;
	struct fl_flow *f = flow_alloc(t);
	if (!f && evict_one(t) == 0)
		f = flow_alloc(t);
	if (!f)
		return NULL;
	memset(f, 0, sizeof(*f));
	/* Final ids: tables sharing a database interleave their sequences above
	 * the largest id already stored (id_base), so no one renumbers later. */
	f->id = t->cfg.id_base + (++t->next_seq - 1) * t->id_stride + t->cfg.shard + 1;
	f->hash = h;
	f->obs_id = k->obs_id;
	f->vlan = k->vlan;
	f->tunnel = p->tunnel;
	f->has_vni = p->has_vni;
	f->vni = p->vni;
	f->outer = p->outer;
	f->first_us = f->last_us = ts_us;
	f->rtt_us = -1;
	f->dns_rcode = 0xff;

	/* The client sent the first packet, unless that packet is a SYN/ACK: then
	 * we joined after the SYN and the receiver is the client. */
	f->key = p->inner;
	if (p->frag == DC_FRAG_LATER)
		f->key.sport = f->key.dport = 0;
	*dir = 0;
	if (k->proto == 6 && p->frag != DC_FRAG_LATER &&
	    (p->tcp_flags & (DC_TCP_SYN | DC_TCP_ACK)) == (DC_TCP_SYN | DC_TCP_ACK)) {
		memcpy(f->key.src, p->inner.dst, 16);
		memcpy(f->key.dst, p->inner.src, 16);
		f->key.sport = p->inner.dport;
		f->key.dport = p->inner.sport;
		*dir = 1;
	}

	struct fl_flow **b = &t->buckets[bucket_of(t, h)];
	f->hnext = *b;
	*b = f;
	lru_append(t, f, FL_LIST_OPEN);
	if (t->cfg.active_timeout_us) {
		f->active_due_us = ts_us + t->cfg.active_timeout_us;
		active_append(t, f);
	}
	FL_STAT_ADD(t, flows_created, 1);
	FL_STAT_ADD(t, flows_active, 1);
	return f;
}

/* Sequence numbers compare modulo 2^32. */
static inline int32_t seq_diff(uint32_t a, uint32_t b) { return (int32_t)(a - b); }

/* Retransmission / out-of-order heuristic, per direction, on segments that carry
 * payload (the basic one of Wireshark's and Zeek's analyzers, simplified):
 *  - seq == highest end seen: in order, the edge moves on;
 *  - seq beyond it: a gap opens (data missing or arriving late); remembered;
 *  - ends at or before the edge and lies inside the open gap: it arrived late,
 *    out of order (ooo), and the gap shrinks from the side it fills;
 *  - ends at or before the edge otherwise: data already seen, a retransmission;
 *  - starts before the edge and ends beyond it: a retransmission that carries
 *    new data as well (counted as retransmission, the edge moves on).
 * A keep-alive (1 byte at edge - 1) counts as a retransmission; SYN and FIN take
 * one sequence number each so a FIN'd edge stays right. */
static void seq_track(struct fl_flow *f, int dir, const struct dc_packet *p)
{
	struct fl_seq *s = &f->seq[dir];
	uint32_t len = p->payload_wire;
	uint32_t seq = p->tcp_seq;
	uint32_t ctl = ((p->tcp_flags & DC_TCP_SYN) ? 1 : 0) + ((p->tcp_flags & DC_TCP_FIN) ? 1 : 0);
	uint32_t end = seq + len + ctl;

	if (!s->init) {
		s->init = 1;
		s->max_end = end;
		return;
	}
	if (len == 0) {
		/* Pure ACKs say nothing about loss; a SYN/FIN at the edge moves it. */
		if (seq_diff(end, s->max_end) > 0 && seq_diff(seq, s->max_end) <= 0)
			s->max_end = end;
		return;
	}
	if (seq == s->max_end) {
		s->max_end = end;
		return;
	}
	if (seq_diff(seq, s->max_end) > 0) {
		s->hole = 1;
		s->hole_start = s->max_end;
		s->hole_end = seq;
		s->max_end = end;
		return;
	}
	if (seq_diff(end, s->max_end) <= 0) {
		if (s->hole && seq_diff(seq, s->hole_start) >= 0 && seq_diff(seq, s->hole_end) < 0) {
			f->ooo[dir]++;
			if (seq == s->hole_start)
				s->hole_start = end;
			else if (seq_diff(end, s->hole_end) >= 0)
				s->hole_end = seq;
			if (seq_diff(s->hole_start, s->hole_end) >= 0)
				s->hole = 0;
		} else {
			f->retrans[dir]++;
		}
		return;
	}
	f->retrans[dir]++;
	s->max_end = end;
}

static void tcp_account(struct fl_table *t, struct fl_flow *f, int dir, const struct dc_packet *p,
			uint64_t ts_us)
{
	uint8_t fl = p->tcp_flags;
	f->tcp_flags[dir] |= fl;
	if ((fl & (DC_TCP_SYN | DC_TCP_ACK)) == DC_TCP_SYN) {
		f->syn++;
		/* RTT runs from the client's first SYN (a lost SYN's retry is in it). */
		if (f->hs == HS_NONE && dir == 0) {
			f->hs = HS_SYN;
			f->syn_us = ts_us;
		}
	} else if ((fl & (DC_TCP_SYN | DC_TCP_ACK)) == (DC_TCP_SYN | DC_TCP_ACK)) {
		f->synack++;
		if (f->hs == HS_SYN && dir == 1)
			f->hs = HS_SYNACK;
	} else if ((fl & DC_TCP_ACK) && f->hs == HS_SYNACK && dir == 0) {
		f->hs = HS_DONE;
		f->rtt_us = ts_us >= f->syn_us ? (int64_t)(ts_us - f->syn_us) : 0;
	}
	if (fl & DC_TCP_FIN) {
		f->fin++;
		f->fin_dirs |= (uint8_t)(1u << dir);
	}
	if (fl & DC_TCP_RST)
		f->rst++;
	seq_track(f, dir, p);
	if (f->list != FL_LIST_CLOSED && ((fl & DC_TCP_RST) || f->fin_dirs == 3)) {
		lru_unlink(t, f);
		lru_append(t, f, FL_LIST_CLOSED);
	}
}

static inline struct fl_frag *frag_slot(struct fl_table *t, const struct dc_packet *p, uint32_t ipid)
{
	uint64_t h = endpoint_hash(p->inner.src, (uint16_t)ipid) + endpoint_hash(p->inner.dst, (uint16_t)(ipid >> 16));
	h ^= p->inner.proto;
	return &t->frag[mix64(h) & (FL_FRAG_SLOTS - 1)];
}

static void frag_remember(struct fl_table *t, struct fl_flow *f, const struct dc_packet *p,
			  uint64_t ts_us)
{
	uint32_t ipid = p->ip_id;
	struct fl_frag *e = frag_slot(t, p, ipid);
	e->flow = f;
	e->flow_id = f->id;
	e->ts_us = ts_us;
	e->ipid = ipid;
	e->family = p->inner.family;
	e->proto = p->inner.proto;
	memcpy(e->src, p->inner.src, 16);
	memcpy(e->dst, p->inner.dst, 16);
}

/* The flow of a later fragment's first fragment, or NULL; *dir is set. */
static struct fl_flow *frag_find(struct fl_table *t, const struct dc_packet *p, uint64_t ts_us,
				 int *dir)
{
	uint32_t ipid = p->ip_id;
	struct fl_frag *e = frag_slot(t, p, ipid);
	if (!e->flow_id || e->ipid != ipid || e->family != p->inner.family || e->proto != p->inner.proto ||
	    memcmp(e->src, p->inner.src, 16) != 0 || memcmp(e->dst, p->inner.dst, 16) != 0 ||
	    (ts_us > e->ts_us ? ts_us - e->ts_us : e->ts_us - ts_us) > FL_FRAG_TIMEOUT_US)
		return NULL; /* either way round: a later fragment may carry an earlier time */
	struct fl_flow *f = e->flow;
	if (f->id != e->flow_id) /* the flow ended meanwhile (ended flows have id 0) */
		return NULL;
	*dir = memcmp(f->key.src, p->inner.src, 16) == 0 ? 0 : 1;
	return f;
}

static inline int take_err(struct fl_table *t, int rc)
{
	if (t->err) {
		int e = t->err;
		t->err = 0;
		return e;
	}
	return rc;
}

int fl_table_packet(struct fl_table *t, uint32_t obs_id, const struct dc_packet *p,
		    const uint8_t *frame, uint64_t ts_us, uint64_t *flow_id, uint32_t *pkt_no)
{
	if (p->reason != DC_OK || (p->inner.family != 4 && p->inner.family != 6)) {
		FL_STAT_ADD(t, skipped, 1);
		return take_err(t, -EINVAL);
	}

	struct pkey k;
	pkey_of(obs_id, p, &k);
	struct fl_flow *f;
	int dir = -1;
	if (p->frag == DC_FRAG_LATER) {
		f = frag_find(t, p, ts_us, &dir);
		if (f && f->obs_id == obs_id && f->vlan == k.vlan)
			goto account;
	}
	uint32_t h = pkey_hash(&k);
	for (f = t->buckets[bucket_of(t, h)]; f; f = f->hnext) {
		dir = flow_match(f, &k, h);
		if (dir >= 0)
			break;
	}

	if (f) {
		/* The pipeline may call fl_table_expire() only now and then: a flow
		 * whose timer already ran out ends here rather than absorbing a new
		 * conversation.  A fresh SYN on a closed TCP flow (port reuse) starts
		 * a new flow too. */
		int end = -1;
		if (ts_us >= f->last_us && ts_us - f->last_us >= flow_timeout(t, f))
			end = f->list == FL_LIST_CLOSED ? FL_END_TCP : FL_END_IDLE;
		else if (f->list == FL_LIST_CLOSED && p->frag != DC_FRAG_LATER &&
			 (p->tcp_flags & (DC_TCP_SYN | DC_TCP_ACK)) == DC_TCP_SYN)
			end = FL_END_TCP;
		if (end >= 0) {
			flow_end(t, f, end);
			f = NULL;
		}
	}
	if (!f) {
		f = flow_new(t, &k, h, p, ts_us, &dir);
		if (!f) {
			FL_STAT_ADD(t, skipped, 1);
			return take_err(t, -ENOMEM);
		}
	}

	if (p->frag == DC_FRAG_FIRST)
		frag_remember(t, f, p, ts_us);
account:;
	uint32_t n = (uint32_t)(f->pkts[0] + f->pkts[1]);
	f->pkts[dir]++;
	f->bytes[dir] += p->wirelen;
	f->payload[dir] += p->payload_wire;
	if (ts_us > f->last_us)
		f->last_us = ts_us;
	if (p->frag != DC_FRAG_NONE)
		f->frags++;
	if (k.proto == 6 && p->frag != DC_FRAG_LATER && p->l4_off)
		tcp_account(t, f, dir, p, ts_us);
	if (!f->dpi_done && t->ndpi)
		fl_dpi_packet(t, f, p, frame, ts_us);

	FL_STAT_ADD(t, packets, 1);
	if (flow_id)
		*flow_id = f->id;
	if (pkt_no)
		*pkt_no = n;
	return take_err(t, 0);
}

int fl_table_expire(struct fl_table *t, uint64_t now_us)
{
	static const uint8_t end_of[FL_LIST__COUNT] = { FL_END_IDLE, FL_END_TCP };
	for (int l = 0; l < FL_LIST__COUNT; l++) {
		uint64_t to = l == FL_LIST_CLOSED ? t->closed_timeout_us : t->cfg.idle_timeout_us;
		struct fl_flow *f;
		while ((f = t->lru[l].head) && f->queued_us + to <= now_us) {
			if (f->last_us + to <= now_us) {
				flow_end(t, f, end_of[l]);
			} else { /* seen since it was queued: to the tail, at its time */
				lru_unlink(t, f);
				lru_append(t, f, l);
			}
		}
	}
	if (t->cfg.active_timeout_us) {
		struct fl_flow *f;
		while ((f = t->active.head) && f->active_due_us <= now_us) {
			uint64_t total = f->pkts[0] + f->pkts[1];
			/* A flow with nothing new since its last record needs no new one;
			 * its idle timer will end it. */
			if (total != f->pkts_reported) {
				f->pkts_reported = total;
				emit(t, f, FL_END_ACTIVE);
			}
			active_unlink(t, f);
			f->active_due_us = now_us + t->cfg.active_timeout_us;
			active_append(t, f);
		}
	}
	return take_err(t, 0);
}

int fl_table_flush(struct fl_table *t)
{
	for (int l = 0; l < FL_LIST__COUNT; l++)
		while (t->lru[l].head)
			flow_end(t, t->lru[l].head, FL_END_FLUSH);
	return take_err(t, 0);
}

void fl_table_stats(const struct fl_table *t, struct fl_stats *out)
{
	/* Any thread: each counter is one atomic load (see FL_STAT_ADD). */
	const uint64_t *in = (const uint64_t *)&t->stats;
	uint64_t *o = (uint64_t *)out;
	for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
		o[i] = __atomic_load_n(&in[i], __ATOMIC_RELAXED);
}
