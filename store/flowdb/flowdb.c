/* flowdb — flow records in SQLite (see flowdb.h for the contract).
 *
 * Write path: one prepared upsert, bound and stepped per record inside a
 * transaction that spans fdb_config.batch records.  That keeps per-row work to
 * "bind ~60 values, step, reset" and turns fsyncs into one per batch (WAL +
 * synchronous=NORMAL: a commit is an append to the WAL; durability against power
 * loss comes at checkpoints, and a killed process never loses committed rows).
 * Where a row's time goes (store_mkdb replay, 51k flows of bench10.pcap):
 * binding and formatting ~1.3 us, the step without secondary indexes ~2.7 us,
 * each secondary index ~1.5-2 us more.  Hence few indexes, an optional deferred
 * build for bulk loads, and nothing per row that a cache can answer (the pod of
 * an observation point, the names of a risk bitmap).
 *
 * Everything that changes the file runs in a transaction, migrations included,
 * so a crash leaves either the old or the new state, never half of a step.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>
#include <ndpi/ndpi_api.h>

#include "flowdb.h"
#include "rollup.h"
#include "fsio.h"

/* "PCAP" — written to PRAGMA application_id so we never migrate somebody else's
 * database by accident. */
#define FDB_APPLICATION_ID 0x50434150
#define FDB_BUSY_TIMEOUT_MS 5000
/* WAL size kept after a checkpoint resets it; bigger than one batch of pages so
 * the common case does not truncate and regrow the file every batch. */
#define FDB_WAL_LIMIT (16 << 20)
#define FDB_AGE_CHUNK 10000
#define FDB_RETAIN_ROUNDS 64

/* Migration i takes the schema from version i to i + 1.  Never edit a step that
 * has shipped: add a new one.  (Step 0 -> 1 was rewritten once, before anything
 * shipped, to move the secondary indexes out of it.) */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE observation_points ("
	" id INTEGER PRIMARY KEY,"
	" iface TEXT NOT NULL,"
	" direction TEXT NOT NULL,"
	" pod TEXT,"
	" linktype INTEGER NOT NULL,"
	" first_seen_us INTEGER NOT NULL,"
	" UNIQUE (iface, direction));"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"CREATE TABLE flows ("
	" id INTEGER PRIMARY KEY,"
	/* Not a FOREIGN KEY: an immediate foreign key makes SQLite keep a statement
	 * journal for every insert (~25 page writes per row, 20x slower); the store
	 * checks obs_id against observation_points itself. */
	" obs_id INTEGER,"
	" pod TEXT,"
	" end_reason TEXT NOT NULL,"
	" family INTEGER NOT NULL,"
	" ip_proto INTEGER NOT NULL,"
	" src TEXT, dst TEXT, sport INTEGER, dport INTEGER,"
	" vlan INTEGER,"
	" tunnel TEXT NOT NULL,"
	" vni INTEGER,"
	" outer_family INTEGER, outer_proto INTEGER, outer_src TEXT, outer_dst TEXT,"
	" outer_sport INTEGER, outer_dport INTEGER,"
	" first_us INTEGER NOT NULL, last_us INTEGER NOT NULL,"
	" c2s_pkts INTEGER, s2c_pkts INTEGER, c2s_bytes INTEGER, s2c_bytes INTEGER,"
	" c2s_payload INTEGER, s2c_payload INTEGER,"
	" c2s_tcp_flags INTEGER, s2c_tcp_flags INTEGER,"
	" syn INTEGER, synack INTEGER, fin INTEGER, rst INTEGER,"
	" rtt_us INTEGER,"
	" c2s_retrans INTEGER, s2c_retrans INTEGER, c2s_ooo INTEGER, s2c_ooo INTEGER,"
	" frags INTEGER,"
	" community_id TEXT,"
	" master_id INTEGER, app_id INTEGER,"
	" proto_name TEXT, master_name TEXT, app_name TEXT, category TEXT,"
	" risk INTEGER, risk_names TEXT,"
	" host TEXT, url TEXT, http_status INTEGER, dns_rcode INTEGER,"
	" ja3c TEXT, ja3s TEXT, dpi_done INTEGER,"
	" packets_state TEXT NOT NULL DEFAULT 'none');",
	/* Secondary indexes are not part of a step: see flow_indexes below. */
	/* 1 -> 2: nDPI's confidence, and the Kubernetes names of both ends (pods as
	 * "namespace/name", like observation_points.pod, so one index serves pod,
	 * namespace and prefix globs), the Service a VIP led to, the nodes of a
	 * tunnel's outer addresses.  Rows written before stay NULL there. */
	"ALTER TABLE flows ADD COLUMN confidence TEXT;"
	"ALTER TABLE flows ADD COLUMN src_pod TEXT;"
	"ALTER TABLE flows ADD COLUMN src_ns TEXT;"
	"ALTER TABLE flows ADD COLUMN src_node TEXT;"
	"ALTER TABLE flows ADD COLUMN src_workload TEXT;"
	"ALTER TABLE flows ADD COLUMN src_labels TEXT;"
	"ALTER TABLE flows ADD COLUMN dst_pod TEXT;"
	"ALTER TABLE flows ADD COLUMN dst_ns TEXT;"
	"ALTER TABLE flows ADD COLUMN dst_node TEXT;"
	"ALTER TABLE flows ADD COLUMN dst_workload TEXT;"
	"ALTER TABLE flows ADD COLUMN dst_labels TEXT;"
	"ALTER TABLE flows ADD COLUMN service TEXT;"
	"ALTER TABLE flows ADD COLUMN service_via TEXT;"
	"ALTER TABLE flows ADD COLUMN outer_src_node TEXT;"
	"ALTER TABLE flows ADD COLUMN outer_dst_node TEXT;",
};

/* Columns of flows added after version 1, with the version that added them: a
 * read-only handle on an older database (it cannot migrate) shows them as NULL
 * through a temporary view named flows (temp shadows main), so readers written
 * for this version work on every older file. */
static const struct {
	const char *name;
	int since;
} later_cols[] = {
	{"confidence", 2}, {"src_pod", 2}, {"src_ns", 2}, {"src_node", 2}, {"src_workload", 2},
	{"src_labels", 2}, {"dst_pod", 2}, {"dst_ns", 2}, {"dst_node", 2}, {"dst_workload", 2},
	{"dst_labels", 2}, {"service", 2}, {"service_via", 2}, {"outer_src_node", 2},
	{"outer_dst_node", 2},
};
#define N_MIGRATIONS (sizeof(migrations) / sizeof(migrations[0]))
_Static_assert(N_MIGRATIONS == FDB_SCHEMA_VERSION, "one migration step per schema version");

/* Only the migration test (built from this file with PODCAP_STORE_TESTING)
 * appends steps, to run multi-step and failing migrations; the library always
 * uses the array above. */
static const char *const *mig_extra;
static int64_t mig_count = N_MIGRATIONS;
#ifdef PODCAP_STORE_TESTING
void fdb__test_extra_migrations(const char *const *steps, int64_t n);
void fdb__test_extra_migrations(const char *const *steps, int64_t n)
{
	mig_extra = steps;
	mig_count = (int64_t)N_MIGRATIONS + (steps ? n : 0);
}
/* The SQL of shipped step ver (ver -> ver + 1), to build files as older
 * podcaps left them. */
const char *fdb__test_step(int64_t ver);
const char *fdb__test_step(int64_t ver)
{
	return ver >= 0 && ver < (int64_t)N_MIGRATIONS ? migrations[ver] : NULL;
}
#endif

static const char *mig_step(int64_t ver)
{
	return ver < (int64_t)N_MIGRATIONS ? migrations[ver] : mig_extra[ver - (int64_t)N_MIGRATIONS];
}

/* Secondary indexes of flows, ensured (CREATE ... IF NOT EXISTS) on every
 * read-write open, so the set can change without a schema step and a deferred
 * build (fdb_config.defer_indexes) that was killed is completed on the next open.
 * Each index costs the writer about 1.5-2 us per row (measured with
 * `store_mkdb replay` on the 51k flows of bench10.pcap: 3.4 us/row with none,
 * 6.5 with last_us alone, 22 with the former 12), so only those that a shipped
 * query uses to find few rows among many are kept:
 *   last_us        time ranges, newest-first listing, retention
 *   src, dst       --ip (flows, export): either endpoint, so one index each;
 *                  with dport as their second column, `ip == A and dport == P`
 *                  reads only the matching entries, already in id order per
 *                  side (a busy address's first page: 25 ms -> a few ms on 10M)
 *   dport          server port (a --port query ORs sport and scans by time)
 *   app_name       --app; "TLS" alone (master part) scans by time
 *   pod, outer_*   partial: free for rows without a pod / tunnel; outer_* for
 *                  export --ip, which matches the underlay addresses too
 *   src_pod,       partial: the Kubernetes names of the ends ("ns/name"), for
 *   dst_pod        pod == x and ns == y filters (ranges on one index each)
 * Dropped: first_us, sport, master_name and community_id (no query needs them;
 * community_id was 34 ms of the 0.19 s deferred build for bench10's 51k rows). */
static const char *const flow_indexes[] = {
	"CREATE INDEX IF NOT EXISTS flows_last ON flows(last_us)",
	"CREATE INDEX IF NOT EXISTS flows_src_dport ON flows(src, dport)",
	"CREATE INDEX IF NOT EXISTS flows_dst_dport ON flows(dst, dport)",
	"CREATE INDEX IF NOT EXISTS flows_dport ON flows(dport)",
	"CREATE INDEX IF NOT EXISTS flows_app ON flows(app_name COLLATE NOCASE)",
	"CREATE INDEX IF NOT EXISTS flows_pod ON flows(pod) WHERE pod IS NOT NULL",
	"CREATE INDEX IF NOT EXISTS flows_outer_src ON flows(outer_src) WHERE outer_src IS NOT NULL",
	"CREATE INDEX IF NOT EXISTS flows_outer_dst ON flows(outer_dst) WHERE outer_dst IS NOT NULL",
	"CREATE INDEX IF NOT EXISTS flows_src_pod ON flows(src_pod) WHERE src_pod IS NOT NULL",
	"CREATE INDEX IF NOT EXISTS flows_dst_pod ON flows(dst_pod) WHERE dst_pod IS NOT NULL",
};
/* Every index name this store ever created, for dropping (retired ones and a
 * deferred build's). */
static const char *const flow_index_names[] = {
	"flows_last", "flows_src_dport", "flows_dst_dport", "flows_dport", "flows_app",
	"flows_pod", "flows_outer_src", "flows_outer_dst", "flows_src_pod", "flows_dst_pod",
	/* retired */
	"flows_first", "flows_sport", "flows_master", "flows_cid", "flows_src", "flows_dst",
};
#define N_LIVE_INDEXES (sizeof(flow_indexes) / sizeof(flow_indexes[0]))
#define N_INDEX_NAMES (sizeof(flow_index_names) / sizeof(flow_index_names[0]))
/* The partial indexes (WHERE col IS NOT NULL), the last N_PARTIAL of
 * flow_indexes in this order; fdb_put_flow knows which of their columns a row
 * fills (enum part). */
enum part { PART_POD, PART_OUTER_SRC, PART_OUTER_DST, PART_SRC_POD, PART_DST_POD, N_PARTIAL };
#define PART0 (N_LIVE_INDEXES - N_PARTIAL)
/* A live partial index costs a row with a value ~2 us, its deferred build
 * ~0.15 us per row of the table (a scan) plus the sort of its values: it is
 * dropped, to be built at the end, once more than 1024 rows and more than one
 * row in 8 had a value (bench10: 400 tunnelled flows of 51k). */
#define PART_MIN_ROWS 1024
#define PART_SHARE 8

/* The rollup: flows, packets and bytes per minute (of the last packet) for a few
 * low-cardinality keys, so that "top apps over the last day" reads a few
 * thousand rows instead of scanning millions of flows (query/'s q_top uses it
 * when no filter narrows the flows).  dim 0 = proto_name, 1 = category,
 * 2 = obs_id (interface, pod of the observation point).  The writer keeps it
 * exact in the same transactions as the flows: rollup.c aggregates each
 * transaction's records in memory (moving a periodically updated flow's old
 * totals out), fdb_commit() writes the deltas, retention subtracts what it
 * deletes.  SQL triggers did the same at 4x the writer's cost per row (8.7 ->
 * 37 us, measured with store_mkdb replay); this costs ~0.3 us.  A database
 * whose meta 'rollup' is not ROLLUP_VERSION (new, or written by an older
 * podcap) gets its rollup rebuilt from the flows in one grouped pass at the
 * next read-write open. */
#define ROLLUP_VERSION "1"
static const char rollup_table[] =
	"CREATE TABLE IF NOT EXISTS rollup (dim INTEGER NOT NULL, bucket_us INTEGER NOT NULL, key TEXT NOT NULL,"
	" flows INTEGER NOT NULL, packets INTEGER NOT NULL, bytes INTEGER NOT NULL,"
	" PRIMARY KEY (dim, bucket_us, key)) WITHOUT ROWID";
