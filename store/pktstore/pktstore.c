/* pktstore — rolling pcapng packet segments with a per-flow index in SQLite.
 * See pktstore.h for the contract; this comment explains the moving parts.
 *
 * Write path (one thread): pks_put() hands the packet to the open segment's
 * pn_writer (a 1 MiB buffer, so the disk sees large sequential writes) and appends
 * the varint delta of its block offset to the flow's pending bytes in an in-memory
 * hash of the flows seen in this segment.  Every batch_packets packets the writer is
 * flushed and, in one transaction, each flow with pending bytes gets its
 * (flow, segment) row created or extended (blob concatenation).  A flow's deltas in
 * one segment form a single chain across batches because the hash keeps the last
 * offset of each flow until the segment is closed.
 *
 * Read path: export.c.  Nothing read from the index or the segment files is
 * trusted there either.
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

#include <sys/statvfs.h>

#include "fsio.h"
#include "pcapng.h"
#include "pktstore_int.h"

static const char schema_sql[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value) WITHOUT ROWID;"
	/* state: 'open' (being written), 'closed', 'deleted' (file removed by retention) */
	"CREATE TABLE IF NOT EXISTS segments(id INTEGER PRIMARY KEY, session INTEGER NOT NULL,"
	" file TEXT NOT NULL, first_us INTEGER, last_us INTEGER, bytes INTEGER NOT NULL DEFAULT 0,"
	" packets INTEGER NOT NULL DEFAULT 0, state TEXT NOT NULL, crc BLOB);"
	/* idx is the pcapng interface id inside every segment of that session */
	"CREATE TABLE IF NOT EXISTS interfaces(session INTEGER NOT NULL, idx INTEGER NOT NULL,"
	" obs_id INTEGER NOT NULL, linktype INTEGER NOT NULL, snaplen INTEGER NOT NULL,"
	" name TEXT, pod TEXT, PRIMARY KEY(session, idx)) WITHOUT ROWID;"
	/* offs: LEB128 varints, first = offset, then deltas to the previous offset */
	"CREATE TABLE IF NOT EXISTS flow_packets(flow_id INTEGER NOT NULL, segment_id INTEGER NOT NULL,"
	" packets INTEGER NOT NULL, offs BLOB NOT NULL, PRIMARY KEY(segment_id, flow_id)) WITHOUT ROWID;"
	/* flows that lost packets to retention: how many and the last segment involved */
	"CREATE TABLE IF NOT EXISTS expired(flow_id INTEGER PRIMARY KEY, packets INTEGER NOT NULL,"
	" segment_id INTEGER NOT NULL);"
	/* flows that lost packets to write errors (a full disk): how many */
	"CREATE TABLE IF NOT EXISTS lost(flow_id INTEGER PRIMARY KEY, packets INTEGER NOT NULL);";

/* Rows by flow, for export and retention.  A bulk load (pks_config.defer_index)
 * builds it once at the end: kept up row by row it was a third of the index's
 * cost (bench10: 0.03 of 0.09 CPU-s).  Without it every query still works, by
 * scanning; the next read-write open that is not a bulk load, retention, and
 * pks_build_index() create it. */
static const char index_sql[] = "CREATE INDEX IF NOT EXISTS flow_packets_flow ON flow_packets(flow_id)";

void pks_config_default(struct pks_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->segment_bytes = 64ull << 20;
	cfg->segment_age_us = 5ull * 60 * 1000000;
	cfg->max_bytes = 2ull << 30;
	cfg->batch_packets = 65536;
	cfg->retry_us = 1000000;
}

int pks__set_err(struct pks *s, int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
	va_end(ap);
	return err;
}

void pks__note(struct pks *s, const char *fmt, ...)
{
	s->stats.warnings++;
	if (!s->cfg.log)
		return;
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->cfg.log(s->cfg.log_arg, msg);
}

const char *pks_errmsg(const struct pks *s) { return s->errmsg; }

int pks__db_err(struct pks *s, int rc, const char *what)
{
	int e = rc == SQLITE_FULL ? -ENOSPC : rc == SQLITE_READONLY ? -EROFS :
		rc == SQLITE_BUSY ? -EBUSY : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
	return pks__set_err(s, e, "index %s: %s", what, sqlite3_errmsg(s->db));
}

