/* Kubernetes names on flow records: the engine's record hook (engine.h) asks
 * kube/ who held each address of a record when the flow began, and the node's
 * conntrack table (kube_nat) which Service a translated connection went
 * through, and stores the answers in the record as ids of a names dictionary
 * (flow.h, struct fl_names) that the flow database sink resolves.
 *
 * Runs on the flow-worker threads for every record, periodic and final, so a
 * name that arrives late (a pod whose address the watch reports after its first
 * packet) fills in on the next record, and the flow database keeps a name once
 * written.  Every lookup is a read lock and a hash probe; nothing here blocks
 * on the API or on conntrack.
 *
 * What a record gets (docs/kubernetes.md):
 *   - src, dst: the pod (or node) that held each address at the flow's first
 *     packet.  For a translated connection, the real ends: the client before
 *     any SNAT (conntrack's original source) and the backend after DNAT
 *     (conntrack's reply source), whichever side of the NAT the record was
 *     seen on; the record's own addresses stay what was on the wire.
 *   - service: the Service whose ClusterIP, external IP or NodePort the
 *     connection was sent to (conntrack's original destination), or, without
 *     conntrack, the record's own destination when it is one.
 *   - outer src, dst: the nodes of a tunnel's outer addresses.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "kube.h"

struct app_names {
	struct kube *k;
	struct kube_nat *nat;
	struct fl_names *dict;
	void (*next)(void *, struct fl_record *);
	void *next_arg;
	const char *cmd;
	/* counters (atomics: workers update them) */
	uint64_t records, named_src, named_dst, services, nat_hits;
};

#define ADD(x) __atomic_fetch_add(&(x), 1, __ATOMIC_RELAXED)
#define GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static void kube_log(void *arg, int level, const char *msg)
{
	struct app_names *n = arg;
	/* State changes and errors only (kube/ never logs per event); debug is
	 * left out. */
	if (level <= KUBE_LOG_INFO)
		fprintf(stderr, "podcap %s: kubernetes: %s\n", n->cmd, msg);
}

static void nat_log(void *arg, int level, const char *msg)
{
	struct app_names *n = arg;
	if (level <= KUBE_LOG_INFO)
		fprintf(stderr, "podcap %s: conntrack: %s\n", n->cmd, msg);
}

