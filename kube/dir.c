/* dir.c — the directory: objects by key, addresses with their history of
 * holders, NodePorts, EndpointSlice back-references, and the lookups.
 *
 * Every address has a list of assignments, newest first: at most one current
 * (until == KUBE_UNTIL_OPEN) and up to KIP_MAX_ENDED ended ones.  Ended
 * assignments also sit on one list in the order they ended, which the caps
 * (count, age) trim from the oldest.  Writers run on the source's thread under
 * the write lock; lookups take the read lock, probe the address hash and copy
 * the answer out. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube_int.h"

struct kassign {
	struct kassign *next;              /* older assignment of the same address */
	struct kassign *lru_prev, *lru_next; /* ended assignments, by end order */
	struct ipent *ent;
	uint8_t kind;                      /* KHOLD_* */
	void *holder;
	uint64_t since, until;
};

struct kbackref {
	struct kbackref *next;
	const struct kslice *slice;
};

struct ipent {
	struct ipent *hnext;
	uint64_t h;
	struct kaddr addr;
	uint8_t n_ended;
	struct kassign *head;
	struct kbackref *backs;
};

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t fnv(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

int kaddr_parse(const char *s, struct kaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return -EINVAL;
	if (inet_pton(AF_INET, s, out->a) == 1) {
		out->family = 4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, out->a) == 1) {
		out->family = 6;
		return 0;
	}
	return -EINVAL;
}

int kaddr_eq(const struct kaddr *x, const struct kaddr *y)
{
	return x->family == y->family && !memcmp(x->a, y->a, 16);
}

/* ---- string map ------------------------------------------------------------- */

static int kmap_grow(struct kmap *m)
{
	size_t nb = m->nb ? m->nb * 2 : 64;
	struct kmap_ent **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < m->nb; i++) {
		struct kmap_ent *e = m->b[i], *next;
		for (; e; e = next) {
			next = e->next;
			e->next = b[e->h & (nb - 1)];
			b[e->h & (nb - 1)] = e;
		}
	}
	free(m->b);
	m->b = b;
	m->nb = nb;
	return 0;
}

static struct kmap_ent *kmap_find(const struct kmap *m, const char *key, uint64_t h)
{
	if (!m->nb)
		return NULL;
	for (struct kmap_ent *e = m->b[h & (m->nb - 1)]; e; e = e->next)
		if (e->h == h && !strcmp(e->key, key))
			return e;
	return NULL;
}

void *kmap_get(const struct kmap *m, const char *key)
{
	struct kmap_ent *e = kmap_find(m, key, fnv(key, strlen(key)));
	return e ? e->val : NULL;
}

static int kmap_insert(struct kmap *m, const char *key, void *val, int copy)
{
	uint64_t h = fnv(key, strlen(key));
	struct kmap_ent *e = kmap_find(m, key, h);
	if (e) {
		if (!copy)
			e->key = key;
		e->val = val;
		return 0;
	}
	if (m->n >= m->nb && kmap_grow(m) < 0)
		return -ENOMEM;
	size_t klen = copy ? strlen(key) + 1 : 0;
	e = malloc(sizeof(*e) + klen);
	if (!e)
		return -ENOMEM;
	e->h = h;
	e->val = val;
	if (copy) {
		memcpy(e->own, key, klen);
		e->key = e->own;
	} else {
		e->key = key;
	}
	e->next = m->b[h & (m->nb - 1)];
	m->b[h & (m->nb - 1)] = e;
	m->n++;
	return 0;
}

int kmap_put(struct kmap *m, const char *key, void *val)
{
	return kmap_insert(m, key, val, 0);
}

int kmap_put_copy(struct kmap *m, const char *key, void *val)
{
	return kmap_insert(m, key, val, 1);
}

void *kmap_del(struct kmap *m, const char *key)
{
	if (!m->nb)
		return NULL;
	uint64_t h = fnv(key, strlen(key));
	for (struct kmap_ent **pp = &m->b[h & (m->nb - 1)]; *pp; pp = &(*pp)->next) {
		struct kmap_ent *e = *pp;
		if (e->h == h && !strcmp(e->key, key)) {
			void *v = e->val;
			*pp = e->next;
			free(e);
			m->n--;
			return v;
		}
	}
	return NULL;
}

