/* flowdb — flow records in SQLite: schema, writing with retention, reading.
 *
 * One database file in WAL mode with a versioned schema (PRAGMA user_version)
 * migrated on open.  Writes are batched: fdb_put_flow() queues into the current
 * transaction, which commits every fdb_config.batch rows and on fdb_commit(), so a
 * killed process loses at most the open transaction and never corrupts the file.
 * Periodic records of a flow update its row (upsert by flow id).  Readers (other
 * handles, other processes) see committed rows at once and never block the writer.
 *
 * Reading goes through a cursor over one read-only SELECT built elsewhere (query/
 * turns filters into SQL with bound parameters); no sqlite3 handle leaves this
 * module, and a statement that could change the file is refused.
 *
 * Threads: one fdb handle per thread; SQLite itself is opened in multi-thread
 * mode.  The handle owns its sqlite3 connection, statements and cursors.
 * Errors: functions return 0 or a negative errno; fdb_errmsg() gives the last
 * message (SQLite's text or ours) and stays valid until the next call.
 *
 * Schema (version FDB_SCHEMA_VERSION; the migrations in flowdb.c are the reference):
 *   flows(id, obs_id, pod, end_reason, family, ip_proto, src, dst, sport, dport,
 *         vlan, tunnel, vni, outer_* (NULL when not tunnelled), first_us, last_us,
 *         {c2s,s2c}_{pkts,bytes,payload,tcp_flags,retrans,ooo}, syn, synack, fin,
 *         rst, frags, rtt_us (NULL = not seen), community_id, master_id, app_id,
 *         proto_name, master_name, app_name, category, risk, risk_names, host, url,
 *         http_status, dns_rcode, ja3c, ja3s, dpi_done, packets_state,
 *         -- version 2:
 *         confidence ("dpi", "dpi-cache", "by-port", "by-ip", "unknown"; NULL =
 *         not classified), {src,dst}_{pod ("namespace/name"), ns, node,
 *         workload ("Kind/name"), labels (JSON object)}, service
 *         ("namespace/name:port"), service_via, outer_{src,dst}_node)
 *     Names come from the record's name[] ids through fdb_config.names; a name
 *     once written stays on the row (a later record without it keeps it).
 *     A read-only handle on a version-1 file shows the version-2 columns as NULL
 *     (a temporary view), so readers need not care which version they open.
 *     packets_state is no longer written (databases of older versions have it):
 *     whether a flow's packets are kept is the packet store's to say
 *     (pks_flow_state), asked when a flow is shown.
 *   observation_points(id, iface, direction, pod, linktype, first_seen_us)
 *   indexes on flows: last_us, src, dst, dport, app_name (NOCASE), pod, outer_src,
 *   outer_dst, src_pod, dst_pod (the last five partial: non-NULL only); no others, since each costs
 *   the writer ~2 us per row.  A query filtering on another column scans by time.
 *   meta(key, value)
 * Flow ids are uint64 in the API and stored as the same 64-bit pattern in SQLite's
 * signed INTEGER; the SQL function u64text(id) gives them as decimal text (JSON
 * consumers cannot hold 64 bits in a number).
 */
#ifndef PODCAP_FLOWDB_H
#define PODCAP_FLOWDB_H

#include <stddef.h>
#include <stdint.h>
#include "flow.h"

#define FDB_SCHEMA_VERSION 2

struct fdb;

struct fdb_config {
	uint32_t batch;               /* rows per transaction (default 5000) */
	uint64_t retain_age_s;        /* delete flows older than this, 0 = keep */
	uint64_t retain_bytes;        /* keep the database file under this, 0 = no cap */
	int readonly;
	/* The caps hold by themselves (default 1): fdb_open() of a writer, every
	 * fdb_commit() and the index build check them and apply retention (fdb_retain
	 * with the wall clock) when one is reached; 0 = only when fdb_retain is
	 * called.  Age retention compares with the wall clock: leave retain_age_s at
	 * 0 when storing flows of old capture files. */
	int auto_retain;
	/* Bulk load (e.g. `podcap read` of a file): when the database has no flows
	 * at open, the secondary indexes are built once by fdb_build_indexes() or
	 * fdb_close() instead of row by row, which makes fdb_put_flow ~4x cheaper.
	 * Until then queries work but scan.  A writer killed meanwhile leaves the
	 * build to the next read-write fdb_open().  Not for a long-running agent
	 * (default 0). */
	int defer_indexes;
	/* The dictionary that flow records' name[] ids refer to (flow.h); NULL =
	 * records carry no names.  Not owned; must outlive the handle. */
	const struct fl_names *names;
};
void fdb_config_default(struct fdb_config *cfg);

