/* IP reassembly through the engine, with 0, 1 and 2 flow workers.
 *   test_engine_frag order|trouble|many|off
 * order    UDP flows whose datagrams come in order, reversed and shuffled, between
 *          unfragmented packets: each datagram is ONE packet of its flow with all
 *          its bytes; the packets sink gets every original fragment once (never
 *          the rebuilt frame), with the flow id and packet number of its datagram.
 * trouble  duplicate, overlap, missing last fragment (timed out on packet time,
 *          and incomplete at the end), a later fragment whose first never comes:
 *          counted, and every frame still reaches the packets sink in a flow.
 * many     10,000 concurrent incomplete datagrams: frag's memory stays under its
 *          cap, evictions are counted, every fragment goes on.
 * off      eng_config.no_reassembly: fragments go to the flows as they are (32
 *          flows between two hosts: spread over the workers, whole each).
 * Frames are built here: Ethernet + IPv4 + (fragments of) UDP. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "engine.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

#define T0 1700000000000000ull
#define MAXF 4096
/* where a host's flow of (addresses, UDP, ports 0) is kept: later fragments that
 * the flow table could not join to their first fragment's flow */
#define PORTS0(host) (MAXF - 1 - (host))

/* ---- frames ---- */

/* One IPv4 frame: Ethernet, a 20-byte header with id, offset (bytes, multiple of
 * 8) and MF, then len bytes of the datagram's payload starting at off. */
static uint32_t ip4_frame(uint8_t *b, int host, uint16_t id, uint32_t off, int more,
			  const uint8_t *dgram, uint32_t len)
{
	memset(b, 0, 34);
	b[12] = 0x08;
	uint8_t *ip = b + 14;
	uint32_t tl = 20 + len;
	ip[0] = 0x45;
	ip[2] = (uint8_t)(tl >> 8);
	ip[3] = (uint8_t)tl;
	ip[4] = (uint8_t)(id >> 8);
	ip[5] = (uint8_t)id;
	uint32_t fw = off / 8 | (more ? 0x2000 : 0);
	ip[6] = (uint8_t)(fw >> 8);
	ip[7] = (uint8_t)fw;
	ip[8] = 64;
	ip[9] = 17;
	ip[12] = 10; ip[13] = 0; ip[14] = (uint8_t)(host >> 8); ip[15] = (uint8_t)host;
	ip[16] = 10; ip[17] = 9; ip[18] = 0; ip[19] = 1;
	memcpy(ip + 20, dgram + off, len);
	return 34 + len;
}

/* A UDP datagram (header + len payload bytes) of flow f into d; returns its size. */
static uint32_t udp_dgram(uint8_t *d, int f, uint32_t len, uint8_t fill)
{
	uint16_t sp = (uint16_t)(20000 + f), dp = 9999;
	uint32_t ul = 8 + len;
	d[0] = (uint8_t)(sp >> 8); d[1] = (uint8_t)sp;
	d[2] = (uint8_t)(dp >> 8); d[3] = (uint8_t)dp;
	d[4] = (uint8_t)(ul >> 8); d[5] = (uint8_t)ul;
	d[6] = d[7] = 0;
	memset(d + 8, fill, len);
	return ul;
}

/* ---- the checking sink ---- */

struct seen {           /* one frame as the packets sink got it */
	uint16_t id;
	uint16_t off;       /* bytes */
	uint8_t more, frag;
	uint32_t caplen;
	uint64_t flow_id;
	uint32_t pkt_no;
};

struct fsink {
	pthread_mutex_t lock;
	struct seen *pk;
	size_t npk, cap;
	uint64_t rec_id[MAXF], rec_pkts[MAXF], rec_bytes[MAXF]; /* by source port - 20000 */
	uint32_t rec_frags[MAXF];
	uint64_t finals;
};