static const char rollup_upsert[] =
	"INSERT INTO rollup (dim, bucket_us, key, flows, packets, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
	" ON CONFLICT DO UPDATE SET flows = flows + excluded.flows, packets = packets + excluded.packets,"
	" bytes = bytes + excluded.bytes";
/* The key of each dimension as SQL over flows (also used by retention). */
static const char *const rollup_keys[RU_DIMS] = {"coalesce(proto_name, '')", "coalesce(category, '')",
						  "coalesce(CAST(obs_id AS TEXT), '')"};

/* Column order of the upsert; fdb_put_flow binds in exactly this order. */
static const char *const flow_cols[] = {
	"id", "obs_id", "end_reason", "family", "ip_proto", "src", "dst", "sport", "dport",
	"vlan", "tunnel", "vni", "outer_family", "outer_proto", "outer_src", "outer_dst",
	"outer_sport", "outer_dport", "first_us", "last_us", "c2s_pkts", "s2c_pkts",
	"c2s_bytes", "s2c_bytes", "c2s_payload", "s2c_payload", "c2s_tcp_flags",
	"s2c_tcp_flags", "syn", "synack", "fin", "rst", "rtt_us", "c2s_retrans",
	"s2c_retrans", "c2s_ooo", "s2c_ooo", "frags", "community_id", "master_id",
	"app_id", "proto_name", "master_name", "app_name", "category", "risk",
	"risk_names", "host", "url", "http_status", "dns_rcode", "ja3c", "ja3s", "dpi_done",
	"confidence",
	/* names: kept once found (coalesce in the upsert), see NAME_COL0 */
	"src_pod", "src_ns", "src_node", "src_workload", "src_labels",
	"dst_pod", "dst_ns", "dst_node", "dst_workload", "dst_labels",
	"service", "service_via", "outer_src_node", "outer_dst_node",
};
#define N_FLOW_COLS ((int)(sizeof(flow_cols) / sizeof(flow_cols[0])))
#define PUT_POD (N_FLOW_COLS + 1)   /* upsert parameter after the columns */
#define NAME_COL0 55                /* index of src_pod in flow_cols */

struct fdb {
	sqlite3 *db;
	char *path;
	struct fdb_config cfg;
	sqlite3_stmt *put, *begin, *commit, *obs, *meta_set, *ru_put, *ru_put_n;
	struct ru *ru;           /* the rollup's pending deltas (writers only) */
	uint64_t ru_untracked_saved; /* ru_untracked() last written to meta */
	uint32_t pending;   /* rows in the open transaction */
	/* Observation point ids known to exist, as a bitmap: checked per row
	 * instead of a foreign key (see the schema). */
	uint8_t *obs_known;
	uint32_t obs_known_bits;
	/* Pod of recently used observation points, bound per row instead of a
	 * subquery (one b-tree seek less per row); direct-mapped by id.  Pods
	 * change through fdb_obs_point of this handle (which drops the slot); a
	 * second writer process changing one is not seen until a rollback or
	 * reopen clears the cache (one writer per database is the design). */
	struct pod_slot {
		uint32_t id;    /* 0 = empty */
		char *pod;      /* NULL = no pod */
	} pods[64];
	/* Risk bitmap -> "name,name" strings: few distinct bitmaps occur, and
	 * formatting one costs a loop of ndpi_risk2str + snprintf (~1 us). */
	struct risk_slot {
		uint64_t risk;  /* 0 = empty */
		char *names;
		int len;
	} risks[128];
	int in_tx;
	int in_retain;           /* fdb_retain commits too: no automatic retention inside it */
	int indexes_deferred;    /* secondary indexes absent until fdb_close builds them */
	/* A deferred load keeps the rollup per commit like any other write (no
	 * rebuild by a scan at the end); rollup_lost says a record could not be
	 * accounted (memory), and the build then rebuilds it from the flows. */
	int rollup_live, rollup_lost;
	/* During a deferred load the partial indexes (see flow_indexes) stay live
	 * while few rows have a value for them: a row without one costs them only
	 * the test of their WHERE, and a deferred build would scan the whole table
	 * for each.  One that gets many values is dropped and built at the end. */
	uint8_t part_live[N_PARTIAL];
	uint32_t part_rows[N_PARTIAL]; /* rows with a value for each, this load */
	uint64_t load_rows;            /* rows written since the load began */
	/* the rollup's pending deltas in key order, for fdb_commit */
	struct ru_delta *dsort;
	size_t dsort_cap;
	uint64_t deadline_ms;    /* fdb_set_deadline: work allowed per query, 0 = no limit */
	struct fdb_cursor *cursors; /* open cursors, closed with the handle */
	struct fsio_lock *lock;  /* the one writer's lock (<path>-lock), read-write handles only */
	dev_t dev;               /* the file, while this handle has it open (see open_files) */
	ino_t ino;
	struct fdb_stats stats;
	/* scratch for the names of the row being written (bound SQLITE_STATIC) */
	struct fl_name names_buf[FL_NAME__COUNT];
	char pod_buf[2][FL_NAME_NS_LEN + FL_NAME_NAME_LEN + 1];
	char svc_buf[FL_NAME_NS_LEN + FL_NAME_NAME_LEN + 8];
	char err[512];
};

static const char *const end_names[] = {"active", "idle", "tcp", "evicted", "flush", "counts"};

/* CPU time of the calling thread, for what index builds cost. */
static uint64_t cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void fdb_config_default(struct fdb_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->batch = 5000;
	cfg->auto_retain = 1;
}

const char *fdb_errmsg(const struct fdb *st)
{
	return st ? st->err : "no store";
}

const char *fdb_path(const struct fdb *st)
{
	return st->path;
}

void fdb_stats(const struct fdb *st, struct fdb_stats *out)
{
	*out = st->stats;
}

static int rc_errno(sqlite3 *db, int rc)
{
	int sys = db ? sqlite3_system_errno(db) : 0;
	switch (rc & 0xff) {
	case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
	case SQLITE_NOMEM: return -ENOMEM;
	case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
	case SQLITE_READONLY: return -EROFS;
	case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
	case SQLITE_CANTOPEN: return sys > 0 ? -sys : -EACCES;
	case SQLITE_CORRUPT: case SQLITE_NOTADB: return -EBADMSG;
	case SQLITE_FULL: return -ENOSPC;
	case SQLITE_CONSTRAINT: case SQLITE_MISMATCH: case SQLITE_RANGE: case SQLITE_TOOBIG:
		return -EINVAL;
	case SQLITE_IOERR: return sys > 0 ? -sys : -EIO;
	default: return -EIO;
	}
}

static int set_err(struct fdb *st, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int set_err(struct fdb *st, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
	return err;
}

/* Records SQLite's error for rc and returns it as -errno. */
static int sql_err(struct fdb *st, int rc, const char *what)
{
	int e = rc_errno(st->db, rc);
	if (!e)
		e = -EIO;
	set_err(st, e, "%s: %s: %s", st->path, what, sqlite3_errmsg(st->db));
	return e;
}

static int exec(struct fdb *st, const char *sql, const char *what)
{
	int rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : sql_err(st, rc, what);
}

static int prepare(struct fdb *st, const char *sql, sqlite3_stmt **out)
{
	int rc = sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, out, NULL);
	return rc == SQLITE_OK ? 0 : sql_err(st, rc, "prepare");
}

/* Runs a statement returning one integer (PRAGMAs, counts). */
static int query_i64(struct fdb *st, const char *sql, int64_t *out)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sql_err(st, rc, sql);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(s, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		*out = 0;
		rc = SQLITE_OK;
	}
	int err = rc == SQLITE_OK ? 0 : sql_err(st, rc, sql);
	sqlite3_finalize(s);
	return err;
}

/* Reads the file header ourselves before SQLite does, for the two cases SQLite
 * reports late or vaguely: a file that is not SQLite at all, and a file cut
 * short (SQLite would only fail when a query reaches a missing page).  The
 * header's page count is trusted only when it is marked valid (change counter ==
 * version-valid-for) and no WAL holds newer pages. */
/* The database files this process has open through SQLite.  SQLite locks with
 * POSIX fcntl locks, which a process loses on a file as soon as it closes ANY fd
 * of that file; check_header's own open/close would thus drop the locks of
 * another connection of this process (the agent's writer, while the API opens
 * readers), and SQLite could then take a live WAL for abandoned.  So the header
 * is read only while no handle of this process has the file open. */
static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static struct open_file { dev_t dev; ino_t ino; int n; } open_files[64];

static int file_in_use(dev_t dev, ino_t ino)
{
	int used = 0;
	pthread_mutex_lock(&open_lock);
	for (size_t i = 0; i < sizeof(open_files) / sizeof(open_files[0]); i++)
		used |= open_files[i].n && open_files[i].dev == dev && open_files[i].ino == ino;
	pthread_mutex_unlock(&open_lock);
	return used;
}

static void file_use(struct fdb *st, int delta)
{
	pthread_mutex_lock(&open_lock);
	struct open_file *free_slot = NULL;
	for (size_t i = 0; i < sizeof(open_files) / sizeof(open_files[0]); i++) {
		struct open_file *f = &open_files[i];
		if (f->n && f->dev == st->dev && f->ino == st->ino) {
			f->n += delta;
			free_slot = NULL;
			goto out;
		}
		if (!f->n && !free_slot)
			free_slot = f;
	}
	/* more than 64 files at once: the header checks are skipped for none */
	if (delta > 0 && free_slot)
		*free_slot = (struct open_file){st->dev, st->ino, delta};
out:
	pthread_mutex_unlock(&open_lock);
}

