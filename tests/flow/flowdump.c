/* flowdump — the flow layer on a pcap file, for tests and measurements.
 *
 *   flowdump [-q] [-n] [-j N] FILE
 *
 * Reads FILE with libpcap, decodes each frame (dc_decode), feeds the flow table
 * with packet time (fl_table_expire() on every packet, as the read pipeline does)
 * and prints one tab-separated line per final record:
 *
 *   l4  src  sport  dst  dport  vlan  proto  host  pkts_c2s  pkts_s2c  bytes_c2s
 *   bytes_s2c  tunnel  end  community_id  dpi_done  category  url  http_status
 *   dns_rcode  ja3c  rtt_us  retrans_c2s  retrans_s2c
 *
 * then a summary line starting with '#'.  -q prints only the summary (with the
 * time spent, for throughput measurements); -n turns nDPI off.  -j N runs N flow
 * workers, each with its own table, fed by the reading thread through
 * single-producer rings and sharded by fl_shard_hash(): the layout the design asks of
 * the agent, shown here with numbers.
 */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <errno.h>
#include <pcap/pcap.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "flow.h"

static int quiet;
static atomic_ullong final_records;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

/* Names as ndpiReader prints them (ipProto2Name), so outputs compare directly. */
static const char *l4name(uint8_t p)
{
	switch (p) {
	case 6: return "TCP";
	case 17: return "UDP";
	case 1: return "ICMP";
	case 58: return "ICMPV6";
	case 112: return "VRRP";
	case 2: return "IGMP";
	default: return NULL;
	}
}

static const char *endname(int e)
{
	static const char *n[] = { "active", "idle", "tcp", "evicted", "flush" };
	return e >= 0 && e <= FL_END_FLUSH ? n[e] : "?";
}

static void addr(const struct dc_tuple *t, const uint8_t *a, char *buf, size_t len)
{
	inet_ntop(t->family == 6 ? AF_INET6 : AF_INET, a, buf, (socklen_t)len);
}

static int print_record(void *arg, const struct fl_record *r)
{
	(void)arg;
	if (r->end == FL_END_ACTIVE)
		return 0;
	final_records++;
	if (quiet)
		return 0;
	char s[64], d[64], pn[8];
	addr(&r->key, r->key.src, s, sizeof(s));
	addr(&r->key, r->key.dst, d, sizeof(d));
	const char *l4 = l4name(r->key.proto);
	if (!l4) {
		snprintf(pn, sizeof(pn), "%u", r->key.proto);
		l4 = pn;
	}
	/* ICMP "ports" are type/code; print 0 like ndpiReader, which keys ICMP without. */
	int icmp = r->key.proto == 1 || r->key.proto == 58;
	pthread_mutex_lock(&out_lock);
	printf("%s\t%s\t%u\t%s\t%u\t%u\t%s\t%s\t%llu\t%llu\t%llu\t%llu\t%s\t%s\t%s\t%u\t%s"
	       "\t%s\t%u\t%u\t%s\t%lld\t%u\t%u\n", l4, s,
	       icmp ? 0 : r->key.sport, d, icmp ? 0 : r->key.dport, r->vlan, r->proto,
	       r->host[0] ? r->host : "-", (unsigned long long)r->pkts[0], (unsigned long long)r->pkts[1],
	       (unsigned long long)r->bytes[0], (unsigned long long)r->bytes[1], dc_tunnel_name(r->tunnel),
	       endname(r->end), r->community_id, r->dpi_done, r->category[0] ? r->category : "-",
	       r->url[0] ? r->url : "-", r->http_status, r->dns_rcode, r->ja3c[0] ? r->ja3c : "-",
	       (long long)r->rtt_us, r->retrans[0], r->retrans[1]);
	pthread_mutex_unlock(&out_lock);
	return 0;
}

/* ---- workers: one table each, fed through a single-producer ring ---- */

#define RING 4096u          /* slots per worker, power of two */
#define SLOT_BYTES 2048u    /* frames up to this size live in the slot */

