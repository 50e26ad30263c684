/* The packet path shared by `podcap read` and `podcap run`.
 *
 *   caller thread:  decode, count, pick a worker by fl_shard_hash, put the packet
 *                   (a pointer when the source's bytes are stable, else a copy)
 *                   into that worker's current batch
 *   flow workers:   fl_table_packet (+ nDPI), timers; each packet's flow id and
 *                   number are written into the batch item
 *   segment thread: (with a packet store) the packets of batches the workers are
 *                   done with → packet segments; then the batch slot is free
 *   store thread:   flow records → SQLite, in batched transactions
 *
 * A batch slot thus goes caller → worker → segment thread → caller: writing the
 * packets costs about as much as classifying them, and this way the two run on
 * different cores without a copy or another queue.
 *
 * Every hand-off is a bounded queue that blocks when full: a slow stage slows the
 * stages before it, it never drops.  Packets are lost only where a counter says so
 * (decode reasons, flow-table eviction, segment write errors).
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "segments.h"

/* Flow records from the workers to the store thread. */
#define PL_RING 4096
/* Packets travel to a worker in batches so the queue lock is taken per batch. */
#define PL_BATCH_PKTS 512
#define PL_BATCH_BYTES (192u * 1024u)
#define PL_SLOTS 16

struct pl_item {
	struct dc_packet p;
	uint64_t ts_us;
	uint32_t obs;
	uint32_t off; /* frame bytes at data[off .. off + p.caplen), unless frame is set */
	uint32_t pkt_no;      /* set by the worker: packet number within its flow */
	const uint8_t *frame; /* the source's own bytes (cap_packet.stable): no copy */
	uint64_t flow_id;     /* set by the worker: database flow id, 0 = not in a flow */
};

enum { PL_BATCH_DATA, PL_BATCH_FLUSH };

struct pl_batch {
	uint32_t n, used, kind;
	uint32_t ref_bytes; /* bytes of stable packets referenced (not copied) */
	struct pl_item item[PL_BATCH_PKTS];
	uint8_t data[PL_BATCH_BYTES];
};

struct pipeline;

struct pl_worker {
	struct pipeline *pl;
	unsigned idx;
	struct fl_config cfg;
	struct fl_table *flows; /* set by the worker thread itself: atomic access */
	_Alignas(64) uint64_t last_expire_us; /* the worker's own line: written on its timers */
	_Alignas(64) pthread_t th;
	int running;
	/* batch queue: the caller fills slot[head % PL_SLOTS], the worker works on
	 * slot[wtail % PL_SLOTS], the segment thread (if any) on slot[tail % PL_SLOTS];
	 * slots before tail are free again.  Without a segment thread tail == wtail. */
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct pl_batch *slot[PL_SLOTS];
	unsigned head, wtail, tail;
	int flushed; /* worker finished a FLUSH batch */
};

struct pipeline {
	struct pl_config cfg;
	unsigned nworkers;           /* threads; 0 = inline in worker[0] */
	/* Bytes of stable packets one batch may reference: all slots of all workers
	 * together stay within CAP_STABLE_WINDOW, so a mapped file's pages are not
	 * dropped while a worker or the segment thread still reads them. */
	uint32_t ref_budget;
	struct pl_worker worker[PL_MAX_WORKERS];
	struct st_store *store;
	struct seg_store *seg;       /* NULL when packets are not kept */
	pthread_mutex_t seg_lock;    /* workers share the segment store */
	/* segment thread (pl->seg and workers > 0): woken when a worker finishes a batch */
	pthread_t seg_thread;
	uint64_t seg_finish_cpu_us; /* pl_finish's segment-store thread, once joined */
	int seg_running;
	pthread_mutex_t sq_lock;
	pthread_cond_t sq_cond;
	unsigned sq_ready;           /* batches finished by workers since the last look */
	int sq_stop;
	uint64_t id_base;            /* flow ids of this run start above the database's */
	/* Fields written for every packet get cache lines of their own, so that the
	 * caller's counters do not share a line with id_base, which every worker
	 * reads for every packet (no gain measurable on 2 cores; cheap insurance). */
	_Alignas(64) struct pl_stats st; /* caller-thread counters (decode) */
	_Alignas(64) uint64_t seg_packets, seg_errors; /* atomics: segment writers add */
	_Alignas(64) uint64_t tick_us; /* atomic: latest pl_tick() time, for idle workers */
	int failed;                  /* atomic: first fatal store error */
	char err[512];

	/* store thread: owns pl->store while running; others take store_lock */
	pthread_t writer;
	int writer_running;
	pthread_mutex_t store_lock;
	pthread_mutex_t q_lock;
	pthread_cond_t q_nonempty, q_nonfull, q_drained;
	struct fl_record *ring;
	unsigned q_head, q_tail;
	int q_busy, q_stop;
	uint64_t store_errors;       /* under q_lock */

	/* Flows whose stored packets are not all there (retention deleted them
	 * before the record reached the database, or the disk refused some): flow id
	 * -> enum seg_flow_state, applied to packets_state when the record comes.
	 * Open addressing, id 0 = empty slot (flow ids start at 1); under store_lock. */
	uint64_t *ps_id;
	uint8_t *ps_state;
	size_t ps_cap, ps_n;
};

void pl_config_default(struct pl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	dc_config_default(&cfg->dc);
	fl_config_default(&cfg->fl);
	st_config_default(&cfg->st);
}

/* Records the first fatal error and its message; later failures (often
 * consequences of the first) keep neither.  Any thread. */
