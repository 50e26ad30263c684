/* Unit tests of store/: schema and migration, upsert, batching, queries,
 * retention, crash safety and every bad-input case.  Each test works in its own
 * temporary directory and ends with PRAGMA integrity_check on every database it
 * touched.  Usage: test_store [test-name]  (no name = all). */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "flowdb.h"
#include "query.h"
#include "fixture.h"

static const char *cur_test;

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "FAIL %s: %s:%d: %s\n", cur_test, __FILE__, __LINE__, #cond); \
	exit(1); } } while (0)
#define CHECK_OK(expr) do { int rc_ = (expr); if (rc_ != 0) { \
	fprintf(stderr, "FAIL %s: %s:%d: %s = %d (%s)\n", cur_test, __FILE__, __LINE__, #expr, \
		rc_, strerror(rc_ < 0 ? -rc_ : rc_)); exit(1); } } while (0)

static char tmpdir[256];

static void path_in(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void make_tmpdir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/podcap-store-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	CHECK(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", tmpdir, tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", tmpdir);
}

/* Opens the file with plain SQLite (not through the store) and runs the full
 * integrity check; every test calls this for each database it wrote. */
static void check_integrity(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(s) == SQLITE_ROW);
	const char *res = (const char *)sqlite3_column_text(s, 0);
	if (!res || strcmp(res, "ok")) {
		fprintf(stderr, "FAIL %s: integrity_check(%s): %s\n", cur_test, path, res ? res : "?");
		exit(1);
	}
	sqlite3_finalize(s);
	CHECK(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &s, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(s) == SQLITE_DONE);
	sqlite3_finalize(s);
	sqlite3_close(db);
}

/* One integer from SQL on a separate connection (what another process sees). */
static int64_t sql_i64(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "FAIL %s: %s: %s\n", cur_test, sql, sqlite3_errmsg(db));
		exit(1);
	}
	CHECK(sqlite3_step(s) == SQLITE_ROW);
	int64_t v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void sql_text(const char *path, const char *sql, char *buf, size_t len)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(s) == SQLITE_ROW);
	const char *v = (const char *)sqlite3_column_text(s, 0);
	snprintf(buf, len, "%s", v ? v : "(null)");
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void sql_exec(const char *path, const char *sql)
{
	sqlite3 *db;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) == SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "FAIL %s: %s: %s\n", cur_test, sql, msg ? msg : "?");
		exit(1);
	}
	sqlite3_close(db);
}

static struct fdb *open_ok(const char *path, uint32_t batch)
{
	struct fdb_config cfg;
	struct fdb *st;
	char err[512];
	fdb_config_default(&cfg);
	if (batch)
		cfg.batch = batch;
	int rc = fdb_open(path, &cfg, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "FAIL %s: fdb_open(%s) = %d: %s\n", cur_test, path, rc, err);
		exit(1);
	}
	return st;
}

/* The listing through query/ (what `podcap flows` uses), with the simple
 * filter terms. */
struct listq {
	const char *app, *ip;
	int port;
	uint64_t since_us;
	int64_t limit;
};

static char list_err[400]; /* the last listing's error */

static int list_flows(struct fdb *st, const struct listq *q, enum q_format fmt, FILE *f)
{
	/* the shorthands of `podcap flows`, through the filter language */
	char *text = q_shorthand(NULL, q->app, q->ip, q->port);
	struct q_filter *filter = NULL;
	struct q_error err;
	long n = q_parse(text, strlen(text), NULL, &filter, &err);
	if (n == 0) {
		struct q_select sel = {.filter = filter, .order = Q_ORDER_LAST_DESC, .limit = q->limit};
		if (q->since_us) {
			sel.range.has_from = 1;
			sel.range.from_us = (int64_t)q->since_us;
		}
		n = q_list_flows(st, NULL, &sel, fmt, q_write_file, f, NULL, &err);
	}
	if (n < 0)
		snprintf(list_err, sizeof(list_err), "%s", err.msg);
	q_filter_free(filter);
	free(text);
	return (int)n;
}

/* Runs list_flows into a memory buffer; returns the row count. */
static int query_buf(struct fdb *st, const struct listq *q, enum q_format fmt,
		     char **text)
{
	size_t len;
	FILE *f = open_memstream(text, &len);
	CHECK(f);
	int n = list_flows(st, q, fmt, f);
	fclose(f);
	return n;
}

static void query_default(struct listq *q)
{
	memset(q, 0, sizeof(*q));
	q->port = -1;
	q->limit = -1;
}

/* ---------------------------------------------------------------- tests */

static void test_create(void)
{
	char db[300];
	path_in(db, sizeof(db), "new.db");
	struct fdb *st = open_ok(db, 0);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "PRAGMA user_version") == FDB_SCHEMA_VERSION);
	CHECK(sql_i64(db, "PRAGMA application_id") == 0x50434150);
	CHECK(sql_i64(db, "PRAGMA auto_vacuum") == 2); /* INCREMENTAL */
	char mode[32];
	sql_text(db, "PRAGMA journal_mode", mode, sizeof(mode));
	CHECK(!strcmp(mode, "wal"));
	CHECK(sql_i64(db, "SELECT count(*) FROM sqlite_schema WHERE name IN "
		      "('flows','observation_points','meta')") == 3);
	/* The secondary indexes the queries use (see flow_indexes in store.c). */
	CHECK(sql_i64(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
		      "tbl_name = 'flows' AND name IN ('flows_last', 'flows_src_dport', 'flows_dst_dport',"
		      " 'flows_dport', 'flows_app', 'flows_pod', 'flows_outer_src',"
		      " 'flows_outer_dst', 'flows_src_pod', 'flows_dst_pod')") == 10);
	/* and nothing more: every index costs each insert */
	CHECK(sql_i64(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND "
		      "tbl_name = 'flows' AND sql IS NOT NULL") == 10);
	/* Reopen: no migration runs twice, data and version unchanged. */
	st = open_ok(db, 0);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "PRAGMA user_version") == FDB_SCHEMA_VERSION);
	check_integrity(db);

	/* An empty SQLite file at version 0 (no tables) is migrated. */
	char db0[300];
	path_in(db0, sizeof(db0), "v0.db");
	sql_exec(db0, "PRAGMA user_version = 0; PRAGMA page_size = 4096; VACUUM");
	st = open_ok(db0, 0);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db0, "PRAGMA user_version") == FDB_SCHEMA_VERSION);
	check_integrity(db0);

	/* Read-only open of a fresh database works and refuses writes. */
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	char err[512];
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	struct fl_record r;
	fx_record(&r, 1, "10.0.0.1", 1000, "10.0.0.2", 80, FX_T0_US);
	CHECK(fdb_put_flow(st, &r) == -EROFS);
	CHECK(strstr(fdb_errmsg(st), "read-only"));
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

static void test_obs_points(void)
{
	char db[300];
	path_in(db, sizeof(db), "obs.db");
	struct fdb *st = open_ok(db, 0);
	uint32_t a, b, c;
	CHECK_OK(fdb_obs_point(st, "veth1234", "in", "default/web-7d9", 1, &a));
	CHECK_OK(fdb_obs_point(st, "veth1234", "in", NULL, 1, &b));
	CHECK_OK(fdb_obs_point(st, "eth0", "out", NULL, 1, &c));
	CHECK(a == b && a != c && a > 0 && c > 0);
	CHECK(fdb_obs_point(st, "", "in", NULL, 1, &c) == -EINVAL);

	struct fl_record r;
	fx_record(&r, 7, "10.244.1.5", 40000, "10.244.2.9", 8080, FX_T0_US);
	r.obs_id = a;
	CHECK_OK(fdb_put_flow(st, &r));
	fx_record(&r, 8, "10.244.1.5", 40001, "10.244.2.9", 8080, FX_T0_US);
	r.obs_id = 0; /* unknown: stored as NULL */
	CHECK_OK(fdb_put_flow(st, &r));
	fx_record(&r, 9, "10.244.1.5", 40002, "10.244.2.9", 8080, FX_T0_US);
	r.obs_id = 999; /* never created: foreign key */
	CHECK(fdb_put_flow(st, &r) == -EINVAL);
	CHECK(strstr(fdb_errmsg(st), "observation point 999"));
	/* The failed row does not abort the batch. */
	CHECK_OK(fdb_commit(st));
	CHECK_OK(fdb_meta_set(st, "packet_store_dir", "/var/lib/podcap/segments"));
	CHECK_OK(fdb_meta_set(st, "packet_store_dir", "/srv/segments"));
	char v[64], small[4];
	CHECK_OK(fdb_meta_get(st, "packet_store_dir", v, sizeof(v)));
	CHECK(!strcmp(v, "/srv/segments"));
	CHECK(fdb_meta_get(st, "packet_store_dir", small, sizeof(small)) == -ENOSPC);
	CHECK(fdb_meta_get(st, "nope", v, sizeof(v)) == -ENOENT);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 2);
	char pod[64];
	sql_text(db, "SELECT pod FROM flows WHERE id = 7", pod, sizeof(pod));
	CHECK(!strcmp(pod, "default/web-7d9"));
	CHECK(sql_i64(db, "SELECT obs_id IS NULL FROM flows WHERE id = 8") == 1);
	check_integrity(db);

	/* The writer caches pods per observation point: a pod set later through
	 * fdb_obs_point reaches the next record of the flow. */
	st = open_ok(db, 0);
	uint32_t d, e;
	CHECK_OK(fdb_obs_point(st, "veth9", "in", NULL, 1, &d));
	fx_record(&r, 20, "10.244.1.6", 40000, "10.244.2.9", 8080, FX_T0_US);
	r.obs_id = d;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_obs_point(st, "veth9", "in", "default/late-pod", 1, &e));
	CHECK(d == e);
	fx_record(&r, 21, "10.244.1.6", 40001, "10.244.2.9", 8080, FX_T0_US);
	r.obs_id = d;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "SELECT pod IS NULL FROM flows WHERE id = 20") == 1);
	sql_text(db, "SELECT pod FROM flows WHERE id = 21", pod, sizeof(pod));
	CHECK(!strcmp(pod, "default/late-pod"));
}

