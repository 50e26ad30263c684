/* segments — packets kept on disk as rolling pcapng files, with a per-flow index.
 *
 * A store is a directory DIR holding segment files
 *   DIR/segment-<seq>-<start time, UTC>.pcapng
 * and DIR/index.db (SQLite, WAL).  The open segment is closed and a new one
 * started when it reaches cfg.segment_bytes or its packets span cfg.segment_age_us
 * (packet time, so reading a file and capturing live behave the same).  When the
 * segment files plus the index exceed cfg.max_bytes, the oldest segments are deleted
 * and the flows that had packets in them are remembered as expired.
 *
 * Index: for every (flow, segment) one row whose blob holds the file offsets of the
 * flow's Enhanced Packet Blocks in that segment, LEB128 varints, each the delta from
 * the previous offset.  seg_put() only appends to memory; rows are written in one
 * transaction every cfg.batch_packets packets, at rotation, seg_flush() and
 * seg_close(), and only after the packet bytes they point to reached the file.  So
 * the index never points past what was written, and exporting a flow is a lookup
 * plus one pread per packet.
 *
 * Segment files are ordinary pcapng (one IDB per observation point, if_name = the
 * interface, if_description = the pod, µs timestamps): Wireshark opens them directly.
 *
 * Threads: a seg_store handle belongs to one thread at a time (in the agent: the
 * pipeline thread that also feeds the flow table).  A second process may open the
 * same DIR with cfg.readonly = 1 to export while the writer runs (SQLite WAL).
 *
 * Errors: 0 or a negative errno; seg_errmsg() gives the last message.  Disk full:
 * seg_put() returns -ENOSPC, what was committed before stays readable, and later
 * seg_put() calls retry (a new segment) at most once per cfg.retry_us of packet
 * time, returning -ENOSPC meanwhile without touching the disk — the caller just
 * counts it and keeps producing flow records.
 */
#ifndef PODCAP_SEGMENTS_H
#define PODCAP_SEGMENTS_H

#include <stddef.h>
#include <stdint.h>

struct seg_store;
struct pn_writer;

struct seg_config {
	uint64_t segment_bytes;  /* rotate at this size (default 64 MiB) */
	uint64_t segment_age_us; /* rotate when packets span this long (default 5 min) */
	uint64_t max_bytes;      /* segments + index cap, oldest deleted (default 2 GiB, 0 = none) */
	uint32_t snaplen;        /* bytes kept per packet, 0 = whole packets (default) */
	uint32_t flow_packets;   /* keep only the first N packets of each flow, 0 = all (default) */
	uint32_t batch_packets;  /* index rows committed every so many packets (default 65536) */
	uint64_t retry_us;       /* after a write error, retry this much packet time later (default 1 s) */
	int readonly;            /* open for export only: no writes, no rotation */
	/* Bulk load (`podcap read`): an empty store builds its by-flow index once, in
	 * seg_build_index() or seg_close(), instead of row by row.  Until then export
	 * works: a multi-flow export copies its flows' rows into an indexed TEMP table
	 * in one scan; seg_flow_state scans per call.  Not for a long-running agent
	 * (default 0). */
	int defer_index;
	/* Messages about damaged or missing data (one per problem, not per packet).
	 * NULL = silent; the counters in seg_stats still count. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
	/* Retention deleted a segment holding packets of flow_id: state is
	 * SEG_FLOW_EXPIRED when none of its packets remain, SEG_FLOW_PARTIAL when some
	 * do.  Called on the writer's thread from seg_put()/seg_tick(), e.g. to update
	 * the flow database's packets_state.  NULL = not needed. */
	void (*on_expire)(void *arg, uint64_t flow_id, int state);
	void *expire_arg;
};
void seg_config_default(struct seg_config *cfg);

/* Opens or creates the store in dir (created if missing, unless readonly).  A
 * segment left "open" by a crash is closed at its real file size.  Returns 0 or
 * -errno with a message in errbuf. */
int seg_open(const char *dir, const struct seg_config *cfg, struct seg_store **out,
	     char *errbuf, size_t errlen);