static int check_header(struct fdb *st)
{
	struct stat sb;
	if (stat(st->path, &sb) < 0)
		return errno == ENOENT ? 0 : set_err(st, -errno, "%s: %s", st->path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return set_err(st, -EBADMSG, "%s: not a regular file", st->path);
	if (sb.st_size == 0 || file_in_use(sb.st_dev, sb.st_ino))
		return 0;
	int fd = open(st->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return set_err(st, -errno, "%s: %s", st->path, strerror(errno));
	uint8_t h[100];
	ssize_t n = pread(fd, h, sizeof(h), 0);
	int e = n < 0 ? errno : 0;
	close(fd);
	if (n < 0)
		return set_err(st, -e, "%s: %s", st->path, strerror(e));
	if (n < (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16))
		return set_err(st, -EBADMSG, "%s: not a database (no SQLite header)", st->path);
	uint32_t psize = (uint32_t)h[16] << 8 | h[17];
	if (psize == 1)
		psize = 65536;
	if (psize < 512 || (psize & (psize - 1)))
		return set_err(st, -EBADMSG, "%s: corrupt database header (page size %u)",
			       st->path, psize);
	uint32_t change = (uint32_t)h[24] << 24 | h[25] << 16 | h[26] << 8 | h[27];
	uint32_t pages = (uint32_t)h[28] << 24 | h[29] << 16 | h[30] << 8 | h[31];
	uint32_t valid_for = (uint32_t)h[92] << 24 | h[93] << 16 | h[94] << 8 | h[95];
	char wal[PATH_MAX];
	struct stat wb;
	int have_wal = snprintf(wal, sizeof(wal), "%s-wal", st->path) < (int)sizeof(wal) &&
		       stat(wal, &wb) == 0 && wb.st_size > 0;
	if (change == valid_for && !have_wal && (uint64_t)pages * psize > (uint64_t)sb.st_size)
		return set_err(st, -EBADMSG,
			       "%s: database is truncated (%lld bytes, header says %llu)",
			       st->path, (long long)sb.st_size,
			       (unsigned long long)pages * psize);
	return 0;
}

/* Brings the schema to FDB_SCHEMA_VERSION, one transaction per step.  The version
 * is re-read inside the write lock so two processes opening a new file at once
 * do not both run step 0. */
static int migrate(struct fdb *st)
{
	for (;;) {
		int64_t ver, app, nobj;
		int err = exec(st, "BEGIN IMMEDIATE", "begin migration");
		if (err)
			return err;
		if ((err = query_i64(st, "PRAGMA user_version", &ver)) ||
		    (err = query_i64(st, "PRAGMA application_id", &app)) ||
		    (err = query_i64(st, "SELECT count(*) FROM sqlite_schema", &nobj)))
			goto rollback;
		if (app != 0 && app != FDB_APPLICATION_ID) {
			err = set_err(st, -ENOTSUP, "%s: not a podcap database (application_id %#llx)",
				      st->path, (unsigned long long)app);
			goto rollback;
		}
		if (ver == 0 && nobj > 0) {
			err = set_err(st, -ENOTSUP,
				      "%s: not a podcap database (has tables but no podcap schema version)",
				      st->path);
			goto rollback;
		}
		if (ver > mig_count || ver < 0) {
			err = set_err(st, -ENOTSUP,
				      "%s: database schema version %lld is newer than this podcap knows (%lld); "
				      "use a newer podcap", st->path, (long long)ver, (long long)mig_count);
			goto rollback;
		}
		if (ver == mig_count)
			return exec(st, "COMMIT", "commit");
		char what[64];
		snprintf(what, sizeof(what), "migration to schema version %lld", (long long)ver + 1);
		if ((err = exec(st, mig_step(ver), what)))
			goto rollback;
		char sql[96];
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %lld; PRAGMA application_id = %d",
			 (long long)ver + 1, FDB_APPLICATION_ID);
		if ((err = exec(st, sql, "set schema version")) ||
		    (err = exec(st, "COMMIT", "commit migration")))
			goto rollback;
		continue;
rollback:
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return err;
	}
}

static void sql_add(char *buf, size_t size, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* An older file read by a handle that cannot migrate it: a temporary view
 * called flows (the temp schema is searched before main) adds the columns of
 * later versions as NULL.  Queries through it use main.flows's indexes (SQLite
 * flattens the view). */
static int compat_view(struct fdb *st, int64_t ver)
{
	char sql[2048];
	size_t off = 0;
	sql_add(sql, sizeof(sql), &off, "CREATE TEMP VIEW flows AS SELECT *");
	for (size_t i = 0; i < sizeof(later_cols) / sizeof(later_cols[0]); i++)
		if (later_cols[i].since > ver)
			sql_add(sql, sizeof(sql), &off, ", NULL AS %s", later_cols[i].name);
	sql_add(sql, sizeof(sql), &off, " FROM main.flows");
	if (off >= sizeof(sql))
		return set_err(st, -E2BIG, "internal: compatibility view too long");
	return exec(st, sql, "compatibility view of an older schema");
}

/* A readonly handle cannot migrate: it reads an older version through
 * compat_view() and refuses a newer one. */
static int check_version_ro(struct fdb *st)
{
	int64_t ver, app;
	int err;
	if ((err = query_i64(st, "PRAGMA user_version", &ver)) ||
	    (err = query_i64(st, "PRAGMA application_id", &app)))
		return err;
	if (app != FDB_APPLICATION_ID)
		return set_err(st, -ENOTSUP, "%s: not a podcap database", st->path);
	if (ver > mig_count)
		return set_err(st, -ENOTSUP,
			       "%s: database schema version %lld is newer than this podcap knows (%lld); "
			       "use a newer podcap", st->path, (long long)ver, (long long)mig_count);
	if (ver < 1)
		return set_err(st, -ENOTSUP, "%s: database has no podcap schema yet; open it once "
			       "read-write (podcap read/run)", st->path);
	if (ver < mig_count)
		return compat_view(st, ver);
	return 0;
}

/* SQL function u64text(x): the flow id's 64-bit pattern as an unsigned decimal
 * string, for JSON consumers that cannot hold 64-bit integers. */
static void fn_u64text(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL) {
		sqlite3_result_null(ctx);
		return;
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%" PRIu64, (uint64_t)sqlite3_value_int64(argv[0]));
	sqlite3_result_text(ctx, buf, -1, SQLITE_TRANSIENT);
}

/* SQL function ip_in_net(addr, net, bits): 1 when the address text (as stored:
 * inet_ntop form) is inside net/bits, 0 when not or of the other family, NULL
 * for a NULL or unparsable address.  The filter language (query/) compiles
 * CIDRs that no text range can serve to it; it lives here because this module
 * decides how addresses are stored. */

struct cidr_net {
	uint8_t a[16];
	int family;
};

static int text_addr(const unsigned char *s, int n, uint8_t a[16], int *family)
{
	char buf[64];
	if (!s || n <= 0 || n >= (int)sizeof(buf))
		return -1;
	memcpy(buf, s, (size_t)n);
	buf[n] = 0;
	memset(a, 0, 16);
	if (inet_pton(AF_INET, buf, a) == 1)
		*family = 4;
	else if (inet_pton(AF_INET6, buf, a) == 1)
		*family = 6;
	else
		return -1;
	return 0;
}

static void fn_ip_in_net(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	if (sqlite3_value_type(argv[0]) == SQLITE_NULL)
		return; /* NULL */
	int bits = sqlite3_value_int(argv[2]);
	/* The network is the same for every row: parsed once per statement and
	 * kept as the argument's auxiliary data. */
	struct cidr_net tmp, *net = sqlite3_get_auxdata(ctx, 1);
	if (!net) {
		if (text_addr(sqlite3_value_text(argv[1]), sqlite3_value_bytes(argv[1]), tmp.a, &tmp.family)) {
			sqlite3_result_int(ctx, 0);
			return;
		}
		net = &tmp;
		struct cidr_net *copy = sqlite3_malloc(sizeof(*copy));
		if (copy) {
			*copy = tmp;
			/* SQLite owns copy from here, even if it cannot keep it */
			sqlite3_set_auxdata(ctx, 1, copy, sqlite3_free);
		}
	}
	uint8_t a[16];
	int fam;
	if (text_addr(sqlite3_value_text(argv[0]), sqlite3_value_bytes(argv[0]), a, &fam)) {
		sqlite3_result_null(ctx);
		return;
	}
	int maxbits = fam == 4 ? 32 : 128;
	if (fam != net->family || bits < 0 || bits > maxbits) {
		sqlite3_result_int(ctx, 0);
		return;
	}
	int full = bits / 8, rem = bits % 8;
	int match = memcmp(a, net->a, (size_t)full) == 0;
	if (match && rem) {
		uint8_t mask = (uint8_t)(0xff << (8 - rem));
		match = (a[full] & mask) == (net->a[full] & mask);
	}
	sqlite3_result_int(ctx, match);
}

int fdb_sql_functions(struct sqlite3 *conn)
{
	int rc = sqlite3_create_function(conn, "u64text", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC |
					 SQLITE_INNOCUOUS, NULL, fn_u64text, NULL, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_create_function(conn, "ip_in_net", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC |
					     SQLITE_INNOCUOUS, NULL, fn_ip_in_net, NULL, NULL);
	return rc == SQLITE_OK ? 0 : -EINVAL;
}

/* Appends to a fixed SQL buffer; once it overflows, off stays past the end so
 * the caller's single "off >= size" check catches it (no size_t underflow). */
static void sql_add(char *buf, size_t size, size_t *off, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void sql_add(char *buf, size_t size, size_t *off, const char *fmt, ...)
{
	if (*off >= size)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf + *off, size - *off, fmt, ap);
	va_end(ap);
	*off = n < 0 ? size : *off + (size_t)n;
}

static int prepare_all(struct fdb *st)
{
	char sql[8192];
	size_t off = 0;
	if (strcmp(flow_cols[NAME_COL0], "src_pod"))
		return set_err(st, -EFAULT, "internal: NAME_COL0 is not src_pod");
	static const char *const part_names[N_PARTIAL] = {"flows_pod", "flows_outer_src", "flows_outer_dst",
							  "flows_src_pod", "flows_dst_pod"};
	for (int k = 0; k < N_PARTIAL; k++)
		if (strcmp(flow_index_names[PART0 + k], part_names[k]))
			return set_err(st, -EFAULT, "internal: partial index %d is not %s", k, part_names[k]);
	sql_add(sql, sizeof(sql), &off, "INSERT INTO flows (pod");
	for (int i = 0; i < N_FLOW_COLS; i++)
		sql_add(sql, sizeof(sql), &off, ",%s", flow_cols[i]);
	/* pod is copied from the observation point so SQL can filter on it
	 * directly; it comes (parameter PUT_POD) from the handle's cache of
	 * observation points.  packets_state keeps its default: the packet store
	 * says what it holds. */
	sql_add(sql, sizeof(sql), &off, ") VALUES (?%d", PUT_POD);
	for (int i = 0; i < N_FLOW_COLS; i++)
		sql_add(sql, sizeof(sql), &off, ",?%d", i + 1);
	sql_add(sql, sizeof(sql), &off, ") ON CONFLICT(id) DO UPDATE SET pod=excluded.pod");
	for (int i = 1; i < N_FLOW_COLS; i++) {
		/* A periodic record never moves the start of a flow. */
		if (!strcmp(flow_cols[i], "first_us"))
			sql_add(sql, sizeof(sql), &off,
					",first_us=min(first_us,excluded.first_us)");
		/* A name found once stays: a later record of the flow whose lookup
		 * failed (the pod's history evicted, the API away) keeps it. */
		else if (i >= NAME_COL0)
			sql_add(sql, sizeof(sql), &off, ",%s=coalesce(excluded.%s,%s)",
				flow_cols[i], flow_cols[i], flow_cols[i]);
		else
			sql_add(sql, sizeof(sql), &off, ",%s=excluded.%s",
					flow_cols[i], flow_cols[i]);
	}
	if (off >= sizeof(sql))
		return set_err(st, -E2BIG, "upsert statement too long");
	int err;
	if ((err = prepare(st, sql, &st->put)) ||
	    (err = prepare(st, "BEGIN IMMEDIATE", &st->begin)) ||
	    (err = prepare(st, "COMMIT", &st->commit)) ||
	    (err = prepare(st, "INSERT INTO observation_points (iface, direction, pod, linktype, first_seen_us)"
			   " VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(iface, direction) DO UPDATE SET"
			   " pod = coalesce(excluded.pod, pod), linktype = excluded.linktype"
			   " RETURNING id", &st->obs)) ||
	    (err = prepare(st, "INSERT INTO meta (key, value) VALUES (?1, ?2)"
			   " ON CONFLICT(key) DO UPDATE SET value = excluded.value", &st->meta_set)) ||
	    (err = prepare(st, rollup_upsert, &st->ru_put)))
		return err;
	if (!st->ru && !(st->ru = ru_new()))
		return set_err(st, -ENOMEM, "out of memory");
	return 0;
}

static void finalize_all(struct fdb *st)
{
	sqlite3_stmt **all[] = {&st->put, &st->begin, &st->commit, &st->obs, &st->meta_set, &st->ru_put,
				 &st->ru_put_n};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sqlite3_finalize(*all[i]);
		*all[i] = NULL;
	}
}

/* Where rollup deltas are written: a statement of st. */
struct ru_out {
	struct fdb *st;
	sqlite3_stmt *s;
};
static int ru_write(void *arg, const struct ru_delta *d);
static int ru_write_all(struct fdb *st, struct ru *ru, sqlite3_stmt *s);

/* Inside a transaction: the rollup table, rebuilt from the flows when it is not
 * known to be current; or, with invalidate, marked as not current. */
static int rollup_ensure(struct fdb *st, int invalidate)
{
	char v[16] = "";
	int err = exec(st, rollup_table, "rollup table");
	if (err)
		return err;
	if (invalidate) /* a deferred load begins: not current until its end, even after a kill */
		return exec(st, "DELETE FROM meta WHERE key = 'rollup'", "rollup version");
	/* A deferred load that accounted every record has an exact rollup (the ru
	 * is the handle's, created with the load: its untracked count is this
	 * load's). */
	if (st->rollup_live && !st->rollup_lost && st->ru && ru_untracked(st->ru) == 0)
		return exec(st, "INSERT INTO meta (key, value) VALUES ('rollup', '" ROLLUP_VERSION "')"
			    " ON CONFLICT(key) DO UPDATE SET value = excluded.value", "rollup version");
	int rc = fdb_meta_get(st, "rollup", v, sizeof(v));
	if (rc < 0 && rc != -ENOENT)
		return rc;
	if (rc == 0 && !strcmp(v, ROLLUP_VERSION))
		return 0;
	if ((err = exec(st, "DELETE FROM rollup", "rollup rebuild")))
		return err;
	/* One scan, aggregated in memory (three GROUP BY passes sort three times:
	 * 2x slower on 51k flows). */
	struct ru *ru = ru_new();
	sqlite3_stmt *q = NULL;
	if (!ru)
		return set_err(st, -ENOMEM, "out of memory");
	rc = sqlite3_prepare_v2(st->db, "SELECT last_us, proto_name, category, obs_id, c2s_pkts + s2c_pkts,"
				" c2s_bytes + s2c_bytes FROM flows", -1, &q, NULL);
	while (rc == SQLITE_OK && (rc = sqlite3_step(q)) == SQLITE_ROW) {
		if (ru_add_row(ru, sqlite3_column_int64(q, 0), (const char *)sqlite3_column_text(q, 1),
			       (const char *)sqlite3_column_text(q, 2), (uint32_t)sqlite3_column_int64(q, 3),
			       sqlite3_column_int64(q, 4), sqlite3_column_int64(q, 5)) < 0) {
			err = set_err(st, -ENOMEM, "out of memory");
			break;
		}
		rc = SQLITE_OK;
	}
	if (!err && rc != SQLITE_DONE)
		err = sql_err(st, rc, "rollup rebuild");
	sqlite3_finalize(q);
	struct ru_out o = {st, NULL};
	if (!err && (rc = sqlite3_prepare_v2(st->db, rollup_upsert, -1, &o.s, NULL)) != SQLITE_OK)
		err = sql_err(st, rc, "rollup rebuild");
	if (!err)
		err = ru_write_all(st, ru, o.s);
	sqlite3_finalize(o.s);
	ru_free(ru);
	if (!err)
		err = exec(st, "INSERT INTO meta (key, value) VALUES ('rollup', '" ROLLUP_VERSION "')"
			   " ON CONFLICT(key) DO UPDATE SET value = excluded.value", "rollup version");
	return err;
}

/* What the query planner knows of the indexes (sqlite_stat1).  Without it SQLite
 * guesses every index equally selective and, for `(src = A or dst = A) and
 * dport = 443 order by id desc`, walks the dport index backwards because that
 * saves a sort: ~1 s on 10M flows for an address with a few hundred flows,
 * against 2 ms through the address indexes.  A real ANALYZE scans every index
 * (tens of seconds at that size, and again as the table grows); the shape of
 * the data is known instead: an address or a last_us value selects few flows,
 * a port, an application or a pod many.  Written with each index build; only
 * the ratios matter to the planner, so the fixed row count is fine at any
 * size.  A user's own ANALYZE replaces them with measured ones, also fine. */
static int planner_hints(struct fdb *st)
{
	static const char *const hints[][2] = {
		{"flows_last", "10000000 2"},
		{"flows_src_dport", "10000000 400 100"},
		{"flows_dst_dport", "10000000 400 100"},
		{"flows_dport", "10000000 50000"},
		{"flows_app", "10000000 100000"},
		{"flows_pod", "10000000 20000"},
		{"flows_outer_src", "10000000 5000"},
		{"flows_outer_dst", "10000000 5000"},
		{"flows_src_pod", "10000000 20000"},
		{"flows_dst_pod", "10000000 20000"},
	};
	int err = exec(st, "ANALYZE sqlite_schema", "planner statistics"); /* creates sqlite_stat1 */
	if (!err)
		err = exec(st, "DELETE FROM sqlite_stat1 WHERE tbl = 'flows'", "planner statistics");
	for (size_t i = 0; i < sizeof(hints) / sizeof(hints[0]) && !err; i++) {
		char sql[192];
		snprintf(sql, sizeof(sql), "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES ('flows', '%s', '%s')",
			 hints[i][0], hints[i][1]);
		err = exec(st, sql, "planner statistics");
	}
	return err;
}

/* Secondary indexes: with build = 1 drops the retired ones and creates missing
 * ones (a no-op costing a few parses when all exist); with build = 0 drops all
 * of them for a deferred build and creates the partial ones again over the empty
 * table (kept live while few rows fill them, see part_live).  One transaction. */
static int set_indexes(struct fdb *st, int build)
{
	/* Each CREATE INDEX scans the whole table: mapped, the scans read it
	 * without a pread and a copy per page (bench10's 51k rows: 0.13 -> 0.11 s;
	 * the mapped pages count in RSS meanwhile, +6 MB there, so at most 256 MB).
	 * Only for the build: a mapping of a file that another process truncates
	 * would fault, where reads return an error. */
	if (build)
		sqlite3_exec(st->db, "PRAGMA mmap_size=268435456", NULL, NULL, NULL);
	int err = exec(st, "BEGIN IMMEDIATE", "begin indexes");
	if (err)
		goto out;
	char sql[96];
	for (size_t i = build ? N_LIVE_INDEXES : 0; i < N_INDEX_NAMES && !err; i++) {
		snprintf(sql, sizeof(sql), "DROP INDEX IF EXISTS %s", flow_index_names[i]);
		err = exec(st, sql, "drop index");
	}
	for (size_t i = build ? 0 : PART0; i < N_LIVE_INDEXES && !err; i++)
		err = exec(st, flow_indexes[i], "create index");
	/* A deferred load starts with an empty rollup (its flows table is empty)
	 * and keeps it commit by commit: the deltas of a batch are few upserts in
	 * key order, written while the flow workers still work, where a rebuild at
	 * the end (one scan, then an upsert per minute and key: 59k for bench10d's
	 * 51k flows, 0.13 s) ran alone after the last packet.  Until the build
	 * marks it current, a killed load leaves it to be rebuilt at the next open. */
	if (!err)
		err = rollup_ensure(st, !build);
	if (!err && !build)
		err = exec(st, "DELETE FROM rollup", "rollup");
	if (!err && build)
		err = planner_hints(st);
	if (!err)
		err = exec(st, "COMMIT", "commit indexes");
	if (err && !sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	if (!err && !build) {
		st->rollup_live = 1;
		st->rollup_lost = 0;
		st->load_rows = 0;
		for (int k = 0; k < N_PARTIAL; k++) {
			st->part_live[k] = 1;
			st->part_rows[k] = 0;
		}
	}
	if (!err && build) {
		st->rollup_live = 0;
		memset(st->part_live, 0, sizeof(st->part_live));
	}
out:
	if (build)
		sqlite3_exec(st->db, "PRAGMA mmap_size=0", NULL, NULL, NULL);
	return err;
}

static int obs_load(struct fdb *st);
static int auto_retain(struct fdb *st);
static uint64_t disk_bytes(const struct fdb *st);

/* SQLite's errno after a failed open is that of its last attempt (a read-only
 * retry gives ENOENT for a file it could not create), so name the cause from
 * the file system instead: missing file, or a directory we cannot write. */
static int cantopen_errno(const char *path, int readonly, int fallback)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		if (errno != ENOENT || readonly)
			return -errno;
		char *dir = strdup(path);
		if (!dir)
			return -ENOMEM;
		char *slash = strrchr(dir, '/');
		const char *d = slash ? (slash == dir ? "/" : (*slash = 0, dir)) : ".";
		int e = access(d, W_OK | X_OK) < 0 ? -errno : fallback;
		free(dir);
		return e;
	}
	if (access(path, readonly ? R_OK : R_OK | W_OK) < 0)
		return -errno;
	return fallback;
}

