/* pktstore export — the packets of any number of flows as one time-ordered
 * stream (see pktstore.h).
 *
 * The wanted flows go into a temporary table (x_want), so a query answer of a
 * million flows costs disk, not memory.  The segments holding their packets are
 * read one after the other in time order; segments whose time ranges overlap (a
 * store shared by runs, live interfaces whose clocks interleave) are merged: a
 * heap holds every segment being read, keyed by the time of its next packet, and
 * a segment is opened only when the merge reaches its first packet's time.
 *
 * Within a segment, the wanted flows' index rows give the file offsets of their
 * packets; sorted, they are read front to back through a window buffer, each
 * block once, checked (type, lengths, trailer, interface).  A segment's file
 * order is its arrival order, which is time order but for small disorder (flow
 * workers' batches interleave, interfaces' clocks differ, capture files jump):
 * a reorder buffer of up to X_REORDER_PKTS packets (X_REORDER_BYTES) between the
 * merge and the writer puts such packets back in time order.  Memory is thus
 * bounded by the segments open at once (one entry of 16 bytes per wanted packet
 * of each, at most segment_bytes / 32 entries) plus the reorder buffer.
 *
 * Per-flow outcomes (packets written, missing, corrupt) are added to x_want when
 * a segment is done, and read back by pks_export_result().
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pcapng.h"
#include "pktstore_int.h"

/* A segment is read a checksum chunk at a time, aligned, so each chunk is
 * verified once, whole, before anything in it is written out. */
#define X_WINDOW PKS_CRC_CHUNK
/* Largest block accepted: a packet, options and framing. */
#define X_BLOCK_MAX (PN_EPB_HDR_LEN + PN_PACKET_MAX + 65536u)
/* Packets held back to put them in time order. */
#define X_REORDER_PKTS 4096u
#define X_REORDER_BYTES (16u << 20)

struct x_iface {
	int64_t session, idx;
	uint32_t obs_id;
	int linktype;
	uint32_t snaplen;
	char *name, *pod;
	int64_t out_id;        /* -1 until declared in the output */
};

/* A wanted flow with rows in the segment being read. */
struct x_flow {
	int64_t ord;           /* its row in x_want */
	char *comment;
	uint64_t packets, missing, corrupt;
};

/* One wanted packet of a segment. */
struct x_ent {
	uint64_t off;
	uint32_t flow;         /* index into x_seg.flows */
};

struct x_seg {
	int64_t id, session;
	char *file;
	int fd;
	uint64_t size;
	struct x_flow *flows;
	size_t nflows;
	struct x_ent *ents;
	size_t nents, next;
	uint32_t *ifmap;       /* pcapng interface id in this segment -> x_iface index + 1 */
	uint32_t nifmap;
	uint32_t *crc;         /* chunk checksums of a closed segment, or NULL */
	size_t ncrc;
	uint64_t seg_bytes;    /* the size the checksums cover */
	uint8_t *chunk;        /* per chunk: 0 not verified, 1 good, 2 damaged */
	uint8_t *buf;          /* read window: file bytes [buf_off, buf_off + buf_len) */
	uint64_t buf_off;
	size_t buf_len, buf_cap;
	int exhausted;         /* no more packets to read */
	size_t pending;        /* its packets in the reorder buffer */
	/* the next packet to write (valid while has_head) */
	int has_head;
	uint64_t ts;
	const uint8_t *data;
	uint32_t caplen, wirelen, flags, iface;
	struct x_flow *hflow;
};

/* A packet in the reorder buffer. */
struct x_out {
	uint64_t ts, seq;      /* seq: merge order, for equal times */
	struct x_seg *g;
	struct x_flow *f;
	uint32_t iface, caplen, wirelen, flags;
	uint8_t *data;
};

struct x_meta {
	int64_t id, session;
	char *file, *state;
	uint64_t first_us, bytes;
	uint32_t *crc;
	size_t ncrc;
};

struct pks_export {
	struct pks *s;
	struct pn_writer *w;
	int started, done, failed;
	uint64_t nwant;
	struct x_iface *ifs;
	size_t nifs;
	struct x_meta *segs;
	size_t nsegs, next_seg;
	struct x_seg **heap;
	size_t nheap, heap_cap;
	struct x_out *ro;      /* reorder buffer: a min-heap by (ts, seq) */
	size_t nro, ro_bytes;
	uint64_t seq;
	sqlite3_stmt *add, *upd, *res;
	/* pks_export_rewrite */
	pks_rewrite_fn rewrite;
	void *rewrite_arg;
	int rewrite_linktype;
	uint8_t *rewrite_buf;  /* PKS_REWRITE_MAX bytes, allocated with the hook */
};

static void x_seg_free(struct x_seg *g)
{
	if (!g)
		return;
	if (g->fd >= 0)
		close(g->fd);
	for (size_t i = 0; i < g->nflows; i++)
		free(g->flows[i].comment);
	free(g->flows);
	free(g->ents);
	free(g->ifmap);
	free(g->buf);
	free(g->crc);
	free(g->chunk);
	free(g->file);
	free(g);
}

