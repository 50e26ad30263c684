/* Flow table behaviour on hand-built decoded packets (no nDPI: cfg.dpi = 0):
 * direction and client choice, counters, handshake RTT, retransmission and
 * out-of-order heuristic, idle / TCP / active timeouts, the memory cap, ICMP and
 * fragment keying, and stats. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define S 1000000ull /* one second in microseconds */

/* Records collected from the emit callback. */
#define MAXREC 64
static struct fl_record recs[MAXREC];
static int nrec;
static int emit_rc;

static int collect(void *arg, const struct fl_record *r)
{
	(void)arg;
	if (nrec < MAXREC)
		recs[nrec] = *r;
	nrec++;
	return emit_rc;
}

static struct dc_packet pkt(const char *src, uint16_t sport, const char *dst, uint16_t dport,
			    uint8_t proto, uint8_t flags, uint32_t seq, uint32_t payload)
{
	struct dc_packet p;
	memset(&p, 0, sizeof(p));
	p.reason = DC_OK;
	p.inner.proto = proto;
	if (strchr(src, ':')) {
		p.inner.family = 6;
		inet_pton(AF_INET6, src, p.inner.src);
		inet_pton(AF_INET6, dst, p.inner.dst);
	} else {
		p.inner.family = 4;
		inet_pton(AF_INET, src, p.inner.src);
		inet_pton(AF_INET, dst, p.inner.dst);
	}
	p.inner.sport = sport;
	p.inner.dport = dport;
	p.outer = p.inner;
	p.l3_off = 14;
	p.l4_off = 34;
	p.payload_wire = payload;
	p.payload_len = payload;
	p.wirelen = 54 + payload;
	p.caplen = p.wirelen;
	p.tcp_flags = flags;
	p.tcp_seq = seq;
	return p;
}

static struct fl_table *table(uint32_t max_flows, uint64_t active)
{
	struct fl_config c;
	fl_config_default(&c);
	c.dpi = 0;
	c.max_flows = max_flows;
	c.active_timeout_us = active;
	nrec = 0;
	emit_rc = 0;
	struct fl_table *t = fl_table_new(&c, collect, NULL);
	if (!t) {
		perror("fl_table_new");
		exit(1);
	}
	return t;
}

static int feed(struct fl_table *t, struct dc_packet p, uint64_t ts)
{
	return fl_table_packet(t, 7, &p, NULL, ts, NULL, NULL);
}

static const char *A = "10.244.1.2", *B = "10.244.2.3";

static void test_direction(void)
{
	struct fl_table *t = table(1024, 0);
	uint64_t id1 = 0, id2 = 0;
	uint32_t n1 = 9, n2 = 9;
	struct dc_packet p = pkt(A, 5353, B, 53, 17, 0, 0, 30);
	CHECK(fl_table_packet(t, 7, &p, NULL, 1 * S, &id1, &n1) == 0, "udp 1");
	p = pkt(B, 53, A, 5353, 17, 0, 0, 100);
	CHECK(fl_table_packet(t, 7, &p, NULL, 2 * S, &id2, &n2) == 0, "udp 2");
	CHECK(id1 == id2 && id1 != 0, "both directions one flow (%llu %llu)", (unsigned long long)id1, (unsigned long long)id2);
	CHECK(n1 == 0 && n2 == 1, "packet numbers %u %u", n1, n2);
	CHECK(fl_table_flush(t) == 0, "flush");
	CHECK(nrec == 1, "one record, got %d", nrec);
	struct fl_record *r = &recs[0];
	char a[16];
	inet_ntop(AF_INET, r->key.src, a, sizeof(a));
	CHECK(strcmp(a, A) == 0 && r->key.sport == 5353 && r->key.dport == 53, "client is first sender (%s:%u)", a, r->key.sport);
	CHECK(r->pkts[0] == 1 && r->pkts[1] == 1, "pkts %llu/%llu", (unsigned long long)r->pkts[0], (unsigned long long)r->pkts[1]);
	CHECK(r->bytes[0] == 84 && r->bytes[1] == 154, "bytes %llu/%llu", (unsigned long long)r->bytes[0], (unsigned long long)r->bytes[1]);
	CHECK(r->payload[0] == 30 && r->payload[1] == 100, "payload");
	CHECK(r->first_us == 1 * S && r->last_us == 2 * S, "times");
	CHECK(r->end == FL_END_FLUSH, "end %u", r->end);
	CHECK(r->rtt_us == -1, "no rtt for udp");
	CHECK(r->obs_id == 7, "obs id");
	CHECK(strcmp(r->community_id, "1:") > 0 && strlen(r->community_id) == 30, "community id %s", r->community_id);
	CHECK(strcmp(r->proto, "Unknown") == 0, "proto without dpi: %s", r->proto);

	/* fl_hash is symmetric. */
	struct dc_packet q1 = pkt(A, 1, B, 2, 6, 0, 0, 0), q2 = pkt(B, 2, A, 1, 6, 0, 0, 0);
	CHECK(fl_hash(3, &q1) == fl_hash(3, &q2), "symmetric hash");
	CHECK(fl_hash(3, &q1) != fl_hash(4, &q1), "obs id in hash");
	fl_table_free(t);
}

