/* The packet path shared by `podcap read` and `podcap run`. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline.h"
#include "segments.h"

/* Flow records travel from the packet thread to the store thread through this
 * bounded ring.  When it is full the packet thread waits: records are never
 * dropped, and a slow disk shows up as back-pressure, not loss. */
#define PL_RING 4096

struct pipeline {
	struct pl_config cfg;
	struct fl_table *flows;
	struct st_store *store;
	struct seg_store *seg;  /* NULL when packets are not kept */
	uint64_t id_base;       /* flow ids of this run start above the database's */
	struct pl_stats st;
	uint64_t last_expire_us;
	int store_failed; /* first fatal store error, reported once */
	char err[512];

	/* store thread: owns pl->store while running; everyone else takes store_lock */
	pthread_t writer;
	int writer_running;
	pthread_mutex_t store_lock;
	pthread_mutex_t q_lock;
	pthread_cond_t q_nonempty, q_nonfull, q_drained;
	struct fl_record *ring;
	unsigned q_head, q_tail; /* head: next to write, tail: next to read */
	int q_busy;              /* writer is storing records it took off the ring */
	int q_stop;
	int writer_failed;       /* first error of the store thread (under q_lock) */
};

void pl_config_default(struct pl_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	dc_config_default(&cfg->dc);
	fl_config_default(&cfg->fl);
	st_config_default(&cfg->st);
}

/* Stores one record; called with store_lock held. */
static int store_record(struct pipeline *pl, const struct fl_record *rec)
{
	int rc = st_put_flow(pl->store, rec);
	if (rc == 0 && pl->seg)
		rc = st_set_packets_state(pl->store, rec->id, "stored");
	return rc;
}

static void *writer_main(void *arg)
{
	struct pipeline *pl = arg;
	struct fl_record *batch = malloc(64 * sizeof(*batch));
	pthread_setname_np(pthread_self(), "podcap-store");
	if (!batch) {
		pthread_mutex_lock(&pl->q_lock);
		pl->writer_failed = -ENOMEM;
		snprintf(pl->err, sizeof(pl->err), "flow store thread: out of memory");
		pthread_cond_broadcast(&pl->q_nonfull);
		pthread_cond_broadcast(&pl->q_drained);
		pthread_mutex_unlock(&pl->q_lock);
		return NULL;
	}

	int dirty = 0; /* records stored since the last commit */

	pthread_mutex_lock(&pl->q_lock);
	for (;;) {
		while (pl->q_head == pl->q_tail && !pl->q_stop) {
			/* A live agent's records become visible within about a second:
			 * commit once the queue has been idle that long. */
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			if (pthread_cond_timedwait(&pl->q_nonempty, &pl->q_lock, &ts) == ETIMEDOUT && dirty) {
				pthread_mutex_unlock(&pl->q_lock);
				pthread_mutex_lock(&pl->store_lock);
				int rc = st_commit(pl->store);
				if (rc < 0)
					snprintf(pl->err, sizeof(pl->err), "flow store commit: %s", st_errmsg(pl->store));
				pthread_mutex_unlock(&pl->store_lock);
				pthread_mutex_lock(&pl->q_lock);
				if (rc < 0 && !pl->writer_failed)
					pl->writer_failed = rc;
				dirty = 0;
			}
		}
		if (pl->q_head == pl->q_tail && pl->q_stop)
			break;
		/* Take up to 64 records at once so the lock is not taken per record. */
		unsigned n = 0;
		while (n < 64 && pl->q_tail != pl->q_head) {
			batch[n++] = pl->ring[pl->q_tail % PL_RING];
			pl->q_tail++;
		}
		pl->q_busy = 1;
		pthread_cond_signal(&pl->q_nonfull);
		pthread_mutex_unlock(&pl->q_lock);

		int rc = 0;
		pthread_mutex_lock(&pl->store_lock);
		for (unsigned i = 0; i < n && rc == 0; i++)
			rc = store_record(pl, &batch[i]);
		dirty = 1;
		if (rc < 0)
			snprintf(pl->err, sizeof(pl->err), "flow store: %s", st_errmsg(pl->store));
		pthread_mutex_unlock(&pl->store_lock);

		pthread_mutex_lock(&pl->q_lock);
		pl->q_busy = 0;
		if (rc < 0 && !pl->writer_failed)
			pl->writer_failed = rc;
		if (rc < 0)
			pl->st.store_errors += n;
		if (pl->q_head == pl->q_tail)
			pthread_cond_broadcast(&pl->q_drained);
	}
	pthread_cond_broadcast(&pl->q_drained);
	pthread_mutex_unlock(&pl->q_lock);
	free(batch);
	return NULL;
}

