/* Private to the flow module: the flow entry, the table, and the nDPI glue
 * between flow.c (table, counters, timers) and dpi.c (classification). */
#ifndef PODCAP_FLOW_INT_H
#define PODCAP_FLOW_INT_H

#include <stdint.h>

#include "flow.h"

struct ndpi_detection_module_struct;
struct ndpi_flow_struct;

/* Per-direction TCP sequence tracking for the retransmission / out-of-order
 * heuristic (see seq_track() in flow.c). */
struct fl_seq {
	uint32_t max_end;               /* highest seq + len seen */
	uint32_t hole_start, hole_end;  /* the most recent gap in sequence space */
	uint8_t init, hole;
};

/* Strings nDPI found, kept in one allocation per classified flow (most flows have
 * none, so the flow entry itself stays small). */
struct fl_dpi_str {
	uint16_t url_off, ja3c_off, ja3s_off; /* offsets into s; host starts at 0 */
	char s[];
};

struct fl_flow {
	struct fl_flow *hnext;            /* hash chain, or free list */
	struct fl_flow *lprev, *lnext;    /* idle list (by last packet time) */
	struct fl_flow *aprev, *anext;    /* active-timeout queue (by due time) */
	uint64_t id;
	uint64_t first_us, last_us, active_due_us;
	uint64_t queued_us;               /* last_us when put at its idle list's tail */
	uint64_t pkts[2], bytes[2], payload[2];
	uint64_t pkts_reported;           /* packets at the last periodic record */
	uint64_t syn_us;
	int64_t rtt_us;
	uint64_t risk;
	struct ndpi_flow_struct *ndpi;    /* only while classifying */
	struct fl_dpi_str *str;
	uint32_t hash, obs_id, vni;
	uint32_t syn, synack, fin, rst;
	uint32_t retrans[2], ooo[2], frags;
	struct fl_seq seq[2];
	uint16_t vlan;
	uint16_t master_proto, app_proto, category;
	uint16_t http_status;
	uint8_t tunnel, has_vni;
	uint8_t list;                     /* FL_LIST_* the flow is on */
	uint8_t tcp_flags[2];
	uint8_t fin_dirs;                 /* bit per direction that sent a FIN */
	uint8_t hs;                       /* handshake state, HS_* in flow.c */
	uint8_t dns_rcode;
	uint8_t dpi_done;
	uint8_t confidence;               /* enum fl_confidence, once dpi_done */
	struct dc_tuple key;              /* src = client */
	struct dc_tuple outer;
};

enum { FL_LIST_OPEN = 0, FL_LIST_CLOSED = 1, FL_LIST__COUNT };

/* Where the first fragment of an IP datagram went, so its later fragments (no
 * ports) follow it into the same flow.  Direct-mapped, overwritten on collision:
 * a miss only means the fragment lands in the ports-0 flow. */
#define FL_FRAG_SLOTS 1024u
#define FL_FRAG_TIMEOUT_US (30ull * 1000000) /* Linux ipfrag_time */
struct fl_frag {
	struct fl_flow *flow;
	uint64_t flow_id;                 /* flow->id when stored; 0 = empty */
	uint64_t ts_us;
	uint32_t ipid;
	uint8_t family, proto;
	uint8_t src[16], dst[16];
};

struct fl_list {
	struct fl_flow *head, *tail;      /* head = oldest */
};

/* fl_stats counters have one writer (the table's thread) and readers anywhere
 * (fl_table_stats): a relaxed atomic store of load + n is a plain add on x86-64,
 * no locked instruction, and makes the cross-thread read well-defined. */
#define FL_STAT_ADD(t, field, n) \
	__atomic_store_n(&(t)->stats.field, __atomic_load_n(&(t)->stats.field, __ATOMIC_RELAXED) + (uint64_t)(n), \
			 __ATOMIC_RELAXED)

struct fl_table {
	uint64_t id_stride;                /* cfg.id_stride, 0 taken as 1 */
	struct fl_config cfg;
	uint64_t closed_timeout_us;
	fl_emit_fn emit;
	void *emit_arg;
	int err;                          /* first non-zero emit return, not yet reported */

	struct fl_flow **buckets;
	uint32_t nbuckets;                /* power of two */
	struct fl_flow **chunks;          /* flow storage, allocated a chunk at a time */
	uint32_t nchunks, chunks_used;
	struct fl_flow *free;
	uint64_t next_seq;

	struct fl_list lru[FL_LIST__COUNT];
	struct fl_list active;            /* linked through aprev/anext */

	struct ndpi_detection_module_struct *ndpi;
	struct fl_frag frag[FL_FRAG_SLOTS];
	/* ndpi_protocol2name() results by (master, app): names are formatted with
	 * snprintf inside nDPI, and every record needs one. */
	struct {
		uint32_t key;
		uint8_t valid;
		char name[64];
	} names[256];
	struct fl_stats stats; /* written by the owning thread only, via FL_STAT_ADD */
	struct fl_record rec;             /* scratch for emitting */
};

/* dpi.c */
int fl_dpi_init(struct fl_table *t);
void fl_dpi_fini(struct fl_table *t);
/* Feeds one packet of flow f to nDPI while it is still classifying. */
void fl_dpi_packet(struct fl_table *t, struct fl_flow *f, const struct dc_packet *p,
		   const uint8_t *frame, uint64_t ts_us);
/* At flow end: gives up on an unfinished classification (nDPI's guess counts). */
void fl_dpi_end(struct fl_table *t, struct fl_flow *f);
/* Releases per-flow DPI memory. */
void fl_dpi_release(struct fl_flow *f);
/* Fills the nDPI part of a record. */
void fl_dpi_fill(struct fl_table *t, const struct fl_flow *f, struct fl_record *r);

/* cid.c */
void fl_sha1(const void *data, size_t len, uint8_t out[20]);

#endif