static void test_upsert(void)
{
	char db[300];
	path_in(db, sizeof(db), "upsert.db");
	struct fdb *st = open_ok(db, 0);
	struct fl_record r;
	fx_record(&r, 42, "10.244.1.5", 40000, "10.244.2.9", 443, FX_T0_US + 5000000);
	r.end = FL_END_ACTIVE;
	r.pkts[0] = 3;
	snprintf(r.proto, sizeof(r.proto), "TLS");
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_commit(st));

	/* The periodic record grows; the final one ends it.  first_us arriving
	 * later than stored must not move the start. */
	r.pkts[0] = 30;
	r.last_us += 60000000;
	r.first_us += 7;
	snprintf(r.proto, sizeof(r.proto), "TLS.Facebook");
	snprintf(r.host, sizeof(r.host), "www.facebook.com");
	r.risk = (1ULL << 24) | (1ULL << 6); /* TLS_MISSING_SNI, SELFSIGNED — names from nDPI */
	CHECK_OK(fdb_put_flow(st, &r));
	r.end = FL_END_TCP;
	r.pkts[0] = 31;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_close(st));

	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 1);
	CHECK(sql_i64(db, "SELECT c2s_pkts FROM flows WHERE id = 42") == 31);
	CHECK(sql_i64(db, "SELECT first_us FROM flows WHERE id = 42") == (int64_t)FX_T0_US + 4000000);
	CHECK(sql_i64(db, "SELECT last_us FROM flows WHERE id = 42") == (int64_t)FX_T0_US + 65000000);
	char t[256];
	sql_text(db, "SELECT end_reason || '|' || master_name || '|' || app_name || '|' || "
		 "packets_state || '|' || host || '|' || src || '|' || tunnel FROM flows", t, sizeof(t));
	/* packets_state is the packet store's to say now: the column keeps its default */
	CHECK(!strcmp(t, "tcp|TLS|Facebook|none|www.facebook.com|10.244.1.5|none"));
	sql_text(db, "SELECT risk_names FROM flows", t, sizeof(t));
	CHECK(strchr(t, ',') && strlen(t) > 5);
	CHECK(sql_i64(db, "SELECT outer_src IS NULL AND vni IS NULL FROM flows") == 1);

	/* Addresses are written as inet_ntop would (the store formats IPv4 itself). */
	{
		static const char *const v4[] = {"0.0.0.0", "255.255.255.255", "100.10.0.9",
						 "1.20.199.250"};
		st = open_ok(db, 0);
		for (int k = 0; k < 4; k++) {
			fx_record(&r, 100 + (uint64_t)k, v4[k], 1, v4[3 - k], 2, FX_T0_US);
			CHECK_OK(fdb_put_flow(st, &r));
		}
		CHECK_OK(fdb_close(st));
		for (int k = 0; k < 4; k++) {
			char sql[96];
			snprintf(sql, sizeof(sql), "SELECT src || ' ' || dst FROM flows WHERE id = %d", 100 + k);
			sql_text(db, sql, t, sizeof(t));
			char want[64];
			snprintf(want, sizeof(want), "%s %s", v4[k], v4[3 - k]);
			CHECK(!strcmp(t, want));
		}
		sql_exec(db, "DELETE FROM flows WHERE id BETWEEN 100 AND 103");
	}

	/* A database of an older version keeps the packets_state its writer set:
	 * an upsert leaves it alone.  The same risk bitmap names the same way each
	 * time (the names are cached per bitmap). */
	sql_exec(db, "UPDATE flows SET packets_state = 'expired' WHERE id = 42");
	st = open_ok(db, 0);
	fx_record(&r, 43, "10.244.1.5", 40001, "10.244.2.9", 443, FX_T0_US);
	r.risk = (1ULL << 24) | (1ULL << 6);
	CHECK_OK(fdb_put_flow(st, &r));
	fx_record(&r, 44, "10.244.1.5", 40002, "10.244.2.9", 443, FX_T0_US);
	CHECK_OK(fdb_put_flow(st, &r));
	r.risk = (1ULL << 24) | (1ULL << 6);
	CHECK_OK(fdb_put_flow(st, &r));
	fx_record(&r, 42, "10.244.1.5", 40000, "10.244.2.9", 443, FX_T0_US + 5000000);
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_close(st));
	sql_text(db, "SELECT group_concat(packets_state, ',') FROM (SELECT packets_state FROM flows"
		 " WHERE id IN (42, 43, 44) ORDER BY id)", t, sizeof(t));
	CHECK(!strcmp(t, "expired,none,none"));
	CHECK(sql_i64(db, "SELECT count(DISTINCT risk_names) FROM flows WHERE id IN (42, 43, 44)") == 1);

	/* Ids at or above 2^63 (shard >= 128) round-trip as their bit pattern. */
	st = open_ok(db, 0);
	fx_record(&r, 0x8100000000000005ULL, "10.0.0.1", 1, "10.0.0.2", 2, FX_T0_US);
	CHECK_OK(fdb_put_flow(st, &r));
	uint64_t max;
	CHECK_OK(fdb_max_flow_id(st, &max));
	CHECK(max == 0x8100000000000005ULL);
	struct listq q;
	query_default(&q);
	q.limit = 1;
	q.port = 2;
	char *out = NULL;
	CHECK(query_buf(st, &q, Q_FMT_JSON, &out) == 1);
	CHECK(strstr(out, "\"id\":\"9295429630892703749\""));
	free(out);
	/* Wire data with terminal escapes never reaches the table raw. */
	fx_record(&r, 77, "10.0.0.1", 1, "10.0.0.7", 7777, FX_T0_US);
	snprintf(r.host, sizeof(r.host), "evil\x1b[2J\x1b]0;title\ahost");
	CHECK_OK(fdb_put_flow(st, &r));
	q.port = 7777;
	CHECK(query_buf(st, &q, Q_FMT_TABLE, &out) == 1);
	CHECK(!strchr(out, '\x1b') && !strchr(out, '\a') && strstr(out, "evil?[2J"));
	free(out);
	CHECK(query_buf(st, &q, Q_FMT_JSON, &out) == 1);
	CHECK(!strchr(out, '\x1b') && strstr(out, "evil\\u001b[2J"));
	free(out);
	/* DEL and C1 controls (UTF-8 C2 80..9F, which terminals obey too): '?' in the
	 * table and CSV, \u007f / \u0085 in JSON (SQLite's json_object left them
	 * raw, the table only replaced C0 and DEL); other UTF-8 passes */
	fx_record(&r, 78, "10.0.0.1", 1, "10.0.0.8", 7778, FX_T0_US);
	snprintf(r.host, sizeof(r.host), "c1\x7f\xc2\x85\xc2\x9b[2J\xc3\xa9x");
	CHECK_OK(fdb_put_flow(st, &r));
	q.port = 7778;
	CHECK(query_buf(st, &q, Q_FMT_TABLE, &out) == 1);
	CHECK(strstr(out, "c1???[2J\xc3\xa9x") && !strstr(out, "\xc2\x85"));
	free(out);
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	CHECK(strstr(out, "c1???[2J\xc3\xa9x"));
	free(out);
	CHECK(query_buf(st, &q, Q_FMT_JSON, &out) == 1);
	CHECK(strstr(out, "c1\\u007f\\u0085\\u009b[2J\xc3\xa9x") && !strchr(out, 0x7f));
	free(out);
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

static void test_batch(void)
{
	char db[300];
	path_in(db, sizeof(db), "batch.db");
	struct fdb *st = open_ok(db, 100);
	struct fl_record r;
	for (uint64_t i = 0; i < 250; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	/* Another connection sees whole batches only. */
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 200);
	/* So does a read-only store handle (what `podcap flows` uses), while the
	 * writer's transaction stays open. */
	{
		struct fdb_config rcfg;
		struct fdb *rd;
		char err[512];
		fdb_config_default(&rcfg);
		rcfg.readonly = 1;
		CHECK_OK(fdb_open(db, &rcfg, &rd, err, sizeof(err)));
		struct listq q;
		char *out = NULL;
		query_default(&q);
		CHECK(query_buf(rd, &q, Q_FMT_CSV, &out) == 200);
		free(out);
		CHECK_OK(fdb_close(rd));
	}
	CHECK_OK(fdb_commit(st));
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 250);
	CHECK_OK(fdb_commit(st)); /* nothing pending: fine */
	for (uint64_t i = 250; i < 260; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_close(st)); /* close commits */
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 260);
	uint64_t n;
	st = open_ok(db, 0);
	CHECK_OK(fdb_count_flows(st, &n));
	CHECK(n == 260);
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

static void fill_known(struct fdb *st)
{
	struct fl_record r[FX_KNOWN];
	uint32_t veth, eth0;
	CHECK_OK(fdb_obs_point(st, "veth-front", "in", "default/frontend-7d9", 1, &veth));
	CHECK_OK(fdb_obs_point(st, "eth0", "in", NULL, 1, &eth0));
	fx_known(r, veth, eth0);
	for (int i = 0; i < FX_KNOWN; i++)
		CHECK_OK(fdb_put_flow(st, &r[i]));
	CHECK_OK(fdb_commit(st));
}

static void test_query(void)
{
	char db[300];
	path_in(db, sizeof(db), "query.db");
	struct fdb *st = open_ok(db, 0);
	fill_known(st);
	struct listq q;
	char *out = NULL;

	query_default(&q);
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 4);
	/* Newest first: ids 1,2,3,4 in that order after the header. */
	char *l1 = strchr(out, '\n');
	CHECK(l1 && !strncmp(l1 + 1, "1,", 2));
	CHECK(strstr(out, "\"backend, \"\"quoted\"\"\""));
	free(out);

	q.app = "tls";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 2);
	free(out);
	q.app = "facebook";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.app = "TLS.Google";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.app = "tls.facebook";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.app = "DNS.Facebook";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 0);
	free(out);
	q.app = "TL"; /* parts match whole, not as a prefix */
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 0);
	free(out);
	q.app = "x' OR 1=1 --"; /* bound, never SQL */
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 0);
	free(out);

	query_default(&q);
	q.ip = "10.244.1.5";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 3);
	free(out);
	q.ip = "192.168.50.2"; /* outer only */
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.ip = "FD00:0::5"; /* normalised */
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.ip = "not-an-ip";
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == -EINVAL);
	CHECK(strstr(list_err, "address"));
	free(out);

	query_default(&q);
	q.port = 53;
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	q.port = 443;
	q.limit = 1;
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 1);
	free(out);
	query_default(&q);
	q.since_us = FX_T0_US + 30000000;
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 3);
	free(out);
	q.limit = 0;
	CHECK(query_buf(st, &q, Q_FMT_CSV, &out) == 0);
	free(out);

	query_default(&q);
	CHECK(query_buf(st, &q, Q_FMT_TABLE, &out) == 4);
	CHECK(strstr(out, "TIME (UTC)"));
	CHECK(strstr(out, "2024-10-01 12:00:50.000"));
	CHECK(strstr(out, "10.244.1.5:40000 -> 157.240.1.35:443"));
	CHECK(strstr(out, "[fd00::5]:42000 -> [2001:db8::1]:443"));
	CHECK(strstr(out, "TLS.Facebook"));
	CHECK(strstr(out, "1.500ms"));
	/* Aligned: the APP column starts at the same offset on every line. */
	char *line = out;
	long col = -1;
	int lines = 0;
	while (line && *line) {
		char *nl = strchr(line, '\n');
		char one[512];
		snprintf(one, sizeof(one), "%.*s", nl ? (int)(nl - line) : (int)strlen(line), line);
		char *app = strstr(one, "APP");
		if (!app) app = strstr(one, "TLS.");
		if (!app) app = strstr(one, "DNS");
		if (!app) app = strstr(one, "HTTP");
		CHECK(app);
		if (col < 0)
			col = app - one;
		CHECK(app - one == col);
		lines++;
		line = nl ? nl + 1 : NULL;
	}
	CHECK(lines == 5);
	free(out);

	CHECK(query_buf(st, &q, Q_FMT_JSON, &out) == 4);
	CHECK(out[0] == '[');
	CHECK(strstr(out, "\"proto_name\":\"TLS.Facebook\""));
	free(out);
	q.app = "nothing";
	CHECK(query_buf(st, &q, Q_FMT_JSON, &out) == 0);
	CHECK(!strcmp(out, "[]\n"));
	free(out);
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

