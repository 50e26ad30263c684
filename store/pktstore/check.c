/* pktstore check — what a store still holds and what it lost (see pktstore.h).
 *
 * Reads everything once: the index through SQLite's quick_check, every live
 * segment file front to back against its chunk checksums, and for segments that
 * are missing or damaged, the index rows that point into them, so the report can
 * say how many packets of how many flows cannot be exported. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcapng.h"
#include "pktstore_int.h"

struct ck {
	struct pks *s;
	void (*report)(void *, const char *);
	void *arg;
	struct pks_check *out;
};

static void say(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct ck *c, const char *fmt, ...)
{
	if (!c->report)
		return;
	char line[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	c->report(c->arg, line);
}

/* Counts the packets of segment seg_id's rows whose offsets fall in [lo, hi)
 * (all of them with hi == UINT64_MAX), and the flows they belong to. */
static int count_in(struct ck *c, int64_t seg_id, uint64_t lo, uint64_t hi, uint64_t *packets, uint64_t *flows)
{
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(c->s->db, "SELECT packets, offs FROM flow_packets WHERE segment_id = ?1",
				   -1, &st, NULL);
	if (r != SQLITE_OK)
		return pks__db_err(c->s, r, "check");
	sqlite3_bind_int64(st, 1, seg_id);
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t npk = sqlite3_column_int64(st, 0);
		const uint8_t *blob = sqlite3_column_blob(st, 1);
		size_t blen = (size_t)sqlite3_column_bytes(st, 1), pos = 0;
		uint64_t off = 0, d, got = 0, hit = 0;
		if (hi == UINT64_MAX) {
			hit = npk > 0 ? (uint64_t)npk : 0;
		} else {
			while (pos < blen && pks__varint_get(blob, blen, &pos, &d) == 0) {
				off = got++ ? off + d : d;
				hit += off >= lo && off < hi;
			}
		}
		*packets += hit;
		*flows += hit > 0;
	}
	int rc = r == SQLITE_DONE ? 0 : pks__db_err(c->s, r, "check");
	sqlite3_finalize(st);
	return rc;
}

/* One live segment: present, as long as recorded, pcapng, chunks intact. */
static int check_segment(struct ck *c, int64_t id, const char *file, uint64_t bytes, const void *crcblob,
			 size_t crclen, const char *state)
{
	struct pks *s = c->s;
	char path[PATH_MAX];
	uint64_t lost = 0, lostflows = 0;
	int rc = 0;
	c->out->segments++;
	c->out->bytes += bytes;
	if (!file || strchr(file, '/')) {
		say(c, "segment %" PRId64 ": bad file name in the index", id);
		rc = count_in(c, id, 0, UINT64_MAX, &lost, &lostflows);
		goto bad;
	}
	snprintf(path, sizeof(path), "%s/%s", s->dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) < 0) {
		say(c, "segment %s: %s", file, strerror(errno));
		if (fd >= 0)
			close(fd);
		rc = count_in(c, id, 0, UINT64_MAX, &lost, &lostflows);
		goto bad;
	}
	uint8_t hdr[12];
	uint32_t type = 0, magic = 0;
	if (pread(fd, hdr, sizeof(hdr), 0) == (ssize_t)sizeof(hdr)) {
		memcpy(&type, hdr, 4);
		memcpy(&magic, hdr + 8, 4);
	}
	if (type != PN_BT_SHB || magic != PN_BYTE_ORDER_MAGIC) {
		say(c, "segment %s: not a pcapng file of this host's byte order", file);
		close(fd);
		rc = count_in(c, id, 0, UINT64_MAX, &lost, &lostflows);
		goto bad;
	}
	int open_seg = state && !strcmp(state, "open");
	if (!open_seg && (uint64_t)st.st_size < bytes) {
		say(c, "segment %s: cut short: %lld of %" PRIu64 " bytes", file, (long long)st.st_size, bytes);
		rc = count_in(c, id, (uint64_t)st.st_size, UINT64_MAX - 1, &lost, &lostflows);
		close(fd);
		goto bad;
	}
	size_t ncrc = crcblob && crclen % 4 == 0 ? crclen / 4 : 0;
	if (open_seg || !ncrc || ncrc != (bytes + PKS_CRC_CHUNK - 1) / PKS_CRC_CHUNK) {
		c->out->segments_unchecked++;
		close(fd);
		return 0;
	}
	uint8_t *buf = malloc(PKS_CRC_CHUNK);
	if (!buf) {
		close(fd);
		return pks__set_err(s, -ENOMEM, "out of memory");
	}
	uint64_t bad_chunks = 0;
	for (size_t k = 0; k < ncrc && rc == 0; k++) {
		uint64_t c0 = (uint64_t)k * PKS_CRC_CHUNK, len = bytes - c0 < PKS_CRC_CHUNK ? bytes - c0 : PKS_CRC_CHUNK;
		uint32_t want;
		memcpy(&want, (const uint8_t *)crcblob + 4 * k, 4);
		ssize_t n = pread(fd, buf, (size_t)len, (off_t)c0);
		if (n == (ssize_t)len && pks__crc32c(0, buf, (size_t)len) == want)
			continue;
		bad_chunks++;
		uint64_t p = 0, f = 0;
		rc = count_in(c, id, c0, c0 + len, &p, &f);
		lost += p;
		lostflows += f;
		say(c, "segment %s: bytes %" PRIu64 "..%" PRIu64 " are damaged (checksum mismatch): %" PRIu64
		    " packets of %" PRIu64 " flows in them", file, c0, c0 + len, p, f);
	}
	free(buf);
	close(fd);
	c->out->chunks_bad += bad_chunks;
	if (!bad_chunks || rc < 0)
		return rc;
