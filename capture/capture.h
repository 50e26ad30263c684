/* capture — where packets come from, and which interfaces are worth watching.
 *
 * Three parts behind one header:
 *   files      pcap (mapped, our own parser) and pcapng / pipes (libpcap): cap_open_file
 *   live       libpcap (TPACKET_V3) or the eBPF tc backend on live interfaces: cap_live_*
 *   discovery  which interfaces of a node are pod veths, bridges, overlays, the NIC,
 *              named after their pods by the inventory file: cap_discover, cap_disc_*
 *
 * Every packet, from a file or live, is a struct cap_packet: bytes, lengths, time,
 * link type, interface, direction (in/out when the source knows it) and the tag
 * the caller gave the interface (cap_live_add), so a consumer finds its own state
 * for the packet in O(1).
 *
 * Ownership: the bytes a cap_packet points to are owned by the source and valid
 * until the next cap_next() on it (files) or until the callback returns (live),
 * or, when cap_packet.stable is set (a mapped file), until cap_close().
 * Threads: one thread per cap_source, per cap_live, per cap_inventory and per
 * cap_disc_monitor.  Errors: 0 / negative errno, message in errbuf.
 */
#ifndef PODCAP_CAPTURE_H
#define PODCAP_CAPTURE_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

struct dc_tuple;

/* Direction of a packet relative to its interface. */
enum cap_dir { CAP_DIR_IN = 0, CAP_DIR_OUT = 1, CAP_DIR_UNKNOWN = 2 };

struct cap_packet {
	const uint8_t *data;
	uint32_t caplen, wirelen;
	uint64_t ts_us;     /* microseconds since the epoch */
	int linktype;       /* LINKTYPE_* (dc_linktype) */
	uint32_t ifindex;   /* pcapng interface id for files, kernel ifindex live */
	uint32_t tag;       /* live: the tag given to cap_live_add for the interface; files: 0 */
	uint8_t dir;        /* enum cap_dir */
	uint8_t stable;     /* data stays valid until cap_close(), not only until cap_next() */
};

/* ==== capture files ======================================================== */

struct cap_source;
/* A consumer that holds on to stable packets should keep what it holds within
 * this many bytes of the newest packet it got: the source hands older pages of
 * a mapped file back to the kernel, and a later touch has to fault them in again. */
#define CAP_STABLE_WINDOW (4u << 20)

struct cap_stats {
	uint64_t received;     /* packets handed out */
	uint64_t kernel_drops; /* live: pcap_stats ps_drop + ps_ifdrop */
	uint64_t bytes_read;   /* files: bytes consumed so far (for progress) */
	uint64_t file_size;    /* files: total size, 0 when unknown (pipe) */
	uint64_t wirelen_clamped; /* records whose wire length was cut to CAP_MAX_WIRE_EXCESS
	                           * beyond their captured length */
};

/* A record may not claim a wire length more than this beyond its captured
 * length: larger claims (a 4 GB "len" in a 100-byte record) come from damaged or
 * hostile files and would inflate byte counts without bound.  Such a wire length
 * is cut to caplen + CAP_MAX_WIRE_EXCESS and counted (cap_stats.wirelen_clamped,
 * cap_live_stats.wirelen_clamped for eBPF ring records).  256 KiB covers real
 * traffic: libpcap's largest frame is 256 KiB, and a GSO/GRO packet seen by tc
 * is at most 64 KiB (more only where BIG TCP is configured above it).  See
 * docs/security.md. */
#define CAP_MAX_WIRE_EXCESS (256u * 1024u)
/* The wire length to use for a record: wirelen, at least caplen, at most
 * caplen + CAP_MAX_WIRE_EXCESS; *clamped is set to 1 when it was cut. */
static inline uint32_t cap_wirelen(uint32_t caplen, uint32_t wirelen, int *clamped)
{
	uint64_t max = (uint64_t)caplen + CAP_MAX_WIRE_EXCESS;
	*clamped = 0;
	if (wirelen < caplen)
		return caplen;
	if ((uint64_t)wirelen > max) {
		*clamped = 1;
		return max > UINT32_MAX ? UINT32_MAX : (uint32_t)max;
	}
	return wirelen;
}
/* Opens a pcap or pcapng file ("-" = stdin).  Refuses snaplen headers above
 * CAP_MAX_SNAPLEN and files that are not captures, with a message. */
#define CAP_MAX_SNAPLEN (256u * 1024u)
int cap_open_file(const char *path, struct cap_source **out, char *errbuf, size_t errlen);

/* Returns 1 and fills *pkt, 0 at the end of input, or a negative errno (then
 * errbuf-style text via cap_error()): a file truncated mid-packet is an error that
 * comes after every complete packet has been returned. */
