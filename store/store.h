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
 */
#ifndef PODCAP_STORE_H
#define PODCAP_STORE_H

#include <stdint.h>
#include <stdio.h>
#include "flow.h"

struct st_store;

struct st_config {
	uint32_t batch;               /* rows per transaction (default 5000) */
	uint64_t retain_age_s;        /* delete flows older than this, 0 = keep */
	uint64_t retain_bytes;        /* keep the database file under this, 0 = no cap */
	int readonly;
};
void st_config_default(struct st_config *cfg);

/* Opens or creates the database at path.  On failure returns -errno and, when
 * errbuf is given, a message in it (read-only path, not a database, newer schema). */
int st_open(const char *path, const struct st_config *cfg, struct st_store **out,
	    char *errbuf, size_t errlen);
/* Commits what is pending and closes. */
int st_close(struct st_store *st);
const char *st_errmsg(const struct st_store *st);

/* An observation point: where packets were seen.  Returns its id in *id, creating
 * the row on first use.  pod may be NULL. */
int st_obs_point(struct st_store *st, const char *iface, const char *direction,
		 const char *pod, int linktype, uint32_t *id);

int st_put_flow(struct st_store *st, const struct fl_record *rec);
int st_commit(struct st_store *st);

/* Applies retention now; *deleted gets the number of flow rows removed. */
int st_retain(struct st_store *st, uint64_t now_s, uint64_t *deleted);

/* Simple filters for `podcap flows`; the full filter language lives in query/. */
struct st_query {
	const char *app;     /* protocol name, matches master or app part, case-insensitive */
	const char *ip;      /* either endpoint, inner or outer */
	int port;            /* either port, -1 = any */
	uint64_t since_us;   /* last_us >= since, 0 = any */
	int64_t limit;       /* -1 = no limit */
};
enum st_format { ST_FMT_TABLE, ST_FMT_JSON, ST_FMT_CSV };
/* Writes matching flows, newest first, to out.  Returns number of rows or -errno. */
int st_query_flows(struct st_store *st, const struct st_query *q, enum st_format fmt, FILE *out);

#endif
