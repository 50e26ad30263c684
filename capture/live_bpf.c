/* live_bpf — the eBPF tc backend of live capture (tc.bpf.c + its skeleton).
 * Separate from live.c because pcap.h and linux/bpf.h both define struct bpf_insn. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "live_int.h"

#include <linux/types.h>
#include "tc_shared.h"

/* The ring is memory the kernel writes and a bug (ours or a future layout
 * change) could fill with anything: every record is checked before use. */
int lb_record_parse(struct cap_live *l, const void *data, size_t size, struct cap_packet *pkt)
{
	struct pc_rec_hdr h;
	struct live_if *ifc;

	if (!data || size < sizeof(h)) {
		l->bad_records++;
		return -EINVAL;
	}
	memcpy(&h, data, sizeof(h));
	if (h.magic != PC_REC_MAGIC || h.caplen == 0 || h.caplen > PC_SNAP_MAX ||
	    h.caplen > size - sizeof(h) || h.caplen > h.wirelen || h.dir > PC_DIR_EGRESS ||
	    !(ifc = find_if(l, h.ifindex))) {
		l->bad_records++;
		return -EINVAL;
	}
	/* the kernel's skb length, bounded as for capture files (capture.h) */
	int clamped;
	uint32_t wirelen = cap_wirelen(h.caplen, h.wirelen, &clamped);
	l->wirelen_clamped += (uint64_t)clamped;
	*pkt = (struct cap_packet){
		.data = (const uint8_t *)data + sizeof(h),
		.caplen = h.caplen,
		.wirelen = wirelen,
		/* unsigned: a hostile ts_ns must not overflow a signed sum (found by
		 * fuzz_ringrec); modulo 2^64 the result is the same for sane ones */
		.ts_us = (h.ts_ns + (uint64_t)l->mono_to_real_ns) / 1000u,
		.linktype = DC_LINK_ETHERNET,
		.ifindex = h.ifindex,
		.tag = ifc->tag,
		.dir = h.dir == PC_DIR_INGRESS ? CAP_DIR_IN : CAP_DIR_OUT,
	};
	return 0;
}

#ifdef PC_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "tc.skel.h"

#define PC_TC_HANDLE 0x7063 /* "pc" */
#define PC_TC_PRIO 0x7063

struct lb_state {
	struct pc_tc *skel;
	struct ring_buffer *rb;
	uint32_t nstreamed;   /* entries in the `streamed` map */
	int no_batch;         /* the kernel has no batch lookups for the flow map */
	int no_lookup_delete; /* nor lookup-and-delete */
	/* taken out of the flow map by the counts-only sweep, all interfaces */
	uint64_t swept_pkts, swept_bytes, swept_flows;
	/* taken out by lb_flow_counters(take) as flows end (the flow workers'
	 * threads): per interface and direction, so that what an interface counted
	 * never goes down; under taken_lock */
	pthread_mutex_t taken_lock;
	struct lb_taken { uint32_t ifindex; uint64_t pkts[2], bytes[2]; } *taken;
	size_t ntaken, taken_cap;
	uint64_t taken_all_pkts, taken_all_bytes;
	/* keys taken, and of them with packets delivered / all of their first ones,
	 * for lb_stats as its map walk counts the keys still there */
	uint64_t taken_keys, taken_delivered, taken_heads;
	/* when lb_stats last summed every interface (live_if.sum_*) */
	uint64_t sums_ms;
	int sums_valid;
};
/* How old lb_stats()'s per-interface sums may be for lb_counted(). */
#define LB_SUMS_FRESH_MS 500

static int silent_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	/* libbpf's own messages (verifier log, probes) go to stderr only when asked
	 * with PODCAP_BPF_DEBUG=1: a failure's reason is reported by the caller, and a
	 * fallback to libpcap is expected on hosts without CAP_BPF. */
	(void)level;
	if (getenv("PODCAP_BPF_DEBUG"))
		return vfprintf(stderr, fmt, ap);
	return 0;
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct cap_live *l = ctx;
	struct cap_packet pkt;

	if (lb_record_parse(l, data, size, &pkt) < 0)
		return 0; /* counted in bad_records; the ring goes on */
	struct live_if *ifc = find_if(l, pkt.ifindex);
	if (ifc)
		ifc->received++;
	l->received++;
	if (l->fn)
		l->fn(l->fn_arg, &pkt);
	return 0;
}

