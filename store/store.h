/* store — flow records in SQLite.
 *
 * One database file in WAL mode with a versioned schema (PRAGMA user_version)
 * migrated on open.  Writes are batched: st_put_flow() queues into the current
 * transaction, which commits every st_config.batch rows and on st_commit(), so a
 * killed process loses at most the open transaction and never corrupts the file.
 * Periodic records of a flow update its row (upsert by flow id).
 *
 * Threads: one st_store handle per thread; SQLite itself is opened in
 * multi-thread mode.  The handle owns its sqlite3 connection and statements.
 * Errors: functions return 0 or a negative errno; st_errmsg() gives the last
 * message (SQLite's text or ours) and stays valid until the next call.
 *
 * Schema (version ST_SCHEMA_VERSION; the migrations in store.c are the reference):
 *   flows(id, obs_id, pod, end_reason, family, ip_proto, src, dst, sport, dport,
 *         vlan, tunnel, vni, outer_* (NULL when not tunnelled), first_us, last_us,
 *         {c2s,s2c}_{pkts,bytes,payload,tcp_flags,retrans,ooo}, syn, synack, fin,
 *         rst, frags, rtt_us (NULL = not seen), community_id, master_id, app_id,
 *         proto_name, master_name, app_name, category, risk, risk_names, host, url,
 *         http_status, dns_rcode, ja3c, ja3s, dpi_done, packets_state)
 *   observation_points(id, iface, direction, pod, linktype, first_seen_us)
 *   indexes on flows: last_us, src, dst, dport, app_name (NOCASE), community_id,
 *   pod, outer_src, outer_dst (the last three partial: non-NULL only); no others,
 *   since each costs the writer ~2 us per row.  A query filtering on another
 *   column (or ORing an indexed one with another, as --port does with sport)
 *   scans by time.
 *   meta(key, value)
 * Flow ids are uint64 in the API and stored as the same 64-bit pattern in SQLite's
 * signed INTEGER; JSON output gives them as decimal strings (JavaScript numbers
 * cannot hold 64 bits).
 */
#ifndef PODCAP_STORE_H
#define PODCAP_STORE_H

#include <stdint.h>
#include <stdio.h>
#include "flow.h"

#define ST_SCHEMA_VERSION 1

struct st_store;
struct sqlite3;

struct st_config {
	uint32_t batch;               /* rows per transaction (default 5000) */
	uint64_t retain_age_s;        /* delete flows older than this, 0 = keep */
	uint64_t retain_bytes;        /* keep the database file under this, 0 = no cap */
	int readonly;
	/* st_commit() also applies retention (st_retain with the wall clock), at
	 * most this often; 0 = only when st_retain is called (default 10).  Age
	 * retention compares with the wall clock: leave retain_age_s at 0 when
	 * storing flows of old capture files. */
	uint32_t retain_every_s;
	/* Bulk load (e.g. `podcap read` of a file): when the database has no flows
	 * at open, the secondary indexes are built once by st_build_indexes() or
	 * st_close() instead of row by row, which makes st_put_flow ~4x cheaper.  Until then queries work but
	 * scan.  A writer killed meanwhile leaves the build to the next read-write
	 * st_open().  Not for a long-running agent (default 0). */
	int defer_indexes;
};
void st_config_default(struct st_config *cfg);

/* Opens or creates the database at path.  On failure returns -errno and, when
 * errbuf is given, a message in it (read-only path, not a database, newer schema).
 *   -EACCES/-EROFS  cannot write the file or its directory (WAL needs both)
 *   -ENOENT         readonly open of a missing file
 *   -EBADMSG        not a database / corrupt or truncated database
 *   -ENOTSUP        schema newer than this binary, or not a podcap database
 * A readonly open never migrates: it refuses an older schema with -ENOTSUP. */
int st_open(const char *path, const struct st_config *cfg, struct st_store **out,
	    char *errbuf, size_t errlen);
/* Commits what is pending and closes.  Returns the commit's error, if any; the
 * handle is freed in every case. */
int st_close(struct st_store *st);
const char *st_errmsg(const struct st_store *st);

