/* store_mkdb — builds databases for the store tests and for a quick write
 * benchmark.
 *   store_mkdb PATH fixture        the known flows of fixture.h
 *   store_mkdb PATH synthetic N
 *                                  N synthetic flows; prints rows/s on stderr
 *                                  (a measurement, never asserted)
 *   store_mkdb PATH replay SRC_DB [defer]
 *                                  the flows of an existing podcap database (e.g.
 *                                  made by `podcap read` of a big capture), read
 *                                  into memory first and written again; prints
 *                                  the writer thread's CPU time per row, which is
 *                                  what the flow database sink spends in the engine;
 *                                  "defer" sets fdb_config.defer_indexes (their
 *                                  build at close is timed apart)
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "flowdb.h"
#include "fixture.h"

static int fail(struct fdb *st, const char *what, int rc)
{
	fprintf(stderr, "store_mkdb: %s: %d %s\n", what, rc, st ? fdb_errmsg(st) : "");
	return 1;
}

static void col_text(sqlite3_stmt *s, int c, char *buf, size_t len)
{
	const char *v = (const char *)sqlite3_column_text(s, c);
	snprintf(buf, len, "%s", v ? v : "");
}

static void col_addr(sqlite3_stmt *s, int c, int family, uint8_t *a)
{
	const char *v = (const char *)sqlite3_column_text(s, c);
	if (v)
		inet_pton(family == 6 ? AF_INET6 : AF_INET, v, a);
}

/* Reads every flow of a podcap database back into records (the columns the
 * store writes; obs ids mapped to the new database's ids). */