/* Commits the index and closes the open segment (and builds a deferred by-flow
 * index).  Returns the first error; the handle is freed in every case. */
int seg_close(struct seg_store *s);
/* Builds the by-flow index that defer_index left out; a no-op otherwise.  May run
 * on another thread than the writes, as long as not at the same time. */
int seg_build_index(struct seg_store *s);
const char *seg_errmsg(const struct seg_store *s);

/* Declares an observation point before its first packet.  linktype is the
 * LINKTYPE_* of its frames; name the interface, pod may be NULL.  Declaring the
 * same obs_id again is a no-op.  -EEXIST if it was declared with another link type. */
int seg_add_interface(struct seg_store *s, uint32_t obs_id, int linktype,
		      const char *name, const char *pod);

/* Stores one packet of flow flow_id; pkt_no is its 0-based number within the flow
 * (for cfg.flow_packets).  Returns 1 stored, 0 skipped by the flow_packets limit,
 * or -errno: -ENOENT unknown obs_id, -ENOSPC/-EIO when the disk refused it. */
int seg_put(struct seg_store *s, uint32_t obs_id, uint64_t flow_id, uint32_t pkt_no,
	    uint64_t ts_us, const uint8_t *data, uint32_t caplen, uint32_t wirelen);

/* Writes buffered packets and commits their index rows. */
int seg_flush(struct seg_store *s);
/* For a live agent without packets: closes the open segment when it is older than
 * segment_age_us at now_us, and commits pending index rows. */
int seg_tick(struct seg_store *s, uint64_t now_us);

enum seg_flow_state {
	SEG_FLOW_NONE = 0,  /* no packets of this flow were ever indexed (or all forgotten) */
	SEG_FLOW_STORED,    /* all indexed packets are in live segments */
	SEG_FLOW_PARTIAL,   /* some segments with its packets were deleted */
	SEG_FLOW_EXPIRED,   /* every segment with its packets was deleted */
};
/* Largest flow id the index knows (stored or expired), 0 when none: a writer
 * numbering flows for a flow database must start above it so that a packet store
 * shared by several databases or runs never mixes two flows under one id. */
int seg_max_flow_id(struct seg_store *s, uint64_t *out);

/* Returns an enum seg_flow_state or -errno. */
int seg_flow_state(struct seg_store *s, uint64_t flow_id);
const char *seg_flow_state_name(int state);

/* One flow to export.  comment (may be NULL) goes into every packet's opt_comment,
 * e.g. the Community ID.  The out fields say what happened to this flow. */
struct seg_flow {
	uint64_t id;
	const char *comment;
	/* out */
	int state;           /* enum seg_flow_state */
	uint64_t packets;    /* packets written */
	uint64_t missing;    /* indexed packets not found: segment deleted, file gone or cut short */
	uint64_t corrupt;    /* index entries skipped: bad blob, not an EPB at the offset, bad lengths */
};

/* Writes the packets of the given flows to w in time order (merged across flows
 * and segments), declaring in w one interface per observation point involved.
 * Damaged or missing parts are skipped, counted per flow and logged; the rest is
 * written.  Returns 0, or -errno for failures of the store or of w (e.g. -EPIPE,
 * -EPROTOTYPE when a pcap writer gets flows of different link types; nothing is
 * written in that case). */
int seg_export(struct seg_store *s, struct seg_flow *flows, size_t n, struct pn_writer *w);

struct seg_stats {
	uint64_t packets;       /* stored by this handle */
	uint64_t bytes;         /* pcapng bytes written by this handle */
	uint64_t skipped_limit; /* skipped by flow_packets */
	uint64_t write_errors;  /* seg_put calls refused (ENOSPC, EIO, ...) */
	uint64_t segments_open; /* segment files started */
	uint64_t segments_deleted;
	uint64_t index_rows;    /* (flow, segment) rows written or extended */
	uint64_t index_lost;    /* packets whose index entry could not be committed */
	uint64_t disk_bytes;    /* current segment files + index, as last measured */
	uint64_t index_us;      /* CPU time spent committing index rows and building a deferred index */
};
void seg_stats(const struct seg_store *s, struct seg_stats *out);

#endif
