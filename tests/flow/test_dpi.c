/* nDPI through the flow table on frames built here and decoded by dc_decode(),
 * so classification is tested without the corpus: a DNS query/response over UDP
 * and an HTTP exchange over TCP with a full handshake. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "flow.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static struct fl_record last;
static int nrec;

static int collect(void *arg, const struct fl_record *r)
{
	(void)arg;
	if (r->end != FL_END_ACTIVE) {
		last = *r;
		nrec++;
	}
	return 0;
}

struct ep {
	const char *ip;
	uint16_t port;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }

/* Ethernet + IPv4 + UDP/TCP + payload into f; returns the frame length. */
static uint32_t frame(uint8_t *f, struct ep s, struct ep d, int tcp, uint8_t flags, uint32_t seq,
		      uint32_t ack, const void *payload, uint32_t plen)
{
	uint32_t l4len = tcp ? 20 : 8;
	memset(f, 0, 14 + 20 + l4len);
	memcpy(f, "\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00", 14);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + l4len + plen));
	ip[8] = 64;
	ip[9] = tcp ? 6 : 17;
	inet_pton(AF_INET, s.ip, ip + 12);
	inet_pton(AF_INET, d.ip, ip + 16);
	uint8_t *l4 = ip + 20;
	put16(l4, s.port);
	put16(l4 + 2, d.port);
	if (tcp) {
		put32(l4 + 4, seq);
		put32(l4 + 8, ack);
		l4[12] = 5 << 4;
		l4[13] = flags;
		put16(l4 + 14, 65535);
	} else {
		put16(l4 + 4, (uint16_t)(8 + plen));
	}
	memcpy(l4 + l4len, payload, plen);
	return 14 + 20 + l4len + plen;
}

static struct fl_table *tbl;
static struct dc_config dcfg;

static void xmit(struct ep s, struct ep d, int tcp, uint8_t flags, uint32_t seq, uint32_t ack,
		 const void *payload, uint32_t plen, uint64_t ts)
{
	uint8_t f[2048];
	uint32_t n = frame(f, s, d, tcp, flags, seq, ack, payload, plen);
	struct dc_packet p;
	int rc = dc_decode(&dcfg, DC_LINK_ETHERNET, f, n, n, &p);
	CHECK(rc == DC_OK, "decode: %s", dc_reason_name(rc));
	CHECK(fl_table_packet(tbl, 1, &p, f, ts, NULL, NULL) == 0, "fl_table_packet");
}

static void test_dns(void)
{
	static const uint8_t query[] = {
		0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, /* id, RD, 1 question */
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x01, 0x00, 0x01,
	};
	static const uint8_t answer[] = {
		0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, /* response, rcode 0 */
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x01, 0x00, 0x01,
		0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04, 93, 184, 216, 34,
	};
	struct ep c = { "10.244.1.5", 40000 }, s = { "10.96.0.10", 53 };
	nrec = 0;
	xmit(c, s, 0, 0, 0, 0, query, sizeof(query), 1000000);
	xmit(s, c, 0, 0, 0, 0, answer, sizeof(answer), 1000300);
	fl_table_flush(tbl);
	CHECK(nrec == 1, "dns records %d", nrec);
	CHECK(strcmp(last.proto, "DNS") == 0, "dns proto %s", last.proto);
	CHECK(strcmp(last.host, "example.com") == 0, "dns host '%s'", last.host);
	CHECK(last.dns_rcode == 0, "dns rcode %u", last.dns_rcode);
	CHECK(last.dpi_done == 1, "dns detected, not guessed (%u)", last.dpi_done);
	CHECK(last.confidence == FL_CONF_DPI, "dns confidence %s", fl_confidence_name(last.confidence));
	CHECK(last.pkts[0] == 1 && last.pkts[1] == 1, "dns pkts");
	CHECK(last.key.sport == 40000, "client is the querier");
}

static void test_http(void)
{
	static const char req[] = "GET /index.html HTTP/1.1\r\nHost: web.default.svc\r\nUser-Agent: curl/7.88\r\nAccept: */*\r\n\r\n";
	static const char rsp[] = "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\nhello";
	struct ep c = { "10.244.1.5", 40001 }, s = { "10.244.2.7", 80 };
	uint64_t t = 5000000;
	nrec = 0;
	xmit(c, s, 1, DC_TCP_SYN, 100, 0, "", 0, t);
	xmit(s, c, 1, DC_TCP_SYN | DC_TCP_ACK, 900, 101, "", 0, t + 200);
	xmit(c, s, 1, DC_TCP_ACK, 101, 901, "", 0, t + 450);
	xmit(c, s, 1, DC_TCP_ACK | DC_TCP_PSH, 101, 901, req, sizeof(req) - 1, t + 500);
	xmit(s, c, 1, DC_TCP_ACK, 901, 101 + sizeof(req) - 1, "", 0, t + 700);
	xmit(s, c, 1, DC_TCP_ACK | DC_TCP_PSH, 901, 101 + sizeof(req) - 1, rsp, sizeof(rsp) - 1, t + 800);
	xmit(c, s, 1, DC_TCP_ACK | DC_TCP_FIN, 101 + sizeof(req) - 1, 901 + sizeof(rsp) - 1, "", 0, t + 900);
	xmit(s, c, 1, DC_TCP_ACK | DC_TCP_FIN, 901 + sizeof(rsp) - 1, 102 + sizeof(req) - 1, "", 0, t + 950);
	fl_table_expire(tbl, t + 11000000); /* closed TCP: ends 10 s after the last packet */
	CHECK(nrec == 1, "http records %d", nrec);
	CHECK(last.end == FL_END_TCP, "http end %u", last.end);
	CHECK(strcmp(last.proto, "HTTP") == 0, "http proto %s", last.proto);
	CHECK(strcmp(last.host, "web.default.svc") == 0, "http host '%s'", last.host);
	CHECK(strcmp(last.url, "web.default.svc/index.html") == 0 /* nDPI: host + path */, "http url '%s'", last.url);
	CHECK(last.http_status == 200, "http status %u", last.http_status);
	CHECK(last.rtt_us == 450, "rtt %lld", (long long)last.rtt_us);
	CHECK(last.pkts[0] == 4 && last.pkts[1] == 4, "pkts %llu/%llu", (unsigned long long)last.pkts[0],
	      (unsigned long long)last.pkts[1]);
	CHECK(last.payload[0] == sizeof(req) - 1 && last.payload[1] == sizeof(rsp) - 1, "payload bytes");
	CHECK(last.retrans[0] == 0 && last.retrans[1] == 0 && last.ooo[0] == 0, "no retransmissions");
	CHECK(last.fin == 2 && last.syn == 1 && last.synack == 1, "flags");
	CHECK(strcmp(last.category, "Web") == 0, "category %s", last.category);
	CHECK(last.confidence == FL_CONF_DPI, "http confidence %s", fl_confidence_name(last.confidence));
}