/* An observation point: where packets were seen.  Returns its id in *id, creating
 * the row on first use.  pod may be NULL.  Ids start at 1; a flow record with
 * obs_id 0 is stored with obs_id NULL ("unknown"), any other obs_id must come from
 * this function (checked per row), else st_put_flow returns -EINVAL.  The row's
 * pod column is copied from its observation point. */
int st_obs_point(struct st_store *st, const char *iface, const char *direction,
		 const char *pod, int linktype, uint32_t *id);

/* Commits, then builds the secondary indexes that defer_indexes left out (a no-op
 * when there are none).  st_close does the same; calling it first lets the
 * caller count the build in its own time. */
int st_build_indexes(struct st_store *st);

int st_put_flow(struct st_store *st, const struct fl_record *rec);
/* st_put_flow that also sets the row's packets_state (see st_set_packets_state)
 * in the same statement: what st_put_flow + st_set_packets_state do, at the cost
 * of one (a second statement costs a b-tree seek and a row rewrite). */
int st_put_flow_state(struct st_store *st, const struct fl_record *rec, const char *packets_state);
int st_commit(struct st_store *st);
/* Rows written since the last commit (what a failed commit loses). */
uint32_t st_pending(const struct st_store *st);

/* Applies retention now; *deleted gets the number of flow rows removed.  Commits
 * the open batch first.  By age: flows whose last_us is older than now -
 * retain_age_s.  By size: while the main file + WAL exceed retain_bytes, the oldest
 * flows (by last_us) are deleted in chunks and the freed pages returned to the OS
 * (incremental vacuum + WAL truncate).  st_commit() calls it by itself every
 * retain_every_s; between two runs the files can exceed the cap by what was
 * written meanwhile (about one batch of WAL), so leave that much headroom and keep
 * the cap below the disk's free space: on a full disk even a DELETE cannot run
 * (the WAL has to grow first).  A reader holding an old snapshot keeps the WAL
 * from being reset; then only the data is brought under the cap. */
int st_retain(struct st_store *st, uint64_t now_s, uint64_t *deleted);

/* Simple filters for `podcap flows`; the full filter language lives in query/. */
struct st_query {
	const char *app;     /* nDPI name, case-insensitive: "TLS" or "Facebook" match either
			      * part of "TLS.Facebook", "TLS.Facebook" needs both */
	const char *ip;      /* either endpoint, inner or outer */
	int port;            /* either port, -1 = any */
	uint64_t since_us;   /* last_us >= since, 0 = any */
	int64_t limit;       /* -1 = no limit */
};
enum st_format { ST_FMT_TABLE, ST_FMT_JSON, ST_FMT_CSV };
/* Writes matching flows, newest first, to out.  Returns number of rows or -errno. */
int st_query_flows(struct st_store *st, const struct st_query *q, enum st_format fmt, FILE *out);

/* --- extensions --- */

/* meta table (e.g. "packet_store_dir").  st_meta_get returns -ENOENT when the key
 * is absent, -ENOSPC when buf is too small (value truncated, NUL-terminated). */
int st_meta_set(struct st_store *st, const char *key, const char *value);
int st_meta_get(struct st_store *st, const char *key, char *buf, size_t len);

/* Sets flows.packets_state ("none", "stored", "partial", "expired") of one flow;
 * part of the open batch.  "expired" is final: a flow whose packets are gone keeps
 * saying so.  Returns -ENOENT when the flow is not (yet) in the database. */
int st_set_packets_state(struct st_store *st, uint64_t flow_id, const char *state);

/* Largest flow id stored (as uint64), 0 when empty.  Flow ids restart with each
 * process run; a writer that appends to an existing database must start above
 * this to avoid overwriting older flows. */
int st_max_flow_id(struct st_store *st, uint64_t *out);

/* Number of flow rows. */
int st_count_flows(struct st_store *st, uint64_t *out);

/* The connection, for read-only SQL built elsewhere (query/).  Owned by the
 * handle; do not close it, and only use it from the handle's thread. */
struct sqlite3 *st_sqlite(struct st_store *st);

#endif