static int bpf_open(struct cap_live *l, char *errbuf, size_t errlen)
{
	int err;
	struct timespec mono, real;

	libbpf_set_print(silent_print);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	clock_gettime(CLOCK_REALTIME, &real);
	l->mono_to_real_ns = ((int64_t)real.tv_sec - mono.tv_sec) * 1000000000LL + (real.tv_nsec - mono.tv_nsec);

	l->bpf->skel = pc_tc__open();
	if (!l->bpf->skel) {
		err = -errno;
		snprintf(errbuf, errlen, "BPF open: %s", strerror(-err));
		return err;
	}
	l->bpf->skel->rodata->flow_packets = l->cfg.flow_packets;
	/* a keepalive period of 2^k ns, the largest within keepalive_us */
	uint32_t ks = 63;
	if (l->cfg.keepalive_us) {
		uint64_t ns = l->cfg.keepalive_us * 1000u;
		for (ks = 20; ks < 62 && (1ull << (ks + 1)) <= ns; ks++)
			;
	}
	l->bpf->skel->rodata->keepalive_shift = ks;
	l->bpf->skel->rodata->snaplen = l->cfg.snaplen > PC_SNAP_MAX ? PC_SNAP_MAX : l->cfg.snaplen;
	/* The ring's size must be a power of two (and a multiple of the page size). */
	uint32_t ring = 1u << 20;
	while (ring < l->cfg.buffer_bytes && ring < (1u << 30))
		ring <<= 1;
	err = bpf_map__set_max_entries(l->bpf->skel->maps.flows, l->cfg.max_flows);
	if (!err)
		err = bpf_map__set_max_entries(l->bpf->skel->maps.ring, ring);
	if (!err)
		err = pc_tc__load(l->bpf->skel);
	if (err) {
		snprintf(errbuf, errlen, "BPF load: %s%s", strerror(-err),
			 err == -EPERM ? " (needs CAP_BPF and CAP_NET_ADMIN)" : "");
		goto fail;
	}
	l->bpf->rb = ring_buffer__new(bpf_map__fd(l->bpf->skel->maps.ring), on_record, l, NULL);
	if (!l->bpf->rb) {
		err = -errno;
		snprintf(errbuf, errlen, "BPF ring buffer: %s", strerror(-err));
		goto fail;
	}
	return 0;
fail:
	pc_tc__destroy(l->bpf->skel);
	l->bpf->skel = NULL;
	return err;
}

/* Adds or removes ifc in the kernel's `streamed` map; streamed_count tells the
 * program whether to look it up at all. */
static int bpf_streamed(struct cap_live *l, struct live_if *ifc, int on)
{
	uint32_t key = ifc->ifindex;
	uint8_t one = 1;
	int fd = bpf_map__fd(l->bpf->skel->maps.streamed);
	if (!!on == !!ifc->streamed)
		return 0;
	if (on) {
		if (bpf_map_update_elem(fd, &key, &one, BPF_ANY) < 0)
			return errno == E2BIG ? -ENOSPC : -errno;
		l->bpf->nstreamed++;
	} else {
		if (bpf_map_delete_elem(fd, &key) < 0 && errno != ENOENT)
			return -errno;
		l->bpf->nstreamed--;
	}
	ifc->streamed = on ? 1 : 0;
	l->bpf->skel->bss->streamed_count = l->bpf->nstreamed;
	return 0;
}

static void bpf_detach_if(struct live_if *ifc)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifc->ifindex);
	if (ifc->in_attached) {
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .handle = ifc->in_handle, .priority = ifc->in_prio);
		hook.attach_point = BPF_TC_INGRESS;
		bpf_tc_detach(&hook, &o);
		ifc->in_attached = 0;
	}
	if (ifc->out_attached) {
		DECLARE_LIBBPF_OPTS(bpf_tc_opts, o, .handle = ifc->out_handle, .priority = ifc->out_prio);
		hook.attach_point = BPF_TC_EGRESS;
		bpf_tc_detach(&hook, &o);
		ifc->out_attached = 0;
	}
	if (ifc->hook_created) {
		/* Only a clsact qdisc we made is ours to remove; one that was there before
		 * may hold other programs (Cilium, Calico eBPF). */
		hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
		bpf_tc_hook_destroy(&hook);
		ifc->hook_created = 0;
	}
}