static void test_retain_age(void)
{
	char db[300];
	path_in(db, sizeof(db), "age.db");
	struct fdb_config cfg;
	struct fdb *st;
	char err[512];
	fdb_config_default(&cfg);
	cfg.retain_age_s = 3600;
	cfg.auto_retain = 0; /* only the explicit fdb_retain calls below */
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	struct fl_record r;
	/* 25000 flows one second apart, so the age delete needs several chunks. */
	for (uint64_t i = 0; i < 25000; i++) {
		fx_synthetic(&r, i, 0);
		r.last_us = FX_T0_US + i * 1000000;
		r.first_us = r.last_us;
		CHECK_OK(fdb_put_flow(st, &r));
	}
	uint64_t deleted = 99;
	/* now = T0 + 24000 s: flows with last_us < T0 + 20400 s go. */
	uint64_t now = FX_T0_US / 1000000 + 24000;
	CHECK_OK(fdb_retain(st, now, &deleted));
	CHECK(deleted == 20400);
	uint64_t n;
	CHECK_OK(fdb_count_flows(st, &n));
	CHECK(n == 25000 - 20400);
	CHECK_OK(fdb_retain(st, now, &deleted));
	CHECK(deleted == 0);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "SELECT min(last_us) FROM flows") == (int64_t)FX_T0_US + 20400LL * 1000000);
	check_integrity(db);
}

static uint64_t file_bytes(const char *db)
{
	char wal[320];
	struct stat sb;
	uint64_t total = 0;
	if (stat(db, &sb) == 0)
		total += (uint64_t)sb.st_size;
	snprintf(wal, sizeof(wal), "%s-wal", db);
	if (stat(wal, &sb) == 0)
		total += (uint64_t)sb.st_size;
	return total;
}

