// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
/* tc.bpf.c — podcap's kernel-side capture on tc clsact ingress/egress.
 *
 * Every packet is counted exactly in an LRU hash keyed by (ifindex, direction,
 * 5-tuple); the first flow_packets packets of each flow (enough for nDPI) and,
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

struct scratch {
	struct pc_rec_hdr hdr;
	__u8 data[PC_SNAP_MAX];
};

/* The record is assembled here, then copied into the ring with its real size:
 * bpf_ringbuf_reserve() only takes constant sizes, and a 2 KiB slot per packet
 * would waste most of the ring on small packets. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

static __always_inline void count_ring_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&ring_drops, &zero);
	if (d)
		*d += 1;
}

/* Parses the frame's outer headers into key with bounded reads. */
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

static __always_inline int handle(struct __sk_buff *skb, __u8 dir)
{
	struct pc_flow_key key = {};
	struct pc_flow_val *v, init = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 seen;
	__u8 flags = 0;

	key.ifindex = skb->ifindex;
	key.dir = dir;
	parse(skb, &key);

	v = bpf_map_lookup_elem(&flows, &key);
	if (!v) {
		init.first_ns = now;
		bpf_map_update_elem(&flows, &key, &init, BPF_NOEXIST);
		v = bpf_map_lookup_elem(&flows, &key);
		if (!v)
			return TC_ACT_OK;
	}
	seen = __sync_fetch_and_add(&v->pkts, 1);
	__sync_fetch_and_add(&v->bytes, skb->len);
	v->last_ns = now;

	if (seen < flow_packets)
		flags |= PC_REC_FLOW_HEAD;
	if (record_all)
		flags |= PC_REC_RECORDING;
	if (streamed_count && bpf_map_lookup_elem(&streamed, &key.ifindex))
		flags |= PC_REC_STREAMED;
	if (!flags)
		return TC_ACT_OK;

	__u32 zero = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!s)
		return TC_ACT_OK;
	__u32 len = skb->len;
	__u32 snap = snaplen;
	if (snap > PC_SNAP_MAX)
		snap = PC_SNAP_MAX;
	if (len > snap)
		len = snap;
	/* The verifier needs a provably bounded, non-zero length. */
	if (len < 1 || len > PC_SNAP_MAX)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, 0, s->data, len) < 0) {
		count_ring_drop();
		return TC_ACT_OK;
	}
	s->hdr.magic = PC_REC_MAGIC;
	s->hdr.ifindex = skb->ifindex;
	s->hdr.ts_ns = now;
	s->hdr.caplen = len;
	s->hdr.wirelen = skb->len;
	s->hdr.dir = dir;
	s->hdr.flags = flags;
	s->hdr.pad = 0;
	s->hdr.pad2 = 0;
	if (bpf_ringbuf_output(&ring, s, sizeof(s->hdr) + len, 0) < 0)
		count_ring_drop();
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
