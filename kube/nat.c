/* nat.c — which Service a connection went through: the node's conntrack table.
 *
 * kube-proxy (iptables, nftables or IPVS mode) turns a connection to a
 * ClusterIP, external IP or NodePort into one to a backend pod with DNAT (and,
 * for NodePorts and hairpins, SNAT).  The node's conntrack table holds both
 * tuples of every such connection: the original (client -> VIP:port) and the
 * reply (backend -> client, or -> the SNAT address).  A flow record seen
 * before DNAT (on the client's veth) has the original tuple; one seen after it
 * (on the underlay, the backend's veth) has the reply tuple reversed.  This
 * table keeps, for the NATed connections only, both keys, so either view of a
 * connection finds the other.
 *
 * Fed by conntrack netlink: one dump at open (and again after the kernel
 * dropped events: ENOBUFS), then NEW and DESTROY events on the table's thread.
 * A destroyed connection stays findable for history_us, so the final record of
 * a flow (written up to the idle timeout after its last packet, later than
 * conntrack forgets a UDP flow) still finds it.  Entries live in a ring of
 * max_entries slots: when it is full the oldest is overwritten (counted).
 *
 * Locking: one writer (the thread), any number of readers (flow workers), a
 * reader-writer lock; a lookup is two hash probes and a copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <libnfnetlink/libnfnetlink.h>

#include "kube.h"

#define NAT_DEFAULT_ENTRIES 65536u
#define NAT_MAX_ENTRIES (1u << 22)
#define NAT_DEFAULT_HISTORY_US (600ull * 1000000)
/* A conntrack entry is announced when the connection's first packet has
 * passed the node, a little after the packet's capture time. */
#define NAT_SLACK_US (5ull * 1000000)
#define NAT_RCVBUF (4u << 20)

struct nat_entry {
	struct kube_nat_tuple orig, rev;  /* rev: the reply tuple reversed (post-DNAT view) */
	uint64_t since_us, until_us;      /* until UINT64_MAX while live */
	uint32_t next_orig, next_rev;     /* hash chains: slot + 1, 0 = end */
	uint32_t horig, hrev;             /* bucket of each key */
	uint8_t used;
};

struct kube_nat {
	struct kube_nat_config cfg;
	pthread_rwlock_t lock;
	struct nat_entry *e;              /* ring of cfg.max_entries */
	uint32_t n, head;                 /* used slots, next slot to write */
	uint32_t *b_orig, *b_rev;         /* buckets: slot + 1 */
	uint32_t nbuckets;                /* power of two */
	struct nfct_handle *ev, *dump;
	int stopfd;
	pthread_t thread;
	int thread_started;
	struct kube_nat_stats st;         /* writer's; lookups/hits atomics */
};

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void nat_log(struct kube_nat *n, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void nat_log(struct kube_nat *n, int level, const char *fmt, ...)
{
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n->cfg.log)
		n->cfg.log(n->cfg.log_arg, level, msg);
	else
		fprintf(stderr, "conntrack: %s\n", msg);
}

void kube_nat_config_default(struct kube_nat_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_entries = NAT_DEFAULT_ENTRIES;
	cfg->history_us = NAT_DEFAULT_HISTORY_US;
}

