// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* tc.bpf.c — podcap's kernel-side capture on tc clsact ingress/egress.
 *
 * Every packet is counted exactly in an LRU hash keyed by (ifindex, direction,
 * 5-tuple; ICMP without type and code, as user space keys its flows); the first
 * flow_packets packets of each flow (enough for nDPI), one packet of each flow
 * per keepalive period (so user space sees a long flow go on, or resume after
 * a pause, and does not end it as idle while the kernel still counts it), every
 * ICMP error and,
 * while user space sets record_all, every packet, go up a ring buffer truncated
 * to snaplen; so does every packet of an interface in `streamed` (a live stream
 * watches it).  What the ring cannot take is counted per CPU, never silent.  The
 * program never changes a packet's fate: it always returns TC_ACT_OK. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "tc_shared.h"

#define TC_ACT_OK 0
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define PC_IPPROTO_ICMPV6 58

const volatile __u32 flow_packets = 16;
/* The keepalive period is 2^keepalive_shift ns (user space: at most half the
 * flows' idle timeout); 63 = none. */
const volatile __u32 keepalive_shift = 63;
const volatile __u32 snaplen = 256;
/* Written by user space at run time (a recording in progress). */
volatile __u32 record_all;
/* Entries in `streamed` (user space keeps it): 0 spares every packet the lookup. */
volatile __u32 streamed_count;

/* Interfaces a live stream is watching (ifindex -> 1), set by user space while
 * the stream lasts: every packet of theirs goes up, not only flow heads. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} streamed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct pc_flow_key);
	__type(value, struct pc_flow_val);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} ring_drops SEC(".maps");

static __always_inline void count_ring_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&ring_drops, &zero);
	if (d)
		*d += 1;
}

/* Fast path: the outer headers straight from the skb's linear data (no helper
 * call, no copy) for untagged frames.  Every packet pointer is data + a
 * constant: without CAP_PERFMON (the DaemonSet has bpf, net_admin, net_raw) the
 * verifier refuses a packet pointer moved by a register, even one holding a
 * known value.  IPv4 and IPv6 are separate functions so that clang cannot merge
 * their similar loads into one at data + (either offset) in a register.  Each
 * returns -1 when the headers are not all in the linear data or the IPv4 header
 * has options; parse() then reads them with copies. */

/* The first 4 bytes of the L4 header: ports (TCP, UDP, SCTP) or ICMP type and
 * code in the first two.  One load for all, for the same reason. */
static __always_inline void l4_word(struct pc_flow_key *key, __u8 l4proto, __u32 w)
{
	__u8 *b = (__u8 *)&w;
	if (l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP || l4proto == IPPROTO_SCTP) {
		key->sport = (__u16)b[0] << 8 | b[1];
		key->dport = (__u16)b[2] << 8 | b[3];
	} else {
		key->sport = b[0];
		key->dport = b[1];
	}
}

static __always_inline int has_l4_word(__u8 l4proto)
{
	return l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP || l4proto == IPPROTO_SCTP ||
	       l4proto == IPPROTO_ICMP || l4proto == PC_IPPROTO_ICMPV6;
}

static __noinline int parse_ip4_direct(struct __sk_buff *skb, struct pc_flow_key *key)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + 14;

	if ((void *)(ip + 1) > end)
		return -1;
	if (ip->version != 4 || ip->ihl < 5)
		return 0; /* what parse() keeps for it too: ethertype only */
	key->family = 4;
	key->proto = ip->protocol;
	__builtin_memcpy(key->src, &ip->saddr, 4);
	__builtin_memcpy(key->dst, &ip->daddr, 4);
	if (ip->frag_off & bpf_htons(0x1fff))
		return 0; /* later fragments carry no L4 header: ports 0 */
	if (!has_l4_word(ip->protocol))
		return 0;
	if (ip->ihl != 5)
		return -1; /* options: a variable offset */
	__u32 *l4 = data + 14 + sizeof(*ip);
	if ((void *)(l4 + 1) > end)
		return -1;
	l4_word(key, ip->protocol, *l4);
	return 0;
}

