/* libFuzzer target for the filter language (query/): the input is filter text.
 *
 * Every input goes through q_parse with the default limits; one that parses is
 * compiled, printed, parsed again from the printed text, printed and compiled
 * again, and its SQL is prepared and run on a small in-memory flow table.  Any
 * of these invariants failing aborts (a finding):
 *   - an error has a position inside the text (+1 for "end of filter"), a one-line
 *     message "position N: ..." without control characters, and a known code;
 *   - a filter that parses is within the limits and compiles, or the compiler
 *     refuses it (-E2BIG, with a position) as too deep for SQLite's parser;
 *   - printing is stable and keeps the meaning (same SQL, same parameters);
 *   - the SQL prepares (no syntax error, no unknown column, no parser stack
 *     overflow) one sub-select deep in a statement, and runs read-only.
 * The input also goes through q_time_parse.  Also built without libFuzzer
 * (tests/query/meson.build: query_regress) to replay tests/query/regress/. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                           \
	do {                                                                                 \
		if (!(c)) {                                                                  \
			fprintf(stderr, "fuzz_filter: invariant failed: %s (line %d)\n", #c, __LINE__); \
			abort();                                                             \
		}                                                                            \
	} while (0)

static const char schema[] =
	"CREATE TABLE observation_points (id INTEGER PRIMARY KEY, iface TEXT NOT NULL,"
	" direction TEXT NOT NULL, pod TEXT, linktype INTEGER NOT NULL, first_seen_us INTEGER NOT NULL);"
	"CREATE TABLE flows (id INTEGER PRIMARY KEY, obs_id INTEGER, pod TEXT, end_reason TEXT NOT NULL,"
	" family INTEGER NOT NULL, ip_proto INTEGER NOT NULL, src TEXT, dst TEXT, sport INTEGER, dport INTEGER,"
	" vlan INTEGER, tunnel TEXT NOT NULL, vni INTEGER, outer_family INTEGER, outer_proto INTEGER,"
	" outer_src TEXT, outer_dst TEXT, outer_sport INTEGER, outer_dport INTEGER,"
	" first_us INTEGER NOT NULL, last_us INTEGER NOT NULL, c2s_pkts INTEGER, s2c_pkts INTEGER,"
	" c2s_bytes INTEGER, s2c_bytes INTEGER, c2s_payload INTEGER, s2c_payload INTEGER,"
	" c2s_tcp_flags INTEGER, s2c_tcp_flags INTEGER, syn INTEGER, synack INTEGER, fin INTEGER,"
	" rst INTEGER, rtt_us INTEGER, c2s_retrans INTEGER, s2c_retrans INTEGER, c2s_ooo INTEGER,"
	" s2c_ooo INTEGER, frags INTEGER, community_id TEXT, master_id INTEGER, app_id INTEGER,"
	" proto_name TEXT, master_name TEXT, app_name TEXT, category TEXT, risk INTEGER, risk_names TEXT,"
	" host TEXT, url TEXT, http_status INTEGER, dns_rcode INTEGER, ja3c TEXT, ja3s TEXT,"
	" dpi_done INTEGER, packets_state TEXT NOT NULL DEFAULT 'none',"
	/* schema 2 (store/flowdb/flowdb.c migration 1 -> 2) */
	" confidence TEXT, src_pod TEXT, src_ns TEXT, src_node TEXT, src_workload TEXT, src_labels TEXT,"
	" dst_pod TEXT, dst_ns TEXT, dst_node TEXT, dst_workload TEXT, dst_labels TEXT,"
	" service TEXT, service_via TEXT, outer_src_node TEXT, outer_dst_node TEXT);"
	"CREATE INDEX flows_src_dport ON flows(src, dport); CREATE INDEX flows_dst_dport ON flows(dst, dport);"
	"CREATE INDEX flows_app ON flows(app_name COLLATE NOCASE);"
	"CREATE INDEX flows_pod ON flows(pod) WHERE pod IS NOT NULL;"
	"INSERT INTO observation_points VALUES (1, 'eth0', 'both', 'default/web-1', 1, 0);"
	"INSERT INTO flows (id, obs_id, pod, end_reason, family, ip_proto, src, dst, sport, dport, vlan,"
	" tunnel, vni, outer_src, outer_dst, first_us, last_us, c2s_bytes, s2c_bytes, rtt_us,"
	" proto_name, master_name, app_name, host, risk, risk_names) VALUES"
	" (1, 1, 'default/web-1', 'idle', 4, 6, '10.244.1.10', '10.244.2.20', 40000, 443, 0, 'vxlan', 1,"
	"  '192.168.1.1', '192.168.1.2', 0, 1000, 10, 20, 500, 'TLS.Facebook', 'TLS', 'Facebook',"
	"  'www.facebook.com', 64, 'Self-signed Certificate'),"
	" (2, NULL, NULL, 'tcp', 6, 17, '2001:db8::1', 'fe80::2', 53, 5353, 0, 'none', NULL, NULL, NULL,"
	"  5, 5, 1, 0, NULL, NULL, NULL, NULL, NULL, 0, NULL);";