/* Opens or creates the database at path.  On failure returns -errno and, when
 * errbuf is given, a message in it (read-only path, not a database, newer schema).
 *   -EACCES/-EROFS  cannot write the file or its directory (WAL needs both)
 *   -ENOENT         readonly open of a missing file
 *   -EBADMSG        not a database / corrupt or truncated database
 *   -ENOTSUP        schema newer than this binary, or not a podcap database
 * A readonly open never migrates: an older schema is read as it is, the columns
 * it lacks showing as NULL. */
int fdb_open(const char *path, const struct fdb_config *cfg, struct fdb **out,
	     char *errbuf, size_t errlen);
/* Commits what is pending and closes.  Returns the commit's error, if any; the
 * handle is freed in every case (with any cursor still open). */
int fdb_close(struct fdb *db);
const char *fdb_errmsg(const struct fdb *db);
/* The path the handle was opened with. */
const char *fdb_path(const struct fdb *db);

/* ---- writing ---- */

/* An observation point: where packets were seen.  Returns its id in *id, creating
 * the row on first use (unique by iface and direction; a new pod replaces the old
 * one).  pod may be NULL.  Ids start at 1; a flow record with obs_id 0 is stored
 * with obs_id NULL ("unknown"), any other obs_id must come from this function
 * (checked per row), else fdb_put_flow returns -EINVAL.  The row's pod column is
 * copied from its observation point. */
int fdb_obs_point(struct fdb *db, const char *iface, const char *direction,
		  const char *pod, int linktype, uint32_t *id);

int fdb_put_flow(struct fdb *db, const struct fl_record *rec);
int fdb_commit(struct fdb *db);
/* Rows written since the last commit (what a failed commit loses). */
uint32_t fdb_pending(const struct fdb *db);

/* Commits, then builds the secondary indexes that defer_indexes left out (a no-op
 * when there are none).  fdb_close does the same; calling it first lets the
 * caller count the build in its own time. */
int fdb_build_indexes(struct fdb *db);

/* Applies retention now; *deleted gets the number of flow rows removed.  Commits
 * the open batch first.  By age: flows whose last_us is older than now -
 * retain_age_s.  By size: while the main file + WAL exceed retain_bytes, the oldest
 * flows (by last_us) are deleted in chunks and the freed pages returned to the OS
 * (incremental vacuum + WAL truncate).  With auto_retain the handle runs it when
 * a cap is reached (the size check fires 1/16 of the cap early, and a writer with
 * a size cap keeps its transactions and WAL within 1/16 of it, so the files stay
 * under the cap); keep the cap below the disk's free space: on a full disk even a
 * DELETE cannot run (the WAL has to grow first).  A reader holding an old snapshot keeps the WAL
 * from being reset; then only the data is brought under the cap. */
int fdb_retain(struct fdb *db, uint64_t now_s, uint64_t *deleted);

/* meta table (e.g. "packet_store_dir").  fdb_meta_get returns -ENOENT when the key
 * is absent, -ENOSPC when buf is too small (value truncated, NUL-terminated). */
int fdb_meta_set(struct fdb *db, const char *key, const char *value);
int fdb_meta_get(struct fdb *db, const char *key, char *buf, size_t len);

/* Largest flow id stored (as uint64), 0 when empty.  A writer that appends to an
 * existing database must number its flows above this. */
int fdb_max_flow_id(struct fdb *db, uint64_t *out);
/* Number of flow rows. */
int fdb_count_flows(struct fdb *db, uint64_t *out);

struct fdb_stats {
	uint64_t rows;          /* fdb_put_flow calls that succeeded */
	uint64_t commits;
	uint64_t retained;      /* rows deleted by retention */
	uint64_t index_us;      /* CPU time of deferred index builds */
	uint64_t names_expired; /* name ids no longer in the dictionary (row written without them) */
};
void fdb_stats(const struct fdb *db, struct fdb_stats *out);

