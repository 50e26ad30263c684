/* Unit tests of the engine: threads, batches and sinks, with 0, 1 and 2 flow
 * workers, on synthetic UDP flows.
 *   test_engine order|ids|fail|stable|obs|close|noip|teardown
 * Each case checks what engine.h promises a sink: observation points before their
 * packets and records, each flow's packets in order with final ids, records whose
 * ids match the packets', flush after everything, a failing sink ending the run
 * with its name, and nothing lost or duplicated. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "engine.h"

static int failures;
#define CHECK(c, ...) do { if (!(c)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

#define NFLOWS 300
#define PER_FLOW 40

/* An Ethernet + IPv4 + UDP frame of flow f (f distinct source ports), packet k:
 * the payload carries f and k so a sink can check what it got. */
static uint32_t make_frame(uint8_t *b, int f, int k, int reverse)
{
	memset(b, 0, 64);
	b[12] = 0x08;
	uint8_t *ip = b + 14;
	ip[0] = 0x45;
	ip[3] = 20 + 8 + 8;
	ip[8] = 64;
	ip[9] = 17;
	uint8_t a[4] = {10, 0, 0, 1}, z[4] = {10, 0, 1, 2};
	memcpy(ip + 12, reverse ? z : a, 4);
	memcpy(ip + 16, reverse ? a : z, 4);
	uint8_t *udp = ip + 20;
	uint16_t sp = (uint16_t)(10000 + f), dp = 5353;
	if (reverse) {
		uint16_t t = sp;
		sp = dp;
		dp = t;
	}
	udp[0] = sp >> 8; udp[1] = sp & 0xff;
	udp[2] = dp >> 8; udp[3] = dp & 0xff;
	udp[5] = 16;
	memcpy(udp + 8, &f, 4);
	memcpy(udp + 12, &k, 4);
	return 14 + 20 + 8 + 8;
}

/* A sink that checks what it sees; every callback on its own thread. */
struct check {
	int seen_obs[16];
	uint64_t flow_of[NFLOWS];       /* flow id seen in packets */
	int next_k[NFLOWS];             /* next packet number expected */
	uint64_t packets, records, finals, flushes, bad_order, bad_obs, bad_payload, noflow;
	uint64_t min_id, max_id;
	uint64_t fail_after;            /* records before returning -EIO (0 = never) */
	uint64_t max_id_held;           /* what max_flow_id reports */
	int obs_events;
	char pod_seen[64];
	int closed;
	/* teardown: the engine, asked from flush() how many flow tables it holds */
	struct engine *e;
	long tables_at_flush;
};

static int ck_max(void *ctx, uint64_t *out)
{
	*out = ((struct check *)ctx)->max_id_held;
	return 0;
}

static int ck_obs(void *ctx, const struct eng_obs *o)
{
	struct check *c = ctx;
	if (o->id < 16)
		c->seen_obs[o->id] = 1;
	c->obs_events++;
	snprintf(c->pod_seen, sizeof(c->pod_seen), "%s", o->pod ? o->pod : "");
	return 0;
}

static int ck_packets(void *ctx, const struct eng_packet *p, size_t n)
{
	struct check *c = ctx;
	for (size_t i = 0; i < n; i++) {
		c->packets++;
		if (p[i].obs >= 16 || !c->seen_obs[p[i].obs])
			c->bad_obs++;
		if (p[i].dc.reason != DC_OK) {
			/* a frame in no flow (t_noip): ARP or an IPv4 header cut short */
			if (p[i].flow_id != 0 || p[i].pkt_no != 0 ||
			    (p[i].dc.reason == DC_NOT_IP ? p[i].dc.caplen != 42 || p[i].frame[13] != 0x06
							  : p[i].dc.caplen != 24))
				c->bad_payload++;
			c->noflow++;
			continue;
		}
		int f, k;
		memcpy(&f, p[i].frame + 42, 4);
		memcpy(&k, p[i].frame + 46, 4);
		if (f < 0 || f >= NFLOWS || p[i].dc.caplen != 50) {
			c->bad_payload++;
			continue;
		}
		if (!c->flow_of[f])
			c->flow_of[f] = p[i].flow_id;
		if (c->flow_of[f] != p[i].flow_id || p[i].flow_id == 0)
			c->bad_order++;
		/* packets of a flow in order, numbered 0, 1, 2, ... */
		if (k != c->next_k[f] || p[i].pkt_no != (uint32_t)k)
			c->bad_order++;
		c->next_k[f] = k + 1;
	}
	return 0;
}

