/* libFuzzer target for the packet store's readers (store/pktstore): the index rows
 * (the LEB128 offset lists of flow_packets, the segment and interface rows) and the
 * segment reader of export and `podcap store check`.  An index or a segment may be
 * damaged by a crash, a disk or a hand: every byte of both is hostile.
 *
 * A template store (3 flows, 2 interfaces, one segment) is written once into a
 * temporary directory (/dev/shm when there is one).  Each input then becomes a
 * store: a copy of the template's index with one flow's row, the segment's row
 * and an interface's row changed as the input says, and a segment file made of
 * the input's bytes; the store is opened read-only (as `podcap export` opens it),
 * all flows (and one unknown) are exported to a sink that reads every byte, and
 * pks_check() runs over it.
 *
 * Input: a 12-byte header, then the offset blob of flow 1 and the segment file:
 *   0  flags: bit 0 store checksums that match the segment (so the block reader,
 *      not only the checksum test, sees damaged blocks), bit 1 segments.bytes =
 *      the file's size (else the value at 4), bit 2 export as pcap, bit 3 run
 *      pks_check, bit 4 the segment's state 'open' (no checksums trusted)
 *   1  flow 1's claimed packet count
 *   2  length of the blob (little-endian 16 bits)
 *   4  segments.bytes when flag bit 1 is clear (little-endian 32 bits)
 *   8  interface 0's idx (low byte, signed) and linktype (16 bits at 9..10)
 *   11 the segment's file name: 0 the template's, 1 "../x", 2 "", 3 a missing file
 * When FUZZ_PKTSTORE_SEED is set, the first call writes the template as an input
 * to that path (run-fuzz seeds its corpus so).  tests/store/regress/ is replayed
 * in CI through tests/decode/regress.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "pcapng.h"
#include "pktstore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHUNK (1u << 20) /* PKS_CRC_CHUNK */
uint32_t pks__crc32c(uint32_t crc, const void *buf, size_t len);

static char dir[256];
static char seg_name[256];
static uint8_t *tmpl_index, *tmpl_seg, *tmpl_blob;
static size_t tmpl_index_len, tmpl_seg_len, tmpl_blob_len;

static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		abort();
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
	if (!b || fread(b, 1, (size_t)n, f) != (size_t)n)
		abort();
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void spill(const char *path, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, buf, len) != (ssize_t)len))
		abort();
	close(fd);
}

/* Removes everything in dir but the directory. */
static void clear_dir(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char p[512];
	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
			unlink(p);
		}
	if (d)
		closedir(d);
}

static void remove_dir(void)
{
	clear_dir();
	rmdir(dir);
}

static void make_template(void)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(dir, sizeof(dir), "%s/podcap-fuzz-pks-%d", base, (int)getpid());
	mkdir(dir, 0700);
	clear_dir();
	atexit(remove_dir);
	struct pks_config cfg;
	pks_config_default(&cfg);
	cfg.reserve_bytes = 1;
	struct pks *s;
	char err[512];
	if (pks_open(dir, &cfg, &s, err, sizeof(err)) < 0) {
		fprintf(stderr, "fuzz_pktstore: %s\n", err);
		abort();
	}
	if (pks_add_interface(s, 1, 1, "veth0", "default/a") < 0 || pks_add_interface(s, 2, 101, "eth0", NULL) < 0)
		abort();
	uint8_t frame[200];
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (uint8_t)(i * 7);
	for (uint32_t k = 0; k < 24; k++) {
		uint32_t flow = 1 + k % 3, obs = 1 + (k % 3 == 2);
		uint32_t caplen = 40 + (k * 13) % 150;
		if (pks_put(s, obs, flow, k / 3, 1700000000000000ull + k * 1000, frame, caplen, caplen + 10,
			    k & 1 ? PN_EPB_INBOUND : PN_EPB_OUTBOUND) != 1)
			abort();
	}
	if (pks_close(s) < 0)
		abort();
	/* the template's parts */
	char p[512];
	DIR *d = opendir(dir);
	struct dirent *e;
	while (d && (e = readdir(d)))
		if (!strncmp(e->d_name, "segment-", 8))
			snprintf(seg_name, sizeof(seg_name), "%s", e->d_name);
	if (d)
		closedir(d);
	if (!seg_name[0])
		abort();
	snprintf(p, sizeof(p), "%s/%s", dir, seg_name);
	tmpl_seg = slurp(p, &tmpl_seg_len);
	snprintf(p, sizeof(p), "%s/index.db", dir);
	tmpl_index = slurp(p, &tmpl_index_len);
	sqlite3 *db;
	sqlite3_stmt *st;
	if (sqlite3_open(p, &db) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT offs FROM flow_packets WHERE flow_id = 1", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW)
		abort();
	tmpl_blob_len = (size_t)sqlite3_column_bytes(st, 0);
	tmpl_blob = malloc(tmpl_blob_len + 1);
	memcpy(tmpl_blob, sqlite3_column_blob(st, 0), tmpl_blob_len);
	sqlite3_finalize(st);
	sqlite3_close(db);

	const char *seed = getenv("FUZZ_PKTSTORE_SEED");
	if (seed) {
		size_t n = 12 + tmpl_blob_len + tmpl_seg_len;
		uint8_t *in = calloc(1, n);
		in[0] = 0x0b; /* checksums that match, bytes = size, check */
		in[1] = 8;
		in[2] = (uint8_t)tmpl_blob_len;
		in[3] = (uint8_t)(tmpl_blob_len >> 8);
		in[9] = 1; /* linktype 1 */
		memcpy(in + 12, tmpl_blob, tmpl_blob_len);
		memcpy(in + 12 + tmpl_blob_len, tmpl_seg, tmpl_seg_len);
		spill(seed, in, n);
		free(in);
	}
}