int cap_next(struct cap_source *s, struct cap_packet *pkt);
const char *cap_error(const struct cap_source *s);
int cap_linktype(const struct cap_source *s);
/* Name of interface id ifindex, for pcapng files with several interfaces; NULL if
 * unknown. */
const char *cap_ifname(const struct cap_source *s, uint32_t ifindex);
void cap_stats(const struct cap_source *s, struct cap_stats *out);
void cap_close(struct cap_source *s);

/* ==== live capture ========================================================= */
/* Live capture on interfaces of the current network namespace, through one of two
 * backends behind the same calls:
 *
 *   CAP_BACKEND_PCAP  libpcap per interface (pcap_create, immediate mode, a
 *                     TPACKET_V3 ring of buffer_bytes, optional BPF filter), both
 *                     directions (not told apart: libpcap offers LINUX_SLL2 only
 *                     on "any"), Ethernet frames; kernel drops from pcap_stats.
 *   CAP_BACKEND_EBPF  tc clsact ingress+egress programs (tc.bpf.c): exact per-flow
 *                     packet/byte counters in a map, and a ring buffer carrying
 *                     the first flow_packets packets of each flow (or every
 *                     packet while recording, or of an interface a live stream
 *                     watches), truncated to snaplen; what the
 *                     ring could not take is counted.  Packets carry in/out.
 *
 * cap_live_open() with CAP_BACKEND_EBPF falls back to libpcap when the BPF
 * program cannot be loaded (no CAP_BPF, old kernel, built without BPF), and says
 * why in cap_live_fallback_reason().  cap_live_close() detaches every tc program
 * and qdisc it created.
 */
enum cap_backend { CAP_BACKEND_PCAP = 0, CAP_BACKEND_EBPF = 1 };
const char *cap_backend_name(int backend); /* "pcap", "ebpf" */

struct cap_live_config {
	int backend;            /* enum cap_backend */
	uint32_t snaplen;       /* bytes kept per packet (default 2048; eBPF max 2048) */
	uint32_t buffer_bytes;  /* pcap: kernel ring per interface; eBPF: the ring buffer,
	                         * rounded up to a power of two (default 8 MiB) */
	const char *filter;     /* pcap: BPF filter expression, NULL = all */
	uint32_t flow_packets;  /* eBPF: packets of each flow sent up (default 16) */
	uint64_t keepalive_us;  /* eBPF: and one per this period while it has packets,
	                         * so that user space does not end a long flow as idle
	                         * (0: none; the agent sets half the idle timeout) */
	uint32_t max_flows;     /* eBPF: flow counter map entries (default 65536) */
	int no_fallback;        /* eBPF: fail instead of falling back to libpcap */
};
void cap_live_config_default(struct cap_live_config *cfg);

/* Called for every packet; pkt and its bytes are valid only during the call. */
typedef void (*cap_live_fn)(void *arg, const struct cap_packet *pkt);

struct cap_live_iface_stats {
	char name[IF_NAMESIZE];
	uint32_t ifindex;
	uint64_t received;      /* packets handed to the callback */
	uint64_t kernel_drops;  /* pcap: ps_drop + ps_ifdrop */
};

struct cap_live_stats {
	uint64_t received;
	uint64_t kernel_drops;  /* pcap, all interfaces */
	uint64_t ring_drops;    /* eBPF: packets the ring buffer could not take */
	uint64_t bad_records;   /* eBPF: ring records that failed the checks, skipped */
	uint64_t wirelen_clamped; /* eBPF: ring records whose wire length was cut (CAP_MAX_WIRE_EXCESS) */
	uint64_t flow_pkts, flow_bytes; /* eBPF: exact totals of the flow counter map */
	uint64_t flow_entries;  /* eBPF: flows in the counter map */
	uint64_t flow_map_size; /* eBPF: its size (full: it evicts the least recently used) */
	uint64_t flows_taken;   /* eBPF: keys taken out with their flow's final record
	                         * (cap_live_flow_take); flows_delivered and flows_heads
	                         * count them too */
	uint64_t flows_delivered; /* eBPF: of those, flows with a packet in user space */
	uint64_t flows_heads;   /* eBPF: ... with all of their first flow_packets there */
	uint64_t flows_swept;   /* eBPF: flows handed over counts-only (cap_live_sweep_counts) */
};

struct cap_live;

/* Checks a libpcap filter expression for Ethernet without opening anything;
 * 0, or -EINVAL with libpcap's message in errbuf. */
int cap_live_check_filter(const char *filter, char *errbuf, size_t errlen);

