/* Tests of the flow filter language (query/).
 *
 *   test_query unit                        value parsers, errors, printer, time, shorthands
 *   test_query cases FIXTURE.sql CASES.txt every filter of CASES against the fixture database:
 *                                          the expected flow ids, or the error position
 *   test_query hostile FIXTURE.sql         NUL bytes, long, deep, wide and injection filters:
 *                                          errors at the right position, database unchanged
 *   test_query eqp FIXTURE.sql             EXPLAIN QUERY PLAN: indexed filters use indexes
 *   test_query docs docs/filters.md        every field is documented
 *   test_query sql 'FILTER'                prints the normalised filter, its SQL and parameters
 *
 * The fixture database is built from FIXTURE.sql in a fresh temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "flowdb.h"
#include "query.h"

static int failures;

#define CHECK(cond, ...)                                                                  \
	do {                                                                              \
		if (!(cond)) {                                                            \
			failures++;                                                       \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                     \
			fputc('\n', stderr);                                              \
		}                                                                         \
	} while (0)

static const int64_t T0 = 1727784000000000LL; /* 2024-10-01T12:00:00Z */

/* --- fixture --- */

static char tmpdir[256];
static char dbpath[300];

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	size_t r;
	while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap) {
			char *nb = realloc(buf, 2 * cap + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	fclose(f);
	if (buf)
		buf[n] = 0;
	if (len)
		*len = n;
	return buf;
}

static void cleanup_tmp(void)
{
	if (!tmpdir[0])
		return;
	char p[400];
	const char *sfx[] = {"", "-journal", "-wal", "-shm"};
	for (size_t i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), "%s%s", dbpath, sfx[i]);
		unlink(p);
	}
	rmdir(tmpdir);
}

static sqlite3 *open_fixture(const char *sqlpath)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/qtest.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(cleanup_tmp);
	snprintf(dbpath, sizeof(dbpath), "%s/fixture.db", tmpdir);
	char *sql = read_file(sqlpath, NULL);
	if (!sql) {
		perror(sqlpath);
		exit(1);
	}
	sqlite3 *db;
	char *msg = NULL;
	if (sqlite3_open(dbpath, &db) != SQLITE_OK || sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		fprintf(stderr, "fixture: %s\n", msg ? msg : sqlite3_errmsg(db));
		exit(1);
	}
	free(sql);
	if (fdb_sql_functions(db) != 0) {
		fprintf(stderr, "fdb_sql_functions failed\n");
		exit(1);
	}
	return db;
}

/* FNV-1a over the database file: "unchanged" means byte for byte. */
static uint64_t file_hash(const char *path)
{
	size_t n;
	char *buf = read_file(path, &n);
	if (!buf)
		return 0;
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)buf[i];
		h *= 1099511628211ULL;
	}
	free(buf);
	return h;
}

/* --- running a filter --- */

/* Binds a compiled filter's parameters to a statement of this test's own
 * connection (the flow database's cursors do this in the product). */
static int q_sql_bind(const struct q_sql *sql, sqlite3_stmt *stmt)
{
	for (size_t k = 0; k < sql->nparams; k++) {
		const struct q_param *p = &sql->params[k];
		int idx = sql->first_param + (int)k, rc;
		if (p->type == Q_PARAM_INT)
			rc = sqlite3_bind_int64(stmt, idx, p->i);
		else if (p->type == Q_PARAM_DOUBLE)
			rc = sqlite3_bind_double(stmt, idx, p->d);
		else
			rc = sqlite3_bind_text(stmt, idx, p->text, (int)p->len, SQLITE_STATIC);
		if (rc != SQLITE_OK)
			return -EINVAL;
	}
	return 0;
}

struct idset {
	int64_t id[64];
	int n;
};

/* Compiles and runs; returns 0 with the ids (ascending), or the compile error. */
static int run_filter(sqlite3 *db, const char *text, size_t len, const struct q_compile_opts *opts,
		      struct idset *out, struct q_error *err, char **sqlout)
{
	struct q_sql *sql;
	out->n = 0;
	int rc = q_compile_text(text, len, NULL, opts, &sql, err);
	if (rc)
		return rc;
	size_t qlen = sql->where_len + 100;
	char *q = malloc(qlen);
	snprintf(q, qlen, "SELECT f.id FROM flows f WHERE %s ORDER BY f.id", sql->where);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "prepare: %s\n  for %.*s\n  sql %s\n", sqlite3_errmsg(db), (int)len, text, q);
		failures++;
		free(q);
		q_sql_free(sql);
		return -EIO;
	}
	CHECK(sqlite3_stmt_readonly(st), "statement writes: %s", q);
	int first = opts ? opts->first_param : 1;
	CHECK(sqlite3_bind_parameter_count(st) == (int)(first + sql->nparams - 1) ||
	      (sql->nparams == 0 && first == 1 && sqlite3_bind_parameter_count(st) == 0),
	      "parameter count %d, compiled %zu: %s", sqlite3_bind_parameter_count(st), sql->nparams, q);
	CHECK(q_sql_bind(sql, st) == 0, "bind");
	int s;
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
		if (out->n < 64)
			out->id[out->n++] = sqlite3_column_int64(st, 0);
	CHECK(s == SQLITE_DONE, "step: %s for %s", sqlite3_errmsg(db), q);
	sqlite3_finalize(st);
	if (sqlout)
		*sqlout = strdup(sql->where);
	free(q);
	q_sql_free(sql);
	return 0;
}