static void test_synack_first_and_rtt(void)
{
	struct fl_table *t = table(1024, 0);
	/* Joined late: the first packet is the server's SYN/ACK. */
	feed(t, pkt(B, 443, A, 40000, 6, DC_TCP_SYN | DC_TCP_ACK, 5000, 0), 1 * S);
	feed(t, pkt(A, 40000, B, 443, 6, DC_TCP_ACK, 101, 0), 1 * S + 10);
	fl_table_flush(t);
	CHECK(nrec == 1, "one record");
	char a[16];
	inet_ntop(AF_INET, recs[0].key.src, a, sizeof(a));
	CHECK(strcmp(a, A) == 0 && recs[0].key.sport == 40000, "SYN/ACK receiver is client (%s)", a);
	CHECK(recs[0].pkts[0] == 1 && recs[0].pkts[1] == 1, "pkts");
	CHECK(recs[0].synack == 1 && recs[0].syn == 0, "synack count");
	CHECK(recs[0].rtt_us == -1, "no rtt without SYN");
	fl_table_free(t);

	t = table(1024, 0);
	feed(t, pkt(A, 40001, B, 80, 6, DC_TCP_SYN, 100, 0), 10 * S);
	feed(t, pkt(B, 80, A, 40001, 6, DC_TCP_SYN | DC_TCP_ACK, 9000, 0), 10 * S + 500);
	feed(t, pkt(A, 40001, B, 80, 6, DC_TCP_ACK, 101, 0), 10 * S + 800);
	feed(t, pkt(A, 40001, B, 80, 6, DC_TCP_ACK | DC_TCP_PSH, 101, 50), 10 * S + 900);
	feed(t, pkt(B, 80, A, 40001, 6, DC_TCP_ACK | DC_TCP_FIN, 9001, 0), 10 * S + 1000);
	feed(t, pkt(A, 40001, B, 80, 6, DC_TCP_RST, 151, 0), 10 * S + 1100);
	fl_table_flush(t);
	struct fl_record *r = &recs[0];
	CHECK(r->rtt_us == 800, "rtt %lld", (long long)r->rtt_us);
	CHECK(r->syn == 1 && r->synack == 1 && r->fin == 1 && r->rst == 1, "flag counts %u %u %u %u", r->syn, r->synack, r->fin, r->rst);
	CHECK(r->tcp_flags[0] == (DC_TCP_SYN | DC_TCP_ACK | DC_TCP_PSH | DC_TCP_RST), "client flags %#x", r->tcp_flags[0]);
	CHECK(r->tcp_flags[1] == (DC_TCP_SYN | DC_TCP_ACK | DC_TCP_FIN), "server flags %#x", r->tcp_flags[1]);
	CHECK(r->pkts[0] == 4 && r->pkts[1] == 2, "pkts");
	CHECK(r->retrans[0] == 0 && r->ooo[0] == 0, "clean connection");
	fl_table_free(t);
}