/* Flow table callback (packet thread): hand the record to the store thread. */
static int on_record(void *arg, const struct fl_record *in)
{
	struct pipeline *pl = arg;
	int rc;

	pthread_mutex_lock(&pl->q_lock);
	while (pl->q_head - pl->q_tail >= PL_RING && !pl->writer_failed)
		pthread_cond_wait(&pl->q_nonfull, &pl->q_lock);
	rc = pl->writer_failed;
	if (!rc) {
		struct fl_record *r = &pl->ring[pl->q_head % PL_RING];
		*r = *in;
		r->id += pl->id_base;
		pl->q_head++;
		pthread_cond_signal(&pl->q_nonempty);
	}
	pthread_mutex_unlock(&pl->q_lock);
	if (rc && !pl->store_failed)
		pl->store_failed = rc;
	return rc;
}

/* Waits until the store thread has stored everything queued so far. */
static int drain(struct pipeline *pl)
{
	pthread_mutex_lock(&pl->q_lock);
	while ((pl->q_head != pl->q_tail || pl->q_busy) && !pl->writer_failed)
		pthread_cond_wait(&pl->q_drained, &pl->q_lock);
	int rc = pl->writer_failed;
	pthread_mutex_unlock(&pl->q_lock);
	if (rc && !pl->store_failed)
		pl->store_failed = rc;
	return rc;
}

int pl_open(const struct pl_config *cfg, struct pipeline **out, char *errbuf, size_t errlen)
{
	struct pipeline *pl = calloc(1, sizeof(*pl));
	int rc;

	*out = NULL;
	if (!pl) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	pl->cfg = *cfg;
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
		rc = seg_open(cfg->store_dir, &sc, &pl->seg, errbuf, errlen);
		if (rc < 0)
			goto fail;
		/* export finds the packets of this database's flows through this key */
		char abs[4096];
		const char *dir = realpath(cfg->store_dir, abs) ? abs : cfg->store_dir;
		if ((rc = st_meta_set(pl->store, "packet_store_dir", dir)) < 0) {
			snprintf(errbuf, errlen, "flow store: %s", st_errmsg(pl->store));
			goto fail;
		}
	}
	pl->flows = fl_table_new(&cfg->fl, on_record, pl);
	if (!pl->flows) {
		rc = -errno;
		snprintf(errbuf, errlen, "flow table: %s", strerror(errno));
		goto fail;
	}
	pl->ring = malloc(PL_RING * sizeof(*pl->ring));
	if (!pl->ring) {
		rc = -ENOMEM;
		snprintf(errbuf, errlen, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&pl->store_lock, NULL);
	pthread_mutex_init(&pl->q_lock, NULL);
	pthread_cond_init(&pl->q_nonempty, NULL);
	pthread_cond_init(&pl->q_nonfull, NULL);
	pthread_cond_init(&pl->q_drained, NULL);
	if ((rc = -pthread_create(&pl->writer, NULL, writer_main, pl)) < 0) {
		snprintf(errbuf, errlen, "store thread: %s", strerror(-rc));
		goto fail;
	}
	pl->writer_running = 1;
	*out = pl;
	return 0;
fail:
	free(pl->ring);
	if (pl->flows)
		fl_table_free(pl->flows);
	if (pl->seg)
		seg_close(pl->seg);
	if (pl->store)
		st_close(pl->store);
	free(pl);
	return rc;
}