static void fmt_ids(const struct idset *s, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = 0;
	for (int i = 0; i < s->n && o + 24 < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, i ? " " : "", s->id[i]);
	if (!s->n)
		snprintf(buf, len, "none");
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* "1 2 3", "none", "all", "all but 4 5" → a sorted id set. */
static void parse_expect(const char *e, struct idset *s)
{
	static const int64_t all[] = {-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
				      17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
	s->n = 0;
	if (strncmp(e, "none", 4) == 0)
		return;
	if (strncmp(e, "all", 3) == 0) {
		struct idset but = {.n = 0};
		const char *p = e + 3;
		if (strncmp(p, " but", 4) == 0) {
			p += 4;
			char *end;
			for (;;) {
				long long v = strtoll(p, &end, 10);
				if (end == p)
					break;
				but.id[but.n++] = v;
				p = end;
			}
		}
		for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
			int skip = 0;
			for (int k = 0; k < but.n; k++)
				skip |= but.id[k] == all[i];
			if (!skip)
				s->id[s->n++] = all[i];
		}
		return;
	}
	const char *p = e;
	char *end;
	for (;;) {
		long long v = strtoll(p, &end, 10);
		if (end == p)
			break;
		s->id[s->n++] = v;
		p = end;
	}
	qsort(s->id, (size_t)s->n, sizeof(s->id[0]), cmp64);
}

/* Printing a parsed filter and parsing that again gives the same text and SQL. */
static void check_roundtrip(const char *text, size_t len)
{
	struct q_filter *f, *g;
	struct q_error err;
	if (q_parse(text, len, NULL, &f, &err))
		return;
	char *p1 = q_filter_text(f);
	struct q_limits lim;
	q_limits_default(&lim);
	lim.max_len = 1 << 20;
	int rc = q_parse(p1, strlen(p1), &lim, &g, &err);
	CHECK(rc == 0, "reparse of '%s' (from '%.*s'): %s", p1, (int)len, text, err.msg);
	if (rc == 0) {
		char *p2 = q_filter_text(g);
		CHECK(strcmp(p1, p2) == 0, "print not stable: '%s' -> '%s'", p1, p2);
		struct q_sql *s1, *s2;
		if (q_compile(f, NULL, &s1, &err) == 0 && q_compile(g, NULL, &s2, &err) == 0) {
			CHECK(strcmp(s1->where, s2->where) == 0 && s1->nparams == s2->nparams,
			      "SQL differs after printing '%s'", p1);
			for (size_t k = 0; k < s1->nparams && k < s2->nparams; k++) {
				const struct q_param *a = &s1->params[k], *b = &s2->params[k];
				CHECK(a->type == b->type && a->i == b->i &&
				      (a->type != Q_PARAM_TEXT || (a->len == b->len && memcmp(a->text, b->text, a->len) == 0)),
				      "parameter %zu differs after printing '%s'", k, p1);
			}
			q_sql_free(s1);
			q_sql_free(s2);
		}
		free(p2);
		q_filter_free(g);
	}
	free(p1);
	q_filter_free(f);
}

/* --- cases --- */

static int mode_cases(const char *fixture, const char *cases_path)
{
	sqlite3 *db = open_fixture(fixture);
	char *all = read_file(cases_path, NULL);
	if (!all) {
		perror(cases_path);
		return 1;
	}
	int nfilters = 0, nerrors = 0;
	char *save = NULL;
	for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (line[0] == '#')
			continue;
		char *tab = strchr(line, '\t');
		if (!tab) {
			fprintf(stderr, "cases: no tab in line '%s'\n", line);
			failures++;
			continue;
		}
		*tab = 0;
		const char *filter = line, *expect = tab + 1;
		size_t flen = strlen(filter);
		struct idset got;
		struct q_error err;
		char *sql = NULL;
		int rc = run_filter(db, filter, flen, NULL, &got, &err, &sql);
		if (strncmp(expect, "error ", 6) == 0) {
			nerrors++;
			char *end;
			long pos = strtol(expect + 6, &end, 10);
			const char *text = *end == ' ' ? end + 1 : end;
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "position %ld: ", pos);
			CHECK(rc != 0, "'%s' parsed, expected an error at %ld", filter, pos);
			if (rc) {
				CHECK((long)err.pos == pos, "'%s': error at %u, expected %ld: %s", filter, err.pos, pos,
				      err.msg);
				CHECK(strncmp(err.msg, prefix, strlen(prefix)) == 0 && strstr(err.msg, text),
				      "'%s': message '%s' lacks '%s'", filter, err.msg, text);
				CHECK(!strchr(err.msg, '\n'), "multi-line message");
			}
			free(sql);
			continue;
		}
		nfilters++;
		struct idset want;
		parse_expect(expect, &want);
		if (rc) {
			CHECK(rc == 0, "'%s': %s", filter, err.msg);
			continue;
		}
		char gs[512], ws[512];
		fmt_ids(&got, gs, sizeof(gs));
		fmt_ids(&want, ws, sizeof(ws));
		CHECK(strcmp(gs, ws) == 0, "'%s'\n   got  %s\n   want %s\n   sql  %s", filter, gs, ws, sql);
		free(sql);
		check_roundtrip(filter, flen);
	}
	free(all);

	/* Time ranges: flow n is active from T0 + n s for its duration. */
	struct q_compile_opts o;
	q_compile_opts_default(&o);
	o.range.has_from = 1;
	o.range.from_us = T0 + 30 * 1000000LL;
	struct idset got, want;
	struct q_error err;
	CHECK(run_filter(db, "dport == 443", 12, &o, &got, &err, NULL) == 0, "range");
	/* last_us >= T0+30s: 7 (30 s from T0+7s), 16 (1 h), 25 (20 s from T0+25s), 28 (2 h),
	 * 30 and -1 (starts at T0+33s) */
	parse_expect("-1 7 16 25 28 30", &want);
	char gs[512], ws[512];
	fmt_ids(&got, gs, sizeof(gs));
	fmt_ids(&want, ws, sizeof(ws));
	CHECK(strcmp(gs, ws) == 0, "from: got %s want %s", gs, ws);
	o.range.has_to = 1;
	o.range.to_us = T0 + 29 * 1000000LL;
	o.first_param = 7;
	CHECK(run_filter(db, "dport == 443", 12, &o, &got, &err, NULL) == 0, "range");
	parse_expect("7 16 25 28", &want); /* started by T0+29s and still active at T0+30s */
	fmt_ids(&got, gs, sizeof(gs));
	fmt_ids(&want, ws, sizeof(ws));
	CHECK(strcmp(gs, ws) == 0, "from/to: got %s want %s", gs, ws);
	o.range.has_from = 0;
	CHECK(run_filter(db, "", 0, &o, &got, &err, NULL) == 0, "range only");
	CHECK(got.n == 29, "to only: %d rows", got.n); /* all but 29, 30, 31, 32 (-1 starts at 33) */
	sqlite3_close(db);
	printf("cases: %d filters with expected rows, %d with expected errors, %d failures\n", nfilters,
	       nerrors, failures);
	return failures != 0;
}

/* --- hostile input --- */

struct hostile {
	const char *name;
	char *text;
	size_t len;
	uint32_t pos;     /* expected error position, 0 = must parse */
	int code;
	struct q_limits *lim;
};

static char *repeat(const char *head, const char *unit, int n, const char *tail, size_t *len)
{
	size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
	char *s = malloc(hl + ul * (size_t)n + tl + 1);
	memcpy(s, head, hl);
	for (int i = 0; i < n; i++)
		memcpy(s + hl + ul * (size_t)i, unit, ul);
	memcpy(s + hl + ul * (size_t)n, tail, tl + 1);
	*len = hl + ul * (size_t)n + tl;
	return s;
}