static void test_retrans_ooo(void)
{
	struct fl_table *t = table(1024, 0);
	uint64_t ts = 1 * S;
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_SYN, 999, 0), ts++);
	feed(t, pkt(B, 80, A, 40002, 6, DC_TCP_SYN | DC_TCP_ACK, 1, 0), ts++);
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1000, 100), ts++);   /* 1000..1100 */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1000, 100), ts++);   /* again: retransmission */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1100, 100), ts++);   /* in order */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1300, 100), ts++);   /* gap 1200..1300 */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1200, 100), ts++);   /* fills the gap: ooo */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1200, 100), ts++);   /* gap closed: retransmission */
	feed(t, pkt(A, 40002, B, 80, 6, DC_TCP_ACK, 1350, 100), ts++);   /* overlaps the edge: retransmission */
	feed(t, pkt(B, 80, A, 40002, 6, DC_TCP_ACK, 2, 10), ts++);       /* server side clean */
	fl_table_flush(t);
	struct fl_record *r = &recs[0];
	CHECK(r->retrans[0] == 3, "retrans %u", r->retrans[0]);
	CHECK(r->ooo[0] == 1, "ooo %u", r->ooo[0]);
	CHECK(r->retrans[1] == 0 && r->ooo[1] == 0, "server direction clean");
	fl_table_free(t);
}

static void test_timeouts(void)
{
	struct fl_table *t = table(1024, 0);
	feed(t, pkt(A, 1000, B, 53, 17, 0, 0, 10), 1 * S);
	CHECK(fl_table_expire(t, 100 * S) == 0 && nrec == 0, "not idle yet");
	fl_table_expire(t, 121 * S);
	CHECK(nrec == 1 && recs[0].end == FL_END_IDLE, "idle end (%d records)", nrec);

	/* TCP after FIN both ways: 10 s. */
	feed(t, pkt(A, 1001, B, 80, 6, DC_TCP_SYN, 1, 0), 200 * S);
	feed(t, pkt(A, 1002, B, 80, 6, DC_TCP_SYN, 1, 0), 200 * S);          /* a second, open flow */
	feed(t, pkt(A, 1001, B, 80, 6, DC_TCP_FIN | DC_TCP_ACK, 2, 0), 201 * S);
	feed(t, pkt(B, 80, A, 1001, 6, DC_TCP_FIN | DC_TCP_ACK, 7, 0), 201 * S);
	fl_table_expire(t, 205 * S);
	CHECK(nrec == 1, "closed flow waits 10 s");
	fl_table_expire(t, 211 * S);
	CHECK(nrec == 2 && recs[1].end == FL_END_TCP && recs[1].key.sport == 1001, "tcp end after FIN both ways");
	/* RST ends a flow after 10 s too. */
	feed(t, pkt(A, 1003, B, 80, 6, DC_TCP_RST, 1, 0), 212 * S);
	fl_table_expire(t, 222 * S);
	CHECK(nrec == 3 && recs[2].end == FL_END_TCP && recs[2].key.sport == 1003, "tcp end after RST");
	/* The open one follows the normal idle timeout. */
	fl_table_expire(t, 319 * S);
	CHECK(nrec == 3, "open tcp not yet idle");
	fl_table_expire(t, 320 * S);
	CHECK(nrec == 4 && recs[3].end == FL_END_IDLE && recs[3].key.sport == 1002, "open tcp idle");

	/* A packet after the idle timeout starts a new flow even without expire(). */
	uint64_t id1, id2;
	struct dc_packet p = pkt(A, 2000, B, 53, 17, 0, 0, 10);
	fl_table_packet(t, 7, &p, NULL, 400 * S, &id1, NULL);
	fl_table_packet(t, 7, &p, NULL, 600 * S, &id2, NULL);
	CHECK(id1 != id2 && nrec == 5 && recs[4].end == FL_END_IDLE, "late packet splits the flow");

	/* Port reuse: a new SYN on a closed flow starts a new flow. */
	p = pkt(A, 3000, B, 80, 6, DC_TCP_SYN, 1, 0);
	fl_table_packet(t, 7, &p, NULL, 700 * S, &id1, NULL);
	feed(t, pkt(A, 3000, B, 80, 6, DC_TCP_RST, 2, 0), 700 * S + 1);
	fl_table_packet(t, 7, &p, NULL, 701 * S, &id2, NULL);
	CHECK(id1 != id2 && nrec == 6 && recs[5].end == FL_END_TCP, "SYN after RST is a new flow");

	struct fl_stats st;
	fl_table_stats(t, &st);
	CHECK(st.flows_created == 8 && st.flows_active == 2, "stats created %llu active %llu",
	      (unsigned long long)st.flows_created, (unsigned long long)st.flows_active);
	fl_table_free(t);
}