static uint32_t tuple_hash(const struct kube_nat_tuple *t)
{
	/* FNV-1a over the fields that identify a connection */
	uint64_t h = 0xcbf29ce484222325ULL;
	const uint8_t *parts[2] = {t->src, t->dst};
	size_t alen = t->family == 6 ? 16 : 4;
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < alen; i++) {
			h ^= parts[k][i];
			h *= 0x100000001b3ULL;
		}
	uint8_t tail[5] = {t->proto, (uint8_t)(t->sport >> 8), (uint8_t)t->sport, (uint8_t)(t->dport >> 8),
			   (uint8_t)t->dport};
	for (size_t i = 0; i < sizeof(tail); i++) {
		h ^= tail[i];
		h *= 0x100000001b3ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

static int tuple_eq(const struct kube_nat_tuple *a, const struct kube_nat_tuple *b)
{
	size_t alen = a->family == 6 ? 16 : 4;
	return a->family == b->family && a->proto == b->proto && a->sport == b->sport &&
	       a->dport == b->dport && !memcmp(a->src, b->src, alen) && !memcmp(a->dst, b->dst, alen);
}

/* Removes slot s from the chain starting at *head (writer, under the lock). */
static void chain_unlink(struct kube_nat *n, uint32_t *head, uint32_t s, int rev)
{
	uint32_t *p = head;
	while (*p) {
		struct nat_entry *x = &n->e[*p - 1];
		uint32_t *nx = rev ? &x->next_rev : &x->next_orig;
		if (*p - 1 == s) {
			*p = *nx;
			return;
		}
		p = nx;
	}
}

/* The live entry with this original tuple, or NULL (writer). */
static struct nat_entry *find_live(struct kube_nat *n, const struct kube_nat_tuple *orig)
{
	uint32_t h = tuple_hash(orig) & (n->nbuckets - 1);
	for (uint32_t s = n->b_orig[h]; s; s = n->e[s - 1].next_orig) {
		struct nat_entry *x = &n->e[s - 1];
		if (x->until_us == UINT64_MAX && tuple_eq(&x->orig, orig))
			return x;
	}
	return NULL;
}

static void insert(struct kube_nat *n, const struct kube_nat_tuple *orig, const struct kube_nat_tuple *rev,
		   uint64_t since)
{
	uint32_t s = n->head;
	struct nat_entry *x = &n->e[s];
	if (x->used) {
		chain_unlink(n, &n->b_orig[x->horig], s, 0);
		chain_unlink(n, &n->b_rev[x->hrev], s, 1);
		n->st.evicted += x->until_us == UINT64_MAX;
	} else {
		n->n++;
	}
	memset(x, 0, sizeof(*x));
	x->orig = *orig;
	x->rev = *rev;
	x->since_us = since;
	x->until_us = UINT64_MAX;
	x->used = 1;
	x->horig = tuple_hash(orig) & (n->nbuckets - 1);
	x->hrev = tuple_hash(rev) & (n->nbuckets - 1);
	x->next_orig = n->b_orig[x->horig];
	n->b_orig[x->horig] = s + 1;
	x->next_rev = n->b_rev[x->hrev];
	n->b_rev[x->hrev] = s + 1;
	n->head = (uint32_t)((s + 1) % n->cfg.max_entries);
}

/* Reads one side of a conntrack entry; 0, or -1 for what we do not keep. */
static int read_tuple(const struct nf_conntrack *ct, int reply, struct kube_nat_tuple *t)
{
	memset(t, 0, sizeof(*t));
	uint8_t l3 = nfct_get_attr_u8(ct, reply ? ATTR_REPL_L3PROTO : ATTR_ORIG_L3PROTO);
	t->proto = nfct_get_attr_u8(ct, reply ? ATTR_REPL_L4PROTO : ATTR_ORIG_L4PROTO);
	if (t->proto != IPPROTO_TCP && t->proto != IPPROTO_UDP && t->proto != IPPROTO_SCTP)
		return -1;
	if (l3 == AF_INET) {
		uint32_t a = nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC);
		uint32_t b = nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST);
		t->family = 4;
		memcpy(t->src, &a, 4);
		memcpy(t->dst, &b, 4);
	} else if (l3 == AF_INET6) {
		const void *a = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_SRC : ATTR_ORIG_IPV6_SRC);
		const void *b = nfct_get_attr(ct, reply ? ATTR_REPL_IPV6_DST : ATTR_ORIG_IPV6_DST);
		if (!a || !b)
			return -1;
		t->family = 6;
		memcpy(t->src, a, 16);
		memcpy(t->dst, b, 16);
	} else {
		return -1;
	}
	t->sport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
	t->dport = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
	return 0;
}

static void reverse(const struct kube_nat_tuple *in, struct kube_nat_tuple *out)
{
	*out = *in;
	memcpy(out->src, in->dst, sizeof(out->src));
	memcpy(out->dst, in->src, sizeof(out->dst));
	out->sport = in->dport;
	out->dport = in->sport;
}

struct cb_ctx {
	struct kube_nat *n;
	int dumping;
};

