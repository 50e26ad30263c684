/* pktstore — packets kept on disk as rolling pcapng files, with a per-flow index,
 * and exported again as one pcapng stream.
 *
 * A store is a directory DIR holding segment files
 *   DIR/segment-<seq>-<start time, UTC>.pcapng
 * and DIR/index.db (SQLite, WAL).  The open segment is closed and a new one
 * started when it reaches cfg.segment_bytes or its packets span cfg.segment_age_us
 * (packet time, so reading a file and capturing live behave the same).  When the
 * segment files plus the index exceed cfg.max_bytes, the oldest segments are deleted
 * and the flows that had packets in them are remembered as expired.
 *
 * Index: for every (segment, flow) one row whose blob holds the file offsets of the
 * flow's Enhanced Packet Blocks in that segment, LEB128 varints, each the delta from
 * the previous offset.  pks_put() only appends to memory; rows are written in one
 * transaction every cfg.batch_packets packets, at rotation, pks_flush() and
 * pks_close(), and only after the packet bytes they point to reached the file.  So
 * the index never points past what was written.
 *
 * What the store holds of a flow (pks_flow_state) is decided here and nowhere else:
 * stored, partial (retention deleted some of its segments, or the disk refused some
 * of its packets: the `lost` table), expired (all deleted) or none.  Readers of the
 * flow database ask when they show a flow.
 *
 * Segment files are ordinary pcapng (one IDB per observation point, if_name = the
 * interface, if_description = the pod, µs timestamps, epb_flags with the direction
 * when the capture knew it): Wireshark opens them directly.
 *
 * Threads: a pks handle belongs to one thread at a time (in the agent: the engine's
 * thread of the packet store sink).  A second process or handle may open the same
 * DIR with cfg.readonly = 1 to export while the writer runs (SQLite WAL).
 *
 * Errors: 0 or a negative errno; pks_errmsg() gives the last message.  Disk full:
 * the store refuses packets before the file system is completely full (it keeps
 * cfg.reserve_bytes free, so the index can still record which flows lost packets);
 * pks_put() then returns -ENOSPC, what was committed before stays readable, and
 * later pks_put() calls retry (a new segment) at most once per cfg.retry_us of
 * packet time, returning -ENOSPC meanwhile without touching the disk — the caller
 * just counts it and keeps producing flow records.
 */
#ifndef PODCAP_PKTSTORE_H
#define PODCAP_PKTSTORE_H

#include <stddef.h>
#include <stdint.h>

struct pks;
struct pn_writer;

struct pks_config {
	uint64_t segment_bytes;  /* rotate at this size (default 64 MiB) */
	uint64_t segment_age_us; /* rotate when packets span this long (default 5 min) */
	uint64_t max_bytes;      /* segments + index cap, oldest deleted (default 2 GiB, 0 = none) */
	uint32_t snaplen;        /* bytes kept per packet, 0 = whole packets (default) */
	uint32_t flow_packets;   /* keep only the first N packets of each flow, 0 = all (default) */
	uint32_t batch_packets;  /* index rows committed every so many packets (default 65536) */
	uint64_t retry_us;       /* after a write error, retry this much packet time later (default 1 s) */
	/* Free space the store leaves on its file system (0 = 1/64 of the file
	 * system, at least 64 KiB, at most 64 MiB): packets are refused before the
	 * disk is full, so the index can still say which flows lost packets. */
	uint64_t reserve_bytes;
	int readonly;            /* open for export only: no writes, no rotation */
	/* Bulk load (`podcap read`): an empty store builds its by-flow index once, in
	 * pks_build_index() or pks_close(), instead of row by row.  Until then export
	 * works (it finds rows by segment) and pks_flow_state scans.  Not for a
	 * long-running agent (default 0). */
	int defer_index;
	/* Messages about damaged or missing data (one per problem, not per packet),
	 * on the store's thread.  NULL = silent; pks_stats.warnings still counts. */
	void (*log)(void *arg, const char *msg);
	void *log_arg;
};
void pks_config_default(struct pks_config *cfg);

/* Opens or creates the store in dir (created if missing, unless readonly).  A
 * segment left "open" by a crash is closed at its real file size.  Returns 0 or
 * -errno with a message in errbuf. */
int pks_open(const char *dir, const struct pks_config *cfg, struct pks **out,
	     char *errbuf, size_t errlen);