static int bpf_attach_if(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen)
{
	DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = (int)ifc->ifindex,
			    .attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS);
	int err = bpf_tc_hook_create(&hook);
	if (err && err != -EEXIST) {
		snprintf(errbuf, errlen, "%s: clsact qdisc: %s", ifc->name, strerror(-err));
		return err;
	}
	ifc->hook_created = err == 0;

	/* A fixed handle and priority with REPLACE: a filter left behind by an agent
	 * that was killed (SIGKILL, OOM) is taken over instead of piling up. */
	DECLARE_LIBBPF_OPTS(bpf_tc_opts, in, .prog_fd = bpf_program__fd(l->bpf->skel->progs.pc_tc_ingress),
			    .handle = PC_TC_HANDLE, .priority = PC_TC_PRIO, .flags = BPF_TC_F_REPLACE);
	hook.attach_point = BPF_TC_INGRESS;
	err = bpf_tc_attach(&hook, &in);
	if (err) {
		snprintf(errbuf, errlen, "%s: tc ingress attach: %s", ifc->name, strerror(-err));
		goto fail;
	}
	ifc->in_attached = 1;
	ifc->in_handle = in.handle;
	ifc->in_prio = in.priority;

	DECLARE_LIBBPF_OPTS(bpf_tc_opts, out, .prog_fd = bpf_program__fd(l->bpf->skel->progs.pc_tc_egress),
			    .handle = PC_TC_HANDLE, .priority = PC_TC_PRIO, .flags = BPF_TC_F_REPLACE);
	hook.attach_point = BPF_TC_EGRESS;
	err = bpf_tc_attach(&hook, &out);
	if (err) {
		snprintf(errbuf, errlen, "%s: tc egress attach: %s", ifc->name, strerror(-err));
		goto fail;
	}
	ifc->out_attached = 1;
	ifc->out_handle = out.handle;
	ifc->out_prio = out.priority;
	return 0;
fail:
	bpf_detach_if(ifc);
	return err;
}

static uint64_t bpf_ring_drops(struct cap_live *l)
{
	int ncpu = libbpf_num_possible_cpus();
	uint64_t total = 0;
	uint32_t zero = 0;
	if (ncpu <= 0 || ncpu > 4096)
		return 0;
	uint64_t *vals = calloc((size_t)ncpu, sizeof(*vals));
	if (!vals)
		return 0;
	if (bpf_map_lookup_elem(bpf_map__fd(l->bpf->skel->maps.ring_drops), &zero, vals) == 0)
		for (int i = 0; i < ncpu; i++)
			total += vals[i];
	free(vals);
	return total;
}

/* Calls fn for every entry of the flow counter map: a batch of up to
 * WALK_BATCH entries per system call where the kernel has batch lookups (5.6+),
 * else two calls per entry.  The map is LRU and shared with the kernel: entries
 * can come and go during a walk (one may be missed or seen twice; the walk is
 * bounded by twice max_flows).  Returns the entries seen. */
#define WALK_BATCH 4096
typedef void (*walk_fn)(void *arg, const struct pc_flow_key *k, const struct pc_flow_val *v);

static uint64_t bpf_walk(struct cap_live *l, walk_fn fn, void *arg)
{
	int fd = bpf_map__fd(l->bpf->skel->maps.flows);
	uint64_t n = 0, cap = (uint64_t)l->cfg.max_flows * 2;

	if (!l->bpf->no_batch) {
		struct pc_flow_key *keys = malloc(WALK_BATCH * sizeof(*keys));
		struct pc_flow_val *vals = malloc(WALK_BATCH * sizeof(*vals));
		uint32_t out_batch = 0;
		void *in = NULL;
		int err = 0;
		while (keys && vals && n <= cap) {
			uint32_t count = WALK_BATCH;
			DECLARE_LIBBPF_OPTS(bpf_map_batch_opts, o);
			err = bpf_map_lookup_batch(fd, in, &out_batch, keys, vals, &count, &o);
			if (err < 0)
				err = -errno;
			for (uint32_t i = 0; i < count; i++)
				fn(arg, &keys[i], &vals[i]);
			n += count;
			if (err < 0)
				break;
			in = &out_batch;
		}
		free(keys);
		free(vals);
		if (keys && vals && (err == -ENOENT || (err == 0 && n > cap)))
			return n; /* -ENOENT: the walk reached the end */
		if (err != -EINVAL && err != -ENOTSUP && err != -EOPNOTSUPP)
			return n; /* out of memory, or an error mid-walk: what was seen */
		l->bpf->no_batch = 1; /* an older kernel: entry by entry from now on */
		n = 0;
	}
	struct pc_flow_key key, next;
	struct pc_flow_val val;
	void *prev = NULL;
	while (bpf_map_get_next_key(fd, prev, &next) == 0 && n <= cap) {
		key = next;
		prev = &key;
		n++;
		if (bpf_map_lookup_elem(fd, &key, &val) == 0)
			fn(arg, &key, &val);
	}
	return n;
}