static int ck_record(void *ctx, const struct fl_record *r)
{
	struct check *c = ctx;
	c->records++;
	if (r->obs_id >= 16 || !c->seen_obs[r->obs_id])
		c->bad_obs++;
	if (r->end != FL_END_ACTIVE) {
		c->finals++;
		if (!c->min_id || r->id < c->min_id)
			c->min_id = r->id;
		if (r->id > c->max_id)
			c->max_id = r->id;
	}
	if (c->fail_after && c->records >= c->fail_after)
		return -EIO;
	return 0;
}

static int ck_flush(void *ctx)
{
	struct check *c = ctx;
	c->flushes++;
	/* teardown: the flow tables are released while the sinks flush, not after
	 * them; waits up to 5 s for it (eng_stats may be called from any thread) */
	if (c->e) {
		struct eng_stats st;
		for (int i = 0; i < 500; i++) {
			eng_stats(c->e, &st);
			c->tables_at_flush = st.tables;
			if (!st.tables)
				break;
			struct timespec ts = {0, 10 * 1000000};
			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

static void ck_close(void *ctx)
{
	((struct check *)ctx)->closed = 1;
}

static const char *ck_err(void *ctx)
{
	(void)ctx;
	return "the check sink was told to fail";
}

static const struct eng_sink_ops ck_ops = {
	.name = "check", .max_flow_id = ck_max, .obs_point = ck_obs, .packets = ck_packets,
	.record = ck_record, .flush = ck_flush, .close = ck_close, .errmsg = ck_err,
};

/* Feeds NFLOWS flows of PER_FLOW packets (both directions, interleaved) on one
 * observation point.  stable: the frames stay valid until the end. */
static int feed(struct engine *e, uint32_t obs, int stable, int stop_on_error)
{
	static uint8_t frames[NFLOWS * PER_FLOW][64];
	int rc = 0;
	for (int k = 0; k < PER_FLOW; k++)
		for (int f = 0; f < NFLOWS; f++) {
			uint8_t *b = frames[k * NFLOWS + f];
			uint32_t len = make_frame(b, f, k, k % 2);
			struct cap_packet pk = {.data = b, .caplen = len, .wirelen = len,
						.ts_us = 1000000ull + (uint64_t)k * 1000 + (uint64_t)f,
						.linktype = DC_LINK_ETHERNET, .dir = CAP_DIR_UNKNOWN,
						.stable = (uint8_t)stable};
			rc = eng_packet(e, obs, &pk);
			if (!stable)
				memset(b, 0xee, 64); /* the engine must have copied it */
			if (rc < 0 && stop_on_error)
				return rc;
		}
	return rc;
}

/* One frame, copied by the engine (not stable). */
static int feed_one(struct engine *e, uint32_t obs, const uint8_t *b, uint32_t len)
{
	struct cap_packet pk = {.data = b, .caplen = len, .wirelen = len, .ts_us = 999000,
				.linktype = DC_LINK_ETHERNET, .dir = CAP_DIR_UNKNOWN};
	return eng_packet(e, obs, &pk);
}

static struct engine *open_engine(unsigned workers, struct check *c, size_t nsinks)
{
	struct eng_config cfg;
	eng_config_default(&cfg);
	cfg.workers = workers;
	cfg.fl.dpi = 0;
	struct eng_sink s[4];
	for (size_t i = 0; i < nsinks; i++)
		s[i] = (struct eng_sink){.ops = &ck_ops, .ctx = &c[i]};
	struct engine *e;
	char err[256];
	if (eng_open(&cfg, s, nsinks, &e, err, sizeof(err)) < 0) {
		printf("FAIL: eng_open: %s\n", err);
		failures++;
		return NULL;
	}
	return e;
}

static void run_order(unsigned workers, int stable)
{
	struct check *c = calloc(2, sizeof(*c));
	struct engine *e = open_engine(workers, c, 2);
	if (!e)
		return;
	uint32_t obs;
	CHECK(eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs) == 0, "obs point");
	CHECK(feed(e, obs, stable, 1) == 0, "feed: %s", eng_error(e));
	CHECK(eng_finish(e) == 0, "finish: %s", eng_error(e));
	struct eng_stats st;
	eng_stats(e, &st);
	for (int i = 0; i < 2; i++) {
		CHECK(c[i].packets == NFLOWS * PER_FLOW, "workers %u sink %d: %llu packets", workers, i,
		      (unsigned long long)c[i].packets);
		CHECK(c[i].finals == NFLOWS, "workers %u sink %d: %llu final records", workers, i,
		      (unsigned long long)c[i].finals);
		CHECK(!c[i].bad_order && !c[i].bad_obs && !c[i].bad_payload,
		      "workers %u sink %d: %llu out of order, %llu before their obs, %llu bad payload",
		      workers, i, (unsigned long long)c[i].bad_order, (unsigned long long)c[i].bad_obs,
		      (unsigned long long)c[i].bad_payload);
		CHECK(c[i].flushes == 1, "flushes %llu", (unsigned long long)c[i].flushes);
		CHECK(st.sink[i].batches > 0 && st.sink[i].records == c[i].records, "stats of sink %d", i);
	}
	CHECK(st.packets == NFLOWS * PER_FLOW && st.fl.flows_created == NFLOWS, "engine stats: %llu packets %llu flows",
	      (unsigned long long)st.packets, (unsigned long long)st.fl.flows_created);
	eng_close(e);
	CHECK(c[0].closed && c[1].closed, "sinks closed");
	free(c);
}

static void t_order(void)
{
	for (unsigned w = 0; w <= 2; w++)
		run_order(w, 0);
	printf("ok: order and completeness with 0, 1, 2 workers\n");
}

static void t_stable(void)
{
	for (unsigned w = 0; w <= 2; w++)
		run_order(w, 1);
	printf("ok: stable (referenced, not copied) packets\n");
}

static void t_ids(void)
{
	for (unsigned w = 0; w <= 2; w++) {
		struct check *c = calloc(2, sizeof(*c));
		c[0].max_id_held = 5;
		c[1].max_id_held = 700;
		struct engine *e = open_engine(w, c, 2);
		if (!e)
			return;
		uint32_t obs;
		eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
		feed(e, obs, 0, 1);
		eng_finish(e);
		/* ids above the largest any sink holds, and small: each table numbers
		 * its flows 1, 2, ... interleaved with the other tables' */
		unsigned tables = w ? w : 1;
		CHECK(c[0].min_id >= 701 && c[0].min_id <= 700 + tables, "workers %u: smallest id %llu", w,
		      (unsigned long long)c[0].min_id);
		CHECK(c[0].max_id <= 700 + tables * NFLOWS, "workers %u: largest id %llu", w,
		      (unsigned long long)c[0].max_id);
		/* every flow got one id, the same in packets and records, distinct */
		int dup = 0;
		for (int i = 0; i < NFLOWS; i++)
			for (int j = i + 1; j < NFLOWS; j++)
				dup += c[0].flow_of[i] == c[0].flow_of[j];
		CHECK(!dup, "workers %u: %d duplicate ids", w, dup);
		for (int i = 0; i < NFLOWS; i++)
			CHECK(c[0].flow_of[i] >= c[0].min_id && c[0].flow_of[i] <= c[0].max_id,
			      "flow %d id %llu not among the records' ids", i, (unsigned long long)c[0].flow_of[i]);
		eng_close(e);
		free(c);
	}
	printf("ok: final ids above the sinks' largest, unique, same in packets and records\n");
}

static void t_fail(void)
{
	for (unsigned w = 0; w <= 2; w++) {
		struct check *c = calloc(2, sizeof(*c));
		c[1].fail_after = 3;
		struct engine *e = open_engine(w, c, 2);
		if (!e)
			return;
		uint32_t obs;
		eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
		/* records come when flows end: feed, then finish */
		feed(e, obs, 0, 0);
		int rc = eng_finish(e);
		CHECK(rc < 0, "workers %u: finish after a sink failed returned %d", w, rc);
		CHECK(strstr(eng_error(e), "check") && strstr(eng_error(e), "told to fail"),
		      "error names the sink and its message: '%s'", eng_error(e));
		CHECK(eng_packet(e, obs, &(struct cap_packet){.data = (const uint8_t *)"", .linktype = 1}) < 0,
		      "eng_packet after the failure");
		struct eng_stats st;
		eng_stats(e, &st);
		CHECK(st.sink[1].discarded > 0, "discarded records counted: %llu", (unsigned long long)st.sink[1].discarded);
		CHECK(c[0].finals == NFLOWS, "the healthy sink still got every record: %llu",
		      (unsigned long long)c[0].finals);
		eng_close(e);
		free(c);
	}
	printf("ok: a failing sink ends the run with its message; the others are not starved\n");
}

static void t_obs(void)
{
	struct check *c = calloc(1, sizeof(*c));
	struct engine *e = open_engine(1, c, 1);
	if (!e)
		return;
	uint32_t a, b, a2, a3;
	CHECK(eng_obs_point(e, "veth1", "both", NULL, DC_LINK_ETHERNET, 7, &a) == 0 && a == 1, "first id 1");
	CHECK(eng_obs_point(e, "veth2", "both", NULL, DC_LINK_ETHERNET, 8, &b) == 0 && b == 2, "second id 2");
	CHECK(eng_obs_point(e, "veth1", "both", NULL, DC_LINK_ETHERNET, 7, &a2) == 0 && a2 == a, "same again");
	CHECK(eng_obs_point(e, "veth1", "both", "default/web-1", DC_LINK_ETHERNET, 7, &a3) == 0 && a3 == a,
	      "named later: same id");
	CHECK(eng_obs(e, a) && eng_obs(e, a)->pod && !strcmp(eng_obs(e, a)->pod, "default/web-1") &&
	      eng_obs(e, a)->ifindex == 7, "eng_obs gives the update");
	CHECK(!eng_obs(e, 0) && !eng_obs(e, 99) && !eng_obs(e, ENG_MAX_OBS + 1), "unknown ids");
	CHECK(eng_obs_point(e, "", "both", NULL, 1, 0, &a) == -EINVAL, "empty name refused");
	eng_finish(e);
	CHECK(c->obs_events == 3 && !strcmp(c->pod_seen, "default/web-1"),
	      "sink saw %d announcements, last pod '%s'", c->obs_events, c->pod_seen);
	eng_close(e);
	free(c);
	printf("ok: observation points: ids, updates announced, lookups\n");
}

static void t_close(void)
{
	for (unsigned w = 0; w <= 2; w++) {
		struct check *c = calloc(1, sizeof(*c));
		struct engine *e = open_engine(w, c, 1);
		if (!e)
			return;
		uint32_t obs;
		eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
		feed(e, obs, 0, 1);
		eng_close(e); /* without eng_finish: flows still end, sinks flush */
		CHECK(c->finals == NFLOWS && c->flushes == 1 && c->closed && c->packets == NFLOWS * PER_FLOW,
		      "workers %u: close alone: %llu finals, %llu flushes, %llu packets", w,
		      (unsigned long long)c->finals, (unsigned long long)c->flushes, (unsigned long long)c->packets);
		free(c);
	}
	/* a sink that fails in eng_open is still closed */
	struct check c = {0};
	struct eng_sink s[ENG_MAX_SINKS + 1];
	for (int i = 0; i <= ENG_MAX_SINKS; i++)
		s[i] = (struct eng_sink){.ops = &ck_ops, .ctx = &c};
	struct eng_config cfg;
	eng_config_default(&cfg);
	struct engine *e;
	char err[128];
	CHECK(eng_open(&cfg, s, ENG_MAX_SINKS + 1, &e, err, sizeof(err)) < 0 && c.closed,
	      "too many sinks refused, sinks closed");
	printf("ok: eng_close alone ends flows and flushes; refused sinks are closed\n");
}

/* A copied frame longer than a batch's bytes (a snap length above 192 KiB) is
 * cut to them: counted in eng_stats.frames_cut (it was silent). */
static void t_cut(void)
{
	struct check *c = calloc(1, sizeof(*c));
	struct engine *e = open_engine(1, c, 1);
	if (!e)
		return;
	uint32_t obs;
	eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
	size_t big = 200 * 1024;
	uint8_t *b = calloc(1, big);
	uint32_t len = make_frame(b, 1, 0, 0);
	(void)len;
	struct cap_packet pk = {.data = b, .caplen = (uint32_t)big, .wirelen = (uint32_t)big, .ts_us = 1000000,
				.linktype = DC_LINK_ETHERNET, .dir = CAP_DIR_UNKNOWN, .stable = 0};
	CHECK(eng_packet(e, obs, &pk) == 0, "a 200 KiB frame");
	pk.caplen = pk.wirelen = 1000;
	CHECK(eng_packet(e, obs, &pk) == 0, "a 1000-byte frame");
	CHECK(eng_finish(e) == 0, "finish");
	struct eng_stats st;
	eng_stats(e, &st);
	CHECK(st.frames_cut == 1 && st.packets == 2, "frames_cut %llu of %llu packets",
	      (unsigned long long)st.frames_cut, (unsigned long long)st.packets);
	eng_close(e);
	free(b);
	free(c);
	printf("ok: a copied frame above a batch's bytes is counted as cut\n");
}

/* eng_finish frees the flow tables (nDPI's modules) while the sinks flush --
 * for a bulk load that is the flow database's index build, on the other core --
 * and eng_stats still reports their counters and the workers' CPU time after. */
static void t_teardown(void)
{
	for (unsigned w = 0; w <= 2; w++) {
		struct check *c = calloc(1, sizeof(*c));
		struct engine *e = open_engine(w, c, 1);
		if (!e)
			return;
		c->e = e;
		c->tables_at_flush = -1;
		uint32_t obs;
		struct eng_stats st;
		eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
		feed(e, obs, 0, 1);
		/* each worker thread builds its own table: wait for them */
		for (int i = 0; i < 500; i++) {
			eng_stats(e, &st);
			if (st.tables == (w ? w : 1))
				break;
			struct timespec ts = {0, 10 * 1000000};
			nanosleep(&ts, NULL);
		}
		CHECK(st.tables == (w ? w : 1), "workers %u: %u tables while packets flow", w, st.tables);
		CHECK(eng_finish(e) == 0, "finish: %s", eng_error(e));
		CHECK(c->tables_at_flush == 0, "workers %u: %ld flow tables still held while the sink flushed", w,
		      c->tables_at_flush);
		eng_stats(e, &st);
		CHECK(st.tables == 0 && st.fl.flows_created == NFLOWS && st.fl.records == c->records &&
		      st.fl.packets == NFLOWS * PER_FLOW && st.fl.flows_active == 0,
		      "workers %u: after finish: %u tables, %llu flows, %llu records (sink %llu), %llu packets", w,
		      st.tables, (unsigned long long)st.fl.flows_created, (unsigned long long)st.fl.records,
		      (unsigned long long)c->records, (unsigned long long)st.fl.packets);
		CHECK(!w || st.cpu_us_workers > 0, "workers %u: worker CPU time kept", w);
		c->e = NULL;
		eng_close(e);
		CHECK(c->finals == NFLOWS && c->flushes == 1 && c->closed, "workers %u: %llu finals, %llu flushes", w,
		      (unsigned long long)c->finals, (unsigned long long)c->flushes);
		free(c);
	}
	printf("ok: eng_finish frees the flow tables while the sinks flush; their counters stay in eng_stats\n");
}

/* Frames without IP (ARP) and malformed ones (an IPv4 header cut short) reach
 * the packets sinks with flow id 0, among the flows' packets, and never the flow
 * table; without a packets sink they are only counted. */
static void t_noip(void)
{
	for (unsigned w = 0; w <= 2; w++) {
		for (int with_sink = 1; with_sink >= 0; with_sink--) {
			struct check *c = calloc(1, sizeof(*c));
			struct engine *e = open_engine(w, c, (size_t)with_sink);
			if (!e)
				return;
			uint32_t obs;
			eng_obs_point(e, "eth0", "both", NULL, DC_LINK_ETHERNET, 0, &obs);
			uint8_t arp[42] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06,
					   0, 1, 0x08, 0, 6, 4, 0, 1};
			uint8_t cut[24] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45};
			for (int i = 0; i < 5; i++) {
				CHECK(feed_one(e, obs, arp, sizeof(arp)) == 0, "ARP frame: %s", eng_error(e));
				CHECK(feed_one(e, obs, cut, sizeof(cut)) == 0, "cut frame: %s", eng_error(e));
			}
			CHECK(feed(e, obs, 0, 1) == 0, "feed: %s", eng_error(e));
			CHECK(eng_finish(e) == 0, "finish: %s", eng_error(e));
			struct eng_stats st;
			eng_stats(e, &st);
			uint64_t want = with_sink ? 10 : 0, all = with_sink ? NFLOWS * PER_FLOW + 10 : 0;
			CHECK(c->noflow == want && c->packets == all && !c->bad_payload &&
			      !c->bad_order, "workers %u, %s: %llu frames in no flow of %llu packets (%llu bad)", w,
			      with_sink ? "a packets sink" : "no sink", (unsigned long long)c->noflow,
			      (unsigned long long)c->packets, (unsigned long long)c->bad_payload);
			CHECK(st.fl.skipped == 0 && st.fl.flows_created == NFLOWS,
			      "workers %u: the flow table saw them: %llu skipped, %llu flows", w,
			      (unsigned long long)st.fl.skipped, (unsigned long long)st.fl.flows_created);
			CHECK(st.dc.by_reason[DC_NOT_IP] == 5 && st.packets == NFLOWS * PER_FLOW + 10,
			      "workers %u: %llu counted not IP, %llu packets", w,
			      (unsigned long long)st.dc.by_reason[DC_NOT_IP], (unsigned long long)st.packets);
			eng_close(e);
			free(c);
		}
	}
	printf("ok: frames without IP or malformed reach the packets sinks with flow id 0, not the flow table\n");
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: test_engine order|ids|fail|stable|obs|close|noip|teardown|cut\n");
		return 2;
	}
	const char *t = argv[1];
	if (!strcmp(t, "order"))
		t_order();
	else if (!strcmp(t, "ids"))
		t_ids();
	else if (!strcmp(t, "fail"))
		t_fail();
	else if (!strcmp(t, "stable"))
		t_stable();
	else if (!strcmp(t, "obs"))
		t_obs();
	else if (!strcmp(t, "close"))
		t_close();
	else if (!strcmp(t, "noip"))
		t_noip();
	else if (!strcmp(t, "teardown"))
		t_teardown();
	else if (!strcmp(t, "cut"))
		t_cut();
	else
		return 2;
	return failures ? 1 : 0;
}