static char *dup_bytes(const char *s, size_t n)
{
	char *d = malloc(n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static int mode_hostile(const char *fixture)
{
	sqlite3 *db = open_fixture(fixture);
	sqlite3_close(db);
	uint64_t before = file_hash(dbpath);
	CHECK(before != 0, "hash");
	if (sqlite3_open(dbpath, &db) != SQLITE_OK || fdb_sql_functions(db))
		return 1;

	struct hostile h[64];
	int n = 0;
	size_t len;
#define H(nm, t, l, p, c) (h[n++] = (struct hostile){nm, t, l, p, c, NULL})
	H("NUL inside a value", dup_bytes("dport == 5\0 or 1", 16), 16, 11, -EINVAL);
	H("NUL first", dup_bytes("\0", 1), 1, 1, -EINVAL);
	H("NUL inside a string", dup_bytes("host == \"a\0b\"", 13), 13, 11, -EINVAL);
	H("NUL after unicode", dup_bytes("host == \"\xc3\xbc\0\"", 13), 13, 11, -EINVAL);
	H("control character", dup_bytes("dport == 1\x01", 11), 11, 11, -EINVAL);
	H("escape sequence", dup_bytes("host == \"\x1b[31m\"", 15), 15, 10, -EINVAL);
	H("DEL", dup_bytes("host\x7f == 1", 10), 10, 5, -EINVAL);
	H("invalid UTF-8", dup_bytes("host == \xff", 9), 9, 9, -EINVAL);
	H("truncated UTF-8", dup_bytes("host == \"\xc3", 10), 10, 10, -EINVAL);
	H("overlong UTF-8 '/'", dup_bytes("host == \xc0\xaf", 10), 10, 9, -EINVAL);
	H("UTF-16 surrogate", dup_bytes("host == \xed\xa0\x80", 11), 11, 9, -EINVAL);
	/* 10 kB: refused at the first byte past 4 KiB */
	char *t = repeat("", "dport == 1 or ", 731, "dport == 2", &len);
	H("10 kB filter", t, len, 4097, -E2BIG);
	/* 10 kB of two-byte characters: the position counts characters */
	t = repeat("host == \"", "\xc3\xbc", 5000, "\"", &len);
	H("10 kB of unicode", t, len, 9 + 2044, -E2BIG); /* byte 4096 is inside the 2044th 'ü' */
	t = repeat("", "(", 1000, "dport == 1", &len);
	{
		char *u = repeat(t, ")", 1000, "", &len);
		free(t);
		H("1000-deep parentheses", u, len, 65, -E2BIG);
	}
	t = repeat("", "not ", 1000, "dport == 1", &len);
	H("1000 nots", t, len, 1 + 64 * 4, -E2BIG);
	t = repeat("", "!", 1000, "dport == 1", &len);
	H("1000 !s", t, len, 65, -E2BIG);
	t = repeat("dport in [", "1,", 300, "2]", &len);
	H("300-value list", t, len, 11 + 256 * 2, -E2BIG);
	/* 1055 values in 22 lists: refused at the 1025th, the 25th of the 21st list
	 * (each list of 50 is 111 bytes with its " or ") */
	t = repeat("", "id in [1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1] or ",
		   21, "id in [1,1,1,1,2]", &len);
	H("1025 values", t, len, 20 * 111 + 7 + 48 + 1, -E2BIG);
	t = repeat("host == \"", "'", 1000, "\"", &len);
	H("1000 quotes in a string", t, len, 0, 0);
	H("injection 1", dup_bytes("host == \"'; DROP TABLE flows; --\"", 33), 33, 0, 0);
	H("injection 2", dup_bytes("app == \"x') OR 1=1; --\"", 23), 23, 0, 0);
	H("injection 3", dup_bytes("pod == \"a' UNION SELECT * FROM flows --\"", 40), 40, 0, 0);
	H("injection 4", dup_bytes("risk == \"a%' OR '1'='1\"", 23), 23, 0, 0);
	H("injection 5", dup_bytes("ns == \"*') OR 1=1 --\"", 21), 21, 0, 0);
	H("injection 6", dup_bytes("iface in ['); DELETE FROM flows; --', \"x\"]", 42), 42, 0, 0);
	H("injection 7", dup_bytes("category ~ \"*\\\" OR 1=1 --\"", 26), 26, 0, 0);
	H("bare quote", dup_bytes("host == x';DROP", 15), 15, 10, -EINVAL);
	H("semicolon", dup_bytes("dport == 53; DELETE FROM flows", 30), 30, 10, -EINVAL);
	H("comment", dup_bytes("dport == 53 /* */", 17), 17, 13, -EINVAL);
	H("SQL or", dup_bytes("dport == 53 OR 1=1", 18), 18, 16, -EINVAL);
	H("unicode quotes", dup_bytes("host == \xe2\x80\x9cx\xe2\x80\x9d", 15), 15, 0, 0);
	H("right-to-left override", dup_bytes("host == \xe2\x80\xaex", 12), 12, 0, 0);
	H("fullwidth equals", dup_bytes("dport \xef\xbc\x9d\xef\xbc\x9d 1", 14), 14, 7, -EINVAL);
	static struct q_limits small;
	q_limits_default(&small);
	small.max_len = 16;
	h[n] = (struct hostile){"configured length", dup_bytes("dport == 443 and x", 18), 18, 17, -E2BIG, &small};
	n++;
#undef H

	for (int i = 0; i < n; i++) {
		struct q_filter *f = NULL;
		struct q_error err;
		int rc = q_parse(h[i].text, h[i].len, h[i].lim, &f, &err);
		if (h[i].pos) {
			CHECK(rc == h[i].code, "%s: rc %d, expected %d (%s)", h[i].name, rc, h[i].code, err.msg);
			CHECK(err.pos == h[i].pos, "%s: position %u, expected %u: %s", h[i].name, err.pos, h[i].pos,
			      err.msg);
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "position %u: ", h[i].pos);
			CHECK(strncmp(err.msg, prefix, strlen(prefix)) == 0, "%s: message '%s'", h[i].name, err.msg);
			for (const char *c = err.msg; *c; c++)
				CHECK((unsigned char)*c >= 0x20, "%s: control character in the message", h[i].name);
			CHECK(f == NULL, "%s: filter returned with an error", h[i].name);
			printf("  %-26s %s\n", h[i].name, err.msg);
		} else {
			CHECK(rc == 0, "%s: %s", h[i].name, err.msg);
			struct idset got;
			char *sql = NULL;
			rc = run_filter(db, h[i].text, h[i].len, NULL, &got, &err, &sql);
			CHECK(rc == 0 && got.n == 0, "%s: rc %d, %d rows", h[i].name, rc, got.n);
			/* nothing the user typed is in the SQL text */
			CHECK(sql && !strstr(sql, "DROP") && !strstr(sql, "DELETE") && !strstr(sql, "UNION") &&
			      !strstr(sql, "1=1") && !strstr(sql, "--") && !strchr(sql, ';') && !strchr(sql, '"'),
			      "%s: user text in SQL: %s", h[i].name, sql ? sql : "(none)");
			printf("  %-26s parsed; 0 rows\n", h[i].name);
			free(sql);
		}
		q_filter_free(f);
		free(h[i].text);
	}

	/* A 1000-term or-chain (limits raised): SQLite's expression depth limit is
	 * 1000, so the compiler must emit it balanced. */
	{
		char *big = malloc(16 * 1024);
		size_t o = 0;
		for (int k = 1; k <= 1000; k++)
			o += (size_t)sprintf(big + o, "%sid==%d", k > 1 ? "||" : "", k);
		struct q_limits lim;
		q_limits_default(&lim);
		lim.max_len = 16384;
		lim.max_values = 2000;
		struct q_sql *sql;
		struct q_error err;
		int rc = q_compile_text(big, o, &lim, NULL, &sql, &err);
		CHECK(rc == 0, "1000-term chain: %s", err.msg);
		if (rc == 0) {
			char *q = malloc(sql->where_len + 64);
			sprintf(q, "SELECT count(*) FROM flows f WHERE %s", sql->where);
			sqlite3_stmt *st;
			rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
			CHECK(rc == SQLITE_OK, "1000-term chain: %s", sqlite3_errmsg(db));
			if (rc == SQLITE_OK) {
				q_sql_bind(sql, st);
				CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 32,
				      "1000-term chain: count");
				sqlite3_finalize(st);
			}
			free(q);
			q_sql_free(sql);
			printf("  %-26s compiled and ran (32 rows)\n", "1000-term or-chain");
		}
		free(big);
	}
	/* Deep shapes at the depth limit: each compiles, and its SQL prepares in a
	 * plain SELECT and one sub-select deep; or the compiler refuses it with a
	 * position (never SQL that SQLite cannot parse). */
	{
		struct shape {
			const char *name;
			char *text;
			int must_compile;
			int big;
		} shapes[8];
		int ns = 0;
		char *b;
		size_t o;
#define SHAPE_BUF 40000
		/* (dport == 0 or (dport == 1 and (... dport == 99))) */
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 64; i++)
			o += (size_t)sprintf(b + o, "(dport == %d %s ", i, i % 2 ? "and" : "or");
		o += (size_t)sprintf(b + o, "dport == 99");
		for (int i = 0; i < 64; i++)
			b[o++] = ')';
		b[o] = 0;
		shapes[ns++] = (struct shape){"64 nested and/or", b, 1, 0};
		/* not (dport == 0 or not (dport == 1 or ... rtt)) */
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 32; i++)
			o += (size_t)sprintf(b + o, "not (dport == %d or ", i);
		o += (size_t)sprintf(b + o, "rtt");
		for (int i = 0; i < 32; i++)
			b[o++] = ')';
		b[o] = 0;
		shapes[ns++] = (struct shape){"32 not-(", b, 1, 0};
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 64; i++)
			o += (size_t)sprintf(b + o, "not ");
		sprintf(b + o, "rtt");
		shapes[ns++] = (struct shape){"64 nots", b, 1, 0};
		/* iface (a sub-select) at the bottom, negated tests on the way */
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 32; i++)
			o += (size_t)sprintf(b + o, "not (iface != eth%d and ", i);
		o += (size_t)sprintf(b + o, "iface ~ \"veth*\"");
		for (int i = 0; i < 32; i++)
			b[o++] = ')';
		b[o] = 0;
		shapes[ns++] = (struct shape){"32 not-( with iface", b, 1, 0};
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 64; i++)
			o += (size_t)sprintf(b + o, "(iface == e%d or ", i);
		o += (size_t)sprintf(b + o, "iface == x");
		for (int i = 0; i < 64; i++)
			b[o++] = ')';
		b[o] = 0;
		shapes[ns++] = (struct shape){"64 nested iface", b, 1, 0};
		/* 60 levels over a 256-CIDR list on both ends (512 terms) */
		b = malloc(SHAPE_BUF), o = 0;
		for (int i = 0; i < 60; i++)
			o += (size_t)sprintf(b + o, "(dport == %d %s ", i, i % 2 ? "and" : "or");
		o += (size_t)sprintf(b + o, "ip in [");
		for (int i = 0; i < 256; i++)
			o += (size_t)sprintf(b + o, "%s10.%d.0.0/%d", i ? ", " : "", i, 9 + i % 20);
		b[o++] = ']';
		for (int i = 0; i < 60; i++)
			b[o++] = ')';
		b[o] = 0;
		shapes[ns++] = (struct shape){"60 levels over 512 terms", b, 0, 1};
		/* a complete binary tree of depth 9: 512 tests, both operands deep */
		b = malloc(SHAPE_BUF), o = 0;
		{
			int leaf = 0;
			/* iterative in-order writing of a full tree via a counter */
			for (int pos = 0; pos < 512; pos++) {
				int open = 0;
				for (int k = pos; k % 2 == 0 && open < 9; k /= 2)
					open++;
				if (pos == 0)
					open = 9;
				for (int i = 0; i < open; i++)
					b[o++] = '(';
				o += (size_t)sprintf(b + o, "dport == %d", leaf++);
				int close = 0;
				for (int k = pos + 1; k % 2 == 0 && close < 9; k /= 2)
					close++;
				if (pos == 511)
					close = 9;
				for (int i = 0; i < close; i++)
					b[o++] = ')';
				if (pos < 511) {
					/* the operator of the level the next leaf opens from */
					int lvl = 0;
					for (int k = pos + 1; k % 2 == 0; k /= 2)
						lvl++;
					o += (size_t)sprintf(b + o, lvl % 2 ? " and " : " or ");
				}
			}
			b[o] = 0;
		}
		shapes[ns++] = (struct shape){"binary tree of depth 9", b, 1, 1};
		for (int i = 0; i < ns; i++) {
			struct q_limits lim;
			q_limits_default(&lim);
			if (shapes[i].big) {
				lim.max_len = 65536;
				lim.max_values = 4096;
			}
			struct q_sql *sql;
			struct q_error err;
			int rc = q_compile_text(shapes[i].text, strlen(shapes[i].text), &lim, NULL, &sql, &err);
			CHECK(rc == 0 || (!shapes[i].must_compile && rc == -E2BIG && err.pos > 0),
			      "%s: %s", shapes[i].name, err.msg);
			if (rc == 0) {
				const char *forms[] = {
					"SELECT f.id FROM flows f WHERE %s ORDER BY f.last_us DESC, f.id DESC LIMIT 100",
					"SELECT count(*) FROM (SELECT f.id FROM flows f WHERE %s AND f.id > 0 "
					"ORDER BY f.last_us DESC LIMIT 100)",
				};
				for (int k = 0; k < 2; k++) {
					char *q = malloc(sql->where_len + 200);
					sprintf(q, forms[k], sql->where);
					sqlite3_stmt *st;
					int prc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
					CHECK(prc == SQLITE_OK, "%s: form %d: %s", shapes[i].name, k, sqlite3_errmsg(db));
					if (prc == SQLITE_OK) {
						q_sql_bind(sql, st);
						while (sqlite3_step(st) == SQLITE_ROW)
							;
						sqlite3_finalize(st);
					}
					free(q);
				}
				q_sql_free(sql);
				printf("  %-26s compiled; prepares plain and in a sub-select\n", shapes[i].name);
			} else {
				printf("  %-26s %s\n", shapes[i].name, err.msg);
			}
			free(shapes[i].text);
		}
	}
	/* The compiler's parser-stack guard against SQLite itself: for each kind of
	 * test, nest it ever deeper until the compiler refuses; the deepest SQL it
	 * accepted must prepare one sub-select deep. */
	{
		static const char *const leaves[] = {
			"dport == 1", "port > 5", "bytes >= 1M", "ip == 10.0.0.0/12",
			"ip in [1.2.3.4, 10.0.0.0/8, fd00::/12, 2001:db8::/32]", "outer.ip == 10.0.0.1",
			"app == TLS", "app in [TLS.Facebook, DNS]", "app ~ \"T*\"", "host == \"*.x\"",
			"host != x", "risk == \"a b\"", "risk ~ \"*x*\"", "risk in [1, x]", "iface == eth0",
			"iface != eth0", "not iface ~ \"v*\"", "direction in [both, x]", "ns == \"kube-*\"",
			"ns == default", "pod == a", "app exists", "tunnel exists", "rtt exists",
			"not (app == TLS and not host exists)",
			"label.app == web", "label.app in [a, b*]", "src_label.k8s-app exists",
			"service == \"default/web\"", "confidence == guess", "workload == web",
		};
		const char *shapes[] = {"(dport == %d %s ", "not (dport == %d %s "};
		int worst = 1000;
		for (size_t sh = 0; sh < 2; sh++) {
			for (size_t li = 0; li < sizeof(leaves) / sizeof(leaves[0]); li++) {
				struct q_limits lim;
				q_limits_default(&lim);
				lim.max_depth = 256;
				lim.max_len = 1 << 16;
				char *last = NULL;
				int k, levels = 0;
				for (k = 1; k <= 120; k++) {
					char *b = malloc(16384);
					if (!b)
						break;
					size_t o = 0;
					if (!b)
						abort();
					for (int i = 0; i < k; i++)
						o += (size_t)sprintf(b + o, shapes[sh], i, i % 2 ? "and" : "or");
					size_t ll = strlen(leaves[li]);
					memcpy(b + o, leaves[li], ll);
					o += ll;
					for (int i = 0; i < k; i++)
						b[o++] = ')';
					b[o] = 0;
					struct q_sql *sql;
					struct q_error err;
					int rc = q_compile_text(b, o, &lim, NULL, &sql, &err);
					free(b);
					if (rc) {
						CHECK(rc == -E2BIG, "%s: %s", leaves[li], err.msg);
						break;
					}
					free(last);
					last = malloc(sql->where_len + 200);
					sprintf(last, "SELECT count(*) FROM (SELECT f.id FROM flows f WHERE %s AND f.id > 0 "
						"ORDER BY f.last_us DESC LIMIT 100)", sql->where);
					levels = k * (sh ? 2 : 1);
					q_sql_free(sql);
				}
				if (last) {
					sqlite3_stmt *st;
					int prc = sqlite3_prepare_v2(db, last, -1, &st, NULL);
					CHECK(prc == SQLITE_OK, "guard too lax for '%s' at %d levels: %s", leaves[li], levels,
					      sqlite3_errmsg(db));
					sqlite3_finalize(st);
					free(last);
				}
				if (levels < worst)
					worst = levels;
				if (getenv("QTEST_VERBOSE"))
					printf("    %2d levels: %s%s\n", levels, sh ? "not-( " : "( ", leaves[li]);
			}
		}
		/* every test still nests as deep as the parser's default limit allows */
		CHECK(worst >= 64, "the guard allows only %d levels for some test", worst);
		printf("  %-26s every kind of test nests at least %d levels deep, and the deepest prepares\n",
		       "parser-stack guard", worst);
	}
	/* The database is what it was: same bytes, same rows. */
	sqlite3_stmt *st;
	sqlite3_prepare_v2(db, "SELECT count(*), (SELECT count(*) FROM observation_points) FROM flows", -1, &st, NULL);
	CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 33 && sqlite3_column_int(st, 1) == 8,
	      "row counts changed");
	sqlite3_finalize(st);
	sqlite3_close(db);
	uint64_t after = file_hash(dbpath);
	CHECK(before == after, "database file changed: %016" PRIx64 " -> %016" PRIx64, before, after);
	printf("hostile: %d inputs, database hash %016" PRIx64 " before and %016" PRIx64 " after, %d failures\n",
	       n + 1, before, after, failures);
	return failures != 0;
}