struct sum_ctx {
	struct cap_live *l;
	int all;
	uint32_t ifindex;
	int dir;
	uint32_t flow_packets;
	uint64_t pkts, bytes, delivered, heads;
};

static void sum_one(void *arg, const struct pc_flow_key *k, const struct pc_flow_val *v)
{
	struct sum_ctx *c = arg;
	if (v->delivered)
		c->delivered++;
	/* delivered also counts packets sent up for a recording or a stream: at
	 * least the first min(pkts, flow_packets) then */
	if (v->delivered >= (v->pkts < c->flow_packets ? v->pkts : c->flow_packets))
		c->heads++;
	if (c->all) {
		/* every interface's sums in the same walk, for lb_counted() */
		struct live_if *ifc = find_if(c->l, k->ifindex);
		if (ifc) {
			ifc->sum_pkts[k->dir & 1] += v->pkts;
			ifc->sum_bytes[k->dir & 1] += v->bytes;
		}
	}
	if (!c->all && (k->ifindex != c->ifindex ||
			(c->dir != CAP_DIR_UNKNOWN && k->dir != (c->dir == CAP_DIR_IN ? PC_DIR_INGRESS : PC_DIR_EGRESS))))
		return;
	c->pkts += v->pkts;
	c->bytes += v->bytes;
}

/* What lb_flow_counters(take) took out of the map for ifindex (both directions or
 * one) into *pkts and *bytes. */
static void taken_of(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes)
{
	*pkts = *bytes = 0;
	pthread_mutex_lock(&l->bpf->taken_lock);
	for (size_t i = 0; i < l->bpf->ntaken; i++) {
		struct lb_taken *t = &l->bpf->taken[i];
		if (t->ifindex != ifindex)
			continue;
		for (int d = 0; d < 2; d++)
			if (dir == CAP_DIR_UNKNOWN || (dir == CAP_DIR_IN) == (d == PC_DIR_INGRESS)) {
				*pkts += t->pkts[d];
				*bytes += t->bytes[d];
			}
		break;
	}
	pthread_mutex_unlock(&l->bpf->taken_lock);
}

static void taken_add(struct cap_live *l, uint32_t ifindex, int dir, const struct pc_flow_val *v)
{
	uint64_t pkts = v->pkts, bytes = v->bytes;
	pthread_mutex_lock(&l->bpf->taken_lock);
	l->bpf->taken_all_pkts += pkts;
	l->bpf->taken_all_bytes += bytes;
	l->bpf->taken_keys++;
	l->bpf->taken_delivered += v->delivered != 0;
	l->bpf->taken_heads += v->delivered >= (v->pkts < l->cfg.flow_packets ? v->pkts : l->cfg.flow_packets);
	size_t i = 0;
	while (i < l->bpf->ntaken && l->bpf->taken[i].ifindex != ifindex)
		i++;
	if (i == l->bpf->ntaken && l->bpf->ntaken == l->bpf->taken_cap) {
		size_t cap = l->bpf->taken_cap ? 2 * l->bpf->taken_cap : 16;
		struct lb_taken *n = realloc(l->bpf->taken, cap * sizeof(*n));
		if (n) {
			l->bpf->taken = n;
			l->bpf->taken_cap = cap;
		}
	}
	if (i == l->bpf->ntaken && i < l->bpf->taken_cap) {
		memset(&l->bpf->taken[i], 0, sizeof(l->bpf->taken[i]));
		l->bpf->taken[i].ifindex = ifindex;
		l->bpf->ntaken++;
	}
	if (i < l->bpf->ntaken) {
		l->bpf->taken[i].pkts[dir & 1] += pkts;
		l->bpf->taken[i].bytes[dir & 1] += bytes;
	}
	pthread_mutex_unlock(&l->bpf->taken_lock);
}

/* Sums the flow counter map, optionally for one interface/direction, with what
 * the counts-only sweep and the ended flows took out of it. */