static sqlite3 *db;

/* The SQL functions compiled filters may call are the flow database's; here
 * only their names and arity matter (the SQL must prepare and run). */
static void stub_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	(void)argc;
	(void)argv;
	sqlite3_result_int(ctx, 0);
}

/* Binds the compiled parameters, as the flow database's cursors do. */
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

static void run_sql(const struct q_sql *sql);

/* The table above is a copy of the flow database's: when a field is added to
 * query/fields.c with a column the copy lacks, every later input touching it
 * would "crash".  So the first input checks that "FIELD exists" of every field
 * prepares here, and this runs in the normal tests too (query-regress). */
static void check_fields(void)
{
	for (size_t i = 0; i < q_field_count(); i++) {
		const struct q_field_info *fi = q_field(i);
		if (!strstr(fi->operators, "exists"))
			continue;
		/* a family ("label.KEY") takes one key */
		char text[128];
		size_t n = strlen(fi->name);
		if (n > 4 && strcmp(fi->name + n - 4, ".KEY") == 0)
			snprintf(text, sizeof(text), "%.*s.app exists", (int)(n - 4), fi->name);
		else
			snprintf(text, sizeof(text), "%s exists", fi->name);
		struct q_limits lim;
		q_limits_default(&lim);
		struct q_filter *f = NULL;
		struct q_sql *s = NULL;
		struct q_error err;
		if (q_parse(text, strlen(text), &lim, &f, &err) != 0)
			fprintf(stderr, "fuzz_filter: '%s': %s\n", text, err.msg);
		REQUIRE(f != NULL);
		REQUIRE(q_compile(f, NULL, &s, &err) == 0);
		run_sql(s);
		q_sql_free(s);
		q_filter_free(f);
	}
}

static void open_db(void)
{
	if (db)
		return;
	REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
	REQUIRE(sqlite3_exec(db, schema, NULL, NULL, NULL) == SQLITE_OK);
	REQUIRE(sqlite3_create_function(db, "ip_in_net", 3, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, stub_fn,
					NULL, NULL) == SQLITE_OK);
	check_fields();
}

static size_t count_chars(const uint8_t *s, size_t n)
{
	size_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += (s[i] & 0xC0) != 0x80;
	return c;
}

static void check_error(const struct q_error *err, int rc, const uint8_t *data, size_t size)
{
	REQUIRE(rc == -EINVAL || rc == -E2BIG || rc == -ENOMEM);
	REQUIRE(err->code == rc);
	if (rc == -ENOMEM)
		return;
	REQUIRE(err->pos >= 1 && err->pos <= count_chars(data, size) + 1);
	REQUIRE(err->byte <= size);
	REQUIRE(strncmp(err->msg, "position ", 9) == 0);
	size_t n = strnlen(err->msg, sizeof(err->msg));
	REQUIRE(n < sizeof(err->msg));
	for (size_t i = 0; i < n; i++)
		REQUIRE((unsigned char)err->msg[i] >= 0x20 && err->msg[i] != 0x7f);
}

