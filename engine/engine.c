/* engine — threads, batches and sinks around the flow tables (see engine.h).
 *
 *   caller thread:  decode, reassemble fragments (frag/), count, pick a worker by
 *                   fl_hash (fragments going on alone: pick_worker_frag), put
 *                   the packet (a pointer when the source's
 *                   bytes are stable, else a copy) into that worker's current
 *                   batch slot
 *   flow workers:   fl_table_packet (+ nDPI), timers; each packet's final flow id
 *                   and number are written into the batch; records go to every
 *                   record sink's queue
 *   sink threads:   one per sink; packets sinks get every batch a worker is done
 *                   with, record sinks every record; the slot is free again once
 *                   every packets sink is done with it (a reference count)
 *
 * A worker's slots form a ring: the caller fills slot[head], the worker works on
 * slot[wtail], and slots before tail are free again.  Because every packets sink
 * takes batches in the order the worker finished them, the slot at tail is always
 * the first to be released, so tail only moves forward.
 *
 * Reassembly.  A completed datagram goes into one worker's batches as a group:
 * the rebuilt frame first (ROLE_WHOLE: the flow table accounts it; it is then
 * taken out of the batch, so packets sinks never see it), then each original
 * fragment (ROLE_ORIG: not given to the flow table; it takes the flow id and
 * packet number the worker just got for the rebuilt frame).  The caller fills one
 * worker's batches in order and the worker works on them in order, so a group may
 * span batches: the worker keeps the last ROLE_WHOLE's id across them.  Batches
 * without groups (every batch without fragments) take the loop they always took.
 */
#include <errno.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"

/* Packets travel to a worker in batches so the queue lock is taken per batch. */
#define ENG_BATCH_PKTS 512
#define ENG_BATCH_BYTES (192u * 1024u)
#define ENG_SLOTS 16
/* Records queued per record sink before workers wait. */
#define ENG_RECORD_RING 4096
/* Caller-thread counters are published for other threads this often. */
#define ENG_PUBLISH_EVERY 65536

enum { BATCH_DATA, BATCH_FLUSH };
/* What the worker does with a batch item (eng_batch.role). */
enum { ROLE_PACKET = 0, ROLE_WHOLE, ROLE_ORIG };

/* Reassembly timers on packet time are looked at this often while datagrams are
 * held (fr_add() also expires on every fragment it gets). */
#define ENG_FRAG_EXPIRE_EVERY_US 1000000u
/* frag keys datagrams by the caller's observation point: the engine gives it the
 * point and the direction, so fragments seen in different directions never mix and
 * each original comes back with its own. */
#define ENG_FRAG_DIR_SHIFT 24
#define ENG_FRAG_OBS_MASK ((1u << ENG_FRAG_DIR_SHIFT) - 1)

struct eng_batch {
	uint32_t n, used, kind;
	uint32_t ref_bytes;  /* bytes of stable packets referenced (not copied) */
	int refs;            /* packets sinks still working on it (atomic) */
	uint32_t mixed;      /* some role[] is not ROLE_PACKET */
	struct eng_worker *w;
	struct eng_packet item[ENG_BATCH_PKTS];
	uint8_t role[ENG_BATCH_PKTS];
	uint8_t data[ENG_BATCH_BYTES];
};

struct eng_worker {
	struct engine *e;
	unsigned idx;
	struct fl_config cfg;
	struct fl_table *flows;  /* set by the worker thread itself: atomic access;
	                          * cleared under tables_lock when eng_finish frees it */
	_Alignas(64) uint64_t last_expire_us; /* the worker's own line */
	_Alignas(64) pthread_t th;
	int running;             /* 1 running, 2 asked to stop (atomic) */
	/* What eng_stats reports once eng_finish has freed the table and joined
	 * the thread (under tables_lock): its last counters and CPU time. */
	int retired;
	struct fl_stats fs_final;
	uint64_t cpu_final_us;   /* written by the thread as it returns */
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	struct eng_batch *slot[ENG_SLOTS];
	unsigned head, wtail, tail;
	int flushed;             /* worker finished a FLUSH batch */
	/* Synchronisation, counted under lock (read with atomic loads): batches
	 * handed over, times the caller found every slot full (waited for this
	 * worker), times the worker found none (slept until a batch came). */
	uint64_t batches, caller_waits, worker_waits;
	/* the last rebuilt datagram's flow id and packet number, for its originals */
	uint64_t grp_flow_id;
	uint32_t grp_pkt_no;
};

struct eng_sinkq {
	struct eng_sink sink;
	struct engine *e;
	unsigned idx;
	int wants_packets, wants_records;
	pthread_t th;
	int running;
	pthread_mutex_t lock;
	pthread_cond_t wake;     /* work for the sink thread */
	pthread_cond_t space;    /* room in the record ring, or the sink failed */
	pthread_cond_t done;     /* flush finished */
	struct eng_batch **bq;   /* batches, in the order workers finished them */
	unsigned bq_head, bq_tail, bq_cap;
	struct fl_record *rq;    /* records */
	unsigned rq_head, rq_tail;
	unsigned obs_seen;       /* position in engine's obs log delivered */
	int tick_pending;
	uint64_t tick_us;
	int flush_req, flush_done, stop;
	int failed;              /* atomic: a callback failed; events are discarded */
	uint64_t batches, records, discarded; /* under lock */
};

/* Where a first fragment that went on alone was sent (pick_worker_frag). */
#define ENG_FRAG_ROUTES 1024
#define ENG_FRAG_ROUTE_US (30ull * 1000000) /* as the flow tables' fragment map */
struct eng_frag_route {
	uint64_t ts_us;
	uint32_t ip_id, obs;
	uint16_t vlan;
	uint8_t family, proto, worker, used;
	uint8_t src[16], dst[16];
};

struct engine {
	struct eng_config cfg;
	unsigned nworkers;       /* threads; 0 = inline in worker[0] */
	unsigned ntables;
	/* Bytes of stable packets one batch may reference: all slots of all workers
	 * together stay within CAP_STABLE_WINDOW, so a mapped file's pages are not
	 * dropped while a worker or a sink still reads them. */
	uint32_t ref_budget;
	struct eng_worker worker[ENG_MAX_WORKERS];
	struct eng_sinkq sq[ENG_MAX_SINKS];
	size_t nsinks;
	unsigned npacket_sinks;
	int finished;

	/* observation points: entries are immutable; an update swaps the pointer
	 * and keeps the old entry until close (readers on other threads) */
	struct eng_obs *obs[ENG_MAX_OBS + 1];
	uint32_t nobs;
	struct eng_obs **retired;
	size_t nretired;
	/* Announcements to the sinks, in order: ids, repeated when one changes.
	 * Grows by 4 bytes per announcement; each sink keeps its position. */
	pthread_mutex_t obs_lock;
	uint32_t *obs_log;
	unsigned obs_log_n, obs_log_cap;