static void bpf_sum(struct cap_live *l, int all, uint32_t ifindex, int dir, uint64_t *pkts,
		    uint64_t *bytes, uint64_t *entries, uint64_t *delivered, uint64_t *heads)
{
	struct sum_ctx c = {.l = l, .all = all, .ifindex = ifindex, .dir = dir,
			    .flow_packets = l->cfg.flow_packets};
	if (all)
		for (size_t i = 0; i < l->n_ifs; i++) {
			memset(l->ifs[i]->sum_pkts, 0, sizeof(l->ifs[i]->sum_pkts));
			memset(l->ifs[i]->sum_bytes, 0, sizeof(l->ifs[i]->sum_bytes));
			l->ifs[i]->sums_valid = 1;
		}
	uint64_t n = bpf_walk(l, sum_one, &c);
	if (all) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		l->bpf->sums_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
		l->bpf->sums_valid = 1;
	}
	if (all) {
		c.pkts += l->bpf->swept_pkts;
		c.bytes += l->bpf->swept_bytes;
		pthread_mutex_lock(&l->bpf->taken_lock);
		c.pkts += l->bpf->taken_all_pkts;
		c.bytes += l->bpf->taken_all_bytes;
		pthread_mutex_unlock(&l->bpf->taken_lock);
	} else {
		struct live_if *ifc = find_if(l, ifindex);
		for (int d = 0; ifc && d < 2; d++)
			if (dir == CAP_DIR_UNKNOWN || (dir == CAP_DIR_IN) == (d == PC_DIR_INGRESS)) {
				c.pkts += ifc->swept_pkts[d];
				c.bytes += ifc->swept_bytes[d];
			}
		uint64_t tp, tb;
		taken_of(l, ifindex, dir, &tp, &tb);
		c.pkts += tp;
		c.bytes += tb;
	}
	*pkts = c.pkts;
	*bytes = c.bytes;
	if (entries)
		*entries = n;
	if (delivered)
		*delivered = c.delivered;
	if (heads)
		*heads = c.heads;
}

/* ---- counts-only flows ---------------------------------------------------- */

static int is_icmp(uint8_t proto)
{
	return proto == 1 || proto == 58; /* ICMP, ICMPv6: keyed without type/code */
}

/* ICMP types that ask (echo, timestamp, information, mask; ICMPv6 echo). */
static int icmp_request(unsigned type)
{
	return type == 8 || type == 13 || type == 15 || type == 17 || type == 128;
}

/* Turns a counts record around: its replies' side becomes the client. */
static void counts_reverse(struct cap_counts *cc, int r_dir, uint16_t r_icmp)
{
	uint8_t a[16];
	memcpy(a, cc->src, sizeof(a));
	memcpy(cc->src, cc->dst, sizeof(a));
	memcpy(cc->dst, a, sizeof(a));
	uint16_t p = cc->sport;
	cc->sport = is_icmp(cc->proto) ? r_icmp >> 8 : cc->dport;
	cc->dport = is_icmp(cc->proto) ? r_icmp & 0xff : p;
	uint64_t n = cc->pkts;
	cc->pkts = cc->rpkts;
	cc->rpkts = n;
	n = cc->bytes;
	cc->bytes = cc->rbytes;
	cc->rbytes = n;
	cc->dir = r_dir == PC_DIR_INGRESS ? CAP_DIR_IN : CAP_DIR_OUT;
}

struct sweep_ctx {
	uint64_t now_ns, idle_ns;
	int final;
	struct pc_flow_key *keys;
	size_t n, cap;
};

static void sweep_pick(void *arg, const struct pc_flow_key *k, const struct pc_flow_val *v)
{
	struct sweep_ctx *c = arg;
	if (v->delivered || (k->family != 4 && k->family != 6))
		return; /* user space has its packets, or it is not a flow (ARP, ...) */
	if (!c->final && (v->last_ns > c->now_ns || c->now_ns - v->last_ns < c->idle_ns))
		return;
	if (c->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 256;
		struct pc_flow_key *nk = realloc(c->keys, cap * sizeof(*nk));
		if (!nk)
			return; /* the next sweep takes it */
		c->keys = nk;
		c->cap = cap;
	}
	c->keys[c->n++] = *k;
}

/* The key of k's replies: addresses and ports swapped (ICMP keys have ports 0,
 * so an echo request's key reverses into its replies'). */
static struct pc_flow_key key_reverse(const struct pc_flow_key *k)
{
	struct pc_flow_key r = *k;
	memcpy(r.src, k->dst, sizeof(r.src));
	memcpy(r.dst, k->src, sizeof(r.dst));
	r.sport = k->dport;
	r.dport = k->sport;
	return r;
}

/* 1 when user space saw a packet of the flow k belongs to: the same tuple in the
 * other direction of the hook, or the reversed tuple (its replies) either way. */
