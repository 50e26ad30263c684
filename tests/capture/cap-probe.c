/* cap-probe — a small driver of capture/discover and capture/live for the shell
 * tests in this folder (root only; the scripts make the namespaces).
 *
 *   cap-probe discover [INVENTORY [NODE]]     one line per interface: name class kind pod
 *   cap-probe monitor NAME TIMEOUT_S          prints "ready", then waits for NAME to appear;
 *                                             prints "seen NAME CLASS after MS ms", exit 0
 *                                             (exit 1 when it did not appear in time)
 *   cap-probe count ebpf|pcap IFACE           prints "ready" once capturing; on SIGTERM/SIGINT
 *                                             prints the counters (key=value) and exits
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "decode.h"
#include "capture.h"

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int do_discover(const char *inv_path, const char *node)
{
	struct cap_inventory *inv = NULL;
	struct cap_iface *list;
	size_t n;
	char err[256];
	if (inv_path && cap_inventory_load(inv_path, &inv, err, sizeof(err)) < 0) {
		fprintf(stderr, "cap-probe: %s\n", err);
		return 1;
	}
	int rc = cap_discover(inv, node, &list, &n);
	if (rc < 0) {
		fprintf(stderr, "cap-probe: discover: %s\n", strerror(-rc));
		cap_inventory_free(inv);
		return 1;
	}
	for (size_t i = 0; i < n; i++)
		printf("%s %s %s %s\n", list[i].name, cap_if_class_name(list[i].cls),
		       list[i].kind[0] ? list[i].kind : "-", list[i].pod[0] ? list[i].pod : "-");
	free(list);
	cap_inventory_free(inv);
	return 0;
}

struct mon_ctx {
	const char *want;
	int seen;
	int cls;
};

static void on_link(void *arg, int ev, const struct cap_iface *ifc)
{
	struct mon_ctx *m = arg;
	if (ev == CAP_LINK_NEW && !strcmp(ifc->name, m->want)) {
		m->seen = 1;
		m->cls = ifc->cls;
	}
}

static int do_monitor(const char *name, int timeout_s)
{
	struct cap_disc_monitor *mon;
	struct mon_ctx m = {name, 0, 0};
	if (cap_disc_monitor_open(NULL, NULL, &mon) < 0) {
		perror("cap-probe: monitor");
		return 1;
	}
	printf("ready\n");
	fflush(stdout);
	uint64_t t0 = mono_ms(), seen_at = 0;
	while (!m.seen && mono_ms() - t0 < (uint64_t)timeout_s * 1000u) {
		struct pollfd p = {.fd = cap_disc_monitor_fd(mon), .events = POLLIN};
		if (poll(&p, 1, 100) > 0 && cap_disc_monitor_read(mon, on_link, &m) < 0)
			break;
		if (m.seen)
			seen_at = mono_ms();
	}
	cap_disc_monitor_close(mon);
	if (!m.seen) {
		printf("not-seen %s\n", name);
		return 1;
	}
	/* Time from "ready" to the event; the script reports it, it does not assert it. */
	printf("seen %s %s after %llu ms\n", name, cap_if_class_name(m.cls), (unsigned long long)(seen_at - t0));
	return 0;
}

struct count_ctx {
	uint64_t total, echo_req, udp7777, udp6;
};

static void on_pkt(void *arg, const struct cap_packet *p)
{
	struct count_ctx *c = arg;
	const uint8_t *d = p->data;
	c->total++;
	/* IPv6 UDP to port 7778 (fixed 40-byte header, as the tests send it). */
	if (p->caplen >= 14 + 40 + 4 && d[12] == 0x86 && d[13] == 0xdd && d[14 + 6] == 17 &&
	    ((d[14 + 40 + 2] << 8) | d[14 + 40 + 3]) == 7778)
		c->udp6++;
	/* Ethernet + IPv4 without VLAN, as the tests send it; everything bounds-checked. */
	if (p->caplen < 14 + 20 || d[12] != 0x08 || d[13] != 0x00 || (d[14] >> 4) != 4)
		return;
	uint32_t ihl = (d[14] & 0x0f) * 4u;
	if (ihl < 20 || p->caplen < 14 + ihl + 4)
		return;
	const uint8_t *l4 = d + 14 + ihl;
	if (d[23] == 1 && l4[0] == 8)
		c->echo_req++;
	if (d[23] == 17 && ((l4[2] << 8) | l4[3]) == 7777)
		c->udp7777++;
}