/* SQLite counts every allocation under a global mutex unless told not to (the
 * lock/unlock pair was ~4% of the writer's time).  This only works before SQLite
 * initialises; if another module got there first it is refused, harmlessly. */
static void sqlite_setup(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int fdb_open(const char *path, const struct fdb_config *cfg, struct fdb **out,
	    char *errbuf, size_t errlen)
{
	static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
	pthread_once(&setup_once, sqlite_setup);
	struct fdb_config defcfg;
	int err = 0, rc;
	if (!cfg) {
		fdb_config_default(&defcfg);
		cfg = &defcfg;
	}
	*out = NULL;
	struct fdb *st = calloc(1, sizeof(*st));
	if (!st || !path || !*path || !(st->path = strdup(path))) {
		err = -(st && path && *path ? ENOMEM : EINVAL);
		if (st)
			set_err(st, err, "%s", path && *path ? "out of memory" : "no database path");
		goto fail;
	}
	st->cfg = *cfg;
	if (!st->cfg.batch)
		st->cfg.batch = 5000;

	if ((err = check_header(st)))
		goto fail;
	/* A new database gets the agent's mode and group (it holds pods'
	 * traffic); SQLite would make it 0644.  The -wal and -shm files copy it. */
	if (!cfg->readonly)
		fsio_precreate(path);

	int flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE |
		    (cfg->readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
	rc = sqlite3_open_v2(path, &st->db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (!st->db) {
			err = set_err(st, -ENOMEM, "%s: out of memory", path);
			goto fail;
		}
		if ((rc & 0xff) == SQLITE_CANTOPEN) {
			err = cantopen_errno(path, cfg->readonly, rc_errno(st->db, rc));
			set_err(st, err, "%s: cannot open database: %s", path, strerror(-err));
		} else {
			err = sql_err(st, rc, "cannot open database");
		}
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, FDB_BUSY_TIMEOUT_MS);
	/* Nothing from the database file may run code or read other files. */
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);

	if (!cfg->readonly && sqlite3_db_readonly(st->db, "main") == 1) {
		err = set_err(st, -EACCES, "%s: database file is read-only", path);
		goto fail;
	}
	/* The first read of the file: fails here for "not a database", and for a
	 * WAL database whose -wal/-shm files cannot be created. */
	int64_t v;
	if ((err = query_i64(st, "PRAGMA schema_version", &v))) {
		if (err == -EROFS || err == -EACCES)
			set_err(st, err, "%s: cannot use database: %s (WAL mode needs to create "
				"%s-wal and %s-shm: is the directory writable?)", path,
				sqlite3_errmsg(st->db), path, path);
		goto fail;
	}
	if (!cfg->readonly) {
		/* One writer per database: two would number flows alike and overwrite
		 * each other's rows.  The lock lives in a file of its own beside the
		 * database (see open_files for why not on the database itself). */
		char lockpath[PATH_MAX], what[PATH_MAX + 16], lerr[512];
		snprintf(lockpath, sizeof(lockpath), "%s-lock", path);
		snprintf(what, sizeof(what), "flow database %s", path);
		fsio_precreate(lockpath);
		if ((err = fsio_lock(lockpath, what, &st->lock, lerr, sizeof(lerr))) < 0) {
			set_err(st, err, "%s", lerr);
			goto fail;
		}
		/* auto_vacuum only takes effect before the first table exists, i.e.
		 * on a new file; on an existing one this is a no-op. */
		if ((err = exec(st, "PRAGMA auto_vacuum = INCREMENTAL", "auto_vacuum")))
			goto fail;
		sqlite3_stmt *s;
		rc = sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL);
		if (rc == SQLITE_OK) {
			rc = sqlite3_step(s);
			const char *mode = rc == SQLITE_ROW ? (const char *)sqlite3_column_text(s, 0) : NULL;
			if (rc == SQLITE_ROW && mode && strcmp(mode, "wal")) {
				set_err(st, -EIO, "%s: cannot switch to WAL mode (journal mode %s)", path, mode);
				rc = SQLITE_ERROR;
			}
			sqlite3_finalize(s);
		}
		if (rc != SQLITE_ROW) {
			err = st->err[0] ? -EIO : sql_err(st, rc, "set WAL mode");
			goto fail;
		}
		/* synchronous=NORMAL: in WAL mode a commit cannot corrupt the file,
		 * it can only be lost on power failure before the next checkpoint.
		 * cache_size 16 MiB: the index pages a batch touches stay cached for
		 * a few hundred thousand flows (2 MiB to 64 MiB measured the same at
		 * 200k), while each writer's memory stays predictable. */
		char sql[160];
		snprintf(sql, sizeof(sql), "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
			 " PRAGMA journal_size_limit = %d; PRAGMA cache_size = -16384", FDB_WAL_LIMIT);
		if ((err = exec(st, sql, "pragmas")) || (err = migrate(st)))
			goto fail;
		/* A bulk load into an empty table builds the indexes once at the end
		 * (sorted: ~0.6-1 us per row and index instead of ~2 per row). */
		int64_t any = 1;
		if (cfg->defer_indexes &&
		    (err = query_i64(st, "SELECT EXISTS (SELECT 1 FROM flows)", &any)))
			goto fail;
		st->indexes_deferred = !any;
		if ((err = set_indexes(st, !st->indexes_deferred)))
			goto fail;
		if (cfg->retain_bytes) {
			/* What piles up between two commits stays a small part of the
			 * cap: a transaction of at most 1/16 of it (rows of about 1 KiB
			 * in the WAL), a WAL checkpointed and cut back at 1/16 of it. */
			uint64_t part = cfg->retain_bytes / 16;
			uint64_t rows = part / 1024;
			st->cfg.batch = (uint32_t)(rows < 32 ? 32 : rows < st->cfg.batch ? rows : st->cfg.batch);
			uint64_t pages = part / 4096;
			snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint = %llu; PRAGMA journal_size_limit = %llu",
				 (unsigned long long)(pages < 16 ? 16 : pages > 1000 ? 1000 : pages),
				 (unsigned long long)(part < FDB_WAL_LIMIT ? part : FDB_WAL_LIMIT));
			if ((err = exec(st, sql, "pragmas")))
				goto fail;
		}
	} else {
		if ((err = exec(st, "PRAGMA foreign_keys = ON", "pragmas")) ||
		    (err = check_version_ro(st)))
			goto fail;
	}
	/* Catches most truncation/corruption of our own tables at open instead of in
	 * the middle of a batch: it walks the right edge of the flows b-tree and the
	 * last_us index, which is where a cut-off file loses pages. */
	if ((err = query_i64(st, "SELECT max(id) FROM flows", &v)) ||
	    (err = query_i64(st, "SELECT max(last_us) FROM flows", &v)) ||
	    (err = query_i64(st, "SELECT count(*) FROM observation_points", &v)))
		goto fail;
	rc = fdb_sql_functions(st->db) ? SQLITE_ERROR : SQLITE_OK;
	if (rc != SQLITE_OK) {
		err = sql_err(st, rc, "register function");
		goto fail;
	}
	if (!cfg->readonly && ((err = prepare_all(st)) || (err = obs_load(st))))
		goto fail;
	/* A database over its caps (a lower cap than last time, a writer that died
	 * before it could delete) is brought under them before anything is added. */
	if (!cfg->readonly && (err = auto_retain(st)))
		goto fail;
	struct stat fsb;
	if (stat(path, &fsb) == 0) {
		st->dev = fsb.st_dev;
		st->ino = fsb.st_ino;
		file_use(st, 1);
	}
	*out = st;
	return 0;