	/* caller-thread counters; a copy for other threads under pub_lock */
	_Alignas(64) struct dc_counters dc;
	uint64_t packets, bytes, since_publish;
	uint64_t frames_cut;     /* copied frames cut to a batch's bytes (ENG_BATCH_BYTES) */
	struct fr_table *fr;     /* NULL with no_reassembly */
	struct eng_frag_route *routes; /* ENG_FRAG_ROUTES, when more than one table */
	uint64_t fr_due_us;      /* next fr_expire() on packet time; UINT64_MAX: none held */
	uint64_t fr_unfinished, fr_held;
	pthread_mutex_t pub_lock;
	/* Held by eng_stats while it reads the flow tables and worker threads, and
	 * by eng_finish while it joins a worker and takes its table away. */
	pthread_mutex_t tables_lock;
	struct dc_counters dc_pub;
	uint64_t packets_pub, bytes_pub, frames_cut_pub;
	struct fr_stats fr_pub;
	uint64_t fr_unfinished_pub, fr_held_pub;

	uint64_t id_base;        /* ids: above what the sinks held at open */
	uint64_t ext_seq;        /* eng_record(): records added (caller's thread) */
	uint64_t ext_records;    /* atomic copy of ext_seq for eng_stats */

	_Alignas(64) uint64_t tick_us; /* atomic: latest eng_tick() time, for idle workers */
	int failed;                    /* atomic: first fatal error */
	char err[512];
};

void eng_config_default(struct eng_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	dc_config_default(&cfg->dc);
	fl_config_default(&cfg->fl);
	fr_config_default(&cfg->frag);
}