/* --- query plans --- */

static void plan(sqlite3 *db, const char *filter, int want_index)
{
	struct q_sql *sql;
	struct q_error err;
	int rc = q_compile_text(filter, strlen(filter), NULL, NULL, &sql, &err);
	CHECK(rc == 0, "%s: %s", filter, err.msg);
	if (rc)
		return;
	char *q = malloc(sql->where_len + 128);
	sprintf(q, "EXPLAIN QUERY PLAN SELECT f.id FROM flows f WHERE %s", sql->where);
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
		CHECK(0, "%s: %s", filter, sqlite3_errmsg(db));
		free(q);
		q_sql_free(sql);
		return;
	}
	q_sql_bind(sql, st);
	char lines[2048];
	size_t o = 0;
	int scan = 0, index = 0;
	lines[0] = 0;
	while (sqlite3_step(st) == SQLITE_ROW) {
		const char *d = (const char *)sqlite3_column_text(st, 3);
		if (!d)
			continue;
		if (o < sizeof(lines) - 1)
			o += (size_t)snprintf(lines + o, sizeof(lines) - o, "%s%s", o ? " | " : "", d);
		if (strncmp(d, "SCAN f", 6) == 0 && (d[6] == 0 || d[6] == ' '))
			scan = 1;
		if (strstr(d, "SEARCH f USING") && (strstr(d, "INDEX") || strstr(d, "PRIMARY KEY")))
			index = 1;
	}
	sqlite3_finalize(st);
	if (want_index)
		CHECK(index && !scan, "%s: not indexed: %s", filter, lines);
	else
		CHECK(scan, "%s: expected a scan: %s", filter, lines);
	printf("  %-46s %s\n", filter, lines);
	free(q);
	q_sql_free(sql);
}