int pks_export_open(struct pks *s, struct pn_writer *w, struct pks_export **out)
{
	*out = NULL;
	struct pks_export *x = calloc(1, sizeof(*x));
	if (!x)
		return pks__set_err(s, -ENOMEM, "out of memory");
	x->s = s;
	x->w = w;
	int rc = pks__exec(s, "DROP TABLE IF EXISTS temp.x_want;"
			   "CREATE TEMP TABLE x_want(ord INTEGER PRIMARY KEY, id INTEGER NOT NULL UNIQUE,"
			   " comment TEXT, packets INTEGER NOT NULL DEFAULT 0, missing INTEGER NOT NULL DEFAULT 0,"
			   " corrupt INTEGER NOT NULL DEFAULT 0, rows INTEGER NOT NULL DEFAULT 0,"
			   " expired INTEGER NOT NULL DEFAULT 0, lost INTEGER NOT NULL DEFAULT 0)");
	if (rc == 0) {
		int r = sqlite3_prepare_v2(s->db, "INSERT OR IGNORE INTO temp.x_want(id, comment) VALUES(?1, ?2)",
					   -1, &x->add, NULL);
		if (r != SQLITE_OK)
			rc = pks__db_err(s, r, "export");
	}
	/* The adds and the bookkeeping go into one transaction of the temporary
	 * database: a statement-level commit per flow would dominate. */
	if (rc == 0)
		rc = pks__exec(s, "SAVEPOINT x_adds");
	if (rc < 0) {
		sqlite3_finalize(x->add);
		free(x);
		return rc;
	}
	*out = x;
	return 0;
}

int pks_export_add(struct pks_export *x, uint64_t flow_id, const char *comment)
{
	if (x->started)
		return pks__set_err(x->s, -EINVAL, "export: flows must be added before the first step");
	sqlite3_reset(x->add);
	sqlite3_bind_int64(x->add, 1, (int64_t)flow_id);
	if (comment)
		sqlite3_bind_text(x->add, 2, comment, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(x->add, 2);
	int r = sqlite3_step(x->add);
	if (r != SQLITE_DONE)
		return pks__db_err(x->s, r, "export");
	x->nwant += sqlite3_changes(x->s->db) > 0;
	return 0;
}

static char *dup_col(sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);
	return t ? strdup(t) : NULL;
}

static int load_ifaces(struct pks_export *x)
{
	struct pks *s = x->s;
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(s->db, "SELECT session, idx, obs_id, linktype, snaplen, name, pod"
				   " FROM interfaces ORDER BY session, idx", -1, &st, NULL);
	if (r != SQLITE_OK)
		return pks__db_err(s, r, "interfaces");
	int rc = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		struct x_iface *ni = realloc(x->ifs, (x->nifs + 1) * sizeof(*ni));
		if (!ni) {
			rc = pks__set_err(s, -ENOMEM, "out of memory");
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
		rc = pks__db_err(s, r, "interfaces");
	sqlite3_finalize(st);
	return rc;
}

/* The segments holding rows of wanted flows, oldest first packet first. */
static int load_segments(struct pks_export *x)
{
	struct pks *s = x->s;
	sqlite3_stmt *st;
	/* stores before schema 3 have no checksums */
	int has_crc = pks__query_int(s, "SELECT count(*) FROM pragma_table_info('segments') WHERE name='crc'", 0) > 0;
	int r = sqlite3_prepare_v2(s->db, has_crc ?
		"SELECT p.segment_id, g.session, g.file, g.state, coalesce(g.first_us, 0), g.bytes, g.crc"
		" FROM (SELECT DISTINCT segment_id FROM main.flow_packets"
		"       WHERE flow_id IN (SELECT id FROM temp.x_want)) p"
		" LEFT JOIN main.segments g ON g.id = p.segment_id"
		" ORDER BY coalesce(g.first_us, 0), p.segment_id" :
		"SELECT p.segment_id, g.session, g.file, g.state, coalesce(g.first_us, 0), g.bytes, NULL"
		" FROM (SELECT DISTINCT segment_id FROM main.flow_packets"
		"       WHERE flow_id IN (SELECT id FROM temp.x_want)) p"
		" LEFT JOIN main.segments g ON g.id = p.segment_id"
		" ORDER BY coalesce(g.first_us, 0), p.segment_id", -1, &st, NULL);
	if (r != SQLITE_OK)
		return pks__db_err(s, r, "export");
	int rc = 0;
	size_t cap = 0;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (x->nsegs == cap) {
			cap = cap ? 2 * cap : 64;
			struct x_meta *nm = realloc(x->segs, cap * sizeof(*nm));
			if (!nm) {
				rc = pks__set_err(s, -ENOMEM, "out of memory");
				break;
			}
			x->segs = nm;
		}
		struct x_meta *m = &x->segs[x->nsegs++];
		m->id = sqlite3_column_int64(st, 0);
		m->session = sqlite3_column_int64(st, 1);
		m->file = dup_col(st, 2);
		m->state = dup_col(st, 3);
		int64_t f = sqlite3_column_int64(st, 4), b = sqlite3_column_int64(st, 5);
		m->first_us = f > 0 ? (uint64_t)f : 0;
		m->bytes = b > 0 ? (uint64_t)b : 0;
		m->crc = NULL;
		m->ncrc = 0;
		const void *blob = sqlite3_column_blob(st, 6);
		size_t blen = (size_t)sqlite3_column_bytes(st, 6);
		/* trusted only when it covers the recorded size exactly */
		if (blob && blen % 4 == 0 && blen / 4 == (m->bytes + PKS_CRC_CHUNK - 1) / PKS_CRC_CHUNK &&
		    (m->crc = malloc(blen))) {
			memcpy(m->crc, blob, blen);
			m->ncrc = blen / 4;
		}
	}
	if (r != SQLITE_DONE && rc == 0)
		rc = pks__db_err(s, r, "export");
	sqlite3_finalize(st);
	return rc;
}