static int on_conntrack(enum nf_conntrack_msg_type type, struct nf_conntrack *ct, void *data)
{
	struct cb_ctx *cx = data;
	struct kube_nat *n = cx->n;
	struct kube_nat_tuple orig, reply, rev;
	if (read_tuple(ct, 0, &orig) < 0 || read_tuple(ct, 1, &reply) < 0)
		return NFCT_CB_CONTINUE;
	reverse(&reply, &rev);
	/* Only translated connections: the reply comes from elsewhere than the
	 * original went, or goes back to elsewhere than it came from. */
	if (tuple_eq(&orig, &rev))
		return NFCT_CB_CONTINUE;
	uint64_t t = now_us();
	pthread_rwlock_wrlock(&n->lock);
	struct nat_entry *x = find_live(n, &orig);
	if (type == NFCT_T_DESTROY) {
		if (x)
			x->until_us = t;
		n->st.destroyed++;
	} else if (!x || !tuple_eq(&x->rev, &rev)) {
		if (x)
			x->until_us = t; /* the same original tuple now goes elsewhere */
		/* a dumped connection started at some unknown time before now */
		insert(n, &orig, &rev, cx->dumping ? 0 : t);
		n->st.added++;
	}
	pthread_rwlock_unlock(&n->lock);
	return NFCT_CB_CONTINUE;
}

static int dump(struct kube_nat *n)
{
	struct cb_ctx cx = {n, 1};
	uint32_t family = AF_UNSPEC;
	nfct_callback_unregister(n->dump);
	if (nfct_callback_register(n->dump, NFCT_T_ALL, on_conntrack, &cx) < 0)
		return -errno;
	int rc = nfct_query(n->dump, NFCT_Q_DUMP, &family);
	int e = errno;
	nfct_callback_unregister(n->dump);
	pthread_rwlock_wrlock(&n->lock);
	n->st.dumps++;
	pthread_rwlock_unlock(&n->lock);
	return rc < 0 ? -e : 0;
}