/* A packet does not move its flow in the idle list (the list keeps the time the
 * flow was queued); expire() puts a due head that saw packets since at the tail.
 * The flow behind it still ends on time, and the busy one when it is idle. */
static void test_idle_requeue(void)
{
	struct fl_table *t = table(1024, 0);
	feed(t, pkt(A, 1100, B, 53, 17, 0, 0, 10), 1 * S);   /* queued first */
	feed(t, pkt(A, 1101, B, 53, 17, 0, 0, 10), 2 * S);
	feed(t, pkt(A, 1100, B, 53, 17, 0, 0, 10), 100 * S); /* seen again, not moved */
	fl_table_expire(t, 121 * S);
	CHECK(nrec == 0, "a flow seen at 100 s ended at 121 s (%d records)", nrec);
	fl_table_expire(t, 122 * S);
	CHECK(nrec == 1 && recs[0].key.sport == 1101, "the idle flow behind the busy one (%d records, port %u)",
	      nrec, nrec ? recs[0].key.sport : 0);
	fl_table_expire(t, 219 * S);
	CHECK(nrec == 1, "the busy flow ended before its idle timeout");
	fl_table_expire(t, 220 * S);
	CHECK(nrec == 2 && recs[1].key.sport == 1100 && recs[1].pkts[0] == 2, "the busy flow's idle end");
	fl_table_free(t);
}

static void test_active(void)
{
	struct fl_table *t = table(1024, 60 * S);
	for (int i = 0; i <= 15; i++) { /* a packet every 10 s for 150 s */
		uint64_t now = (uint64_t)i * 10 * S;
		feed(t, pkt(A, 4000, B, 5000, 17, 0, 0, 1), now);
		fl_table_expire(t, now);
	}
	CHECK(nrec == 2, "two periodic records, got %d", nrec);
	CHECK(recs[0].end == FL_END_ACTIVE && recs[1].end == FL_END_ACTIVE, "periodic");
	CHECK(recs[0].id == recs[1].id, "same id");
	CHECK(recs[0].pkts[0] == 7 && recs[1].pkts[0] == 13, "cumulative counters %llu %llu",
	      (unsigned long long)recs[0].pkts[0], (unsigned long long)recs[1].pkts[0]);
	/* Nothing new: no periodic record, then the idle end. */
	fl_table_expire(t, 200 * S);
	CHECK(nrec == 3 && recs[2].end == FL_END_ACTIVE && recs[2].pkts[0] == 16, "last periodic with new packets");
	fl_table_expire(t, 260 * S);
	CHECK(nrec == 3, "no periodic record without new packets");
	fl_table_expire(t, 270 * S);
	CHECK(nrec == 4 && recs[3].end == FL_END_IDLE && recs[3].id == recs[0].id && recs[3].pkts[0] == 16, "final");
	fl_table_free(t);
}