static int mode_eqp(const char *fixture)
{
	sqlite3 *db = open_fixture(fixture);
	/* with the production indexes (store/store.c) */
	plan(db, "ip == 10.244.1.10 and dport == 443", 1);
	plan(db, "ip == 10.244.1.10", 1);
	plan(db, "src == 10.244.1.10", 1);
	plan(db, "dst in [10.96.0.10, 10.96.0.1]", 1);
	plan(db, "dport == 53", 1);
	plan(db, "dport in [53, 443]", 1);
	plan(db, "src == 10.244.1.0/24", 1);
	plan(db, "ip == 10.244.1.0/24", 1);
	plan(db, "src == 10.244.16.0/20", 1);
	plan(db, "src == 2001:db8::/32", 1);
	plan(db, "ip == fd12:3456::/31", 1);
	plan(db, "outer.ip == 192.168.1.1", 1);
	plan(db, "outer.src == 192.168.0.0/16", 1);
	plan(db, "app == \"TLS.Facebook\"", 1);
	plan(db, "pod == \"default/frontend-7d9\"", 1);
	plan(db, "pod == \"default/front*\"", 1);
	plan(db, "ns == default", 1);
	plan(db, "src_pod == \"default/frontend-7d9\"", 1);
	plan(db, "dst_pod == web-2", 0);   /* a name in any namespace: a glob, no prefix */
	plan(db, "dst_ns == kube-system", 1);
	plan(db, "pod == \"default/web-*\" and dport == 80", 1);
	plan(db, "id == 7", 1);
	plan(db, "id in [1, 2, 3]", 1);
	plan(db, "app == TLS and host == \"*.example.com\" and dport == 443", 1);
	plan(db, "(dport == 53 or dport == 123) and proto == udp", 1);
	/* either-part app names also need master_name: a scan without its index */
	plan(db, "app == TLS", 0);
	plan(db, "host == example.com", 0);
	/* with the index the compiler is designed for (see docs/filters.md) */
	char *msg = NULL;
	int rc = sqlite3_exec(db, "CREATE INDEX flows_master ON flows(master_name COLLATE NOCASE)", NULL, NULL, &msg);
	CHECK(rc == SQLITE_OK, "create index: %s", msg ? msg : "");
	sqlite3_free(msg);
	printf("  + flows(master_name COLLATE NOCASE):\n");
	plan(db, "app == TLS", 1);
	plan(db, "app == Facebook", 1);
	plan(db, "app in [DNS, NTP]", 1);
	plan(db, "app == TLS and host == \"*.example.com\"", 1);
	sqlite3_close(db);
	printf("eqp: %d failures\n", failures);
	return failures != 0;
}