struct slot {
	struct dc_packet p;
	uint64_t ts;
	uint8_t *big;       /* malloc'ed copy of a larger frame, or NULL */
	uint8_t data[SLOT_BYTES];
};

struct worker {
	pthread_t th;
	struct fl_table *t;
	struct slot *ring;
	_Atomic uint32_t head, tail; /* head: published to the worker, tail: next to read */
	uint32_t pending;            /* reader's private head, published every 64 packets */
	atomic_int done;
	struct fl_stats st;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (;;) {
		uint32_t tail = atomic_load_explicit(&w->tail, memory_order_relaxed);
		uint32_t head = atomic_load_explicit(&w->head, memory_order_acquire);
		if (tail == head) {
			if (atomic_load_explicit(&w->done, memory_order_acquire) &&
			    tail == atomic_load_explicit(&w->head, memory_order_acquire))
				break;
			/* Nothing queued: back off instead of spinning on a shared core. */
			struct timespec nap = { 0, 20000 };
			nanosleep(&nap, NULL);
			continue;
		}
		for (; tail != head; tail++) {
			struct slot *s = &w->ring[tail & (RING - 1)];
			const uint8_t *frame = s->big ? s->big : s->data;
			fl_table_packet(w->t, 0, &s->p, frame, s->ts, NULL, NULL);
			fl_table_expire(w->t, s->ts);
			free(s->big);
			s->big = NULL;
		}
		atomic_store_explicit(&w->tail, tail, memory_order_release);
	}
	fl_table_flush(w->t);
	fl_table_stats(w->t, &w->st);
	return NULL;
}

static int dispatch(struct worker *w, const struct dc_packet *p, const uint8_t *data, uint64_t ts)
{
	uint32_t head = w->pending;
	if (head - atomic_load_explicit(&w->tail, memory_order_acquire) >= RING) {
		atomic_store_explicit(&w->head, head, memory_order_release);
		while (head - atomic_load_explicit(&w->tail, memory_order_acquire) >= RING) {
			struct timespec nap = { 0, 20000 };
			nanosleep(&nap, NULL);
		}
	}
	struct slot *s = &w->ring[head & (RING - 1)];
	s->p = *p;
	s->ts = ts;
	s->big = NULL;
	if (p->caplen <= SLOT_BYTES) {
		memcpy(s->data, data, p->caplen);
	} else {
		s->big = malloc(p->caplen);
		if (!s->big)
			return -ENOMEM;
		memcpy(s->big, data, p->caplen);
	}
	w->pending = head + 1;
	/* Publish in batches: one release store per 64 packets keeps the cache
	 * line holding head from bouncing between the cores on every packet. */
	if ((w->pending & 63) == 0)
		atomic_store_explicit(&w->head, w->pending, memory_order_release);
	return 0;
}