fail:
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", st && st->err[0] ? st->err : strerror(-err));
	if (st) {
		finalize_all(st);
		sqlite3_close_v2(st->db);
		fsio_unlock(st->lock);
		ru_free(st->ru);
		free(st->obs_known);
		free(st->dsort);
		free(st->path);
		free(st);
	}
	return err < 0 ? err : -EIO;
}

static int auto_retain(struct fdb *st);

static int tx_begin(struct fdb *st)
{
	if (st->in_tx)
		return 0;
	int rc = sqlite3_step(st->begin);
	sqlite3_reset(st->begin);
	if (rc != SQLITE_DONE)
		return sql_err(st, rc, "begin");
	st->in_tx = 1;
	st->pending = 0;
	return 0;
}

/* After a failed step SQLite may have rolled the whole transaction back (I/O
 * error, disk full); keep in_tx in line with what the connection says. */
static void obs_forget(struct fdb *st);

static void tx_sync(struct fdb *st)
{
	if (st->in_tx && sqlite3_get_autocommit(st->db)) {
		st->in_tx = 0;
		st->pending = 0;
		obs_forget(st);
		if (st->ru)
			ru_clear(st->ru); /* the deltas went with their rows */
	}
}

/* Caps hold at all times: every commit asks whether one is reached, cheaply (the
 * files' sizes; the oldest flow through the last_us index), and retention runs
 * when it is.  The size check fires one batch early (headroom = 1/16 of the cap,
 * which the batch and WAL sizes of fdb_open keep what accrues between two
 * commits under), so the files never grow past the cap. */
static int auto_retain(struct fdb *st)
{
	if (st->in_retain || !st->cfg.auto_retain || (!st->cfg.retain_age_s && !st->cfg.retain_bytes))
		return 0;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int due = 0;
	if (st->cfg.retain_bytes && disk_bytes(st) > st->cfg.retain_bytes - st->cfg.retain_bytes / 16)
		due = 1;
	if (!due && st->cfg.retain_age_s && (uint64_t)ts.tv_sec > st->cfg.retain_age_s) {
		/* the age check needs the last_us index: a deferred build happens now */
		if (st->indexes_deferred) {
			int err = set_indexes(st, 1);
			if (err)
				return err;
			st->indexes_deferred = 0;
		}
		int64_t old = 0;
		char sql[96];
		snprintf(sql, sizeof(sql), "SELECT EXISTS(SELECT 1 FROM flows WHERE last_us < %lld)",
			 (long long)(((uint64_t)ts.tv_sec - st->cfg.retain_age_s) * 1000000ULL));
		int err = query_i64(st, sql, &old);
		if (err)
			return err;
		due = old != 0;
	}
	if (!due)
		return 0;
	uint64_t deleted;
	return fdb_retain(st, (uint64_t)ts.tv_sec, &deleted);
}

uint32_t fdb_pending(const struct fdb *st) { return st->in_tx ? st->pending : 0; }

static int ru_write(void *arg, const struct ru_delta *d)
{
	struct ru_out *o = arg;
	struct fdb *st = o->st;
	sqlite3_stmt *s = o->s;
	sqlite3_bind_int(s, 1, d->dim);
	sqlite3_bind_int64(s, 2, d->bucket_us);
	sqlite3_bind_text(s, 3, d->key, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, d->flows);
	sqlite3_bind_int64(s, 5, d->packets);
	sqlite3_bind_int64(s, 6, d->bytes);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : sql_err(st, rc, "rollup");
}

/* Deltas per execution of the multi-row upsert (ru_put_n). */
#define RU_ROWS_PER_STMT 32

struct ru_collect {
	struct fdb *st;
	size_t n;
};

