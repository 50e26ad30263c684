/* store_mkdb — builds databases for the store tests and for a quick write
 * benchmark.
 *   store_mkdb PATH fixture        the known flows of fixture.h
 *   store_mkdb PATH synthetic N [state]
 *                                  N synthetic flows; prints rows/s on stderr
 *                                  (a measurement, never asserted); "state" also
 *                                  sets packets_state per flow as the pipeline does
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store.h"
#include "fixture.h"

static int fail(struct st_store *st, const char *what, int rc)
{
	fprintf(stderr, "store_mkdb: %s: %d %s\n", what, rc, st ? st_errmsg(st) : "");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: store_mkdb PATH fixture | PATH synthetic N\n");
		return 2;
	}
	struct st_store *st;
	char err[512];
	int rc = st_open(argv[1], NULL, &st, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "store_mkdb: %s\n", err);
		return 1;
	}
	if (!strcmp(argv[2], "fixture")) {
		struct fl_record r[FX_KNOWN];
		uint32_t veth, eth0;
		if ((rc = st_obs_point(st, "veth-front", "in", "default/frontend-7d9", 1, &veth)) ||
		    (rc = st_obs_point(st, "eth0", "in", NULL, 1, &eth0)))
			return fail(st, "obs point", rc);
		fx_known(r, veth, eth0);
		for (int i = 0; i < FX_KNOWN; i++)
			if ((rc = st_put_flow(st, &r[i])))
				return fail(st, "put", rc);
	} else if (!strcmp(argv[2], "synthetic") && argc > 3) {
		uint64_t n = strtoull(argv[3], NULL, 10);
		int with_state = argc > 4 && !strcmp(argv[4], "state");
		uint32_t obs;
		if ((rc = st_obs_point(st, "veth-bench", "in", "bench/pod", 1, &obs)))
			return fail(st, "obs point", rc);
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		struct fl_record r;
		for (uint64_t i = 0; i < n; i++) {
			fx_synthetic(&r, i, obs);
			if ((rc = st_put_flow(st, &r)))
				return fail(st, "put", rc);
			/* What the pipeline does when packets are kept too. */
			if (with_state && (rc = st_set_packets_state(st, r.id, "stored")))
				return fail(st, "packets_state", rc);
		}
		if ((rc = st_commit(st)))
			return fail(st, "commit", rc);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		fprintf(stderr, "store_mkdb: %llu flows in %.3f s = %.0f flows/s\n",
			(unsigned long long)n, s, s > 0 ? (double)n / s : 0.0);
	} else {
		fprintf(stderr, "usage: store_mkdb PATH fixture | PATH synthetic N\n");
		return 2;
	}
	if ((rc = st_close(st)))
		return fail(NULL, "close", rc);
	return 0;
}
