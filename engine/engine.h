/* engine — the one path every packet takes, as a library: decode → flow tables
 * (+ nDPI) → sinks.  `podcap read` feeds it packets from files, `podcap run` from
 * live capture; tests feed it whatever they like.  It knows no output: the flow
 * database, the packet store, live streams and exporters are sinks that register
 * when the engine is opened.
 *
 * Threads:
 *   caller      eng_packet(): decodes, reassembles IP fragments (frag/, below),
 *               counts, picks a flow worker by a symmetric hash of the flow key and
 *               puts the packet into that worker's batch (a pointer when
 *               cap_packet.stable says the bytes outlive the call, else a copy).  eng_obs_point, eng_packet, eng_tick, eng_finish and
 *               eng_close are called from this one thread.
 *   workers     eng_config.workers threads (0 = the caller does it inline), each
 *               with its own flow table and nDPI state; they fill in each packet's
 *               final flow id and number, and emit flow records.
 *   sinks       one thread per sink ("podcap-<name>"): every callback of a sink
 *               runs on it, one at a time, so a sink needs no locks of its own.
 * A batch of packets goes caller → worker → every packet sink → back to the
 * caller's free slots without being copied again; records are copied into each
 * record sink's queue.  Every queue is bounded and blocks when full: a slow stage
 * slows the stages before it, nothing is dropped between stages.  A live capture
 * then loses packets only in the kernel, where the capture backend counts them.
 *
 * Order a sink sees: obs_point() of an observation point before any packet or
 * record of it; the packets of one flow in arrival order (one flow lives in one
 * worker, and each worker's batches reach each sink in order); the records of one
 * flow in order; flush() after everything the caller handed in before
 * eng_finish(); close() last.  Between packets and records there is no order.
 *
 * Flow ids are final when a sink sees them: the flow tables number flows above
 * the largest id any sink already holds (eng_sink_ops.max_flow_id), interleaved
 * across workers, so ids stay small and unique across runs appending to one store.
 *
 * IP fragments are reassembled on the caller's thread before sharding (one frag
 * table, eng_config.frag; docs/frag.md): the flow tables see a rebuilt datagram as
 * ONE packet with all its bytes; packets sinks never see the rebuilt frame but get
 * every ORIGINAL fragment, each with the flow id and packet number of the datagram
 * it belongs to, in arrival order, when the datagram completes (so a fragment that
 * came before its datagram's first one reaches the sinks later than packets that
 * followed it; its ts_us is its own).  Fragments of a datagram given up (timeout,
 * overlap, caps, eviction, still incomplete at eng_finish) go on one by one as they
 * would without reassembly: the flow tables join them to their first fragment's
 * flow.  Every case is counted in eng_stats.fr.  A fragment inside a carrier that
 * was itself fragmented (both cut) is not rebuilt a second time: the rebuilt
 * carrier reaches the flow tables as the inner fragment it holds, and they join
 * the inner fragments by IP id as without reassembly.
 *
 * Ownership: the engine owns the flow tables, the batches and, once eng_open()
 * succeeded, the sinks (it calls their close()).  Packet bytes stay the caller's:
 * copied unless stable, in which case the caller keeps the source open until
 * eng_close() has returned.  Pointers handed to sink callbacks are valid only
 * during the call.
 *
 * Errors: 0 / negative errno.  A sink callback returning < 0 is fatal for the run:
 * eng_error() then names the sink and its message, and eng_packet/eng_tick return
 * the error; the failed sink's later events are discarded (counted).
 */
#ifndef PODCAP_ENGINE_H
#define PODCAP_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "capture.h"
#include "decode.h"
#include "flow.h"
#include "frag.h"

struct engine;

#define ENG_MAX_WORKERS 16
#define ENG_MAX_SINKS 8
#define ENG_MAX_OBS 65536  /* observation points per run (ids 1..ENG_MAX_OBS) */