int main(int argc, char **argv)
{
	int opt, dpi = 1, rc = 1, nworkers = 0;
	while ((opt = getopt(argc, argv, "qnj:")) != -1) {
		switch (opt) {
		case 'q': quiet = 1; break;
		case 'n': dpi = 0; break;
		case 'j': nworkers = atoi(optarg); break;
		default:
			fprintf(stderr, "usage: flowdump [-q] [-n] [-j N] FILE\n");
			return 2;
		}
	}
	if (optind != argc - 1 || nworkers < 0 || nworkers > 16) {
		fprintf(stderr, "usage: flowdump [-q] [-n] [-j N] FILE\n");
		return 2;
	}

	char errbuf[PCAP_ERRBUF_SIZE];
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	pcap_t *pc = pcap_open_offline_with_tstamp_precision(argv[optind], PCAP_TSTAMP_PRECISION_MICRO, errbuf);
	if (!pc) {
		fprintf(stderr, "flowdump: %s\n", errbuf);
		return 1;
	}
	int linktype = pcap_datalink(pc);

	struct dc_config dcfg;
	dc_config_default(&dcfg);
	struct fl_config fcfg;
	fl_config_default(&fcfg);
	fcfg.dpi = (uint8_t)dpi;
	struct fl_table *t = NULL;
	struct worker *w = NULL;
	int started = 0;
	if (nworkers == 0) {
		t = fl_table_new(&fcfg, print_record, NULL);
		if (!t) {
			fprintf(stderr, "flowdump: fl_table_new: %s\n", strerror(errno));
			goto out;
		}
	} else {
		w = calloc((size_t)nworkers, sizeof(*w));
		if (!w)
			goto out;
		for (int i = 0; i < nworkers; i++) {
			fcfg.shard = (uint8_t)i;
			w[i].t = fl_table_new(&fcfg, print_record, NULL);
			w[i].ring = calloc(RING, sizeof(struct slot));
			if (!w[i].t || !w[i].ring) {
				fprintf(stderr, "flowdump: worker %d: %s\n", i, strerror(errno ? errno : ENOMEM));
				goto out;
			}
			if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0)
				goto out;
			started++;
		}
	}

	struct dc_counters dcnt;
	memset(&dcnt, 0, sizeof(dcnt));
	struct pcap_pkthdr *h;
	const u_char *data;
	uint64_t tunnelled = 0, skipped = 0;
	int r;
	while ((r = pcap_next_ex(pc, &h, &data)) == 1) {
		struct dc_packet p;
		dc_decode(&dcfg, linktype, data, h->caplen, h->len, &p);
		dc_count(&dcnt, &p);
		if (p.tunnel != DC_TUN_NONE)
			tunnelled++;
		uint64_t ts = (uint64_t)h->ts.tv_sec * 1000000u + (uint64_t)h->ts.tv_usec;
		if (!w) {
			fl_table_packet(t, 0, &p, data, ts, NULL, NULL);
			fl_table_expire(t, ts);
		} else if (p.reason != DC_OK) {
			skipped++;
		} else if (dispatch(&w[fl_shard_hash(0, &p) % (uint32_t)nworkers], &p, data, ts) < 0) {
			skipped++;
		}
	}
	if (r == -1)
		fprintf(stderr, "flowdump: %s\n", pcap_geterr(pc));

	struct fl_stats st;
	if (!w) {
		fl_table_flush(t);
		fl_table_stats(t, &st);
	} else {
		memset(&st, 0, sizeof(st));
		for (int i = 0; i < started; i++) {
			atomic_store_explicit(&w[i].head, w[i].pending, memory_order_release);
			atomic_store_explicit(&w[i].done, 1, memory_order_release);
			pthread_join(w[i].th, NULL);
			st.packets += w[i].st.packets;
			st.skipped += w[i].st.skipped;
			st.records += w[i].st.records;
			st.evicted += w[i].st.evicted;
			st.dpi_giveup += w[i].st.dpi_giveup;
			st.dpi_packets += w[i].st.dpi_packets;
		}
		started = 0;
		st.skipped += skipped;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);

	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("# linktype %d packets %llu accounted %llu skipped %llu tunnelled %llu flows %llu "
	       "records %llu evicted %llu dpi_giveup %llu dpi_packets %llu seconds %.3f pps %.0f\n",
	       linktype, (unsigned long long)dcnt.packets, (unsigned long long)st.packets,
	       (unsigned long long)st.skipped, (unsigned long long)tunnelled,
	       (unsigned long long)atomic_load(&final_records), (unsigned long long)st.records,
	       (unsigned long long)st.evicted, (unsigned long long)st.dpi_giveup,
	       (unsigned long long)st.dpi_packets, secs,
	       secs > 0 ? (double)dcnt.packets / secs : 0.0);
	rc = 0;
out:
	if (w) {
		for (int i = 0; i < started; i++) {
			atomic_store_explicit(&w[i].done, 1, memory_order_release);
			pthread_join(w[i].th, NULL);
		}
		for (int i = 0; i < nworkers; i++) {
			fl_table_free(w[i].t);
			free(w[i].ring);
		}
		free(w);
	}
	fl_table_free(t);
	pcap_close(pc);
	return rc;
}
