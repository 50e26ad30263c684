/* Hand-built flow records and small helpers shared by the store tests.  Records
 * are made here, not by flow/, so these tests do not depend on the flow table. */
#ifndef PODCAP_TEST_STORE_FIXTURE_H
#define PODCAP_TEST_STORE_FIXTURE_H

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "flow.h"

/* Base time of the fixture: 2024-10-01T12:00:00Z. */
#define FX_T0_US 1727784000000000ULL

static inline void fx_addr(struct dc_tuple *t, const char *src, const char *dst)
{
	if (strchr(src, ':')) {
		t->family = 6;
		inet_pton(AF_INET6, src, t->src);
		inet_pton(AF_INET6, dst, t->dst);
	} else {
		t->family = 4;
		inet_pton(AF_INET, src, t->src);
		inet_pton(AF_INET, dst, t->dst);
	}
}

/* A plain TCP flow; callers change what the test is about. */
static inline void fx_record(struct fl_record *r, uint64_t id, const char *src, uint16_t sport,
			     const char *dst, uint16_t dport, uint64_t last_us)
{
	memset(r, 0, sizeof(*r));
	r->id = id;
	r->end = FL_END_IDLE;
	fx_addr(&r->key, src, dst);
	r->key.proto = 6;
	r->key.sport = sport;
	r->key.dport = dport;
	r->outer = r->key;
	r->first_us = last_us - 1000000;
	r->last_us = last_us;
	r->pkts[0] = 10; r->pkts[1] = 8;
	r->bytes[0] = 1200; r->bytes[1] = 9000;
	r->payload[0] = 400; r->payload[1] = 8000;
	r->tcp_flags[0] = 0x1b; r->tcp_flags[1] = 0x1b;
	r->syn = 1; r->synack = 1; r->fin = 2;
	r->rtt_us = 1500;
	r->dns_rcode = 0xff;
	snprintf(r->community_id, sizeof(r->community_id), "1:fx%llu=", (unsigned long long)id);
	snprintf(r->proto, sizeof(r->proto), "Unknown");
	r->dpi_done = 2;
}

/* A synthetic flow number i: mixes IPv4/IPv6, TCP/UDP, a few protocols, so
 * indexes and queries see realistic variety. */
static inline void fx_synthetic(struct fl_record *r, uint64_t i, uint32_t obs_id)
{
	char src[64], dst[64];
	if (i % 10 == 9) {
		snprintf(src, sizeof(src), "fd00::%x", (unsigned)(i % 65000) + 1);
		snprintf(dst, sizeof(dst), "fd00:1::%x", (unsigned)(i % 251) + 1);
	} else {
		snprintf(src, sizeof(src), "10.244.%u.%u", (unsigned)(i / 250 % 250), (unsigned)(i % 250) + 1);
		snprintf(dst, sizeof(dst), "10.96.0.%u", (unsigned)(i % 50) + 1);
	}
	static const char *const protos[] = {"TLS.Google", "DNS", "HTTP", "TLS.Facebook", "Unknown"};
	static const uint16_t ports[] = {443, 53, 80, 443, 9999};
	unsigned k = (unsigned)(i % 5);
	fx_record(r, i + 1, src, (uint16_t)(32768 + i % 28000), dst, ports[k], FX_T0_US + i * 1000);
	r->obs_id = obs_id;
	if (k == 1)
		r->key.proto = 17;
	snprintf(r->proto, sizeof(r->proto), "%s", protos[k]);
	snprintf(r->host, sizeof(r->host), "svc%u.default.svc.cluster.local", (unsigned)(i % 97));
	snprintf(r->category, sizeof(r->category), "Web");
}

/* The flows the query tests know by heart, newest first:
 * 1 TLS.Facebook, 2 DNS (UDP), 3 HTTP in VXLAN (outer 192.168.50.1 -> .2),
 * 4 TLS.Google over IPv6. */
#define FX_KNOWN 4
static inline void fx_known(struct fl_record *r, uint32_t veth, uint32_t eth0)
{
	fx_record(&r[0], 1, "10.244.1.5", 40000, "157.240.1.35", 443, FX_T0_US + 50000000);
	r[0].obs_id = veth;
	snprintf(r[0].proto, sizeof(r[0].proto), "TLS.Facebook");
	snprintf(r[0].host, sizeof(r[0].host), "www.facebook.com");

	fx_record(&r[1], 2, "10.244.1.5", 5353, "10.96.0.10", 53, FX_T0_US + 40000000);
	r[1].key.proto = 17;
	r[1].obs_id = veth;
	r[1].rtt_us = -1;
	r[1].dns_rcode = 0;
	snprintf(r[1].proto, sizeof(r[1].proto), "DNS");
	snprintf(r[1].host, sizeof(r[1].host), "kubernetes.default.svc.cluster.local");

	fx_record(&r[2], 3, "10.244.1.5", 41000, "10.244.2.9", 80, FX_T0_US + 30000000);
	r[2].obs_id = eth0;
	r[2].tunnel = 1;
	r[2].has_vni = 1;
	r[2].vni = 1;
	fx_addr(&r[2].outer, "192.168.50.1", "192.168.50.2");
	r[2].outer.proto = 17;
	r[2].outer.sport = 51000;
	r[2].outer.dport = 8472;
	snprintf(r[2].proto, sizeof(r[2].proto), "HTTP");
	snprintf(r[2].host, sizeof(r[2].host), "backend, \"quoted\"");
	snprintf(r[2].url, sizeof(r[2].url), "/api/v1?x=1");
	r[2].http_status = 200;

	fx_record(&r[3], 4, "fd00::5", 42000, "2001:db8::1", 443, FX_T0_US + 10000000);
	snprintf(r[3].proto, sizeof(r[3].proto), "TLS.Google");
}

#endif