/* ---- reading ---- */

/* A value bound to a parameter of a cursor's SQL (?1 is params[0], ...). */
enum fdb_type { FDB_NULL = 0, FDB_INT, FDB_REAL, FDB_TEXT };
struct fdb_param {
	int type;           /* enum fdb_type */
	int64_t i;
	double d;
	const char *s;      /* FDB_TEXT: copied when bound */
	size_t len;         /* bytes of s; 0 = strlen(s) */
};

/* One SELECT over the database's tables, stepped row by row.  sql must be a
 * single read-only statement (anything that could write, ATTACH or change a
 * pragma is refused with -EPERM); values come only as parameters.  The cursor
 * belongs to db and to db's thread.  A query running past fdb_set_deadline() is
 * interrupted: fdb_cursor_next returns -ETIMEDOUT. */
struct fdb_cursor;
int fdb_cursor_open(struct fdb *db, const char *sql, const struct fdb_param *params,
		    size_t nparams, struct fdb_cursor **out);
/* 1 = a row is ready, 0 = no more rows, < 0 = error (message in fdb_errmsg);
 * -EAGAIN: stopped by fdb_cursor_budget (no message; the cursor is done). */
int fdb_cursor_next(struct fdb_cursor *c);
/* Limits the work of c's following steps to about steps virtual machine steps
 * in all (0 = no limit again): a caller tries a plan that is fast when it is
 * right and gives up on it cheaply.  Deterministic, unlike a deadline. */
void fdb_cursor_budget(struct fdb_cursor *c, uint64_t steps);
int fdb_cursor_columns(const struct fdb_cursor *c);
const char *fdb_cursor_name(const struct fdb_cursor *c, int col);
int fdb_cursor_type(const struct fdb_cursor *c, int col);         /* enum fdb_type */
int64_t fdb_cursor_int(const struct fdb_cursor *c, int col);
double fdb_cursor_real(const struct fdb_cursor *c, int col);
/* NULL for an SQL NULL; valid until the next fdb_cursor_next or close. */
const char *fdb_cursor_text(const struct fdb_cursor *c, int col);
void fdb_cursor_close(struct fdb_cursor *c);

/* Queries of this handle opened after the call stop after max_ms of work
 * (0 = no limit): an API server bounds what one request may cost. */
void fdb_set_deadline(struct fdb *db, uint64_t max_ms);

/* Registers the SQL functions this module gives its own connections (u64text,
 * ip_in_net) on a connection opened elsewhere, e.g. by a test that builds a
 * fixture database with SQLite directly.  0 or -EINVAL. */
struct sqlite3;
int fdb_sql_functions(struct sqlite3 *conn);

/* The query plan SQLite would use for sql, one line per step ("SEARCH f USING
 * INDEX flows_src_dport (src=?)"), into buf; for tests that filters use the indexes. */
int fdb_explain(struct fdb *db, const char *sql, const struct fdb_param *params, size_t nparams,
		char *buf, size_t len);

/* ---- the flow database as an engine sink ---- */

/* A sink writing every flow record of an engine into a database: opened here,
 * handed to eng_open() (which then owns it and frees it at eng_close), commits in
 * batches, at least every second of wall clock, and at flush (building deferred
 * indexes).  Observation points of the engine become rows of observation_points.
 * packet_store_dir, when given, is recorded as meta packet_store_dir so readers
 * find the packets of these flows. */
struct eng_sink;
struct fdb_sink;
struct fdb_sink_stats {
	uint64_t rows;          /* records written (periodic and final) */
	uint64_t lost;          /* rows lost to failed commits or refused */
	uint64_t commits;
	uint64_t retained;      /* rows deleted by retention */
	uint64_t index_us;      /* CPU time of the deferred index build */
	uint64_t names_expired; /* Kubernetes names gone from the dictionary before their
	                         * row was written (the row has no names) */
};
int fdb_sink_open(const char *path, const struct fdb_config *cfg, const char *packet_store_dir,
		  struct fdb_sink **out, struct eng_sink *as_sink, char *errbuf, size_t errlen);
/* Any thread, while the engine lives. */
void fdb_sink_stats(struct fdb_sink *s, struct fdb_sink_stats *out);

#endif