uint64_t eng_thread_cpu_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t thread_cpu_us(pthread_t th)
{
	clockid_t cid;
	struct timespec ts;
	if (pthread_getcpuclockid(th, &cid) != 0 || clock_gettime(cid, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Records the first fatal error and its message; later failures (often
 * consequences of the first) keep neither.  Any thread. */
static void fail(struct engine *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct engine *e, int rc, const char *fmt, ...)
{
	int zero = 0;
	if (!__atomic_compare_exchange_n(&e->failed, &zero, rc, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->err, sizeof(e->err), fmt, ap);
	va_end(ap);
}

static int failed(const struct engine *e) { return __atomic_load_n(&e->failed, __ATOMIC_SEQ_CST); }

const char *eng_error(const struct engine *e) { return e->err; }

/* A sink callback failed: the run ends with its message; the sink is not called
 * again (its queued and later events are discarded, counted). */
static void sink_failed(struct eng_sinkq *q, int rc, const char *what)
{
	const char *msg = q->sink.ops->errmsg ? q->sink.ops->errmsg(q->sink.ctx) : NULL;
	fail(q->e, rc < 0 ? rc : -EIO, "%s: %s", q->sink.ops->name,
	     msg && *msg ? msg : what);
	__atomic_store_n(&q->failed, 1, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&q->lock);
	pthread_cond_broadcast(&q->space);
	pthread_mutex_unlock(&q->lock);
}

/* ---- batches back to their worker ---------------------------------------- */

/* One holder (a packets sink, or the worker when there are none) is done with b. */
static void batch_release(struct eng_batch *b)
{
	if (__atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	struct eng_worker *w = b->w;
	pthread_mutex_lock(&w->lock);
	w->tail++;
	pthread_cond_broadcast(&w->nonfull);
	pthread_mutex_unlock(&w->lock);
}

/* ---- sink threads -------------------------------------------------------- */

static int sinkq_has_work(const struct eng_sinkq *q, unsigned obs_n)
{
	return q->bq_head != q->bq_tail || q->rq_head != q->rq_tail || q->obs_seen != obs_n ||
	       q->tick_pending || (q->flush_req && !q->flush_done) || q->stop;
}

static void *sink_main(void *arg)
{
	struct eng_sinkq *q = arg;
	struct engine *e = q->e;
	const struct eng_sink_ops *ops = q->sink.ops;
	char name[16];
	struct fl_record *rec = malloc(64 * sizeof(*rec));

	snprintf(name, sizeof(name), "podcap-%.8s", ops->name);
	for (char *c = name; *c; c++)
		if (*c == ' ')
			*c = '-';
	pthread_setname_np(pthread_self(), name);
	if (!rec)
		sink_failed(q, -ENOMEM, "out of memory");
	pthread_mutex_lock(&q->lock);
	for (;;) {
		pthread_mutex_lock(&e->obs_lock);
		unsigned obs_n = e->obs_log_n;
		pthread_mutex_unlock(&e->obs_lock);
		if (!sinkq_has_work(q, obs_n)) {
			pthread_cond_wait(&q->wake, &q->lock);
			continue;
		}
		int dead = __atomic_load_n(&q->failed, __ATOMIC_SEQ_CST);
		/* Observation points first: they precede every packet and record
		 * of theirs (announced before the caller hands such packets over). */
		while (q->obs_seen != obs_n) {
			pthread_mutex_lock(&e->obs_lock);
			const struct eng_obs *o = e->obs[e->obs_log[q->obs_seen]];
			pthread_mutex_unlock(&e->obs_lock);
			q->obs_seen++;
			if (dead || !ops->obs_point)
				continue;
			pthread_mutex_unlock(&q->lock);
			int rc = ops->obs_point(q->sink.ctx, o);
			pthread_mutex_lock(&q->lock);
			if (rc < 0) {
				pthread_mutex_unlock(&q->lock);
				sink_failed(q, rc, "observation point");
				pthread_mutex_lock(&q->lock);
				dead = 1;
			}
		}
		if (q->bq_head != q->bq_tail) {
			struct eng_batch *b = q->bq[q->bq_tail % q->bq_cap];
			q->bq_tail++;
			q->batches++;
			if (dead)
				q->discarded++;
			pthread_mutex_unlock(&q->lock);
			if (!dead && b->n && ops->packets) {
				int rc = ops->packets(q->sink.ctx, b->item, b->n);
				if (rc < 0)
					sink_failed(q, rc, "packets");
			}
			batch_release(b);
			pthread_mutex_lock(&q->lock);
			continue;
		}
		if (q->rq_head != q->rq_tail) {
			unsigned n = 0;
			while (n < 64 && q->rq_tail != q->rq_head && rec) {
				rec[n++] = q->rq[q->rq_tail % ENG_RECORD_RING];
				q->rq_tail++;
			}
			if (!rec) { /* no buffer: drop what is queued, counted */
				q->discarded += q->rq_head - q->rq_tail;
				q->rq_tail = q->rq_head;
			}
			q->records += n;
			if (dead)
				q->discarded += n;
			pthread_cond_broadcast(&q->space);
			pthread_mutex_unlock(&q->lock);
			for (unsigned i = 0; i < n && !dead && ops->record; i++) {
				int rc = ops->record(q->sink.ctx, &rec[i]);
				if (rc < 0) {
					sink_failed(q, rc, "record");
					dead = 1;
					pthread_mutex_lock(&q->lock);
					q->discarded += n - i - 1;
					pthread_mutex_unlock(&q->lock);
				}
			}
			pthread_mutex_lock(&q->lock);
			continue;
		}
		if (q->tick_pending) {
			uint64_t now = q->tick_us;
			q->tick_pending = 0;
			pthread_mutex_unlock(&q->lock);
			if (!dead && ops->tick) {
				int rc = ops->tick(q->sink.ctx, now);
				if (rc < 0)
					sink_failed(q, rc, "tick");
			}
			pthread_mutex_lock(&q->lock);
			continue;
		}
		if (q->flush_req && !q->flush_done) {
			pthread_mutex_unlock(&q->lock);
			if (!dead && ops->flush) {
				int rc = ops->flush(q->sink.ctx);
				if (rc < 0)
					sink_failed(q, rc, "flush");
			}
			pthread_mutex_lock(&q->lock);
			q->flush_done = 1;
			pthread_cond_broadcast(&q->done);
			continue;
		}
		if (q->stop)
			break;
	}
	pthread_mutex_unlock(&q->lock);
	free(rec);
	return NULL;
}

static void sinkq_wake(struct eng_sinkq *q)
{
	pthread_mutex_lock(&q->lock);
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
}

/* ---- records from the flow tables (worker threads) ------------------------ */

static void deliver(struct engine *e, const struct fl_record *in);

static int on_record(void *arg, const struct fl_record *in)
{
	struct eng_worker *w = arg;
	deliver(w->e, in);
	return 0;
}

int eng_record(struct engine *e, struct fl_record *rec)
{
	if (!e->cfg.external_records || e->finished)
		return -EINVAL;
	/* the id one more flow table (shard ntables) would give its n-th flow */
	rec->id = e->id_base + e->ext_seq * (e->ntables + 1u) + e->ntables + 1;
	e->ext_seq++;
	__atomic_store_n(&e->ext_records, e->ext_seq, __ATOMIC_RELAXED);
	deliver(e, rec);
	return 0;
}

/* Every record, from a worker's table or eng_record(): the hook, then each
 * record sink's queue (waiting while one is full). */
static void deliver(struct engine *e, const struct fl_record *in)
{
	struct fl_record local;

	if (e->cfg.record_hook) {
		/* outside any lock: a hook may make system calls */
		local = *in;
		e->cfg.record_hook(e->cfg.record_hook_arg, &local);
		in = &local;
	}
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		if (!q->wants_records)
			continue;
		pthread_mutex_lock(&q->lock);
		while (q->rq_head - q->rq_tail >= ENG_RECORD_RING && !__atomic_load_n(&q->failed, __ATOMIC_SEQ_CST))
			pthread_cond_wait(&q->space, &q->lock);
		if (__atomic_load_n(&q->failed, __ATOMIC_SEQ_CST)) {
			q->discarded++;
		} else {
			q->rq[q->rq_head % ENG_RECORD_RING] = *in;
			q->rq_head++;
			pthread_cond_signal(&q->wake);
		}
		pthread_mutex_unlock(&q->lock);
	}
}

/* ---- flow work (a worker thread, or the caller when inline) -------------- */

/* Inlined into both loops of work_batch: it is every packet's call. */
static inline __attribute__((always_inline)) uint64_t flow_packet(struct eng_worker *w,
								  struct eng_packet *it)
{
	uint64_t flow_id = 0;
	if (__builtin_expect(it->dc.reason != DC_OK, 0)) {
		it->pkt_no = 0; /* a frame in no flow, for the packets sinks only */
		return 0;
	}
	if (fl_table_packet(w->flows, it->obs, &it->dc, it->frame, it->ts_us, &flow_id, &it->pkt_no) != 0)
		flow_id = 0;
	if (it->ts_us >= w->last_expire_us + 1000000u) {
		w->last_expire_us = it->ts_us;
		fl_table_expire(w->flows, it->ts_us);
	}
	return flow_id;
}

/* Flow work on a batch holding reassembled datagrams (see the top of this file):
 * rebuilt frames go to the flow table and out of the batch, originals take their
 * datagram's flow id and packet number. */
static void work_groups(struct eng_worker *w, struct eng_batch *b)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < b->n; i++) {
		struct eng_packet *it = &b->item[i];
		switch (b->role[i]) {
		case ROLE_WHOLE:
			it->pkt_no = 0;
			w->grp_flow_id = w->flows ? flow_packet(w, it) : 0;
			w->grp_pkt_no = it->pkt_no;
			continue;
		case ROLE_ORIG:
			it->flow_id = w->grp_flow_id;
			it->pkt_no = w->grp_pkt_no;
			break;
		default:
			it->flow_id = w->flows ? flow_packet(w, it) : 0;
			break;
		}
		if (j != i)
			b->item[j] = *it;
		j++;
	}
	b->n = j;
}

/* Flow work on one batch, then the batch goes to the packets sinks (or straight
 * back to the caller's free slots). */
static void work_batch(struct eng_worker *w, struct eng_batch *b)
{
	struct engine *e = w->e;
	if (b->mixed)
		work_groups(w, b);
	else
		for (uint32_t i = 0; i < b->n; i++)
			b->item[i].flow_id = w->flows ? flow_packet(w, &b->item[i]) : 0;
	if (b->kind == BATCH_FLUSH && w->flows)
		fl_table_flush(w->flows);
	b->refs = e->npacket_sinks ? (int)e->npacket_sinks : 1;
	if (!e->npacket_sinks) {
		b->refs = 1;
		batch_release(b);
		return;
	}
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		if (!q->wants_packets)
			continue;
		pthread_mutex_lock(&q->lock);
		/* bq has room for every slot of every worker: never full */
		q->bq[q->bq_head % q->bq_cap] = b;
		q->bq_head++;
		pthread_cond_signal(&q->wake);
		pthread_mutex_unlock(&q->lock);
	}
}

static void *worker_main(void *arg)
{
	struct eng_worker *w = arg;
	char name[16];

	snprintf(name, sizeof(name), "podcap-flow%u", w->idx);
	pthread_setname_np(pthread_self(), name);
	struct fl_table *t = fl_table_new(&w->cfg, on_record, w);
	if (!t) {
		/* Batches sent here are then only passed on; the caller sees the error
		 * on its next eng_packet() and stops. */
		int err = errno ? errno : ENOMEM;
		fail(w->e, -err, "flow table: %s", strerror(err));
	}
	__atomic_store_n(&w->flows, t, __ATOMIC_RELEASE);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		if (w->head == w->wtail)
			__atomic_store_n(&w->worker_waits, w->worker_waits + 1, __ATOMIC_RELAXED);
		while (w->head == w->wtail) {
			/* Idle: keep timers running on the agent's clock. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&w->nonempty, &w->lock, &ts) == ETIMEDOUT && t) {
				uint64_t now = __atomic_load_n(&w->e->tick_us, __ATOMIC_RELAXED);
				if (now > w->last_expire_us) {
					w->last_expire_us = now;
					pthread_mutex_unlock(&w->lock);
					fl_table_expire(t, now);
					pthread_mutex_lock(&w->lock);
				}
			}
		}
		struct eng_batch *b = w->slot[w->wtail % ENG_SLOTS];
		pthread_mutex_unlock(&w->lock);
		int kind = (int)b->kind;
		work_batch(w, b);
		pthread_mutex_lock(&w->lock);
		w->wtail++;
		if (kind == BATCH_FLUSH)
			w->flushed = 1;
		pthread_cond_broadcast(&w->nonfull);
		if (kind == BATCH_FLUSH && w->head == w->wtail &&
		    __atomic_load_n(&w->running, __ATOMIC_SEQ_CST) == 2)
			break; /* eng_close asked us to stop */
	}
	pthread_mutex_unlock(&w->lock);
	w->cpu_final_us = eng_thread_cpu_us(); /* read after the join */
	return NULL;
}

/* Caller side: waits until slot[head] of w is free to fill.  w->lock held. */
static void wait_slot(struct eng_worker *w)
{
	if (w->head - w->tail >= ENG_SLOTS - 1)
		__atomic_store_n(&w->caller_waits, w->caller_waits + 1, __ATOMIC_RELAXED);
	while (w->head - w->tail >= ENG_SLOTS - 1)
		pthread_cond_wait(&w->nonfull, &w->lock);
}

/* Publishes slot[head] to the worker (or, inline, works on it at once) and
 * prepares the next slot. */
static void send_batch(struct eng_worker *w, uint32_t kind)
{
	struct engine *e = w->e;
	struct eng_batch *b = w->slot[w->head % ENG_SLOTS];
	b->kind = kind;
	b->w = w;
	pthread_mutex_lock(&w->lock);
	w->head++;
	__atomic_store_n(&w->batches, w->batches + 1, __ATOMIC_RELAXED);
	w->flushed = 0;
	if (e->nworkers) {
		pthread_cond_signal(&w->nonempty);
	} else {
		pthread_mutex_unlock(&w->lock);
		work_batch(w, b);
		pthread_mutex_lock(&w->lock);
		w->wtail++;
		if (kind == BATCH_FLUSH)
			w->flushed = 1;
	}
	wait_slot(w);
	struct eng_batch *next = w->slot[w->head % ENG_SLOTS];
	next->n = 0;
	next->used = 0;
	next->ref_bytes = 0;
	next->mixed = 0;
	pthread_mutex_unlock(&w->lock);
}

/* ---- observation points --------------------------------------------------- */

static int same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

static struct eng_obs *obs_new(uint32_t id, const char *iface, const char *direction, const char *pod,
			       int linktype, uint32_t ifindex)
{
	/* one allocation: the strings live behind the struct */
	size_t li = strlen(iface) + 1, ld = strlen(direction) + 1, lp = pod ? strlen(pod) + 1 : 0;
	struct eng_obs *o = malloc(sizeof(*o) + li + ld + lp);
	if (!o)
		return NULL;
	char *s = (char *)(o + 1);
	memcpy(s, iface, li);
	memcpy(s + li, direction, ld);
	if (pod)
		memcpy(s + li + ld, pod, lp);
	*o = (struct eng_obs){.id = id, .iface = s, .direction = s + li, .pod = pod ? s + li + ld : NULL,
			      .linktype = linktype, .ifindex = ifindex};
	return o;
}

int eng_obs_point(struct engine *e, const char *iface, const char *direction, const char *pod,
		  int linktype, uint32_t ifindex, uint32_t *obs)
{
	if (!iface || !*iface || !direction || !*direction)
		return -EINVAL;
	if (pod && !*pod)
		pod = NULL;
	uint32_t id = 0;
	for (uint32_t i = 1; i <= e->nobs; i++)
		if (!strcmp(e->obs[i]->iface, iface) && !strcmp(e->obs[i]->direction, direction)) {
			id = i;
			break;
		}
	if (id && same_str(e->obs[id]->pod, pod) && e->obs[id]->linktype == linktype &&
	    e->obs[id]->ifindex == ifindex) {
		*obs = id;
		return 0;
	}
	if (!id && e->nobs >= ENG_MAX_OBS)
		return -ENOSPC;
	if (e->obs_log_n == e->obs_log_cap) {
		unsigned ncap = e->obs_log_cap ? 2 * e->obs_log_cap : 64;
		pthread_mutex_lock(&e->obs_lock);
		uint32_t *nl = realloc(e->obs_log, ncap * sizeof(*nl));
		if (nl) {
			e->obs_log = nl;
			e->obs_log_cap = ncap;
		}
		pthread_mutex_unlock(&e->obs_lock);
		if (!nl)
			return -ENOMEM;
	}
	struct eng_obs *o = obs_new(id ? id : e->nobs + 1, iface, direction, pod, linktype, ifindex);
	if (!o)
		return -ENOMEM;
	if (id) {
		struct eng_obs **r = realloc(e->retired, (e->nretired + 1) * sizeof(*r));
		if (!r) {
			free(o);
			return -ENOMEM;
		}
		e->retired = r;
	}
	pthread_mutex_lock(&e->obs_lock);
	if (id) {
		e->retired[e->nretired++] = e->obs[id];
	} else {
		id = ++e->nobs;
	}
	__atomic_store_n(&e->obs[id], o, __ATOMIC_RELEASE);
	e->obs_log[e->obs_log_n++] = id;
	pthread_mutex_unlock(&e->obs_lock);
	for (size_t i = 0; i < e->nsinks; i++)
		sinkq_wake(&e->sq[i]);
	*obs = id;
	return 0;
}

const struct eng_obs *eng_obs(const struct engine *e, uint32_t obs)
{
	if (obs == 0 || obs > ENG_MAX_OBS)
		return NULL;
	return __atomic_load_n(&e->obs[obs], __ATOMIC_ACQUIRE);
}

/* ---- the caller's side ---------------------------------------------------- */

static void publish(struct engine *e)
{
	pthread_mutex_lock(&e->pub_lock);
	e->dc_pub = e->dc;
	e->packets_pub = e->packets;
	e->frames_cut_pub = e->frames_cut;
	e->bytes_pub = e->bytes;
	if (e->fr)
		fr_stats(e->fr, &e->fr_pub);
	e->fr_unfinished_pub = e->fr_unfinished;
	e->fr_held_pub = e->fr_held;
	pthread_mutex_unlock(&e->pub_lock);
	e->since_publish = 0;
}

/* Which worker a fragment goes to when it goes on alone (reassembly given up,
 * or off).  A first fragment has ports and goes where its flow lives (fl_hash,
 * the full 5-tuple); it leaves its worker here under (point, VLAN, addresses,
 * protocol, IP id), so the later fragments of its datagram (no ports) follow
 * it.  A later fragment without such an entry (it came first, or the entry was
 * overwritten) takes the hash without ports: its flow table then counts it in
 * the ports-0 flow of its addresses, as a table does for a later fragment whose
 * first one it never saw.  Caller thread only. */
static __attribute__((noinline)) struct eng_worker *pick_worker_frag(struct engine *e, uint32_t obs,
								     const struct dc_packet *p, uint64_t ts_us)
{
	uint16_t vlan = p->vlan_depth ? p->vlan[0] : 0;
	uint64_t h = (uint64_t)p->ip_id << 32 ^ (uint64_t)obs << 8 ^ (uint64_t)vlan << 20 ^ p->inner.proto;
	for (int i = 0; i < 16; i += 8) {
		uint64_t a, b;
		memcpy(&a, p->inner.src + i, 8);
		memcpy(&b, p->inner.dst + i, 8);
		h = (h ^ a ^ (b << 1 | b >> 63)) * 0x9e3779b97f4a7c15ull;
	}
	struct eng_frag_route *r = &e->routes[(h >> 40) % ENG_FRAG_ROUTES];
	int same = r->used && r->ip_id == p->ip_id && r->obs == obs && r->vlan == vlan &&
		   r->family == p->inner.family && r->proto == p->inner.proto &&
		   !memcmp(r->src, p->inner.src, 16) && !memcmp(r->dst, p->inner.dst, 16);
	if (p->frag == DC_FRAG_LATER) {
		uint64_t age = ts_us > r->ts_us ? ts_us - r->ts_us : r->ts_us - ts_us;
		if (same && age <= ENG_FRAG_ROUTE_US)
			return &e->worker[r->worker];
		return &e->worker[fl_hash(obs, p) % e->ntables];
	}
	uint32_t w = fl_hash(obs, p) % e->ntables;
	*r = (struct eng_frag_route){.used = 1, .ip_id = p->ip_id, .obs = obs, .vlan = vlan,
				     .family = p->inner.family, .proto = p->inner.proto,
				     .worker = (uint8_t)w, .ts_us = ts_us};
	memcpy(r->src, p->inner.src, 16);
	memcpy(r->dst, p->inner.dst, 16);
	return &e->worker[w];
}

/* The worker of a packet's flow: by the flow's own hash (fl_hash: symmetric,
 * the 5-tuple), so the flows between two busy hosts spread over all workers. */
static inline struct eng_worker *pick_worker(struct engine *e, uint32_t obs, const struct dc_packet *p,
					     uint64_t ts_us)
{
	/* one worker (`podcap read` on 2 cores): no hash to compute */
	if (e->ntables == 1)
		return &e->worker[0];
	if (__builtin_expect(p->frag != DC_FRAG_NONE, 0))
		return pick_worker_frag(e, obs, p, ts_us);
	return &e->worker[fl_hash(obs, p) % e->ntables];
}

/* Puts one decoded packet into w's current batch: a pointer to frame when stable,
 * else a copy.  Inlined into eng_packet() (every packet); the reassembly paths call
 * it through enqueue_cold(). */
static inline __attribute__((always_inline)) void enqueue(struct engine *e, struct eng_worker *w,
							   uint32_t obs, const struct dc_packet *p,
							   const uint8_t *frame, uint64_t ts_us,
							   uint8_t dir, int stable, uint8_t role)
{
	struct eng_batch *b = w->slot[w->head % ENG_SLOTS];
	uint32_t need = stable ? 0 : p->caplen, ref = stable ? p->caplen : 0;
	if (b->n == ENG_BATCH_PKTS || b->used + need > ENG_BATCH_BYTES ||
	    (b->n && b->ref_bytes + ref > e->ref_budget)) {
		send_batch(w, BATCH_DATA);
		b = w->slot[w->head % ENG_SLOTS];
	}
	b->role[b->n] = role;
	if (role != ROLE_PACKET)
		b->mixed = 1;
	struct eng_packet *it = &b->item[b->n++];
	it->dc = *p;
	it->ts_us = ts_us;
	it->obs = obs;
	it->dir = dir;
	it->flow_id = 0;
	it->pkt_no = 0;
	if (stable) {
		/* valid until the source is closed, which is after eng_close() */
		it->frame = frame;
		b->ref_bytes += ref;
		return;
	}
	/* caplen is at most CAP_MAX_SNAPLEN (256 KiB) > batch; such a frame is cut to
	 * what fits, and decode already bounded every offset by caplen. */
	uint32_t n = p->caplen <= ENG_BATCH_BYTES ? p->caplen : ENG_BATCH_BYTES;
	if (n < p->caplen)
		e->frames_cut++; /* only with --snaplen above 192 KiB: counted, not silent */
	memcpy(b->data + b->used, frame, n);
	it->frame = b->data + b->used;
	it->dc.caplen = n;
	if (it->dc.l3_off + it->dc.l3_len > n)
		it->dc.l3_len = it->dc.l3_off < n ? n - it->dc.l3_off : 0;
	b->used += (n + 7u) & ~7u;
}

/* ---- reassembly (caller thread; cold) -------------------------------------- */

static __attribute__((noinline)) void enqueue_cold(struct engine *e, struct eng_worker *w,
						   uint32_t obs, const struct dc_packet *p,
						   const uint8_t *frame, uint64_t ts_us, uint8_t dir,
						   int stable, uint8_t role)
{
	enqueue(e, w, obs, p, frame, ts_us, dir, stable, role);
}

/* frag gives back a held fragment whose datagram it gave up (timeout, overlap,
 * caps, eviction, end of input): it goes on as it would without reassembly, and
 * is counted by decode now, since it was not when it was held.  Runs inside
 * fr_add/fr_expire/fr_flush; calls no fr_*. */
static void frag_release(void *ctx, const struct fr_fragment *f, enum fr_why why)
{
	struct engine *e = ctx;
	struct dc_packet p;
	(void)why; /* counted by frag */
	e->fr_held--;
	dc_decode(&e->cfg.dc, f->linktype, f->frame, f->caplen, f->wirelen, &p);
	dc_count(&e->dc, &p);
	if (p.reason != DC_OK)
		return;
	uint32_t obs = f->obs & ENG_FRAG_OBS_MASK;
	enqueue_cold(e, pick_worker(e, obs, &p, f->ts_us), obs, &p, f->frame, f->ts_us,
		(uint8_t)(f->obs >> ENG_FRAG_DIR_SHIFT), 0, ROLE_PACKET);
}

/* A datagram completed: the rebuilt frame for the flow table, then the original
 * fragments for the packets sinks, all to the worker of the rebuilt frame's flow.
 * dg is frag's until the next fr_* call; everything is copied into the batches. */
static void frag_deliver(struct engine *e, const struct fr_datagram *dg)
{
	struct dc_packet whole;
	dc_decode(&e->cfg.dc, dg->linktype, dg->frame, dg->len, dg->wirelen, &whole);
	/* the fragment that completed it was not counted as held */
	e->fr_held -= dg->nfrags - 1;
	/* each frame counts as what it was part of (a fragmented VXLAN carrier is
	 * VXLAN); a malformed datagram is dropped as any malformed packet is */
	for (unsigned i = 0; i < dg->nfrags; i++)
		dc_count(&e->dc, &whole);
	if (whole.reason != DC_OK)
		return;
	uint32_t obs = dg->obs & ENG_FRAG_OBS_MASK;
	struct eng_worker *w = pick_worker(e, obs, &whole, dg->ts_us);
	enqueue_cold(e, w, obs, &whole, dg->frame, dg->ts_us, (uint8_t)(dg->obs >> ENG_FRAG_DIR_SHIFT), 0,
		ROLE_WHOLE);
	for (unsigned i = 0; i < dg->nfrags; i++) {
		const struct fr_fragment *f = &dg->frags[i];
		struct dc_packet p;
		dc_decode(&e->cfg.dc, f->linktype, f->frame, f->caplen, f->wirelen, &p);
		enqueue_cold(e, w, f->obs & ENG_FRAG_OBS_MASK, &p, f->frame, f->ts_us,
			(uint8_t)(f->obs >> ENG_FRAG_DIR_SHIFT), 0, ROLE_ORIG);
	}
}

/* Timeouts on packet (or tick) time; checked again a second later while
 * datagrams are held. */
static __attribute__((noinline)) void frag_expire(struct engine *e, uint64_t now_us)
{
	struct fr_stats st;
	fr_expire(e->fr, now_us);
	fr_stats(e->fr, &st);
	e->fr_due_us = st.in_progress ? now_us + ENG_FRAG_EXPIRE_EVERY_US : UINT64_MAX;
}

/* A fragment (p->frag != DC_FRAG_NONE), before its reason is looked at: a first
 * fragment too short for its L4 header is malformed alone, fine reassembled. */
static __attribute__((noinline)) void frag_packet(struct engine *e, uint32_t obs,
						  const struct cap_packet *pkt, struct dc_packet *p)
{
	struct fr_datagram dg;
	uint32_t key = obs | (uint32_t)pkt->dir << ENG_FRAG_DIR_SHIFT;
	switch (fr_add(e->fr, key, p, pkt->data, pkt->ts_us, &dg)) {
	case FR_HELD:
		/* frag keeps a copy; decode counts it when its datagram is done */
		e->fr_held++;
		if (e->fr_due_us == UINT64_MAX)
			e->fr_due_us = pkt->ts_us + ENG_FRAG_EXPIRE_EVERY_US;
		return;
	case FR_COMPLETE:
		frag_deliver(e, &dg);
		return;
	default: /* FR_PASS: as without reassembly */
		dc_count(&e->dc, p);
		if (p->reason == DC_OK)
			enqueue_cold(e, pick_worker(e, obs, p, pkt->ts_us), obs, p, pkt->data, pkt->ts_us, pkt->dir,
				pkt->stable, ROLE_PACKET);
		return;
	}
}

int eng_packet(struct engine *e, uint32_t obs, const struct cap_packet *pkt)
{
	struct dc_packet p;

	e->packets++;
	e->bytes += pkt->wirelen;
	if (++e->since_publish >= ENG_PUBLISH_EVERY)
		publish(e);
	/* UINT64_MAX unless datagrams are held: one compare for everything else */
	if (__builtin_expect(pkt->ts_us >= e->fr_due_us, 0))
		frag_expire(e, pkt->ts_us);
	dc_decode(&e->cfg.dc, pkt->linktype, pkt->data, pkt->caplen, pkt->wirelen, &p);
	if (__builtin_expect(p.frag != DC_FRAG_NONE, 0) && e->fr) {
		frag_packet(e, obs, pkt, &p);
		return failed(e);
	}
	dc_count(&e->dc, &p);
	if (__builtin_expect(p.reason != DC_OK, 0)) {
		/* Not IP (ARP, LLDP, ...) or malformed: counted above, and still a
		 * frame of its interface, so the packets sinks get it with flow id 0
		 * (a live stream shows it as tcpdump would; the packet store keeps
		 * flows' packets only).  The flow table never sees it. */
		if (e->npacket_sinks)
			enqueue_cold(e, pick_worker(e, obs, &p, pkt->ts_us), obs, &p, pkt->data, pkt->ts_us,
				     pkt->dir, pkt->stable, ROLE_PACKET);
		return failed(e);
	}
	enqueue(e, pick_worker(e, obs, &p, pkt->ts_us), obs, &p, pkt->data, pkt->ts_us, pkt->dir, pkt->stable,
		ROLE_PACKET);
	return failed(e);
}

int eng_tick(struct engine *e, uint64_t now_us)
{
	__atomic_store_n(&e->tick_us, now_us, __ATOMIC_RELAXED);
	/* live: datagrams held on a quiet interface time out on the wall clock */
	if (now_us >= e->fr_due_us)
		frag_expire(e, now_us);
	publish(e);
	/* A quiet interface must not leave packets waiting in a half-filled batch
	 * while the worker's timers run on: hand over what there is. */
	for (unsigned i = 0; i < e->ntables; i++) {
		struct eng_worker *w = &e->worker[i];
		if (w->slot[w->head % ENG_SLOTS]->n)
			send_batch(w, BATCH_DATA);
	}
	if (e->nworkers == 0 && e->worker[0].flows) {
		e->worker[0].last_expire_us = now_us;
		fl_table_expire(e->worker[0].flows, now_us);
	}
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		pthread_mutex_lock(&q->lock);
		q->tick_pending = 1;
		q->tick_us = now_us;
		pthread_cond_signal(&q->wake);
		pthread_mutex_unlock(&q->lock);
	}
	return failed(e);
}

