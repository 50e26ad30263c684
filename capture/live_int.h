/* live_int.h — private to capture/live*.c: the state both backends share.
 * Kept free of pcap.h and linux/bpf.h, which both define struct bpf_insn. */
#ifndef PODCAP_LIVE_INT_H
#define PODCAP_LIVE_INT_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "capture.h"

#define LIVE_MAX_IFACES 256

struct pcap;
struct lb_state;

struct live_if {
	char name[IF_NAMESIZE];
	uint32_t ifindex;
	uint32_t tag;        /* the caller's, copied into every packet */
	uint64_t received;
	/* libpcap */
	struct pcap *pcap;
	int fd;
	uint64_t kdrops;     /* last pcap_stats value (cumulative in the kernel) */
	uint64_t kdrops_gone; /* drops of handles already closed */
	int dead;            /* the interface went away; skipped until removed */
	/* eBPF */
	int hook_created;
	uint32_t in_handle, in_prio, out_handle, out_prio;
	int in_attached, out_attached;
	int streamed;        /* in the kernel's `streamed` map (cap_live_set_streamed) */
	/* counters of its flows taken out of the kernel's map by the counts-only
	 * sweep (per direction), so its exact totals stay exact */
	uint64_t swept_pkts[2], swept_bytes[2];
	/* eBPF: its flows' counters as of the last walk of the whole map (live_bpf.c
	 * lb_stats), per direction; sums_valid once that walk included it */
	uint64_t sum_pkts[2], sum_bytes[2];
	int sums_valid;
};

/* ifindex -> interface, open addressing (linear probing, backward-shift delete):
 * packets are looked up one by one, so not a scan of the interface list. */
#define LIVE_IF_SLOTS (2 * LIVE_MAX_IFACES)

struct cap_live {
	struct cap_live_config cfg;
	int backend;
	char fallback[256];
	struct live_if *ifs[LIVE_MAX_IFACES];
	size_t n_ifs;
	struct live_if *by_index[LIVE_IF_SLOTS];
	uint64_t received, bad_records;
	uint64_t wirelen_clamped; /* ring records whose wire length was cut (capture.h) */
	uint64_t kdrops_removed; /* kernel drops of interfaces no longer captured */
	/* poll context */
	cap_live_fn fn;
	void *fn_arg;
	int64_t mono_to_real_ns;
	struct lb_state *bpf;     /* eBPF backend state (live_bpf.c) */
};

static inline size_t live_slot(uint32_t ifindex)
{
	return (size_t)((ifindex * 2654435761u) >> 16) % LIVE_IF_SLOTS;
}

/* The captured interface with this ifindex, or NULL: O(1) per packet. */
static inline struct live_if *find_if(const struct cap_live *l, uint32_t ifindex)
{
	for (size_t i = live_slot(ifindex);; i = (i + 1) % LIVE_IF_SLOTS) {
		struct live_if *f = l->by_index[i];
		if (!f || f->ifindex == ifindex)
			return f;
	}
}

/* Position of ifc in l->ifs (list order), for removal; -1 if absent. */
static inline long live_pos(const struct cap_live *l, const struct live_if *ifc)
{
	for (size_t i = 0; i < l->n_ifs; i++)
		if (l->ifs[i] == ifc)
			return (long)i;
	return -1;
}

void live_index_add(struct cap_live *l, struct live_if *ifc);
void live_index_del(struct cap_live *l, struct live_if *ifc);

/* eBPF backend (live_bpf.c; stubs when built without BPF). */
int lb_open(struct cap_live *l, char *errbuf, size_t errlen);
int lb_attach(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen);
void lb_detach(struct cap_live *l, struct live_if *ifc);
int lb_poll(struct cap_live *l, int timeout_ms);
void lb_set_recording(struct cap_live *l, int on);
int lb_set_streamed(struct cap_live *l, struct live_if *ifc, int on);
void lb_stats(struct cap_live *l, struct cap_live_stats *out);
int lb_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes);
int lb_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t, int take,
		     uint64_t *pkts, uint64_t *bytes);
int lb_sweep(struct cap_live *l, uint64_t idle_us, int final, cap_counts_fn fn, void *arg);
void lb_close(struct cap_live *l);
/* Checks one ring record (struct pc_rec_hdr + frame) and fills *pkt; -EINVAL and
 * bad_records++ for a record that is short, inconsistent or for an interface not
 * captured.  Exposed for tests. */
int lb_record_parse(struct cap_live *l, const void *data, size_t size, struct cap_packet *pkt);

#endif