static void test_retain_size(void)
{
	char db[300];
	path_in(db, sizeof(db), "size.db");
	struct fdb_config cfg;
	struct fdb *st;
	char err[512];
	fdb_config_default(&cfg);
	cfg.retain_bytes = 2 << 20;
	cfg.auto_retain = 0;
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	struct fl_record r;
	for (uint64_t i = 0; i < 30000; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	uint64_t before = file_bytes(db);
	CHECK(before > cfg.retain_bytes);
	uint64_t deleted = 0, n;
	CHECK_OK(fdb_retain(st, FX_T0_US / 1000000 + 100000, &deleted));
	CHECK_OK(fdb_count_flows(st, &n));
	CHECK(deleted > 0 && n > 0 && n + deleted == 30000);
	uint64_t after = file_bytes(db);
	fprintf(stderr, "retain_size: %llu bytes -> %llu bytes (cap %llu), %llu rows deleted, %llu kept\n",
		(unsigned long long)before, (unsigned long long)after,
		(unsigned long long)cfg.retain_bytes, (unsigned long long)deleted,
		(unsigned long long)n);
	CHECK(after <= cfg.retain_bytes);
	/* The oldest went: every kept flow is newer than every deleted one. */
	CHECK(sql_i64(db, "SELECT min(id) FROM flows") == (int64_t)deleted + 1);
	/* More writes then retention again: still under the cap. */
	for (uint64_t i = 30000; i < 40000; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_retain(st, 0, &deleted));
	CHECK(deleted > 0);
	CHECK(file_bytes(db) <= cfg.retain_bytes);

	/* A reader holding an old snapshot keeps the WAL from being reset.  The
	 * WAL's size must then not make retention delete everything: the data
	 * still goes under the cap, rows stay, and once the reader is gone the
	 * files follow. */
	sqlite3 *rd;
	sqlite3_stmt *rs;
	CHECK(sqlite3_open_v2(db, &rd, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	CHECK(sqlite3_exec(rd, "BEGIN", NULL, NULL, NULL) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(rd, "SELECT count(*) FROM flows", -1, &rs, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(rs) == SQLITE_ROW);
	sqlite3_finalize(rs);
	for (uint64_t i = 40000; i < 60000; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_retain(st, 0, &deleted));
	CHECK_OK(fdb_count_flows(st, &n));
	fprintf(stderr, "retain_size with a reader: %llu rows deleted, %llu kept, files %llu bytes\n",
		(unsigned long long)deleted, (unsigned long long)n,
		(unsigned long long)file_bytes(db));
	CHECK(deleted > 0 && n > 1000);
	CHECK(sql_i64(db, "PRAGMA page_count") * sql_i64(db, "PRAGMA page_size") <=
	      (int64_t)cfg.retain_bytes);
	CHECK(sqlite3_exec(rd, "COMMIT", NULL, NULL, NULL) == SQLITE_OK);
	sqlite3_close(rd);
	CHECK_OK(fdb_retain(st, 0, &deleted));
	CHECK(file_bytes(db) <= cfg.retain_bytes);
	CHECK_OK(fdb_close(st));
	CHECK(file_bytes(db) <= cfg.retain_bytes);
	check_integrity(db);
}

/* Retention run by the handle itself: at open (the database is over the cap
 * already) and on commits that reach a cap. */
static void test_retain_auto(void)
{
	char db[300];
	path_in(db, sizeof(db), "auto.db");
	struct fdb *st = open_ok(db, 0);
	struct fl_record r;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t now_us = (uint64_t)ts.tv_sec * 1000000;
	for (uint64_t i = 0; i < 30000; i++) {
		fx_synthetic(&r, i, 0);
		/* 10 flows of now, the rest 2 hours old */
		r.last_us = i >= 29990 ? now_us : now_us - 7200ULL * 1000000;
		r.first_us = r.last_us;
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_close(st));
	uint64_t before = file_bytes(db);

	struct fdb_config cfg;
	char err[512];
	fdb_config_default(&cfg);
	cfg.retain_bytes = 1 << 20;
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	fx_synthetic(&r, 40000, 0);
	r.last_us = now_us;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_commit(st));
	uint64_t n;
	CHECK_OK(fdb_count_flows(st, &n));
	fprintf(stderr, "retain_auto: %llu -> %llu bytes (cap %llu), %llu rows left\n",
		(unsigned long long)before, (unsigned long long)file_bytes(db),
		(unsigned long long)cfg.retain_bytes, (unsigned long long)n);
	CHECK(before > cfg.retain_bytes);
	CHECK(file_bytes(db) <= cfg.retain_bytes);
	CHECK(n > 0 && n < 30001);
	CHECK_OK(fdb_close(st));

	fdb_config_default(&cfg);
	cfg.retain_age_s = 3600;
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	fx_synthetic(&r, 40001, 0);
	r.last_us = now_us;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_commit(st));
	CHECK_OK(fdb_count_flows(st, &n));
	CHECK(n == 12); /* the 10 recent ones and the two just written */
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

/* A writer killed with SIGKILL in the middle of a batch: reopening finds every
 * committed row and none of the open batch, and an intact file. */
static void test_kill(void)
{
	char db[300];
	path_in(db, sizeof(db), "kill.db");
	int fds[2];
	CHECK(pipe(fds) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		struct fdb *st = open_ok(db, 1000);
		struct fl_record r;
		for (uint64_t i = 0; i < 3500; i++) {
			fx_synthetic(&r, i, 0);
			if (fdb_put_flow(st, &r))
				_exit(3);
		}
		/* 3 batches committed, 500 rows in the open transaction. */
		if (write(fds[1], "k", 1) != 1)
			_exit(4);
		/* Keep writing into the open batch while the kill arrives, but stop
		 * before it fills (1000 rows) and commits by itself. */
		for (uint64_t i = 3500; i < 3990; i++) {
			fx_synthetic(&r, i, 0);
			if (fdb_put_flow(st, &r))
				break;
		}
		for (;;)
			pause();
	}
	close(fds[1]);
	char c;
	CHECK(read(fds[0], &c, 1) == 1);
	CHECK(kill(pid, SIGKILL) == 0);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(fds[0]);
	/* The WAL of the dead writer is still there; opening recovers it. */
	struct fdb *st = open_ok(db, 0);
	uint64_t n;
	CHECK_OK(fdb_count_flows(st, &n));
	CHECK(n == 3000);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, "SELECT count(*) FROM flows WHERE id BETWEEN 1 AND 3000") == 3000);
	check_integrity(db);
}

/* Writers killed at arbitrary moments — inside a batch, a commit, a checkpoint
 * or a retention vacuum — over several rounds on the same file.  After each:
 * the file is intact and every row the writer reported committed is there. */
static void test_kill_random(void)
{
	char db[300];
	path_in(db, sizeof(db), "killr.db");
	unsigned seed = 777;
	uint64_t next_id = 1;
	for (int round = 0; round < 8; round++) {
		int with_cap = round % 2;
		int fds[2];
		CHECK(pipe(fds) == 0);
		pid_t pid = fork();
		CHECK(pid >= 0);
		if (pid == 0) {
			close(fds[0]);
			struct fdb_config cfg;
			struct fdb *st;
			char err[512];
			fdb_config_default(&cfg);
			cfg.batch = 64; /* what a 1 MiB cap allows (1/16 of it in 1 KiB rows) */
			cfg.auto_retain = with_cap;
			cfg.retain_bytes = with_cap ? 1 << 20 : 0;
			if (fdb_open(db, &cfg, &st, err, sizeof(err)))
				_exit(3);
			struct fl_record r;
			for (uint64_t id = next_id;; id++) {
				fx_synthetic(&r, id - 1, 0);
				if (fdb_put_flow(st, &r))
					_exit(4);
				if (id % 64 == 0) {
					/* the batch just committed: tell the parent */
					if (write(fds[1], &id, sizeof(id)) != sizeof(id))
						_exit(5);
				}
			}
		}
		close(fds[1]);
		/* Let it run a little: wait for a few commits, then a random delay. */
		uint64_t committed = next_id - 1, v;
		int commits = 0;
		while (commits < 3 && read(fds[0], &v, sizeof(v)) == sizeof(v)) {
			committed = v;
			commits++;
		}
		usleep((useconds_t)(rand_r(&seed) % 30000));
		CHECK(kill(pid, SIGKILL) == 0);
		int status;
		CHECK(waitpid(pid, &status, 0) == pid);
		CHECK(WIFSIGNALED(status));
		while (read(fds[0], &v, sizeof(v)) == sizeof(v))
			committed = v;
		close(fds[0]);
		check_integrity(db);
		int64_t max = sql_i64(db, "SELECT coalesce(max(id), 0) FROM flows");
		CHECK((uint64_t)max >= committed);
		if (!with_cap && round == 0)
			CHECK(sql_i64(db, "SELECT count(*) FROM flows") == max);
		next_id = (uint64_t)max + 1;
	}
	fprintf(stderr, "kill_random: %llu flows written over 8 killed writers\n",
		(unsigned long long)next_id - 1);
	check_integrity(db);
}

static int open_fails(const char *path, int readonly, int want_err, const char *want_msg)
{
	struct fdb_config cfg;
	struct fdb *st = (struct fdb *)0x1;
	char err[512] = "";
	fdb_config_default(&cfg);
	cfg.readonly = readonly;
	int rc = fdb_open(path, &cfg, &st, err, sizeof(err));
	fprintf(stderr, "  %s: %d %s\n", path, rc, err);
	CHECK(rc < 0 && st == NULL);
	if (want_err)
		CHECK(rc == want_err);
	if (want_msg && !strstr(err, want_msg)) {
		fprintf(stderr, "FAIL %s: message '%s' lacks '%s'\n", cur_test, err, want_msg);
		exit(1);
	}
	return rc;
}

static void make_db(const char *path, uint64_t rows)
{
	struct fdb *st = open_ok(path, 0);
	struct fl_record r;
	for (uint64_t i = 0; i < rows; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_close(st));
	/* Fold the WAL into the file so damage to the file is damage to data. */
	sql_exec(path, "PRAGMA wal_checkpoint(TRUNCATE)");
	check_integrity(path);
}

static void copy_file(const char *from, const char *to, off_t len)
{
	char cmd[800];
	snprintf(cmd, sizeof(cmd), "head -c %lld '%s' > '%s'", (long long)len, from, to);
	CHECK(system(cmd) == 0);
}

static void test_bad_input(void)
{
	char p[300], good[300];

	/* Not a database at all. */
	path_in(p, sizeof(p), "text.db");
	FILE *f = fopen(p, "w");
	CHECK(f);
	for (int i = 0; i < 100; i++)
		fprintf(f, "this is a text file, not a database %d\n", i);
	fclose(f);
	open_fails(p, 0, -EBADMSG, "not a database");
	open_fails(p, 1, -EBADMSG, "not a database");
	/* A file shorter than a header. */
	path_in(p, sizeof(p), "short.db");
	f = fopen(p, "w");
	CHECK(f);
	fputs("SQLite", f);
	fclose(f);
	open_fails(p, 0, -EBADMSG, "not a database");

	path_in(good, sizeof(good), "good.db");
	make_db(good, 20000);
	struct stat sb;
	CHECK(stat(good, &sb) == 0);

	/* Truncated to half. */
	path_in(p, sizeof(p), "trunc.db");
	copy_file(good, p, sb.st_size / 2);
	open_fails(p, 0, -EBADMSG, "truncated");
	open_fails(p, 1, -EBADMSG, "truncated");

	/* Corrupt: garbage over the b-tree pages but header intact.  Either open
	 * fails or the query does; never a crash, never success with garbage. */
	path_in(p, sizeof(p), "corrupt.db");
	copy_file(good, p, sb.st_size);
	int fd = open(p, O_WRONLY);
	CHECK(fd >= 0);
	char junk[4096];
	memset(junk, 0xa5, sizeof(junk));
	for (off_t off = 4096; off < sb.st_size; off += 3 * 4096)
		CHECK(pwrite(fd, junk, sizeof(junk), off) == (ssize_t)sizeof(junk));
	close(fd);
	{
		struct fdb_config cfg;
		struct fdb *st;
		char err[512] = "";
		fdb_config_default(&cfg);
		int rc = fdb_open(p, &cfg, &st, err, sizeof(err));
		if (rc == 0) {
			struct listq q;
			char *out = NULL;
			query_default(&q);
			q.port = 443;
			rc = query_buf(st, &q, Q_FMT_JSON, &out);
			free(out);
			fprintf(stderr, "  corrupt query: %d %s\n", rc, fdb_errmsg(st));
			CHECK(rc == -EBADMSG);
			CHECK(strstr(fdb_errmsg(st), "malformed"));
			fdb_close(st);
		} else {
			fprintf(stderr, "  corrupt open: %d %s\n", rc, err);
			CHECK(rc == -EBADMSG);
			CHECK(strstr(err, "malformed") || strstr(err, "corrupt"));
		}
	}

	/* Newer schema: refused, and left exactly as it was. */
	path_in(p, sizeof(p), "newer.db");
	copy_file(good, p, sb.st_size);
	sql_exec(p, "PRAGMA user_version = 99");
	open_fails(p, 0, -ENOTSUP, "schema version 99 is newer");
	open_fails(p, 1, -ENOTSUP, "schema version 99 is newer");
	CHECK(sql_i64(p, "PRAGMA user_version") == 99);
	check_integrity(p);

	/* Somebody else's SQLite database: never migrated into ours. */
	path_in(p, sizeof(p), "other.db");
	sql_exec(p, "CREATE TABLE t(x); INSERT INTO t VALUES (1)");
	open_fails(p, 0, -ENOTSUP, "not a podcap database");
	CHECK(sql_i64(p, "SELECT count(*) FROM sqlite_schema") == 1);
	sql_exec(p, "PRAGMA application_id = 1234");
	open_fails(p, 0, -ENOTSUP, "not a podcap database");
	check_integrity(p);

	/* Missing file, read-only open. */
	path_in(p, sizeof(p), "missing.db");
	open_fails(p, 1, -ENOENT, "cannot open");
	CHECK(access(p, F_OK) != 0);
	/* A directory where the file should be. */
	path_in(p, sizeof(p), "dir.db");
	CHECK(mkdir(p, 0755) == 0);
	open_fails(p, 0, -EBADMSG, "not a regular file");
	/* An empty path. */
	open_fails("", 0, -EINVAL, "no database path");
	check_integrity(good);
}

/* Many damaged copies of a good database: random bytes overwritten, or pages
 * cut off.  Every call either works or fails with a message; none crashes
 * (the sanitizer build runs this too). */
static void test_corrupt_many(void)
{
	char good[300], p[300];
	path_in(good, sizeof(good), "good.db");
	make_db(good, 3000);
	struct stat sb;
	CHECK(stat(good, &sb) == 0);
	unsigned seed = 12345;
	int opened = 0, refused = 0;
	for (int round = 0; round < 40; round++) {
		path_in(p, sizeof(p), "damaged.db");
		unlink(p);
		off_t len = sb.st_size;
		if (round % 4 == 3)
			len = (off_t)(rand_r(&seed) % (unsigned)sb.st_size);
		copy_file(good, p, len);
		int fd = open(p, O_WRONLY);
		CHECK(fd >= 0);
		int hits = round % 4 == 3 ? 0 : 1 + rand_r(&seed) % 64;
		for (int h = 0; h < hits && len > 0; h++) {
			uint8_t junk[8];
			for (size_t k = 0; k < sizeof(junk); k++)
				junk[k] = (uint8_t)rand_r(&seed);
			off_t off = (off_t)(rand_r(&seed) % (unsigned)len);
			/* Spare the 100-byte file header in most rounds so SQLite goes
			 * further than "not a database". */
			if (off < 100 && round % 5)
				off += 100;
			CHECK(pwrite(fd, junk, 1 + rand_r(&seed) % sizeof(junk), off) >= 0);
		}
		close(fd);
		struct fdb_config cfg;
		struct fdb *st;
		char err[512] = "";
		fdb_config_default(&cfg);
		cfg.batch = 100;
		cfg.retain_bytes = 64 << 10;
		int rc = fdb_open(p, &cfg, &st, err, sizeof(err));
		if (rc) {
			CHECK(rc < 0 && err[0]);
			refused++;
			continue;
		}
		opened++;
		FILE *devnull = fopen("/dev/null", "w");
		CHECK(devnull);
		struct listq q;
		query_default(&q);
		for (int fmt = Q_FMT_TABLE; fmt <= Q_FMT_CSV; fmt++) {
			rc = list_flows(st, &q, (enum q_format)fmt, devnull);
			CHECK(rc >= 0 || fdb_errmsg(st)[0]);
		}
		q.ip = "10.244.0.5";
		q.app = "tls";
		rc = list_flows(st, &q, Q_FMT_JSON, devnull);
		CHECK(rc >= 0 || fdb_errmsg(st)[0]);
		fclose(devnull);
		struct fl_record r;
		for (uint64_t i = 0; i < 250; i++) {
			fx_synthetic(&r, i * 7, 0);
			rc = fdb_put_flow(st, &r);
			CHECK(rc == 0 || fdb_errmsg(st)[0]);
		}
		uint64_t n;
		rc = fdb_retain(st, 0, &n);
		CHECK(rc == 0 || fdb_errmsg(st)[0]);
		fdb_close(st);
	}
	fprintf(stderr, "corrupt_many: %d opened, %d refused\n", opened, refused);
	CHECK(refused > 0);
	check_integrity(good);
}

/* A full file system: the write that does not fit fails with -ENOSPC and a
 * message, the handle stays usable, and the file keeps every committed row.
 * Needs root for a small private tmpfs; skipped otherwise. */
static void test_disk_full(void)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		char mnt[300], db[320];
		path_in(mnt, sizeof(mnt), "full");
		CHECK(mkdir(mnt, 0755) == 0);
		if (geteuid() != 0 || unshare(CLONE_NEWNS) != 0 ||
		    mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
		    mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
			fprintf(stderr, "SKIP disk_full: needs root for a private tmpfs (%s)\n",
				strerror(errno));
			_exit(77);
		}
		snprintf(db, sizeof(db), "%s/full.db", mnt);
		/* A filler file stands for "the rest of the node's disk". */
		char filler[340];
		snprintf(filler, sizeof(filler), "%s/filler", mnt);
		FILE *f = fopen(filler, "w");
		CHECK(f);
		static char zeros[256 << 10];
		CHECK(fwrite(zeros, 1, sizeof(zeros), f) == sizeof(zeros));
		CHECK(fclose(f) == 0);
		struct fdb_config cfg;
		struct fdb *st;
		char err[512];
		fdb_config_default(&cfg);
		cfg.batch = 100;
		CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
		struct fl_record r;
		uint64_t committed = 0, i;
		int rc = 0;
		for (i = 0; i < 100000; i++) {
			fx_synthetic(&r, i, 0);
			rc = fdb_put_flow(st, &r);
			if (rc)
				break;
			if ((i + 1) % 100 == 0)
				committed = i + 1;
		}
		fprintf(stderr, "  disk full after %llu committed rows: %d %s\n",
			(unsigned long long)committed, rc, fdb_errmsg(st));
		CHECK(rc == -ENOSPC);
		CHECK(strstr(fdb_errmsg(st), "full"));
		CHECK(committed > 0);
		/* Still usable for reads, and nothing committed was lost. */
		uint64_t n;
		CHECK_OK(fdb_count_flows(st, &n));
		CHECK(n == committed);
		check_integrity(db);
		/* Space comes back: the same handle writes again (the rows of the
		 * failed batch are gone, as reported; later rows go in). */
		CHECK(unlink(filler) == 0);
		for (uint64_t k = 0; k < 150; k++) {
			fx_synthetic(&r, 500000 + k, 0);
			CHECK_OK(fdb_put_flow(st, &r));
		}
		CHECK_OK(fdb_close(st));
		check_integrity(db);
		CHECK(sql_i64(db, "SELECT count(*) FROM flows") == (int64_t)committed + 150);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		printf("SKIP disk_full\n");
		exit(77);
	}
	CHECK(WEXITSTATUS(status) == 0);
}