/* Ends every flow: a FLUSH batch carries each worker's last packets; waits until
 * every packets sink has released every slot. */
static void end_flows(struct engine *e)
{
	for (unsigned i = 0; i < e->ntables; i++) {
		struct eng_worker *w = &e->worker[i];
		if (!w->slot[0])
			continue;
		send_batch(w, BATCH_FLUSH);
	}
	for (unsigned i = 0; i < e->ntables; i++) {
		struct eng_worker *w = &e->worker[i];
		if (!w->slot[0])
			continue;
		pthread_mutex_lock(&w->lock);
		while (!(w->flushed && w->head == w->tail))
			pthread_cond_wait(&w->nonfull, &w->lock);
		pthread_mutex_unlock(&w->lock);
	}
}

/* An empty FLUSH batch with running == 2 makes worker w return (join it next). */
static void ask_stop(struct eng_worker *w)
{
	__atomic_store_n(&w->running, 2, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&w->lock);
	wait_slot(w);
	pthread_mutex_unlock(&w->lock);
	w->slot[w->head % ENG_SLOTS]->n = 0;
	send_batch(w, BATCH_FLUSH);
}

/* After end_flows: every flow has ended and its record is queued, so the flow
 * tables are done.  Joins the worker threads and frees the tables (nDPI's module
 * teardown is ~5-15 ms each) while the sinks flush, instead of after them in
 * eng_close: a bulk load's flush is the flow database's index build, and this
 * work then runs on the other core.  eng_stats keeps reporting their last
 * counters. */