int cap_live_open(const struct cap_live_config *cfg, struct cap_live **out, char *errbuf, size_t errlen);
int cap_live_backend(const struct cap_live *l);
/* Why an eBPF request runs on libpcap, or NULL. */
const char *cap_live_fallback_reason(const struct cap_live *l);

/* Starts capturing on an interface (by name) of the current namespace; its
 * packets carry tag in cap_packet.tag (the caller's own id for the interface,
 * e.g. an observation point).  -EEXIST when it is already captured.  An interface
 * libpcap stopped reading because it went down is opened again (call this when it
 * comes back up; the tag is taken from this call). */
int cap_live_add(struct cap_live *l, const char *ifname, uint32_t tag, char *errbuf, size_t errlen);
/* Stops capturing on an interface; -ENOENT when unknown.  An interface that
 * disappeared is removed this way too. */
int cap_live_remove(struct cap_live *l, uint32_t ifindex);

/* Waits up to timeout_ms for packets and hands each to fn.  Returns the number of
 * packets, or a negative errno. */
int cap_live_poll(struct cap_live *l, int timeout_ms, cap_live_fn fn, void *arg);

/* eBPF: ask for every packet (1) or only the head of each flow (0). */
int cap_live_set_recording(struct cap_live *l, int on);
/* eBPF: every packet of one captured interface goes up the ring (on = 1), as a
 * live stream watching it needs, or only the heads of its flows again (on = 0;
 * also when the interface is removed).  At most 256 interfaces at once (-ENOSPC).
 * libpcap sees every packet anyway: 0.  -ENOENT for an interface not captured. */
int cap_live_set_streamed(struct cap_live *l, uint32_t ifindex, int on);

void cap_live_stats(struct cap_live *l, struct cap_live_stats *out);

/* A flow the eBPF program counted of which no packet reached user space (the
 * ring was full each time it tried): the kernel's counters, for a record that
 * says "counts only". */
struct cap_counts {
	uint32_t ifindex;
	int dir;                    /* CAP_DIR_IN or CAP_DIR_OUT */
	/* as its packets carried it (src = their sender): dc_tuple's fields, kept
	 * here so this header needs no decode.h */
	uint8_t family, proto;
	uint16_t sport, dport;      /* ICMP: type and code of its first packet */
	uint8_t src[16], dst[16];
	uint64_t pkts, bytes;
	uint64_t rpkts, rbytes;     /* its replies (dst to src), when they too had no
	                             * packet in user space; else 0 */
	uint64_t first_us, last_us; /* wall clock, at the kernel's tick resolution */
};
typedef void (*cap_counts_fn)(void *arg, const struct cap_counts *c);
/* eBPF: hands each such flow idle for idle_us or more (every one when final) to
 * fn, then takes it out of the kernel's map; a flow whose other direction did
 * reach user space is left to that flow's record.  The counts stay in
 * cap_live_stats and cap_live_counted.  Returns how many were handed over, or
 * -errno; 0 on libpcap, which sees every packet.  The capturing thread. */
int cap_live_sweep_counts(struct cap_live *l, uint64_t idle_us, int final, cap_counts_fn fn, void *arg);
/* Per-interface counters into out[0..max); returns the number of interfaces. */
size_t cap_live_iface_stats(struct cap_live *l, struct cap_live_iface_stats *out, size_t max);

/* eBPF: exact counters of one interface and direction (dir = CAP_DIR_UNKNOWN for
 * both) summed over its flows; -EOPNOTSUPP on libpcap. */
int cap_live_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes);

/* eBPF: exact counters of one flow direction on one interface: packets whose
 * outer tuple is t (src→dst as given), summed over the ingress and egress hooks;
 * for ICMP/ICMPv6 all of it from src to dst (t's type and code are ignored: the
 * kernel, like the flow table, keys ICMP without them).
 * A flow record's untunnelled key gives its two directions as t and t reversed.
 * Returns 0 (zeros when the kernel never saw it or evicted it), -EOPNOTSUPP on
 * libpcap, -EINVAL for a tuple without family. */
int cap_live_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t,
			   uint64_t *pkts, uint64_t *bytes);
/* The same for a flow that has ended: its keys leave the map with their final
 * counts (one step on 5.14+), so that a later packet of the tuple starts a new
 * key whose first packets go up (a new flow) instead of adding to these.  What
 * an interface counted (cap_live_counted) keeps them.  Any thread. */
int cap_live_flow_take(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t, uint64_t *pkts,
		       uint64_t *bytes);

void cap_live_close(struct cap_live *l);