/* Permission cases; root ignores permissions, so when run as root the check
 * runs in a child that has dropped to nobody. */
static void test_permissions(void)
{
	if (chmod(tmpdir, 0777) != 0)
		CHECK(0);
	char good[300];
	path_in(good, sizeof(good), "perm.db");
	make_db(good, 100);
	CHECK(chown(good, 65534, 65534) == 0 || geteuid() != 0);
	char wal[320], shm[320];
	snprintf(wal, sizeof(wal), "%s-wal", good);
	snprintf(shm, sizeof(shm), "%s-shm", good);
	unlink(wal);
	unlink(shm);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (geteuid() == 0 &&
		    (setgroups(0, NULL) || setgid(65534) || setuid(65534))) {
			fprintf(stderr, "cannot drop privileges\n");
			_exit(77);
		}
		if (access(tmpdir, W_OK | X_OK) != 0) {
			fprintf(stderr, "nobody cannot use %s (set TMPDIR)\n", tmpdir);
			_exit(77);
		}
		char p[300], ro[300];
		/* A read-only directory: cannot create the file there. */
		path_in(ro, sizeof(ro), "rodir");
		CHECK(mkdir(ro, 0555) == 0);
		path_in(p, sizeof(p), "rodir/new.db");
		open_fails(p, 0, -EACCES, "cannot open");
		CHECK(access(p, F_OK) != 0);
		/* A read-only database file. */
		CHECK(chmod(good, 0444) == 0);
		open_fails(good, 0, -EACCES, "read-only");
		/* Readonly open of it works (WAL needs -shm next to it: the dir is
		 * writable here). */
		struct fdb_config cfg;
		struct fdb *st;
		char err[512];
		fdb_config_default(&cfg);
		cfg.readonly = 1;
		CHECK_OK(fdb_open(good, &cfg, &st, err, sizeof(err)));
		uint64_t n;
		CHECK_OK(fdb_count_flows(st, &n));
		CHECK(n == 100);
		fdb_close(st);
		/* A writable db in a read-only directory: WAL files cannot be made. */
		char p2[300];
		path_in(p2, sizeof(p2), "rodir/rw.db");
		CHECK(chmod(ro, 0755) == 0);
		make_db(p2, 10);
		snprintf(wal, sizeof(wal), "%s-wal", p2);
		snprintf(shm, sizeof(shm), "%s-shm", p2);
		unlink(wal);
		unlink(shm);
		CHECK(chmod(ro, 0555) == 0);
		open_fails(p2, 0, 0, "");
		CHECK(chmod(ro, 0755) == 0);
		check_integrity(p2);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		fprintf(stderr, "SKIP permissions: cannot drop privileges\n");
		return;
	}
	CHECK(WEXITSTATUS(status) == 0);
	chmod(good, 0644);
	check_integrity(good);
}

#define N_FLOW_INDEXES_SQL "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND " \
	"tbl_name = 'flows' AND sql IS NOT NULL"

/* fdb_config.defer_indexes: an empty database is loaded without secondary
 * indexes, which fdb_close builds; a writer that dies first leaves them to the
 * next read-write open; a database with flows keeps its indexes. */
static void test_defer(void)
{
	char db[300];
	path_in(db, sizeof(db), "defer.db");
	struct fdb_config cfg;
	struct fdb *st;
	char err[512];
	fdb_config_default(&cfg);
	cfg.batch = 100;
	cfg.defer_indexes = 1;
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	struct fl_record r;
	for (uint64_t i = 0; i < 250; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	/* only the partial indexes, live while few rows fill them */
	CHECK(sql_i64(db, N_FLOW_INDEXES_SQL) == 5);
	CHECK(sql_i64(db, N_FLOW_INDEXES_SQL " AND sql NOT LIKE '%WHERE%'") == 0);
	/* Queries work meanwhile (they scan). */
	CHECK(sql_i64(db, "SELECT count(*) FROM flows WHERE src = '10.244.0.5'") == 1);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, N_FLOW_INDEXES_SQL) == 10);
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 250);
	check_integrity(db);

	/* Not empty any more: the indexes stay while writing. */
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	CHECK(sql_i64(db, N_FLOW_INDEXES_SQL) == 10);
	fx_synthetic(&r, 300, 0);
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db, N_FLOW_INDEXES_SQL) == 10);

	/* Retention needs the last_us index: it builds the deferred ones. */
	char db3[300];
	path_in(db3, sizeof(db3), "defer3.db");
	CHECK_OK(fdb_open(db3, &cfg, &st, err, sizeof(err)));
	fx_synthetic(&r, 1, 0);
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_commit(st));
	CHECK(sql_i64(db3, N_FLOW_INDEXES_SQL) == 5);
	uint64_t deleted;
	CHECK_OK(fdb_retain(st, (uint64_t)time(NULL), &deleted));
	CHECK(deleted == 0);
	CHECK(sql_i64(db3, N_FLOW_INDEXES_SQL) == 10);
	CHECK_OK(fdb_close(st));

	/* A deferred writer that exits without fdb_close (as if killed after a
	 * commit): the next read-write open builds the indexes. */
	char db2[300];
	path_in(db2, sizeof(db2), "defer2.db");
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (fdb_open(db2, &cfg, &st, err, sizeof(err)))
			_exit(2);
		for (uint64_t i = 0; i < 150; i++) {
			fx_synthetic(&r, i, 0);
			if (fdb_put_flow(st, &r))
				_exit(3);
		}
		_exit(fdb_commit(st) ? 4 : 0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(sql_i64(db2, N_FLOW_INDEXES_SQL) == 5);
	st = open_ok(db2, 0);
	CHECK(sql_i64(db2, N_FLOW_INDEXES_SQL) == 10);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db2, "SELECT count(*) FROM flows") == 150);
	check_integrity(db2);

	/* A deferred load whose rows mostly fill a partial index's column (all
	 * tunnelled here): that index is dropped during the load and built at
	 * the end with the others; the one no row fills stays live throughout. */
	char db4[300];
	path_in(db4, sizeof(db4), "defer4.db");
	CHECK_OK(fdb_open(db4, &cfg, &st, err, sizeof(err)));
	for (uint64_t i = 0; i < 3000; i++) {
		fx_synthetic(&r, i, 0);
		r.tunnel = DC_TUN_VXLAN;
		r.outer.family = 4;
		r.outer.src[0] = 192, r.outer.src[1] = 168, r.outer.src[2] = 50, r.outer.src[3] = (uint8_t)(i % 7 + 1);
		r.outer.dst[0] = 192, r.outer.dst[1] = 168, r.outer.dst[2] = 50, r.outer.dst[3] = 100;
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	CHECK(sql_i64(db4, N_FLOW_INDEXES_SQL " AND name = 'flows_outer_src'") == 0);
	CHECK(sql_i64(db4, N_FLOW_INDEXES_SQL " AND name = 'flows_pod'") == 1);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db4, N_FLOW_INDEXES_SQL) == 10);
	CHECK(sql_i64(db4, "SELECT count(*) FROM flows INDEXED BY flows_outer_src WHERE outer_src = '192.168.50.3'")
	      == 3000 / 7 + (3000 % 7 > 2));
	check_integrity(db4);
}

/* The rollup equals a GROUP BY over the flows: after inserts, periodic records
 * that move flows to later minutes and other keys, final records, retention,
 * a deferred load and a killed deferred load. */