static int sink(void *arg, const uint8_t *buf, size_t len)
{
	uint64_t *sum = arg;
	for (size_t i = 0; i < len; i++)
		*sum += buf[i];
	return 0;
}

static void on_line(void *arg, const char *line)
{
	size_t *n = arg;
	*n += strlen(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!dir[0])
		make_template();
	if (size < 12)
		return 0;
	uint8_t flags = data[0];
	size_t blen = (size_t)data[2] | (size_t)data[3] << 8;
	if (blen > size - 12)
		blen = size - 12;
	const uint8_t *blob = data + 12, *seg = data + 12 + blen;
	size_t seg_len = size - 12 - blen;
	uint32_t bytes_field;
	memcpy(&bytes_field, data + 4, 4);

	clear_dir();
	char p[512];
	snprintf(p, sizeof(p), "%s/index.db", dir);
	spill(p, tmpl_index, tmpl_index_len);
	const char *fname = data[11] % 4 == 0 ? seg_name : data[11] % 4 == 1 ? "../x" : data[11] % 4 == 2 ? "" :
			    "segment-9-missing.pcapng";
	char sp[512];
	snprintf(sp, sizeof(sp), "%s/%s", dir, seg_name);
	spill(sp, seg, seg_len);

	/* the rows, as the input says */
	sqlite3 *db;
	sqlite3_stmt *st;
	if (sqlite3_open(p, &db) != SQLITE_OK)
		abort();
	sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
	if (sqlite3_prepare_v2(db, "UPDATE flow_packets SET offs = ?1, packets = ?2 WHERE flow_id = 1", -1, &st,
			       NULL) != SQLITE_OK)
		abort();
	sqlite3_bind_blob(st, 1, blen ? (const void *)blob : "", (int)blen, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 2, data[1]);
	sqlite3_step(st);
	sqlite3_finalize(st);
	uint64_t nbytes = flags & 2 ? seg_len : bytes_field;
	size_t ncrc = (size_t)((nbytes + CHUNK - 1) / CHUNK);
	uint32_t *crc = NULL;
	if (flags & 1) {
		crc = calloc(ncrc ? ncrc : 1, 4);
		for (size_t k = 0; k < ncrc; k++) {
			size_t c0 = k * CHUNK, c1 = c0 + CHUNK < nbytes ? c0 + CHUNK : (size_t)nbytes;
			crc[k] = c0 < seg_len ? pks__crc32c(0, seg + c0, (c1 < seg_len ? c1 : seg_len) - c0) : 0;
		}
	}
	if (sqlite3_prepare_v2(db, "UPDATE segments SET bytes = ?1, crc = ?2, file = ?3, state = ?4", -1, &st,
			       NULL) != SQLITE_OK)
		abort();
	sqlite3_bind_int64(st, 1, (int64_t)nbytes);
	if (crc)
		sqlite3_bind_blob(st, 2, crc, (int)(ncrc * 4), SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, 2);
	sqlite3_bind_text(st, 3, fname, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, flags & 0x10 ? "open" : "closed", -1, SQLITE_STATIC);
	sqlite3_step(st);
	sqlite3_finalize(st);
	free(crc);
	if (sqlite3_prepare_v2(db, "UPDATE interfaces SET idx = ?1, linktype = ?2 WHERE obs_id = 1", -1, &st, NULL) !=
	    SQLITE_OK)
		abort();
	sqlite3_bind_int64(st, 1, (int8_t)data[8]);
	sqlite3_bind_int64(st, 2, (int64_t)(data[9] | data[10] << 8));
	sqlite3_step(st);
	sqlite3_finalize(st);
	sqlite3_close(db);

	struct pks_config cfg;
	pks_config_default(&cfg);
	cfg.readonly = 1;
	struct pks *s;
	char err[512];
	if (pks_open(dir, &cfg, &s, err, sizeof(err)) < 0)
		return 0;
	struct pn_config pc;
	pn_config_default(&pc);
	pc.format = flags & 4 ? PN_FORMAT_PCAP : PN_FORMAT_PCAPNG;
	uint64_t sum = 0;
	struct pn_writer *w = pn_open_sink(sink, &sum, &pc);
	if (!w)
		abort();
	struct pks_flow fl[4] = {{.id = 1, .comment = "one"}, {.id = 2}, {.id = 3, .comment = "three"}, {.id = 77}};
	int rc = pks_export(s, fl, 4, w);
	pn_close(w);
	if (getenv("FUZZ_PKTSTORE_VERBOSE"))
		for (int i = 0; i < 4; i++)
			fprintf(stderr, "flow %" PRIu64 ": rc %d state %d packets %" PRIu64 " missing %" PRIu64
				" corrupt %" PRIu64 "\n", fl[i].id, rc, fl[i].state, fl[i].packets, fl[i].missing,
				fl[i].corrupt);
	if (rc == 0)
		for (int i = 0; i < 4; i++)
			if (fl[i].state < PKS_FLOW_NONE || fl[i].state > PKS_FLOW_EXPIRED ||
			    fl[i].packets > 24 || (i == 3 && fl[i].packets))
				abort();
	if (flags & 8) {
		struct pks_check ck;
		size_t chars = 0;
		rc = pks_check(s, on_line, &chars, &ck);
		if (rc == 0 && (ck.segments_bad || ck.packets_lost))
			abort(); /* damage found must make the check fail */
	}
	pks_close(s);
	return 0;
}