static void retire_tables(struct engine *e)
{
	for (unsigned i = 0; i < e->ntables; i++) {
		struct eng_worker *w = &e->worker[i];
		if (e->nworkers && w->running)
			ask_stop(w); /* every slot is free after end_flows */
		pthread_mutex_lock(&e->tables_lock);
		if (e->nworkers && w->running) {
			pthread_join(w->th, NULL); /* under the lock: eng_stats must not read a joined thread's clock */
			__atomic_store_n(&w->running, 0, __ATOMIC_RELEASE);
		}
		struct fl_table *t = w->flows;
		if (t)
			fl_table_stats(t, &w->fs_final);
		w->retired = 1;
		__atomic_store_n(&w->flows, NULL, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&e->tables_lock);
		fl_table_free(t);
	}
}

int eng_finish(struct engine *e)
{
	if (e->finished)
		return failed(e);
	e->finished = 1;
	/* Datagrams still incomplete: their fragments go on alone, before the flow
	 * tables end every flow. */
	if (e->fr) {
		e->fr_unfinished += fr_flush(e->fr);
		e->fr_due_us = UINT64_MAX;
	}
	end_flows(e);
	publish(e);
	/* Every record is queued now: each sink drains its queue and flushes, all
	 * of them at once (the flow database's index build and the packet index's
	 * run on two cores). */
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		pthread_mutex_lock(&q->lock);
		q->flush_req = 1;
		pthread_cond_signal(&q->wake);
		pthread_mutex_unlock(&q->lock);
	}
	retire_tables(e);
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		pthread_mutex_lock(&q->lock);
		while (!q->flush_done)
			pthread_cond_wait(&q->done, &q->lock);
		pthread_mutex_unlock(&q->lock);
	}
	return failed(e);
}

