/* kube_nat: translated connections found from either side of the NAT, by time,
 * bounded; and (as root) a real conntrack listener opens and closes.  The lab
 * test (tests/lab/lab-names.sh) runs it against kube-proxy-style nftables. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { failures++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static struct kube_nat_tuple tup(int proto, const char *s, uint16_t sp, const char *d, uint16_t dp)
{
	struct kube_nat_tuple t;
	memset(&t, 0, sizeof(t));
	t.proto = (uint8_t)proto;
	t.sport = sp;
	t.dport = dp;
	if (strchr(s, ':')) {
		t.family = 6;
		inet_pton(AF_INET6, s, t.src);
		inet_pton(AF_INET6, d, t.dst);
	} else {
		t.family = 4;
		inet_pton(AF_INET, s, t.src);
		inet_pton(AF_INET, d, t.dst);
	}
	return t;
}

static int addr_is(const uint8_t *a, const char *want)
{
	uint8_t w[16] = {0};
	if (strchr(want, ':'))
		return inet_pton(AF_INET6, want, w) == 1 && !memcmp(a, w, 16);
	return inet_pton(AF_INET, want, w) == 1 && !memcmp(a, w, 4);
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

#define S 1000000ull

int main(void)
{
	struct kube_nat_config cfg;
	kube_nat_config_default(&cfg);
	struct kube_nat *n = kube_nat_new_empty(&cfg);
	CHECK(n != NULL, "new");
	uint64_t t0 = now_us() - 300 * S;
	struct kube_nat_answer a;

	/* DNS through the kube-dns ClusterIP, DNATed to coredns */
	struct kube_nat_tuple o1 = tup(IPPROTO_UDP, "10.244.1.12", 40000, "10.96.0.10", 53);
	struct kube_nat_tuple r1 = tup(IPPROTO_UDP, "10.244.1.11", 53, "10.244.1.12", 40000);
	CHECK(kube_nat_feed(n, &o1, &r1, 0, t0) == 0, "feed");
	CHECK(kube_nat_lookup(n, &o1, t0, &a) == 0 && a.seen_as == KUBE_NAT_ORIGINAL &&
	      addr_is(a.reply.src, "10.244.1.11") && a.reply.sport == 53, "before DNAT: the backend");
	struct kube_nat_tuple post1 = tup(IPPROTO_UDP, "10.244.1.12", 40000, "10.244.1.11", 53);
	CHECK(kube_nat_lookup(n, &post1, t0, &a) == 0 && a.seen_as == KUBE_NAT_REPLY &&
	      addr_is(a.orig.dst, "10.96.0.10") && a.orig.dport == 53, "after DNAT: the VIP");
	struct kube_nat_tuple tcp1 = o1;
	tcp1.proto = IPPROTO_TCP;
	CHECK(kube_nat_lookup(n, &tcp1, t0, &a) == -ENOENT, "another protocol is another connection");
	CHECK(kube_nat_lookup(n, &o1, t0 - 60 * S, &a) == -ENOENT, "a flow long before it: not this one");
	CHECK(kube_nat_lookup(n, &o1, t0 - 2 * S, &a) == 0, "the event may come a little after the packet");

	/* NodePort from another node, DNATed and masqueraded (SNAT) */
	struct kube_nat_tuple o2 = tup(IPPROTO_TCP, "172.18.0.12", 5000, "172.18.0.11", 30080);
	struct kube_nat_tuple r2 = tup(IPPROTO_TCP, "10.244.1.10", 8080, "10.244.1.1", 61000);
	kube_nat_feed(n, &o2, &r2, 0, t0);
	struct kube_nat_tuple post2 = tup(IPPROTO_TCP, "10.244.1.1", 61000, "10.244.1.10", 8080);
	CHECK(kube_nat_lookup(n, &post2, t0 + S, &a) == 0 && a.seen_as == KUBE_NAT_REPLY &&
	      addr_is(a.orig.src, "172.18.0.12") && addr_is(a.orig.dst, "172.18.0.11") && a.orig.dport == 30080,
	      "after DNAT+SNAT: the real client and the NodePort");

	/* The connection ends; a later one reuses the tuple towards another backend. */
	CHECK(kube_nat_feed(n, &o1, &r1, 1, t0 + 100 * S) == 0, "destroy");
	CHECK(kube_nat_lookup(n, &o1, t0 + 50 * S, &a) == 0 && a.until_us == t0 + 100 * S,
	      "ended: still found for flows during it");
	CHECK(kube_nat_lookup(n, &o1, t0 + 200 * S, &a) == -ENOENT, "not for a flow after it ended");
	struct kube_nat_tuple r1b = tup(IPPROTO_UDP, "10.244.2.53", 53, "10.244.1.12", 40000);
	kube_nat_feed(n, &o1, &r1b, 0, t0 + 150 * S);
	CHECK(kube_nat_lookup(n, &o1, t0 + 151 * S, &a) == 0 && addr_is(a.reply.src, "10.244.2.53"),
	      "port reuse: the new backend for the new flow");
	CHECK(kube_nat_lookup(n, &o1, t0 + 10 * S, &a) == 0 && addr_is(a.reply.src, "10.244.1.11"),
	      "port reuse: the old backend for the old flow");
	CHECK(kube_nat_lookup(n, &o1, 0, &a) == 0 && addr_is(a.reply.src, "10.244.2.53"), "ts 0: the latest");

	/* IPv6 */
	struct kube_nat_tuple o6 = tup(IPPROTO_TCP, "fd00:10:244:1::c", 40001, "fd00:10:96::50", 80);
	struct kube_nat_tuple r6 = tup(IPPROTO_TCP, "fd00:10:244:2::c", 8080, "fd00:10:244:1::c", 40001);
	kube_nat_feed(n, &o6, &r6, 0, t0);
	CHECK(kube_nat_lookup(n, &o6, t0, &a) == 0 && addr_is(a.reply.src, "fd00:10:244:2::c") &&
	      a.reply.sport == 8080, "IPv6");
	struct kube_nat_tuple bad = o6;
	bad.family = 5;
	CHECK(kube_nat_lookup(n, &bad, t0, &a) == -EINVAL, "bad family");

	/* Forgotten after history_us */
	struct kube_nat_tuple o3 = tup(IPPROTO_TCP, "10.244.1.12", 40002, "10.96.0.80", 80);
	struct kube_nat_tuple r3 = tup(IPPROTO_TCP, "10.244.2.12", 8080, "10.244.1.12", 40002);
	uint64_t old = now_us() - cfg.history_us - 60 * S;
	kube_nat_feed(n, &o3, &r3, 0, old);
	kube_nat_feed(n, &o3, &r3, 1, old + S);
	CHECK(kube_nat_lookup(n, &o3, old, &a) == -ENOENT, "ended longer ago than history_us: forgotten");
	kube_nat_close(n);

	/* A full ring overwrites the oldest */
	cfg.max_entries = 4;
	n = kube_nat_new_empty(&cfg);
	for (uint16_t i = 0; i < 6; i++) {
		struct kube_nat_tuple o = tup(IPPROTO_TCP, "10.244.1.12", (uint16_t)(50000 + i), "10.96.0.80", 80);
		struct kube_nat_tuple r = tup(IPPROTO_TCP, "10.244.2.12", 8080, "10.244.1.12", (uint16_t)(50000 + i));
		kube_nat_feed(n, &o, &r, 0, t0);
	}
	struct kube_nat_stats st;
	kube_nat_stats(n, &st);
	CHECK(st.entries == 4 && st.evicted == 2 && st.added == 6, "ring: entries %llu evicted %llu",
	      (unsigned long long)st.entries, (unsigned long long)st.evicted);
	struct kube_nat_tuple first = tup(IPPROTO_TCP, "10.244.1.12", 50000, "10.96.0.80", 80);
	struct kube_nat_tuple last = tup(IPPROTO_TCP, "10.244.1.12", 50005, "10.96.0.80", 80);
	CHECK(kube_nat_lookup(n, &first, t0, &a) == -ENOENT, "oldest overwritten");
	CHECK(kube_nat_lookup(n, &last, t0, &a) == 0, "newest kept");
	kube_nat_close(n);
	n = kube_nat_new_empty(NULL);
	CHECK(n != NULL, "defaults");
	kube_nat_close(n);

	/* Real conntrack, as root, in a namespace of our own (an empty table). */
	if (geteuid() == 0 && unshare(CLONE_NEWNET) == 0) {
		char err[256];
		n = kube_nat_open(NULL, err, sizeof(err));
		CHECK(n != NULL, "conntrack open: %s", err);
		if (n) {
			kube_nat_stats(n, &st);
			CHECK(st.dumps == 1 && st.entries == 0, "one dump of an empty table");
			kube_nat_close(n);
		}
		printf("conntrack listener opened and closed in a fresh namespace\n");
	} else {
		printf("not root: conntrack itself not opened (tests/lab/lab-names.sh does)\n");
	}
	if (failures) {
		fprintf(stderr, "%d failure(s)\n", failures);
		return 1;
	}
	printf("kube_nat: both sides of DNAT and SNAT, times, reuse, history, ring ok\n");
	return 0;
}
