/* rollup — inside flowdb only: the per-minute totals the writer keeps next to the
 * flows (table `rollup`, see flowdb.c), aggregated in memory per transaction.
 *
 * A flow is counted in the minute of its last packet, under three keys: its
 * application (proto_name), its category and its observation point.  A periodic
 * record of a long flow updates its row; the rollup must then move the flow's
 * previous totals out and the new ones in, so the writer remembers, for each flow
 * whose last record was periodic, what it counted (ru_record).  Memory: one entry
 * per such flow (at most RU_MAX_FLOWS, then the rollup is marked inexact), plus
 * the distinct key strings (at most RU_MAX_KEYS).
 *
 * Threads: the fdb writer's thread only.  Owned by the fdb handle. */
#ifndef PODCAP_FLOWDB_ROLLUP_H
#define PODCAP_FLOWDB_ROLLUP_H

#include <stddef.h>
#include <stdint.h>

#include "flow.h"

#define RU_BUCKET_US 60000000LL
#define RU_DIMS 3              /* 0 app, 1 category, 2 observation point */
#define RU_MAX_FLOWS (1u << 20)
#define RU_MAX_KEYS 65536

struct ru;

struct ru_delta {
	int dim;
	int64_t bucket_us;
	const char *key;       /* valid until ru_free */
	int64_t flows, packets, bytes;
};

struct ru *ru_new(void);
void ru_free(struct ru *ru);
/* Accounts a record that is about to be written in the open transaction.  0, or
 * -ENOMEM (nothing accounted). */
int ru_record(struct ru *ru, const struct fl_record *r);
/* One stored flow, counted once (a rebuild from the table). */
int ru_add_row(struct ru *ru, int64_t last_us, const char *app, const char *cat, uint32_t obs_id, int64_t packets,
	       int64_t bytes);
/* A flow deleted by retention: forget what was counted for it (the delete
 * subtracts it in SQL). */
void ru_forget(struct ru *ru, uint64_t id);
/* Flows remembered now (0: nothing for ru_forget to do). */
size_t ru_tracked(const struct ru *ru);
/* The pending changes, for writing before COMMIT: calls fn for each; stops at
 * the first non-zero return and returns it. */
int ru_each(struct ru *ru, int (*fn)(void *arg, const struct ru_delta *d), void *arg);
/* After COMMIT (or a rollback: the changes are gone with the rows). */
void ru_clear(struct ru *ru);
/* Flows counted that the writer could not remember (the caps): the table is an
 * approximation since. */
uint64_t ru_untracked(const struct ru *ru);

#endif
