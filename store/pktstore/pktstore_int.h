/* pktstore_int.h — private to store/pktstore: the handle and the helpers that the
 * writer (pktstore.c) and the export (export.c) share. */
#ifndef PODCAP_PKTSTORE_INT_H
#define PODCAP_PKTSTORE_INT_H

#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "pktstore.h"

/* 1: flow_packets keyed (flow_id, segment_id); 2: keyed (segment_id, flow_id), so
 * the rows of the open segment append at the end of the b-tree instead of landing
 * all over it (bench10 with --store: index.db writes 22.9 MB -> 9.6 MB) and
 * retention deletes one contiguous range.  Version 1 is migrated by the first
 * writer and still read as it is.  3: the `lost` table (flows whose packets the
 * disk refused) and segments.crc (chunk checksums); a version-2 store is read
 * without them and upgraded by a writer. */
#define PKS_SCHEMA_VERSION 3
#define PKS_WRITE_BUF (1u << 20)
#define PKS_MIN_SEGMENT (64u * 1024u)
#define PKS_MAX_IFACES 4096u
#define PKS_VARINT_MAX 10


struct pks_iface {
	uint32_t obs_id;
	int linktype;
	char *name, *pod;
};

/* A flow seen in the open segment. */
struct flow_ent {
	uint64_t flow_id;      /* 0 with used == 0 marks a free slot */
	uint64_t last_off;     /* offset of its last packet in this segment */
	uint64_t base_off;     /* last_off as of the last commit (to trim on errors) */
	uint8_t *pend;         /* varints not yet in the index */
	uint32_t pend_len, pend_cap, pend_pkts;
	uint8_t used, seen;    /* seen: has a row (or a committed chain) in this segment */
};

struct live_seg {
	int64_t id;
	uint64_t bytes;
	char *file;
};

struct pks {
	struct pks_config cfg;
	char *dir;
	sqlite3 *db;
	sqlite3_stmt *st_upsert, *st_seg_update, *st_lost, *st_state;
	int64_t session;

	struct pks_iface *ifaces;
	uint32_t nif;
	uint32_t *if_by_obs;    /* obs_id -> index in ifaces + 1 (0 = none), for O(1) lookup */
	uint32_t if_by_obs_n;

	/* flows that lost packets to write errors, not yet in the lost table */
	struct lost_ent { uint64_t flow_id, packets; } *lost;
	uint32_t lost_cap, lost_n;
	uint64_t lost_dropped;  /* flows whose loss could not even be remembered (memory) */
	uint64_t reserve;       /* free bytes kept on the file system */
	uint64_t bytes_since_check;

	/* open segment */
	struct pn_writer *w;
	int64_t seg_id;
	char *seg_file;
	uint64_t seg_first_us, seg_last_us, seg_packets;
	int64_t next_seg_id;

	struct flow_ent *flows;
	uint32_t flow_cap, flow_count;
	uint32_t *dirty;
	uint32_t ndirty, dirty_cap;
	uint32_t pending_pkts;

	struct live_seg *live;  /* closed, not deleted, oldest first */
	size_t nlive, live_cap;

	int index_deferred;     /* flow_packets_flow not built yet (defer_index) */
	int has_lost;           /* the lost table exists (schema 3; read-only opens of 2 lack it) */
	struct fsio_lock *lock; /* the one writer's lock on the directory */
	/* checksums of the open segment's chunks, fed by the writer's tap */
	uint32_t *crcs;
	size_t ncrcs, crcs_cap;
	uint32_t crc_cur;       /* the chunk being written */
	uint64_t crc_bytes;     /* bytes checksummed so far */
	int crc_broken;         /* a gap (write error): no checksums for this segment */
	int disk_err;           /* last write error, while retrying */
	int corrupt;            /* index.db failed its integrity check */
	uint64_t retry_at_us;

	struct pks_stats stats;
	char errmsg[512];
};


/* Segments are checksummed in chunks of this many bytes (CRC-32C each, kept in
 * segments.crc when the segment closes): an export verifies only the chunks it
 * reads, and `podcap store check` all of them. */
#define PKS_CRC_CHUNK (1u << 20)
uint32_t pks__crc32c(uint32_t crc, const void *buf, size_t len);

/* Helpers shared by pktstore.c and export.c. */
int pks__set_err(struct pks *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void pks__note(struct pks *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int pks__db_err(struct pks *s, int rc, const char *what);
int pks__exec(struct pks *s, const char *sql);
int pks__varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out);
int64_t pks__query_int(struct pks *s, const char *sql, int64_t dflt);

#endif