static void test_eviction(void)
{
	struct fl_table *t = table(4, 0);
	for (int i = 0; i < 4; i++)
		feed(t, pkt(A, (uint16_t)(100 + i), B, 80, 17, 0, 0, 1), (uint64_t)(i + 1) * S);
	feed(t, pkt(A, 100, B, 80, 17, 0, 0, 1), 10 * S); /* flow 100 is now the most recent */
	CHECK(nrec == 0, "nothing evicted yet");
	feed(t, pkt(A, 104, B, 80, 17, 0, 0, 1), 11 * S);
	CHECK(nrec == 1 && recs[0].end == FL_END_EVICTED && recs[0].key.sport == 101, "LRU evicted (%d, port %u)", nrec, recs[0].key.sport);
	feed(t, pkt(A, 105, B, 80, 17, 0, 0, 1), 12 * S);
	CHECK(nrec == 2 && recs[1].key.sport == 102, "next LRU evicted");
	struct fl_stats st;
	fl_table_stats(t, &st);
	CHECK(st.evicted == 2 && st.flows_active == 4 && st.flows_created == 6, "stats evicted %llu",
	      (unsigned long long)st.evicted);
	fl_table_flush(t);
	CHECK(nrec == 6, "flush the rest");
	fl_table_stats(t, &st);
	CHECK(st.records == 6 && st.flows_active == 0 && st.packets == 7, "records %llu packets %llu",
	      (unsigned long long)st.records, (unsigned long long)st.packets);
	fl_table_free(t);
}

static void test_keys(void)
{
	struct fl_table *t = table(1024, 0);
	/* ICMP echo request and reply are one flow; the Community ID is the spec's. */
	feed(t, pkt("192.168.0.89", 8, "192.168.0.1", 0, 1, 0, 0, 56), 1 * S);
	feed(t, pkt("192.168.0.1", 0, "192.168.0.89", 0, 1, 0, 0, 56), 1 * S + 5);
	/* VLAN and observation point separate flows. */
	struct dc_packet p = pkt(A, 1, B, 2, 17, 0, 0, 0);
	feed(t, p, 2 * S);
	p.vlan_depth = 1;
	p.vlan[0] = 100;
	feed(t, p, 2 * S);
	fl_table_packet(t, 8, &p, NULL, 2 * S, NULL, NULL);
	/* Fragments: the first counts to the ported flow, an unrelated later one to ports 0. */
	p = pkt(A, 7000, B, 53, 17, 0, 0, 1400);
	p.frag = DC_FRAG_FIRST;
	feed(t, p, 3 * S);
	p = pkt(A, 0, B, 0, 17, 0, 0, 600);
	p.frag = DC_FRAG_LATER;
	p.l4_off = 0;
	p.ip_id = 2; /* not the first fragment's datagram (ip_id 0) */
	feed(t, p, 3 * S);
	/* IPv6. */
	feed(t, pkt("2001:db8::1", 5555, "2001:db8::2", 443, 6, DC_TCP_SYN, 1, 0), 4 * S);
	feed(t, pkt("2001:db8::2", 443, "2001:db8::1", 5555, 6, DC_TCP_SYN | DC_TCP_ACK, 1, 0), 4 * S);
	/* Malformed and non-IP packets are skipped. */
	p = pkt(A, 1, B, 2, 17, 0, 0, 0);
	p.reason = DC_R_TRUNC_UDP;
	CHECK(feed(t, p, 5 * S) == -EINVAL, "malformed is -EINVAL");
	p.reason = DC_NOT_IP;
	p.inner.family = 0;
	CHECK(feed(t, p, 5 * S) == -EINVAL, "not ip is -EINVAL");

	fl_table_flush(t);
	CHECK(nrec == 7, "records %d", nrec);
	int icmp = 0, frag_first = 0, frag_later = 0, v6 = 0, vlan = 0, obs8 = 0;
	for (int i = 0; i < nrec && i < MAXREC; i++) {
		struct fl_record *r = &recs[i];
		if (r->key.proto == 1) {
			icmp++;
			CHECK(r->pkts[0] == 1 && r->pkts[1] == 1, "icmp both ways");
			CHECK(strcmp(r->community_id, "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=") == 0, "icmp cid %s", r->community_id);
		}
		if (r->key.sport == 7000) {
			frag_first++;
			CHECK(r->frags == 1 && r->payload[0] == 1400, "first fragment");
		}
		if (r->key.proto == 17 && r->key.sport == 0 && r->key.dport == 0) {
			frag_later++;
			CHECK(r->frags == 1 && r->payload[0] == 600, "later fragment");
		}
		if (r->key.family == 6) {
			v6++;
			CHECK(r->pkts[0] == 1 && r->pkts[1] == 1 && r->key.sport == 5555, "v6 both ways");
		}
		if (r->vlan == 100 && r->obs_id == 7)
			vlan++;
		if (r->obs_id == 8)
			obs8++;
	}
	CHECK(icmp == 1 && frag_first == 1 && frag_later == 1 && v6 == 1 && vlan == 1 && obs8 == 1,
	      "keys icmp %d ff %d fl %d v6 %d vlan %d obs8 %d", icmp, frag_first, frag_later, v6, vlan, obs8);
	struct fl_stats st;
	fl_table_stats(t, &st);
	CHECK(st.skipped == 2 && st.packets == 9, "skipped %llu packets %llu",
	      (unsigned long long)st.skipped, (unsigned long long)st.packets);
	fl_table_free(t);
}