static void *nat_thread(void *arg)
{
	struct kube_nat *n = arg;
	struct cb_ctx cx = {n, 0};
	nfct_callback_register(n->ev, NFCT_T_NEW | NFCT_T_DESTROY, on_conntrack, &cx);
	struct pollfd pf[2] = {{.fd = nfct_fd(n->ev), .events = POLLIN}, {.fd = n->stopfd, .events = POLLIN}};
	for (;;) {
		int rc = poll(pf, 2, 1000);
		if (rc < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		if (rc <= 0 || !pf[0].revents)
			continue;
		rc = nfct_catch(n->ev);
		if (rc < 0 && errno == ENOBUFS) {
			/* The kernel dropped events: what changed meanwhile is only in
			 * the table itself. */
			pthread_rwlock_wrlock(&n->lock);
			n->st.overruns++;
			pthread_rwlock_unlock(&n->lock);
			nat_log(n, KUBE_LOG_WARN, "events lost (socket buffer full); reading the table again");
			if (dump(n) < 0)
				nat_log(n, KUBE_LOG_ERROR, "conntrack dump failed: %s", strerror(errno));
		} else if (rc < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			pthread_rwlock_wrlock(&n->lock);
			n->st.errors++;
			pthread_rwlock_unlock(&n->lock);
			nat_log(n, KUBE_LOG_ERROR, "reading conntrack events: %s", strerror(errno));
			struct timespec ts = {0, 100 * 1000000};
			nanosleep(&ts, NULL); /* no busy loop on a persistent error */
		}
	}
	return NULL;
}

struct kube_nat *kube_nat_open(const struct kube_nat_config *cfg_in, char *err, size_t errlen)
{
	struct kube_nat_config cfg;
	if (cfg_in)
		cfg = *cfg_in;
	else
		kube_nat_config_default(&cfg);
	if (!cfg.max_entries)
		cfg.max_entries = NAT_DEFAULT_ENTRIES;
	if (!cfg.history_us)
		cfg.history_us = NAT_DEFAULT_HISTORY_US;
	if (cfg.max_entries > NAT_MAX_ENTRIES) {
		snprintf(err, errlen, "conntrack: at most %u entries", NAT_MAX_ENTRIES);
		errno = EINVAL;
		return NULL;
	}
	struct kube_nat *n = calloc(1, sizeof(*n));
	int e = ENOMEM;
	if (!n) {
		snprintf(err, errlen, "conntrack: out of memory");
		errno = ENOMEM;
		return NULL;
	}
	n->cfg = cfg;
	n->stopfd = -1;
	pthread_rwlock_init(&n->lock, NULL);
	n->nbuckets = 1024;
	while (n->nbuckets < cfg.max_entries)
		n->nbuckets *= 2;
	n->e = calloc(cfg.max_entries, sizeof(*n->e));
	n->b_orig = calloc(n->nbuckets, sizeof(*n->b_orig));
	n->b_rev = calloc(n->nbuckets, sizeof(*n->b_rev));
	if (!n->e || !n->b_orig || !n->b_rev) {
		snprintf(err, errlen, "conntrack: out of memory for %zu entries", cfg.max_entries);
		goto fail;
	}
	n->ev = nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_NEW | NF_NETLINK_CONNTRACK_DESTROY);
	if (!n->ev) {
		e = errno;
		snprintf(err, errlen, "conntrack events: %s%s", strerror(e),
			 e == EPERM ? " (needs CAP_NET_ADMIN)" : "");
		goto fail;
	}
	n->dump = nfct_open(CONNTRACK, 0);
	if (!n->dump) {
		e = errno;
		snprintf(err, errlen, "conntrack: %s", strerror(e));
		goto fail;
	}
	nfnl_rcvbufsiz(nfct_nfnlh(n->ev), NAT_RCVBUF);
	int fl = fcntl(nfct_fd(n->ev), F_GETFL);
	if (fl < 0 || fcntl(nfct_fd(n->ev), F_SETFL, fl | O_NONBLOCK) < 0) {
		e = errno;
		snprintf(err, errlen, "conntrack: %s", strerror(e));
		goto fail;
	}
	/* Events first, then the dump: a connection made in between is seen at
	 * least once (twice is harmless: same tuples, no new entry). */
	if (dump(n) < 0) {
		e = errno ? errno : EIO;
		snprintf(err, errlen, "conntrack dump: %s%s", strerror(e), e == EPERM ? " (needs CAP_NET_ADMIN)" : "");
		goto fail;
	}
	if ((n->stopfd = eventfd(0, EFD_CLOEXEC)) < 0) {
		e = errno;
		snprintf(err, errlen, "conntrack: eventfd: %s", strerror(e));
		goto fail;
	}
	if ((e = pthread_create(&n->thread, NULL, nat_thread, n))) {
		snprintf(err, errlen, "conntrack: thread: %s", strerror(e));
		goto fail;
	}
	n->thread_started = 1;
	return n;
fail:
	kube_nat_close(n);
	errno = e;
	return NULL;
}

void kube_nat_close(struct kube_nat *n)
{
	if (!n)
		return;
	if (n->thread_started) {
		uint64_t one = 1;
		if (write(n->stopfd, &one, sizeof(one)) != sizeof(one))
			pthread_cancel(n->thread); /* cannot happen for an eventfd */
		pthread_join(n->thread, NULL);
	}
	if (n->stopfd >= 0)
		close(n->stopfd);
	if (n->ev)
		nfct_close(n->ev);
	if (n->dump)
		nfct_close(n->dump);
	pthread_rwlock_destroy(&n->lock);
	free(n->e);
	free(n->b_orig);
	free(n->b_rev);
	free(n);
}

/* The best of the entries whose key (orig or rev) equals t: valid at ts (with
 * slack for the event coming after the packet), the latest start wins. */
static const struct nat_entry *best(const struct kube_nat *n, const struct kube_nat_tuple *t, int rev,
				    uint64_t ts, uint64_t now)
{
	const struct nat_entry *pick = NULL;
	uint32_t h = tuple_hash(t) & (n->nbuckets - 1);
	for (uint32_t s = rev ? n->b_rev[h] : n->b_orig[h]; s;) {
		const struct nat_entry *x = &n->e[s - 1];
		s = rev ? x->next_rev : x->next_orig;
		if (!tuple_eq(rev ? &x->rev : &x->orig, t))
			continue;
		if (x->until_us != UINT64_MAX &&
		    (x->until_us + n->cfg.history_us < now || x->until_us + NAT_SLACK_US < ts))
			continue; /* forgotten, or over before this flow began */
		if (ts && x->since_us > ts + NAT_SLACK_US)
			continue; /* a later connection with the same tuple */
		if (!pick || x->since_us > pick->since_us)
			pick = x;
	}
	return pick;
}