static int fs_packets(void *ctx, const struct eng_packet *p, size_t n)
{
	struct fsink *s = ctx;
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n; i++) {
		if (s->npk == s->cap) {
			s->cap = s->cap ? 2 * s->cap : 1024;
			s->pk = realloc(s->pk, s->cap * sizeof(*s->pk));
			if (!s->pk)
				abort();
		}
		const uint8_t *ip = p[i].frame + 14;
		uint32_t fw = (uint32_t)ip[6] << 8 | ip[7];
		s->pk[s->npk++] = (struct seen){
			.id = (uint16_t)(ip[4] << 8 | ip[5]), .off = (uint16_t)((fw & 0x1fff) * 8),
			.more = (fw & 0x2000) != 0, .frag = p[i].dc.frag, .caplen = p[i].dc.caplen,
			.flow_id = p[i].flow_id, .pkt_no = p[i].pkt_no};
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static int fs_record(void *ctx, const struct fl_record *r)
{
	struct fsink *s = ctx;
	if (r->end == FL_END_ACTIVE)
		return 0;
	pthread_mutex_lock(&s->lock);
	s->finals++;
	int f = (r->key.sport >= 20000 ? r->key.sport : r->key.dport) - 20000;
	if (r->key.sport == 0 && r->key.dport == 0)
		f = PORTS0(r->key.src[2] << 8 | r->key.src[3]); /* later fragments alone */
	if (f >= 0 && f < MAXF) {
		s->rec_id[f] = r->id;
		s->rec_pkts[f] += r->pkts[0] + r->pkts[1];
		s->rec_bytes[f] += r->bytes[0] + r->bytes[1];
		s->rec_frags[f] += r->frags;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static const struct eng_sink_ops fs_ops = {
	.name = "fragcheck", .packets = fs_packets, .record = fs_record,
};

struct run {
	struct engine *e;
	struct fsink *s;
	uint32_t obs;
	uint64_t frames;
};

static int start(struct run *r, unsigned workers, const struct eng_config *base)
{
	struct eng_config cfg;
	char err[256];
	memset(r, 0, sizeof(*r));
	if (base) {
		cfg = *base;
	} else {
		eng_config_default(&cfg);
	}
	cfg.workers = workers;
	cfg.fl.dpi = 0;
	r->s = calloc(1, sizeof(*r->s));
	if (!r->s)
		return -ENOMEM;
	pthread_mutex_init(&r->s->lock, NULL);
	struct eng_sink sk = {&fs_ops, r->s};
	int rc = eng_open(&cfg, &sk, 1, &r->e, err, sizeof(err));
	if (rc < 0) {
		printf("eng_open: %s\n", err);
		return rc;
	}
	return eng_obs_point(r->e, "test", "file", NULL, 1, 0, &r->obs);
}

static void feed(struct run *r, const uint8_t *frame, uint32_t len, uint64_t ts_us)
{
	/* not stable: the engine copies, the caller reuses its buffer */
	struct cap_packet p = {.data = frame, .caplen = len, .wirelen = len, .ts_us = ts_us,
			       .linktype = 1, .dir = CAP_DIR_UNKNOWN};
	r->frames++;
	CHECK(eng_packet(r->e, r->obs, &p) == 0, "eng_packet failed");
}

static void stop(struct run *r, struct eng_stats *st)
{
	CHECK(eng_finish(r->e) == 0, "eng_finish failed");
	eng_stats(r->e, st);
	eng_close(r->e);
	/* nothing lost: every frame handed in reached the packets sink (they are all
	 * IP and well formed), and decode counted each once */
	CHECK(r->s->npk == r->frames, "packets sink got %zu frames of %llu", r->s->npk,
	      (unsigned long long)r->frames);
	CHECK(st->packets == r->frames && st->dc.packets == r->frames,
	      "engine %llu, decode counted %llu of %llu frames", (unsigned long long)st->packets,
	      (unsigned long long)st->dc.packets, (unsigned long long)r->frames);
	CHECK(st->fr_held == 0, "%llu fragments still held", (unsigned long long)st->fr_held);
	for (size_t i = 0; i < r->s->npk; i++)
		CHECK(r->s->pk[i].flow_id != 0, "frame id %u off %u: no flow id", r->s->pk[i].id,
		      r->s->pk[i].off);
}

static void done(struct run *r)
{
	pthread_mutex_destroy(&r->s->lock);
	free(r->s->pk);
	free(r->s);
}

/* Fragments of one datagram in the order given (indexes into pieces of `step`). */
static void send_dgram(struct run *r, int host, uint16_t id, const uint8_t *d, uint32_t dlen,
		       uint32_t step, const int *order, int nord, uint64_t *ts)
{
	uint8_t fb[2048];
	for (int k = 0; k < nord; k++) {
		uint32_t off = (uint32_t)order[k] * step;
		uint32_t len = dlen - off < step ? dlen - off : step;
		int more = off + len < dlen;
		feed(r, fb, ip4_frame(fb, host, id, off, more, d, len), (*ts)++);
	}
}

/* ---- order ---- */

#define OFLOWS 50

static void case_order(unsigned workers)
{
	struct run r;
	struct eng_stats st;
	uint8_t d[4096], fb[2048];
	static const int inorder[] = {0, 1, 2}, reversed[] = {2, 1, 0}, shuffled[] = {1, 2, 0};
	const int *orders[3] = {inorder, reversed, shuffled};
	if (start(&r, workers, NULL) < 0) {
		failures++;
		return;
	}
	uint64_t ts = T0;
	uint32_t small = 0, whole[3] = {0};
	for (int f = 0; f < OFLOWS; f++) {
		uint32_t ul = udp_dgram(d, f, 16, 's');
		small = ip4_frame(fb, 1, (uint16_t)(60000 + f), 0, 0, d, ul);
		feed(&r, fb, small, ts++);
		for (int k = 0; k < 3; k++) {
			ul = udp_dgram(d, f, 2900 + 16 * (uint32_t)k, (uint8_t)('a' + k));
			whole[k] = 34 + ul;
			send_dgram(&r, 1, (uint16_t)(f * 3 + k + 1), d, ul, 1200, orders[k], 3, &ts);
		}
		ul = udp_dgram(d, f, 16, 'e');
		feed(&r, fb, ip4_frame(fb, 1, (uint16_t)(61000 + f), 0, 0, d, ul), ts++);
	}
	stop(&r, &st);
	CHECK(st.fr.fragments == OFLOWS * 9 && st.fr.reassembled == OFLOWS * 3,
	      "fragments %llu reassembled %llu", (unsigned long long)st.fr.fragments,
	      (unsigned long long)st.fr.reassembled);
	CHECK(st.fr.timed_out + st.fr.overlapping + st.fr.evicted + st.fr.bad + st.fr.too_big +
	      st.fr_unfinished == 0, "a datagram was given up");
	CHECK(st.dc.by_reason[DC_OK] == r.frames, "decode: %llu ok of %llu",
	      (unsigned long long)st.dc.by_reason[DC_OK], (unsigned long long)r.frames);
	CHECK(st.fl.packets == OFLOWS * 5, "flow tables accounted %llu packets, want %d",
	      (unsigned long long)st.fl.packets, OFLOWS * 5);
	for (int f = 0; f < OFLOWS; f++) {
		uint64_t want = 2ull * small + whole[0] + whole[1] + whole[2];
		CHECK(r.s->rec_pkts[f] == 5 && r.s->rec_bytes[f] == want,
		      "flow %d: %llu packets %llu bytes, want 5 and %llu", f,
		      (unsigned long long)r.s->rec_pkts[f], (unsigned long long)r.s->rec_bytes[f],
		      (unsigned long long)want);
	}
	/* each frame: the flow of its datagram, the datagram's packet number; the
	 * frames of one flow in packet-number order; no rebuilt frame */
	uint32_t per_flow[OFLOWS] = {0};
	uint32_t last_no[OFLOWS] = {0};
	for (size_t i = 0; i < r.s->npk; i++) {
		const struct seen *p = &r.s->pk[i];
		int f, no;
		if (p->id >= 60000) {
			f = p->id >= 61000 ? p->id - 61000 : p->id - 60000;
			no = p->id >= 61000 ? 4 : 0;
			CHECK(!p->frag && p->caplen == small, "small packet %u as a fragment", p->id);
		} else {
			f = (p->id - 1) / 3;
			no = (p->id - 1) % 3 + 1;
			CHECK(p->frag && p->caplen <= 34 + 1200, "frame id %u off %u: not an original "
			      "fragment (caplen %u)", p->id, p->off, p->caplen);
		}
		if (f < 0 || f >= OFLOWS) {
			CHECK(0, "frame id %u of no flow", p->id);
			continue;
		}
		per_flow[f]++;
		CHECK(p->flow_id == r.s->rec_id[f], "frame id %u: flow id %llu, record %llu", p->id,
		      (unsigned long long)p->flow_id, (unsigned long long)r.s->rec_id[f]);
		CHECK(p->pkt_no == (uint32_t)no, "frame id %u off %u: packet number %u, want %d", p->id,
		      p->off, p->pkt_no, no);
		CHECK(p->pkt_no >= last_no[f], "flow %d: packet %u after %u", f, p->pkt_no, last_no[f]);
		last_no[f] = p->pkt_no;
	}
	for (int f = 0; f < OFLOWS; f++)
		CHECK(per_flow[f] == 11, "flow %d: %u frames stored, want 11", f, per_flow[f]);
	done(&r);
}

/* ---- trouble ---- */

static void case_trouble(unsigned workers)
{
	struct run r;
	struct eng_stats st;
	uint8_t d[4096], fb[2048];
	if (start(&r, workers, NULL) < 0) {
		failures++;
		return;
	}
	uint64_t ts = T0;
	/* flow 0, id 1: a duplicate first fragment; the datagram completes */
	uint32_t ul = udp_dgram(d, 0, 3000, 'd');
	static const int dup[] = {0, 0, 1, 2};
	send_dgram(&r, 1, 1, d, ul, 1480, dup, 4, &ts);
	/* flow 1, id 2: the second fragment starts 40 bytes inside the first */
	ul = udp_dgram(d, 1, 3000, 'o');
	send_dgram(&r, 1, 2, d, ul, 1480, (const int[]){0}, 1, &ts);
	feed(&r, fb, ip4_frame(fb, 1, 2, 1440, 1, d, 1480), ts++);
	/* flow 2, id 3: the last fragment never comes; 31 s later another packet */
	ul = udp_dgram(d, 2, 3000, 'm');
	send_dgram(&r, 1, 3, d, ul, 1480, (const int[]){0, 1}, 2, &ts);
	ts += 31000000;
	ul = udp_dgram(d, 3, 16, 'x');
	feed(&r, fb, ip4_frame(fb, 1, 4, 0, 0, d, ul), ts++);
	/* host 2, id 5: a later fragment whose first one never comes (times out) */
	ul = udp_dgram(d, 4, 3000, 'l');
	send_dgram(&r, 2, 5, d, ul, 1480, (const int[]){2}, 1, &ts);
	/* flow 5, id 6: the last is missing when the input ends */
	ul = udp_dgram(d, 5, 3000, 'z');
	send_dgram(&r, 1, 6, d, ul, 1480, (const int[]){1, 0}, 2, &ts);
	ts += 40000000;
	ul = udp_dgram(d, 6, 16, 'y');
	feed(&r, fb, ip4_frame(fb, 1, 7, 0, 0, d, ul), ts++); /* times out host 2 id 5 and id 6 */
	ul = udp_dgram(d, 7, 3000, 'w');
	send_dgram(&r, 1, 8, d, ul, 1480, (const int[]){0, 1}, 2, &ts);
	stop(&r, &st);

	CHECK(st.fr.reassembled == 1, "reassembled %llu", (unsigned long long)st.fr.reassembled);
	CHECK(st.fr.duplicates == 1, "duplicates %llu", (unsigned long long)st.fr.duplicates);
	CHECK(st.fr.overlapping == 1, "overlapping %llu", (unsigned long long)st.fr.overlapping);
	CHECK(st.fr.timed_out == 3, "timed out %llu, want 3", (unsigned long long)st.fr.timed_out);
	CHECK(st.fr_unfinished == 1, "incomplete at the end %llu, want 1",
	      (unsigned long long)st.fr_unfinished);
	/* The flows: 0 has its datagram and the duplicate first fragment; 1 the two
	 * overlapping fragments; 2 and 7 the two fragments that timed out / were
	 * incomplete at the end, in order.  Id 6 came reversed and timed out: its first
	 * fragment (handed on first) makes flow 5, and the second, although it was
	 * captured earlier, joins it; id 5's lone last fragment goes to host 2's
	 * ports-0 flow, as without reassembly. */
	CHECK(r.s->rec_pkts[0] == 2, "flow 0: %llu packets", (unsigned long long)r.s->rec_pkts[0]);
	CHECK(r.s->rec_pkts[1] == 2, "flow 1: %llu packets", (unsigned long long)r.s->rec_pkts[1]);
	CHECK(r.s->rec_pkts[2] == 2, "flow 2: %llu packets", (unsigned long long)r.s->rec_pkts[2]);
	CHECK(r.s->rec_pkts[7] == 2, "flow 7: %llu packets", (unsigned long long)r.s->rec_pkts[7]);
	CHECK(r.s->rec_pkts[5] == 2, "flow 5: %llu packets", (unsigned long long)r.s->rec_pkts[5]);
	CHECK(r.s->rec_pkts[PORTS0(2)] == 1 && r.s->rec_pkts[PORTS0(1)] == 0,
	      "ports-0 flows: host 2 %llu, host 1 %llu packets",
	      (unsigned long long)r.s->rec_pkts[PORTS0(2)], (unsigned long long)r.s->rec_pkts[PORTS0(1)]);
	for (size_t i = 0; i < r.s->npk; i++) {
		const struct seen *p = &r.s->pk[i];
		static const int flow_of_id[] = {-1, 0, 1, 2, 3, PORTS0(2), 5, 6, 7};
		int f = p->id < 9 ? flow_of_id[p->id] : -1;
		if (f >= 0)
			CHECK(p->flow_id == r.s->rec_id[f], "id %u off %u: flow id %llu, want %llu",
			      p->id, p->off, (unsigned long long)p->flow_id,
			      (unsigned long long)r.s->rec_id[f]);
	}
	done(&r);
}

/* ---- many ---- */

static void case_many(unsigned workers, uint64_t max_bytes)
{
	struct run r;
	struct eng_stats st;
	struct eng_config cfg;
	uint8_t d[4096], fb[2048];
	eng_config_default(&cfg);
	if (max_bytes)
		cfg.frag.max_bytes = max_bytes;
	if (start(&r, workers, &cfg) < 0) {
		failures++;
		return;
	}
	uint64_t ts = T0;
	uint64_t peak_held = 0;
	/* 10,000 datagrams whose second fragment never comes, from 10,000 hosts */
	for (int i = 0; i < 10000; i++) {
		uint32_t ul = udp_dgram(d, i % 64, 1400, 'n');
		feed(&r, fb, ip4_frame(fb, 100 + i, (uint16_t)i, 0, 1, d, 1200), ts++);
		(void)ul;
		if (i % 1000 == 999) {
			/* what eng_stats shows while running (published on a tick) */
			eng_tick(r.e, ts);
			eng_stats(r.e, &st);
			if (st.fr.bytes > peak_held)
				peak_held = st.fr.bytes;
		}
	}
	stop(&r, &st);
	uint64_t cap = cfg.frag.max_bytes;
	printf("many (max_bytes %llu, workers %u): evicted %llu, incomplete at end %llu, peak %llu bytes\n",
	       (unsigned long long)cap, workers, (unsigned long long)st.fr.evicted,
	       (unsigned long long)st.fr_unfinished, (unsigned long long)st.fr.bytes_peak);
	CHECK(st.fr.bytes_peak <= cap && peak_held <= cap, "peak %llu bytes over the cap %llu",
	      (unsigned long long)st.fr.bytes_peak, (unsigned long long)cap);
	CHECK(st.fr.evicted > 0, "nothing evicted");
	CHECK(st.fr.evicted + st.fr_unfinished == 10000, "evicted %llu + unfinished %llu != 10000",
	      (unsigned long long)st.fr.evicted, (unsigned long long)st.fr_unfinished);
	CHECK(st.fr_unfinished <= cfg.frag.max_datagrams, "%llu held at the end, cap %u",
	      (unsigned long long)st.fr_unfinished, cfg.frag.max_datagrams);
	CHECK(st.fr.bytes == 0, "%llu bytes still held", (unsigned long long)st.fr.bytes);
	done(&r);
}

/* ---- off ---- */

static void case_off(unsigned workers)
{
	struct run r;
	struct eng_stats st;
	struct eng_config cfg;
	uint8_t d[4096];
	eng_config_default(&cfg);
	cfg.no_reassembly = 1;
	if (start(&r, workers, &cfg) < 0) {
		failures++;
		return;
	}
	uint64_t ts = T0;
	/* 32 flows between the same two hosts (ports differ): with workers they
	 * spread over the workers by their 5-tuple, and the later fragments of
	 * each (no ports) still reach their first fragment's flow */
	for (int f = 0; f < 32; f++) {
		uint32_t ul = udp_dgram(d, f, 2900, 'q');
		send_dgram(&r, 1, (uint16_t)(1 + f), d, ul, 1200, (const int[]){0, 1, 2}, 3, &ts);
	}
	stop(&r, &st);
	CHECK(st.fr.fragments == 0 && st.fr.reassembled == 0, "frag was used");
	for (int f = 0; f < 32; f++)
		CHECK(r.s->rec_pkts[f] == 3 && r.s->rec_frags[f] == 3, "flow %d: %llu packets, %u fragments", f,
		      (unsigned long long)r.s->rec_pkts[f], r.s->rec_frags[f]);
	CHECK(r.s->rec_pkts[PORTS0(1)] == 0, "host 1's ports-0 flow: %llu packets",
	      (unsigned long long)r.s->rec_pkts[PORTS0(1)]);
	/* A flow's id tells its table (id_base + (n - 1) * tables + shard + 1): with
	 * two workers, the 32 flows of one pair of hosts use both. */
	if (workers == 2) {
		unsigned per_shard[2] = {0, 0};
		for (int f = 0; f < 32; f++)
			if (r.s->rec_id[f])
				per_shard[(r.s->rec_id[f] - 1) % 2]++;
		CHECK(per_shard[0] && per_shard[1], "one pair of hosts stayed on one worker: %u and %u flows",
		      per_shard[0], per_shard[1]);
	}
	done(&r);
}

int main(int argc, char **argv)
{
	const char *which = argc > 1 ? argv[1] : "order";
	for (unsigned w = 0; w <= 2; w++) {
		if (!strcmp(which, "order"))
			case_order(w);
		else if (!strcmp(which, "trouble"))
			case_trouble(w);
		else if (!strcmp(which, "many")) {
			case_many(w, 0);
			case_many(w, 4u << 20);
		} else if (!strcmp(which, "off"))
			case_off(w);
		else {
			fprintf(stderr, "usage: test_engine_frag order|trouble|many|off\n");
			return 2;
		}
	}
	if (failures)
		printf("%d failure(s)\n", failures);
	else
		printf("ok\n");
	return failures ? 1 : 0;
}