static void rollup_matches(const char *db, const char *what)
{
	static const char *const keys[3] = {"coalesce(proto_name, '')", "coalesce(category, '')",
					    "coalesce(CAST(obs_id AS TEXT), '')"};
	for (int d = 0; d < 3; d++) {
		char sql[1024];
		/* rows of one side not equal in the other, both ways */
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM (SELECT (last_us / 60000000) * 60000000 AS b, %s AS k, count(*) AS f,"
			 " sum(c2s_pkts + s2c_pkts) AS p, sum(c2s_bytes + s2c_bytes) AS y FROM flows GROUP BY b, k"
			 " EXCEPT SELECT bucket_us, key, flows, packets, bytes FROM rollup WHERE dim = %d AND flows != 0)",
			 keys[d], d);
		int64_t a = sql_i64(db, sql);
		snprintf(sql, sizeof(sql),
			 "SELECT count(*) FROM (SELECT bucket_us, key, flows, packets, bytes FROM rollup WHERE dim = %d"
			 " AND (flows != 0 OR packets != 0 OR bytes != 0) EXCEPT SELECT (last_us / 60000000) * 60000000 AS b,"
			 " %s AS k, count(*), sum(c2s_pkts + s2c_pkts), sum(c2s_bytes + s2c_bytes) FROM flows GROUP BY b, k)",
			 d, keys[d]);
		int64_t b = sql_i64(db, sql);
		if (a || b)
			fprintf(stderr, "rollup %s, dim %d: %lld flow groups missing, %lld rollup rows extra\n", what, d,
				(long long)a, (long long)b);
		CHECK(a == 0 && b == 0);
	}
}