/* Opens a segment file and checks it starts with one of our SHBs. */
static int open_file(struct pks *s, struct x_seg *g)
{
	if (!g->file || !*g->file || strchr(g->file, '/')) {
		pks__note(s, "segment %" PRId64 ": bad file name in the index", g->id);
		return -1;
	}
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s", s->dir, g->file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		pks__note(s, "segment %s: %s (packets in it are missing)", path, strerror(errno));
		return -1;
	}
	struct stat stt;
	uint8_t hdr[12];
	uint32_t type, magic;
	if (fstat(fd, &stt) < 0 || pread(fd, hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr)) {
		pks__note(s, "segment %s: unreadable or empty (packets in it are missing)", path);
		close(fd);
		return -1;
	}
	memcpy(&type, hdr, 4);
	memcpy(&magic, hdr + 8, 4);
	if (type != PN_BT_SHB || magic != PN_BYTE_ORDER_MAGIC) {
		pks__note(s, "segment %s: not a pcapng file of this host's byte order", path);
		close(fd);
		return -1;
	}
	g->fd = fd;
	g->size = (uint64_t)stt.st_size;
	return 0;
}

static int ent_cmp(const void *a, const void *b)
{
	const struct x_ent *p = a, *q = b;
	return (p->off > q->off) - (p->off < q->off);
}

/* Adds the per-flow counts of a finished segment to x_want. */
static int flush_counts(struct pks_export *x, struct x_seg *g)
{
	struct pks *s = x->s;
	if (!x->upd) {
		int r = sqlite3_prepare_v2(s->db, "UPDATE temp.x_want SET packets = packets + ?2,"
					   " missing = missing + ?3, corrupt = corrupt + ?4, rows = rows + 1"
					   " WHERE ord = ?1", -1, &x->upd, NULL);
		if (r != SQLITE_OK)
			return pks__db_err(s, r, "export");
	}
	for (size_t i = 0; i < g->nflows; i++) {
		struct x_flow *f = &g->flows[i];
		sqlite3_reset(x->upd);
		sqlite3_bind_int64(x->upd, 1, f->ord);
		sqlite3_bind_int64(x->upd, 2, (int64_t)f->packets);
		sqlite3_bind_int64(x->upd, 3, (int64_t)f->missing);
		sqlite3_bind_int64(x->upd, 4, (int64_t)f->corrupt);
		int r = sqlite3_step(x->upd);
		if (r != SQLITE_DONE)
			return pks__db_err(s, r, "export");
	}
	return 0;
}

static int push_ent(struct x_seg *g, size_t *cap, uint64_t off, uint32_t flow)
{
	if (g->nents == *cap) {
		size_t ncap = *cap ? 2 * *cap : 1024;
		struct x_ent *ne = realloc(g->ents, ncap * sizeof(*ne));
		if (!ne)
			return -ENOMEM;
		g->ents = ne;
		*cap = ncap;
	}
	g->ents[g->nents++] = (struct x_ent){off, flow};
	return 0;
}

