/* segments — rolling pcapng packet segments with a per-flow index in SQLite.
 * See segments.h for the contract; this comment explains the moving parts.
 *
 * Write path (one thread): seg_put() hands the packet to the open segment's
 * pn_writer (a 1 MiB buffer, so the disk sees large sequential writes) and appends
 * the varint delta of its block offset to the flow's pending bytes in an in-memory
 * hash of the flows seen in this segment.  Every batch_packets packets the writer is
 * flushed and, in one transaction, each flow with pending bytes gets its
 * (flow, segment) row created or extended (blob concatenation).  A flow's deltas in
 * one segment form a single chain across batches because the hash keeps the last
 * offset of each flow until the segment is closed.
 *
 * Read path (export): rows → offsets → pread of the 28-byte EPB header of each
 * packet (validated: type, lengths, interface) to get its time → sort by time →
 * pread of each whole block → pn_write_packet.  Nothing read from the index or the
 * segment files is trusted.
 */
#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pcapng.h"
#include "segments.h"

/* 1: flow_packets keyed (flow_id, segment_id); 2: keyed (segment_id, flow_id), so
 * the rows of the open segment append at the end of the b-tree instead of landing
 * all over it (bench10 with --store: index.db writes 22.9 MB -> 9.6 MB) and
 * retention deletes one contiguous range.  Version 1 is migrated by the first
 * writer and still read as it is. */
#define SEG_SCHEMA_VERSION 2
#define SEG_WRITE_BUF (1u << 20)
#define SEG_MIN_SEGMENT (64u * 1024u)
#define SEG_MAX_IFACES 4096u
#define SEG_VARINT_MAX 10

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	/* state: 'open' (being written), 'closed', 'deleted' (file removed by retention) */
	"CREATE TABLE IF NOT EXISTS segments(id INTEGER PRIMARY KEY, session INTEGER NOT NULL,"
	" file TEXT NOT NULL, first_us INTEGER, last_us INTEGER, bytes INTEGER NOT NULL DEFAULT 0,"
	" packets INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL);"
	/* idx is the pcapng interface id inside every segment of that session */
	"CREATE TABLE IF NOT EXISTS interfaces(session INTEGER NOT NULL, idx INTEGER NOT NULL,"
	" obs_id INTEGER NOT NULL, linktype INTEGER NOT NULL, snaplen INTEGER NOT NULL,"
	" name TEXT, pod TEXT, PRIMARY KEY(session, idx)) WITHOUT ROWID;"
	/* offs: LEB128 varints, first = offset, then deltas to the previous offset */
	"CREATE TABLE IF NOT EXISTS flow_packets(flow_id INTEGER NOT NULL, segment_id INTEGER NOT NULL,"
	" packets INTEGER NOT NULL, offs BLOB NOT NULL, PRIMARY KEY(segment_id, flow_id)) WITHOUT ROWID;"
	/* flows that lost packets to retention: how many and the last segment involved */
	"CREATE TABLE IF NOT EXISTS expired(flow_id INTEGER PRIMARY KEY, packets INTEGER NOT NULL,"
	" segment_id INTEGER NOT NULL);";

/* Rows by flow, for export and retention.  A bulk load (seg_config.defer_index)
 * builds it once at the end: kept up row by row it was a third of the index's
 * cost (bench10: 0.03 of 0.09 CPU-s).  Without it every query still works, by
 * scanning; the next read-write open that is not a bulk load, retention, and
 * seg_build_index() create it. */
static const char index_sql[] = "CREATE INDEX IF NOT EXISTS flow_packets_flow ON flow_packets(flow_id)";

struct seg_iface {
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

struct seg_store {
	struct seg_config cfg;
	char *dir;
	sqlite3 *db;
	sqlite3_stmt *st_upsert, *st_seg_update;
	int64_t session;

	struct seg_iface *ifaces;
	uint32_t nif;

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
	const char *rows;       /* table export reads rows from: flow_packets or its staging copy */
	int disk_err;           /* last write error, while retrying */
	int corrupt;            /* index.db failed its integrity check */
	uint64_t retry_at_us;

	struct seg_stats stats;
	char errmsg[512];
};

void seg_config_default(struct seg_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->segment_bytes = 64ull << 20;
	cfg->segment_age_us = 5ull * 60 * 1000000;
	cfg->max_bytes = 2ull << 30;
	cfg->batch_packets = 65536;
	cfg->retry_us = 1000000;
}

static int set_err(struct seg_store *s, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

static void note(struct seg_store *s, const char *fmt, ...)
{
	if (!s->cfg.log)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->cfg.log(s->cfg.log_arg, msg);
}

const char *seg_errmsg(const struct seg_store *s) { return s->errmsg; }

static int db_err(struct seg_store *s, int rc, const char *what)
{
	int e = rc == SQLITE_FULL ? -ENOSPC : rc == SQLITE_READONLY ? -EROFS :
		rc == SQLITE_BUSY ? -EBUSY : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	return set_err(s, e, "index %s: %s", what, sqlite3_errmsg(s->db));
}

static int exec(struct seg_store *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : db_err(s, rc, sql);
}

/* ---- varints ---------------------------------------------------------------- */

static size_t varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads one varint from p[*pos .. len); returns 0 or -1 on a truncated or
 * over-long one. */
static int varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0, i = 0; i < SEG_VARINT_MAX; i++, shift += 7) {
		if (*pos >= len)
			return -1;
		uint8_t b = p[(*pos)++];
		if (shift == 63 && (b & 0x7e))
			return -1;
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return 0;
		}
	}
	return -1;
}

/* ---- flow hash of the open segment ----------------------------------------- */

static inline uint32_t hash64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (uint32_t)x;
}

static void flows_clear(struct seg_store *s)
{
	for (uint32_t i = 0; i < s->flow_cap; i++)
		free(s->flows[i].pend);
	memset(s->flows, 0, sizeof(*s->flows) * s->flow_cap);
	s->flow_count = 0;
	s->ndirty = 0;
	s->pending_pkts = 0;
}

static int flows_grow(struct seg_store *s)
{
	uint32_t ncap = s->flow_cap ? s->flow_cap * 2 : 4096;
	struct flow_ent *nf = calloc(ncap, sizeof(*nf));
	uint32_t *nd = malloc(ncap * sizeof(*nd));
	if (!nf || !nd) {
		free(nf);
		free(nd);
		return -ENOMEM;
	}
	s->ndirty = 0;
	for (uint32_t i = 0; i < s->flow_cap; i++) {
		struct flow_ent *e = &s->flows[i];
		if (!e->used)
			continue;
		uint32_t j = hash64(e->flow_id) & (ncap - 1);
		while (nf[j].used)
			j = (j + 1) & (ncap - 1);
		nf[j] = *e;
		if (e->pend_pkts)
			nd[s->ndirty++] = j;
	}
	free(s->flows);
	free(s->dirty);
	s->flows = nf;
	s->flow_cap = ncap;
	s->dirty = nd;
	s->dirty_cap = ncap;
	return 0;
}

static struct flow_ent *flow_get(struct seg_store *s, uint64_t flow_id)
{
	if ((s->flow_count + 1) * 2 > s->flow_cap && flows_grow(s) < 0)
		return NULL;
	uint32_t j = hash64(flow_id) & (s->flow_cap - 1);
	while (s->flows[j].used) {
		if (s->flows[j].flow_id == flow_id)
			return &s->flows[j];
		j = (j + 1) & (s->flow_cap - 1);
	}
	struct flow_ent *e = &s->flows[j];
	e->used = 1;
	e->flow_id = flow_id;
	s->flow_count++;
	return e;
}

/* ---- index commits ---------------------------------------------------------- */

/* Drops pending entries of e that point at or past limit (bytes the file does not
 * have).  Returns the number of packets dropped. */