/* A port scan's lone SYNs: nDPI sees no payload, gives up at flow end and
 * guesses by port where the port is known (as ndpiReader: "POP3", "Match by
 * port"); an unassigned port stays Unknown with confidence unknown. */
static void test_guess(void)
{
	struct ep c = {"10.244.1.12", 51000}, pop3 = {"10.244.2.10", 110}, odd = {"10.244.2.10", 3391};
	nrec = 0;
	xmit(c, pop3, 1, 0x02, 1000, 0, "", 0, 3000000);
	fl_table_flush(tbl);
	CHECK(nrec == 1, "guess records %d", nrec);
	CHECK(last.dpi_done == 2, "gave up (%u)", last.dpi_done);
	CHECK(strcmp(last.proto, "POP3") == 0, "guessed proto %s", last.proto);
	CHECK(last.confidence == FL_CONF_BY_PORT, "guess confidence %s", fl_confidence_name(last.confidence));
	nrec = 0;
	c.port = 51001;
	xmit(c, odd, 1, 0x02, 1000, 0, "", 0, 4000000);
	fl_table_flush(tbl);
	CHECK(nrec == 1, "unknown records %d", nrec);
	CHECK(strcmp(last.proto, "Unknown") == 0, "unguessable proto %s", last.proto);
	CHECK(last.confidence == FL_CONF_UNKNOWN, "unknown confidence %s",
	      fl_confidence_name(last.confidence));
	CHECK(!strcmp(fl_confidence_name(FL_CONF_BY_IP), "by-ip") && !strcmp(fl_confidence_name(99), ""),
	      "confidence names");
}

/* Tables made and used concurrently, one per worker thread: nDPI module set-up
 * is serialized inside fl_table_new(), classification needs no locking. */
static int worker_records[2];

static int count_dns(void *arg, const struct fl_record *r)
{
	int *n = arg;
	if (strcmp(r->proto, "DNS") == 0 && strcmp(r->host, "example.com") == 0)
		(*n)++;
	return 0;
}

static void *worker(void *arg)
{
	int *n = arg;
	static const uint8_t query[] = {
		0x12, 0x34, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0x00, 0x01, 0x00, 0x01,
	};
	struct fl_config cfg;
	fl_config_default(&cfg);
	struct fl_table *t = fl_table_new(&cfg, count_dns, n);
	if (!t)
		return NULL;
	for (uint16_t port = 1000; port < 1100; port++) {
		uint8_t f[256];
		struct ep c = { "10.244.3.3", port }, s = { "10.96.0.10", 53 };
		uint32_t len = frame(f, c, s, 0, 0, 0, 0, query, sizeof(query));
		struct dc_packet p;
		dc_decode(&dcfg, DC_LINK_ETHERNET, f, len, len, &p);
		fl_table_packet(t, 1, &p, f, 1000000u + port, NULL, NULL);
	}
	fl_table_flush(t);
	fl_table_free(t);
	return NULL;
}

static void test_threads(void)
{
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		CHECK(pthread_create(&th[i], NULL, worker, &worker_records[i]) == 0, "thread");
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	CHECK(worker_records[0] == 100 && worker_records[1] == 100, "threads classified %d and %d",
	      worker_records[0], worker_records[1]);
}

int main(void)
{
	dc_config_default(&dcfg);
	struct fl_config cfg;
	fl_config_default(&cfg);
	tbl = fl_table_new(&cfg, collect, NULL);
	if (!tbl) {
		perror("fl_table_new");
		return 1;
	}
	test_dns();
	test_http();
	struct fl_stats st;
	fl_table_stats(tbl, &st);
	CHECK(st.dpi_packets >= 2 && st.flows_created == 2 && st.records == 2, "stats");
	test_guess();
	fl_table_free(tbl);
	test_threads();
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("nDPI on built frames: DNS, HTTP and guesses by port ok\n");
	return 0;
}
