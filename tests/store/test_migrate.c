/* Schema migrations with more than one step, using extra steps appended to the
 * real ones (store.c built with PODCAP_STORE_TESTING).  Checks: steps run in
 * order, each in its own transaction; a failing step leaves the database at the
 * previous version, whole and usable; an older binary refuses the newer file. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "flowdb.h"
#include "fixture.h"

void fdb__test_extra_migrations(const char *const *steps, int64_t n);

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

int main(void)
{
	char dir[] = "/tmp/podcap-migrate-XXXXXX", db[128], err[512], cmd[256];
	CHECK(mkdtemp(dir));
	snprintf(db, sizeof(db), "%s/m.db", dir);
	struct fdb *st;
	struct fl_record r;

	/* Version 1 with a flow in it, as shipped. */
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	fx_record(&r, 1, "10.0.0.1", 1000, "10.0.0.2", 80, FX_T0_US);
	CHECK(fdb_put_flow(st, &r) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == 1);

	/* A binary that knows versions 2 and 3: both steps run, in order. */
	static const char *const good[] = {
		"ALTER TABLE flows ADD COLUMN note TEXT; UPDATE flows SET note = 'v2';",
		"CREATE TABLE extra (k INTEGER PRIMARY KEY, v TEXT);"
		"INSERT INTO extra (v) SELECT note FROM flows;",
	};
	fdb__test_extra_migrations(good, 2);
	CHECK(fdb_open(db, NULL, &st, err, sizeof(err)) == 0);
	CHECK(fdb_close(st) == 0);
	CHECK(sql_i64(db, "PRAGMA user_version") == 3);
	CHECK(sql_i64(db, "SELECT count(*) FROM extra WHERE v = 'v2'") == 1);
	check_integrity(db);

	/* Step 4 fails half-way (its second statement is wrong): version stays 3
	 * and nothing of step 4 is left behind. */
	static const char *const bad[] = {
		good[0], good[1],
		"CREATE TABLE half (x); INSERT INTO no_such_table VALUES (1);",
	};
	fdb__test_extra_migrations(bad, 3);
	int rc = fdb_open(db, NULL, &st, err, sizeof(err));
	fprintf(stderr, "failing step: %d %s\n", rc, err);
	CHECK(rc < 0);
	CHECK(strstr(err, "migration to schema version 4") && strstr(err, "no_such_table"));
	CHECK(sql_i64(db, "PRAGMA user_version") == 3);
	CHECK(sql_i64(db, "SELECT count(*) FROM sqlite_schema WHERE name = 'half'") == 0);
	check_integrity(db);

	/* The shipped binary (1 step) refuses the version-3 file and leaves it. */
	fdb__test_extra_migrations(NULL, 0);
	rc = fdb_open(db, NULL, &st, err, sizeof(err));
	fprintf(stderr, "older binary: %d %s\n", rc, err);
	CHECK(rc == -ENOTSUP && strstr(err, "version 3 is newer than this podcap knows (1)"));
	CHECK(sql_i64(db, "PRAGMA user_version") == 3);

	/* And the binary that knows 3 still uses it normally. */
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