/* ==== discovery ============================================================ */
/* Which interfaces of a node are worth watching, and whose they are.
 *
 * Lists the interfaces of the calling thread's network namespace over rtnetlink
 * and classifies each: a pod's host-side veth (veth whose peer lives in another
 * namespace, named as CNIs name them: veth*, cali*, lxc*, eni*, ...), a bridge
 * (cni0, docker0), an overlay device (any vxlan/geneve/ipip/gre kind, flannel.1,
 * vxlan.calico, cilium_vxlan, tunl0, ...), the node NIC, or something else.  Pod
 * veths are named after their pod through the inventory file the lab (or a CNI
 * watcher) writes.  A monitor follows links appearing and disappearing
 * (RTMGRP_LINK); the caller polls its fd and calls cap_disc_monitor_read().
 *
 * Threads: a cap_inventory and a cap_disc_monitor are used by one thread at a
 * time.  Everything is owned by its handle; strings handed out stay valid until
 * the handle is freed.  Errors: 0 / negative errno.
 */
enum cap_if_class {
	CAP_IF_OTHER = 0,
	CAP_IF_POD_VETH,
	CAP_IF_BRIDGE,
	CAP_IF_OVERLAY,
	CAP_IF_NIC,
	CAP_IF_LOOPBACK,
};
const char *cap_if_class_name(int cls); /* "pod-veth", "bridge", "overlay", "nic", ... */

#define CAP_POD_NAME_LEN 128

struct cap_iface {
	uint32_t ifindex;
	char name[IF_NAMESIZE];
	char kind[16];        /* IFLA_INFO_KIND: "veth", "bridge", "vxlan", "" for hardware */
	uint8_t cls;          /* enum cap_if_class */
	uint8_t up;           /* IFF_UP */
	int32_t link_netnsid; /* peer's netns id for veths, -1 if none */
	uint32_t master;      /* bridge ifindex, 0 if none */
	char pod[CAP_POD_NAME_LEN]; /* "namespace/name" from the inventory, "" if unknown */
};

/* Pod inventory: JSON {"pods": [{"name", "namespace", "netns", "node", "host_veth",
 * "host_ifindex", "ips": [...], "labels": {...}}]}, as lab/lab writes it.  The file
 * is input like any other: sizes, nesting and string lengths are bounded and a
 * malformed file is refused with a message. */
struct cap_inventory;
struct cap_pod {
	char name[64], namespace[64], netns[64], node[64], host_veth[IF_NAMESIZE];
	char ips[4][48];
	uint8_t n_ips;
	uint32_t host_ifindex; /* 0 = not given */
};
int cap_inventory_load(const char *path, struct cap_inventory **out, char *errbuf, size_t errlen);
size_t cap_inventory_count(const struct cap_inventory *inv);
const struct cap_pod *cap_inventory_pod(const struct cap_inventory *inv, size_t i);
/* The pod whose host-side veth is ifname on node (node NULL = any node). */
const struct cap_pod *cap_inventory_by_veth(const struct cap_inventory *inv, const char *node,
					    const char *ifname);
void cap_inventory_free(struct cap_inventory *inv);

/* Lists the interfaces of the current namespace into a malloc'd array (*out, *n;
 * free() it).  inv may be NULL; node names the node for inventory lookups (NULL =
 * any). */
int cap_discover(const struct cap_inventory *inv, const char *node, struct cap_iface **out,
		 size_t *n);

/* Classifies one interface from its name, kind and netns id (used by cap_discover
 * and the monitor; exposed for tests). */
int cap_classify(const char *name, const char *kind, int32_t link_netnsid, uint32_t flags);

/* Link monitor. */
struct cap_disc_monitor;
enum cap_link_event { CAP_LINK_NEW = 1, CAP_LINK_DEL = 2 };
typedef void (*cap_link_fn)(void *arg, int event, const struct cap_iface *ifc);
int cap_disc_monitor_open(const struct cap_inventory *inv, const char *node,
			  struct cap_disc_monitor **out);
int cap_disc_monitor_fd(const struct cap_disc_monitor *m);
/* Replaces the inventory used to name pods (after the caller reloaded it); the
 * caller frees the old one afterwards. */
void cap_disc_monitor_set_inventory(struct cap_disc_monitor *m, const struct cap_inventory *inv);
/* Reads what is pending (non-blocking) and calls fn for each link message.
 * RTM_NEWLINK also arrives for changes of a known link (up/down); callers
 * de-duplicate by ifindex. Returns the number of events or -errno. */
int cap_disc_monitor_read(struct cap_disc_monitor *m, cap_link_fn fn, void *arg);
void cap_disc_monitor_close(struct cap_disc_monitor *m);

#endif
