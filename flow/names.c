/* flow — the names dictionary (see struct fl_names in flow.h).
 *
 * Each generation is an array of immutable entries plus an open-addressing
 * table of their indexes keyed by a 64-bit hash of the packed name.  An entry
 * never changes once inserted and a generation is freed only under the write
 * lock, so a reader holding the read lock can copy an entry out safely.
 *
 * A name is packed as its kind, port and six length-prefixed strings; two names
 * are the same exactly when their packed bytes are, which makes the key compare
 * a memcmp.  Ids: (generation sequence & 0xfff) << 20 | (index + 1).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "flow.h"

#define IDX_BITS 20
#define GEN_MASK 0xfffu
#define MAX_GEN_ENTRIES ((1u << IDX_BITS) - 1)
#define DEFAULT_GEN_ENTRIES 65536u
#define DEFAULT_GEN_BYTES (16u << 20)
#define NSTR 6

struct entry {
	uint64_t hash;
	uint32_t size;           /* bytes of key[] */
	unsigned char key[];     /* kind, port (2), then per string: length (2) + bytes */
};

struct gen {
	uint32_t seq;            /* 0 = empty generation */
	uint32_t n, cap;         /* entries used / allocated */
	size_t bytes;
	struct entry **e;
	uint32_t *tab;           /* index + 1, 0 = free; tabsz a power of two */
	uint32_t tabsz;
};

struct fl_names {
	pthread_rwlock_t lock;
	uint32_t gen_entries;
	size_t gen_bytes;
	struct gen g[2];         /* g[cur] current, g[!cur] previous */
	int cur;
	uint32_t next_seq;
	/* counters: atomics, updated under the read lock by many threads */
	uint64_t puts, hits, rotations, expired, failed;
};

#define ADD(x, v) __atomic_fetch_add(&(x), (v), __ATOMIC_RELAXED)
#define GET(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)

static const char *const kind_names[FL_KIND__COUNT] = {"", "pod", "node", "service"};

const char *fl_name_kind_name(int kind)
{
	return kind >= 0 && kind < FL_KIND__COUNT ? kind_names[kind] : "";
}

static const char *const conf_names[FL_CONF__COUNT] = {"", "unknown", "by-port", "by-ip", "dpi-cache", "dpi"};

const char *fl_confidence_name(int confidence)
{
	return confidence >= 0 && confidence < FL_CONF__COUNT ? conf_names[confidence] : "";
}

/* The strings of a name, in packing order, with their array sizes. */
static void name_strings(const struct fl_name *nm, const char *s[NSTR], size_t cap[NSTR])
{
	s[0] = nm->ns, cap[0] = sizeof(nm->ns);
	s[1] = nm->name, cap[1] = sizeof(nm->name);
	s[2] = nm->node, cap[2] = sizeof(nm->node);
	s[3] = nm->workload, cap[3] = sizeof(nm->workload);
	s[4] = nm->labels, cap[4] = sizeof(nm->labels);
	s[5] = nm->via, cap[5] = sizeof(nm->via);
}

#define KEY_MAX (3 + NSTR * 2 + sizeof(((struct fl_name *)0)->ns) + FL_NAME_NAME_LEN * 2 + \
		 FL_NAME_WORKLOAD_LEN + FL_NAME_LABELS_LEN + FL_NAME_VIA_LEN)

/* Packs a name; strings stop at NUL or at the end of their array, whichever is
 * first (so a full array without a NUL is read no further). */
static size_t pack(const struct fl_name *nm, unsigned char *k)
{
	const char *s[NSTR];
	size_t cap[NSTR], o = 0;
	name_strings(nm, s, cap);
	k[o++] = nm->kind;
	k[o++] = (unsigned char)(nm->port >> 8);
	k[o++] = (unsigned char)nm->port;
	for (int i = 0; i < NSTR; i++) {
		size_t n = strnlen(s[i], cap[i] - 1);
		k[o++] = (unsigned char)(n >> 8);
		k[o++] = (unsigned char)n;
		memcpy(k + o, s[i], n);
		o += n;
	}
	return o;
}