static uint32_t trim_pending(struct flow_ent *e, uint64_t limit)
{
	if (e->last_off < limit)
		return 0; /* all written: the usual case, no need to walk the varints */
	size_t pos = 0, keep = 0;
	uint64_t off = e->base_off, d;
	uint32_t kept = 0;
	int first = !e->seen;
	while (pos < e->pend_len && varint_get(e->pend, e->pend_len, &pos, &d) == 0) {
		off = first ? d : off + d;
		first = 0;
		if (off >= limit)
			break;
		keep = pos;
		kept++;
		e->last_off = off;
	}
	uint32_t dropped = e->pend_pkts - kept;
	e->pend_len = (uint32_t)keep;
	e->pend_pkts = kept;
	if (!kept)
		e->last_off = e->base_off;
	return dropped;
}

/* CPU time of this thread: what the index costs the pipeline thread, without
 * the noise of other processes on the machine. */
static uint64_t cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Writes the pending index entries of the open segment in one transaction.
 * Only entries below pn_written() are committed: the caller flushed before. */
static int commit_index(struct seg_store *s)
{
	int rc = 0;
	if (!s->w)
		return 0;
	uint64_t t0 = cpu_us();
	uint64_t limit = pn_written(s->w);
	int tx = 0;
	if ((rc = exec(s, "BEGIN")) < 0)
		goto out;
	tx = 1;
	for (uint32_t i = 0; i < s->ndirty; i++) {
		struct flow_ent *e = &s->flows[s->dirty[i]];
		if (!e->pend_pkts)
			continue;
		s->stats.index_lost += trim_pending(e, limit);
		if (!e->pend_pkts)
			continue;
		sqlite3_stmt *st = s->st_upsert;
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, (int64_t)e->flow_id);
		sqlite3_bind_int64(st, 2, s->seg_id);
		sqlite3_bind_int64(st, 3, e->pend_pkts);
		sqlite3_bind_blob(st, 4, e->pend, (int)e->pend_len, SQLITE_STATIC);
		int r = sqlite3_step(st);
		if (r != SQLITE_DONE) {
			rc = db_err(s, r, "insert");
			goto out;
		}
		s->stats.index_rows++;
	}
	sqlite3_stmt *st = s->st_seg_update;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, (int64_t)s->seg_last_us);
	sqlite3_bind_int64(st, 2, (int64_t)limit);
	sqlite3_bind_int64(st, 3, (int64_t)s->seg_packets);
	sqlite3_bind_text(st, 4, "open", -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, s->seg_id);
	int r = sqlite3_step(st);
	if (r != SQLITE_DONE) {
		rc = db_err(s, r, "segment update");
		goto out;
	}
	if ((rc = exec(s, "COMMIT")) < 0)
		goto out;
	tx = 0;
out:
	if (tx)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	/* Committed or not, these entries are done with: on failure they are lost
	 * (counted), and the chain goes on from the last offset. */
	for (uint32_t i = 0; i < s->ndirty; i++) {
		struct flow_ent *e = &s->flows[s->dirty[i]];
		if (rc < 0)
			s->stats.index_lost += e->pend_pkts;
		if (rc < 0) {
			/* The row ends where it ended: continue the chain from there. */
			e->last_off = e->base_off;
		} else {
			if (e->pend_pkts)
				e->seen = 1;
			e->base_off = e->last_off;
		}
		e->pend_len = 0;
		e->pend_pkts = 0;
	}
	s->ndirty = 0;
	s->pending_pkts = 0;
	s->stats.index_us += cpu_us() - t0;
	return rc;
}

/* ---- segment files ---------------------------------------------------------- */

static uint64_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t disk_use(struct seg_store *s)
{
	char path[PATH_MAX];
	uint64_t total = 0;
	for (size_t i = 0; i < s->nlive; i++)
		total += s->live[i].bytes;
	snprintf(path, sizeof(path), "%s/index.db", s->dir);
	total += file_size(path);
	snprintf(path, sizeof(path), "%s/index.db-wal", s->dir);
	total += file_size(path);
	if (s->w)
		total += pn_offset(s->w);
	s->stats.disk_bytes = total;
	return total;
}

static int live_push(struct seg_store *s, int64_t id, uint64_t bytes, const char *file)
{
	if (s->nlive == s->live_cap) {
		size_t ncap = s->live_cap ? s->live_cap * 2 : 64;
		struct live_seg *nl = realloc(s->live, ncap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		s->live = nl;
		s->live_cap = ncap;
	}
	char *f = strdup(file);
	if (!f)
		return -ENOMEM;
	s->live[s->nlive++] = (struct live_seg){id, bytes, f};
	return 0;
}

/* The flows with packets in segment seg_id, and whether each keeps packets in
 * another segment. */
static int expiring_flows(struct seg_store *s, int64_t seg_id, uint64_t **ids,
			  uint8_t **partial, size_t *n)
{
	sqlite3_stmt *st;
	size_t cap = 0;
	int rc = 0;
	*n = 0;
	int r = sqlite3_prepare_v2(s->db, "SELECT p.flow_id, EXISTS(SELECT 1 FROM flow_packets q"
				   " WHERE q.flow_id = p.flow_id AND q.segment_id != p.segment_id)"
				   " FROM flow_packets p WHERE p.segment_id = ?1", -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "expire");
	sqlite3_bind_int64(st, 1, seg_id);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 1024;
			uint64_t *ni = realloc(*ids, cap * sizeof(*ni));
			uint8_t *np = ni ? realloc(*partial, cap) : NULL;
			if (ni)
				*ids = ni;
			if (np)
				*partial = np;
			if (!ni || !np) {
				rc = set_err(s, -ENOMEM, "out of memory");
				break;
			}
		}
		(*ids)[*n] = (uint64_t)sqlite3_column_int64(st, 0);
		(*partial)[(*n)++] = (uint8_t)sqlite3_column_int(st, 1);
	}
	if (rc == 0 && r != SQLITE_DONE)
		rc = db_err(s, r, "expire");
	sqlite3_finalize(st);
	if (rc < 0) {
		free(*ids);
		free(*partial);
		*ids = NULL;
		*partial = NULL;
		*n = 0;
	}
	return rc;
}

int seg_build_index(struct seg_store *s)
{
	if (s->cfg.readonly || !s->index_deferred)
		return 0;
	uint64_t t0 = cpu_us();
	int rc = exec(s, index_sql);
	if (rc == 0)
		s->index_deferred = 0;
	s->stats.index_us += cpu_us() - t0;
	return rc;
}

