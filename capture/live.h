/* live — capture from live interfaces of the current network namespace, through
 * one of two backends behind the same calls:
 *
 *   CAP_BACKEND_PCAP  libpcap per interface (pcap_create, immediate mode, a
 *                     TPACKET_V3 ring of buffer_bytes, optional BPF filter), both
 *                     directions (not told apart: libpcap offers LINUX_SLL2 only
 *                     on "any"), Ethernet frames; kernel drops from pcap_stats.
 *   CAP_BACKEND_EBPF  tc clsact ingress+egress programs (tc.bpf.c): exact per-flow
 *                     packet/byte counters in a map, and a ring buffer carrying
 *                     the first flow_packets packets of each flow (or every
 *                     packet while recording), truncated to snaplen; what the
 *                     ring could not take is counted.
 *
 * cap_live_open() with CAP_BACKEND_EBPF falls back to libpcap when the BPF
 * program cannot be loaded (no CAP_BPF, old kernel, built without BPF), and says
 * why in cap_live_fallback_reason().
 *
 * Threads: one thread drives a cap_live (add/remove/poll/stats); packets handed to
 * the callback point into the backend's buffers and are valid only during the
 * call.  cap_live_close() detaches every tc program and qdisc it created.
 * Errors: 0 / negative errno, text in errbuf.
 */
#ifndef PODCAP_LIVE_H
#define PODCAP_LIVE_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

enum cap_backend { CAP_BACKEND_PCAP = 0, CAP_BACKEND_EBPF = 1 };
const char *cap_backend_name(int backend); /* "pcap", "ebpf" */

enum cap_dir { CAP_DIR_IN = 0, CAP_DIR_OUT = 1, CAP_DIR_UNKNOWN = 2 };

struct cap_live_config {
	int backend;            /* enum cap_backend */
	uint32_t snaplen;       /* bytes kept per packet (default 2048; eBPF max 2048) */
	uint32_t buffer_bytes;  /* pcap: kernel ring per interface; eBPF: the ring buffer,
	                         * rounded up to a power of two (default 8 MiB) */
	const char *filter;     /* pcap: BPF filter expression, NULL = all */
	uint32_t flow_packets;  /* eBPF: packets of each flow sent up (default 16) */
	uint32_t max_flows;     /* eBPF: flow counter map entries (default 65536) */
	int no_fallback;        /* eBPF: fail instead of falling back to libpcap */
};
void cap_live_config_default(struct cap_live_config *cfg);

struct cap_live_packet {
	const uint8_t *data;
	uint32_t caplen, wirelen;
	uint64_t ts_us;         /* microseconds since the epoch */
	int linktype;           /* DC_LINK_ETHERNET */
	uint32_t ifindex;
	uint8_t dir;            /* enum cap_dir; CAP_DIR_UNKNOWN on libpcap */
};
typedef void (*cap_live_fn)(void *arg, const struct cap_live_packet *pkt);

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
	uint64_t flow_pkts, flow_bytes; /* eBPF: exact totals of the flow counter map */
	uint64_t flow_entries;  /* eBPF: flows in the counter map */
};

struct cap_live;

/* Checks a libpcap filter expression for Ethernet without opening anything;
 * 0, or -EINVAL with libpcap's message in errbuf. */
int cap_live_check_filter(const char *filter, char *errbuf, size_t errlen);

int cap_live_open(const struct cap_live_config *cfg, struct cap_live **out, char *errbuf, size_t errlen);
int cap_live_backend(const struct cap_live *l);
/* Why an eBPF request runs on libpcap, or NULL. */
const char *cap_live_fallback_reason(const struct cap_live *l);

/* Starts capturing on an interface (by name) of the current namespace.
 * -EEXIST when it is already captured.  An interface libpcap stopped reading
 * because it went down is opened again (call this when it comes back up). */
int cap_live_add(struct cap_live *l, const char *ifname, char *errbuf, size_t errlen);
/* Stops capturing on an interface; -ENOENT when unknown.  An interface that
 * disappeared is removed this way too. */
int cap_live_remove(struct cap_live *l, uint32_t ifindex);

/* Waits up to timeout_ms for packets and hands each to fn.  Returns the number of
 * packets, or a negative errno. */
int cap_live_poll(struct cap_live *l, int timeout_ms, cap_live_fn fn, void *arg);

/* eBPF: ask for every packet (1) or only the head of each flow (0). */
int cap_live_set_recording(struct cap_live *l, int on);

void cap_live_stats(struct cap_live *l, struct cap_live_stats *out);
/* Per-interface counters into out[0..max); returns the number of interfaces. */
size_t cap_live_iface_stats(struct cap_live *l, struct cap_live_iface_stats *out, size_t max);

/* eBPF: exact counters of one interface and direction (dir = CAP_DIR_UNKNOWN for
 * both) summed over its flows; -EOPNOTSUPP on libpcap. */
int cap_live_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes);

/* eBPF: exact counters of one flow direction on one interface: packets whose
 * outer tuple is t (src→dst as given), summed over the ingress and egress hooks.
 * A flow record's untunnelled key gives its two directions as t and t reversed.
 * Returns 0 (zeros when the kernel never saw it or evicted it), -EOPNOTSUPP on
 * libpcap, -EINVAL for a tuple without family. */
struct dc_tuple;
int cap_live_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t,
			   uint64_t *pkts, uint64_t *bytes);

void cap_live_close(struct cap_live *l);

#endif
