/* live_int.h — private to capture/live*.c: the state both backends share.
 * Kept free of pcap.h and linux/bpf.h, which both define struct bpf_insn. */
#ifndef PODCAP_LIVE_INT_H
#define PODCAP_LIVE_INT_H

#include <net/if.h>
#include <stddef.h>
#include <stdint.h>

#include "live.h"

#define LIVE_MAX_IFACES 256

struct pcap;
struct lb_state;

struct live_if {
	char name[IF_NAMESIZE];
	uint32_t ifindex;
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
};

struct cap_live {
	struct cap_live_config cfg;
	int backend;
	char fallback[256];
	struct live_if *ifs[LIVE_MAX_IFACES];
	size_t n_ifs;
	uint64_t received, bad_records;
	uint64_t kdrops_removed; /* kernel drops of interfaces no longer captured */
	/* poll context */
	cap_live_fn fn;
	void *fn_arg;
	int64_t mono_to_real_ns;
	struct lb_state *bpf;     /* eBPF backend state (live_bpf.c) */
};

static inline struct live_if *find_if(const struct cap_live *l, uint32_t ifindex, size_t *pos)
{
	for (size_t i = 0; i < l->n_ifs; i++)
		if (l->ifs[i]->ifindex == ifindex) {
			if (pos)
				*pos = i;
			return l->ifs[i];
		}
	return NULL;
}

/* eBPF backend (live_bpf.c; stubs when built without BPF). */
int lb_open(struct cap_live *l, char *errbuf, size_t errlen);
int lb_attach(struct cap_live *l, struct live_if *ifc, char *errbuf, size_t errlen);
void lb_detach(struct cap_live *l, struct live_if *ifc);
int lb_poll(struct cap_live *l, int timeout_ms);
void lb_set_recording(struct cap_live *l, int on);
void lb_stats(struct cap_live *l, struct cap_live_stats *out);
int lb_counted(struct cap_live *l, uint32_t ifindex, int dir, uint64_t *pkts, uint64_t *bytes);
int lb_flow_counters(struct cap_live *l, uint32_t ifindex, const struct dc_tuple *t,
		     uint64_t *pkts, uint64_t *bytes);
void lb_close(struct cap_live *l);
/* Checks one ring record (struct pc_rec_hdr + frame) and fills *pkt; -EINVAL and
 * bad_records++ for a record that is short, inconsistent or for an interface not
 * captured.  Exposed for tests. */
int lb_record_parse(struct cap_live *l, const void *data, size_t size, struct cap_live_packet *pkt);

#endif