static void test_rollup(void)
{
	char db[300];
	path_in(db, sizeof(db), "rollup.db");
	struct fdb_config cfg;
	struct fdb *st;
	char err[512];
	fdb_config_default(&cfg);
	cfg.batch = 97;
	cfg.auto_retain = 0;
	cfg.retain_age_s = 3600;
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));
	uint32_t obs[3];
	CHECK_OK(fdb_obs_point(st, "veth-a", "both", "default/a", 1, &obs[0]));
	CHECK_OK(fdb_obs_point(st, "veth-b", "both", NULL, 1, &obs[1]));
	CHECK_OK(fdb_obs_point(st, "eth0", "both", NULL, 1, &obs[2]));
	static const char *const apps[] = {"TLS.Google", "DNS", "", "HTTP"};
	struct fl_record r;
	uint64_t seed = 12345;
	/* 3000 flows; a third get periodic records before their final one, each
	 * moving to a later minute and sometimes to another app (nDPI decided). */
	for (uint64_t i = 0; i < 3000; i++) {
		fx_synthetic(&r, i, obs[i % 3]);
		r.last_us = FX_T0_US + i * 2000000;
		r.first_us = r.last_us - 1000;
		int periodic = i % 3 == 0 ? 1 + (int)(i % 4) : 0;
		for (int k = 0; k <= periodic; k++) {
			seed = seed * 6364136223846793005ull + 1442695040888963407ull;
			r.end = k < periodic ? FL_END_ACTIVE : FL_END_IDLE;
			r.last_us += (seed >> 40) % 200000000;
			r.pkts[0] += 3;
			r.bytes[1] += 1000;
			snprintf(r.proto, sizeof(r.proto), "%s", apps[(seed >> 20) % 4]);
			snprintf(r.category, sizeof(r.category), "%s", (seed >> 30) % 2 ? "Web" : "");
			r.obs_id = k == 2 && i % 2 ? 0 : obs[i % 3];
			CHECK_OK(fdb_put_flow(st, &r));
		}
	}
	/* some flows still active at the end: their last record was periodic */
	for (uint64_t i = 3000; i < 3050; i++) {
		fx_synthetic(&r, i, obs[0]);
		r.end = FL_END_ACTIVE;
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	rollup_matches(db, "after writing");
	/* retention deletes the oldest flows, some while they are active */
	uint64_t deleted = 0;
	CHECK_OK(fdb_retain(st, FX_T0_US / 1000000 + 3600 + 3000, &deleted));
	CHECK(deleted > 0);
	rollup_matches(db, "after retention");
	/* a deleted active flow that comes back with its final record */
	fx_synthetic(&r, 3000, obs[0]);
	r.end = FL_END_IDLE;
	r.last_us = FX_T0_US + 4000000000ull;
	CHECK_OK(fdb_put_flow(st, &r));
	CHECK_OK(fdb_close(st));
	rollup_matches(db, "after close");
	check_integrity(db);

	/* a deferred load: the rollup is kept commit by commit, marked current
	 * with the indexes */
	char db2[300];
	path_in(db2, sizeof(db2), "rollup2.db");
	cfg.defer_indexes = 1;
	CHECK_OK(fdb_open(db2, &cfg, &st, err, sizeof(err)));
	CHECK_OK(fdb_obs_point(st, "veth-a", "both", NULL, 1, &obs[0]));
	for (uint64_t i = 0; i < 500; i++) {
		fx_synthetic(&r, i, obs[0]);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	rollup_matches(db2, "during a deferred load");
	CHECK(sql_i64(db2, "SELECT count(*) FROM meta WHERE key = 'rollup'") == 0);
	CHECK_OK(fdb_close(st));
	rollup_matches(db2, "after a deferred load");
	CHECK(sql_i64(db2, "SELECT count(*) FROM meta WHERE key = 'rollup'") == 1);

	/* a deferred load killed after a commit: the next open rebuilds it */
	char db3[300];
	path_in(db3, sizeof(db3), "rollup3.db");
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		if (fdb_open(db3, &cfg, &st, err, sizeof(err)))
			_exit(2);
		for (uint64_t i = 0; i < 150; i++) {
			fx_synthetic(&r, i, 0);
			if (fdb_put_flow(st, &r))
				_exit(3);
		}
		_exit(fdb_commit(st) ? 4 : 0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	st = open_ok(db3, 0);
	CHECK_OK(fdb_close(st));
	CHECK(sql_i64(db3, "SELECT count(*) FROM rollup") > 0);
	rollup_matches(db3, "after a killed deferred load");
	check_integrity(db3);
}

static struct fl_name fx_name(int kind, const char *ns, const char *name, const char *node)
{
	struct fl_name n;
	memset(&n, 0, sizeof(n));
	n.kind = (uint8_t)kind;
	snprintf(n.ns, sizeof(n.ns), "%s", ns);
	snprintf(n.name, sizeof(n.name), "%s", name);
	snprintf(n.node, sizeof(n.node), "%s", node);
	return n;
}

/* Kubernetes names and nDPI's confidence: written from the record's ids through
 * the dictionary, kept by later records that lack them, NULL without names. */
static void test_names(void)
{
	char db[300], txt[600];
	path_in(db, sizeof(db), "names.db");
	struct fl_names *dict = fl_names_new(0, 0);
	CHECK(dict != NULL);
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.names = dict;
	struct fdb *st;
	char err[512];
	CHECK_OK(fdb_open(db, &cfg, &st, err, sizeof(err)));

	struct fl_name client = fx_name(FL_KIND_POD, "default", "client-1", "pc-node1");
	snprintf(client.workload, sizeof(client.workload), "Deployment/client");
	snprintf(client.labels, sizeof(client.labels), "{\"app\":\"client\"}");
	struct fl_name web = fx_name(FL_KIND_POD, "default", "web-2", "pc-node2");
	snprintf(web.labels, sizeof(web.labels), "{\"app\":\"web\",\"tier\":\"front\"}");
	struct fl_name svc = fx_name(FL_KIND_SERVICE, "default", "web", "");
	svc.port = 80;
	snprintf(svc.via, sizeof(svc.via), "conntrack");
	struct fl_name n1 = fx_name(FL_KIND_NODE, "", "pc-node1", "pc-node1");
	struct fl_name n2 = fx_name(FL_KIND_NODE, "", "pc-node2", "pc-node2");

	struct fl_record r;
	fx_record(&r, 1, "10.244.1.12", 40000, "10.96.0.80", 80, FX_T0_US);
	r.end = FL_END_ACTIVE;
	r.confidence = FL_CONF_DPI;
	r.name[FL_NAME_SRC] = fl_names_put(dict, &client);
	r.name[FL_NAME_DST] = fl_names_put(dict, &web);
	r.name[FL_NAME_SERVICE] = fl_names_put(dict, &svc);
	r.name[FL_NAME_OUTER_SRC] = fl_names_put(dict, &n1);
	r.name[FL_NAME_OUTER_DST] = fl_names_put(dict, &n2);
	CHECK_OK(fdb_put_flow(st, &r));
	/* the final record: no names this time (e.g. the API went away) */
	memset(r.name, 0, sizeof(r.name));
	r.end = FL_END_TCP;
	CHECK_OK(fdb_put_flow(st, &r));
	/* a host-network client (a node), nothing on the other end */
	fx_record(&r, 2, "172.18.0.12", 40001, "172.18.0.11", 30080, FX_T0_US);
	r.name[FL_NAME_SRC] = fl_names_put(dict, &n2);
	r.confidence = FL_CONF_BY_PORT;
	CHECK_OK(fdb_put_flow(st, &r));
	/* an id the dictionary does not know: the row is written without it */
	fx_record(&r, 3, "10.0.0.1", 1, "10.0.0.2", 2, FX_T0_US);
	r.name[FL_NAME_SRC] = 0x00fff123;
	CHECK_OK(fdb_put_flow(st, &r));
	struct fdb_stats fs;
	fdb_stats(st, &fs);
	CHECK(fs.names_expired == 1);
	CHECK_OK(fdb_close(st));

	sql_text(db, "SELECT src_pod || '|' || src_ns || '|' || src_node || '|' || src_workload || '|' ||"
		 " src_labels || '|' || dst_pod || '|' || dst_node || '|' || service || '|' || service_via"
		 " || '|' || outer_src_node || '|' || outer_dst_node || '|' || confidence FROM flows WHERE id = 1",
		 txt, sizeof(txt));
	CHECK(!strcmp(txt, "default/client-1|default|pc-node1|Deployment/client|{\"app\":\"client\"}|"
		      "default/web-2|pc-node2|default/web:80|conntrack|pc-node1|pc-node2|dpi"));
	CHECK(sql_i64(db, "SELECT end_reason = 'tcp' AND dst_workload IS NULL FROM flows WHERE id = 1") == 1);
	CHECK(sql_i64(db, "SELECT json_extract(dst_labels, '$.tier') = 'front' FROM flows WHERE id = 1") == 1);
	CHECK(sql_i64(db, "SELECT src_pod IS NULL AND src_node = 'pc-node2' AND dst_node IS NULL AND"
		      " confidence = 'by-port' FROM flows WHERE id = 2") == 1);
	CHECK(sql_i64(db, "SELECT src_pod IS NULL AND src_node IS NULL AND confidence IS NULL"
		      " FROM flows WHERE id = 3") == 1);
	check_integrity(db);
	fl_names_free(dict);
}

/* fdb_cursor_budget: a query needing more virtual machine steps than its budget
 * stops with -EAGAIN before its row (the handle stays usable); without a budget,
 * or with enough, the same query answers; 0 lifts a budget. */
static void test_budget(void)
{
	char db[300];
	path_in(db, sizeof(db), "budget.db");
	struct fdb *st = open_ok(db, 0);
	struct fl_record r;
	for (uint64_t i = 0; i < 20000; i++) {
		fx_synthetic(&r, i, 0);
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	static const char sql[] = "SELECT count(*) FROM flows WHERE c2s_bytes + s2c_bytes >= 0";
	struct fdb_cursor *c;
	CHECK_OK(fdb_cursor_open(st, sql, NULL, 0, &c));
	fdb_cursor_budget(c, 20000); /* about a row per step: far too few */
	CHECK(fdb_cursor_next(c) == -EAGAIN);
	fdb_cursor_close(c);
	CHECK_OK(fdb_cursor_open(st, sql, NULL, 0, &c));
	fdb_cursor_budget(c, 100000000);
	CHECK(fdb_cursor_next(c) == 1 && fdb_cursor_int(c, 0) == 20000);
	fdb_cursor_close(c);
	CHECK_OK(fdb_cursor_open(st, sql, NULL, 0, &c));
	fdb_cursor_budget(c, 20000);
	fdb_cursor_budget(c, 0);
	CHECK(fdb_cursor_next(c) == 1 && fdb_cursor_int(c, 0) == 20000);
	CHECK(fdb_cursor_next(c) == 0);
	fdb_cursor_close(c);
	CHECK_OK(fdb_close(st));
}

/* Pages in first-packet order, newest first (no index on first_us): past the
 * planner's budget the page is bounded by a walk of the last_us index.  Flows
 * of many lengths (a few as long as the whole file, so first and last packet
 * orders differ), dense and sparse filters, three pages each through the
 * cursor: the ids SQL's own ORDER BY first_us DESC, id DESC gives. */
static void test_first_order(void)
{
	char db[300];
	path_in(db, sizeof(db), "first.db");
	struct fdb *st = open_ok(db, 0);
	struct fl_record r;
	uint64_t x = 88172645463325252ULL; /* xorshift */
	for (uint64_t i = 0; i < 60000; i++) {
		fx_synthetic(&r, i, 0);
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		uint64_t len = i % 997 == 0 ? 70000000 : i % 31 == 0 ? x % 20000000 : x % 2000000;
		r.first_us = r.last_us - len;
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	static const char *const f[][2] = {
		{"", "1"},
		{"dport == 443", "dport = 443"},
		{"proto == udp", "ip_proto = 17"},
		{"src == 10.244.3.7", "src = '10.244.3.7'"},
		{"dst == 10.96.0.7 and app == DNS", "dst = '10.96.0.7' AND proto_name = 'DNS'"},
	};
	sqlite3 *ref;
	CHECK(sqlite3_open_v2(db, &ref, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	for (size_t k = 0; k < sizeof(f) / sizeof(f[0]); k++) {
		struct q_filter *filter = NULL;
		struct q_error err;
		CHECK(q_parse(f[k][0], strlen(f[k][0]), NULL, &filter, &err) == 0);
		struct q_select sel = {.filter = filter, .order = Q_ORDER_FIRST_DESC, .limit = 30};
		for (int pg = 0; pg < 3; pg++) {
			char *got = NULL, want[4096] = "", sql[256];
			size_t glen, w = 0;
			FILE *out = open_memstream(&got, &glen);
			struct q_page page = {0};
			long n = q_list_flows(st, NULL, &sel, Q_FMT_CSV, q_write_file, out, &page, &err);
			fclose(out);
			CHECK(n >= 0);
			snprintf(sql, sizeof(sql), "SELECT id FROM flows WHERE %s ORDER BY first_us DESC, id DESC LIMIT 30 OFFSET %d",
				 f[k][1], 30 * pg);
			sqlite3_stmt *s;
			CHECK(sqlite3_prepare_v2(ref, sql, -1, &s, NULL) == SQLITE_OK);
			int rows = 0;
			while (sqlite3_step(s) == SQLITE_ROW) {
				w += (size_t)snprintf(want + w, sizeof(want) - w, "\n%lld,", (long long)sqlite3_column_int64(s, 0));
				rows++;
			}
			sqlite3_finalize(s);
			CHECK(n == rows);
			/* each CSV line starts with the id: "\nID," in page order */
			char *at = got;
			for (char *p = want; *p; ) {
				char *e = strchr(p + 1, '\n');
				size_t l = e ? (size_t)(e - p) : strlen(p);
				char *hit = memmem(at, glen - (size_t)(at - got), p, l);
				if (!hit)
					fprintf(stderr, "filter '%s' page %d: %.*s not next in\n%s\n", f[k][0], pg, (int)l, p, got);
				CHECK(hit);
				at = hit + l;
				p += l;
			}
			free(got);
			if (!page.more)
				break;
			sel.after = page.next;
		}
		q_filter_free(filter);
	}
	sqlite3_close(ref);
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

/* q_top summed in memory answers exactly as SQLite's GROUP BY (forced with a
 * max_mem too small for any key): every key, metric, with and without a filter
 * (without one app, category, iface and pod come from the rollup), with and
 * without buckets; ties in value ordered by key, as ORDER BY v DESC, k. */
static int bucket_cmp(const void *a, const void *b)
{
	const struct q_top_bucket *x = a, *y = b;
	if (x->t != y->t)
		return x->t < y->t ? -1 : 1;
	return (x->row > y->row) - (x->row < y->row);
}

static void test_top(void)
{
	char db[300];
	path_in(db, sizeof(db), "top.db");
	struct fdb *st = open_ok(db, 0);
	uint32_t veth, eth0;
	CHECK_OK(fdb_obs_point(st, "veth-front", "in", "default/frontend-7d9", 1, &veth));
	CHECK_OK(fdb_obs_point(st, "eth0", "in", NULL, 1, &eth0));
	struct fl_record r;
	for (uint64_t i = 0; i < 20000; i++) {
		fx_synthetic(&r, i, i % 3 ? veth : eth0);
		if (i % 7 == 0)
			r.host[0] = 0; /* no host: the key "" */
		CHECK_OK(fdb_put_flow(st, &r));
	}
	CHECK_OK(fdb_commit(st));
	/* the Kubernetes names of the ends, for the keys that group by them */
	sql_exec(db, "UPDATE flows SET src_pod = 'ns' || (id % 3) || '/client-' || (id % 11), src_ns = 'ns' || (id % 3),"
		     " src_workload = 'Deployment/client-' || (id % 4) WHERE id % 5 != 0;"
		     " UPDATE flows SET dst_pod = 'ns0/server-' || (id % 7), dst_ns = 'ns0',"
		     " dst_workload = 'StatefulSet/server', service = 'ns0/svc' || (id % 6) || ':80' WHERE id % 4 = 0");
	static const char *const filters[] = {NULL, "dport == 443 or proto == udp", "src == 10.244.3.0/24"};
	int hashed = 0;
	for (int by = 0; by < Q_BY__COUNT; by++)
		for (int m = 0; m < Q_METRIC__COUNT; m++)
			for (size_t fi = 0; fi < sizeof(filters) / sizeof(filters[0]); fi++)
				for (int bucketed = 0; bucketed < 2; bucketed++) {
					struct q_filter *f = NULL;
					struct q_error e;
					if (filters[fi])
						CHECK(q_parse(filters[fi], strlen(filters[fi]), NULL, &f, &e) == 0);
					struct q_top req = {.filter = f, .by = (enum q_top_by)by, .metric = (enum q_metric)m,
							    .limit = 7};
					if (bucketed) {
						req.bucket_us = 1000000;
						req.range.has_from = 1;
						req.range.from_us = (int64_t)FX_T0_US;
					}
					struct q_top_result a, b;
					CHECK_OK(q_top(st, &req, &a, &e));
					req.max_mem = 1;
					CHECK_OK(q_top(st, &req, &b, &e));
					CHECK(a.from_rollup == b.from_rollup && !b.in_memory);
					CHECK(a.from_rollup || a.in_memory);
					hashed += a.in_memory;
					CHECK(a.nrows == b.nrows && a.nrows > 0 && a.total == b.total && a.other == b.other);
					for (size_t i = 0; i < a.nrows; i++) {
						if (strcmp(a.rows[i].key, b.rows[i].key) || a.rows[i].value != b.rows[i].value)
							fprintf(stderr, "by %d metric %d filter %zu: row %zu %s=%lld vs %s=%lld\n", by,
								m, fi, i, a.rows[i].key, (long long)a.rows[i].value, b.rows[i].key,
								(long long)b.rows[i].value);
						CHECK(!strcmp(a.rows[i].key, b.rows[i].key) && a.rows[i].value == b.rows[i].value);
					}
					CHECK(a.nbuckets == b.nbuckets && (a.nbuckets > 0) == bucketed);
					if (bucketed) {
						qsort(a.buckets, a.nbuckets, sizeof(*a.buckets), bucket_cmp);
						qsort(b.buckets, b.nbuckets, sizeof(*b.buckets), bucket_cmp);
					}
					for (size_t i = 0; i < a.nbuckets; i++)
						CHECK(a.buckets[i].t == b.buckets[i].t && a.buckets[i].row == b.buckets[i].row &&
						      a.buckets[i].value == b.buckets[i].value);
					q_top_free(&a);
					q_top_free(&b);
					q_filter_free(f);
				}
	CHECK(hashed >= 2 * 4 * Q_METRIC__COUNT * 2);
	/* one bucketed request by src (20,000 keys) with less and less memory:
	 * every key's buckets in the first scan, then the top keys' in a second
	 * one, then the SQL way; the same answer each time */
	{
		struct q_top req = {.by = Q_BY_SRC, .metric = Q_METRIC_BYTES, .limit = 5, .bucket_us = 2000000,
				    .range = {.has_from = 1, .from_us = (int64_t)FX_T0_US}, .max_mem = 1};
		struct q_top_result ref, a;
		struct q_error e;
		CHECK_OK(q_top(st, &req, &ref, &e));
		CHECK(!ref.in_memory && ref.scans == 3 && ref.nbuckets > 0);
		qsort(ref.buckets, ref.nbuckets, sizeof(*ref.buckets), bucket_cmp);
		static const size_t mems[] = {0, 4 << 20, 3 << 20, 5 << 19, 2 << 20, 3 << 19, 5 << 18, 1 << 20};
		int ways[4] = {0};
		for (size_t m = 0; m < sizeof(mems) / sizeof(mems[0]); m++) {
			req.max_mem = mems[m];
			CHECK_OK(q_top(st, &req, &a, &e));
			ways[a.in_memory ? a.scans : 0]++;
			CHECK(a.nrows == ref.nrows && a.total == ref.total && a.nbuckets == ref.nbuckets);
			for (size_t i = 0; i < a.nrows; i++)
				CHECK(!strcmp(a.rows[i].key, ref.rows[i].key) && a.rows[i].value == ref.rows[i].value);
			qsort(a.buckets, a.nbuckets, sizeof(*a.buckets), bucket_cmp);
			for (size_t i = 0; i < a.nbuckets; i++)
				CHECK(a.buckets[i].t == ref.buckets[i].t && a.buckets[i].row == ref.buckets[i].row &&
				      a.buckets[i].value == ref.buckets[i].value);
			q_top_free(&a);
		}
		if (getenv("TOP_WAYS") || !ways[0] || !ways[1] || !ways[2])
			fprintf(stderr, "ways: sql %d, one scan %d, two scans %d\n", ways[0], ways[1], ways[2]);
		CHECK(ways[0] && ways[1] && ways[2]);
		q_top_free(&ref);
	}
	/* several keys in one scan (q_top_many): each answer as q_top's alone, with
	 * its own limit, buckets and memory (the SQL way, two scans) mixed in one
	 * call, with and without a filter (the rollup answers app and pod then) */
	for (size_t fi = 0; fi < sizeof(filters) / sizeof(filters[0]); fi++) {
		struct q_filter *f = NULL;
		struct q_error e;
		if (filters[fi])
			CHECK(q_parse(filters[fi], strlen(filters[fi]), NULL, &f, &e) == 0);
		struct q_top reqs[Q_TOP_MANY];
		for (int k = 0; k < Q_TOP_MANY; k++) {
			reqs[k] = (struct q_top){.filter = f, .by = (enum q_top_by)(k % Q_BY__COUNT),
						 .metric = Q_METRIC_PACKETS, .limit = 3 + k,
						 .range = {.has_from = 1, .from_us = (int64_t)FX_T0_US}};
			if (k % 2 == 0)
				reqs[k].bucket_us = (k % 4 ? 1 : 2) * 1000000;
		}
		reqs[Q_BY_DST].max_mem = 1;        /* too many keys: the SQL way */
		reqs[Q_BY_SRC].max_mem = 2 << 20;  /* keys fit, not every key's buckets */
		struct q_top_result many[Q_TOP_MANY];
		CHECK_OK(q_top_many(st, reqs, Q_TOP_MANY, many, &e));
		int scanned = 0;
		for (int k = 0; k < Q_TOP_MANY; k++) {
			struct q_top_result one;
			CHECK_OK(q_top(st, &reqs[k], &one, &e));
			struct q_top_result *m = &many[k];
			CHECK(m->from_rollup == one.from_rollup && m->in_memory == one.in_memory && m->scans == one.scans);
			CHECK(m->nrows == one.nrows && m->nrows > 0 && m->total == one.total && m->other == one.other);
			for (size_t i = 0; i < m->nrows && i < one.nrows; i++)
				CHECK(!strcmp(m->rows[i].key, one.rows[i].key) && m->rows[i].value == one.rows[i].value);
			CHECK(m->nbuckets == one.nbuckets && (m->nbuckets > 0) == (reqs[k].bucket_us > 0));
			for (size_t i = 0; i < m->nbuckets && i < one.nbuckets; i++)
				CHECK(m->buckets[i].t == one.buckets[i].t && m->buckets[i].row == one.buckets[i].row &&
				      m->buckets[i].value == one.buckets[i].value);
			if (k == Q_BY_DST)
				CHECK(!m->in_memory && m->scans == 2);
			if (k == Q_BY_SRC && !f) /* 20,000 of them */
				CHECK(m->in_memory && m->scans == 2);
			scanned += !m->from_rollup;
			q_top_free(&one);
			q_top_free(m);
		}
		CHECK(many[0].nrows == 0); /* freed */
		/* without a filter, pod and iface (no buckets) come from the rollup */
		CHECK(scanned == (f ? Q_TOP_MANY : Q_TOP_MANY - 2));
		/* requests of one call share the filter, range and metric */
		reqs[3].metric = Q_METRIC_BYTES;
		CHECK(q_top_many(st, reqs, 4, many, &e) == -EINVAL);
		reqs[3].metric = Q_METRIC_PACKETS;
		reqs[1].range.has_to = 1;
		CHECK(q_top_many(st, reqs, 2, many, &e) == -EINVAL);
		CHECK(q_top_many(st, reqs, Q_TOP_MANY + 1, many, &e) == -EINVAL);
		q_filter_free(f);
	}
	/* a flow still running at the range's end counts in the last bucket: no
	 * bucket past the end, and the buckets add up to the keys (both ways) */
	for (int way = 0; way < 2; way++) {
		struct q_top req = {.by = Q_BY_APP, .metric = Q_METRIC_FLOWS, .limit = 10, .bucket_us = 1000000,
				    .max_mem = way ? 1 : 0,
				    .range = {1, 1, (int64_t)FX_T0_US + 5000000, (int64_t)FX_T0_US + 10000000}};
		struct q_top_result a;
		struct q_error e;
		CHECK_OK(q_top(st, &req, &a, &e));
		int64_t sum = 0, last = 0;
		for (size_t i = 0; i < a.nbuckets; i++) {
			sum += a.buckets[i].value;
			last = a.buckets[i].t > last ? a.buckets[i].t : last;
		}
		CHECK(a.in_memory == !way && a.other == 0 && a.total > 5000 && sum == a.total);
		CHECK(last == (int64_t)FX_T0_US + 10000000);
		q_top_free(&a);
	}
	/* one call's keys share the largest max_mem among them: src alone fits in
	 * 3 MiB (20,000 addresses: ~2 MiB), twice it does not, so the second goes
	 * the SQL way; the answers are the same */
	{
		struct q_top two[2] = {{.by = Q_BY_SRC, .metric = Q_METRIC_BYTES, .limit = 5, .max_mem = 3 << 20},
				       {.by = Q_BY_SRC, .metric = Q_METRIC_BYTES, .limit = 6, .max_mem = 3 << 20}};
		struct q_top_result one, res[2];
		struct q_error e;
		CHECK_OK(q_top(st, &two[1], &one, &e));
		CHECK(one.in_memory);
		CHECK_OK(q_top_many(st, two, 2, res, &e));
		CHECK(res[0].in_memory + res[1].in_memory == 1);
		for (int k = 0; k < 2; k++) {
			CHECK(res[k].total == one.total && res[k].nrows == (size_t)two[k].limit);
			for (size_t i = 0; i < res[k].nrows; i++)
				CHECK(!strcmp(res[k].rows[i].key, one.rows[i].key) && res[k].rows[i].value == one.rows[i].value);
			q_top_free(&res[k]);
		}
		q_top_free(&one);
	}
	/* the ends' names: a namespace per client, "" for the flows without one */
	{
		struct q_top req = {.by = Q_BY_SRC_NS, .metric = Q_METRIC_FLOWS, .limit = 10};
		struct q_top_result a;
		struct q_error e;
		CHECK_OK(q_top(st, &req, &a, &e));
		CHECK(a.nrows == 4 && a.total == 20000 && a.other == 0);
		int64_t none = -1;
		for (size_t i = 0; i < a.nrows; i++)
			if (!a.rows[i].key[0])
				none = a.rows[i].value;
		CHECK(none == 4000 && !strncmp(a.rows[0].key, "ns", 2));
		q_top_free(&a);
		req.by = Q_BY_SERVICE;
		CHECK_OK(q_top(st, &req, &a, &e));
		/* ids 4k: svc (4k % 6) is svc0, svc4 or svc2; ties in key order */
		CHECK(a.nrows == 4 && !strcmp(a.rows[0].key, "") && a.rows[0].value == 15000 &&
		      !strcmp(a.rows[1].key, "ns0/svc2:80") && a.rows[1].value == 1667 &&
		      !strcmp(a.rows[3].key, "ns0/svc0:80") && a.rows[3].value == 1666);
		q_top_free(&a);
	}
	/* ties: one flow per source, limit 7: the smallest addresses as text (10.244.0.10
	 * is i = 9, an IPv6 one) */
	struct q_top req = {.by = Q_BY_SRC, .metric = Q_METRIC_FLOWS, .limit = 7};
	struct q_top_result a;
	struct q_error e;
	CHECK_OK(q_top(st, &req, &a, &e));
	CHECK(a.in_memory && a.nrows == 7 && a.total == 20000 && !strcmp(a.rows[0].key, "10.244.0.1") &&
	      !strcmp(a.rows[1].key, "10.244.0.101") && a.rows[0].value == 1);
	q_top_free(&a);
	CHECK_OK(fdb_close(st));
	check_integrity(db);
}

struct test {
	const char *name;
	void (*fn)(void);
};

static const struct test tests[] = {
	{"create", test_create},
	{"obs_points", test_obs_points},
	{"upsert", test_upsert},
	{"names", test_names},
	{"batch", test_batch},
	{"defer", test_defer},
	{"rollup", test_rollup},
	{"query", test_query},
	{"budget", test_budget},
	{"top", test_top},
	{"first_order", test_first_order},
	{"retain_age", test_retain_age},
	{"retain_size", test_retain_size},
	{"retain_auto", test_retain_auto},
	{"kill", test_kill},
	{"kill_random", test_kill_random},
	{"bad_input", test_bad_input},
	{"corrupt_many", test_corrupt_many},
	{"permissions", test_permissions},
	{"disk_full", test_disk_full},
};

int main(int argc, char **argv)
{
	int ran = 0;
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (argc > 1 && strcmp(argv[1], tests[i].name))
			continue;
		cur_test = tests[i].name;
		make_tmpdir();
		tests[i].fn();
		rm_tmpdir();
		printf("ok %s\n", tests[i].name);
		ran++;
	}
	if (!ran) {
		fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "?");
		return 1;
	}
	return 0;
}