void eng_stats(struct engine *e, struct eng_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&e->pub_lock);
	out->dc = e->dc_pub;
	out->packets = e->packets_pub;
	out->frames_cut = e->frames_cut_pub;
	out->bytes = e->bytes_pub;
	out->fr = e->fr_pub;
	out->fr_unfinished = e->fr_unfinished_pub;
	out->fr_held = e->fr_held_pub;
	pthread_mutex_unlock(&e->pub_lock);
	/* Worker counters are read without stopping the workers: each field is an
	 * atomic load (fl_table_stats), so a figure may be a moment old, never torn.
	 * tables_lock: eng_finish may be freeing a table meanwhile. */
	pthread_mutex_lock(&e->tables_lock);
	for (unsigned i = 0; i < e->ntables; i++) {
		struct fl_stats fs;
		struct eng_worker *w = &e->worker[i];
		struct fl_table *t = __atomic_load_n(&w->flows, __ATOMIC_ACQUIRE);
		if (t) {
			fl_table_stats(t, &fs);
			out->tables++;
		} else if (w->retired) {
			fs = w->fs_final;
		} else {
			continue;
		}
		out->fl.packets += fs.packets;
		out->fl.skipped += fs.skipped;
		out->fl.flows_created += fs.flows_created;
		out->fl.flows_active += fs.flows_active;
		out->fl.records += fs.records;
		out->fl.evicted += fs.evicted;
		out->fl.dpi_giveup += fs.dpi_giveup;
		out->fl.dpi_alloc_fail += fs.dpi_alloc_fail;
		out->fl.dpi_packets += fs.dpi_packets;
	}
	out->external_records = __atomic_load_n(&e->ext_records, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < e->ntables; i++) {
		out->batches += __atomic_load_n(&e->worker[i].batches, __ATOMIC_RELAXED);
		out->caller_waits += __atomic_load_n(&e->worker[i].caller_waits, __ATOMIC_RELAXED);
		out->worker_waits += __atomic_load_n(&e->worker[i].worker_waits, __ATOMIC_RELAXED);
	}
	for (unsigned i = 0; i < e->nworkers; i++) {
		/* running changes 1 -> 2 without the lock (a stop asked), to 0 with it */
		if (__atomic_load_n(&e->worker[i].running, __ATOMIC_ACQUIRE))
			out->cpu_us_workers += thread_cpu_us(e->worker[i].th);
		else if (e->worker[i].retired)
			out->cpu_us_workers += e->worker[i].cpu_final_us;
	}
	pthread_mutex_unlock(&e->tables_lock);
	out->nsinks = e->nsinks;
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		struct eng_sink_stats *s = &out->sink[i];
		s->name = q->sink.ops->name;
		if (q->running)
			s->cpu_us = thread_cpu_us(q->th);
		pthread_mutex_lock(&q->lock);
		s->batches = q->batches;
		s->records = q->records;
		s->discarded = q->discarded;
		pthread_mutex_unlock(&q->lock);
	}
}