int kube_nat_lookup(const struct kube_nat *cn, const struct kube_nat_tuple *t, uint64_t ts_us,
		    struct kube_nat_answer *out)
{
	struct kube_nat *n = (struct kube_nat *)cn;
	if (!n || !t || !out || (t->family != 4 && t->family != 6))
		return -EINVAL;
	uint64_t now = now_us();
	__atomic_fetch_add(&n->st.lookups, 1, __ATOMIC_RELAXED);
	int rc = -ENOENT;
	pthread_rwlock_rdlock(&n->lock);
	const struct nat_entry *x = best(n, t, 0, ts_us, now);
	int seen = KUBE_NAT_ORIGINAL;
	if (!x) {
		x = best(n, t, 1, ts_us, now);
		seen = KUBE_NAT_REPLY;
	}
	if (x) {
		out->orig = x->orig;
		reverse(&x->rev, &out->reply);
		out->seen_as = (uint8_t)seen;
		out->since_us = x->since_us;
		out->until_us = x->until_us;
		rc = 0;
	}
	pthread_rwlock_unlock(&n->lock);
	if (rc == 0)
		__atomic_fetch_add(&n->st.hits, 1, __ATOMIC_RELAXED);
	return rc;
}

void kube_nat_stats(const struct kube_nat *cn, struct kube_nat_stats *out)
{
	struct kube_nat *n = (struct kube_nat *)cn;
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	pthread_rwlock_rdlock(&n->lock);
	*out = n->st;
	out->entries = n->n;
	pthread_rwlock_unlock(&n->lock);
	out->lookups = __atomic_load_n(&n->st.lookups, __ATOMIC_RELAXED);
	out->hits = __atomic_load_n(&n->st.hits, __ATOMIC_RELAXED);
}

/* For tests: feeds a connection as if conntrack had announced it (since_us 0 =
 * now), or its end (destroy). */
int kube_nat_feed(struct kube_nat *n, const struct kube_nat_tuple *orig, const struct kube_nat_tuple *reply,
		  int destroy, uint64_t at_us)
{
	struct kube_nat_tuple rev;
	if (!n || !orig || !reply)
		return -EINVAL;
	reverse(reply, &rev);
	uint64_t t = at_us ? at_us : now_us();
	pthread_rwlock_wrlock(&n->lock);
	struct nat_entry *x = find_live(n, orig);
	if (destroy) {
		if (x)
			x->until_us = t;
	} else if (!x) {
		insert(n, orig, &rev, t);
		n->st.added++;
	}
	pthread_rwlock_unlock(&n->lock);
	return 0;
}

/* A table without conntrack (tests, and offline use): only kube_nat_feed fills it. */
struct kube_nat *kube_nat_new_empty(const struct kube_nat_config *cfg_in)
{
	struct kube_nat_config cfg;
	if (cfg_in)
		cfg = *cfg_in;
	else
		kube_nat_config_default(&cfg);
	if (!cfg.max_entries || cfg.max_entries > NAT_MAX_ENTRIES)
		cfg.max_entries = NAT_DEFAULT_ENTRIES;
	if (!cfg.history_us)
		cfg.history_us = NAT_DEFAULT_HISTORY_US;
	struct kube_nat *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->cfg = cfg;
	n->stopfd = -1;
	pthread_rwlock_init(&n->lock, NULL);
	n->nbuckets = 1024;
	while (n->nbuckets < cfg.max_entries)
		n->nbuckets *= 2;
	n->e = calloc(cfg.max_entries, sizeof(*n->e));
	n->b_orig = calloc(n->nbuckets, sizeof(*n->b_orig));
	n->b_rev = calloc(n->nbuckets, sizeof(*n->b_rev));
	if (!n->e || !n->b_orig || !n->b_rev) {
		kube_nat_close(n);
		errno = ENOMEM;
		return NULL;
	}
	return n;
}
