/* mkflowdb — a big flow database for the API benchmarks (bench/api-bench).
 *
 *   mkflowdb PATH N [HOURS]
 *
 * N synthetic flows (e.g. 10000000) spread over the last HOURS hours (default 24)
 * ending now, written through the flow database's own writer (fdb_put_flow, indexes
 * built once at the end), so the file is what an agent would have written:
 *   - 64 observation points (pod veths of 4 nodes, overlay, underlay), pods named;
 *   - clients in 10.244.0.0/16 (about 16k addresses, some busy, most quiet), servers
 *     among 2000 addresses; ports 443 (45%), 80, 53, 8443, 5432, 6379, others;
 *   - 40 application names with a skewed mix (TLS.Google, DNS, HTTP, ...), hosts,
 *     bytes and packets from a long-tailed distribution, some VXLAN records;
 *   - a fixed seed: the same N gives the same file.
 * Prints rows/s on stderr (a measurement, never asserted). */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "flowdb.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t next(void)
{
	/* xorshift64*: fast, and deterministic across runs */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 2685821657736338717ull;
}

static double unit(void) { return (double)(next() >> 11) / 9007199254740992.0; }

/* A long tail: most values small, a few huge. */
static uint64_t tail(uint64_t lo, double alpha)
{
	double u = unit();
	if (u < 1e-9)
		u = 1e-9;
	double v = (double)lo / __builtin_pow(u, 1.0 / alpha);
	return v > 1e12 ? (uint64_t)1e12 : (uint64_t)v;
}