static int ru_collect(void *arg, const struct ru_delta *d)
{
	struct ru_collect *c = arg;
	struct fdb *st = c->st;
	if (c->n == st->dsort_cap) {
		size_t cap = st->dsort_cap ? 2 * st->dsort_cap : 256;
		struct ru_delta *v = realloc(st->dsort, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		st->dsort = v;
		st->dsort_cap = cap;
	}
	st->dsort[c->n++] = *d;
	return 0;
}

/* The rollup's primary key order (dim, bucket_us, key; BINARY collation is
 * byte order, as strcmp's). */
static int delta_cmp(const void *pa, const void *pb)
{
	const struct ru_delta *a = pa, *b = pb;
	if (a->dim != b->dim)
		return a->dim < b->dim ? -1 : 1;
	if (a->bucket_us != b->bucket_us)
		return a->bucket_us < b->bucket_us ? -1 : 1;
	return strcmp(a->key, b->key);
}

/* Writes ru's pending deltas in the table's key order (each upsert lands next
 * to the previous one, not anywhere in the b-tree as ru_each's hash order
 * would have it), RU_ROWS_PER_STMT rows per execution of one multi-row upsert
 * and the rest through s: bench10d's 59k deltas, 11 commits, took 80 ms one
 * row per step, 62 ms like this. */
static int ru_write_all(struct fdb *st, struct ru *ru, sqlite3_stmt *s)
{
	struct ru_out o = {st, s};
	struct ru_collect c = {st, 0};
	if (ru_each(ru, ru_collect, &c) < 0)
		return ru_each(ru, ru_write, &o); /* no memory to sort: unsorted */
	if (c.n > 1) /* dsort is NULL while nothing was collected */
		qsort(st->dsort, c.n, sizeof(*st->dsort), delta_cmp);
	size_t i = 0;
	if (c.n >= RU_ROWS_PER_STMT) {
		if (!st->ru_put_n) {
			char sql[RU_ROWS_PER_STMT * 40 + 512];
			size_t off = 0;
			sql_add(sql, sizeof(sql), &off, "INSERT INTO rollup (dim, bucket_us, key, flows, packets, bytes) VALUES ");
			for (int r = 0; r < RU_ROWS_PER_STMT; r++)
				sql_add(sql, sizeof(sql), &off, "%s(?,?,?,?,?,?)", r ? "," : "");
			sql_add(sql, sizeof(sql), &off, " ON CONFLICT DO UPDATE SET flows = flows + excluded.flows,"
				" packets = packets + excluded.packets, bytes = bytes + excluded.bytes");
			if (off >= sizeof(sql))
				return set_err(st, -E2BIG, "internal: rollup statement too long");
			int err = prepare(st, sql, &st->ru_put_n);
			if (err)
				return err;
		}
		sqlite3_stmt *m = st->ru_put_n;
		for (; i + RU_ROWS_PER_STMT <= c.n; i += RU_ROWS_PER_STMT) {
			for (int r = 0; r < RU_ROWS_PER_STMT; r++) {
				const struct ru_delta *d = &st->dsort[i + (size_t)r];
				int b = r * 6;
				sqlite3_bind_int(m, b + 1, d->dim);
				sqlite3_bind_int64(m, b + 2, d->bucket_us);
				sqlite3_bind_text(m, b + 3, d->key, -1, SQLITE_STATIC);
				sqlite3_bind_int64(m, b + 4, d->flows);
				sqlite3_bind_int64(m, b + 5, d->packets);
				sqlite3_bind_int64(m, b + 6, d->bytes);
			}
			int rc = sqlite3_step(m);
			sqlite3_reset(m);
			if (rc != SQLITE_DONE)
				return sql_err(st, rc, "rollup");
		}
	}
	for (; i < c.n; i++) {
		int err = ru_write(&o, &st->dsort[i]);
		if (err)
			return err;
	}
	return 0;
}

int fdb_commit(struct fdb *st)
{
	if (!st->in_tx)
		return 0;
	int rc, err = 0;
	if (st->ru) {
		/* The rollup's deltas go into the transaction of their rows. */
		err = ru_write_all(st, st->ru, st->ru_put);
		ru_clear(st->ru);
		uint64_t un = ru_untracked(st->ru);
		if (!err && un != st->ru_untracked_saved) {
			char v[24];
			snprintf(v, sizeof(v), "%" PRIu64, un);
			if (!(err = fdb_meta_set(st, "rollup_untracked", v)))
				st->ru_untracked_saved = un;
		}
		if (err) {
			if (!sqlite3_get_autocommit(st->db))
				sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			st->in_tx = 0;
			st->pending = 0;
			obs_forget(st);
			return err;
		}
	}
	rc = sqlite3_step(st->commit);
	sqlite3_reset(st->commit);
	if (rc != SQLITE_DONE) {
		err = sql_err(st, rc, "commit");
		/* A failed COMMIT (busy reader holding a lock is impossible in WAL;
		 * this is I/O) leaves the transaction open: roll back so the handle is
		 * usable and the rows are reported lost, not half-kept. */
		if (!sqlite3_get_autocommit(st->db))
			sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		st->in_tx = 0;
		st->pending = 0;
		obs_forget(st);
		return err;
	}
	st->in_tx = 0;
	st->pending = 0;
	st->stats.commits++;
	return auto_retain(st);
}

/* Text binds are SQLITE_STATIC: the record and the caller's buffers outlive the
 * sqlite3_step() in fdb_put_flow, and every parameter is bound again before the
 * next step, so SQLite never needs its own copy (one malloc+memcpy less each). */
static void bind_text_or_null(sqlite3_stmt *s, int i, const char *txt, size_t max)
{
	size_t n = strnlen(txt, max);
	if (n)
		sqlite3_bind_text(s, i, txt, (int)n, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* Dotted quad as inet_ntop writes it; glibc's goes through sprintf, which was
 * ~5% of the writer's time.  Returns the length. */
static int ipv4_text(const uint8_t *a, char *buf)
{
	char *p = buf;
	for (int k = 0; k < 4; k++) {
		unsigned v = a[k];
		if (k)
			*p++ = '.';
		if (v >= 100)
			*p++ = (char)('0' + v / 100);
		if (v >= 10)
			*p++ = (char)('0' + v / 10 % 10);
		*p++ = (char)('0' + v % 10);
	}
	*p = 0;
	return (int)(p - buf);
}

static void bind_addr(sqlite3_stmt *s, int i, int family, const uint8_t *a,
		      char buf[INET6_ADDRSTRLEN])
{
	if (family == 4)
		sqlite3_bind_text(s, i, buf, ipv4_text(a, buf), SQLITE_STATIC);
	else if (family == 6 && inet_ntop(AF_INET6, a, buf, INET6_ADDRSTRLEN))
		sqlite3_bind_text(s, i, buf, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* "TLS.Facebook" → master "TLS", app "Facebook"; "DNS" → both "DNS". */
static void bind_proto_names(sqlite3_stmt *s, int i, const char *proto, size_t max)
{
	size_t n = strnlen(proto, max);
	if (!n) {
		sqlite3_bind_null(s, i);
		sqlite3_bind_null(s, i + 1);
		return;
	}
	const char *dot = memchr(proto, '.', n);
	if (dot) {
		sqlite3_bind_text(s, i, proto, (int)(dot - proto), SQLITE_STATIC);
		sqlite3_bind_text(s, i + 1, dot + 1, (int)(n - (size_t)(dot - proto) - 1), SQLITE_STATIC);
	} else {
		sqlite3_bind_text(s, i, proto, (int)n, SQLITE_STATIC);
		sqlite3_bind_text(s, i + 1, proto, (int)n, SQLITE_STATIC);
	}
}

#define RISK_NAMES_LEN 2048
static size_t format_risk_names(uint64_t risk, char buf[RISK_NAMES_LEN])
{
	const size_t len = RISK_NAMES_LEN;
	size_t off = 0;
	buf[0] = 0;
	for (int r = 1; r < 64 && off < len; r++) {
		if (!(risk & (1ULL << r)))
			continue;
		const char *name = r < NDPI_MAX_RISK ? ndpi_risk2str((ndpi_risk_enum)r) : NULL;
		int n = name ? snprintf(buf + off, len - off, "%s%s", off ? "," : "", name)
			     : snprintf(buf + off, len - off, "%srisk%d", off ? "," : "", r);
		if (n < 0)
			break;
		off += (size_t)n;
	}
	if (off >= len)
		off = len - 1;
	return off;
}

/* Binds the risk names of a bitmap, formatted once per distinct bitmap (the
 * cache slot's string lives until the slot is reused, i.e. past the step). */
static void bind_risk_names(struct fdb *st, sqlite3_stmt *s, int i, uint64_t risk,
			    char buf[RISK_NAMES_LEN])
{
	if (!risk) {
		sqlite3_bind_null(s, i);
		return;
	}
	struct risk_slot *slot = &st->risks[(risk * 0x9E3779B97F4A7C15ULL) >> 57];
	if (slot->risk != risk) {
		size_t n = format_risk_names(risk, buf);
		char *copy = malloc(n + 1);
		if (!copy) {
			/* Only a cache: bind the formatted text directly. */
			sqlite3_bind_text(s, i, buf, (int)n, SQLITE_STATIC);
			return;
		}
		memcpy(copy, buf, n + 1);
		free(slot->names);
		slot->names = copy;
		slot->len = (int)n;
		slot->risk = risk;
	}
	sqlite3_bind_text(s, i, slot->names, slot->len, SQLITE_STATIC);
}

static void risks_free(struct fdb *st)
{
	for (size_t i = 0; i < sizeof(st->risks) / sizeof(st->risks[0]); i++) {
		free(st->risks[i].names);
		st->risks[i].names = NULL;
		st->risks[i].risk = 0;
	}
}

static void pods_forget(struct fdb *st)
{
	for (size_t i = 0; i < sizeof(st->pods) / sizeof(st->pods[0]); i++) {
		free(st->pods[i].pod);
		st->pods[i].pod = NULL;
		st->pods[i].id = 0;
	}
}

/* The pod of observation point id (NULL when it has none) in *pod, valid until
 * the next pods_forget or fdb_obs_point. */
static int pod_of(struct fdb *st, uint32_t id, const char **pod)
{
	struct pod_slot *slot = &st->pods[id % (sizeof(st->pods) / sizeof(st->pods[0]))];
	if (id && slot->id == id) {
		*pod = slot->pod;
		return 0;
	}
	*pod = NULL;
	if (!id)
		return 0;
	sqlite3_stmt *q;
	int rc = sqlite3_prepare_v2(st->db, "SELECT pod FROM observation_points WHERE id = ?1", -1,
				    &q, NULL);
	if (rc != SQLITE_OK)
		return sql_err(st, rc, "observation point pod");
	sqlite3_bind_int64(q, 1, id);
	rc = sqlite3_step(q);
	char *copy = NULL;
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(q, 0);
		if (v && !(copy = strdup(v)))
			rc = SQLITE_NOMEM;
		else
			rc = SQLITE_DONE;
	}
	int err = rc == SQLITE_DONE ? 0 : sql_err(st, rc, "observation point pod");
	sqlite3_finalize(q);
	if (err)
		return err;
	free(slot->pod);
	slot->pod = copy;
	slot->id = id;
	*pod = copy;
	return 0;
}

#define FDB_OBS_BITMAP_MAX (1u << 20) /* ids beyond this are looked up in SQL */

static void obs_mark(struct fdb *st, uint32_t id)
{
	if (id >= FDB_OBS_BITMAP_MAX)
		return;
	if (id >= st->obs_known_bits) {
		uint32_t bits = st->obs_known_bits ? st->obs_known_bits : 1024;
		while (bits <= id)
			bits *= 2;
		uint8_t *m = realloc(st->obs_known, bits / 8);
		if (!m)
			return; /* only a cache: the SQL lookup still answers */
		memset(m + st->obs_known_bits / 8, 0, (bits - st->obs_known_bits) / 8);
		st->obs_known = m;
		st->obs_known_bits = bits;
	}
	st->obs_known[id / 8] |= (uint8_t)(1u << (id % 8));
}

/* A rolled-back batch may have taken observation points created in it along:
 * forget what we knew and ask SQLite again. */
static void obs_forget(struct fdb *st)
{
	if (st->obs_known)
		memset(st->obs_known, 0, st->obs_known_bits / 8);
	pods_forget(st);
}

/* 1 when the observation point exists, 0 when not, or -errno.  Another process
 * writing the same database may have added it: a miss asks SQLite. */
static int obs_exists(struct fdb *st, uint32_t id)
{
	if (id < st->obs_known_bits && (st->obs_known[id / 8] & (1u << (id % 8))))
		return 1;
	char sql[80];
	int64_t n;
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM observation_points WHERE id = %u", id);
	int err = query_i64(st, sql, &n);
	if (err)
		return err;
	if (n)
		obs_mark(st, id);
	return n ? 1 : 0;
}

static int obs_load(struct fdb *st)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, "SELECT id FROM observation_points", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sql_err(st, rc, "observation points");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		if (id > 0 && id <= UINT32_MAX)
			obs_mark(st, (uint32_t)id);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_DONE ? 0 : sql_err(st, rc, "observation points");
}

/* The names of a record's ends, resolved through the dictionary the writer was
 * given (fdb_config.names); strings live in the handle's scratch until the
 * step.  Binds the columns from src_pod on and returns the next index;
 * pods[0] and pods[1] say whether src_pod and dst_pod got a value. */
static int bind_names(struct fdb *st, sqlite3_stmt *s, int i, const struct fl_record *r, int pods[2])
{
	struct fl_name *nm = st->names_buf;
	int have[FL_NAME__COUNT] = {0};
	for (int k = 0; k < FL_NAME__COUNT; k++) {
		if (!r->name[k] || !st->cfg.names)
			continue;
		if (fl_names_get(st->cfg.names, r->name[k], &nm[k]) == 0)
			have[k] = 1;
		else
			st->stats.names_expired++;
	}
	/* the two ends: a pod in full, a node by its name */
	for (int k = FL_NAME_SRC; k <= FL_NAME_DST; k++) {
		const struct fl_name *e = &nm[k];
		int is_pod = have[k] && e->kind == FL_KIND_POD;
		int is_node = have[k] && e->kind == FL_KIND_NODE;
		pods[k - FL_NAME_SRC] = is_pod;
		if (is_pod) {
			snprintf(st->pod_buf[k], sizeof(st->pod_buf[k]), "%s/%s", e->ns, e->name);
			sqlite3_bind_text(s, i++, st->pod_buf[k], -1, SQLITE_STATIC);
			bind_text_or_null(s, i++, e->ns, sizeof(e->ns));
		} else {
			sqlite3_bind_null(s, i++);
			sqlite3_bind_null(s, i++);
		}
		if (is_pod)
			bind_text_or_null(s, i++, e->node, sizeof(e->node));
		else if (is_node)
			bind_text_or_null(s, i++, e->name, sizeof(e->name));
		else
			sqlite3_bind_null(s, i++);
		if (is_pod) {
			bind_text_or_null(s, i++, e->workload, sizeof(e->workload));
			bind_text_or_null(s, i++, e->labels, sizeof(e->labels));
		} else {
			sqlite3_bind_null(s, i++);
			sqlite3_bind_null(s, i++);
		}
	}
	const struct fl_name *svc = &nm[FL_NAME_SERVICE];
	if (have[FL_NAME_SERVICE] && svc->kind == FL_KIND_SERVICE) {
		snprintf(st->svc_buf, sizeof(st->svc_buf), "%s/%s:%u", svc->ns, svc->name, svc->port);
		sqlite3_bind_text(s, i++, st->svc_buf, -1, SQLITE_STATIC);
		bind_text_or_null(s, i++, svc->via, sizeof(svc->via));
	} else {
		sqlite3_bind_null(s, i++);
		sqlite3_bind_null(s, i++);
	}
	/* a tunnel's outer ends are nodes (or, nested, a pod: its node) */
	for (int k = FL_NAME_OUTER_SRC; k <= FL_NAME_OUTER_DST; k++) {
		const struct fl_name *e = &nm[k];
		if (have[k] && e->kind == FL_KIND_NODE)
			bind_text_or_null(s, i++, e->name, sizeof(e->name));
		else if (have[k] && e->kind == FL_KIND_POD)
			bind_text_or_null(s, i++, e->node, sizeof(e->node));
		else
			sqlite3_bind_null(s, i++);
	}
	return i;
}

/* A deferred load's row that fills the columns of the partial indexes marked
 * in filled: a live one that has had many such rows is dropped now and built
 * with the others at the end (the bound statement is prepared again by SQLite
 * at its next step, with its bindings). */
static int part_account(struct fdb *st, const int filled[N_PARTIAL])
{
	for (int k = 0; k < N_PARTIAL; k++) {
		if (!filled[k] || !st->part_live[k])
			continue;
		if (++st->part_rows[k] <= PART_MIN_ROWS || (uint64_t)st->part_rows[k] * PART_SHARE <= st->load_rows)
			continue;
		char sql[96];
		snprintf(sql, sizeof(sql), "DROP INDEX IF EXISTS %s", flow_index_names[PART0 + k]);
		int err = exec(st, sql, "drop index");
		if (err)
			return err;
		st->part_live[k] = 0;
	}
	return 0;
}

int fdb_put_flow(struct fdb *st, const struct fl_record *r)
{
	if (!st->put)
		return set_err(st, -EROFS, "%s: store opened read-only", st->path);
	if (r->obs_id) {
		int known = obs_exists(st, r->obs_id);
		if (known < 0)
			return known;
		if (!known)
			return set_err(st, -EINVAL, "%s: flow %" PRIu64 ": unknown observation point %u "
				       "(ids come from fdb_obs_point)", st->path, r->id, r->obs_id);
	}
	int err = tx_begin(st);
	if (err)
		return err;
	const char *pod;
	if ((err = pod_of(st, r->obs_id, &pod)))
		return err;
	sqlite3_stmt *s = st->put;
	char addr[4][INET6_ADDRSTRLEN], risk[RISK_NAMES_LEN];
	if (pod)
		sqlite3_bind_text(s, PUT_POD, pod, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, PUT_POD);
	int i = 1;
	sqlite3_bind_int64(s, i++, (int64_t)r->id);
	if (r->obs_id)
		sqlite3_bind_int64(s, i++, r->obs_id);
	else
		sqlite3_bind_null(s, i++);
	sqlite3_bind_text(s, i++, r->end < sizeof(end_names) / sizeof(end_names[0]) ?
			  end_names[r->end] : "unknown", -1, SQLITE_STATIC);
	sqlite3_bind_int(s, i++, r->key.family);
	sqlite3_bind_int(s, i++, r->key.proto);
	bind_addr(s, i++, r->key.family, r->key.src, addr[0]);
	bind_addr(s, i++, r->key.family, r->key.dst, addr[1]);
	sqlite3_bind_int(s, i++, r->key.sport);
	sqlite3_bind_int(s, i++, r->key.dport);
	sqlite3_bind_int(s, i++, r->vlan);
	sqlite3_bind_text(s, i++, dc_tunnel_name(r->tunnel), -1, SQLITE_STATIC);
	if (r->has_vni)
		sqlite3_bind_int64(s, i++, r->vni);
	else
		sqlite3_bind_null(s, i++);
	if (r->tunnel) {
		sqlite3_bind_int(s, i++, r->outer.family);
		sqlite3_bind_int(s, i++, r->outer.proto);
		bind_addr(s, i++, r->outer.family, r->outer.src, addr[2]);
		bind_addr(s, i++, r->outer.family, r->outer.dst, addr[3]);
		sqlite3_bind_int(s, i++, r->outer.sport);
		sqlite3_bind_int(s, i++, r->outer.dport);
	} else {
		for (int k = 0; k < 6; k++)
			sqlite3_bind_null(s, i++);
	}
	sqlite3_bind_int64(s, i++, (int64_t)r->first_us);
	sqlite3_bind_int64(s, i++, (int64_t)r->last_us);
	sqlite3_bind_int64(s, i++, (int64_t)r->pkts[0]);
	sqlite3_bind_int64(s, i++, (int64_t)r->pkts[1]);
	sqlite3_bind_int64(s, i++, (int64_t)r->bytes[0]);
	sqlite3_bind_int64(s, i++, (int64_t)r->bytes[1]);
	sqlite3_bind_int64(s, i++, (int64_t)r->payload[0]);
	sqlite3_bind_int64(s, i++, (int64_t)r->payload[1]);
	sqlite3_bind_int(s, i++, r->tcp_flags[0]);
	sqlite3_bind_int(s, i++, r->tcp_flags[1]);
	sqlite3_bind_int64(s, i++, r->syn);
	sqlite3_bind_int64(s, i++, r->synack);
	sqlite3_bind_int64(s, i++, r->fin);
	sqlite3_bind_int64(s, i++, r->rst);
	if (r->rtt_us >= 0)
		sqlite3_bind_int64(s, i++, r->rtt_us);
	else
		sqlite3_bind_null(s, i++);
	sqlite3_bind_int64(s, i++, r->retrans[0]);
	sqlite3_bind_int64(s, i++, r->retrans[1]);
	sqlite3_bind_int64(s, i++, r->ooo[0]);
	sqlite3_bind_int64(s, i++, r->ooo[1]);
	sqlite3_bind_int64(s, i++, r->frags);
	bind_text_or_null(s, i++, r->community_id, sizeof(r->community_id));
	sqlite3_bind_int(s, i++, r->master_proto);
	sqlite3_bind_int(s, i++, r->app_proto);
	bind_text_or_null(s, i++, r->proto, sizeof(r->proto));
	bind_proto_names(s, i, r->proto, sizeof(r->proto));
	i += 2;
	bind_text_or_null(s, i++, r->category, sizeof(r->category));
	sqlite3_bind_int64(s, i++, (int64_t)r->risk);
	bind_risk_names(st, s, i++, r->risk, risk);
	bind_text_or_null(s, i++, r->host, sizeof(r->host));
	bind_text_or_null(s, i++, r->url, sizeof(r->url));
	if (r->http_status)
		sqlite3_bind_int(s, i++, r->http_status);
	else
		sqlite3_bind_null(s, i++);
	if (r->dns_rcode != 0xff)
		sqlite3_bind_int(s, i++, r->dns_rcode);
	else
		sqlite3_bind_null(s, i++);
	bind_text_or_null(s, i++, r->ja3c, sizeof(r->ja3c));
	bind_text_or_null(s, i++, r->ja3s, sizeof(r->ja3s));
	sqlite3_bind_int(s, i++, r->dpi_done);
	if (r->confidence != FL_CONF_NONE)
		sqlite3_bind_text(s, i++, fl_confidence_name(r->confidence), -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i++);
	int pods[2] = {0, 0};
	i = bind_names(st, s, i, r, pods);
	if (i - 1 != N_FLOW_COLS) {
		/* A programming error (column list and binds out of step): loud, not
		 * silently shifted data. */
		sqlite3_reset(s);
		return set_err(st, -EFAULT, "internal: bound %d of %d flow columns", i - 1, N_FLOW_COLS);
	}
	if (st->indexes_deferred) {
		int outer = r->tunnel && (r->outer.family == 4 || r->outer.family == 6);
		const int filled[N_PARTIAL] = {pod != NULL, outer, outer, pods[0], pods[1]};
		st->load_rows++;
		if ((err = part_account(st, filled)) < 0) {
			sqlite3_reset(s);
			return err;
		}
	}
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		err = sql_err(st, rc, "insert flow");
		tx_sync(st);
		return err;
	}
	st->stats.rows++;
	/* The rollup's share: a failure here (memory) only leaves the rollup
	 * short, which ru_untracked() counts; the flow itself is written. */
	if (!st->indexes_deferred || st->rollup_live) {
		if (ru_record(st->ru, r) < 0 && st->indexes_deferred)
			st->rollup_lost = 1; /* rebuilt from the flows at the end */
	}
	if (++st->pending >= st->cfg.batch)
		return fdb_commit(st);
	return 0;
}

int fdb_obs_point(struct fdb *st, const char *iface, const char *direction,
		 const char *pod, int linktype, uint32_t *id)
{
	if (!st->obs)
		return set_err(st, -EROFS, "%s: store opened read-only", st->path);
	if (!iface || !*iface || !direction || !*direction)
		return set_err(st, -EINVAL, "observation point needs an interface and a direction");
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	sqlite3_stmt *s = st->obs;
	sqlite3_bind_text(s, 1, iface, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, direction, -1, SQLITE_TRANSIENT);
	if (pod && *pod)
		sqlite3_bind_text(s, 3, pod, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(s, 3);
	sqlite3_bind_int(s, 4, linktype);
	sqlite3_bind_int64(s, 5, (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000);
	int rc = sqlite3_step(s);
	int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
	if (rc == SQLITE_ROW)
		rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		int err = sql_err(st, rc, "observation point");
		tx_sync(st);
		return err;
	}
	if (v <= 0 || v > UINT32_MAX)
		return set_err(st, -ERANGE, "%s: observation point id %lld out of range", st->path,
			       (long long)v);
	*id = (uint32_t)v;
	obs_mark(st, *id);
	/* Its pod may have changed: look it up again on next use. */
	struct pod_slot *slot = &st->pods[*id % (sizeof(st->pods) / sizeof(st->pods[0]))];
	if (slot->id == *id) {
		free(slot->pod);
		slot->pod = NULL;
		slot->id = 0;
	}
	return 0;
}

int fdb_meta_set(struct fdb *st, const char *key, const char *value)
{
	if (!st->meta_set)
		return set_err(st, -EROFS, "%s: store opened read-only", st->path);
	sqlite3_stmt *s = st->meta_set;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 2, value, -1, SQLITE_TRANSIENT);
	int rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		int err = sql_err(st, rc, "meta");
		tx_sync(st);
		return err;
	}
	return 0;
}

int fdb_meta_get(struct fdb *st, const char *key, char *buf, size_t len)
{
	sqlite3_stmt *s;
	int rc = sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?1", -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sql_err(st, rc, "meta");
	sqlite3_bind_text(s, 1, key, -1, SQLITE_TRANSIENT);
	int err;
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *v = (const char *)sqlite3_column_text(s, 0);
		size_t n = v ? strlen(v) : 0;
		err = n < len ? 0 : set_err(st, -ENOSPC, "meta %s: value longer than buffer", key);
		if (len)
			snprintf(buf, len, "%s", v ? v : "");
	} else if (rc == SQLITE_DONE) {
		err = set_err(st, -ENOENT, "meta %s: not set", key);
	} else {
		err = sql_err(st, rc, "meta");
	}
	sqlite3_finalize(s);
	return err;
}

