/* The eBPF tc program (capture/tc.bpf.c) run by the kernel on crafted frames
 * (BPF_PROG_TEST_RUN): its fast path (headers read in place, untagged frames
 * without IPv4 options) and its slow path (copies: VLAN tags, IPv4 options,
 * headers beyond the linear data) must key a flow the same way, since records
 * find their kernel counters by that key.  So the same UDP packet plain, with one
 * and two VLAN tags and with IPv4 options must land on one map entry, and so on;
 * every frame must go up the ring as a flow head (an ICMP error even past the
 * heads), with its bytes.  Needs root (CAP_BPF); skips otherwise. */
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/types.h>

#include "tc_shared.h"
#include "tc.skel.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; printf("FAIL %s:%d: ", __FILE__, __LINE__); \
	printf(__VA_ARGS__); printf("\n"); } } while (0)

struct frame {
	uint8_t b[256];
	size_t n;
};

static void put(struct frame *f, const void *p, size_t n)
{
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

static void put16(struct frame *f, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(f, b, 2);
}

/* Ethernet with `tags` VLAN tags (802.1ad outer when two), then ethertype. */
static void eth(struct frame *f, int tags, uint16_t type)
{
	static const uint8_t mac[12] = {2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1};
	f->n = 0;
	put(f, mac, 12);
	if (tags == 2) {
		put16(f, 0x88a8);
		put16(f, 10);
	}
	if (tags >= 1) {
		put16(f, 0x8100);
		put16(f, 100);
	}
	put16(f, type);
}

static const uint8_t A4[4] = {10, 1, 2, 3}, B4[4] = {10, 4, 5, 6};
static const uint8_t A6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
static const uint8_t B6[16] = {0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};

/* IPv4 header (checksum not checked by the program) with optlen bytes of options. */
static void ip4(struct frame *f, uint8_t proto, int optlen, uint16_t frag, size_t l4len)
{
	uint8_t h[24] = {0};
	h[0] = (uint8_t)(0x40 | (5 + optlen / 4));
	uint16_t tot = (uint16_t)(20 + optlen + l4len);
	h[2] = (uint8_t)(tot >> 8);
	h[3] = (uint8_t)tot;
	h[6] = (uint8_t)(frag >> 8);
	h[7] = (uint8_t)frag;
	h[8] = 64;
	h[9] = proto;
	memcpy(h + 12, A4, 4);
	memcpy(h + 16, B4, 4);
	put(f, h, 20);
	if (optlen) {
		uint8_t nop[4] = {1, 1, 1, 0}; /* NOP NOP NOP EOL */
		put(f, nop, (size_t)optlen);
	}
}

static void ip6(struct frame *f, uint8_t next, size_t l4len)
{
	uint8_t h[40] = {0x60};
	h[4] = (uint8_t)(l4len >> 8);
	h[5] = (uint8_t)l4len;
	h[6] = next;
	h[7] = 64;
	memcpy(h + 8, A6, 16);
	memcpy(h + 24, B6, 16);
	put(f, h, 40);
}

static void l4ports(struct frame *f, uint16_t sport, uint16_t dport, size_t pad)
{
	put16(f, sport);
	put16(f, dport);
	uint8_t z[64] = {0};
	put(f, z, pad);
}

static struct pc_flow_key key(uint32_t ifindex, uint16_t ethertype, uint8_t family, uint8_t proto,
			      uint16_t sport, uint16_t dport)
{
	struct pc_flow_key k;
	memset(&k, 0, sizeof(k)); /* padding is part of the key */
	k.ifindex = ifindex;
	k.dir = PC_DIR_INGRESS;
	k.ethertype = ethertype;
	k.family = family;
	k.proto = proto;
	k.sport = sport;
	k.dport = dport;
	if (family == 4) {
		memcpy(k.src, A4, 4);
		memcpy(k.dst, B4, 4);
	} else if (family == 6) {
		memcpy(k.src, A6, 16);
		memcpy(k.dst, B6, 16);
	}
	return k;
}

static int nrec, rec_bad;
static size_t rec_len[64];

static int on_rec(void *ctx, void *data, size_t size)
{
	(void)ctx;
	struct pc_rec_hdr h;
	if (size < sizeof(h)) {
		rec_bad++;
		return 0;
	}
	memcpy(&h, data, sizeof(h));
	if (h.magic != PC_REC_MAGIC || !(h.flags & PC_REC_FLOW_HEAD) || h.caplen > size - sizeof(h) ||
	    h.caplen != h.wirelen || h.dir != PC_DIR_INGRESS)
		rec_bad++;
	if (nrec < 64)
		rec_len[nrec] = h.caplen;
	nrec++;
	return 0;
}

int main(void)
{
	if (geteuid() != 0) {
		printf("SKIP: the tc program test needs root (BPF_PROG_TEST_RUN)\n");
		return 77;
	}
	struct pc_tc *skel = pc_tc__open();
	if (!skel) {
		printf("SKIP: BPF open: %s\n", strerror(errno));
		return 77;
	}
	skel->rodata->flow_packets = 16;
	skel->rodata->snaplen = 256;
	int err = pc_tc__load(skel);
	if (err) {
		printf("SKIP: BPF load: %s\n", strerror(-err));
		pc_tc__destroy(skel);
		return 77;
	}
	int prog = bpf_program__fd(skel->progs.pc_tc_ingress);
	int map = bpf_map__fd(skel->maps.flows);
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(skel->maps.ring), on_rec, NULL, NULL);
	CHECK(rb, "ring buffer");

	struct frame fr[48];
	size_t n = 0, sent_len[48];
	/* 0-3: one UDP packet: plain (fast path), one tag, two tags, IPv4 options */
	for (int tags = 0; tags <= 2; tags++, n++) {
		eth(&fr[n], tags, 0x0800);
		ip4(&fr[n], 17, 0, 0, 12);
		l4ports(&fr[n], 1111, 53, 8);
	}
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 17, 4, 0, 12);
	l4ports(&fr[n++], 1111, 53, 8);
	/* 4-5: IPv6 TCP, plain and tagged */
	for (int tags = 0; tags <= 1; tags++, n++) {
		eth(&fr[n], tags, 0x86dd);
		ip6(&fr[n], 6, 24);
		l4ports(&fr[n], 40000, 443, 20);
	}
	/* 6: ICMP echo request (type 8, code 0); 7: ICMPv6 echo request (128, 0) */
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 1, 0, 0, 8);
	l4ports(&fr[n++], 0x0800, 0x1234, 4);
	eth(&fr[n], 0, 0x86dd);
	ip6(&fr[n], 58, 8);
	l4ports(&fr[n++], 0x8000, 0x1234, 4);
	/* 8: a later IPv4 fragment (offset 8 bytes): no ports */
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 17, 0, 1, 12);
	l4ports(&fr[n++], 7777, 8888, 8);
	/* 9: the IPv4 ethertype over a header of version 6 (the kernel's test run
	 * refuses a frame cut inside its IPv4 header); 10: ARP */
	eth(&fr[n], 0, 0x0800);
	uint8_t bad[20] = {0x65};
	put(&fr[n++], bad, sizeof(bad));
	eth(&fr[n], 0, 0x0806);
	uint8_t arp[28] = {0, 1, 8, 0, 6, 4, 0, 1};
	put(&fr[n++], arp, sizeof(arp));
	/* 11: UDP whose ports are cut off (the frame ends after the IPv4 header) */
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 17, 0, 0, 0);
	n++;
	/* 12: ICMP destination unreachable (3, 1) between the same hosts; 13: an echo
	 * request behind a VLAN tag (slow path): the same ICMP flow as 6, whose
	 * entry keeps the first packet's type and code */
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 1, 0, 0, 8);
	l4ports(&fr[n++], 0x0301, 0, 4);
	eth(&fr[n], 1, 0x0800);
	ip4(&fr[n], 1, 0, 0, 8);
	l4ports(&fr[n++], 0x0800, 0x1234, 4);
	/* 14-27: 14 more echo requests, the last past the flow's 16 heads (no ring
	 * record); 28: fragmentation needed (3, 4): an ICMP error goes up anyway */
	for (int i = 0; i < 14; i++, n++) {
		eth(&fr[n], 0, 0x0800);
		ip4(&fr[n], 1, 0, 0, 8);
		l4ports(&fr[n], 0x0800, 0x1234, 4);
	}
	eth(&fr[n], 0, 0x0800);
	ip4(&fr[n], 1, 0, 0, 8);
	l4ports(&fr[n++], 0x0304, 0x05dc, 4);

	for (size_t i = 0; i < n; i++) {
		uint8_t out[256];
		DECLARE_LIBBPF_OPTS(bpf_test_run_opts, o, .data_in = fr[i].b, .data_size_in = (uint32_t)fr[i].n,
				    .data_out = out, .data_size_out = sizeof(out), .repeat = 1);
		err = bpf_prog_test_run_opts(prog, &o);
		CHECK(err == 0 && o.retval == 0, "frame %zu: run %d retval %u", i, err, o.retval);
		sent_len[i] = fr[i].n;
	}

	/* The test run's skb is on the namespace's loopback device. */
	uint32_t lo = if_nametoindex("lo");
	struct {
		const char *what;
		struct pc_flow_key k;
		uint64_t pkts;
	} want[] = {
		{"UDP plain/VLAN/QinQ/options", key(lo, 0x0800, 4, 17, 1111, 53), 4},
		{"IPv6 TCP plain/VLAN", key(lo, 0x86dd, 6, 6, 40000, 443), 2},
		/* ICMP without type/code in the key (tc_shared.h) */
		{"ICMP echo/unreachable/echoes/frag needed", key(lo, 0x0800, 4, 1, 0, 0), 18},
		{"ICMPv6 echo", key(lo, 0x86dd, 6, 58, 0, 0), 1},
		{"later fragment", key(lo, 0x0800, 4, 17, 0, 0), 1},
		{"IPv4 ethertype, bad version", key(lo, 0x0800, 0, 0, 0, 0), 1},
		{"ARP", key(lo, 0x0806, 0, 0, 0, 0), 1},
		{"UDP without ports", key(lo, 0x0800, 4, 17, 0, 0), 0}, /* see below */
	};
	/* The cut UDP datagram keys like the later fragment (addresses, no ports):
	 * one entry with both. */
	want[4].pkts = 2;
	want[7].pkts = 2;
	uint64_t total = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		struct pc_flow_val v;
		memset(&v, 0, sizeof(v));
		int r = bpf_map_lookup_elem(map, &want[i].k, &v);
		CHECK(r == 0, "%s: no map entry", want[i].what);
		CHECK(r != 0 || v.pkts == want[i].pkts, "%s: %llu packets, want %llu", want[i].what,
		      (unsigned long long)v.pkts, (unsigned long long)want[i].pkts);
		/* ICMP: the 17th packet is past the heads, the error after it is not */
		uint64_t delivered = i == 2 ? v.pkts - 1 : v.pkts;
		CHECK(r != 0 || v.delivered == delivered, "%s: %u of %llu delivered, want %llu", want[i].what,
		      v.delivered, (unsigned long long)v.pkts, (unsigned long long)delivered);
		uint16_t icmp_first = i == 2 ? 0x0800 : i == 3 ? 0x8000 : 0;
		CHECK(r != 0 || v.icmp_first == icmp_first, "%s: first ICMP type/code %#x, want %#x",
		      want[i].what, v.icmp_first, icmp_first);
		if (i != 7)
			total += want[i].pkts;
	}
	uint64_t entries = 0;
	struct pc_flow_key k, next;
	void *prev = NULL;
	while (bpf_map_get_next_key(map, prev, &next) == 0) {
		k = next;
		prev = &k;
		entries++;
	}
	CHECK(entries == 7, "%llu map entries, want 7 (one per distinct key)", (unsigned long long)entries);
	CHECK(total == n, "%llu packets counted of %zu", (unsigned long long)total, n);

	if (rb)
		ring_buffer__consume(rb);
	/* every frame but the 17th ICMP one (27), in order; the ICMP frames are all
	 * of one size, so the lengths still line up index by index */
	CHECK(nrec == (int)n - 1 && rec_bad == 0, "%d ring records (%d bad) for %zu frames, want %zu", nrec,
	      rec_bad, n, n - 1);
	for (int i = 0; i < nrec && i < (int)n; i++)
		CHECK(rec_len[i] == sent_len[i < 27 ? i : i + 1], "record %d: %zu bytes of %zu", i, rec_len[i],
		      sent_len[i < 27 ? i : i + 1]);

	ring_buffer__free(rb);
	pc_tc__destroy(skel);
	if (failures)
		return 1;
	printf("ok: %zu frames, fast and slow paths key alike, every flow head and ICMP error up the ring\n", n);
	return 0;
}