/* --- unit tests --- */

static void expect_time(const char *text, int64_t now, int64_t want)
{
	int64_t got = 0;
	struct q_error err;
	int rc = q_time_parse(text, strlen(text), now, &got, &err);
	CHECK(rc == 0 && got == want, "time '%s': rc %d got %" PRId64 " want %" PRId64 " (%s)", text, rc, got,
	      want, rc ? err.msg : "");
}

static void expect_time_err(const char *text, size_t len, uint32_t pos)
{
	int64_t got = 0;
	struct q_error err;
	int rc = q_time_parse(text, len, T0, &got, &err);
	CHECK(rc < 0 && err.pos == pos, "time '%.*s': rc %d pos %u want %u (%s)", (int)len, text, rc, err.pos, pos,
	      err.msg);
}

static void expect_print(const char *in, const char *want)
{
	struct q_filter *f;
	struct q_error err;
	int rc = q_parse(in, strlen(in), NULL, &f, &err);
	CHECK(rc == 0, "'%s': %s", in, err.msg);
	if (rc)
		return;
	char *p = q_filter_text(f);
	CHECK(p && strcmp(p, want) == 0, "print '%s': got '%s' want '%s'", in, p ? p : "(null)", want);
	free(p);
	q_filter_free(f);
	check_roundtrip(in, strlen(in));
}

static void expect_value(const char *filter, int64_t want)
{
	struct q_sql *sql;
	struct q_error err;
	int rc = q_compile_text(filter, strlen(filter), NULL, NULL, &sql, &err);
	CHECK(rc == 0, "'%s': %s", filter, err.msg);
	if (rc)
		return;
	CHECK(sql->nparams == 1 && sql->params[0].type == Q_PARAM_INT && sql->params[0].i == want,
	      "'%s': got %" PRId64 " want %" PRId64, filter, sql->nparams ? sql->params[0].i : -1, want);
	q_sql_free(sql);
}

static void expect_error(const char *filter, uint32_t pos)
{
	struct q_filter *f;
	struct q_error err;
	int rc = q_parse(filter, strlen(filter), NULL, &f, &err);
	CHECK(rc < 0 && err.pos == pos, "'%s': rc %d pos %u want %u (%s)", filter, rc, err.pos, pos, err.msg);
	if (!rc)
		q_filter_free(f);
}