int pl_obs_point(struct pipeline *pl, const char *iface, const char *direction, const char *pod,
		 int linktype, uint32_t *obs)
{
	pthread_mutex_lock(&pl->store_lock);
	int rc = st_obs_point(pl->store, iface, direction, pod, linktype, obs);
	if (rc < 0)
		snprintf(pl->err, sizeof(pl->err), "observation point %s: %s", iface, st_errmsg(pl->store));
	pthread_mutex_unlock(&pl->store_lock);
	if (rc < 0)
		return rc;
	if (pl->seg && (rc = seg_add_interface(pl->seg, *obs, linktype, iface, pod)) < 0)
		snprintf(pl->err, sizeof(pl->err), "packet store: observation point %s: %s", iface,
			 seg_errmsg(pl->seg));
	return rc;
}

int pl_packet(struct pipeline *pl, uint32_t obs, const struct cap_packet *pkt)
{
	struct dc_packet p;

	pl->st.packets++;
	pl->st.bytes += pkt->wirelen;
	dc_decode(&pl->cfg.dc, pkt->linktype, pkt->data, pkt->caplen, pkt->wirelen, &p);
	dc_count(&pl->st.dc, &p);
	if (p.reason == DC_OK) {
		uint64_t flow_id;
		uint32_t pkt_no;
		if (fl_table_packet(pl->flows, obs, &p, pkt->data, pkt->ts_us, &flow_id, &pkt_no) == 0 &&
		    pl->seg) {
			int rc = seg_put(pl->seg, obs, flow_id + pl->id_base, pkt_no, pkt->ts_us, pkt->data,
					 pkt->caplen, pkt->wirelen);
			if (rc > 0)
				pl->st.seg_packets++;
			else if (rc < 0)
				pl->st.seg_errors++; /* disk full or I/O error: flows go on, counted */
		}
	}
	if (pkt->ts_us >= pl->last_expire_us + 1000000u)
		return pl_tick(pl, pkt->ts_us);
	return pl->store_failed;
}

int pl_tick(struct pipeline *pl, uint64_t now_us)
{
	pl->last_expire_us = now_us;
	fl_table_expire(pl->flows, now_us);
	if (pl->seg)
		seg_tick(pl->seg, now_us);
	return pl->store_failed;
}

int pl_finish(struct pipeline *pl)
{
	fl_table_flush(pl->flows);
	if (pl->seg && seg_flush(pl->seg) < 0)
		pl->st.seg_errors++;
	if (drain(pl) < 0)
		return pl->store_failed;
	pthread_mutex_lock(&pl->store_lock);
	int rc = st_commit(pl->store);
	if (rc < 0) {
		snprintf(pl->err, sizeof(pl->err), "flow store commit: %s", st_errmsg(pl->store));
		pl->store_failed = rc;
	}
	pthread_mutex_unlock(&pl->store_lock);
	return rc;
}

void pl_stats(const struct pipeline *pl, struct pl_stats *out)
{
	pthread_mutex_lock((pthread_mutex_t *)&pl->q_lock);
	*out = pl->st;
	pthread_mutex_unlock((pthread_mutex_t *)&pl->q_lock);
	fl_table_stats(pl->flows, &out->fl);
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
	fprintf(f, "evicted flows %llu, dpi gave up %llu, store errors %llu\n",
		(unsigned long long)s.fl.evicted, (unsigned long long)s.fl.dpi_giveup,
		(unsigned long long)s.store_errors);
	if (pl->seg) {
		struct seg_stats ss;
		seg_stats(pl->seg, &ss);
		fprintf(f, "packet store: %llu packets stored, %llu skipped by per-flow limit, %llu refused "
			"(disk), %llu segments deleted by the cap, %llu bytes on disk\n",
			(unsigned long long)ss.packets, (unsigned long long)ss.skipped_limit,
			(unsigned long long)ss.write_errors, (unsigned long long)ss.segments_deleted,
			(unsigned long long)ss.disk_bytes);
	}
}

const char *pl_error(const struct pipeline *pl) { return pl->err; }

void pl_close(struct pipeline *pl)
{
	if (!pl)
		return;
	if (pl->writer_running) {
		pthread_mutex_lock(&pl->q_lock);
		pl->q_stop = 1;
		pthread_cond_signal(&pl->q_nonempty);
		pthread_mutex_unlock(&pl->q_lock);
		pthread_join(pl->writer, NULL);
	}
	free(pl->ring);
	fl_table_free(pl->flows);
	if (pl->seg)
		seg_close(pl->seg);
	st_close(pl->store);
	free(pl);
}