/* An observation point: where packets were seen (an interface, or a file). */
struct eng_obs {
	uint32_t id;           /* 1.., this run's */
	const char *iface;     /* interface name, or the file's name */
	const char *direction; /* "both", "file", ... */
	const char *pod;       /* "namespace/name", or NULL */
	int linktype;          /* LINKTYPE_* of its frames */
	uint32_t ifindex;      /* kernel ifindex when live, else 0 */
};

/* One packet as a sink sees it. */
struct eng_packet {
	struct dc_packet dc;   /* decoded (offsets point into frame) */
	const uint8_t *frame;  /* dc.caplen captured bytes */
	uint64_t ts_us;
	uint64_t flow_id;      /* final flow id; 0 = in no flow (not IP or malformed) */
	uint32_t obs;
	uint32_t pkt_no;       /* 0-based number of the packet within its flow */
	uint8_t dir;           /* enum cap_dir */
};

/* What a sink implements.  Every callback but max_flow_id and close runs on the
 * sink's own thread; any may be NULL. */
struct eng_sink_ops {
	const char *name;      /* short, for thread names and messages: "flow store" */
	/* Largest flow id the sink already holds (0 if none), asked once by
	 * eng_open() on the caller's thread: new flows are numbered above it. */
	int (*max_flow_id)(void *ctx, uint64_t *out);
	int (*obs_point)(void *ctx, const struct eng_obs *obs);
	/* A batch of packets with their flow ids (packets sinks). */
	int (*packets)(void *ctx, const struct eng_packet *pkts, size_t n);
	/* One flow record (record sinks): periodic (end == FL_END_ACTIVE) or final. */
	int (*record)(void *ctx, const struct fl_record *rec);
	/* Wall-clock time from eng_tick(), at most every eng_tick call. */
	int (*tick)(void *ctx, uint64_t now_us);
	/* End of input: make everything durable.  After it only close(). */
	int (*flush)(void *ctx);
	/* Frees the sink; called by eng_close() on the caller's thread after the
	 * sink's thread ended (also when eng_open() fails). */
	void (*close)(void *ctx);
	/* Text of the last error, for eng_error(). */
	const char *(*errmsg)(void *ctx);
};

struct eng_sink {
	const struct eng_sink_ops *ops;
	void *ctx;
};

struct eng_config {
	struct dc_config dc;
	struct fl_config fl;   /* id_base, id_stride and shard are set by the engine */
	unsigned workers;      /* flow worker threads, 0 = inline (max ENG_MAX_WORKERS) */
	/* Called on a flow worker's thread for every record before sinks see it (id
	 * final): may fill in what the flow table could not know, e.g. the eBPF
	 * backend's exact kernel counts, or pod names.  Must be thread-safe when
	 * workers > 1; it may call eng_obs(). */
	void (*record_hook)(void *arg, struct fl_record *rec);
	void *record_hook_arg;
	/* IP reassembly: caps and timeout (fr_config_default(): 4096 datagrams,
	 * 64 MiB, 30 s, ...); its dc, release and release_ctx are the engine's. */
	struct fr_config frag;
	uint8_t no_reassembly; /* 1: fragments go to the flow tables as they are */
	/* 1: eng_record() may add records that no flow table made (the eBPF
	 * backend's counts-only flows).  They are numbered as one more flow table
	 * would be, so ids stay unique. */
	uint8_t external_records;
};
void eng_config_default(struct eng_config *cfg);

/* Opens an engine with its sinks (at most ENG_MAX_SINKS); the engine owns them
 * from here on, also on failure.  Returns 0 or -errno with a message in errbuf. */
int eng_open(const struct eng_config *cfg, const struct eng_sink *sinks, size_t nsinks,
	     struct engine **out, char *errbuf, size_t errlen);

/* Registers an observation point (or returns the id it has: same iface and
 * direction; a changed pod or link type is announced to the sinks again).  pod may
 * be NULL.  *obs is what eng_packet() takes.  -ENOSPC beyond ENG_MAX_OBS. */
int eng_obs_point(struct engine *e, const char *iface, const char *direction, const char *pod,
		  int linktype, uint32_t ifindex, uint32_t *obs);
