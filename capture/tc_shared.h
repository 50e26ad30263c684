/* tc_shared.h — what crosses the kernel/user boundary of the eBPF tc backend.
 * Fixed-width types only; included by tc.bpf.c (with vmlinux.h) and live_bpf.c. */
#ifndef PODCAP_TC_SHARED_H
#define PODCAP_TC_SHARED_H

#define PC_DIR_INGRESS 0
#define PC_DIR_EGRESS 1

/* Largest snap length a ring record can carry; rodata snaplen is clamped to it. */
#define PC_SNAP_MAX 2048
#define PC_REC_MAGIC 0x70637230 /* "pcr0" */

/* One flow as the kernel sees it on one hook: exact packet and byte counts.
 * Frames that are not plain IPv4/IPv6 get family 0 and their ethertype, so the
 * counters add up to everything the hook saw. */
struct pc_flow_key {
	__u32 ifindex;
	__u8 dir;      /* PC_DIR_* */
	__u8 family;   /* 4, 6, or 0 for non-IP */
	__u8 proto;    /* IPPROTO_* */
	__u8 pad;
	__u16 ethertype; /* host order, after VLAN tags */
	__u16 sport, dport; /* host order; 0 for ICMP and ICMPv6: all ICMP between two
	                     * hosts is one flow, as user space keys it (flow.c), so
	                     * an echo request and its reply are each other's reverse */
	__u16 pad2;         /* src and dst 4-byte aligned: the program copies words */
	__u8 src[16], dst[16];
};

struct pc_flow_val {
	__u64 pkts, bytes;
	__u64 first_ns, last_ns; /* CLOCK_MONOTONIC at tick resolution (coarse clock) */
	__u32 delivered;         /* flow-head packets that reached the ring (ICMP
	                          * errors count as heads beyond the first N) */
	__u16 icmp_first;        /* ICMP: type << 8 | code of the key's first packet */
	__u16 pad;
};

/* Ring record: this header, then caplen bytes of the frame. */
struct pc_rec_hdr {
	__u32 magic;
	__u32 ifindex;
	__u64 ts_ns;   /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u32 caplen, wirelen;
	__u8 dir;
	__u8 flags;    /* PC_REC_* */
	__u16 pad;
	__u32 pad2;
};
#define PC_REC_FLOW_HEAD 0x01 /* one of the flow's first N packets */
#define PC_REC_RECORDING 0x02 /* asked for by a recording */
#define PC_REC_STREAMED 0x04  /* its interface is watched by a live stream */

#endif