/* Deletes the oldest closed segment: its flows become expired. */
static int delete_oldest(struct seg_store *s)
{
	struct live_seg *ls = &s->live[0];
	char path[PATH_MAX], sql[512];
	int rc;
	uint64_t *ids = NULL;
	uint8_t *partial = NULL;
	size_t nids = 0;
	snprintf(path, sizeof(path), "%s/%s", s->dir, ls->file);
	/* expiring_flows looks up each flow of the segment by flow_id */
	if ((rc = seg_build_index(s)) < 0)
		return rc;
	if (s->cfg.on_expire && (rc = expiring_flows(s, ls->id, &ids, &partial, &nids)) < 0)
		return rc;
	if ((rc = exec(s, "BEGIN")) < 0) {
		free(ids);
		free(partial);
		return rc;
	}
	snprintf(sql, sizeof(sql),
		 "INSERT INTO expired(flow_id, packets, segment_id)"
		 " SELECT flow_id, packets, segment_id FROM flow_packets WHERE segment_id=%" PRId64
		 " ON CONFLICT(flow_id) DO UPDATE SET packets=packets+excluded.packets,"
		 " segment_id=excluded.segment_id;"
		 "DELETE FROM flow_packets WHERE segment_id=%" PRId64 ";"
		 "UPDATE segments SET state='deleted' WHERE id=%" PRId64 ";",
		 ls->id, ls->id, ls->id);
	if ((rc = exec(s, sql)) < 0 || (rc = exec(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		free(ids);
		free(partial);
		return rc;
	}
	for (size_t i = 0; i < nids; i++)
		s->cfg.on_expire(s->cfg.expire_arg, ids[i],
				 partial[i] ? SEG_FLOW_PARTIAL : SEG_FLOW_EXPIRED);
	free(ids);
	free(partial);
	/* The index forgets the segment before the file goes: an exporter never
	 * finds rows pointing into a removed file (except in a race it reports). */
	if (unlink(path) < 0 && errno != ENOENT)
		note(s, "segments: cannot delete %s: %s", path, strerror(errno));
	free(ls->file);
	memmove(&s->live[0], &s->live[1], (s->nlive - 1) * sizeof(*s->live));
	s->nlive--;
	s->stats.segments_deleted++;
	return 0;
}

/* Keeps disk use plus room for one full new segment under max_bytes. */
static int enforce_cap(struct seg_store *s)
{
	if (!s->cfg.max_bytes)
		return 0;
	while (s->nlive && disk_use(s) + s->cfg.segment_bytes > s->cfg.max_bytes) {
		int rc = delete_oldest(s);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int close_segment(struct seg_store *s)
{
	if (!s->w)
		return 0;
	int rc = pn_flush(s->w);
	int rc2 = commit_index(s);
	uint64_t bytes = pn_written(s->w);
	int rc3 = pn_close(s->w);
	s->w = NULL;
	/* A failed final flush leaves the file cut at its last complete block;
	 * record that size so the segment stays consistent. */
	char sql[256];
	snprintf(sql, sizeof(sql), "UPDATE segments SET state='closed', bytes=%" PRIu64
		 ", last_us=%" PRIu64 ", packets=%" PRIu64 " WHERE id=%" PRId64,
		 bytes, s->seg_last_us, s->seg_packets, s->seg_id);
	int rc4 = exec(s, sql);
	int rc5 = live_push(s, s->seg_id, bytes, s->seg_file);
	free(s->seg_file);
	s->seg_file = NULL;
	flows_clear(s);
	if (rc3 < 0 && rc == 0)
		rc = set_err(s, rc3, "segment close: %s", strerror(-rc3));
	return rc ? rc : rc2 ? rc2 : rc4 ? rc4 : rc5;
}

static int open_segment(struct seg_store *s, uint64_t ts_us)
{
	char name[128], path[PATH_MAX], when[32];
	time_t t = (time_t)(ts_us / 1000000);
	struct tm tm;
	int rc = 0, fd = -1;
	if (!gmtime_r(&t, &tm) || !strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm))
		snprintf(when, sizeof(when), "%" PRIu64, ts_us / 1000000);
	int64_t id = s->next_seg_id;
	snprintf(name, sizeof(name), "segment-%08" PRId64 "-%s.pcapng", id, when);
	snprintf(path, sizeof(path), "%s/%s", s->dir, name);

	if ((rc = enforce_cap(s)) < 0)
		return rc;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = set_err(s, -errno, "segment %s: %s", path, strerror(errno));
		if (rc == -EEXIST) /* a stray file: the retry takes the next number */
			s->next_seg_id++;
		return rc;
	}
	struct pn_config pc;
	pn_config_default(&pc);
	pc.bufsize = SEG_WRITE_BUF;
	pc.flags = PN_OWN_FD;
	struct pn_writer *w = pn_open_fd(fd, &pc);
	if (!w) {
		rc = -errno;
		close(fd);
		unlink(path);
		return set_err(s, rc, "segment %s: %s", path, strerror(-rc));
	}
	for (uint32_t i = 0; i < s->nif; i++) {
		uint32_t if_id;
		pn_add_interface(w, s->ifaces[i].linktype, s->cfg.snaplen,
				 s->ifaces[i].name, s->ifaces[i].pod, &if_id);
	}
	/* The header blocks must be on disk before the index names the file. */
	if ((rc = pn_flush(w)) < 0) {
		set_err(s, rc, "segment %s: %s", path, pn_errmsg(w));
		pn_close(w);
		unlink(path);
		return rc;
	}
	char sql[PATH_MAX + 256];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO segments(id, session, file, first_us, last_us, bytes, state)"
		 " VALUES(%" PRId64 ", %" PRId64 ", '%s', %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", 'open')",
		 id, s->session, name, ts_us, ts_us, pn_written(w));
	if ((rc = exec(s, sql)) < 0) {
		pn_close(w);
		unlink(path);
		return rc;
	}
	s->seg_file = strdup(name);
	if (!s->seg_file) {
		pn_close(w);
		return set_err(s, -ENOMEM, "out of memory");
	}
	s->w = w;
	s->seg_id = id;
	s->next_seg_id = id + 1;
	s->seg_first_us = s->seg_last_us = ts_us;
	s->seg_packets = 0;
	s->stats.segments_open++;
	return 0;
}

static inline uint64_t sat_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* A write to the open segment failed: keep what reached the file and its index,
 * close the segment, and refuse packets until retry_at. */
static int write_failed(struct seg_store *s, int err, uint64_t ts_us)
{
	set_err(s, err, "segment %s: %s", s->seg_file ? s->seg_file : "?",
		s->w ? pn_errmsg(s->w) : strerror(-err));
	char msg[sizeof(s->errmsg)];
	memcpy(msg, s->errmsg, sizeof(msg));
	close_segment(s); /* commits the entries below pn_written() */
	memcpy(s->errmsg, msg, sizeof(msg));
	s->disk_err = err;
	s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
	s->stats.write_errors++;
	note(s, "segments: %s; packets are not stored until a retry succeeds", msg);
	return err;
}

/* ---- open / close ----------------------------------------------------------- */

static int prepare(struct seg_store *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	return rc == SQLITE_OK ? 0 : db_err(s, rc, "prepare");
}

static int64_t query_int(struct seg_store *s, const char *sql, int64_t dflt)
{
	sqlite3_stmt *st;
	int64_t v = dflt;
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return dflt;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* Segment files the index does not know (a crash between creating the file and
 * its row, or a replaced index) are adopted as closed segments without flows:
 * not exportable, but counted and in time deleted by retention. */
static int adopt_orphans(struct seg_store *s)
{
	int64_t *known = NULL;
	size_t nknown = 0, cap = 0;
	sqlite3_stmt *st;
	int rc = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT id FROM segments", -1, &st, NULL) != SQLITE_OK)
		return db_err(s, sqlite3_errcode(s->db), "recover");
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (nknown == cap) {
			cap = cap ? cap * 2 : 256;
			int64_t *nk = realloc(known, cap * sizeof(*nk));
			if (!nk) {
				rc = -ENOMEM;
				break;
			}
			known = nk;
		}
		known[nknown++] = sqlite3_column_int64(st, 0);
	}
	sqlite3_finalize(st);
	if (rc < 0) {
		free(known);
		return rc;
	}
	if (nknown)
		qsort(known, nknown, sizeof(*known), cmp_i64);
	DIR *d = opendir(s->dir);
	struct dirent *e;
	size_t adopted = 0;
	while (d && rc == 0 && (e = readdir(d))) {
		long long id;
		int n = 0;
		size_t len = strlen(e->d_name);
		if (sscanf(e->d_name, "segment-%lld-%*[0-9TZ]%n", &id, &n) < 1 || n <= 0 ||
		    len < 7 || strcmp(e->d_name + len - 7, ".pcapng") || id <= 0)
			continue;
		int64_t key = id;
		if (nknown && bsearch(&key, known, nknown, sizeof(*known), cmp_i64))
			continue;
		char path[PATH_MAX], sql[PATH_MAX + 256];
		snprintf(path, sizeof(path), "%s/%s", s->dir, e->d_name);
		uint64_t size = file_size(path);
		snprintf(sql, sizeof(sql), "INSERT INTO segments(id, session, file, bytes, state)"
			 " VALUES(%lld, -1, '%s', %" PRIu64 ", 'closed')", id, e->d_name, size);
		if (strchr(e->d_name, '\''))
			continue;
		if ((rc = exec(s, sql)) < 0 || (rc = live_push(s, id, size, e->d_name)) < 0)
			break;
		if (id >= s->next_seg_id)
			s->next_seg_id = id + 1;
		adopted++;
	}
	if (d)
		closedir(d);
	free(known);
	if (adopted) {
		/* keep the live list oldest first */
		note(s, "segments: %zu segment files were not in the index; kept for retention"
		     " but their packets cannot be exported", adopted);
	}
	return rc;
}

