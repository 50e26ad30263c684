/* pktstore sink — an engine's packets into a packet store (see pktstore.h).
 *
 * Runs on the engine's thread for this sink, so the pks handle is used by one
 * thread.  Packets that belong to no flow (not IP, malformed) are not stored:
 * they could never be exported by flow.  A packet the disk refuses is counted by
 * the store, which also remembers its flow as partial; flow records go on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "pcapng.h"
#include "pktstore.h"

struct pks_sink {
	struct pks *store;
	pthread_mutex_t lock; /* guards pub */
	struct pks_stats pub;
};

static void publish(struct pks_sink *s)
{
	struct pks_stats st;
	pks_stats(s->store, &st);
	pthread_mutex_lock(&s->lock);
	s->pub = st;
	pthread_mutex_unlock(&s->lock);
}

static int sink_max_flow_id(void *ctx, uint64_t *out)
{
	struct pks_sink *s = ctx;
	return pks_max_flow_id(s->store, out);
}

static int sink_obs_point(void *ctx, const struct eng_obs *o)
{
	struct pks_sink *s = ctx;
	/* The store refusing an interface (disk full, ...) costs that interface's
	 * packets, not the run: pks_put() then refuses and counts each of them. */
	pks_add_interface(s->store, o->id, o->linktype, o->iface, o->pod);
	return 0;
}

static int sink_packets(void *ctx, const struct eng_packet *pkts, size_t n)
{
	struct pks_sink *s = ctx;
	for (size_t i = 0; i < n; i++) {
		const struct eng_packet *p = &pkts[i];
		if (!p->flow_id)
			continue;
		uint32_t dir = p->dir == CAP_DIR_IN ? PN_EPB_INBOUND : p->dir == CAP_DIR_OUT ? PN_EPB_OUTBOUND : 0;
		pks_put(s->store, p->obs, p->flow_id, p->pkt_no, p->ts_us, p->frame, p->dc.caplen,
			p->dc.wirelen, dir);
	}
	publish(s);
	return 0;
}

static int sink_tick(void *ctx, uint64_t now_us)
{
	struct pks_sink *s = ctx;
	pks_tick(s->store, now_us); /* failures are counted by the store */
	publish(s);
	return 0;
}

static int sink_flush(void *ctx)
{
	struct pks_sink *s = ctx;
	/* a failed flush leaves written packets unindexed: counted like any write
	 * error; a failed index build loses nothing but is an error of the run */
	int rc = 0;
	if (pks_flush(s->store) == 0 && (rc = pks_build_index(s->store)) < 0)
		rc = -EIO;
	publish(s);
	return rc;
}

static void sink_close(void *ctx)
{
	struct pks_sink *s = ctx;
	if (!s)
		return;
	pks_close(s->store);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const char *sink_errmsg(void *ctx)
{
	struct pks_sink *s = ctx;
	return pks_errmsg(s->store);
}

static const struct eng_sink_ops pks_sink_ops = {
	.name = "pktstore",
	.max_flow_id = sink_max_flow_id,
	.obs_point = sink_obs_point,
	.packets = sink_packets,
	.tick = sink_tick,
	.flush = sink_flush,
	.close = sink_close,
	.errmsg = sink_errmsg,
};

int pks_sink_open(const char *dir, const struct pks_config *cfg, struct pks_sink **out,
		  struct eng_sink *as_sink, char *errbuf, size_t errlen)
{
	struct pks_sink *s = calloc(1, sizeof(*s));
	*out = NULL;
	if (!s) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&s->lock, NULL);
	int rc = pks_open(dir, cfg, &s->store, errbuf, errlen);
	if (rc < 0) {
		pthread_mutex_destroy(&s->lock);
		free(s);
		return rc;
	}
	publish(s);
	*out = s;
	*as_sink = (struct eng_sink){.ops = &pks_sink_ops, .ctx = s};
	return 0;
}

void pks_sink_stats(struct pks_sink *s, struct pks_stats *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->pub;
	pthread_mutex_unlock(&s->lock);
}