/* The observation point with this id, or NULL; any thread.  The entry stays valid
 * until eng_close(). */
const struct eng_obs *eng_obs(const struct engine *e, uint32_t obs);

/* Accounts one captured packet on observation point obs.  Returns 0, or the
 * negative errno of a fatal failure (a sink failed).  A frame that is not IP or
 * is malformed is counted by reason and, when there is a packets sink, handed to
 * the packets sinks with flow id 0; no flow table sees it. */
int eng_packet(struct engine *e, uint32_t obs, const struct cap_packet *pkt);
/* Adds a record that no flow table made (needs cfg.external_records; -EINVAL
 * without): it gets an id (rec->id is set), goes through the record hook and to
 * every record sink like the others.  For flows the engine never saw a packet
 * of, e.g. kernel counters only.  The caller's thread, before eng_finish. */
int eng_record(struct engine *e, struct fl_record *rec);
/* Wall clock for a live run (call every ~200 ms): flow timers of idle workers,
 * half-filled batches handed over, sinks' tick(). */
int eng_tick(struct engine *e, uint64_t now_us);
/* Ends every flow, then every sink's flush(); waits for all of it.  The flow
 * tables (and worker threads) are released while the sinks flush.  The engine
 * stays usable for eng_stats.  Returns the first error. */
int eng_finish(struct engine *e);

struct eng_sink_stats {
	const char *name;
	uint64_t cpu_us;       /* CPU time of the sink's thread */
	uint64_t batches, records;
	uint64_t discarded;    /* events dropped after the sink failed */
};

struct eng_stats {
	/* Per decode reason and tunnel, one count per frame handed in.  A fragment
	 * held for reassembly is counted when its datagram is done: with the rebuilt
	 * datagram's reason and tunnel when it completed (a VXLAN carrier fragmented
	 * on the underlay counts as vxlan), with its own when it was given up.  So
	 * dc.packets trails packets by the fragments held (fr_held). */
	struct dc_counters dc;
	/* Reassembly (all zero with no_reassembly): fragments offered, datagrams
	 * reassembled, given up (timed_out, overlapping, evicted, too_big, bad) and
	 * fragments passed (duplicates, uncaptured); memory held and its peak. */
	struct fr_stats fr;
	uint64_t fr_unfinished; /* datagrams still incomplete at eng_finish (their
	                         * fragments went on alone, like timeouts) */
	uint64_t fr_held;       /* fragments held now */
	struct fl_stats fl;    /* all flow tables together */
	uint64_t external_records; /* added with eng_record() (not in fl.records) */
	/* Where the caller and the workers meet (the only locks on the packet path):
	 * batches handed over (one lock round each, up to 512 packets), times the
	 * caller found a worker's slots all full and waited, times a worker found
	 * no batch and slept.  All workers together. */
	uint64_t batches, caller_waits, worker_waits;
	uint64_t packets;      /* handed to the engine */
	uint64_t frames_cut;   /* copied (not stable) frames longer than a batch's 192 KiB, cut
	                        * to it (a snap length above 192 KiB; the rest of the frame is
	                        * neither decoded nor stored) */
	uint64_t bytes;
	uint64_t cpu_us_workers; /* all flow workers together (0 when inline) */
	unsigned tables;         /* flow tables in memory: eng_finish frees them once
	                          * every flow has ended, while the sinks flush (0
	                          * from then on; fl keeps their last counters) */
	size_t nsinks;
	struct eng_sink_stats sink[ENG_MAX_SINKS];
};
/* Any thread.  The caller thread's counters (dc, fr, packets, bytes) are published
 * every 65536 packets, on eng_tick and eng_finish, so other threads see them at
 * most that old. */
void eng_stats(struct engine *e, struct eng_stats *out);

const char *eng_error(const struct engine *e);
/* Stops the threads (ending open flows, flushing sinks if eng_finish was not
 * called), closes the sinks and frees everything.  e may be NULL. */
void eng_close(struct engine *e);

/* CPU time used so far by the calling thread, in microseconds (for summaries). */
uint64_t eng_thread_cpu_us(void);

#endif
