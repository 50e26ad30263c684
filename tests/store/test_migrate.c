/* Schema migrations with more than one step, using extra steps appended to the
 * real ones (store.c built with PODCAP_STORE_TESTING).  Checks: steps run in
 * order, each in its own transaction; a failing step leaves the database at the
 * previous version, whole and usable; an older binary refuses the newer file.
 * And the shipped steps: a version-1 file (as podcap wrote it before the
 * Kubernetes names) is read as it is by a read-only handle and migrated, its
 * rows kept, by a read-write one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "flowdb.h"
#include "fixture.h"

void fdb__test_extra_migrations(const char *const *steps, int64_t n);
const char *fdb__test_step(int64_t ver);

#define V FDB_SCHEMA_VERSION

#define CHECK(cond) do { if (!(cond)) { \
	fprintf(stderr, "FAIL: %s:%d: %s\n", __FILE__, __LINE__, #cond); exit(1); } } while (0)

static int64_t sql_i64(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	int64_t v = -1;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK) {
		if (sqlite3_step(s) == SQLITE_ROW)
			v = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
	}
	sqlite3_close(db);
	return v;
}

static void check_integrity(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK);
	CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &s, NULL) == SQLITE_OK);
	CHECK(sqlite3_step(s) == SQLITE_ROW);
	CHECK(!strcmp((const char *)sqlite3_column_text(s, 0), "ok"));
	sqlite3_finalize(s);
	sqlite3_close(db);
}

static void sql_run(const char *path, const char *sql)
{
	sqlite3 *db;
	char *msg = NULL;
	CHECK(sqlite3_open(path, &db) == SQLITE_OK);
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "sql: %s\n", msg ? msg : "?");
		CHECK(0);
	}
	sqlite3_close(db);
}

/* A version-1 database with one flow, as podcap wrote it before version 2. */
static void version1(const char *dir)
{
	char db[128], err[512];
	snprintf(db, sizeof(db), "%s/v1.db", dir);
	CHECK(fdb__test_step(0) && fdb__test_step(1));
	sql_run(db, "PRAGMA journal_mode = WAL");
	sql_run(db, fdb__test_step(0));
	sql_run(db, "CREATE INDEX flows_dst ON flows(dst)");
	sql_run(db, "PRAGMA user_version = 1; PRAGMA application_id = 1346584912;"
		"INSERT INTO flows (id, end_reason, family, ip_proto, src, dst, sport, dport, tunnel,"
		" first_us, last_us, proto_name, app_name) VALUES (7, 'idle', 4, 6, '10.0.0.1',"
		" '10.0.0.2', 1000, 80, 'none', 1, 2, 'HTTP', 'HTTP')");

	/* Read-only: not migrated, the version-2 columns read as NULL. */
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.readonly = 1;
	struct fdb *st;
	int rc = fdb_open(db, &cfg, &st, err, sizeof(err));
	if (rc)
		fprintf(stderr, "read-only open of version 1: %s\n", err);
	CHECK(rc == 0);
	struct fdb_cursor *c;
	CHECK(fdb_cursor_open(st, "SELECT id, src_pod, dst_ns, service, confidence, app_name FROM flows f"
			      " WHERE f.dst = '10.0.0.2'", NULL, 0, &c) == 0);
	CHECK(fdb_cursor_next(c) == 1);
	CHECK(fdb_cursor_int(c, 0) == 7 && !fdb_cursor_text(c, 1) && !fdb_cursor_text(c, 2) &&
	      !fdb_cursor_text(c, 3) && !fdb_cursor_text(c, 4) && !strcmp(fdb_cursor_text(c, 5), "HTTP"));
	CHECK(fdb_cursor_next(c) == 0);
	fdb_cursor_close(c);
	/* the view uses the table's indexes */
	char plan[512] = "";
	fdb_explain(st, "SELECT id FROM flows f WHERE f.dst = '10.0.0.2'", NULL, 0, plan, sizeof(plan));
	fprintf(stderr, "plan through the view: %s\n", plan);
	CHECK(strstr(plan, "flows_dst"));
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == 1);

	/* Read-write: migrated to the current version, the row kept, new rows
	 * carry the new columns. */
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	struct fl_record r;
	fx_record(&r, 8, "10.0.0.1", 1001, "10.0.0.2", 80, FX_T0_US);
	r.confidence = FL_CONF_BY_PORT;
	CHECK(fdb_put_flow(st, &r) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == V);
	CHECK(sql_i64(db, "SELECT count(*) FROM flows WHERE id = 7 AND app_name = 'HTTP' AND src_pod IS NULL") == 1);
	CHECK(sql_i64(db, "SELECT count(*) FROM flows WHERE id = 8 AND confidence = 'by-port'") == 1);
	check_integrity(db);
}

int main(void)
{
	char dir[] = "/tmp/podcap-migrate-XXXXXX", db[128], err[512], cmd[256];
	CHECK(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/m.db", dir);
	struct fdb *st;
	struct fl_record r;

	version1(dir);

	/* The current version with a flow in it, as shipped. */
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	fx_record(&r, 1, "10.0.0.1", 1000, "10.0.0.2", 80, FX_T0_US);
	CHECK(fdb_put_flow(st, &r) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == V);

	/* A binary that knows versions V+1 and V+2: both steps run, in order. */
	static const char *const good[] = {
		"ALTER TABLE flows ADD COLUMN note TEXT; UPDATE flows SET note = 'v2';",
		"CREATE TABLE extra (k INTEGER PRIMARY KEY, v TEXT);"
		"INSERT INTO extra (v) SELECT note FROM flows;",
	};
	fdb__test_extra_migrations(good, 2);
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == V + 2);
	CHECK(sql_i64(db, "SELECT count(*) FROM extra WHERE v = 'v2'") == 1);
	check_integrity(db);

	/* Step V+3 fails half-way (its second statement is wrong): version stays
	 * V+2 and nothing of that step is left behind. */
	static const char *const bad[] = {
		good[0], good[1],
		"CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);",
	};
	fdb__test_extra_migrations(bad, 3);
	int rc = fdb_open(db, NULL, &st, err, sizeof(err));
	fprintf(stderr, "failing step: %d %s\n", rc, err);
	CHECK(rc < 0);
	char want[96];
	snprintf(want, sizeof(want), "migration to schema version %d", V + 3);
	CHECK(strstr(err, want) && strstr(err, "no_such_table"));
	CHECK(sql_i64(db, "PRAGMA user_version") == V + 2);
	CHECK(sql_i64(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'half'") == 0);
	check_integrity(db);

	/* The shipped binary (V steps) refuses the newer file and leaves it. */
	fdb__test_extra_migrations(NULL, 0);
	rc = fdb_open(db, NULL, &st, err, sizeof(err));
	fprintf(stderr, "older binary: %d %s\n", rc, err);
	snprintf(want, sizeof(want), "version %d is newer than this podcap knows (%d)", V + 2, V);
	CHECK(rc == -ENOTSUP && strstr(err, want));
	CHECK(sql_i64(db, "PRAGMA user_version") == V + 2);

	/* And the binary that knows V+2 still uses it normally. */
	fdb__test_extra_migrations(good, 2);
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	fx_record(&r, 2, "10.0.0.1", 1001, "10.0.0.2", 80, FX_T0_US);
	CHECK(fdb_put_flow(st, &r) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "SELECT count(*) FROM flows") == 2);
	check_integrity(db);

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", dir);
	printf("ok migrate\n");
	return 0;
}