void kmap_free(struct kmap *m, void (*free_val)(void *))
{
	for (size_t i = 0; i < m->nb; i++) {
		struct kmap_ent *e = m->b[i], *next;
		for (; e; e = next) {
			next = e->next;
			if (free_val)
				free_val(e->val);
			free(e);
		}
	}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

/* ---- holders ---------------------------------------------------------------- */

static void holder_ref(int kind, void *h)
{
	if (kind == KHOLD_POD)
		((struct kpod *)h)->refs++;
	else if (kind == KHOLD_SVC)
		((struct ksvc *)h)->refs++;
	else
		((struct knode *)h)->refs++;
}

static void holder_unref(struct kdir *d, int kind, void *h)
{
	if (kind == KHOLD_POD) {
		struct kpod *p = h;
		if (--p->refs == 0) {
			d->mem -= p->size;
			kpod_free(p);
		}
	} else if (kind == KHOLD_SVC) {
		struct ksvc *s = h;
		if (--s->refs == 0) {
			d->mem -= s->size;
			ksvc_free(s);
		}
	} else {
		struct knode *n = h;
		if (--n->refs == 0) {
			d->mem -= sizeof(*n) + strlen(n->name) + 1;
			free(n);
		}
	}
}

/* Who wins when two holders claim one address: a pod the API (or inventory) says
 * has the address beats one known only from an EndpointSlice, which beats a node
 * (host-network pods and node IPs).  Equal ranks: the newer claim wins. */
static int hold_rank(int kind, const void *h)
{
	if (kind == KHOLD_NODE)
		return 0;
	if (kind == KHOLD_POD && ((const struct kpod *)h)->src == KPOD_SRC_SLICE)
		return 1;
	return 2;
}

/* ---- address table ------------------------------------------------------------ */

static uint64_t addr_hash(const struct kaddr *a)
{
	return fnv(a, sizeof(*a));
}

static struct ipent *ip_find(const struct kdir *d, const struct kaddr *a)
{
	if (!d->ipnb)
		return NULL;
	uint64_t h = addr_hash(a);
	for (struct ipent *e = d->ipb[h & (d->ipnb - 1)]; e; e = e->hnext)
		if (e->h == h && kaddr_eq(&e->addr, a))
			return e;
	return NULL;
}

static struct ipent *ip_get(struct kdir *d, const struct kaddr *a)
{
	struct ipent *e = ip_find(d, a);
	if (e)
		return e;
	if (d->ipn >= d->ipnb) {
		size_t nb = d->ipnb ? d->ipnb * 2 : 256;
		struct ipent **b = calloc(nb, sizeof(*b));
		if (!b)
			return NULL;
		for (size_t i = 0; i < d->ipnb; i++) {
			struct ipent *x = d->ipb[i], *next;
			for (; x; x = next) {
				next = x->hnext;
				x->hnext = b[x->h & (nb - 1)];
				b[x->h & (nb - 1)] = x;
			}
		}
		d->mem += (nb - d->ipnb) * sizeof(*b);
		free(d->ipb);
		d->ipb = b;
		d->ipnb = nb;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->addr = *a;
	e->h = addr_hash(a);
	e->hnext = d->ipb[e->h & (d->ipnb - 1)];
	d->ipb[e->h & (d->ipnb - 1)] = e;
	d->ipn++;
	d->mem += sizeof(*e);
	return e;
}

/* Frees an address that has nothing left on it (keep: one the caller still uses). */
static void ip_maybe_free(struct kdir *d, struct ipent *e)
{
	if (e->head || e->backs)
		return;
	for (struct ipent **pp = &d->ipb[e->h & (d->ipnb - 1)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			d->ipn--;
			d->mem -= sizeof(*e);
			free(e);
			return;
		}
	}
}

static void lru_unlink(struct kdir *d, struct kassign *a)
{
	if (a->lru_prev)
		a->lru_prev->lru_next = a->lru_next;
	else
		d->lru_head = a->lru_next;
	if (a->lru_next)
		a->lru_next->lru_prev = a->lru_prev;
	else
		d->lru_tail = a->lru_prev;
	a->lru_prev = a->lru_next = NULL;
}

/* Removes an ended assignment from its address and frees it. */
static void assign_drop(struct kdir *d, struct kassign *a, const struct ipent *keep)
{
	struct ipent *e = a->ent;
	for (struct kassign **pp = &e->head; *pp; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	if (a->until != KUBE_UNTIL_OPEN) {
		lru_unlink(d, a);
		d->n_ended--;
		e->n_ended--;
	} else {
		d->n_current--;
	}
	holder_unref(d, a->kind, a->holder);
	d->mem -= sizeof(*a);
	free(a);
	if (e != keep)
		ip_maybe_free(d, e);
}

static void caps_enforce(struct kdir *d, struct ipent *keep)
{
	while (d->n_ended > d->max_history && d->lru_head) {
		d->evicted++;
		assign_drop(d, d->lru_head, keep);
	}
}

/* Ends a current assignment at t. */
static void ip_end(struct kdir *d, struct kassign *a, uint64_t t)
{
	struct ipent *e = a->ent;
	if (t < a->since)
		t = a->since;
	if (t == a->since) {
		/* It never held the address for a moment: forget it. */
		assign_drop(d, a, e);
		return;
	}
	a->until = t;
	d->n_current--;
	d->n_ended++;
	e->n_ended++;
	a->lru_prev = d->lru_tail;
	a->lru_next = NULL;
	if (d->lru_tail)
		d->lru_tail->lru_next = a;
	else
		d->lru_head = a;
	d->lru_tail = a;
	if (e->n_ended > KIP_MAX_ENDED) {
		struct kassign *oldest = e->head;
		while (oldest->next)
			oldest = oldest->next;
		d->evicted++;
		assign_drop(d, oldest, e);
	}
	caps_enforce(d, e);
}

static struct kassign *ip_current(const struct ipent *e)
{
	return e && e->head && e->head->until == KUBE_UNTIL_OPEN ? e->head : NULL;
}

/* h claims address a.  replaces: the object h supersedes (same pod, newer
 * version): its current assignment carries on under h, keeping its start. */
static int ip_claim(struct kdir *d, const struct kaddr *a, int kind, void *h, void *replaces,
		    uint64_t created, uint64_t now)
{
	struct ipent *e = ip_get(d, a);
	if (!e)
		return -ENOMEM;
	struct kassign *cur = ip_current(e);
	if (cur) {
		if (cur->kind == kind && (cur->holder == h || (replaces && cur->holder == replaces))) {
			if (cur->holder != h) {
				holder_ref(kind, h);
				holder_unref(d, kind, cur->holder);
				cur->holder = h;
			}
			return 0;
		}
		if (hold_rank(kind, h) < hold_rank(cur->kind, cur->holder))
			return 0;
		/* The address changed hands without us seeing the old holder go (a
		 * relist, or events of two objects out of order): the old one held it
		 * until the new one was created, as far as we can tell. */
		uint64_t end = created && created < now ? created : now;
		if (end <= cur->since)
			end = cur->since + 1;
		ip_end(d, cur, end);
	}
	struct kassign *n = calloc(1, sizeof(*n));
	if (!n) {
		ip_maybe_free(d, e);
		return -ENOMEM;
	}
	uint64_t since = created ? (created < now ? created : now) : 0;
	if (e->head && e->head->until > since)
		since = e->head->until;
	n->since = since;
	n->until = KUBE_UNTIL_OPEN;
	n->kind = (uint8_t)kind;
	n->holder = h;
	n->ent = e;
	n->next = e->head;
	e->head = n;
	holder_ref(kind, h);
	d->n_current++;
	d->mem += sizeof(*n);
	return 0;
}

/* h lets go of address a (if it holds it). */
static void ip_release(struct kdir *d, const struct kaddr *a, const void *h, uint64_t now)
{
	struct ipent *e = ip_find(d, a);
	struct kassign *cur = ip_current(e);
	if (!cur || cur->holder != h)
		return;
	ip_end(d, cur, now);
	ip_maybe_free(d, e);
}

static int addr_in(const struct kaddr *a, const struct kaddr *v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if (kaddr_eq(a, &v[i]))
			return 1;
	return 0;
}

/* ---- nodes ------------------------------------------------------------------ */

/* A pod says its node has address a (status.hostIP): remember it as the node's,
 * so host-network pods and NodePorts resolve. */
static void node_note(struct kdir *d, const char *name, const struct kaddr *a, uint64_t now)
{
	if (!name || !name[0] || !a->family)
		return;
	struct knode *n = kmap_get(&d->nodes, name);
	if (!n) {
		if (d->nodes.n >= d->max_objects)
			return;
		size_t len = strlen(name) + 1;
		n = calloc(1, sizeof(*n) + len);
		if (!n)
			return;
		memcpy((char *)(n + 1), name, len);
		n->name = (const char *)(n + 1);
		if (kmap_put(&d->nodes, n->name, n) < 0) {
			free(n);
			return;
		}
		n->refs = 1;
		d->mem += sizeof(*n) + len;
	}
	if (addr_in(a, n->ips, n->n_ips) || n->n_ips >= KNODE_MAX_IPS)
		return;
	n->ips[n->n_ips++] = *a;
	ip_claim(d, a, KHOLD_NODE, n, NULL, 0, now);
}

void kdir_node_note(struct kdir *d, const char *name, const struct kaddr *a, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	node_note(d, name, a, now);
	pthread_rwlock_unlock(&d->lock);
}

/* ---- pods ------------------------------------------------------------------- */

static int pod_holds_ips(const struct kpod *p)
{
	return p && !p->terminal && !p->host_network;
}

/* Swaps p in for old (either may be NULL) in the table and on the addresses. */
static void pod_switch(struct kdir *d, struct kpod *old, struct kpod *p, uint64_t now)
{
	if (pod_holds_ips(old)) {
		for (unsigned i = 0; i < old->n_ips; i++)
			if (!pod_holds_ips(p) || !addr_in(&old->ips[i], p->ips, p->n_ips))
				ip_release(d, &old->ips[i], old, now);
	}
	if (pod_holds_ips(p)) {
		for (unsigned i = 0; i < p->n_ips; i++)
			ip_claim(d, &p->ips[i], KHOLD_POD, p, old, p->created_us, now);
	}
	if (p) {
		for (unsigned i = 0; i < p->n_host_ips; i++)
			node_note(d, p->node, &p->host_ips[i], now);
	}
}

static int pod_upsert_locked(struct kdir *d, struct kpod *p, uint64_t now)
{
	struct kpod *old = kmap_get(&d->pods, p->key);
	if (old && p->rv[0] && old->src == p->src && !strcmp(old->rv, p->rv)) {
		old->gen = d->gen;
		kpod_free(p);
		return 0;
	}
	if (!old && d->pods.n >= d->max_objects) {
		kpod_free(p);
		return -ENOSPC;
	}
	if (kmap_put(&d->pods, p->key, p) < 0) {
		kpod_free(p);
		return -ENOMEM;
	}
	p->refs = 1;
	p->gen = d->gen;
	d->mem += p->size;
	if (old)
		p->slice_refs = old->slice_refs;
	pod_switch(d, old, p, now);
	if (old)
		holder_unref(d, KHOLD_POD, old);
	return 0;
}

static void pod_delete_locked(struct kdir *d, struct kpod *old, uint64_t now)
{
	pod_switch(d, old, NULL, now);
	kmap_del(&d->pods, old->key);
	holder_unref(d, KHOLD_POD, old);
}

int kdir_pod_upsert(struct kdir *d, struct kpod *p, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	int r = pod_upsert_locked(d, p, now);
	pthread_rwlock_unlock(&d->lock);
	return r;
}

void kdir_pod_delete(struct kdir *d, const char *key, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	struct kpod *old = kmap_get(&d->pods, key);
	if (old)
		pod_delete_locked(d, old, now);
	pthread_rwlock_unlock(&d->lock);
}

/* Workload from a pod name alone, for pods known only from an EndpointSlice:
 * NAME-<hash>-<suffix> where both parts use the alphabet Kubernetes generates
 * names with (no vowels, no 0/1/3) is a Deployment's pod. */
static void guess_workload(const char *name, char *kind, size_t kindlen, char *wl, size_t wllen)
{
	static const char alpha[] = "bcdfghjklmnpqrstvwxz2456789";
	kind[0] = wl[0] = '\0';
	size_t n = strlen(name);
	const char *dash2 = strrchr(name, '-');
	if (!dash2 || (size_t)(name + n - dash2 - 1) != 5)
		return;
	const char *dash1 = NULL;
	for (const char *q = dash2 - 1; q > name; q--)
		if (*q == '-') {
			dash1 = q;
			break;
		}
	if (!dash1 || dash2 - dash1 - 1 < 6 || dash2 - dash1 - 1 > 10)
		return;
	for (const char *q = dash1 + 1; q < name + n; q++)
		if (q != dash2 && !strchr(alpha, *q))
			return;
	snprintf(kind, kindlen, "Deployment");
	snprintf(wl, wllen, "%.*s", (int)(dash1 - name), name);
}

/* An EndpointSlice names a pod at an address (KUBE_PODS_NODE only). */
static void slice_pod_ref(struct kdir *d, const struct kslice_ep *ep, uint64_t now)
{
	struct kpod *p = kmap_get(&d->pods, ep->pod_key);
	if (p) {
		p->slice_refs++;
		if (p->src != KPOD_SRC_SLICE || addr_in(&ep->addr, p->ips, p->n_ips) ||
		    p->n_ips >= KPOD_MAX_IPS)
			return;
		/* A second address (dual-stack: one slice per family). */
		struct kpod *np = kpod_alloc(p->key, p->ns, p->name, p->node, p->wl_kind, p->wl_name,
					     p->labels, "");
		if (!np)
			return;
		np->src = KPOD_SRC_SLICE;
		memcpy(np->ips, p->ips, sizeof(p->ips));
		np->n_ips = p->n_ips;
		np->ips[np->n_ips++] = ep->addr;
		pod_upsert_locked(d, np, now);
		return;
	}
	char wk[KUBE_KIND_LEN], wl[KUBE_NAME_LEN];
	guess_workload(ep->pod_name, wk, sizeof(wk), wl, sizeof(wl));
	p = kpod_alloc(ep->pod_key, ep->pod_ns, ep->pod_name, ep->node ? ep->node : "", wk, wl,
		       "{}", "");
	if (!p)
		return;
	p->src = KPOD_SRC_SLICE;
	p->ips[0] = ep->addr;
	p->n_ips = 1;
	if (pod_upsert_locked(d, p, now) == 0) {
		p = kmap_get(&d->pods, ep->pod_key);
		if (p)
			p->slice_refs = 1;
	}
}

static void slice_pod_unref(struct kdir *d, const struct kslice_ep *ep, uint64_t now)
{
	struct kpod *p = kmap_get(&d->pods, ep->pod_key);
	if (!p)
		return;
	if (p->slice_refs)
		p->slice_refs--;
	if (p->src == KPOD_SRC_SLICE && !p->slice_refs)
		pod_delete_locked(d, p, now);
}

/* ---- services --------------------------------------------------------------- */

static void nodeport_key(char *buf, size_t len, int proto, unsigned port)
{
	snprintf(buf, len, "%d/%u", proto, port);
}

static void svc_switch(struct kdir *d, struct ksvc *old, struct ksvc *s, uint64_t now)
{
	char key[32];
	if (old) {
		for (unsigned i = 0; i < old->n_ips; i++)
			if (!s || !addr_in(&old->ips[i], s->ips, s->n_ips))
				ip_release(d, &old->ips[i], old, now);
		for (unsigned i = 0; i < old->n_ports; i++) {
			if (!old->ports[i].node_port)
				continue;
			nodeport_key(key, sizeof(key), old->ports[i].proto, old->ports[i].node_port);
			if (kmap_get(&d->nodeports, key) == old)
				kmap_del(&d->nodeports, key);
		}
	}
	if (s) {
		for (unsigned i = 0; i < s->n_ips; i++)
			ip_claim(d, &s->ips[i], KHOLD_SVC, s, old, s->created_us, now);
		for (unsigned i = 0; i < s->n_ports; i++) {
			if (!s->ports[i].node_port)
				continue;
			nodeport_key(key, sizeof(key), s->ports[i].proto, s->ports[i].node_port);
			kmap_put_copy(&d->nodeports, key, s);
		}
	}
}

static int svc_upsert_locked(struct kdir *d, struct ksvc *s, uint64_t now)
{
	struct ksvc *old = kmap_get(&d->svcs, s->key);
	if (old && s->rv[0] && !strcmp(old->rv, s->rv)) {
		old->gen = d->gen;
		ksvc_free(s);
		return 0;
	}
	if (!old && d->svcs.n >= d->max_objects) {
		ksvc_free(s);
		return -ENOSPC;
	}
	if (kmap_put(&d->svcs, s->key, s) < 0) {
		ksvc_free(s);
		return -ENOMEM;
	}
	s->refs = 1;
	s->gen = d->gen;
	d->mem += s->size;
	svc_switch(d, old, s, now);
	if (old)
		holder_unref(d, KHOLD_SVC, old);
	return 0;
}

static void svc_delete_locked(struct kdir *d, struct ksvc *old, uint64_t now)
{
	svc_switch(d, old, NULL, now);
	kmap_del(&d->svcs, old->key);
	holder_unref(d, KHOLD_SVC, old);
}

int kdir_svc_upsert(struct kdir *d, struct ksvc *s, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	int r = svc_upsert_locked(d, s, now);
	pthread_rwlock_unlock(&d->lock);
	return r;
}

void kdir_svc_delete(struct kdir *d, const char *key, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	struct ksvc *old = kmap_get(&d->svcs, key);
	if (old)
		svc_delete_locked(d, old, now);
	pthread_rwlock_unlock(&d->lock);
}

/* ---- EndpointSlices ---------------------------------------------------------- */

static void backref_add(struct kdir *d, const struct kaddr *a, const struct kslice *s)
{
	struct ipent *e = ip_get(d, a);
	if (!e)
		return;
	for (struct kbackref *b = e->backs; b; b = b->next)
		if (b->slice == s)
			return; /* the address twice in one slice */
	struct kbackref *b = malloc(sizeof(*b));
	if (!b) {
		ip_maybe_free(d, e);
		return;
	}
	b->slice = s;
	b->next = e->backs;
	e->backs = b;
	d->mem += sizeof(*b);
}

static void backref_del(struct kdir *d, const struct kaddr *a, const struct kslice *s)
{
	struct ipent *e = ip_find(d, a);
	if (!e)
		return;
	for (struct kbackref **pp = &e->backs; *pp; pp = &(*pp)->next) {
		if ((*pp)->slice == s) {
			struct kbackref *b = *pp;
			*pp = b->next;
			free(b);
			d->mem -= sizeof(*b);
			break;
		}
	}
	ip_maybe_free(d, e);
}

static void slice_switch(struct kdir *d, struct kslice *old, struct kslice *s, uint64_t now)
{
	/* New references first, so a pod listed by both versions never drops to zero
	 * references and loses its address for an instant. */
	if (s) {
		for (unsigned i = 0; i < s->n_eps; i++) {
			backref_add(d, &s->eps[i].addr, s);
			if (d->pod_scope == KUBE_PODS_NODE && s->eps[i].pod_key)
				slice_pod_ref(d, &s->eps[i], now);
		}
	}
	if (old) {
		for (unsigned i = 0; i < old->n_eps; i++) {
			backref_del(d, &old->eps[i].addr, old);
			if (d->pod_scope == KUBE_PODS_NODE && old->eps[i].pod_key)
				slice_pod_unref(d, &old->eps[i], now);
		}
	}
}

static int slice_upsert_locked(struct kdir *d, struct kslice *s, uint64_t now)
{
	struct kslice *old = kmap_get(&d->slices, s->key);
	if (old && s->rv[0] && !strcmp(old->rv, s->rv)) {
		old->gen = d->gen;
		kslice_free(s);
		return 0;
	}
	if (!old && d->slices.n >= d->max_objects) {
		kslice_free(s);
		return -ENOSPC;
	}
	if (kmap_put(&d->slices, s->key, s) < 0) {
		kslice_free(s);
		return -ENOMEM;
	}
	s->gen = d->gen;
	d->mem += s->size;
	slice_switch(d, old, s, now);
	if (old) {
		d->mem -= old->size;
		kslice_free(old);
	}
	return 0;
}

static void slice_delete_locked(struct kdir *d, struct kslice *old, uint64_t now)
{
	slice_switch(d, old, NULL, now);
	kmap_del(&d->slices, old->key);
	d->mem -= old->size;
	kslice_free(old);
}

int kdir_slice_upsert(struct kdir *d, struct kslice *s, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	int r = slice_upsert_locked(d, s, now);
	pthread_rwlock_unlock(&d->lock);
	return r;
}

void kdir_slice_delete(struct kdir *d, const char *key, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	struct kslice *old = kmap_get(&d->slices, key);
	if (old)
		slice_delete_locked(d, old, now);
	pthread_rwlock_unlock(&d->lock);
}

/* ---- whole-set replacement ----------------------------------------------------- */

size_t kdir_pods_replace(struct kdir *d, struct kpod **v, size_t n, int src, uint64_t now)
{
	size_t refused = 0;
	pthread_rwlock_wrlock(&d->lock);
	d->gen++;
	for (size_t i = 0; i < n; i++)
		if (pod_upsert_locked(d, v[i], now) < 0)
			refused++;
	KMAP_FOREACH(&d->pods, e, tmp, i) {
		struct kpod *p = e->val;
		if (p->src == src && p->gen != d->gen)
			pod_delete_locked(d, p, now);
	}
	pthread_rwlock_unlock(&d->lock);
	return refused;
}

size_t kdir_svcs_replace(struct kdir *d, struct ksvc **v, size_t n, uint64_t now)
{
	size_t refused = 0;
	pthread_rwlock_wrlock(&d->lock);
	d->gen++;
	for (size_t i = 0; i < n; i++)
		if (svc_upsert_locked(d, v[i], now) < 0)
			refused++;
	KMAP_FOREACH(&d->svcs, e, tmp, i) {
		struct ksvc *s = e->val;
		if (s->gen != d->gen)
			svc_delete_locked(d, s, now);
	}
	pthread_rwlock_unlock(&d->lock);
	return refused;
}

size_t kdir_slices_replace(struct kdir *d, struct kslice **v, size_t n, uint64_t now)
{
	size_t refused = 0;
	pthread_rwlock_wrlock(&d->lock);
	d->gen++;
	for (size_t i = 0; i < n; i++)
		if (slice_upsert_locked(d, v[i], now) < 0)
			refused++;
	KMAP_FOREACH(&d->slices, e, tmp, i) {
		struct kslice *s = e->val;
		if (s->gen != d->gen)
			slice_delete_locked(d, s, now);
	}
	pthread_rwlock_unlock(&d->lock);
	return refused;
}

void kdir_expire(struct kdir *d, uint64_t now)
{
	pthread_rwlock_wrlock(&d->lock);
	while (d->lru_head && d->lru_head->until + d->history_us < now)
		assign_drop(d, d->lru_head, NULL);
	pthread_rwlock_unlock(&d->lock);
}

/* ---- setup, counts ------------------------------------------------------------- */

int kdir_init(struct kdir *d, const struct kube_config *cfg)
{
	memset(d, 0, sizeof(*d));
	pthread_rwlockattr_t at;
	pthread_rwlockattr_init(&at);
	/* Writers are rare and short; without this a steady stream of lookups from
	 * the flow workers could keep the watcher waiting indefinitely. */
	pthread_rwlockattr_setkind_np(&at, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	int r = pthread_rwlock_init(&d->lock, &at);
	pthread_rwlockattr_destroy(&at);
	if (r)
		return -r;
	d->pod_scope = cfg->pod_scope;
	d->max_history = cfg->max_history ? cfg->max_history : 1;
	d->history_us = cfg->history_us;
	d->max_objects = cfg->max_objects;
	return 0;
}

static void free_pod_val(void *v)
{
	kpod_free(v);
}

static void free_slice_val(void *v)
{
	kslice_free(v);
}

void kdir_free(struct kdir *d)
{
	/* Assignments first (they hold references), then the tables. */
	for (size_t i = 0; i < d->ipnb; i++) {
		struct ipent *e = d->ipb[i], *next;
		for (; e; e = next) {
			next = e->hnext;
			struct kassign *a = e->head, *an;
			for (; a; a = an) {
				an = a->next;
				holder_unref(d, a->kind, a->holder);
				free(a);
			}
			struct kbackref *b = e->backs, *bn;
			for (; b; b = bn) {
				bn = b->next;
				free(b);
			}
			free(e);
		}
	}
	free(d->ipb);
	/* Remaining table references: each object holds exactly one now. */
	kmap_free(&d->pods, free_pod_val);
	KMAP_FOREACH(&d->svcs, e, tmp, i)
		ksvc_free(e->val);
	kmap_free(&d->svcs, NULL);
	kmap_free(&d->slices, free_slice_val);
	KMAP_FOREACH(&d->nodes, e, tmp, i)
		free(e->val);
	kmap_free(&d->nodes, NULL);
	kmap_free(&d->nodeports, NULL);
	pthread_rwlock_destroy(&d->lock);
}

void kdir_counts(struct kdir *d, struct kdir_counts *c)
{
	pthread_rwlock_rdlock(&d->lock);
	c->pods = d->pods.n;
	c->svcs = d->svcs.n;
	c->slices = d->slices.n;
	c->nodes = d->nodes.n;
	c->current = d->n_current;
	c->ended = d->n_ended;
	c->evicted = d->evicted;
	c->mem = d->mem + (d->pods.nb + d->svcs.nb + d->slices.nb) * sizeof(void *) +
		 (d->pods.n + d->svcs.n + d->slices.n) * sizeof(struct kmap_ent);
	pthread_rwlock_unlock(&d->lock);
}

/* ---- lookups -------------------------------------------------------------------- */

static const struct kassign *holder_at(const struct ipent *e, uint64_t ts)
{
	for (const struct kassign *a = e ? e->head : NULL; a; a = a->next) {
		if (ts == 0) {
			if (a->until == KUBE_UNTIL_OPEN)
				return a;
			return NULL;
		}
		if (ts >= a->since && ts < a->until)
			return a;
	}
	return NULL;
}

/* Bounded copy; lookups do six of these, so no snprintf. */
static void copy_str(char *dst, size_t len, const char *src)
{
	size_t n = src ? strnlen(src, len - 1) : 0;
	memcpy(dst, src ? src : "", n);
	dst[n] = '\0';
}

int kdir_lookup_ip(struct kdir *d, const struct kaddr *a, uint64_t ts, struct kube_endpoint *out)
{
	int r = -ENOENT;
	atomic_fetch_add_explicit(&d->lookups, 1, memory_order_relaxed);
	pthread_rwlock_rdlock(&d->lock);
	const struct kassign *x = holder_at(ip_find(d, a), ts);
	if (x) {
		memset(out, 0, offsetof(struct kube_endpoint, namespace));
		out->since_us = x->since;
		out->until_us = x->until;
		out->ended = x->until != KUBE_UNTIL_OPEN;
		if (x->kind == KHOLD_POD) {
			const struct kpod *p = x->holder;
			out->kind = KUBE_EP_POD;
			out->partial = p->src == KPOD_SRC_SLICE;
			out->labels_truncated = p->labels_truncated;
			copy_str(out->namespace, sizeof(out->namespace), p->ns);
			copy_str(out->name, sizeof(out->name), p->name);
			copy_str(out->node, sizeof(out->node), p->node);
			copy_str(out->workload_kind, sizeof(out->workload_kind), p->wl_kind);
			copy_str(out->workload, sizeof(out->workload), p->wl_name);
			copy_str(out->labels, sizeof(out->labels), p->labels);
		} else if (x->kind == KHOLD_SVC) {
			const struct ksvc *s = x->holder;
			out->kind = KUBE_EP_SERVICE;
			copy_str(out->namespace, sizeof(out->namespace), s->ns);
			copy_str(out->name, sizeof(out->name), s->name);
			out->node[0] = out->workload_kind[0] = out->workload[0] = '\0';
			copy_str(out->labels, sizeof(out->labels), "{}");
		} else {
			const struct knode *n = x->holder;
			out->kind = KUBE_EP_NODE;
			out->namespace[0] = '\0';
			copy_str(out->name, sizeof(out->name), n->name);
			copy_str(out->node, sizeof(out->node), n->name);
			out->workload_kind[0] = out->workload[0] = '\0';
			copy_str(out->labels, sizeof(out->labels), "{}");
		}
		r = 0;
	}
	pthread_rwlock_unlock(&d->lock);
	if (!r)
		atomic_fetch_add_explicit(&d->hits, 1, memory_order_relaxed);
	return r;
}

static void fill_svc(struct kube_service *out, int via, const struct ksvc *s,
		     const struct ksvc_port *p)
{
	memset(out, 0, sizeof(*out));
	out->via = (uint8_t)via;
	out->proto = p->proto;
	out->port = p->port;
	out->node_port = p->node_port;
	out->target_port = p->target_port;
	copy_str(out->namespace, sizeof(out->namespace), s->ns);
	copy_str(out->name, sizeof(out->name), s->name);
	copy_str(out->port_name, sizeof(out->port_name), p->name);
	copy_str(out->target_port_name, sizeof(out->target_port_name), p->target_name);
}

int kdir_lookup_service(struct kdir *d, const struct kaddr *a, uint16_t port, uint8_t proto,
			uint64_t ts, struct kube_service *out)
{
	int r = -ENOENT;
	atomic_fetch_add_explicit(&d->lookups, 1, memory_order_relaxed);
	pthread_rwlock_rdlock(&d->lock);
	const struct kassign *x = holder_at(ip_find(d, a), ts);
	if (x && x->kind == KHOLD_SVC) {
		const struct ksvc *s = x->holder;
		int external = 1;
		for (unsigned i = 0; i < s->n_cluster; i++)
			if (kaddr_eq(a, &s->ips[i]))
				external = 0;
		for (unsigned i = 0; i < s->n_ports; i++) {
			if (s->ports[i].port == port && s->ports[i].proto == proto) {
				fill_svc(out, external ? KUBE_SVC_EXTERNAL_IP : KUBE_SVC_CLUSTER_IP, s,
					 &s->ports[i]);
				r = 0;
				break;
			}
		}
	} else if (x && x->kind == KHOLD_NODE) {
		char key[32];
		nodeport_key(key, sizeof(key), proto, port);
		const struct ksvc *s = kmap_get(&d->nodeports, key);
		for (unsigned i = 0; s && i < s->n_ports; i++) {
			if (s->ports[i].node_port == port && s->ports[i].proto == proto) {
				fill_svc(out, KUBE_SVC_NODE_PORT, s, &s->ports[i]);
				r = 0;
				break;
			}
		}
	}
	pthread_rwlock_unlock(&d->lock);
	if (!r)
		atomic_fetch_add_explicit(&d->hits, 1, memory_order_relaxed);
	return r;
}

int kdir_lookup_backend(struct kdir *d, const struct kaddr *a, uint16_t port, uint8_t proto,
			struct kube_service *out)
{
	int r = -ENOENT;
	atomic_fetch_add_explicit(&d->lookups, 1, memory_order_relaxed);
	pthread_rwlock_rdlock(&d->lock);
	const struct ipent *e = ip_find(d, a);
	for (const struct kbackref *b = e ? e->backs : NULL; b && r; b = b->next) {
		const struct kslice *sl = b->slice;
		for (unsigned i = 0; i < sl->n_ports; i++) {
			const struct kslice_port *sp = &sl->ports[i];
			if (sp->port != port || sp->proto != proto)
				continue;
			memset(out, 0, sizeof(*out));
			out->via = KUBE_SVC_BACKEND;
			out->proto = proto;
			out->target_port = port;
			copy_str(out->namespace, sizeof(out->namespace), sl->ns);
			copy_str(out->name, sizeof(out->name), sl->service);
			copy_str(out->port_name, sizeof(out->port_name), sp->name);
			/* The Service's own port: the one of the same name (EndpointSlice
			 * ports carry the Service port's name, not its number). */
			char key[KUBE_NS_LEN + KUBE_NAME_LEN + 2];
			snprintf(key, sizeof(key), "%s/%s", sl->ns, sl->service);
			const struct ksvc *s = kmap_get(&d->svcs, key);
			for (unsigned j = 0; s && j < s->n_ports; j++) {
				if (s->ports[j].proto == proto && !strcmp(s->ports[j].name, sp->name)) {
					out->port = s->ports[j].port;
					out->node_port = s->ports[j].node_port;
					break;
				}
			}
			r = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&d->lock);
	if (!r)
		atomic_fetch_add_explicit(&d->hits, 1, memory_order_relaxed);
	return r;
}