static const char *const apps[] = {
	"TLS.Google", "DNS", "HTTP", "TLS.Amazon", "TLS", "TLS.Microsoft", "HTTP.Azure", "TLS.Facebook", "QUIC.Google",
	"TLS.GitHub", "PostgreSQL", "Redis", "TLS.Cloudflare", "NTP", "HTTP.Prometheus", "TLS.Docker", "MQTT", "Kafka",
	"DNS.Google", "gRPC", "TLS.Slack", "SSH", "HTTP_Proxy", "ICMP", "TLS.AmazonAWS", "LDAP", "SMTP", "IMAPS",
	"TLS.Apple", "HTTP.Ubuntu", "Elasticsearch", "MySQL", "MongoDB", "TLS.Zoom", "STUN", "RTP", "SNMP", "Syslog",
	"Unknown", "TLS.Netflix",
};
#define NAPPS (sizeof(apps) / sizeof(apps[0]))
static const uint16_t app_port[NAPPS] = {
	443, 53, 80, 443, 443, 443, 80, 443, 443, 443, 5432, 6379, 443, 123, 9090, 443, 1883, 9092, 53, 8443, 443, 22,
	3128, 0, 443, 389, 25, 993, 443, 80, 9200, 3306, 27017, 443, 3478, 5004, 161, 514, 9999, 443,
};

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: mkflowdb PATH N [HOURS]\n");
		return 2;
	}
	uint64_t n = strtoull(argv[2], NULL, 10);
	double hours = argc > 3 ? atof(argv[3]) : 24.0;
	if (!n || hours <= 0) {
		fprintf(stderr, "mkflowdb: bad N or HOURS\n");
		return 2;
	}
	struct fdb_config cfg;
	fdb_config_default(&cfg);
	cfg.defer_indexes = 1;
	cfg.batch = 50000;
	cfg.auto_retain = 0;
	struct fdb *db;
	char err[512];
	if (fdb_open(argv[1], &cfg, &db, err, sizeof(err)) < 0) {
		fprintf(stderr, "mkflowdb: %s\n", err);
		return 1;
	}
	uint32_t obs[64];
	for (int i = 0; i < 64; i++) {
		char iface[32], pod[64];
		int rc;
		if (i < 60) {
			snprintf(iface, sizeof(iface), "veth%08x", 0x1a2b0000u + (unsigned)i);
			snprintf(pod, sizeof(pod), "%s/%s-%d", i % 3 ? "default" : "shop", i % 2 ? "web" : "api", i);
			rc = fdb_obs_point(db, iface, "both", pod, 1, &obs[i]);
		} else {
			snprintf(iface, sizeof(iface), i < 62 ? "vxlan%d" : "eth%d", i % 2);
			rc = fdb_obs_point(db, iface, "both", NULL, 1, &obs[i]);
		}
		if (rc < 0) {
			fprintf(stderr, "mkflowdb: %s\n", fdb_errmsg(db));
			return 1;
		}
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	uint64_t end_us = (uint64_t)now.tv_sec * 1000000u, span_us = (uint64_t)(hours * 3600e6);
	struct fl_record r;
	for (uint64_t i = 0; i < n; i++) {
		memset(&r, 0, sizeof(r));
		r.id = i + 1;
		unsigned o = (unsigned)(next() % 64);
		r.obs_id = obs[o];
		r.end = FL_END_IDLE;
		/* skewed app mix: squaring a uniform favours the first names */
		double u = unit();
		unsigned k = (unsigned)(u * u * NAPPS);
		if (k >= NAPPS)
			k = NAPPS - 1;
		r.key.family = 4;
		/* clients: a few busy addresses, most quiet (16k in all) */
		uint32_t c = (next() % 4 == 0) ? (uint32_t)(next() % 64) : (uint32_t)(next() % 16384);
		r.key.src[0] = 10; r.key.src[1] = 244; r.key.src[2] = (uint8_t)(c >> 8); r.key.src[3] = (uint8_t)(c & 0xff);
		uint32_t s = (uint32_t)(next() % 2000);
		r.key.dst[0] = s < 1000 ? 10 : 172; r.key.dst[1] = s < 1000 ? 96 : 16;
		r.key.dst[2] = (uint8_t)(s / 250); r.key.dst[3] = (uint8_t)(s % 250 + 1);
		r.key.proto = app_port[k] == 53 || app_port[k] == 123 || app_port[k] == 3478 || app_port[k] == 5004 ||
			app_port[k] == 161 || app_port[k] == 514 ? 17 : app_port[k] == 0 ? 1 : 6;
		r.key.sport = (uint16_t)(32768 + next() % 28000);
		r.key.dport = app_port[k];
		if (o >= 60 && o < 62) {
			r.tunnel = 1; /* DC_TUN_VXLAN */
			r.has_vni = 1;
			r.vni = 1;
			r.outer.family = 4;
			r.outer.proto = 17;
			r.outer.src[0] = 172; r.outer.src[1] = 18; r.outer.src[3] = (uint8_t)(11 + o % 2);
			r.outer.dst[0] = 172; r.outer.dst[1] = 18; r.outer.dst[3] = (uint8_t)(12 - o % 2);
			r.outer.sport = (uint16_t)(40000 + next() % 20000);
			r.outer.dport = 8472;
		} else {
			r.outer = r.key;
		}
		/* flows are written in time order, as an agent writes them */
		r.last_us = end_us - span_us + span_us * i / n;
		uint64_t dur = tail(1000, 1.2);
		if (dur > 600000000u)
			dur = 600000000u;
		r.first_us = r.last_us - dur;
		r.pkts[0] = tail(2, 1.3);
		r.pkts[1] = tail(1, 1.3);
		r.bytes[0] = r.pkts[0] * (60 + next() % 500);
		r.bytes[1] = r.pkts[1] * (60 + next() % 1400);
		r.payload[0] = r.bytes[0] / 2;
		r.payload[1] = r.bytes[1] / 2;
		if (r.key.proto == 6) {
			r.tcp_flags[0] = r.tcp_flags[1] = 0x1b;
			r.syn = r.synack = 1;
			r.fin = 2;
			r.rtt_us = (int64_t)tail(80, 1.5);
			r.retrans[0] = next() % 50 == 0 ? (uint32_t)(next() % 5 + 1) : 0;
		} else {
			r.rtt_us = -1;
		}
		r.dns_rcode = app_port[k] == 53 ? (uint8_t)(next() % 20 == 0 ? 3 : 0) : 0xff;
		snprintf(r.community_id, sizeof(r.community_id), "1:%016" PRIx64 "%08" PRIx64 "=", next(), i);
		snprintf(r.proto, sizeof(r.proto), "%s", apps[k]);
		snprintf(r.category, sizeof(r.category), "%s", k % 3 ? "Web" : "Network");
		if (app_port[k] == 53)
			snprintf(r.host, sizeof(r.host), "svc%u.default.svc.cluster.local", (unsigned)(next() % 500));
		else if (app_port[k] == 443 || app_port[k] == 80)
			snprintf(r.host, sizeof(r.host), "host%u.example.com", (unsigned)(next() % 5000));
		r.dpi_done = 1;
		int rc = fdb_put_flow(db, &r);
		if (rc < 0) {
			fprintf(stderr, "mkflowdb: row %" PRIu64 ": %s\n", i, fdb_errmsg(db));
			return 1;
		}
		if (i && i % 1000000 == 0)
			fprintf(stderr, "mkflowdb: %" PRIu64 " rows\n", i);
	}
	int rc = fdb_close(db); /* builds the indexes */
	clock_gettime(CLOCK_MONOTONIC, &b);
	double secs = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	if (rc < 0) {
		fprintf(stderr, "mkflowdb: close: %s\n", strerror(-rc));
		return 1;
	}
	fprintf(stderr, "mkflowdb: %" PRIu64 " flows in %.1f s (%.0f rows/s, indexes included)\n", n, secs,
		(double)n / secs);
	return 0;
}