int fdb_max_flow_id(struct fdb *st, uint64_t *out)
{
	/* Ids at or above 2^63 are stored negative; they are the larger ones. */
	int64_t neg, pos;
	int err;
	if ((err = query_i64(st, "SELECT coalesce(max(id), 0) FROM flows WHERE id < 0", &neg)) ||
	    (err = query_i64(st, "SELECT coalesce(max(id), 0) FROM flows WHERE id >= 0", &pos)))
		return err;
	*out = neg ? (uint64_t)neg : (uint64_t)pos;
	return 0;
}

int fdb_count_flows(struct fdb *st, uint64_t *out)
{
	int64_t n;
	int err = query_i64(st, "SELECT count(*) FROM flows", &n);
	if (!err)
		*out = (uint64_t)n;
	return err;
}

/* ---- retention ---- */

/* Logical size of the database (page_count * page_size, which already counts
 * pages still in the WAL) and the WAL file's size on disk. */
static int db_bytes(struct fdb *st, uint64_t *data, uint64_t *wal_bytes)
{
	int64_t pages, psize;
	int err;
	if ((err = query_i64(st, "PRAGMA page_count", &pages)) ||
	    (err = query_i64(st, "PRAGMA page_size", &psize)))
		return err;
	*data = (uint64_t)pages * (uint64_t)psize;
	*wal_bytes = 0;
	char wal[PATH_MAX];
	struct stat sb;
	if (snprintf(wal, sizeof(wal), "%s-wal", st->path) < (int)sizeof(wal) && stat(wal, &sb) == 0)
		*wal_bytes = (uint64_t)sb.st_size;
	/* the shared-memory index of the WAL takes disk space too (du counts it) */
	if (snprintf(wal, sizeof(wal), "%s-shm", st->path) < (int)sizeof(wal) && stat(wal, &sb) == 0)
		*wal_bytes += (uint64_t)sb.st_blocks * 512;
	return 0;
}

/* What the database takes on disk, as du counts it: file, WAL, its index. */
static uint64_t disk_bytes(const struct fdb *st)
{
	static const char *const suffix[] = {"", "-wal", "-shm"};
	uint64_t total = 0;
	char p[PATH_MAX];
	struct stat sb;
	for (size_t i = 0; i < 3; i++)
		if (snprintf(p, sizeof(p), "%s%s", st->path, suffix[i]) < (int)sizeof(p) && stat(p, &sb) == 0)
			total += (uint64_t)sb.st_blocks * 512;
	return total;
}

/* Deletes up to n oldest flows (by last_us), or those older than before_us when
 * before_us != 0, in one transaction.  Returns rows deleted or -errno. */
static int64_t delete_chunk(struct fdb *st, int64_t n, uint64_t before_us)
{
	sqlite3_stmt *s;
	const char *sql = before_us ?
		"DELETE FROM flows WHERE id IN (SELECT id FROM flows WHERE last_us < ?2 "
		"ORDER BY last_us LIMIT ?1)" :
		"DELETE FROM flows WHERE id IN (SELECT id FROM flows ORDER BY last_us LIMIT ?1)";
	int err = tx_begin(st);
	if (err)
		return err;
	/* What retention took is remembered (meta retained_until_us: the newest
	 * last_us deleted), so answers about older times can say they are not
	 * complete.  In the same transaction as the delete. */
	const char *upto = before_us ?
		"INSERT INTO meta(key, value) SELECT 'retained_until_us', max(coalesce((SELECT CAST(value AS INTEGER)"
		" FROM meta WHERE key = 'retained_until_us'), 0), coalesce(max(last_us), 0)) FROM"
		" (SELECT last_us FROM flows WHERE last_us < ?2 ORDER BY last_us LIMIT ?1) WHERE true"
		" ON CONFLICT(key) DO UPDATE SET value = excluded.value" :
		"INSERT INTO meta(key, value) SELECT 'retained_until_us', max(coalesce((SELECT CAST(value AS INTEGER)"
		" FROM meta WHERE key = 'retained_until_us'), 0), coalesce(max(last_us), 0)) FROM"
		" (SELECT last_us FROM flows ORDER BY last_us LIMIT ?1) WHERE true"
		" ON CONFLICT(key) DO UPDATE SET value = excluded.value";
	/* The rollup loses what is deleted (grouped per minute and key), and the
	 * writer forgets the deleted flows it was remembering. */
	const char *subq = before_us ? "SELECT id FROM flows WHERE last_us < ?2 ORDER BY last_us LIMIT ?1" :
		"SELECT id FROM flows ORDER BY last_us LIMIT ?1";
	char rsql[RU_DIMS][768], fsql[160];
	const char *steps[RU_DIMS + 3];
	int nsteps = 0, rc;
	steps[nsteps++] = upto;
	for (int d = 0; d < RU_DIMS; d++) {
		snprintf(rsql[d], sizeof(rsql[d]), "INSERT INTO rollup SELECT * FROM (SELECT %d, (last_us / %lld) * %lld AS b,"
			 " %s AS k, -count(*), -sum(c2s_pkts + s2c_pkts), -sum(c2s_bytes + s2c_bytes) FROM flows"
			 " WHERE id IN (%s) GROUP BY b, k) WHERE true ON CONFLICT DO UPDATE SET flows = flows + excluded.flows,"
			 " packets = packets + excluded.packets, bytes = bytes + excluded.bytes", d,
			 (long long)RU_BUCKET_US, (long long)RU_BUCKET_US, rollup_keys[d], subq);
		steps[nsteps++] = rsql[d];
	}
	snprintf(fsql, sizeof(fsql), "%s", subq);
	if (st->ru && ru_tracked(st->ru))
		steps[nsteps++] = fsql;
	steps[nsteps++] = sql;
	for (int step = 0; step < nsteps; step++) {
		rc = sqlite3_prepare_v2(st->db, steps[step], -1, &s, NULL);
		if (rc != SQLITE_OK) {
			err = sql_err(st, rc, "retention");
			goto rollback;
		}
		sqlite3_bind_int64(s, 1, n);
		if (before_us)
			sqlite3_bind_int64(s, 2, (int64_t)before_us);
		rc = sqlite3_step(s);
		while (steps[step] == fsql && rc == SQLITE_ROW) {
			ru_forget(st->ru, (uint64_t)sqlite3_column_int64(s, 0));
			rc = sqlite3_step(s);
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_DONE) {
			err = sql_err(st, rc, "retention delete");
			goto rollback;
		}
	}
	int64_t deleted = sqlite3_changes64(st->db);
	if ((err = fdb_commit(st)))
		return err;
	return deleted;
rollback:
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	st->in_tx = 0;
	st->pending = 0;
	return err;
}

/* Gives freed pages back to the file system: incremental vacuum moves them to
 * the end and truncates (in the WAL), the TRUNCATE checkpoint writes that into
 * the main file and empties the WAL.  A reader holding an old snapshot stops the
 * checkpoint short; that is not an error, but then *wal_stuck = 1 and the WAL's
 * size must not drive more deletes (each round would delete more rows without
 * the file getting any smaller).  The busy timeout is shortened meanwhile so a
 * long reader does not stall the writer for seconds per round. */