static int mode_unit(void)
{
	/* sizes: k M G T are powers of 1000 (as in Kubernetes quantities and SI),
	 * Ki Mi Gi Ti powers of 1024, an optional B */
	expect_value("bytes > 1k", 1000);
	expect_value("bytes > 1K", 1000);
	expect_value("bytes > 1kB", 1000);
	expect_value("bytes > 1M", 1000000);
	expect_value("bytes > 1MB", 1000000);
	expect_value("bytes > 1MiB", 1048576);
	expect_value("bytes > 1Mi", 1048576);
	expect_value("bytes > 2G", 2000000000);
	expect_value("bytes > 1Ti", 1099511627776LL);
	expect_value("bytes > 1.5k", 1500);
	expect_value("bytes > 0.5KiB", 512);
	expect_value("bytes > 1500B", 1500);
	expect_value("packets > 5k", 5000);
	expect_value("packets > 2M", 2000000);
	expect_error("bytes > 1.0005k", 9);
	expect_error("bytes > 1m", 9);
	expect_error("bytes > 1b", 9);
	expect_error("bytes > k", 9);
	expect_error("bytes > 1.k", 9);
	expect_error("packets > 1KiB", 11);
	expect_error("packets > 1B", 11);
	expect_error("bytes > 9223372036854775808", 9);
	expect_value("bytes > 9223372036854775807", INT64_MAX);
	expect_error("bytes > 8388608Ti", 9);
	/* durations in µs */
	expect_value("rtt > 5s", 5000000);
	expect_value("rtt > 200ms", 200000);
	expect_value("rtt > 1m", 60000000);
	expect_value("duration > 2h", 7200000000LL);
	expect_value("duration > 1d", 86400000000LL);
	expect_value("duration > 1h30m", 5400000000LL);
	expect_value("duration > 1.5s", 1500000);
	expect_value("rtt > 100us", 100);
	expect_value("rtt > 100\xc2\xb5s", 100);
	expect_value("rtt > 0", 0);
	expect_value("duration > 2min", 120000000);
	expect_error("rtt > 5", 7);
	expect_error("rtt > 0.5us", 7);
	expect_error("rtt > 1.0000005s", 7);
	expect_error("rtt > 1s2", 7);
	expect_error("rtt > 5S", 7);
	expect_error("rtt > 99999999999999d", 7);
	/* numbers */
	expect_value("dport == 0", 0);
	expect_value("dport == 65535", 65535);
	expect_value("vni == 4294967295", 4294967295LL);
	expect_value("id == 18446744073709551615", -1);
	expect_value("proto == TCP", 6);
	expect_value("proto == ipv6-icmp", 58);
	expect_error("dport == 65536", 10);
	expect_error("dport == 1e3", 10);
	expect_error("dport == +1", 10);
	expect_error("dport == 0x", 10);
	expect_error("vni == 4294967296", 8);

	/* the message format, exactly */
	{
		struct q_filter *f;
		struct q_error err;
		int rc = q_parse("dport == ", 9, NULL, &f, &err);
		CHECK(rc == -EINVAL, "rc %d", rc);
		CHECK(strcmp(err.msg, "position 10: expected a value after '==', found end of filter") == 0,
		      "message: %s", err.msg);
		CHECK(strcmp(err.found, "end of filter") == 0 && strcmp(err.expected, "a value after '=='") == 0 &&
		      err.byte == 9, "parts: '%s' '%s' %u", err.found, err.expected, err.byte);
		rc = q_parse("src == 10.0.0.1 and dport == abc", 32, NULL, &f, &err);
		CHECK(strcmp(err.msg, "position 30: expected a port number (0-65535) for 'dport', found 'abc'") == 0,
		      "message: %s", err.msg);
		rc = q_parse(NULL, 0, NULL, &f, &err);
		CHECK(rc == 0 && f, "NULL text is the empty filter");
		q_filter_free(f);
		/* a long token is shortened in the message */
		char longv[200];
		memset(longv, 'a', sizeof(longv));
		memcpy(longv, "dport == ", 9);
		rc = q_parse(longv, sizeof(longv), NULL, &f, &err);
		CHECK(rc == -EINVAL && strlen(err.msg) < 200 && strstr(err.msg, "...'"), "long: %s", err.msg);
	}

	/* the printer normalises */
	expect_print("", "");
	expect_print("DPORT==443", "dport == 443");
	expect_print("src==10.244.1.5/24&&!host", "src == 10.244.1.0/24 and not host exists");
	expect_print("ip == 2001:DB8:0:0::1", "ip == 2001:db8::1");
	expect_print("src == ::ffff:10.0.0.1", "src == 10.0.0.1");
	expect_print("bytes > 1M and rtt > 1500us", "bytes > 1000000 and rtt > 1500us");
	expect_print("duration >= 90m", "duration >= 90m");
	expect_print("duration >= 1h30m", "duration >= 90m");
	expect_print("rtt < 0.25s", "rtt < 250ms");
	expect_print("proto == 6 or proto == 99", "proto == tcp or proto == 99");
	expect_print("app in (DNS,NTP)", "app in [DNS, NTP]");
	expect_print("host == 'it\\''", "host == \"it'\"");
	expect_print("host == \"a\\\\b\\\"c\"", "host == \"a\\\\b\\\"c\"");
	expect_print("host == \"\"", "host == \"\"");
	expect_print("host == and", "host == and");
	expect_print("app == \"TLS.Facebook\"", "app == TLS.Facebook");
	expect_print("(app == TLS or app == DNS) and port == 53",
		     "(app == TLS or app == DNS) and port == 53");
	expect_print("app == TLS or (app == DNS and port == 53)", "app == TLS or app == DNS and port == 53");
	expect_print("not (dport == 1 or dport == 2)", "not (dport == 1 or dport == 2)");
	expect_print("((app == TLS or app == DNS) or app == NTP)", "app == TLS or app == DNS or app == NTP");
	expect_print("not not rtt", "not not rtt exists");
	expect_print("dport not in [1,2]", "dport not in [1, 2]");
	expect_print("host !~ \"*.a\"", "host !~ *.a");
	expect_print("id == 18446744073709551615", "id == 18446744073709551615");
	expect_print("community_id == 1:abc=", "community_id == \"1:abc=\"");
	expect_print("host == \"a b\"", "host == \"a b\"");
	expect_print("host == h\xc3\xbcst", "host == h\xc3\xbcst");
	expect_print("dport ge 5 and dport le 6", "dport >= 5 and dport <= 6");

	/* compile: parameters only, numbered from first_param */
	{
		struct q_sql *sql;
		struct q_error err;
		struct q_compile_opts o;
		q_compile_opts_default(&o);
		o.first_param = 3;
		int rc = q_compile_text("ip == 10.0.0.1", 14, NULL, &o, &sql, &err);
		CHECK(rc == 0 && strcmp(sql->where, "(((f.src = ?3) OR (f.dst = ?3)))") == 0 && sql->nparams == 1 &&
		      sql->params[0].type == Q_PARAM_TEXT && strcmp(sql->params[0].text, "10.0.0.1") == 0,
		      "ip: %s", rc ? err.msg : sql->where);
		if (!rc)
			q_sql_free(sql);
		rc = q_compile(NULL, NULL, &sql, &err);
		CHECK(rc == 0 && strcmp(sql->where, "(1)") == 0 && sql->nparams == 0, "empty");
		if (!rc)
			q_sql_free(sql);
		rc = q_compile_text("src == 10.244.1.0/24", 20, NULL, NULL, &sql, &err);
		CHECK(rc == 0 && strcmp(sql->where, "((f.src >= ?1 AND f.src < ?2))") == 0 &&
		      strcmp(sql->params[0].text, "10.244.1.") == 0 && strcmp(sql->params[1].text, "10.244.1/") == 0,
		      "cidr: %s", rc ? err.msg : sql->where);
		if (!rc)
			q_sql_free(sql);
		rc = q_compile_text("src == 2001:db8::/32", 20, NULL, NULL, &sql, &err);
		CHECK(rc == 0 && strcmp(sql->params[0].text, "2001:db8:") == 0 &&
		      strcmp(sql->params[1].text, "2001:db8;") == 0 && sql->nparams == 2,
		      "cidr6: %s", rc ? err.msg : sql->where);
		if (!rc)
			q_sql_free(sql);
		rc = q_compile_text("src == 10.96.0.0/12", 19, NULL, NULL, &sql, &err);
		CHECK(rc == 0 && strstr(sql->where, "ip_in_net(f.src, ?3, ?4)") && sql->nparams == 4 &&
		      strcmp(sql->params[0].text, "10.") == 0 && sql->params[3].i == 12,
		      "cidr12: %s", rc ? err.msg : sql->where);
		if (!rc)
			q_sql_free(sql);
		o.first_param = 0;
		rc = q_compile_text("", 0, NULL, &o, &sql, &err);
		CHECK(rc == -EINVAL, "first_param 0 accepted");
	}
	/* binding to a statement with fewer parameters fails cleanly */
	{
		sqlite3 *db;
		sqlite3_open(":memory:", &db);
		sqlite3_stmt *st;
		sqlite3_prepare_v2(db, "SELECT ?1", -1, &st, NULL);
		struct q_sql *sql;
		struct q_error err;
		q_compile_text("port == 1 and dport == 2", 24, NULL, NULL, &sql, &err);
		CHECK(q_sql_bind(sql, st) == -EINVAL, "bind beyond the statement");
		q_sql_free(sql);
		sqlite3_finalize(st);
		/* q_cidr itself */
		CHECK(fdb_sql_functions(db) == 0, "register");
		const char *probes[][2] = {
			{"SELECT ip_in_net('10.1.2.3', '10.0.0.0', 8)", "1"},
			{"SELECT ip_in_net('11.1.2.3', '10.0.0.0', 8)", "0"},
			{"SELECT ip_in_net('10.1.2.3', '10.0.0.0', 7)", "1"},
			{"SELECT ip_in_net('11.1.2.3', '10.0.0.0', 7)", "1"},
			{"SELECT ip_in_net('12.1.2.3', '10.0.0.0', 7)", "0"},
			{"SELECT ip_in_net('2001:db8::1', '2001:db8::', 32)", "1"},
			{"SELECT ip_in_net('2001:db9::1', '2001:db8::', 32)", "0"},
			{"SELECT ip_in_net('10.1.2.3', '::', 0)", "0"},
			{"SELECT ip_in_net('10.1.2.3', '0.0.0.0', 0)", "1"},
			{"SELECT ip_in_net('junk', '0.0.0.0', 0)", NULL},
			{"SELECT ip_in_net(NULL, '0.0.0.0', 0)", NULL},
			{"SELECT ip_in_net('10.1.2.3', 'junk', 8)", "0"},
			{"SELECT ip_in_net('10.1.2.3', '10.0.0.0', 99)", "0"},
			{"SELECT ip_in_net('10.1.2.3', '10.0.0.0', -1)", "0"},
		};
		for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
			sqlite3_prepare_v2(db, probes[i][0], -1, &st, NULL);
			CHECK(sqlite3_step(st) == SQLITE_ROW, "%s", probes[i][0]);
			const char *v = (const char *)sqlite3_column_text(st, 0);
			CHECK((v == NULL && probes[i][1] == NULL) || (v && probes[i][1] && strcmp(v, probes[i][1]) == 0),
			      "%s = %s", probes[i][0], v ? v : "NULL");
			sqlite3_finalize(st);
		}
		sqlite3_close(db);
	}

	/* time */
	expect_time("now", T0, T0);
	expect_time(" now ", T0, T0);
	expect_time("-1h", T0, T0 - 3600000000LL);
	expect_time("1h", T0, T0 - 3600000000LL);
	expect_time("now-30m", T0, T0 - 1800000000LL);
	expect_time("NOW+1d", T0, T0 + 86400000000LL);
	expect_time("-1h30m", T0, T0 - 5400000000LL);
	expect_time("2024-10-01T12:00:00Z", 1, T0);
	expect_time("2024-10-01t12:00:00z", 1, T0);
	expect_time("2024-10-01 12:00:00", 1, T0);
	expect_time("2024-10-01T14:00:00+02:00", 1, T0);
	expect_time("2024-10-01T07:30:00-0430", 1, T0);
	expect_time("2024-10-01T12:00Z", 1, T0);
	expect_time("2024-10-01T12:00:00.25Z", 1, T0 + 250000);
	expect_time("2024-10-01T12:00:00.123456789Z", 1, T0 + 123456);
	expect_time("2024-10-01", 1, T0 - 12 * 3600000000LL);
	expect_time("1970-01-01T00:00:00Z", 1, 0);
	expect_time("2000-02-29", 1, 951782400000000LL);
	expect_time("1727784000", 1, T0);
	expect_time("1727784000.5", 1, T0 + 500000);
	expect_time_err("", 0, 1);
	expect_time_err("abc", 3, 1);
	expect_time_err("2023-02-29", 10, 1);
	expect_time_err("2024-13-01", 10, 1);
	expect_time_err("2024-10-01T24:00:00Z", 20, 1);
	expect_time_err("2024-10-01T12:00:00Q", 20, 1);
	expect_time_err("2024-10-01T12:00:00.Z", 21, 1);
	expect_time_err("-", 1, 1);
	expect_time_err("-5", 2, 1);
	expect_time_err("now-", 4, 1);
	expect_time_err("  x", 3, 3);
	expect_time_err("12\0", 3, 3);
	expect_time_err("1727784000.1234567", 18, 1);
	expect_time_err("99999999999999999999", 20, 1);
	{
		int64_t now = 0;
		CHECK(q_time_parse("now", 3, 0, &now, NULL) == 0 && now > T0, "wall clock");
		char big[100];
		memset(big, '1', sizeof(big));
		struct q_error err;
		CHECK(q_time_parse(big, sizeof(big), T0, &now, &err) == -E2BIG && err.pos == 65, "long time: %s",
		      err.msg);
	}

	/* shorthands */
	{
		char *s = q_shorthand(NULL, "TLS", "10.0.0.1", 443);
		CHECK(s && strcmp(s, "app == \"TLS\" and (ip == \"10.0.0.1\" or outer.ip == \"10.0.0.1\") and port == 443") == 0,
		      "%s", s);
		free(s);
		s = q_shorthand("rtt > 1s", NULL, NULL, -1);
		CHECK(s && strcmp(s, "rtt > 1s") == 0, "%s", s);
		free(s);
		s = q_shorthand("rtt > 1s or dport == 1", "a\"b\\", NULL, 53);
		CHECK(s && strcmp(s, "(rtt > 1s or dport == 1) and app == \"a\\\"b\\\\\" and port == 53") == 0, "%s", s);
		struct q_filter *f;
		struct q_error err;
		CHECK(q_parse(s, strlen(s), NULL, &f, &err) == 0, "shorthand parses: %s", err.msg);
		q_filter_free(f);
		free(s);
		s = q_shorthand(NULL, NULL, NULL, -1);
		CHECK(s && strcmp(s, "") == 0, "nothing");
		free(s);
		errno = 0;
		CHECK(q_shorthand(NULL, NULL, NULL, 65536) == NULL && errno == EINVAL, "port range");
		s = q_shorthand(NULL, NULL, "foo", -1);
		CHECK(q_parse(s, strlen(s), NULL, &f, &err) == -EINVAL && err.pos == 8, "bad ip: %s", err.msg);
		free(s);
	}

	/* the field table */
	{
		size_t n = q_field_count();
		CHECK(n >= 40, "%zu fields", n);
		CHECK(q_field(n) == NULL, "past the end");
		for (size_t i = 0; i < n; i++) {
			const struct q_field_info *fi = q_field(i);
			CHECK(fi && fi->name && fi->type && fi->operators && fi->description && *fi->description,
			      "field %zu incomplete", i);
			for (size_t j = 0; j < i; j++)
				CHECK(strcmp(q_field(j)->name, fi->name) != 0, "duplicate field %s", fi->name);
			/* every field takes `exists` and parses */
			char buf[128];
			snprintf(buf, sizeof(buf), "%s exists", fi->name);
			struct q_sql *sql;
			struct q_error err;
			CHECK(q_compile_text(buf, strlen(buf), NULL, NULL, &sql, &err) == 0, "%s: %s", buf, err.msg);
			q_sql_free(sql);
		}
		const char *must[] = {"src", "dst", "ip", "sport", "dport", "port", "proto", "app", "category",
				      "host", "pod", "ns", "iface", "tunnel", "vni", "outer.src", "outer.dst",
				      "outer.ip", "bytes", "packets", "duration", "rtt", "retrans", "risk",
				      "community_id", "id"};
		for (size_t k = 0; k < sizeof(must) / sizeof(must[0]); k++) {
			int found = 0;
			for (size_t i = 0; i < n; i++)
				found |= strcmp(q_field(i)->name, must[k]) == 0;
			CHECK(found, "field %s missing", must[k]);
		}
	}
	printf("unit: %d failures\n", failures);
	return failures != 0;
}