/* Reads the wanted flows' rows of segment m: their offsets, sorted. */
static int load_rows(struct pks_export *x, struct x_seg *g)
{
	struct pks *s = x->s;
	/* Walk whichever side is smaller and look the other up by its key: the
	 * wanted flows (x_want.id is UNIQUE) or the segment's rows (the primary key
	 * starts with segment_id). */
	char sql[64];
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM main.flow_packets WHERE segment_id=%" PRId64, g->id);
	int64_t nrows = pks__query_int(s, sql, 0);
	const char *q = (uint64_t)nrows > x->nwant ?
		"SELECT w.ord, w.comment, p.packets, p.offs FROM temp.x_want w CROSS JOIN main.flow_packets p"
		" WHERE p.segment_id = ?1 AND p.flow_id = w.id" :
		"SELECT w.ord, w.comment, p.packets, p.offs FROM main.flow_packets p CROSS JOIN temp.x_want w"
		" WHERE p.segment_id = ?1 AND w.id = p.flow_id";
	sqlite3_stmt *st;
	int r = sqlite3_prepare_v2(s->db, q, -1, &st, NULL);
	if (r != SQLITE_OK)
		return pks__db_err(s, r, "export");
	sqlite3_bind_int64(st, 1, g->id);
	int rc = 0;
	size_t fcap = 0, ecap = 0;
	uint64_t size_bound = g->fd >= 0 ? g->size / 32 + 1 : UINT64_MAX;
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (g->nflows == fcap) {
			fcap = fcap ? 2 * fcap : 64;
			struct x_flow *nf = realloc(g->flows, fcap * sizeof(*nf));
			if (!nf) {
				rc = pks__set_err(s, -ENOMEM, "out of memory");
				break;
			}
			g->flows = nf;
		}
		uint32_t fi = (uint32_t)g->nflows++;
		struct x_flow *f = &g->flows[fi];
		memset(f, 0, sizeof(*f));
		f->ord = sqlite3_column_int64(st, 0);
		const char *c = (const char *)sqlite3_column_text(st, 1);
		if (c && !(f->comment = strdup(c))) {
			rc = pks__set_err(s, -ENOMEM, "out of memory");
			break;
		}
		int64_t npk = sqlite3_column_int64(st, 2);
		const uint8_t *blob = sqlite3_column_blob(st, 3);
		size_t blen = (size_t)sqlite3_column_bytes(st, 3);
		if (npk < 0)
			npk = 0;
		if (g->fd < 0) {
			/* the segment is gone or unreadable: every packet is missing */
			f->missing += (uint64_t)npk;
			continue;
		}
		size_t pos = 0;
		uint64_t off = 0, d, got = 0, corrupt = 0;
		while (pos < blen) {
			if (pks__varint_get(blob, blen, &pos, &d) < 0) {
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
			if (got > size_bound) { /* more packets than the file can hold */
				corrupt++;
				break;
			}
			if ((rc = push_ent(g, &ecap, off, fi)) < 0) {
				pks__set_err(s, rc, "out of memory");
				break;
			}
		}
		if (rc < 0)
			break;
		/* A row that decodes to fewer offsets than it claims packets lost the
		 * rest of its blob.  A segment cannot hold more blocks than size / 32
		 * bytes: a count above that is itself damaged, not a real loss. */
		if (got < (uint64_t)npk) {
			uint64_t lost = (uint64_t)npk - got;
			corrupt += lost < size_bound ? lost : size_bound;
		}
		if (corrupt)
			pks__note(s, "segment %s: %" PRIu64 " bad index entries skipped", g->file, corrupt);
		f->corrupt += corrupt;
	}
	if (r != SQLITE_DONE && rc == 0)
		rc = pks__db_err(s, r, "export");
	sqlite3_finalize(st);
	if (rc == 0 && g->nents)
		qsort(g->ents, g->nents, sizeof(*g->ents), ent_cmp);
	return rc;
}

/* Maps the segment's pcapng interface ids to the session's interfaces. */
static int map_ifaces(struct pks_export *x, struct x_seg *g)
{
	for (size_t i = 0; i < x->nifs; i++) {
		struct x_iface *f = &x->ifs[i];
		if (f->session != g->session || f->idx < 0 || f->idx >= PKS_MAX_IFACES)
			continue;
		if ((uint32_t)f->idx >= g->nifmap) {
			uint32_t n = (uint32_t)f->idx + 1;
			uint32_t *m = realloc(g->ifmap, n * sizeof(*m));
			if (!m)
				return pks__set_err(x->s, -ENOMEM, "out of memory");
			memset(m + g->nifmap, 0, (n - g->nifmap) * sizeof(*m));
			g->ifmap = m;
			g->nifmap = n;
		}
		g->ifmap[f->idx] = (uint32_t)i + 1;
	}
	return 0;
}

/* Makes file bytes [off, off + len) available in the window, reading whole
 * chunks and checking each against its checksum once.  0, 1 when the file does
 * not have them, 2 when a chunk they lie in is damaged, or -ENOMEM. */