/* Commits the index and closes the open segment (and builds a deferred by-flow
 * index).  Returns the first error; the handle is freed in every case. */
int pks_close(struct pks *s);
/* Builds the by-flow index that defer_index left out; a no-op otherwise.  May run
 * on another thread than the writes, as long as not at the same time. */
int pks_build_index(struct pks *s);
const char *pks_errmsg(const struct pks *s);

/* ---- writing ---- */

/* Declares an observation point before its first packet.  linktype is the
 * LINKTYPE_* of its frames; name the interface, pod may be NULL.  Declaring the
 * same obs_id again is a no-op.  -EEXIST if it was declared with another link type. */
int pks_add_interface(struct pks *s, uint32_t obs_id, int linktype,
		      const char *name, const char *pod);

/* Stores one packet of flow flow_id; pkt_no is its 0-based number within the flow
 * (for cfg.flow_packets); dir is 0 unknown, PN_EPB_INBOUND or PN_EPB_OUTBOUND.
 * Returns 1 stored, 0 skipped by the flow_packets limit, or -errno: -ENOENT
 * unknown obs_id, -ENOSPC/-EIO when the disk refused it (the flow is then
 * recorded as having lost packets). */
int pks_put(struct pks *s, uint32_t obs_id, uint64_t flow_id, uint32_t pkt_no,
	    uint64_t ts_us, const uint8_t *data, uint32_t caplen, uint32_t wirelen, uint32_t dir);

/* Writes buffered packets and commits their index rows. */
int pks_flush(struct pks *s);
/* For a live agent: closes the open segment when it is older than segment_age_us
 * at now_us, and commits pending index rows. */
int pks_tick(struct pks *s, uint64_t now_us);

struct pks_stats {
	uint64_t packets;       /* stored by this handle */
	uint64_t bytes;         /* pcapng bytes written by this handle */
	uint64_t skipped_limit; /* skipped by flow_packets */
	uint64_t write_errors;  /* pks_put calls refused (ENOSPC, EIO, ...) */
	uint64_t segments_open; /* segment files started */
	uint64_t segments_deleted;
	uint64_t index_rows;    /* (flow, segment) rows written or extended */
	uint64_t index_lost;    /* packets whose index entry could not be committed */
	uint64_t disk_bytes;    /* current segment files + index, as last measured */
	uint64_t index_us;      /* CPU time spent committing index rows and building a deferred index */
	uint64_t warnings;      /* messages about damaged or missing data (cfg.log) */
};
void pks_stats(const struct pks *s, struct pks_stats *out);

/* ---- reading ---- */

enum pks_flow_state {
	PKS_FLOW_NONE = 0,  /* no packets of this flow were ever indexed (or all forgotten) */
	PKS_FLOW_STORED,    /* all indexed packets are in live segments */
	PKS_FLOW_PARTIAL,   /* some were deleted by retention or refused by the disk */
	PKS_FLOW_EXPIRED,   /* every segment with its packets was deleted */
};
/* Largest flow id the index knows (stored, expired or lost), 0 when none: a writer
 * numbering flows for a flow database must start above it so that a packet store
 * shared by several databases or runs never mixes two flows under one id. */
int pks_max_flow_id(struct pks *s, uint64_t *out);

/* Returns an enum pks_flow_state or -errno. */
int pks_flow_state(struct pks *s, uint64_t flow_id);
const char *pks_flow_state_name(int state);

/* Export: the packets of any number of flows, written to w in time order (a
 * k-way merge of the segments involved, each read front to back; every packet is
 * read once), declaring in w one interface per observation point involved, with
 * each flow's comment (e.g. its Community ID) on each of its packets.  Memory is
 * bounded by the segments being merged, not by the number of flows or packets:
 * the flows are kept in a temporary table.  Damaged or missing parts are skipped,
 * counted per flow and logged; the rest is written.
 *
 *   pks_export_open(s, w, &x);
 *   for each flow: pks_export_add(x, id, comment);
 *   while ((rc = pks_export_step(x, 1 << 20)) == 1) { ... e.g. let a client read ... }
 *   while (pks_export_result(x, &f) == 1) { ... per-flow outcome ... }
 *   pks_export_close(x);
 *
 * Errors are -errno for failures of the store or of w (e.g. -EPIPE; -EPROTOTYPE
 * when a classic pcap writer meets a second link type: pcap cannot mix them). */