static int twin_delivered(int fd, const struct pc_flow_key *k)
{
	struct pc_flow_key t = *k;
	struct pc_flow_val v;
	t.dir = k->dir == PC_DIR_INGRESS ? PC_DIR_EGRESS : PC_DIR_INGRESS;
	if (bpf_map_lookup_elem(fd, &t, &v) == 0 && v.delivered)
		return 1;
	t = key_reverse(k);
	for (int d = PC_DIR_INGRESS; d <= PC_DIR_EGRESS; d++) {
		t.dir = (uint8_t)d;
		if (bpf_map_lookup_elem(fd, &t, &v) == 0 && v.delivered)
			return 1;
	}
	return 0;
}

/* Takes key k out of the map with its final counters into *v, if none of its
 * packets went up meanwhile; its counts move to the swept totals.  0 or -1. */
static int sweep_take(struct cap_live *l, int fd, const struct pc_flow_key *k, struct pc_flow_val *v)
{
	/* lookup-and-delete (5.14+) takes the final counts in one step; else lookup
	 * then delete, where a packet in between would be lost: the flow has been
	 * idle, so one is unlikely (and counted nowhere). */
	if (!l->bpf->no_lookup_delete && bpf_map_lookup_and_delete_elem(fd, k, v) < 0) {
		if (errno == ENOENT)
			return -1;
		l->bpf->no_lookup_delete = 1;
	}
	if (l->bpf->no_lookup_delete &&
	    (bpf_map_lookup_elem(fd, k, v) < 0 || bpf_map_delete_elem(fd, k) < 0))
		return -1;
	/* A packet went up between the walk and now: it and the counts are gone
	 * with the key (the record of its flow takes what the kernel still has). */
	l->bpf->swept_pkts += v->pkts;
	l->bpf->swept_bytes += v->bytes;
	struct live_if *ifc = find_if(l, k->ifindex);
	if (ifc) {
		ifc->swept_pkts[k->dir & 1] += v->pkts;
		ifc->swept_bytes[k->dir & 1] += v->bytes;
	}
	return v->delivered ? -1 : 0;
}

int lb_sweep(struct cap_live *l, uint64_t idle_us, int final, cap_counts_fn fn, void *arg)
{
	/* A key without a packet in user space exists only if the ring refused
	 * one (ring drops count every refusal): none, nothing to walk. */
	if (bpf_ring_drops(l) == 0)
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	struct sweep_ctx c = {.now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
			      .idle_ns = idle_us * 1000u, .final = final};
	int fd = bpf_map__fd(l->bpf->skel->maps.flows);
	int handed = 0;

	bpf_walk(l, sweep_pick, &c);
	for (size_t i = 0; i < c.n; i++) {
		const struct pc_flow_key *k = &c.keys[i];
		struct pc_flow_val v, rv;
		if (twin_delivered(fd, k) || sweep_take(l, fd, k, &v) < 0)
			continue;
		struct cap_counts cc = {
			.ifindex = k->ifindex,
			.dir = k->dir == PC_DIR_INGRESS ? CAP_DIR_IN : CAP_DIR_OUT,
			.family = k->family,
			.proto = k->proto,
			.sport = k->sport,
			.dport = k->dport,
			.pkts = v.pkts,
			.bytes = v.bytes,
			.first_us = (v.first_ns + (uint64_t)l->mono_to_real_ns) / 1000u,
			.last_us = (v.last_ns + (uint64_t)l->mono_to_real_ns) / 1000u,
		};
		if (is_icmp(k->proto)) {
			/* the first packet's type and code, as a flow record has them */
			cc.sport = v.icmp_first >> 8;
			cc.dport = v.icmp_first & 0xff;
		}
		memcpy(cc.src, k->src, sizeof(cc.src));
		memcpy(cc.dst, k->dst, sizeof(cc.dst));
		/* Its replies, equally without a packet in user space and idle: the same
		 * record, as the other direction (as a flow's record would have it). */
		struct pc_flow_key r = key_reverse(k);
		uint64_t r_first_ns = UINT64_MAX;
		uint16_t r_icmp = 0;
		int r_dir = 0;
		for (int d = PC_DIR_INGRESS; d <= PC_DIR_EGRESS; d++) {
			r.dir = (uint8_t)d;
			if (bpf_map_lookup_elem(fd, &r, &rv) < 0 || rv.delivered ||
			    (!final && (rv.last_ns > c.now_ns || c.now_ns - rv.last_ns < c.idle_ns)) ||
			    sweep_take(l, fd, &r, &rv) < 0)
				continue;
			if (rv.first_ns < r_first_ns) {
				r_first_ns = rv.first_ns;
				r_icmp = rv.icmp_first;
				r_dir = d;
			}
			cc.rpkts += rv.pkts;
			cc.rbytes += rv.bytes;
			uint64_t f = (rv.first_ns + (uint64_t)l->mono_to_real_ns) / 1000u;
			uint64_t t = (rv.last_ns + (uint64_t)l->mono_to_real_ns) / 1000u;
			if (f < cc.first_us)
				cc.first_us = f;
			if (t > cc.last_us)
				cc.last_us = t;
		}
		/* The client is the side that sent first, as in a flow record; the
		 * clock's tick often holds both, then ICMP's request is the client. */
		if (r_first_ns < v.first_ns ||
		    (r_first_ns == v.first_ns && is_icmp(k->proto) &&
		     icmp_request(r_icmp >> 8) && !icmp_request(v.icmp_first >> 8)))
			counts_reverse(&cc, r_dir, r_icmp);
		l->bpf->swept_flows++;
		fn(arg, &cc);
		handed++;
	}
	free(c.keys);
	return handed;
}