static void unpack(const struct entry *e, struct fl_name *out)
{
	const char *s[NSTR];
	size_t cap[NSTR], o = 3;
	memset(out, 0, sizeof(*out));
	name_strings(out, s, cap);
	out->kind = e->key[0];
	out->port = (uint16_t)(e->key[1] << 8 | e->key[2]);
	for (int i = 0; i < NSTR && o + 2 <= e->size; i++) {
		size_t n = (size_t)e->key[o] << 8 | e->key[o + 1];
		o += 2;
		if (n > e->size - o || n >= cap[i])
			break; /* cannot happen: entries are packed from the same arrays */
		memcpy((char *)s[i], e->key + o, n);
		o += n;
	}
}

/* FNV-1a, 64 bits: names are short and the table wants only a spread. */
static uint64_t hash_key(const unsigned char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= k[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Index of the key in g, or -1. */
static long gen_find(const struct gen *g, uint64_t h, const unsigned char *k, size_t n)
{
	if (!g->tabsz)
		return -1;
	for (uint32_t i = (uint32_t)h & (g->tabsz - 1), probes = 0; probes < g->tabsz;
	     i = (i + 1) & (g->tabsz - 1), probes++) {
		uint32_t v = g->tab[i];
		if (!v)
			return -1;
		const struct entry *e = g->e[v - 1];
		if (e->hash == h && e->size == n && !memcmp(e->key, k, n))
			return (long)(v - 1);
	}
	return -1;
}

static void gen_clear(struct gen *g)
{
	for (uint32_t i = 0; i < g->n; i++)
		free(g->e[i]);
	free(g->e);
	free(g->tab);
	memset(g, 0, sizeof(*g));
}

/* Room for one more entry: the entry array and a table at most half full. */
static int gen_reserve(struct gen *g)
{
	if (g->n == g->cap) {
		uint32_t cap = g->cap ? g->cap * 2 : 256;
		struct entry **e = realloc(g->e, (size_t)cap * sizeof(*e));
		if (!e)
			return -ENOMEM;
		g->e = e;
		g->cap = cap;
	}
	if ((uint64_t)(g->n + 1) * 2 > g->tabsz) {
		uint32_t sz = g->tabsz ? g->tabsz * 2 : 512;
		uint32_t *tab = calloc(sz, sizeof(*tab));
		if (!tab)
			return -ENOMEM;
		for (uint32_t k = 0; k < g->n; k++) {
			uint32_t i = (uint32_t)g->e[k]->hash & (sz - 1);
			while (tab[i])
				i = (i + 1) & (sz - 1);
			tab[i] = k + 1;
		}
		free(g->tab);
		g->tab = tab;
		g->tabsz = sz;
	}
	return 0;
}

static uint32_t make_id(const struct gen *g, long idx)
{
	return (g->seq & GEN_MASK) << IDX_BITS | (uint32_t)(idx + 1);
}

struct fl_names *fl_names_new(uint32_t gen_entries, size_t gen_bytes)
{
	if (gen_entries > MAX_GEN_ENTRIES) {
		errno = EINVAL;
		return NULL;
	}
	struct fl_names *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	if (pthread_rwlock_init(&n->lock, NULL)) {
		free(n);
		errno = ENOMEM;
		return NULL;
	}
	n->gen_entries = gen_entries ? gen_entries : DEFAULT_GEN_ENTRIES;
	n->gen_bytes = gen_bytes ? gen_bytes : DEFAULT_GEN_BYTES;
	n->next_seq = 2;
	n->g[0].seq = 1;
	return n;
}

void fl_names_free(struct fl_names *n)
{
	if (!n)
		return;
	gen_clear(&n->g[0]);
	gen_clear(&n->g[1]);
	pthread_rwlock_destroy(&n->lock);
	free(n);
}

/* Under the write lock: the current generation becomes the previous one and a
 * fresh one starts.  Sequence numbers skip 0 modulo 4096, so no id collides
 * with "empty". */
static void rotate(struct fl_names *n)
{
	struct gen *old = &n->g[!n->cur];
	gen_clear(old);
	n->cur = !n->cur;
	if ((n->next_seq & GEN_MASK) == 0)
		n->next_seq++;
	n->g[n->cur].seq = n->next_seq++;
	ADD(n->rotations, 1);
}

uint32_t fl_names_put(struct fl_names *n, const struct fl_name *name)
{
	unsigned char k[KEY_MAX];
	if (!n || !name || name->kind == FL_KIND_NONE || name->kind >= FL_KIND__COUNT)
		return 0;
	size_t len = pack(name, k);
	uint64_t h = hash_key(k, len);
	ADD(n->puts, 1);

	pthread_rwlock_rdlock(&n->lock);
	const struct gen *cur = &n->g[n->cur];
	long idx = gen_find(cur, h, k, len);
	uint32_t id = idx >= 0 ? make_id(cur, idx) : 0;
	pthread_rwlock_unlock(&n->lock);
	if (id) {
		ADD(n->hits, 1);
		return id;
	}

	pthread_rwlock_wrlock(&n->lock);
	struct gen *g = &n->g[n->cur];
	/* Another thread may have added it meanwhile. */
	if ((idx = gen_find(g, h, k, len)) >= 0) {
		id = make_id(g, idx);
		pthread_rwlock_unlock(&n->lock);
		ADD(n->hits, 1);
		return id;
	}
	/* Found in the previous generation: a hit, copied forward below. */
	if (gen_find(&n->g[!n->cur], h, k, len) >= 0)
		ADD(n->hits, 1);
	size_t esize = sizeof(struct entry) + len;
	if (g->n >= n->gen_entries || (g->n && g->bytes + esize > n->gen_bytes)) {
		rotate(n);
		g = &n->g[n->cur];
	}
	struct entry *e = malloc(esize);
	if (!e || gen_reserve(g) < 0) {
		free(e);
		pthread_rwlock_unlock(&n->lock);
		ADD(n->failed, 1);
		return 0;
	}
	e->hash = h;
	e->size = (uint32_t)len;
	memcpy(e->key, k, len);
	uint32_t i = (uint32_t)h & (g->tabsz - 1);
	while (g->tab[i])
		i = (i + 1) & (g->tabsz - 1);
	g->e[g->n] = e;
	g->tab[i] = g->n + 1;
	id = make_id(g, g->n);
	g->n++;
	g->bytes += esize;
	pthread_rwlock_unlock(&n->lock);
	return id;
}

int fl_names_get(const struct fl_names *cn, uint32_t id, struct fl_name *out)
{
	struct fl_names *n = (struct fl_names *)cn; /* the lock and counters change */
	if (!n || !out)
		return -EINVAL;
	if (!id)
		return -ENOENT;
	uint32_t seq = id >> IDX_BITS, idx = (id & MAX_GEN_ENTRIES) - 1;
	int rc = -ENOENT;
	pthread_rwlock_rdlock(&n->lock);
	for (int k = 0; k < 2; k++) {
		const struct gen *g = &n->g[k];
		if (g->seq && (g->seq & GEN_MASK) == seq && idx < g->n) {
			unpack(g->e[idx], out);
			rc = 0;
			break;
		}
	}
	pthread_rwlock_unlock(&n->lock);
	if (rc < 0)
		ADD(n->expired, 1);
	return rc;
}

void fl_names_stats(const struct fl_names *cn, struct fl_names_stats *out)
{
	struct fl_names *n = (struct fl_names *)cn;
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	pthread_rwlock_rdlock(&n->lock);
	for (int k = 0; k < 2; k++) {
		out->entries += n->g[k].n;
		out->bytes += n->g[k].bytes + (size_t)n->g[k].cap * sizeof(void *) +
			      (size_t)n->g[k].tabsz * sizeof(uint32_t);
	}
	pthread_rwlock_unlock(&n->lock);
	out->puts = GET(n->puts);
	out->hits = GET(n->hits);
	out->rotations = GET(n->rotations);
	out->expired = GET(n->expired);
	out->failed = GET(n->failed);
}
