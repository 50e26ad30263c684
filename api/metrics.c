/* The metrics sink: counts final flow records for /metrics (flows, packets and
 * bytes by application, TCP retransmissions, the handshake-RTT histogram).
 *
 * Only final records count: a periodic record carries the flow's totals so far,
 * and turning those into increments would need the previous totals of every
 * active flow.  So a flow shows up in these counters when it ends (as in NetFlow
 * accounting); the per-interface counters of /metrics are live.
 *
 * The record callback runs on the sink's thread; /metrics reads under the same
 * mutex from the server's threads.  Records arrive at most a few ten thousand per
 * second, so one uncontended lock per record costs nothing measurable. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "api_internal.h"

const double api_rtt_bounds_s[API_RTT_BUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
	0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
};

void api_metrics_init(struct api_metrics *m)
{
	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->lock, NULL);
}

void api_metrics_destroy(struct api_metrics *m)
{
	pthread_mutex_destroy(&m->lock);
}

static struct api_app_count *app_slot(struct api_metrics *m, const char *name)
{
	/* A linear scan: nDPI names a few hundred protocols, and the table is cut
	 * at API_MAX_APPS (the rest counts as apps_overflow, shown as "other"). */
	for (size_t i = 0; i < m->napps; i++)
		if (!strcmp(m->apps[i].name, name))
			return &m->apps[i];
	if (m->napps == API_MAX_APPS)
		return NULL;
	struct api_app_count *a = &m->apps[m->napps++];
	snprintf(a->name, sizeof(a->name), "%s", name);
	return a;
}

static int metrics_record(void *ctx, const struct fl_record *rec)
{
	struct api_metrics *m = ctx;
	if (rec->end == FL_END_ACTIVE)
		return 0;
	uint64_t pkts = rec->pkts[0] + rec->pkts[1], bytes = rec->bytes[0] + rec->bytes[1];
	pthread_mutex_lock(&m->lock);
	m->records_final++;
	struct api_app_count *a = app_slot(m, rec->proto[0] ? rec->proto : "Unknown");
	if (a) {
		a->flows++;
		a->packets += pkts;
		a->bytes += bytes;
	} else {
		m->apps_overflow++;
	}
	if (rec->key.proto == 6) {
		m->tcp_flows++;
		m->tcp_packets += pkts;
		m->tcp_retrans += (uint64_t)rec->retrans[0] + rec->retrans[1];
		if (rec->rtt_us >= 0) {
			double s = (double)rec->rtt_us / 1e6;
			m->rtt_count++;
			m->rtt_sum_s += s;
			for (int i = 0; i < API_RTT_BUCKETS; i++)
				if (s <= api_rtt_bounds_s[i]) {
					m->rtt_buckets[i]++;
					break;
				}
		}
	}
	pthread_mutex_unlock(&m->lock);
	return 0;
}

static void metrics_close(void *ctx)
{
	(void)ctx; /* the API owns the memory */
}

const struct eng_sink_ops api_metrics_ops = {
	.name = "metrics",
	.record = metrics_record,
	.close = metrics_close,
};