int lb_open(struct cap_live *l, char *errbuf, size_t errlen)
{
	l->bpf = calloc(1, sizeof(*l->bpf));
	if (l->bpf)
		pthread_mutex_init(&l->bpf->taken_lock, NULL);
	if (!l->bpf) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	int err = bpf_open(l, errbuf, errlen);
	if (err) {
		free(l->bpf);
		l->bpf = NULL;
	}
	return err;
}

int lb_attach(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen)
{
	return bpf_attach_if(l, ifc, errbuf, errlen);
}

void lb_detach(struct cap_live *l, struct live_if *ifc)
{
	bpf_streamed(l, ifc, 0); /* a later interface may get the same ifindex */
	bpf_detach_if(ifc);
}

int lb_set_streamed(struct cap_live *l, struct live_if *ifc, int on)
{
	return bpf_streamed(l, ifc, on);
}

int lb_poll(struct cap_live *l, int timeout_ms)
{
	uint64_t before = l->received;
	int r = ring_buffer__poll(l->bpf->rb, timeout_ms);
	if (r < 0 && r != -EINTR)
		return r;
	/* ring_buffer__poll() reads only rings that woke it: a record whose wake-up
	 * went to a reader that was still busy is read here, not a poll later. */
	r = ring_buffer__consume(l->bpf->rb);
	if (r < 0 && r != -EINTR)
		return r;
	return (int)(l->received - before);
}

void lb_set_recording(struct cap_live *l, int on)
{
	l->bpf->skel->bss->record_all = on ? 1 : 0;
}

void lb_stats(struct cap_live *l, struct cap_live_stats *out)
{
	out->ring_drops = bpf_ring_drops(l);
	bpf_sum(l, 1, 0, 0, &out->flow_pkts, &out->flow_bytes, &out->flow_entries, &out->flows_delivered,
		&out->flows_heads);
	out->flows_swept = l->bpf->swept_flows;
	out->flow_map_size = l->cfg.max_flows;
	pthread_mutex_lock(&l->bpf->taken_lock);
	out->flows_taken = l->bpf->taken_keys;
	out->flows_delivered += l->bpf->taken_delivered;
	out->flows_heads += l->bpf->taken_heads;
	pthread_mutex_unlock(&l->bpf->taken_lock);
}

int lb_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes)
{
	/* Callers ask for every interface right after lb_stats() (run's lines, the
	 * API every second): the sums of that walk serve them, not one more walk
	 * of the whole map per interface. */
	struct live_if *ifc = find_if(l, ifindex);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	if (ifc && ifc->sums_valid && l->bpf->sums_valid && now - l->bpf->sums_ms < LB_SUMS_FRESH_MS) {
		*pkts = *bytes = 0;
		for (int d = 0; d < 2; d++)
			if (dir == CAP_DIR_UNKNOWN || (dir == CAP_DIR_IN) == (d == PC_DIR_INGRESS)) {
				*pkts += ifc->sum_pkts[d] + ifc->swept_pkts[d];
				*bytes += ifc->sum_bytes[d] + ifc->swept_bytes[d];
			}
		uint64_t tp, tb;
		taken_of(l, ifindex, dir, &tp, &tb);
		*pkts += tp;
		*bytes += tb;
		return 0;
	}
	bpf_sum(l, 0, ifindex, dir, pkts, bytes, NULL, NULL, NULL);
	return 0;
}