static int shrink(struct fdb *st, int *wal_stuck)
{
	int log = 0, ckpt = 0;
	int err = exec(st, "PRAGMA incremental_vacuum", "incremental vacuum");
	if (err)
		return err;
	sqlite3_busy_timeout(st->db, 50);
	int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &ckpt);
	sqlite3_busy_timeout(st->db, FDB_BUSY_TIMEOUT_MS);
	if (rc != SQLITE_OK && (rc & 0xff) != SQLITE_BUSY)
		return sql_err(st, rc, "checkpoint");
	if (wal_stuck)
		*wal_stuck = rc != SQLITE_OK || log != 0;
	return 0;
}

int fdb_retain(struct fdb *st, uint64_t now_s, uint64_t *deleted)
{
	uint64_t total = 0;
	int err = 0;
	if (deleted)
		*deleted = 0;
	if (!st->put)
		return set_err(st, -EROFS, "%s: store opened read-only", st->path);
	st->in_retain = 1;
	if ((err = fdb_commit(st)))
		goto out;
	/* Retention picks the oldest flows by last_us: without the index every
	 * chunk would sort the whole table, so a deferred build happens now. */
	if (st->indexes_deferred) {
		if ((err = set_indexes(st, 1)))
			goto out;
		st->indexes_deferred = 0;
	}
	if (st->cfg.retain_age_s && now_s > st->cfg.retain_age_s) {
		uint64_t before = (now_s - st->cfg.retain_age_s) * 1000000ULL;
		for (;;) {
			int64_t n = delete_chunk(st, FDB_AGE_CHUNK, before);
			if (n < 0) {
				err = (int)n;
				goto out;
			}
			total += (uint64_t)n;
			if (n < FDB_AGE_CHUNK)
				break;
		}
		if (total && (err = shrink(st, NULL)))
			goto out;
	}
	if (st->cfg.retain_bytes) {
		uint64_t data, wal;
		int stuck = 0;
		/* Fold the WAL of the last batches in first, so what is measured is
		 * the data, not the log. */
		if ((err = db_bytes(st, &data, &wal)))
			goto out;
		if (data + wal > st->cfg.retain_bytes && (err = shrink(st, &stuck)))
			goto out;
		for (int round = 0; round < FDB_RETAIN_ROUNDS; round++) {
			uint64_t rows;
			if ((err = db_bytes(st, &data, &wal)))
				goto out;
			uint64_t size = data + (stuck ? 0 : wal);
			if (size <= st->cfg.retain_bytes)
				break;
			if ((err = fdb_count_flows(st, &rows)))
				goto out;
			if (!rows)
				break; /* the empty schema alone is over the cap: nothing of ours to drop */
			/* Aim a little under the cap (90%) so the next batches do not
			 * trigger a delete each, and estimate rows from the average size.
			 * The estimate errs low (index pages do not free in proportion); the
			 * loop corrects it. */
			uint64_t target = st->cfg.retain_bytes / 10 * 9;
			uint64_t excess = size > target ? size - target : 1;
			uint64_t per_row = data / rows ? data / rows : 1;
			uint64_t n = excess / per_row + 1;
			if (n < 64)
				n = 64;
			if (n > rows)
				n = rows;
			int64_t got = delete_chunk(st, (int64_t)n, 0);
			if (got < 0) {
				err = (int)got;
				goto out;
			}
			total += (uint64_t)got;
			if ((err = shrink(st, &stuck)))
				goto out;
		}
	}
	/* minutes retention emptied (their rows counted down to 0 by the trigger) */
	if (total)
		err = exec(st, "DELETE FROM rollup WHERE flows <= 0", "rollup prune");
out:
	st->in_retain = 0;
	if (deleted)
		*deleted = total;
	st->stats.retained += total;
	return err;
}

/* ---- reading ---- */

struct fdb_cursor {
	struct fdb *db;
	sqlite3_stmt *stmt;
	struct fdb_cursor *next, **pprev; /* the handle's list of open cursors */
	uint64_t deadline_ms;             /* CLOCK_MONOTONIC, 0 = none */
	uint64_t budget;                  /* fdb_cursor_budget: progress calls left, 0 = none */
	int over_budget;                  /* the last step was stopped by it */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void fdb_set_deadline(struct fdb *st, uint64_t max_ms)
{
	st->deadline_ms = max_ms;
}

/* SQLite calls this every few thousand virtual machine steps: a query past its
 * deadline is interrupted (SQLITE_INTERRUPT, reported as -ETIMEDOUT). */
static int progress_check(void *arg)
{
	struct fdb_cursor *c = arg;
	if (c->budget && --c->budget == 0) {
		c->over_budget = 1;
		return 1;
	}
	return c->deadline_ms && mono_ms() > c->deadline_ms;
}

/* Progress calls come every FDB_BUDGET_STEP virtual machine steps. */
#define FDB_BUDGET_STEP 1024

void fdb_cursor_budget(struct fdb_cursor *c, uint64_t steps)
{
	c->budget = steps ? (steps + FDB_BUDGET_STEP - 1) / FDB_BUDGET_STEP : 0;
	c->over_budget = 0;
}

/* Statements a read cursor may run: one SELECT (or WITH ... SELECT, or EXPLAIN of
 * one) that SQLite itself calls read-only.  ATTACH and pragmas that change the
 * connection are not read-only in that sense, or not SELECTs. */
static int readonly_select(sqlite3_stmt *stmt, const char *tail)
{
	if (!sqlite3_stmt_readonly(stmt))
		return 0;
	const char *sql = sqlite3_sql(stmt);
	while (sql && (*sql == ' ' || *sql == '\n' || *sql == '\t' || *sql == '('))
		sql++;
	if (!sql || !(strncasecmp(sql, "SELECT", 6) == 0 || strncasecmp(sql, "WITH", 4) == 0 ||
		      strncasecmp(sql, "EXPLAIN", 7) == 0 || strncasecmp(sql, "VALUES", 6) == 0))
		return 0;
	for (; tail && *tail; tail++)
		if (*tail != ' ' && *tail != '\n' && *tail != '\t' && *tail != ';')
			return 0;
	return 1;
}

static int bind_params(struct fdb *st, sqlite3_stmt *stmt, const struct fdb_param *p, size_t n)
{
	if (n > (size_t)sqlite3_bind_parameter_count(stmt))
		return set_err(st, -EINVAL, "%zu parameters for a statement with %d", n,
			       sqlite3_bind_parameter_count(stmt));
	for (size_t i = 0; i < n; i++) {
		int k = (int)i + 1, r;
		switch (p[i].type) {
		case FDB_NULL: r = sqlite3_bind_null(stmt, k); break;
		case FDB_INT: r = sqlite3_bind_int64(stmt, k, p[i].i); break;
		case FDB_REAL: r = sqlite3_bind_double(stmt, k, p[i].d); break;
		case FDB_TEXT:
			if (!p[i].s)
				return set_err(st, -EINVAL, "parameter %d: no text", k);
			r = sqlite3_bind_text64(stmt, k, p[i].s, p[i].len ? p[i].len : strlen(p[i].s),
						SQLITE_TRANSIENT, SQLITE_UTF8);
			break;
		default:
			return set_err(st, -EINVAL, "parameter %d: unknown type %d", k, p[i].type);
		}
		if (r != SQLITE_OK)
			return sql_err(st, r, "bind");
	}
	return 0;
}

int fdb_cursor_open(struct fdb *st, const char *sql, const struct fdb_param *params,
		    size_t nparams, struct fdb_cursor **out)
{
	*out = NULL;
	struct fdb_cursor *c = calloc(1, sizeof(*c));
	if (!c)
		return set_err(st, -ENOMEM, "out of memory");
	const char *tail = NULL;
	int r = sqlite3_prepare_v2(st->db, sql, -1, &c->stmt, &tail);
	int err = 0;
	if (r != SQLITE_OK) {
		err = sql_err(st, r, "query");
	} else if (!c->stmt || !readonly_select(c->stmt, tail)) {
		err = set_err(st, -EPERM, "%s: only one read-only SELECT may run through a cursor",
			      st->path);
	} else {
		err = bind_params(st, c->stmt, params, nparams);
	}
	if (err) {
		sqlite3_finalize(c->stmt);
		free(c);
		return err;
	}
	c->db = st;
	c->deadline_ms = st->deadline_ms ? mono_ms() + st->deadline_ms : 0;
	c->next = st->cursors;
	if (c->next)
		c->next->pprev = &c->next;
	c->pprev = &st->cursors;
	st->cursors = c;
	*out = c;
	return 0;
}

int fdb_cursor_next(struct fdb_cursor *c)
{
	struct fdb *st = c->db;
	/* the handler is per connection: point it at the cursor being stepped */
	int every = c->budget ? FDB_BUDGET_STEP : c->deadline_ms ? 4096 : 0;
	sqlite3_progress_handler(st->db, every, every ? progress_check : NULL, c);
	int r = sqlite3_step(c->stmt);
	if (r == SQLITE_ROW)
		return 1;
	if (r == SQLITE_DONE)
		return 0;
	if ((r & 0xff) == SQLITE_INTERRUPT && c->over_budget)
		return -EAGAIN; /* the caller's own limit, not an error of the database */
	if ((r & 0xff) == SQLITE_INTERRUPT)
		return set_err(st, -ETIMEDOUT, "%s: query stopped after %llu ms (limit)", st->path,
			       (unsigned long long)st->deadline_ms);
	return sql_err(st, r, "query");
}

int fdb_cursor_columns(const struct fdb_cursor *c) { return sqlite3_column_count(c->stmt); }
const char *fdb_cursor_name(const struct fdb_cursor *c, int col) { return sqlite3_column_name(c->stmt, col); }
int64_t fdb_cursor_int(const struct fdb_cursor *c, int col) { return sqlite3_column_int64(c->stmt, col); }
double fdb_cursor_real(const struct fdb_cursor *c, int col) { return sqlite3_column_double(c->stmt, col); }
const char *fdb_cursor_text(const struct fdb_cursor *c, int col)
{
	return (const char *)sqlite3_column_text(c->stmt, col);
}

int fdb_cursor_type(const struct fdb_cursor *c, int col)
{
	switch (sqlite3_column_type(c->stmt, col)) {
	case SQLITE_INTEGER: return FDB_INT;
	case SQLITE_FLOAT: return FDB_REAL;
	case SQLITE_TEXT: case SQLITE_BLOB: return FDB_TEXT;
	default: return FDB_NULL;
	}
}

void fdb_cursor_close(struct fdb_cursor *c)
{
	if (!c)
		return;
	*c->pprev = c->next;
	if (c->next)
		c->next->pprev = c->pprev;
	sqlite3_progress_handler(c->db->db, 0, NULL, NULL);
	sqlite3_finalize(c->stmt);
	free(c);
}

int fdb_explain(struct fdb *st, const char *sql, const struct fdb_param *params, size_t nparams,
		char *buf, size_t len)
{
	char *q = sqlite3_mprintf("EXPLAIN QUERY PLAN %s", sql);
	struct fdb_cursor *c;
	if (!q)
		return set_err(st, -ENOMEM, "out of memory");
	int err = fdb_cursor_open(st, q, params, nparams, &c);
	sqlite3_free(q);
	if (err)
		return err;
	size_t off = 0;
	if (len)
		buf[0] = 0;
	while ((err = fdb_cursor_next(c)) == 1) {
		/* columns: id, parent, notused, detail */
		const char *d = fdb_cursor_text(c, 3);
		int n = snprintf(buf + off, off < len ? len - off : 0, "%s%s", off ? "\n" : "", d ? d : "");
		if (n > 0)
			off += (size_t)n;
	}
	fdb_cursor_close(c);
	if (err < 0)
		return err;
	return off < len ? 0 : set_err(st, -ENOSPC, "query plan longer than the buffer");
}

int fdb_build_indexes(struct fdb *st)
{
	if (!st->put)
		return set_err(st, -EROFS, "%s: store opened read-only", st->path);
	int err = fdb_commit(st);
	if (!err && st->indexes_deferred) {
		uint64_t t0 = cpu_us();
		if (!(err = set_indexes(st, 1)))
			st->indexes_deferred = 0;
		st->stats.index_us += cpu_us() - t0;
		/* the indexes take room too: the cap still holds after them */
		if (!err)
			err = auto_retain(st);
	}
	return err;
}

int fdb_close(struct fdb *st)
{
	if (!st)
		return 0;
	int err = 0;
	if (st->db && st->put) {
		err = fdb_commit(st);
		if (!err && st->indexes_deferred)
			err = set_indexes(st, 1);
		/* Keeps planner statistics current for the query side; cheap when
		 * nothing changed much. */
		sqlite3_exec(st->db, "PRAGMA optimize", NULL, NULL, NULL);
	}
	while (st->cursors)
		fdb_cursor_close(st->cursors);
	finalize_all(st);
	sqlite3_close_v2(st->db);
	if (st->ino)
		file_use(st, -1);
	fsio_unlock(st->lock); /* after SQLite let go of the files */
	pods_forget(st);
	risks_free(st);
	ru_free(st->ru);
	free(st->obs_known);
	free(st->dsort);
	free(st->path);
	free(st);
	return err;
}