/* docs/filters.md documents every field in its table. */
static int mode_docs(const char *path)
{
	char *doc = read_file(path, NULL);
	if (!doc) {
		perror(path);
		return 1;
	}
	for (size_t i = 0; i < q_field_count(); i++) {
		char row[64];
		snprintf(row, sizeof(row), "| `%s` |", q_field(i)->name);
		CHECK(strstr(doc, row) != NULL, "field %s is not in %s", q_field(i)->name, path);
	}
	free(doc);
	printf("docs: %zu fields documented, %d failures\n", q_field_count(), failures);
	return failures != 0;
}

/* Shows what a filter becomes: for debugging and for the docs' examples. */
static int mode_sql(const char *text)
{
	struct q_filter *f;
	struct q_error err;
	if (q_parse(text, strlen(text), NULL, &f, &err)) {
		printf("%s\n", err.msg);
		return 1;
	}
	char *p = q_filter_text(f);
	struct q_sql *sql;
	if (q_compile(f, NULL, &sql, &err)) {
		printf("%s\n", err.msg);
		return 1;
	}
	printf("filter: %s\nwhere:  %s\n", p, sql->where);
	for (size_t k = 0; k < sql->nparams; k++) {
		const struct q_param *q = &sql->params[k];
		if (q->type == Q_PARAM_TEXT)
			printf("  ?%zu = '%s'\n", k + 1, q->text);
		else
			printf("  ?%zu = %" PRId64 "\n", k + 1, q->i);
	}
	free(p);
	q_sql_free(sql);
	q_filter_free(f);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "docs") == 0)
		return mode_docs(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "sql") == 0)
		return mode_sql(argv[2]);
	if (argc >= 2 && strcmp(argv[1], "unit") == 0)
		return mode_unit();
	if (argc >= 4 && strcmp(argv[1], "cases") == 0)
		return mode_cases(argv[2], argv[3]);
	if (argc >= 3 && strcmp(argv[1], "hostile") == 0)
		return mode_hostile(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "eqp") == 0)
		return mode_eqp(argv[2]);
	fprintf(stderr, "usage: test_query unit | cases FIXTURE CASES | hostile FIXTURE | eqp FIXTURE\n");
	return 2;
}
