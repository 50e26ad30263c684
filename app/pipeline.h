/* pipeline — the one path every packet takes, for files (`podcap read`) and live
 * capture (`podcap run`): decode → flow table (+ nDPI) → SQLite flow store, and
 * optionally the packet segments.
 *
 * Threads: a pipeline is driven by one thread (the caller's), which decodes every
 * packet and hands it, by a symmetric hash of its flow key, to one of
 * pl_config.workers flow workers (each with its own flow table and nDPI state);
 * with workers = 0 the caller's thread does the flow work itself.  One more thread
 * writes flow records to SQLite.  pl_packet(), pl_tick(), pl_finish() must not be
 * called concurrently.  The pipeline owns the flow tables, the store handles and the
 * counters; packet bytes stay the caller's and are copied when handed to a worker,
 * unless cap_packet.stable says they outlive the source's next packet: then the
 * worker reads them in place, and the caller keeps the source open until
 * pl_close() has returned.
 */
#ifndef PODCAP_PIPELINE_H
#define PODCAP_PIPELINE_H

#include <stdint.h>
#include <stdio.h>

#include "capture.h"
#include "decode.h"
#include "flow.h"
#include "store.h"

struct pipeline;

struct pl_config {
	struct dc_config dc;
	struct fl_config fl;
	struct st_config st;
	const char *db_path;   /* required */
	const char *store_dir; /* packet segments; NULL = flow records only */
	uint32_t store_snaplen;       /* bytes of each packet kept in segments, 0 = all */
	uint32_t store_first_packets; /* only the first N packets of each flow, 0 = all */
	uint64_t store_cap_bytes;     /* total segment size cap, 0 = default */
	unsigned workers;             /* flow worker threads, 0 = inline (max PL_MAX_WORKERS) */
	/* Called on a flow worker's thread for every record before it is stored (ids
	 * already final); may raise counters the flow table could not see, e.g. the
	 * eBPF backend's exact kernel counts for flows whose later packets stayed in
	 * the kernel.  Must be thread-safe when workers > 1. */
	void (*record_hook)(void *arg, struct fl_record *rec);
	void *record_hook_arg;
};
#define PL_MAX_WORKERS 16
void pl_config_default(struct pl_config *cfg);

/* Counters of every place a packet or flow can be lost or set aside. */
struct pl_stats {
	struct dc_counters dc;     /* per decode reason and tunnel */
	struct fl_stats fl;
	uint64_t packets;          /* handed to the pipeline */
	uint64_t bytes;
	uint64_t store_errors;     /* flow records the database refused */
	uint64_t seg_errors;       /* packets the segment store refused (disk full, ...) */
	uint64_t seg_packets;      /* packets written to segments */
	/* CPU time of the pipeline's threads so far, microseconds (0 for a thread
	 * that does not exist): where the time goes, for benchmarks and operators. */
	uint64_t cpu_us_workers;   /* all flow workers together */
	uint64_t cpu_us_segments;  /* segment thread (and pl_finish's index build) */
	uint64_t cpu_us_store;     /* store thread */
};

int pl_open(const struct pl_config *cfg, struct pipeline **out, char *errbuf, size_t errlen);
/* Registers an observation point; *obs is what pl_packet() takes. */
int pl_obs_point(struct pipeline *pl, const char *iface, const char *direction, const char *pod,
		 int linktype, uint32_t *obs);
/* Accounts one captured packet.  Returns 0, or a negative errno when the flow
 * store failed (fatal for the caller); per-packet problems are only counted. */
int pl_packet(struct pipeline *pl, uint32_t obs, const struct cap_packet *pkt);
/* Runs flow timers up to now_us and commits what is due. */
int pl_tick(struct pipeline *pl, uint64_t now_us);
/* Ends every flow, commits the store and builds indexes a bulk load deferred.
 * The pipeline stays usable for stats. */
int pl_finish(struct pipeline *pl);
void pl_stats(const struct pipeline *pl, struct pl_stats *out);
void pl_print_summary(const struct pipeline *pl, FILE *f);
const char *pl_error(const struct pipeline *pl);
void pl_close(struct pipeline *pl);

#endif