static void run_sql(const struct q_sql *sql)
{
	open_db();
	size_t len = sql->where_len + 160;
	char *q = malloc(len);
	REQUIRE(q);
	/* one sub-select deep, as the API may use it: the compiler's stack budget
	 * promises that much room */
	snprintf(q, len, "SELECT count(*) FROM (SELECT f.id FROM flows f WHERE %s AND f.id > 0 ORDER BY f.last_us DESC LIMIT 10)",
		 sql->where);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, q, -1, &st, NULL);
	if (rc != SQLITE_OK)
		fprintf(stderr, "fuzz_filter: %s\n  %s\n", sqlite3_errmsg(db), q);
	REQUIRE(rc == SQLITE_OK);
	REQUIRE(sqlite3_stmt_readonly(st));
	REQUIRE(sqlite3_bind_parameter_count(st) <= (int)sql->nparams);
	REQUIRE(q_sql_bind(sql, st) == 0);
	int steps = 0;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		steps++;
	REQUIRE(rc == SQLITE_DONE && steps == 1);
	sqlite3_finalize(st);
	free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct q_limits lim;
	q_limits_default(&lim);
	struct q_filter *f = NULL;
	struct q_error err;
	int rc = q_parse((const char *)data, size, &lim, &f, &err);

	int64_t t;
	struct q_error terr;
	if (q_time_parse((const char *)data, size, 1727784000000000LL, &t, &terr) != 0)
		REQUIRE(terr.pos >= 1 && terr.pos <= size + 1);

	if (rc) {
		REQUIRE(f == NULL);
		check_error(&err, rc, data, size);
		return 0;
	}
	REQUIRE(size <= lim.max_len);
	struct q_sql *s1 = NULL;
	rc = q_compile(f, NULL, &s1, &err);
	if (rc == -ENOMEM || rc == -E2BIG) {
		if (rc == -E2BIG)
			check_error(&err, rc, data, size);
		q_filter_free(f);
		return 0;
	}
	REQUIRE(rc == 0);
	/* at most four parameters per value (a CIDR's range and network) */
	REQUIRE(s1->nparams <= 4 * (size_t)lim.max_values);
	run_sql(s1);

	char *p1 = q_filter_text(f);
	REQUIRE(p1);
	struct q_limits relaxed = lim;
	relaxed.max_len = 1 << 20;
	relaxed.max_depth = 256;
	struct q_filter *g = NULL;
	rc = q_parse(p1, strlen(p1), &relaxed, &g, &err);
	if (rc)
		fprintf(stderr, "fuzz_filter: printed '%s' does not parse: %s\n", p1, err.msg);
	REQUIRE(rc == 0);
	char *p2 = q_filter_text(g);
	REQUIRE(p2);
	if (strcmp(p1, p2))
		fprintf(stderr, "fuzz_filter: print not stable:\n  %s\n  %s\n", p1, p2);
	REQUIRE(strcmp(p1, p2) == 0);
	struct q_sql *s2 = NULL;
	REQUIRE(q_compile(g, NULL, &s2, &err) == 0);
	REQUIRE(strcmp(s1->where, s2->where) == 0 && s1->nparams == s2->nparams);
	for (size_t k = 0; k < s1->nparams; k++) {
		const struct q_param *a = &s1->params[k], *b = &s2->params[k];
		REQUIRE(a->type == b->type && a->i == b->i);
		if (a->type == Q_PARAM_TEXT)
			REQUIRE(a->len == b->len && memcmp(a->text, b->text, a->len) == 0 && a->text[a->len] == 0);
	}
	q_sql_free(s2);
	q_sql_free(s1);
	free(p2);
	free(p1);
	q_filter_free(g);
	q_filter_free(f);
	return 0;
}