static int window(struct pks_export *x, struct x_seg *g, uint64_t off, size_t len)
{
	if (off >= g->buf_off && off - g->buf_off + len <= g->buf_len) {
		/* already read, and its chunks checked then: a damaged one stays
		 * damaged for every later packet in it, not only the first */
		for (uint64_t k = off / X_WINDOW; g->crc && k < g->ncrc && k * X_WINDOW < off + len; k++)
			if (g->chunk[k] == 2)
				return 2;
		return 0;
	}
	if (off > g->size || g->size - off < len)
		return 1;
	uint64_t start = off - off % X_WINDOW;
	uint64_t end = off + len;
	end = end % X_WINDOW ? end + (X_WINDOW - end % X_WINDOW) : end;
	if (end > g->size)
		end = g->size;
	size_t want = (size_t)(end - start);
	if (want > g->buf_cap) {
		uint8_t *nb = realloc(g->buf, want);
		if (!nb)
			return -ENOMEM;
		g->buf = nb;
		g->buf_cap = want;
	}
	ssize_t n = pread(g->fd, g->buf, want, (off_t)start);
	if (n < 0)
		n = 0;
	g->buf_off = start;
	g->buf_len = (size_t)n;
	if ((uint64_t)n < off - start + len)
		return 1;
	int damaged = 0;
	for (uint64_t k = start / X_WINDOW; g->crc && k < g->ncrc && k * X_WINDOW < end; k++) {
		uint64_t c0 = k * X_WINDOW, c1 = c0 + X_WINDOW < g->seg_bytes ? c0 + X_WINDOW : g->seg_bytes;
		if (!g->chunk[k]) {
			if (c1 > start + (uint64_t)n) /* the chunk is not all there: missing, not damaged */
				continue;
			uint32_t c = pks__crc32c(0, g->buf + (c0 - start), (size_t)(c1 - c0));
			g->chunk[k] = c == g->crc[k] ? 1 : 2;
			if (g->chunk[k] == 2)
				pks__note(x->s, "segment %s: bytes %" PRIu64 "..%" PRIu64 " are damaged (checksum"
					  " mismatch): the packets in them are not exported", g->file, c0, c1);
		}
		if (g->chunk[k] == 2 && c0 < off + len && off < c1)
			damaged = 1;
	}
	return damaged ? 2 : 0;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* The epb_flags option of a block, 0 when absent or malformed. */
static uint32_t block_flags(const uint8_t *blk, uint32_t blen, uint32_t caplen)
{
	size_t pos = PN_EPB_HDR_LEN + ((caplen + 3u) & ~3u), end = blen - 4;
	while (pos + 4 <= end) {
		uint16_t code, len;
		memcpy(&code, blk + pos, 2);
		memcpy(&len, blk + pos + 2, 2);
		if (code == 0)
			break;
		size_t vlen = ((size_t)len + 3u) & ~3u;
		if (pos + 4 + vlen > end)
			break;
		if (code == PN_OPT_EPB_FLAGS && len == 4)
			return rd32(blk + pos + 4);
		pos += 4 + vlen;
	}
	return 0;
}

/* Moves g to its next wanted packet that reads back well; 1 = has a head, 0 = no
 * more, < 0 error. */
static int advance(struct pks_export *x, struct x_seg *g)
{
	struct pks *s = x->s;
	g->has_head = 0;
	while (g->next < g->nents) {
		struct x_ent *e = &g->ents[g->next++];
		struct x_flow *f = &g->flows[e->flow];
		int w = window(x, g, e->off, PN_EPB_HDR_LEN);
		if (w < 0)
			return pks__set_err(s, w, "out of memory");
		if (w == 2) {
			f->corrupt++;
			continue;
		}
		if (w) {
			f->missing++;
			continue;
		}
		const uint8_t *h = g->buf + (e->off - g->buf_off);
		uint32_t type = rd32(h), blen = rd32(h + 4), if_id = rd32(h + 8);
		uint32_t caplen = rd32(h + 20), wirelen = rd32(h + 24);
		/* Our blocks carry few options; allow some anyway, but never a length
		 * that would make the window grow beyond a packet's worth. */
		if (type != PN_BT_EPB || blen % 4 || blen < PN_EPB_HDR_LEN + 4 || blen > X_BLOCK_MAX ||
		    caplen > PN_PACKET_MAX || caplen > blen - PN_EPB_HDR_LEN - 4 ||
		    if_id >= g->nifmap || !g->ifmap[if_id]) {
			if (!f->corrupt++)
				pks__note(s, "segment %s: bad block at offset %" PRIu64 " skipped", g->file, e->off);
			continue;
		}
		if ((w = window(x, g, e->off, blen)) < 0)
			return pks__set_err(s, w, "out of memory");
		if (w == 2) {
			f->corrupt++;
			continue;
		}
		if (w) {
			f->missing++; /* cut short: the rest of the file is not there */
			continue;
		}
		const uint8_t *blk = g->buf + (e->off - g->buf_off);
		if (rd32(blk + blen - 4) != blen) {
			if (!f->corrupt++)
				pks__note(s, "segment %s: bad block at offset %" PRIu64 " skipped", g->file, e->off);
			continue;
		}
		g->ts = (uint64_t)rd32(blk + 12) << 32 | rd32(blk + 16);
		g->data = blk + PN_EPB_HDR_LEN;
		g->caplen = caplen;
		g->wirelen = wirelen;
		g->flags = block_flags(blk, blen, caplen);
		g->iface = g->ifmap[if_id] - 1;
		g->hflow = f;
		g->has_head = 1;
		return 1;
	}
	return 0;
}

/* ---- the heap of segments being merged ---- */

static int heap_less(const struct x_seg *a, const struct x_seg *b)
{
	return a->ts != b->ts ? a->ts < b->ts : a->id < b->id;
}

static void heap_down(struct pks_export *x, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < x->nheap && heap_less(x->heap[l], x->heap[m]))
			m = l;
		if (r < x->nheap && heap_less(x->heap[r], x->heap[m]))
			m = r;
		if (m == i)
			return;
		struct x_seg *t = x->heap[i];
		x->heap[i] = x->heap[m];
		x->heap[m] = t;
		i = m;
	}
}