struct pks_export;
int pks_export_open(struct pks *s, struct pn_writer *w, struct pks_export **out);
/* Adds a flow (before the first step).  comment may be NULL; it is copied. */
int pks_export_add(struct pks_export *x, uint64_t flow_id, const char *comment);
/* Passes every packet through fn before it is written (e.g. `--inner`: the
 * decapsulated inner frame instead of the stored one).  fn gets the stored frame
 * and the link type of its interface and returns 1 with the frame to write in
 * out[0 .. *out_caplen) (outcap bytes: PKS_REWRITE_MAX), or 0 (or < 0) to write
 * the stored frame as it is.  Every interface is then declared with linktype,
 * the link type of what fn writes.  Before the first step; fn runs on the
 * caller's thread, inside pks_export_step. */
#define PKS_REWRITE_MAX (262144u + 64u) /* PN_PACKET_MAX and room for a new header */
typedef int (*pks_rewrite_fn)(void *arg, int linktype, const uint8_t *frame, uint32_t caplen,
			      uint32_t wirelen, uint8_t *out, size_t outcap, uint32_t *out_caplen,
			      uint32_t *out_wirelen);
int pks_export_rewrite(struct pks_export *x, int linktype, pks_rewrite_fn fn, void *arg);
/* Writes packets until about max_bytes went to w (0 = all); returns 1 when more
 * remain, 0 when the export is complete (w flushed), or -errno. */
int pks_export_step(struct pks_export *x, size_t max_bytes);

/* What happened to one flow of an export. */
struct pks_flow {
	uint64_t id;
	const char *comment; /* in, for pks_export(); NULL from pks_export_result */
	int state;           /* enum pks_flow_state */
	uint64_t packets;    /* packets written */
	uint64_t missing;    /* indexed packets not written: expired, segment gone or cut short */
	uint64_t corrupt;    /* index entries skipped: bad blob, not an EPB at the offset, bad lengths */
};
/* After the last step: the flows in the order they were added, one per call;
 * returns 1 with *f filled, 0 after the last one, or -errno. */
int pks_export_result(struct pks_export *x, struct pks_flow *f);
struct pks_export_totals {
	uint64_t flows, flows_written, packets, missing, corrupt;
};
void pks_export_totals(const struct pks_export *x, struct pks_export_totals *out);
void pks_export_close(struct pks_export *x);

/* All of the above for a few flows given as an array (comment and id in, the
 * rest filled in): for tests and small exports. */
int pks_export(struct pks *s, struct pks_flow *flows, size_t n, struct pn_writer *w);

/* Verifies a store (opened read-only or not): the index's integrity, every
 * segment file (present, as long as the index says, a pcapng file, its chunk
 * checksums), and which indexed packets could not be exported.  Each problem is
 * one line to report (may be NULL); *out sums it up.  Returns 0 when the store is
 * sound, 1 when something cannot be exported or is damaged, or -errno when the
 * check itself failed. */
struct pks_check {
	int index_ok;                /* quick_check said ok */
	uint64_t segments, bytes;    /* live segments and their size */
	uint64_t segments_bad;       /* missing, cut short, not pcapng or with damaged chunks */
	uint64_t segments_unchecked; /* no checksums (open, or written before they existed) */
	uint64_t chunks_bad;
	uint64_t flows, packets;     /* indexed in live segments */
	uint64_t packets_lost;       /* indexed but not exportable (segment or chunk damaged) */
	uint64_t orphans;            /* segment files the index lost: kept, not exportable */
	uint64_t damaged_indexes;    /* earlier indexes moved aside as damaged */
};
int pks_check(struct pks *s, void (*report)(void *arg, const char *line), void *arg, struct pks_check *out);

/* ---- the packet store as an engine sink ---- */

/* A sink storing every packet of an engine that belongs to a flow: observation
 * points become interfaces, ticks close aged segments and commit the index,
 * flush writes everything and builds a deferred index.  eng_open() takes it over
 * and frees it at eng_close.  Write errors are counted (pks_stats.write_errors),
 * not fatal: flow records go on. */
struct eng_sink;
struct pks_sink;
int pks_sink_open(const char *dir, const struct pks_config *cfg, struct pks_sink **out,
		  struct eng_sink *as_sink, char *errbuf, size_t errlen);
/* Any thread, while the engine lives: a snapshot taken after each batch. */
void pks_sink_stats(struct pks_sink *s, struct pks_stats *out);

#endif