bad:
	c->out->segments_bad++;
	c->out->packets_lost += lost;
	if (lost)
		say(c, "segment %s: %" PRIu64 " indexed packets of %" PRIu64 " flows cannot be exported",
		    file ? file : "?", lost, lostflows);
	return rc;
}

int pks_check(struct pks *s, void (*report)(void *arg, const char *line), void *arg, struct pks_check *out)
{
	struct ck c = {.s = s, .report = report, .arg = arg, .out = out};
	memset(out, 0, sizeof(*out));
	char *ok = NULL;
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(s->db, "PRAGMA quick_check(1)", -1, &st, NULL) == SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
			ok = strdup((const char *)sqlite3_column_text(st, 0));
		sqlite3_finalize(st);
	}
	out->index_ok = ok && !strcmp(ok, "ok");
	if (!out->index_ok)
		say(&c, "%s/index.db: fails its integrity check (%s)", s->dir, ok ? ok : "unreadable");
	free(ok);

	int has_crc = pks__query_int(s, "SELECT count(*) FROM pragma_table_info('segments') WHERE name='crc'", 0) > 0;
	int r = sqlite3_prepare_v2(s->db, has_crc ?
				   "SELECT id, file, bytes, crc, state, session FROM segments WHERE state != 'deleted' ORDER BY id" :
				   "SELECT id, file, bytes, NULL, state, session FROM segments WHERE state != 'deleted' ORDER BY id",
				   -1, &st, NULL);
	if (r != SQLITE_OK)
		return pks__db_err(s, r, "check");
	int rc = 0;
	while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_int64(st, 5) == -1) {
			/* adopted after an index was lost: counted, not exportable */
			out->orphans++;
			continue;
		}
		int64_t b = sqlite3_column_int64(st, 2);
		rc = check_segment(&c, sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
				   b > 0 ? (uint64_t)b : 0, sqlite3_column_blob(st, 3),
				   (size_t)sqlite3_column_bytes(st, 3), (const char *)sqlite3_column_text(st, 4));
	}
	if (rc == 0 && r != SQLITE_DONE && r != SQLITE_ROW)
		rc = pks__db_err(s, r, "check");
	sqlite3_finalize(st);
	if (rc < 0)
		return rc;
	out->flows = (uint64_t)pks__query_int(s, "SELECT count(DISTINCT flow_id) FROM flow_packets", 0);
	out->packets = (uint64_t)pks__query_int(s, "SELECT coalesce(sum(packets), 0) FROM flow_packets", 0);
	if (out->orphans)
		say(&c, "%" PRIu64 " segment files are not in the index (an index lost earlier): kept for retention,"
		    " their packets cannot be exported", out->orphans);
	DIR *d = opendir(s->dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "index.db.damaged-", 17)) {
			out->damaged_indexes++;
			say(&c, "%s/%s: an index found damaged earlier and moved aside", s->dir, e->d_name);
		}
	if (d)
		closedir(d);
	return !out->index_ok || out->segments_bad || out->packets_lost || out->orphans ? 1 : 0;
}