static void fail(struct pipeline *pl, int rc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail(struct pipeline *pl, int rc, const char *fmt, ...)
{
	int zero = 0;
	if (!__atomic_compare_exchange_n(&pl->failed, &zero, rc, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pl->err, sizeof(pl->err), fmt, ap);
	va_end(ap);
}

static int failed(const struct pipeline *pl) { return __atomic_load_n(&pl->failed, __ATOMIC_SEQ_CST); }

/* Flow ids: the flow table numbers flows per table (shard << 56 | seq, seq from 1);
 * the database wants small ids unique across runs: interleave the workers' sequences
 * above the largest id already stored. */
static uint64_t map_id(const struct pipeline *pl, uint64_t id)
{
	uint64_t shard = id >> 56, seq = id & ((1ull << 56) - 1);
	uint64_t n = pl->nworkers ? pl->nworkers : 1;
	return pl->id_base + (seq - 1) * n + shard + 1;
}

/* ---- store thread -------------------------------------------------------- */

/* ---- packets_state of flows in flight (all under store_lock) ------------- */

static size_t ps_slot(const struct pipeline *pl, uint64_t id)
{
	size_t i = (size_t)(id * 0x9E3779B97F4A7C15ull) & (pl->ps_cap - 1);
	while (pl->ps_id[i] && pl->ps_id[i] != id)
		i = (i + 1) & (pl->ps_cap - 1);
	return i;
}

static int ps_get(const struct pipeline *pl, uint64_t id)
{
	if (!pl->ps_n)
		return -1;
	size_t i = ps_slot(pl, id);
	return pl->ps_id[i] ? pl->ps_state[i] : -1;
}

/* Remembers a state; a flow already expired stays expired.  On allocation failure
 * the flow keeps saying "stored" (export still reports what is missing). */
static void ps_put(struct pipeline *pl, uint64_t id, int state)
{
	if (2 * (pl->ps_n + 1) > pl->ps_cap) {
		size_t cap = pl->ps_cap ? 2 * pl->ps_cap : 256;
		uint64_t *ids = calloc(cap, sizeof(*ids));
		uint8_t *st = calloc(cap, 1);
		if (!ids || !st) {
			free(ids);
			free(st);
			return;
		}
		uint64_t *old_id = pl->ps_id;
		uint8_t *old_st = pl->ps_state;
		size_t old_cap = pl->ps_cap;
		pl->ps_id = ids;
		pl->ps_state = st;
		pl->ps_cap = cap;
		for (size_t k = 0; k < old_cap; k++)
			if (old_id[k]) {
				size_t j = ps_slot(pl, old_id[k]);
				pl->ps_id[j] = old_id[k];
				pl->ps_state[j] = old_st[k];
			}
		free(old_id);
		free(old_st);
	}
	size_t i = ps_slot(pl, id);
	if (!pl->ps_id[i]) {
		pl->ps_id[i] = id;
		pl->ps_n++;
	} else if (pl->ps_state[i] == SEG_FLOW_EXPIRED) {
		return;
	}
	pl->ps_state[i] = (uint8_t)state;
}

/* Forgets a flow whose final record was stored (backward-shift deletion). */
static void ps_del(struct pipeline *pl, uint64_t id)
{
	if (!pl->ps_n)
		return;
	size_t i = ps_slot(pl, id), mask = pl->ps_cap - 1;
	if (!pl->ps_id[i])
		return;
	pl->ps_id[i] = 0;
	pl->ps_n--;
	for (size_t j = (i + 1) & mask; pl->ps_id[j]; j = (j + 1) & mask) {
		size_t home = (size_t)(pl->ps_id[j] * 0x9E3779B97F4A7C15ull) & mask;
		/* move j back to the hole when its home is not between hole and j */
		if (((j - home) & mask) >= ((j - i) & mask)) {
			pl->ps_id[i] = pl->ps_id[j];
			pl->ps_state[i] = pl->ps_state[j];
			pl->ps_id[j] = 0;
			i = j;
		}
	}
}

static int store_record(struct pipeline *pl, const struct fl_record *rec)
{
	if (!pl->seg)
		return st_put_flow(pl->store, rec);
	/* packets_state goes in with the same upsert (a second UPDATE costs a seek) */
	int state = ps_get(pl, rec->id);
	int rc = st_put_flow_state(pl->store, rec, state >= 0 ? seg_flow_state_name(state) : "stored");
	if (rc == 0 && state >= 0 && rec->end != FL_END_ACTIVE)
		ps_del(pl, rec->id);
	return rc;
}

/* Segment retention deleted packets of flow_id (worker thread, seg_lock held).
 * Lock order: seg_lock, then store_lock; nobody takes them the other way round. */
static void on_expire(void *arg, uint64_t flow_id, int state)
{
	struct pipeline *pl = arg;
	pthread_mutex_lock(&pl->store_lock);
	if (st_set_packets_state(pl->store, flow_id, seg_flow_state_name(state)) == -ENOENT)
		ps_put(pl, flow_id, state); /* still in the flow table or on its way */
	pthread_mutex_unlock(&pl->store_lock);
}

/* Commits the store's open transaction (any thread; takes store_lock). */
static int store_commit(struct pipeline *pl)
{
	pthread_mutex_lock(&pl->store_lock);
	uint32_t pending = st_pending(pl->store);
	int rc = st_commit(pl->store);
	if (rc < 0)
		fail(pl, rc, "flow store commit: %s", st_errmsg(pl->store));
	pthread_mutex_unlock(&pl->store_lock);
	if (rc < 0) {
		/* the rolled-back rows are lost: say how many */
		pthread_mutex_lock(&pl->q_lock);
		pl->store_errors += pending;
		pthread_mutex_unlock(&pl->q_lock);
	}
	return rc;
}

static void *writer_main(void *arg)
{
	struct pipeline *pl = arg;
	struct fl_record *batch = malloc(64 * sizeof(*batch));
	int dirty = 0; /* records stored since the last commit */
	struct timespec now, last_commit;
	clock_gettime(CLOCK_MONOTONIC, &last_commit);

	pthread_setname_np(pthread_self(), "podcap-store");
	pthread_mutex_lock(&pl->q_lock);
	if (!batch) {
		fail(pl, -ENOMEM, "flow store thread: out of memory");
		pl->q_stop = 1;
	}
	for (;;) {
		while (pl->q_head == pl->q_tail && !pl->q_stop) {
			/* A live agent's records become visible within about a second:
			 * commit once the queue has been idle that long. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&pl->q_nonempty, &pl->q_lock, &ts) == ETIMEDOUT && dirty) {
				pthread_mutex_unlock(&pl->q_lock);
				store_commit(pl);
				clock_gettime(CLOCK_MONOTONIC, &last_commit);
				pthread_mutex_lock(&pl->q_lock);
				dirty = 0;
			}
		}
		if (pl->q_head == pl->q_tail || !batch)
			break; /* stop requested and nothing left */
		unsigned n = 0;
		while (n < 64 && pl->q_tail != pl->q_head) {
			batch[n++] = pl->ring[pl->q_tail % PL_RING];
			pl->q_tail++;
		}
		pl->q_busy = 1;
		pthread_cond_broadcast(&pl->q_nonfull);
		pthread_mutex_unlock(&pl->q_lock);

		int rc = 0;
		unsigned i;
		pthread_mutex_lock(&pl->store_lock);
		for (i = 0; i < n && rc == 0; i++)
			rc = store_record(pl, &batch[i]);
		if (rc < 0)
			fail(pl, rc, "flow store: %s", st_errmsg(pl->store));
		pthread_mutex_unlock(&pl->store_lock);
		dirty = 1;
		/* Under steady traffic the queue is never idle for a second: commit on
		 * the clock too, so records show up within about a second either way. */
		if (clock_gettime(CLOCK_MONOTONIC, &now) == 0 && now.tv_sec > last_commit.tv_sec) {
			store_commit(pl);
			last_commit = now;
			dirty = 0;
		}

		pthread_mutex_lock(&pl->q_lock);
		pl->q_busy = 0;
		if (rc < 0)
			pl->store_errors += n - i + 1;
		if (pl->q_head == pl->q_tail)
			pthread_cond_broadcast(&pl->q_drained);
	}
	pthread_cond_broadcast(&pl->q_drained);
	pthread_cond_broadcast(&pl->q_nonfull);
	pthread_mutex_unlock(&pl->q_lock);
	free(batch);
	return NULL;
}

/* Flow table callback (worker thread): hand the record to the store thread. */
static int on_record(void *arg, const struct fl_record *in)
{
	struct pl_worker *w = arg;
	struct pipeline *pl = w->pl;
	struct fl_record local;
	int rc;

	if (pl->cfg.record_hook) {
		/* outside the queue lock: a hook may make system calls */
		local = *in;
		local.id = map_id(pl, in->id);
		pl->cfg.record_hook(pl->cfg.record_hook_arg, &local);
		in = &local;
	}
	pthread_mutex_lock(&pl->q_lock);
	while (pl->q_head - pl->q_tail >= PL_RING && !failed(pl))
		pthread_cond_wait(&pl->q_nonfull, &pl->q_lock);
	rc = failed(pl);
	if (!rc) {
		struct fl_record *r = &pl->ring[pl->q_head % PL_RING];
		*r = *in;
		if (in != &local)
			r->id = map_id(pl, in->id);
		pl->q_head++;
		pthread_cond_signal(&pl->q_nonempty);
	} else {
		pl->store_errors++;
	}
	pthread_mutex_unlock(&pl->q_lock);
	return rc;
}

/* Waits until the store thread has stored everything queued so far. */
static int drain(struct pipeline *pl)
{
	pthread_mutex_lock(&pl->q_lock);
	while ((pl->q_head != pl->q_tail || pl->q_busy) && !failed(pl))
		pthread_cond_wait(&pl->q_drained, &pl->q_lock);
	pthread_mutex_unlock(&pl->q_lock);
	return failed(pl);
}

/* ---- flow work (a worker thread, or the caller when inline) -------------- */

/* Writes one packet of flow_id to the segments; seg_lock held when shared.  Counts
 * a stored packet in *stored (the caller adds them to pl->seg_packets in bulk). */
static void seg_packet(struct pipeline *pl, uint32_t obs, uint64_t flow_id, uint32_t pkt_no, uint64_t ts_us,
		       const uint8_t *frame, uint32_t caplen, uint32_t wirelen, uint64_t *stored)
{
	int rc = seg_put(pl->seg, obs, flow_id, pkt_no, ts_us, frame, caplen, wirelen);
	if (rc > 0) {
		(*stored)++;
	} else if (rc < 0) {
		/* disk full or I/O error: flow records go on, counted, and the flow says
		 * "partial" — set on its row if the record is already stored (the
		 * segment thread may run behind the flow's last record), else when it
		 * comes */
		__atomic_add_fetch(&pl->seg_errors, 1, __ATOMIC_RELAXED);
		on_expire(pl, flow_id, SEG_FLOW_PARTIAL);
	}
}

/* Accounts one packet in w's flow table; returns its database flow id (0 when it
 * is in no flow) and packet number. */
static uint64_t flow_packet(struct pl_worker *w, uint32_t obs, const struct dc_packet *p,
			    const uint8_t *frame, uint64_t ts_us, uint32_t *pkt_no)
{
	struct pipeline *pl = w->pl;
	uint64_t flow_id = 0;

	if (fl_table_packet(w->flows, obs, p, frame, ts_us, &flow_id, pkt_no) == 0)
		flow_id = map_id(pl, flow_id);
	else
		flow_id = 0;
	if (ts_us >= w->last_expire_us + 1000000u) {
		w->last_expire_us = ts_us;
		fl_table_expire(w->flows, ts_us);
	}
	return flow_id;
}

/* Inline (workers = 0): flow work and segment in one go on the caller's thread.
 * seg_put rotates an aged segment itself; seg_tick (flush + index commit) is for
 * the wall-clock ticks of a live agent (pl_tick), not for packet time. */
static void inline_packet(struct pipeline *pl, uint32_t obs, const struct dc_packet *p,
			  const uint8_t *frame, uint64_t ts_us)
{
	uint32_t pkt_no = 0;
	uint64_t flow_id = flow_packet(&pl->worker[0], obs, p, frame, ts_us, &pkt_no);
	if (flow_id && pl->seg) {
		uint64_t stored = 0;
		seg_packet(pl, obs, flow_id, pkt_no, ts_us, frame, p->caplen, p->wirelen, &stored);
		if (stored)
			__atomic_add_fetch(&pl->seg_packets, stored, __ATOMIC_RELAXED);
	}
}

/* Hands a finished batch on: to the segment thread, or straight back to the
 * caller.  w->lock held. */
static void batch_done(struct pl_worker *w)
{
	struct pipeline *pl = w->pl;
	w->wtail++;
	if (!pl->seg_running) {
		w->tail = w->wtail;
		pthread_cond_broadcast(&w->nonfull);
		return;
	}
	pthread_mutex_lock(&pl->sq_lock);
	pl->sq_ready++;
	pthread_cond_signal(&pl->sq_cond);
	pthread_mutex_unlock(&pl->sq_lock);
}

static void *seg_main(void *arg)
{
	struct pipeline *pl = arg;

	pthread_setname_np(pthread_self(), "podcap-segment");
	pthread_mutex_lock(&pl->sq_lock);
	for (;;) {
		while (!pl->sq_ready && !pl->sq_stop)
			pthread_cond_wait(&pl->sq_cond, &pl->sq_lock);
		if (!pl->sq_ready)
			break; /* stop, and every worker's batches are written */
		pl->sq_ready = 0;
		pthread_mutex_unlock(&pl->sq_lock);
		for (unsigned i = 0; i < pl->nworkers; i++) {
			struct pl_worker *w = &pl->worker[i];
			for (;;) {
				pthread_mutex_lock(&w->lock);
				struct pl_batch *b = w->tail != w->wtail ? w->slot[w->tail % PL_SLOTS] : NULL;
				pthread_mutex_unlock(&w->lock);
				if (!b)
					break;
				uint64_t stored = 0;
				pthread_mutex_lock(&pl->seg_lock);
				for (uint32_t k = 0; k < b->n; k++) {
					const struct pl_item *it = &b->item[k];
					if (!it->flow_id)
						continue;
					seg_packet(pl, it->obs, it->flow_id, it->pkt_no, it->ts_us,
						   it->frame ? it->frame : b->data + it->off, it->p.caplen,
						   it->p.wirelen, &stored);
				}
				pthread_mutex_unlock(&pl->seg_lock);
				__atomic_add_fetch(&pl->seg_packets, stored, __ATOMIC_RELAXED);
				pthread_mutex_lock(&w->lock);
				w->tail++;
				pthread_cond_broadcast(&w->nonfull);
				pthread_mutex_unlock(&w->lock);
			}
		}
		pthread_mutex_lock(&pl->sq_lock);
	}
	pthread_mutex_unlock(&pl->sq_lock);
	return NULL;
}

static void *worker_main(void *arg)
{
	struct pl_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "podcap-flow%u", w->idx);
	pthread_setname_np(pthread_self(), name);
	struct fl_table *t = fl_table_new(&w->cfg, on_record, w);
	if (!t) {
		/* Packets sent here are then only drained; the caller sees the error on
		 * its next pl_packet() and stops. */
		int e = errno ? errno : ENOMEM;
		fail(w->pl, -e, "flow table: %s", strerror(e));
	}
	__atomic_store_n(&w->flows, t, __ATOMIC_RELEASE);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (w->head == w->wtail) {
			/* Idle: keep timers running on the agent's clock. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&w->nonempty, &w->lock, &ts) == ETIMEDOUT && t) {
				uint64_t now = __atomic_load_n(&w->pl->tick_us, __ATOMIC_RELAXED);
				if (now > w->last_expire_us) {
					w->last_expire_us = now;
					pthread_mutex_unlock(&w->lock);
					fl_table_expire(w->flows, now);
					pthread_mutex_lock(&w->lock);
				}
			}
		}
		struct pl_batch *b = w->slot[w->wtail % PL_SLOTS];
		pthread_mutex_unlock(&w->lock);

		for (uint32_t i = 0; i < b->n; i++) {
			struct pl_item *it = &b->item[i];
			it->flow_id = t ? flow_packet(w, it->obs, &it->p, it->frame ? it->frame : b->data + it->off,
						      it->ts_us, &it->pkt_no) : 0;
		}
		int kind = (int)b->kind;
		if (kind == PL_BATCH_FLUSH && t)
			fl_table_flush(t);

		pthread_mutex_lock(&w->lock);
		if (kind == PL_BATCH_FLUSH)
			w->flushed = 1;
		batch_done(w);
		if (kind == PL_BATCH_FLUSH && w->head == w->wtail && __atomic_load_n(&w->running, __ATOMIC_SEQ_CST) == 2)
			break; /* pl_close asked us to stop */
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Caller side: the batch being filled for w (slot[head]); waits for a free slot. */
static struct pl_batch *fill_batch(struct pl_worker *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->head - w->tail >= PL_SLOTS - 1)
		pthread_cond_wait(&w->nonfull, &w->lock);
	struct pl_batch *b = w->slot[w->head % PL_SLOTS];
	pthread_mutex_unlock(&w->lock);
	return b;
}

/* Publishes slot[head] to the worker. */
static void send_batch(struct pl_worker *w, uint32_t kind)
{
	struct pl_batch *b = w->slot[w->head % PL_SLOTS];
	b->kind = kind;
	pthread_mutex_lock(&w->lock);
	w->head++;
	w->flushed = 0;
	pthread_cond_signal(&w->nonempty);
	while (w->head - w->tail >= PL_SLOTS - 1)
		pthread_cond_wait(&w->nonfull, &w->lock);
	struct pl_batch *next = w->slot[w->head % PL_SLOTS];
	next->n = 0;
	next->used = 0;
	next->ref_bytes = 0;
	pthread_mutex_unlock(&w->lock);
}

/* ---- public -------------------------------------------------------------- */

int pl_open(const struct pl_config *cfg, struct pipeline **out, char *errbuf, size_t errlen)
{
	/* cache-line aligned members: plain calloc does not align to 64 */
	struct pipeline *pl = aligned_alloc(_Alignof(struct pipeline), sizeof(*pl));
	int rc;

	*out = NULL;
	if (!pl) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	memset(pl, 0, sizeof(*pl));
	pl->cfg = *cfg;
	pl->nworkers = cfg->workers > PL_MAX_WORKERS ? PL_MAX_WORKERS : cfg->workers;
	{
		uint32_t per = CAP_STABLE_WINDOW / ((pl->nworkers ? pl->nworkers : 1) * PL_SLOTS);
		pl->ref_budget = per < PL_BATCH_BYTES ? per : PL_BATCH_BYTES;
	}
	pthread_mutex_init(&pl->store_lock, NULL);
	pthread_mutex_init(&pl->seg_lock, NULL);
	pthread_mutex_init(&pl->q_lock, NULL);
	pthread_mutex_init(&pl->sq_lock, NULL);
	pthread_cond_init(&pl->sq_cond, NULL);
	pthread_cond_init(&pl->q_nonempty, NULL);
	pthread_cond_init(&pl->q_nonfull, NULL);
	pthread_cond_init(&pl->q_drained, NULL);

	rc = st_open(cfg->db_path, &cfg->st, &pl->store, errbuf, errlen);
	if (rc < 0)
		goto fail;
	rc = st_max_flow_id(pl->store, &pl->id_base);
	if (rc < 0) {
		snprintf(errbuf, errlen, "flow store: %s", st_errmsg(pl->store));
		goto fail;
	}
	if (cfg->store_dir) {
		struct seg_config sc;
		seg_config_default(&sc);
		sc.snaplen = cfg->store_snaplen;
		sc.flow_packets = cfg->store_first_packets;
		if (cfg->store_cap_bytes)
			sc.max_bytes = cfg->store_cap_bytes;
		sc.on_expire = on_expire;
		sc.expire_arg = pl;
		sc.defer_index = cfg->st.defer_indexes; /* the same bulk load */
		rc = seg_open(cfg->store_dir, &sc, &pl->seg, errbuf, errlen);
		if (rc < 0)
			goto fail;
		/* A store shared by several databases or runs must never see two flows
		 * under one id: number above what its index already knows too. */
		uint64_t seg_max = 0;
		if ((rc = seg_max_flow_id(pl->seg, &seg_max)) < 0) {
			snprintf(errbuf, errlen, "packet store: %s: cannot read its index", cfg->store_dir);
			goto fail;
		}
		if (seg_max > pl->id_base)
			pl->id_base = seg_max;
		/* export finds the packets of this database's flows through this key */
		char abs[4096];
		const char *dir = realpath(cfg->store_dir, abs) ? abs : cfg->store_dir;
		if ((rc = st_meta_set(pl->store, "packet_store_dir", dir)) < 0 ||
		    (rc = st_commit(pl->store)) < 0) {
			snprintf(errbuf, errlen, "flow store: %s", st_errmsg(pl->store));
			goto fail;
		}
	}
	if (pl->id_base > (1ull << 62)) {
		/* ids are stored in SQLite's signed 64-bit INTEGER */
		rc = -EOVERFLOW;
		snprintf(errbuf, errlen, "flow ids exhausted (largest stored id %llu)",
			 (unsigned long long)pl->id_base);
		goto fail;
	}
	pl->ring = malloc(PL_RING * sizeof(*pl->ring));
	if (!pl->ring) {
		rc = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	unsigned ntables = pl->nworkers ? pl->nworkers : 1;
	for (unsigned i = 0; i < ntables; i++) {
		struct pl_worker *w = &pl->worker[i];
		struct fl_config fc = cfg->fl;
		fc.shard = (uint8_t)i;
		w->pl = pl;
		w->idx = i;
		w->cfg = fc;
		/* Worker threads build their own table (nDPI's set-up takes ~0.1 s per
		 * module) while the caller already reads packets; inline, we do it here. */
		if (pl->nworkers == 0 && !(w->flows = fl_table_new(&fc, on_record, w))) {
			rc = -errno;
			snprintf(errbuf, errlen, "flow table: %s", strerror(errno));
			goto fail;
		}
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->nonempty, NULL);
		pthread_cond_init(&w->nonfull, NULL);
	}
	if ((rc = -pthread_create(&pl->writer, NULL, writer_main, pl)) < 0) {
		snprintf(errbuf, errlen, "store thread: %s", strerror(-rc));
		goto fail;
	}
	pl->writer_running = 1;
	if (pl->seg && pl->nworkers) {
		if ((rc = -pthread_create(&pl->seg_thread, NULL, seg_main, pl)) < 0) {
			snprintf(errbuf, errlen, "segment thread: %s", strerror(-rc));
			goto fail;
		}
		pl->seg_running = 1;
	}
	for (unsigned i = 0; i < pl->nworkers; i++) {
		struct pl_worker *w = &pl->worker[i];
		for (unsigned k = 0; k < PL_SLOTS; k++) {
			w->slot[k] = malloc(sizeof(struct pl_batch));
			if (!w->slot[k]) {
				rc = -ENOMEM;
				snprintf(errbuf, errlen, "out of memory");
				goto fail;
			}
			w->slot[k]->n = w->slot[k]->used = w->slot[k]->ref_bytes = 0;
		}
		if ((rc = -pthread_create(&w->th, NULL, worker_main, w)) < 0) {
			snprintf(errbuf, errlen, "flow worker: %s", strerror(-rc));
			goto fail;
		}
		w->running = 1;
	}
	*out = pl;
	return 0;
fail:
	pl_close(pl);
	return rc;
}

int pl_obs_point(struct pipeline *pl, const char *iface, const char *direction, const char *pod,
		 int linktype, uint32_t *obs)
{
	pthread_mutex_lock(&pl->store_lock);
	int rc = st_obs_point(pl->store, iface, direction, pod, linktype, obs);
	pthread_mutex_unlock(&pl->store_lock);
	if (rc < 0) {
		fail(pl, rc, "observation point %s: %s", iface, st_errmsg(pl->store));
		return rc;
	}
	if ((rc = store_commit(pl)) < 0) /* visible to readers (export, API) at once */
		return rc;
	if (!pl->seg)
		return 0;
	/* The packet store refusing an interface (disk full, ...) costs that
	 * interface's packets, not its flow records: seg_put() then refuses and
	 * counts each packet, and the flows say "partial". */
	pthread_mutex_lock(&pl->seg_lock);
	if (seg_add_interface(pl->seg, *obs, linktype, iface, pod) < 0)
		__atomic_add_fetch(&pl->seg_errors, 1, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&pl->seg_lock);
	return 0;
}

int pl_packet(struct pipeline *pl, uint32_t obs, const struct cap_packet *pkt)
{
	struct dc_packet p;

	pl->st.packets++;
	pl->st.bytes += pkt->wirelen;
	dc_decode(&pl->cfg.dc, pkt->linktype, pkt->data, pkt->caplen, pkt->wirelen, &p);
	dc_count(&pl->st.dc, &p);
	if (p.reason != DC_OK)
		return failed(pl);
	if (pl->nworkers == 0) {
		inline_packet(pl, obs, &p, pkt->data, pkt->ts_us);
		return failed(pl);
	}
	/* one worker (`podcap read` on 2 cores): no hash to compute */
	struct pl_worker *w = &pl->worker[pl->nworkers > 1 ? fl_shard_hash(obs, &p) % pl->nworkers : 0];
	struct pl_batch *b = w->slot[w->head % PL_SLOTS];
	uint32_t need = pkt->stable ? 0 : p.caplen, ref = pkt->stable ? p.caplen : 0;
	if (b->n == PL_BATCH_PKTS || b->used + need > PL_BATCH_BYTES ||
	    (b->n && b->ref_bytes + ref > pl->ref_budget)) {
		send_batch(w, PL_BATCH_DATA);
		b = w->slot[w->head % PL_SLOTS];
	}
	struct pl_item *it = &b->item[b->n++];
	it->p = p;
	it->ts_us = pkt->ts_us;
	it->obs = obs;
	it->off = b->used;
	if (pkt->stable) {
		/* valid until the source is closed, which is after pl_close() */
		it->frame = pkt->data;
		b->ref_bytes += ref;
		return failed(pl);
	}
	it->frame = NULL;
	/* caplen is at most CAP_MAX_SNAPLEN (256 KiB) > batch; such a frame is cut to
	 * what fits, and decode already bounded every offset by caplen. */
	uint32_t n = p.caplen <= PL_BATCH_BYTES ? p.caplen : PL_BATCH_BYTES;
	memcpy(b->data + b->used, pkt->data, n);
	it->p.caplen = n;
	if (it->p.l3_off + it->p.l3_len > n)
		it->p.l3_len = it->p.l3_off < n ? n - it->p.l3_off : 0;
	b->used += (n + 7u) & ~7u;
	return failed(pl);
}

int pl_tick(struct pipeline *pl, uint64_t now_us)
{
	__atomic_store_n(&pl->tick_us, now_us, __ATOMIC_RELAXED);
	/* A quiet interface must not leave packets waiting in a half-filled batch
	 * while the worker's timers run on: hand over what there is. */
	for (unsigned i = 0; i < pl->nworkers; i++) {
		struct pl_worker *w = &pl->worker[i];
		if (w->slot[w->head % PL_SLOTS]->n)
			send_batch(w, PL_BATCH_DATA);
	}
	if (pl->nworkers == 0) {
		struct pl_worker *w = &pl->worker[0];
		w->last_expire_us = now_us;
		fl_table_expire(w->flows, now_us);
		if (pl->seg)
			seg_tick(pl->seg, now_us);
	} else if (pl->seg) {
		pthread_mutex_lock(&pl->seg_lock);
		seg_tick(pl->seg, now_us);
		pthread_mutex_unlock(&pl->seg_lock);
	}
	return failed(pl);
}

static uint64_t thread_cpu_us(pthread_t th);

/* pl_finish's packet-store half: the last index rows and the deferred index. */
static void *seg_finish(void *arg)
{
	struct pipeline *pl = arg;
	uint64_t t0 = thread_cpu_us(pthread_self());
	pthread_mutex_lock(&pl->seg_lock);
	/* a failed flush leaves written packets unindexed: counted like any write
	 * error; a failed index build loses nothing but is an error of the run */
	if (seg_flush(pl->seg) < 0)
		__atomic_add_fetch(&pl->seg_errors, 1, __ATOMIC_RELAXED);
	else if (seg_build_index(pl->seg) < 0)
		fail(pl, -EIO, "packet store index: %s", seg_errmsg(pl->seg));
	pthread_mutex_unlock(&pl->seg_lock);
	__atomic_add_fetch(&pl->seg_finish_cpu_us, thread_cpu_us(pthread_self()) - t0, __ATOMIC_RELAXED);
	return NULL;
}

int pl_finish(struct pipeline *pl)
{
	if (pl->nworkers == 0) {
		fl_table_flush(pl->worker[0].flows);
	} else {
		/* A FLUSH batch carries the last packets and ends every flow. */
		for (unsigned i = 0; i < pl->nworkers; i++) {
			fill_batch(&pl->worker[i]);
			send_batch(&pl->worker[i], PL_BATCH_FLUSH);
		}
		for (unsigned i = 0; i < pl->nworkers; i++) {
			struct pl_worker *w = &pl->worker[i];
			pthread_mutex_lock(&w->lock);
			while (!(w->flushed && w->head == w->tail))
				pthread_cond_wait(&w->nonfull, &w->lock);
			pthread_mutex_unlock(&w->lock);
		}
	}
	/* The packet index is committed and its deferred index built on a thread of
	 * its own while this one finishes the flow store: two databases, two cores. */
	pthread_t seg_th;
	int seg_started = pl->seg && pthread_create(&seg_th, NULL, seg_finish, pl) == 0;
	if (pl->seg && !seg_started)
		seg_finish(pl);
	int rc = drain(pl) < 0 ? failed(pl) : store_commit(pl);
	if (rc == 0) {
		/* A bulk load's deferred indexes are built here rather than in pl_close,
		 * so that `podcap read` counts them in the time it reports. */
		pthread_mutex_lock(&pl->store_lock);
		rc = st_build_indexes(pl->store);
		if (rc < 0)
			fail(pl, rc, "flow store indexes: %s", st_errmsg(pl->store));
		pthread_mutex_unlock(&pl->store_lock);
	}
	if (seg_started)
		pthread_join(seg_th, NULL);
	return rc < 0 ? rc : failed(pl);
}

/* CPU time used so far by a thread of this process, in microseconds. */
static uint64_t thread_cpu_us(pthread_t th)
{
	clockid_t cid;
	struct timespec ts;
	if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void pl_stats(const struct pipeline *pl, struct pl_stats *out)
{
	/* Worker counters are read without stopping the workers: each field is an
	 * atomic load (fl_table_stats), so a figure may be a moment old, never torn. */
	*out = pl->st;
	memset(&out->fl, 0, sizeof(out->fl));
	unsigned ntables = pl->nworkers ? pl->nworkers : 1;
	for (unsigned i = 0; i < ntables; i++) {
		struct fl_stats fs;
		struct fl_table *t = __atomic_load_n(&pl->worker[i].flows, __ATOMIC_ACQUIRE);
		if (!t)
			continue;
		fl_table_stats(t, &fs);
		out->fl.packets += fs.packets;
		out->fl.skipped += fs.skipped;
		out->fl.flows_created += fs.flows_created;
		out->fl.flows_active += fs.flows_active;
		out->fl.records += fs.records;
		out->fl.evicted += fs.evicted;
		out->fl.dpi_giveup += fs.dpi_giveup;
		out->fl.dpi_alloc_fail += fs.dpi_alloc_fail;
	}
	out->seg_packets = __atomic_load_n(&pl->seg_packets, __ATOMIC_RELAXED);
	out->seg_errors = __atomic_load_n(&pl->seg_errors, __ATOMIC_RELAXED);
	out->cpu_us_workers = out->cpu_us_segments = out->cpu_us_store = 0;
	for (unsigned i = 0; i < pl->nworkers; i++)
		if (pl->worker[i].running)
			out->cpu_us_workers += thread_cpu_us(pl->worker[i].th);
	if (pl->seg_running)
		out->cpu_us_segments = thread_cpu_us(pl->seg_thread);
	out->cpu_us_segments += __atomic_load_n(&pl->seg_finish_cpu_us, __ATOMIC_RELAXED);
	if (pl->writer_running)
		out->cpu_us_store = thread_cpu_us(pl->writer);
	pthread_mutex_lock((pthread_mutex_t *)&pl->q_lock);
	out->store_errors = pl->store_errors;
	pthread_mutex_unlock((pthread_mutex_t *)&pl->q_lock);
}

void pl_print_summary(const struct pipeline *pl, FILE *f)
{
	struct pl_stats s;
	uint64_t malformed = 0;

	pl_stats(pl, &s);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		malformed += s.dc.by_reason[r];
	fprintf(f, "packets %llu, bytes %llu, flows %llu, flow records %llu\n",
		(unsigned long long)s.packets, (unsigned long long)s.bytes,
		(unsigned long long)s.fl.flows_created, (unsigned long long)s.fl.records);
	fprintf(f, "not ip %llu, unsupported %llu, malformed %llu",
		(unsigned long long)s.dc.by_reason[DC_NOT_IP],
		(unsigned long long)s.dc.by_reason[DC_UNSUPPORTED], (unsigned long long)malformed);
	for (int r = DC_FIRST_MALFORMED; r < DC_R__COUNT; r++)
		if (s.dc.by_reason[r])
			fprintf(f, ", %s %llu", dc_reason_name(r), (unsigned long long)s.dc.by_reason[r]);
	fputc('\n', f);
	int any = 0;
	for (int t = 1; t < DC_TUN__COUNT; t++)
		if (s.dc.by_tunnel[t]) {
			fprintf(f, "%s%s %llu", any ? ", " : "tunnelled: ", dc_tunnel_name(t),
				(unsigned long long)s.dc.by_tunnel[t]);
			any = 1;
		}
	if (any)
		fputc('\n', f);
	fprintf(f, "evicted flows %llu, dpi gave up %llu, dpi alloc failures %llu, store errors %llu\n",
		(unsigned long long)s.fl.evicted, (unsigned long long)s.fl.dpi_giveup,
		(unsigned long long)s.fl.dpi_alloc_fail, (unsigned long long)s.store_errors);
	/* the caller's own thread: reading, decoding, and the flow work when inline */
	uint64_t caller = thread_cpu_us(pthread_self());
	fprintf(f, "cpu: this thread %.2f s, flow workers %.2f s, segment writer %.2f s, flow store %.2f s\n",
		(double)caller / 1e6, (double)s.cpu_us_workers / 1e6, (double)s.cpu_us_segments / 1e6,
		(double)s.cpu_us_store / 1e6);
	if (pl->seg) {
		struct seg_stats ss;
		pthread_mutex_lock((pthread_mutex_t *)&pl->seg_lock);
		seg_stats(pl->seg, &ss);
		pthread_mutex_unlock((pthread_mutex_t *)&pl->seg_lock);
		fprintf(f, "packet store: %llu packets stored, %llu skipped by per-flow limit, %llu refused "
			"(disk), %llu segments deleted by the cap, %llu bytes on disk, "
			"index %llu rows (%.2f s CPU)\n",
			(unsigned long long)ss.packets, (unsigned long long)ss.skipped_limit,
			(unsigned long long)ss.write_errors, (unsigned long long)ss.segments_deleted,
			(unsigned long long)ss.disk_bytes, (unsigned long long)ss.index_rows,
			(double)ss.index_us / 1e6);
	}
}

const char *pl_error(const struct pipeline *pl) { return pl->err; }

void pl_close(struct pipeline *pl)
{
	if (!pl)
		return;
	for (unsigned i = 0; i < pl->nworkers; i++) {
		struct pl_worker *w = &pl->worker[i];
		if (w->running) {
			/* An empty FLUSH batch with running == 2 makes the worker return;
			 * flows still open are ended (recorded) first. */
			__atomic_store_n(&w->running, 2, __ATOMIC_SEQ_CST);
			fill_batch(w);
			send_batch(w, PL_BATCH_FLUSH);
			pthread_join(w->th, NULL);
		}
	}
	if (pl->seg_running) {
		/* after the workers: their last batches still go through it */
		pthread_mutex_lock(&pl->sq_lock);
		pl->sq_stop = 1;
		pthread_cond_signal(&pl->sq_cond);
		pthread_mutex_unlock(&pl->sq_lock);
		pthread_join(pl->seg_thread, NULL);
	}
	for (unsigned i = 0; i < pl->nworkers; i++)
		for (unsigned k = 0; k < PL_SLOTS; k++)
			free(pl->worker[i].slot[k]);
	if (pl->writer_running) {
		pthread_mutex_lock(&pl->q_lock);
		pl->q_stop = 1;
		pthread_cond_signal(&pl->q_nonempty);
		pthread_mutex_unlock(&pl->q_lock);
		pthread_join(pl->writer, NULL);
	}
	free(pl->ring);
	free(pl->ps_id);
	free(pl->ps_state);
	for (unsigned i = 0; i < PL_MAX_WORKERS; i++)
		if (pl->worker[i].flows)
			fl_table_free(pl->worker[i].flows);
	if (pl->seg)
		seg_close(pl->seg);
	if (pl->store)
		st_close(pl->store);
	free(pl);
}