/* Later fragments follow their first fragment by IP identification
 * (dc_packet.ip_id: the IPv4 id, or the IPv6 fragment header's). */
static void test_frag_map(void)
{
	struct fl_table *t = table(1024, 0);
	struct dc_packet p = pkt(A, 7001, B, 53, 17, 0, 0, 1400);
	p.frag = DC_FRAG_FIRST;
	p.ip_id = 0x1234;
	CHECK(fl_table_packet(t, 7, &p, NULL, 1 * S, NULL, NULL) == 0, "first fragment");
	p = pkt(A, 0, B, 0, 17, 0, 0, 600);
	p.frag = DC_FRAG_LATER;
	p.l4_off = 0;
	p.ip_id = 0x1234;
	CHECK(fl_table_packet(t, 7, &p, NULL, 1 * S + 1, NULL, NULL) == 0, "later fragment");
	p.ip_id = 0x1235; /* another datagram whose first fragment we never saw */
	CHECK(fl_table_packet(t, 7, &p, NULL, 1 * S + 2, NULL, NULL) == 0, "orphan fragment");
	p.ip_id = 0x1234; /* the right id but too late: the reassembly window is 30 s */
	CHECK(fl_table_packet(t, 7, &p, NULL, 40 * S, NULL, NULL) == 0, "stale fragment");

	p = pkt("2001:db8::1", 7002, "2001:db8::2", 53, 17, 0, 0, 1400);
	p.frag = DC_FRAG_FIRST;
	p.ip_id = 0xdeadbeef;
	fl_table_packet(t, 7, &p, NULL, 2 * S, NULL, NULL);
	p = pkt("2001:db8::1", 0, "2001:db8::2", 0, 17, 0, 0, 500);
	p.frag = DC_FRAG_LATER;
	p.l4_off = 0;
	p.ip_id = 0xdeadbeef;
	fl_table_packet(t, 7, &p, NULL, 2 * S + 1, NULL, NULL);
	fl_table_flush(t);

	int seen = 0;
	for (int i = 0; i < nrec && i < MAXREC; i++) {
		struct fl_record *r = &recs[i];
		if (r->key.sport == 7001) {
			seen++;
			CHECK(r->pkts[0] == 2 && r->frags == 2 && r->payload[0] == 2000, "v4 later fragment joined (%llu pkts)",
			      (unsigned long long)r->pkts[0]);
		} else if (r->key.sport == 7002) {
			seen++;
			CHECK(r->pkts[0] == 2 && r->frags == 2, "v6 later fragment joined (%llu pkts)",
			      (unsigned long long)r->pkts[0]);
		} else if (r->key.family == 4 && r->key.sport == 0) {
			seen++;
			CHECK(r->pkts[0] == 2 && r->frags == 2, "orphan and stale fragments in the ports-0 flow (%llu)",
			      (unsigned long long)r->pkts[0]);
		}
	}
	CHECK(nrec == 3 && seen == 3, "fragment records %d seen %d", nrec, seen);
	fl_table_free(t);
}