static void copy(char *dst, size_t cap, const char *src)
{
	size_t len = strnlen(src, cap - 1);
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* A pod or node of the directory as a name of the dictionary; 0 = not one. */
static uint32_t intern_endpoint(struct app_names *n, const struct kube_endpoint *ep)
{
	struct fl_name nm;
	memset(&nm, 0, sizeof(nm));
	if (ep->kind == KUBE_EP_POD) {
		nm.kind = FL_KIND_POD;
		copy(nm.ns, sizeof(nm.ns), ep->namespace);
		copy(nm.name, sizeof(nm.name), ep->name);
		copy(nm.node, sizeof(nm.node), ep->node);
		if (ep->workload[0])
			snprintf(nm.workload, sizeof(nm.workload), "%.63s/%.253s",
				 ep->workload_kind[0] ? ep->workload_kind : "Unknown", ep->workload);
		copy(nm.labels, sizeof(nm.labels), ep->labels);
	} else if (ep->kind == KUBE_EP_NODE) {
		nm.kind = FL_KIND_NODE;
		copy(nm.name, sizeof(nm.name), ep->name);
		copy(nm.node, sizeof(nm.node), ep->node[0] ? ep->node : ep->name);
	} else {
		return 0; /* a Service address is no end: the service slot says it */
	}
	return fl_names_put(n->dict, &nm);
}

static uint32_t name_addr(struct app_names *n, int family, const uint8_t addr[16], uint64_t ts)
{
	struct kube_endpoint ep;
	if (kube_lookup_ip(n->k, family, addr, ts, &ep) < 0)
		return 0;
	return intern_endpoint(n, &ep);
}

static uint32_t intern_service(struct app_names *n, const struct kube_service *s)
{
	struct fl_name nm;
	memset(&nm, 0, sizeof(nm));
	nm.kind = FL_KIND_SERVICE;
	copy(nm.ns, sizeof(nm.ns), s->namespace);
	copy(nm.name, sizeof(nm.name), s->name);
	nm.port = s->port;
	copy(nm.via, sizeof(nm.via), kube_svc_via_name(s->via));
	return fl_names_put(n->dict, &nm);
}

void app_names_hook(void *arg, struct fl_record *r)
{
	struct app_names *n = arg;
	if (n->next)
		n->next(n->next_arg, r);
	if (!r->key.family)
		return;
	ADD(n->records);
	uint64_t ts = r->first_us;
	int fam = r->key.family;
	const uint8_t *client = r->key.src, *server = r->key.dst;
	struct kube_service svc;
	int have_svc = 0;
	int has_ports = r->key.proto == IPPROTO_TCP || r->key.proto == IPPROTO_UDP || r->key.proto == IPPROTO_SCTP;
	struct kube_nat_answer a;
	if (n->nat && has_ports) {
		struct kube_nat_tuple t = {.family = r->key.family, .proto = r->key.proto,
					   .sport = r->key.sport, .dport = r->key.dport};
		memcpy(t.src, r->key.src, sizeof(t.src));
		memcpy(t.dst, r->key.dst, sizeof(t.dst));
		if (kube_nat_lookup(n->nat, &t, ts, &a) == 0) {
			ADD(n->nat_hits);
			client = a.orig.src;
			server = a.reply.src;
			have_svc = kube_lookup_service(n->k, fam, a.orig.dst, a.orig.dport, a.orig.proto, ts, &svc) == 0;
		}
	}
	/* Seen before DNAT without conntrack (or a VIP conntrack did not
	 * translate): the destination itself may be a ClusterIP or NodePort. */
	if (!have_svc && has_ports)
		have_svc = kube_lookup_service(n->k, fam, r->key.dst, r->key.dport, r->key.proto, ts, &svc) == 0;
	uint32_t id;
	if ((id = name_addr(n, fam, client, ts))) {
		r->name[FL_NAME_SRC] = id;
		ADD(n->named_src);
	}
	if ((id = name_addr(n, fam, server, ts))) {
		r->name[FL_NAME_DST] = id;
		ADD(n->named_dst);
	}
	if (have_svc && (id = intern_service(n, &svc))) {
		r->name[FL_NAME_SERVICE] = id;
		ADD(n->services);
	}
	if (r->tunnel != DC_TUN_NONE && r->outer.family) {
		r->name[FL_NAME_OUTER_SRC] = name_addr(n, r->outer.family, r->outer.src, ts);
		r->name[FL_NAME_OUTER_DST] = name_addr(n, r->outer.family, r->outer.dst, ts);
	}
}

int app_names_open(const char *cmd, const struct app_opts *o, int live, struct app_names **out)
{
	char err[KUBE_ERR_LEN + 64];
	*out = NULL;
	int api = o->kubernetes || o->kubeconfig;
	const char *inventory = o->names_inventory;
	if (!api && !inventory)
		return 0;
	struct app_names *n = calloc(1, sizeof(*n));
	if (!n || !(n->dict = fl_names_new(0, 0))) {
		fprintf(stderr, "podcap %s: out of memory\n", cmd);
		free(n);
		return 1;
	}
	n->cmd = cmd;
	struct kube_config kc;
	kube_config_default(&kc);
	kc.log = kube_log;
	kc.log_arg = n;
	if (api) {
		kc.source = KUBE_SOURCE_API;
		kc.kubeconfig = o->kubeconfig;
		kc.context = o->kube_context;
		kc.node = o->node;
		kc.pod_scope = o->kube_pods;
	} else {
		kc.source = KUBE_SOURCE_INVENTORY;
		kc.inventory = inventory;
	}
	if (!(n->k = kube_open(&kc, err, sizeof(err)))) {
		fprintf(stderr, "podcap %s: kubernetes: %s\n", cmd, err);
		goto fail;
	}
	/* The first list runs in the background; a short wait lets the first
	 * records of a run be named.  An API that does not answer is not fatal:
	 * capture goes on and names fill in once it does. */
	if (kube_wait_synced(n->k, api ? 5000 : 2000) < 0)
		fprintf(stderr, "podcap %s: kubernetes: not synced yet; capturing, names follow when it is\n", cmd);
	if (live && !o->no_conntrack) {
		struct kube_nat_config nc;
		kube_nat_config_default(&nc);
		nc.log = nat_log;
		nc.log_arg = n;
		if (!(n->nat = kube_nat_open(&nc, err, sizeof(err))))
			/* Services are still named on the client's side (the VIP in the
			 * record); backends behind a VIP and NodePort clients are not. */
			fprintf(stderr, "podcap %s: %s; Services are named only where the VIP is seen\n", cmd, err);
	}
	*out = n;
	return 0;
fail:
	app_names_close(n);
	return 1;
}

void app_names_chain(struct app_names *n, void (*next)(void *, struct fl_record *), void *arg)
{
	n->next = next;
	n->next_arg = arg;
}

const struct fl_names *app_names_dict(const struct app_names *n)
{
	return n ? n->dict : NULL;
}

int app_names_status_json(const struct app_names *n, char *buf, size_t len)
{
	if (!n || !n->k)
		return -ENOENT;
	return kube_status_json(n->k, buf, len);
}

void app_names_print(const struct app_names *n, const char *prefix, FILE *f)
{
	if (!n)
		return;
	struct kube_status ks;
	if (kube_status(n->k, &ks) == 0) {
		fprintf(f, "%snames: source=%s synced=%d connected=%d stale=%d pods=%llu services=%llu "
			"addresses=%llu records=%llu named_src=%llu named_dst=%llu services_named=%llu",
			prefix, ks.source == KUBE_SOURCE_API ? "api" : "inventory", ks.synced, ks.connected,
			ks.stale, (unsigned long long)ks.pods, (unsigned long long)ks.services,
			(unsigned long long)ks.addresses, (unsigned long long)GET(n->records),
			(unsigned long long)GET(n->named_src), (unsigned long long)GET(n->named_dst),
			(unsigned long long)GET(n->services));
		if (ks.stale && ks.last_error[0])
			fprintf(f, " last_error=\"%s\"", ks.last_error);
	}
	if (n->nat) {
		struct kube_nat_stats ns;
		kube_nat_stats(n->nat, &ns);
		fprintf(f, " conntrack_entries=%llu conntrack_hits=%llu conntrack_overruns=%llu",
			(unsigned long long)ns.entries, (unsigned long long)GET(n->nat_hits),
			(unsigned long long)ns.overruns);
	}
	struct fl_names_stats ds;
	fl_names_stats(n->dict, &ds);
	fprintf(f, " dictionary=%llu names %llu bytes\n", (unsigned long long)ds.entries,
		(unsigned long long)ds.bytes);
}

void app_names_close(struct app_names *n)
{
	if (!n)
		return;
	kube_nat_close(n->nat);
	kube_close(n->k);
	fl_names_free(n->dict);
	free(n);
}

struct kube *app_names_kube(const struct app_names *n)
{
	return n ? n->k : NULL;
}

struct kube_nat *app_names_nat(const struct app_names *n)
{
	return n ? n->nat : NULL;
}