static uint64_t rx_packets(const char *ifname)
{
	char path[128];
	unsigned long long v = 0;
	snprintf(path, sizeof(path), "/sys/class/net/%s/statistics/rx_packets", ifname);
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

static int do_count(const char *backend, const char *ifname)
{
	struct cap_live_config cfg;
	struct cap_live *l;
	struct count_ctx c = {0};
	char err[512];
	cap_live_config_default(&cfg);
	cfg.backend = !strcmp(backend, "ebpf") ? CAP_BACKEND_EBPF : CAP_BACKEND_PCAP;
	cfg.no_fallback = 1;
	if (cap_live_open(&cfg, &l, err, sizeof(err)) < 0 || cap_live_add(l, ifname, 0, err, sizeof(err)) < 0) {
		fprintf(stderr, "cap-probe: %s\n", err);
		return 1;
	}
	struct sigaction sa = {.sa_handler = on_sig};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	uint64_t rx0 = rx_packets(ifname);
	printf("ready\n");
	fflush(stdout);
	while (!stop) {
		int r = cap_live_poll(l, 100, on_pkt, &c);
		if (r < 0 && r != -EINTR) {
			fprintf(stderr, "cap-probe: poll: %s\n", strerror(-r));
			break;
		}
	}
	/* Drain what is already queued. */
	while (cap_live_poll(l, 0, on_pkt, &c) > 0)
		;
	uint64_t rx1 = rx_packets(ifname);
	struct cap_live_stats st;
	uint64_t in_p = 0, in_b = 0;
	cap_live_stats(l, &st);
	int have_counted = cap_live_counted(l, if_nametoindex(ifname), CAP_DIR_IN, &in_p, &in_b) == 0;
	printf("backend=%s received=%llu echo_req=%llu udp7777=%llu udp6=%llu kernel_drops=%llu ring_drops=%llu "
	       "bad_records=%llu rx_delta=%llu",
	       cap_backend_name(cap_live_backend(l)), (unsigned long long)c.total, (unsigned long long)c.echo_req,
	       (unsigned long long)c.udp7777, (unsigned long long)c.udp6, (unsigned long long)st.kernel_drops,
	       (unsigned long long)st.ring_drops, (unsigned long long)st.bad_records,
	       (unsigned long long)(rx1 - rx0));
	if (have_counted) {
		/* The tests' injected UDP flows: 10.99.0.1:10000..10004 -> 10.99.0.2:7777. */
		uint64_t udp_p = 0;
		for (uint16_t sp = 10000; sp < 10005; sp++) {
			struct dc_tuple t = {.family = 4, .proto = 17, .sport = sp, .dport = 7777};
			uint64_t p = 0, b = 0;
			inet_pton(AF_INET, "10.99.0.1", t.src);
			inet_pton(AF_INET, "10.99.0.2", t.dst);
			if (cap_live_flow_counters(l, if_nametoindex(ifname), &t, &p, &b) == 0)
				udp_p += p;
		}
		/* And the IPv6 one: [2001:db8::1]:20000 -> [2001:db8::2]:7778. */
		struct dc_tuple t6 = {.family = 6, .proto = 17, .sport = 20000, .dport = 7778};
		uint64_t p6 = 0, b6 = 0;
		inet_pton(AF_INET6, "2001:db8::1", t6.src);
		inet_pton(AF_INET6, "2001:db8::2", t6.dst);
		cap_live_flow_counters(l, if_nametoindex(ifname), &t6, &p6, &b6);
		printf(" counted_in=%llu udp7777_counted=%llu udp6_counted=%llu", (unsigned long long)in_p,
		       (unsigned long long)udp_p, (unsigned long long)p6);
	}
	printf("\n");
	cap_live_close(l);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "discover"))
		return do_discover(argc > 2 ? argv[2] : NULL, argc > 3 ? argv[3] : NULL);
	if (argc == 4 && !strcmp(argv[1], "monitor"))
		return do_monitor(argv[2], atoi(argv[3]));
	if (argc == 4 && !strcmp(argv[1], "count"))
		return do_count(argv[2], argv[3]);
	fprintf(stderr, "usage: cap-probe discover [INVENTORY [NODE]] | monitor NAME TIMEOUT_S | count ebpf|pcap IFACE\n");
	return 2;
}