/* ---- open / close --------------------------------------------------------- */

int eng_open(const struct eng_config *cfg, const struct eng_sink *sinks, size_t nsinks,
	     struct engine **out, char *errbuf, size_t errlen)
{
	/* cache-line aligned members: plain calloc does not align to 64 */
	struct engine *e = aligned_alloc(_Alignof(struct engine), sizeof(*e));
	int rc = 0;

	*out = NULL;
	if (!e || nsinks > ENG_MAX_SINKS) {
		snprintf(errbuf, errlen, "%s", e ? "too many sinks" : "out of memory");
		for (size_t i = 0; i < nsinks; i++)
			if (sinks[i].ops->close)
				sinks[i].ops->close(sinks[i].ctx);
		free(e);
		return e ? -EINVAL : -ENOMEM;
	}
	memset(e, 0, sizeof(*e));
	e->cfg = *cfg;
	e->finished = 1; /* nothing to finish until the threads run */
	e->fr_due_us = UINT64_MAX;
	pthread_mutex_init(&e->obs_lock, NULL);
	pthread_mutex_init(&e->pub_lock, NULL);
	pthread_mutex_init(&e->tables_lock, NULL);
	e->nsinks = nsinks;
	for (size_t i = 0; i < nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		q->sink = sinks[i];
		q->e = e;
		q->idx = (unsigned)i;
		q->wants_packets = q->sink.ops->packets != NULL;
		q->wants_records = q->sink.ops->record != NULL;
		e->npacket_sinks += q->wants_packets;
		pthread_mutex_init(&q->lock, NULL);
		pthread_cond_init(&q->wake, NULL);
		pthread_cond_init(&q->space, NULL);
		pthread_cond_init(&q->done, NULL);
	}
	if (!cfg->no_reassembly) {
		struct fr_config fc = cfg->frag;
		fc.dc = cfg->dc;
		fc.release = frag_release;
		fc.release_ctx = e;
		if (!(e->fr = fr_new(&fc))) {
			rc = errno == EINVAL ? -EINVAL : -ENOMEM;
			snprintf(errbuf, errlen, "reassembly: %s", rc == -EINVAL ?
				 "a cap or the timeout is 0, or over 16777216 datagrams" : "out of memory");
			goto fail;
		}
	}
	e->nworkers = cfg->workers > ENG_MAX_WORKERS ? ENG_MAX_WORKERS : cfg->workers;
	e->ntables = e->nworkers ? e->nworkers : 1;
	if (e->ntables > 1 && !(e->routes = calloc(ENG_FRAG_ROUTES, sizeof(*e->routes)))) {
		rc = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	{
		uint32_t per = CAP_STABLE_WINDOW / (e->ntables * ENG_SLOTS);
		e->ref_budget = per < ENG_BATCH_BYTES ? per : ENG_BATCH_BYTES;
	}

	/* New flows are numbered above what any sink holds. */
	uint64_t id_base = 0;
	for (size_t i = 0; i < nsinks; i++) {
		uint64_t m = 0;
		if (!sinks[i].ops->max_flow_id)
			continue;
		if ((rc = sinks[i].ops->max_flow_id(sinks[i].ctx, &m)) < 0) {
			const char *msg = sinks[i].ops->errmsg ? sinks[i].ops->errmsg(sinks[i].ctx) : "";
			snprintf(errbuf, errlen, "%s: %s", sinks[i].ops->name, *msg ? msg : strerror(-rc));
			goto fail;
		}
		if (m > id_base)
			id_base = m;
	}
	if (id_base > (1ull << 62)) {
		/* ids are stored in SQLite's signed 64-bit INTEGER */
		rc = -EOVERFLOW;
		snprintf(errbuf, errlen, "flow ids exhausted (largest stored id %llu)",
			 (unsigned long long)id_base);
		goto fail;
	}

	for (size_t i = 0; i < nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		q->bq_cap = e->ntables * ENG_SLOTS;
		if ((q->wants_packets && !(q->bq = calloc(q->bq_cap, sizeof(*q->bq)))) ||
		    (q->wants_records && !(q->rq = malloc(ENG_RECORD_RING * sizeof(*q->rq))))) {
			rc = -ENOMEM;
			snprintf(errbuf, errlen, "out of memory");
			goto fail;
		}
	}
	e->id_base = id_base;
	for (unsigned i = 0; i < e->ntables; i++) {
		struct eng_worker *w = &e->worker[i];
		struct fl_config fc = cfg->fl;
		fc.shard = (uint8_t)i;
		fc.id_stride = e->ntables + (cfg->external_records ? 1u : 0u);
		fc.id_base = id_base;
		w->e = e;
		w->idx = i;
		w->cfg = fc;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->nonempty, NULL);
		pthread_cond_init(&w->nonfull, NULL);
		for (unsigned k = 0; k < ENG_SLOTS; k++) {
			w->slot[k] = malloc(sizeof(struct eng_batch));
			if (!w->slot[k]) {
				rc = -ENOMEM;
				snprintf(errbuf, errlen, "out of memory");
				goto fail;
			}
			w->slot[k]->n = w->slot[k]->used = w->slot[k]->ref_bytes = w->slot[k]->mixed = 0;
		}
		/* Worker threads build their own table (nDPI's set-up takes ~0.1 s
		 * per module) while the caller already reads packets; inline, here. */
		if (e->nworkers == 0 && !(w->flows = fl_table_new(&fc, on_record, w))) {
			rc = -(errno ? errno : ENOMEM);
			snprintf(errbuf, errlen, "flow table: %s", strerror(-rc));
			goto fail;
		}
	}
	for (size_t i = 0; i < nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		if ((rc = -pthread_create(&q->th, NULL, sink_main, q)) < 0) {
			snprintf(errbuf, errlen, "%s thread: %s", q->sink.ops->name, strerror(-rc));
			goto fail;
		}
		q->running = 1;
	}
	for (unsigned i = 0; i < e->nworkers; i++) {
		struct eng_worker *w = &e->worker[i];
		if ((rc = -pthread_create(&w->th, NULL, worker_main, w)) < 0) {
			snprintf(errbuf, errlen, "flow worker: %s", strerror(-rc));
			goto fail;
		}
		w->running = 1;
	}
	e->finished = 0;
	*out = e;
	return 0;
fail:
	eng_close(e);
	return rc;
}