static void test_seed(void)
{
	struct fl_config c;
	fl_config_default(&c);
	c.dpi = 0;
	c.community_id_seed = 1;
	nrec = 0;
	struct fl_table *t = fl_table_new(&c, collect, NULL);
	CHECK(t != NULL, "table");
	feed(t, pkt("128.232.110.120", 34855, "66.35.250.204", 80, 6, DC_TCP_SYN, 1, 0), 1 * S);
	fl_table_flush(t);
	CHECK(nrec == 1 && strcmp(recs[0].community_id, "1:3V71V58M3Ksw/yuFALMcW0LAHvc=") == 0,
	      "seed 1 community id %s", recs[0].community_id);
	fl_table_free(t);
}

static int count_only(void *arg, const struct fl_record *r)
{
	uint64_t *n = arg;
	n[r->end]++;
	return 0;
}

/* Many more flows than the cap: every flow beyond it evicts exactly one, and
 * what remains is flushed; nothing is lost or counted twice. */
static void test_scale(void)
{
	struct fl_config c;
	fl_config_default(&c);
	c.dpi = 0;
	c.max_flows = 5000;
	uint64_t ends[FL_END_FLUSH + 1] = { 0 };
	struct fl_table *t = fl_table_new(&c, count_only, ends);
	CHECK(t != NULL, "table");
	const uint32_t n = 200000;
	for (uint32_t i = 0; i < n; i++) {
		char src[32];
		snprintf(src, sizeof(src), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		struct dc_packet p = pkt(src, (uint16_t)(1024 + (i % 50000)), B, 443, 6, DC_TCP_SYN, i, 0);
		fl_table_packet(t, 1, &p, NULL, 1 * S + i, NULL, NULL);
		/* and a reply to every other flow, hitting an existing entry */
		if (i & 1) {
			p = pkt(B, 443, src, (uint16_t)(1024 + (i % 50000)), 6, DC_TCP_SYN | DC_TCP_ACK, 7, 0);
			fl_table_packet(t, 1, &p, NULL, 1 * S + i, NULL, NULL);
		}
	}
	struct fl_stats st;
	fl_table_stats(t, &st);
	CHECK(st.flows_created == n && st.evicted == n - 5000 && st.flows_active == 5000,
	      "created %llu evicted %llu active %llu", (unsigned long long)st.flows_created,
	      (unsigned long long)st.evicted, (unsigned long long)st.flows_active);
	CHECK(st.packets == n + n / 2, "packets %llu", (unsigned long long)st.packets);
	fl_table_flush(t);
	CHECK(ends[FL_END_EVICTED] == n - 5000 && ends[FL_END_FLUSH] == 5000, "ends");
	fl_table_free(t);
}

/* Random packets (deterministic PRNG) through a tiny table with every timer
 * short: the books must balance — every created flow ends in exactly one final
 * record, packets are all accounted, and ids of final records are unique. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)rng_state;
}

static uint64_t finals, periodic;
static uint64_t last_ids[4096];
static int dup_ids;

static int books(void *arg, const struct fl_record *r)
{
	(void)arg;
	if (r->end == FL_END_ACTIVE) {
		periodic++;
		return 0;
	}
	for (uint64_t i = 0; i < finals && i < 4096; i++)
		if (last_ids[i] == r->id)
			dup_ids++;
	if (finals < 4096)
		last_ids[finals] = r->id;
	finals++;
	return 0;
}

static void test_random(void)
{
	struct fl_config c;
	fl_config_default(&c);
	c.dpi = 0;
	c.max_flows = 16;
	c.idle_timeout_us = 3 * S;
	c.active_timeout_us = 1 * S;
	c.tcp_closed_timeout_us = S / 2;
	struct fl_table *t = fl_table_new(&c, books, NULL);
	CHECK(t != NULL, "table");
	static const char *hosts[] = { "10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "fd00::2" };
	static const uint8_t protos[] = { 6, 17, 1, 58, 132, 47 };
	uint64_t ts = 1 * S, sent = 0;
	uint8_t frame[128];
	for (int i = 0; i < 3000; i++) {
		int v6 = rnd() & 1;
		const char *a = hosts[v6 ? 3 + (rnd() & 1) : rnd() % 3];
		const char *b = hosts[v6 ? 3 + (rnd() & 1) : rnd() % 3];
		struct dc_packet p = pkt(a, (uint16_t)(rnd() % 4), b, (uint16_t)(rnd() % 4), protos[rnd() % 6],
					 (uint8_t)rnd(), rnd() % 5000, rnd() % 3 ? rnd() % 1500 : 0);
		p.frag = (uint8_t)(rnd() % 8 == 0 ? 1 + rnd() % 2 : 0);
		p.vlan_depth = (uint8_t)(rnd() % 4 == 0);
		p.vlan[0] = (uint16_t)(rnd() % 2);
		for (size_t j = 0; j < sizeof(frame); j++)
			frame[j] = (uint8_t)rnd();
		p.caplen = sizeof(frame);
		ts += rnd() % (S / 4);
		CHECK(fl_table_packet(t, rnd() % 2, &p, frame, ts, NULL, NULL) == 0, "packet %d", i);
		sent++;
		if (rnd() % 3 == 0)
			fl_table_expire(t, ts);
	}
	fl_table_flush(t);
	struct fl_stats st;
	fl_table_stats(t, &st);
	CHECK(st.packets == sent, "all packets accounted (%llu of %llu)", (unsigned long long)st.packets,
	      (unsigned long long)sent);
	CHECK(finals == st.flows_created && st.flows_active == 0, "one final record per flow (%llu, %llu)",
	      (unsigned long long)finals, (unsigned long long)st.flows_created);
	CHECK(st.records == finals + periodic, "records counted");
	CHECK(dup_ids == 0, "final record ids unique");
	CHECK(periodic > 0 && st.evicted > 0, "timers and the cap were exercised (%llu, %llu)",
	      (unsigned long long)periodic, (unsigned long long)st.evicted);
	fl_table_free(t);
}

static void test_emit_error(void)
{
	struct fl_table *t = table(1, 0);
	emit_rc = -EIO;
	feed(t, pkt(A, 1, B, 2, 17, 0, 0, 0), 1 * S);
	/* The second flow evicts the first; the emit error comes back from this call. */
	CHECK(feed(t, pkt(A, 3, B, 4, 17, 0, 0, 0), 2 * S) == -EIO, "emit error reported");
	emit_rc = 0;
	CHECK(feed(t, pkt(A, 3, B, 4, 17, 0, 0, 0), 3 * S) == 0, "reported once");
	fl_table_flush(t);
	fl_table_free(t);

	struct fl_config c;
	fl_config_default(&c);
	c.max_flows = 0;
	errno = 0;
	CHECK(fl_table_new(&c, collect, NULL) == NULL && errno == EINVAL, "bad config");
}

int main(void)
{
	test_direction();
	test_synack_first_and_rtt();
	test_retrans_ooo();
	test_timeouts();
	test_idle_requeue();
	test_active();
	test_eviction();
	test_keys();
	test_frag_map();
	test_scale();
	test_seed();
	test_random();
	test_emit_error();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("flow table: all checks passed\n");
	return 0;
}