static struct fl_record *load_flows(const char *path, struct fdb *st, size_t *n)
{
	sqlite3 *db;
	sqlite3_stmt *s;
	struct fl_record *v = NULL;
	size_t cap = 0;
	uint32_t obs[256] = {0};
	*n = 0;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT f.id, f.obs_id, o.iface, o.direction, o.pod, o.linktype,"
			       " CASE end_reason WHEN 'active' THEN 0 WHEN 'idle' THEN 1 WHEN 'tcp' THEN 2"
			       " WHEN 'evicted' THEN 3 ELSE 4 END,"
			       " CASE tunnel WHEN 'none' THEN 0 ELSE 1 END, vni, vlan,"
			       " family, ip_proto, src, dst, sport, dport,"
			       " outer_family, outer_proto, outer_src, outer_dst, outer_sport, outer_dport,"
			       " first_us, last_us, c2s_pkts, s2c_pkts, c2s_bytes, s2c_bytes,"
			       " c2s_payload, s2c_payload, c2s_tcp_flags, s2c_tcp_flags, syn, synack, fin, rst,"
			       " coalesce(rtt_us, -1), c2s_retrans, s2c_retrans, c2s_ooo, s2c_ooo, frags,"
			       " community_id, master_id, app_id, proto_name, category, risk, host, url,"
			       " coalesce(http_status, 0), coalesce(dns_rcode, 255), ja3c, ja3s, dpi_done"
			       " FROM flows f LEFT JOIN observation_points o ON o.id = f.obs_id ORDER BY f.rowid",
			       -1, &s, NULL) != SQLITE_OK) {
		fprintf(stderr, "store_mkdb: %s: %s\n", path, sqlite3_errmsg(db));
		sqlite3_close(db);
		return NULL;
	}
	while (sqlite3_step(s) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 4096;
			struct fl_record *m = realloc(v, cap * sizeof(*v));
			if (!m)
				break;
			v = m;
		}
		struct fl_record *r = &v[(*n)++];
		memset(r, 0, sizeof(*r));
		int c = 0;
		r->id = (uint64_t)sqlite3_column_int64(s, c++);
		int64_t o = sqlite3_column_int64(s, c++);
		if (o > 0 && o < 256 && sqlite3_column_type(s, 2) != SQLITE_NULL) {
			if (!obs[o])
				fdb_obs_point(st, (const char *)sqlite3_column_text(s, 2),
					     (const char *)sqlite3_column_text(s, 3),
					     (const char *)sqlite3_column_text(s, 4),
					     sqlite3_column_int(s, 5), &obs[o]);
			r->obs_id = obs[o];
		}
		c += 4;
		r->end = (uint8_t)sqlite3_column_int(s, c++);
		r->tunnel = (uint8_t)sqlite3_column_int(s, c++);
		r->has_vni = sqlite3_column_type(s, c) != SQLITE_NULL;
		r->vni = (uint32_t)sqlite3_column_int64(s, c++);
		r->vlan = (uint16_t)sqlite3_column_int(s, c++);
		r->key.family = (uint8_t)sqlite3_column_int(s, c++);
		r->key.proto = (uint8_t)sqlite3_column_int(s, c++);
		col_addr(s, c++, r->key.family, r->key.src);
		col_addr(s, c++, r->key.family, r->key.dst);
		r->key.sport = (uint16_t)sqlite3_column_int(s, c++);
		r->key.dport = (uint16_t)sqlite3_column_int(s, c++);
		r->outer.family = (uint8_t)sqlite3_column_int(s, c++);
		r->outer.proto = (uint8_t)sqlite3_column_int(s, c++);
		col_addr(s, c++, r->outer.family, r->outer.src);
		col_addr(s, c++, r->outer.family, r->outer.dst);
		r->outer.sport = (uint16_t)sqlite3_column_int(s, c++);
		r->outer.dport = (uint16_t)sqlite3_column_int(s, c++);
		r->first_us = (uint64_t)sqlite3_column_int64(s, c++);
		r->last_us = (uint64_t)sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->pkts[d] = (uint64_t)sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->bytes[d] = (uint64_t)sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->payload[d] = (uint64_t)sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->tcp_flags[d] = (uint8_t)sqlite3_column_int(s, c++);
		r->syn = (uint32_t)sqlite3_column_int64(s, c++);
		r->synack = (uint32_t)sqlite3_column_int64(s, c++);
		r->fin = (uint32_t)sqlite3_column_int64(s, c++);
		r->rst = (uint32_t)sqlite3_column_int64(s, c++);
		r->rtt_us = sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->retrans[d] = (uint32_t)sqlite3_column_int64(s, c++);
		for (int d = 0; d < 2; d++)
			r->ooo[d] = (uint32_t)sqlite3_column_int64(s, c++);
		r->frags = (uint32_t)sqlite3_column_int64(s, c++);
		col_text(s, c++, r->community_id, sizeof(r->community_id));
		r->master_proto = (uint16_t)sqlite3_column_int(s, c++);
		r->app_proto = (uint16_t)sqlite3_column_int(s, c++);
		col_text(s, c++, r->proto, sizeof(r->proto));
		col_text(s, c++, r->category, sizeof(r->category));
		r->risk = (uint64_t)sqlite3_column_int64(s, c++);
		col_text(s, c++, r->host, sizeof(r->host));
		col_text(s, c++, r->url, sizeof(r->url));
		r->http_status = (uint16_t)sqlite3_column_int(s, c++);
		r->dns_rcode = (uint8_t)sqlite3_column_int(s, c++);
		col_text(s, c++, r->ja3c, sizeof(r->ja3c));
		col_text(s, c++, r->ja3s, sizeof(r->ja3s));
		r->dpi_done = (uint8_t)sqlite3_column_int(s, c++);
	}
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static double secs(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: store_mkdb PATH fixture | PATH synthetic N | PATH replay SRC_DB [defer]\n");
		return 2;
	}
	struct fdb *st;
	char err[512];
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	for (int i = 4; i < argc; i++)
		if (!strcmp(argv[i], "defer"))
			cfg.defer_indexes = 1;
	int rc = fdb_open(argv[1], &cfg, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "store_mkdb: %s\n", err);
		return 1;
	}
	if (!strcmp(argv[2], "fixture")) {
		struct fl_record r[FX_KNOWN];
		uint32_t veth, eth0;
		if ((rc = fdb_obs_point(st, "veth-front", "in", "default/frontend-7d9", 1, &veth)) ||
		    (rc = fdb_obs_point(st, "eth0", "in", NULL, 1, &eth0)))
			return fail(st, "obs point", rc);
		fx_known(r, veth, eth0);
		for (int i = 0; i < FX_KNOWN; i++)
			if ((rc = fdb_put_flow(st, &r[i])))
				return fail(st, "put", rc);
	} else if (!strcmp(argv[2], "synthetic") && argc > 3) {
		uint64_t n = strtoull(argv[3], NULL, 10);
		uint32_t obs;
		if ((rc = fdb_obs_point(st, "veth-bench", "in", "bench/pod", 1, &obs)))
			return fail(st, "obs point", rc);
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct fl_record r;
		for (uint64_t i = 0; i < n; i++) {
			fx_synthetic(&r, i, obs);
			if ((rc = fdb_put_flow(st, &r)))
				return fail(st, "put", rc);
		}
		if ((rc = fdb_commit(st)))
			return fail(st, "commit", rc);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		fprintf(stderr, "store_mkdb: %llu flows in %.3f s = %.0f flows/s\n",
			(unsigned long long)n, s, s > 0 ? (double)n / s : 0.0);
	} else if (!strcmp(argv[2], "replay") && argc > 3) {
		size_t n;
		struct fl_record *v = load_flows(argv[3], st, &n);
		if (!v)
			return fail(st, "load", -1);
		if ((rc = fdb_commit(st)))
			return fail(st, "commit", rc);
		struct timespec a, b, ca, cb;
		clock_gettime(CLOCK_MONOTONIC, &a);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
		for (size_t i = 0; i < n; i++) {
			rc = fdb_put_flow(st, &v[i]);
			if (rc)
				return fail(st, "put", rc);
		}
		if ((rc = fdb_commit(st)))
			return fail(st, "commit", rc);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
		clock_gettime(CLOCK_MONOTONIC, &b);
		fprintf(stderr, "store_mkdb: %zu flows: cpu %.3f s = %.2f us/row, wall %.3f s\n", n,
			secs(&ca, &cb), n ? secs(&ca, &cb) * 1e6 / (double)n : 0.0, secs(&a, &b));
		free(v);
		/* Closing builds deferred indexes: part of the cost. */
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ca);
		if ((rc = fdb_close(st)))
			return fail(NULL, "close", rc);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cb);
		fprintf(stderr, "store_mkdb: close: cpu %.3f s = %.2f us/row\n", secs(&ca, &cb),
			n ? secs(&ca, &cb) * 1e6 / (double)n : 0.0);
		return 0;
	} else {
		fprintf(stderr, "usage: store_mkdb PATH fixture | PATH synthetic N |"
			" PATH replay SRC_DB [defer]\n");
		return 2;
	}
	if ((rc = fdb_close(st)))
		return fail(NULL, "close", rc);
	return 0;
}