static __noinline int parse_ip6_direct(struct __sk_buff *skb, struct pc_flow_key *key)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ipv6hdr *ip6 = data + 14;

	if ((void *)(ip6 + 1) > end)
		return -1;
	if (ip6->version != 6)
		return 0;
	key->family = 6;
	key->proto = ip6->nexthdr;
	/* word by word: clang 14's memcpy of these moves the packet pointer by a
	 * register */
	const __u32 *a = (const __u32 *)(data + 14 + 8);
	__u32 *ks = (__u32 *)key->src, *kd = (__u32 *)key->dst;
	ks[0] = a[0];
	ks[1] = a[1];
	ks[2] = a[2];
	ks[3] = a[3];
	kd[0] = a[4];
	kd[1] = a[5];
	kd[2] = a[6];
	kd[3] = a[7];
	if (!has_l4_word(ip6->nexthdr))
		return 0;
	__u32 *l4 = data + 14 + sizeof(*ip6);
	if ((void *)(l4 + 1) > end)
		return -1;
	l4_word(key, ip6->nexthdr, *l4);
	return 0;
}

static __always_inline int parse_direct(struct __sk_buff *skb, struct pc_flow_key *key)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return -1;
	__u16 proto = bpf_ntohs(eth->h_proto);
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD)
		return -1; /* tagged: parse() */
	key->ethertype = proto;
	if (proto == ETH_P_IP)
		return parse_ip4_direct(skb, key);
	if (proto == ETH_P_IPV6)
		return parse_ip6_direct(skb, key);
	return 0;
}

/* Slow path: the same parse with bounded copies (bpf_skb_load_bytes also reads
 * paged data); what cannot be read stays 0 in key. */
static __always_inline void parse(struct __sk_buff *skb, struct pc_flow_key *key)
{
	__u32 off = 14;
	__u16 proto;

	if (bpf_skb_load_bytes(skb, 12, &proto, 2) < 0)
		return;
	proto = bpf_ntohs(proto);
	/* Up to two VLAN tags (QinQ); deeper stacks stay counted by ethertype. */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if (bpf_skb_load_bytes(skb, off + 2, &proto, 2) < 0)
			return;
		proto = bpf_ntohs(proto);
		off += 4;
	}
	key->ethertype = proto;

	__u8 l4proto;
	__u32 l4off;
	if (proto == ETH_P_IP) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0 || ip.version != 4 || ip.ihl < 5)
			return;
		key->family = 4;
		key->proto = ip.protocol;
		__builtin_memcpy(key->src, &ip.saddr, 4);
		__builtin_memcpy(key->dst, &ip.daddr, 4);
		/* Later fragments carry no L4 header: leave the ports 0. */
		if (ip.frag_off & bpf_htons(0x1fff))
			return;
		l4proto = ip.protocol;
		l4off = off + ip.ihl * 4;
	} else if (proto == ETH_P_IPV6) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
			return;
		key->family = 6;
		key->proto = ip6.nexthdr;
		__builtin_memcpy(key->src, &ip6.saddr, 16);
		__builtin_memcpy(key->dst, &ip6.daddr, 16);
		/* Extension headers are not walked here (user space decodes them);
		 * such packets are keyed by addresses and next header only. */
		l4proto = ip6.nexthdr;
		l4off = off + sizeof(ip6);
	} else {
		return;
	}
	if (l4proto == IPPROTO_TCP || l4proto == IPPROTO_UDP || l4proto == IPPROTO_SCTP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, l4off, ports, sizeof(ports)) < 0)
			return;
		key->sport = bpf_ntohs(ports[0]);
		key->dport = bpf_ntohs(ports[1]);
	} else if (l4proto == IPPROTO_ICMP || l4proto == PC_IPPROTO_ICMPV6) {
		__u8 tc[2];
		if (bpf_skb_load_bytes(skb, l4off, tc, sizeof(tc)) < 0)
			return;
		key->sport = tc[0];
		key->dport = tc[1];
	}
}

/* Reserves a ring record with room for cls bytes of frame (a constant power of
 * two: the ring only reserves constant sizes) and copies len (1..cls) bytes
 * straight into it, one copy.  Returns 0, or -1 when the ring is full or the copy failed. */