static int heap_push(struct pks_export *x, struct x_seg *g)
{
	if (x->nheap == x->heap_cap) {
		size_t ncap = x->heap_cap ? 2 * x->heap_cap : 8;
		struct x_seg **nh = realloc(x->heap, ncap * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		x->heap = nh;
		x->heap_cap = ncap;
	}
	size_t i = x->nheap++;
	x->heap[i] = g;
	while (i && heap_less(x->heap[i], x->heap[(i - 1) / 2])) {
		struct x_seg *t = x->heap[i];
		x->heap[i] = x->heap[(i - 1) / 2];
		x->heap[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
	return 0;
}

static int seg_done(struct pks_export *x, struct x_seg *g);

/* Opens the next segment of the list; it joins the merge when it has packets. */
static int open_next(struct pks_export *x)
{
	struct pks *s = x->s;
	struct x_meta *m = &x->segs[x->next_seg++];
	struct x_seg *g = calloc(1, sizeof(*g));
	if (!g)
		return pks__set_err(s, -ENOMEM, "out of memory");
	g->id = m->id;
	g->session = m->session;
	g->fd = -1;
	g->seg_bytes = m->bytes;
	if (m->crc && (g->chunk = calloc(m->ncrc, 1))) {
		g->crc = m->crc; /* the segment owns them now */
		g->ncrc = m->ncrc;
		m->crc = NULL;
	}
	g->file = m->file ? strdup(m->file) : NULL;
	int rc = 0;
	if (!m->file || (m->state && !strcmp(m->state, "deleted")))
		pks__note(s, "segment %" PRId64 " is gone: its packets are missing", m->id);
	else
		open_file(s, g); /* failure noted; its rows count as missing */
	if ((rc = map_ifaces(x, g)) < 0 || (rc = load_rows(x, g)) < 0 || (rc = advance(x, g)) < 0)
		goto fail;
	if (rc == 1) {
		if ((rc = heap_push(x, g)) < 0) {
			pks__set_err(s, rc, "out of memory");
			goto fail;
		}
		return 0;
	}
	return seg_done(x, g);
fail:
	x_seg_free(g);
	return rc;
}

static int declare_iface(struct pks_export *x, uint32_t i, uint32_t *out)
{
	struct x_iface *f = &x->ifs[i];
	if (f->out_id >= 0) {
		*out = (uint32_t)f->out_id;
		return 0;
	}
	/* The same observation point in another session is the same interface. */
	for (size_t j = 0; j < x->nifs; j++) {
		struct x_iface *o = &x->ifs[j];
		if (o->out_id >= 0 && o->obs_id == f->obs_id && o->linktype == f->linktype &&
		    ((!o->name && !f->name) || (o->name && f->name && !strcmp(o->name, f->name))) &&
		    ((!o->pod && !f->pod) || (o->pod && f->pod && !strcmp(o->pod, f->pod)))) {
			f->out_id = o->out_id;
			*out = (uint32_t)f->out_id;
			return 0;
		}
	}
	uint32_t id;
	int rc = pn_add_interface(x->w, x->rewrite ? x->rewrite_linktype : f->linktype, f->snaplen,
				  f->name, f->pod, &id);
	if (rc == -EPROTOTYPE)
		return pks__set_err(x->s, rc, "flows of different link types cannot share a pcap file;"
				    " use pcapng");
	if (rc < 0)
		return pks__set_err(x->s, rc, "output: %s", pn_errmsg(x->w)[0] ? pn_errmsg(x->w) : strerror(-rc));
	f->out_id = id;
	*out = id;
	return 0;
}

static int start(struct pks_export *x)
{
	struct pks *s = x->s;
	int rc;
	x->started = 1;
	if ((rc = pks__exec(s, "RELEASE x_adds")) < 0)
		return rc;
	if (!s->cfg.readonly && (rc = pks_flush(s)) < 0)
		return rc;
	/* From here every statement is its own transaction: an export streaming to
	 * a slow client must not hold a read snapshot of the index for its whole
	 * life (the writer's checkpoints could not reset the WAL meanwhile). */
	if ((rc = load_ifaces(x)) < 0 || (rc = load_segments(x)) < 0)
		return rc;
	return 0;
}

/* The flows' states, from what was read and the expired / lost tables. */
static int finish(struct pks_export *x)
{
	struct pks *s = x->s;
	int rc = pks__exec(s, s->has_lost ?
		"UPDATE temp.x_want SET expired = coalesce((SELECT packets FROM main.expired e"
		" WHERE e.flow_id = x_want.id), 0), lost = coalesce((SELECT packets FROM main.lost l"
		" WHERE l.flow_id = x_want.id), 0)" :
		"UPDATE temp.x_want SET expired = coalesce((SELECT packets FROM main.expired e"
		" WHERE e.flow_id = x_want.id), 0)");
	if (rc == 0 && (rc = pn_flush(x->w)) < 0)
		pks__set_err(s, rc, "output: %s", pn_errmsg(x->w));
	x->done = 1;
	return rc;
}

static int out_less(const struct x_out *a, const struct x_out *b)
{
	return a->ts != b->ts ? a->ts < b->ts : a->seq < b->seq;
}

static void ro_push(struct pks_export *x, struct x_out o)
{
	size_t i = x->nro++;
	x->ro[i] = o;
	while (i && out_less(&x->ro[i], &x->ro[(i - 1) / 2])) {
		struct x_out t = x->ro[i];
		x->ro[i] = x->ro[(i - 1) / 2];
		x->ro[(i - 1) / 2] = t;
		i = (i - 1) / 2;
	}
}

static struct x_out ro_pop(struct pks_export *x)
{
	struct x_out top = x->ro[0];
	x->ro[0] = x->ro[--x->nro];
	for (size_t i = 0;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < x->nro && out_less(&x->ro[l], &x->ro[m]))
			m = l;
		if (r < x->nro && out_less(&x->ro[r], &x->ro[m]))
			m = r;
		if (m == i)
			break;
		struct x_out t = x->ro[i];
		x->ro[i] = x->ro[m];
		x->ro[m] = t;
		i = m;
	}
	return top;
}

/* A segment whose packets were all read and written: its counts go to x_want. */
static int seg_done(struct pks_export *x, struct x_seg *g)
{
	int rc = flush_counts(x, g);
	x_seg_free(g);
	return rc;
}

/* Moves the merge's next packet into the reorder buffer (a copy: the segment's
 * window moves on).  1 = moved, 0 = the merge has no more, < 0 error. */
static int take_one(struct pks_export *x)
{
	struct pks *s = x->s;
	int rc;
	/* Segments join the merge when it reaches their first packet's time. */
	while (x->next_seg < x->nsegs && (!x->nheap || x->segs[x->next_seg].first_us <= x->heap[0]->ts))
		if ((rc = open_next(x)) < 0)
			return rc;
	if (!x->nheap)
		return 0;
	struct x_seg *g = x->heap[0];
	uint8_t *copy = malloc(g->caplen ? g->caplen : 1);
	if (!copy)
		return pks__set_err(s, -ENOMEM, "out of memory");
	memcpy(copy, g->data, g->caplen);
	ro_push(x, (struct x_out){.ts = g->ts, .seq = x->seq++, .g = g, .f = g->hflow, .iface = g->iface,
				  .caplen = g->caplen, .wirelen = g->wirelen, .flags = g->flags, .data = copy});
	x->ro_bytes += g->caplen;
	g->pending++;
	if ((rc = advance(x, g)) < 0)
		return rc;
	if (rc == 1) {
		heap_down(x, 0);
	} else {
		x->heap[0] = x->heap[--x->nheap];
		heap_down(x, 0);
		g->exhausted = 1;
	}
	return 1;
}

int pks_export_rewrite(struct pks_export *x, int linktype, pks_rewrite_fn fn, void *arg)
{
	if (x->started)
		return pks__set_err(x->s, -EINVAL, "export: rewrite after the first step");
	if (fn && !x->rewrite_buf && !(x->rewrite_buf = malloc(PKS_REWRITE_MAX)))
		return pks__set_err(x->s, -ENOMEM, "out of memory");
	x->rewrite = fn;
	x->rewrite_arg = arg;
	x->rewrite_linktype = linktype;
	return 0;
}

int pks_export_step(struct pks_export *x, size_t max_bytes)
{
	struct pks *s = x->s;
	int rc;
	if (x->failed)
		return x->failed;
	if (x->done)
		return 0;
	if (!x->started && (rc = start(x)) < 0)
		goto fail;
	if (!x->ro && !(x->ro = malloc(X_REORDER_PKTS * sizeof(*x->ro)))) {
		rc = pks__set_err(s, -ENOMEM, "out of memory");
		goto fail;
	}
	uint64_t start_off = pn_offset(x->w);
	for (;;) {
		rc = 0;
		while (x->nro < X_REORDER_PKTS && x->ro_bytes < X_REORDER_BYTES)
			if ((rc = take_one(x)) <= 0)
				break;
		if (rc < 0)
			goto fail;
		if (!x->nro) {
			if ((rc = finish(x)) < 0)
				goto fail;
			return 0;
		}
		struct x_out o = ro_pop(x);
		x->ro_bytes -= o.caplen;
		uint32_t if_id = 0;
		rc = declare_iface(x, o.iface, &if_id);
		if (rc == 0) {
			const uint8_t *data = o.data;
			uint32_t caplen = o.caplen, wirelen = o.wirelen;
			if (x->rewrite && x->rewrite(x->rewrite_arg, x->ifs[o.iface].linktype, o.data, o.caplen,
						     o.wirelen, x->rewrite_buf, PKS_REWRITE_MAX, &caplen,
						     &wirelen) == 1 && caplen <= PKS_REWRITE_MAX) {
				data = x->rewrite_buf;
			} else {
				caplen = o.caplen;
				wirelen = o.wirelen;
			}
			rc = pn_write_packet_us(x->w, if_id, o.ts, data, caplen, wirelen, o.flags,
						o.f->comment, NULL);
			if (rc < 0)
				pks__set_err(s, rc, "output: %s", pn_errmsg(x->w)[0] ? pn_errmsg(x->w) : strerror(-rc));
		}
		free(o.data);
		if (rc == 0)
			o.f->packets++;
		/* the segment goes once its last packet left the buffer, also on errors */
		if (!--o.g->pending && o.g->exhausted) {
			int r2 = seg_done(x, o.g);
			if (rc == 0)
				rc = r2;
		}
		if (rc < 0)
			goto fail;
		if (max_bytes && pn_offset(x->w) - start_off >= max_bytes)
			return 1;
	}
fail:
	x->failed = rc;
	return rc;
}

int pks_export_result(struct pks_export *x, struct pks_flow *f)
{
	struct pks *s = x->s;
	if (!x->done)
		return pks__set_err(s, -EINVAL, "export: results before the export is complete");
	if (!x->res) {
		int r = sqlite3_prepare_v2(s->db, "SELECT id, packets, missing + expired, corrupt, rows,"
					   " expired, lost FROM temp.x_want ORDER BY ord", -1, &x->res, NULL);
		if (r != SQLITE_OK)
			return pks__db_err(s, r, "export");
	}
	int r = sqlite3_step(x->res);
	if (r == SQLITE_DONE)
		return 0;
	if (r != SQLITE_ROW)
		return pks__db_err(s, r, "export");
	memset(f, 0, sizeof(*f));
	f->id = (uint64_t)sqlite3_column_int64(x->res, 0);
	f->packets = (uint64_t)sqlite3_column_int64(x->res, 1);
	f->missing = (uint64_t)sqlite3_column_int64(x->res, 2);
	f->corrupt = (uint64_t)sqlite3_column_int64(x->res, 3);
	int live = sqlite3_column_int64(x->res, 4) > 0;
	int exp = sqlite3_column_int64(x->res, 5) > 0, lost = sqlite3_column_int64(x->res, 6) > 0;
	f->state = live ? (exp || lost ? PKS_FLOW_PARTIAL : PKS_FLOW_STORED) :
		   exp ? PKS_FLOW_EXPIRED : lost ? PKS_FLOW_PARTIAL : PKS_FLOW_NONE;
	return 1;
}

void pks_export_totals(const struct pks_export *x, struct pks_export_totals *out)
{
	memset(out, 0, sizeof(*out));
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(x->s->db, "SELECT count(*), count(nullif(packets, 0)), sum(packets),"
			       " sum(missing + expired), sum(corrupt) FROM temp.x_want", -1, &st, NULL) != SQLITE_OK)
		return;
	if (sqlite3_step(st) == SQLITE_ROW) {
		out->flows = (uint64_t)sqlite3_column_int64(st, 0);
		out->flows_written = (uint64_t)sqlite3_column_int64(st, 1);
		out->packets = (uint64_t)sqlite3_column_int64(st, 2);
		out->missing = (uint64_t)sqlite3_column_int64(st, 3);
		out->corrupt = (uint64_t)sqlite3_column_int64(st, 4);
	}
	sqlite3_finalize(st);
}

void pks_export_close(struct pks_export *x)
{
	if (!x)
		return;
	struct pks *s = x->s;
	for (size_t i = 0; i < x->nheap; i++)
		x->heap[i]->exhausted = 0; /* freed below, not through the buffer */
	for (size_t i = 0; i < x->nro; i++) {
		struct x_seg *g = x->ro[i].g;
		free(x->ro[i].data);
		if (!--g->pending && g->exhausted)
			x_seg_free(g);
	}
	free(x->ro);
	for (size_t i = 0; i < x->nheap; i++)
		x_seg_free(x->heap[i]);
	free(x->heap);
	for (size_t i = 0; i < x->nsegs; i++) {
		free(x->segs[i].file);
		free(x->segs[i].state);
		free(x->segs[i].crc);
	}
	free(x->segs);
	for (size_t i = 0; i < x->nifs; i++) {
		free(x->ifs[i].name);
		free(x->ifs[i].pod);
	}
	free(x->ifs);
	free(x->rewrite_buf);
	sqlite3_finalize(x->add);
	sqlite3_finalize(x->upd);
	sqlite3_finalize(x->res);
	/* whatever savepoint is still open goes with the temporary table */
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_exec(s->db, "DROP TABLE IF EXISTS temp.x_want", NULL, NULL, NULL);
	free(x);
}

int pks_export(struct pks *s, struct pks_flow *flows, size_t n, struct pn_writer *w)
{
	struct pks_export *x;
	int rc = pks_export_open(s, w, &x);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = pks_export_add(x, flows[i].id, flows[i].comment);
	while (rc == 0 && (rc = pks_export_step(x, 0)) == 1)
		rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct pks_flow f;
		int r = pks_export_result(x, &f);
		if (r < 0)
			rc = r;
		if (r != 1)
			break;
		/* results come in the order added; duplicates were added once */
		for (size_t k = 0; k < n; k++)
			if (flows[k].id == f.id) {
				flows[k].state = f.state;
				flows[k].packets = f.packets;
				flows[k].missing = f.missing;
				flows[k].corrupt = f.corrupt;
			}
	}
	pks_export_close(x);
	return rc;
}