static int live_cmp(const void *a, const void *b)
{
	const struct live_seg *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

/* Closes segments a crashed writer left open, at their real size, and adopts
 * segment files the index lost. */
static int recover(struct seg_store *s)
{
	sqlite3_stmt *st;
	int rc = 0;
	for (size_t i = 0; i < s->nlive; i++)
		free(s->live[i].file);
	s->nlive = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT id, file, state FROM segments"
			       " WHERE state != 'deleted' ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return db_err(s, sqlite3_errcode(s->db), "recover");
	while (sqlite3_step(st) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		const char *file = (const char *)sqlite3_column_text(st, 1);
		const char *state = (const char *)sqlite3_column_text(st, 2);
		if (!file || strchr(file, '/'))
			continue;
		char path[PATH_MAX], sql[256];
		snprintf(path, sizeof(path), "%s/%s", s->dir, file);
		uint64_t size = file_size(path);
		if (state && !strcmp(state, "open")) {
			snprintf(sql, sizeof(sql), "UPDATE segments SET state='closed', bytes=%"
				 PRIu64 " WHERE id=%" PRId64, size, id);
			if ((rc = exec(s, sql)) < 0)
				break;
		}
		if ((rc = live_push(s, id, size, file)) < 0)
			break;
	}
	sqlite3_finalize(st);
	if (rc == 0)
		rc = adopt_orphans(s);
	if (s->nlive)
		qsort(s->live, s->nlive, sizeof(*s->live), live_cmp);
	return rc;
}

static int is_corrupt(struct seg_store *s)
{
	int e = s->db ? sqlite3_errcode(s->db) : SQLITE_OK;
	return e == SQLITE_CORRUPT || e == SQLITE_NOTADB || s->corrupt;
}

/* Pragmas, schema, session number, crash recovery and statements of a writer. */
static int init_writer(struct seg_store *s)
{
	int rc;
	s->corrupt = 0;
	/* quick_check reads every page once: a few ms per MB of index, paid only
	 * when a writer starts. */
	char *ok = NULL;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			ok = strdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	if (!ok || strcmp(ok, "ok")) {
		free(ok);
		s->corrupt = 1;
		return set_err(s, -EIO, "index fails its integrity check");
	}
	free(ok);
	/* No fsync: on ext4 (data=ordered) a sync of index.db also forces out
	 * the segment data written since the last one, which stalled the
	 * writer for ~5 ms per checkpoint and doubled the wall time of a
	 * replay.  A killed process loses nothing committed (the kernel has
	 * it); a power loss may lose recent index rows or damage index.db,
	 * which seg_open() detects and replaces (the segment files stay
	 * valid pcapng).  The WAL is kept small because it counts against
	 * max_bytes. */
	/* The WAL counts against max_bytes, so it is checkpointed at 1/256 of the cap
	 * (1-16 MiB): a checkpoint every MiB rewrote the same pages of the open
	 * segment's rows again and again (bench10: ~5 % of the run). */
	uint64_t wal_pages = s->cfg.max_bytes ? s->cfg.max_bytes / 256 / 4096 : 4096;
	wal_pages = wal_pages < 256 ? 256 : wal_pages > 4096 ? 4096 : wal_pages;
	char wal_sql[64];
	snprintf(wal_sql, sizeof(wal_sql), "PRAGMA wal_autocheckpoint=%" PRIu64, wal_pages);
	if ((rc = exec(s, "PRAGMA journal_mode=WAL")) < 0 ||
	    (rc = exec(s, "PRAGMA synchronous=OFF")) < 0 ||
	    (rc = exec(s, wal_sql)) < 0 ||
	    (rc = exec(s, "PRAGMA journal_size_limit=1048576")) < 0 ||
	    (rc = exec(s, "BEGIN IMMEDIATE")) < 0)
		return rc;
	if (query_int(s, "PRAGMA user_version", 0) == 1 &&
	    (rc = exec(s, "CREATE TABLE flow_packets_v2(flow_id INTEGER NOT NULL,"
		       " segment_id INTEGER NOT NULL, packets INTEGER NOT NULL, offs BLOB NOT NULL,"
		       " PRIMARY KEY(segment_id, flow_id)) WITHOUT ROWID;"
		       "INSERT INTO flow_packets_v2 SELECT flow_id, segment_id, packets, offs"
		       " FROM flow_packets ORDER BY segment_id, flow_id;"
		       "DROP TABLE flow_packets;"
		       "ALTER TABLE flow_packets_v2 RENAME TO flow_packets;")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	char ver_sql[40];
	snprintf(ver_sql, sizeof(ver_sql), "PRAGMA user_version=%d", SEG_SCHEMA_VERSION);
	if ((rc = exec(s, schema_sql)) < 0 || (rc = exec(s, ver_sql)) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->session = query_int(s, "SELECT value FROM meta WHERE key='next_session'", 1);
	char sql[128];
	snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO meta VALUES('next_session', %" PRId64 ")",
		 s->session + 1);
	if ((rc = exec(s, sql)) < 0 || (rc = exec(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->next_seg_id = query_int(s, "SELECT max(id) FROM segments", 0) + 1;
	if ((rc = recover(s)) < 0)
		return rc;
	/* Deferred only for an empty index: a later bulk load into a store that has
	 * rows keeps the index it has (rebuilding it would cost more than it saves). */
	if (s->cfg.defer_index && !query_int(s, "SELECT EXISTS(SELECT 1 FROM flow_packets)", 1)) {
		if ((rc = exec(s, "DROP INDEX IF EXISTS flow_packets_flow")) < 0)
			return rc;
		s->index_deferred = 1;
	} else if ((rc = exec(s, index_sql)) < 0) {
		return rc;
	}
	if ((rc = prepare(s, "INSERT INTO flow_packets(flow_id, segment_id, packets, offs)"
			  " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(segment_id, flow_id) DO UPDATE"
			  " SET packets=packets+excluded.packets, offs=offs||excluded.offs",
			  &s->st_upsert)) < 0 ||
	    (rc = prepare(s, "UPDATE segments SET last_us=?1, bytes=?2, packets=?3, state=?4"
			  " WHERE id=?5", &s->st_seg_update)) < 0)
		return rc;
	return 0;
}

int seg_open(const char *dir, const struct seg_config *cfg, struct seg_store **out,
	     char *errbuf, size_t errlen)
{
	struct seg_store *s = calloc(1, sizeof(*s));
	char path[PATH_MAX];
	int rc = 0;
	*out = NULL;
	if (!s) {
		if (errbuf && errlen)
			snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	if (cfg)
		s->cfg = *cfg;
	else
		seg_config_default(&s->cfg);
	if (!s->cfg.batch_packets)
		s->cfg.batch_packets = 65536;
	if (s->cfg.segment_bytes < SEG_MIN_SEGMENT)
		s->cfg.segment_bytes = SEG_MIN_SEGMENT;
	/* A segment bigger than a quarter of the cap would leave almost nothing
	 * but the open segment on disk. */
	if (s->cfg.max_bytes && s->cfg.segment_bytes > s->cfg.max_bytes / 4)
		s->cfg.segment_bytes = s->cfg.max_bytes / 4 > SEG_MIN_SEGMENT ?
			s->cfg.max_bytes / 4 : SEG_MIN_SEGMENT;
	if (!s->cfg.segment_age_us)
		s->cfg.segment_age_us = 5ull * 60 * 1000000;
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = set_err(s, -ENOMEM, "out of memory");
		goto fail;
	}
	if (!s->cfg.readonly && mkdir(dir, 0755) < 0 && errno != EEXIST) {
		rc = set_err(s, -errno, "packet store %s: %s", dir, strerror(errno));
		goto fail;
	}
	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (s->cfg.readonly && access(path, R_OK) < 0) {
		rc = set_err(s, -errno, "no packet store at %s (%s: %s)", dir, path, strerror(errno));
		goto fail;
	}
	int flags = s->cfg.readonly ? SQLITE_OPEN_READONLY :
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int r = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (r != SQLITE_OK) {
		rc = set_err(s, -EIO, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	int64_t ver = query_int(s, "PRAGMA user_version", -1);
	if (ver > SEG_SCHEMA_VERSION) {
		rc = set_err(s, -EPROTO, "%s: index schema %" PRId64 " is newer than this podcap (%d)",
			     path, ver, SEG_SCHEMA_VERSION);
		goto fail;
	}
	if (s->cfg.readonly) {
		if (ver < 1) { /* versions 1 and 2 differ only in key order: both readable */
			rc = set_err(s, -EPROTO, "%s: not a podcap packet index", path);
			goto fail;
		}
	} else {
		rc = init_writer(s);
		if (rc < 0 && is_corrupt(s)) {
			/* A damaged index (power loss without fsync, or a stray file) must
			 * not stop capture: keep it aside for inspection, start a new one,
			 * and adopt the segment files so retention still accounts them. */
			char aside[PATH_MAX + 64];
			snprintf(aside, sizeof(aside), "%s.damaged-%ld", path, (long)time(NULL));
			sqlite3_close(s->db);
			s->db = NULL;
			if (rename(path, aside) < 0) {
				rc = set_err(s, -errno, "%s is damaged and cannot be moved aside: %s",
					     path, strerror(errno));
				goto fail;
			}
			char side[PATH_MAX + 8];
			snprintf(side, sizeof(side), "%s-wal", path);
			unlink(side);
			snprintf(side, sizeof(side), "%s-shm", path);
			unlink(side);
			note(s, "segments: %s was damaged; moved to %s and started a new index"
			     " (packets stored so far are no longer indexed)", path, aside);
			s->errmsg[0] = 0;
			r = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
			if (r != SQLITE_OK) {
				rc = set_err(s, -EIO, "%s: %s", path,
					     s->db ? sqlite3_errmsg(s->db) : "cannot open");
				goto fail;
			}
			sqlite3_busy_timeout(s->db, 5000);
			rc = init_writer(s);
		}
		if (rc < 0)
			goto fail;
		if ((rc = flows_grow(s)) < 0) {
			set_err(s, rc, "out of memory");
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", s->errmsg[0] ? s->errmsg : strerror(-rc));
	s->cfg.readonly = 1; /* nothing to commit */
	seg_close(s);
	return rc;
}

int seg_close(struct seg_store *s)
{
	if (!s)
		return 0;
	int rc = 0;
	if (!s->cfg.readonly && s->w)
		rc = close_segment(s);
	if (s->db) {
		int rc2 = seg_build_index(s);
		if (rc == 0)
			rc = rc2;
	}
	sqlite3_finalize(s->st_upsert);
	sqlite3_finalize(s->st_seg_update);
	if (s->db)
		sqlite3_close(s->db);
	for (uint32_t i = 0; i < s->nif; i++) {
		free(s->ifaces[i].name);
		free(s->ifaces[i].pod);
	}
	free(s->ifaces);
	for (uint32_t i = 0; i < s->flow_cap; i++)
		free(s->flows[i].pend);
	free(s->flows);
	free(s->dirty);
	for (size_t i = 0; i < s->nlive; i++)
		free(s->live[i].file);
	free(s->live);
	free(s->seg_file);
	free(s->dir);
	free(s);
	return rc;
}

/* ---- write API -------------------------------------------------------------- */

int seg_add_interface(struct seg_store *s, uint32_t obs_id, int linktype,
		      const char *name, const char *pod)
{
	if (s->cfg.readonly)
		return set_err(s, -EROFS, "packet store opened read-only");
	for (uint32_t i = 0; i < s->nif; i++)
		if (s->ifaces[i].obs_id == obs_id)
			return s->ifaces[i].linktype == linktype ? 0 :
				set_err(s, -EEXIST, "observation point %u: link type %d, was %d",
					obs_id, linktype, s->ifaces[i].linktype);
	if (s->nif >= SEG_MAX_IFACES || linktype < 0 || linktype > 0xffff)
		return set_err(s, -EINVAL, "too many observation points or bad link type");
	struct seg_iface *ni = realloc(s->ifaces, (s->nif + 1) * sizeof(*ni));
	if (!ni)
		return set_err(s, -ENOMEM, "out of memory");
	s->ifaces = ni;
	struct seg_iface *f = &ni[s->nif];
	f->obs_id = obs_id;
	f->linktype = linktype;
	f->name = strdup(name ? name : "");
	f->pod = pod && *pod ? strdup(pod) : NULL;
	if (!f->name || (pod && *pod && !f->pod)) {
		free(f->name);
		free(f->pod);
		return set_err(s, -ENOMEM, "out of memory");
	}
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(s->db, "INSERT OR REPLACE INTO interfaces(session, idx, obs_id,"
				   " linktype, snaplen, name, pod) VALUES(?,?,?,?,?,?,?)", -1, &st, NULL);
	if (r == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, s->session);
		sqlite3_bind_int64(st, 2, s->nif);
		sqlite3_bind_int64(st, 3, obs_id);
		sqlite3_bind_int(st, 4, linktype);
		sqlite3_bind_int64(st, 5, s->cfg.snaplen);
		sqlite3_bind_text(st, 6, f->name, -1, SQLITE_STATIC);
		if (f->pod)
			sqlite3_bind_text(st, 7, f->pod, -1, SQLITE_STATIC);
		r = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	if (r != SQLITE_DONE) {
		int rc = db_err(s, r, "interface");
		free(f->name);
		free(f->pod);
		return rc;
	}
	s->nif++;
	/* Interfaces declared mid-segment get their IDB there too, in the same
	 * order, so a segment's interface ids are always the session's. */
	if (s->w) {
		uint32_t if_id;
		int rc = pn_add_interface(s->w, linktype, s->cfg.snaplen, f->name, f->pod, &if_id);
		if (rc < 0)
			return write_failed(s, rc, s->seg_last_us);
	}
	return 0;
}

static inline int iface_index(struct seg_store *s, uint32_t obs_id, uint32_t *idx)
{
	static __thread uint32_t last; /* observation points repeat in runs */
	if (last < s->nif && s->ifaces[last].obs_id == obs_id) {
		*idx = last;
		return 0;
	}
	for (uint32_t i = 0; i < s->nif; i++)
		if (s->ifaces[i].obs_id == obs_id) {
			*idx = last = i;
			return 0;
		}
	return -ENOENT;
}

/* The open segment spans segment_age_us at time ts (written without overflow:
 * capture timestamps can sit anywhere in the 64-bit range). */
static inline int aged(const struct seg_store *s, uint64_t ts)
{
	return ts >= s->seg_first_us && ts - s->seg_first_us >= s->cfg.segment_age_us;
}

int seg_put(struct seg_store *s, uint32_t obs_id, uint64_t flow_id, uint32_t pkt_no,
	    uint64_t ts_us, const uint8_t *data, uint32_t caplen, uint32_t wirelen)
{
	uint32_t idx;
	int rc;
	if (s->cfg.readonly)
		return -EROFS;
	if (iface_index(s, obs_id, &idx) < 0)
		return set_err(s, -ENOENT, "observation point %u not declared", obs_id);
	if (s->cfg.flow_packets && pkt_no >= s->cfg.flow_packets) {
		s->stats.skipped_limit++;
		return 0;
	}
	if (s->disk_err) {
		if (ts_us < s->retry_at_us) {
			s->stats.write_errors++;
			return s->disk_err;
		}
		s->disk_err = 0;
	}
	if (caplen > PN_PACKET_MAX)
		caplen = PN_PACKET_MAX;
	if (s->cfg.snaplen && caplen > s->cfg.snaplen)
		caplen = s->cfg.snaplen;
	if (s->w) {
		uint64_t blk = PN_EPB_HDR_LEN + caplen + 8;
		if ((s->seg_packets && pn_offset(s->w) + blk > s->cfg.segment_bytes) ||
		    aged(s, ts_us)) {
			if ((rc = close_segment(s)) < 0) {
				s->disk_err = rc;
				s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
				s->stats.write_errors++;
				return rc;
			}
		}
	}
	if (!s->w && (rc = open_segment(s, ts_us)) < 0) {
		s->disk_err = rc;
		s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
		s->stats.write_errors++;
		return rc;
	}
	struct flow_ent *e = flow_get(s, flow_id);
	if (!e)
		return set_err(s, -ENOMEM, "out of memory");
	/* Room for the index entry first: a packet must not be written unindexed. */
	if (e->pend_len + SEG_VARINT_MAX > e->pend_cap) {
		uint32_t ncap = e->pend_cap ? e->pend_cap * 2 : 16;
		uint8_t *np = realloc(e->pend, ncap);
		if (!np)
			return set_err(s, -ENOMEM, "out of memory");
		e->pend = np;
		e->pend_cap = ncap;
	}
	uint64_t off;
	rc = pn_write_packet_us(s->w, idx, ts_us, data, caplen, wirelen, NULL, &off);
	if (rc < 0)
		return write_failed(s, rc, ts_us);
	int first = !e->seen && !e->pend_pkts;
	e->pend_len += (uint32_t)varint_put(e->pend + e->pend_len, first ? off : off - e->last_off);
	e->last_off = off;
	if (!e->pend_pkts++)
		s->dirty[s->ndirty++] = (uint32_t)(e - s->flows);
	if (ts_us > s->seg_last_us)
		s->seg_last_us = ts_us;
	s->seg_packets++;
	s->stats.packets++;
	s->stats.bytes += PN_EPB_HDR_LEN + caplen;
	if (++s->pending_pkts >= s->cfg.batch_packets) {
		if ((rc = pn_flush(s->w)) < 0)
			return write_failed(s, rc, ts_us);
		if ((rc = commit_index(s)) < 0) {
			s->stats.write_errors++;
			return rc;
		}
	}
	return 1;
}

int seg_flush(struct seg_store *s)
{
	if (s->cfg.readonly || !s->w)
		return 0;
	int rc = pn_flush(s->w);
	if (rc < 0)
		return write_failed(s, rc, s->seg_last_us);
	return commit_index(s);
}

int seg_tick(struct seg_store *s, uint64_t now_us)
{
	if (s->cfg.readonly || !s->w)
		return 0;
	if (aged(s, now_us))
		return close_segment(s);
	return seg_flush(s);
}

void seg_stats(const struct seg_store *s, struct seg_stats *out)
{
	*out = s->stats;
}

/* ---- read side -------------------------------------------------------------- */

const char *seg_flow_state_name(int state)
{
	switch (state) {
	case SEG_FLOW_NONE: return "none";
	case SEG_FLOW_STORED: return "stored";
	case SEG_FLOW_PARTIAL: return "partial";
	case SEG_FLOW_EXPIRED: return "expired";
	}
	return "?";
}

static int flow_state(struct seg_store *s, uint64_t flow_id, uint64_t *expired_pkts)
{
	sqlite3_stmt *st;
	int live = 0, exp = 0;
	*expired_pkts = 0;
	char sql[128];
	snprintf(sql, sizeof(sql), "SELECT 1 FROM %s WHERE flow_id=?1 LIMIT 1",
		 s->rows ? s->rows : "flow_packets");
	int r = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "flow state");
	sqlite3_bind_int64(st, 1, (int64_t)flow_id);
	live = sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	r = sqlite3_prepare_v2(s->db, "SELECT packets FROM expired WHERE flow_id=?1", -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "flow state");
	sqlite3_bind_int64(st, 1, (int64_t)flow_id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		exp = 1;
		int64_t n = sqlite3_column_int64(st, 0);
		*expired_pkts = n > 0 ? (uint64_t)n : 0;
	}
	sqlite3_finalize(st);
	return live && exp ? SEG_FLOW_PARTIAL : live ? SEG_FLOW_STORED :
	       exp ? SEG_FLOW_EXPIRED : SEG_FLOW_NONE;
}

int seg_max_flow_id(struct seg_store *s, uint64_t *out)
{
	sqlite3_stmt *st;
	*out = 0;
	int r = sqlite3_prepare_v2(s->db, "SELECT max(coalesce((SELECT max(flow_id) FROM flow_packets), 0),"
				   " coalesce((SELECT max(flow_id) FROM expired), 0))", -1, &st, NULL);
	if (r != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return 0;
}

int seg_flow_state(struct seg_store *s, uint64_t flow_id)
{
	uint64_t n;
	return flow_state(s, flow_id, &n);
}

struct x_iface {
	int64_t session;
	int64_t idx;
	uint32_t obs_id;
	int linktype;
	uint32_t snaplen;
	char *name, *pod;
	int used;
	int64_t out_id;       /* -1 until declared in the output */
};

struct x_seg {
	int64_t id, session;
	char *file;
	int fd;                /* -1 not opened yet, -2 unusable */
	uint64_t size;
};

struct x_pkt {
	uint64_t ts;
	uint64_t off;
	uint32_t seg;          /* index into x_seg array */
	uint32_t flow;         /* index into the caller's flows */
	uint32_t iface;        /* index into x_iface array */
	uint32_t blen;         /* block total length */
};

struct x_ctx {
	struct x_iface *ifs;
	size_t nifs;
	struct x_seg *segs;
	size_t nsegs, segcap;
	struct x_pkt *pkts;
	size_t npkts, pktcap;
};

static void x_free(struct x_ctx *x)
{
	for (size_t i = 0; i < x->nifs; i++) {
		free(x->ifs[i].name);
		free(x->ifs[i].pod);
	}
	free(x->ifs);
	for (size_t i = 0; i < x->nsegs; i++) {
		if (x->segs[i].fd >= 0)
			close(x->segs[i].fd);
		free(x->segs[i].file);
	}
	free(x->segs);
	free(x->pkts);
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	return t ? strdup(t) : NULL;
}

static int load_ifaces(struct seg_store *s, struct x_ctx *x)
{
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(s->db, "SELECT session, idx, obs_id, linktype, snaplen, name, pod"
				   " FROM interfaces ORDER BY session, idx", -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "interfaces");
	int rc = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct x_iface *ni = realloc(x->ifs, (x->nifs + 1) * sizeof(*ni));
		if (!ni) {
			rc = -ENOMEM;
			break;
		}
		x->ifs = ni;
		struct x_iface *f = &ni[x->nifs++];
		memset(f, 0, sizeof(*f));
		f->session = sqlite3_column_int64(st, 0);
		f->idx = sqlite3_column_int64(st, 1);
		f->obs_id = (uint32_t)sqlite3_column_int64(st, 2);
		f->linktype = sqlite3_column_int(st, 3);
		int64_t sl = sqlite3_column_int64(st, 4);
		f->snaplen = sl > 0 && sl <= PN_PACKET_MAX ? (uint32_t)sl : 0;
		f->name = dup_col(st, 5);
		f->pod = dup_col(st, 6);
		f->out_id = -1;
	}
	if (r != SQLITE_DONE && rc == 0)
		rc = db_err(s, r, "interfaces");
	sqlite3_finalize(st);
	return rc;
}

static int find_iface(struct x_ctx *x, int64_t session, uint32_t idx, uint32_t *out)
{
	for (size_t i = 0; i < x->nifs; i++)
		if (x->ifs[i].session == session && x->ifs[i].idx == idx) {
			*out = (uint32_t)i;
			return 0;
		}
	return -1;
}

static int seg_ref(struct x_ctx *x, int64_t id, int64_t session, const char *file, uint32_t *out)
{
	for (size_t i = 0; i < x->nsegs; i++)
		if (x->segs[i].id == id) {
			*out = (uint32_t)i;
			return 0;
		}
	if (x->nsegs == x->segcap) {
		size_t ncap = x->segcap ? x->segcap * 2 : 16;
		struct x_seg *ns = realloc(x->segs, ncap * sizeof(*ns));
		if (!ns)
			return -ENOMEM;
		x->segs = ns;
		x->segcap = ncap;
	}
	struct x_seg *g = &x->segs[x->nsegs];
	g->id = id;
	g->session = session;
	g->fd = -1;
	g->size = 0;
	g->file = strdup(file ? file : "");
	if (!g->file)
		return -ENOMEM;
	*out = (uint32_t)x->nsegs++;
	return 0;
}

/* Opens a segment file for reading and checks it starts with one of our SHBs. */
static int seg_fd(struct seg_store *s, struct x_seg *g)
{
	if (g->fd != -1)
		return g->fd;
	g->fd = -2;
	if (!*g->file || strchr(g->file, '/')) {
		note(s, "segment %" PRId64 ": bad file name in the index", g->id);
		return -2;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", s->dir, g->file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		note(s, "segment %s: %s (packets in it are missing)", path, strerror(errno));
		return -2;
	}
	struct stat stt;
	uint8_t hdr[12];
	uint32_t type, magic;
	if (fstat(fd, &stt) < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		note(s, "segment %s: unreadable or empty (packets in it are missing)", path);
		close(fd);
		return -2;
	}
	memcpy(&type, hdr, 4);
	memcpy(&magic, hdr + 8, 4);
	if (type != PN_BT_SHB || magic != PN_BYTE_ORDER_MAGIC) {
		note(s, "segment %s: not a pcapng file of this host's byte order", path);
		close(fd);
		return -2;
	}
	g->fd = fd;
	g->size = (uint64_t)stt.st_size;
	return fd;
}

static int add_pkt(struct x_ctx *x, const struct x_pkt *p)
{
	if (x->npkts == x->pktcap) {
		size_t ncap = x->pktcap ? x->pktcap * 2 : 1024;
		struct x_pkt *np = realloc(x->pkts, ncap * sizeof(*np));
		if (!np)
			return -ENOMEM;
		x->pkts = np;
		x->pktcap = ncap;
	}
	x->pkts[x->npkts++] = *p;
	return 0;
}

/* Validates the EPB at off in segment g; fills ts, iface and blen of p.
 * Returns 0, 1 = missing (past the end of the file), 2 = corrupt. */
static int check_epb(struct seg_store *s, struct x_ctx *x, struct x_seg *g, struct x_pkt *p)
{
	uint8_t h[PN_EPB_HDR_LEN];
	uint32_t type, blen, if_id, hi, lo, caplen;
	if (p->off > g->size || g->size - p->off < PN_EPB_HDR_LEN)
		return 1;
	if (pread(g->fd, h, sizeof(h), (off_t)p->off) != (ssize_t)sizeof(h))
		return 1;
	memcpy(&type, h, 4);
	memcpy(&blen, h + 4, 4);
	memcpy(&if_id, h + 8, 4);
	memcpy(&hi, h + 12, 4);
	memcpy(&lo, h + 16, 4);
	memcpy(&caplen, h + 20, 4);
	/* Our blocks carry no options; allow some anyway, but never a length that
	 * would make pass 2 allocate more than a packet's worth. */
	if (type != PN_BT_EPB || blen % 4 || blen < PN_EPB_HDR_LEN + 4 ||
	    blen > PN_EPB_HDR_LEN + PN_PACKET_MAX + 65536 ||
	    caplen > PN_PACKET_MAX || caplen > blen - PN_EPB_HDR_LEN - 4)
		return 2;
	if (blen > g->size - p->off)
		return 1;
	if (find_iface(x, g->session, if_id, &p->iface) < 0)
		return 2;
	p->ts = (uint64_t)hi << 32 | lo;
	p->blen = blen;
	return 0;
}

/* Pass 1 for one flow: its index rows → validated packet list entries. */
static int collect_flow(struct seg_store *s, struct x_ctx *x, struct seg_flow *f, uint32_t fi)
{
	sqlite3_stmt *st;
	char sql[256];
	snprintf(sql, sizeof(sql),
		 "SELECT p.segment_id, p.packets, p.offs, g.session, g.file, g.state"
		 " FROM %s p LEFT JOIN segments g ON g.id = p.segment_id"
		 " WHERE p.flow_id = ?1 ORDER BY p.segment_id", s->rows ? s->rows : "flow_packets");
	int r = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "export");
	sqlite3_bind_int64(st, 1, (int64_t)f->id);
	int rc = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t seg_id = sqlite3_column_int64(st, 0);
		int64_t npk = sqlite3_column_int64(st, 1);
		const uint8_t *blob = sqlite3_column_blob(st, 2);
		size_t blen = (size_t)sqlite3_column_bytes(st, 2);
		const char *file = (const char *)sqlite3_column_text(st, 4);
		const char *state = (const char *)sqlite3_column_text(st, 5);
		uint64_t missing = 0, corrupt = 0, bad_off = 0;
		uint32_t gi;
		if (npk < 0)
			npk = 0;
		if (!file || (state && !strcmp(state, "deleted"))) {
			f->missing += (uint64_t)npk;
			note(s, "flow %" PRIu64 ": segment %" PRId64 " is gone: %" PRId64
			     " packets missing", f->id, seg_id, npk);
			continue;
		}
		if ((rc = seg_ref(x, seg_id, sqlite3_column_int64(st, 3), file, &gi)) < 0)
			break;
		struct x_seg *g = &x->segs[gi];
		if (seg_fd(s, g) < 0) {
			f->missing += (uint64_t)npk;
			continue;
		}
		size_t pos = 0;
		uint64_t off = 0, d, got = 0;
		while (pos < blen) {
			if (varint_get(blob, blen, &pos, &d) < 0) {
				corrupt++;
				break;
			}
			if (got && d == 0) { /* offsets strictly increase */
				corrupt++;
				continue;
			}
			if (d > UINT64_MAX - off) {
				corrupt++;
				break;
			}
			off = got ? off + d : d;
			got++;
			struct x_pkt p = {.off = off, .seg = gi, .flow = fi};
			int c = check_epb(s, x, g, &p);
			if (c == 1) {
				missing++;
			} else if (c == 2) {
				if (!corrupt++)
					bad_off = off;
			} else if ((rc = add_pkt(x, &p)) < 0) {
				break;
			}
		}
		if (rc < 0)
			break;
		/* A row that decodes to fewer offsets than it claims packets lost the
		 * rest of its blob. */
		if (got < (uint64_t)npk)
		{
			/* A segment cannot hold more blocks than size / 32 bytes: a
			 * count above that is itself damaged, not a real loss. */
			uint64_t lost = (uint64_t)npk - got, most = g->size / 32 + 1;
			corrupt += lost < most ? lost : most;
		}
		if (missing)
			note(s, "flow %" PRIu64 ": segment %s is cut short: %" PRIu64
			     " packets missing", f->id, g->file, missing);
		if (corrupt)
			note(s, "flow %" PRIu64 ": segment %s: %" PRIu64 " bad index entries skipped"
			     " (first bad offset %" PRIu64 ")", f->id, g->file, corrupt, bad_off);
		f->missing += missing;
		f->corrupt += corrupt;
	}
	if (r != SQLITE_DONE && rc == 0)
		rc = db_err(s, r, "export");
	sqlite3_finalize(st);
	return rc;
}

static int pkt_cmp(const void *a, const void *b)
{
	const struct x_pkt *p = a, *q = b;
	if (p->ts != q->ts)
		return p->ts < q->ts ? -1 : 1;
	if (p->seg != q->seg)
		return p->seg < q->seg ? -1 : 1;
	if (p->off != q->off)
		return p->off < q->off ? -1 : 1;
	return (p->flow > q->flow) - (p->flow < q->flow);
}

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Declares each interface used by the export once in w. */
static int declare_ifaces(struct seg_store *s, struct x_ctx *x, struct pn_writer *w)
{
	int linktype = -1;
	for (size_t i = 0; i < x->nifs && linktype == -1; i++)
		if (x->ifs[i].used)
			linktype = x->ifs[i].linktype;
	for (size_t i = 0; i < x->nifs; i++) {
		struct x_iface *f = &x->ifs[i];
		if (!f->used)
			continue;
		for (size_t j = 0; j < i; j++) {
			struct x_iface *o = &x->ifs[j];
			if (o->used && o->out_id >= 0 && o->obs_id == f->obs_id &&
			    o->linktype == f->linktype && same_str(o->name, f->name) &&
			    same_str(o->pod, f->pod)) {
				f->out_id = o->out_id;
				break;
			}
		}
		if (f->out_id >= 0)
			continue;
		uint32_t id;
		int rc = pn_add_interface(w, f->linktype, f->snaplen, f->name, f->pod, &id);
		if (rc == -EPROTOTYPE)
			return set_err(s, rc, "flows of different link types (%d and %d) cannot share"
				       " a pcap file; use pcapng", linktype, f->linktype);
		if (rc < 0)
			return set_err(s, rc, "output: %s", pn_errmsg(w)[0] ? pn_errmsg(w) : strerror(-rc));
		f->out_id = id;
	}
	return 0;
}

/* 1 when rows can be found by flow without scanning the table: the by-flow
 * index exists, or the schema-1 key starts with the flow. */
static int by_flow_indexed(struct seg_store *s)
{
	if (!s->cfg.readonly)
		return !s->index_deferred;
	return query_int(s, "PRAGMA user_version", 2) < 2 ||
	       query_int(s, "SELECT count(*) FROM sqlite_master WHERE type='index'"
			 " AND name='flow_packets_flow'", 1) > 0;
}

/* Without the by-flow index (a bulk load still writing, or killed before its
 * build) every per-flow lookup would scan the whole index: exporting 10k flows
 * of bench10 took 28 s instead of 0.5 s.  One scan copies the rows of the
 * wanted flows into an indexed TEMP table instead (allowed read-only too). */
static int stage_rows(struct seg_store *s, const struct seg_flow *flows, size_t n)
{
	sqlite3_stmt *st = NULL;
	int rc;
	if ((rc = exec(s, "DROP TABLE IF EXISTS temp.x_want; DROP TABLE IF EXISTS temp.x_rows;"
			  "CREATE TEMP TABLE x_want(id INTEGER PRIMARY KEY)")) < 0)
		return rc;
	int r = sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO temp.x_want VALUES(?1)", -1, &st, NULL);
	if (r != SQLITE_OK)
		return db_err(s, r, "export");
	for (size_t i = 0; i < n && rc == 0; i++) {
		sqlite3_reset(st);
		sqlite3_bind_int64(st, 1, (int64_t)flows[i].id);
		if ((r = sqlite3_step(st)) != SQLITE_DONE)
			rc = db_err(s, r, "export");
	}
	sqlite3_finalize(st);
	if (rc == 0 &&
	    (rc = exec(s, "CREATE TEMP TABLE x_rows AS SELECT flow_id, segment_id, packets, offs"
		       " FROM main.flow_packets WHERE flow_id IN (SELECT id FROM temp.x_want);"
		       "CREATE INDEX temp.x_rows_flow ON x_rows(flow_id, segment_id)")) == 0)
		s->rows = "temp.x_rows";
	return rc;
}

static void unstage_rows(struct seg_store *s)
{
	s->rows = NULL;
	sqlite3_exec(s->db, "DROP TABLE IF EXISTS temp.x_want; DROP TABLE IF EXISTS temp.x_rows",
		     NULL, NULL, NULL);
}

int seg_export(struct seg_store *s, struct seg_flow *flows, size_t n, struct pn_writer *w)
{
	struct x_ctx x = {0};
	uint8_t *blk = NULL;
	int rc = 0, staged = 0;
	if (!s->cfg.readonly && (rc = seg_flush(s)) < 0)
		return rc;
	if (n > 1 && !by_flow_indexed(s)) {
		if ((rc = stage_rows(s, flows, n)) < 0)
			goto out;
		staged = 1;
	}
	if ((rc = load_ifaces(s, &x)) < 0)
		goto out;
	for (size_t i = 0; i < n; i++) {
		struct seg_flow *f = &flows[i];
		uint64_t expired;
		f->packets = f->missing = f->corrupt = 0;
		rc = flow_state(s, f->id, &expired);
		if (rc < 0)
			goto out;
		f->state = rc;
		rc = 0;
		if (expired) {
			f->missing += expired;
			/* A wholly expired flow is the caller's to report; a partial
			 * one needs saying here, or the gap goes unnoticed. */
			if (f->state == SEG_FLOW_PARTIAL)
				note(s, "flow %" PRIu64 ": %" PRIu64 " packets expired (segments deleted"
				     " by retention)", f->id, expired);
		}
		if (f->state == SEG_FLOW_STORED || f->state == SEG_FLOW_PARTIAL)
			if ((rc = collect_flow(s, &x, f, (uint32_t)i)) < 0)
				goto out;
	}
	for (size_t i = 0; i < x.npkts; i++)
		x.ifs[x.pkts[i].iface].used = 1;
	if ((rc = declare_ifaces(s, &x, w)) < 0)
		goto out;
	if (x.npkts)
		qsort(x.pkts, x.npkts, sizeof(*x.pkts), pkt_cmp);
	size_t blkcap = 0;
	for (size_t i = 0; i < x.npkts; i++) {
		struct x_pkt *p = &x.pkts[i];
		struct x_seg *g = &x.segs[p->seg];
		struct seg_flow *f = &flows[p->flow];
		if (p->blen > blkcap) {
			uint8_t *nb = realloc(blk, p->blen);
			if (!nb) {
				rc = set_err(s, -ENOMEM, "out of memory");
				goto out;
			}
			blk = nb;
			blkcap = p->blen;
		}
		uint32_t tail, caplen, wirelen;
		/* Re-read and re-check: the file may have changed since pass 1. */
		if (pread(g->fd, blk, p->blen, (off_t)p->off) != (ssize_t)p->blen) {
			f->missing++;
			continue;
		}
		memcpy(&tail, blk + p->blen - 4, 4);
		memcpy(&caplen, blk + 20, 4);
		memcpy(&wirelen, blk + 24, 4);
		if (tail != p->blen || caplen > p->blen - PN_EPB_HDR_LEN - 4) {
			if (!f->corrupt++)
				note(s, "flow %" PRIu64 ": segment %s: bad block at offset %" PRIu64
				     " skipped", f->id, g->file, p->off);
			continue;
		}
		rc = pn_write_packet_us(w, (uint32_t)x.ifs[p->iface].out_id, p->ts,
					blk + PN_EPB_HDR_LEN, caplen, wirelen, f->comment, NULL);
		if (rc < 0) {
			set_err(s, rc, "output: %s", pn_errmsg(w)[0] ? pn_errmsg(w) : strerror(-rc));
			goto out;
		}
		f->packets++;
	}
	rc = pn_flush(w);
	if (rc < 0)
		set_err(s, rc, "output: %s", pn_errmsg(w));
out:
	if (staged)
		unstage_rows(s);
	free(blk);
	x_free(&x);
	return rc;
}