static __always_inline int emit(struct __sk_buff *skb, __u32 len, const __u32 cls, __u8 dir,
				__u8 flags)
{
	struct pc_rec_hdr *r = bpf_ringbuf_reserve(&ring, sizeof(*r) + cls, 0);
	if (!r)
		return -1;
	/* len is 1..cls here; the mask proves it to the verifier (cls is a power of 2) */
	len = ((len - 1) & (cls - 1)) + 1;
	if (bpf_skb_load_bytes(skb, 0, (void *)(r + 1), len) < 0) {
		bpf_ringbuf_discard(r, BPF_RB_NO_WAKEUP);
		return -1;
	}
	r->magic = PC_REC_MAGIC;
	r->ifindex = skb->ifindex;
	r->ts_ns = bpf_ktime_get_ns();
	r->caplen = len;
	r->wirelen = skb->len;
	r->dir = dir;
	r->flags = flags;
	r->pad = 0;
	r->pad2 = 0;
	/* The ring's adaptive rule: a record wakes the reader only when it has
	 * caught up (it sleeps).  Tried: waking it only for streamed packets and
	 * when the unread data crossed an eighth of the ring, polling for the
	 * rest: it saved the wake-up interrupts but lost 7,000-52,000 flow heads
	 * per flood run to a full ring, against 0-5,000 this way. */
	bpf_ringbuf_submit(r, 0);
	return 0;
}

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pc_flow_key key = {};
	struct pc_flow_val *v;
	/* The counters' times need no better than a tick: the coarse clock is
	 * a load, the fine one a clock-source read (ring records take that). */
	__u64 now = bpf_ktime_get_coarse_ns();
	__u64 seen;
	__u8 flags = 0;

	key.ifindex = skb->ifindex;
	key.dir = dir;
	if (parse_direct(skb, &key) < 0)
		parse(skb, &key);
	/* ICMP's type and code go into the value, not the key (tc_shared.h).  An
	 * ICMP error (unreachable, fragmentation needed / too big, time exceeded,
	 * parameter problem) always goes up, past the flow's head budget: it says
	 * where a connection stops, and senders rate-limit them. */
	__u16 icmp_first = 0;
	int icmp_error = 0;
	if (key.proto == IPPROTO_ICMP || key.proto == PC_IPPROTO_ICMPV6) {
		icmp_first = (__u16)(key.sport << 8 | key.dport);
		if (key.proto == IPPROTO_ICMP)
			icmp_error = key.sport == 3 || key.sport == 11 || key.sport == 12;
		else
			icmp_error = key.sport >= 1 && key.sport <= 4;
		key.sport = 0;
		key.dport = 0;
	}

	v = bpf_map_lookup_elem(&flows, &key);
	if (!v) {
		struct pc_flow_val init = { .first_ns = now, .icmp_first = icmp_first };
		bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&flows, &key);
		if (!v)
			return TC_ACT_OK;
	}
	seen = __sync_fetch_and_add(&v->pkts, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	__u64 prev = v->last_ns;
	if (prev != now)
		v->last_ns = now;
	/* the first packet of each keepalive period (the clock crossed into a new
	 * one since the flow's last packet): two shifts of values at hand */
	__u32 ks = keepalive_shift & 63;
	int keepalive = (prev >> ks) != (now >> ks);

	if (seen < flow_packets || icmp_error || keepalive)
		flags |= PC_REC_FLOW_HEAD;
	if (record_all)
		flags |= PC_REC_RECORDING;
	if (streamed_count && bpf_map_lookup_elem(&streamed, &key.ifindex))
		flags |= PC_REC_STREAMED;
	if (!flags)
		return TC_ACT_OK;

	__u32 len = skb->len;
	__u32 snap = snaplen;
	if (snap > PC_SNAP_MAX)
		snap = PC_SNAP_MAX;
	if (len > snap)
		len = snap;
	if (len < 1) {
		count_ring_drop();
		return TC_ACT_OK;
	}
	int err;
	if (len <= 128)
		err = emit(skb, len, 128, dir, flags);
	else if (len <= 256)
		err = emit(skb, len, 256, dir, flags);
	else if (len <= 512)
		err = emit(skb, len, 512, dir, flags);
	else if (len <= 1024)
		err = emit(skb, len, 1024, dir, flags);
	else
		err = emit(skb, len, PC_SNAP_MAX, dir, flags);
	if (err < 0)
		count_ring_drop();
	else if (flags & PC_REC_FLOW_HEAD)
		__sync_fetch_and_add(&v->delivered, 1);
	return TC_ACT_OK;
}

SEC("tc")
int pc_tc_ingress(struct __sk_buff *skb)
{
	return handle(skb, PC_DIR_INGRESS);
}

SEC("tc")
int pc_tc_egress(struct __sk_buff *skb)
{
	return handle(skb, PC_DIR_EGRESS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