int lb_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t, int take,
		     uint64_t *pkts, uint64_t *bytes)
{
	int fd = bpf_map__fd(l->bpf->skel->maps.flows);
	struct pc_flow_key key;
	struct pc_flow_val val;

	memset(&key, 0, sizeof(key)); /* padding is part of the hash key */
	key.ifindex = ifindex;
	key.family = t->family;
	key.proto = t->proto;
	key.ethertype = t->family == 4 ? 0x0800 : 0x86DD;
	/* ICMP: all of it between the two hosts (the kernel keys no type/code) */
	key.sport = is_icmp(t->proto) ? 0 : t->sport;
	key.dport = is_icmp(t->proto) ? 0 : t->dport;
	memcpy(key.src, t->src, t->family == 4 ? 4 : 16);
	memcpy(key.dst, t->dst, t->family == 4 ? 4 : 16);
	for (int dir = PC_DIR_INGRESS; dir <= PC_DIR_EGRESS; dir++) {
		key.dir = (uint8_t)dir;
		/* BPF_F_LOCK-free lookup: the values are updated with atomics, a torn
		 * read can only be one packet behind.  take: the flow has ended, its
		 * key goes with its final counts in one step (a packet after it starts
		 * a new key, whose first packets go up: a new flow), so that a flow
		 * resuming on the same tuple is not counted again from zero. */
		int got;
		if (take && !l->bpf->no_lookup_delete) {
			got = bpf_map_lookup_and_delete_elem(fd, &key, &val) == 0;
			if (!got && errno != ENOENT) {
				l->bpf->no_lookup_delete = 1; /* before 5.14: lookup, then delete */
				got = bpf_map_lookup_elem(fd, &key, &val) == 0 && bpf_map_delete_elem(fd, &key) == 0;
			}
		} else if (take) {
			got = bpf_map_lookup_elem(fd, &key, &val) == 0 && bpf_map_delete_elem(fd, &key) == 0;
		} else {
			got = bpf_map_lookup_elem(fd, &key, &val) == 0;
		}
		if (got) {
			*pkts += val.pkts;
			*bytes += val.bytes;
			if (take)
				taken_add(l, ifindex, dir, &val);
		}
	}
	return 0;
}

void lb_close(struct cap_live *l)
{
	if (!l->bpf)
		return;
	ring_buffer__free(l->bpf->rb);
	pc_tc__destroy(l->bpf->skel);
	pthread_mutex_destroy(&l->bpf->taken_lock);
	free(l->bpf->taken);
	free(l->bpf);
	l->bpf = NULL;
}

#else /* built without BPF */

int lb_open(struct cap_live *l, char *errbuf, size_t errlen)
{
	(void)l;
	snprintf(errbuf, errlen, "built without eBPF support (clang, bpftool or kernel BTF missing at build time)");
	return -EOPNOTSUPP;
}
int lb_attach(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen)
{
	(void)l; (void)ifc;
	snprintf(errbuf, errlen, "built without eBPF support");
	return -EOPNOTSUPP;
}
void lb_detach(struct cap_live *l, struct live_if *ifc) { (void)l; (void)ifc; }
int lb_poll(struct cap_live *l, int timeout_ms) { (void)l; (void)timeout_ms; return -EOPNOTSUPP; }
void lb_set_recording(struct cap_live *l, int on) { (void)l; (void)on; }
int lb_set_streamed(struct cap_live *l, struct live_if *ifc, int on)
{
	(void)l; (void)ifc; (void)on;
	return -EOPNOTSUPP;
}
void lb_stats(struct cap_live *l, struct cap_live_stats *out) { (void)l; (void)out; }
int lb_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes)
{
	(void)l; (void)ifindex; (void)dir;
	*pkts = *bytes = 0;
	return -EOPNOTSUPP;
}
int lb_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t, int take,
		     uint64_t *pkts, uint64_t *bytes)
{
	(void)l; (void)ifindex; (void)t; (void)take;
	*pkts = *bytes = 0;
	return -EOPNOTSUPP;
}
int lb_sweep(struct cap_live *l, uint64_t idle_us, int final, cap_counts_fn fn, void *arg)
{
	(void)l; (void)idle_us; (void)final; (void)fn; (void)arg;
	return 0;
}
void lb_close(struct cap_live *l) { (void)l; }

#endif