void eng_close(struct engine *e)
{
	if (!e)
		return;
	if (!e->finished)
		eng_finish(e);
	/* empty after eng_finish (and before any packet): releases nothing */
	fr_free(e->fr);
	e->fr = NULL;
	for (unsigned i = 0; i < e->nworkers; i++) {
		struct eng_worker *w = &e->worker[i];
		if (!w->running)
			continue;
		ask_stop(w);
		pthread_join(w->th, NULL);
		w->running = 0;
		/* Only without eng_finish (which retired them while the sinks
		 * flushed): its records are copies in the sinks' queues, so the
		 * table goes now, while the sinks still drain theirs. */
		fl_table_free(w->flows);
		w->flows = NULL;
	}
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		if (q->running) {
			pthread_mutex_lock(&q->lock);
			q->stop = 1;
			pthread_cond_signal(&q->wake);
			pthread_mutex_unlock(&q->lock);
			pthread_join(q->th, NULL);
			q->running = 0;
		}
	}
	for (size_t i = 0; i < e->nsinks; i++) {
		struct eng_sinkq *q = &e->sq[i];
		if (q->sink.ops->close)
			q->sink.ops->close(q->sink.ctx);
		free(q->bq);
		free(q->rq);
	}
	for (unsigned i = 0; i < ENG_MAX_WORKERS; i++) {
		struct eng_worker *w = &e->worker[i];
		for (unsigned k = 0; k < ENG_SLOTS; k++)
			free(w->slot[k]);
		if (w->flows)
			fl_table_free(w->flows);
	}
	for (uint32_t i = 1; i <= e->nobs; i++)
		free(e->obs[i]);
	for (size_t i = 0; i < e->nretired; i++)
		free(e->retired[i]);
	free(e->retired);
	free(e->obs_log);
	free(e->routes);
	free(e);
}