int pks__exec(struct pks *s, const char *sql)
{
	int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
	return rc == SQLITE_OK ? 0 : pks__db_err(s, rc, sql);
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
int pks__varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *out)
{
	uint64_t v = 0;
	for (unsigned shift = 0, i = 0; i < PKS_VARINT_MAX; i++, shift += 7) {
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

static void flows_clear(struct pks *s)
{
	for (uint32_t i = 0; i < s->flow_cap; i++)
		free(s->flows[i].pend);
	memset(s->flows, 0, sizeof(*s->flows) * s->flow_cap);
	s->flow_count = 0;
	s->ndirty = 0;
	s->pending_pkts = 0;
}

static int flows_grow(struct pks *s)
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

static struct flow_ent *flow_get(struct pks *s, uint64_t flow_id)
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
	while (pos < e->pend_len && pks__varint_get(e->pend, e->pend_len, &pos, &d) == 0) {
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
/* Writes the lost marks of flows whose packets the disk refused (one transaction).
 * A commit of the open segment's rows writes them too; this is for when no
 * segment is open (the disk refused to start one).  They stay in memory until a
 * commit succeeds. */
static int write_lost(struct pks *s)
{
	int rc = 0;
	if (!s->lost_n || s->cfg.readonly)
		return 0;
	if ((rc = pks__exec(s, "BEGIN")) < 0)
		return rc;
	for (uint32_t i = 0; i < s->lost_n && rc == 0; i++) {
		sqlite3_stmt *lq = s->st_lost;
		sqlite3_reset(lq);
		sqlite3_bind_int64(lq, 1, (int64_t)s->lost[i].flow_id);
		sqlite3_bind_int64(lq, 2, (int64_t)s->lost[i].packets);
		int r = sqlite3_step(lq);
		if (r != SQLITE_DONE)
			rc = pks__db_err(s, r, "lost");
	}
	if (rc == 0 && (rc = pks__exec(s, "COMMIT")) == 0)
		s->lost_n = 0;
	if (rc < 0)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* Remembers that flow_id lost a packet to a write error, until the next commit.
 * Bounded: beyond a million distinct flows between two commits the mark is
 * dropped, counted in lost_dropped (the write_errors counter still counts). */
static void mark_lost(struct pks *s, uint64_t flow_id)
{
	if (s->lost_n && s->lost[s->lost_n - 1].flow_id == flow_id) {
		s->lost[s->lost_n - 1].packets++;
		return;
	}
	if (s->lost_n == s->lost_cap) {
		uint32_t ncap = s->lost_cap ? 2 * s->lost_cap : 256;
		struct lost_ent *nl = ncap <= (1u << 20) ? realloc(s->lost, ncap * sizeof(*nl)) : NULL;
		if (!nl) {
			s->lost_dropped++;
			return;
		}
		s->lost = nl;
		s->lost_cap = ncap;
	}
	s->lost[s->lost_n++] = (struct lost_ent){flow_id, 1};
}

static int commit_index(struct pks *s)
{
	int rc = 0;
	if (!s->w)
		return write_lost(s);
	uint64_t t0 = cpu_us();
	uint64_t limit = pn_written(s->w);
	int tx = 0;
	if ((rc = pks__exec(s, "BEGIN")) < 0)
		goto out;
	tx = 1;
	for (uint32_t i = 0; i < s->ndirty; i++) {
		struct flow_ent *e = &s->flows[s->dirty[i]];
		if (!e->pend_pkts)
			continue;
		uint32_t cut = trim_pending(e, limit);
		if (cut) { /* written past what reached the file: lost */
			s->stats.index_lost += cut;
			for (uint32_t k = 0; k < cut; k++)
				mark_lost(s, e->flow_id);
		}
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
			rc = pks__db_err(s, r, "insert");
			goto out;
		}
		s->stats.index_rows++;
	}
	/* Flows that lost packets to write errors, in the same transaction, so
	 * the index never says "stored" for a flow it knows lost some. */
	for (uint32_t i = 0; i < s->lost_n; i++) {
		sqlite3_stmt *lq = s->st_lost;
		sqlite3_reset(lq);
		sqlite3_bind_int64(lq, 1, (int64_t)s->lost[i].flow_id);
		sqlite3_bind_int64(lq, 2, (int64_t)s->lost[i].packets);
		int r = sqlite3_step(lq);
		if (r != SQLITE_DONE) {
			rc = pks__db_err(s, r, "lost");
			goto out;
		}
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
		rc = pks__db_err(s, r, "segment update");
		goto out;
	}
	if ((rc = pks__exec(s, "COMMIT")) < 0)
		goto out;
	tx = 0;
	s->lost_n = 0; /* recorded; kept for the next commit otherwise */
out:
	if (tx)
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	/* Committed or not, these entries are done with: on failure they are lost
	 * (counted), and the chain goes on from the last offset. */
	for (uint32_t i = 0; i < s->ndirty; i++) {
		struct flow_ent *e = &s->flows[s->dirty[i]];
		if (rc < 0) {
			s->stats.index_lost += e->pend_pkts;
			for (uint32_t k = 0; k < e->pend_pkts; k++)
				mark_lost(s, e->flow_id);
		}
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

/* Everything under the store directory, as du counts it (segments, index and
 * its -wal/-shm, damaged indexes kept aside, stray files), plus what the open
 * segment still holds in memory: what --store-cap bounds. */
static uint64_t disk_use(struct pks *s)
{
	uint64_t total = fsio_dir_bytes(s->dir);
	if (s->w)
		total += pn_offset(s->w) - pn_written(s->w);
	s->stats.disk_bytes = total;
	return total;
}

static int live_push(struct pks *s, int64_t id, uint64_t bytes, const char *file)
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

int pks_build_index(struct pks *s)
{
	if (s->cfg.readonly || !s->index_deferred)
		return 0;
	uint64_t t0 = cpu_us();
	int rc = pks__exec(s, index_sql);
	if (rc == 0)
		s->index_deferred = 0;
	s->stats.index_us += cpu_us() - t0;
	return rc;
}

/* Deletes the oldest closed segment: its flows become expired. */
static int delete_oldest(struct pks *s)
{
	struct live_seg *ls = &s->live[0];
	char path[PATH_MAX], sql[512];
	int rc;
	snprintf(path, sizeof(path), "%s/%s", s->dir, ls->file);
	/* readers ask for flows' states by flow_id */
	if ((rc = pks_build_index(s)) < 0)
		return rc;
	if ((rc = pks__exec(s, "BEGIN")) < 0)
		return rc;
	snprintf(sql, sizeof(sql),
		 "INSERT INTO expired(flow_id, packets, segment_id)"
		 " SELECT flow_id, packets, segment_id FROM flow_packets WHERE segment_id=%" PRId64
		 " ON CONFLICT(flow_id) DO UPDATE SET packets=packets+excluded.packets,"
		 " segment_id=excluded.segment_id;"
		 "DELETE FROM flow_packets WHERE segment_id=%" PRId64 ";"
		 "UPDATE segments SET state='deleted' WHERE id=%" PRId64 ";",
		 ls->id, ls->id, ls->id);
	if ((rc = pks__exec(s, sql)) < 0 || (rc = pks__exec(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	/* The index forgets the segment before the file goes: an exporter never
	 * finds rows pointing into a removed file (except in a race it reports). */
	if (unlink(path) < 0 && errno != ENOENT)
		pks__note(s, "segments: cannot delete %s: %s", path, strerror(errno));
	free(ls->file);
	memmove(&s->live[0], &s->live[1], (s->nlive - 1) * sizeof(*s->live));
	s->nlive--;
	s->stats.segments_deleted++;
	return 0;
}

/* Keeps disk use plus room for one full new segment under max_bytes. */
static int enforce_cap(struct pks *s)
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

static void crc_push(struct pks *s)
{
	if (s->ncrcs == s->crcs_cap) {
		size_t ncap = s->crcs_cap ? 2 * s->crcs_cap : 64;
		uint32_t *nc = realloc(s->crcs, ncap * sizeof(*nc));
		if (!nc) {
			s->crc_broken = 1;
			return;
		}
		s->crcs = nc;
		s->crcs_cap = ncap;
	}
	s->crcs[s->ncrcs++] = s->crc_cur;
	s->crc_cur = 0;
}

/* The writer's tap: every run of bytes that reached the open segment's file, in
 * order; checksummed chunk by chunk. */
static void crc_tap(void *arg, uint64_t off, const uint8_t *buf, size_t len)
{
	struct pks *s = arg;
	if (s->crc_broken)
		return;
	if (off != s->crc_bytes) { /* cannot happen with one writer; never guess */
		s->crc_broken = 1;
		return;
	}
	while (len) {
		size_t room = PKS_CRC_CHUNK - (size_t)(s->crc_bytes % PKS_CRC_CHUNK);
		size_t n = len < room ? len : room;
		s->crc_cur = pks__crc32c(s->crc_cur, buf, n);
		s->crc_bytes += n;
		buf += n;
		len -= n;
		if (s->crc_bytes % PKS_CRC_CHUNK == 0)
			crc_push(s);
	}
}

static int close_segment(struct pks *s)
{
	if (!s->w)
		return 0;
	int rc = pn_flush(s->w);
	int rc2 = commit_index(s);
	uint64_t bytes = pn_written(s->w);
	int rc3 = pn_close(s->w);
	s->w = NULL;
	/* A failed final flush leaves the file cut at its last complete block;
	 * record that size so the segment stays consistent.  The chunk checksums
	 * go with it when they cover exactly those bytes (the last chunk partial). */
	if (!s->crc_broken && s->crc_bytes == bytes && bytes % PKS_CRC_CHUNK)
		crc_push(s); /* the last chunk is partial: its checksum too */
	int rc4 = 0;
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(s->db, "UPDATE segments SET state='closed', bytes=?1, last_us=?2, packets=?3,"
				   " crc=?4 WHERE id=?5", -1, &st, NULL);
	if (r == SQLITE_OK) {
		sqlite3_bind_int64(st, 1, (int64_t)bytes);
		sqlite3_bind_int64(st, 2, (int64_t)s->seg_last_us);
		sqlite3_bind_int64(st, 3, (int64_t)s->seg_packets);
		if (!s->crc_broken && s->crc_bytes == bytes)
			sqlite3_bind_blob(st, 4, s->crcs, (int)(s->ncrcs * sizeof(uint32_t)), SQLITE_STATIC);
		else
			sqlite3_bind_null(st, 4);
		sqlite3_bind_int64(st, 5, s->seg_id);
		r = sqlite3_step(st);
		sqlite3_finalize(st);
	}
	if (r != SQLITE_DONE)
		rc4 = pks__db_err(s, r, "segment close");
	s->ncrcs = 0;
	s->crc_cur = 0;
	s->crc_bytes = 0;
	s->crc_broken = 0;
	int rc5 = live_push(s, s->seg_id, bytes, s->seg_file);
	free(s->seg_file);
	s->seg_file = NULL;
	flows_clear(s);
	if (rc3 < 0 && rc == 0)
		rc = pks__set_err(s, rc3, "segment close: %s", strerror(-rc3));
	return rc ? rc : rc2 ? rc2 : rc4 ? rc4 : rc5;
}

static int open_segment(struct pks *s, uint64_t ts_us)
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
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, FSIO_FILE_MODE);
	if (fd >= 0)
		fsio_own_fd(fd, FSIO_FILE_MODE); /* the agent's group; payloads for it only */
	if (fd < 0) {
		rc = pks__set_err(s, -errno, "segment %s: %s", path, strerror(errno));
		if (rc == -EEXIST) /* a stray file: the retry takes the next number */
			s->next_seg_id++;
		return rc;
	}
	struct pn_config pc;
	pn_config_default(&pc);
	pc.bufsize = PKS_WRITE_BUF;
	pc.flags = PN_OWN_FD;
	pc.tap = crc_tap;
	pc.tap_arg = s;
	s->ncrcs = 0;
	s->crc_cur = 0;
	s->crc_bytes = 0;
	s->crc_broken = 0;
	struct pn_writer *w = pn_open_fd(fd, &pc);
	if (!w) {
		rc = -errno;
		close(fd);
		unlink(path);
		return pks__set_err(s, rc, "segment %s: %s", path, strerror(-rc));
	}
	for (uint32_t i = 0; i < s->nif; i++) {
		uint32_t if_id;
		pn_add_interface(w, s->ifaces[i].linktype, s->cfg.snaplen,
				 s->ifaces[i].name, s->ifaces[i].pod, &if_id);
	}
	/* The header blocks must be on disk before the index names the file. */
	if ((rc = pn_flush(w)) < 0) {
		pks__set_err(s, rc, "segment %s: %s", path, pn_errmsg(w));
		pn_close(w);
		unlink(path);
		return rc;
	}
	char sql[PATH_MAX + 256];
	snprintf(sql, sizeof(sql),
		 "INSERT INTO segments(id, session, file, first_us, last_us, bytes, state)"
		 " VALUES(%" PRId64 ", %" PRId64 ", '%s', %" PRIu64 ", %" PRIu64 ", %" PRIu64 ", 'open')",
		 id, s->session, name, ts_us, ts_us, pn_written(w));
	if ((rc = pks__exec(s, sql)) < 0) {
		pn_close(w);
		unlink(path);
		return rc;
	}
	s->seg_file = strdup(name);
	if (!s->seg_file) {
		pn_close(w);
		return pks__set_err(s, -ENOMEM, "out of memory");
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
static int write_failed(struct pks *s, int err, uint64_t ts_us)
{
	pks__set_err(s, err, "segment %s: %s", s->seg_file ? s->seg_file : "?",
		s->w ? pn_errmsg(s->w) : strerror(-err));
	char msg[sizeof(s->errmsg)];
	memcpy(msg, s->errmsg, sizeof(msg));
	close_segment(s); /* commits the entries below pn_written() */
	memcpy(s->errmsg, msg, sizeof(msg));
	s->disk_err = err;
	s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
	pks__note(s, "segments: %s; packets are not stored until a retry succeeds", msg);
	return err;
}

/* ---- open / close ----------------------------------------------------------- */

static int prepare(struct pks *s, const char *sql, sqlite3_stmt **st)
{
	int rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	return rc == SQLITE_OK ? 0 : pks__db_err(s, rc, "prepare");
}

int64_t pks__query_int(struct pks *s, const char *sql, int64_t dflt)
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
static int adopt_orphans(struct pks *s)
{
	int64_t *known = NULL;
	size_t nknown = 0, cap = 0;
	sqlite3_stmt *st;
	int rc = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT id FROM segments", -1, &st, NULL) != SQLITE_OK)
		return pks__db_err(s, sqlite3_errcode(s->db), "recover");
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
		if ((rc = pks__exec(s, sql)) < 0 || (rc = live_push(s, id, size, e->d_name)) < 0)
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
		pks__note(s, "segments: %zu segment files were not in the index; kept for retention"
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
static int recover(struct pks *s)
{
	sqlite3_stmt *st;
	int rc = 0;
	for (size_t i = 0; i < s->nlive; i++)
		free(s->live[i].file);
	s->nlive = 0;
	if (sqlite3_prepare_v2(s->db, "SELECT id, file, state FROM segments"
			       " WHERE state != 'deleted' ORDER BY id", -1, &st, NULL) != SQLITE_OK)
		return pks__db_err(s, sqlite3_errcode(s->db), "recover");
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
			if ((rc = pks__exec(s, sql)) < 0)
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

static int is_corrupt(struct pks *s)
{
	int e = s->db ? sqlite3_errcode(s->db) : SQLITE_OK;
	return e == SQLITE_CORRUPT || e == SQLITE_NOTADB || s->corrupt;
}

/* Pragmas, schema, session number, crash recovery and statements of a writer. */
static int init_writer(struct pks *s)
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
		return pks__set_err(s, -EIO, "index fails its integrity check");
	}
	free(ok);
	/* No fsync: on ext4 (data=ordered) a sync of index.db also forces out
	 * the segment data written since the last one, which stalled the
	 * writer for ~5 ms per checkpoint and doubled the wall time of a
	 * replay.  A killed process loses nothing committed (the kernel has
	 * it); a power loss may lose recent index rows or damage index.db,
	 * which pks_open() detects and replaces (the segment files stay
	 * valid pcapng).  The WAL is kept small because it counts against
	 * max_bytes. */
	/* The WAL counts against max_bytes, so it is checkpointed at 1/256 of the cap
	 * (1-16 MiB): a checkpoint every MiB rewrote the same pages of the open
	 * segment's rows again and again (bench10: ~5 % of the run). */
	uint64_t wal_pages = s->cfg.max_bytes ? s->cfg.max_bytes / 256 / 4096 : 4096;
	wal_pages = wal_pages < 256 ? 256 : wal_pages > 4096 ? 4096 : wal_pages;
	char wal_sql[64];
	snprintf(wal_sql, sizeof(wal_sql), "PRAGMA wal_autocheckpoint=%" PRIu64, wal_pages);
	if ((rc = pks__exec(s, "PRAGMA journal_mode=WAL")) < 0 ||
	    (rc = pks__exec(s, "PRAGMA synchronous=OFF")) < 0 ||
	    (rc = pks__exec(s, wal_sql)) < 0 ||
	    (rc = pks__exec(s, "PRAGMA journal_size_limit=1048576")) < 0 ||
	    (rc = pks__exec(s, "BEGIN IMMEDIATE")) < 0)
		return rc;
	if (pks__query_int(s, "PRAGMA user_version", 0) == 1 &&
	    (rc = pks__exec(s, "CREATE TABLE flow_packets_v2(flow_id INTEGER NOT NULL,"
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
	snprintf(ver_sql, sizeof(ver_sql), "PRAGMA user_version=%d", PKS_SCHEMA_VERSION);
	if ((rc = pks__exec(s, schema_sql)) < 0 || (rc = pks__exec(s, ver_sql)) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	/* schema 3: chunk checksums of closed segments (older segments have none) */
	if (!pks__query_int(s, "SELECT count(*) FROM pragma_table_info('segments') WHERE name='crc'", 1) &&
	    (rc = pks__exec(s, "ALTER TABLE segments ADD COLUMN crc BLOB")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->session = pks__query_int(s, "SELECT value FROM meta WHERE key='next_session'", 1);
	char sql[128];
	snprintf(sql, sizeof(sql), "INSERT OR REPLACE INTO meta VALUES('next_session', %" PRId64 ")",
		 s->session + 1);
	if ((rc = pks__exec(s, sql)) < 0 || (rc = pks__exec(s, "COMMIT")) < 0) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		return rc;
	}
	s->next_seg_id = pks__query_int(s, "SELECT max(id) FROM segments", 0) + 1;
	if ((rc = recover(s)) < 0)
		return rc;
	/* Deferred only for an empty index: a later bulk load into a store that has
	 * rows keeps the index it has (rebuilding it would cost more than it saves). */
	if (s->cfg.defer_index && !pks__query_int(s, "SELECT EXISTS(SELECT 1 FROM flow_packets)", 1)) {
		if ((rc = pks__exec(s, "DROP INDEX IF EXISTS flow_packets_flow")) < 0)
			return rc;
		s->index_deferred = 1;
	} else if ((rc = pks__exec(s, index_sql)) < 0) {
		return rc;
	}
	if ((rc = prepare(s, "INSERT INTO flow_packets(flow_id, segment_id, packets, offs)"
			  " VALUES(?1, ?2, ?3, ?4) ON CONFLICT(segment_id, flow_id) DO UPDATE"
			  " SET packets=packets+excluded.packets, offs=offs||excluded.offs",
			  &s->st_upsert)) < 0 ||
	    (rc = prepare(s, "UPDATE segments SET last_us=?1, bytes=?2, packets=?3, state=?4"
			  " WHERE id=?5", &s->st_seg_update)) < 0 ||
	    (rc = prepare(s, "INSERT INTO lost(flow_id, packets) VALUES(?1, ?2) ON CONFLICT(flow_id)"
			  " DO UPDATE SET packets=packets+excluded.packets", &s->st_lost)) < 0)
		return rc;
	s->has_lost = 1;
	/* Room kept free on the file system (see pks_config.reserve_bytes). */
	struct statvfs vfs;
	s->reserve = s->cfg.reserve_bytes;
	if (!s->reserve && statvfs(s->dir, &vfs) == 0) {
		uint64_t fs = (uint64_t)vfs.f_blocks * vfs.f_frsize / 64;
		s->reserve = fs < (64u << 10) ? (64u << 10) : fs > (64u << 20) ? (64u << 20) : fs;
	}
	/* A store over its cap (the cap was lowered, or a writer died before it
	 * could delete) is brought under it before anything new is written. */
	return enforce_cap(s);
}

int pks_open(const char *dir, const struct pks_config *cfg, struct pks **out,
	     char *errbuf, size_t errlen)
{
	struct pks *s = calloc(1, sizeof(*s));
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
		pks_config_default(&s->cfg);
	if (!s->cfg.batch_packets)
		s->cfg.batch_packets = 65536;
	if (s->cfg.segment_bytes < PKS_MIN_SEGMENT)
		s->cfg.segment_bytes = PKS_MIN_SEGMENT;
	/* A segment bigger than a quarter of the cap would leave almost nothing
	 * but the open segment on disk. */
	if (s->cfg.max_bytes && s->cfg.segment_bytes > s->cfg.max_bytes / 4)
		s->cfg.segment_bytes = s->cfg.max_bytes / 4 > PKS_MIN_SEGMENT ?
			s->cfg.max_bytes / 4 : PKS_MIN_SEGMENT;
	if (!s->cfg.segment_age_us)
		s->cfg.segment_age_us = 5ull * 60 * 1000000;
	s->dir = strdup(dir);
	if (!s->dir) {
		rc = pks__set_err(s, -ENOMEM, "out of memory");
		goto fail;
	}
	if (!s->cfg.readonly && mkdir(dir, FSIO_DIR_MODE) == 0)
		fsio_own_path(dir, FSIO_DIR_MODE);
	else if (!s->cfg.readonly && errno != EEXIST) {
		rc = pks__set_err(s, -errno, "packet store %s: %s", dir, strerror(errno));
		goto fail;
	}
	/* One writer per store: two would interleave segments and index rows. */
	snprintf(path, sizeof(path), "packet store %s", dir);
	if (!s->cfg.readonly && (rc = fsio_lock(dir, path, &s->lock, s->errmsg, sizeof(s->errmsg))) < 0)
		goto fail;
	snprintf(path, sizeof(path), "%s/index.db", dir);
	if (!s->cfg.readonly)
		fsio_precreate(path);
	if (s->cfg.readonly && access(path, R_OK) < 0) {
		rc = pks__set_err(s, -errno, "no packet store at %s (%s: %s)", dir, path, strerror(errno));
		goto fail;
	}
	int flags = s->cfg.readonly ? SQLITE_OPEN_READONLY :
		    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
	int r = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (r != SQLITE_OK) {
		rc = pks__set_err(s, -EIO, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, 5000);
	int64_t ver = pks__query_int(s, "PRAGMA user_version", -1);
	if (ver > PKS_SCHEMA_VERSION) {
		rc = pks__set_err(s, -EPROTO, "%s: index schema %" PRId64 " is newer than this podcap (%d)",
			     path, ver, PKS_SCHEMA_VERSION);
		goto fail;
	}
	if (s->cfg.readonly) {
		if (ver < 1) { /* versions 1..3 differ in key order and the lost table: all readable */
			rc = pks__set_err(s, -EPROTO, "%s: not a podcap packet index", path);
			goto fail;
		}
		s->has_lost = pks__query_int(s, "SELECT count(*) FROM sqlite_master WHERE type='table'"
					     " AND name='lost'", 0) > 0;
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
				rc = pks__set_err(s, -errno, "%s is damaged and cannot be moved aside: %s",
					     path, strerror(errno));
				goto fail;
			}
			char side[PATH_MAX + 8];
			snprintf(side, sizeof(side), "%s-wal", path);
			unlink(side);
			snprintf(side, sizeof(side), "%s-shm", path);
			unlink(side);
			pks__note(s, "segments: %s was damaged; moved to %s and started a new index"
			     " (packets stored so far are no longer indexed)", path, aside);
			s->errmsg[0] = 0;
			r = sqlite3_open_v2(path, &s->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
			if (r != SQLITE_OK) {
				rc = pks__set_err(s, -EIO, "%s: %s", path,
					     s->db ? sqlite3_errmsg(s->db) : "cannot open");
				goto fail;
			}
			sqlite3_busy_timeout(s->db, 5000);
			rc = init_writer(s);
		}
		if (rc < 0)
			goto fail;
		if ((rc = flows_grow(s)) < 0) {
			pks__set_err(s, rc, "out of memory");
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	if (errbuf && errlen)
		snprintf(errbuf, errlen, "%s", s->errmsg[0] ? s->errmsg : strerror(-rc));
	s->cfg.readonly = 1; /* nothing to commit */
	pks_close(s);
	return rc;
}

int pks_close(struct pks *s)
{
	if (!s)
		return 0;
	int rc = 0;
	if (!s->cfg.readonly && s->w)
		rc = close_segment(s);
	if (s->db) {
		int rc2 = pks_build_index(s);
		if (rc == 0)
			rc = rc2;
	}
	if (!s->cfg.readonly && s->db && s->lost_n) {
		int rc2 = write_lost(s);
		if (rc == 0)
			rc = rc2;
	}
	sqlite3_finalize(s->st_upsert);
	sqlite3_finalize(s->st_seg_update);
	sqlite3_finalize(s->st_lost);
	sqlite3_finalize(s->st_state);
	free(s->lost);
	free(s->if_by_obs);
	free(s->crcs);
	fsio_unlock(s->lock);
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

int pks_add_interface(struct pks *s, uint32_t obs_id, int linktype,
		      const char *name, const char *pod)
{
	if (s->cfg.readonly)
		return pks__set_err(s, -EROFS, "packet store opened read-only");
	for (uint32_t i = 0; i < s->nif; i++)
		if (s->ifaces[i].obs_id == obs_id)
			return s->ifaces[i].linktype == linktype ? 0 :
				pks__set_err(s, -EEXIST, "observation point %u: link type %d, was %d",
					obs_id, linktype, s->ifaces[i].linktype);
	if (s->nif >= PKS_MAX_IFACES || linktype < 0 || linktype > 0xffff || obs_id >= (1u << 20))
		return pks__set_err(s, -EINVAL, "too many observation points, bad id or bad link type");
	if (obs_id >= s->if_by_obs_n) {
		uint32_t n = s->if_by_obs_n ? s->if_by_obs_n : 64;
		while (n <= obs_id)
			n *= 2;
		uint32_t *m = realloc(s->if_by_obs, n * sizeof(*m));
		if (!m)
			return pks__set_err(s, -ENOMEM, "out of memory");
		memset(m + s->if_by_obs_n, 0, (n - s->if_by_obs_n) * sizeof(*m));
		s->if_by_obs = m;
		s->if_by_obs_n = n;
	}
	struct pks_iface *ni = realloc(s->ifaces, (s->nif + 1) * sizeof(*ni));
	if (!ni)
		return pks__set_err(s, -ENOMEM, "out of memory");
	s->ifaces = ni;
	struct pks_iface *f = &ni[s->nif];
	f->obs_id = obs_id;
	f->linktype = linktype;
	f->name = strdup(name ? name : "");
	f->pod = pod && *pod ? strdup(pod) : NULL;
	if (!f->name || (pod && *pod && !f->pod)) {
		free(f->name);
		free(f->pod);
		return pks__set_err(s, -ENOMEM, "out of memory");
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
		int rc = pks__db_err(s, r, "interface");
		free(f->name);
		free(f->pod);
		return rc;
	}
	s->nif++;
	s->if_by_obs[obs_id] = s->nif;
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

/* The open segment spans segment_age_us at time ts (written without overflow:
 * capture timestamps can sit anywhere in the 64-bit range). */
static inline int aged(const struct pks *s, uint64_t ts)
{
	return ts >= s->seg_first_us && ts - s->seg_first_us >= s->cfg.segment_age_us;
}

/* A packet the disk (or memory) refused: counted, and its flow remembered as
 * having lost packets. */
static int refuse(struct pks *s, uint64_t flow_id, int rc)
{
	s->stats.write_errors++;
	mark_lost(s, flow_id);
	return rc;
}

/* Free space check, about every MiB written and before a segment starts: the
 * store stops before the file system is full, keeping room for the index to
 * record what was lost.  Returns 0 or -ENOSPC (message set). */
static int check_space(struct pks *s)
{
	struct statvfs vfs;
	s->bytes_since_check = 0;
	if (!s->reserve || statvfs(s->dir, &vfs) < 0)
		return 0;
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	if (avail >= s->reserve)
		return 0;
	return pks__set_err(s, -ENOSPC, "%s: file system almost full (%llu bytes free; the packet store "
			    "keeps %llu free so its index can record what was lost)", s->dir,
			    (unsigned long long)avail, (unsigned long long)s->reserve);
}

int pks_put(struct pks *s, uint32_t obs_id, uint64_t flow_id, uint32_t pkt_no,
	    uint64_t ts_us, const uint8_t *data, uint32_t caplen, uint32_t wirelen, uint32_t dir)
{
	uint32_t idx;
	int rc;
	if (s->cfg.readonly)
		return -EROFS;
	if (obs_id >= s->if_by_obs_n || !s->if_by_obs[obs_id])
		return refuse(s, flow_id, pks__set_err(s, -ENOENT, "observation point %u not declared", obs_id));
	idx = s->if_by_obs[obs_id] - 1;
	if (s->cfg.flow_packets && pkt_no >= s->cfg.flow_packets) {
		s->stats.skipped_limit++;
		return 0;
	}
	if (s->disk_err) {
		if (ts_us < s->retry_at_us)
			return refuse(s, flow_id, s->disk_err);
		s->disk_err = 0;
	}
	if (caplen > PN_PACKET_MAX)
		caplen = PN_PACKET_MAX;
	if (s->cfg.snaplen && caplen > s->cfg.snaplen)
		caplen = s->cfg.snaplen;
	if (s->w && s->bytes_since_check >= (1u << 20) && (rc = check_space(s)) < 0) {
		write_failed(s, rc, ts_us);
		return refuse(s, flow_id, rc);
	}
	if (s->w) {
		uint64_t blk = PN_EPB_HDR_LEN + caplen + 8;
		if ((s->seg_packets && pn_offset(s->w) + blk > s->cfg.segment_bytes) ||
		    aged(s, ts_us)) {
			if ((rc = close_segment(s)) < 0) {
				s->disk_err = rc;
				s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
				return refuse(s, flow_id, rc);
			}
		}
	}
	if (!s->w && ((rc = check_space(s)) < 0 || (rc = open_segment(s, ts_us)) < 0)) {
		if (!s->disk_err)
			pks__note(s, "segments: %s; packets are not stored until a retry succeeds", s->errmsg);
		s->disk_err = rc;
		s->retry_at_us = sat_add(ts_us, s->cfg.retry_us);
		write_lost(s); /* the refusals so far, while there is room */
		return refuse(s, flow_id, rc);
	}
	struct flow_ent *e = flow_get(s, flow_id);
	if (!e)
		return refuse(s, flow_id, pks__set_err(s, -ENOMEM, "out of memory"));
	/* Room for the index entry first: a packet must not be written unindexed. */
	if (e->pend_len + PKS_VARINT_MAX > e->pend_cap) {
		uint32_t ncap = e->pend_cap ? e->pend_cap * 2 : 16;
		uint8_t *np = realloc(e->pend, ncap);
		if (!np)
			return refuse(s, flow_id, pks__set_err(s, -ENOMEM, "out of memory"));
		e->pend = np;
		e->pend_cap = ncap;
	}
	uint64_t off;
	uint32_t flags = dir == PN_EPB_INBOUND || dir == PN_EPB_OUTBOUND ? dir : 0;
	rc = pn_write_packet_us(s->w, idx, ts_us, data, caplen, wirelen, flags, NULL, &off);
	if (rc < 0) {
		write_failed(s, rc, ts_us);
		return refuse(s, flow_id, rc);
	}
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
	s->bytes_since_check += PN_EPB_HDR_LEN + caplen;
	if (++s->pending_pkts >= s->cfg.batch_packets) {
		if ((rc = pn_flush(s->w)) < 0) {
			s->stats.write_errors++;
			return write_failed(s, rc, ts_us);
		}
		if ((rc = commit_index(s)) < 0) {
			s->stats.write_errors++;
			return rc;
		}
	}
	return 1;
}

int pks_flush(struct pks *s)
{
	if (s->cfg.readonly || !s->w)
		return 0;
	int rc = pn_flush(s->w);
	if (rc < 0)
		return write_failed(s, rc, s->seg_last_us);
	rc = commit_index(s);
	disk_use(s);
	return rc;
}

int pks_tick(struct pks *s, uint64_t now_us)
{
	if (s->cfg.readonly || !s->w)
		return 0;
	if (aged(s, now_us))
		return close_segment(s);
	return pks_flush(s);
}

void pks_stats(const struct pks *s, struct pks_stats *out)
{
	*out = s->stats;
}

/* ---- read side -------------------------------------------------------------- */

const char *pks_flow_state_name(int state)
{
	switch (state) {
	case PKS_FLOW_NONE: return "none";
	case PKS_FLOW_STORED: return "stored";
	case PKS_FLOW_PARTIAL: return "partial";
	case PKS_FLOW_EXPIRED: return "expired";
	}
	return "?";
}

/* One statement for the three facts of a flow: rows in live segments, packets
 * expired by retention, packets refused by the disk.  Prepared once per handle:
 * a listing asks for every row it shows. */
static int flow_state(struct pks *s, uint64_t flow_id)
{
	if (!s->st_state) {
		const char *sql = s->has_lost ?
			"SELECT EXISTS(SELECT 1 FROM flow_packets WHERE flow_id=?1),"
			" EXISTS(SELECT 1 FROM expired WHERE flow_id=?1),"
			" EXISTS(SELECT 1 FROM lost WHERE flow_id=?1)" :
			"SELECT EXISTS(SELECT 1 FROM flow_packets WHERE flow_id=?1),"
			" EXISTS(SELECT 1 FROM expired WHERE flow_id=?1), 0";
		int r = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->st_state, NULL);
		if (r != SQLITE_OK)
			return pks__db_err(s, r, "flow state");
	}
	sqlite3_stmt *st = s->st_state;
	sqlite3_reset(st);
	sqlite3_bind_int64(st, 1, (int64_t)flow_id);
	int r = sqlite3_step(st);
	if (r != SQLITE_ROW) {
		int rc = pks__db_err(s, r, "flow state");
		sqlite3_reset(st);
		return rc;
	}
	int live = sqlite3_column_int(st, 0), exp = sqlite3_column_int(st, 1), lost = sqlite3_column_int(st, 2);
	sqlite3_reset(st);
	if (live)
		return exp || lost ? PKS_FLOW_PARTIAL : PKS_FLOW_STORED;
	return exp ? PKS_FLOW_EXPIRED : lost ? PKS_FLOW_PARTIAL : PKS_FLOW_NONE;
}

int pks_max_flow_id(struct pks *s, uint64_t *out)
{
	sqlite3_stmt *st;
	*out = 0;
	int r = sqlite3_prepare_v2(s->db, s->has_lost ?
				   "SELECT max(coalesce((SELECT max(flow_id) FROM flow_packets), 0),"
				   " coalesce((SELECT max(flow_id) FROM expired), 0),"
				   " coalesce((SELECT max(flow_id) FROM lost), 0))" :
				   "SELECT max(coalesce((SELECT max(flow_id) FROM flow_packets), 0),"
				   " coalesce((SELECT max(flow_id) FROM expired), 0))", -1, &st, NULL);
	if (r != SQLITE_OK)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int64(st, 0) > 0)
		*out = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return 0;
}

int pks_flow_state(struct pks *s, uint64_t flow_id)
{
	return flow_state(s, flow_id);
}

